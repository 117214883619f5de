//! Distance to the nearest k-means centroid. Features are standardised (training mean
//! and standard deviation), smartcore's k-means (k-means++ start, seeded) clusters the
//! training rows, and a row's score is its Euclidean distance to the nearest centroid of
//! a large cluster. Clusters holding fewer than `min_cluster_share` of the training rows
//! are dropped (as CBLOF separates small clusters from large ones): a far-off group of a
//! few rows would otherwise win a centroid of its own and score zero.
//!
//! Explanation: the squared difference per feature between the row and its nearest
//! centroid (standardised units).

use crate::error::{invalid, smartcore, DetectError, Result};
use crate::scorer::Scorer;
use crate::stats::standardizer;
use ndarray::{Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};
use smartcore::cluster::kmeans::{KMeans, KMeansParameters};

/// k-means parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Number of clusters.
    #[serde(default = "default_k")]
    pub n_clusters: usize,
    /// Iterations at most.
    #[serde(default = "default_iter")]
    pub max_iter: usize,
    /// Clusters smaller than this share of the rows are not kept as references, in [0, 0.5).
    #[serde(default = "default_share")]
    pub min_cluster_share: f64,
}

fn default_share() -> f64 {
    0.02
}

fn default_k() -> usize {
    8
}
fn default_iter() -> usize {
    100
}

impl Default for Params {
    fn default() -> Self {
        Params {
            n_clusters: default_k(),
            max_iter: default_iter(),
            min_cluster_share: default_share(),
        }
    }
}

/// A fitted k-means model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kmeans {
    mean: Vec<f64>,
    std: Vec<f64>,
    centroids: Vec<Vec<f64>>,
}

impl Kmeans {
    /// Fits on `x` (checked by the caller).
    pub fn fit(x: ArrayView2<f64>, params: &Params, seed: u64) -> Result<Self> {
        let n = x.nrows();
        if !(2..=1000).contains(&params.n_clusters) {
            return Err(invalid("n_clusters", "must be between 2 and 1000"));
        }
        if params.n_clusters > n {
            return Err(invalid(
                "n_clusters",
                format!("must not exceed the number of rows ({n})"),
            ));
        }
        if !(1..=10_000).contains(&params.max_iter) {
            return Err(invalid("max_iter", "must be between 1 and 10000"));
        }
        if !(0.0..0.5).contains(&params.min_cluster_share) {
            return Err(invalid("min_cluster_share", "must be in [0, 0.5)"));
        }
        let (mean, std) = standardizer(x);
        let z: Array2<f64> = (&x - &mean) / &std;
        let mut p = KMeansParameters::default()
            .with_k(params.n_clusters)
            .with_max_iter(params.max_iter);
        p.seed = Some(seed);
        let labels = smartcore("kmeans", || {
            KMeans::<f64, usize, Array2<f64>, Vec<usize>>::fit(&z, p)?.predict(&z)
        })?;
        // Centroids as the means of the rows assigned to them; empty and small clusters
        // dropped (all but the largest when every cluster is small).
        let d = x.ncols();
        let mut sums = vec![vec![0.0; d]; params.n_clusters];
        let mut counts = vec![0usize; params.n_clusters];
        for (row, &c) in z.outer_iter().zip(&labels) {
            counts[c] += 1;
            for (s, v) in sums[c].iter_mut().zip(row) {
                *s += v;
            }
        }
        let min_size = ((params.min_cluster_share * n as f64).ceil() as usize).max(1);
        let largest = counts.iter().copied().max().unwrap_or(0);
        let min_size = min_size.min(largest);
        let centroids = sums
            .into_iter()
            .zip(counts)
            .filter(|(_, c)| *c >= min_size)
            .map(|(s, c)| s.into_iter().map(|v| v / c as f64).collect())
            .collect();
        Ok(Kmeans {
            mean: mean.to_vec(),
            std: std.to_vec(),
            centroids,
        })
    }

    /// The centroids in standardised units.
    pub fn centroids(&self) -> &[Vec<f64>] {
        &self.centroids
    }

    fn nearest(&self, row: ArrayView1<f64>) -> (Vec<f64>, usize) {
        let z: Vec<f64> = row
            .iter()
            .zip(self.mean.iter().zip(&self.std))
            .map(|(v, (m, s))| (v - m) / s)
            .collect();
        let mut best = (f64::INFINITY, 0);
        for (i, c) in self.centroids.iter().enumerate() {
            let d2: f64 = z.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum();
            if d2 < best.0 {
                best = (d2, i);
            }
        }
        (z, best.1)
    }

    /// Checks a model read from outside.
    pub fn check(&self, n_features: usize) -> Result<()> {
        let ok = self.mean.len() == n_features
            && self.std.len() == n_features
            && !self.centroids.is_empty()
            && self.centroids.iter().all(|c| c.len() == n_features)
            && self.std.iter().all(|s| s.is_finite() && *s > 0.0)
            && self
                .mean
                .iter()
                .chain(self.centroids.iter().flatten())
                .all(|v| v.is_finite());
        if ok {
            Ok(())
        } else {
            Err(DetectError::InvalidModel(
                "k-means model is malformed".into(),
            ))
        }
    }
}

impl Scorer for Kmeans {
    fn score(&self, x: ArrayView2<f64>) -> Vec<f64> {
        x.outer_iter()
            .map(|r| self.contributions(r).iter().sum::<f64>().sqrt())
            .collect()
    }

    fn contributions(&self, row: ArrayView1<f64>) -> Vec<f64> {
        let (z, c) = self.nearest(row);
        z.iter()
            .zip(&self.centroids[c])
            .map(|(a, b)| (a - b) * (a - b))
            .collect()
    }

    fn explanation_method(&self) -> &'static str {
        "squared standardised difference per feature between the row and its nearest centroid"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn two_blobs_and_an_outlier() {
        let mut rng = Rng::new(4);
        let mut x = Array2::zeros((101, 2));
        for i in 0..100 {
            let c = if i % 2 == 0 { 0.0 } else { 10.0 };
            x[[i, 0]] = c + rng.next_f64();
            x[[i, 1]] = c + rng.next_f64();
        }
        x[[100, 0]] = 5.0;
        x[[100, 1]] = -5.0;
        let p = Params {
            n_clusters: 2,
            ..Params::default()
        };
        let m = Kmeans::fit(x.view(), &p, 0).unwrap();
        assert_eq!(m.centroids().len(), 2);
        let s = m.score(x.view());
        let top = s.iter().cloned().fold(f64::MIN, f64::max);
        assert_eq!(s[100], top);
        // Same seed, same model.
        assert_eq!(m, Kmeans::fit(x.view(), &p, 0).unwrap());
    }

    #[test]
    fn too_many_clusters_is_refused() {
        let x = ndarray::array![[1.0], [2.0]];
        assert!(Kmeans::fit(x.view(), &Params::default(), 0).is_err());
    }
}
