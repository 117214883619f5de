//! PCA outlier score, as PyOD's `pyod.models.pca.PCA` (PyOD 3.6.7, scikit-learn 1.9).
//!
//! Fitting standardises each column with the training mean and population standard
//! deviation (scikit-learn's `StandardScaler`: a column that is constant, up to rounding,
//! keeps scale 1), then takes the principal axes of the standardised rows: the
//! eigenvectors of their covariance matrix (divisor n - 1), largest variance first, each
//! with the sign that makes its largest-magnitude entry positive (scikit-learn's
//! `svd_flip`). By default all `min(rows, features)` axes are kept and all of them score.
//!
//! A row's score is PyOD's `sum(cdist(z, axes) / ratios)`: the sum over the selected
//! axes of the Euclidean distance between the standardised row `z` and the axis's unit
//! vector taken as a point, divided by the share of variance that axis explains. Axes of
//! small variance weigh the most. Scores therefore match PyOD's up to rounding, except
//! where an axis's variance is zero up to rounding (a constant column, or one column a
//! linear combination of others): PyOD then divides by whatever rounding noise its
//! eigen-solver left, or by zero (infinite scores). Here that variance is raised to the
//! noise level of the decomposition, `largest variance x features x f64::EPSILON`, so
//! scores stay finite; those axes still dominate the score as they do in PyOD, so the
//! ranking of rows is the same while the values are not.
//!
//! Explanation: the score split over features exactly. Each axis's distance
//! `sqrt(sum_i (z_i - a_i)^2)` is shared among features in proportion to their
//! `(z_i - a_i)^2`, then divided by the axis's weight, so contributions add up to the score.
//!
//! Models saved before this scoring (layout `mean`, `std`, `components`, which scored the
//! squared reconstruction error) still load and score exactly as they did.

use crate::error::{invalid, DetectError, Result};
use crate::scorer::Scorer;
use ndarray::{ArrayView1, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// PCA parameters, named as PyOD's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Principal axes kept, largest variance first (PyOD's integer `n_components`); all,
    /// `min(rows, features)`, when absent.
    #[serde(default)]
    pub n_components: Option<usize>,
    /// Instead of `n_components`: keep the fewest leading axes whose share of the variance
    /// exceeds this, in (0, 1] (PyOD's fractional `n_components`; 1 keeps all).
    #[serde(default)]
    pub variance: Option<f64>,
    /// How many of the kept axes score: the ones of least variance. All when absent.
    #[serde(default)]
    pub n_selected_components: Option<usize>,
    /// Divide each axis's distance by the share of variance it explains.
    #[serde(default = "yes")]
    pub weighted: bool,
    /// Standardise the columns first. Without it the raw rows are measured against the
    /// axes (as PyOD does): only sensible for data already on a common scale around 0.
    #[serde(default = "yes")]
    pub standardization: bool,
}

fn yes() -> bool {
    true
}

impl Default for Params {
    fn default() -> Self {
        Params {
            n_components: None,
            variance: None,
            n_selected_components: None,
            weighted: true,
            standardization: true,
        }
    }
}

/// A fitted PCA model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Saved", into = "Saved")]
pub struct Pca {
    form: Form,
}

#[derive(Debug, Clone, PartialEq)]
enum Form {
    /// PyOD's weighted distance to the principal axes.
    Distance {
        /// Subtracted from each column before scaling (0 without standardisation).
        mean: Vec<f64>,
        /// Each column is divided by it (1 without standardisation).
        scale: Vec<f64>,
        /// Selected axes, unit vectors of length n_features, largest variance first.
        axes: Vec<Vec<f64>>,
        /// Each axis's divisor: its share of the variance, or 1 when not weighted.
        weights: Vec<f64>,
    },
    /// Squared reconstruction error, as models saved by nomaly before PyOD-style scoring.
    Residual {
        mean: Vec<f64>,
        std: Vec<f64>,
        /// Kept axes, one per row, each of length n_features.
        components: Vec<Vec<f64>>,
    },
}

/// Saved layout of both forms: `mean`, `scale`, `axes`, `weights` for the current one;
/// `mean`, `std`, `components` for the old one, exactly as older builds wrote it (so they
/// still read models of the old form saved again, and refuse the current form).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    mean: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scale: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    axes: Option<Vec<Vec<f64>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weights: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    std: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    components: Option<Vec<Vec<f64>>>,
}

impl TryFrom<Saved> for Pca {
    type Error = String;

    fn try_from(s: Saved) -> std::result::Result<Self, String> {
        let form = match s {
            Saved {
                mean,
                scale: Some(scale),
                axes: Some(axes),
                weights: Some(weights),
                std: None,
                components: None,
            } => Form::Distance {
                mean,
                scale,
                axes,
                weights,
            },
            Saved {
                mean,
                scale: None,
                axes: None,
                weights: None,
                std: Some(std),
                components: Some(components),
            } => Form::Residual {
                mean,
                std,
                components,
            },
            _ => {
                return Err("a PCA model has `mean`, `scale`, `axes` and `weights` \
                            (or, saved by an older nomaly, `mean`, `std` and `components`)"
                    .into())
            }
        };
        Ok(Pca { form })
    }
}

impl From<Pca> for Saved {
    fn from(p: Pca) -> Saved {
        match p.form {
            Form::Distance {
                mean,
                scale,
                axes,
                weights,
            } => Saved {
                mean,
                scale: Some(scale),
                axes: Some(axes),
                weights: Some(weights),
                std: None,
                components: None,
            },
            Form::Residual {
                mean,
                std,
                components,
            } => Saved {
                mean,
                scale: None,
                axes: None,
                weights: None,
                std: Some(std),
                components: Some(components),
            },
        }
    }
}

/// Rows per block when the covariance matrix is summed in parallel. Fixed, so the sum
/// (and the model) is the same at any thread count.
const COV_BLOCK: usize = 2048;

fn algorithm_error(reason: impl Into<String>) -> DetectError {
    DetectError::Algorithm {
        algorithm: "pca",
        reason: reason.into(),
    }
}

impl Pca {
    /// Fits on `x` (checked by the caller).
    pub fn fit(x: ArrayView2<f64>, params: &Params) -> Result<Self> {
        let (n, d) = x.dim();
        let max_components = n.min(d);
        if let Some(k) = params.n_components {
            if k == 0 || k > d {
                return Err(invalid(
                    "n_components",
                    format!("must be between 1 and the number of features ({d})"),
                ));
            }
            if k > n {
                return Err(invalid(
                    "n_components",
                    format!("must be at most the number of training rows ({n})"),
                ));
            }
            if params.variance.is_some() {
                return Err(invalid(
                    "variance",
                    "cannot be combined with `n_components`; give one of them",
                ));
            }
        }
        if let Some(v) = params.variance {
            if !(v > 0.0 && v <= 1.0) {
                return Err(invalid("variance", "must be in (0, 1]"));
            }
        }
        if params.n_selected_components == Some(0) {
            return Err(invalid(
                "n_selected_components",
                "must be at least 1 (and at most `n_components`)",
            ));
        }
        if n < 2 {
            return Err(algorithm_error(
                "needs at least 2 training rows to estimate a covariance",
            ));
        }

        let (mean, scale) = if params.standardization {
            standard_scaler(x)
        } else {
            (vec![0.0; d], vec![1.0; d])
        };
        let cov = covariance(x, &mean, &scale);
        let (values, vectors) = symmetric_eigen(cov, d)
            .ok_or_else(|| algorithm_error("the eigendecomposition failed"))?;
        // Largest variance first; ties keep their order. Negative values are rounding noise
        // of a positive semi-definite matrix, clipped as scikit-learn does.
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
        let variances: Vec<f64> = order.iter().map(|&j| values[j].max(0.0)).collect();
        let total: f64 = variances.iter().sum();
        if !(total > 0.0 && total.is_finite()) {
            return Err(algorithm_error(if total == 0.0 {
                "every column is constant in the training rows, so there is no variance to \
                 score against"
                    .to_string()
            } else {
                "the variance of the training rows is not a finite number".to_string()
            }));
        }

        let kept = match (params.n_components, params.variance) {
            (Some(k), _) => k,
            (None, Some(v)) => {
                // scikit-learn: searchsorted(cumsum(ratios), v, side="right") + 1.
                let mut acc = 0.0;
                let mut below = 0;
                for r in variances.iter().map(|l| l / total) {
                    acc += r;
                    if acc <= v {
                        below += 1;
                    } else {
                        break;
                    }
                }
                (below + 1).min(max_components)
            }
            (None, None) => max_components,
        };
        let selected = params.n_selected_components.unwrap_or(kept);
        if selected > kept {
            return Err(invalid(
                "n_selected_components",
                format!("must be at most the number of components kept ({kept})"),
            ));
        }

        // Variance below the decomposition's rounding noise is noise: raised to that level.
        let floor = variances[0] * d as f64 * f64::EPSILON;
        let mut axes = Vec::with_capacity(selected);
        let mut weights = Vec::with_capacity(selected);
        for (rank, &j) in order.iter().enumerate().take(kept).skip(kept - selected) {
            let mut axis: Vec<f64> = (0..d).map(|i| vectors[i * d + j]).collect();
            flip_sign(&mut axis);
            axes.push(axis);
            weights.push(if params.weighted {
                variances[rank].max(floor) / total
            } else {
                1.0
            });
        }
        let model = Pca {
            form: Form::Distance {
                mean,
                scale,
                axes,
                weights,
            },
        };
        model.check(d).map_err(|_| {
            algorithm_error(
                "the decomposition gave non-finite axes; the values may be too far apart",
            )
        })?;
        Ok(model)
    }

    /// Number of axes that score (the kept ones, for a model saved before PyOD scoring).
    pub fn n_components(&self) -> usize {
        match &self.form {
            Form::Distance { axes, .. } => axes.len(),
            Form::Residual { components, .. } => components.len(),
        }
    }

    /// Checks a model read from outside.
    pub fn check(&self, n_features: usize) -> Result<()> {
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        let positive = |v: &[f64]| v.iter().all(|x| x.is_finite() && *x > 0.0);
        let ok = match &self.form {
            Form::Distance {
                mean,
                scale,
                axes,
                weights,
            } => {
                mean.len() == n_features
                    && scale.len() == n_features
                    && !axes.is_empty()
                    && axes.len() <= n_features
                    && weights.len() == axes.len()
                    && axes.iter().all(|a| a.len() == n_features && finite(a))
                    && finite(mean)
                    && positive(scale)
                    && positive(weights)
            }
            Form::Residual {
                mean,
                std,
                components,
            } => {
                mean.len() == n_features
                    && std.len() == n_features
                    && !components.is_empty()
                    && components
                        .iter()
                        .all(|c| c.len() == n_features && finite(c))
                    && finite(mean)
                    && positive(std)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(DetectError::InvalidModel("PCA model is malformed".into()))
        }
    }

    /// Each feature's part of `row`'s score (they sum to it), in `out`.
    fn parts(&self, row: ArrayView1<f64>, z: &mut [f64], out: &mut [f64]) {
        match &self.form {
            Form::Distance {
                mean,
                scale,
                axes,
                weights,
            } => {
                standardise(row, mean, scale, z);
                out.iter_mut().for_each(|o| *o = 0.0);
                for (axis, w) in axes.iter().zip(weights) {
                    let dist = distance(z, axis);
                    if dist > 0.0 {
                        let per = 1.0 / (dist * w);
                        for ((o, zi), ai) in out.iter_mut().zip(z.iter()).zip(axis) {
                            *o += (zi - ai) * (zi - ai) * per;
                        }
                    }
                }
            }
            Form::Residual { .. } => {
                for (o, r) in out.iter_mut().zip(self.residual(row)) {
                    *o = r * r;
                }
            }
        }
    }

    /// The part of the standardised row the kept axes cannot explain (old form).
    fn residual(&self, row: ArrayView1<f64>) -> Vec<f64> {
        let Form::Residual {
            mean,
            std,
            components,
        } = &self.form
        else {
            return Vec::new();
        };
        let z: Vec<f64> = row
            .iter()
            .zip(mean.iter().zip(std))
            .map(|(v, (m, s))| (v - m) / s)
            .collect();
        let mut r = z.clone();
        for axis in components {
            let t: f64 = z.iter().zip(axis).map(|(a, b)| a * b).sum();
            for (ri, a) in r.iter_mut().zip(axis) {
                *ri -= t * a;
            }
        }
        r
    }
}

impl Scorer for Pca {
    fn score(&self, x: ArrayView2<f64>) -> Vec<f64> {
        match &self.form {
            Form::Distance {
                mean,
                scale,
                axes,
                weights,
            } => {
                let mut z = vec![0.0; x.ncols()];
                x.outer_iter()
                    .map(|row| {
                        standardise(row, mean, scale, &mut z);
                        axes.iter()
                            .zip(weights)
                            .map(|(axis, w)| distance(&z, axis) / w)
                            .sum()
                    })
                    .collect()
            }
            Form::Residual { .. } => x
                .outer_iter()
                .map(|r| self.residual(r).iter().map(|v| v * v).sum())
                .collect(),
        }
    }

    fn contributions(&self, row: ArrayView1<f64>) -> Vec<f64> {
        let mut z = vec![0.0; row.len()];
        let mut out = vec![0.0; row.len()];
        self.parts(row, &mut z, &mut out);
        out
    }

    fn explanation_method(&self) -> &'static str {
        match self.form {
            Form::Distance { .. } => {
                "each standardised feature's share of the weighted distances to the principal \
                 axes (the shares add up to the score)"
            }
            Form::Residual { .. } => "squared PCA reconstruction residual per standardised feature",
        }
    }
}

/// `(row - mean) / scale` into `z`.
fn standardise(row: ArrayView1<f64>, mean: &[f64], scale: &[f64], z: &mut [f64]) {
    for (((zi, v), m), s) in z.iter_mut().zip(row).zip(mean).zip(scale) {
        *zi = (v - m) / s;
    }
}

/// Euclidean distance, as scipy's `cdist`.
fn distance(z: &[f64], axis: &[f64]) -> f64 {
    z.iter()
        .zip(axis)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt()
}

/// Column means and scales as scikit-learn's `StandardScaler`: population variance by the
/// corrected two-pass algorithm, and scale 1 for a column whose variance is within the
/// rounding error of that algorithm (`_is_constant_feature`).
fn standard_scaler(x: ArrayView2<f64>) -> (Vec<f64>, Vec<f64>) {
    let (n, d) = x.dim();
    let nf = n as f64;
    let mut sum = vec![0.0; d];
    for row in x.outer_iter() {
        for (s, v) in sum.iter_mut().zip(row) {
            *s += v;
        }
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / nf).collect();
    let mut correction = vec![0.0; d];
    let mut squares = vec![0.0; d];
    for row in x.outer_iter() {
        for (((c, q), v), m) in correction.iter_mut().zip(&mut squares).zip(row).zip(&mean) {
            let t = v - m;
            *c += t;
            *q += t * t;
        }
    }
    let scale = (0..d)
        .map(|j| {
            let var = (squares[j] - correction[j] * correction[j] / nf) / nf;
            let bound = nf * f64::EPSILON * var + (nf * mean[j] * f64::EPSILON).powi(2);
            if var <= bound || !var.is_finite() {
                1.0
            } else {
                var.sqrt()
            }
        })
        .collect();
    (mean, scale)
}

/// Covariance matrix (divisor n - 1, row-major d x d) of the rows `(x - mean) / scale`,
/// centred on their own mean. Blocks of rows are summed in parallel and then in order.
fn covariance(x: ArrayView2<f64>, mean: &[f64], scale: &[f64]) -> Vec<f64> {
    let (n, d) = x.dim();
    let mut z = vec![0.0; d];
    let mut centre = vec![0.0; d];
    for row in x.outer_iter() {
        standardise(row, mean, scale, &mut z);
        for (c, v) in centre.iter_mut().zip(&z) {
            *c += v;
        }
    }
    centre.iter_mut().for_each(|c| *c /= n as f64);
    let starts: Vec<usize> = (0..n).step_by(COV_BLOCK).collect();
    let block_sum = |&a: &usize| {
        let b = (a + COV_BLOCK).min(n);
        let mut acc = vec![0.0; d * d];
        let mut z = vec![0.0; d];
        for row in x.slice(ndarray::s![a..b, ..]).outer_iter() {
            standardise(row, mean, scale, &mut z);
            for (zi, c) in z.iter_mut().zip(&centre) {
                *zi -= c;
            }
            for (p, zp) in z.iter().enumerate() {
                let line = &mut acc[p * d + p..(p + 1) * d];
                for (l, zq) in line.iter_mut().zip(&z[p..]) {
                    *l += zp * zq;
                }
            }
        }
        acc
    };
    // A few blocks at a time, added in block order: the same sums at any thread count,
    // and at most `BLOCKS_AT_ONCE` d x d accumulators held, whatever the rows.
    const BLOCKS_AT_ONCE: usize = 8;
    let mut cov = vec![0.0; d * d];
    for group in starts.chunks(BLOCKS_AT_ONCE) {
        let blocks: Vec<Vec<f64>> = group.par_iter().map(block_sum).collect();
        for block in &blocks {
            for (c, v) in cov.iter_mut().zip(block) {
                *c += v;
            }
        }
    }
    let divisor = (n - 1) as f64;
    for p in 0..d {
        for q in p..d {
            let v = cov[p * d + q] / divisor;
            cov[p * d + q] = v;
            cov[q * d + p] = v;
        }
    }
    cov
}

/// Eigenvalues and eigenvectors of the symmetric `d x d` row-major matrix `a`, by
/// smartcore's symmetric eigendecomposition (Householder reduction to tridiagonal form,
/// then the QL algorithm: O(d³), sequential, the same bits on every platform). Returns
/// the eigenvalues (unsorted) and the row-major matrix whose column `j` is the unit
/// eigenvector of eigenvalue `j`; `None` if it fails or meets a non-finite value.
fn symmetric_eigen(a: Vec<f64>, d: usize) -> Option<(Vec<f64>, Vec<f64>)> {
    use smartcore::linalg::traits::evd::EVDDecomposable;
    if a.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let m = ndarray::Array2::from_shape_vec((d, d), a).ok()?;
    let evd = crate::error::smartcore("pca", || m.evd(true)).ok()?;
    let vectors: Vec<f64> = evd.V.iter().copied().collect();
    if vectors.len() != d * d || evd.d.iter().chain(&vectors).any(|v| !v.is_finite()) {
        return None;
    }
    Some((evd.d, vectors))
}

/// scikit-learn's `svd_flip` for one axis: the entry of largest magnitude (the first of
/// equals) made positive.
fn flip_sign(axis: &mut [f64]) {
    let mut best = 0;
    for (i, v) in axis.iter().enumerate() {
        if v.abs() > axis[best].abs() {
            best = i;
        }
    }
    if axis[best] < 0.0 {
        axis.iter_mut().for_each(|v| *v = -*v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Algorithm, FitOptions, Model};
    use ndarray::{array, Array2};

    /// The 8 x 3 matrix of the PyOD reference scores below; the last row is off the line.
    fn small() -> Array2<f64> {
        array![
            [1.0, 2.0, 0.5],
            [2.0, 1.5, 1.0],
            [3.0, 3.5, 0.2],
            [4.0, 3.0, 1.8],
            [5.0, 5.5, 0.9],
            [6.0, 5.0, 1.1],
            [7.0, 7.5, 0.4],
            [2.5, 6.0, 3.0],
        ]
    }

    fn fit(x: &Array2<f64>, params: Params) -> Result<Pca> {
        Pca::fit(x.view(), &params)
    }

    fn assert_close(got: &[f64], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() <= 1e-10 * w.abs(),
                "{what}: {got:?} vs {want:?}"
            );
        }
    }

    #[test]
    fn scores_match_pyod() {
        // Produced with PyOD 3.6.7 / scikit-learn 1.9.1 / numpy 2.4.6:
        //   X = the matrix of `small()`; for each kw below,
        //   m = pyod.models.pca.PCA(**kw).fit(X)
        //   m.decision_scores_, m.decision_function([[10.0, -3.0, 2.0]])
        let cases: [(Params, [f64; 8], f64); 6] = [
            (
                Params::default(),
                [
                    53.215009071972624,
                    41.63437833684192,
                    39.47618690838142,
                    18.935462009511856,
                    29.13514913745423,
                    25.99361128952222,
                    58.52160980062772,
                    57.505853852622295,
                ],
                92.27296478215358,
            ),
            (
                // kw = {"n_selected_components": 2}
                Params {
                    n_selected_components: Some(2),
                    ..Params::default()
                },
                [
                    48.19558554552947,
                    37.05389982541587,
                    36.234321100126024,
                    16.056721540197717,
                    28.66905782956778,
                    25.084786679474746,
                    55.8236249683373,
                    53.02939539496448,
                ],
                83.42802644637905,
            ),
            (
                // kw = {"weighted": False}
                Params {
                    weighted: false,
                    ..Params::default()
                },
                [
                    7.835232521870237,
                    6.580714488901209,
                    5.787686988703904,
                    3.37411253891075,
                    3.2161493936003898,
                    3.3790178447098462,
                    7.310745861971336,
                    6.979252036878707,
                ],
                14.371290270856193,
            ),
            (
                // kw = {"n_components": 2}
                Params {
                    n_components: Some(2),
                    ..Params::default()
                },
                [
                    12.025449359308773,
                    10.417982262912565,
                    9.208797041389307,
                    5.405213157661002,
                    4.736885940138676,
                    5.557431932396888,
                    11.01389480334482,
                    8.73043238329189,
                ],
                23.378949788385764,
            ),
            (
                // kw = {"n_components": 0.8}: the same two axes.
                Params {
                    variance: Some(0.8),
                    ..Params::default()
                },
                [
                    12.025449359308773,
                    10.417982262912565,
                    9.208797041389307,
                    5.405213157661002,
                    4.736885940138676,
                    5.557431932396888,
                    11.01389480334482,
                    8.73043238329189,
                ],
                23.378949788385764,
            ),
            (
                // kw = {"standardization": False}
                Params {
                    standardization: false,
                    ..Params::default()
                },
                [
                    66.04743582362843,
                    70.37930412477697,
                    129.72588091184895,
                    141.5400630147812,
                    206.93296574943827,
                    216.64422573921527,
                    285.3561075543965,
                    194.1413756141727,
                ],
                286.4562855408163,
            ),
        ];
        let x = small();
        for (params, train, new) in cases {
            let what = format!("{params:?}");
            let m = fit(&x, params).unwrap();
            assert_close(&m.score(x.view()), &train, &what);
            assert_close(&m.score(array![[10.0, -3.0, 2.0]].view()), &[new], &what);
        }
    }

    #[test]
    fn axes_and_weights_match_scikit_learn() {
        // PyOD's m.components_ and m.explained_variance_ratio_ for `small()` (as above).
        let want_axes = [
            [
                0.7073183274808282,
                0.7068925752601976,
                -0.0019158944985939984,
            ],
            [
                -0.19443940908455626,
                0.19716083838718598,
                0.9608958944658421,
            ],
            [0.6796279127615144, -0.6792867515625988, 0.27690324907259534],
        ];
        let want_ratios = [0.5855403293329111, 0.35617305627646156, 0.05828661439062741];
        let m = fit(&small(), Params::default()).unwrap();
        let Form::Distance { axes, weights, .. } = &m.form else {
            panic!("not the distance form")
        };
        for (a, w) in axes.iter().zip(&want_axes) {
            for (x, y) in a.iter().zip(w) {
                assert!((x - y).abs() < 1e-12, "{axes:?}");
            }
        }
        assert_close(weights, &want_ratios, "ratios");
    }

    #[test]
    fn contributions_add_up_to_the_score() {
        let x = small();
        let m = fit(&x, Params::default()).unwrap();
        let scores = m.score(x.view());
        for (row, s) in x.outer_iter().zip(&scores) {
            let c = m.contributions(row);
            assert!(c.iter().all(|v| *v >= 0.0));
            let total: f64 = c.iter().sum();
            assert!((total - s).abs() < 1e-9 * s, "{total} vs {s}");
        }
        // The off-line row owes most to the feature that breaks the line.
        let c = m.contributions(array![2.0, 2.0, 9.0].view());
        assert!(c[2] > c[0] && c[2] > c[1], "{c:?}");
    }

    #[test]
    fn degenerate_columns_still_score_finitely_and_rank_the_outlier_first() {
        // Column 2 is the sum of the first two, column 3 is constant: two axes of zero
        // variance, which PyOD divides by (getting noise or infinity).
        let mut rng = crate::rng::Rng::new(3);
        let mut x = Array2::zeros((300, 4));
        for i in 0..300 {
            x[[i, 0]] = rng.next_f64();
            x[[i, 1]] = rng.next_f64();
            x[[i, 2]] = x[[i, 0]] + x[[i, 1]];
            x[[i, 3]] = 0.1;
        }
        x[[299, 0]] = 3.0;
        x[[299, 2]] = 3.0 + x[[299, 1]];
        let m = fit(&x, Params::default()).unwrap();
        let s = m.score(x.view());
        assert!(s.iter().all(|v| v.is_finite()));
        let top = s.iter().cloned().fold(f64::MIN, f64::max);
        assert_eq!(s[299], top);
    }

    #[test]
    fn bad_parameters_and_data_are_refused() {
        let x = array![[1.0, 2.0], [2.0, 1.0], [3.0, 3.0]];
        let refused = |p: Params, name: &str| match fit(&x, p.clone()) {
            Err(DetectError::InvalidParameter { name: n, .. }) => assert_eq!(n, name, "{p:?}"),
            other => panic!("{p:?}: {other:?}"),
        };
        for k in [0, 3] {
            refused(
                Params {
                    n_components: Some(k),
                    ..Params::default()
                },
                "n_components",
            );
        }
        for v in [0.0, -0.5, 1.5, f64::NAN] {
            refused(
                Params {
                    variance: Some(v),
                    ..Params::default()
                },
                "variance",
            );
        }
        refused(
            Params {
                n_components: Some(1),
                variance: Some(0.9),
                ..Params::default()
            },
            "variance",
        );
        for k in [0, 3] {
            refused(
                Params {
                    n_selected_components: Some(k),
                    ..Params::default()
                },
                "n_selected_components",
            );
        }
        refused(
            Params {
                n_components: Some(1),
                n_selected_components: Some(2),
                ..Params::default()
            },
            "n_selected_components",
        );
        // More components than training rows.
        let wide = array![[1.0, 2.0, 3.0], [2.0, 1.0, 0.0]];
        assert!(matches!(
            fit(
                &wide,
                Params {
                    n_components: Some(3),
                    ..Params::default()
                }
            ),
            Err(DetectError::InvalidParameter {
                name: "n_components",
                ..
            })
        ));
        // No variance at all, or a single row.
        let flat = array![[1.0, 5.0], [1.0, 5.0], [1.0, 5.0]];
        for p in [
            Params::default(),
            Params {
                standardization: false,
                ..Params::default()
            },
        ] {
            let err = fit(&flat, p).unwrap_err();
            assert!(
                err.to_string().contains("every column is constant"),
                "{err}"
            );
        }
        let one = array![[1.0, 2.0]];
        assert!(matches!(
            fit(&one, Params::default()),
            Err(DetectError::Algorithm {
                algorithm: "pca",
                ..
            })
        ));
    }

    #[test]
    fn parameters_take_pyod_defaults_and_refuse_unknown_names() {
        let p = Algorithm::named("pca").unwrap();
        assert_eq!(p, Algorithm::Pca(Params::default()));
        let mut o = serde_json::Map::new();
        o.insert("n_selected_components".into(), 2.into());
        o.insert("weighted".into(), false.into());
        assert_eq!(
            Algorithm::with_params("pca", &o).unwrap(),
            Algorithm::Pca(Params {
                n_selected_components: Some(2),
                weighted: false,
                ..Params::default()
            })
        );
        o.insert("n_component".into(), 2.into());
        assert!(Algorithm::with_params("pca", &o).is_err());
    }

    #[test]
    fn saved_models_load_back_bit_for_bit() {
        let x = small();
        let f = Model::fit(x.view(), &FitOptions::new(Algorithm::named("pca").unwrap())).unwrap();
        let bytes = f.model.to_json();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains("\"axes\"") && text.contains("\"weights\""),
            "{text}"
        );
        let back = Model::from_json(&bytes).unwrap();
        let again = back.score(x.view()).unwrap();
        assert!(f
            .training_scores
            .iter()
            .zip(&again)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        assert_eq!(back.to_json(), bytes);
        // A state with fields of both layouts, or missing one, is refused.
        let mixed = text.replacen("\"weights\"", "\"std\"", 1);
        assert!(matches!(
            Model::from_json(mixed.as_bytes()),
            Err(DetectError::InvalidModel(_))
        ));
        // A zero weight (a division by zero when scoring) is refused.
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["model"]["state"]["pca"]["weights"][0] = 0.0.into();
        let zero_weight = serde_json::to_vec(&v).unwrap();
        assert!(matches!(
            Model::from_json(&zero_weight),
            Err(DetectError::InvalidModel(_))
        ));
    }

    /// A model saved by nomaly before PyOD-style scoring (squared reconstruction error,
    /// `{"n_components": 1}` on `small()`), with the scores and explanation that build gave.
    const OLD_MODEL: &str = r#"{"format":"nomaly-model","version":1,"created_by":"nomaly-detect 0.1.0","model":{"algorithm":{"name":"pca","n_components":1,"variance":0.95},"seed":0,"feature_names":["f0","f1","f2"],"threshold_rule":{"contamination":0.1},"threshold":2.649005148442587,"training":{"rows":8,"anomalies":1,"score_min":0.06171122627604222,"score_max":6.1473398430246835,"score_mean":1.2433790120012664},"state":{"pca":{"mean":[3.8125,4.25,1.1125],"std":[1.9354828209002528,1.9525624189766635,0.8521113483577132],"components":[[0.7073183274808285,0.7068925752601977,-0.001915894498594986]]}}}}"#;
    const OLD_SCORES: [f64; 8] = [
        0.5667653482117438,
        0.12997968664743875,
        1.1497188507645466,
        0.9215174008555103,
        0.06171122627604222,
        0.278150485289591,
        0.6918492549405763,
        6.1473398430246835,
    ];

    #[test]
    fn models_saved_before_pyod_scoring_still_score_as_they_did() {
        let x = small();
        let m = Model::from_json(OLD_MODEL.as_bytes()).unwrap();
        let scores = m.score(x.view()).unwrap();
        assert!(
            scores
                .iter()
                .zip(&OLD_SCORES)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{scores:?}"
        );
        assert_eq!(m.labels(&scores), vec![0, 0, 0, 0, 0, 0, 0, 1]);
        let e = m.explain(x.row(7)).unwrap();
        assert_eq!(
            e.method,
            "squared PCA reconstruction residual per standardised feature"
        );
        let got: Vec<(usize, f64)> = e
            .features
            .iter()
            .map(|c| (c.index, c.contribution))
            .collect();
        assert_eq!(
            got,
            vec![
                (2, 4.907876803321531),
                (1, 0.6248299896581883),
                (0, 0.6146330500449643)
            ]
        );
        // Saved again, the state keeps the old layout (which older builds read).
        let again = String::from_utf8(m.to_json()).unwrap();
        let state = &OLD_MODEL[OLD_MODEL.find("\"state\"").unwrap()..];
        assert!(again.ends_with(state), "{again}");
    }

    #[test]
    fn the_eigendecomposition_solves_a_known_matrix() {
        // [[2, 1], [1, 2]]: eigenvalues 3 and 1.
        let (values, vectors) = symmetric_eigen(vec![2.0, 1.0, 1.0, 2.0], 2).unwrap();
        let mut v = values.clone();
        v.sort_by(f64::total_cmp);
        assert!((v[0] - 1.0).abs() < 1e-14 && (v[1] - 3.0).abs() < 1e-14);
        for j in 0..2 {
            let (a, b) = (vectors[j], vectors[2 + j]);
            assert!(((a * a + b * b) - 1.0).abs() < 1e-14);
            // A v = lambda v
            assert!((2.0 * a + b - values[j] * a).abs() < 1e-13);
        }
        assert!(symmetric_eigen(vec![f64::NAN], 1).is_none());
    }
}
