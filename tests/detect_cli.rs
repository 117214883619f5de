//! `nomaly detect` and `nomaly sample` as a user runs them: output shape, saved models,
//! thread-count independence, and errors that name the file, line and column.

use nomaly_detect::metrics::roc_auc;
use nomaly_tests::{labels_of, nomaly, parse_scores, scratch, test_data};
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn sample_then_detect_finds_the_planted_anomalies() {
    let dir = scratch("sample");
    let data = dir.join("sample.csv");
    let out = nomaly(&[
        "sample",
        "--rows",
        "5000",
        "--features",
        "4",
        "--output",
        s(&data),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let labels = labels_of(&data);
    assert_eq!(labels.len(), 5000);
    let planted = labels.iter().filter(|&&l| l).count();
    assert!((50..=150).contains(&planted), "{planted} anomalies planted");
    for algorithm in ["iforest", "ecod", "knn"] {
        let out = nomaly(&[
            "detect",
            "--algorithm",
            algorithm,
            "--input",
            s(&data),
            "--exclude-columns",
            "label",
            "--contamination",
            "0.05",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let (scores, flags) = parse_scores(&out.stdout);
        assert_eq!(scores.len(), 5000);
        let flagged = flags.iter().filter(|&&f| f == 1).count();
        assert!(
            (240..=260).contains(&flagged),
            "{algorithm}: {flagged} flagged at contamination 0.05"
        );
        let auc = roc_auc(&labels, &scores).expect("both classes");
        assert!(auc > 0.9, "{algorithm}: AUC {auc} on planted anomalies");
    }
}

#[test]
fn a_saved_model_scores_new_data_like_the_fit_and_thread_count_does_not_matter() {
    let dir = scratch("saved");
    let input = test_data("tabular").join("shuttle.csv");
    let model = dir.join("iforest.json");
    let fit = |threads: &str| {
        nomaly(&[
            "detect",
            "--algorithm",
            "iforest",
            "--input",
            s(&input),
            "--exclude-columns",
            "label",
            "--seed",
            "3",
            "--threads",
            threads,
            "--save-model",
            s(&model),
        ])
    };
    let one = fit("1");
    assert!(one.status.success(), "{}", stderr(&one));
    let two = fit("2");
    assert_eq!(
        one.stdout, two.stdout,
        "scores differ between 1 and 2 threads"
    );
    let reused = nomaly(&[
        "detect",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--exclude-columns",
        "label",
    ]);
    assert!(reused.status.success(), "{}", stderr(&reused));
    assert_eq!(
        one.stdout, reused.stdout,
        "the saved model scores differently"
    );
    let saved: serde_json_check::Header = serde_json_check::read(&model);
    assert_eq!(saved.format, "nomaly-model");
    assert_eq!(saved.version, 1);

    // A fixed threshold overrides the saved one.
    let strict = nomaly(&[
        "detect",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--exclude-columns",
        "label",
        "--threshold",
        "0.99",
    ]);
    assert!(strict.status.success(), "{}", stderr(&strict));
    let (_, flags) = parse_scores(&strict.stdout);
    assert!(flags.iter().all(|&f| f == 0));

    // Explanations name real columns.
    let explained = nomaly(&[
        "detect",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--exclude-columns",
        "label",
        "--explain",
    ]);
    let text = String::from_utf8_lossy(&explained.stdout);
    let second = text.lines().nth(1).expect("a scored row");
    assert!(text.starts_with("score,anomaly,top_features\n"));
    assert_eq!(second.split(';').count(), 3, "{second}");
    assert!(
        second.split(',').nth(2).is_some_and(|f| f.starts_with('f')),
        "{second}"
    );
}

/// A tiny reader for the saved model's header, so this test depends on the file format
/// and not on the crate's types.
mod serde_json_check {
    pub struct Header {
        pub format: String,
        pub version: u64,
    }
    pub fn read(path: &std::path::Path) -> Header {
        let text = std::fs::read_to_string(path).expect("read model");
        let field = |name: &str| {
            let at = text.find(&format!("\"{name}\":")).expect("field present") + name.len() + 3;
            text[at..]
                .split([',', '}'])
                .next()
                .expect("value")
                .trim_matches('"')
                .to_string()
        };
        Header {
            format: field("format"),
            version: field("version").parse().expect("a number"),
        }
    }
}

#[test]
fn gzip_input_reads_like_plain() {
    let dir = scratch("gzip");
    let plain = dir.join("d.csv");
    std::fs::write(&plain, "a,b\n1,2\n2,3\n3,4\n50,-9\n").expect("write");
    let out = std::process::Command::new("gzip")
        .arg("-k")
        .arg(&plain)
        .status()
        .expect("gzip runs");
    assert!(out.success());
    let a = nomaly(&["detect", "--algorithm", "zscore", "--input", s(&plain)]);
    let b = nomaly(&[
        "detect",
        "--algorithm",
        "zscore",
        "--input",
        s(&dir.join("d.csv.gz")),
    ]);
    assert!(a.status.success() && b.status.success(), "{}", stderr(&b));
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(parse_scores(&a.stdout).1, vec![0, 0, 0, 1]);
}

#[test]
fn errors_name_the_file_line_and_column() {
    let dir = scratch("errors");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let cases = [
        (
            write("bad.csv", "a,b\n1,2\n3,x\n"),
            "bad.csv: line 3, column `b`: `x` is not a number",
        ),
        (
            write("ragged.csv", "a,b\n1,2\n3\n"),
            "ragged.csv: line 3: 1 fields, but the header has 2",
        ),
        (
            write("nan.csv", "a,b\n1,nan\n"),
            "nan.csv: line 2, column `b`: `nan` is not a finite number",
        ),
        (write("empty.csv", ""), "empty.csv: the input is empty"),
        (
            write("header.csv", "a,b\n"),
            "header.csv: the input has a header but no data rows",
        ),
    ];
    for (path, expected) in &cases {
        let out = nomaly(&["detect", "--algorithm", "iforest", "--input", s(path)]);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains(expected),
            "expected {expected:?} in {:?}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "no scores on error");
    }
    let good = write("good.csv", "a,b\n1,2\n2,3\n3,1\n");
    let missing = nomaly(&[
        "detect",
        "--algorithm",
        "iforest",
        "--input",
        s(&dir.join("nope.csv")),
    ]);
    assert!(
        stderr(&missing).contains("cannot open"),
        "{}",
        stderr(&missing)
    );
    let unknown = nomaly(&["detect", "--algorithm", "svm", "--input", s(&good)]);
    assert!(
        stderr(&unknown).contains("unknown algorithm `svm`"),
        "{}",
        stderr(&unknown)
    );
    let bad_param = nomaly(&[
        "detect",
        "--algorithm",
        "iforest",
        "--params",
        "{\"n_estimators\": 0}",
        "--input",
        s(&good),
    ]);
    assert!(
        stderr(&bad_param).contains("n_estimators"),
        "{}",
        stderr(&bad_param)
    );
    let contamination = nomaly(&[
        "detect",
        "--algorithm",
        "iforest",
        "--contamination",
        "0.9",
        "--input",
        s(&good),
    ]);
    assert!(
        stderr(&contamination).contains("contamination"),
        "{}",
        stderr(&contamination)
    );

    // A model meets a file with other columns, and a model from a newer format.
    let model = dir.join("m.json");
    let fitted = nomaly(&[
        "detect",
        "--algorithm",
        "ecod",
        "--input",
        s(&good),
        "--save-model",
        s(&model),
    ]);
    assert!(fitted.status.success(), "{}", stderr(&fitted));
    let other = write("other.csv", "a,c\n1,2\n");
    let out = nomaly(&["detect", "--model", s(&model), "--input", s(&other)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("the rows have no `b` column, which the model takes (its features are a, b)"),
        "{}",
        stderr(&out)
    );
    // The same rows with their columns the other way round, and an id besides: taken by
    // name, they score exactly as in the model's order.
    let in_order = nomaly(&["detect", "--model", s(&model), "--input", s(&good)]);
    let swapped = write("swapped.csv", "id,b,a\n7,2,1\n8,3,2\n9,1,3\n");
    let out = nomaly(&["detect", "--model", s(&model), "--input", s(&swapped)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, in_order.stdout);
    assert!(
        stderr(&out).contains("left out columns the model does not take: id"),
        "{}",
        stderr(&out)
    );
    let newer = dir.join("newer.json");
    let text = std::fs::read_to_string(&model).expect("read model");
    std::fs::write(&newer, text.replacen("\"version\":1", "\"version\":7", 1)).expect("write");
    let out = nomaly(&["detect", "--model", s(&newer), "--input", s(&good)]);
    assert!(
        stderr(&out).contains("model format version 7 is newer than this build supports (up to 1)"),
        "{}",
        stderr(&out)
    );
}
