//! The streaming detectors on the Numenta Anomaly Benchmark: every labelled series in a
//! folder (the repository's `tests/data/nab`, 55 of NAB's 58), scored with NAB's own
//! scorer ([`nomaly_detect::nab`]: standard profile, NAB's threshold optimisation).
//!
//! Each detector runs over each series in time order (score, then learn: no look-ahead),
//! with one parameter set for every series. Its points are scored on the common scale
//! (the anomaly likelihood, [`nomaly_detect::stream::likelihood`]); the detector's raw
//! score is kept beside it. For each detector it prints:
//! - `default`: at the threshold streams use by default, with no optimisation;
//! - `corpus`: at the one threshold NAB's optimiser picks over the whole folder (how NAB's
//!   scoreboard is made);
//! - `A->B`, `B->A`, `held-out`: the threshold optimised on one half of the series and
//!   scored on the other (halves alternate within each NAB category), and both held-out
//!   halves summed: a figure no threshold was tuned on;
//! - `raw-corpus`: the raw score under NAB's optimiser, to show what the common scale adds;
//! - `feedback`: at the default threshold, with one `false_positive` verdict sent after
//!   each series' first false positive (the rule of `POST /v1/feedback`,
//!   [`nomaly_detect::stream::feedback`], raises that stream's threshold for the rest of
//!   the series); compare it with `default`. At the end, the rule's step chosen on half
//!   A (the best NAB score summed over the detectors) and reported on half B, beside no
//!   verdict and the halfway step the service first had.
//!
//! NAB's own results for its "numenta" (HTM) detector, when the folder has them
//! (`nab-results/`), are scored in the same run as the reference.
//!
//! `cargo run --release -p nomaly-bench --bin nab-bench [-- [<nab folder>] [--series] [--tune]]`
//! (`--series` adds a line per series; `--tune` chooses the likelihood's parameters on
//! one half and reports them on the other).

use anyhow::{bail, Context, Result};
use nomaly_detect::nab::{self, Labelled, Tally};
use nomaly_detect::stream::likelihood::{Likelihood, LikelihoodParams};
use nomaly_detect::stream::{feedback, hst, rcf, seasonal, window, StreamDetector, StreamSpec};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One labelled series.
struct Series {
    /// `<category>/<name>.csv`, as NAB names it.
    file: String,
    category: String,
    times: Vec<i64>,
    values: Vec<f64>,
    labelled: Labelled,
    /// Which half it is in.
    half: Half,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Half {
    A,
    B,
}

/// A detector under test.
struct Contender {
    label: &'static str,
    spec: StreamSpec,
}

fn contenders() -> Vec<Contender> {
    vec![
        Contender {
            label: "rolling_mean",
            spec: StreamSpec::RollingMean {
                params: window::WindowParams { window: 288 },
            },
        },
        Contender {
            label: "rolling_median",
            spec: StreamSpec::RollingMedian {
                params: window::WindowParams { window: 288 },
            },
        },
        Contender {
            label: "seasonal",
            spec: StreamSpec::Seasonal {
                params: seasonal::SeasonalParams::default(),
            },
        },
        Contender {
            label: "half_space_trees",
            spec: StreamSpec::HalfSpaceTrees {
                params: hst::HstParams {
                    n_trees: 25,
                    height: 8,
                    window_size: 250,
                    seed: 7,
                },
                shingle: 4,
            },
        },
        Contender {
            label: "random_cut_forest",
            spec: StreamSpec::RandomCutForest {
                params: rcf::RcfParams::default(),
            },
        },
    ]
}

/// Seconds since 1970 of `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC).
fn epoch_seconds(text: &str) -> Result<i64> {
    nomaly_core::time::parse_instant(text)
        .with_context(|| format!("timestamp `{}` is not YYYY-MM-DD HH:MM:SS", text.trim()))
}

/// The series of `<name>.csv` with the windows of `<name>.windows.json`.
fn load(dir: &Path, name: &str) -> Result<Series> {
    let csv_path = dir.join(format!("{name}.csv"));
    let text = std::fs::read_to_string(&csv_path)
        .with_context(|| format!("reading {}", csv_path.display()))?;
    let (mut times, mut values) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate().skip(1) {
        let Some((t, v)) = line.split_once(',') else {
            bail!("{name}.csv line {}: not `timestamp,value`", i + 1);
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
    // NAB's windows start and end on rows' timestamps.
    let row_of = |edge: &serde_json::Value| -> Result<usize> {
        let t = epoch_seconds(edge.as_str().context("window edge")?)?;
        times
            .iter()
            .position(|&x| x == t)
            .with_context(|| format!("{name}: window edge {edge} is not a row"))
    };
    let mut windows = Vec::new();
    for w in labels["windows"].as_array().context("`windows`")? {
        windows.push((row_of(&w[0])?, row_of(&w[1])?));
    }
    let category = labels["category"]
        .as_str()
        .context("`category`")?
        .to_string();
    let labelled = Labelled::new(times.len(), &windows, nab::STANDARD)
        .with_context(|| format!("{name}: windows"))?;
    Ok(Series {
        file: format!("{category}/{name}.csv"),
        category,
        times,
        values,
        labelled,
        half: Half::A,
    })
}

/// Every labelled series in `dir`, sorted by category and name, in alternating halves
/// within each category.
fn load_corpus(dir: &Path) -> Result<Vec<Series>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".windows.json"))
                .map(str::to_string)
        })
        .collect();
    names.sort();
    let mut series: Vec<Series> = names
        .par_iter()
        .map(|n| load(dir, n))
        .collect::<Result<_>>()?;
    if series.is_empty() {
        bail!("no labelled series (*.windows.json) in {}", dir.display());
    }
    series.sort_by(|a, b| a.file.cmp(&b.file));
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for s in &mut series {
        let k = seen.entry(s.category.clone()).or_default();
        s.half = if k.is_multiple_of(2) {
            Half::A
        } else {
            Half::B
        };
        *k += 1;
    }
    Ok(series)
}

/// One detector's scores over one series: common-scale, raw, seconds, final state bytes.
struct Run {
    scores: Vec<f64>,
    raw: Vec<f64>,
    secs: f64,
    state_bytes: usize,
}

fn run(spec: &StreamSpec, s: &Series) -> Result<Run> {
    let mut d = StreamDetector::new(spec.clone(), 1)?;
    let started = Instant::now();
    let (mut scores, mut raw) = (
        Vec::with_capacity(s.values.len()),
        Vec::with_capacity(s.values.len()),
    );
    let mut last = i64::MIN;
    for (t, v) in s.times.iter().zip(&s.values) {
        // Rows arrive in file order; a timestamp earlier than the one before (one series
        // has a few) is taken as arriving now.
        last = last.max(*t);
        let scored = d.update(last, &[*v])?;
        scores.push(scored.score);
        raw.push(scored.raw);
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(Run {
        scores,
        raw,
        secs,
        state_bytes: d.to_json()?.len(),
    })
}

/// The common-scale scores of a raw sequence under other likelihood parameters.
fn recalibrate(raw: &[f64], params: &LikelihoodParams) -> Result<Vec<f64>> {
    let mut l = Likelihood::new(params.clone())?;
    Ok(raw.iter().map(|&r| l.update(r)).collect())
}

/// The summed tally of `series` (those `keep` accepts) at `threshold`.
fn at(
    series: &[Series],
    scores: &[Vec<f64>],
    threshold: f64,
    keep: impl Fn(&Series) -> bool,
) -> Tally {
    let mut total = Tally::zero(threshold);
    for (s, sc) in series.iter().zip(scores) {
        if keep(s) {
            total.add(&s.labelled.score(sc, threshold));
        }
    }
    total
}

/// Each series at `threshold`; after its first false positive, a `false_positive` verdict
/// on that point raises the threshold for the rest of the series. Returns the summed tally,
/// how many series got a verdict, and how many of those points scored at or above the
/// rule's ceiling (a threshold cannot rise past them).
fn with_feedback(
    series: &[Series],
    scores: &[Vec<f64>],
    threshold: f64,
    step: f64,
    keep: impl Fn(&Series) -> bool,
) -> (Tally, usize, usize) {
    let mut total = Tally::zero(threshold);
    let mut verdicts = 0;
    let mut saturated = 0;
    for (s, sc) in series.iter().zip(scores) {
        if !keep(s) {
            continue;
        }
        let Some(first) = s.labelled.first_false_positive(sc, threshold) else {
            total.add(&s.labelled.score(sc, threshold));
            continue;
        };
        verdicts += 1;
        if sc[first] >= feedback::CEILING {
            saturated += 1;
        }
        let raised = feedback::after_false_positive_by(threshold, sc[first], step);
        // Later rows flag at `raised`: scaled by threshold / raised, a score clears
        // `threshold` exactly when it clears `raised`, so one threshold scores both parts.
        let seen: Vec<f64> = sc
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if i <= first {
                    v
                } else {
                    v * threshold / raised
                }
            })
            .collect();
        total.add(&s.labelled.score(&seen, threshold));
    }
    (total, verdicts, saturated)
}

/// The steps of the false-positive rule compared: the share of the way from the point's
/// score to 1 the threshold moves.
const STEPS: [f64; 8] = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5];

/// Per step of [`STEPS`]: NAB's score with the verdicts on half A, and the tally on half
/// B.
type StepRows = Vec<(f64, f64, Tally)>;

/// Each step's NAB score on half A and tally on half B, with one verdict per series.
fn feedback_steps(series: &[Series], scores: &[Vec<f64>], threshold: f64) -> StepRows {
    STEPS
        .iter()
        .map(|&step| {
            let (a, _, _) = with_feedback(series, scores, threshold, step, |s| s.half == Half::A);
            let (b, _, _) = with_feedback(series, scores, threshold, step, |s| s.half == Half::B);
            (step, a.normalized(), b)
        })
        .collect()
}

/// One step for every detector, chosen on half A (the best summed NAB score there),
/// reported on half B beside no verdict and the halfway step the service first had.
fn choose_step(rows: &[(&str, StepRows, Tally)]) {
    let summed = |k: usize| rows.iter().map(|(_, r, _)| r[k].1).sum::<f64>();
    let best = (0..STEPS.len())
        .max_by(|&x, &y| summed(x).total_cmp(&summed(y)))
        .unwrap_or(0);
    println!();
    println!(
        "feedback step chosen on half A (summed NAB over the detectors, steps {STEPS:?}): {} (sums: {})",
        STEPS[best],
        (0..STEPS.len())
            .map(|k| format!("{}={:.1}", STEPS[k], summed(k)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    // the rule before this choice: halfway from the point's score to 1
    let halfway = STEPS.len() - 1;
    println!(
        "{:<18} {:>26} {:>26} {:>26}",
        "half B",
        "no verdict",
        format!("step {} (chosen)", STEPS[best]),
        format!("step {} (halfway)", STEPS[halfway])
    );
    let cell = |t: &Tally| {
        format!(
            "NAB {:>5.1} FP {:>3} win {:>2}/{}",
            t.normalized(),
            t.fp,
            t.windows_found,
            t.windows
        )
    };
    for (label, r, none) in rows {
        println!(
            "{label:<18} {:>26} {:>26} {:>26}",
            cell(none),
            cell(&r[best].2),
            cell(&r[halfway].2)
        );
    }
}

/// NAB's optimised threshold over the series `keep` accepts.
fn optimize(series: &[Series], scores: &[Vec<f64>], keep: impl Fn(&Series) -> bool) -> Tally {
    let corpus: Vec<(&Labelled, &[f64])> = series
        .iter()
        .zip(scores)
        .filter(|(s, _)| keep(s))
        .map(|(s, sc)| (&s.labelled, sc.as_slice()))
        .collect();
    nab::optimize(&corpus)
}

/// The threshold chosen on one half, scored on the other, each way, and the two summed.
fn held_out(series: &[Series], scores: &[Vec<f64>]) -> (Tally, Tally, Tally) {
    let on_a = optimize(series, scores, |s| s.half == Half::A).threshold;
    let on_b = optimize(series, scores, |s| s.half == Half::B).threshold;
    let a_to_b = at(series, scores, on_a, |s| s.half == Half::B);
    let b_to_a = at(series, scores, on_b, |s| s.half == Half::A);
    let mut both = a_to_b;
    both.add(&b_to_a);
    // Two thresholds, one per half: none to show.
    both.threshold = f64::NAN;
    (a_to_b, b_to_a, both)
}

fn row(label: &str, mode: &str, t: &Tally) {
    println!(
        "{:<18} {:<10} {:>12.6} {:>7.1} {:>8} {:>6}",
        label,
        mode,
        t.threshold,
        t.normalized(),
        format!("{}/{}", t.windows_found, t.windows),
        t.fp
    );
}

/// NAB's per-row scores for its "numenta" detector, by file, when the folder has them.
fn numenta(dir: &Path) -> Result<Option<BTreeMap<String, Vec<f64>>>> {
    let path = dir.join("nab-results").join("numenta.csv.gz");
    if !path.is_file() {
        return Ok(None);
    }
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path)?)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let mut f = line.split(',');
        let (Some(file), Some(_), Some(score)) = (f.next(), f.next(), f.next()) else {
            bail!("{}: bad line `{line}`", path.display());
        };
        out.entry(file.to_string()).or_default().push(
            score
                .parse()
                .with_context(|| format!("score in `{line}`"))?,
        );
    }
    Ok(Some(out))
}

fn header() {
    println!(
        "{:<18} {:<10} {:>12} {:>7} {:>8} {:>6}",
        "detector", "threshold", "value", "NAB", "windows", "FP"
    );
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/nab"));
    let per_series = args.iter().any(|a| a == "--series");
    let tune = args.iter().any(|a| a == "--tune");
    let series = load_corpus(&dir)?;
    let rows: usize = series.iter().map(|s| s.values.len()).sum();
    let windows: usize = series.iter().map(|s| s.labelled.windows()).sum();
    println!(
        "NAB: {} series, {} rows, {} windows in {} (halves: {} A, {} B)",
        series.len(),
        rows,
        windows,
        dir.display(),
        series.iter().filter(|s| s.half == Half::A).count(),
        series.iter().filter(|s| s.half == Half::B).count()
    );
    println!("NAB's scorer, standard profile; NAB score 0 = flags nothing, 100 = each window's first row only\n");
    header();

    if let Some(reference) = numenta(&dir)? {
        let scores: Vec<Vec<f64>> = series
            .iter()
            .map(|s| {
                reference
                    .get(&s.file)
                    .filter(|sc| sc.len() == s.values.len())
                    .cloned()
                    .with_context(|| format!("NAB's numenta results lack {}", s.file))
            })
            .collect::<Result<_>>()?;
        // NAB's published threshold for it (chosen over all 58 series).
        row(
            "numenta(NAB)",
            "published",
            &at(&series, &scores, 0.542_187_690_734_863_4, |_| true),
        );
        row(
            "numenta(NAB)",
            "corpus",
            &optimize(&series, &scores, |_| true),
        );
        let (_, _, both) = held_out(&series, &scores);
        row("numenta(NAB)", "held-out", &both);
        println!();
    }

    let mut speed = Vec::new();
    let mut steps = Vec::new();
    for c in contenders() {
        let runs: Vec<Run> = series
            .par_iter()
            .map(|s| run(&c.spec, s))
            .collect::<Result<_>>()?;
        let scores: Vec<Vec<f64>> = runs.iter().map(|r| r.scores.clone()).collect();
        let raw: Vec<Vec<f64>> = runs.iter().map(|r| r.raw.clone()).collect();
        row(
            c.label,
            "default",
            &at(&series, &scores, c.spec.default_threshold(), |_| true),
        );
        row(c.label, "corpus", &optimize(&series, &scores, |_| true));
        let (a_to_b, b_to_a, both) = held_out(&series, &scores);
        row(c.label, "A->B", &a_to_b);
        row(c.label, "B->A", &b_to_a);
        row(c.label, "held-out", &both);
        row(c.label, "raw-corpus", &optimize(&series, &raw, |_| true));
        let (fed, verdicts, saturated) = with_feedback(
            &series,
            &scores,
            c.spec.default_threshold(),
            feedback::STEP,
            |_| true,
        );
        row(c.label, "feedback", &fed);
        println!(
            "{:<18} feedback: {verdicts} series got one false_positive verdict; {saturated} of those points scored at or above the ceiling {}",
            "",
            feedback::CEILING
        );
        steps.push((
            c.label,
            feedback_steps(&series, &scores, c.spec.default_threshold()),
            at(&series, &scores, c.spec.default_threshold(), |s| {
                s.half == Half::B
            }),
        ));
        if per_series {
            for (s, sc) in series.iter().zip(&scores) {
                let t = s.labelled.score(sc, c.spec.default_threshold());
                println!(
                    "    {:<60} {:>7.1} {:>8} {:>6}",
                    s.file,
                    t.normalized(),
                    format!("{}/{}", t.windows_found, t.windows),
                    t.fp
                );
            }
        }
        if tune {
            tune_likelihood(&series, &raw)?;
            if let StreamSpec::Seasonal { .. } = c.spec {
                tune_seasonal(&series)?;
            }
        }
        println!();
        let secs: f64 = runs.iter().map(|r| r.secs).sum();
        let biggest = runs.iter().map(|r| r.state_bytes).max().unwrap_or(0);
        speed.push((c.label, rows as f64 / secs.max(1e-9), biggest));
    }
    choose_step(&steps);
    println!();
    println!(
        "{:<18} {:>12} {:>14}",
        "detector", "points/s", "state bytes"
    );
    for (label, pps, bytes) in speed {
        println!("{:<18} {:>12.0} {:>14}", label, pps, bytes);
    }
    for c in contenders() {
        println!(
            "{:<18} default threshold {} spec {}",
            c.label,
            c.spec.default_threshold(),
            serde_json::to_string(&c.spec)?
        );
    }
    Ok(())
}

/// The likelihood's parameters chosen on one half (by its NAB-optimised score), reported
/// on the other, each way.
fn tune_likelihood(series: &[Series], raw: &[Vec<f64>]) -> Result<()> {
    let mut grid = Vec::new();
    for short_window in [1, 3, 5, 10] {
        for long_window in [2000, 8000, 30000] {
            for min_spread in [0.05, 0.1, 0.2, 0.3, 0.5] {
                for learning in [20] {
                    for spike_margin in [None, Some(0.0), Some(0.4), Some(0.8), Some(1.6)] {
                        grid.push(LikelihoodParams {
                            short_window,
                            long_window,
                            min_spread,
                            learning,
                            spike_margin,
                        });
                    }
                }
            }
        }
    }
    let results: Vec<(LikelihoodParams, Vec<Vec<f64>>)> = grid
        .into_par_iter()
        .map(|p| {
            let scores = raw
                .iter()
                .map(|r| recalibrate(r, &p))
                .collect::<Result<Vec<_>>>()?;
            Ok((p, scores))
        })
        .collect::<Result<_>>()?;
    report_choice(series, &results)
}

/// The seasonal baseline's parameters chosen on one half (by its NAB-optimised score),
/// reported on the other, each way.
fn tune_seasonal(series: &[Series]) -> Result<()> {
    let mut grid = Vec::new();
    for cycles in [2, 4, 8] {
        for residual_window in [100, 288, 1000] {
            for warmup in [300, 700] {
                grid.push(seasonal::SeasonalParams {
                    cycles,
                    residual_window,
                    warmup,
                    period: None,
                });
            }
        }
    }
    let mut results = Vec::new();
    for params in grid {
        let spec = StreamSpec::Seasonal {
            params: params.clone(),
        };
        let runs: Vec<Run> = series
            .par_iter()
            .map(|s| run(&spec, s))
            .collect::<Result<_>>()?;
        results.push((
            params,
            runs.into_iter().map(|r| r.scores).collect::<Vec<_>>(),
        ));
    }
    report_choice(series, &results)
}

/// For each half: the candidate whose NAB-optimised score is best there, and how its
/// threshold does on the other half.
fn report_choice<P: std::fmt::Debug>(
    series: &[Series],
    results: &[(P, Vec<Vec<f64>>)],
) -> Result<()> {
    for (pick, other) in [(Half::A, Half::B), (Half::B, Half::A)] {
        let best = results
            .iter()
            .max_by(|x, y| {
                let sx = optimize(series, &x.1, |s| s.half == pick).normalized();
                let sy = optimize(series, &y.1, |s| s.half == pick).normalized();
                sx.total_cmp(&sy)
            })
            .context("a grid")?;
        let chosen = optimize(series, &best.1, |s| s.half == pick);
        let reported = at(series, &best.1, chosen.threshold, |s| s.half == other);
        println!(
            "    tune on {pick:?}: {:?} threshold {:.4} NAB on {pick:?} {:.1}, on {other:?} {:.1} ({}/{} windows, {} FP)",
            best.0,
            chosen.threshold,
            chosen.normalized(),
            reported.normalized(),
            reported.windows_found,
            reported.windows,
            reported.fp
        );
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
