//! HBOS: Histogram-Based Outlier Score (Goldstein and Dengel, 2012), static bins as in
//! PyOD's `HBOS`.
//!
//! Each feature gets `n_bins` equal-width bins over its training range, with densities
//! `count / (n * width)`. A row's score is `-sum_f log2(density_f + alpha)`. A value
//! outside the range but within `tol` bin widths of it takes the edge bin's density;
//! further out it takes the feature's lowest score (PyOD's rule).
//!
//! Explanation: per feature, how far the row's bin lies below the feature's densest bin,
//! `log2(max density + alpha) - log2(density + alpha)`.

use crate::error::{invalid, DetectError, Result};
use crate::scorer::Scorer;
use ndarray::{ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

/// HBOS parameters (PyOD's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Bins per feature.
    #[serde(default = "default_bins")]
    pub n_bins: usize,
    /// Added to each density before the logarithm.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// How far outside the range (in bin widths) a value still takes the edge bin.
    #[serde(default = "default_tol")]
    pub tol: f64,
}

fn default_bins() -> usize {
    10
}
fn default_alpha() -> f64 {
    0.1
}
fn default_tol() -> f64 {
    0.5
}

impl Default for Params {
    fn default() -> Self {
        Params {
            n_bins: default_bins(),
            alpha: default_alpha(),
            tol: default_tol(),
        }
    }
}

impl Params {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if !(2..=10_000).contains(&self.n_bins) {
            return Err(invalid("n_bins", "must be between 2 and 10000"));
        }
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return Err(invalid("alpha", "must be in (0, 1]"));
        }
        if !(self.tol >= 0.0 && self.tol <= 1.0) {
            return Err(invalid("tol", "must be in [0, 1]"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Histogram {
    low: f64,
    high: f64,
    width: f64,
    /// `log2(density + alpha)` per bin.
    log_density: Vec<f64>,
}

impl Histogram {
    fn new(col: ArrayView1<f64>, bins: usize, alpha: f64) -> Self {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for &v in col {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if hi <= lo {
            // numpy.histogram widens a degenerate range to [v - 0.5, v + 0.5]; where 0.5 is
            // lost in the value's magnitude, a relative pad keeps the width positive.
            let pad = 0.5f64.max(lo.abs() * 1e-9);
            lo -= pad;
            hi += pad;
        }
        let width = (hi - lo) / bins as f64;
        let mut h = Histogram {
            low: lo,
            high: hi,
            width,
            log_density: Vec::new(),
        };
        let mut counts = vec![0usize; bins];
        for &v in col {
            counts[h.bin_of(v, bins)] += 1;
        }
        let n = col.len() as f64;
        h.log_density = counts
            .iter()
            .map(|&c| (c as f64 / (n * width) + alpha).log2())
            .collect();
        h
    }

    /// Left edge of bin `i` as numpy's `linspace` computes it (`high` for the last edge).
    fn edge(&self, i: usize, bins: usize) -> f64 {
        if i >= bins {
            self.high
        } else {
            self.low + i as f64 * self.width
        }
    }

    /// The bin of a value inside `[low, high]`, as `numpy.histogram` assigns it: scaled
    /// position, then corrected against the edges so values on an edge go right.
    fn bin_of(&self, v: f64, bins: usize) -> usize {
        let scaled = (v - self.low) * (bins as f64 / (self.high - self.low));
        let mut i = (scaled.max(0.0) as usize).min(bins - 1);
        if i > 0 && v < self.edge(i, bins) {
            i -= 1;
        } else if i + 1 < bins && v >= self.edge(i + 1, bins) {
            i += 1;
        }
        i
    }

    /// `log2(density + alpha)` for `v`, with PyOD's rule outside the range.
    fn log_density_of(&self, v: f64, tol: f64) -> f64 {
        let bins = self.log_density.len();
        let high = self.high;
        let lowest = || {
            self.log_density
                .iter()
                .cloned()
                .fold(f64::INFINITY, f64::min)
        };
        if v < self.low {
            if self.low - v <= self.width * tol {
                self.log_density[0]
            } else {
                lowest()
            }
        } else if v > high {
            if v - high <= self.width * tol {
                self.log_density[bins - 1]
            } else {
                lowest()
            }
        } else {
            self.log_density[self.bin_of(v, bins)]
        }
    }
}

/// A fitted HBOS model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hbos {
    tol: f64,
    histograms: Vec<Histogram>,
}

impl Hbos {
    /// Fits on `x` (checked by the caller).
    pub fn fit(x: ArrayView2<f64>, params: &Params) -> Result<Self> {
        params.validate()?;
        let histograms = x
            .axis_iter(Axis(1))
            .map(|c| Histogram::new(c, params.n_bins, params.alpha))
            .collect();
        Ok(Hbos {
            tol: params.tol,
            histograms,
        })
    }

    /// Checks a model read from outside.
    pub fn check(&self, n_features: usize) -> Result<()> {
        let ok = self.histograms.len() == n_features
            && self.histograms.iter().all(|h| {
                h.log_density.len() >= 2
                    && h.width > 0.0
                    && h.low.is_finite()
                    && h.high > h.low
                    && h.high.is_finite()
                    && h.log_density.iter().all(|v| v.is_finite())
            });
        if ok && (0.0..=1.0).contains(&self.tol) {
            Ok(())
        } else {
            Err(DetectError::InvalidModel(
                "HBOS histograms are malformed".into(),
            ))
        }
    }
}

impl Scorer for Hbos {
    fn score(&self, x: ArrayView2<f64>) -> Vec<f64> {
        x.outer_iter()
            .map(|r| {
                -r.iter()
                    .zip(&self.histograms)
                    .map(|(&v, h)| h.log_density_of(v, self.tol))
                    .sum::<f64>()
            })
            .collect()
    }

    fn contributions(&self, row: ArrayView1<f64>) -> Vec<f64> {
        row.iter()
            .zip(&self.histograms)
            .map(|(&v, h)| {
                let best = h
                    .log_density
                    .iter()
                    .cloned()
                    .fold(f64::NEG_INFINITY, f64::max);
                best - h.log_density_of(v, self.tol)
            })
            .collect()
    }

    fn explanation_method(&self) -> &'static str {
        "HBOS per-feature histogram deficit: log2 density of the feature's densest bin minus that of the row's bin"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn densities_follow_the_histogram() {
        // Ten values 0..9 in 10 bins of width 0.9: one per bin, density 1/(10*0.9).
        let x = ndarray::Array2::from_shape_fn((10, 1), |(i, _)| i as f64);
        let m = Hbos::fit(x.view(), &Params::default()).unwrap();
        let d = (1.0 / 9.0 + 0.1f64).log2();
        for v in &m.histograms[0].log_density {
            assert!((v - d).abs() < 1e-12);
        }
        // Far outside the range takes the lowest score; inside tolerance the edge bin.
        assert_eq!(m.histograms[0].log_density_of(100.0, 0.5), d);
        assert_eq!(m.histograms[0].log_density_of(9.3, 0.5), d);
    }

    #[test]
    fn a_value_in_a_sparse_bin_scores_higher() {
        let x = array![[0.0], [0.1], [0.2], [0.1], [0.0], [10.0]];
        let m = Hbos::fit(x.view(), &Params::default()).unwrap();
        let s = m.score(x.view());
        assert!(s[5] > s[0]);
        assert!(m.contributions(x.row(5))[0] > m.contributions(x.row(0))[0]);
    }

    #[test]
    fn values_on_edges_go_right_as_in_numpy() {
        // Range [0, 3/7], 10 bins: 0.12857142857142856 lies on the edge of bin 3 as numpy
        // computes it (PyOD puts it in bin 3; a plain floor would say 2).
        let x = array![[0.0], [0.12857142857142856], [0.42857142857142855]];
        let m = Hbos::fit(x.view(), &Params::default()).unwrap();
        let h = &m.histograms[0];
        assert_eq!(h.bin_of(0.12857142857142856, 10), 3);
        assert_eq!(h.bin_of(0.42857142857142855, 10), 9);
        assert_eq!(h.bin_of(0.0, 10), 0);
    }

    #[test]
    fn a_huge_constant_feature_still_has_width() {
        let x = array![[1.7e18], [1.7e18]];
        let m = Hbos::fit(x.view(), &Params::default()).unwrap();
        assert!(m.histograms[0].width > 0.0);
        assert!(m.score(x.view()).iter().all(|s| s.is_finite()));
    }

    #[test]
    fn constant_feature_gets_a_unit_range() {
        let m = Hbos::fit(array![[3.0], [3.0]].view(), &Params::default()).unwrap();
        assert_eq!(m.histograms[0].low, 2.5);
        assert!((m.histograms[0].width - 0.1).abs() < 1e-12);
    }

    #[test]
    fn bad_parameters_are_refused() {
        let x = array![[1.0]];
        let p = Params {
            n_bins: 1,
            ..Params::default()
        };
        assert!(Hbos::fit(x.view(), &p).is_err());
        let p = Params {
            alpha: f64::NAN,
            ..Params::default()
        };
        assert!(Hbos::fit(x.view(), &p).is_err());
    }
}
