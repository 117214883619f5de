//! ECOD: Empirical-Cumulative-distribution-based Outlier Detection (Li et al., 2022),
//! as in PyOD's `ECOD`.
//!
//! Per feature, the left tail probability `F(x) = #{train <= x} / n` and the right tail
//! probability `#{train >= x} / n` give `U_l = -ln F_left`, `U_r = -ln F_right`. With the
//! sign `s` of the feature's skewness, `U_skew` is `U_l` for negative skew, `U_r` for
//! positive and `U_l + U_r` for none; the feature's outlyingness is
//! `max(U_l, U_r, U_skew)` and the row's score is the sum over features.
//!
//! Training rows are scored exactly as PyOD's `decision_scores_` (the row is among the
//! `n`). A new row is counted as one more sample, `(#{train <= x} + 1) / (n + 1)`, which
//! is what PyOD does when it scores a row appended to the training data.
//!
//! Explanation: the per-feature tail scores `max(U_l, U_r, U_skew)` themselves.

use crate::ecdf::Ecdf;
use crate::error::{DetectError, Result};
use crate::scorer::Scorer;
use crate::stats::skewness;
use ndarray::{ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

/// ECOD has no parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {}

/// One feature's empirical distribution and the sign of its skewness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Column {
    #[serde(flatten)]
    ecdf: Ecdf,
    skew_sign: i8,
}

impl Column {
    fn new(col: ArrayView1<f64>) -> Self {
        let s = skewness(col);
        let skew_sign = if s > 0.0 {
            1
        } else if s < 0.0 {
            -1
        } else {
            0
        };
        Column {
            ecdf: Ecdf::new(col),
            skew_sign,
        }
    }

    /// The feature's outlyingness given the tail counts and the sample size.
    fn outlyingness(&self, le: u64, ge: u64, n: u64) -> f64 {
        let n = n as f64;
        let u_l = -(le as f64 / n).ln();
        let u_r = -(ge as f64 / n).ln();
        let u_skew = match self.skew_sign {
            -1 => u_l,
            1 => u_r,
            _ => u_l + u_r,
        };
        u_l.max(u_r).max(u_skew)
    }

    /// Outlyingness of a value of a training row (it is among the `n`).
    fn of_training(&self, x: f64) -> f64 {
        let (le, ge, n) = self.ecdf.tails(x);
        self.outlyingness(le, ge, n)
    }

    /// Outlyingness of a new value, counted as one more sample.
    fn of_new(&self, x: f64) -> f64 {
        let (le, ge, n) = self.ecdf.tails_of_new(x);
        self.outlyingness(le, ge, n)
    }
}

/// A fitted ECOD model: each feature's empirical distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ecod {
    columns: Vec<Column>,
}

impl Ecod {
    /// Fits on `x` (checked by the caller) and returns the training rows' scores.
    pub fn fit(x: ArrayView2<f64>) -> (Self, Vec<f64>) {
        let columns: Vec<Column> = x.axis_iter(Axis(1)).map(Column::new).collect();
        let scores = x
            .outer_iter()
            .map(|r| r.iter().zip(&columns).map(|(&v, c)| c.of_training(v)).sum())
            .collect();
        (Ecod { columns }, scores)
    }

    /// Checks a model read from outside.
    pub fn check(&self, n_features: usize) -> Result<()> {
        let ok = self.columns.len() == n_features && self.columns.iter().all(|c| c.ecdf.is_valid());
        if ok {
            Ok(())
        } else {
            Err(DetectError::InvalidModel(
                "ECOD distributions are malformed".into(),
            ))
        }
    }
}

impl Scorer for Ecod {
    fn score(&self, x: ArrayView2<f64>) -> Vec<f64> {
        x.outer_iter()
            .map(|r| self.contributions(r).iter().sum())
            .collect()
    }

    fn contributions(&self, row: ArrayView1<f64>) -> Vec<f64> {
        row.iter()
            .zip(&self.columns)
            .map(|(&v, c)| c.of_new(v))
            .collect()
    }

    fn explanation_method(&self) -> &'static str {
        "ECOD per-feature tail scores: -ln of the empirical tail probability, on the side the feature's skew selects"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn training_scores_match_a_hand_computation() {
        // One feature [1, 2, 3, 10]: positive skew, so outlyingness = max(U_l, U_r).
        let (_, s) = Ecod::fit(array![[1.0], [2.0], [3.0], [10.0]].view());
        let ln = |p: f64| -p.ln();
        let expect = [
            ln(0.25).max(ln(1.0)),
            ln(0.5).max(ln(0.75)),
            ln(0.75).max(ln(0.5)),
            ln(1.0).max(ln(0.25)),
        ];
        for (a, b) in s.iter().zip(expect) {
            assert!((a - b).abs() < 1e-15, "{s:?} vs {expect:?}");
        }
    }

    #[test]
    fn zero_skew_adds_both_tails() {
        let (_, s) = Ecod::fit(array![[1.0], [2.0], [3.0]].view());
        let expect = -(1.0f64 / 3.0).ln() - 1f64.ln();
        assert!((s[0] - expect).abs() < 1e-15);
    }

    #[test]
    fn new_rows_beyond_the_range_stay_finite_and_rank_highest() {
        let (m, _) = Ecod::fit(array![[1.0, 5.0], [2.0, 5.0], [3.0, 6.0], [2.5, 5.5]].view());
        let s = m.score(array![[2.0, 5.2], [100.0, 5.2]].view());
        assert!(s.iter().all(|v| v.is_finite()));
        assert!(s[1] > s[0]);
        let c = m.contributions(array![100.0, 5.2].view());
        assert!(c[0] > c[1]);
    }
}
