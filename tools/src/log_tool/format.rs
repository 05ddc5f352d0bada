//! Formatting helpers shared by the `nsq_log` subcommands: times, sizes, durations, base64,
//! and a small text table.

use super::{Error, Result};
use chrono::{DateTime, SecondsFormat};
use std::io::Write;

/// A Unix-nanosecond time as RFC 3339 UTC with as many fractional digits as it needs
/// (`2024-05-01T12:00:00.123456789Z`); exact, so it can be fed back to `--since`.
pub fn rfc3339(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A Unix-nanosecond time as RFC 3339 UTC to the second (`2024-05-01T12:00:00Z`), for tables.
pub fn rfc3339_seconds(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses a time given on the command line: RFC 3339 (any offset) or Unix nanoseconds.
pub fn parse_time(value: &str) -> Result<i64> {
    let trimmed = value.trim();
    let invalid = |reason: String| Error::InvalidTime {
        value: value.to_string(),
        reason,
    };
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return trimmed
            .parse::<i64>()
            .map_err(|e| invalid(format!("not a Unix nanosecond count: {e}")));
    }
    let parsed = DateTime::parse_from_rfc3339(trimmed).map_err(|e| invalid(e.to_string()))?;
    parsed
        .timestamp_nanos_opt()
        .ok_or_else(|| invalid("outside the range of Unix nanoseconds (1677-2262)".to_string()))
}

/// A byte count in binary units with one decimal: `512 B`, `12.3 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration in nanoseconds, short and human: `350ms`, `4.2s`, `3m07s`, `5h02m`, `2d03h`.
/// Negative durations (clock skew) read as `0ms`.
pub fn human_duration(ns: i64) -> String {
    const MS: i64 = 1_000_000;
    const SEC: i64 = 1_000 * MS;
    let ns = ns.max(0);
    if ns < SEC {
        return format!("{}ms", ns / MS);
    }
    if ns < 60 * SEC {
        return format!("{:.1}s", ns as f64 / SEC as f64);
    }
    let secs = ns / SEC;
    let (days, hours, mins, secs) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if days > 0 {
        format!("{days}d{hours:02}h")
    } else if hours > 0 {
        format!("{hours}h{mins:02}m")
    } else {
        format!("{mins}m{secs:02}s")
    }
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Makes text safe for one tab-separated line: backslash, tab, newline and carriage return
/// become `\\`, `\t`, `\n` and `\r`; everything else is kept.
pub fn escape_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// A plain text table: left-aligned columns separated by two spaces, trailing blanks trimmed.
#[derive(Debug, Default, Clone)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table.
    pub fn new() -> Self {
        Table::default()
    }

    /// Adds a row (rows may have different numbers of cells).
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// Writes the table, one line per row.
    pub fn render(&self, out: &mut dyn Write) -> Result<()> {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        let ns = 1_714_564_800_123_456_789;
        assert_eq!(rfc3339(ns), "2024-05-01T12:00:00.123456789Z");
        assert_eq!(rfc3339_seconds(ns), "2024-05-01T12:00:00Z");
        assert_eq!(parse_time(&rfc3339(ns)).ok(), Some(ns));
        assert_eq!(
            parse_time("2024-05-01T14:00:00+02:00").ok(),
            Some(1_714_564_800 * 1_000_000_000)
        );
        assert_eq!(parse_time("1714564800123456789").ok(), Some(ns));
        assert!(matches!(
            parse_time("yesterday"),
            Err(Error::InvalidTime { .. })
        ));
        assert!(matches!(
            parse_time("99999999999999999999"),
            Err(Error::InvalidTime { .. })
        ));
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(12_897_485), "12.3 MiB");
        assert_eq!(human_duration(-5), "0ms");
        assert_eq!(human_duration(350_000_000), "350ms");
        assert_eq!(human_duration(4_200_000_000), "4.2s");
        assert_eq!(human_duration(187 * 1_000_000_000), "3m07s");
        assert_eq!(human_duration((5 * 3600 + 120) * 1_000_000_000), "5h02m");
        assert_eq!(
            human_duration((2 * 86_400 + 3 * 3600) * 1_000_000_000),
            "2d03h"
        );
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn escapes_line_breaks_and_tabs() {
        assert_eq!(escape_line("a\tb\nc\rd\\e"), "a\\tb\\nc\\rd\\\\e");
    }

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new();
        t.row(["NAME", "N"]);
        t.row(["longer", "12", "x"]);
        let mut out = Vec::new();
        t.render(&mut out).expect("render to memory");
        assert_eq!(String::from_utf8_lossy(&out), "NAME    N\nlonger  12  x\n");
    }
}
