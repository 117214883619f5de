//! The scheduler's sweep (an EventBridge schedule on AWS, a timer locally): tasks whose
//! worker stopped reporting are sent again, or failed once their attempts are spent, and
//! expired records are deleted.

use crate::domain::TaskStatus;
use crate::ports::Job;
use crate::service::uses::{UsesEvents, UsesQueue, UsesSettings, UsesSweeper, UsesTasks};
use crate::service::{tasks, Problem};
use crate::time::Timestamp;
use serde::Serialize;

/// Tasks looked at per sweep at most.
const BATCH: usize = 100;
/// Expired records deleted per sweep at most.
const SWEEP: usize = 1000;

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Stale tasks sent to a worker again.
    pub requeued: usize,
    /// Stale tasks failed, their attempts spent.
    pub failed: usize,
    /// Expired records deleted.
    pub expired: usize,
}

/// One sweep.
pub async fn sweep(
    services: &(impl UsesTasks + UsesEvents + UsesQueue + UsesSweeper + UsesSettings),
) -> Result<Report, Problem> {
    let mut report = Report::default();
    let cutoff = Timestamp::now().plus_seconds(-i64::from(services.settings().task_lease_secs));
    for stale in services.tasks().stale_running(cutoff, BATCH).await? {
        // The listing may lag (a DynamoDB index): decide on a fresh read.
        let Some(task) = services.tasks().get_task(&stale.tenant, &stale.id).await? else {
            continue;
        };
        if task.status != TaskStatus::Running || task.updated_at >= cutoff {
            continue;
        }
        let job: Option<Job> = task
            .job
            .clone()
            .and_then(|j| serde_json::from_value(j).ok());
        match job {
            Some(job) if task.attempts < services.settings().max_attempts => {
                // Send first: a duplicate message is harmless (the worker acknowledges a
                // task it finds finished or held), a task queued with no message is lost.
                if let Err(e) = services.queue().send(std::slice::from_ref(&job)).await {
                    tracing::error!(task_id = %task.id, error = %e, "could not send a lost task's job again");
                    continue;
                }
                let Ok(queued) = task.transition(TaskStatus::Queued) else {
                    continue;
                };
                if services.tasks().update_task(&queued).await.is_err() {
                    continue; // changed meanwhile: its worker is alive after all
                }
                tracing::warn!(task_id = %task.id, attempts = task.attempts, "worker lost; task queued again");
                report.requeued += 1;
            }
            _ => {
                let why = format!(
                    "the worker stopped responding after {} attempt(s)",
                    task.attempts
                );
                tasks::fail(services, &task, &why).await;
                report.failed += 1;
            }
        }
    }
    report.expired = services.sweeper().sweep_expired(SWEEP).await?;
    tracing::info!(
        requeued = report.requeued,
        failed = report.failed,
        expired = report.expired,
        "sweep done"
    );
    Ok(report)
}
