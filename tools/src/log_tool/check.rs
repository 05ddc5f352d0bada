//! `nsq_log verify` and `nsq_log repair`: the engine's offline checker
//! ([`nsq_engine::check`]) with a progress bar on a terminal and a table (or JSON) for people
//! (or machines).

use super::format::{human_bytes, Table};
use super::{Error, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nsq_engine::check::{self, Finding, VerifyReport};
use nsq_engine::fs::RealFs;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Arguments of `nsq_log verify`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct VerifyArgs {
    /// Only this topic.
    #[arg(long)]
    pub topic: Option<String>,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `nsq_log repair`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RepairArgs {
    /// Only this topic.
    #[arg(long)]
    pub topic: Option<String>,
    /// Report what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The data directory, which must exist (the tools never create one).
fn existing_dir(path: &Path) -> Result<PathBuf> {
    let path = std::fs::canonicalize(path).map_err(|_| Error::MissingDataDir {
        path: path.to_path_buf(),
    })?;
    if !path.is_dir() || !(path.join("meta").is_file() || path.join("topics").is_dir()) {
        return Err(Error::NotADataDir { path });
    }
    Ok(path)
}

fn engine_error(e: nsq_engine::Error) -> Error {
    match e {
        nsq_engine::Error::Locked { path } => Error::Locked { path },
        nsq_engine::Error::TopicNotFound(t) => Error::TopicNotFound(t),
        other => Error::Engine(other),
    }
}

/// A byte-counting progress bar on stderr when it is a terminal, hidden otherwise.
fn progress_bar(total: u64, verb: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(&format!(
        "{verb} [{{bar:40}}] {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, {{eta}} left)"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar
}

fn relative(data: &Path, path: &Path) -> String {
    path.strip_prefix(data)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn findings_table(data: &Path, findings: &[Finding], out: &mut dyn Write) -> Result<()> {
    table_of(data, findings, "PROBLEM", out)
}

fn table_of(data: &Path, findings: &[Finding], what: &str, out: &mut dyn Write) -> Result<()> {
    let mut table = Table::new();
    table.row(["KIND", "FILE", "BYTE", "OFFSET", what]);
    for f in findings {
        let kind = serde_json::to_value(f.kind)?;
        table.row([
            kind.as_str().unwrap_or("").to_string(),
            relative(data, &f.path),
            f.position.map_or("-".into(), |p| p.to_string()),
            f.offset.map_or("-".into(), |o| o.to_string()),
            f.detail.clone(),
        ]);
    }
    table.render(out)
}

/// The notes of a report (states nsqd resolves on start by itself), if any.
fn notes(data: &Path, report: &VerifyReport, out: &mut dyn Write) -> Result<()> {
    if report.notes.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "{} note(s): what a crash leaves behind; nsqd resolves these on start, losing nothing (`nsq_log repair` tidies them):",
        report.notes.len()
    )?;
    table_of(data, &report.notes, "NOTE", out)
}

fn summary(report: &VerifyReport) -> String {
    format!(
        "{} topic(s), {} segment(s), {} record(s), {}",
        report.topics,
        report.segments,
        report.records,
        human_bytes(report.bytes)
    )
}

fn run_verify(data: &Path, topic: Option<&str>, verb: &str) -> Result<VerifyReport> {
    // Without a readable meta there is no total; verify and repair report that themselves.
    let total = check::total_bytes(&RealFs, data, topic).unwrap_or(0);
    let bar = progress_bar(total, verb);
    let report = check::verify(&RealFs, data, topic, &mut |n| bar.inc(n)).map_err(engine_error)?;
    bar.finish_and_clear();
    Ok(report)
}

/// `nsq_log verify`: exit 0 when sound, else the table of findings and [`Error::Unsound`].
pub fn verify(data: &Path, args: &VerifyArgs, out: &mut dyn Write) -> Result<()> {
    let data = existing_dir(data)?;
    let report = run_verify(&data, args.topic.as_deref(), "verifying")?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(out, "verified {}", summary(&report))?;
        if report.is_sound() {
            writeln!(out, "no problems found")?;
        } else {
            findings_table(&data, &report.findings, out)?;
        }
        notes(&data, &report, out)?;
    }
    if report.is_sound() {
        Ok(())
    } else {
        Err(Error::Unsound {
            problems: report.findings.len(),
        })
    }
}

/// `nsq_log repair`: fixes what verify finds, then verifies again.
pub fn repair(data: &Path, args: &RepairArgs, out: &mut dyn Write) -> Result<()> {
    let data = existing_dir(data)?;
    let topic = args.topic.as_deref();
    let total = check::total_bytes(&RealFs, &data, topic).unwrap_or(0);
    let bar = progress_bar(total, "repairing");
    let report = check::repair(&RealFs, &data, topic, args.dry_run, &mut |n| bar.inc(n))
        .map_err(engine_error)?;
    bar.finish_and_clear();
    let after = if args.dry_run {
        None
    } else {
        Some(run_verify(&data, topic, "verifying")?)
    };
    if args.json {
        let doc = serde_json::json!({ "repair": report, "verify_after": after });
        serde_json::to_writer_pretty(&mut *out, &doc)?;
        writeln!(out)?;
    } else {
        let verb = if args.dry_run { "would do" } else { "did" };
        if report.actions.is_empty() {
            writeln!(out, "nothing to repair")?;
        } else {
            let mut table = Table::new();
            table.row(["FILE", &format!("WHAT REPAIR {}", verb.to_uppercase())]);
            for a in &report.actions {
                table.row([relative(&data, &a.path), a.what.clone()]);
            }
            table.render(out)?;
            writeln!(
                out,
                "{} record(s) unreadable (now holes, skipped by every channel), {} quarantined",
                report.records_lost,
                human_bytes(report.bytes_quarantined)
            )?;
        }
        if let Some(after) = &after {
            if after.is_sound() {
                writeln!(out, "verify after repair: {}, no problems", summary(after))?;
            } else {
                writeln!(out, "verify after repair still finds problems:")?;
                findings_table(&data, &after.findings, out)?;
            }
            notes(&data, after, out)?;
        }
    }
    match after {
        Some(a) if !a.is_sound() => Err(Error::Unsound {
            problems: a.findings.len(),
        }),
        _ => Ok(()),
    }
}
