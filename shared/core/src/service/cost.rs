//! What fitting and scoring will cost, and the caps that keep one request from asking
//! for more than a worker can do. The prediction is the engine's
//! ([`nomaly_detect::cost::predict_ms`], from the rows, the width, the algorithm and its
//! parameters); the caps and their answers are the service's. Every path that fits or
//! scores (`POST /v1/detect`, WebSocket `score`, training, reports) asks here first.

use crate::bounded::Exceeded;
use crate::limits::{self, Limit};
use crate::service::Problem;
pub use nomaly_detect::cost::predict_ms;
use nomaly_detect::Algorithm;

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
