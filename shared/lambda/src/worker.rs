//! The `worker` and `chunks` functions: an SQS batch of jobs (or of batch chunks), each
//! handled on its own; the response
//! lists only the messages to retry (`ReportBatchItemFailures`), so one bad message never
//! sends the others round again. A message to retry comes back after a backoff (30 s,
//! doubling, at most 15 min) rather than the queue's 90-minute visibility timeout.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use nomaly_core::ports::{Delivery, Job};
use nomaly_core::service::tasks::{self, Handled};
pub use nomaly_core::service::worker::Lane;
use nomaly_core::service::Services;

fn delivery(message: &SqsMessage) -> Result<Delivery, String> {
    let body = message.body.as_deref().ok_or("the message has no body")?;
    let job: Job = serde_json::from_str(body).map_err(|e| format!("the body is not a job: {e}"))?;
    Ok(Delivery {
        job,
        receipt: message.receipt_handle.clone().unwrap_or_default(),
        receive_count: receives(message),
    })
}

/// How many times SQS has delivered the message (1 on the first delivery).
fn receives(message: &SqsMessage) -> u32 {
    message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1)
}

/// Handles a batch of the jobs queue; answers the messages to retry
/// (`ReportBatchItemFailures`).
pub async fn handle(services: &Services, event: SqsEvent) -> SqsBatchResponse {
    handle_lane(services, Lane::Jobs, event).await
}

/// Handles a batch from `lane`'s queue, as [`handle`] does.
pub async fn handle_lane(services: &Services, lane: Lane, event: SqsEvent) -> SqsBatchResponse {
    handle_lane_within(services, lane, event, None).await
}

/// When an invocation's work must stop: its deadline less
/// [`JOB_DEADLINE_MARGIN_SECS`](nomaly_core::limits::JOB_DEADLINE_MARGIN_SECS), or less a
/// tenth of the time it has when that is shorter, left for handing the job back.
///
/// `None` when the runtime gave no deadline in the future: Lambda sends the deadline in
/// milliseconds since the epoch, while cargo lambda's emulator sends its timeout there
/// (600,000), which holds work to nothing.
pub fn deadline(context: &lambda_runtime::Context) -> Option<tokio::time::Instant> {
    let left = context
        .deadline()
        .duration_since(std::time::SystemTime::now())
        .ok()
        .filter(|left| !left.is_zero())?;
    Some(tokio::time::Instant::now() + time_to_work(left))
}

/// Of `left` until the invocation's deadline, the time the work may take.
fn time_to_work(left: std::time::Duration) -> std::time::Duration {
    let margin =
        std::time::Duration::from_secs(u64::from(nomaly_core::limits::JOB_DEADLINE_MARGIN_SECS))
            .min(left / 10);
    left - margin
}

/// The `worker` and `chunks` functions' `main`: `lane`'s batches, each job stopped at the
/// invocation's [`deadline`].
pub async fn run(lane: Lane) -> Result<(), crate::Error> {
    crate::run_with_context(move |services, event: SqsEvent, context| async move {
        Ok(handle_lane_within(&services, lane, event, deadline(&context)).await)
    })
    .await
}

/// As [`handle_lane`], stopping each job at `deadline` ([`Lane::handle_within`]): a job
/// still running then is reported for retry, and a message not started by then is sent
/// again as a new message and acknowledged.
pub async fn handle_lane_within(
    services: &Services,
    lane: Lane,
    event: SqsEvent,
    deadline: Option<tokio::time::Instant>,
) -> SqsBatchResponse {
    let queue = lane.queue(services);
    let mut response = SqsBatchResponse::default();
    for message in &event.records {
        let id = message.message_id.clone().unwrap_or_default();
        let outcome = match delivery(message) {
            Ok(d) => lane.handle_within(services, &d, deadline).await,
            Err(why) => {
                // Left to the redrive policy: after the maximum receives it lands in the
                // dead-letter queue for someone to look at.
                tracing::error!(message_id = %id, why, "unreadable message");
                tasks::count_retry(services, receives(message));
                Handled::Retry(why)
            }
        };
        if let Handled::Retry(why) = outcome {
            // Back off from the queue's long visibility timeout (6 x the function's).
            let backoff = tasks::retry_backoff_secs(receives(message));
            if let Some(receipt) = &message.receipt_handle {
                if let Err(e) = queue.change_visibility(receipt, backoff).await {
                    tracing::warn!(message_id = %id, error = %e, "could not shorten the retry delay");
                }
            }
            tracing::warn!(message_id = %id, why, backoff_secs = backoff, "message will be retried");
            response.add_failure(id);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::{deadline, time_to_work};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[test]
    fn work_stops_a_margin_before_the_deadline() {
        // The worker's 900 s: 30 s kept back.
        assert_eq!(
            time_to_work(Duration::from_secs(900)),
            Duration::from_secs(870)
        );
        // cargo lambda's 30 s: a tenth kept back, not all of it.
        assert_eq!(
            time_to_work(Duration::from_secs(30)),
            Duration::from_secs(27)
        );
        assert_eq!(time_to_work(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test]
    async fn the_deadline_comes_from_the_invocation() {
        let mut context = lambda_runtime::Context::default();
        context.deadline = 0;
        assert_eq!(deadline(&context), None, "no deadline given");
        context.deadline = 600_000;
        assert_eq!(
            deadline(&context),
            None,
            "cargo lambda's timeout, not a deadline"
        );
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        context.deadline = (now + Duration::from_secs(300)).as_millis() as u64;
        let at = deadline(&context).expect("a deadline");
        let left = at - tokio::time::Instant::now();
        assert!(
            left > Duration::from_secs(265) && left <= Duration::from_secs(270),
            "{left:?}"
        );
    }
}
