//! Batch scoring of a large CSV object across many workers.
//!
//! `POST /v1/batch` names a source (the caller's dataset, an object under the caller's
//! own prefix, or on the local server a file under `<data-dir>/imports/`), a model and an
//! output name, and gets a `batch` task. Its job, the planner, runs on the jobs queue:
//! it splits the source into line-aligned byte ranges (reading a small window per chunk,
//! never the whole object), records the chunk count on the task, and sends one chunk
//! job per range on the chunks queue, which has its own workers and concurrency.
//!
//! A chunk worker reads only its own range, scores it, writes one part object
//! (`batches/<output>/part-<index>.csv`, a `score,label` line per row) and then counts
//! its chunk done on the task with a compare-and-set on the task's version: a bit per
//! chunk, so a redelivered chunk is never counted twice. The write that sets the last
//! bit also completes the task, after writing `batches/<output>/manifest.json`; as
//! completing is one conditional write, exactly one delivery completes the task and
//! publishes `task.completed`, however often chunks are delivered. A chunk that cannot
//! be scored (bad rows, a missing model), or that fails on its last delivery, fails the
//! task naming the chunk; the other chunks then find the task finished and stop.

use crate::domain::{BatchProgress, EventType, Task, TaskKind, TaskStatus, TenantId};
use crate::ids::{DatasetId, JobId, ModelId, TaskId};
use crate::limits::{BATCH_MAX_CHUNKS, BATCH_MAX_HEADER_BYTES};
use crate::ports::{BlobKey, Delivery, Job, StoreError};
use crate::service::chunks::{self, BlobSource, ByteSource, FileSource, Plan, PlanError};
use crate::service::jobs::{self, JobError, JobKind};
use crate::service::tasks::Handled;
use crate::service::{ingest, models, Problem, Services};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

/// The job kind of chunk jobs, on the chunks queue.
pub const CHUNK_JOB: &str = "chunk";
/// Conditional writes a chunk tries before leaving its count to a redelivery (which
/// finds its part written and only counts it): with the back-off capped at 128 ms,
/// several seconds of contention on one task item.
const RECORD_ROUNDS: u32 = 96;

/// `POST /v1/batch`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// What to score: exactly one of its fields.
    pub source: SourceSpec,
    /// The model that scores it.
    pub model_id: ModelId,
    /// The output's name: parts and manifest go under `batches/<output>/` in the
    /// tenant's storage.
    pub output: String,
}

/// Where a batch reads from, as asked.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// One of the caller's datasets.
    pub dataset_id: Option<String>,
    /// An object key under the caller's own prefix (`tenants/<tenant>/...`).
    pub key: Option<String>,
    /// A file under the local server's `<data-dir>/imports/` (local server only).
    pub file: Option<String>,
}

/// Where a batch reads from, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// An object in the blob store, under the tenant's prefix.
    Blob(BlobKey),
    /// A file under the imports folder, by its path there.
    File(String),
}

impl Source {
    /// Checks what the caller asked for: a dataset must be theirs, a key must lie
    /// under their prefix (else 403), a file must be a plain path under the imports
    /// folder of a server that has one.
    pub async fn resolve(
        services: &Services,
        tenant: &TenantId,
        spec: &SourceSpec,
    ) -> Result<Source, Problem> {
        match (&spec.dataset_id, &spec.key, &spec.file) {
            (Some(id), None, None) => {
                let id = DatasetId::parse(id)
                    .map_err(|e| Problem::invalid_parameter(format!("source.dataset_id: {e}")))?;
                services
                    .datasets
                    .get_dataset(tenant, &id)
                    .await?
                    .ok_or_else(|| Problem::not_found(format!("dataset {id} not found")))?;
                Ok(Source::Blob(ingest::upload_key(tenant, &id)))
            }
            (None, Some(key), None) => {
                let parsed = BlobKey::parse(key).ok().filter(|k| k.belongs_to(tenant));
                parsed.map(Source::Blob).ok_or_else(|| {
                    Problem::forbidden(format!(
                        "source.key must be an object under your own prefix tenants/{tenant}/, \
                         its parts made of A-Z a-z 0-9 . _ - (rename objects with other characters)"
                    ))
                })
            }
            (None, None, Some(file)) => {
                if services.settings.imports_dir.is_none() {
                    return Err(Problem::forbidden(
                        "file sources are read only by the local server (from <data-dir>/imports/<tenant>/); \
                         upload the data and use source.dataset_id or source.key",
                    ));
                }
                let ok = !file.is_empty()
                    && file.split('/').all(|part| {
                        (1..=128).contains(&part.len())
                            && part != "."
                            && part != ".."
                            && part.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'
                            })
                    });
                if !ok {
                    return Err(Problem::forbidden(format!(
                        "source.file `{file}` must be a path under your imports folder \
                         (parts of A-Z a-z 0-9 . _ - separated by /, no . or ..)"
                    )));
                }
                Ok(Source::File(file.clone()))
            }
            _ => Err(Problem::invalid_parameter(
                "source takes exactly one of dataset_id, key and file",
            )),
        }
    }

    /// Refuses a stored source that is not `tenant`'s (a job that names another tenant's
    /// object is never read, whatever put it on the queue).
    pub fn check(&self, tenant: &TenantId) -> Result<(), Problem> {
        match self {
            Source::Blob(key) if !key.belongs_to(tenant) => Err(Problem::forbidden(format!(
                "the source {} is not under tenants/{tenant}/",
                key.as_str()
            ))),
            _ => Ok(()),
        }
    }

    /// The source, read by range. A file is read from the tenant's own imports folder,
    /// `<imports>/<tenant>/`, and only when its real path (links followed) stays inside
    /// that folder.
    pub fn open<'a>(
        &'a self,
        services: &'a Services,
        tenant: &TenantId,
    ) -> Result<Box<dyn ByteSource + 'a>, Problem> {
        match self {
            Source::Blob(key) => Ok(Box::new(BlobSource::new(services.blobs.as_ref(), key))),
            Source::File(path) => {
                let dir =
                    services.settings.imports_dir.as_ref().ok_or_else(|| {
                        Problem::forbidden("this deployment reads no local files")
                    })?;
                let own = dir.join(tenant.as_str());
                let missing = || {
                    Problem::not_found(format!(
                        "there is no file imports/{tenant}/{path} (each tenant reads its own folder, <data-dir>/imports/<tenant>/)"
                    ))
                };
                let real = std::fs::canonicalize(own.join(path)).map_err(|_| missing())?;
                let root = std::fs::canonicalize(&own).map_err(|_| missing())?;
                if !real.starts_with(&root) {
                    return Err(Problem::forbidden(format!(
                        "imports/{tenant}/{path} leads out of your imports folder"
                    )));
                }
                Ok(Box::new(FileSource::new(
                    real,
                    format!("imports/{tenant}/{path}"),
                )))
            }
        }
    }

    /// The source as the API shows it.
    pub fn view(&self) -> serde_json::Value {
        match self {
            Source::Blob(key) => serde_json::json!({ "key": key.as_str() }),
            Source::File(path) => serde_json::json!({ "file": path }),
        }
    }
}

/// The planner's job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchJob {
    /// Its task.
    pub task_id: TaskId,
    /// What to score.
    pub source: Source,
    /// The model.
    pub model_id: ModelId,
    /// The output's name.
    pub output: String,
    /// Target chunk size in bytes.
    pub chunk_bytes: u64,
}

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

/// A batch writes under `batches/<output>/<task id>/`: two batches given the same output
/// name never write into each other's parts.
fn output_key(
    tenant: &TenantId,
    output: &str,
    task: &TaskId,
    file: &str,
) -> Result<BlobKey, Problem> {
    BlobKey::for_tenant(tenant, &["batches", output, task.as_str(), file])
        .map_err(|e| Problem::invalid_parameter(format!("output: {e}")))
}

/// Where chunk `index` of batch `task` is written.
pub fn part_key(
    tenant: &TenantId,
    output: &str,
    task: &TaskId,
    index: u32,
) -> Result<BlobKey, Problem> {
    output_key(tenant, output, task, &format!("part-{index:05}.csv"))
}

/// Where the manifest of batch `task` is written.
pub fn manifest_key(tenant: &TenantId, output: &str, task: &TaskId) -> Result<BlobKey, Problem> {
    output_key(tenant, output, task, "manifest.json")
}

/// Checks a batch request and queues its planner: 202 material. The source must exist
/// and fit in [`BATCH_MAX_CHUNKS`] chunks, and the model must be the caller's.
pub async fn submit(
    services: &Services,
    tenant: &TenantId,
    correlation_id: &str,
    request: BatchRequest,
) -> Result<Task, Problem> {
    let source = Source::resolve(services, tenant, &request.source).await?;
    let task = Task::new(tenant.clone(), TaskKind::Batch, correlation_id);
    manifest_key(tenant, &request.output, &task.id)?;
    models::record(services, tenant, &request.model_id).await?;
    let size = source
        .open(services, tenant)?
        .size()
        .await?
        .ok_or_else(|| Problem::not_found("the source does not exist (or is not uploaded yet)"))?;
    let chunk_bytes = services.settings.batch_chunk_bytes;
    if size.div_ceil(chunk_bytes) > BATCH_MAX_CHUNKS {
        return Err(Problem::too_large(format!(
            "the source has {size} bytes; a batch takes at most {BATCH_MAX_CHUNKS} chunks of {chunk_bytes} bytes"
        )));
    }
    let job = BatchJob {
        task_id: task.id.clone(),
        source,
        model_id: request.model_id,
        output: request.output,
        chunk_bytes,
    };
    jobs::submit(services, task, JobKind::Batch, &job).await
}

/// The planner's first step: splits the source and checks its header against the model,
/// so that a source the model cannot score fails once, not once per chunk.
pub async fn plan(
    services: &Services,
    tenant: &TenantId,
    job: &BatchJob,
) -> Result<Plan, JobError> {
    job.source.check(tenant)?;
    let source = job.source.open(services, tenant)?;
    let plan = chunks::plan(source.as_ref(), job.chunk_bytes)
        .await
        .map_err(|e| match e {
            PlanError::Store(e) => JobError::Retry(e),
            PlanError::Missing(what) => {
                JobError::Fail(Problem::not_found(format!("the source {what} is gone")))
            }
            other => JobError::Fail(Problem::invalid_data(other.to_string())),
        })?;
    if plan.chunks.len() as u64 > BATCH_MAX_CHUNKS {
        return Err(JobError::Fail(Problem::too_large(format!(
            "the source splits into {} chunks; at most {BATCH_MAX_CHUNKS}",
            plan.chunks.len()
        ))));
    }
    if plan.header.len() > BATCH_MAX_HEADER_BYTES {
        return Err(JobError::Fail(Problem::invalid_data(format!(
            "the header line has {} bytes; a batch takes at most {BATCH_MAX_HEADER_BYTES}",
            plan.header.len()
        ))));
    }
    let (_, model) = models::load(services, tenant, &job.model_id).await?;
    chunks::check_features(&model, &plan.header)?;
    Ok(plan)
}

/// The planner's last step: sends the jobs of the chunks not done yet.
pub async fn send_chunks(
    services: &Services,
    tenant: &TenantId,
    correlation_id: &str,
    job: &BatchJob,
    plan: &Plan,
    progress: &BatchProgress,
) -> Result<usize, JobError> {
    let mut sent = 0;
    let pending: Vec<u32> = progress.pending().collect();
    for group in pending.chunks(100) {
        let mut messages = Vec::with_capacity(group.len());
        for &index in group {
            let Some(chunk) = plan.chunks.get(index as usize) else {
                continue;
            };
            let body = ChunkJob {
                task_id: job.task_id.clone(),
                index,
                start: chunk.start,
                end: chunk.end,
                header: plan.header.clone(),
                source: job.source.clone(),
                model_id: job.model_id.clone(),
                output: job.output.clone(),
            };
            messages.push(Job {
                job_id: JobId::new(),
                tenant: tenant.clone(),
                kind: CHUNK_JOB.to_string(),
                correlation_id: correlation_id.to_string(),
                body: serde_json::to_value(&body)
                    .map_err(|e| JobError::Fail(Problem::internal(e.to_string())))?,
            });
        }
        services
            .chunks
            .send(&messages)
            .await
            .map_err(JobError::Retry)?;
        sent += messages.len();
    }
    tracing::info!(task_id = %job.task_id, chunks = plan.chunks.len(), sent, "chunk jobs queued");
    Ok(sent)
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
        Ok(c) if delivery.job.kind == CHUNK_JOB => c,
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
            if delivery.receive_count >= services.settings.max_receives {
                // The queue dead-letters it next: the batch cannot finish.
                let why = format!("{e} (after {} deliveries)", delivery.receive_count);
                fail(services, &tenant, &chunk, &why).await;
            }
            Handled::Retry(e.to_string())
        }
    }
}

async fn run_chunk(
    services: &Services,
    tenant: &TenantId,
    chunk: &ChunkJob,
) -> Result<(), JobError> {
    let Some(task) = services.tasks.get_task(tenant, &chunk.task_id).await? else {
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
    if let Some(written) = services.blobs.get_blob(&part).await? {
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
        .blobs
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
    services: &Services,
    tenant: &TenantId,
    chunk: &ChunkJob,
    rows: u64,
    anomalies: u64,
) -> Result<(), JobError> {
    for round in 0..RECORD_ROUNDS {
        if round > 0 {
            crate::service::streams::backoff(round).await;
        }
        let Some(task) = services.tasks.get_task(tenant, &chunk.task_id).await? else {
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
            match services.tasks.update_task(&next).await {
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

async fn announce(services: &Services, task: &Task) {
    let Some(b) = &task.batch else { return };
    let payload = serde_json::json!({
        "task_id": task.id, "kind": task.kind, "progress": task.progress,
        "chunks": {"done": b.done, "total": b.total},
    });
    crate::service::tasks::publish_progress(services, task, payload).await;
}

/// The last chunk: writes the manifest, then completes the task in one conditional
/// write with its event. `false` if the task changed meanwhile (read again).
async fn complete(
    services: &Services,
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
        .blobs
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
    let payload = serde_json::json!({
        "task_id": done.id,
        "kind": done.kind,
        "model_id": chunk.model_id,
        "rows": progress.rows,
        "anomalies": progress.anomalies,
        "chunks": progress.total,
        "manifest": manifest_key.as_str(),
        "result_url": format!("/v1/tasks/{}/result", done.id),
    });
    done.batch = Some(progress);
    match services
        .publish_with_task(&done, EventType::TaskCompleted, payload)
        .await
    {
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
async fn fail(services: &Services, tenant: &TenantId, chunk: &ChunkJob, why: &str) {
    let error = format!(
        "chunk {} (bytes {}..{}) failed: {why}",
        chunk.index, chunk.start, chunk.end
    );
    for round in 0..RECORD_ROUNDS {
        if round > 0 {
            crate::service::streams::backoff(round).await;
        }
        let task = match services.tasks.get_task(tenant, &chunk.task_id).await {
            Ok(Some(t)) if !t.status.is_terminal() => t,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the task to fail it");
                continue;
            }
        };
        let extra = serde_json::Map::from_iter([("chunk".into(), chunk.index.into())]);
        match crate::service::tasks::mark_failed(services, &task, &error, extra).await {
            Ok(_) => return,
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => tracing::warn!(error = %e, "could not mark the batch failed"),
        }
    }
}

/// Parts listed (with a download URL each) per answer of [`result`].
pub const PARTS_PER_PAGE: usize = 1000;

/// A completed batch's manifest, with a download URL for each of its parts from `offset`
/// (at most [`PARTS_PER_PAGE`]; `next_offset` names the next page, `null` after the last).
pub async fn result(
    services: &Services,
    task: &Task,
    offset: usize,
) -> Result<serde_json::Value, Problem> {
    let key = task
        .result
        .as_deref()
        .and_then(|k| BlobKey::parse(k).ok())
        .filter(|k| k.belongs_to(&task.tenant))
        .ok_or_else(|| Problem::internal(format!("task {} has no manifest key", task.id)))?;
    let bytes = services
        .blobs
        .get_blob(&key)
        .await?
        .ok_or_else(|| Problem::not_found("the batch's manifest was deleted"))?;
    let mut manifest: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Problem::internal(format!("the batch's manifest: {e}")))?;
    let ttl = services.settings.upload_url_ttl_secs;
    let parts = manifest["parts"].as_array().cloned().unwrap_or_default();
    let next = offset.saturating_add(PARTS_PER_PAGE);
    let mut urls = Vec::new();
    for part in parts.iter().skip(offset).take(PARTS_PER_PAGE) {
        // A part outside the task's tenant is never signed, whatever the manifest says.
        let Some(part) = part
            .as_str()
            .and_then(|p| BlobKey::parse(p).ok())
            .filter(|k| k.belongs_to(&task.tenant))
        else {
            continue;
        };
        let signed = services
            .uploads
            .presign_download(&part, "text/csv", ttl)
            .await?;
        urls.push(serde_json::json!({ "key": part.as_str(), "url": signed.url }));
    }
    manifest["parts"] = serde_json::Value::Array(urls);
    manifest["offset"] = serde_json::json!(offset);
    manifest["next_offset"] = serde_json::json!((next < parts.len()).then_some(next));
    manifest["manifest"] = serde_json::json!(key.as_str());
    Ok(manifest)
}
