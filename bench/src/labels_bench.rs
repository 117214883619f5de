//! Labels from feedback, measured on rows they never saw.
//!
//! ```text
//! labels-bench [--data tests/data/tabular] [--seeds 5] [--misses 25]
//! ```
//!
//! For each ODDS dataset (a `label` column, 1 = anomaly), as the service does: fit
//! iforest (contamination 0.1) on every row, unsupervised. The rows are split in two by
//! a seeded shuffle. A person reviews half A only: every row of A the model flags gets its
//! true label (`false_positive` or `true_positive`), and of `--misses` unflagged rows of A
//! picked at random, those that are anomalies are marked `missed`. The threshold is then
//! fitted to those labels ([`nomaly_detect::labels`]), and precision, recall and F1 are
//! measured on half B, whose labels nothing saw, before and after. Also printed: F1 on B
//! at the best threshold for B (an oracle, the ceiling for any threshold rule). Figures
//! are means over `--seeds` shuffles. One JSON line per dataset, then a table.

use anyhow::{bail, Context, Result};
use nomaly_core::table::{read_csv, CsvOptions};
use nomaly_detect::labels::Labelled;
use nomaly_detect::rng::Rng;
use nomaly_detect::{Algorithm, FitOptions, Model, ThresholdRule};
use std::path::PathBuf;

const DATASETS: [&str; 5] = ["breastw", "cardio", "satellite", "shuttle", "thyroid"];

struct Opts {
    data: PathBuf,
    seeds: u64,
    misses: usize,
}

fn parse_args() -> Result<Opts> {
    let mut o = Opts {
        data: PathBuf::from("tests/data/tabular"),
        seeds: 5,
        misses: 25,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--data" => o.data = PathBuf::from(val()?),
            "--seeds" => o.seeds = val()?.parse::<u64>()?.max(1),
            "--misses" => o.misses = val()?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(o)
}

/// Precision, recall and F1 of flagging `score > t` on `rows`.
fn prf(scores: &[f64], truth: &[bool], rows: &[usize], t: f64) -> (f64, f64, f64) {
    let (mut tp, mut fp, mut fneg) = (0.0, 0.0, 0.0);
    for &i in rows {
        match (scores[i] > t, truth[i]) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fneg += 1.0,
            (false, false) => {}
        }
    }
    let p = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
    let r = if tp + fneg > 0.0 {
        tp / (tp + fneg)
    } else {
        0.0
    };
    let f = if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    };
    (p, r, f)
}

/// The best F1 on `rows` over every threshold: rows by score, highest first, each cut
/// between two distinct scores tried once.
fn oracle_f1(scores: &[f64], truth: &[bool], rows: &[usize]) -> f64 {
    let mut sorted = rows.to_vec();
    sorted.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let positives = rows.iter().filter(|&&i| truth[i]).count() as f64;
    let (mut tp, mut fp, mut best) = (0.0, 0.0, 0.0f64);
    for (k, &i) in sorted.iter().enumerate() {
        if truth[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let cut = sorted.get(k + 1).is_none_or(|&j| scores[j] < scores[i]);
        if cut && tp > 0.0 {
            let (p, r) = (tp / (tp + fp), tp / positives);
            best = best.max(2.0 * p * r / (p + r));
        }
    }
    best
}

#[derive(Default)]
struct Sums {
    labels: f64,
    before: [f64; 3],
    after: [f64; 3],
    oracle: f64,
}

fn main() -> Result<()> {
    let o = parse_args()?;
    let mut table = Vec::new();
    for name in DATASETS {
        let path = o.data.join(format!("{name}.csv"));
        let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        let all = read_csv(&bytes[..], &CsvOptions::dataset(&[]))
            .with_context(|| format!("parse {}", path.display()))?;
        let label_col = all
            .columns
            .iter()
            .position(|c| c == "label")
            .with_context(|| format!("{name} has no label column"))?;
        let truth: Vec<bool> = all
            .data
            .column(label_col)
            .iter()
            .map(|&v| v == 1.0)
            .collect();
        let x = read_csv(&bytes[..], &CsvOptions::dataset(&["label".to_string()]))?.data;
        let mut sums = Sums::default();
        for seed in 0..o.seeds {
            let mut options = FitOptions::new(Algorithm::named("iforest")?);
            options.threshold = ThresholdRule::Contamination(0.1);
            options.seed = seed;
            let mut fitted = Model::fit(x.view(), &options)?;
            let scores = fitted.training_scores.clone();
            let prior = fitted.model.threshold();
            // the split: a seeded shuffle, half A reviewed, half B held out
            let mut order: Vec<usize> = (0..scores.len()).collect();
            let mut rng = Rng::new(seed ^ 0x5eed);
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i + 1));
            }
            let (a, b) = order.split_at(order.len() / 2);
            let mut labels: Vec<Labelled> = a
                .iter()
                .filter(|&&i| scores[i] > prior)
                .map(|&i| Labelled {
                    row: i,
                    anomaly: truth[i],
                })
                .collect();
            let unflagged: Vec<usize> = a.iter().copied().filter(|&i| scores[i] <= prior).collect();
            for &i in unflagged.iter().take(o.misses) {
                // `a` is already shuffled: its first unflagged rows are a random pick
                if truth[i] {
                    labels.push(Labelled {
                        row: i,
                        anomaly: true,
                    });
                }
            }
            let fit = fitted.fit_to_labels(&labels);
            let after = fit.as_ref().map_or(prior, |f| f.threshold);
            let before = prf(&scores, &truth, b, prior);
            let now = prf(&scores, &truth, b, after);
            sums.labels += labels.len() as f64;
            for k in 0..3 {
                sums.before[k] += [before.0, before.1, before.2][k];
                sums.after[k] += [now.0, now.1, now.2][k];
            }
            sums.oracle += oracle_f1(&scores, &truth, b);
        }
        let n = o.seeds as f64;
        let mean = |v: f64| v / n;
        let line = serde_json::json!({
            "dataset": name,
            "rows": truth.len(),
            "anomaly_share": truth.iter().filter(|&&t| t).count() as f64 / truth.len() as f64,
            "seeds": o.seeds,
            "labels": mean(sums.labels),
            "before": {"precision": mean(sums.before[0]), "recall": mean(sums.before[1]), "f1": mean(sums.before[2])},
            "after": {"precision": mean(sums.after[0]), "recall": mean(sums.after[1]), "f1": mean(sums.after[2])},
            "oracle_f1": mean(sums.oracle),
        });
        println!("{line}");
        table.push(line);
    }
    println!();
    println!("| dataset | anomalies | labels (half A) | P before → after | R before → after | F1 before → after | best F1 on B |");
    println!("|---|---|---|---|---|---|---|");
    for l in &table {
        let f = |k: &str, m: &str| l[k][m].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {} | {:.1} % | {:.0} | {:.3} → {:.3} | {:.3} → {:.3} | **{:.3} → {:.3}** | {:.3} |",
            l["dataset"].as_str().unwrap_or("?"),
            100.0 * l["anomaly_share"].as_f64().unwrap_or(f64::NAN),
            l["labels"].as_f64().unwrap_or(f64::NAN),
            f("before", "precision"),
            f("after", "precision"),
            f("before", "recall"),
            f("after", "recall"),
            f("before", "f1"),
            f("after", "f1"),
            l["oracle_f1"].as_f64().unwrap_or(f64::NAN),
        );
    }
    Ok(())
}
