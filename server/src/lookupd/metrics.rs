//! Prometheus `/metrics` on nsqlookupd (NSQ has none): what the registration database holds,
//! in the OpenMetrics text format through the official `prometheus-client` crate. Each scrape
//! reads the database once, under its lock, and builds a fresh registry, so nothing is
//! counted on the registration path.

use super::registry::{Category, Registry as Db};
use super::Lookupd;
use crate::nsqd::metrics::{gauge, labels, set, Labels};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, HashSet};

/// The whole `/metrics` answer.
pub fn render(lookupd: &Lookupd) -> Result<String, std::fmt::Error> {
    let counts = Counts::of(&lookupd.registry(), lookupd);
    let mut r = Registry::with_prefix("nsq_lookupd");
    let none = Labels::new();
    let producers = gauge(
        &mut r,
        "producers",
        "nsqd instances heard from within --inactive-producer-timeout",
        None,
    );
    set(&producers, &none, counts.producers as f64);
    let topics = gauge(&mut r, "topics", "Topics registered", None);
    set(&topics, &none, counts.topics as f64);
    let channels = gauge(&mut r, "channels", "Channels registered", None);
    set(&channels, &none, counts.channels as f64);
    let registrations = gauge(
        &mut r,
        "registrations",
        "Producer registrations (an nsqd registered for a topic, a channel, or as a client)",
        None,
    );
    for (category, n) in &counts.registrations {
        set(
            &registrations,
            &labels(&[("category", category)]),
            *n as f64,
        );
    }
    let tombstones = gauge(
        &mut r,
        "tombstones",
        "Topic producers tombstoned less than --tombstone-lifetime ago",
        None,
    );
    set(&tombstones, &none, counts.tombstones as f64);
    let topic_producers = gauge(
        &mut r,
        "topic_producers",
        "Producers /lookup returns for the topic (active, not tombstoned)",
        None,
    );
    for (topic, n) in &counts.topic_producers {
        set(&topic_producers, &labels(&[("topic", topic)]), *n as f64);
    }
    let mut out = String::new();
    encode(&mut out, &r)?;
    Ok(out)
}

/// The numbers of one scrape, taken while the database is locked.
#[derive(Debug, Default)]
struct Counts {
    producers: usize,
    topics: usize,
    channels: usize,
    registrations: BTreeMap<&'static str, usize>,
    tombstones: usize,
    topic_producers: BTreeMap<String, usize>,
}

impl Counts {
    fn of(db: &Db, lookupd: &Lookupd) -> Counts {
        let opts = &lookupd.opts;
        let mut c = Counts::default();
        for category in [Category::Client, Category::Topic, Category::Channel] {
            c.registrations.insert(category.as_str(), 0);
        }
        let mut active = HashSet::new();
        for (r, producers) in db.all() {
            *c.registrations.entry(r.category.as_str()).or_default() += producers.len();
            match r.category {
                Category::Client => {
                    active.extend(
                        producers
                            .values()
                            .filter(|p| p.peer.is_active(opts.inactive_producer_timeout))
                            .map(|p| p.peer.id.clone()),
                    );
                }
                Category::Topic => {
                    c.topics += 1;
                    c.tombstones += producers
                        .values()
                        .filter(|p| p.is_tombstoned(opts.tombstone_lifetime))
                        .count();
                    let serving = producers
                        .values()
                        .filter(|p| {
                            p.peer.is_active(opts.inactive_producer_timeout)
                                && !p.is_tombstoned(opts.tombstone_lifetime)
                        })
                        .count();
                    c.topic_producers.insert(r.key.clone(), serving);
                }
                Category::Channel => c.channels += 1,
            }
        }
        c.producers = active.len();
        c
    }
}
