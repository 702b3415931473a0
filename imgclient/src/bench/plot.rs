//! The latency distribution as a hand-written SVG: latency against percentile, with the
//! percentile axis log-scaled the way HdrHistogram plots are (0%, 90%, 99%, 99.9%, ... equally
//! spaced), so the tail is as visible as the median.
//!
//! Trust boundary: none; the title is the user's own bench parameters, XML-escaped anyway.

use hdrhistogram::Histogram;

const W: f64 = 900.0;
const H: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 70.0;
/// Points on the curve.
const STEPS: usize = 300;

/// `x = log10(1 / (1 - q))`: 0 at 0%, 1 at 90%, 2 at 99%, ...
pub fn percentile_x(q: f64) -> f64 {
    -(1.0 - q).max(1e-12).log10()
}

/// The percentile label of an integer x position: 0%, 90%, 99%, 99.9%, ...
pub fn x_label(x: u32) -> String {
    match x {
        0 => "0%".into(),
        1 => "90%".into(),
        n => format!("99.{}%", "9".repeat(n as usize - 2)).replace("99.%", "99%"),
    }
}

/// The curve as (percentile in %, latency in ms) points, up to the percentile the sample
/// count can resolve (1 - 1/count, at least 90%), where it reaches the maximum.
pub fn percentile_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let max_x = (h.len() as f64).log10().clamp(1.0, 6.0);
    let mut pts: Vec<(f64, f64)> = (0..=STEPS)
        .map(|i| {
            let x = max_x * i as f64 / STEPS as f64;
            let q = 1.0 - 10f64.powf(-x);
            (q * 100.0, h.value_at_quantile(q) as f64 / 1000.0)
        })
        .collect();
    if let Some(last) = pts.last_mut() {
        last.1 = h.max() as f64 / 1000.0;
    }
    pts
}

/// A "nice" axis step (1, 2 or 5 times a power of ten) giving about `target` intervals.
pub fn nice_step(max: f64, target: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / target;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let f = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    f * mag
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn fmt_tick(v: f64) -> String {
    if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The SVG document for `points` (percentile %, latency ms).
pub fn svg(points: &[(f64, f64)], title: &str) -> String {
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let max_x = points
        .iter()
        .map(|(p, _)| percentile_x(p / 100.0))
        .fold(1.0f64, f64::max)
        .min(6.0)
        .ceil()
        .max(1.0);
    let max_ms = points.iter().map(|(_, v)| *v).fold(0.0f64, f64::max);
    let step = nice_step(max_ms, 6.0);
    let top_ms = if max_ms > 0.0 {
        (max_ms / step).ceil() * step
    } else {
        1.0
    };
    let sx = |x: f64| LEFT + pw * (x / max_x).min(1.0);
    let sy = |v: f64| TOP + ph * (1.0 - v / top_ms);

    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n"
    );
    s += &format!("<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n");
    s += &format!(
        "<text x=\"{}\" y=\"30\" text-anchor=\"middle\" font-size=\"16\">{}</text>\n",
        W / 2.0,
        esc(title)
    );
    // Grid and ticks.
    for i in 0..=(max_x as u32) {
        let x = sx(i as f64);
        s += &format!(
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\n",
            TOP + ph
        );
        s += &format!(
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            TOP + ph + 18.0,
            x_label(i)
        );
    }
    let n_y = (top_ms / step).round() as u32;
    for i in 0..=n_y {
        let v = step * i as f64;
        let y = sy(v);
        s += &format!(
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\n",
            LEFT + pw
        );
        s += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            LEFT - 8.0,
            y + 4.0,
            fmt_tick(v)
        );
    }
    // Axes and their labels.
    s += &format!(
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"black\"/>\n"
    );
    s += &format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">percentile</text>\n",
        LEFT + pw / 2.0,
        H - 20.0
    );
    s += &format!(
        "<text x=\"20\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 20 {:.1})\">latency (ms)</text>\n",
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    if points.is_empty() {
        s += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no successful requests</text>\n",
            LEFT + pw / 2.0,
            TOP + ph / 2.0
        );
    } else {
        let pts: Vec<String> = points
            .iter()
            .map(|(p, v)| format!("{:.1},{:.1}", sx(percentile_x(p / 100.0)), sy(*v)))
            .collect();
        s += &format!(
            "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>\n",
            pts.join(" ")
        );
    }
    s += "</svg>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_positions_and_labels() {
        assert!((percentile_x(0.0) - 0.0).abs() < 1e-9);
        assert!((percentile_x(0.9) - 1.0).abs() < 1e-9);
        assert!((percentile_x(0.999) - 3.0).abs() < 1e-9);
        assert!(percentile_x(1.0) <= 12.0 + 1e-9);
        let labels: Vec<String> = (0..5).map(x_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(61.0, 6.0), 20.0);
        assert_eq!(nice_step(10.0, 5.0), 2.0);
        assert!((nice_step(0.9, 6.0) - 0.2).abs() < 1e-12);
        assert_eq!(nice_step(0.0, 6.0), 1.0);
        assert_eq!(fmt_tick(0.2), "0.2");
        assert_eq!(fmt_tick(40.0), "40");
    }

    #[test]
    fn curve_points_rise_to_the_max() {
        let mut h = super::super::report::new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 10).unwrap();
        }
        let pts = percentile_points(&h);
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        // Resolves up to 99.99% with 10,000 samples, and ends there at the maximum.
        let (p, v) = *pts.last().unwrap();
        assert!((p - 99.99).abs() < 1e-6, "{p}");
        assert!((v - 100.0).abs() < 0.1);
        // The axis then ends at 99.99% too.
        let s = svg(&pts, "t");
        assert!(s.contains(">99.99%</text>") && !s.contains(">99.999%</text>"));
        assert!(percentile_points(&super::super::report::new_histogram()).is_empty());
    }

    #[test]
    fn svg_has_axes_title_and_curve() {
        let pts = vec![
            (0.0, 1.0),
            (90.0, 2.0),
            (99.0, 5.0),
            (99.9, 9.5),
            (100.0, 12.0),
        ];
        let s = svg(&pts, "150 conns, op <blur:2> & more");
        assert!(s.starts_with("<svg "));
        assert!(s.trim_end().ends_with("</svg>"));
        assert!(s.contains("150 conns, op &lt;blur:2&gt; &amp; more"));
        assert!(s.contains(">percentile</text>"));
        assert!(s.contains(">latency (ms)</text>"));
        for l in ["0%", "90%", "99%", "99.9%"] {
            assert!(s.contains(&format!(">{l}</text>")), "{l}");
        }
        let poly = s.lines().find(|l| l.starts_with("<polyline")).unwrap();
        assert_eq!(poly.matches(',').count(), pts.len());
        // Empty data still gives a valid document.
        let e = svg(&[], "t");
        assert!(e.contains("no successful requests") && e.contains("</svg>"));
    }
}
