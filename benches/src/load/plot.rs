//! The latency percentile curve of a run as an SVG image: latency (ms) against percentile on
//! a "nines" scale (50, 90, 99, 99.9, ...), so the tail is as visible as the median.
//! Written directly (a few lines of SVG) rather than through a plotting crate: the picture is
//! one chart with two lines, and this keeps the bench binary free of font dependencies.

use super::histogram::Histogram;
use super::report::Report;
use std::fmt::Write;

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// The curve runs to the 99.999th percentile (five nines).
const NINES: f64 = 5.0;

/// `p` of `1 - 10^-x`: x = 1 is p90, 2 is p99, ...
fn quantile(x: f64) -> f64 {
    1.0 - 10f64.powf(-x)
}

/// One line of the chart: its label, colour and (nines, milliseconds) points.
type Line = (&'static str, &'static str, Vec<(f64, f64)>);

fn curve(h: &Histogram) -> Vec<(f64, f64)> {
    (0..=(NINES * 20.0) as usize)
        .map(|i| i as f64 / 20.0)
        .filter_map(|x| {
            let p = quantile(x).max(0.5);
            h.percentile(p)
                .map(|d| (x.max(0.301), d.as_secs_f64() * 1e3))
        })
        .collect()
}

/// The SVG document for `report` (titled `title`).
pub fn svg(report: &Report, title: &str) -> String {
    let lines: Vec<Line> = [
        ("publish ack", "#1f77b4", curve(&report.ack_latency)),
        ("end-to-end", "#d62728", curve(&report.end_to_end)),
    ]
    .into_iter()
    .filter(|(_, _, points)| !points.is_empty())
    .collect();
    let top_ms = lines
        .iter()
        .flat_map(|(_, _, points)| points.iter().map(|&(_, y)| y))
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.05;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x_of = |x: f64| LEFT + x / NINES * plot_w;
    let y_of = |ms: f64| TOP + plot_h - ms / top_ms * plot_h;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    for (label, x) in [
        ("50", 0.301),
        ("90", 1.0),
        ("99", 2.0),
        ("99.9", 3.0),
        ("99.99", 4.0),
        ("99.999", 5.0),
    ] {
        let px = x_of(x);
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 16.0
        );
    }
    for i in 0..=5 {
        let ms = top_ms * i as f64 / 5.0;
        let py = y_of(ms);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{ms:.3}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            py + 4.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text><text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">latency (ms)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 10.0,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    for (i, (label, color, points)) in lines.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .map(|&(x, ms)| format!("{:.1},{:.1}", x_of(x), y_of(ms)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        let ly = TOP + 16.0 + 18.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{label}</text>"#,
            LEFT + 12.0,
            LEFT + 36.0,
            LEFT + 42.0,
            ly + 4.0
        );
    }
    out.push_str("</svg>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_plot_draws_one_line_per_measured_latency() {
        let mut report = Report::default();
        for micros in 1..=1000u64 {
            report.ack_latency.record(Duration::from_micros(micros));
        }
        let svg = svg(&report, "a <run>");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("a &lt;run&gt;"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
