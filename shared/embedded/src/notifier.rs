//! Push to WebSocket sessions served by this process.

use async_trait::async_trait;
use nomaly_core::ports::{PushError, PushNotifier};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Connection ids mapped to the sending half of each session's outbox.
#[derive(Clone, Default)]
pub struct LocalNotifier {
    sessions: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Vec<u8>>>>>,
}

impl LocalNotifier {
    /// Registers a session; its messages arrive on the returned receiver.
    pub fn open(&self, connection_id: &str) -> mpsc::UnboundedReceiver<Vec<u8>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().insert(connection_id.to_string(), tx);
        rx
    }

    /// Forgets a session; pushes to it are `Gone` from now on.
    pub fn close(&self, connection_id: &str) {
        self.lock().remove(connection_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<Vec<u8>>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl PushNotifier for LocalNotifier {
    async fn push(&self, connection_id: &str, message: &[u8]) -> Result<(), PushError> {
        let sender = self.lock().get(connection_id).cloned();
        match sender {
            Some(tx) if tx.send(message.to_vec()).is_ok() => Ok(()),
            _ => {
                self.close(connection_id);
                Err(PushError::Gone(connection_id.to_string()))
            }
        }
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
        n.close("c2");
        assert!(matches!(n.push("c2", b"x").await, Err(PushError::Gone(_))));
        assert!(matches!(
            n.push("nobody", b"x").await,
            Err(PushError::Gone(_))
        ));
    }
}
