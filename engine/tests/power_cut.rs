//! Power cuts and I/O faults on the simulated disk: what each sync policy keeps, and that
//! failures surface as typed errors, never as silent loss.

mod common;

use common::*;
use nsq_engine::fs::{SimFaults, SimFs};
use nsq_engine::{Engine, Error, ManualClock, Options, SyncPolicy};
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn options(fs: &SimFs, clock: &Arc<ManualClock>, sync: SyncPolicy) -> Options {
    Options {
        sync,
        ..sim_options(fs, clock)
    }
}

/// Several appenders with `sync_every = 1`; the machine dies at a random moment (every write
/// and fsync fails from then on, then unsynced bytes are lost, some partially kept). Every
/// acknowledged message is there after reopen, in each appender's order.
#[test]
fn strict_sync_loses_nothing_acknowledged_across_random_power_cuts() {
    let (fs, clock) = sim();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    for round in 0..12 {
        let engine = Arc::new(
            Engine::open("/data", options(&fs, &clock, SyncPolicy::always())).expect("open"),
        );
        let topic = engine.create_topic("t").expect("topic");
        let dead = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..4)
            .map(|w| {
                let (topic, acked, dead) = (topic.clone(), acked.clone(), dead.clone());
                std::thread::spawn(move || {
                    let mut i = 0;
                    while !dead.load(Ordering::SeqCst) && i < 2000 {
                        let batch: Vec<String> = (0..1 + i % 3)
                            .map(|k| format!("r{round}w{w}i{i}k{k}"))
                            .collect();
                        if topic.publish(&batch, 0).is_ok() {
                            acked.lock().expect("lock").extend(batch);
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..3000)));
        fs.set_faults(SimFaults {
            fail_sync: true,
            fail_writes: true,
            ..SimFaults::default()
        });
        dead.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().expect("appender");
        }
        drop(topic);
        drop(engine);
        fs.power_cut_with(&mut rng);
        fs.set_faults(SimFaults::default());
        let engine =
            Engine::open("/data", options(&fs, &clock, SyncPolicy::always())).expect("reopen");
        let present: std::collections::HashSet<String> =
            log_bodies(&engine, "t").into_iter().collect();
        let acked = acked.lock().expect("lock");
        let missing = acked.iter().filter(|m| !present.contains(*m)).count();
        assert_eq!(
            missing,
            0,
            "round {round}: {missing} of {} acknowledged messages lost",
            acked.len()
        );
    }
    assert!(
        acked.lock().expect("lock").len() > 100,
        "the workload did publish"
    );
}

/// With `sync_every = N`, a power cut loses at most the messages after the last fsync, and
/// the log that remains is a clean prefix of what was published.
#[test]
fn sync_every_n_loses_at_most_the_unsynced_suffix() {
    let (fs, clock) = sim();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let every = 10u64;
    let policy = SyncPolicy {
        every,
        timeout: Duration::from_secs(3600),
    };
    for round in 0..20 {
        let published: Vec<String> = {
            let engine = Engine::open("/data", options(&fs, &clock, policy)).expect("open");
            let topic = engine.create_topic("t").expect("topic");
            let before = log_bodies(&engine, "t");
            let n = rng.gen_range(1..60);
            let mut all = before;
            for i in 0..n {
                let body = format!("r{round}m{i}");
                topic.publish(&[body.as_str()], 0).expect("publish");
                all.push(body);
            }
            all
        };
        fs.power_cut_with(&mut rng);
        let engine = Engine::open("/data", options(&fs, &clock, policy)).expect("reopen");
        let kept = log_bodies(&engine, "t");
        assert_eq!(
            &published[..kept.len()],
            &kept[..],
            "round {round}: the log is a prefix of what was published"
        );
        assert!(
            ((published.len() - kept.len()) as u64) < every,
            "round {round}: lost {} > {}",
            published.len() - kept.len(),
            every - 1
        );
    }
}

#[test]
fn failed_fsync_poisons_the_log_until_reopen() {
    let (fs, clock) = sim();
    let engine = Engine::open("/data", options(&fs, &clock, SyncPolicy::always())).expect("open");
    let topic = engine.create_topic("t").expect("topic");
    topic.publish(&["ok"], 0).expect("publish");
    fs.set_faults(SimFaults {
        fail_sync: true,
        ..SimFaults::default()
    });
    assert!(matches!(
        topic.publish(&["lost?"], 0),
        Err(Error::Io { .. })
    ));
    fs.set_faults(SimFaults::default());
    match topic.publish(&["refused"], 0) {
        Err(e @ Error::Poisoned { .. }) => assert!(e.to_string().contains("restart"), "{e}"),
        other => panic!("expected Poisoned, got {other:?}"),
    }
    drop(topic);
    drop(engine);
    let engine = Engine::open("/data", options(&fs, &clock, SyncPolicy::always())).expect("reopen");
    engine
        .topic("t")
        .expect("topic")
        .publish(&["after"], 0)
        .expect("appends again after reopen");
    let bodies = log_bodies(&engine, "t");
    assert_eq!(bodies.first().map(String::as_str), Some("ok"));
    assert_eq!(bodies.last().map(String::as_str), Some("after"));
}

#[test]
fn failed_writes_and_a_full_disk_leave_no_partial_records_and_recover() {
    let (fs, clock) = sim();
    let engine = Engine::open("/data", options(&fs, &clock, SyncPolicy::always())).expect("open");
    let topic = engine.create_topic("t").expect("topic");
    topic.publish(&["one"], 0).expect("publish");
    fs.set_faults(SimFaults {
        fail_writes: true,
        ..SimFaults::default()
    });
    assert!(matches!(topic.publish(&["two"], 0), Err(Error::Io { .. })));
    fs.set_faults(SimFaults {
        space_limit: Some(fs.total_bytes() + 30),
        ..SimFaults::default()
    });
    match topic.publish(&["three, which does not fit"], 0) {
        Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(28)),
        other => panic!("expected ENOSPC, got {other:?}"),
    }
    fs.set_faults(SimFaults::default());
    topic
        .publish(&["four"], 0)
        .expect("publishing resumes once space is back");
    assert_eq!(log_bodies(&engine, "t"), vec!["one", "four"]);
    drop(topic);
    drop(engine);
    let engine = Engine::open("/data", options(&fs, &clock, SyncPolicy::always())).expect("reopen");
    assert_eq!(log_bodies(&engine, "t"), vec!["one", "four"]);
    assert!(
        engine.recovery_events().is_empty(),
        "{:?}",
        engine.recovery_events()
    );
}
