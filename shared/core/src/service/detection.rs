//! Detection: score rows with a stored model or with a model fitted on the rows
//! themselves. Inline when the predicted cost fits the time budget ("process
//! immediately" in `docs/architecture.md`), otherwise as a background task; identical
//! requests on an unchanged model come from the cache; anomalies found are published.

use crate::domain::{EventType, Task, TaskKind, TenantId};
use crate::ids::{ModelId, TaskId};
use crate::limits::INLINE_RESULT_BYTES;
use crate::ports::BlobKey;
use crate::service::input::{FitSpec, Rows};
use crate::service::{cost, jobs, models, Problem, Services};
use nomaly_detect::{Algorithm, Model, ThresholdRule};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Instant;

/// Anomalous row indices listed in an `anomaly.detected` event at most.
const EVENT_ROWS: usize = 100;
/// Features named per row in an explanation.
const EXPLAIN_FEATURES: usize = 5;

/// Which model scores the rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum ScorerSpec {
    /// A trained model of the tenant's, optionally with a fixed threshold instead of its
    /// own.
    Stored {
        /// The model.
        model_id: ModelId,
        /// Overrides the model's threshold.
        #[serde(default)]
        threshold: Option<f64>,
    },
    /// A model fitted on the rows being scored.
    Fit(FitSpec),
}

/// A detection request, whatever its transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectSpec {
    /// The scorer.
    pub scorer: ScorerSpec,
    /// Whether to explain each row.
    #[serde(default)]
    pub explain: bool,
}

/// The JSON body of `POST /v1/detect`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DetectRequest {
    /// Rows to score.
    pub rows: Vec<Vec<f64>>,
    /// Column names.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// A trained model's id (or give `algorithm`).
    #[serde(default)]
    pub model_id: Option<ModelId>,
    /// Algorithm to fit on the rows (or give `model_id`).
    #[serde(default)]
    pub algorithm: Option<String>,
    /// Its parameters.
    #[serde(default)]
    pub params: Option<serde_json::Map<String, serde_json::Value>>,
    /// Share of anomalies when fitting.
    #[serde(default)]
    pub contamination: Option<f64>,
    /// Fixed score threshold.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Seed when fitting.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Explain each row.
    #[serde(default)]
    pub explain: bool,
}

/// The options of a CSV body, from the query string.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DetectQuery {
    /// A trained model's id.
    #[serde(default)]
    pub model_id: Option<ModelId>,
    /// Algorithm to fit.
    #[serde(default)]
    pub algorithm: Option<String>,
    /// Its parameters as a JSON object.
    #[serde(default)]
    pub params: Option<String>,
    /// Share of anomalies when fitting.
    #[serde(default)]
    pub contamination: Option<f64>,
    /// Fixed score threshold.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Seed when fitting.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Explain each row.
    #[serde(default)]
    pub explain: bool,
    /// Columns to drop, comma-separated.
    #[serde(default)]
    pub exclude_columns: Option<String>,
}

/// Builds the scorer from the parts a request gave: a model id, or an algorithm.
pub fn scorer(
    model_id: Option<ModelId>,
    algorithm: Option<String>,
    params: Option<serde_json::Map<String, serde_json::Value>>,
    contamination: Option<f64>,
    threshold: Option<f64>,
    seed: Option<u64>,
) -> Result<ScorerSpec, Problem> {
    match (model_id, algorithm) {
        (Some(_), Some(_)) => Err(Problem::invalid_parameter(
            "give `model_id` or `algorithm`, not both",
        )),
        (None, None) => Err(Problem::invalid_parameter(
            "give `model_id` (a trained model) or `algorithm` (fit on these rows)",
        )),
        (Some(model_id), None) => {
            if params.is_some() || contamination.is_some() || seed.is_some() {
                return Err(Problem::invalid_parameter(
                    "`params`, `contamination` and `seed` apply to fitting; a stored model has its own",
                ));
            }
            if threshold.is_some_and(|t| !t.is_finite()) {
                return Err(Problem::invalid_parameter("`threshold` must be finite"));
            }
            Ok(ScorerSpec::Stored {
                model_id,
                threshold,
            })
        }
        (None, Some(algorithm)) => {
            let spec = FitSpec {
                algorithm,
                params: params.unwrap_or_default(),
                contamination,
                threshold,
                seed: seed.unwrap_or(0),
            };
            spec.validate()?;
            Ok(ScorerSpec::Fit(spec))
        }
    }
}

impl DetectRequest {
    /// The rows and the spec, checked.
    pub fn into_parts(self) -> Result<(Rows, DetectSpec), Problem> {
        let scorer = scorer(
            self.model_id,
            self.algorithm,
            self.params,
            self.contamination,
            self.threshold,
            self.seed,
        )?;
        let rows = Rows::new(self.rows, self.columns)?;
        Ok((
            rows,
            DetectSpec {
                scorer,
                explain: self.explain,
            },
        ))
    }
}

impl DetectQuery {
    /// The spec and the columns to exclude, checked.
    pub fn into_parts(self) -> Result<(DetectSpec, Vec<String>), Problem> {
        let params = match self.params {
            Some(text) => Some(serde_json::from_str(&text).map_err(|e| {
                Problem::invalid_parameter(format!("`params` must be a JSON object: {e}"))
            })?),
            None => None,
        };
        let scorer = scorer(
            self.model_id,
            self.algorithm,
            params,
            self.contamination,
            self.threshold,
            self.seed,
        )?;
        let exclude = self
            .exclude_columns
            .map(|c| c.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default();
        Ok((
            DetectSpec {
                scorer,
                explain: self.explain,
            },
            exclude,
        ))
    }
}

/// One feature's share of a row's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Contribution {
    /// Feature name.
    pub feature: String,
    /// Its contribution (method-specific units; larger means more to blame).
    pub contribution: f64,
}

/// Scores and labels of a detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Detection {
    /// The stored model used, if any.
    pub model_id: Option<ModelId>,
    /// The algorithm.
    pub algorithm: String,
    /// Rows scored.
    pub rows: usize,
    /// Features per row.
    pub features: usize,
    /// Rows scoring above this are anomalies.
    pub threshold: f64,
    /// One score per row (higher is more anomalous).
    pub scores: Vec<f64>,
    /// 1 for an anomaly, else 0.
    pub labels: Vec<u8>,
    /// How many rows are anomalies.
    pub anomalies: usize,
    /// Per-row top features, when asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanations: Option<Vec<Vec<Contribution>>>,
    /// The explanation method, when explained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation_method: Option<String>,
    /// Milliseconds spent fitting and scoring.
    pub compute_ms: f64,
    /// Whether this came from the cache.
    #[serde(default)]
    pub cached: bool,
    /// Columns sent that the model does not take (left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_columns: Vec<String>,
}

/// What a detection request came to.
#[derive(Debug)]
pub enum Outcome {
    /// Scored inline.
    Done(Box<Detection>),
    /// Too costly for the budget: a background task will do it.
    Queued(Box<Task>),
}

/// The detection body of a `detect` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetectJob {
    /// The task.
    pub task_id: TaskId,
    /// What to score with.
    pub spec: DetectSpec,
    /// The rows (a [`Rows`] as JSON) in the blob store, in the model's columns.
    pub input: BlobKey,
    /// Columns sent that the model does not take.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_columns: Vec<String>,
}

/// Scores `rows` with `model`: scores, labels and (when asked) the top features of
/// each row. Runs on the calling thread; call it off the async runtime.
pub fn score_with(
    model: &Model,
    model_id: Option<ModelId>,
    rows: &Rows,
    explain: bool,
    training_scores: Option<Vec<f64>>,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<Detection, Problem> {
    let started = Instant::now();
    let x = rows.matrix();
    let scores = match training_scores {
        Some(s) => s,
        None => model.score_with_progress(x.view(), progress)?,
    };
    let labels = model.labels(&scores);
    let anomalies = labels.iter().filter(|&&l| l == 1).count();
    let metrics = crate::metrics::global();
    metrics.add(crate::metrics::Counter::RowsScored, scores.len() as u64);
    metrics.add(crate::metrics::Counter::AnomaliesFound, anomalies as u64);
    let (explanations, method) = if explain {
        let mut all = Vec::with_capacity(x.nrows());
        let mut method = None;
        for row in x.outer_iter() {
            let e = model.explain(row)?;
            method.get_or_insert(e.method.clone());
            all.push(
                e.features
                    .into_iter()
                    .take(EXPLAIN_FEATURES)
                    .map(|f| Contribution {
                        feature: f.feature,
                        contribution: f.contribution,
                    })
                    .collect(),
            );
        }
        (Some(all), method)
    } else {
        (None, None)
    };
    Ok(Detection {
        model_id,
        algorithm: model.algorithm().name().to_string(),
        rows: x.nrows(),
        features: x.ncols(),
        threshold: model.threshold(),
        anomalies,
        scores,
        labels,
        explanations,
        explanation_method: method,
        compute_ms: started.elapsed().as_secs_f64() * 1e3,
        cached: false,
        ignored_columns: Vec::new(),
    })
}

/// A model ready to score: loaded, or to be fitted on the rows.
enum Ready {
    Stored(ModelId, Arc<Model>),
    Fit(FitSpec),
}

/// The scorer `spec` names, and the rows as it takes them (a stored model's columns, by
/// name) with the columns it leaves out.
async fn ready(
    services: &Services,
    tenant: &TenantId,
    spec: &DetectSpec,
    rows: Rows,
) -> Result<(Ready, Rows, Vec<String>), Problem> {
    match &spec.scorer {
        ScorerSpec::Stored {
            model_id,
            threshold,
        } => {
            let (_, model) = models::load(services, tenant, model_id).await?;
            let (rows, ignored) = rows.for_model(model.feature_names())?;
            let model = match threshold {
                Some(t) => Arc::new((*model).clone().with_threshold(ThresholdRule::Score(*t))?),
                None => model,
            };
            Ok((Ready::Stored(model_id.clone(), model), rows, ignored))
        }
        ScorerSpec::Fit(fit) => Ok((Ready::Fit(fit.clone()), rows, Vec::new())),
    }
}

/// Work predicted to take less than this runs on the async thread that received it: a
/// hand-off to the blocking pool would cost more than the work.
const INLINE_MS: f64 = 0.5;

/// Fits (when asked) and scores: off the async runtime, unless predicted to take under
/// [`INLINE_MS`].
async fn compute(
    ready: Ready,
    rows: Arc<Rows>,
    explain: bool,
    predicted_ms: f64,
    progress: impl Fn(f64) + Send + Sync + 'static,
) -> Result<Detection, Problem> {
    let work = move || match ready {
        Ready::Stored(id, model) => score_with(&model, Some(id), &rows, explain, None, &progress),
        Ready::Fit(fit) => {
            let options = fit.options(rows.columns.clone())?;
            let fitted = Model::fit_with_progress(rows.matrix().view(), &options, &progress)?;
            score_with(
                &fitted.model,
                None,
                &rows,
                explain,
                Some(fitted.training_scores),
                &|_| {},
            )
        }
    };
    if predicted_ms < INLINE_MS {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Problem::internal(format!("detection stopped: {e}")))?
}

fn cache_key(spec: &DetectSpec, rows: &Rows) -> String {
    let mut h = Sha256::new();
    h.update(b"detect-v2\0");
    h.update(serde_json::to_vec(spec).unwrap_or_default());
    h.update(b"\0");
    for c in &rows.columns {
        h.update(c.as_bytes());
        h.update(b"\0");
    }
    for r in &rows.rows {
        for v in r {
            h.update(v.to_le_bytes());
        }
    }
    format!("detect:{}", hex::encode(h.finalize()))
}

/// A generous guess at an inline answer's bytes for `rows` rows: a score and a label
/// each, and five features' names and shares each when explained.
fn answer_bytes(rows: usize, explain: bool) -> usize {
    rows.saturating_mul(if explain { 24 + 5 * 64 } else { 24 })
        .saturating_add(1024)
}

/// The predicted cost of scoring `rows` with `ready` (fitting first when it fits), after
/// checking a fit's parameters against their caps.
fn predicted_ms(ready: &Ready, rows: &Rows, explain: bool) -> Result<f64, Problem> {
    let (n, d) = (rows.len(), rows.columns.len());
    let predicted = match ready {
        Ready::Stored(_, m) => cost::predict_ms(m.algorithm(), false, n, d, m.training().rows),
        Ready::Fit(f) => {
            let algorithm = Algorithm::with_params(&f.algorithm, &f.params)?;
            cost::check_fit(&algorithm, n, d)?;
            cost::predict_ms(&algorithm, true, n, d, n)
        }
    };
    Ok(if explain { predicted * 2.0 } else { predicted })
}

/// Publishes `anomaly.detected` when a detection found anomalies.
pub async fn announce(
    services: &Services,
    tenant: &TenantId,
    correlation_id: &str,
    detection: &Detection,
    task_id: Option<&TaskId>,
) -> Result<(), Problem> {
    if detection.anomalies == 0 {
        return Ok(());
    }
    let rows: Vec<usize> = detection
        .labels
        .iter()
        .enumerate()
        .filter(|(_, &l)| l == 1)
        .map(|(i, _)| i)
        .take(EVENT_ROWS)
        .collect();
    let max_score = detection
        .scores
        .iter()
        .cloned()
        .fold(f64::NEG_INFINITY, f64::max);
    services
        .publish(
            tenant,
            EventType::AnomalyDetected,
            correlation_id,
            serde_json::json!({
                "model_id": detection.model_id,
                "task_id": task_id,
                "algorithm": detection.algorithm,
                "rows_scored": detection.rows,
                "anomalies": detection.anomalies,
                "anomaly_rows": rows,
                "max_score": max_score,
                "threshold": detection.threshold,
            }),
        )
        .await?;
    Ok(())
}

/// Detects anomalies in `rows`: from the cache, inline, or (over budget) as a task.
pub async fn detect(
    services: &Services,
    tenant: &TenantId,
    correlation_id: &str,
    rows: Rows,
    spec: DetectSpec,
) -> Result<Outcome, Problem> {
    let started = Instant::now();
    let outcome = detect_now_or_queue(services, tenant, correlation_id, rows, spec).await?;
    if matches!(outcome, Outcome::Done(_)) {
        crate::metrics::global().detect_latency(started.elapsed().as_secs_f64());
    }
    Ok(outcome)
}

async fn detect_now_or_queue(
    services: &Services,
    tenant: &TenantId,
    correlation_id: &str,
    rows: Rows,
    spec: DetectSpec,
) -> Result<Outcome, Problem> {
    let (ready, rows, ignored) = ready(services, tenant, &spec, rows).await?;
    let predicted = predicted_ms(&ready, &rows, spec.explain)?;
    let answer = answer_bytes(rows.len(), spec.explain);
    if predicted > services.settings.detect_budget_ms as f64 || answer > INLINE_RESULT_BYTES {
        // Slow work, or an answer past what a response carries: a task, whose result is
        // answered with a download URL when large.
        cost::check_task(predicted)?;
        tracing::info!(
            predicted_ms = predicted,
            budget_ms = services.settings.detect_budget_ms,
            "detection goes to a task"
        );
        let task = submit(services, tenant, correlation_id, rows, spec, ignored).await?;
        return Ok(Outcome::Queued(Box::new(task)));
    }
    let key = cache_key(&spec, &rows);
    if let Some(bytes) = services.cache.get_cached(tenant, &key).await? {
        if let Ok(mut hit) = serde_json::from_slice::<Detection>(&bytes) {
            hit.cached = true;
            hit.ignored_columns = ignored;
            announce(services, tenant, correlation_id, &hit, None).await?;
            return Ok(Outcome::Done(Box::new(hit)));
        }
    }
    let mut detection = compute(ready, Arc::new(rows), spec.explain, predicted, |_| {}).await?;
    detection.ignored_columns = ignored;
    if let Ok(bytes) = serde_json::to_vec(&detection) {
        if let Err(e) = services
            .cache
            .put_cached(tenant, &key, &bytes, services.settings.cache_ttl_secs)
            .await
        {
            tracing::warn!(error = %e, "could not cache a detection");
        }
    }
    announce(services, tenant, correlation_id, &detection, None).await?;
    Ok(Outcome::Done(Box::new(detection)))
}

/// Queues a detection as a task: the rows go to the blob store, the job carries the key.
pub async fn submit(
    services: &Services,
    tenant: &TenantId,
    correlation_id: &str,
    rows: Rows,
    spec: DetectSpec,
    ignored_columns: Vec<String>,
) -> Result<Task, Problem> {
    let task = Task::new(tenant.clone(), TaskKind::Detect, correlation_id);
    let input = BlobKey::for_tenant(tenant, &["inputs", &format!("{}.json", task.id)])
        .map_err(|e| Problem::internal(e.to_string()))?;
    let bytes = serde_json::to_vec(&rows).map_err(|e| Problem::internal(e.to_string()))?;
    services.blobs.put_blob(&input, bytes).await?;
    let job = DetectJob {
        task_id: task.id.clone(),
        spec,
        input,
        ignored_columns,
    };
    jobs::submit(services, task, jobs::JobKind::Detect, &job).await
}

/// Runs a `detect` job's work: score the stored rows, store the result, announce
/// anomalies. Returns the result's blob key.
pub async fn run_job(
    services: &Services,
    tenant: &TenantId,
    correlation_id: &str,
    job: &DetectJob,
    progress: impl Fn(f64) + Send + Sync + 'static,
) -> Result<(BlobKey, Detection), jobs::JobError> {
    let bytes = services
        .blobs
        .get_blob(&job.input)
        .await
        .map_err(jobs::JobError::Retry)?
        .ok_or_else(|| {
            jobs::JobError::Fail(Problem::not_found("the task's input rows are gone"))
        })?;
    let rows: Rows = serde_json::from_slice(&bytes)
        .map_err(|e| jobs::JobError::Fail(Problem::invalid_data(format!("stored input: {e}"))))?;
    let (ready, rows, _) = ready(services, tenant, &job.spec, rows)
        .await
        .map_err(jobs::JobError::from)?;
    let mut detection = compute(
        ready,
        Arc::new(rows),
        job.spec.explain,
        f64::INFINITY,
        progress,
    )
    .await
    .map_err(jobs::JobError::from)?;
    detection.ignored_columns = job.ignored_columns.clone();
    let result = result_key(tenant, &job.task_id);
    let body = serde_json::to_vec(&detection)
        .map_err(|e| jobs::JobError::Fail(Problem::internal(e.to_string())))?;
    services
        .blobs
        .put_blob(&result, body)
        .await
        .map_err(jobs::JobError::Retry)?;
    announce(
        services,
        tenant,
        correlation_id,
        &detection,
        Some(&job.task_id),
    )
    .await
    .map_err(jobs::JobError::from)?;
    Ok((result, detection))
}

/// Where a detection task's result is stored.
pub fn result_key(tenant: &TenantId, task: &TaskId) -> BlobKey {
    BlobKey::for_tenant(tenant, &["results", &format!("{task}.json")])
        .expect("a task id is a valid key part")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scorer_needs_exactly_one_source() {
        assert!(scorer(None, None, None, None, None, None).is_err());
        let id = ModelId::new();
        assert!(scorer(
            Some(id.clone()),
            Some("iforest".into()),
            None,
            None,
            None,
            None
        )
        .is_err());
        assert!(scorer(Some(id.clone()), None, None, Some(0.1), None, None).is_err());
        assert!(matches!(
            scorer(Some(id), None, None, None, Some(0.5), None),
            Ok(ScorerSpec::Stored {
                threshold: Some(_),
                ..
            })
        ));
        assert!(matches!(
            scorer(None, Some("ecod".into()), None, Some(0.05), None, Some(3)),
            Ok(ScorerSpec::Fit(_))
        ));
        assert!(scorer(None, Some("ecod".into()), None, Some(0.9), None, None).is_err());
    }

    #[test]
    fn cache_keys_change_with_any_input() {
        let rows = Rows::new(vec![vec![1.0, 2.0]], None).unwrap();
        let spec = DetectSpec {
            scorer: ScorerSpec::Fit(FitSpec {
                algorithm: "iforest".into(),
                params: Default::default(),
                contamination: None,
                threshold: None,
                seed: 0,
            }),
            explain: false,
        };
        let k = cache_key(&spec, &rows);
        let mut other = rows.clone();
        other.rows[0][1] = 2.000001;
        assert_ne!(k, cache_key(&spec, &other));
        let mut explained = spec.clone();
        explained.explain = true;
        assert_ne!(k, cache_key(&explained, &rows));
        assert_eq!(k, cache_key(&spec, &rows.clone()));
    }
}
