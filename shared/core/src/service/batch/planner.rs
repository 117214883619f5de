//! Submitting and planning a batch: the request checked and its planner queued, the
//! source split into chunks and checked against the model, one chunk job sent per chunk,
//! and where the batch's parts and manifest are written.

use super::chunk::ChunkJob;
use super::source::{BatchRequest, Source};
use crate::domain::{BatchProgress, Task, TaskKind, TenantId};
use crate::ids::{ModelId, TaskId};
use crate::limits::{BATCH_MAX_CHUNKS, BATCH_MAX_HEADER_BYTES};
use crate::ports::BlobKey;
use crate::service::chunks::{self, Plan, PlanError};
use crate::service::jobs::{self, JobError, JobKind};
use crate::service::uses::{
    UsesBlobs, UsesChunks, UsesDatasets, UsesLoadedModels, UsesModels, UsesQueue, UsesSettings,
    UsesTasks,
};
use crate::service::{models, Problem};
use serde::{Deserialize, Serialize};

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
    services: &(impl UsesTasks + UsesModels + UsesDatasets + UsesBlobs + UsesQueue + UsesSettings),
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
    let chunk_bytes = services.settings().batch_chunk_bytes;
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
    jobs::submit(services, task, &job).await
}

/// The planner's first step: splits the source and checks its header against the model,
/// so that a source the model cannot score fails once, not once per chunk.
pub async fn plan(
    services: &(impl UsesModels + UsesBlobs + UsesSettings + UsesLoadedModels),
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
    services: &impl UsesChunks,
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
            messages.push(JobKind::Chunk.job(tenant, correlation_id, &body)?);
        }
        services
            .chunks()
            .send(&messages)
            .await
            .map_err(JobError::Retry)?;
        sent += messages.len();
    }
    tracing::info!(task_id = %job.task_id, chunks = plan.chunks.len(), sent, "chunk jobs queued");
    Ok(sent)
}
