//! The interface every fitted detector implements.

use ndarray::{ArrayView1, ArrayView2};

/// A fitted detector's state.
///
/// Inputs reaching these methods are already checked by [`crate::Model`]: at least one
/// row, the model's width, finite values, standard (row-major) layout.
pub trait Scorer: Send + Sync {
    /// Scores each row of `x`; higher is more anomalous. Each row's score depends on that
    /// row alone, so any split of the rows into chunks gives the same scores.
    fn score(&self, x: ArrayView2<f64>) -> Vec<f64>;

    /// How much each feature drove `row`'s score (one value per feature, higher = more).
    fn contributions(&self, row: ArrayView1<f64>) -> Vec<f64>;

    /// A one-line description of the explanation method, shown to users.
    fn explanation_method(&self) -> &'static str;
}
