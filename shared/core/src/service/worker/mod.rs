//! The worker: a job's body decoded once (`body.rs`), one dispatch point for every job
//! kind (`dispatch.rs`), the lifecycle of one delivery around it (`lifecycle.rs`), and
//! progress reported from the work (`reporter.rs`). This module takes the deliveries of
//! each lane and holds them to a deadline.
//!
//! Delivery is at least once, so handling is idempotent: a finished task is left alone,
//! a task another live worker holds is retried later, a stale one is taken over, and
//! every status change is a compare-and-set on the task's version, so exactly one
//! delivery completes it. Progress is published as `task.progress` at every tenth of the
//! work (and once when it starts) and the task is touched regularly, so the scheduler
//! can tell a lost worker from a slow one.

mod body;
mod dispatch;
mod lifecycle;
mod reporter;

pub use reporter::Reporter;

use crate::ports::Delivery;
use crate::service::tasks::{count_retry, give_back, Handled};
use crate::service::Services;
use crate::service::{alerts, batch};
use lifecycle::handle_inner;
use std::sync::Arc;
use tracing::Instrument;

/// The queues work arrives on, each with its own workers (functions on AWS, pools on
/// the local server) and concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Training, large detections and profiles, reports, batch planners: [`handle`].
    Jobs,
    /// Batch chunks: [`batch::handle_chunk`].
    Chunks,
    /// Alert deliveries: [`alerts::deliver`].
    Alerts,
}

impl Lane {
    /// The lane's queue.
    pub fn queue(self, services: &Services) -> Arc<dyn crate::ports::JobQueue> {
        match self {
            Lane::Jobs => services.queue.clone(),
            Lane::Chunks => services.chunks.clone(),
            Lane::Alerts => services.alert_queue.clone(),
        }
    }

    /// Handles one delivery from the lane's queue.
    pub async fn handle(self, services: &Services, delivery: &Delivery) -> Handled {
        self.handle_within(services, delivery, None).await
    }

    /// As [`Lane::handle`], stopping the work at `deadline` (the Lambda function's
    /// timeout less [`JOB_DEADLINE_MARGIN_SECS`](crate::limits::JOB_DEADLINE_MARGIN_SECS)):
    /// a job still running then is handed back, as [`handle_within`] says; a chunk is
    /// stopped and left to come back, as [`batch::handle_chunk`] says. A delivery whose
    /// deadline has already passed is not started: it is sent again as a new message
    /// (spending none of its receives) and acknowledged.
    pub async fn handle_within(
        self,
        services: &Services,
        delivery: &Delivery,
        deadline: Option<tokio::time::Instant>,
    ) -> Handled {
        if deadline.is_some_and(|at| at <= tokio::time::Instant::now()) {
            tracing::warn!(job_id = %delivery.job.job_id, "no time left to start the job before the deadline; sending it again");
            return match self
                .queue(services)
                .send_after(std::slice::from_ref(&delivery.job), 0)
                .await
            {
                Ok(()) => Handled::Done,
                Err(e) => Handled::Retry(format!(
                    "no time left to start it, nor to send it again: {e}"
                )),
            };
        }
        match self {
            Lane::Jobs => handle_within(services, delivery, deadline).await,
            Lane::Chunks => batch::handle_chunk(services, delivery, deadline).await,
            Lane::Alerts => alerts::deliver(services, delivery).await,
        }
    }
}

/// Handles one delivered job. Never panics outward: a panic in the job's work is caught
/// and counted as a failed attempt.
pub async fn handle(services: &Services, delivery: &Delivery) -> Handled {
    handle_within(services, delivery, None).await
}

/// As [`handle`], with a deadline: a job still running at `deadline` is stopped and its
/// task handed back (`queued` for the next delivery, or `failed` saying so when this was
/// the last delivery the queue makes), and the delivery is left to come back alone, so
/// the function's timeout never fails it (nor, in a batch, the jobs beside it).
///
/// The deadline is watched while the work runs ([`Reporter`]), so the task is handed
/// back by the same code that started it. Work in a blocking thread cannot be
/// interrupted from outside: it stops at its next progress report
/// ([`Reporter::report`]; scoring reports after every block of rows, a kNN, LOF, ECOD or
/// COPOD fit only when it ends, reading a CSV not at all), and its result is thrown away.
pub async fn handle_within(
    services: &Services,
    delivery: &Delivery,
    deadline: Option<tokio::time::Instant>,
) -> Handled {
    let services2 = services.clone();
    let delivery2 = delivery.clone();
    let held = Held::default();
    let held2 = held.clone();
    let span = tracing::info_span!(
        "job",
        job_id = %delivery.job.job_id,
        kind = %delivery.job.kind,
        tenant = %delivery.job.tenant,
        correlation_id = %delivery.job.correlation_id,
        task_id = tracing::field::Empty,
        receive = delivery.receive_count
    );
    let outcome = tokio::spawn(
        async move { handle_inner(&services2, &delivery2, &held2, deadline).await }
            .instrument(span),
    )
    .await;
    if matches!(outcome, Ok(Handled::Retry(_)) | Err(_)) {
        count_retry(services, delivery.receive_count);
    }
    match outcome {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(job_id = %delivery.job.job_id, error = %e, "the job's handler panicked");
            let error = format!("the handler panicked: {e}");
            let holding = held.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(reporter) = holding {
                let current = reporter.task.lock().await.clone();
                give_back(services, &current, delivery, &error).await;
            }
            Handled::Retry(error)
        }
    }
}

/// The reporter of the task a delivery started, holding the task as it last wrote it:
/// after a panic, the delivery hands the task back instead of leaving it `running`
/// until its lease ends.
type Held = Arc<std::sync::Mutex<Option<Reporter>>>;
