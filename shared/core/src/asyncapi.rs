//! The WebSocket API's contract as an AsyncAPI 3.0 document: what a client sends (the
//! `action`s of `service::websocket::Action`) and what it receives (replies, and events
//! as `service::fanout::message` pushes them). Committed as `docs/asyncapi.json`; the
//! end-to-end suite checks every message its clients receive against it.
//!
//! The schemas come from types: the actions' own, the event's, and below the replies',
//! whose fields (alphabetical, like the JSON the service builds) and `type` tags are
//! what the service sends.

use crate::domain::EventType;
use crate::ids::{EventId, ModelId};
use crate::service::problem::ProblemBody;
use crate::service::streams::Appended;
use crate::service::websocket::Action;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::{OpenApi, ToSchema};

/// The `type` of a reply: `subscribed`.
#[derive(Debug, Serialize, ToSchema)]
pub enum SubscribedTag {
    /// `subscribed`
    #[serde(rename = "subscribed")]
    Tag,
}

/// The `type` of a reply: `unsubscribed`.
#[derive(Debug, Serialize, ToSchema)]
pub enum UnsubscribedTag {
    /// `unsubscribed`
    #[serde(rename = "unsubscribed")]
    Tag,
}

/// The `type` of a reply: `pong`.
#[derive(Debug, Serialize, ToSchema)]
pub enum PongTag {
    /// `pong`
    #[serde(rename = "pong")]
    Tag,
}

/// The `type` of a reply: `scores`.
#[derive(Debug, Serialize, ToSchema)]
pub enum ScoresTag {
    /// `scores`
    #[serde(rename = "scores")]
    Tag,
}

/// The `type` of a reply: `error`.
#[derive(Debug, Serialize, ToSchema)]
pub enum ErrorTag {
    /// `error`
    #[serde(rename = "error")]
    Tag,
}

/// The reply to `subscribe`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Subscribed {
    /// The channel.
    pub channel: String,
    /// Stored events pushed first (with `after`).
    pub replayed: usize,
    /// `subscribed`.
    #[serde(rename = "type")]
    pub kind: SubscribedTag,
}

/// The reply to `unsubscribe`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Unsubscribed {
    /// The channel.
    pub channel: String,
    /// `unsubscribed`.
    #[serde(rename = "type")]
    pub kind: UnsubscribedTag,
}

/// The reply to `ping`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pong {
    /// `pong`.
    #[serde(rename = "type")]
    pub kind: PongTag,
}

/// The reply to a message that could not be handled.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorReply {
    /// What went wrong, as the HTTP API's problems say it.
    #[schema(value_type = ProblemBody)]
    pub error: Value,
    /// `error`.
    #[serde(rename = "type")]
    pub kind: ErrorTag,
}

/// The reply to `score` with `model_id` and `rows`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelScores {
    /// How many rows are anomalies.
    pub anomalies: usize,
    /// Columns sent that the model does not take.
    pub ignored_columns: Vec<String>,
    /// 1 for an anomaly, else 0.
    pub labels: Vec<u8>,
    /// The model.
    pub model_id: ModelId,
    /// The message's `request_id`.
    pub request_id: Option<String>,
    /// One score per row.
    pub scores: Vec<f64>,
    /// Rows scoring above this are anomalies.
    pub threshold: f64,
    /// `scores`.
    #[serde(rename = "type")]
    pub kind: ScoresTag,
}

/// The reply to `score` with `stream_id` and `points`: the answer of
/// `POST /v1/streams/{id}/points`, with the tag and the request id.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamScores {
    /// The points' scores.
    #[serde(flatten)]
    pub appended: Appended,
    /// The message's `request_id`.
    pub request_id: Option<String>,
    /// `scores`.
    #[serde(rename = "type")]
    pub kind: ScoresTag,
}

/// An event pushed to the channels that carry it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pushed {
    /// RFC 3339.
    pub at: String,
    /// The request or job it belongs to.
    pub correlation_id: String,
    /// Its id: clients drop one they have seen (a replay may repeat it).
    pub event_id: EventId,
    /// What the event says: the payload of its `type`.
    #[schema(value_type = crate::domain::payload::Payload)]
    pub payload: Value,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventType,
}

#[derive(OpenApi)]
#[openapi(components(schemas(
    Action,
    Subscribed,
    Unsubscribed,
    Pong,
    ErrorReply,
    ModelScores,
    StreamScores,
    Pushed,
    ProblemBody
)))]
struct Schemas;

/// What the client sends, and what it receives: (message name, schema name, summary).
const SENT: &[(&str, &str, &str)] =
    &[("action", "Action", "subscribe, unsubscribe, score or ping")];
const RECEIVED: &[(&str, &str, &str)] = &[
    ("subscribed", "Subscribed", "The reply to subscribe"),
    ("unsubscribed", "Unsubscribed", "The reply to unsubscribe"),
    ("pong", "Pong", "The reply to ping"),
    (
        "modelScores",
        "ModelScores",
        "The reply to score on a model",
    ),
    (
        "streamScores",
        "StreamScores",
        "The reply to score on a stream",
    ),
    ("error", "ErrorReply", "A message that could not be handled"),
    ("event", "Pushed", "An event on a subscribed channel"),
];

/// The JSON Schema dialect of the payloads (the same as the OpenAPI 3.1 document's).
const SCHEMA_FORMAT: &str = "application/schema+json;version=draft-2020-12";

/// The document.
pub fn document() -> Value {
    let schemas = serde_json::to_value(
        Schemas::openapi()
            .components
            .map(|c| c.schemas)
            .unwrap_or_default(),
    )
    .unwrap_or(Value::Null);
    let message = |(name, schema, summary): &(&str, &str, &str)| {
        (
            name.to_string(),
            json!({
                "name": name,
                "summary": summary,
                "contentType": "application/json",
                "payload": {
                    "schemaFormat": SCHEMA_FORMAT,
                    "schema": {"$ref": format!("#/components/schemas/{schema}")},
                },
            }),
        )
    };
    let refs = |list: &[(&str, &str, &str)]| -> Vec<Value> {
        list.iter()
            .map(|(name, _, _)| json!({"$ref": format!("#/channels/socket/messages/{name}")}))
            .collect()
    };
    let channel_messages: serde_json::Map<String, Value> = SENT
        .iter()
        .chain(RECEIVED)
        .map(|(name, _, _)| {
            (
                name.to_string(),
                json!({"$ref": format!("#/components/messages/{name}")}),
            )
        })
        .collect();
    let messages: serde_json::Map<String, Value> =
        SENT.iter().chain(RECEIVED).map(message).collect();
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "nomaly WebSocket API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Connect with `?api_key=<key>` (on AWS, the API's WebSocket stage; locally `ws://127.0.0.1:8080/ws`). Every message is a JSON object. Subscribe to `tenant`, `task:<id>`, `model:<id>` or `stream:<id>`; events on those channels arrive as they are stored.",
            "license": {"name": "Apache-2.0"},
        },
        "servers": {
            "local": {"host": "127.0.0.1:8080", "pathname": "/ws", "protocol": "ws", "description": "`nomaly serve`"},
            "aws": {"host": "{apiId}.execute-api.{region}.amazonaws.com", "pathname": "/{stage}", "protocol": "wss", "description": "The SAM stack's WebSocket API",
                "variables": {"apiId": {"description": "The stack's WebSocketApi id"}, "region": {"default": "us-east-1"}, "stage": {"default": "live"}}},
        },
        "channels": {
            "socket": {
                "address": "/",
                "description": "One connection: the client's actions, and the replies and events pushed to it.",
                "messages": channel_messages,
            },
        },
        "operations": {
            "act": {
                "action": "receive",
                "summary": "The service receives the client's actions.",
                "channel": {"$ref": "#/channels/socket"},
                "messages": refs(SENT),
            },
            "push": {
                "action": "send",
                "summary": "The service sends replies, and the events of subscribed channels.",
                "channel": {"$ref": "#/channels/socket"},
                "messages": refs(RECEIVED),
            },
        },
        "components": {
            "messages": messages,
            "schemas": schemas,
        },
    })
}

/// The document as pretty-printed JSON with a final newline, as committed in
/// `docs/asyncapi.json`.
pub fn json() -> String {
    let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/asyncapi.json");

    #[test]
    fn the_committed_document_is_the_codes() {
        let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
        assert!(
            committed == json(),
            "docs/asyncapi.json differs from the code's document; write it again with\n  \
             cargo run -p nomaly -- asyncapi > docs/asyncapi.json"
        );
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = json();
        for piece in text.split("\"$ref\": \"#/").skip(1) {
            let pointer = piece.split('"').next().unwrap_or_default();
            assert!(
                doc.pointer(&format!("/{pointer}")).is_some(),
                "#/{pointer} does not resolve"
            );
        }
    }

    /// The replies' schemas describe the JSON the service builds: a message built as
    /// `websocket.rs` builds it validates as the type says (checked field by field).
    #[test]
    fn the_reply_types_serialize_as_the_service_builds_them() {
        let subscribed = Subscribed {
            channel: "tenant".into(),
            replayed: 2,
            kind: SubscribedTag::Tag,
        };
        assert_eq!(
            serde_json::to_string(&subscribed).expect("json"),
            serde_json::to_string(
                &json!({"type": "subscribed", "channel": "tenant", "replayed": 2})
            )
            .expect("json")
        );
        let pong = Pong { kind: PongTag::Tag };
        assert_eq!(
            serde_json::to_value(&pong).expect("json"),
            json!({"type": "pong"})
        );
    }
}
