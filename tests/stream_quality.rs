//! The streaming detectors on the four labelled NAB series, through the documented
//! command (`nab-bench`, built by `cargo build --workspace --bins`), each at the
//! threshold streams use by default: the seasonal baseline must find every labelled
//! anomaly window, with under a tenth of the rolling z-score baseline's false positives
//! and a better NAB score. Figures below these are a regression of the detectors (or of
//! the scoring).

use nomaly_tests::{binary, repo_root, shared_data};
use std::process::Command;

/// `(windows found, windows, false positives, NAB score)` of a detector's overall line.
fn overall(table: &str, detector: &str) -> (usize, usize, usize, f64) {
    let line = table
        .lines()
        .find(|l| l.starts_with("all four") && l.contains(detector))
        .unwrap_or_else(|| panic!("no overall line for {detector} in\n{table}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    // ... rows windows FP NAB points/s
    let n = fields.len();
    let (found, total) = fields[n - 4].split_once('/').expect("found/total");
    (
        found.parse().expect("found"),
        total.parse().expect("total"),
        fields[n - 3].parse().expect("FP"),
        fields[n - 2].parse().expect("NAB"),
    )
}

#[test]
fn the_seasonal_baseline_beats_the_rolling_z_score_on_nab() {
    let out = Command::new(binary("nab-bench"))
        .arg(shared_data("nab"))
        .current_dir(repo_root())
        .output()
        .expect("nab-bench runs");
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{table}");
    let baseline = overall(&table, "rolling z (baseline)");
    let seasonal = overall(&table, "seasonal");
    assert_eq!(baseline.1, 10, "ten windows end after the probation");
    assert_eq!(
        baseline.0, 6,
        "the baseline as specified finds 6 (|z| > 3 over 288)"
    );
    assert_eq!(seasonal.0, 10, "seasonal finds every window: {seasonal:?}");
    assert!(
        seasonal.2 * 10 < baseline.2,
        "false positives {seasonal:?} vs {baseline:?}"
    );
    assert!(
        seasonal.3 > 40.0 && seasonal.3 > baseline.3,
        "NAB {seasonal:?} vs {baseline:?}"
    );
}
