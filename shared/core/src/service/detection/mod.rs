//! Detection: score rows with a stored model or with a model fitted on the rows
//! themselves. Inline when the predicted cost fits the time budget ("process
//! immediately" in `docs/architecture.md`), otherwise as a background task; identical
//! requests on an unchanged model come from the cache; anomalies found are published.
//!
//! What a request asks for and how it is read (`request.rs`), and fitting, scoring and
//! running a queued detection (`scoring.rs`). This module decides between the cache,
//! inline work and a task, queues tasks and announces anomalies.

mod request;
mod scoring;

pub use request::{scorer, DetectQuery, DetectRequest, DetectSpec, ScorerSpec};
pub use scoring::{result_key, run_job, score_with, Contribution, DetectJob, Detection};

use crate::domain::payload::{AnomalyDetected, RowAnomalies};
use crate::domain::{Task, TaskKind, TenantId};
use crate::ids::TaskId;
use crate::limits::INLINE_RESULT_BYTES;
use crate::ports::BlobKey;
use crate::service::input::Rows;
use crate::service::uses::{Detects, UsesBlobs, UsesEvents, UsesQueue, UsesTasks};
use crate::service::{cost, jobs, Problem};
use scoring::{answer_bytes, cache_key, compute, predicted_ms, ready};
use std::sync::Arc;
use std::time::Instant;

/// Anomalous row indices listed in an `anomaly.detected` event at most.
const EVENT_ROWS: usize = 100;

/// What a detection request came to.
#[derive(Debug)]
pub enum Outcome {
    /// Scored inline.
    Done(Box<Detection>),
    /// Too costly for the budget: a background task will do it.
    Queued(Box<Task>),
}

/// Publishes `anomaly.detected` when a detection found anomalies.
pub async fn announce(
    services: &impl UsesEvents,
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
    let payload = AnomalyDetected::Rows(RowAnomalies {
        model_id: detection.model_id.clone(),
        task_id: task_id.cloned(),
        algorithm: detection.algorithm.clone(),
        rows_scored: detection.rows,
        anomalies: detection.anomalies,
        anomaly_rows: rows,
        max_score,
        threshold: detection.threshold,
    });
    services
        .events()
        .publish(tenant, correlation_id, &payload)
        .await?;
    Ok(())
}

/// Detects anomalies in `rows`: from the cache, inline, or (over budget) as a task.
pub async fn detect(
    services: &impl Detects,
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
    services: &impl Detects,
    tenant: &TenantId,
    correlation_id: &str,
    rows: Rows,
    spec: DetectSpec,
) -> Result<Outcome, Problem> {
    let (ready, rows, ignored) = ready(services, tenant, &spec, rows).await?;
    let predicted = predicted_ms(&ready, &rows, spec.explain)?;
    let answer = answer_bytes(rows.len(), spec.explain);
    if predicted > services.settings().detect_budget_ms as f64 || answer > INLINE_RESULT_BYTES {
        // Slow work, or an answer past what a response carries: a task, whose result is
        // answered with a download URL when large.
        cost::check_task(predicted)?;
        tracing::info!(
            predicted_ms = predicted,
            budget_ms = services.settings().detect_budget_ms,
            "detection goes to a task"
        );
        let task = submit(services, tenant, correlation_id, rows, spec, ignored).await?;
        return Ok(Outcome::Queued(Box::new(task)));
    }
    let key = cache_key(&spec, &rows);
    if let Some(bytes) = services.cache().get_cached(tenant, &key).await? {
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
            .cache()
            .put_cached(tenant, &key, &bytes, services.settings().cache_ttl_secs)
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
    services: &(impl UsesTasks + UsesBlobs + UsesQueue),
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
    services.blobs().put_blob(&input, bytes).await?;
    let job = DetectJob {
        task_id: task.id.clone(),
        spec,
        input,
        ignored_columns,
    };
    jobs::submit(services, task, &job).await
}
