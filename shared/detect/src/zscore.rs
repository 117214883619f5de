//! Robust z-score: each feature centred on its median and scaled by its median absolute
//! deviation (times 1.4826, so it estimates the standard deviation of normal data).
//! Where the MAD is zero the mean absolute deviation (times 1.2533) stands in, and where
//! that is zero too (a constant feature) the scale is 1. A row's score is the root mean
//! square of its per-feature z-scores.
//!
//! Explanation: the squared per-feature z-scores.

use crate::error::{DetectError, Result};
use crate::scorer::Scorer;
use crate::stats::median;
use ndarray::{Array1, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

/// The robust z-score has no parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {}

/// A fitted robust z-score model: centre and scale per feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZScore {
    center: Vec<f64>,
    scale: Vec<f64>,
}

impl ZScore {
    /// Fits on `x` (checked by the caller).
    pub fn fit(x: ArrayView2<f64>) -> Self {
        let mut center = Vec::with_capacity(x.ncols());
        let mut scale = Vec::with_capacity(x.ncols());
        for col in x.axis_iter(Axis(1)) {
            let m = median(col);
            let dev: Array1<f64> = col.mapv(|v| (v - m).abs());
            let mad = median(dev.view()) * 1.4826;
            let s = if mad > 0.0 {
                mad
            } else {
                let mean_ad = dev.sum() / dev.len() as f64 * 1.2533;
                if mean_ad > 0.0 {
                    mean_ad
                } else {
                    1.0
                }
            };
            center.push(m);
            scale.push(s);
        }
        ZScore { center, scale }
    }

    /// Checks a model read from outside.
    pub fn check(&self, n_features: usize) -> Result<()> {
        let ok = self.center.len() == n_features
            && self.scale.len() == n_features
            && self.center.iter().all(|v| v.is_finite())
            && self.scale.iter().all(|v| v.is_finite() && *v > 0.0);
        if ok {
            Ok(())
        } else {
            Err(DetectError::InvalidModel(
                "z-score scales are malformed".into(),
            ))
        }
    }
}

impl Scorer for ZScore {
    fn score(&self, x: ArrayView2<f64>) -> Vec<f64> {
        let d = x.ncols() as f64;
        x.outer_iter()
            .map(|r| (self.contributions(r).iter().sum::<f64>() / d).sqrt())
            .collect()
    }

    fn contributions(&self, row: ArrayView1<f64>) -> Vec<f64> {
        row.iter()
            .zip(self.center.iter().zip(&self.scale))
            .map(|(&v, (c, s))| {
                let z = (v - c) / s;
                z * z
            })
            .collect()
    }

    fn explanation_method(&self) -> &'static str {
        "squared robust z-score per feature: ((x - median) / (1.4826 * MAD))^2"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn hand_checked_scores() {
        // Feature 0: [1, 2, 3, 4, 100] -> median 3, |dev| [2, 1, 0, 1, 97], MAD 1.
        // Feature 1: constant 5 -> MAD 0, mean AD 0 -> scale 1.
        let x = array![[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [4.0, 5.0], [100.0, 5.0]];
        let m = ZScore::fit(x.view());
        assert_eq!(m.center, vec![3.0, 5.0]);
        assert_eq!(m.scale, vec![1.4826, 1.0]);
        let s = m.score(x.view());
        let z: f64 = 97.0 / 1.4826;
        assert!((s[4] - (z * z / 2.0).sqrt()).abs() < 1e-9);
        assert_eq!(s[2], 0.0);
        let c = m.contributions(array![3.0, 7.0].view());
        assert_eq!(c, vec![0.0, 4.0]);
    }

    #[test]
    fn zero_mad_falls_back_to_mean_absolute_deviation() {
        let x = array![[1.0], [1.0], [1.0], [1.0], [5.0]];
        let m = ZScore::fit(x.view());
        assert!((m.scale[0] - 0.8 * 1.2533).abs() < 1e-12);
    }
}
