//! From a stored event to the alerts it starts: each enabled rule of the tenant that
//! matches it either opens a new delivery (the first match of its group, or the first
//! after the group's cooldown ran out) or adds the event's anomalies to the delivery its
//! group opened, so an episode of many anomalous points is one alert with a count.
//!
//! The cooldown is a claim on the idempotency store, keyed by rule (as last changed) and
//! group and held for the cooldown; it remembers the delivery it opened.

use super::deliver::{AlertJob, ALERT_JOB};
use super::MAX_ALERT_EVENT_BYTES;
use crate::domain::{AlertDelivery, AlertRule, DeliveryStatus, Event, GroupBy};
use crate::ids::{DeliveryId, JobId};
use crate::ports::{Claim, Job, PageRequest, StoreError};
use crate::service::uses::{UsesAlertQueue, UsesAlerts, UsesIdempotency};
use crate::service::Problem;
use serde_json::Value;

fn text<'a>(payload: &'a Value, field: &str) -> Option<&'a str> {
    payload.get(field).and_then(Value::as_str)
}

/// Whether `rule` sends `event`.
pub fn matches(rule: &AlertRule, event: &Event) -> bool {
    let m = &rule.matches;
    let p = &event.payload;
    rule.enabled
        && rule.tenant == event.tenant
        && m.events.contains(&event.kind)
        && m.stream_id
            .as_ref()
            .is_none_or(|s| text(p, "stream_id") == Some(s.as_str()))
        && m.model_id
            .as_ref()
            .is_none_or(|s| text(p, "model_id") == Some(s.as_str()))
        && m.entity
            .as_deref()
            .is_none_or(|e| text(p, "entity") == Some(e))
        && m.min_score.is_none_or(|min| {
            p.get("max_score")
                .and_then(Value::as_f64)
                .is_some_and(|s| s >= min)
        })
}

/// The group `event` falls in under `rule` (`stream=...,entity=...`).
fn group_of(rule: &AlertRule, event: &Event) -> String {
    rule.group_by
        .iter()
        .map(|g| {
            let (name, field) = match g {
                GroupBy::Stream => ("stream", "stream_id"),
                GroupBy::Entity => ("entity", "entity"),
                GroupBy::Model => ("model", "model_id"),
            };
            format!("{name}={}", text(&event.payload, field).unwrap_or(""))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What one event stands for in an alert's count: its anomalies, or 1.
fn weight(event: &Event) -> u64 {
    event
        .payload
        .get("anomalies")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// The event as an alert carries it, cut to [`MAX_ALERT_EVENT_BYTES`]: lists in the
/// payload are shortened to their first 20 items (and `truncated` says so) when the whole
/// would be longer.
pub(super) fn bounded(message: Value) -> Value {
    let size = |v: &Value| serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
    if size(&message) <= MAX_ALERT_EVENT_BYTES {
        return message;
    }
    let mut message = message;
    if let Some(payload) = message.get_mut("payload").and_then(Value::as_object_mut) {
        for value in payload.values_mut() {
            if let Some(list) = value.as_array_mut() {
                list.truncate(20);
            }
        }
    }
    if size(&message) > MAX_ALERT_EVENT_BYTES {
        // Still too long (long strings): the payload goes, the rest stays.
        message["payload"] = serde_json::json!({"omitted": "longer than an alert carries"});
    }
    message["truncated"] = Value::Bool(true);
    message
}

/// Matches `event` against its tenant's rules; answers how many alerts it opened.
pub async fn route(
    services: &(impl UsesAlerts + UsesAlertQueue + UsesIdempotency),
    event: &Event,
) -> Result<usize, Problem> {
    let rules = services
        .alerts()
        .list_rules(
            &event.tenant,
            &PageRequest {
                limit: super::MAX_RULES_PER_TENANT,
                token: None,
            },
        )
        .await?;
    let mut opened = 0;
    for rule in rules.items.iter().filter(|r| matches(r, event)) {
        let group = group_of(rule, event);
        // A changed rule starts its episodes afresh (a shorter cooldown takes effect now).
        let key = format!("alert:{}:{}:{group}", rule.id, rule.updated_at.millis());
        if rule.cooldown > 0 {
            match services
                .idempotency()
                .claim(&event.tenant, &key, rule.cooldown)
                .await?
            {
                Claim::New => {}
                Claim::Done(id) => {
                    count_into(services, rule, &id, weight(event)).await?;
                    continue;
                }
                // Another event of the group is opening its delivery right now.
                Claim::InProgress => continue,
            }
        }
        let delivery = AlertDelivery {
            event_id: Some(event.event_id.clone()),
            event_type: Some(event.kind),
            ..AlertDelivery::pending(rule, group, weight(event), bounded(event.message()))
        };
        let opening = open(services, rule, delivery, &key).await;
        if let Err(p) = opening {
            if rule.cooldown > 0 {
                // Not opened: the next delivery of the event tries again.
                services.idempotency().release(&event.tenant, &key).await?;
            }
            return Err(p);
        }
        opened += 1;
    }
    Ok(opened)
}

/// Adds `n` to the delivery named by a cooldown claim's stored id.
async fn count_into(
    services: &impl UsesAlerts,
    rule: &AlertRule,
    stored: &[u8],
    n: u64,
) -> Result<(), Problem> {
    let Some(id) = std::str::from_utf8(stored)
        .ok()
        .and_then(|t| DeliveryId::parse(t).ok())
    else {
        return Ok(());
    };
    match services
        .alerts()
        .add_to_count(&rule.tenant, &rule.id, &id, n)
        .await
    {
        Ok(()) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Stores `delivery`, remembers it under the cooldown claim `key` (for the rule's
/// cooldown), and queues its first attempt.
pub(super) async fn open(
    services: &(impl UsesAlerts + UsesAlertQueue + UsesIdempotency),
    rule: &AlertRule,
    delivery: AlertDelivery,
    key: &str,
) -> Result<(), Problem> {
    services.alerts().create_delivery(&delivery).await?;
    if rule.cooldown > 0 && !delivery.test {
        services
            .idempotency()
            .complete(
                &rule.tenant,
                key,
                delivery.id.as_str().as_bytes(),
                rule.cooldown,
            )
            .await?;
    }
    let job = AlertJob {
        rule_id: rule.id.clone(),
        delivery_id: delivery.id.clone(),
        attempt: 1,
    };
    let sent = services
        .alert_queue()
        .send(&[job.into_job(&rule.tenant)])
        .await;
    if let Err(e) = sent {
        let mut failed = delivery;
        failed.status = DeliveryStatus::DeadLettered;
        failed.last_error = Some(format!("could not be queued: {e}"));
        let _ = services.alerts().update_delivery(&failed).await;
        return Err(e.into());
    }
    tracing::info!(alert_id = %rule.id, delivery_id = %delivery.id, group = %delivery.group, "alert opened");
    Ok(())
}

impl AlertJob {
    /// The queue message of this attempt.
    pub fn into_job(self, tenant: &crate::domain::TenantId) -> Job {
        Job {
            job_id: JobId::new(),
            tenant: tenant.clone(),
            kind: ALERT_JOB.to_string(),
            correlation_id: self.delivery_id.to_string(),
            body: serde_json::to_value(&self).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AlertMatch, Destination, EventType, TenantId};
    use crate::ids::{AlertId, EventId, StreamId};
    use crate::time::Timestamp;

    fn rule(m: AlertMatch, group_by: Vec<GroupBy>) -> AlertRule {
        AlertRule {
            id: AlertId::new(),
            tenant: TenantId::parse("acme").expect("tenant"),
            name: "r".into(),
            matches: m,
            destination: Destination::Webhook {
                url: "https://example.com".into(),
            },
            secret: "whsec_x".into(),
            cooldown: 60,
            group_by,
            enabled: true,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
        }
    }

    fn event(kind: EventType, payload: Value) -> Event {
        Event {
            event_id: EventId::new(),
            tenant: TenantId::parse("acme").expect("tenant"),
            kind,
            at: Timestamp::now(),
            correlation_id: "c".into(),
            payload,
        }
    }

    #[test]
    fn a_rule_matches_on_type_stream_entity_and_score() {
        let stream = StreamId::new();
        let m = AlertMatch {
            events: vec![EventType::AnomalyDetected],
            stream_id: Some(stream.clone()),
            model_id: None,
            entity: Some("web-1".into()),
            min_score: Some(0.9),
        };
        let r = rule(m, vec![GroupBy::Stream, GroupBy::Entity]);
        let hit = event(
            EventType::AnomalyDetected,
            serde_json::json!({"stream_id": stream, "entity": "web-1", "max_score": 0.95, "anomalies": 3}),
        );
        assert!(matches(&r, &hit));
        assert_eq!(group_of(&r, &hit), format!("stream={stream},entity=web-1"));
        assert_eq!(weight(&hit), 3);
        let low = event(
            EventType::AnomalyDetected,
            serde_json::json!({"stream_id": stream, "entity": "web-1", "max_score": 0.5}),
        );
        assert!(!matches(&r, &low));
        let other = event(
            EventType::AnomalyDetected,
            serde_json::json!({"stream_id": stream, "entity": "web-2", "max_score": 0.99}),
        );
        assert!(!matches(&r, &other));
        let failed = event(EventType::TaskFailed, serde_json::json!({}));
        assert!(!matches(&r, &failed));
        let mut disabled = r.clone();
        disabled.enabled = false;
        assert!(!matches(&disabled, &hit));
        let mut foreign = hit.clone();
        foreign.tenant = TenantId::parse("other").expect("tenant");
        assert!(!matches(&r, &foreign), "another tenant's event");
    }

    #[test]
    fn a_long_event_is_cut_to_size() {
        let points: Vec<Value> = (0..5000)
            .map(|i| serde_json::json!({"index": i, "score": 0.99}))
            .collect();
        let e = event(
            EventType::AnomalyDetected,
            serde_json::json!({"anomaly_points": points, "anomalies": 5000}),
        );
        let cut = bounded(e.message());
        assert!(serde_json::to_vec(&cut).expect("json").len() <= MAX_ALERT_EVENT_BYTES);
        assert_eq!(cut["truncated"], Value::Bool(true));
        assert_eq!(
            cut["payload"]["anomaly_points"].as_array().map(Vec::len),
            Some(20)
        );
        assert_eq!(cut["payload"]["anomalies"], 5000);
    }
}
