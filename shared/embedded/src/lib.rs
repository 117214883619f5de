//! nomaly's ports on one machine, durable across restarts, needing nothing but a data
//! folder (default `.nomaly/`):
//!
//! - [`SqliteStore`]: tasks, events, models, datasets, keys, connections, idempotency
//!   records and cached results in one SQLite database (`nomaly.db`, WAL journal, every
//!   write a transaction: a crash leaves the old state or the new, never a torn one).
//! - [`SqliteQueue`]: a job queue with SQS's semantics in the same database.
//! - [`FileBlobs`]: blobs as files, written to a temporary file, synced and renamed over.
//! - [`LocalNotifier`]: pushes to WebSocket sessions in this process.
//! - [`LocalUploads`]: signed upload URLs for the local server.

mod blobs;
mod db;
mod notifier;
mod queue;
mod stack;
mod store;
mod uploads;

pub use blobs::FileBlobs;
pub use db::{storage_calls, Database};
pub use notifier::LocalNotifier;
pub use queue::SqliteQueue;
pub use stack::Stack;
pub use store::SqliteStore;
pub use uploads::LocalUploads;
