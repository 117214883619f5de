//! The worker: one dispatch point for every job kind, and the task lifecycle around it.
//!
//! Delivery is at least once, so handling is idempotent: a finished task is left alone,
//! a task another live worker holds is retried later, a stale one is taken over, and
//! every status change is a compare-and-set on the task's version, so exactly one
//! delivery completes it. Progress is published as `task.progress` at every tenth of the
//! work (and once when it starts) and the task is touched regularly, so the scheduler can tell a lost worker from a
//! slow one.

use crate::claim_check;
use crate::domain::{BatchProgress, EventType, Task, TaskStatus};
use crate::ids::TaskId;
use crate::ports::{Delivery, StoreError};
use crate::service::backtest::{self, BacktestJob};
use crate::service::batch::{self, BatchJob};
use crate::service::detection::{self, DetectJob};
use crate::service::ingest::{self, ProfileJob};
use crate::service::jobs::{JobError, JobKind};
use crate::service::report::{self, ReportJob};
use crate::service::tasks::{count_retry, fail, give_back, publish_progress, Handled};
use crate::service::training::{self, TrainJob};
use crate::service::{Problem, Services};
use crate::time::Timestamp;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tracing::Instrument;

/// The queues work arrives on, each with its own workers (functions on AWS, pools on
/// the local server) and concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Training, large detections and profiles, reports, batch planners: [`handle`].
    Jobs,
    /// Batch chunks: [`batch::handle_chunk`].
    Chunks,
}

impl Lane {
    /// The lane's queue.
    pub fn queue(self, services: &Services) -> Arc<dyn crate::ports::JobQueue> {
        match self {
            Lane::Jobs => services.queue.clone(),
            Lane::Chunks => services.chunks.clone(),
        }
    }

    /// Handles one delivery from the lane's queue.
    pub async fn handle(self, services: &Services, delivery: &Delivery) -> Handled {
        self.handle_within(services, delivery, None).await
    }

    /// As [`Lane::handle`], stopping the work at `deadline` (the Lambda function's
    /// timeout less [`JOB_DEADLINE_MARGIN_SECS`](crate::limits::JOB_DEADLINE_MARGIN_SECS)):
    /// a job still running then is handed back, as [`handle_within`] says, and a chunk
    /// is left to come back (its part is written once, whoever finishes it).
    pub async fn handle_within(
        self,
        services: &Services,
        delivery: &Delivery,
        deadline: Option<tokio::time::Instant>,
    ) -> Handled {
        match self {
            Lane::Jobs => handle_within(services, delivery, deadline).await,
            Lane::Chunks => {
                let work = batch::handle_chunk(services, delivery);
                match deadline {
                    None => work.await,
                    Some(at) => match tokio::time::timeout_at(at, work).await {
                        Ok(handled) => handled,
                        Err(_) => {
                            crate::metrics::global().add(crate::metrics::Counter::JobsOverran, 1);
                            count_retry(services, delivery.receive_count);
                            Handled::Retry(OVERRAN.into())
                        }
                    },
                }
            }
        }
    }
}

/// Why a delivery stopped at its deadline.
const OVERRAN: &str = "the job ran past the worker's deadline";

/// What a finished job leaves on its task.
struct Output {
    result: String,
    payload: serde_json::Value,
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
/// Work in a blocking thread cannot be interrupted from outside: it stops at its next
/// progress report ([`Reporter::report`]; scoring reports after every block of rows, a
/// nearest-neighbour or ECOD fit only when it ends), and its result is thrown away.
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
    let mut work = tokio::spawn(
        async move { handle_inner(&services2, &delivery2, &held2).await }.instrument(span),
    );
    let outcome = match deadline {
        None => (&mut work).await,
        Some(at) => match tokio::time::timeout_at(at, &mut work).await {
            Ok(outcome) => outcome,
            Err(_) => {
                work.abort();
                // Wait for the abort to land (at the job's next await), so the task it
                // holds is known and no longer written by it.
                match work.await {
                    Err(e) if e.is_cancelled() => return overran(services, delivery, &held).await,
                    // It finished (or panicked) before the abort landed.
                    outcome => outcome,
                }
            }
        },
    };
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

/// A job stopped at its deadline: its work is told to stop, and the task it started (if
/// this delivery still holds it) is handed back.
async fn overran(services: &Services, delivery: &Delivery, held: &Held) -> Handled {
    tracing::warn!(job_id = %delivery.job.job_id, "{OVERRAN}; handing it back");
    crate::metrics::global().add(crate::metrics::Counter::JobsOverran, 1);
    count_retry(services, delivery.receive_count);
    let holding = held.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(reporter) = holding {
        reporter.abandon();
        if !reporter.lost.load(Ordering::Relaxed) {
            let current = reporter.task.lock().await.clone();
            give_back(services, &current, delivery, OVERRAN).await;
        }
    }
    Handled::Retry(OVERRAN.into())
}

/// The reporter of the task a delivery started, holding the task as it last wrote it:
/// after a panic or at the deadline, the delivery hands the task back instead of leaving
/// it `running` until its lease ends.
type Held = Arc<std::sync::Mutex<Option<Reporter>>>;

fn task_id_of(body: &serde_json::Value) -> Option<TaskId> {
    body.get("task_id")
        .and_then(|v| v.as_str())
        .and_then(|s| TaskId::parse(s).ok())
}

async fn handle_inner(services: &Services, delivery: &Delivery, held: &Held) -> Handled {
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
    let Some(kind) = JobKind::parse(&job.kind) else {
        tracing::error!("dropping a job of unknown kind");
        return Handled::Done;
    };
    let Some(task_id) = task_id_of(&job.body) else {
        tracing::error!("dropping a job without a task id");
        return Handled::Done;
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
        TaskStatus::Running if kind == JobKind::Batch && task.batch.is_some() => task.take_over(),
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
    let payload = serde_json::json!({"task_id": started.id, "kind": started.kind, "progress": started.progress, "attempt": started.attempts});
    if let Err(e) = services
        .publish(
            &tenant,
            EventType::TaskProgress,
            &job.correlation_id,
            payload,
        )
        .await
    {
        tracing::warn!(error = %e, "start event not stored");
    }
    let work = run(
        services,
        kind,
        &job.body,
        &tenant,
        &job.correlation_id,
        reporter.clone(),
    );
    let result = reporter.clone().drive(work).await;
    let current = reporter.task.lock().await.clone();
    match result {
        Ok(Some(output)) => complete(services, &current, output, delivery).await,
        // A batch's planner hands the task to its chunks, the last of which completes it.
        Ok(None) => Handled::Done,
        Err(JobError::Fail(problem)) => {
            fail(services, &current, &problem.detail).await;
            Handled::Done
        }
        Err(JobError::Retry(e)) => {
            // Unless someone else holds the task now.
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
    services: &Services,
    delivery: &Delivery,
    tenant: &crate::domain::TenantId,
) -> Option<Handled> {
    let cap = services.settings.max_running_jobs_per_tenant.max(1) as usize;
    let running = match services.tasks.count_running(tenant, cap).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not count the tenant's running tasks; starting the job");
            return None;
        }
    };
    if running < cap {
        return None;
    }
    let delay = services.settings.deferred_job_delay_secs.min(900);
    // The job as it came (a large body stays in the blob store, by reference).
    match services
        .queue
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

async fn run(
    services: &Services,
    kind: JobKind,
    body: &serde_json::Value,
    tenant: &crate::domain::TenantId,
    correlation_id: &str,
    reporter: Reporter,
) -> Result<Option<Output>, JobError> {
    let bad_body =
        |e: serde_json::Error| JobError::Fail(Problem::invalid_data(format!("job body: {e}")));
    match kind {
        JobKind::Train => {
            let job: TrainJob = serde_json::from_value(body.clone()).map_err(bad_body)?;
            reporter.report(0.05);
            let r = reporter.clone();
            let record =
                training::run_job(services, tenant, &job, move |p| r.report(0.1 + 0.8 * p)).await?;
            Ok(Some(Output {
                result: record.id.to_string(),
                payload: serde_json::json!({
                    "model_id": record.id,
                    "algorithm": record.algorithm,
                    "training": record.training,
                }),
            }))
        }
        JobKind::Detect => {
            let job: DetectJob = serde_json::from_value(body.clone()).map_err(bad_body)?;
            reporter.report(0.05);
            let r = reporter.clone();
            let (key, detection) =
                detection::run_job(services, tenant, correlation_id, &job, move |p| {
                    r.report(0.1 + 0.8 * p)
                })
                .await?;
            Ok(Some(Output {
                result: key.as_str().to_string(),
                payload: serde_json::json!({
                    "model_id": detection.model_id,
                    "rows": detection.rows,
                    "anomalies": detection.anomalies,
                    "result_url": format!("/v1/tasks/{}/result", job.task_id),
                }),
            }))
        }
        JobKind::Profile => {
            let job: ProfileJob = serde_json::from_value(body.clone()).map_err(bad_body)?;
            reporter.report(0.05);
            let dataset =
                ingest::run_profile(services, tenant, correlation_id, &job.dataset_id, job.size)
                    .await?;
            Ok(Some(Output {
                result: dataset.id.to_string(),
                payload: serde_json::json!({ "dataset_id": dataset.id, "status": dataset.status }),
            }))
        }
        JobKind::Report => {
            let job: ReportJob = serde_json::from_value(body.clone()).map_err(bad_body)?;
            reporter.report(0.05);
            let r = reporter.clone();
            let (key, summary) =
                report::run_job(services, tenant, &job, move |p| r.report(0.05 + 0.9 * p)).await?;
            Ok(Some(Output {
                result: key.as_str().to_string(),
                payload: serde_json::json!({
                    "model_id": job.model_id,
                    "rows": summary.rows,
                    "anomalies": summary.anomalies,
                    "bytes": summary.bytes,
                    "report_url": format!("/v1/tasks/{}/report", job.task_id),
                }),
            }))
        }
        JobKind::Backtest => {
            let job: BacktestJob = serde_json::from_value(body.clone()).map_err(bad_body)?;
            reporter.report(0.01);
            let r = reporter.clone();
            let summary = backtest::run_job(services, tenant, &job, move |p| r.report(p)).await?;
            let mut payload = serde_json::to_value(&summary)
                .map_err(|e| JobError::Fail(Problem::internal(e.to_string())))?;
            payload["result_url"] = serde_json::json!(format!("/v1/tasks/{}/result", job.task_id));
            Ok(Some(Output {
                result: backtest::result_key(tenant, &job.task_id)
                    .as_str()
                    .to_string(),
                payload,
            }))
        }
        JobKind::Batch => {
            let job: BatchJob = serde_json::from_value(body.clone()).map_err(bad_body)?;
            reporter.report(0.01);
            let plan = batch::plan(services, tenant, &job).await?;
            let progress = reporter.start_batch(plan.chunks.len() as u32).await?;
            batch::send_chunks(services, tenant, correlation_id, &job, &plan, &progress).await?;
            Ok(None)
        }
    }
}

async fn complete(
    services: &Services,
    task: &Task,
    output: Output,
    delivery: &Delivery,
) -> Handled {
    let Ok(mut done) = task.transition(TaskStatus::Completed) else {
        return Handled::Done;
    };
    done.result = Some(output.result);
    let mut payload = output.payload;
    payload["task_id"] = serde_json::json!(done.id);
    payload["kind"] = serde_json::json!(done.kind);
    match services
        .publish_with_task(&done, EventType::TaskCompleted, payload)
        .await
    {
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
async fn discard_if_cancelled(services: &Services, task: &Task, done: &Task) {
    let Ok(Some(now)) = services.tasks.get_task(&task.tenant, &task.id).await else {
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
                .blobs
                .delete_blob(&key)
                .await
                .err()
                .map(Problem::from)
        }
        crate::domain::TaskKind::Report => services
            .blobs
            .delete_blob(&report::report_key(&task.tenant, &task.id))
            .await
            .err()
            .map(Problem::from),
        crate::domain::TaskKind::Backtest => {
            let mut failed = None;
            for key in [
                backtest::result_key(&task.tenant, &task.id),
                backtest::end_key(&task.tenant, &task.id),
            ] {
                if let Err(e) = services.blobs.delete_blob(&key).await {
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

/// Carries progress from the work (any thread) to the task and the event log.
#[derive(Clone)]
pub struct Reporter {
    services: Services,
    task: Arc<Mutex<Task>>,
    share: Arc<AtomicU64>,
    crossed: Arc<tokio::sync::Notify>,
    /// Set once a write finds the task changed by someone else (cancelled, re-queued,
    /// taken over): from then on this delivery no longer holds it.
    lost: Arc<std::sync::atomic::AtomicBool>,
    /// Raised when the delivery stopped at its deadline: the work stops at its next report.
    stop: StopFlag,
}

/// Tells work in another thread to stop, at a point of the work's choosing.
#[derive(Clone, Default)]
struct StopFlag(Arc<std::sync::atomic::AtomicBool>);

/// The unwinding payload that stops abandoned work (not a panic: no hook runs).
struct Abandoned;

impl StopFlag {
    fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Unwinds the calling thread once the flag is raised, with
    /// [`std::panic::resume_unwind`], so no panic hook prints: the thread's owner
    /// (`spawn_blocking`, rayon) catches it, and nobody waits for its result any more.
    fn check(&self) {
        if self.0.load(Ordering::Relaxed) {
            std::panic::resume_unwind(Box::new(Abandoned));
        }
    }
}

impl Reporter {
    fn new(services: Services, task: Task) -> Self {
        Reporter {
            services,
            task: Arc::new(Mutex::new(task)),
            share: Arc::new(AtomicU64::new(0f64.to_bits())),
            crossed: Arc::new(tokio::sync::Notify::new()),
            lost: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            stop: StopFlag::default(),
        }
    }

    /// Tells the work to stop: its next [`Reporter::report`] unwinds its thread.
    fn abandon(&self) {
        self.stop.raise();
    }

    /// Records that `share` (0 to 1) of the work is done; lower values than before are
    /// ignored. Cheap: callable from the work's inner loops.
    ///
    /// Once the delivery has been abandoned at its deadline, this unwinds the calling
    /// thread ([`StopFlag::check`]), stopping work nobody waits for any more.
    pub fn report(&self, share: f64) {
        self.stop.check();
        let share = share.clamp(0.0, 1.0);
        let mut current = self.share.load(Ordering::Relaxed);
        while f64::from_bits(current) < share {
            match self.share.compare_exchange_weak(
                current,
                share.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let tenth = |x: f64| (x * 10.0).floor() as u8;
                    if tenth(share) > tenth(f64::from_bits(current)) {
                        self.crossed.notify_one();
                    }
                    break;
                }
                Err(seen) => current = seen,
            }
        }
    }

    /// Runs `work`, publishing `task.progress` as soon as another tenth is done (tenths
    /// crossed faster than one store write are announced together) and touching the task
    /// at least every quarter lease, so it is not taken for lost.
    async fn drive<T>(self, work: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(work);
        let heartbeat =
            Duration::from_secs(u64::from(self.services.settings.task_lease_secs / 4).max(1));
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        let mut published = 0u8;
        loop {
            let crossed = tokio::select! {
                out = &mut work => return out,
                _ = self.crossed.notified() => true,
                _ = beat.tick() => false,
            };
            let percent =
                (f64::from_bits(self.share.load(Ordering::Relaxed)) * 100.0).floor() as u8;
            let announce = crossed && percent / 10 > published / 10;
            self.publish_progress(percent.min(99), announce).await;
            if announce {
                published = percent;
            }
        }
    }

    /// Records a batch's plan of `total` chunks on the task (kept as it is if a planner
    /// before this one recorded the same plan; a different one fails the task) and hands the task to its chunks: from
    /// here on their writes move it, and this delivery writes it no more.
    async fn start_batch(&self, total: u32) -> Result<BatchProgress, JobError> {
        let mut task = self.task.lock().await;
        if let Some(b) = &task.batch {
            if b.total != total {
                // Chunks of the first plan may still be queued: counting them against
                // another plan would complete the batch with the wrong rows.
                return Err(JobError::Fail(Problem::conflict(format!(
                    "the source changed since the batch was planned ({} chunks then, {total} now)",
                    b.total
                ))));
            }
            self.lost.store(true, Ordering::Relaxed);
            return Ok(b.clone());
        }
        let mut next = task
            .with_progress(task.progress)
            .map_err(|e| JobError::Retry(StoreError::Conflict(e.to_string())))?;
        let progress = BatchProgress::new(total);
        next.batch = Some(progress.clone());
        self.services.tasks.update_task(&next).await?;
        *task = next;
        self.lost.store(true, Ordering::Relaxed);
        Ok(progress)
    }

    async fn publish_progress(&self, percent: u8, announce: bool) {
        if self.lost.load(Ordering::Relaxed) {
            return;
        }
        let mut task = self.task.lock().await;
        let Ok(next) = task.with_progress(percent) else {
            return;
        };
        match self.services.tasks.update_task(&next).await {
            Ok(()) => *task = next,
            Err(StoreError::Conflict(_)) | Err(StoreError::NotFound(_)) => {
                // Cancelled, re-queued or taken over: this delivery no longer holds the
                // task. It stops touching it; its final write will lose the CAS too.
                tracing::info!(task_id = %task.id, "the task changed under this worker; it is no longer ours");
                self.lost.store(true, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                tracing::warn!(task_id = %task.id, error = %e, "progress not recorded");
                return;
            }
        }
        if announce {
            let payload = serde_json::json!({"task_id": task.id, "kind": task.kind, "progress": task.progress});
            publish_progress(&self.services, &task, payload).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StopFlag;

    #[test]
    fn a_raised_stop_flag_unwinds_the_work_at_its_next_check() {
        let stop = StopFlag::default();
        let seen = stop.clone();
        let worker = std::thread::spawn(move || {
            let mut steps = 0u64;
            loop {
                seen.check();
                steps += 1;
                if steps == 1000 {
                    stop.raise();
                }
                if steps > 1_000_000 {
                    return steps;
                }
            }
        });
        let stopped = worker
            .join()
            .expect_err("the work unwinds instead of finishing");
        assert!(stopped.is::<super::Abandoned>());
    }
}
