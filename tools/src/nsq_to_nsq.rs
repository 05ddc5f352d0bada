//! `nsq_to_nsq`: consumes topics from nsqd or lookupd and publishes every message to other
//! nsqd. A message is FIN'd only once a destination answered `OK` to its PUB (a failed
//! publish REQs it with backoff), so killing either side loses nothing: at worst a message
//! published whose FIN had not reached the source is delivered twice.

use crate::cli::{self, apply_client_opt};
use crate::client::{self, Config, Consumer, Message, Producer};
use crate::json_filter::{JsonFilter, Verdict};
use crate::timer_metrics::TimerMetrics;
use crate::upstream::{Mode, Picker};
use clap::Parser;
use std::sync::Arc;
use std::time::Instant;
use thiserror::Error;

/// What can stop nsq_to_nsq.
#[derive(Debug, Error)]
pub enum Error {
    /// Bad flags.
    #[error("{0}")]
    Usage(String),
    /// Connecting or discovery failed.
    #[error(transparent)]
    Client(#[from] client::Error),
}

/// nsq_to_nsq's flags (NSQ v1.3.0 names and defaults).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "nsq_to_nsq",
    disable_version_flag = true,
    about = "Consume NSQ topics and publish every message to other nsqd; a message is FIN'd once a destination has it"
)]
pub struct Args {
    /// nsq topic (may be given multiple times)
    #[arg(long = "topic")]
    pub topics: Vec<String>,
    /// nsq channel
    #[arg(long, default_value = "nsq_to_nsq")]
    pub channel: String,
    /// use this destination topic for all consumed topics (default is consumed topic name)
    #[arg(long, default_value = "")]
    pub destination_topic: String,
    /// nsqd TCP address (may be given multiple times)
    #[arg(long = "nsqd-tcp-address")]
    pub nsqd_tcp_addresses: Vec<String>,
    /// lookupd HTTP address (may be given multiple times)
    #[arg(long = "lookupd-http-address")]
    pub lookupd_http_addresses: Vec<String>,
    /// destination nsqd TCP address (may be given multiple times)
    #[arg(long = "destination-nsqd-tcp-address")]
    pub destination_nsqd_tcp_addresses: Vec<String>,
    /// the upstream request mode options: round-robin, hostpool (default), epsilon-greedy (as hostpool)
    #[arg(long, default_value = "hostpool")]
    pub mode: String,
    /// for JSON messages: pass this field (may be given multiple times)
    #[arg(long = "whitelist-json-field")]
    pub whitelist_json_fields: Vec<String>,
    /// for JSON messages: only pass messages that contain this field
    #[arg(long, default_value = "")]
    pub require_json_field: String,
    /// for JSON messages: only pass messages in which the required field has this value
    #[arg(long, default_value = "")]
    pub require_json_value: String,
    /// max number of messages to allow in flight
    #[arg(long, default_value_t = 200)]
    pub max_in_flight: u32,
    /// the # of requests between logging status (per destination), 0 disables
    #[arg(long, default_value_t = 250)]
    pub status_every: usize,
    /// option to passthrough to nsq.Consumer (may be given multiple times): name,value
    #[arg(long = "consumer-opt")]
    pub consumer_opts: Vec<String>,
    /// option to passthrough to nsq.Producer (may be given multiple times): name,value
    #[arg(long = "producer-opt")]
    pub producer_opts: Vec<String>,
    /// print version string
    #[arg(long)]
    pub version: bool,
}

/// What the flags describe, checked.
#[derive(Debug)]
pub struct Plan {
    /// Consumer settings (`max_attempts` is handled by the relay, see [`Relay`]).
    pub consumer: Config,
    /// Producer settings.
    pub producer: Config,
    /// `max_attempts` from `--consumer-opt` (go-nsq's default 5; 0: unlimited).
    pub max_attempts: u16,
    /// Which destination gets a message.
    pub mode: Mode,
    /// The JSON filters.
    pub filter: JsonFilter,
}

impl Args {
    /// Checks the flags as nsq_to_nsq does.
    pub fn validate(&self) -> Result<Plan, Error> {
        let usage = |s: &str| Err(Error::Usage(s.to_string()));
        let valid = nsq_server::protocol::is_valid_name;
        if self.topics.is_empty() || self.channel.is_empty() {
            return usage("--topic and --channel are required");
        }
        if !self.topics.iter().all(|t| valid(t)) {
            return usage("--topic is invalid");
        }
        if !self.destination_topic.is_empty() && !valid(&self.destination_topic) {
            return usage("--destination-topic is invalid");
        }
        if !valid(&self.channel) {
            return usage("--channel is invalid");
        }
        if self.nsqd_tcp_addresses.is_empty() && self.lookupd_http_addresses.is_empty() {
            return usage("--nsqd-tcp-address or --lookupd-http-address required");
        }
        if !self.nsqd_tcp_addresses.is_empty() && !self.lookupd_http_addresses.is_empty() {
            return usage("use --nsqd-tcp-address or --lookupd-http-address not both");
        }
        if self.destination_nsqd_tcp_addresses.is_empty() {
            return usage("--destination-nsqd-tcp-address required");
        }
        if self.max_in_flight == 0 {
            return usage("--max-in-flight must be positive");
        }
        let mode = Mode::parse(&self.mode, false).map_err(Error::Usage)?;
        let agent = format!(
            "nsq_to_nsq/{} nsq-tools/{}",
            nsq_server::version::NSQ_VERSION,
            env!("CARGO_PKG_VERSION")
        );
        let mut consumer = Config {
            user_agent: agent.clone(),
            ..Config::default()
        };
        for opt in &self.consumer_opts {
            apply_client_opt(&mut consumer, "--consumer-opt", opt).map_err(Error::Usage)?;
        }
        consumer.max_in_flight = self.max_in_flight;
        // A publish may wait as long as the destination takes: one handler per message in flight.
        consumer.handler_concurrency = self.max_in_flight as usize;
        let max_attempts = consumer.max_attempts;
        // The relay gives up only on messages the filters refuse, never on a failed publish.
        consumer.max_attempts = 0;
        let mut producer = Config {
            user_agent: agent,
            ..Config::default()
        };
        for opt in &self.producer_opts {
            apply_client_opt(&mut producer, "--producer-opt", opt).map_err(Error::Usage)?;
        }
        Ok(Plan {
            consumer,
            producer,
            max_attempts,
            mode,
            filter: JsonFilter {
                require_field: self.require_json_field.clone(),
                require_value: self.require_json_value.clone(),
                whitelist: self.whitelist_json_fields.clone(),
            },
        })
    }
}

/// Publishes consumed messages to the destinations.
///
/// Unlike go-nsq, a message is never given up (FIN'd unpublished) because the destinations
/// failed, however many attempts that takes; `max_attempts` only ends the REQ loop of
/// messages the JSON filters send back (NSQ's "missing field to check required value").
pub struct Relay {
    producers: Vec<Producer>,
    picker: Picker,
    filter: JsonFilter,
    max_attempts: u16,
    per_address: Vec<TimerMetrics>,
    aggregate: TimerMetrics,
}

impl Relay {
    /// Handles one message for `topic`: `Ok` FINs it, `Err` REQs it with backoff.
    pub async fn relay(&self, message: &Message, topic: &str) -> Result<(), String> {
        let body = match self.filter.apply(&message.body) {
            Verdict::Pass(body) => body,
            Verdict::Drop(why) => {
                tracing::info!("msg {} dropped: {why}", message.id_str());
                return Ok(());
            }
            Verdict::Requeue(why) => {
                if self.max_attempts > 0 && message.attempts > self.max_attempts {
                    tracing::warn!(
                        "msg {} attempted {} times, giving up: {why}",
                        message.id_str(),
                        message.attempts
                    );
                    return Ok(());
                }
                return Err(why);
            }
        };
        let start = Instant::now();
        let index = self.picker.pick().first().copied().unwrap_or(0);
        let result = self.producers[index].publish(topic, body).await;
        self.picker.mark(index, result.is_ok());
        self.per_address[index].status(start);
        self.aggregate.status(start);
        result.map_err(|e| format!("publishing to {}: {e}", self.producers[index].addr()))
    }
}

/// Runs until SIGTERM/SIGINT (then CLS, waits for the publishes in flight, and returns `Ok`).
pub async fn run(args: &Args) -> Result<(), Error> {
    let plan = args.validate()?;
    let destinations = &args.destination_nsqd_tcp_addresses;
    // One destination: its own line would repeat the aggregate one, so NSQ leaves it out.
    let per_address_every = if destinations.len() == 1 {
        0
    } else {
        args.status_every
    };
    let relay = Arc::new(Relay {
        producers: destinations
            .iter()
            .map(|a| Producer::new(a, plan.producer.clone()))
            .collect(),
        picker: Picker::new(plan.mode, destinations.len()),
        filter: plan.filter,
        max_attempts: plan.max_attempts,
        per_address: destinations
            .iter()
            .map(|a| TimerMetrics::new(per_address_every, &format!("[{a}]:")))
            .collect(),
        aggregate: TimerMetrics::new(args.status_every, "[aggregate]:"),
    });
    let mut consumers = Vec::new();
    let mut failure = None;
    for topic in &args.topics {
        let destination: Arc<str> = if args.destination_topic.is_empty() {
            topic.as_str().into()
        } else {
            args.destination_topic.as_str().into()
        };
        let relay = relay.clone();
        let consumer = Consumer::new(
            topic,
            &args.channel,
            plan.consumer.clone(),
            move |m: Message| {
                let (relay, destination) = (relay.clone(), destination.clone());
                async move { relay.relay(&m, &destination).await.map_err(Into::into) }
            },
        )?;
        let connected = cli::connect_consumer(
            &consumer,
            &args.nsqd_tcp_addresses,
            &args.lookupd_http_addresses,
        );
        let result = connected.await;
        consumers.push(consumer);
        if let Err(e) = result {
            failure = Some(e);
            break;
        }
    }
    if failure.is_none() {
        nsq_server::signals::terminated().await;
        tracing::info!("stopping");
    }
    for consumer in &consumers {
        consumer.stop().await;
    }
    for producer in &relay.producers {
        producer.stop().await;
    }
    failure.map_or(Ok(()), |e| Err(e.into()))
}
