//! Detection quality on the public tabular datasets, side by side with scikit-learn and
//! PyOD (`tests/data/tabular/BASELINES.md`). Each AUC is computed here, in Rust, from
//! the `score,anomaly` lines that `nomaly detect` prints.
//!
//! Required: ecod within 0.01 of PyOD's ECOD on every dataset; knn within 0.02 of PyOD KNN
//! (k=5) and lof within 0.02 of scikit-learn LOF (n_neighbors=20) on the five smaller
//! ones (these are deterministic, so one run decides). The other detectors' AUCs are
//! printed (run with `--nocapture` to see the tables).
//!
//! iforest is random, and one seed's AUC is a draw: on satellite scikit-learn's own AUC
//! ranges from 0.67 to 0.73 over seeds 0-7, and its seed 0 (the 0.6705 of BASELINES.md) is
//! the lowest of them. So the iforest test runs scikit-learn itself, in the same run, on
//! seeds 0-7 and requires nomaly's mean AUC over seeds 0-7 within 0.02 of scikit-learn's on
//! every dataset. It also checks that scikit-learn's seed-0 AUC here reproduces
//! BASELINES.md, and prints nomaly's seed-0 AUC beside it.

use nomaly_detect::metrics::{average_precision, roc_auc};
use nomaly_tests::{
    baselines, labels_of, nomaly, parse_scores, read_f64s, reference_python, scratch, test_data,
};
use std::process::Command;
use std::time::Instant;

const DATASETS: [&str; 6] = [
    "breastw",
    "cardio",
    "thyroid",
    "satellite",
    "shuttle",
    "http",
];

/// (algorithm, reference model in BASELINES.md, tolerance, include http)
const CHECKED: [(&str, &str, f64, bool); 3] = [
    ("ecod", "pyod.ECOD", 0.01, true),
    ("knn", "pyod.KNN", 0.02, false),
    ("lof", "sklearn.LocalOutlierFactor", 0.02, false),
];
const REPORTED: [&str; 4] = ["hbos", "zscore", "pca", "kmeans"];

fn file_of(dataset: &str) -> std::path::PathBuf {
    let dir = test_data("tabular");
    let plain = dir.join(format!("{dataset}.csv"));
    if plain.is_file() {
        plain
    } else {
        dir.join(format!("{dataset}.csv.gz"))
    }
}

fn detect(algorithm: &str, path: &std::path::Path) -> (Vec<f64>, f64) {
    detect_seeded(algorithm, path, 0)
}

fn detect_seeded(algorithm: &str, path: &std::path::Path, seed: u64) -> (Vec<f64>, f64) {
    let started = Instant::now();
    let seed = seed.to_string();
    let out = nomaly(&[
        "detect",
        "--algorithm",
        algorithm,
        "--input",
        path.to_str().expect("utf-8 path"),
        "--exclude-columns",
        "label",
        "--seed",
        &seed,
    ]);
    assert!(
        out.status.success(),
        "nomaly detect --algorithm {algorithm} on {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    (parse_scores(&out.stdout).0, started.elapsed().as_secs_f64())
}

const SEEDS: [u64; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn iforest_auc_matches_scikit_learn_over_seeds() {
    let reference = baselines();
    let python = reference_python();
    let script = nomaly_tests::repo_root().join("tests/reference/sklearn_iforest.py");
    let out_dir = scratch("sklearn-iforest");
    let mut failures = Vec::new();
    println!(
        "{:<10} {:>12} {:>12} {:>8}   {:>12} {:>14} {:>13}",
        "dataset",
        "nomaly mean",
        "sklearn mean",
        "diff",
        "nomaly seed0",
        "sklearn seed0",
        "BASELINES.md"
    );
    for dataset in DATASETS {
        let path = file_of(dataset);
        let labels = labels_of(&path);
        let dir = out_dir.join(dataset);
        let mut cmd = Command::new(&python);
        cmd.arg(&script).arg(&path).arg(&dir);
        cmd.args(SEEDS.iter().map(|s| s.to_string()));
        let status = cmd.status().expect("run the scikit-learn reference");
        assert!(
            status.success(),
            "scikit-learn reference failed on {dataset}"
        );
        let sklearn: Vec<f64> = SEEDS
            .iter()
            .map(|s| {
                let scores = read_f64s(&dir.join(format!("seed-{s}.f64")));
                roc_auc(&labels, &scores).expect("both classes")
            })
            .collect();
        let ours: Vec<f64> = SEEDS
            .iter()
            .map(|&s| {
                roc_auc(&labels, &detect_seeded("iforest", &path, s).0).expect("both classes")
            })
            .collect();
        let published = reference
            .iter()
            .find(|(d, m, _)| d == dataset && m == "sklearn.IsolationForest")
            .map(|r| r.2)
            .unwrap_or_else(|| panic!("BASELINES.md has no IsolationForest row for {dataset}"));
        let diff = mean(&ours) - mean(&sklearn);
        println!(
            "{dataset:<10} {:>12.4} {:>12.4} {diff:>+8.4}   {:>12.4} {:>14.4} {published:>13.4}",
            mean(&ours),
            mean(&sklearn),
            ours[0],
            sklearn[0]
        );
        if diff.abs() > 0.02 {
            failures.push(format!(
                "{dataset}: mean AUC over seeds 0-7 off by {diff:+.4}"
            ));
        }
        if (sklearn[0] - published).abs() > 0.002 {
            failures.push(format!(
                "{dataset}: scikit-learn seed 0 gives {:.4} here, BASELINES.md says {published:.4}",
                sklearn[0]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn auc_matches_pyod_and_scikit_learn_on_public_data() {
    let reference = baselines();
    assert!(
        reference.len() >= 30,
        "BASELINES.md has {} rows",
        reference.len()
    );
    let mut failures = Vec::new();
    let mut best_reported = std::collections::BTreeMap::new();
    println!(
        "{:<10} {:<8} {:>8} {:>8} {:>10} {:>8} {:>7}  reference",
        "dataset", "nomaly", "AUC", "AP", "ref AUC", "diff", "secs"
    );
    for dataset in DATASETS {
        let path = file_of(dataset);
        let labels = labels_of(&path);
        for (algorithm, model, tolerance, with_http) in CHECKED {
            if dataset == "http" && !with_http {
                continue;
            }
            let (scores, secs) = detect(algorithm, &path);
            assert_eq!(
                scores.len(),
                labels.len(),
                "{algorithm} on {dataset}: one score per row"
            );
            let auc = roc_auc(&labels, &scores).expect("both classes present");
            let ap = average_precision(&labels, &scores).expect("anomalies present");
            let reference_auc = reference
                .iter()
                .find(|(d, m, _)| d == dataset && m == model)
                .map(|r| r.2)
                .unwrap_or_else(|| panic!("BASELINES.md has no {model} row for {dataset}"));
            let diff = auc - reference_auc;
            println!(
                "{dataset:<10} {algorithm:<8} {auc:>8.4} {ap:>8.4} {reference_auc:>10.4} {diff:>+8.4} {secs:>7.2}  {model} (tolerance {tolerance})"
            );
            if diff.abs() > tolerance {
                failures.push(format!(
                    "{algorithm} on {dataset}: AUC {auc:.4}, {model} {reference_auc:.4}, off by {diff:+.4} (> {tolerance})"
                ));
            }
        }
        for algorithm in REPORTED {
            let (scores, secs) = detect(algorithm, &path);
            assert_eq!(scores.len(), labels.len());
            let auc = roc_auc(&labels, &scores).expect("both classes present");
            let ap = average_precision(&labels, &scores).expect("anomalies present");
            println!(
                "{dataset:<10} {algorithm:<8} {auc:>8.4} {ap:>8.4} {:>10} {:>8} {secs:>7.2}",
                "-", "-"
            );
            let best = best_reported.entry(algorithm).or_insert(0.0f64);
            *best = best.max(auc);
        }
    }
    // No reference to meet for these, but a detector that ranks no dataset well is broken.
    for (algorithm, best) in best_reported {
        if best < 0.9 {
            failures.push(format!(
                "{algorithm}: best AUC over the datasets is only {best:.4}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "AUC outside tolerance:\n{}",
        failures.join("\n")
    );
}
