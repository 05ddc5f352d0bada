//! Command-line conventions shared by our binaries so NSQ's scripts work unchanged: Go's flag
//! package accepts `-flag value`, `-flag=value` and `--flag`, and durations such as `250ms`,
//! `2s`, `1m0s`, `1h`.

use std::time::Duration;

/// Rewrites Go-style single-dash long flags (`-tcp-address=...`) to clap's `--tcp-address=...`.
/// Single-character flags (`-h`, `-n`) and a lone `-` are left alone.
pub fn normalize_go_flags<I: IntoIterator<Item = String>>(args: I) -> Vec<String> {
    let mut out = Vec::new();
    let mut after_separator = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || after_separator {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            after_separator = true;
            out.push(arg);
            continue;
        }
        let is_single_dash_long = arg.starts_with('-')
            && !arg.starts_with("--")
            && arg.split('=').next().is_some_and(|name| name.len() > 2);
        if is_single_dash_long {
            out.push(format!("-{arg}"));
        } else {
            out.push(arg);
        }
    }
    out
}

/// Resolves a `host:port` listen or connect address (the first address it resolves to).
pub fn parse_socket_address(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .map_err(|e| format!("{text}: {e}"))?
        .next()
        .ok_or_else(|| format!("{text} resolves to nothing"))
}

/// Parses a Go duration (`300ms`, `1.5s`, `1m30s`, `2h`, `0`). Units: ns, us, µs, ms, s, m, h.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".to_string());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err(format!("invalid duration {text:?}"));
        }
        let value: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("missing unit in duration {text:?}")),
            other => return Err(format!("unknown unit {other:?} in duration {text:?}")),
        };
        total += value * nanos_per_unit;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(format!("duration {text:?} is out of range"));
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Formats a duration the way Go prints it (`1m0s`, `250ms`, `2s`), for `/info` and `--help`.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            format!("{}µs", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let secs = d.as_secs();
    let frac = d.subsec_nanos();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let seconds = if frac == 0 {
        format!("{s}s")
    } else {
        format!("{}s", s as f64 + f64::from(frac) / 1e9)
    };
    match (h, m) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_flags_become_clap_flags() {
        let args = [
            "nsqd",
            "-tcp-address=1:2",
            "--http-address",
            "x",
            "-h",
            "-sync-every",
            "1",
            "-",
            "--",
            "-keep",
        ];
        let out = normalize_go_flags(args.iter().map(|s| s.to_string()));
        assert_eq!(
            out,
            [
                "nsqd",
                "--tcp-address=1:2",
                "--http-address",
                "x",
                "-h",
                "--sync-every",
                "1",
                "-",
                "--",
                "-keep"
            ]
        );
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m0s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn durations_format_like_go() {
        assert_eq!(format_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_duration(Duration::from_secs(900)), "15m0s");
    }
}
