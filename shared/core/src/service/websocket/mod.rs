//! The WebSocket API: `$connect` authenticates (`?api_key=`) and registers the
//! connection, `$disconnect` forgets it, and every message is a JSON action:
//!
//! - `{"action":"subscribe","channel":"task:<id>"|"model:<id>"|"stream:<id>"|"tenant","after":"<event id>"}`
//!   subscribes; with `after`, the channel's stored events after that id are pushed first
//!   (the subscription is recorded before the replay, so an event stored meanwhile may
//!   arrive twice but is never missed: clients drop repeated `event_id`s).
//! - `{"action":"unsubscribe","channel":...}`
//! - `{"action":"score","model_id":"mdl_...","rows":[[...]],"request_id":"..."}` scores a
//!   few rows on a trained model and answers on the socket.
//! - `{"action":"score","stream_id":"stm_...","points":[{"timestamp":...,"value":...}]}`
//!   appends points to a stream as `POST /v1/streams/{id}/points` does (the detector
//!   learns them; anomalies go to the `stream:<id>` channel) and answers their scores.
//! - `{"action":"ping"}` answers `pong`.
//!
//! Replies are JSON with a `type`: `subscribed`, `unsubscribed`, `scores`, `pong`, or
//! `error` (with a problem: `type`, `title`, `status`, `detail`). Events arrive with the
//! event's own type (`task.progress`, ...).
//!
//! The messages and the actions they ask for (`actions.rs`), and replaying a channel's
//! stored events after `subscribe` (`replay.rs`). This module connects and disconnects.

mod actions;
mod replay;

pub use actions::{error_message, message_received, Action};

use crate::domain::{Connection, TenantId};
use crate::limits::{self, MAX_CONNECTIONS_PER_TENANT};
use crate::service::uses::{UsesConnections, UsesKeys, UsesRate, UsesSettings};
use crate::service::Problem;
use crate::time::Timestamp;

/// Seconds a connection refused for its tenant's cap is told to wait.
const CONNECTIONS_RETRY_AFTER_SECS: u32 = 30;

/// Registers a new connection for the key's tenant; 401 without a valid key, 429 with
/// `Retry-After` past the tenant's rate limit or its cap on open connections.
pub async fn connect(
    services: &(impl UsesKeys + UsesConnections + UsesRate + UsesSettings),
    connection_id: &str,
    api_key: Option<&str>,
) -> Result<TenantId, Problem> {
    let key = api_key.ok_or_else(|| Problem::unauthorized("connect with ?api_key=<key>"))?;
    let key = services.keys().authenticate_key(key).await?;
    let tenant = key.tenant;
    crate::service::rate_limit::admit(services, &tenant).await?;
    let now = Timestamp::now();
    let open = services
        .connections()
        .tenant_connections(&tenant)
        .await?
        .iter()
        .filter(|c| c.expires_at > now)
        .count();
    if open >= MAX_CONNECTIONS_PER_TENANT {
        return Err(Problem::rate_limited(format!(
            "this tenant has {open} WebSocket connections open, the most it may hold; close one (limit `{}`, see docs/limits.md)",
            limits::CONNECTIONS_PER_TENANT.name
        ))
        .retry_after(CONNECTIONS_RETRY_AFTER_SECS));
    }
    let connection = Connection {
        id: connection_id.to_string(),
        tenant: tenant.clone(),
        key_id: Some(key.id),
        subscriptions: Vec::new(),
        expires_at: Timestamp::now()
            .plus_seconds(i64::from(services.settings().connection_ttl_secs)),
    };
    services.connections().put_connection(&connection).await?;
    tracing::info!(connection = connection_id, tenant = %tenant, "connected");
    Ok(tenant)
}

/// Forgets a connection.
pub async fn disconnect(
    services: &impl UsesConnections,
    connection_id: &str,
) -> Result<(), Problem> {
    services
        .connections()
        .delete_connection(connection_id)
        .await?;
    tracing::info!(connection = connection_id, "disconnected");
    Ok(())
}
