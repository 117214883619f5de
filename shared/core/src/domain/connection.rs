//! WebSocket connections and what they listen to.

use crate::domain::{Event, TenantId};
use crate::ids::{KeyId, ModelId, StreamId, TaskId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// A channel a connection can subscribe to: `task:<id>`, `model:<id>`, `stream:<id>`,
/// `stream:<id>:<entity>` or `tenant`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Channel {
    /// One task's events.
    Task(TaskId),
    /// One model's events.
    Model(ModelId),
    /// One stream's events.
    Stream(StreamId),
    /// The events of one entity of a stream split by entity.
    Entity(StreamId, String),
    /// Every event of the tenant.
    Tenant,
}

/// A channel name that is not one of the three shapes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("channel must be `tenant`, `task:<task id>`, `model:<model id>`, `stream:<stream id>` or `stream:<stream id>:<entity>`")]
pub struct InvalidChannel;

impl Channel {
    /// Parses `task:<id>`, `model:<id>`, `stream:<id>`, `stream:<id>:<entity>` or
    /// `tenant`.
    pub fn parse(text: &str) -> Result<Self, InvalidChannel> {
        if text == "tenant" {
            return Ok(Channel::Tenant);
        }
        if let Some(id) = text.strip_prefix("task:") {
            return TaskId::parse(id)
                .map(Channel::Task)
                .map_err(|_| InvalidChannel);
        }
        if let Some(id) = text.strip_prefix("model:") {
            return ModelId::parse(id)
                .map(Channel::Model)
                .map_err(|_| InvalidChannel);
        }
        if let Some(id) = text.strip_prefix("stream:") {
            if let Some((id, entity)) = id.split_once(':') {
                let id = StreamId::parse(id).map_err(|_| InvalidChannel)?;
                return match crate::domain::stream::is_entity_name(entity) {
                    true => Ok(Channel::Entity(id, entity.to_string())),
                    false => Err(InvalidChannel),
                };
            }
            return StreamId::parse(id)
                .map(Channel::Stream)
                .map_err(|_| InvalidChannel);
        }
        Err(InvalidChannel)
    }

    /// Whether the channel carries `event`, by the id its payload names (whatever its
    /// tenant: [`Connection::wants`] checks that).
    pub fn carries(&self, event: &Event) -> bool {
        let field = |name: &str| event.payload.get(name).and_then(|v| v.as_str());
        match self {
            Channel::Tenant => true,
            Channel::Task(id) => field("task_id") == Some(id.as_str()),
            Channel::Model(id) => field("model_id") == Some(id.as_str()),
            Channel::Stream(id) => field("stream_id") == Some(id.as_str()),
            Channel::Entity(id, entity) => {
                field("stream_id") == Some(id.as_str()) && field("entity") == Some(entity)
            }
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Channel::Task(id) => write!(f, "task:{id}"),
            Channel::Model(id) => write!(f, "model:{id}"),
            Channel::Stream(id) => write!(f, "stream:{id}"),
            Channel::Entity(id, entity) => write!(f, "stream:{id}:{entity}"),
            Channel::Tenant => f.write_str("tenant"),
        }
    }
}

impl TryFrom<String> for Channel {
    type Error = InvalidChannel;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Channel::parse(&s)
    }
}

impl From<Channel> for String {
    fn from(c: Channel) -> String {
        c.to_string()
    }
}

/// A live WebSocket connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    /// The gateway's connection id.
    pub id: String,
    /// Whose.
    pub tenant: TenantId,
    /// The API key it connected with: once that key is revoked, the connection gets
    /// nothing more and is closed. (`None` only on records written before keys were
    /// recorded.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<KeyId>,
    /// What it listens to.
    pub subscriptions: Vec<Channel>,
    /// When the record may be dropped if nothing refreshes it.
    pub expires_at: Timestamp,
}

impl Connection {
    /// Whether the connection listens to `event`: one of its own tenant's, on a channel
    /// it subscribed to.
    pub fn wants(&self, event: &Event) -> bool {
        self.tenant == event.tenant && self.subscriptions.iter().any(|c| c.carries(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_parse_and_print() {
        let t = TaskId::new();
        let c = Channel::parse(&format!("task:{t}")).unwrap();
        assert_eq!(c, Channel::Task(t.clone()));
        assert_eq!(c.to_string(), format!("task:{t}"));
        assert_eq!(Channel::parse("tenant").unwrap(), Channel::Tenant);
        for bad in ["", "task:", "task:nope", "model:tsk_x", "everything"] {
            assert!(Channel::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_entity_channel_carries_that_entity_of_that_stream_only() {
        use crate::domain::EventType;
        let (stream, other) = (StreamId::new(), StreamId::new());
        // An entity's name may hold colons: the channel splits at the first after the id.
        let c = Channel::parse(&format!("stream:{stream}:db:7")).unwrap();
        assert_eq!(c, Channel::Entity(stream.clone(), "db:7".into()));
        assert_eq!(c.to_string(), format!("stream:{stream}:db:7"));
        for bad in [format!("stream:{stream}:"), "stream:nope:db".to_string()] {
            assert!(Channel::parse(&bad).is_err(), "{bad}");
        }
        let event = |id: &StreamId, entity: Option<&str>| {
            Event::new(
                TenantId::parse("acme").unwrap(),
                EventType::AnomalyDetected,
                "c",
                serde_json::json!({"stream_id": id, "entity": entity}),
            )
        };
        assert!(c.carries(&event(&stream, Some("db:7"))));
        assert!(!c.carries(&event(&stream, Some("db:8"))));
        assert!(!c.carries(&event(&stream, None)));
        assert!(!c.carries(&event(&other, Some("db:7"))));
        assert!(Channel::Stream(stream.clone()).carries(&event(&stream, Some("db:7"))));
    }

    #[test]
    fn a_connection_wants_its_own_tenants_events_on_its_channels() {
        use crate::domain::EventType;
        let (acme, other) = (
            TenantId::parse("acme").unwrap(),
            TenantId::parse("other").unwrap(),
        );
        let (task, model) = (TaskId::new(), ModelId::new());
        let event = |tenant: &TenantId| {
            Event::new(
                tenant.clone(),
                EventType::TaskProgress,
                "c",
                serde_json::json!({"task_id": task, "progress": 50}),
            )
        };
        assert!(Channel::Task(task.clone()).carries(&event(&acme)));
        assert!(Channel::Tenant.carries(&event(&acme)));
        assert!(!Channel::Task(TaskId::new()).carries(&event(&acme)));
        assert!(!Channel::Model(model).carries(&event(&acme)));
        let connection = Connection {
            id: "c1".into(),
            tenant: acme.clone(),
            key_id: None,
            subscriptions: vec![Channel::Task(task.clone())],
            expires_at: crate::time::Timestamp::now(),
        };
        assert!(connection.wants(&event(&acme)));
        assert!(
            !connection.wants(&event(&other)),
            "another tenant's event on the same ids never reaches it"
        );
    }
}
