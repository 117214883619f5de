//! COPOD: Copula-Based Outlier Detection (Li et al., 2020), as PyOD's `COPOD` with its
//! defaults (one job).
//!
//! Per feature, the empirical copula's left tail probability `F_l(x)` (the ECDF value of
//! `#{train <= x}`) and right tail probability `F_r(x)` (that of `#{train >= x}`) give
//! `U_l = -ln F_l`, `U_r = -ln F_r`. With the sign `s` of the feature's skewness (scipy's
//! biased skewness; a column scipy calls constant has none), the skewness-corrected tail
//! `U_skew` is `U_l` for negative skew, `U_r` for positive and `U_l + U_r` for none; the
//! feature's outlyingness is `max(U_skew, (U_l + U_r) / 2)` and the row's score is the sum
//! over features. (ECOD, [`crate::ecod`], takes `max(U_l, U_r, U_skew)` instead.)
//!
//! The ECDF is PyOD's `column_ecdf`: the value with `c` of the `n` samples at or below it
//! gets `numpy.linspace(1/n, 1, n)[c - 1]`, which is `c / n` up to rounding; it is
//! computed as numpy does, and row sums are added in numpy's order, so training scores
//! agree with PyOD's `decision_scores_` to within the last bit of the logarithms.
//!
//! Training rows are scored exactly as PyOD's `decision_scores_` (the row is among the
//! `n`; nothing is left out). A new row is counted as one more sample, `#{train <= x} + 1`
//! of `n + 1`, which is what PyOD does when it scores a row appended to the training
//! data; the training skewness signs are kept, so each row's score depends on that row
//! alone (PyOD appends a whole batch and recomputes the signs on it).
//!
//! Explanation: the per-feature outlyingness values themselves; they sum to the row's
//! score (up to rounding: the score adds them pairwise, as numpy does).

use crate::ecdf::Ecdf;
use crate::error::{DetectError, Result};
use crate::scorer::Scorer;
use ndarray::{ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

/// COPOD has no parameters.
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

/// The sign of scipy's biased skewness of `col`, as PyOD's `np.sign(np.nan_to_num(skew(X)))`
/// gives it. The moments are summed row after row, as numpy sums a column of a row-major
/// matrix, so the sign of a skewness that is zero but for rounding agrees with scipy's.
/// scipy returns NaN (so PyOD 0) when the variance is within rounding of zero relative to
/// the mean: `m2 <= (eps * mean)^2`.
fn skew_sign(col: ArrayView1<f64>) -> i8 {
    let n = col.len() as f64;
    let mean = col.iter().fold(0.0, |acc, &v| acc + v) / n;
    let (mut m2, mut m3) = (0.0, 0.0);
    for &v in col {
        let d = v - mean;
        let d2 = d * d;
        m2 += d2;
        m3 += d2 * d;
    }
    m2 /= n;
    m3 /= n;
    let tiny = f64::EPSILON * mean;
    if m2 <= tiny * tiny {
        return 0;
    }
    let s = m3 / m2.powf(1.5);
    if s > 0.0 {
        1
    } else if s < 0.0 {
        -1
    } else {
        0
    }
}

/// PyOD's ECDF value for a value with `count` of `n` samples at or below it:
/// `numpy.linspace(1/n, 1, n)[count - 1]`, evaluated as numpy does (`i * step + start`,
/// the last point exactly 1). `count` is at least 1 for every value scored.
fn probability(count: u64, n: u64) -> f64 {
    if count >= n {
        return 1.0;
    }
    let start = 1.0 / n as f64;
    let step = (1.0 - start) / (n - 1) as f64;
    count.saturating_sub(1) as f64 * step + start
}

/// Adds `terms` as numpy's `sum(axis=1)` adds a contiguous row (pairwise, eight
/// accumulators, onto an initial 0), so a score is the same number PyOD adds up.
fn numpy_sum(terms: &[f64]) -> f64 {
    fn pairwise(a: &[f64]) -> f64 {
        let n = a.len();
        if n < 8 {
            a.iter().fold(-0.0, |acc, &v| acc + v)
        } else if n <= 128 {
            let mut r = [0.0; 8];
            r.copy_from_slice(&a[..8]);
            let whole = n - n % 8;
            for block in a[8..whole].chunks_exact(8) {
                for (acc, &v) in r.iter_mut().zip(block) {
                    *acc += v;
                }
            }
            let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
            for &v in &a[whole..] {
                res += v;
            }
            res
        } else {
            let half = n / 2;
            let half = half - half % 8;
            pairwise(&a[..half]) + pairwise(&a[half..])
        }
    }
    0.0 + pairwise(terms)
}

impl Column {
    fn new(col: ArrayView1<f64>) -> Self {
        Column {
            ecdf: Ecdf::new(col),
            skew_sign: skew_sign(col),
        }
    }

    /// The feature's outlyingness given the tail counts and the sample size.
    fn outlyingness(&self, le: u64, ge: u64, n: u64) -> f64 {
        let u_l = -probability(le, n).ln();
        let u_r = -probability(ge, n).ln();
        let u_skew = match self.skew_sign {
            -1 => u_l,
            1 => u_r,
            _ => u_l + u_r,
        };
        u_skew.max((u_l + u_r) / 2.0)
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

/// A fitted COPOD model: each feature's empirical distribution and skewness sign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Copod {
    columns: Vec<Column>,
}

impl Copod {
    /// Fits on `x` (checked by the caller) and returns the training rows' scores, as
    /// PyOD's `decision_scores_`.
    pub fn fit(x: ArrayView2<f64>) -> (Self, Vec<f64>) {
        let columns: Vec<Column> = x.axis_iter(Axis(1)).map(Column::new).collect();
        let mut terms = Vec::with_capacity(columns.len());
        let scores = x
            .outer_iter()
            .map(|r| {
                terms.clear();
                terms.extend(r.iter().zip(&columns).map(|(&v, c)| c.of_training(v)));
                numpy_sum(&terms)
            })
            .collect();
        (Copod { columns }, scores)
    }

    /// Checks a model read from outside.
    pub fn check(&self, n_features: usize) -> Result<()> {
        let ok = self.columns.len() == n_features
            && self
                .columns
                .iter()
                .all(|c| c.ecdf.is_valid() && (-1..=1).contains(&c.skew_sign));
        if ok {
            Ok(())
        } else {
            Err(DetectError::InvalidModel(
                "COPOD distributions are malformed".into(),
            ))
        }
    }
}

impl Scorer for Copod {
    fn score(&self, x: ArrayView2<f64>) -> Vec<f64> {
        x.outer_iter()
            .map(|r| numpy_sum(&self.contributions(r)))
            .collect()
    }

    fn contributions(&self, row: ArrayView1<f64>) -> Vec<f64> {
        row.iter()
            .zip(&self.columns)
            .map(|(&v, c)| c.of_new(v))
            .collect()
    }

    fn explanation_method(&self) -> &'static str {
        "COPOD per-feature tail scores: the larger of -ln of the empirical tail probability on the side the feature's skew selects and the mean of both tails' -ln; they sum to the score"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Algorithm, FitOptions, Model};
    use ndarray::{array, Array2};

    /// Ten rows, five features: positive skew with ties, negative skew, exactly zero skew,
    /// a constant column (scipy's skewness is NaN there, PyOD's sign 0), and a column
    /// whose skewness is zero but for rounding (scipy: -1.68e-15, so sign -1).
    fn small() -> Array2<f64> {
        array![
            [1.0, -30.0, 1.0, 7.0, 0.1],
            [2.0, -3.0, 2.0, 7.0, 0.2],
            [2.0, -2.0, 3.0, 7.0, 0.3],
            [3.0, -2.0, 4.0, 7.0, 0.1],
            [4.0, -1.0, 5.0, 7.0, 0.2],
            [4.0, 0.0, 5.0, 7.0, 0.3],
            [4.0, 0.0, 4.0, 7.0, 0.1],
            [5.0, 1.0, 3.0, 7.0, 0.2],
            [9.0, 1.0, 2.0, 7.0, 0.3],
            [20.0, 1.0, 1.0, 7.0, 0.2],
        ]
    }

    // Reference numbers from PyOD 3.6.7 (scikit-learn 1.9.1, numpy 2.4.6, Python 3.11):
    //   m = pyod.models.copod.COPOD().fit(X)       # X = small()
    //   m.decision_scores_                         # PYOD_TRAINING
    //   m.O[0]                                     # PYOD_ROW0_TERMS
    //   COPOD().fit(X).decision_function(np.array([new]))[0]   # PYOD_NEW, one fresh
    //       model per row; appending either row leaves every skewness sign unchanged.
    const PYOD_TRAINING: [f64; 10] = [
        6.267288356251105,
        3.7602137995530787,
        3.1945950415609854,
        3.8961806572948996,
        3.170085660698769,
        3.2471610006123974,
        3.37914377352963,
        3.1842853979596177,
        3.952844999948401,
        4.870684351529846,
    ];
    const PYOD_ROW0_TERMS: [f64; 5] = [
        1.1512925464970227,
        2.3025850929940455,
        1.6094379124341003,
        0.0,
        1.203972804325936,
    ];
    const PYOD_NEW: [([f64; 5], f64); 2] = [
        ([30.0, 0.5, 3.0, 7.0, 0.2], 4.285346572801527),
        ([3.0, -2.5, 3.0, 7.0, 0.2], 3.0751625084763123),
    ];

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-13 * b.abs().max(1.0)
    }

    #[test]
    fn skewness_signs_follow_scipy() {
        let x = small();
        let signs: Vec<i8> = x.axis_iter(Axis(1)).map(skew_sign).collect();
        assert_eq!(signs, [1, -1, 0, 0, -1]);
        // scipy.stats.skew([1e10, 1e10, 1e10, next float up]) is NaN (the variance is within
        // rounding of zero for this mean), so PyOD gives no sign; the moments alone say +.
        let up = f64::from_bits(1e10f64.to_bits() + 1);
        assert_eq!(skew_sign(array![1e10, 1e10, 1e10, up].view()), 0);
        // Clearly spread: scipy 1.406..., positive.
        assert_eq!(skew_sign(array![1e10, 1e10 + 1e-5, 1e10].view()), 1);
        assert_eq!(skew_sign(array![5.0].view()), 0);
    }

    #[test]
    fn probabilities_are_numpy_linspace() {
        assert_eq!(probability(1, 1), 1.0);
        assert_eq!(probability(10, 10), 1.0);
        assert_eq!(probability(1, 10), 0.1);
        // numpy.linspace(1/3, 1, 3)[1] == 0.6666666666666667 (bits 0x3FE5555555555556).
        assert_eq!(probability(2, 3).to_bits(), 0x3FE5_5555_5555_5556);
        // numpy.linspace(1/10, 1, 10)[2] == 0.30000000000000004, not 3/10.
        assert_eq!(probability(3, 10), 0.300_000_000_000_000_04);
    }

    #[test]
    fn sums_add_in_numpy_order() {
        // numpy: np.array([[1 / (i + 2) for i in range(21)]]).sum(axis=1)[0] is
        // 2.690813250217275; adding left to right gives 2.6908132502172752.
        let terms: Vec<f64> = (0..21).map(|i| 1.0 / f64::from(i + 2)).collect();
        assert_eq!(numpy_sum(&terms), 2.690_813_250_217_275);
        let left_to_right: f64 = terms.iter().sum();
        assert_eq!(left_to_right, 2.690_813_250_217_275_2);
        assert_eq!(numpy_sum(&[1.0, 2.0, 3.5]), 6.5);
        assert_eq!(numpy_sum(&[-0.0, -0.0]).to_bits(), 0f64.to_bits());
        let long: Vec<f64> = (0..300).map(|i| f64::from(i).sqrt()).collect();
        assert!((numpy_sum(&long) - long.iter().sum::<f64>()).abs() < 1e-9);
    }

    #[test]
    fn training_scores_match_pyod() {
        let (_, s) = Copod::fit(small().view());
        for (i, (a, b)) in s.iter().zip(PYOD_TRAINING).enumerate() {
            assert!(close(*a, b), "row {i}: {a} vs PyOD {b}");
        }
        let c = Copod::fit(small().view()).0;
        let row0: Vec<f64> = small()
            .row(0)
            .iter()
            .zip(&c.columns)
            .map(|(&v, col)| col.of_training(v))
            .collect();
        for (a, b) in row0.iter().zip(PYOD_ROW0_TERMS) {
            assert!(close(*a, b), "{row0:?} vs {PYOD_ROW0_TERMS:?}");
        }
    }

    #[test]
    fn new_rows_are_scored_as_pyod_scores_an_appended_row() {
        let (m, _) = Copod::fit(small().view());
        for (row, expect) in PYOD_NEW {
            let s = m.score(ndarray::aview1(&row).insert_axis(Axis(0)));
            assert!(close(s[0], expect), "{row:?}: {} vs PyOD {expect}", s[0]);
        }
    }

    #[test]
    fn explanations_sum_to_the_score() {
        let x = small();
        let fitted = Model::fit(
            x.view(),
            &FitOptions::new(Algorithm::named("copod").expect("registered")),
        )
        .expect("fits");
        let scores = fitted.model.score(x.view()).expect("scores");
        for (i, row) in x.outer_iter().enumerate() {
            let e = fitted.model.explain(row).expect("explains");
            assert_eq!(e.features.len(), 5);
            assert!(e.method.starts_with("COPOD"));
            assert!(e
                .features
                .windows(2)
                .all(|w| w[0].contribution >= w[1].contribution));
            assert!(e.features.iter().all(|f| f.contribution >= 0.0));
            let total: f64 = e.features.iter().map(|f| f.contribution).sum();
            assert!(close(total, scores[i]), "row {i}: {total} vs {}", scores[i]);
        }
        // Row 0 is driven by its far-left value in the negatively skewed feature 1.
        let e = fitted.model.explain(x.row(0)).expect("explains");
        assert_eq!(e.features[0].index, 1);
        // Training scores are PyOD's decision_scores_, not the new-row scores.
        for (a, b) in fitted.training_scores.iter().zip(PYOD_TRAINING) {
            assert!(close(*a, b));
        }
    }

    #[test]
    fn bad_input_gets_typed_errors() {
        let o = FitOptions::new(Algorithm::named("copod").expect("registered"));
        assert_eq!(
            Model::fit(Array2::<f64>::zeros((0, 3)).view(), &o).unwrap_err(),
            DetectError::EmptyData
        );
        assert_eq!(
            Model::fit(Array2::<f64>::zeros((3, 0)).view(), &o).unwrap_err(),
            DetectError::NoColumns
        );
        assert!(matches!(
            Model::fit(array![[1.0, 2.0], [f64::NAN, 0.0]].view(), &o).unwrap_err(),
            DetectError::NonFinite {
                row: 1,
                column: 0,
                ..
            }
        ));
        assert!(matches!(
            Model::fit(array![[1.0], [1e39]].view(), &o).unwrap_err(),
            DetectError::NonFinite { row: 1, .. }
        ));
        let f = Model::fit(small().view(), &o).expect("fits");
        assert_eq!(
            f.model.score(array![[1.0, 2.0]].view()).unwrap_err(),
            DetectError::WidthMismatch {
                expected: 5,
                found: 2
            }
        );
        assert!(matches!(
            f.model
                .score(array![[1.0, 2.0, 3.0, f64::INFINITY, 0.0]].view())
                .unwrap_err(),
            DetectError::NonFinite { column: 3, .. }
        ));
        assert!(matches!(
            f.model.explain(array![1.0, 2.0].view()).unwrap_err(),
            DetectError::WidthMismatch { .. }
        ));
        let mut p = serde_json::Map::new();
        p.insert("n_jobs".into(), 2.into());
        assert!(matches!(
            Algorithm::with_params("copod", &p).unwrap_err(),
            DetectError::InvalidParameter { name: "params", .. }
        ));
        assert_eq!(
            Algorithm::named("copod").expect("registered"),
            Algorithm::Copod(Params {})
        );
    }

    #[test]
    fn malformed_saved_models_are_refused() {
        let (m, _) = Copod::fit(small().view());
        assert_eq!(m.check(5), Ok(()));
        assert!(matches!(m.check(4), Err(DetectError::InvalidModel(_))));
        let mut bad = m.clone();
        bad.columns[0].skew_sign = 3;
        assert!(bad.check(5).is_err());
        let mut bad = m.clone();
        bad.columns[1].ecdf.cumulative.reverse();
        assert!(bad.check(5).is_err());
        let mut bad = m.clone();
        bad.columns[2].ecdf.values.clear();
        assert!(bad.check(5).is_err());
        let mut bad = m;
        bad.columns[3].ecdf.cumulative[0] = 0;
        assert!(bad.check(5).is_err());

        let o = FitOptions::new(Algorithm::named("copod").expect("registered"));
        let text = String::from_utf8(
            Model::fit(small().view(), &o)
                .expect("fits")
                .model
                .to_json(),
        )
        .expect("utf-8");
        let tampered = text.replacen("\"skew_sign\":1", "\"skew_sign\":7", 1);
        assert_ne!(tampered, text);
        assert!(matches!(
            Model::from_json(tampered.as_bytes()),
            Err(DetectError::InvalidModel(_))
        ));
    }

    #[test]
    fn save_and_load_keep_scores_bit_for_bit() {
        let x = small();
        let o = FitOptions::new(Algorithm::named("copod").expect("registered"));
        let fitted = Model::fit(x.view(), &o).expect("fits");
        let bytes = fitted.model.to_json();
        let back = Model::from_json(&bytes).expect("loads");
        assert_eq!(back.algorithm().name(), "copod");
        let probe = array![
            [30.0, 0.5, 3.0, 7.0, 0.2],
            [-1e30, 1e30, 0.15, -7.0, 0.2],
            [4.0, -2.0, 3.0, 7.0, 0.1]
        ];
        for rows in [x.view(), probe.view()] {
            let a = fitted.model.score(rows).expect("scores");
            let b = back.score(rows).expect("scores");
            assert!(a.iter().all(|v| v.is_finite()));
            assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
        }
        assert_eq!(back.to_json(), bytes);
        assert_eq!(
            back.threshold().to_bits(),
            fitted.model.threshold().to_bits()
        );
    }

    #[test]
    fn one_row_and_constant_data_score_zero() {
        let (_, s) = Copod::fit(array![[1.0, 2.0]].view());
        assert_eq!(s, [0.0]);
        let (m, s) = Copod::fit(array![[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]].view());
        assert_eq!(s, [0.0, 0.0, 0.0]);
        // A new row equal to every training row is as ordinary as they are.
        assert_eq!(m.score(array![[1.0, 2.0]].view()), [0.0]);
    }
}
