//! Helpers for the end-to-end tests: where the repository, the shared data and the built
//! binaries are, and running the `nomaly` command.

pub mod aws;
pub mod contract;
pub mod hostile;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `tests/data/<sub>`: the public datasets the tests read, kept in the repository with
/// their provenance and licences (`tests/data/README.md`). Panics (never skips) when it is
/// missing: these tests exist to measure nomaly on that data.
pub fn test_data(sub: &str) -> PathBuf {
    let dir = repo_root().join("tests").join("data").join(sub);
    assert!(dir.is_dir(), "{} is missing", dir.display());
    dir
}

/// A built binary of the workspace, in the same target folder as this test.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current executable");
    // target/<profile>/deps/<test> -> target/<profile>/<name>; a binary (a benchmark)
    // sits in target/<profile>/ itself.
    let parent = exe.parent().expect("the executable's folder");
    let dir = if parent.ends_with("deps") {
        parent.parent().expect("target/<profile>")
    } else {
        parent
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --workspace --bins --features nomaly/aws` first (tests/run.sh does)",
        path.display()
    );
    path
}

/// Runs `nomaly` with `args`.
pub fn nomaly(args: &[&str]) -> Output {
    Command::new(binary("nomaly"))
        .args(args)
        .output()
        .expect("nomaly runs")
}

/// Runs `nomaly keys create` with `args`, which must succeed; the key it prints.
pub fn create_key(args: &[&str]) -> String {
    let out = nomaly(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// A fresh, empty scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = repo_root()
        .join("target")
        .join("test-scratch")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch folder");
    dir
}

/// Scores and 0/1 labels from `nomaly detect` output (`score,anomaly` CSV).
pub fn parse_scores(stdout: &[u8]) -> (Vec<f64>, Vec<u8>) {
    let text = std::str::from_utf8(stdout).expect("output is UTF-8");
    let mut lines = text.lines();
    let header = lines.next().expect("output has a header");
    assert!(header.starts_with("score,anomaly"), "header is {header:?}");
    let mut scores = Vec::new();
    let mut labels = Vec::new();
    for line in lines {
        let mut cells = line.split(',');
        scores.push(cells.next().and_then(|c| c.parse().ok()).expect("a score"));
        labels.push(cells.next().and_then(|c| c.parse().ok()).expect("a label"));
    }
    (scores, labels)
}

/// The `label` column of a labelled CSV (plain or gzip), as booleans.
pub fn labels_of(path: &Path) -> Vec<bool> {
    let file = std::fs::File::open(path).expect("open labelled data");
    let table =
        nomaly_core::table::read_csv(file, &Default::default()).expect("read labelled data");
    let col = table
        .columns
        .iter()
        .position(|c| c == "label")
        .expect("a label column");
    table.data.column(col).iter().map(|&v| v == 1.0).collect()
}

/// Reference ROC AUCs from `BASELINES.md`: (dataset, model) -> AUC.
pub fn baselines() -> Vec<(String, String, f64)> {
    let path = test_data("tabular").join("BASELINES.md");
    let text = std::fs::read_to_string(&path).expect("read BASELINES.md");
    text.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // | dataset | rows | feats | model | ROC AUC | AP | fit s | score s |
            if cells.len() < 7 {
                return None;
            }
            let auc: f64 = cells[5].parse().ok()?;
            Some((cells[1].to_string(), cells[4].to_string(), auc))
        })
        .collect()
}

/// The Python of the repository's virtual environment (`.venv`, made by tests/run.sh with
/// scikit-learn in it), or `$NOMALY_PYTHON`. Panics when there is none.
pub fn reference_python() -> PathBuf {
    let path = std::env::var_os("NOMALY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv").join("bin").join("python"));
    assert!(
        path.is_file(),
        "{} is missing: run tests/run.sh, which makes the virtual environment with scikit-learn",
        path.display()
    );
    path
}

/// Little-endian f64 values written by numpy's `tofile`.
pub fn read_f64s(path: &Path) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}
