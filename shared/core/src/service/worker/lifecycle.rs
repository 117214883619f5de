//! One delivery's lifecycle: the job checked out of its claim check, its task started
//! (or left alone when finished, held by a live worker, or its tenant at its cap),
//! the work run with a [`Reporter`], and the task completed, failed or handed back.

use super::body::JobBody;
use super::dispatch::run;
use super::reporter::Reporter;
use super::Held;
use crate::claim_check;
use crate::domain::payload::{Outcome, TaskCompleted, TaskProgress};
use crate::domain::{Task, TaskKind, TaskStatus};
use crate::ids::TaskId;
use crate::ports::{Delivery, StoreError};
use crate::service::jobs::{JobError, JobKind};
use crate::service::tasks::{fail, give_back, Handled};
use crate::service::uses::{
    UsesBlobs, UsesEvents, UsesLoadedModels, UsesModels, UsesQueue, UsesSettings, UsesTasks,
};
use crate::service::{backtest, detection, report, streams, Problem, Services};
use crate::time::Timestamp;
use std::sync::atomic::Ordering;

/// What a finished job leaves on its task.
pub(super) struct Output {
    pub(super) result: String,
    pub(super) outcome: Outcome,
}

/// The task id of a body that does not decode, to fail its task with the reason.
fn task_id_of(body: &serde_json::Value) -> Option<TaskId> {
    body.get("task_id")
        .and_then(|v| v.as_str())
        .and_then(|s| TaskId::parse(s).ok())
}

pub(super) async fn handle_inner(
    services: &Services,
    delivery: &Delivery,
    held: &Held,
    deadline: Option<tokio::time::Instant>,
) -> Handled {
    let job = match claim_check::check_out(&delivery.job, services.blobs.as_ref()).await {
        Ok(job) => job,
        Err(StoreError::Backend { .. }) => {
            return Handled::Retry("could not read the job body".into())
        }
        Err(e) => {
            tracing::error!(job_id = %delivery.job.job_id, error = %e, "dropping a job whose body is gone");
            return Handled::Done;
        }
    };
    let Some(JobKind::Task(kind)) = JobKind::parse(&job.kind) else {
        tracing::error!("dropping a job of unknown kind");
        return Handled::Done;
    };
    // Decoded once: a body that does not decode fails its task, if it names one.
    let body = JobBody::decode(kind, &job.body)
        .map_err(|e| Problem::invalid_data(format!("job body: {e}")));
    let task_id = match &body {
        Ok(body) => body.task_id().clone(),
        Err(_) => match task_id_of(&job.body) {
            Some(id) => id,
            None => {
                tracing::error!("dropping a job without a task id");
                return Handled::Done;
            }
        },
    };
    let tenant = job.tenant.clone();
    tracing::Span::current().record("task_id", tracing::field::display(&task_id));
    let task = match services.tasks.get_task(&tenant, &task_id).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            tracing::warn!(task_id = %task_id, "the job's task does not exist; dropping it");
            return Handled::Done;
        }
        Err(e) => return Handled::Retry(format!("reading the task: {e}")),
    };
    if task.status == TaskStatus::Queued {
        if let Some(handled) = defer_at_cap(services, delivery, &tenant).await {
            return handled;
        }
    }
    let lease = i64::from(services.settings.task_lease_secs);
    let started = match task.status {
        s if s.is_terminal() => {
            tracing::info!(task_id = %task_id, status = s.as_str(), "the task is finished; duplicate delivery");
            return Handled::Done;
        }
        // A planned batch's planner only sends the chunks not done yet, so a redelivery
        // of it (after a failed send) takes over at once rather than after the lease.
        TaskStatus::Running if kind == TaskKind::Batch && task.batch.is_some() => task.take_over(),
        TaskStatus::Running
            if task.updated_at.plus_seconds(lease) > Timestamp::now()
                && services
                    .settings
                    .orphaned_before
                    .is_none_or(|t| task.updated_at >= t) =>
        {
            return Handled::Retry("another worker is running the task".into());
        }
        TaskStatus::Running => task.take_over(),
        _ => task.transition(TaskStatus::Running),
    };
    let Ok(mut started) = started else {
        return Handled::Done;
    };
    if started.attempts > services.settings.max_attempts {
        // `started` was never stored: fail the task as it is stored.
        fail(
            services,
            &task,
            &format!("gave up after {} attempts", started.attempts - 1),
        )
        .await;
        return Handled::Done;
    }
    started.error = None;
    match services.tasks.update_task(&started).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return Handled::Retry("the task changed; will look again".into())
        }
        Err(e) => return Handled::Retry(format!("starting the task: {e}")),
    }
    let reporter = Reporter::new(services.clone(), started.clone());
    *held.lock().unwrap_or_else(|p| p.into_inner()) = Some(reporter.clone());
    // Tell subscribers it started: a client that got 202 sees work begin at once.
    let payload = TaskProgress {
        attempt: Some(started.attempts),
        ..TaskProgress::of(&started)
    };
    if let Err(e) = services
        .events()
        .publish(&tenant, &job.correlation_id, &payload)
        .await
    {
        tracing::warn!(error = %e, "start event not stored");
    }
    let work = async {
        match &body {
            Ok(body) => {
                run(
                    services,
                    body,
                    &tenant,
                    &job.correlation_id,
                    reporter.clone(),
                )
                .await
            }
            Err(problem) => Err(JobError::Fail(problem.clone())),
        }
    };
    let result = reporter.clone().drive(work, deadline).await;
    let current = reporter.task.lock().await.clone();
    match result {
        Ok(Some(output)) => complete(services, &current, output, delivery).await,
        // A batch's planner hands the task to its chunks, the last of which completes it.
        Ok(None) => Handled::Done,
        Err(JobError::Fail(problem)) => {
            fail(services, &current, &problem.detail).await;
            Handled::Done
        }
        Err(e) => {
            // A backing service failed, or the deadline came: unless someone else
            // holds the task now, it is handed back.
            if matches!(e, JobError::Overran) {
                tracing::warn!("{e}; handing it back");
                crate::metrics::global().add(crate::metrics::Counter::JobsOverran, 1);
            }
            if !reporter.lost.load(Ordering::Relaxed) {
                give_back(services, &current, delivery, &e.to_string()).await;
            }
            Handled::Retry(e.to_string())
        }
    }
}

/// Holds a job back when its tenant already has
/// [`MAX_RUNNING_JOBS_PER_TENANT`](crate::limits::MAX_RUNNING_JOBS_PER_TENANT) tasks
/// running: sends it again to come back after
/// [`DEFERRED_JOB_DELAY_SECS`](crate::limits::DEFERRED_JOB_DELAY_SECS), as a new message
/// (so waiting spends none of its receives), and answers `Done` for this delivery. `None`
/// lets the job start.
///
/// The count and the start are not one transaction, so workers starting jobs of one
/// tenant at the same instant may pass the cap by as many as race. When the count or
/// the send fails, the job starts: the cap is for fairness, and a job must never be
/// stranded by it.
async fn defer_at_cap(
    services: &(impl UsesTasks + UsesQueue + UsesSettings),
    delivery: &Delivery,
    tenant: &crate::domain::TenantId,
) -> Option<Handled> {
    let cap = services.settings().max_running_jobs_per_tenant.max(1) as usize;
    let running = match services.tasks().count_running(tenant, cap).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not count the tenant's running tasks; starting the job");
            return None;
        }
    };
    if running < cap {
        return None;
    }
    let delay = services.settings().deferred_job_delay_secs.min(900);
    // The job as it came (a large body stays in the blob store, by reference).
    match services
        .queue()
        .send_after(std::slice::from_ref(&delivery.job), delay)
        .await
    {
        Ok(()) => {
            crate::metrics::global().add(crate::metrics::Counter::JobsDeferred, 1);
            tracing::info!(
                running,
                delay_secs = delay,
                "the tenant runs as many jobs as it may; the job is queued again for later"
            );
            Some(Handled::Done)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not queue the job again; starting it");
            None
        }
    }
}

async fn complete(
    services: &(impl UsesTasks + UsesEvents + UsesModels + UsesBlobs + UsesSettings + UsesLoadedModels),
    task: &Task,
    output: Output,
    delivery: &Delivery,
) -> Handled {
    let Ok(mut done) = task.transition(TaskStatus::Completed) else {
        return Handled::Done;
    };
    done.result = Some(output.result);
    let payload = TaskCompleted {
        task_id: done.id.clone(),
        outcome: output.outcome,
    };
    match services.events().publish_with_task(&done, &payload).await {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) => {
            // Cancelled, or finished by another delivery, while this one worked.
            discard_if_cancelled(services, task, &done).await;
            return Handled::Done;
        }
        Err(e) => {
            // Nothing the task shows changed: the next delivery finds the work (a model
            // is stored under the job's own id) and completes it.
            let error = format!("completing the task: {e}");
            give_back(services, task, delivery, &error).await;
            return Handled::Retry(error);
        }
    }
    crate::metrics::global().add(crate::metrics::Counter::JobsSucceeded, 1);
    tracing::info!(task_id = %done.id, "task completed");
    Handled::Done
}

/// After losing the final CAS: if the task was cancelled, what this delivery made is
/// removed, so a cancelled training leaves no model and a cancelled detection no result.
async fn discard_if_cancelled(
    services: &(impl UsesTasks + UsesModels + UsesBlobs + UsesLoadedModels),
    task: &Task,
    done: &Task,
) {
    let Ok(Some(now)) = services.tasks().get_task(&task.tenant, &task.id).await else {
        return;
    };
    if now.status != TaskStatus::Cancelled {
        tracing::info!(task_id = %task.id, status = now.status.as_str(), "the task changed while running; its outcome stands");
        return;
    }
    let result = done.result.clone().unwrap_or_default();
    let outcome = match task.kind {
        crate::domain::TaskKind::Train => match crate::ids::ModelId::parse(&result) {
            Ok(id) => crate::service::models::delete(services, &task.tenant, &id)
                .await
                .err(),
            Err(_) => None,
        },
        crate::domain::TaskKind::Detect => {
            let key = detection::result_key(&task.tenant, &task.id);
            services
                .blobs()
                .delete_blob(&key)
                .await
                .err()
                .map(Problem::from)
        }
        crate::domain::TaskKind::Report => services
            .blobs()
            .delete_blob(&report::report_key(&task.tenant, &task.id))
            .await
            .err()
            .map(Problem::from),
        crate::domain::TaskKind::Backtest => {
            let mut failed = None;
            for key in [
                backtest::result_key(&task.tenant, &task.id),
                streams::end_key(&task.tenant, &task.id),
            ] {
                if let Err(e) = services.blobs().delete_blob(&key).await {
                    failed = Some(Problem::from(e));
                }
            }
            failed
        }
        // A batch completes in its last chunk, never here.
        crate::domain::TaskKind::Profile | crate::domain::TaskKind::Batch => None,
    };
    match outcome {
        Some(p) => {
            tracing::warn!(task_id = %task.id, problem = %p, "cancelled task's output not removed")
        }
        None => {
            tracing::info!(task_id = %task.id, "task was cancelled while running; its output is discarded")
        }
    }
}
