//! Model-based test: random sequences of appends, channel operations, clean reopens, crashes
//! and power cuts, checked against what a simple model says must hold:
//! - every channel sees every acknowledged message at least once, with the published body;
//! - nothing finished and persisted comes back after a reopen;
//! - after a crash or power cut (with `sync_every = 1`) nothing acknowledged is missing;
//! - attempts count up on every redelivery while the engine stays up.

mod common;

use common::*;
use nsq_engine::fs::SimFs;
use nsq_engine::{ChannelStart, Delivery, Engine, ManualClock};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const CHANNELS: [&str; 2] = ["a", "b"];

#[derive(Debug, Clone)]
enum Op {
    Publish(usize),
    Take(usize, usize),
    Finish(usize, usize),
    Requeue(usize, usize, i64),
    Advance(i64),
    Persist,
    CloseReopen,
    Crash,
    PowerCut,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..30).prop_map(Op::Publish),
        4 => (0..2usize, 1usize..20).prop_map(|(c, n)| Op::Take(c, n)),
        4 => (0..2usize, 0usize..50).prop_map(|(c, k)| Op::Finish(c, k)),
        2 => (0..2usize, 0usize..50, 0i64..3).prop_map(|(c, k, d)| Op::Requeue(c, k, d)),
        2 => (0i64..90).prop_map(Op::Advance),
        1 => Just(Op::Persist),
        1 => Just(Op::CloseReopen),
        1 => Just(Op::Crash),
        1 => Just(Op::PowerCut),
    ]
}

struct Model {
    /// Bodies of acknowledged messages, by offset.
    published: Vec<String>,
    /// Per channel: offsets ever delivered.
    seen: [BTreeSet<u64>; 2],
    /// Per channel: deliveries in flight this engine lifetime.
    in_flight: [Vec<Delivery>; 2],
    /// Per channel: finished offsets, and those a persisted cursor records as finished.
    finished: [BTreeSet<u64>; 2],
    durably_finished: [BTreeSet<u64>; 2],
    /// Per channel: highest attempts seen per offset this engine lifetime.
    attempts: [BTreeMap<u64, u16>; 2],
}

fn open_engine(fs: &SimFs, clock: &Arc<ManualClock>) -> Engine {
    let engine = open(fs, clock);
    for name in CHANNELS {
        engine
            .create_channel("t", name, ChannelStart::Default)
            .expect("channel");
    }
    engine
}

fn check_delivery(model: &mut Model, c: usize, d: &Delivery) {
    let body = model
        .published
        .get(d.offset as usize)
        .unwrap_or_else(|| panic!("offset {} was never acknowledged", d.offset));
    assert_eq!(d.body, body.as_bytes(), "body of offset {}", d.offset);
    assert!(
        !model.durably_finished[c].contains(&d.offset),
        "channel {c}: offset {} was finished and persisted, yet came back",
        d.offset
    );
    if let Some(&previous) = model.attempts[c].get(&d.offset) {
        assert!(
            d.attempts > previous,
            "attempts must count up: {} after {previous}",
            d.attempts
        );
    }
    model.attempts[c].insert(d.offset, d.attempts);
    model.seen[c].insert(d.offset);
}

fn restart(model: &mut Model, clean: bool) {
    for c in 0..2 {
        model.in_flight[c].clear();
        model.attempts[c].clear();
        if clean {
            model.durably_finished[c] = model.finished[c].clone();
        } else {
            model.finished[c] = model.durably_finished[c].clone();
        }
    }
}

fn run(ops: Vec<Op>) {
    let (fs, clock) = sim();
    let mut engine = open_engine(&fs, &clock);
    let mut model = Model {
        published: Vec::new(),
        seen: Default::default(),
        in_flight: Default::default(),
        finished: Default::default(),
        durably_finished: Default::default(),
        attempts: Default::default(),
    };
    for op in ops {
        match op {
            Op::Publish(n) => {
                let start = model.published.len();
                let bodies: Vec<String> = (start..start + n).map(|i| format!("msg-{i}")).collect();
                let appended = engine
                    .topic("t")
                    .expect("topic")
                    .publish(&bodies, 0)
                    .expect("publish");
                assert_eq!(appended.first_offset as usize, start);
                model.published.extend(bodies);
            }
            Op::Take(c, n) => {
                let channel = engine.channel("t", CHANNELS[c]).expect("channel");
                let mut out = Vec::new();
                channel
                    .take(engine.now(), 1, 60 * SEC, n, &mut out)
                    .expect("take");
                for d in &out {
                    check_delivery(&mut model, c, d);
                }
                model.in_flight[c].extend(out);
            }
            Op::Finish(c, k) | Op::Requeue(c, k, _) if model.in_flight[c].is_empty() => {
                let _ = k;
            }
            Op::Finish(c, k) => {
                let i = k % model.in_flight[c].len();
                let d = model.in_flight[c].swap_remove(i);
                let channel = engine.channel("t", CHANNELS[c]).expect("channel");
                // It may have timed out meanwhile; then FIN fails, like NSQ's E_FIN_FAILED.
                if channel.finish(1, &d.id).is_ok() {
                    model.finished[c].insert(d.offset);
                }
            }
            Op::Requeue(c, k, delay) => {
                let i = k % model.in_flight[c].len();
                let d = model.in_flight[c].swap_remove(i);
                let channel = engine.channel("t", CHANNELS[c]).expect("channel");
                let _ = channel.requeue(1, &d.id, engine.now(), delay * SEC);
            }
            Op::Advance(s) => {
                clock.advance(s * SEC);
                let _ = engine.tick().expect("tick");
            }
            Op::Persist => {
                engine.persist_cursors().expect("persist");
                for c in 0..2 {
                    model.durably_finished[c] = model.finished[c].clone();
                }
            }
            Op::CloseReopen => {
                engine.close().expect("close");
                restart(&mut model, true);
                engine = open_engine(&fs, &clock);
            }
            Op::Crash => {
                drop(engine);
                restart(&mut model, false);
                engine = open_engine(&fs, &clock);
            }
            Op::PowerCut => {
                drop(engine);
                fs.power_cut();
                restart(&mut model, false);
                engine = open_engine(&fs, &clock);
                assert_eq!(
                    engine.topic("t").expect("topic").storage().end_offset() as usize,
                    model.published.len(),
                    "acknowledged messages lost in a power cut"
                );
            }
        }
    }
    // Drain: past every delay and timeout, everything unfinished must come out.
    for (c, name) in CHANNELS.iter().enumerate() {
        let channel = engine.channel("t", name).expect("channel");
        clock.advance(3600 * SEC);
        channel.expire(engine.now());
        let mut out = Vec::new();
        while channel
            .take(engine.now(), 1, 60 * SEC, 100, &mut out)
            .expect("take")
            > 0
        {}
        for d in &out {
            check_delivery(&mut model, c, d);
            channel.finish(1, &d.id).expect("finish");
        }
        let all: BTreeSet<u64> = (0..model.published.len() as u64).collect();
        assert_eq!(model.seen[c], all, "channel {c} must see every message");
        assert_eq!(channel.stats(engine.now()).in_flight, 0);
        assert_eq!(channel.floor(), model.published.len() as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops);
    }
}
