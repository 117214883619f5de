//! Hand-written SVG plots for reports: no plotting crate, no script, every label escaped.
//! Each function returns one `<svg>` element sized by its `viewBox`, so it scales with
//! the page.

use std::fmt::Write;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 34.0;
/// Points drawn one by one at most; beyond, normal rows are drawn as a min/max band.
pub const MAX_POINTS: usize = 4000;
/// Anomalies marked one by one at most.
pub const MAX_MARKS: usize = 2000;

const NORMAL: &str = "#4c78a8";
const ANOMALY: &str = "#d62728";
const THRESHOLD: &str = "#444";

/// Text safe inside an element or a quoted attribute.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A number for a label: four significant digits, no exponent for everyday magnitudes.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let a = x.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        return format!("{x:.3e}");
    }
    let digits = if a >= 1000.0 {
        0
    } else if a >= 100.0 {
        1
    } else if a >= 10.0 {
        2
    } else {
        3
    };
    let s = format!("{x:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// About `n` round tick values covering `lo..=hi`.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).abs().max(1e-12);
    let raw = span / n.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil();
    (0..50)
        .map(|i| (first + f64::from(i)) * step)
        .take_while(|t| *t <= hi + step * 1e-9)
        .collect()
}

/// A linear map from data to pixels.
#[derive(Clone, Copy)]
struct Axis {
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
}

impl Axis {
    fn new(lo: f64, hi: f64, from: f64, to: f64) -> Self {
        let (lo, hi) = if hi - lo > 1e-12 {
            (lo, hi)
        } else {
            (lo - 0.5, hi + 0.5)
        };
        Axis { lo, hi, from, to }
    }
    fn at(&self, v: f64) -> f64 {
        self.from + (v - self.lo) / (self.hi - self.lo) * (self.to - self.from)
    }
}

fn open(out: &mut String, label: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}" font-family="sans-serif" font-size="11">"#,
        esc(label)
    );
}

fn axes(out: &mut String, x: Axis, y: Axis, x_label: &str, y_label: &str) {
    let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP);
    let _ = write!(
        out,
        r##"<path d="M{x0},{y1}V{y0}H{x1}" fill="none" stroke="#999"/>"##
    );
    for t in ticks(y.lo, y.hi, 5) {
        let py = y.at(t);
        let _ = write!(
            out,
            r##"<line x1="{x0}" x2="{x1}" y1="{py:.1}" y2="{py:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
            x0 - 4.0,
            py + 3.5,
            esc(&num(t))
        );
    }
    for t in ticks(x.lo, x.hi, 6) {
        let px = x.at(t);
        let _ = write!(
            out,
            r##"<text x="{px:.1}" y="{}" text-anchor="middle" fill="#555">{}</text>"##,
            y0 + 14.0,
            esc(&num(t))
        );
    }
    let _ = write!(
        out,
        r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#333">{}</text><text transform="translate(12,{:.1}) rotate(-90)" text-anchor="middle" fill="#333">{}</text>"##,
        (x0 + x1) / 2.0,
        HEIGHT - 4.0,
        esc(x_label),
        (y0 + y1) / 2.0,
        esc(y_label)
    );
}

fn finite_range(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// The range a score plot covers: the finite scores and the threshold.
fn score_range(scores: &[f64], threshold: f64) -> (f64, f64) {
    let (mut lo, mut hi) = finite_range(scores);
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if threshold.is_finite() {
        lo = lo.min(threshold);
        hi = hi.max(threshold);
    }
    (lo, hi)
}

/// The score distribution: a histogram of about `bins` bars (one more when shifted so
/// that the threshold is a bin edge), bars above the threshold in the anomaly colour,
/// and the threshold as a dashed vertical line.
pub fn histogram(scores: &[f64], threshold: f64, bins: usize) -> String {
    let bins = bins.max(1);
    let (mut lo, hi) = score_range(scores, threshold);
    let mut width = ((hi - lo) / bins as f64).max(1e-12);
    let mut bins = bins;
    if threshold.is_finite() && hi > lo {
        // Shift the bins so one edge is the threshold: no bin straddles it.
        width = (hi - lo) / bins as f64;
        lo = threshold - ((threshold - lo) / width).ceil() * width;
        bins = (((hi - lo) / width).floor() as usize + 1).min(bins + 1);
    }
    let mut counts = vec![0usize; bins];
    for &s in scores.iter().filter(|s| s.is_finite()) {
        let i = (((s - lo) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let x = Axis::new(lo, hi, LEFT, WIDTH - RIGHT);
    let y = Axis::new(0.0, top, HEIGHT - BOTTOM, TOP);
    let mut out = String::new();
    open(&mut out, "score distribution with the threshold");
    axes(&mut out, x, y, "score", "rows");
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let (b0, b1) = (lo + i as f64 * width, lo + (i + 1) as f64 * width);
        let colour = if b0 >= threshold - width * 1e-9 {
            ANOMALY
        } else {
            NORMAL
        };
        let (px0, px1) = (x.at(b0), x.at(b1));
        let py = y.at(c as f64);
        let _ = write!(
            out,
            r#"<rect class="bin" x="{px0:.1}" y="{py:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{} to {}: {c} rows</title></rect>"#,
            (px1 - px0 - 1.0).max(0.5),
            (HEIGHT - BOTTOM - py).max(0.0),
            esc(&num(b0)),
            esc(&num(b1))
        );
    }
    let px = x.at(threshold);
    threshold_line(
        &mut out,
        (px, TOP),
        (px, HEIGHT - BOTTOM),
        (px + 4.0, TOP + 10.0),
        threshold,
    );
    out.push_str("</svg>");
    out
}

/// Scores in row order: every row as a point (or, past [`MAX_POINTS`] rows, a min/max
/// band per pixel column), anomalies marked, and the threshold as a dashed line.
pub fn series(scores: &[f64], labels: &[u8], threshold: f64) -> String {
    let n = scores.len();
    let (lo, hi) = score_range(scores, threshold);
    let x = Axis::new(0.0, n.saturating_sub(1).max(1) as f64, LEFT, WIDTH - RIGHT);
    let y = Axis::new(lo, hi, HEIGHT - BOTTOM, TOP);
    let mut out = String::new();
    open(&mut out, "scores in row order with the threshold");
    axes(&mut out, x, y, "row", "score");
    let is_anomaly = |i: usize| labels.get(i) == Some(&1);
    if n <= MAX_POINTS {
        for (i, &s) in scores.iter().enumerate() {
            if s.is_finite() && !is_anomaly(i) {
                let _ = write!(
                    out,
                    r#"<circle class="point" cx="{:.1}" cy="{:.1}" r="1.6" fill="{NORMAL}" fill-opacity="0.6"/>"#,
                    x.at(i as f64),
                    y.at(s)
                );
            }
        }
    } else {
        // One vertical segment per pixel column, from its lowest to its highest score.
        let columns = (WIDTH - LEFT - RIGHT) as usize;
        let mut path = String::new();
        for c in 0..columns {
            let (a, b) = (
                c * n / columns,
                ((c + 1) * n / columns).max(c * n / columns + 1),
            );
            let (l, h) = finite_range(&scores[a..b.min(n)]);
            if l.is_finite() {
                let px = LEFT + c as f64 + 0.5;
                let _ = write!(path, "M{px:.1},{:.1}V{:.1}", y.at(l), y.at(h) - 0.5);
            }
        }
        let _ = write!(
            out,
            r#"<path class="band" d="{path}" stroke="{NORMAL}" stroke-opacity="0.7" fill="none"/>"#
        );
    }
    let py = y.at(threshold);
    threshold_line(
        &mut out,
        (LEFT, py),
        (WIDTH - RIGHT, py),
        (LEFT + 4.0, py - 4.0),
        threshold,
    );
    let mut marked = 0;
    for (i, &s) in scores.iter().enumerate() {
        if marked == MAX_MARKS {
            break;
        }
        if s.is_finite() && is_anomaly(i) {
            marked += 1;
            let _ = write!(
                out,
                r#"<circle class="anomaly" cx="{:.1}" cy="{:.1}" r="3" fill="{ANOMALY}"><title>row {i}: {}</title></circle>"#,
                x.at(i as f64),
                y.at(s),
                esc(&num(s))
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// The threshold as a dashed line from `(x1, y1)` to `(x2, y2)`, labelled at `label`.
fn threshold_line(
    out: &mut String,
    from: (f64, f64),
    to: (f64, f64),
    label: (f64, f64),
    threshold: f64,
) {
    if !threshold.is_finite() {
        return;
    }
    let _ = write!(
        out,
        r##"<line class="threshold" x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{THRESHOLD}" stroke-dasharray="5,4"/><text x="{:.1}" y="{:.1}" fill="{THRESHOLD}" stroke="#fff" stroke-width="3" paint-order="stroke">threshold {}</text>"##,
        from.0,
        to.0,
        from.1,
        to.1,
        label.0,
        label.1,
        esc(&num(threshold))
    );
}

/// Horizontal bars, one per `(label, value)`, scaled to the largest magnitude.
pub fn bars(items: &[(String, f64)]) -> String {
    let row = 18.0;
    let label_w = 170.0;
    let width = 420.0;
    let height = row * items.len().max(1) as f64 + 4.0;
    let top = items
        .iter()
        .map(|(_, v)| v.abs())
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        .max(1e-12);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" aria-label="feature contributions" font-family="sans-serif" font-size="11">"#
    );
    for (i, (label, v)) in items.iter().enumerate() {
        let y = 2.0 + i as f64 * row;
        let w = if v.is_finite() {
            v.abs() / top * (width - label_w - 70.0)
        } else {
            0.0
        };
        let colour = if *v >= 0.0 { ANOMALY } else { NORMAL };
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#333">{}</text><rect class="bar" x="{label_w}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{colour}"/><text x="{:.1}" y="{:.1}" fill="#555">{}</text>"##,
            label_w - 6.0,
            y + 12.0,
            esc(label),
            y + 2.0,
            row - 5.0,
            label_w + w + 4.0,
            y + 12.0,
            esc(&num(*v))
        );
    }
    out.push_str("</svg>");
    out
}

/// A one-line box plot of a numeric column: min to max, p25 to p75 as a box, the median
/// as a tick, p5 and p95 as whiskers.
pub fn spread(min: f64, q: [f64; 5], max: f64) -> String {
    let (w, h) = (160.0, 16.0);
    let x = Axis::new(min, max, 4.0, w - 4.0);
    let [p5, p25, p50, p75, p95] = q.map(|v| x.at(v));
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="spread"><line x1="{:.1}" x2="{:.1}" y1="8" y2="8" stroke="#bbb"/><line x1="{p5:.1}" x2="{p95:.1}" y1="8" y2="8" stroke="#666"/><rect x="{p25:.1}" y="3" width="{:.1}" height="10" fill="#c6dbef" stroke="#4c78a8"/><line x1="{p50:.1}" x2="{p50:.1}" y1="2" y2="14" stroke="#08306b" stroke-width="2"/></svg>"##,
        x.at(min),
        x.at(max),
        (p75 - p25).max(1.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            esc(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
        assert_eq!(esc("a\u{0}b"), "a\u{FFFD}b");
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(num(0.123456), "0.123");
        assert_eq!(num(12.5), "12.5");
        assert_eq!(num(1234.6), "1235");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(2.5e7), "2.500e7");
        assert_eq!(num(f64::NAN), "–");
    }

    #[test]
    fn huge_equal_scores_still_plot() {
        let svg = series(&[1e17, 1e17], &[0, 1], 1e17);
        assert_eq!(svg.matches(r#"class="anomaly""#).count(), 1);
        assert!(histogram(&[-1e300, 1e300], 0.0, 40).contains("class=\"bin\""));
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let t = ticks(0.0, 1.0, 5);
        let want = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
        assert_eq!(t.len(), want.len());
        assert!(
            t.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{t:?}"
        );
        let t = ticks(-3.7, 12.2, 5);
        assert!(t.first().is_some_and(|&v| v >= -3.7) && t.last().is_some_and(|&v| v <= 12.2));
        assert!(t.windows(2).all(|w| (w[1] - w[0] - 5.0).abs() < 1e-9));
    }

    #[test]
    fn a_histogram_counts_every_score_and_colours_the_bins_above_the_threshold() {
        let scores: Vec<f64> = (0..100).map(|i| i as f64 / 100.0).collect();
        let svg = histogram(&scores, 0.9, 10);
        assert_eq!(
            svg.matches(r#"class="bin""#).count(),
            11,
            "one more: shifted to the threshold"
        );
        let counted: usize = svg
            .split(": ")
            .skip(1)
            .filter_map(|s| s.split(' ').next()?.parse::<usize>().ok())
            .sum();
        assert_eq!(counted, 100);
        assert_eq!(svg.matches(ANOMALY).count(), 1, "only the bin from 0.9 up");
        assert_eq!(svg.matches(r#"class="threshold""#).count(), 1);
    }

    #[test]
    fn a_series_marks_each_anomaly_and_bands_long_series() {
        let scores = [0.1, 0.2, 0.9, 0.15, f64::NAN];
        let labels = [0, 0, 1, 0, 0];
        let svg = series(&scores, &labels, 0.5);
        assert_eq!(svg.matches(r#"class="point""#).count(), 3, "NaN is skipped");
        assert_eq!(svg.matches(r#"class="anomaly""#).count(), 1);
        assert!(svg.contains("row 2: 0.9"));
        let long: Vec<f64> = (0..50_000).map(|i| (i % 97) as f64).collect();
        let mut long_labels = vec![0u8; long.len()];
        long_labels[123] = 1;
        let svg = series(&long, &long_labels, 90.0);
        assert_eq!(svg.matches(r#"class="point""#).count(), 0);
        assert_eq!(svg.matches(r#"class="band""#).count(), 1);
        assert_eq!(svg.matches(r#"class="anomaly""#).count(), 1);
        assert!(svg.len() < 200_000, "bounded size: {}", svg.len());
    }

    #[test]
    fn bars_escape_their_labels() {
        let svg = bars(&[("<b>x</b>".into(), 2.0), ("y".into(), -1.0)]);
        assert!(svg.contains("&lt;b&gt;x&lt;/b&gt;") && !svg.contains("<b>"));
        assert_eq!(svg.matches(r#"class="bar""#).count(), 2);
    }
}
