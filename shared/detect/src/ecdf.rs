//! A feature's empirical distribution, as ECOD and COPOD count tails on it: the distinct
//! training values, sorted, and how many training values lie at or below each.

use ndarray::ArrayView1;
use serde::{Deserialize, Serialize};

/// Distinct sorted values and the number of training values at or below each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Ecdf {
    pub(crate) values: Vec<f64>,
    pub(crate) cumulative: Vec<u64>,
}

impl Ecdf {
    /// The distribution of `col`.
    pub(crate) fn new(col: ArrayView1<f64>) -> Self {
        let mut sorted = col.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mut values = Vec::new();
        let mut cumulative: Vec<u64> = Vec::new();
        for (i, &v) in sorted.iter().enumerate() {
            match cumulative.last_mut() {
                Some(last) if values.last() == Some(&v) => *last = (i + 1) as u64,
                _ => {
                    values.push(v);
                    cumulative.push((i + 1) as u64);
                }
            }
        }
        Ecdf { values, cumulative }
    }

    /// Training values.
    pub(crate) fn n(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// (#{train <= x}, #{train >= x}, n) for `x` of a training row (it is among the `n`).
    pub(crate) fn tails(&self, x: f64) -> (u64, u64, u64) {
        let le = self.values.partition_point(|&v| v <= x);
        let lt = self.values.partition_point(|&v| v < x);
        let count_le = if le == 0 { 0 } else { self.cumulative[le - 1] };
        let count_lt = if lt == 0 { 0 } else { self.cumulative[lt - 1] };
        (count_le, self.n() - count_lt, self.n())
    }

    /// The same for a new value, counted as one more sample.
    pub(crate) fn tails_of_new(&self, x: f64) -> (u64, u64, u64) {
        let (le, ge, n) = self.tails(x);
        (le + 1, ge + 1, n + 1)
    }

    /// Whether a loaded distribution is one [`Ecdf::new`] could have made: finite, strictly
    /// rising values and counts, at least one value, counts under 2^53.
    pub(crate) fn is_valid(&self) -> bool {
        !self.values.is_empty()
            && self.values.len() == self.cumulative.len()
            && self.values.windows(2).all(|w| w[0] < w[1])
            && self.cumulative.windows(2).all(|w| w[0] < w[1])
            && self.cumulative.first().is_some_and(|&n| n >= 1)
            && self.cumulative.last().is_some_and(|&n| n < 1 << 53)
            && self.values.iter().all(|v| v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn tail_counts_include_ties() {
        let e = Ecdf::new(array![1.0, 2.0, 2.0, 3.0].view());
        assert_eq!(e.tails(2.0), (3, 3, 4));
        assert_eq!(e.tails(1.0), (1, 4, 4));
        assert_eq!(e.tails(0.0), (0, 4, 4));
        assert_eq!(e.tails(9.0), (4, 0, 4));
        assert_eq!(e.tails_of_new(9.0), (5, 1, 5));
        assert!(e.is_valid());
    }
}
