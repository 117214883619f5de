//! Every port on one machine, assembled into [`Services`].

use crate::{Database, FileBlobs, LocalNotifier, LocalUploads, SqliteQueue, SqliteStore};
use nomaly_core::ports::StoreResult;
use nomaly_core::service::{Queues, Services, Settings};
use nomaly_core::webhook::{AddressPolicy, HttpSender};
use std::path::Path;
use std::sync::Arc;

/// The embedded stack: the services, and the parts a local server drives directly.
#[derive(Clone)]
pub struct Stack {
    /// The services on embedded adapters.
    pub services: Services,
    /// WebSocket sessions of this process.
    pub notifier: LocalNotifier,
    /// Upload URL signing and checking.
    pub uploads: LocalUploads,
    /// The jobs queue.
    pub queue: SqliteQueue,
    /// The batch chunks queue.
    pub chunks: SqliteQueue,
    /// The alert deliveries queue.
    pub alerts: SqliteQueue,
    /// The record store behind `services` (for what only the local server does, such as
    /// its recovery at start).
    pub store: Arc<SqliteStore>,
}

impl Stack {
    /// Opens (or creates) the stack in `data_dir`; upload URLs point at `base_url`.
    pub fn open(data_dir: &Path, base_url: &str, settings: Settings) -> StoreResult<Self> {
        let db = Database::open(data_dir)?;
        let records = Arc::new(SqliteStore::new(db.clone()));
        let queue = SqliteQueue::new(db.clone(), "jobs", settings.max_receives);
        let chunks = SqliteQueue::new(db.clone(), "chunks", settings.max_receives);
        let alerts = SqliteQueue::new(db, "alerts", settings.max_receives);
        let notifier = LocalNotifier::default();
        let uploads = LocalUploads::open(data_dir, base_url)?;
        let services = Services::assemble(
            records.clone(),
            Arc::new(FileBlobs::new(data_dir)),
            Arc::new(uploads.clone()),
            Queues {
                jobs: Arc::new(queue.clone()),
                chunks: Arc::new(chunks.clone()),
                alerts: Arc::new(alerts.clone()),
            },
            Arc::new(notifier.clone()),
            // Public HTTPS only; the local server widens this with
            // --allow-loopback-webhooks.
            Arc::new(HttpSender::system(AddressPolicy::default())),
            settings,
        );
        Ok(Stack {
            store: records,
            services,
            notifier,
            uploads,
            queue,
            chunks,
            alerts,
        })
    }
}
