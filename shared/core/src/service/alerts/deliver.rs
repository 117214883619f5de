//! Sending one delivery: signed, to the address its URL was checked against, recorded in
//! the delivery log. A 5xx, 408, 429, timeout or failed connection is tried again after
//! an exponential backoff with jitter (a new message, held back on the queue), up to
//! [`Settings::alert_max_attempts`](crate::service::Settings) attempts; then, or at once
//! on any other refusal, the delivery is dead-lettered. A message that cannot be handled
//! at all (the store is down) goes back to the queue, and past its receives to the
//! queue's own dead-letter queue.
//!
//! At least once: a receiver can get an alert twice (an attempt whose answer was lost)
//! and tells by `Nomaly-Delivery-Id`, the same on every attempt.

use crate::domain::{AlertDelivery, AlertRule, DeliveryStatus, Destination};
use crate::ids::{AlertId, DeliveryId};
use crate::ports::{Delivery, SendOutcome, WebhookRequest};
use crate::service::tasks::Handled;
use crate::service::uses::{UsesAlertQueue, UsesAlerts, UsesSender, UsesSettings};
use crate::service::Problem;
use crate::time::Timestamp;
use crate::webhook::signature;
use serde::{Deserialize, Serialize};

/// The `kind` of an alert's queue message.
pub const ALERT_JOB: &str = "alert";

/// The longest a retry waits (SQS holds a message back at most 15 minutes).
const MAX_RETRY_DELAY_SECS: u32 = 900;

/// What an alert's queue message says: which delivery, which attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertJob {
    /// The rule.
    pub rule_id: AlertId,
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The attempt this message is for (1 for the first).
    pub attempt: u32,
}

/// The wait before attempt `attempt + 1`: `base × 2^(attempt−1)`, at most 900 s, with
/// "equal jitter" (a random point in its upper half), so receivers that failed together
/// are not all tried again in the same second.
pub fn retry_delay_secs(base_secs: u32, attempt: u32) -> u32 {
    let full = u64::from(base_secs)
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(20))
        .min(u64::from(MAX_RETRY_DELAY_SECS)) as u32;
    let mut bytes = [0u8; 4];
    let random = if getrandom::fill(&mut bytes).is_ok() {
        u32::from_le_bytes(bytes)
    } else {
        0
    };
    let half = full / 2;
    half + random % (full - half + 1)
}

/// The JSON body of an alert.
fn body(rule: &AlertRule, d: &AlertDelivery, attempt: u32) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": d.id,
        "type": "alert",
        "rule": {"id": rule.id, "name": rule.name},
        "created_at": d.created_at.rfc3339(),
        "attempt": attempt,
        "test": d.test,
        "group": d.group,
        "count": d.count,
        "event": d.event,
    }))
    .unwrap_or_default()
}

/// Sends one attempt of the delivery `job` names and records what became of it.
async fn attempt(
    services: &(impl UsesAlerts + UsesAlertQueue + UsesSender + UsesSettings),
    tenant: &crate::domain::TenantId,
    job: &AlertJob,
) -> Result<(), Problem> {
    let Some(mut d) = services
        .alerts()
        .get_delivery(tenant, &job.rule_id, &job.delivery_id)
        .await?
    else {
        tracing::warn!(delivery_id = %job.delivery_id, "no such delivery (its rule was deleted?); dropped");
        return Ok(());
    };
    if d.status.is_final() || d.attempts >= job.attempt {
        tracing::info!(delivery_id = %d.id, attempt = job.attempt, "attempt already made; a duplicate message");
        return Ok(());
    }
    let Some(rule) = services.alerts().get_rule(tenant, &job.rule_id).await? else {
        d.status = DeliveryStatus::DeadLettered;
        d.last_error = Some("the rule was deleted".into());
        services.alerts().update_delivery(&d).await?;
        return Ok(());
    };
    let payload = body(&rule, &d, job.attempt);
    let started = std::time::Instant::now();
    let outcome = match &rule.destination {
        Destination::Webhook { url } => {
            let now = Timestamp::now().seconds();
            let request = WebhookRequest {
                url: url.clone(),
                headers: vec![
                    (
                        signature::HEADER.to_string(),
                        signature::sign(&rule.secret, now, &payload),
                    ),
                    ("Nomaly-Delivery-Id".into(), d.id.to_string()),
                    ("Nomaly-Attempt".into(), job.attempt.to_string()),
                ],
                body: payload,
            };
            services.sender().post(&request).await
        }
        Destination::Eventbridge { bus } => {
            let detail = String::from_utf8_lossy(&payload).into_owned();
            services
                .sender()
                .put_event(bus, "nomaly.alert", &detail)
                .await
        }
    };
    d.latency_ms = Some(started.elapsed().as_millis() as u64);
    d.attempts = job.attempt;
    d.last_attempt_at = Some(Timestamp::now());
    d.next_attempt_at = None;
    let max = services.settings().alert_max_attempts.max(1);
    match outcome {
        SendOutcome::Delivered { status } => {
            d.status = DeliveryStatus::Delivered;
            d.last_status = Some(status);
            d.last_error = None;
        }
        SendOutcome::Retry { status, error } if job.attempt < max => {
            let delay = retry_delay_secs(services.settings().alert_retry_base_secs, job.attempt);
            let next = AlertJob {
                attempt: job.attempt + 1,
                ..job.clone()
            };
            // The next attempt is queued before the log says so: a crash between the two
            // leaves an attempt the log does not show yet, never a retry that is lost.
            services
                .alert_queue()
                .send_after(&[next.into_job(tenant)], delay)
                .await?;
            d.status = DeliveryStatus::Retrying;
            d.last_status = status;
            d.next_attempt_at = Some(Timestamp::now().plus_seconds(i64::from(delay)));
            tracing::warn!(delivery_id = %d.id, attempt = job.attempt, delay_secs = delay, error, "alert not delivered; will retry");
            d.last_error = Some(error);
        }
        SendOutcome::Retry { status, error } => {
            d.status = DeliveryStatus::DeadLettered;
            d.last_status = status;
            d.last_error = Some(format!("{error} (gave up after {max} attempts)"));
        }
        SendOutcome::Refused { status, error } => {
            d.status = DeliveryStatus::DeadLettered;
            d.last_status = status;
            d.last_error = Some(error);
        }
    }
    tracing::info!(delivery_id = %d.id, status = ?d.status, attempt = job.attempt, latency_ms = d.latency_ms, "alert attempt");
    services.alerts().update_delivery(&d).await?;
    Ok(())
}

/// Handles one message of the alerts queue.
pub async fn deliver(
    services: &(impl UsesAlerts + UsesAlertQueue + UsesSender + UsesSettings),
    delivery: &Delivery,
) -> Handled {
    let job: AlertJob = match serde_json::from_value(delivery.job.body.clone()) {
        Ok(j) if delivery.job.kind == ALERT_JOB => j,
        Ok(_) | Err(_) => {
            tracing::error!(job_id = %delivery.job.job_id, kind = %delivery.job.kind, "not an alert message; dropped");
            return Handled::Done;
        }
    };
    match attempt(services, &delivery.job.tenant, &job).await {
        Ok(()) => Handled::Done,
        Err(p) if p.is_retryable() => Handled::Retry(p.detail),
        Err(p) => {
            tracing::error!(delivery_id = %job.delivery_id, problem = %p, "alert message dropped");
            Handled::Done
        }
    }
}

#[cfg(test)]
mod tests {
    use super::retry_delay_secs;

    #[test]
    fn retries_back_off_exponentially_with_jitter_and_a_cap() {
        for attempt in 1..=12 {
            let full = (15u32 << (attempt - 1)).min(900);
            for _ in 0..50 {
                let d = retry_delay_secs(15, attempt);
                assert!(
                    d >= full / 2 && d <= full,
                    "attempt {attempt}: {d} of {full}"
                );
            }
        }
        assert_eq!(retry_delay_secs(0, 3), 0);
        let spread: std::collections::BTreeSet<u32> =
            (0..100).map(|_| retry_delay_secs(60, 4)).collect();
        assert!(spread.len() > 10, "jitter spreads retries: {spread:?}");
    }
}
