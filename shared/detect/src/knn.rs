//! k-nearest-neighbour distance, as in PyOD's `KNN`: a row's score is the distance to
//! its k-th nearest training row (`method = largest`, the default), or the mean or median
//! of the distances to its k nearest. A training row's neighbours leave out the row
//! itself, as PyOD's `decision_scores_` do.
//!
//! Explanation: per feature, the row's distance from the mean of its k neighbours, in
//! training standard deviations.

use crate::error::{invalid, DetectError, Result};
use crate::neighbors::{Neighbor, TrainingSet};
use crate::scorer::Scorer;
use ndarray::{ArrayView1, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// How the k distances combine into a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Distance to the k-th neighbour.
    #[default]
    Largest,
    /// Mean distance to the k neighbours.
    Mean,
    /// Median distance to the k neighbours.
    Median,
}

/// KNN parameters (PyOD's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Number of neighbours.
    #[serde(default = "default_k")]
    pub n_neighbors: usize,
    /// How distances combine.
    #[serde(default)]
    pub method: Method,
}

fn default_k() -> usize {
    5
}

impl Default for Params {
    fn default() -> Self {
        Params {
            n_neighbors: default_k(),
            method: Method::Largest,
        }
    }
}

/// The number of neighbours actually used for `n` training rows: `min(k, n - 1)`.
pub(crate) fn effective_k(name: &'static str, k: usize, n: usize) -> Result<usize> {
    if !(1..=1000).contains(&k) {
        return Err(invalid(name, "must be between 1 and 1000"));
    }
    if n < 2 {
        return Err(invalid(name, "needs at least 2 training rows"));
    }
    Ok(k.min(n - 1))
}

/// A fitted KNN model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Knn {
    k: usize,
    method: Method,
    train: TrainingSet,
}

impl Knn {
    /// Fits on `x` (checked by the caller) and returns the training rows' scores.
    pub fn fit(x: ArrayView2<f64>, params: &Params) -> Result<(Self, Vec<f64>)> {
        let k = effective_k("n_neighbors", params.n_neighbors, x.nrows())?;
        let model = Knn {
            k,
            method: params.method,
            train: TrainingSet::new(x),
        };
        let scores = (0..x.nrows())
            .into_par_iter()
            .map(|i| model.combine(&model.train.tree().nearest(x.row(i), k, Some(i))))
            .collect();
        Ok((model, scores))
    }

    fn combine(&self, n: &[Neighbor]) -> f64 {
        match self.method {
            Method::Largest => n.last().map_or(0.0, |n| n.distance),
            Method::Mean => n.iter().map(|n| n.distance).sum::<f64>() / n.len().max(1) as f64,
            Method::Median => {
                let m = n.len();
                if m == 0 {
                    0.0
                } else if m % 2 == 1 {
                    n[m / 2].distance
                } else {
                    (n[m / 2 - 1].distance + n[m / 2].distance) / 2.0
                }
            }
        }
    }

    /// Checks a model read from outside.
    pub fn check(&self, n_features: usize) -> Result<()> {
        if self.k == 0
            || self.k > self.train.len()
            || self.train.tree().data().ncols() != n_features
        {
            return Err(DetectError::InvalidModel("KNN model is malformed".into()));
        }
        Ok(())
    }
}

impl Scorer for Knn {
    fn score(&self, x: ArrayView2<f64>) -> Vec<f64> {
        x.outer_iter()
            .map(|r| self.combine(&self.train.tree().nearest(r, self.k, None)))
            .collect()
    }

    fn contributions(&self, row: ArrayView1<f64>) -> Vec<f64> {
        let n = self.train.tree().nearest(row, self.k, None);
        self.train.deviation_from(row, &n)
    }

    fn explanation_method(&self) -> &'static str {
        "per-feature distance from the mean of the k nearest training rows, in training standard deviations"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn hand_checked_distances() {
        let x = array![[0.0], [1.0], [2.0], [10.0]];
        let p = Params {
            n_neighbors: 2,
            method: Method::Largest,
        };
        let (m, s) = Knn::fit(x.view(), &p).unwrap();
        // Neighbours leaving the row out: 0 -> {1, 2}; 1 -> {0, 2}; 2 -> {1, 0}; 10 -> {2, 1}.
        assert_eq!(s, vec![2.0, 1.0, 2.0, 9.0]);
        // A new row is not left out of anything: 1.0 -> {1, 0 or 2} -> 1.
        assert_eq!(m.score(array![[1.0], [20.0]].view()), vec![1.0, 18.0]);
        let mean = Params {
            n_neighbors: 2,
            method: Method::Mean,
        };
        let (_, s) = Knn::fit(x.view(), &mean).unwrap();
        assert_eq!(s, vec![1.5, 1.0, 1.5, 8.5]);
    }

    #[test]
    fn k_is_capped_by_the_rows_and_needs_two() {
        assert!(Knn::fit(array![[1.0]].view(), &Params::default()).is_err());
        let (m, _) = Knn::fit(array![[1.0], [2.0]].view(), &Params::default()).unwrap();
        assert_eq!(m.k, 1);
        let zero = Params {
            n_neighbors: 0,
            ..Params::default()
        };
        assert!(Knn::fit(array![[1.0], [2.0]].view(), &zero).is_err());
    }

    #[test]
    fn explanation_points_at_the_deviating_feature() {
        let x = array![[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1], [0.05, 3.0]];
        let p = Params {
            n_neighbors: 3,
            ..Params::default()
        };
        let (m, _) = Knn::fit(x.view(), &p).unwrap();
        let c = m.contributions(array![0.05, 3.0].view());
        assert!(c[1] > c[0], "{c:?}");
    }
}
