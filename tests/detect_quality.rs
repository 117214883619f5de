//! Detection quality on the public tabular datasets, side by side with PyOD and
//! scikit-learn run in the same test run (`tests/reference/`, in the `.venv` that
//! `tests/run.sh` makes). Each AUC is computed here, in Rust, from the `score,anomaly`
//! lines that `nomaly detect` prints and from the scores the references write.
//!
//! Every detector with a reference is held to it on every public set (fit on all rows,
//! score the same rows, as ODDS/ADBench do): ecod and copod within 0.01 of PyOD's ECOD and
//! COPOD, hbos within 0.015 of PyOD's HBOS, knn within 0.02 of PyOD's KNN (k=5) and lof of
//! scikit-learn's LocalOutlierFactor (n_neighbors=20) on the five smaller sets (both take
//! minutes on http's 567,498 rows), pca at least PyOD's PCA() - 0.02, and kmeans, whose
//! k-means is random, at a mean AUC over seeds 0-7 of at least PyOD's CBLOF(random_state=0)
//! - 0.03. `zscore` has no reference and keeps an absolute floor.
//!
//! iforest is random, and one seed's AUC is a draw: on satellite scikit-learn's own AUC
//! ranges from 0.67 to 0.73 over seeds 0-7, and its seed 0 (the 0.6705 of BASELINES.md) is
//! the lowest of them. So the iforest test runs scikit-learn itself on seeds 0-7 and
//! requires nomaly's mean AUC over seeds 0-7 within 0.02 of scikit-learn's on every
//! dataset. It also checks that scikit-learn's seed-0 AUC here reproduces BASELINES.md.
//!
//! Run with `--nocapture` to see the tables (`bench/README.md` keeps a copy).

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

/// How a detector is held to its reference.
#[derive(Clone, Copy)]
enum Rule {
    /// Within this of the reference's AUC, either way.
    Within(f64),
    /// At least the reference's AUC less this.
    AtLeast(f64),
}

/// (algorithm, reference model for `tests/reference/pyod_scores.py`, rule, include http)
const CHECKED: [(&str, &str, Rule, bool); 6] = [
    ("ecod", "ECOD", Rule::Within(0.01), true),
    ("copod", "COPOD", Rule::Within(0.01), true),
    ("hbos", "HBOS", Rule::Within(0.015), true),
    ("knn", "KNN", Rule::Within(0.02), false),
    ("lof", "LOF", Rule::Within(0.02), false),
    ("pca", "PCA", Rule::AtLeast(0.02), true),
];

/// The lowest AUC `zscore` may have on any set (it has no reference).
const ZSCORE_FLOOR: f64 = 0.55;

/// Runs the PyOD / scikit-learn references for `models` on `path`; their scores are in
/// the returned folder, one `MODEL.f64` (or `MODEL-SEED.f64`) each.
fn references(path: &std::path::Path, dataset: &str, models: &[String]) -> std::path::PathBuf {
    let dir = scratch(&format!("reference-{dataset}"));
    let script = nomaly_tests::repo_root().join("tests/reference/pyod_scores.py");
    let status = Command::new(reference_python())
        .arg(&script)
        .arg(path)
        .arg(&dir)
        .args(models)
        .status()
        .expect("run the PyOD reference");
    assert!(status.success(), "the PyOD reference failed on {dataset}");
    dir
}

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
fn every_detector_holds_up_to_its_reference_on_every_public_set() {
    let mut failures = Vec::new();
    println!(
        "{:<10} {:<8} {:>8} {:>8} {:>10} {:>8} {:>7}  reference",
        "dataset", "nomaly", "AUC", "AP", "ref AUC", "diff", "secs"
    );
    for dataset in DATASETS {
        let path = file_of(dataset);
        let labels = labels_of(&path);
        let checked: Vec<_> = CHECKED
            .iter()
            .filter(|c| dataset != "http" || c.3)
            .collect();
        let mut models: Vec<String> = checked.iter().map(|c| c.1.to_string()).collect();
        let seeds: Vec<String> = SEEDS.iter().map(u64::to_string).collect();
        models.push(format!("CBLOF:{}", seeds.join(",")));
        let dir = references(&path, dataset, &models);
        let auc_of = |file: &str| {
            roc_auc(&labels, &read_f64s(&dir.join(file))).expect("both classes present")
        };
        for &&(algorithm, model, rule, _) in &checked {
            let (scores, secs) = detect(algorithm, &path);
            assert_eq!(
                scores.len(),
                labels.len(),
                "{algorithm} on {dataset}: one score per row"
            );
            let auc = roc_auc(&labels, &scores).expect("both classes present");
            let ap = average_precision(&labels, &scores).expect("anomalies present");
            let reference_auc = auc_of(&format!("{model}.f64"));
            let diff = auc - reference_auc;
            let (ok, rule_text) = match rule {
                Rule::Within(t) => (diff.abs() <= t, format!("within {t}")),
                Rule::AtLeast(t) => (diff >= -t, format!("at least ref - {t}")),
            };
            println!(
                "{dataset:<10} {algorithm:<8} {auc:>8.4} {ap:>8.4} {reference_auc:>10.4} {diff:>+8.4} {secs:>7.2}  {model} ({rule_text})"
            );
            if !ok {
                failures.push(format!(
                    "{algorithm} on {dataset}: AUC {auc:.4}, {model} {reference_auc:.4}, off by {diff:+.4} ({rule_text})"
                ));
            }
        }
        // kmeans against CBLOF: both random, so means over seeds 0-7 beside seed 0.
        let started = Instant::now();
        let ours: Vec<f64> = SEEDS
            .iter()
            .map(|&s| roc_auc(&labels, &detect_seeded("kmeans", &path, s).0).expect("both classes"))
            .collect();
        let secs = started.elapsed().as_secs_f64() / SEEDS.len() as f64;
        let cblof: Vec<f64> = SEEDS
            .iter()
            .map(|s| auc_of(&format!("CBLOF-{s}.f64")))
            .collect();
        let diff = mean(&ours) - cblof[0];
        println!(
            "{dataset:<10} {:<8} {:>8.4} {:>8} {:>10.4} {diff:>+8.4} {secs:>7.2}  CBLOF rs=0 (mean of seeds 0-7 at least ref - 0.03; CBLOF's own mean {:.4})",
            "kmeans",
            mean(&ours),
            "-",
            cblof[0],
            mean(&cblof)
        );
        if diff < -0.03 {
            failures.push(format!(
                "kmeans on {dataset}: mean AUC {:.4} over seeds 0-7, CBLOF(random_state=0) {:.4}",
                mean(&ours),
                cblof[0]
            ));
        }
        let (scores, secs) = detect("zscore", &path);
        let auc = roc_auc(&labels, &scores).expect("both classes present");
        let ap = average_precision(&labels, &scores).expect("anomalies present");
        println!(
            "{dataset:<10} {:<8} {auc:>8.4} {ap:>8.4} {:>10} {:>8} {secs:>7.2}  none (floor {ZSCORE_FLOOR})",
            "zscore", "-", "-"
        );
        if auc < ZSCORE_FLOOR {
            failures.push(format!(
                "zscore on {dataset}: AUC {auc:.4} under its floor {ZSCORE_FLOOR}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "AUC outside tolerance:\n{}",
        failures.join("\n")
    );
}

/// Every fifth row of `path` held apart: (training CSV, held-out CSV, held-out labels).
fn split(
    path: &std::path::Path,
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, Vec<bool>) {
    let file = std::fs::File::open(path).expect("open the data");
    let table = nomaly_core::table::read_csv(file, &Default::default()).expect("read the data");
    let write = |name: &str, keep: &dyn Fn(usize) -> bool| {
        let mut text = table.columns.join(",");
        text.push('\n');
        for (_, row) in table
            .data
            .outer_iter()
            .enumerate()
            .filter(|(i, _)| keep(*i))
        {
            let cells: Vec<String> = row.iter().map(|v| format!("{v:?}")).collect();
            text.push_str(&cells.join(","));
            text.push('\n');
        }
        let out = dir.join(name);
        std::fs::write(&out, text).expect("write a split");
        out
    };
    let label = table
        .columns
        .iter()
        .position(|c| c == "label")
        .expect("a label column");
    let held_labels = table
        .data
        .outer_iter()
        .enumerate()
        .filter(|(i, _)| i % 5 == 4)
        .map(|(_, r)| r[label] == 1.0)
        .collect();
    (
        write("train.csv", &|i| i % 5 != 4),
        write("held-out.csv", &|i| i % 5 == 4),
        held_labels,
    )
}

#[test]
fn saved_models_score_held_out_rows_as_the_fitted_model_did() {
    // Fit on 80 % of cardio, score the other 20 % in the fitting process (the library) and
    // again from the saved model (`nomaly detect --model`): the same scores, bit for bit.
    let dir = scratch("held-out");
    let (train, held_out, labels) = split(&file_of("cardio"), &dir);
    let read = |p: &std::path::Path| {
        let file = std::fs::File::open(p).expect("open a split");
        nomaly_core::table::read_csv(
            file,
            &nomaly_core::table::CsvOptions::dataset(&["label".into()]),
        )
        .expect("read a split")
    };
    let (x_train, x_held) = (read(&train), read(&held_out));
    println!(
        "{:<8} {:>14} {:>14}",
        "nomaly", "held-out AUC", "training AUC"
    );
    for algorithm in nomaly_detect::model::ALGORITHMS {
        let mut options = nomaly_detect::FitOptions::new(
            nomaly_detect::Algorithm::named(algorithm).expect("known"),
        );
        options.feature_names = Some(x_train.columns.clone());
        let fitted = nomaly_detect::Model::fit(x_train.data.view(), &options).expect("fit");
        let in_process = fitted.model.score(x_held.data.view()).expect("score");
        let model_path = dir.join(format!("{algorithm}.json"));
        std::fs::write(&model_path, fitted.model.to_json()).expect("save the model");
        let out = nomaly(&[
            "detect",
            "--model",
            model_path.to_str().expect("utf-8"),
            "--input",
            held_out.to_str().expect("utf-8"),
        ]);
        assert!(
            out.status.success(),
            "{algorithm}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let from_saved = parse_scores(&out.stdout).0;
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&from_saved),
            bits(&in_process),
            "{algorithm}: the saved model scores the held-out rows as the fitted one did"
        );
        let train_labels: Vec<bool> = labels_of(&train);
        println!(
            "{algorithm:<8} {:>14.4} {:>14.4}",
            roc_auc(&labels, &in_process).expect("both classes"),
            roc_auc(&train_labels, &fitted.training_scores).expect("both classes"),
        );
    }
}
