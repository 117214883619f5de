//! Local Outlier Factor (Breunig et al., 2000), as in scikit-learn's
//! `LocalOutlierFactor`: with `k = min(n_neighbors, n - 1)`, the reachability distance
//! from `p` to a neighbour `o` is `max(k-distance(o), d(p, o))`, the local reachability
//! density is `1 / (mean reachability distance + 1e-10)`, and the score is the mean
//! density of the neighbours over the row's own (scikit-learn's
//! `-negative_outlier_factor_`). Training rows leave themselves out of their neighbours.
//!
//! Explanation: per feature, the row's distance from the mean of its k neighbours, in
//! training standard deviations.

use crate::error::{DetectError, Result};
use crate::knn::effective_k;
use crate::neighbors::{Neighbor, TrainingSet};
use crate::scorer::Scorer;
use ndarray::{ArrayView1, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// LOF parameters (scikit-learn's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Number of neighbours.
    #[serde(default = "default_k")]
    pub n_neighbors: usize,
}

fn default_k() -> usize {
    20
}

impl Default for Params {
    fn default() -> Self {
        Params {
            n_neighbors: default_k(),
        }
    }
}

/// A fitted LOF model: training rows, their k-distances and densities.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lof {
    k: usize,
    k_distance: Vec<f64>,
    density: Vec<f64>,
    train: TrainingSet,
}

impl Lof {
    /// Fits on `x` (checked by the caller) and returns the training rows' scores.
    pub fn fit(x: ArrayView2<f64>, params: &Params) -> Result<(Self, Vec<f64>)> {
        let k = effective_k("n_neighbors", params.n_neighbors, x.nrows())?;
        let train = TrainingSet::new(x);
        let neighbors: Vec<Vec<Neighbor>> = (0..x.nrows())
            .into_par_iter()
            .map(|i| train.tree().nearest(x.row(i), k, Some(i)))
            .collect();
        let k_distance: Vec<f64> = neighbors
            .iter()
            .map(|n| n.last().map_or(0.0, |n| n.distance))
            .collect();
        let density: Vec<f64> = neighbors
            .iter()
            .map(|n| reach_density(n, &k_distance))
            .collect();
        let scores = neighbors
            .iter()
            .zip(&density)
            .map(|(n, &own)| factor(n, own, &density))
            .collect();
        Ok((
            Lof {
                k,
                k_distance,
                density,
                train,
            },
            scores,
        ))
    }

    /// Checks a model read from outside.
    pub fn check(&self, n_features: usize) -> Result<()> {
        let n = self.train.len();
        let ok = self.k >= 1
            && self.k <= n
            && self.k_distance.len() == n
            && self.density.len() == n
            && self.k_distance.iter().all(|v| v.is_finite() && *v >= 0.0)
            && self.density.iter().all(|v| v.is_finite() && *v > 0.0)
            && self.train.tree().data().ncols() == n_features;
        if ok {
            Ok(())
        } else {
            Err(DetectError::InvalidModel("LOF model is malformed".into()))
        }
    }
}

fn reach_density(neighbors: &[Neighbor], k_distance: &[f64]) -> f64 {
    let total: f64 = neighbors
        .iter()
        .map(|n| n.distance.max(k_distance[n.index]))
        .sum();
    1.0 / (total / neighbors.len().max(1) as f64 + 1e-10)
}

fn factor(neighbors: &[Neighbor], own: f64, density: &[f64]) -> f64 {
    let total: f64 = neighbors.iter().map(|n| density[n.index] / own).sum();
    total / neighbors.len().max(1) as f64
}

impl Scorer for Lof {
    fn score(&self, x: ArrayView2<f64>) -> Vec<f64> {
        x.outer_iter()
            .map(|r| {
                let n = self.train.tree().nearest(r, self.k, None);
                factor(&n, reach_density(&n, &self.k_distance), &self.density)
            })
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
    fn hand_checked_factors() {
        // Points 0, 1, 2 and 10 with k = 2.
        // Neighbours: 0 -> {1 (1), 2 (2)}; 1 -> {0 (1), 2 (1)}; 2 -> {1 (1), 0 (2)};
        // 10 -> {2 (8), 1 (9)}. k-distances: [2, 1, 2, 9].
        let x = array![[0.0], [1.0], [2.0], [10.0]];
        let (m, s) = Lof::fit(x.view(), &Params { n_neighbors: 2 }).unwrap();
        assert_eq!(m.k_distance, vec![2.0, 1.0, 2.0, 9.0]);
        // Reachability means: 0 -> (max(1,1) + max(2,2)) / 2 = 1.5; 1 -> (2 + 2) / 2 = 2;
        // 2 -> (1 + 2) / 2 = 1.5; 10 -> (8 + 9) / 2 = 8.5.
        let lrd = [1.0 / 1.5, 1.0 / 2.0, 1.0 / 1.5, 1.0 / 8.5];
        let expect = [
            (lrd[1] + lrd[2]) / 2.0 / lrd[0],
            (lrd[0] + lrd[2]) / 2.0 / lrd[1],
            (lrd[1] + lrd[0]) / 2.0 / lrd[2],
            (lrd[2] + lrd[1]) / 2.0 / lrd[3],
        ];
        for (a, b) in s.iter().zip(expect) {
            assert!((a - b).abs() < 1e-8, "{s:?} vs {expect:?}");
        }
        assert!(s[3] > 3.0);
        let new = m.score(array![[1.0], [30.0]].view());
        assert!(new[1] > new[0]);
    }
}
