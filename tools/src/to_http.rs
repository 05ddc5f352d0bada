//! `nsq_to_http`: consumes a topic/channel and sends each message to HTTP endpoints, as a
//! POST body or `%s` in a GET URL. A message is FIN'd only once its endpoint answered with
//! success (POST: any 2xx; GET: 200, as NSQ's); otherwise it is REQ'd with backoff.

use crate::cli::{self, duration};
use crate::client::{self, Config, Consumer, Message};
use crate::timer_metrics::TimerMetrics;
use crate::to_file::apply_consumer_opt;
use crate::upstream::{Mode, Picker};
use bytes::Bytes;
use clap::Parser;
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// What can stop nsq_to_http.
#[derive(Debug, Error)]
pub enum Error {
    /// Bad flags.
    #[error("{0}")]
    Usage(String),
    /// The HTTP client could not be set up.
    #[error("HTTP client: {0}")]
    Http(String),
    /// Connecting or discovery failed.
    #[error(transparent)]
    Client(#[from] client::Error),
}

const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// nsq_to_http's flags (NSQ v1.3.0 names and defaults).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "nsq_to_http",
    disable_version_flag = true,
    about = "Consume an NSQ topic and POST or GET each message to HTTP endpoints; a message is FIN'd once an endpoint accepted it"
)]
pub struct Args {
    /// nsq topic
    #[arg(long, default_value = "")]
    pub topic: String,
    /// nsq channel
    #[arg(long, default_value = "nsq_to_http")]
    pub channel: String,
    /// nsqd TCP address (may be given multiple times)
    #[arg(long = "nsqd-tcp-address")]
    pub nsqd_tcp_addresses: Vec<String>,
    /// lookupd HTTP address (may be given multiple times)
    #[arg(long = "lookupd-http-address")]
    pub lookupd_http_addresses: Vec<String>,
    /// HTTP address to make a POST request to.  data will be in the body (may be given multiple times)
    #[arg(long = "post")]
    pub post: Vec<String>,
    /// HTTP address to make a GET request to. '%s' will be printf replaced with data (may be given multiple times)
    #[arg(long = "get")]
    pub get: Vec<String>,
    /// the Content-Type used for POST requests
    #[arg(long, default_value = DEFAULT_CONTENT_TYPE)]
    pub content_type: String,
    /// Custom header for HTTP requests, as 'Name: value' (may be given multiple times)
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// the upstream request mode options: round-robin, hostpool (default), epsilon-greedy (as hostpool), multicast
    #[arg(long, default_value = "hostpool")]
    pub mode: String,
    /// number of concurrent publishers
    #[arg(short = 'n', long = "n", default_value_t = 100)]
    pub n: usize,
    /// % of messages to publish (float b/w 0 -> 1)
    #[arg(long, default_value_t = 1.0)]
    pub sample: f64,
    /// max number of messages to allow in flight
    #[arg(long, default_value_t = 200)]
    pub max_in_flight: u32,
    /// the # of requests between logging status (per handler), 0 disables
    #[arg(long, default_value_t = 250)]
    pub status_every: usize,
    /// timeout for HTTP connect
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub http_client_connect_timeout: Duration,
    /// timeout for HTTP request
    #[arg(long, default_value = "20s", value_parser = duration)]
    pub http_client_request_timeout: Duration,
    /// option to passthrough to the consumer (may be given multiple times): name,value
    #[arg(long = "consumer-opt")]
    pub consumer_opts: Vec<String>,
    /// print version string
    #[arg(long)]
    pub version: bool,
}

/// What the flags describe, checked.
#[derive(Debug)]
pub struct Plan {
    /// Consumer settings.
    pub config: Config,
    /// How a message is sent.
    pub method: Method,
    /// The endpoints (URL templates for GET).
    pub addresses: Vec<String>,
    /// Which endpoint gets a message.
    pub mode: Mode,
    /// Headers of every request (`--content-type`, `--header`).
    pub headers: HeaderMap,
}

/// POST the body, or GET with the body in the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `--post`.
    Post,
    /// `--get`.
    Get,
}

impl Args {
    /// Checks the flags as nsq_to_http does.
    pub fn validate(&self) -> Result<Plan, Error> {
        let usage = |s: &str| Err(Error::Usage(s.to_string()));
        if self.topic.is_empty() || self.channel.is_empty() {
            return usage("--topic and --channel are required");
        }
        for name in [&self.topic, &self.channel] {
            if !nsq_server::protocol::is_valid_name(name) {
                return Err(Error::Usage(format!(
                    "invalid topic or channel name {name:?}"
                )));
            }
        }
        if self.content_type != DEFAULT_CONTENT_TYPE {
            if self.post.is_empty() {
                return usage("--content-type only used with --post");
            }
            if self.content_type.is_empty() {
                return usage("--content-type requires a value when used");
            }
        }
        if self.nsqd_tcp_addresses.is_empty() && self.lookupd_http_addresses.is_empty() {
            return usage("--nsqd-tcp-address or --lookupd-http-address required");
        }
        if !self.nsqd_tcp_addresses.is_empty() && !self.lookupd_http_addresses.is_empty() {
            return usage("use --nsqd-tcp-address or --lookupd-http-address not both");
        }
        let (method, addresses) = match (self.get.is_empty(), self.post.is_empty()) {
            (true, true) => return usage("--get or --post required"),
            (false, false) => return usage("use --get or --post not both"),
            (true, false) => (Method::Post, self.post.clone()),
            (false, true) => (Method::Get, self.get.clone()),
        };
        if method == Method::Get && self.get.iter().any(|g| g.matches("%s").count() != 1) {
            return usage("invalid GET address - must be a printf string");
        }
        for address in &addresses {
            let url = address.replace("%s", "");
            if let Err(e) = reqwest::Url::parse(&url) {
                return Err(Error::Usage(format!("invalid address {address:?}: {e}")));
            }
        }
        let mode = Mode::parse(&self.mode, true).map_err(Error::Usage)?;
        if !(0.0..=1.0).contains(&self.sample) {
            return usage("--sample must be between 0.0 and 1.0");
        }
        if self.n == 0 || self.max_in_flight == 0 {
            return usage("--n and --max-in-flight must be positive");
        }
        let mut headers = HeaderMap::new();
        let agent = format!("nsq_to_http v{}", nsq_server::version::NSQ_VERSION);
        headers.insert(USER_AGENT, header_value(&agent)?);
        if method == Method::Post {
            headers.insert(CONTENT_TYPE, header_value(&self.content_type)?);
        }
        for header in &self.headers {
            let (name, value) = parse_header(header)?;
            headers.insert(name, value);
        }
        let mut config = Config {
            max_in_flight: self.max_in_flight,
            handler_concurrency: self.n,
            user_agent: agent,
            ..Config::default()
        };
        for opt in &self.consumer_opts {
            apply_consumer_opt(&mut config, opt).map_err(|e| Error::Usage(e.to_string()))?;
        }
        Ok(Plan {
            config,
            method,
            addresses,
            mode,
            headers,
        })
    }
}

fn header_value(text: &str) -> Result<HeaderValue, Error> {
    HeaderValue::from_str(text).map_err(|_| Error::Usage(format!("invalid header value {text:?}")))
}

/// `Name: value` (both trimmed, neither empty), as NSQ's `--header`.
fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), Error> {
    let bad = || {
        Error::Usage(format!(
            "invalid --header {text:?}: format should be 'Name: value'"
        ))
    };
    let (name, value) = text.split_once(':').ok_or_else(bad)?;
    let (name, value) = (name.trim(), value.trim());
    if name.is_empty() || value.is_empty() {
        return Err(bad());
    }
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
    let value = HeaderValue::from_str(value).map_err(|_| bad())?;
    Ok((name, value))
}

/// Go's `url.QueryEscape`, which NSQ applies to the body for `%s`: letters, digits and
/// `-_.~` stay, a space becomes `+`, every other byte `%XX`.
pub fn go_query_escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &byte in bytes {
        match byte {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Sends messages to the endpoints and keeps the status lines.
struct Sender {
    http: reqwest::Client,
    method: Method,
    addresses: Vec<String>,
    picker: Picker,
    sample: f64,
    per_address: Vec<TimerMetrics>,
    aggregate: TimerMetrics,
}

impl Sender {
    /// Every picked endpoint, in order, until one fails (that failure REQs the message).
    async fn deliver(&self, body: Bytes) -> Result<(), String> {
        if self.sample < 1.0 && rand::thread_rng().gen::<f64>() > self.sample {
            return Ok(());
        }
        let start = Instant::now();
        for index in self.picker.pick() {
            let started = Instant::now();
            let result = self.send(&self.addresses[index], &body).await;
            self.picker.mark(index, result.is_ok());
            result?;
            self.per_address[index].status(started);
        }
        self.aggregate.status(start);
        Ok(())
    }

    async fn send(&self, address: &str, body: &Bytes) -> Result<(), String> {
        let (request, accepted): (_, fn(u16) -> bool) = match self.method {
            Method::Post => (self.http.post(address).body(body.clone()), |s| {
                (200..300).contains(&s)
            }),
            Method::Get => {
                let url = address.replacen("%s", &go_query_escape(body), 1);
                (self.http.get(url), |s| s == 200)
            }
        };
        let reply = request.send().await.map_err(describe)?;
        let status = reply.status().as_u16();
        // Read the body so the connection can be reused.
        let _ = reply.bytes().await;
        if accepted(status) {
            Ok(())
        } else {
            Err(format!("got status code {status}"))
        }
    }
}

/// reqwest's error with its causes on one line.
fn describe(e: reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text.replace('\n', " ")
}

/// A reqwest client over rustls trusting the system roots, with NSQ's two timeouts.
fn http_client(plan: &Plan, args: &Args) -> Result<reqwest::Client, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot use is skipped, as Go skips it.
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Http(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(args.http_client_connect_timeout)
        .timeout(args.http_client_request_timeout)
        .default_headers(plan.headers.clone())
        .pool_max_idle_per_host(args.n)
        .build()
        .map_err(|e| Error::Http(describe(e)))
}

/// Runs until SIGTERM/SIGINT (then CLS, waits for the requests in flight, and returns `Ok`).
pub async fn run(args: &Args) -> Result<(), Error> {
    let plan = args.validate()?;
    let http = http_client(&plan, args)?;
    // One endpoint: its own line would repeat the aggregate one, so NSQ leaves it out.
    let per_address_every = if plan.addresses.len() == 1 {
        0
    } else {
        args.status_every
    };
    let sender = Arc::new(Sender {
        http,
        method: plan.method,
        picker: Picker::new(plan.mode, plan.addresses.len()),
        per_address: plan
            .addresses
            .iter()
            .map(|a| TimerMetrics::new(per_address_every, &format!("[{a}]:")))
            .collect(),
        addresses: plan.addresses,
        sample: args.sample,
        aggregate: TimerMetrics::new(args.status_every, "[aggregate]:"),
    });
    let consumer = Consumer::new(
        &args.topic,
        &args.channel,
        plan.config,
        move |m: Message| {
            let sender = sender.clone();
            async move { sender.deliver(m.body.clone()).await.map_err(Into::into) }
        },
    )?;
    let connected = cli::connect_consumer(
        &consumer,
        &args.nsqd_tcp_addresses,
        &args.lookupd_http_addresses,
    );
    if let Err(e) = connected.await {
        consumer.stop().await;
        return Err(e.into());
    }
    nsq_server::signals::terminated().await;
    tracing::info!("stopping");
    consumer.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_escaped_as_go_query_escape_does() {
        assert_eq!(
            go_query_escape("a b/c?d=é~*".as_bytes()),
            "a+b%2Fc%3Fd%3D%C3%A9~%2A"
        );
    }

    #[test]
    fn headers_parse_as_nsq_takes_them() {
        let (name, value) = parse_header("X-B:  two:three ").expect("valid");
        assert_eq!(
            (name.as_str(), value.to_str().ok()),
            ("x-b", Some("two:three"))
        );
        for bad in ["bad", "X:", " : v", "X=1"] {
            assert!(parse_header(bad).is_err(), "{bad}");
        }
    }
}
