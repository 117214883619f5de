//! Alert rules and their deliveries: which events reach a person's webhook or an
//! EventBridge bus, how often, and what became of each attempt to send one.

use crate::domain::{EventType, TenantId};
use crate::ids::{AlertId, DeliveryId, EventId, ModelId, StreamId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// A tenant's alert rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    /// Its id.
    pub id: AlertId,
    /// Whose.
    pub tenant: TenantId,
    /// The name the tenant gave it.
    pub name: String,
    /// Which events it sends.
    #[serde(rename = "match")]
    pub matches: AlertMatch,
    /// Where they go.
    pub destination: Destination,
    /// The signing secret of a webhook (`whsec_...`): shown once, when the rule is made.
    #[serde(default)]
    pub secret: String,
    /// Seconds after an alert in which further matches of its group are counted into it,
    /// not sent (0: every match is an alert).
    pub cooldown: u32,
    /// What makes matches one group (one episode) for the cooldown.
    #[serde(default)]
    pub group_by: Vec<GroupBy>,
    /// A disabled rule matches nothing.
    pub enabled: bool,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

/// What an event must be for a rule to send it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertMatch {
    /// Event types, at least one.
    pub events: Vec<EventType>,
    /// Only this stream's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<StreamId>,
    /// Only this model's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<ModelId>,
    /// Only this entity's events (of a stream split by entity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// Only anomalies whose highest score reaches this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f64>,
}

/// Where a rule's alerts go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Destination {
    /// An HTTPS endpoint that gets each alert as a signed POST.
    Webhook {
        /// `https://...` (loopback `http://` only on a local server started with
        /// `--allow-loopback-webhooks`).
        url: String,
    },
    /// An Amazon EventBridge bus (on AWS: the deployment's own bus only).
    Eventbridge {
        /// The bus's name.
        bus: String,
    },
}

/// A field that splits a rule's matches into groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// The stream.
    Stream,
    /// The entity of a stream split by entity.
    Entity,
    /// The model.
    Model,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Queued, not tried yet.
    Pending,
    /// Tried and failed; tried again after a backoff.
    Retrying,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: out of attempts, or refused for good (a 4xx, a forbidden address).
    DeadLettered,
}

impl DeliveryStatus {
    /// Whether nothing more will be tried.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DeliveryStatus::Delivered | DeliveryStatus::DeadLettered
        )
    }
}

/// One alert and what became of sending it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertDelivery {
    /// Its id: the idempotency id a receiver sees on every attempt.
    pub id: DeliveryId,
    /// Whose.
    pub tenant: TenantId,
    /// The rule that made it.
    pub rule_id: AlertId,
    /// The event that opened it (none for a test alert).
    pub event_id: Option<EventId>,
    /// That event's type.
    pub event_type: Option<EventType>,
    /// The group it stands for (`stream=...,entity=...`; empty when the rule has no
    /// `group_by`).
    pub group: String,
    /// Anomalies (or matching events) it stands for: the first event's, and those of
    /// every match of its group during the cooldown.
    pub count: u64,
    /// A test alert (`POST /v1/alerts/{id}/test`).
    pub test: bool,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's HTTP status, if it got one.
    pub last_status: Option<u16>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// The last attempt's round trip, in milliseconds.
    pub latency_ms: Option<u64>,
    /// When it was made.
    pub created_at: Timestamp,
    /// When the last attempt ended.
    pub last_attempt_at: Option<Timestamp>,
    /// When the next attempt is due (while retrying).
    pub next_attempt_at: Option<Timestamp>,
    /// The alert's content: the event as pushed on the WebSocket.
    pub event: serde_json::Value,
}

impl AlertDelivery {
    /// A new delivery of `rule`, not tried yet, for `group`, standing for `count`
    /// anomalies and carrying `event`; no event id or type, not a test (set them with
    /// struct update syntax where they apply).
    pub fn pending(rule: &AlertRule, group: String, count: u64, event: serde_json::Value) -> Self {
        AlertDelivery {
            id: DeliveryId::new(),
            tenant: rule.tenant.clone(),
            rule_id: rule.id.clone(),
            event_id: None,
            event_type: None,
            group,
            count,
            test: false,
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_status: None,
            last_error: None,
            latency_ms: None,
            created_at: Timestamp::now(),
            last_attempt_at: None,
            next_attempt_at: None,
            event,
        }
    }
}
