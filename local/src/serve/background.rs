//! The work behind the API: a pool of workers on the jobs queue (the `worker` function),
//! a pool on the batch chunks queue (the `chunks` function), a pool on the alerts queue
//! (the `notify` function), the dispatcher of stored events (the `events` function), and the sweep on a timer
//! (the `scheduler` function), each calling the same handler as its Lambda.

use nomaly_core::domain::Event;
use nomaly_core::ports::{Delivery, JobQueue};
use nomaly_core::service::tasks::{self, Handled};
use nomaly_core::service::worker::Lane;
use nomaly_core::service::{fanout, scheduler, Services};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

/// How a received job stays hidden from other workers: as long as the template's queue
/// (6 × its function's timeout: 15 minutes for jobs, 5 for chunks). A restart releases
/// the jobs of the last run at once.
fn visibility_secs(lane: Lane) -> u32 {
    match lane {
        Lane::Jobs => 5400,
        Lane::Chunks => 1800,
        // The notify function's 6 × 60 s.
        Lane::Alerts => 360,
    }
}

/// Sizes and periods.
pub struct Plan {
    /// Jobs at once.
    pub workers: usize,
    /// Batch chunks at once.
    pub chunk_workers: usize,
    /// Alerts at once.
    pub alert_workers: usize,
    /// Wait between looks at an empty queue.
    pub poll: Duration,
    /// Period of the sweep.
    pub sweep_every: Duration,
}

/// The running background work.
pub struct Running {
    workers: JoinSet<()>,
    sweeper: tokio::task::JoinHandle<()>,
    dispatcher: tokio::task::JoinHandle<()>,
    drain: oneshot::Sender<()>,
}

/// Starts the workers, the dispatcher and the sweep. Workers take no new job once
/// `stop` turns true.
pub fn start(
    services: Services,
    events: mpsc::UnboundedReceiver<Event>,
    plan: Plan,
    stop: watch::Receiver<bool>,
) -> Running {
    let mut workers = JoinSet::new();
    for n in 0..plan.workers {
        workers.spawn(work(
            services.clone(),
            Lane::Jobs,
            n,
            plan.poll,
            stop.clone(),
        ));
    }
    for n in 0..plan.chunk_workers {
        workers.spawn(work(
            services.clone(),
            Lane::Chunks,
            n,
            plan.poll,
            stop.clone(),
        ));
    }
    for n in 0..plan.alert_workers {
        workers.spawn(work(
            services.clone(),
            Lane::Alerts,
            n,
            plan.poll,
            stop.clone(),
        ));
    }
    let (drain, drained) = oneshot::channel();
    Running {
        workers,
        sweeper: tokio::spawn(sweep(services.clone(), plan.sweep_every, stop)),
        dispatcher: tokio::spawn(dispatch(services, events, drained)),
        drain,
    }
}

impl Running {
    /// Lets running jobs finish for up to `grace`, then passes on the events they left
    /// and stops. Returns whether every job finished; a job cut short keeps its message
    /// in the queue and runs again on the next start.
    pub async fn stop(mut self, grace: Duration) -> bool {
        self.sweeper.abort();
        let finished = tokio::time::timeout(grace, async {
            while self.workers.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        if !finished {
            self.workers.abort_all();
        }
        let _ = self.drain.send(());
        if tokio::time::timeout(Duration::from_secs(5), self.dispatcher)
            .await
            .is_err()
        {
            tracing::warn!("events still being dispatched at exit");
        }
        finished
    }
}

async fn work(
    services: Services,
    lane: Lane,
    n: usize,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let queue = lane.queue(&services);
    while !*stop.borrow() {
        let deliveries = match queue.receive(1, visibility_secs(lane)).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(worker = n, ?lane, error = %e, "cannot receive jobs");
                Vec::new()
            }
        };
        if deliveries.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        for delivery in deliveries {
            let handled = lane.handle(&services, &delivery).await;
            settle(queue.as_ref(), &delivery, handled).await;
        }
    }
}

/// Deletes a handled job, or hides a job to retry for its backoff (what Lambda's SQS
/// integration does with a batch response).
async fn settle(queue: &dyn JobQueue, delivery: &Delivery, handled: Handled) {
    let id = &delivery.job.job_id;
    match handled {
        Handled::Done => {
            if let Err(e) = queue.delete(&delivery.receipt).await {
                tracing::warn!(job_id = %id, error = %e, "could not delete a finished job; it will be delivered again and acknowledged");
            }
        }
        Handled::Retry(why) => {
            let backoff = tasks::retry_backoff_secs(delivery.receive_count);
            if let Err(e) = queue.change_visibility(&delivery.receipt, backoff).await {
                tracing::warn!(job_id = %id, error = %e, "could not shorten the retry delay");
            }
            tracing::warn!(job_id = %id, why, backoff_secs = backoff, "job will be retried");
        }
    }
}

async fn dispatch(
    services: Services,
    mut events: mpsc::UnboundedReceiver<Event>,
    mut drain: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            biased;
            event = events.recv() => match event {
                Some(event) => handle(&services, &event).await,
                None => return,
            },
            _ = &mut drain => break,
        }
    }
    while let Ok(event) = events.try_recv() {
        handle(&services, &event).await;
    }
}

/// Pushes and chains one event; a panic in either is caught, so later events still go.
async fn handle(services: &Services, event: &Event) {
    let (services2, event2) = (services.clone(), event.clone());
    match tokio::spawn(async move { fanout::handle(&services2, &event2).await }).await {
        Ok(Ok(_)) => {}
        Ok(Err(p)) => {
            tracing::error!(event_id = %event.event_id, kind = event.kind.as_str(), error = %p, "event not dispatched")
        }
        Err(e) => {
            tracing::error!(event_id = %event.event_id, kind = event.kind.as_str(), error = %e, "dispatching the event panicked")
        }
    }
}

async fn sweep(services: Services, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(p) = scheduler::sweep(&services).await {
            tracing::error!(error = %p, "sweep failed");
        }
    }
}
