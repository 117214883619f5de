//! Random Cut Forest (Guha et al. 2016), AWS's streaming detector, through `krcflib`
//! (a published fork of aws/random-cut-forest-by-aws's Rust code).
//!
//! Each point of `width` values is standardised, shingled with the points before it,
//! scored by how much it would displace the forest's sample (higher is stranger), then
//! learned. The first `warmup` points fix each column's origin (their median) and scale
//! (their MAD, floored): the forest works in 32-bit floats, and standardising keeps
//! small changes of large values (a counter near 1e9) visible and columns of different
//! units on one footing. They are scored 0 and learned once the origin is fixed (the
//! forest then scores 0 until it has a whole shingle).
//!
//! It explains a point two ways: each column's share of the score (the forest's
//! attribution, summed over the shingle) and, for points scoring at least
//! [`EXPLAIN_FROM`] on the common scale, the value the forest expected for each column
//! (imputed from the other columns and the points before). Imputing costs about what
//! scoring does, so ordinary points skip it.

use crate::{DetectError, Result};
use rcflib::rcf::{AugmentedRCF, RCFBuilder, RCFLarge, RCFOptionsBuilder};
use serde::{Deserialize, Serialize};

/// Points scoring at least this on the common scale get expected values.
pub const EXPLAIN_FROM: f64 = 0.3;
/// Standardised values are clamped to this magnitude (within `f32`'s range).
const CLAMP: f64 = 1e30;

/// The forest's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RcfParams {
    /// Trees (1 to 100).
    pub num_trees: usize,
    /// Points each tree samples (16 to 1024).
    pub sample_size: usize,
    /// Consecutive points that make one shingle (1 to 64; width × shingle at most 256).
    pub shingle: usize,
    /// Points that fix the standardisation before scoring starts (8 to 10,000).
    pub warmup: usize,
    /// The seed of the trees' random cuts.
    pub seed: u64,
}

impl Default for RcfParams {
    fn default() -> Self {
        RcfParams {
            num_trees: 30,
            sample_size: 256,
            shingle: 4,
            warmup: 32,
            seed: 7,
        }
    }
}

impl RcfParams {
    /// Checks the ranges, for points of `width` values.
    pub fn validate(&self, width: usize) -> Result<()> {
        let bad = |name: &'static str, reason: &str| {
            Err(DetectError::InvalidParameter {
                name,
                reason: reason.into(),
            })
        };
        if !(1..=100).contains(&self.num_trees) {
            return bad("num_trees", "must be between 1 and 100");
        }
        if !(16..=1024).contains(&self.sample_size) {
            return bad("sample_size", "must be between 16 and 1024");
        }
        if !(1..=64).contains(&self.shingle) {
            return bad("shingle", "must be between 1 and 64");
        }
        if width.saturating_mul(self.shingle) > 256 {
            return bad("shingle", "columns × shingle must be at most 256");
        }
        if !(8..=10_000).contains(&self.warmup) {
            return bad("warmup", "must be between 8 and 10000");
        }
        Ok(())
    }

    /// Values in one shingle.
    pub fn dimensions(&self, width: usize) -> usize {
        width * self.shingle
    }
}

/// A column's standardisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Standard {
    origin: f64,
    scale: f64,
}

/// The running forest of one stream.
#[derive(Clone, Serialize, Deserialize)]
pub struct Forest {
    params: RcfParams,
    width: usize,
    /// The warm-up's points, until the standardisation is fixed.
    pending: Vec<Vec<f64>>,
    /// Per column, once fixed.
    standard: Vec<Standard>,
    forest: RCFLarge<u64, u64>,
}

impl std::fmt::Debug for Forest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forest")
            .field("params", &self.params)
            .field("width", &self.width)
            .field("pending", &self.pending.len())
            .field("standard", &self.standard)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Forest {
    /// Two forests are equal when their whole states are.
    fn eq(&self, other: &Self) -> bool {
        serde_json::to_value(self).ok() == serde_json::to_value(other).ok()
    }
}

fn forest_error(e: impl std::fmt::Display) -> DetectError {
    DetectError::InvalidModel(format!("random cut forest: {e}"))
}

/// What the forest makes of one point.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Judged {
    /// The forest's anomaly score (0 during the warm-up).
    pub raw: f64,
    /// Each column's share of the score, for two columns or more.
    pub shares: Option<Vec<f64>>,
}

impl Forest {
    /// A fresh forest for points of `width` values.
    pub fn new(params: RcfParams, width: usize) -> Result<Self> {
        params.validate(width)?;
        let forest = RCFBuilder::new(width, params.shingle)
            .number_of_trees(params.num_trees)
            .tree_capacity(params.sample_size)
            .random_seed(params.seed)
            .internal_shingling(true)
            .parallel_enabled(false)
            .bounding_box_cache_fraction(0.0)
            .output_after(params.warmup)
            .build_large_simple::<u64>()
            .map_err(forest_error)?;
        Ok(Forest {
            params,
            width,
            pending: Vec::new(),
            standard: Vec::new(),
            forest,
        })
    }

    /// The parameters.
    pub fn params(&self) -> &RcfParams {
        &self.params
    }

    fn standardised(&self, x: &[f64]) -> Vec<f32> {
        x.iter()
            .zip(&self.standard)
            .map(|(v, s)| ((v - s.origin) / s.scale).clamp(-CLAMP, CLAMP) as f32)
            .collect()
    }

    /// Scores `x` against what the forest learned (before learning it).
    pub fn assess(&self, x: &[f64]) -> Result<Judged> {
        if self.standard.is_empty() {
            return Ok(Judged::default());
        }
        let point = self.standardised(x);
        let raw = self.forest.score(&point).map_err(forest_error)?;
        let shares = if self.width >= 2 && raw > 0.0 {
            let a = self.forest.attribution(&point).map_err(forest_error)?;
            let mut per_column = vec![0.0; self.width];
            for (i, (h, l)) in a.high.iter().zip(&a.low).enumerate() {
                per_column[i % self.width] += h + l;
            }
            super::shares(&per_column)
        } else {
            None
        };
        Ok(Judged { raw, shares })
    }

    /// The value the forest expected for each column of `x`, each imputed from the
    /// other columns and the points before; `None` before the warm-up ends.
    pub fn expected(&self, x: &[f64]) -> Result<Option<Vec<f64>>> {
        if self.standard.is_empty() {
            return Ok(None);
        }
        let point = self.standardised(x);
        let mut out = Vec::with_capacity(self.width);
        for (j, s) in self.standard.iter().enumerate() {
            let imputed = self
                .forest
                .impute_missing_values(&[j], &point)
                .map_err(forest_error)?;
            let v = imputed
                .first()
                .copied()
                .ok_or_else(|| forest_error("imputation gave no value"))?;
            out.push(f64::from(v) * s.scale + s.origin);
        }
        Ok(Some(out))
    }

    /// Learns `x`.
    pub fn learn_one(&mut self, x: &[f64]) -> Result<()> {
        if self.standard.is_empty() {
            self.pending.push(x.to_vec());
            if self.pending.len() < self.params.warmup {
                return Ok(());
            }
            self.standard = (0..self.width)
                .map(|j| standard_of(self.pending.iter().map(|p| p[j])))
                .collect();
            for p in std::mem::take(&mut self.pending) {
                let point = self.standardised(&p);
                self.forest.update(&point, 0).map_err(forest_error)?;
            }
            return Ok(());
        }
        let point = self.standardised(x);
        self.forest.update(&point, 0).map_err(forest_error)
    }
}

/// The median and the MAD (scaled to a normal σ) of `values`, the scale floored at a
/// millionth of the origin's size (and at 1e-12), so a constant column divides by
/// something.
fn standard_of(values: impl Iterator<Item = f64>) -> Standard {
    let mut v: Vec<f64> = values.collect();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let origin = median(&mut v);
    let mut deviations: Vec<f64> = v.iter().map(|x| (x - origin).abs()).collect();
    let mad = 1.4826 * median(&mut deviations);
    let floor = (origin.abs() * 1e-6).max(1e-12);
    Standard {
        origin,
        scale: mad.max(floor),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave(i: usize) -> f64 {
        1e9 + 10.0 * ((i % 24) as f64 / 24.0 * std::f64::consts::TAU).sin()
    }

    #[test]
    fn a_spike_on_a_large_baseline_stands_out() {
        // Values near 1e9 that vary by ±10: f32 alone would see a constant.
        let mut f = Forest::new(RcfParams::default(), 1).unwrap();
        let mut scores = Vec::new();
        for i in 0..1200 {
            let v = wave(i) + if i == 1000 { 80.0 } else { 0.0 };
            scores.push(f.assess(&[v]).unwrap().raw);
            f.learn_one(&[v]).unwrap();
        }
        assert!(scores[..32].iter().all(|&s| s == 0.0), "warm-up scores 0");
        let usual = scores[900..1000].iter().cloned().fold(0.0, f64::max);
        assert!(scores[1000] > 1.5 * usual, "{} vs {usual}", scores[1000]);
    }

    #[test]
    fn the_column_that_moved_takes_the_share_and_is_expected_back() {
        let mut f = Forest::new(RcfParams::default(), 2).unwrap();
        for i in 0..800 {
            let x = [wave(i), 5.0 + 0.01 * (i % 7) as f64];
            f.learn_one(&x).unwrap();
        }
        let odd = [wave(800), 50.0];
        let j = f.assess(&odd).unwrap();
        let shares = j.shares.expect("two columns");
        assert!(shares[1] > 0.6, "{shares:?}");
        let expected = f.expected(&odd).unwrap().expect("past warm-up");
        assert!((expected[1] - 5.03).abs() < 1.0, "{expected:?}");
        assert!((expected[0] - wave(800)).abs() < 15.0, "{expected:?}");
    }

    #[test]
    fn a_restored_forest_scores_exactly_as_the_original() {
        let mut a = Forest::new(RcfParams::default(), 1).unwrap();
        for i in 0..300 {
            a.learn_one(&[wave(i)]).unwrap();
        }
        let mut b: Forest = serde_json::from_slice(&serde_json::to_vec(&a).unwrap()).unwrap();
        assert!(a == b);
        for i in 300..600 {
            let v = [wave(i) + if i == 450 { 40.0 } else { 0.0 }];
            assert_eq!(a.assess(&v).unwrap(), b.assess(&v).unwrap());
            a.learn_one(&v).unwrap();
            b.learn_one(&v).unwrap();
        }
    }

    #[test]
    fn parameters_out_of_range_are_refused() {
        for p in [
            RcfParams {
                num_trees: 0,
                ..RcfParams::default()
            },
            RcfParams {
                sample_size: 5000,
                ..RcfParams::default()
            },
            RcfParams {
                shingle: 0,
                ..RcfParams::default()
            },
            RcfParams {
                warmup: 2,
                ..RcfParams::default()
            },
        ] {
            assert!(Forest::new(p, 1).is_err());
        }
        let wide = RcfParams {
            shingle: 8,
            ..RcfParams::default()
        };
        assert!(Forest::new(wide, 40).is_err(), "40 × 8 > 256");
    }
}
