//! A fitted model of any algorithm: fit, score, label, explain, save and load.

use crate::error::{invalid, DetectError, Result};
use crate::scorer::Scorer;
use crate::{copod, ecod, hbos, iforest, kmeans, knn, lof, matrix, pca, stats, zscore};
use ndarray::{s, ArrayView1, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Name of the saved-model format, first field of every saved model.
pub const FORMAT: &str = "nomaly-model";
/// Newest format version this build writes and reads. Older versions stay readable;
/// newer ones are refused with [`DetectError::UnsupportedVersion`].
pub const FORMAT_VERSION: u32 = 1;

/// An algorithm with its parameters. Serialized as `{"name": "iforest", ...params}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Algorithm {
    /// Isolation Forest.
    Iforest(iforest::Params),
    /// ECOD.
    Ecod(ecod::Params),
    /// COPOD.
    Copod(copod::Params),
    /// Histogram-based outlier score.
    Hbos(hbos::Params),
    /// Robust z-score.
    Zscore(zscore::Params),
    /// k-nearest-neighbour distance.
    Knn(knn::Params),
    /// Local Outlier Factor.
    Lof(lof::Params),
    /// PCA outlier score (weighted distances to the principal axes), as PyOD.
    Pca(pca::Params),
    /// CBLOF: distance to the nearest large k-means cluster, as PyOD.
    Kmeans(kmeans::Params),
}

/// Every algorithm name, in the order the docs list them.
pub const ALGORITHMS: [&str; 9] = [
    "iforest", "ecod", "copod", "hbos", "zscore", "knn", "lof", "pca", "kmeans",
];

impl Algorithm {
    /// The algorithm called `name` with its default parameters.
    pub fn named(name: &str) -> Result<Self> {
        Self::with_params(name, &serde_json::Map::new())
    }

    /// The algorithm called `name` with `params` (a JSON object of parameter values; the
    /// ones left out take their defaults, unknown ones are refused).
    pub fn with_params(
        name: &str,
        params: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self> {
        if !ALGORITHMS.contains(&name) {
            return Err(DetectError::UnknownAlgorithm(name.to_string()));
        }
        let mut object = params.clone();
        object.insert("name".into(), serde_json::Value::String(name.into()));
        serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| {
            DetectError::InvalidParameter {
                name: "params",
                reason: format!("for {name}: {e}"),
            }
        })
    }

    /// The algorithm's name.
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::Iforest(_) => "iforest",
            Algorithm::Ecod(_) => "ecod",
            Algorithm::Copod(_) => "copod",
            Algorithm::Hbos(_) => "hbos",
            Algorithm::Zscore(_) => "zscore",
            Algorithm::Knn(_) => "knn",
            Algorithm::Lof(_) => "lof",
            Algorithm::Pca(_) => "pca",
            Algorithm::Kmeans(_) => "kmeans",
        }
    }
}

/// How the anomaly threshold is set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdRule {
    /// The share of training rows expected to be anomalies, in (0, 0.5]: the threshold is
    /// the training scores' `(1 - contamination)` percentile, as scikit-learn's `offset_`.
    Contamination(f64),
    /// A fixed score: rows scoring above it are anomalies.
    Score(f64),
}

impl Default for ThresholdRule {
    fn default() -> Self {
        ThresholdRule::Contamination(0.1)
    }
}

impl ThresholdRule {
    fn validate(&self) -> Result<()> {
        match *self {
            ThresholdRule::Contamination(c) if !(c > 0.0 && c <= 0.5) => {
                Err(invalid("contamination", "must be in (0, 0.5]"))
            }
            ThresholdRule::Score(t) if !t.is_finite() => {
                Err(invalid("threshold", "must be a finite number"))
            }
            _ => Ok(()),
        }
    }

    fn threshold(&self, training_scores: &[f64]) -> f64 {
        match *self {
            ThresholdRule::Contamination(c) => {
                stats::percentile(training_scores, 100.0 * (1.0 - c))
            }
            ThresholdRule::Score(t) => t,
        }
    }
}

/// What to fit.
#[derive(Debug, Clone, PartialEq)]
pub struct FitOptions {
    /// Algorithm and parameters.
    pub algorithm: Algorithm,
    /// How the threshold is set.
    pub threshold: ThresholdRule,
    /// Seed of every random choice.
    pub seed: u64,
    /// Names of the features; `f0, f1, ...` when absent.
    pub feature_names: Option<Vec<String>>,
}

impl FitOptions {
    /// Default threshold (contamination 0.1), seed 0, generated feature names.
    pub fn new(algorithm: Algorithm) -> Self {
        FitOptions {
            algorithm,
            threshold: ThresholdRule::default(),
            seed: 0,
            feature_names: None,
        }
    }
}

/// Scores of the training rows, summarised in the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    /// Training rows.
    pub rows: usize,
    /// Training rows above the threshold.
    pub anomalies: usize,
    /// Lowest training score.
    pub score_min: f64,
    /// Highest training score.
    pub score_max: f64,
    /// Mean training score.
    pub score_mean: f64,
}

/// The fitted state of each algorithm.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum State {
    Iforest(iforest::IForest),
    Ecod(ecod::Ecod),
    Copod(copod::Copod),
    Hbos(hbos::Hbos),
    Zscore(zscore::ZScore),
    Knn(knn::Knn),
    Lof(lof::Lof),
    Pca(pca::Pca),
    Kmeans(kmeans::Kmeans),
}

impl State {
    fn scorer(&self) -> &dyn Scorer {
        match self {
            State::Iforest(m) => m,
            State::Ecod(m) => m,
            State::Copod(m) => m,
            State::Hbos(m) => m,
            State::Zscore(m) => m,
            State::Knn(m) => m,
            State::Lof(m) => m,
            State::Pca(m) => m,
            State::Kmeans(m) => m,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            State::Iforest(_) => "iforest",
            State::Ecod(_) => "ecod",
            State::Copod(_) => "copod",
            State::Hbos(_) => "hbos",
            State::Zscore(_) => "zscore",
            State::Knn(_) => "knn",
            State::Lof(_) => "lof",
            State::Pca(_) => "pca",
            State::Kmeans(_) => "kmeans",
        }
    }

    /// Consistency of a state read from outside with the model's width.
    fn check(&self, n_features: usize) -> Result<()> {
        match self {
            // The forest checks its trees while it is rebuilt; its width must match.
            State::Iforest(m) if m.n_features() == n_features => Ok(()),
            State::Iforest(_) => Err(DetectError::InvalidModel(
                "the isolation forest's width differs from the model's".into(),
            )),
            State::Ecod(m) => m.check(n_features),
            State::Copod(m) => m.check(n_features),
            State::Hbos(m) => m.check(n_features),
            State::Zscore(m) => m.check(n_features),
            State::Knn(m) => m.check(n_features),
            State::Lof(m) => m.check(n_features),
            State::Pca(m) => m.check(n_features),
            State::Kmeans(m) => m.check(n_features),
        }
    }
}

/// A fitted model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    algorithm: Algorithm,
    seed: u64,
    feature_names: Vec<String>,
    threshold_rule: ThresholdRule,
    threshold: f64,
    training: TrainingSummary,
    state: State,
}

/// A model just fitted, with the scores of the rows it was fitted on.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// The model.
    pub model: Model,
    /// Scores of the training rows, in order (what the threshold was taken from).
    pub training_scores: Vec<f64>,
}

impl Fitted {
    /// Moves the model's threshold to the one [`labels::fit_threshold`] fits to rows a
    /// person labelled (indices into the training rows), from the threshold it has. The
    /// model keeps the fitted threshold as a fixed score. `None`, and no change, when no
    /// label names a training row.
    pub fn fit_to_labels(
        &mut self,
        labels: &[crate::labels::Labelled],
    ) -> Option<crate::labels::LabelFit> {
        let fit =
            crate::labels::fit_threshold(&self.training_scores, labels, self.model.threshold)?;
        self.model.threshold = fit.threshold;
        self.model.threshold_rule = ThresholdRule::Score(fit.threshold);
        self.model.training.anomalies = self
            .training_scores
            .iter()
            .filter(|&&s| s > fit.threshold)
            .count();
        Some(fit)
    }
}

/// One feature's share in a row's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureContribution {
    /// Feature name.
    pub feature: String,
    /// Zero-based feature index.
    pub index: usize,
    /// Contribution (higher = drove the score more; units depend on the method).
    pub contribution: f64,
}

/// Why a row scored as it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// How contributions were computed.
    pub method: String,
    /// Features, highest contribution first.
    pub features: Vec<FeatureContribution>,
}

/// Rows scored per parallel task.
const CHUNK_ROWS: usize = 4096;

#[derive(Serialize)]
struct EnvelopeRef<'a> {
    format: &'static str,
    version: u32,
    created_by: String,
    model: &'a Model,
}

#[derive(Deserialize)]
struct Header {
    format: String,
    version: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    #[allow(dead_code)]
    format: String,
    #[allow(dead_code)]
    version: u32,
    #[allow(dead_code)]
    created_by: String,
    model: Model,
}

impl Model {
    /// Fits `options.algorithm` on `x`.
    ///
    /// Refuses empty data, zero columns, non-finite values, feature names of the wrong
    /// number and parameters out of range, each with its own error.
    pub fn fit(x: ArrayView2<f64>, options: &FitOptions) -> Result<Fitted> {
        Self::fit_with_progress(x, options, &|_| {})
    }

    /// [`Model::fit`], calling `progress` with the share of the work done (0 to 1) as it
    /// goes: after fitting and after each block of training rows scored. Blocks are scored
    /// in parallel, so calls may arrive slightly out of order: the largest value so far is
    /// the share done. The last call is 1.
    /// Algorithms that score their training rows while fitting (ECOD, COPOD, kNN, LOF)
    /// report only the end.
    pub fn fit_with_progress(
        x: ArrayView2<f64>,
        options: &FitOptions,
        progress: &(dyn Fn(f64) + Sync),
    ) -> Result<Fitted> {
        matrix::check(x)?;
        options.threshold.validate()?;
        let feature_names = match &options.feature_names {
            Some(names) if names.len() != x.ncols() => {
                return Err(invalid(
                    "feature_names",
                    format!("has {} names for {} columns", names.len(), x.ncols()),
                ))
            }
            Some(names) => names.clone(),
            None => (0..x.ncols()).map(|i| format!("f{i}")).collect(),
        };
        let x = x.as_standard_layout();
        let x = x.view();
        let seed = options.seed;
        let (state, scores) = match &options.algorithm {
            Algorithm::Iforest(p) => (State::Iforest(iforest::IForest::fit(x, p, seed)?), None),
            Algorithm::Ecod(_) => {
                let (m, s) = ecod::Ecod::fit(x);
                (State::Ecod(m), Some(s))
            }
            // Not leave-one-out, as ECOD: each training row is among the `n` its tail
            // probabilities count (PyOD's `decision_scores_`), where `score` counts a row
            // as one more sample, so the two differ slightly on the same rows.
            Algorithm::Copod(_) => {
                let (m, s) = copod::Copod::fit(x);
                (State::Copod(m), Some(s))
            }
            Algorithm::Hbos(p) => (State::Hbos(hbos::Hbos::fit(x, p)?), None),
            Algorithm::Zscore(_) => (State::Zscore(zscore::ZScore::fit(x)), None),
            Algorithm::Knn(p) => {
                let (m, s) = knn::Knn::fit(x, p)?;
                (State::Knn(m), Some(s))
            }
            Algorithm::Lof(p) => {
                let (m, s) = lof::Lof::fit(x, p)?;
                (State::Lof(m), Some(s))
            }
            Algorithm::Pca(p) => (State::Pca(pca::Pca::fit(x, p)?), None),
            Algorithm::Kmeans(p) => (State::Kmeans(kmeans::Kmeans::fit(x, p, seed)?), None),
        };
        let scores = match scores {
            Some(s) => s,
            None => {
                progress(FIT_SHARE);
                score_rows(state.scorer(), x, &|done| {
                    progress(FIT_SHARE + (1.0 - FIT_SHARE) * done)
                })
            }
        };
        progress(1.0);
        // A model that cannot be saved and loaded back, or scores that cannot rank, are
        // refused here rather than discovered later.
        state.check(x.ncols())?;
        if let Some(row) = scores.iter().position(|s| !s.is_finite()) {
            return Err(DetectError::Algorithm {
                algorithm: options.algorithm.name(),
                reason: format!(
                    "row {row} got a non-finite score; the values may be too far apart to compare"
                ),
            });
        }
        let threshold = options.threshold.threshold(&scores);
        let training = TrainingSummary {
            rows: scores.len(),
            anomalies: scores.iter().filter(|&&s| s > threshold).count(),
            score_min: scores.iter().cloned().fold(f64::INFINITY, f64::min),
            score_max: scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            score_mean: scores.iter().sum::<f64>() / scores.len() as f64,
        };
        Ok(Fitted {
            model: Model {
                algorithm: options.algorithm.clone(),
                seed,
                feature_names,
                threshold_rule: options.threshold,
                threshold,
                training,
                state,
            },
            training_scores: scores,
        })
    }

    /// Scores rows (higher is more anomalous). Rows must have the model's width and finite
    /// values. The result is the same, bit for bit, at any thread count.
    pub fn score(&self, x: ArrayView2<f64>) -> Result<Vec<f64>> {
        matrix::check_width(x, self.n_features())?;
        let x = x.as_standard_layout();
        Ok(score_rows(self.state.scorer(), x.view(), &|_| {}))
    }

    /// [`Model::score`], calling `progress` with the share of rows scored (0 to 1) after
    /// each block of rows.
    pub fn score_with_progress(
        &self,
        x: ArrayView2<f64>,
        progress: &(dyn Fn(f64) + Sync),
    ) -> Result<Vec<f64>> {
        matrix::check_width(x, self.n_features())?;
        let x = x.as_standard_layout();
        let scores = score_rows(self.state.scorer(), x.view(), progress);
        progress(1.0);
        Ok(scores)
    }

    /// 1 for each score above the threshold, else 0.
    pub fn labels(&self, scores: &[f64]) -> Vec<u8> {
        scores
            .iter()
            .map(|&s| u8::from(s > self.threshold))
            .collect()
    }

    /// The features that drove `row`'s score, highest contribution first.
    pub fn explain(&self, row: ArrayView1<f64>) -> Result<Explanation> {
        let as_matrix = row.view().insert_axis(ndarray::Axis(0));
        matrix::check_width(as_matrix, self.n_features())?;
        let scorer = self.state.scorer();
        let mut features: Vec<FeatureContribution> = scorer
            .contributions(row)
            .into_iter()
            .enumerate()
            .map(|(index, contribution)| FeatureContribution {
                feature: self.feature_names[index].clone(),
                index,
                contribution,
            })
            .collect();
        features.sort_by(|a, b| {
            b.contribution
                .total_cmp(&a.contribution)
                .then(a.index.cmp(&b.index))
        });
        Ok(Explanation {
            method: scorer.explanation_method().to_string(),
            features,
        })
    }

    /// The algorithm and its parameters.
    pub fn algorithm(&self) -> &Algorithm {
        &self.algorithm
    }
    /// The seed it was fitted with.
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// Names of the features, in column order.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }
    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }
    /// Scores above this are anomalies.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }
    /// How the threshold was set.
    pub fn threshold_rule(&self) -> ThresholdRule {
        self.threshold_rule
    }
    /// Summary of the training scores.
    pub fn training(&self) -> &TrainingSummary {
        &self.training
    }

    /// The model with a fixed score threshold instead of its own (a contamination rule
    /// needs the training scores, so only [`ThresholdRule::Score`] is accepted here).
    pub fn with_threshold(mut self, rule: ThresholdRule) -> Result<Model> {
        rule.validate()?;
        match rule {
            ThresholdRule::Score(t) => {
                self.threshold = t;
                self.threshold_rule = rule;
                Ok(self)
            }
            ThresholdRule::Contamination(_) => Err(invalid(
                "threshold",
                "a saved model's threshold can only be replaced by a fixed score",
            )),
        }
    }

    /// Serializes to the versioned JSON format:
    /// `{"format": "nomaly-model", "version": 1, "created_by": ..., "model": {...}}`.
    /// Every number is written so that it reads back to the same bits.
    pub fn to_json(&self) -> Vec<u8> {
        let envelope = EnvelopeRef {
            format: FORMAT,
            version: FORMAT_VERSION,
            created_by: format!("nomaly-detect {}", env!("CARGO_PKG_VERSION")),
            model: self,
        };
        // Every field is a plain struct, string or finite number: writing cannot fail.
        serde_json::to_vec(&envelope).unwrap_or_default()
    }

    /// Reads a model written by [`Model::to_json`] (this or an older format version).
    /// Refuses other formats, newer versions and inconsistent contents.
    pub fn from_json(bytes: &[u8]) -> Result<Model> {
        let header: Header = serde_json::from_slice(bytes)
            .map_err(|e| DetectError::InvalidModel(format!("not a nomaly model file: {e}")))?;
        if header.format != FORMAT {
            return Err(DetectError::InvalidModel(format!(
                "format is `{}`, expected `{FORMAT}`",
                header.format
            )));
        }
        if header.version > FORMAT_VERSION {
            return Err(DetectError::UnsupportedVersion {
                found: header.version,
                supported: FORMAT_VERSION,
            });
        }
        let envelope: Envelope =
            serde_json::from_slice(bytes).map_err(|e| DetectError::InvalidModel(e.to_string()))?;
        let model = envelope.model;
        if model.algorithm.name() != model.state.name() {
            return Err(DetectError::InvalidModel(format!(
                "algorithm `{}` holds the state of `{}`",
                model.algorithm.name(),
                model.state.name()
            )));
        }
        if model.feature_names.is_empty() || !model.threshold.is_finite() {
            return Err(DetectError::InvalidModel(
                "no features or a non-finite threshold".into(),
            ));
        }
        model.threshold_rule.validate()?;
        model.state.check(model.n_features())?;
        Ok(model)
    }
}

/// Scores rows in parallel chunks; each row's score depends on that row alone.
/// Share of [`Model::fit_with_progress`]'s work reported once the model is fitted, before
/// its training rows are scored (scoring is most of the time for the tree and
/// projection models).
const FIT_SHARE: f64 = 0.2;

/// Scores rows in parallel blocks, reporting the share of rows done after each block.
fn score_rows(
    scorer: &dyn Scorer,
    x: ArrayView2<f64>,
    progress: &(dyn Fn(f64) + Sync),
) -> Vec<f64> {
    let n = x.nrows();
    if n <= CHUNK_ROWS {
        return scorer.score(x);
    }
    let done = std::sync::atomic::AtomicUsize::new(0);
    let starts: Vec<usize> = (0..n).step_by(CHUNK_ROWS).collect();
    let parts: Vec<Vec<f64>> = starts
        .par_iter()
        .map(|&a| {
            let b = (a + CHUNK_ROWS).min(n);
            let scores = scorer.score(x.slice(s![a..b, ..]));
            let rows = done.fetch_add(b - a, std::sync::atomic::Ordering::Relaxed) + (b - a);
            progress(rows as f64 / n as f64);
            scores
        })
        .collect();
    parts.concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use ndarray::{array, Array2};

    fn data() -> Array2<f64> {
        let mut rng = Rng::new(42);
        let mut x = Array2::from_shape_fn((300, 3), |_| rng.next_f64());
        for j in 0..3 {
            x[[299, j]] = 6.0;
        }
        x
    }

    #[test]
    fn progress_is_reported_and_changes_nothing() {
        let mut rng = Rng::new(7);
        let x = Array2::from_shape_fn((3 * CHUNK_ROWS + 5, 4), |_| rng.next_f64());
        let options = FitOptions::new(Algorithm::named("iforest").unwrap());
        let seen = std::sync::Mutex::new(Vec::new());
        let fitted =
            Model::fit_with_progress(x.view(), &options, &|p| seen.lock().unwrap().push(p))
                .unwrap();
        let seen = seen.into_inner().unwrap();
        assert!(seen.len() >= 5, "{seen:?}");
        assert_eq!(seen.last(), Some(&1.0));
        assert!(seen.iter().all(|p| (0.0..=1.0).contains(p)));
        let plain = Model::fit(x.view(), &options).unwrap();
        assert_eq!(fitted.training_scores, plain.training_scores);
        let scored = std::sync::Mutex::new(0.0f64);
        let scores = fitted
            .model
            .score_with_progress(x.view(), &|p| {
                let mut m = scored.lock().unwrap();
                *m = m.max(p)
            })
            .unwrap();
        assert_eq!(scores, plain.training_scores);
        assert_eq!(scored.into_inner().unwrap(), 1.0);
    }

    #[test]
    fn every_algorithm_fits_scores_explains_and_round_trips_bit_for_bit() {
        let x = data();
        for name in ALGORITHMS {
            let fitted =
                Model::fit(x.view(), &FitOptions::new(Algorithm::named(name).unwrap())).unwrap();
            let m = &fitted.model;
            let scores = m.score(x.view()).unwrap();
            let top = scores.iter().cloned().fold(f64::MIN, f64::max);
            assert_eq!(scores[299], top, "{name}: outlier is not the top score");
            assert_eq!(m.labels(&scores)[299], 1, "{name}");
            let e = m.explain(x.row(299)).unwrap();
            assert_eq!(e.features.len(), 3, "{name}");
            assert!(e
                .features
                .windows(2)
                .all(|w| w[0].contribution >= w[1].contribution));
            let bytes = m.to_json();
            let back = Model::from_json(&bytes).unwrap();
            let again = back.score(x.view()).unwrap();
            assert!(
                scores
                    .iter()
                    .zip(&again)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name}: scores changed after a save and load"
            );
            assert_eq!(back.threshold().to_bits(), m.threshold().to_bits());
            assert_eq!(
                back.to_json(),
                bytes,
                "{name}: saving again changed the file"
            );
        }
    }

    #[test]
    fn contamination_sets_the_share_of_training_anomalies() {
        let x = data();
        let mut o = FitOptions::new(Algorithm::named("iforest").unwrap());
        o.threshold = ThresholdRule::Contamination(0.05);
        let f = Model::fit(x.view(), &o).unwrap();
        let flagged = f
            .model
            .labels(&f.training_scores)
            .iter()
            .filter(|&&l| l == 1)
            .count();
        assert_eq!(flagged, 15);
        assert_eq!(f.model.training().anomalies, 15);
        o.threshold = ThresholdRule::Score(0.99);
        let f = Model::fit(x.view(), &o).unwrap();
        assert_eq!(f.model.threshold(), 0.99);
        let fixed = f
            .model
            .clone()
            .with_threshold(ThresholdRule::Score(0.5))
            .unwrap();
        assert_eq!(fixed.threshold(), 0.5);
        assert_eq!(Model::from_json(&fixed.to_json()).unwrap().threshold(), 0.5);
        assert!(f
            .model
            .clone()
            .with_threshold(ThresholdRule::Score(f64::NAN))
            .is_err());
        assert!(f
            .model
            .with_threshold(ThresholdRule::Contamination(0.1))
            .is_err());
    }

    #[test]
    fn labels_move_the_threshold_and_the_count_of_training_anomalies() {
        let x = data();
        let o = FitOptions::new(Algorithm::named("iforest").unwrap());
        let mut f = Model::fit(x.view(), &o).unwrap();
        let before = f.model.threshold();
        // the highest-scoring training row, said to be normal
        let top = (0..f.training_scores.len())
            .max_by(|&a, &b| f.training_scores[a].total_cmp(&f.training_scores[b]))
            .unwrap();
        let fit = f
            .fit_to_labels(&[crate::labels::Labelled {
                row: top,
                anomaly: false,
            }])
            .unwrap();
        assert_eq!((fit.errors_before, fit.errors), (1, 0));
        assert!(f.model.threshold() > before);
        assert_eq!(f.model.threshold(), f.training_scores[top]);
        assert_eq!(
            f.model.threshold_rule(),
            ThresholdRule::Score(fit.threshold)
        );
        assert_eq!(f.model.training().anomalies, 0);
        assert!(f.model.labels(&f.training_scores).iter().all(|&l| l == 0));
        assert_eq!(
            Model::from_json(&f.model.to_json()).unwrap().threshold(),
            fit.threshold
        );
        assert!(f
            .fit_to_labels(&[crate::labels::Labelled {
                row: 10_000,
                anomaly: true
            }])
            .is_none());
    }

    #[test]
    fn seed_fixes_the_model_and_thread_count_never_changes_scores() {
        let mut rng = Rng::new(7);
        let x = Array2::from_shape_fn((20_000, 4), |_| rng.next_f64());
        let o = FitOptions::new(Algorithm::named("iforest").unwrap());
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    let f = Model::fit(x.view(), &o).unwrap();
                    (f.model.to_json(), f.model.score(x.view()).unwrap())
                })
        };
        let (m1, s1) = run(1);
        let (m3, s3) = run(3);
        assert_eq!(m1, m3);
        assert!(s1.iter().zip(&s3).all(|(a, b)| a.to_bits() == b.to_bits()));
        let mut other = o.clone();
        other.seed = 1;
        let f = Model::fit(x.view(), &other).unwrap();
        assert_ne!(f.model.to_json(), m1);
    }

    #[test]
    fn bad_input_gets_typed_errors() {
        let o = FitOptions::new(Algorithm::named("iforest").unwrap());
        let empty = Array2::<f64>::zeros((0, 3));
        assert_eq!(
            Model::fit(empty.view(), &o).unwrap_err(),
            DetectError::EmptyData
        );
        let no_cols = Array2::<f64>::zeros((3, 0));
        assert_eq!(
            Model::fit(no_cols.view(), &o).unwrap_err(),
            DetectError::NoColumns
        );
        let nan = array![[1.0], [f64::NAN]];
        assert!(matches!(
            Model::fit(nan.view(), &o).unwrap_err(),
            DetectError::NonFinite {
                row: 1,
                column: 0,
                ..
            }
        ));
        let f = Model::fit(data().view(), &o).unwrap();
        assert_eq!(
            f.model.score(array![[1.0, 2.0]].view()).unwrap_err(),
            DetectError::WidthMismatch {
                expected: 3,
                found: 2
            }
        );
        assert!(f
            .model
            .explain(array![1.0, f64::INFINITY, 0.0].view())
            .is_err());
        let mut bad = o.clone();
        bad.threshold = ThresholdRule::Contamination(0.7);
        assert!(matches!(
            Model::fit(data().view(), &bad).unwrap_err(),
            DetectError::InvalidParameter {
                name: "contamination",
                ..
            }
        ));
        assert_eq!(
            Algorithm::named("nope").unwrap_err(),
            DetectError::UnknownAlgorithm("nope".into())
        );
        let mut p = serde_json::Map::new();
        p.insert("n_trees".into(), 5.into());
        let err = Algorithm::with_params("iforest", &p).unwrap_err();
        assert!(err.to_string().contains("n_trees"), "{err}");
        p.clear();
        p.insert("n_estimators".into(), 5.into());
        assert_eq!(
            Algorithm::with_params("iforest", &p).unwrap(),
            Algorithm::Iforest(iforest::Params {
                n_estimators: 5,
                max_samples: 256
            })
        );
    }

    #[test]
    fn newer_versions_other_formats_and_tampered_models_are_refused() {
        let f = Model::fit(
            data().view(),
            &FitOptions::new(Algorithm::named("ecod").unwrap()),
        )
        .unwrap();
        let text = String::from_utf8(f.model.to_json()).unwrap();
        let newer = text.replacen("\"version\":1", "\"version\":2", 1);
        assert_eq!(
            Model::from_json(newer.as_bytes()).unwrap_err(),
            DetectError::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        );
        let other = text.replacen("nomaly-model", "something-else", 1);
        assert!(matches!(
            Model::from_json(other.as_bytes()),
            Err(DetectError::InvalidModel(_))
        ));
        assert!(matches!(
            Model::from_json(b"not json"),
            Err(DetectError::InvalidModel(_))
        ));
        let mismatched = text.replacen("\"name\":\"ecod\"", "\"name\":\"zscore\"", 1);
        assert!(matches!(
            Model::from_json(mismatched.as_bytes()),
            Err(DetectError::InvalidModel(_))
        ));
        let truncated = &text.as_bytes()[..text.len() / 2];
        assert!(Model::from_json(truncated).is_err());
    }
}
