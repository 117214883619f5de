//! Checks on the matrices that enter the crate, and building one from rows.

use crate::error::{DetectError, Result};
use ndarray::{Array2, ArrayView2};

/// The largest magnitude accepted in data: about `f32::MAX`, as scikit-learn's trees
/// accept. Beyond it Isolation Forest's single-precision comparisons overflow, and sums
/// of squares in the distance-based detectors lose all precision.
pub const MAX_MAGNITUDE: f64 = 1e38;

/// Checks that `x` has at least one row and one column and only finite values within
/// ±[`MAX_MAGNITUDE`].
pub fn check(x: ArrayView2<f64>) -> Result<()> {
    if x.nrows() == 0 {
        return Err(DetectError::EmptyData);
    }
    if x.ncols() == 0 {
        return Err(DetectError::NoColumns);
    }
    for (row, r) in x.outer_iter().enumerate() {
        for (column, &v) in r.iter().enumerate() {
            if !v.is_finite() || v.abs() > MAX_MAGNITUDE {
                return Err(DetectError::NonFinite {
                    row,
                    column,
                    value: v.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Checks `x` like [`check`] and also that it has `width` columns.
pub fn check_width(x: ArrayView2<f64>, width: usize) -> Result<()> {
    if x.nrows() > 0 && x.ncols() != width {
        return Err(DetectError::WidthMismatch {
            expected: width,
            found: x.ncols(),
        });
    }
    check(x)
}

/// Builds a row-major matrix from rows, refusing ragged input and non-finite values.
pub fn from_rows(rows: &[Vec<f64>]) -> Result<Array2<f64>> {
    let first = rows.first().ok_or(DetectError::EmptyData)?;
    let width = first.len();
    let mut data = Vec::with_capacity(rows.len() * width);
    for (i, r) in rows.iter().enumerate() {
        if r.len() != width {
            return Err(DetectError::RaggedRows {
                row: i,
                expected: width,
                found: r.len(),
            });
        }
        data.extend_from_slice(r);
    }
    let x = Array2::from_shape_vec((rows.len(), width), data)
        .map_err(|e| DetectError::InvalidModel(e.to_string()))?;
    check(x.view())?;
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn refuses_empty_zero_width_ragged_and_non_finite() {
        assert_eq!(from_rows(&[]), Err(DetectError::EmptyData));
        assert_eq!(from_rows(&[vec![]]), Err(DetectError::NoColumns));
        assert_eq!(
            from_rows(&[vec![1.0, 2.0], vec![3.0]]),
            Err(DetectError::RaggedRows {
                row: 1,
                expected: 2,
                found: 1
            })
        );
        let err = from_rows(&[vec![1.0, f64::NAN]]).unwrap_err();
        assert!(matches!(
            err,
            DetectError::NonFinite {
                row: 0,
                column: 1,
                ..
            }
        ));
        assert!(err.to_string().contains("NaN"), "{err}");
        assert!(check(array![[f64::INFINITY]].view()).is_err());
        assert!(check(array![[-1e39]].view()).is_err());
        assert!(check(array![[1e38, -1e38]].view()).is_ok());
    }

    #[test]
    fn width_mismatch_is_named() {
        let err = check_width(array![[1.0, 2.0]].view(), 3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the model was trained on 3 features, but the rows have 2"
        );
    }

    #[test]
    fn accepts_a_proper_matrix() {
        let x = from_rows(&[vec![1.0, 2.0], vec![3.0, 4.0]]).unwrap();
        assert_eq!(x, array![[1.0, 2.0], [3.0, 4.0]]);
    }
}
