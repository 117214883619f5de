//! Push to WebSocket sessions served by this process.

use async_trait::async_trait;
use nomaly_core::ports::{PushError, PushNotifier};
use nomaly_core::time::Timestamp;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Messages a session may have waiting; a client that stops reading is disconnected
/// once this many are waiting (API Gateway likewise drops clients that do not keep up).
pub const OUTBOX: usize = 1024;

struct Session {
    outbox: mpsc::Sender<Vec<u8>>,
    opened_at: Timestamp,
}

/// Connection ids mapped to the sending half of each session's outbox.
#[derive(Clone, Default)]
pub struct LocalNotifier {
    sessions: Arc<Mutex<HashMap<String, Session>>>,
}

impl LocalNotifier {
    /// Registers a session; its messages arrive on the returned receiver.
    pub fn open(&self, connection_id: &str) -> mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = mpsc::channel(OUTBOX);
        let session = Session {
            outbox: tx,
            opened_at: Timestamp::now(),
        };
        self.lock().insert(connection_id.to_string(), session);
        rx
    }

    /// Forgets a session; pushes to it are `Gone` from now on, and its receiver ends,
    /// which closes the socket. Returns whether it was open.
    pub fn close(&self, connection_id: &str) -> bool {
        self.lock().remove(connection_id).is_some()
    }

    /// When the session opened, if it is open.
    pub fn opened_at(&self, connection_id: &str) -> Option<Timestamp> {
        self.lock()
            .get(connection_id)
            .filter(|s| !s.outbox.is_closed())
            .map(|s| s.opened_at)
    }

    /// Ids of the open sessions.
    pub fn open_sessions(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl PushNotifier for LocalNotifier {
    async fn push(&self, connection_id: &str, message: &[u8]) -> Result<(), PushError> {
        let sender = self.lock().get(connection_id).map(|s| s.outbox.clone());
        match sender.map(|tx| tx.try_send(message.to_vec())) {
            Some(Ok(())) => Ok(()),
            Some(Err(mpsc::error::TrySendError::Full(_))) => {
                tracing::warn!(
                    connection = connection_id,
                    waiting = OUTBOX,
                    "the client does not read its messages; disconnecting it"
                );
                self.close(connection_id);
                Err(PushError::Gone(connection_id.to_string()))
            }
            _ => {
                self.close(connection_id);
                Err(PushError::Gone(connection_id.to_string()))
            }
        }
    }

    async fn disconnect(&self, connection_id: &str) -> Result<(), PushError> {
        self.close(connection_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pushes_reach_open_sessions_and_closed_ones_are_gone() {
        let n = LocalNotifier::default();
        let mut rx = n.open("c1");
        n.push("c1", b"hello").await.expect("open session");
        assert_eq!(rx.recv().await.as_deref(), Some(&b"hello"[..]));
        drop(rx);
        assert!(
            matches!(n.push("c1", b"x").await, Err(PushError::Gone(_))),
            "receiver dropped"
        );
        let _rx2 = n.open("c2");
        assert!(n.opened_at("c2").is_some());
        assert!(n.close("c2"));
        assert!(n.opened_at("c2").is_none());
        assert!(!n.close("c2"), "closed once");
        assert!(matches!(n.push("c2", b"x").await, Err(PushError::Gone(_))));
        assert!(matches!(
            n.push("nobody", b"x").await,
            Err(PushError::Gone(_))
        ));
        // A client that stops reading is disconnected when its outbox is full.
        let _slow = n.open("c3");
        for _ in 0..OUTBOX {
            n.push("c3", b"x").await.expect("room in the outbox");
        }
        assert!(matches!(n.push("c3", b"x").await, Err(PushError::Gone(_))));
        assert!(n.opened_at("c3").is_none());
    }
}
