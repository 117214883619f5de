//! One chunk's work: a delivered chunk job scored within its deadline, its part written,
//! its count recorded on the task with a compare-and-set, and the batch completed by the
//! last chunk or failed by one that cannot be scored.

use super::planner::{manifest_key, part_key};
use super::source::Source;
use crate::domain::payload::{ChunksDone, Outcome, TaskCompleted, TaskProgress};
use crate::domain::{BatchProgress, Task, TaskStatus, TenantId};
use crate::ids::{ModelId, TaskId};
use crate::ports::{Delivery, StoreError};
use crate::service::chunks;
use crate::service::jobs::{JobError, JobKind};
use crate::service::tasks::Handled;
use crate::service::uses::{
    UsesBlobs, UsesEvents, UsesLoadedModels, UsesModels, UsesSettings, UsesTasks,
};
use crate::service::{models, Problem, Services};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

/// Conditional writes a chunk tries before leaving its count to a redelivery (which
/// finds its part written and only counts it): with the back-off capped at 128 ms,
/// several seconds of contention on one task item.
const RECORD_ROUNDS: u32 = 96;

/// One chunk's job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkJob {
    /// The batch's task.
    pub task_id: TaskId,
    /// The chunk's number, from 0.
    pub index: u32,
    /// Its first byte.
    pub start: u64,
    /// One past its last byte.
    pub end: u64,
    /// The source's header line.
    pub header: String,
    /// What to score.
    pub source: Source,
    /// The model.
    pub model_id: ModelId,
    /// The output's name.
    pub output: String,
}

/// Handles one delivered chunk job (the chunks queue's worker). Never panics outward.
///
/// A chunk still running at `deadline` is stopped (its task aborted; scoring already in
/// a blocking thread runs to its end, seconds at most, and its part is never written)
/// and left to come back, or on its last delivery fails its batch, as any retry does.
pub async fn handle_chunk(
    services: &Services,
    delivery: &Delivery,
    deadline: Option<tokio::time::Instant>,
) -> Handled {
    let chunk: ChunkJob = match serde_json::from_value(delivery.job.body.clone()) {
        Ok(c) if JobKind::parse(&delivery.job.kind) == Some(JobKind::Chunk) => c,
        Ok(_) | Err(_) => {
            tracing::error!(job_id = %delivery.job.job_id, kind = %delivery.job.kind, "dropping a message that is not a chunk job");
            return Handled::Done;
        }
    };
    let tenant = delivery.job.tenant.clone();
    let span = tracing::info_span!(
        "chunk",
        job_id = %delivery.job.job_id,
        tenant = %tenant,
        correlation_id = %delivery.job.correlation_id,
        task_id = %chunk.task_id,
        index = chunk.index,
        receive = delivery.receive_count
    );
    let (services2, tenant2, chunk2) = (services.clone(), tenant.clone(), chunk.clone());
    let mut work = tokio::spawn(
        async move { run_chunk(&services2, &tenant2, &chunk2).await }.instrument(span),
    );
    let joined = match deadline {
        None => (&mut work).await,
        Some(at) => match tokio::time::timeout_at(at, &mut work).await {
            Ok(joined) => joined,
            Err(_) => {
                // Stop it (at its next await) and wait for that: nothing of this
                // delivery writes after its answer.
                work.abort();
                match work.await {
                    Err(e) if e.is_cancelled() => {
                        crate::metrics::global().add(crate::metrics::Counter::JobsOverran, 1);
                        Ok(Err(JobError::Overran))
                    }
                    finished => finished,
                }
            }
        },
    };
    let outcome = joined.unwrap_or_else(|e| {
        Err(JobError::Retry(StoreError::backend(
            "score a chunk (the handler panicked)",
            e,
        )))
    });
    match outcome {
        Ok(()) => Handled::Done,
        Err(JobError::Fail(problem)) => {
            fail(services, &tenant, &chunk, &problem.detail).await;
            Handled::Done
        }
        Err(e) => {
            crate::service::tasks::count_retry(services, delivery.receive_count);
            if delivery.receive_count >= services.settings().max_receives {
                // The queue dead-letters it next: the batch cannot finish.
                let why = format!("{e} (after {} deliveries)", delivery.receive_count);
                fail(services, &tenant, &chunk, &why).await;
            }
            Handled::Retry(e.to_string())
        }
    }
}

async fn run_chunk(
    services: &(impl UsesTasks + UsesEvents + UsesModels + UsesBlobs + UsesSettings + UsesLoadedModels),
    tenant: &TenantId,
    chunk: &ChunkJob,
) -> Result<(), JobError> {
    let Some(task) = services.tasks().get_task(tenant, &chunk.task_id).await? else {
        tracing::warn!("the chunk's task does not exist; dropping it");
        return Ok(());
    };
    if task.status.is_terminal() {
        tracing::info!(
            status = task.status.as_str(),
            "the batch is finished; chunk skipped"
        );
        return Ok(());
    }
    let Some(progress) = &task.batch else {
        return Err(JobError::Retry(StoreError::Conflict(
            "the batch's plan is not recorded yet".into(),
        )));
    };
    if progress.is_done(chunk.index) {
        tracing::info!("chunk done already (a redelivery)");
        return Ok(());
    }
    let part = part_key(tenant, &chunk.output, &chunk.task_id, chunk.index)?;
    if let Some(written) = services.blobs().get_blob(&part).await? {
        // An earlier delivery scored the chunk and lost its count: count its part.
        let (rows, anomalies) = chunks::count_part(&written);
        tracing::info!(rows, "chunk scored already; counting its part");
        return record(services, tenant, chunk, rows, anomalies).await;
    }
    chunk.source.check(tenant)?;
    let source = chunk.source.open(services, tenant)?;
    let bytes = source
        .range(chunk.start, chunk.end)
        .await
        .map_err(JobError::Retry)?
        .ok_or_else(|| {
            JobError::Fail(Problem::not_found(format!(
                "the source {} is gone",
                source.describe()
            )))
        })?;
    if bytes.len() as u64 != chunk.end - chunk.start {
        return Err(JobError::Fail(Problem::conflict(format!(
            "the source {} changed while it was scored (read {} bytes, planned {})",
            source.describe(),
            bytes.len(),
            chunk.end - chunk.start
        ))));
    }
    let (_, model) = models::load(services, tenant, &chunk.model_id).await?;
    let header = chunk.header.clone();
    let scored = tokio::task::spawn_blocking(move || chunks::score_chunk(&model, &header, &bytes))
        .await
        .map_err(|e| JobError::Retry(StoreError::backend("score a chunk", e)))??;
    services
        .blobs()
        .put_blob(&part, scored.csv)
        .await
        .map_err(JobError::Retry)?;
    record(
        services,
        tenant,
        chunk,
        scored.rows as u64,
        scored.anomalies as u64,
    )
    .await
}

/// The task after a write that is not a status change: version bumped, touched now.
fn touched(task: &Task) -> Task {
    let mut next = task.clone();
    next.version += 1;
    next.updated_at = Timestamp::now();
    next
}

/// Counts the chunk done on its task (compare-and-set, re-read on a lost race); the
/// write that counts the last chunk writes the manifest and completes the task.
async fn record(
    services: &(impl UsesTasks + UsesEvents + UsesBlobs + UsesSettings),
    tenant: &TenantId,
    chunk: &ChunkJob,
    rows: u64,
    anomalies: u64,
) -> Result<(), JobError> {
    for round in 0..RECORD_ROUNDS {
        if round > 0 {
            crate::service::streams::backoff(round).await;
        }
        let Some(task) = services.tasks().get_task(tenant, &chunk.task_id).await? else {
            return Ok(());
        };
        if task.status.is_terminal() {
            return Ok(());
        }
        let Some(before) = task.batch.clone() else {
            return Err(JobError::Retry(StoreError::Conflict(
                "the batch's plan is not recorded".into(),
            )));
        };
        let mut progress = before.clone();
        if !progress.mark_done(chunk.index, rows, anomalies) {
            return Ok(());
        }
        let written = if progress.is_complete() {
            complete(services, tenant, chunk, &task, progress).await?
        } else {
            let mut next = touched(&task);
            next.progress = task.progress.max(progress.percent().min(99));
            let crossed = progress.percent() / 10 > before.percent() / 10;
            next.batch = Some(progress);
            match services.tasks().update_task(&next).await {
                Ok(()) => {
                    if crossed {
                        announce(services, &next).await;
                    }
                    true
                }
                Err(StoreError::Conflict(_)) => false,
                Err(e) => return Err(JobError::Retry(e)),
            }
        };
        if written {
            return Ok(());
        }
    }
    Err(JobError::Retry(StoreError::Conflict(format!(
        "chunk {} could not be counted after {RECORD_ROUNDS} rounds of concurrent writers",
        chunk.index
    ))))
}

async fn announce(services: &(impl UsesEvents + UsesSettings), task: &Task) {
    let Some(b) = &task.batch else { return };
    let payload = TaskProgress {
        chunks: Some(ChunksDone {
            done: b.done,
            total: b.total,
        }),
        ..TaskProgress::of(task)
    };
    crate::service::tasks::publish_progress(services, task, &payload).await;
}

/// The last chunk: writes the manifest, then completes the task in one conditional
/// write with its event. `false` if the task changed meanwhile (read again).
async fn complete(
    services: &(impl UsesEvents + UsesBlobs),
    tenant: &TenantId,
    chunk: &ChunkJob,
    task: &Task,
    progress: BatchProgress,
) -> Result<bool, JobError> {
    let manifest_key = manifest_key(tenant, &chunk.output, &task.id)?;
    let parts = (0..progress.total)
        .map(|i| part_key(tenant, &chunk.output, &task.id, i).map(|k| k.as_str().to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let manifest = serde_json::json!({
        "task_id": task.id,
        "model_id": chunk.model_id,
        "source": chunk.source.view(),
        "rows": progress.rows,
        "anomalies": progress.anomalies,
        "columns": ["score", "label"],
        "chunks": progress.total,
        "parts": parts,
    });
    let bytes = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| JobError::Fail(Problem::internal(e.to_string())))?;
    services
        .blobs()
        .put_blob(&manifest_key, bytes)
        .await
        .map_err(JobError::Retry)?;
    let running = if task.status == TaskStatus::Queued {
        task.transition(TaskStatus::Running)
    } else {
        Ok(task.clone())
    };
    let Ok(mut done) = running.and_then(|t| t.transition(TaskStatus::Completed)) else {
        return Ok(true);
    };
    done.result = Some(manifest_key.as_str().to_string());
    let payload = TaskCompleted {
        task_id: done.id.clone(),
        outcome: Outcome::Batch {
            model_id: chunk.model_id.clone(),
            rows: progress.rows,
            anomalies: progress.anomalies,
            chunks: progress.total,
            manifest: manifest_key.as_str().to_string(),
            result_url: format!("/v1/tasks/{}/result", done.id),
        },
    };
    done.batch = Some(progress);
    match services.events().publish_with_task(&done, &payload).await {
        Ok(_) => {
            crate::metrics::global().add(crate::metrics::Counter::JobsSucceeded, 1);
            tracing::info!(task_id = %done.id, "batch completed");
            Ok(true)
        }
        Err(StoreError::Conflict(_)) => Ok(false),
        Err(e) => Err(JobError::Retry(e)),
    }
}

/// Fails the chunk's task, naming the chunk (unless the task finished meanwhile).
async fn fail(
    services: &(impl UsesTasks + UsesEvents),
    tenant: &TenantId,
    chunk: &ChunkJob,
    why: &str,
) {
    let error = format!(
        "chunk {} (bytes {}..{}) failed: {why}",
        chunk.index, chunk.start, chunk.end
    );
    for round in 0..RECORD_ROUNDS {
        if round > 0 {
            crate::service::streams::backoff(round).await;
        }
        let task = match services.tasks().get_task(tenant, &chunk.task_id).await {
            Ok(Some(t)) if !t.status.is_terminal() => t,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the task to fail it");
                continue;
            }
        };
        match crate::service::tasks::mark_failed(services, &task, &error, Some(chunk.index)).await {
            Ok(_) => return,
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => tracing::warn!(error = %e, "could not mark the batch failed"),
        }
    }
}
