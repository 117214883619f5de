//! The use cases every entry point runs the same way: inline detection, submitting and
//! running background jobs, profiling uploads, fanning events out to WebSocket
//! connections, the WebSocket actions, and the scheduler's sweep. Each takes the
//! [`Services`] (the ports) and knows nothing of Lambda, HTTP servers or AWS.
//!
//! The tunables every use case reads are [`Settings`] (`settings.rs`).

pub mod alerts;
pub mod backtest;
pub mod batch;
pub mod chains;
pub mod chunks;
pub mod connections;
pub mod cost;
pub mod datasets;
pub mod detection;
pub mod fanout;
pub mod feedback;
pub mod ingest;
pub mod input;
pub mod jobs;
pub mod models;
pub mod problem;
pub mod profile;
pub mod rate_limit;
pub mod report;
pub mod scheduler;
mod settings;
pub mod streams;
pub mod tasks;
pub mod training;
pub mod uses;
pub mod websocket;
pub mod worker;

use crate::domain::payload::EventPayload;
use crate::domain::{ApiKey, Connection, Event, TenantId};
use crate::ports::{
    AlertSender, AlertStore, BlobStore, ConnectionRegistry, DatasetStore, EventLog, ExpirySweeper,
    FeedbackStore, IdempotencyStore, JobQueue, KeyStore, ModelRegistry, PushNotifier, RateLimiter,
    ResultCache, StoreError, StoreResult, StreamStore, TaskStore, UrlSigner,
};
pub use problem::Problem;
pub use settings::{BadSetting, Settings};
use std::sync::Arc;

/// The ports a deployment is made of, built once per process and shared by every
/// handler. Cheap to clone.
#[derive(Clone)]
pub struct Services {
    /// Tasks.
    pub tasks: Arc<dyn TaskStore>,
    /// The event log.
    pub events: Arc<dyn EventLog>,
    /// Model records.
    pub models: Arc<dyn ModelRegistry>,
    /// Dataset records.
    pub datasets: Arc<dyn DatasetStore>,
    /// Streams and their detectors' state.
    pub streams: Arc<dyn StreamStore>,
    /// API keys.
    pub keys: Arc<dyn KeyStore>,
    /// Blobs.
    pub blobs: Arc<dyn BlobStore>,
    /// The jobs queue.
    pub queue: Arc<dyn JobQueue>,
    /// The queue of batch chunks (its own workers and concurrency, so a large batch
    /// never holds up the jobs queue).
    pub chunks: Arc<dyn JobQueue>,
    /// WebSocket connections.
    pub connections: Arc<dyn ConnectionRegistry>,
    /// Pushes to WebSocket connections.
    pub notifier: Arc<dyn PushNotifier>,
    /// Idempotency records.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Result cache.
    pub cache: Arc<dyn ResultCache>,
    /// Deletes expired records.
    pub sweeper: Arc<dyn ExpirySweeper>,
    /// Grants uploads.
    pub uploads: Arc<dyn UrlSigner>,
    /// Counts requests per tenant.
    pub rate: Arc<dyn RateLimiter>,
    /// Alert rules and their delivery logs.
    pub alerts: Arc<dyn AlertStore>,
    /// Verdicts on stream results.
    pub feedback: Arc<dyn FeedbackStore>,
    /// The queue of alert deliveries (the `notify` function's).
    pub alert_queue: Arc<dyn JobQueue>,
    /// Sends alerts: webhooks, and EventBridge on AWS.
    pub sender: Arc<dyn AlertSender>,
    /// Tunables.
    pub settings: Settings,
    /// Models loaded from the blob store, kept while the process lives.
    pub loaded_models: Arc<models::LoadedModels>,
}

/// The queues of a deployment, one per lane of work.
#[derive(Clone)]
pub struct Queues {
    /// Jobs.
    pub jobs: Arc<dyn JobQueue>,
    /// Batch chunks.
    pub chunks: Arc<dyn JobQueue>,
    /// Alert deliveries.
    pub alerts: Arc<dyn JobQueue>,
}

/// Every record port on one store (one SQLite database, one pair of DynamoDB tables).
pub trait Records:
    TaskStore
    + EventLog
    + ModelRegistry
    + DatasetStore
    + StreamStore
    + KeyStore
    + ConnectionRegistry
    + IdempotencyStore
    + ResultCache
    + ExpirySweeper
    + RateLimiter
    + AlertStore
    + FeedbackStore
    + 'static
{
}

impl<T> Records for T where
    T: TaskStore
        + EventLog
        + ModelRegistry
        + DatasetStore
        + StreamStore
        + KeyStore
        + ConnectionRegistry
        + IdempotencyStore
        + ResultCache
        + ExpirySweeper
        + RateLimiter
        + AlertStore
        + FeedbackStore
        + 'static
{
}

impl Services {
    /// The services on one record store and the given blobs, uploads, queues, push and
    /// alert sender.
    #[allow(clippy::too_many_arguments)]
    pub fn assemble<R: Records>(
        records: Arc<R>,
        blobs: Arc<dyn BlobStore>,
        uploads: Arc<dyn UrlSigner>,
        queues: Queues,
        notifier: Arc<dyn PushNotifier>,
        sender: Arc<dyn AlertSender>,
        settings: Settings,
    ) -> Self {
        Services {
            tasks: records.clone(),
            events: records.clone(),
            models: records.clone(),
            datasets: records.clone(),
            streams: records.clone(),
            keys: records.clone(),
            connections: records.clone(),
            idempotency: records.clone(),
            cache: records.clone(),
            rate: records.clone(),
            alerts: records.clone(),
            feedback: records.clone(),
            sweeper: records,
            blobs,
            uploads,
            queue: queues.jobs,
            chunks: queues.chunks,
            alert_queue: queues.alerts,
            notifier,
            sender,
            settings,
            loaded_models: Arc::new(models::LoadedModels::default()),
        }
    }
}

impl dyn EventLog + '_ {
    /// Appends an event to the log (the stream behind it pushes it to subscribers and
    /// runs the chains).
    pub async fn publish(
        &self,
        tenant: &TenantId,
        correlation_id: &str,
        payload: &impl EventPayload,
    ) -> StoreResult<Event> {
        let event = Event::of(tenant.clone(), correlation_id, payload)
            .map_err(|e| StoreError::backend("encode an event", e))?;
        self.append(&event).await?;
        tracing::debug!(event_id = %event.event_id, kind = event.kind.as_str(), tenant = %tenant, "event");
        Ok(event)
    }

    /// Stores `task` (compare-and-set) and appends its event in one transaction.
    pub async fn publish_with_task(
        &self,
        task: &crate::domain::Task,
        payload: &impl EventPayload,
    ) -> StoreResult<Event> {
        let event = Event::of(task.tenant.clone(), &task.correlation_id, payload)
            .map_err(|e| StoreError::backend("encode an event", e))?;
        self.append_with_task(&event, task).await?;
        tracing::debug!(event_id = %event.event_id, kind = event.kind.as_str(), tenant = %task.tenant, "event");
        Ok(event)
    }
}

impl dyn KeyStore + '_ {
    /// The tenant of a presented API key (`nmk_...`), or 401.
    pub async fn authenticate(&self, presented: &str) -> Result<TenantId, Problem> {
        self.authenticate_key(presented).await.map(|key| key.tenant)
    }

    /// The stored record of a presented API key (`nmk_...`), or 401. The secret is
    /// compared with the stored hash in constant time.
    pub async fn authenticate_key(&self, presented: &str) -> Result<ApiKey, Problem> {
        let Some((id, secret)) = ApiKey::split(presented.trim()) else {
            return Err(Problem::unauthorized("the API key is malformed"));
        };
        match self.get_key(&id).await? {
            Some(key) if key.accepts(secret) => Ok(key),
            _ => Err(Problem::unauthorized(
                "the API key is not valid (unknown, wrong or revoked)",
            )),
        }
    }

    /// Whether the key a connection was opened with still works (not revoked, not
    /// deleted). A connection without a recorded key predates key binding and is judged
    /// by its tenant alone.
    pub async fn connection_key_live(&self, connection: &Connection) -> StoreResult<bool> {
        let Some(id) = &connection.key_id else {
            return Ok(true);
        };
        Ok(self
            .get_key(id)
            .await?
            .is_some_and(|k| k.revoked_at.is_none() && k.tenant == connection.tenant))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// The modules of service/ (a file or a folder each) and those each one's code
    /// names through `crate::service::<module>` (doc comments left out: a link in prose
    /// is not a dependency).
    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/service");
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&root).expect("service/") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                for inner in std::fs::read_dir(&path).expect("a module folder") {
                    files.push(inner.expect("an entry").path());
                }
            } else {
                files.push(path);
            }
        }
        let module_of = |path: &Path| {
            let rel = path.strip_prefix(&root).expect("under service/");
            let first = rel.components().next().expect("a component");
            first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        };
        let modules: BTreeSet<String> = files
            .iter()
            .map(|p| module_of(p))
            .filter(|m| m != "mod")
            .collect();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for path in &files {
            let from = module_of(path);
            if from == "mod" {
                continue;
            }
            let text = std::fs::read_to_string(path).expect("a source file");
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let mut named = BTreeSet::new();
            for piece in code.split("crate::service::").skip(1) {
                let group = piece
                    .strip_prefix('{')
                    .map(|g| g.split('}').next().unwrap_or(""));
                let names: Vec<&str> = match group {
                    Some(g) => g.split(',').collect(),
                    None => vec![piece],
                };
                for name in names {
                    let name: String = name
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if modules.contains(&name) && name != from {
                        named.insert(name);
                    }
                }
            }
            graph.entry(from).or_default().extend(named);
        }
        graph
    }

    #[test]
    fn service_has_no_import_cycle() {
        let graph = imports();
        assert!(graph.len() > 20, "read {} modules", graph.len());
        // A module is in a cycle when it reaches itself.
        for start in graph.keys() {
            let mut seen = BTreeSet::new();
            let mut todo: Vec<&String> = graph[start].iter().collect();
            let mut path = Vec::new();
            while let Some(m) = todo.pop() {
                assert!(
                    m != start,
                    "{start} reaches itself by imports (modules visited: {path:?})"
                );
                if seen.insert(m.clone()) {
                    path.push(m.clone());
                    todo.extend(graph.get(m).into_iter().flatten());
                }
            }
        }
    }
}
