//! Progress from a job's work (any thread) to its task and the event log, and the flag
//! that stops work abandoned at its deadline.

use crate::domain::payload::TaskProgress;
use crate::domain::{BatchProgress, Task};
use crate::ports::StoreError;
use crate::service::jobs::JobError;
use crate::service::tasks::publish_progress;
use crate::service::{Problem, Services};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Carries progress from the work (any thread) to the task and the event log.
#[derive(Clone)]
pub struct Reporter {
    services: Services,
    pub(super) task: Arc<Mutex<Task>>,
    share: Arc<AtomicU64>,
    crossed: Arc<tokio::sync::Notify>,
    /// Set once a write finds the task changed by someone else (cancelled, re-queued,
    /// taken over): from then on this delivery no longer holds it.
    pub(super) lost: Arc<std::sync::atomic::AtomicBool>,
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
    pub(super) fn new(services: Services, task: Task) -> Self {
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
    pub(super) fn abandon(&self) {
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
    /// at least every quarter lease, so it is not taken for lost. At `deadline` (the
    /// function's timeout less a margin), if any, the work is abandoned
    /// ([`Reporter::abandon`]) and the answer is [`JobError::Overran`].
    pub(super) async fn drive<T>(
        self,
        work: impl std::future::Future<Output = Result<T, JobError>>,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<T, JobError> {
        tokio::pin!(work);
        let heartbeat =
            Duration::from_secs(u64::from(self.services.settings.task_lease_secs / 4).max(1));
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        let overrun = async move {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(overrun);
        let mut published = 0u8;
        loop {
            let crossed = tokio::select! {
                out = &mut work => return out,
                _ = &mut overrun => {
                    self.abandon();
                    return Err(JobError::Overran);
                }
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
    pub(super) async fn start_batch(&self, total: u32) -> Result<BatchProgress, JobError> {
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
            publish_progress(&self.services, &task, &TaskProgress::of(&task)).await;
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
