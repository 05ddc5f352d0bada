//! nsq_to_file against our nsqd: gzip with size rotation through a work dir (every finished
//! file moved, every file decompresses, with flate2 and with the system's zcat, to exactly
//! the published events), plain files named by NSQ's default format, topic discovery through
//! lookupd with --topic-pattern.

use nsq_tests::{archive_lines, http_get, http_post, Nsqd, Nsqlookupd, Tool};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

fn wait_for(what: &str, done: impl FnMut() -> bool) {
    nsq_tests::wait::until(what, Duration::from_secs(30), done)
}

fn channel_drained(nsqd: &Nsqd, topic: &str, channel: &str) -> bool {
    let stats = http_get(&nsqd.url(&format!("/stats?format=json&topic={topic}"))).json();
    let Some(channels) = stats["topics"][0]["channels"].as_array() else {
        return false;
    };
    channels
        .iter()
        .any(|c| c["channel_name"] == channel && c["depth"] == 0 && c["in_flight_count"] == 0)
}

fn publish(nsqd: &Nsqd, topic: &str, events: &[String]) {
    for chunk in events.chunks(250) {
        let body = chunk.join("\n");
        let reply = http_post(&nsqd.url(&format!("/mpub?topic={topic}")), body.as_bytes());
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
}

fn events(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "{{\"source\":\"{tag}\",\"n\":{i},\"pad\":\"{}\"}}",
                "x".repeat(i % 40)
            )
        })
        .collect()
}

fn dir_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

#[test]
fn gzip_rotation_and_work_dir_keep_exactly_every_event() {
    let nsqd = Nsqd::start(&[]);
    let all = events("gz", 3000);
    publish(&nsqd, "gz", &all[..1500]);
    let root = tempfile::tempdir().unwrap();
    let (out, work) = (root.path().join("out"), root.path().join("work"));
    let mut tool = Tool::spawn(
        "nsq_to_file",
        &[
            "--topic=gz",
            &format!("--nsqd-tcp-address={}", nsqd.tcp),
            &format!("--output-dir={}", out.display()),
            &format!("--work-dir={}", work.display()),
            "--gzip",
            "--gzip-level=1",
            "--rotate-size=20000",
            "--sync-interval=100ms",
            "--max-in-flight=100",
        ],
    );
    wait_for("first half archived", || {
        channel_drained(&nsqd, "gz", "nsq_to_file")
    });
    publish(&nsqd, "gz", &all[1500..]);
    wait_for("second half archived", || {
        let stats = http_get(&nsqd.url("/stats?format=json&topic=gz")).json();
        stats["topics"][0]["message_count"] == 3000 && channel_drained(&nsqd, "gz", "nsq_to_file")
    });
    // Rotated files were moved while running.
    assert!(!dir_is_empty(&out), "{}", tool.stderr());
    let status = tool.terminate();
    assert!(status.success(), "{}", tool.stderr());
    assert!(
        dir_is_empty(&work),
        "SIGTERM moves the last file out of the work dir"
    );

    let (lines, files) = archive_lines(&out);
    assert!(
        files.len() > 3,
        "rotation at 20 kB gives several files: {files:?}"
    );
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("gz.") && name.ends_with(".log.gz"),
            "{name}"
        );
        assert!(name.contains("-0000"), "<REV> as -NNNNNN: {name}");
        let zcat = std::process::Command::new("zcat").arg(file).output();
        if let Ok(zcat) = zcat {
            assert!(zcat.status.success(), "zcat {name}: {zcat:?}");
        }
    }
    assert_eq!(lines.len(), all.len(), "a clean run writes each event once");
    assert_eq!(
        lines.into_iter().collect::<BTreeSet<_>>(),
        all.into_iter().collect::<BTreeSet<_>>()
    );
}

#[test]
fn plain_files_use_nsq_default_names_and_topics_are_discovered_by_pattern() {
    let lookupd = Nsqlookupd::start(&[]);
    let nsqd = Nsqd::start(&[&format!("--lookupd-tcp-address={}", lookupd.tcp)]);
    for topic in ["logs_a", "other"] {
        publish(&nsqd, topic, &events(topic, 10));
    }
    wait_for("registration", || {
        let topics = http_get(&lookupd.url("/topics")).json();
        topics["topics"].as_array().is_some_and(|t| t.len() == 2)
    });
    let out = tempfile::tempdir().unwrap();
    let mut tool = Tool::spawn(
        "nsq_to_file",
        &[
            &format!("--lookupd-http-address={}", lookupd.http),
            "--topic-pattern=^logs_",
            "--topic-refresh=200ms",
            "--consumer-opt=lookupd_poll_interval,200ms",
            &format!("--output-dir={}", out.path().display()),
            "--sync-interval=100ms",
            "--host-identifier=archiver",
            "--channel=archive",
        ],
    );
    wait_for("logs_a archived", || {
        channel_drained(&nsqd, "logs_a", "archive")
    });
    // A topic that appears later is picked up at the next refresh.
    publish(&nsqd, "logs_b", &events("logs_b", 10));
    wait_for("logs_b archived", || {
        channel_drained(&nsqd, "logs_b", "archive")
    });
    assert!(tool.terminate().success(), "{}", tool.stderr());

    let (lines, files) = archive_lines(out.path());
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let hour = chrono::Local::now().format("%Y-%m-%d_%H").to_string();
    let previous_hour = (chrono::Local::now() - chrono::Duration::minutes(5))
        .format("%Y-%m-%d_%H")
        .to_string();
    for (name, topic) in names.iter().zip(["logs_a", "logs_b"]) {
        let ok = [&hour, &previous_hour]
            .iter()
            .any(|h| name == &format!("{topic}.archiver.{h}.log"));
        assert!(ok, "{name}");
    }
    assert_eq!(lines.len(), 20);
    assert!(lines.iter().all(|l| !l.contains("\"other\"")));
    // The other topic never got an archive channel.
    let stats = http_get(&nsqd.url("/stats?format=json&topic=other")).json();
    assert_eq!(
        stats["topics"][0]["channels"].as_array().map(Vec::len),
        Some(0)
    );
}

#[test]
fn rotate_interval_with_skip_empty_files_writes_only_files_with_messages() {
    let nsqd = Nsqd::start(&[]);
    let out = tempfile::tempdir().unwrap();
    let all = events("iv", 20);
    publish(&nsqd, "iv", &all[..10]);
    let mut tool = Tool::spawn(
        "nsq_to_file",
        &[
            "--topic=iv",
            &format!("--nsqd-tcp-address={}", nsqd.tcp),
            &format!("--output-dir={}", out.path().display()),
            "--rotate-interval=200ms",
            "--sync-interval=100ms",
            "--skip-empty-files",
        ],
    );
    wait_for("first batch", || {
        channel_drained(&nsqd, "iv", "nsq_to_file")
    });
    // Several intervals pass with nothing to write: no empty files appear.
    std::thread::sleep(Duration::from_millis(600));
    publish(&nsqd, "iv", &all[10..]);
    wait_for("second batch", || {
        let stats = http_get(&nsqd.url("/stats?format=json&topic=iv")).json();
        stats["topics"][0]["message_count"] == 20 && channel_drained(&nsqd, "iv", "nsq_to_file")
    });
    assert!(tool.terminate().success(), "{}", tool.stderr());
    let (lines, files) = archive_lines(out.path());
    assert_eq!(files.len(), 2, "{files:?}");
    for file in &files {
        assert!(
            std::fs::metadata(file).unwrap().len() > 0,
            "{file:?} is empty"
        );
    }
    assert_eq!(
        lines.into_iter().collect::<BTreeSet<_>>(),
        all.into_iter().collect::<BTreeSet<_>>()
    );
}
