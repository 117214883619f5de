//! What fitting and scoring will cost, predicted from everything that drives it: the
//! rows, the width, the algorithm and its parameters; and the caps that keep one request
//! from asking for more than a worker can do. Every path that fits or scores (`POST
//! /v1/detect`, WebSocket `score`, training, reports) asks here first.

use crate::bounded::Exceeded;
use crate::limits::{self, Limit};
use crate::service::Problem;
use nomaly_detect::Algorithm;

/// Predicted milliseconds to fit (when `fitting`) and score `rows` x `cols` with
/// `algorithm` on one Lambda-sized core, for a model fitted on `trained_rows`.
/// Deliberately pessimistic: a wrong guess costs a 202 instead of a timeout.
pub fn predict_ms(
    algorithm: &Algorithm,
    fitting: bool,
    rows: usize,
    cols: usize,
    trained_rows: usize,
) -> f64 {
    let (n, d) = (rows as f64, cols as f64);
    let m = trained_rows.max(if fitting { rows } else { 0 }).max(1) as f64;
    let log = |x: f64| x.max(2.0).log2();
    let fit = if fitting { 1.0 } else { 0.0 };
    let ns = match algorithm {
        Algorithm::Iforest(p) => {
            let trees = p.n_estimators as f64;
            let sample = (p.max_samples as f64).min(m);
            // Growing: each tree partitions its sample about log2(sample) times.
            // Scoring: one root-to-leaf walk per tree per row.
            fit * trees * sample * log(sample) * 40.0
                + n * trees * (log(sample) + 2.0) * 12.0
                + (n + fit * m) * d * 10.0
        }
        Algorithm::Ecod(_) | Algorithm::Copod(_) => {
            fit * m * d * log(m) * 30.0 + n * d * (60.0 + 10.0 * log(m))
        }
        Algorithm::Hbos(p) => fit * m * d * 60.0 + n * d * (80.0 + 0.1 * p.n_bins as f64),
        Algorithm::Zscore(_) => fit * m * d * log(m) * 20.0 + n * d * 40.0,
        Algorithm::Knn(p) => {
            // k-d tree queries against the training rows, worse with width and k; fitting
            // also queries every training row (leave-one-out).
            let per_query =
                d * log(m) * 150.0 * (1.0 + d / 8.0) * (1.0 + p.n_neighbors as f64 / 8.0);
            (n + fit * m) * per_query
        }
        Algorithm::Lof(p) => {
            let per_query =
                d * log(m) * 300.0 * (1.0 + d / 8.0) * (1.0 + p.n_neighbors as f64 / 8.0);
            (n + 2.0 * fit * m) * per_query
        }
        Algorithm::Pca(_) => {
            // A d x d covariance and its eigendecomposition, then every row against every
            // axis.
            fit * (m * d * d * 2.0 + d * d * d * 10.0) + n * d * d * 2.0
        }
        Algorithm::Kmeans(p) => {
            let k = p.n_clusters as f64;
            // Lloyd's iterations rarely run long; 100 is a pessimistic typical count.
            let iterations = (p.max_iter as f64).min(100.0);
            fit * p.n_init as f64 * iterations * m * d * k * 2.0 + n * d * k * 3.0
        }
    };
    ns / 1e6
}

fn exceeded(limit: &Limit, detail: String) -> Problem {
    Exceeded {
        limit: limit.name,
        detail,
    }
    .into()
}

/// Checks a fit of `algorithm` on `rows` x `cols` against the caps on parameters
/// (relative to the data where the data bounds them) and on width for the costly
/// algorithms. 413 naming the limit when past one.
pub fn check_fit(algorithm: &Algorithm, rows: usize, cols: usize) -> Result<(), Problem> {
    match algorithm {
        Algorithm::Iforest(p) if p.n_estimators > limits::MAX_TREES => Err(exceeded(
            &limits::TREES,
            format!(
                "`n_estimators` is {}; at most {} trees are grown",
                p.n_estimators,
                limits::TREES.shown()
            ),
        )),
        Algorithm::Knn(nomaly_detect::knn::Params { n_neighbors, .. })
        | Algorithm::Lof(nomaly_detect::lof::Params { n_neighbors, .. })
            if *n_neighbors > limits::MAX_NEIGHBORS =>
        {
            Err(exceeded(
                &limits::NEIGHBORS,
                format!(
                    "`n_neighbors` is {n_neighbors}; at most {} are compared",
                    limits::NEIGHBORS.shown()
                ),
            ))
        }
        Algorithm::Knn(nomaly_detect::knn::Params { n_neighbors, .. })
        | Algorithm::Lof(nomaly_detect::lof::Params { n_neighbors, .. })
            if *n_neighbors >= rows =>
        {
            Err(Problem::invalid_parameter(format!(
                "`n_neighbors` is {n_neighbors}, but there are {rows} rows: it must be fewer"
            )))
        }
        Algorithm::Pca(_) if cols > limits::MAX_PCA_COLUMNS => Err(exceeded(
            &limits::PCA_COLUMNS,
            format!(
                "pca fits a {cols} x {cols} covariance; at most {} columns are accepted",
                limits::PCA_COLUMNS.shown()
            ),
        )),
        _ => Ok(()),
    }
}

/// Refuses work no worker could finish: predicted past the limits table's
/// `Predicted work per task`.
pub fn check_task(predicted_ms: f64) -> Result<(), Problem> {
    if predicted_ms > limits::MAX_TASK_MS as f64 {
        return Err(exceeded(
            &limits::TASK_MS,
            format!(
                "the work is predicted to take {:.0} s; a task may take at most {}",
                predicted_ms / 1000.0,
                limits::TASK_MS.shown()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    fn alg(name: &str, params: Value) -> Algorithm {
        let params: Map<String, Value> = serde_json::from_value(params).unwrap();
        Algorithm::with_params(name, &params).unwrap()
    }

    #[test]
    fn predicted_cost_grows_with_the_data() {
        for name in nomaly_detect::model::ALGORITHMS {
            let a = alg(name, json!({}));
            let small = predict_ms(&a, true, 1_000, 10, 1_000);
            let big = predict_ms(&a, true, 1_000_000, 10, 1_000_000);
            assert!(small > 0.0 && big > 100.0 * small, "{name}: {small} {big}");
            let wide = predict_ms(&a, true, 1_000, 100, 1_000);
            assert!(wide > small, "{name}: width counts");
        }
    }

    #[test]
    fn predicted_cost_follows_the_parameters() {
        // The cases, each predicted under the 3 s budget before.
        let budget = limits::DETECT_BUDGET_MS as f64;
        let trees = alg("iforest", json!({"n_estimators": 10_000}));
        assert!(predict_ms(&trees, true, 600_000, 1, 600_000) > budget);
        let pca = alg("pca", json!({}));
        assert!(predict_ms(&pca, true, 2, 7_000, 2) > budget);
        let lof = alg("lof", json!({"n_neighbors": 1_000}));
        assert!(predict_ms(&lof, true, 100_000, 2, 100_000) > budget);
        let few = alg("iforest", json!({"n_estimators": 10}));
        let many = alg("iforest", json!({"n_estimators": 1_000}));
        assert!(
            predict_ms(&many, false, 1_000, 4, 1_000)
                > 50.0 * predict_ms(&few, false, 1_000, 4, 1_000)
        );
    }

    #[test]
    fn parameters_past_their_caps_are_refused_by_name() {
        let e = check_fit(&alg("iforest", json!({"n_estimators": 10_000})), 1_000, 3).unwrap_err();
        assert_eq!(e.status, 413);
        assert!(e.detail.contains(limits::TREES.name), "{e}");
        let e = check_fit(&alg("lof", json!({"n_neighbors": 1_000})), 100_000, 3).unwrap_err();
        assert!(e.detail.contains(limits::NEIGHBORS.name), "{e}");
        let e = check_fit(&alg("knn", json!({"n_neighbors": 50})), 50, 3).unwrap_err();
        assert_eq!(e.status, 400, "{e}");
        let e = check_fit(&alg("pca", json!({})), 2, 7_000).unwrap_err();
        assert!(e.detail.contains(limits::PCA_COLUMNS.name), "{e}");
        check_fit(&alg("pca", json!({})), 2_000, 100).unwrap();
        let e = check_task(limits::MAX_TASK_MS as f64 + 1.0).unwrap_err();
        assert!(e.detail.contains(limits::TASK_MS.name), "{e}");
    }
}
