//! The task lifecycle around a delivery, shared by the worker's jobs and the batch's
//! chunks: what became of a delivery ([`Handled`]), the retry back-off and its count,
//! handing a task back or failing it with its event, and progress events.
//!
//! Every status change is a compare-and-set on the task's version (see
//! [`worker`](crate::service::worker)), so exactly one delivery moves a task on.

use crate::domain::payload::{TaskCancelled, TaskFailed, TaskProgress};
use crate::domain::{Event, Task, TaskStatus, TenantId};
use crate::ids::TaskId;
use crate::ports::{Delivery, StoreError};
use crate::service::uses::{UsesEvents, UsesSettings, UsesTasks};
use crate::service::Problem;

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Done with (completed, failed for good, or a duplicate): delete the message.
    Done,
    /// Leave the message to come back after its visibility timeout.
    Retry(String),
}

/// How long a delivery to retry stays hidden before it comes back: 30 s after the first
/// receive, doubling with each receive, at most 15 minutes (rather than the queue's long
/// visibility timeout, which is sized for the longest job).
pub fn retry_backoff_secs(receive_count: u32) -> u32 {
    30u32
        .saturating_mul(1 << receive_count.clamp(1, 6).saturating_sub(1))
        .min(900)
}

/// Counts a delivery left for the queue (the `receive_count`-th) as a retry, unless it
/// was the last the queue makes: its task was failed, and the message goes to the
/// dead-letter queue.
pub fn count_retry(services: &impl UsesSettings, receive_count: u32) {
    if receive_count < services.settings().max_receives {
        crate::metrics::global().add(crate::metrics::Counter::JobsRetried, 1);
    }
}

/// After a delivery failed in a way a retry may mend: hands its task back for the next
/// delivery, or, when this was the last delivery the queue makes (the message goes to
/// the dead-letter queue next), fails the task with `error`. A task left `queued` with
/// no message would wait forever; one left `running` is found by the scheduler.
pub(crate) async fn give_back(
    services: &(impl UsesTasks + UsesEvents + UsesSettings),
    task: &Task,
    delivery: &Delivery,
    error: &str,
) {
    if delivery.receive_count >= services.settings().max_receives {
        fail(
            services,
            task,
            &format!("{error} (after {} deliveries)", delivery.receive_count),
        )
        .await;
    } else {
        requeue(services, task).await;
    }
}

/// Hands a task this delivery holds back to the queue's next delivery (`running` →
/// `queued`), so a retry need not wait out the lease. Best effort: if the write fails or
/// the task changed meanwhile, the lease still frees it.
async fn requeue(services: &impl UsesTasks, task: &Task) {
    let Ok(requeued) = task.transition(TaskStatus::Queued) else {
        return;
    };
    if let Err(e) = services.tasks().update_task(&requeued).await {
        tracing::warn!(task_id = %task.id, error = %e, "the task was not handed back; its lease will free it");
    }
}

/// Marks `task` failed with `error` and publishes `task.failed` (unless it finished
/// meanwhile).
pub async fn fail(services: &impl UsesEvents, task: &Task, error: &str) {
    if let Err(e) = mark_failed(services, task, error, None).await {
        tracing::warn!(task_id = %task.id, error = %e, "could not mark the task failed")
    }
}

/// Writes `task` failed with `error` together with its `task.failed` event (whose payload
/// also carries `extra`): `Ok(false)` if the task may not fail (it finished), `Conflict`
/// if it changed since it was read.
pub(crate) async fn mark_failed(
    services: &impl UsesEvents,
    task: &Task,
    error: &str,
    chunk: Option<u32>,
) -> Result<bool, StoreError> {
    let Ok(mut failed) = task.transition(TaskStatus::Failed) else {
        return Ok(false);
    };
    failed.error = Some(error.to_string());
    let payload = TaskFailed {
        chunk,
        ..TaskFailed::of(&failed, error)
    };
    services
        .events()
        .publish_with_task(&failed, &payload)
        .await?;
    crate::metrics::global().add(crate::metrics::Counter::JobsFailed, 1);
    tracing::warn!(task_id = %failed.id, error, "task failed");
    Ok(true)
}

/// Publishes `task.progress`; a failure is logged, not returned (progress is advice;
/// the task record holds the truth).
pub(crate) async fn publish_progress(
    services: &impl UsesEvents,
    task: &Task,
    payload: &TaskProgress,
) {
    if let Err(e) = services
        .events()
        .publish(&task.tenant, &task.correlation_id, payload)
        .await
    {
        tracing::warn!(error = %e, "progress event not stored");
    }
}

/// Cancels a queued or running task (a running worker's output is then discarded): the
/// status and its `task.cancelled` event (under the request's `correlation_id`) are
/// written in one transaction, as completion and failure are. A finished task is 409; a
/// task that keeps changing under the write is 409 after three tries.
pub async fn cancel(
    services: &(impl UsesTasks + UsesEvents),
    tenant: &TenantId,
    id: &TaskId,
    correlation_id: &str,
) -> Result<Task, Problem> {
    for _ in 0..3 {
        let task = services
            .tasks()
            .get_task(tenant, id)
            .await?
            .ok_or_else(|| Problem::not_found(format!("task {id} not found")))?;
        let cancelled = task.transition(TaskStatus::Cancelled).map_err(|_| {
            Problem::conflict(format!(
                "task {} is {} and cannot be cancelled",
                task.id,
                task.status.as_str()
            ))
        })?;
        let event = Event::of(
            tenant.clone(),
            correlation_id,
            &TaskCancelled::of(&cancelled),
        )
        .map_err(|e| Problem::internal(format!("encoding an event: {e}")))?;
        match services.events().append_with_task(&event, &cancelled).await {
            Ok(()) => return Ok(cancelled),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Problem::conflict("the task kept changing; retry"))
}

#[cfg(test)]
mod tests {
    use super::retry_backoff_secs;

    #[test]
    fn retries_back_off_by_doubling_up_to_fifteen_minutes() {
        let waits: Vec<u32> = (0..=8).map(retry_backoff_secs).collect();
        assert_eq!(waits, vec![30, 30, 60, 120, 240, 480, 900, 900, 900]);
    }
}
