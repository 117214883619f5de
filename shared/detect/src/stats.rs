//! Small statistics used by several detectors.

use ndarray::{Array1, ArrayView1, ArrayView2, Axis};

/// Percentile `q` in `[0, 100]` of `values` with linear interpolation between closest
/// ranks (numpy's default), so thresholds agree with scikit-learn's `offset_`.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(f64::total_cmp);
    percentile_sorted(&v, q)
}

/// [`percentile`] on values already sorted ascending.
pub fn percentile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = (q / 100.0).clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let t = pos - lo as f64;
    // numpy's `_lerp`: from the nearer end, so results agree to the last bit.
    if t >= 0.5 {
        v[hi] - (v[hi] - v[lo]) * (1.0 - t)
    } else {
        v[lo] + (v[hi] - v[lo]) * t
    }
}

/// Median of a column (average of the two middle values for even lengths).
pub fn median(values: ArrayView1<f64>) -> f64 {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(f64::total_cmp);
    percentile_sorted(&v, 50.0)
}

/// Column means and population standard deviations; a zero deviation becomes 1 so that
/// dividing by it leaves a constant column at zero instead of producing NaN.
pub fn standardizer(x: ArrayView2<f64>) -> (Array1<f64>, Array1<f64>) {
    let n = x.nrows() as f64;
    let mean = x.sum_axis(Axis(0)) / n;
    let mut std = Array1::zeros(x.ncols());
    for (j, col) in x.axis_iter(Axis(1)).enumerate() {
        let m = mean[j];
        let var = col.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n;
        let s = var.sqrt();
        std[j] = if s > 0.0 && s.is_finite() { s } else { 1.0 };
    }
    (mean, std)
}

/// Biased sample skewness (scipy.stats.skew's default), 0 for a constant column.
pub fn skewness(col: ArrayView1<f64>) -> f64 {
    let n = col.len() as f64;
    let mean = col.sum() / n;
    let (mut m2, mut m3) = (0.0, 0.0);
    for &v in col {
        let d = v - mean;
        m2 += d * d;
        m3 += d * d * d;
    }
    m2 /= n;
    m3 /= n;
    if m2 == 0.0 {
        0.0
    } else {
        m3 / m2.powf(1.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn percentile_interpolates_like_numpy() {
        // numpy.percentile([1, 2, 3, 4], 90) == 3.7
        assert!((percentile(&[4.0, 1.0, 3.0, 2.0], 90.0) - 3.7).abs() < 1e-12);
        assert_eq!(percentile(&[5.0], 10.0), 5.0);
        // Bit for bit: numpy.percentile([0.1, 0.2, 0.7, 0.3], [90, 33]).
        assert_eq!(
            percentile(&[0.1, 0.2, 0.7, 0.3], 90.0),
            0.580_000_000_000_000_1
        );
        assert_eq!(percentile(&[0.1, 0.2, 0.7, 0.3], 33.0), 0.199);
        assert_eq!(median(array![3.0, 1.0, 2.0].view()), 2.0);
        assert_eq!(median(array![4.0, 1.0, 2.0, 3.0].view()), 2.5);
    }

    #[test]
    fn skewness_sign_follows_the_long_tail() {
        assert!(skewness(array![1.0, 1.0, 1.0, 10.0].view()) > 0.0);
        assert!(skewness(array![-10.0, 1.0, 1.0, 1.0].view()) < 0.0);
        assert_eq!(skewness(array![2.0, 2.0, 2.0].view()), 0.0);
        // scipy.stats.skew([1, 2, 3, 10]) == 1.01823...
        let s = skewness(array![1.0, 2.0, 3.0, 10.0].view());
        assert!((s - 1.018_233_765).abs() < 1e-6, "{s}");
    }

    #[test]
    fn standardizer_guards_constant_columns() {
        let (m, s) = standardizer(array![[1.0, 5.0], [3.0, 5.0]].view());
        assert_eq!(m, array![2.0, 5.0]);
        assert_eq!(s, array![1.0, 1.0]);
    }
}
