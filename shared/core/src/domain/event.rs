//! Domain events: the append-only audit log, the source of WebSocket pushes, and the
//! chain between steps. Never changed once written.

use crate::domain::payload::EventPayload;
use crate::domain::TenantId;
use crate::ids::EventId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The kinds of event, written as in `docs/architecture.md` (`task.progress`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EventType {
    /// A running task moved on.
    #[serde(rename = "task.progress")]
    TaskProgress,
    /// A task finished.
    #[serde(rename = "task.completed")]
    TaskCompleted,
    /// A task gave up.
    #[serde(rename = "task.failed")]
    TaskFailed,
    /// A task was cancelled.
    #[serde(rename = "task.cancelled")]
    TaskCancelled,
    /// Detection found anomalies.
    #[serde(rename = "anomaly.detected")]
    AnomalyDetected,
    /// An upload was profiled.
    #[serde(rename = "dataset.profiled")]
    DatasetProfiled,
}

impl EventType {
    /// The name as written.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::TaskProgress => "task.progress",
            EventType::TaskCompleted => "task.completed",
            EventType::TaskFailed => "task.failed",
            EventType::TaskCancelled => "task.cancelled",
            EventType::AnomalyDetected => "anomaly.detected",
            EventType::DatasetProfiled => "dataset.profiled",
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// Sorts in the order events were made.
    pub event_id: EventId,
    /// Whose.
    pub tenant: TenantId,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When.
    pub at: Timestamp,
    /// The request or job it belongs to.
    pub correlation_id: String,
    /// What the event says: the payload of its `type`.
    #[schema(value_type = crate::domain::payload::Payload)]
    pub payload: serde_json::Value,
}

impl Event {
    /// The event as clients see it: pushed on the WebSocket, and inside an alert.
    pub fn message(&self) -> serde_json::Value {
        serde_json::json!({
            "type": self.kind,
            "event_id": self.event_id,
            "at": self.at.rfc3339(),
            "correlation_id": self.correlation_id,
            "payload": self.payload,
        })
    }

    /// A new event carrying `payload`, of its type, stamped now.
    pub fn of(
        tenant: TenantId,
        correlation_id: impl Into<String>,
        payload: &impl EventPayload,
    ) -> Result<Self, serde_json::Error> {
        Ok(Event::new(
            tenant,
            payload.event_type(),
            correlation_id,
            payload.to_json()?,
        ))
    }

    /// A new event, stamped now, with a payload as written (use [`Event::of`] to write
    /// one of the [payload types](crate::domain::payload)).
    pub fn new(
        tenant: TenantId,
        kind: EventType,
        correlation_id: impl Into<String>,
        payload: serde_json::Value,
    ) -> Self {
        Event {
            event_id: EventId::new(),
            tenant,
            kind,
            at: Timestamp::now(),
            correlation_id: correlation_id.into(),
            payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_design_names() {
        let e = Event::new(
            TenantId::parse("acme").unwrap(),
            EventType::TaskProgress,
            "c1",
            serde_json::json!({"task_id": "tsk_x", "progress": 10}),
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "task.progress");
        assert_eq!(v["tenant"], "acme");
        assert!(v["event_id"].as_str().unwrap().starts_with("evt_"));
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
