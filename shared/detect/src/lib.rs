//! nomaly's anomaly-detection algorithms.
//!
//! Every detector fits on an `ndarray` matrix (rows are samples, `f64`), scores new rows
//! (higher is more anomalous), turns scores into 0/1 labels with a threshold taken from a
//! `contamination` share of the training rows or given outright, and explains a row's
//! score by ranking the features that drove it. Fitting is deterministic for a seed and
//! scoring gives the same bits at any thread count. Models serialize to a versioned,
//! self-describing JSON format ([`Model::to_json`], [`Model::from_json`]).
//!
//! Streaming detectors, which learn one point at a time, are in [`stream`]; [`nab`] scores
//! detections against labelled windows as the Numenta Anomaly Benchmark does.
//!
//! This crate does no I/O and nothing async: callers bring matrices.
//!
//! ```
//! use nomaly_detect::{Algorithm, FitOptions, Model};
//! let x = ndarray::array![[0.0, 1.0], [0.1, 1.1], [0.2, 0.9], [9.0, -4.0]];
//! let fitted = Model::fit(x.view(), &FitOptions::new(Algorithm::named("ecod")?))?;
//! let scores = fitted.model.score(x.view())?;
//! assert!(scores[3] > scores[0]);
//! # Ok::<(), nomaly_detect::DetectError>(())
//! ```

pub mod backtest;
pub mod columns;
pub mod copod;
pub mod cost;
mod ecdf;
pub mod ecod;
pub mod error;
pub mod hbos;
pub mod iforest;
pub mod kmeans;
pub mod knn;
pub mod labels;
pub mod lof;
pub mod matrix;
pub mod metrics;
pub mod model;
pub mod nab;
pub mod neighbors;
pub mod pca;
pub mod rng;
pub mod scorer;
pub mod stats;
pub mod stream;
pub mod zscore;

pub use error::{DetectError, Result};
pub use model::{
    Algorithm, Explanation, FeatureContribution, FitOptions, Fitted, Model, ThresholdRule,
    TrainingSummary, FORMAT, FORMAT_VERSION,
};
