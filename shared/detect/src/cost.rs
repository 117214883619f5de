//! What fitting and scoring cost, predicted from everything that drives it: the rows,
//! the width, the algorithm and its parameters. A pure function of those, with one arm
//! per [`Algorithm`] and no catch-all, so a new detector does not build until its cost
//! is stated. What a service does with the prediction (budgets, caps) is its own.

use crate::model::Algorithm;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicted_cost_grows_with_the_data() {
        for name in crate::model::ALGORITHMS {
            let a = Algorithm::named(name).unwrap();
            let small = predict_ms(&a, true, 1_000, 10, 1_000);
            let big = predict_ms(&a, true, 1_000_000, 10, 1_000_000);
            assert!(small > 0.0 && big > 100.0 * small, "{name}: {small} {big}");
            let wide = predict_ms(&a, true, 1_000, 100, 1_000);
            assert!(wide > small, "{name}: width counts");
        }
    }
}
