//! The one error type of the detection crate.

use thiserror::Error;

/// Everything that can go wrong when fitting, scoring, explaining or loading a model.
///
/// Every variant names what was wrong with the input so that a caller can pass the
/// message on to a user unchanged.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum DetectError {
    /// The matrix has no rows.
    #[error("the data has no rows")]
    EmptyData,
    /// The matrix has rows but no columns.
    #[error("the data has no columns")]
    NoColumns,
    /// A row has a different number of values from the first row.
    #[error("row {row} has {found} values, but the first row has {expected}")]
    RaggedRows {
        /// Zero-based index of the offending row.
        row: usize,
        /// Width of the first row.
        expected: usize,
        /// Width of the offending row.
        found: usize,
    },
    /// A value is NaN, infinite, or beyond ±1e38.
    #[error("row {row}, column {column}: value {value} is not a finite number within ±1e38")]
    NonFinite {
        /// Zero-based row index.
        row: usize,
        /// Zero-based column index.
        column: usize,
        /// The offending value as text (`NaN`, `inf`, `-inf`).
        value: String,
    },
    /// Rows to score do not have the width the model was trained on.
    #[error("the model was trained on {expected} features, but the rows have {found}")]
    WidthMismatch {
        /// Width the model expects.
        expected: usize,
        /// Width that was given.
        found: usize,
    },
    /// Named rows lack columns the model takes.
    #[error("the rows have no {} column{}, which the model takes (its features are {})", quoted(.missing), if .missing.len() == 1 { "" } else { "s" }, .features.join(", "))]
    MissingColumns {
        /// The model's features the rows do not name.
        missing: Vec<String>,
        /// The model's features, in order.
        features: Vec<String>,
    },
    /// A parameter is outside its allowed range.
    #[error("parameter `{name}` {reason}")]
    InvalidParameter {
        /// Parameter name as the user spells it.
        name: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The algorithm name is not one the crate knows.
    #[error("unknown algorithm `{name}` (known: {known})", name = .0, known = crate::model::ALGORITHMS.join(", "))]
    UnknownAlgorithm(String),
    /// A serialized model comes from a newer format version than this build reads.
    #[error("model format version {found} is newer than this build supports (up to {supported}); upgrade nomaly to load it")]
    UnsupportedVersion {
        /// Version found in the model.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// A serialized model could not be read.
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// An algorithm from smartcore failed.
    #[error("{algorithm} failed: {reason}")]
    Algorithm {
        /// Which algorithm.
        algorithm: &'static str,
        /// The underlying message.
        reason: String,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, DetectError>;

/// Shorthand for [`DetectError::InvalidParameter`].
pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> DetectError {
    DetectError::InvalidParameter {
        name,
        reason: reason.into(),
    }
}

/// Runs a smartcore call, turning its errors and its panics (it panics on some inputs,
/// e.g. when an eigen-decomposition does not converge) into [`DetectError::Algorithm`].
pub(crate) fn smartcore<T>(
    algorithm: &'static str,
    f: impl FnOnce() -> std::result::Result<T, smartcore::error::Failed>,
) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(DetectError::Algorithm {
            algorithm,
            reason: e.to_string(),
        }),
        Err(panic) => Err(DetectError::Algorithm {
            algorithm,
            reason: panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "it stopped unexpectedly".into()),
        }),
    }
}

/// `a`, `b` and `c`, each in backticks.
fn quoted(names: &[String]) -> String {
    let q: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match q.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}
