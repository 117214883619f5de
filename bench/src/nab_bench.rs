//! The streaming detectors on the Numenta Anomaly Benchmark series in `../shared/data/nab`:
//! each detector runs over each series in time order (score, then learn: no look-ahead),
//! with one parameter set and one threshold for every series. The first 15 % of each
//! series is the probationary period: learned, never counted. Printed per series and
//! overall: windows with a detection, detections outside every window, and NAB's
//! standard-profile score (0 = flags nothing, 100 = flags each window's first row only),
//! beside the rolling z-score baseline (mean and std of the prior 288 points, |z| > 3).
//!
//! `cargo run --release -p nomaly-bench --bin nab-bench [-- [<nab folder>] [--sweep]]`
//! (`--sweep` adds how other thresholds would have done).

use anyhow::{Context, Result};
use nomaly_detect::nab;
use nomaly_detect::stream::{hst, seasonal, window, StreamDetector, StreamSpec};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One labelled series.
struct Series {
    name: String,
    times: Vec<i64>,
    values: Vec<f64>,
    /// Inclusive row ranges.
    windows: Vec<(usize, usize)>,
}

/// A detector under test: a spec and the threshold its alerts fire above (the spec's
/// default threshold, the one streams use).
struct Contender {
    label: &'static str,
    spec: StreamSpec,
    threshold: f64,
}

impl Contender {
    fn new(label: &'static str, spec: StreamSpec) -> Self {
        let threshold = spec.default_threshold();
        Contender {
            label,
            spec,
            threshold,
        }
    }
}

fn contenders() -> Vec<Contender> {
    vec![
        Contender::new(
            "rolling z (baseline)",
            StreamSpec::RollingMean {
                params: window::WindowParams { window: 288 },
            },
        ),
        Contender::new(
            "rolling median/MAD",
            StreamSpec::RollingMedian {
                params: window::WindowParams { window: 288 },
            },
        ),
        Contender::new(
            "seasonal",
            StreamSpec::Seasonal {
                params: seasonal::SeasonalParams::default(),
            },
        ),
        Contender::new(
            "half-space trees",
            StreamSpec::HalfSpaceTrees {
                params: hst::HstParams {
                    n_trees: 25,
                    height: 8,
                    window_size: 250,
                    seed: 7,
                },
                shingle: 4,
            },
        ),
    ]
}

/// Seconds since 1970 of `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC).
fn epoch_seconds(text: &str) -> Result<i64> {
    nomaly_core::time::parse_instant(text)
        .with_context(|| format!("timestamp `{}` is not YYYY-MM-DD HH:MM:SS", text.trim()))
}

fn load(dir: &Path, name: &str) -> Result<Series> {
    let csv_path = dir.join(format!("{name}.csv"));
    let text = std::fs::read_to_string(&csv_path)
        .with_context(|| format!("reading {}", csv_path.display()))?;
    let (mut times, mut values) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate().skip(1) {
        let Some((t, v)) = line.split_once(',') else {
            continue;
        };
        times.push(epoch_seconds(t).with_context(|| format!("{name}.csv line {}", i + 1))?);
        values.push(
            v.trim()
                .parse::<f64>()
                .with_context(|| format!("{name}.csv line {}", i + 1))?,
        );
    }
    let labels_path = dir.join(format!("{name}.windows.json"));
    let labels: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&labels_path)
            .with_context(|| format!("reading {}", labels_path.display()))?,
    )?;
    let mut windows = Vec::new();
    for w in labels["windows"].as_array().context("`windows`")? {
        let start = epoch_seconds(w[0].as_str().context("window start")?)?;
        let end = epoch_seconds(w[1].as_str().context("window end")?)?;
        let first = times.iter().position(|&t| t >= start);
        let last = times.iter().rposition(|&t| t <= end);
        if let (Some(a), Some(b)) = (first, last) {
            windows.push((a, b));
        }
    }
    Ok(Series {
        name: name.to_string(),
        times,
        values,
        windows,
    })
}

/// Scores and the time spent, for one detector over one series.
fn run(c: &Contender, s: &Series) -> Result<(Vec<f64>, f64)> {
    let mut d = StreamDetector::new(c.spec.clone(), 1)?;
    let started = Instant::now();
    let mut scores = Vec::with_capacity(s.values.len());
    let mut last = i64::MIN;
    for (t, v) in s.times.iter().zip(&s.values) {
        // Rows arrive in file order; a timestamp earlier than the one before (one series
        // has a few) is taken as arriving now.
        last = last.max(*t);
        scores.push(d.update(last, &[*v])?);
    }
    Ok((scores, started.elapsed().as_secs_f64()))
}

fn main() -> Result<()> {
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/data/nab"));
    let names = [
        "art_daily_jumpsup",
        "ec2_cpu_utilization_825cc2",
        "machine_temperature_system_failure",
        "nyc_taxi",
    ];
    let series: Vec<Series> = names.iter().map(|n| load(&dir, n)).collect::<Result<_>>()?;
    let contenders = contenders();
    println!("NAB series in {} (probation: first 15 % of each; one parameter set and threshold per detector)\n", dir.display());
    println!(
        "{:<36} {:<22} {:>8} {:>8} {:>6} {:>8} {:>12}",
        "series", "detector", "rows", "windows", "FP", "NAB", "points/s"
    );
    let mut totals: Vec<nab::Outcome> = vec![nab::Outcome::default(); contenders.len()];
    let mut speed: Vec<(usize, f64)> = vec![(0, 0.0); contenders.len()];
    let mut all_scores: Vec<Vec<Vec<f64>>> = vec![Vec::new(); contenders.len()];
    for s in &series {
        let probation = s.values.len() * 15 / 100;
        for (i, c) in contenders.iter().enumerate() {
            let (scores, secs) = run(c, s)?;
            let flags: Vec<bool> = scores.iter().map(|x| *x > c.threshold).collect();
            let o = nab::score(&flags, &s.windows, probation);
            all_scores[i].push(scores);
            println!(
                "{:<36} {:<22} {:>8} {:>8} {:>6} {:>8.1} {:>12.0}",
                s.name,
                c.label,
                s.values.len(),
                format!("{}/{}", o.windows_found, o.windows),
                o.false_positives,
                o.normalized(),
                s.values.len() as f64 / secs.max(1e-9)
            );
            totals[i].add(&o);
            speed[i].0 += s.values.len();
            speed[i].1 += secs;
        }
        println!();
    }
    println!("overall (NAB normalizes the corpus over summed scores)");
    for (i, c) in contenders.iter().enumerate() {
        let o = &totals[i];
        println!(
            "{:<36} {:<22} {:>8} {:>8} {:>6} {:>8.1} {:>12.0}",
            "all four",
            c.label,
            speed[i].0,
            format!("{}/{}", o.windows_found, o.windows),
            o.false_positives,
            o.normalized(),
            speed[i].0 as f64 / speed[i].1.max(1e-9)
        );
    }
    for c in &contenders {
        println!(
            "{:<22} threshold {} spec {}",
            c.label,
            c.threshold,
            serde_json::to_string(&c.spec)?
        );
    }
    if std::env::args().any(|a| a == "--sweep") {
        // How each threshold would do over the corpus: how the ones above were chosen.
        println!("\nthreshold sweep (all four series)");
        for (i, c) in contenders.iter().enumerate() {
            for factor in [0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0] {
                let threshold = match c.spec {
                    StreamSpec::HalfSpaceTrees { .. } => 1.0 - (1.0 - c.threshold) / factor,
                    _ => c.threshold * factor,
                };
                let mut o = nab::Outcome::default();
                for (s, scores) in series.iter().zip(&all_scores[i]) {
                    let flags: Vec<bool> = scores.iter().map(|x| *x > threshold).collect();
                    o.add(&nab::score(&flags, &s.windows, s.values.len() * 15 / 100));
                }
                println!(
                    "{:<22} {:>10.4} {:>8} {:>6} {:>8.1}",
                    c.label,
                    threshold,
                    format!("{}/{}", o.windows_found, o.windows),
                    o.false_positives,
                    o.normalized()
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::epoch_seconds;

    #[test]
    fn timestamps_are_utc_seconds() {
        assert_eq!(epoch_seconds("1970-01-01 00:00:00").ok(), Some(0));
        assert_eq!(
            epoch_seconds("2014-07-01 00:30:00").ok(),
            Some(1_404_174_600)
        );
        assert_eq!(
            epoch_seconds("2014-11-03 22:30:00.000000").ok(),
            Some(1_415_053_800)
        );
        assert!(epoch_seconds("yesterday").is_err());
    }
}
