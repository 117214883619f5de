//! Fitting and scoring: the scorer a request names made ready, its cost predicted, the
//! rows scored (and explained) on or off the async runtime, the cache key of a result,
//! and a queued `detect` job run to its stored result.

use super::announce;
use super::request::{DetectSpec, ScorerSpec};
use crate::domain::TenantId;
use crate::ids::{ModelId, TaskId};
use crate::ports::BlobKey;
use crate::service::input::{FitSpec, Rows};
use crate::service::uses::{UsesBlobs, UsesEvents, UsesLoadedModels, UsesModels, UsesSettings};
use crate::service::{cost, jobs, models, Problem};
use nomaly_detect::{Algorithm, Model, ThresholdRule};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Instant;

/// Features named per row in an explanation.
const EXPLAIN_FEATURES: usize = 5;

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
pub(super) enum Ready {
    Stored(ModelId, Arc<Model>),
    Fit(FitSpec),
}

/// The scorer `spec` names, and the rows as it takes them (a stored model's columns, by
/// name) with the columns it leaves out.
pub(super) async fn ready(
    services: &(impl UsesModels + UsesBlobs + UsesSettings + UsesLoadedModels),
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
pub(super) async fn compute(
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

pub(super) fn cache_key(spec: &DetectSpec, rows: &Rows) -> String {
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
pub(super) fn answer_bytes(rows: usize, explain: bool) -> usize {
    rows.saturating_mul(if explain { 24 + 5 * 64 } else { 24 })
        .saturating_add(1024)
}

/// The predicted cost of scoring `rows` with `ready` (fitting first when it fits), after
/// checking a fit's parameters against their caps.
pub(super) fn predicted_ms(ready: &Ready, rows: &Rows, explain: bool) -> Result<f64, Problem> {
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

/// Runs a `detect` job's work: score the stored rows, store the result, announce
/// anomalies. Returns the result's blob key.
pub async fn run_job(
    services: &(impl UsesEvents + UsesModels + UsesBlobs + UsesSettings + UsesLoadedModels),
    tenant: &TenantId,
    correlation_id: &str,
    job: &DetectJob,
    progress: impl Fn(f64) + Send + Sync + 'static,
) -> Result<(BlobKey, Detection), jobs::JobError> {
    let bytes = services
        .blobs()
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
        .blobs()
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
