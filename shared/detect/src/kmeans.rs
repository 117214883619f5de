//! Cluster-based outlier score, as PyOD's `CBLOF` (with its default `use_weights=False`).
//!
//! k-means clusters the training rows in their own units (no standardisation, as
//! CBLOF): greedy k-means++ starts (scikit-learn's), Lloyd iterations until no row
//! changes cluster or the centroids move less than `tol` times the mean feature
//! variance, the best of `n_init` starts by inertia. The clusters are then split into
//! large and small ones exactly as PyOD's `_set_small_large_clusters`: sorted by size,
//! largest first, the split falls at the first position where the large clusters hold at
//! least `alpha` of the rows and the last large cluster is at least `beta` times the
//! first small one; failing both, the first position meeting either. Where PyOD finds no
//! split at all and raises an error, every cluster is large here.
//!
//! A row's score is its Euclidean distance to the centroid of its cluster (the nearest
//! centroid) when that cluster is large, and to the nearest large cluster's centroid
//! when it is small: a far-off group of a few rows cannot hide behind a centroid of its
//! own.
//!
//! Everything is computed in a fixed order with IEEE-exact operations only (no
//! transcendental functions, no reductions whose order depends on thread scheduling),
//! so a seed gives the same bits on every platform and at any thread count. Random
//! choices come from the crate's own generator ([`crate::rng`]).
//!
//! Explanation: the squared difference per feature between the row and the centroid its
//! score is measured to.
//!
//! Models saved before this version (standardised features, smartcore's k-means, small
//! clusters dropped) still load and score exactly as they did.

use crate::error::{invalid, DetectError, Result};
use crate::rng::{child_seed, Rng};
use crate::scorer::Scorer;
use ndarray::{ArrayView1, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// k-means / CBLOF parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Number of clusters, 2 to 1000 (at most the number of rows).
    #[serde(default = "default_k")]
    pub n_clusters: usize,
    /// Lloyd iterations at most per start, 1 to 10000.
    #[serde(default = "default_iter")]
    pub max_iter: usize,
    /// k-means++ starts; the one with the lowest inertia is kept. 1 to 100.
    #[serde(default = "default_n_init")]
    pub n_init: usize,
    /// Convergence tolerance, relative to the mean feature variance, in [0, 1].
    #[serde(default = "default_tol")]
    pub tol: f64,
    /// Share of the rows the large clusters must hold at least, in (0, 1).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Least size ratio between the last large and the first small cluster, above 1.
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// Only in models saved by earlier versions, which dropped clusters under this share
    /// of the rows. Refused when fitting: `alpha` and `beta` now decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cluster_share: Option<f64>,
}

fn default_k() -> usize {
    8
}
fn default_iter() -> usize {
    300
}
fn default_n_init() -> usize {
    10
}
fn default_tol() -> f64 {
    1e-4
}
fn default_alpha() -> f64 {
    0.9
}
fn default_beta() -> f64 {
    5.0
}

impl Default for Params {
    fn default() -> Self {
        Params {
            n_clusters: default_k(),
            max_iter: default_iter(),
            n_init: default_n_init(),
            tol: default_tol(),
            alpha: default_alpha(),
            beta: default_beta(),
            min_cluster_share: None,
        }
    }
}

impl Params {
    fn validate(&self, n_rows: usize) -> Result<()> {
        if self.min_cluster_share.is_some() {
            return Err(invalid(
                "min_cluster_share",
                "is no longer supported: small clusters are now told apart as CBLOF does, \
                 with `alpha` and `beta`; leave it out",
            ));
        }
        if !(2..=1000).contains(&self.n_clusters) {
            return Err(invalid("n_clusters", "must be between 2 and 1000"));
        }
        if self.n_clusters > n_rows {
            return Err(invalid(
                "n_clusters",
                format!("must not exceed the number of rows ({n_rows})"),
            ));
        }
        if !(1..=10_000).contains(&self.max_iter) {
            return Err(invalid("max_iter", "must be between 1 and 10000"));
        }
        if !(1..=100).contains(&self.n_init) {
            return Err(invalid("n_init", "must be between 1 and 100"));
        }
        if !(0.0..=1.0).contains(&self.tol) {
            return Err(invalid("tol", "must be in [0, 1]"));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(invalid("alpha", "must be in (0, 1)"));
        }
        if !(self.beta > 1.0 && self.beta.is_finite()) {
            return Err(invalid("beta", "must be a finite number above 1"));
        }
        Ok(())
    }
}

/// A fitted model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Saved", into = "Saved")]
pub struct Kmeans {
    /// Centroids of the non-empty clusters, in the units of the rows (standardised units
    /// for a legacy model).
    centroids: Vec<Vec<f64>>,
    /// Whether each centroid's cluster is large.
    large: Vec<bool>,
    /// Legacy models only: the standardisation applied to rows before measuring.
    legacy: Option<Standardisation>,
}

#[derive(Debug, Clone, PartialEq)]
struct Standardisation {
    mean: Vec<f64>,
    std: Vec<f64>,
}

/// The saved form. Current models: `centroids` and `large`. Models saved before CBLOF:
/// `mean`, `std` and `centroids` (every centroid a reference).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    centroids: Vec<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    large: Option<Vec<bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mean: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    std: Option<Vec<f64>>,
}

impl TryFrom<Saved> for Kmeans {
    type Error = String;

    fn try_from(s: Saved) -> std::result::Result<Self, String> {
        match (s.large, s.mean, s.std) {
            (Some(large), None, None) => Ok(Kmeans {
                centroids: s.centroids,
                large,
                legacy: None,
            }),
            (None, Some(mean), Some(std)) => Ok(Kmeans {
                large: vec![true; s.centroids.len()],
                centroids: s.centroids,
                legacy: Some(Standardisation { mean, std }),
            }),
            _ => Err(
                "k-means model is malformed: expected `large`, or `mean` and `std` \
                      (a model saved by an earlier version), not a mix; retrain it"
                    .into(),
            ),
        }
    }
}

impl From<Kmeans> for Saved {
    fn from(k: Kmeans) -> Saved {
        match k.legacy {
            None => Saved {
                centroids: k.centroids,
                large: Some(k.large),
                mean: None,
                std: None,
            },
            Some(Standardisation { mean, std }) => Saved {
                centroids: k.centroids,
                large: None,
                mean: Some(mean),
                std: Some(std),
            },
        }
    }
}

/// Rows per parallel block. Blocks are fixed by the row count alone and their partial
/// sums are added in block order, so results never depend on the thread count.
const BLOCK: usize = 4096;

impl Kmeans {
    /// Fits on `x` (checked by the caller: rows, finite values).
    pub fn fit(x: ArrayView2<f64>, params: &Params, seed: u64) -> Result<Self> {
        let n = x.nrows();
        params.validate(n)?;
        let d = x.ncols();
        if d == 0 {
            return Err(DetectError::NoColumns);
        }
        let x = x.as_standard_layout();
        let data = x.as_slice().ok_or_else(|| DetectError::Algorithm {
            algorithm: "kmeans",
            reason: "the rows are not laid out contiguously".into(),
        })?;
        let rows = Rows { data, d };
        let tol = params.tol * mean_variance(&rows);
        let mut best: Option<Clustering> = None;
        for init in 0..params.n_init {
            let mut rng = Rng::new(child_seed(seed, init as u64));
            let start = kmeans_plus_plus(&rows, params.n_clusters, &mut rng);
            let c = lloyd(&rows, start, params.max_iter, tol);
            if best.as_ref().is_none_or(|b| c.inertia < b.inertia) {
                best = Some(c);
            }
        }
        let best = best.ok_or_else(|| invalid("n_init", "must be at least 1"))?;
        let k = params.n_clusters;
        let mut sizes = vec![0usize; k];
        for &l in &best.labels {
            sizes[l] += 1;
        }
        // Clusters left empty (fewer distinct rows than clusters) have no rows to speak
        // for: they are dropped, as PyOD never sees them in the labels' counts.
        let kept: Vec<usize> = (0..k).filter(|&j| sizes[j] > 0).collect();
        let kept_sizes: Vec<usize> = kept.iter().map(|&j| sizes[j]).collect();
        let large = split_large_small(&kept_sizes, n, params.alpha, params.beta);
        let centroids = kept
            .iter()
            .map(|&j| best.centers[j * d..(j + 1) * d].to_vec())
            .collect();
        Ok(Kmeans {
            centroids,
            large,
            legacy: None,
        })
    }

    /// The centroids (in standardised units for a model saved by an earlier version).
    pub fn centroids(&self) -> &[Vec<f64>] {
        &self.centroids
    }

    /// Whether each centroid's cluster is large.
    pub fn large(&self) -> &[bool] {
        &self.large
    }

    /// Index of the centroid `row`'s score is measured to, and the squared distance.
    /// `dist` is scratch space of one value per centroid; `z` holds the row as measured.
    fn reference(&self, z: &[f64], dist: &mut Vec<f64>) -> (usize, f64) {
        dist.clear();
        dist.extend(self.centroids.iter().map(|c| sq_dist(z, c)));
        // The row's own cluster: the nearest centroid, the lowest index on ties.
        let own = argmin(dist.iter().copied().enumerate());
        if self.large[own] {
            return (own, dist[own]);
        }
        let nearest_large = argmin(
            dist.iter()
                .copied()
                .enumerate()
                .filter(|&(j, _)| self.large[j]),
        );
        (nearest_large, dist[nearest_large])
    }

    /// The row in the units the centroids are in.
    fn measured(&self, row: ArrayView1<f64>) -> Vec<f64> {
        match &self.legacy {
            None => row.to_vec(),
            Some(s) => row
                .iter()
                .zip(s.mean.iter().zip(&s.std))
                .map(|(v, (m, s))| (v - m) / s)
                .collect(),
        }
    }

    /// Checks a model read from outside.
    pub fn check(&self, n_features: usize) -> Result<()> {
        let legacy_ok = match &self.legacy {
            None => true,
            Some(s) => {
                s.mean.len() == n_features
                    && s.std.len() == n_features
                    && s.std.iter().all(|v| v.is_finite() && *v > 0.0)
                    && s.mean.iter().all(|v| v.is_finite())
            }
        };
        let ok = legacy_ok
            && !self.centroids.is_empty()
            && self.large.len() == self.centroids.len()
            && self.large.iter().any(|&l| l)
            && self.centroids.iter().all(|c| c.len() == n_features)
            && self.centroids.iter().flatten().all(|v| v.is_finite());
        if ok {
            Ok(())
        } else {
            Err(DetectError::InvalidModel(
                "k-means model is malformed; retrain it".into(),
            ))
        }
    }
}

impl Scorer for Kmeans {
    fn score(&self, x: ArrayView2<f64>) -> Vec<f64> {
        let mut dist = Vec::with_capacity(self.centroids.len());
        x.outer_iter()
            .map(|r| {
                let z = self.measured(r);
                self.reference(&z, &mut dist).1.sqrt()
            })
            .collect()
    }

    fn contributions(&self, row: ArrayView1<f64>) -> Vec<f64> {
        let z = self.measured(row);
        let mut dist = Vec::with_capacity(self.centroids.len());
        let (c, _) = self.reference(&z, &mut dist);
        z.iter()
            .zip(&self.centroids[c])
            .map(|(a, b)| (a - b) * (a - b))
            .collect()
    }

    fn explanation_method(&self) -> &'static str {
        match self.legacy {
            None => {
                "squared difference per feature between the row and the centroid its score is \
                 measured to (its cluster's, or the nearest large cluster's for a row in a small cluster)"
            }
            Some(_) => {
                "squared standardised difference per feature between the row and its nearest centroid"
            }
        }
    }
}

/// Squared Euclidean distance, summed in feature order.
#[inline]
fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    let mut s = 0.0;
    for (x, y) in a.iter().zip(b) {
        let t = x - y;
        s += t * t;
    }
    s
}

/// Index of the smallest value (the first on ties); 0 for an empty sequence.
fn argmin(values: impl Iterator<Item = (usize, f64)>) -> usize {
    let mut best: Option<(usize, f64)> = None;
    for (j, v) in values {
        if best.is_none_or(|(_, b)| v < b) {
            best = Some((j, v));
        }
    }
    best.map_or(0, |b| b.0)
}

/// PyOD's `_set_small_large_clusters`: whether each cluster (given by its size) is large.
///
/// Clusters are sorted by size, largest first (ties by index). For each position `i` in
/// `1..m`, the alpha condition holds when the first `i` clusters hold at least
/// `alpha * n` rows, the beta condition when cluster `i - 1` is at least `beta` times
/// cluster `i`. The first `i` are large for the first position meeting both, else the
/// first meeting alpha, else the first meeting beta. PyOD raises an error when no
/// position qualifies; every cluster is large then.
fn split_large_small(sizes: &[usize], n: usize, alpha: f64, beta: f64) -> Vec<bool> {
    let m = sizes.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
    let (mut both, mut by_alpha, mut by_beta) = (None, None, None);
    let mut held = 0usize;
    for i in 1..m {
        held += sizes[order[i - 1]];
        let a = held as f64 >= n as f64 * alpha;
        let b = sizes[order[i - 1]] as f64 / sizes[order[i]] as f64 >= beta;
        if a && b && both.is_none() {
            both = Some(i);
        }
        if a && by_alpha.is_none() {
            by_alpha = Some(i);
        }
        if b && by_beta.is_none() {
            by_beta = Some(i);
        }
    }
    let split = both.or(by_alpha).or(by_beta).unwrap_or(m);
    let mut large = vec![false; m];
    for &j in &order[..split] {
        large[j] = true;
    }
    large
}

/// Row-major training rows.
#[derive(Clone, Copy)]
struct Rows<'a> {
    data: &'a [f64],
    d: usize,
}

impl<'a> Rows<'a> {
    fn n(&self) -> usize {
        self.data.len() / self.d
    }
    fn row(&self, i: usize) -> &'a [f64] {
        &self.data[i * self.d..(i + 1) * self.d]
    }
}

/// Mean over the features of their (population) variance, as scikit-learn scales `tol`.
fn mean_variance(rows: &Rows) -> f64 {
    let (n, d) = (rows.n(), rows.d);
    let mut mean = vec![0.0; d];
    for i in 0..n {
        for (m, v) in mean.iter_mut().zip(rows.row(i)) {
            *m += v;
        }
    }
    for m in &mut mean {
        *m /= n as f64;
    }
    let mut var = vec![0.0; d];
    for i in 0..n {
        for ((s, v), m) in var.iter_mut().zip(rows.row(i)).zip(&mean) {
            let t = v - m;
            *s += t * t;
        }
    }
    var.iter().map(|s| s / n as f64).sum::<f64>() / d as f64
}

/// `floor(ln(k))` without a platform's logarithm: the powers of e rounded up.
fn floor_ln(k: usize) -> usize {
    [3, 8, 21, 55, 149, 404, 1097, 2981]
        .iter()
        .filter(|&&t| k >= t)
        .count()
}

/// For each row, `min(closest[i], |row_i - center|²)` into `out`; returns their sum
/// (added block by block in block order).
fn closer(rows: &Rows, center: &[f64], closest: &[f64], out: &mut [f64]) -> f64 {
    let partial: Vec<f64> = out
        .par_chunks_mut(BLOCK)
        .enumerate()
        .map(|(b, chunk)| {
            let start = b * BLOCK;
            let mut s = 0.0;
            for (k, o) in chunk.iter_mut().enumerate() {
                let i = start + k;
                let dd = sq_dist(rows.row(i), center);
                let c = closest[i];
                *o = if dd < c { dd } else { c };
                s += *o;
            }
            s
        })
        .collect();
    partial.iter().fold(0.0, |a, b| a + b)
}

/// Greedy k-means++ (scikit-learn's `_kmeans_plusplus`): the first centre is a uniform
/// row; each next one is the best, by the resulting potential, of `2 + floor(ln k)` rows
/// drawn with probability proportional to their squared distance to the nearest centre.
/// Returns the centres, row-major.
fn kmeans_plus_plus(rows: &Rows, k: usize, rng: &mut Rng) -> Vec<f64> {
    let n = rows.n();
    let trials = 2 + floor_ln(k);
    let mut centers = Vec::with_capacity(k * rows.d);
    let first = rows.row(rng.below(n));
    centers.extend_from_slice(first);
    let mut closest: Vec<f64> = (0..n).map(|i| sq_dist(rows.row(i), first)).collect();
    let mut scratch = vec![0.0; n];
    let mut cumulative = vec![0.0; n];
    for _ in 1..k {
        let mut total = 0.0;
        for (c, v) in cumulative.iter_mut().zip(&closest) {
            total += v;
            *c = total;
        }
        let mut best: Option<(usize, f64)> = None;
        let mut best_closest = vec![0.0; n];
        for _ in 0..trials {
            let r = rng.next_f64() * total;
            // The first row whose cumulative weight passes r (never a zero-weight row,
            // unless rounding pushes r to the very end).
            let pick = cumulative.partition_point(|&c| c <= r).min(n - 1);
            let potential = closer(rows, rows.row(pick), &closest, &mut scratch);
            if best.is_none_or(|(_, p)| potential < p) {
                best = Some((pick, potential));
                std::mem::swap(&mut best_closest, &mut scratch);
            }
        }
        let pick = best.map_or(0, |b| b.0);
        centers.extend_from_slice(rows.row(pick));
        closest = best_closest;
    }
    centers
}

/// One k-means run's result.
struct Clustering {
    centers: Vec<f64>,
    labels: Vec<usize>,
    inertia: f64,
}

/// Per-block sums of an assignment pass.
struct Partial {
    sums: Vec<f64>,
    counts: Vec<usize>,
    inertia: f64,
    changed: usize,
}

impl Partial {
    fn new(k: usize, d: usize) -> Self {
        Partial {
            sums: vec![0.0; k * d],
            counts: vec![0; k],
            inertia: 0.0,
            changed: 0,
        }
    }

    fn add(&mut self, p: &Partial) {
        for (t, s) in self.sums.iter_mut().zip(&p.sums) {
            *t += s;
        }
        for (t, c) in self.counts.iter_mut().zip(&p.counts) {
            *t += c;
        }
        self.inertia += p.inertia;
        self.changed += p.changed;
    }
}

/// Blocks assigned in parallel before their sums are added: bounds the memory the
/// per-block sums take (`k * d` values each).
const GROUP: usize = 32;

/// Assigns each row to its nearest centre (lowest index on ties), recording the squared
/// distance; returns the per-cluster sums and counts, the inertia and how many rows
/// changed cluster, added block by block in block order.
fn assign(rows: &Rows, centers: &[f64], labels: &mut [usize], dist: &mut [f64]) -> Partial {
    let d = rows.d;
    let k = centers.len() / d;
    // Centres feature-major, so the distances to all centres build up together, feature
    // by feature: the same operations in the same order as `sq_dist`, in vector lanes.
    let mut by_feature = vec![0.0; k * d];
    for j in 0..k {
        for f in 0..d {
            by_feature[f * k + j] = centers[j * d + f];
        }
    }
    let block = |first: usize, labels: &mut [usize], dist: &mut [f64]| {
        let mut p = Partial::new(k, d);
        let mut to_centers = vec![0.0; k];
        for (off, (label, dd)) in labels.iter_mut().zip(dist.iter_mut()).enumerate() {
            let row = rows.row(first + off);
            to_centers.fill(0.0);
            for (v, column) in row.iter().zip(by_feature.chunks_exact(k)) {
                for (acc, c) in to_centers.iter_mut().zip(column) {
                    let t = v - c;
                    *acc += t * t;
                }
            }
            let (mut best, mut best_d) = (0, to_centers[0]);
            for (j, &dj) in to_centers.iter().enumerate().skip(1) {
                if dj < best_d {
                    best = j;
                    best_d = dj;
                }
            }
            if *label != best {
                p.changed += 1;
                *label = best;
            }
            *dd = best_d;
            p.counts[best] += 1;
            p.inertia += best_d;
            for (s, v) in p.sums[best * d..(best + 1) * d].iter_mut().zip(row) {
                *s += v;
            }
        }
        p
    };
    let mut total = Partial::new(k, d);
    let span = BLOCK * GROUP;
    for (g, (labels, dist)) in labels
        .chunks_mut(span)
        .zip(dist.chunks_mut(span))
        .enumerate()
    {
        let parts: Vec<Partial> = labels
            .par_chunks_mut(BLOCK)
            .zip(dist.par_chunks_mut(BLOCK))
            .enumerate()
            .map(|(b, (labels, dist))| block(g * span + b * BLOCK, labels, dist))
            .collect();
        for p in &parts {
            total.add(p);
        }
    }
    total
}

/// Lloyd's iterations from `centers` (scikit-learn's `_kmeans_single_lloyd`): stops when
/// no row changes cluster, when the centres move by at most `tol` (sum of squared
/// shifts), or after `max_iter` iterations. An emptied cluster is moved onto the row
/// farthest from its centre, as scikit-learn does.
fn lloyd(rows: &Rows, mut centers: Vec<f64>, max_iter: usize, tol: f64) -> Clustering {
    let (n, d) = (rows.n(), rows.d);
    let k = centers.len() / d;
    let mut labels = vec![usize::MAX; n];
    let mut dist = vec![0.0; n];
    for _ in 0..max_iter {
        let mut p = assign(rows, &centers, &mut labels, &mut dist);
        relocate_empty(rows, &labels, &dist, &mut p);
        let mut shift = 0.0;
        for j in 0..k {
            if p.counts[j] == 0 {
                continue;
            }
            let count = p.counts[j] as f64;
            for (c, s) in centers[j * d..(j + 1) * d]
                .iter_mut()
                .zip(&p.sums[j * d..(j + 1) * d])
            {
                let new = s / count;
                let t = new - *c;
                shift += t * t;
                *c = new;
            }
        }
        if p.changed == 0 || shift <= tol {
            break;
        }
    }
    // Labels and inertia consistent with the final centres.
    let p = assign(rows, &centers, &mut labels, &mut dist);
    Clustering {
        centers,
        labels,
        inertia: p.inertia,
    }
}

/// Gives each empty cluster the row farthest from its centre (among rows not at their
/// centre, from clusters that keep at least one row), taking it out of its cluster's sum.
fn relocate_empty(rows: &Rows, labels: &[usize], dist: &[f64], p: &mut Partial) {
    let d = rows.d;
    let empty: Vec<usize> = (0..p.counts.len()).filter(|&j| p.counts[j] == 0).collect();
    if empty.is_empty() {
        return;
    }
    let mut far: Vec<usize> = (0..labels.len()).filter(|&i| dist[i] > 0.0).collect();
    far.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]).then(a.cmp(&b)));
    let mut far = far.into_iter();
    for j in empty {
        for i in far.by_ref() {
            let from = labels[i];
            if p.counts[from] < 2 {
                continue;
            }
            let row = rows.row(i);
            for (s, v) in p.sums[from * d..(from + 1) * d].iter_mut().zip(row) {
                *s -= v;
            }
            p.counts[from] -= 1;
            p.sums[j * d..(j + 1) * d].copy_from_slice(row);
            p.counts[j] = 1;
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Algorithm, FitOptions, Model};
    use ndarray::Array2;

    fn blobs() -> Array2<f64> {
        let mut rng = Rng::new(4);
        let mut x = Array2::zeros((101, 2));
        for i in 0..100 {
            let c = if i % 2 == 0 { 0.0 } else { 10.0 };
            x[[i, 0]] = c + rng.next_f64();
            x[[i, 1]] = c + rng.next_f64();
        }
        x[[100, 0]] = 5.0;
        x[[100, 1]] = -5.0;
        x
    }

    /// Two large groups of 50 rows and a small one of 3 far from both.
    fn two_large_one_small() -> Array2<f64> {
        let mut rng = Rng::new(11);
        Array2::from_shape_fn((103, 2), |(i, j)| {
            let centre = match (i, j) {
                (0..50, _) => 0.0,
                (50..100, 0) => 10.0,
                (50..100, _) => 0.0,
                (_, 0) => 5.0,
                (_, _) => 8.0,
            };
            centre + rng.next_f64()
        })
    }

    fn checksum(scores: &[f64]) -> u64 {
        scores.iter().fold(0xcbf2_9ce4_8422_2325, |h, s| {
            (h ^ s.to_bits()).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    fn three_clusters() -> FitOptions {
        let mut map = serde_json::Map::new();
        map.insert("n_clusters".into(), 3.into());
        FitOptions::new(Algorithm::with_params("kmeans", &map).unwrap())
    }

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|s| s.to_bits()).collect()
    }

    #[test]
    fn two_blobs_and_an_outlier() {
        let x = blobs();
        let p = Params {
            n_clusters: 2,
            ..Params::default()
        };
        let m = Kmeans::fit(x.view(), &p, 0).unwrap();
        assert_eq!(m.centroids().len(), 2);
        let s = m.score(x.view());
        let top = s.iter().cloned().fold(f64::MIN, f64::max);
        assert_eq!(s[100], top);
    }

    #[test]
    fn same_seed_same_bits_on_every_platform() {
        // A fixed matrix: three groups and a few stray rows, 4 features.
        let x = Array2::from_shape_fn((240, 4), |(i, j)| {
            let group = (i % 3) as f64 * 4.0;
            let wobble = ((i * 37 + j * 11) % 29) as f64 / 29.0;
            let stray = if i % 47 == 0 { 9.0 + j as f64 } else { 0.0 };
            group + wobble + stray
        });
        let p = Params::default();
        let a = Kmeans::fit(x.view(), &p, 7).unwrap();
        let b = Kmeans::fit(x.view(), &p, 7).unwrap();
        assert_eq!(a, b);
        let sa = a.score(x.view());
        assert_eq!(bits(&sa), bits(&b.score(x.view())));
        // Only basic IEEE operations in a fixed order: a different platform, compiler or
        // thread count giving other bits would change this.
        assert_eq!(
            checksum(&sa),
            0xe0d1_7faa_6700_ec2b,
            "checksum {:#x}",
            checksum(&sa)
        );
    }

    #[test]
    fn thread_count_never_changes_the_model() {
        // More rows than one block, so the blocks are summed in parallel.
        let mut rng = Rng::new(3);
        let x = Array2::from_shape_fn((3 * BLOCK + 17, 3), |(i, _)| {
            (i % 4) as f64 * 3.0 + rng.next_f64()
        });
        let fit = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| Kmeans::fit(x.view(), &Params::default(), 5).unwrap())
        };
        let one = fit(1);
        let three = fit(3);
        assert_eq!(one, three);
        assert_eq!(bits(&one.score(x.view())), bits(&three.score(x.view())));
    }

    #[test]
    fn large_small_split_follows_pyod() {
        // Expected large clusters from PyOD 3.6.7's `_set_small_large_clusters`
        // (alpha 0.9, beta 5) on labels of these sizes.
        let cases: [(&[usize], &[usize]); 7] = [
            (&[50, 30, 10, 5, 3, 2], &[0, 1, 2]),
            (&[40, 40, 9, 5, 3, 3], &[0, 1, 2, 3]),
            (&[300, 3, 200, 100, 2], &[0, 2, 3]),
            (&[10, 60, 10, 10, 10], &[0, 1, 2, 3]),
            (&[45, 45, 5, 5], &[0, 1]),
            (&[1, 99], &[1]),
            (&[30, 30, 30, 10], &[0, 1, 2]),
        ];
        for (sizes, expected) in cases {
            let n = sizes.iter().sum();
            let large = split_large_small(sizes, n, 0.9, 5.0);
            let got: Vec<usize> = (0..sizes.len()).filter(|&j| large[j]).collect();
            assert_eq!(got, expected, "sizes {sizes:?}");
        }
        // PyOD finds no split here and raises an error; every cluster is large instead.
        let even = [12, 12, 12, 12, 12, 12, 12, 16];
        assert_eq!(split_large_small(&even, 100, 0.9, 5.0), vec![true; 8]);
        assert_eq!(split_large_small(&[7], 7, 0.9, 5.0), vec![true]);
    }

    #[test]
    fn small_cluster_rows_are_measured_to_the_nearest_large_centroid() {
        let x = two_large_one_small();
        let p = Params {
            n_clusters: 3,
            ..Params::default()
        };
        let m = Kmeans::fit(x.view(), &p, 0).unwrap();
        assert_eq!(m.large().iter().filter(|&&l| l).count(), 2);
        let small = m.large().iter().position(|&l| !l).unwrap();
        assert!((m.centroids()[small][1] - 8.5).abs() < 0.5);
        let scores = m.score(x.view());
        for (i, row) in x.outer_iter().enumerate() {
            let row = row.to_vec();
            let d: Vec<f64> = m.centroids().iter().map(|c| sq_dist(&row, c)).collect();
            let own = argmin(d.iter().copied().enumerate());
            let reference = if i >= 100 {
                assert_eq!(own, small, "row {i}");
                argmin(d.iter().copied().enumerate().filter(|&(j, _)| m.large()[j]))
            } else {
                assert_ne!(own, small, "row {i}");
                own
            };
            assert_eq!(
                scores[i].to_bits(),
                d[reference].sqrt().to_bits(),
                "row {i}"
            );
            // The explanation adds up to the score, to the bit.
            let c = m.contributions(x.row(i));
            let expected: Vec<f64> = row
                .iter()
                .zip(&m.centroids()[reference])
                .map(|(a, b)| (a - b) * (a - b))
                .collect();
            assert_eq!(c, expected);
            assert_eq!(c.iter().sum::<f64>().sqrt().to_bits(), scores[i].to_bits());
        }
        // The small group scores far above both large groups.
        let top_large = scores[..100].iter().cloned().fold(f64::MIN, f64::max);
        assert!(scores[100..].iter().all(|&s| s > top_large));
    }

    #[test]
    fn local_trials_follow_scikit_learn() {
        // scikit-learn draws 2 + int(np.log(n_clusters)) candidates per centre.
        for k in 1..=1000 {
            assert_eq!(floor_ln(k), (k as f64).ln().floor() as usize, "k = {k}");
        }
    }

    #[test]
    fn fewer_distinct_rows_than_clusters() {
        let x = Array2::from_shape_fn((20, 2), |(i, j)| ((i % 2) * (j + 1)) as f64);
        let m = Kmeans::fit(x.view(), &Params::default(), 1).unwrap();
        assert_eq!(m.centroids().len(), 2);
        assert!(m.score(x.view()).iter().all(|&s| s == 0.0));
        m.check(2).unwrap();
    }

    #[test]
    fn parameters_out_of_range_are_refused() {
        let x = blobs();
        type Change = fn(&mut Params);
        let cases: [(&str, Change); 13] = [
            ("n_clusters", |p| p.n_clusters = 1),
            ("n_clusters", |p| p.n_clusters = 1001),
            ("max_iter", |p| p.max_iter = 0),
            ("n_init", |p| p.n_init = 0),
            ("n_init", |p| p.n_init = 101),
            ("tol", |p| p.tol = -1e-4),
            ("tol", |p| p.tol = f64::NAN),
            ("alpha", |p| p.alpha = 1.0),
            ("alpha", |p| p.alpha = 0.0),
            ("alpha", |p| p.alpha = f64::NAN),
            ("beta", |p| p.beta = 1.0),
            ("beta", |p| p.beta = f64::INFINITY),
            ("min_cluster_share", |p| p.min_cluster_share = Some(0.02)),
        ];
        for (name, change) in cases {
            let mut p = Params::default();
            change(&mut p);
            match Kmeans::fit(x.view(), &p, 0) {
                Err(DetectError::InvalidParameter { name: got, .. }) => {
                    assert_eq!(got, name, "{p:?}")
                }
                other => panic!("{p:?}: {other:?}"),
            }
        }
        let tiny = ndarray::array![[1.0], [2.0]];
        assert!(matches!(
            Kmeans::fit(tiny.view(), &Params::default(), 0),
            Err(DetectError::InvalidParameter {
                name: "n_clusters",
                ..
            })
        ));
        // Through the public parameter map, the same refusals.
        let mut map = serde_json::Map::new();
        map.insert("beta".into(), 0.5.into());
        let o = FitOptions::new(Algorithm::with_params("kmeans", &map).unwrap());
        let err = Model::fit(x.view(), &o).unwrap_err();
        assert!(err.to_string().contains("beta"), "{err}");
    }

    #[test]
    fn saved_models_load_and_score_to_the_same_bits() {
        let x = two_large_one_small();
        let fitted = Model::fit(x.view(), &three_clusters()).unwrap();
        let bytes = fitted.model.to_json();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"large\":["), "{text}");
        assert!(!text.contains("min_cluster_share"), "{text}");
        let back = Model::from_json(&bytes).unwrap();
        assert_eq!(
            bits(&back.score(x.view()).unwrap()),
            bits(&fitted.training_scores)
        );
        assert_eq!(back.to_json(), bytes);
        let e = back.explain(x.row(101)).unwrap();
        assert!(e.method.contains("nearest large cluster"), "{}", e.method);
    }

    /// A model saved by the version before this one (smartcore k-means on standardised
    /// features, small clusters dropped), fitted with `n_clusters: 2` on `legacy_rows`.
    const LEGACY: &str = r#"{"format":"nomaly-model","version":1,"created_by":"nomaly-detect 0.1.0","model":{"algorithm":{"name":"kmeans","n_clusters":2,"max_iter":100,"min_cluster_share":0.02},"seed":0,"feature_names":["f0","f1"],"threshold_rule":{"contamination":0.1},"threshold":0.6093518168862988,"training":{"rows":12,"anomalies":2,"score_min":0.11075218691243492,"score_max":2.5835313320234725,"score_mean":0.4977803710070899},"state":{"kmeans":{"mean":[3.7083333333333335,3.7291666666666665],"std":[4.072050739151248,3.9097345569175865],"centroids":[[-0.8083560047566501,-0.8152727387490489],[0.80835600475665,0.8152727387490489]]}}}}"#;

    fn legacy_rows() -> Array2<f64> {
        Array2::from_shape_fn((12, 2), |(i, j)| {
            let base = if i < 6 { 0.0 } else { 5.0 };
            base + ((i * 7 + j * 3) % 5) as f64 * 0.25 + if i == 11 { 9.0 } else { 0.0 }
        })
    }

    #[test]
    fn models_saved_by_the_previous_version_still_score_as_before() {
        let m = Model::from_json(LEGACY.as_bytes()).unwrap();
        // The scores that version gave these rows.
        let before: [u64; 12] = [
            4592977470259894573,
            4594213722981354760,
            4594343514837280779,
            4593611699093252883,
            4592644956786513879,
            4592977470259894573,
            4603698457500405154,
            4601556919285261606,
            4602490639145521961,
            4602906795404449093,
            4603351610258451176,
            4613000014172117864,
        ];
        let x = legacy_rows();
        assert_eq!(bits(&m.score(x.view()).unwrap()), before);
        assert_eq!(m.labels(&m.score(x.view()).unwrap())[11], 1);
        let e = m.explain(x.row(11)).unwrap();
        assert!(e.method.contains("standardised"), "{}", e.method);
        // Saved again, it stays a model of the old kind and scores the same.
        let again = Model::from_json(&m.to_json()).unwrap();
        assert_eq!(bits(&again.score(x.view()).unwrap()), before);
        assert!(String::from_utf8(m.to_json()).unwrap().contains("\"std\":"));
    }

    #[test]
    fn malformed_states_are_refused() {
        let fitted = Model::fit(two_large_one_small().view(), &three_clusters()).unwrap();
        let text = String::from_utf8(fitted.model.to_json()).unwrap();
        let large_at = text.find("\"large\":[").unwrap();
        let end = large_at + text[large_at..].find(']').unwrap() + 1;
        let with_large =
            |replacement: &str| format!("{}{}{}", &text[..large_at], replacement, &text[end..]);
        let damaged = [
            // No large cluster at all.
            with_large("\"large\":[false,false,false]"),
            // One flag too few.
            with_large("\"large\":[true,false]"),
            // Both kinds of saved state mixed.
            with_large("\"large\":[true,true,false],\"mean\":[0,0],\"std\":[1,1]"),
            // Neither kind.
            with_large("\"sizes\":[1,2,3]"),
            // An old-kind state with a zero deviation.
            with_large("\"mean\":[0,0],\"std\":[1,0]"),
        ];
        for bad in damaged {
            match Model::from_json(bad.as_bytes()) {
                Err(DetectError::InvalidModel(msg)) => {
                    assert!(msg.contains("k-means") || msg.contains("sizes"), "{msg}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
