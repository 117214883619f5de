//! WebSocket connections as the service ends them: a connection whose key no longer
//! works is closed at the gateway and its record forgotten, whether a message on it
//! ([`websocket`](crate::service::websocket)) or an event pushed to it
//! ([`fanout`](crate::service::fanout)) found the key revoked.

use crate::service::uses::{UsesConnections, UsesNotifier};

/// Closes a connection whose key no longer works and forgets it.
pub async fn close(services: &(impl UsesConnections + UsesNotifier), connection_id: &str) {
    tracing::info!(
        connection = connection_id,
        "closing a connection whose key no longer works"
    );
    if let Err(e) = services.notifier().disconnect(connection_id).await {
        tracing::warn!(connection = connection_id, error = %e, "the connection was not closed");
    }
    if let Err(e) = services
        .connections()
        .delete_connection(connection_id)
        .await
    {
        tracing::warn!(connection = connection_id, error = %e, "the connection record was not deleted");
    }
}
