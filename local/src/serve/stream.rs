//! The events stream in-process: what the DynamoDB stream and the `events` function do on
//! AWS. Every event appended to the log is handed, once stored, to the dispatcher in
//! [`super::background`], which runs the same fan-out and chains as the `events` function.

use async_trait::async_trait;
use nomaly_core::domain::{Event, Task, TenantId};
use nomaly_core::ids::EventId;
use nomaly_core::ports::{EventLog, Page, StoreResult};
use nomaly_core::service::Services;
use std::sync::Arc;
use tokio::sync::mpsc;

/// An event log that passes each newly stored event on.
pub struct InProcess {
    log: Arc<dyn EventLog>,
    stream: mpsc::UnboundedSender<Event>,
}

impl InProcess {
    /// Puts the stream in front of `services`' event log; the stored events arrive on
    /// the returned receiver, in the order they were stored.
    pub fn wrap(services: &mut Services) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        services.events = Arc::new(InProcess {
            log: services.events.clone(),
            stream: tx,
        });
        rx
    }
}

#[async_trait]
impl EventLog for InProcess {
    async fn append(&self, event: &Event) -> StoreResult<()> {
        // Like a stream of INSERTs: an event stored twice (`AlreadyExists`) is passed on
        // once.
        self.log.append(event).await?;
        // Fails only once the dispatcher has stopped, at shutdown.
        let _ = self.stream.send(event.clone());
        Ok(())
    }

    async fn append_with_task(&self, event: &Event, task: &Task) -> StoreResult<()> {
        self.log.append_with_task(event, task).await?;
        let _ = self.stream.send(event.clone());
        Ok(())
    }

    async fn events_after(
        &self,
        tenant: &TenantId,
        after: Option<&EventId>,
        limit: usize,
    ) -> StoreResult<Page<Event>> {
        self.log.events_after(tenant, after, limit).await
    }
}
