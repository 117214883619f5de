//! Background jobs: submitting one (a task record, then the job on the queue), the kinds
//! there are, and how a job's failure is classed.

use crate::claim_check;
use crate::domain::{Task, TaskKind, TaskStatus, TenantId};
use crate::ids::JobId;
use crate::ports::{Job, StoreError};
use crate::service::uses::{UsesBlobs, UsesQueue, UsesTasks};
use crate::service::Problem;
use serde::Serialize;

/// What a job on a queue does: the work of a task (on the jobs queue), or one chunk of a
/// batch (on the chunks queue). Its name on the queue is the task kind's, or `chunk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// The work of a task of this kind.
    Task(TaskKind),
    /// One chunk of a batch.
    Chunk,
}

impl JobKind {
    /// The name on the queue.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Task(kind) => kind.as_str(),
            JobKind::Chunk => "chunk",
        }
    }

    /// The kind called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "chunk" => Some(JobKind::Chunk),
            _ => TaskKind::parse(name).map(JobKind::Task),
        }
    }

    /// A new job of this kind carrying `body`.
    pub fn job<B: Serialize>(
        self,
        tenant: &TenantId,
        correlation_id: &str,
        body: &B,
    ) -> Result<Job, Problem> {
        Ok(Job {
            job_id: JobId::new(),
            tenant: tenant.clone(),
            kind: self.as_str().to_string(),
            correlation_id: correlation_id.to_string(),
            body: serde_json::to_value(body)
                .map_err(|e| Problem::internal(format!("encoding a job body: {e}")))?,
        })
    }
}

/// Why a job did not finish.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Retrying cannot help (bad input, missing model): the task fails now.
    #[error("{0}")]
    Fail(Problem),
    /// A backing service failed: the job goes back on the queue.
    #[error("{0}")]
    Retry(StoreError),
    /// The work ran past its delivery's deadline (the function's timeout less a margin):
    /// the job goes back on the queue.
    #[error("the job ran past the worker's deadline")]
    Overran,
}

impl From<Problem> for JobError {
    fn from(p: Problem) -> Self {
        if p.is_retryable() {
            JobError::Retry(StoreError::backend("run a job", p))
        } else {
            JobError::Fail(p)
        }
    }
}

impl From<JobError> for Problem {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Fail(p) => p,
            JobError::Retry(e) => Problem::from(e),
            e @ JobError::Overran => Problem::unavailable(e.to_string()),
        }
    }
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Backend { .. } | StoreError::Conflict(_) => JobError::Retry(e),
            other => JobError::Fail(Problem::from(other)),
        }
    }
}

/// Stores `task` (queued) and sends its job, named for the task's kind. The job envelope is kept on the task so the
/// scheduler can send it again; a body too large for a message travels by reference.
/// If the job cannot be sent the task is marked failed and the caller gets 503.
pub async fn submit<B: Serialize>(
    services: &(impl UsesTasks + UsesBlobs + UsesQueue),
    mut task: Task,
    body: &B,
) -> Result<Task, Problem> {
    let kind = JobKind::Task(task.kind);
    let job = kind.job(&task.tenant, &task.correlation_id, body)?;
    let checked = claim_check::check_in(&job, services.blobs()).await?;
    task.job = Some(serde_json::to_value(&checked).map_err(|e| Problem::internal(e.to_string()))?);
    services.tasks().create_task(&task).await?;
    if let Err(e) = services.queue().send(std::slice::from_ref(&checked)).await {
        tracing::error!(error = %e, task_id = %task.id, "could not enqueue a job");
        if let Ok(mut failed) = task.transition(TaskStatus::Failed) {
            failed.error = Some("the job could not be queued".into());
            let _ = services.tasks().update_task(&failed).await;
        }
        return Err(Problem::from(e));
    }
    tracing::info!(task_id = %task.id, job_id = %checked.job_id, kind = kind.as_str(), "job queued");
    Ok(task)
}
