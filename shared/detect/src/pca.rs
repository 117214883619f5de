//! PCA reconstruction error. Features are standardised (training mean and standard
//! deviation), smartcore's PCA finds the principal axes, and the model keeps the
//! leading `n_components` of them (by default as many as explain `variance`, 95 %, of the
//! variance). A row's score is its squared distance from the kept subspace: the part of
//! the row the main directions of the training data cannot explain.
//!
//! Explanation: the squared residual per feature.

use crate::error::{invalid, smartcore, DetectError, Result};
use crate::scorer::Scorer;
use crate::stats::standardizer;
use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};
use smartcore::decomposition::pca::{PCAParameters, PCA};

/// PCA parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Components kept; when absent, the fewest that explain `variance`.
    #[serde(default)]
    pub n_components: Option<usize>,
    /// Share of variance the kept components must explain, in (0, 1].
    #[serde(default = "default_variance")]
    pub variance: f64,
}

fn default_variance() -> f64 {
    0.95
}

impl Default for Params {
    fn default() -> Self {
        Params {
            n_components: None,
            variance: default_variance(),
        }
    }
}

/// A fitted PCA model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pca {
    mean: Vec<f64>,
    std: Vec<f64>,
    /// Kept axes, one per row, each of length n_features.
    components: Vec<Vec<f64>>,
}

impl Pca {
    /// Fits on `x` (checked by the caller).
    pub fn fit(x: ArrayView2<f64>, params: &Params) -> Result<Self> {
        let d = x.ncols();
        if !(params.variance > 0.0 && params.variance <= 1.0) {
            return Err(invalid("variance", "must be in (0, 1]"));
        }
        if let Some(k) = params.n_components {
            if k == 0 || k > d {
                return Err(invalid(
                    "n_components",
                    format!("must be between 1 and the number of features ({d})"),
                ));
            }
        }
        let (mean, std) = standardizer(x);
        let z: Array2<f64> = (&x - &mean) / &std;
        let pca = smartcore("pca", || {
            PCA::<f64, Array2<f64>>::fit(&z, PCAParameters::default().with_n_components(d))
        })?;
        let axes: &Array2<f64> = pca.components();
        // Variance along each axis, largest first.
        let projected = z.dot(axes);
        let mut order: Vec<(f64, usize)> = projected
            .axis_iter(Axis(1))
            .enumerate()
            .map(|(j, c)| (c.iter().map(|v| v * v).sum::<f64>(), j))
            .collect();
        order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let total: f64 = order.iter().map(|o| o.0).sum();
        let keep = match params.n_components {
            Some(k) => k,
            None => {
                let mut acc = 0.0;
                let mut k = 0;
                for (v, _) in &order {
                    k += 1;
                    acc += v;
                    if total <= 0.0 || acc / total >= params.variance - 1e-12 {
                        break;
                    }
                }
                k
            }
        };
        let components = order[..keep]
            .iter()
            .map(|&(_, j)| axes.column(j).to_vec())
            .collect();
        Ok(Pca {
            mean: mean.to_vec(),
            std: std.to_vec(),
            components,
        })
    }

    /// Number of kept components.
    pub fn n_components(&self) -> usize {
        self.components.len()
    }

    fn residual(&self, row: ArrayView1<f64>) -> Vec<f64> {
        let z: Vec<f64> = row
            .iter()
            .zip(self.mean.iter().zip(&self.std))
            .map(|(v, (m, s))| (v - m) / s)
            .collect();
        let mut r = z.clone();
        for axis in &self.components {
            let t: f64 = z.iter().zip(axis).map(|(a, b)| a * b).sum();
            for (ri, a) in r.iter_mut().zip(axis) {
                *ri -= t * a;
            }
        }
        r
    }

    /// Checks a model read from outside.
    pub fn check(&self, n_features: usize) -> Result<()> {
        let ok = self.mean.len() == n_features
            && self.std.len() == n_features
            && !self.components.is_empty()
            && self.components.iter().all(|c| c.len() == n_features)
            && self.std.iter().all(|s| s.is_finite() && *s > 0.0)
            && self
                .mean
                .iter()
                .chain(self.components.iter().flatten())
                .all(|v| v.is_finite());
        if ok {
            Ok(())
        } else {
            Err(DetectError::InvalidModel("PCA model is malformed".into()))
        }
    }
}

impl Scorer for Pca {
    fn score(&self, x: ArrayView2<f64>) -> Vec<f64> {
        x.outer_iter()
            .map(|r| self.residual(r).iter().map(|v| v * v).sum())
            .collect()
    }

    fn contributions(&self, row: ArrayView1<f64>) -> Vec<f64> {
        self.residual(row).iter().map(|v| v * v).collect()
    }

    fn explanation_method(&self) -> &'static str {
        "squared PCA reconstruction residual per standardised feature"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn a_row_off_the_main_line_has_the_largest_error() {
        // Points on the line y = x (with a little noise), and one point off it.
        let mut rng = Rng::new(2);
        let mut x = Array2::from_shape_fn((200, 2), |_| 0.0);
        for i in 0..200 {
            let t = rng.next_f64() * 10.0;
            x[[i, 0]] = t;
            x[[i, 1]] = t + (rng.next_f64() - 0.5) * 0.01;
        }
        x[[199, 0]] = 2.0;
        x[[199, 1]] = 8.0;
        let m = Pca::fit(x.view(), &Params::default()).unwrap();
        assert_eq!(m.n_components(), 1);
        let s = m.score(x.view());
        let top = s.iter().cloned().fold(f64::MIN, f64::max);
        assert_eq!(s[199], top);
        // All components kept: nothing is left over.
        let full = Pca::fit(
            x.view(),
            &Params {
                n_components: Some(2),
                ..Params::default()
            },
        )
        .unwrap();
        assert!(full.score(x.view()).iter().all(|&v| v < 1e-9));
    }

    #[test]
    fn bad_parameters_are_refused() {
        let x = ndarray::array![[1.0, 2.0], [2.0, 1.0], [3.0, 3.0]];
        let p = Params {
            n_components: Some(3),
            ..Params::default()
        };
        assert!(Pca::fit(x.view(), &p).is_err());
        let p = Params {
            variance: 0.0,
            ..Params::default()
        };
        assert!(Pca::fit(x.view(), &p).is_err());
    }
}
