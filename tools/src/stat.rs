//! `nsq_stat`: polls `/stats` of the nsqd that hold a topic and prints NSQ's rolling table
//! for one channel, summed over those nsqd.

use crate::cli::duration;
use crate::client::lookup::query_escape;
use crate::client::{self, HttpClient};
use clap::Parser;
use serde_json::Value;
use std::io::Write;
use std::time::Duration;
use thiserror::Error;

/// What can stop nsq_stat.
#[derive(Debug, Error)]
pub enum Error {
    /// Bad flags.
    #[error("{0}")]
    Usage(String),
    /// No server answered.
    #[error(transparent)]
    Client(#[from] client::Error),
    /// stdout failed.
    #[error("writing to stdout: {0}")]
    Output(std::io::Error),
}

/// nsq_stat's flags (NSQ v1.3.0 names and defaults).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "nsq_stat",
    disable_version_flag = true,
    about = "Poll /stats and print a rolling table for one NSQ topic/channel"
)]
pub struct Args {
    /// NSQ topic
    #[arg(long, default_value = "")]
    pub topic: String,
    /// NSQ channel
    #[arg(long, default_value = "")]
    pub channel: String,
    /// nsqd HTTP address (may be given multiple times)
    #[arg(long = "nsqd-http-address")]
    pub nsqd_http_addresses: Vec<String>,
    /// lookupd HTTP address (may be given multiple times)
    #[arg(long = "lookupd-http-address")]
    pub lookupd_http_addresses: Vec<String>,
    /// duration of time between polling/printing output
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub interval: Duration,
    /// number of reports (0: forever)
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// timeout for HTTP connect
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub http_client_connect_timeout: Duration,
    /// timeout for HTTP request
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub http_client_request_timeout: Duration,
    /// print version
    #[arg(long)]
    pub version: bool,
}

impl Args {
    /// Checks the flags as nsq_stat does.
    pub fn validate(&self) -> Result<(), Error> {
        let usage = |s: &str| Err(Error::Usage(s.to_string()));
        if self.topic.is_empty() || self.channel.is_empty() {
            return usage("--topic and --channel are required");
        }
        if self.nsqd_http_addresses.is_empty() && self.lookupd_http_addresses.is_empty() {
            return usage("--nsqd-http-address or --lookupd-http-address required");
        }
        if !self.nsqd_http_addresses.is_empty() && !self.lookupd_http_addresses.is_empty() {
            return usage("use --nsqd-http-address or --lookupd-http-address not both");
        }
        if self.interval.is_zero() {
            return usage("--interval must be positive");
        }
        Ok(())
    }
}

/// One poll's channel counters, summed over nsqd.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Channel `depth`.
    pub depth: i64,
    /// Channel `backend_depth`.
    pub backend_depth: i64,
    /// `in_flight_count`.
    pub in_flight: i64,
    /// `deferred_count`.
    pub deferred: i64,
    /// `requeue_count`.
    pub requeued: i64,
    /// `timeout_count`.
    pub timed_out: i64,
    /// `message_count`.
    pub messages: i64,
    /// `client_count`.
    pub clients: i64,
}

impl Sample {
    fn add_channel(&mut self, c: &Value) {
        let n = |k: &str| c[k].as_i64().unwrap_or(0);
        self.depth += n("depth");
        self.backend_depth += n("backend_depth");
        self.in_flight += n("in_flight_count");
        self.deferred += n("deferred_count");
        self.requeued += n("requeue_count");
        self.timed_out += n("timeout_count");
        self.messages += n("message_count");
        self.clients += n("client_count");
    }
}

/// NSQ's two header lines.
pub fn header() -> String {
    format!(
        "------rate------+----------------depth----------------+--------------metadata---------------\n{:>7} {:>7} | {:>7} {:>7} {:>7} {:>5} {:>5} | {:>7} {:>7} {:>12} {:>7}\n",
        "ingress", "egress", "total", "mem", "disk", "inflt", "def", "req", "t-o", "msgs", "clients"
    )
}

/// One row: rates against the previous sample (zero on the first).
pub fn row(now: &Sample, before: Option<&Sample>, interval: Duration) -> String {
    let secs = interval.as_secs_f64();
    let (ingress, egress) = match before {
        Some(o) => (
            ((now.messages - o.messages) as f64 / secs) as i64,
            (((now.messages - now.depth) - (o.messages - o.depth)) as f64 / secs) as i64,
        ),
        None => (0, 0),
    };
    format!(
        "{:>7} {:>7} | {:>7} {:>7} {:>7} {:>5} {:>5} | {:>7} {:>7} {:>12} {:>7}\n",
        ingress,
        egress,
        now.depth,
        now.depth - now.backend_depth,
        now.backend_depth,
        now.in_flight,
        now.deferred,
        now.requeued,
        now.timed_out,
        now.messages,
        now.clients
    )
}

/// The nsqd HTTP addresses to poll: the given ones, or the topic's producers in lookupd.
async fn nsqd_addresses(args: &Args, http: &HttpClient) -> Result<Vec<String>, Error> {
    if !args.nsqd_http_addresses.is_empty() {
        return Ok(args.nsqd_http_addresses.clone());
    }
    let mut found = Vec::new();
    let mut last_error = None;
    let path = format!("/lookup?topic={}", query_escape(&args.topic));
    for lookupd in &args.lookupd_http_addresses {
        match http.get_json(lookupd, &path).await {
            Ok((_, value)) => {
                for p in value["producers"].as_array().into_iter().flatten() {
                    if let (Some(host), Some(port)) =
                        (p["broadcast_address"].as_str(), p["http_port"].as_u64())
                    {
                        let addr = format!("{host}:{port}");
                        if !found.contains(&addr) {
                            found.push(addr);
                        }
                    }
                }
            }
            Err(e) => last_error = Some(e),
        }
    }
    match last_error {
        Some(e) if found.is_empty() => Err(e.into()),
        _ => Ok(found),
    }
}

/// Polls every nsqd once. Fails only if none answered.
pub async fn sample(args: &Args, http: &HttpClient) -> Result<Sample, Error> {
    let path = format!(
        "/stats?format=json&topic={}&channel={}&include_clients=false",
        query_escape(&args.topic),
        query_escape(&args.channel)
    );
    let mut total = Sample::default();
    let mut answered = false;
    let mut last_error = None;
    for addr in nsqd_addresses(args, http).await? {
        match http.get_json(&addr, &path).await {
            Ok((200, stats)) => {
                answered = true;
                for topic in stats["topics"].as_array().into_iter().flatten() {
                    for channel in topic["channels"].as_array().into_iter().flatten() {
                        if channel["channel_name"] == args.channel.as_str() {
                            total.add_channel(channel);
                        }
                    }
                }
            }
            Ok((status, body)) => {
                last_error = Some(client::Error::Http {
                    url: client::url(&addr, &path),
                    reason: format!("status {status}: {body}"),
                })
            }
            Err(e) => last_error = Some(e),
        }
    }
    match last_error {
        Some(e) if !answered => Err(e.into()),
        _ => Ok(total),
    }
}

/// Prints `--count` rows (or forever), one per `--interval`, the header every 25 rows.
/// The first poll failing is an error; later failures are reported and skipped.
pub async fn run(args: &Args, out: &mut impl Write) -> Result<(), Error> {
    args.validate()?;
    let http = HttpClient::new(
        args.http_client_connect_timeout,
        args.http_client_request_timeout,
    )?;
    let mut previous: Option<Sample> = None;
    let mut printed = 0u64;
    let mut ticker = tokio::time::interval(args.interval);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let now = match sample(args, &http).await {
            Ok(s) => s,
            Err(e) if previous.is_some() => {
                tracing::error!("{e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut text = String::new();
        if printed.is_multiple_of(25) {
            text.push_str(&header());
        }
        text.push_str(&row(&now, previous.as_ref(), args.interval));
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(Error::Output)?;
        previous = Some(now);
        printed += 1;
        if args.count > 0 && printed >= args.count {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_nsq_layout() {
        let h = header();
        assert!(h.ends_with(
            "ingress  egress |   total     mem    disk inflt   def |     req     t-o         msgs clients\n"
        ));
        let s = Sample {
            depth: 5,
            backend_depth: 5,
            messages: 5,
            ..Sample::default()
        };
        let o = Sample {
            depth: 1,
            backend_depth: 1,
            messages: 1,
            ..Sample::default()
        };
        assert_eq!(
            row(&s, Some(&o), Duration::from_secs(1)),
            "      4       0 |       5       0       5     0     0 |       0       0            5       0\n"
        );
    }
}
