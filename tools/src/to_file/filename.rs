//! File names: NSQ's `--filename-format` tokens and `--datetime-format` (strftime).

use super::Error;
use chrono::format::{Item, StrftimeItems};

/// The parts of a file name fixed for a topic's life (`<DATETIME>` and `<REV>` vary).
#[derive(Debug, Clone)]
pub struct NameFormat {
    /// The format with `<TOPIC>`, `<HOST>`, `<PID>` replaced (and `.gz` added for gzip).
    pub template: String,
    datetime: String,
}

/// What `compute` needs from the flags.
pub struct NameOptions<'a> {
    /// `--filename-format`.
    pub filename_format: &'a str,
    /// `--datetime-format`.
    pub datetime_format: &'a str,
    /// `--host-identifier` (may use `<SHORT_HOST>` and `<HOSTNAME>`).
    pub host_identifier: &'a str,
    /// Whether `<REV>` is required (gzip, rotation or a separate work dir).
    pub needs_rev: bool,
    /// `--gzip`.
    pub gzip: bool,
}

impl NameFormat {
    /// Fills in the fixed tokens for `topic`, checking the formats as nsq_to_file does.
    pub fn compute(options: &NameOptions<'_>, topic: &str, hostname: &str) -> Result<Self, Error> {
        check_strftime(options.datetime_format)?;
        let short = hostname.split('.').next().unwrap_or(hostname);
        let identifier = if options.host_identifier.is_empty() {
            short.to_string()
        } else {
            options
                .host_identifier
                .replace("<SHORT_HOST>", short)
                .replace("<HOSTNAME>", hostname)
        };
        let mut template = options.filename_format.to_string();
        if options.needs_rev {
            if !template.contains("<REV>") {
                return Err(Error::Usage(
                    "missing <REV> in --filename-format when gzip, rotation, or work dir enabled"
                        .to_string(),
                ));
            }
        } else {
            template = template.replace("<REV>", "");
        }
        template = template
            .replace("<TOPIC>", topic)
            .replace("<HOST>", &identifier)
            .replace("<PID>", &std::process::id().to_string());
        if options.gzip && !template.ends_with(".gz") {
            template.push_str(".gz");
        }
        Ok(NameFormat {
            template,
            datetime: options.datetime_format.to_string(),
        })
    }

    /// The name for now, `<REV>` still in it.
    pub fn current(&self) -> String {
        let now = chrono::Local::now();
        let datetime = now.format(&self.datetime).to_string();
        self.template.replace("<DATETIME>", &datetime)
    }

    /// `name` with `<REV>` as NSQ writes it (`-000003`).
    pub fn with_rev(name: &str, rev: u32) -> String {
        name.replace("<REV>", &format!("-{rev:06}"))
    }
}

/// Refuses a strftime format chrono cannot render (rendering it would panic).
fn check_strftime(format: &str) -> Result<(), Error> {
    if StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) {
        return Err(Error::Usage(format!(
            "invalid --datetime-format {format:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options<'a>(format: &'a str, needs_rev: bool, gzip: bool) -> NameOptions<'a> {
        NameOptions {
            filename_format: format,
            datetime_format: "%Y-%m-%d_%H",
            host_identifier: "",
            needs_rev,
            gzip,
        }
    }

    #[test]
    fn tokens_are_replaced() {
        let f = NameFormat::compute(
            &options("<TOPIC>.<HOST><REV>.<DATETIME>.log", false, false),
            "t",
            "box.example.com",
        )
        .unwrap();
        assert!(f.template.starts_with("t.box.<DATETIME>"), "{}", f.template);
        let g = NameFormat::compute(
            &options("<TOPIC>.<HOST><REV>.<DATETIME>.log", true, true),
            "t",
            "box",
        )
        .unwrap();
        assert_eq!(g.template, "t.box<REV>.<DATETIME>.log.gz");
        assert_eq!(NameFormat::with_rev("a<REV>.log", 3), "a-000003.log");
        assert!(NameFormat::compute(&options("<TOPIC>.log", true, false), "t", "h").is_err());
        let bad = NameOptions {
            datetime_format: "%Q",
            ..options("<TOPIC>", false, false)
        };
        assert!(NameFormat::compute(&bad, "t", "h").is_err());
        let host = NameOptions {
            host_identifier: "<SHORT_HOST>-<HOSTNAME>",
            ..options("<HOST>", false, false)
        };
        assert_eq!(
            NameFormat::compute(&host, "t", "a.b").unwrap().template,
            "a-a.b"
        );
    }
}
