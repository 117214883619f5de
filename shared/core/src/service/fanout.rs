//! What follows an event being stored (the `events` function on the events table's
//! stream): push it to every connection of the tenant subscribed to a matching channel
//! (a gone connection is forgotten; the others still get it), then run its chains
//! (`chains.rs`), then match it to the tenant's alert rules (`alerts/`).

use crate::domain::{Connection, Event};
use crate::ports::PushError;
use crate::service::uses::{UsesConnections, UsesKeys, UsesNotifier};
use crate::service::{alerts, chains, Problem, Services};

/// How one event's pushes went.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// Connections that got it.
    pub delivered: usize,
    /// Gone connections, now forgotten.
    pub gone: usize,
    /// Pushes that failed otherwise (logged; not retried, so others get no duplicate).
    pub failed: usize,
    /// Connections whose key was revoked: sent nothing, closed and forgotten.
    pub revoked: usize,
}

/// The message pushed for an event.
pub fn message(event: &Event) -> Vec<u8> {
    serde_json::to_vec(&event.message()).unwrap_or_default()
}

/// What became of one push.
enum Outcome {
    Delivered,
    Gone,
    Failed,
    Revoked,
}

/// Pushes `event` to its tenant's subscribed connections, up to
/// [`FANOUT_CONCURRENCY`](crate::limits::FANOUT_CONCURRENCY) at once: one tenant's many
/// sockets must not hold the events stream's shard for one round trip each.
pub async fn push(
    services: &(impl UsesKeys + UsesConnections + UsesNotifier),
    event: &Event,
) -> Result<Pushed, Problem> {
    use futures_util::stream::{self, StreamExt};
    let connections = services
        .connections()
        .tenant_connections(&event.tenant)
        .await?;
    let wanted: Vec<Connection> = connections.into_iter().filter(|c| c.wants(event)).collect();
    // Whether each key is still valid, looked up once per event.
    let mut keys: std::collections::HashMap<Option<crate::ids::KeyId>, bool> =
        std::collections::HashMap::new();
    for c in &wanted {
        if keys.contains_key(&c.key_id) {
            continue;
        }
        let live = services.keys().connection_key_live(c).await.unwrap_or_else(|e| {
            // Pushing on is the lesser harm than failing the whole event.
            tracing::warn!(connection = %c.id, error = %e, "the connection's key could not be checked");
            true
        });
        keys.insert(c.key_id.clone(), live);
    }
    let body = message(event);
    let outcomes: Vec<Result<Outcome, Problem>> = stream::iter(wanted.into_iter().map(|c| {
        let live = keys.get(&c.key_id).copied().unwrap_or(true);
        push_one(services, c, &body, live)
    }))
    .buffer_unordered(crate::limits::FANOUT_CONCURRENCY)
    .collect()
    .await;
    let mut pushed = Pushed::default();
    for outcome in outcomes {
        match outcome? {
            Outcome::Delivered => pushed.delivered += 1,
            Outcome::Gone => pushed.gone += 1,
            Outcome::Failed => pushed.failed += 1,
            Outcome::Revoked => pushed.revoked += 1,
        }
    }
    Ok(pushed)
}

/// Pushes `body` to one connection (or closes it when its key is no longer `live`).
async fn push_one(
    services: &(impl UsesConnections + UsesNotifier),
    c: Connection,
    body: &[u8],
    live: bool,
) -> Result<Outcome, Problem> {
    if !live {
        crate::service::connections::close(services, &c.id).await;
        return Ok(Outcome::Revoked);
    }
    match services.notifier().push(&c.id, body).await {
        Ok(()) => Ok(Outcome::Delivered),
        Err(PushError::Gone(_)) => {
            tracing::info!(connection = %c.id, "connection gone; forgetting it");
            services.connections().delete_connection(&c.id).await?;
            Ok(Outcome::Gone)
        }
        Err(e) => {
            tracing::warn!(connection = %c.id, error = %e, "push failed");
            Ok(Outcome::Failed)
        }
    }
}

/// Handles one stored event: pushes, then chains, then alerts.
pub async fn handle(services: &Services, event: &Event) -> Result<Pushed, Problem> {
    let pushed = push(services, event).await?;
    chains::chain(services, event).await?;
    alerts::route(services, event).await?;
    Ok(pushed)
}
