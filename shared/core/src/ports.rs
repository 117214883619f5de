//! Ports: the narrow interfaces the domain needs from storage, queues and push. Two sets
//! of adapters implement them (AWS in `shared/aws`, one machine in `shared/embedded`) and
//! pass the same contract tests. Each method's doc says what it guarantees; every method
//! that reads or lists by tenant never returns another tenant's records.

use crate::domain::{
    AlertDelivery, AlertRule, ApiKey, Connection, Dataset, EntityWritten, Event, Feedback,
    ModelRecord, Stream, StreamEntity, StreamState, Task, TenantId,
};
use crate::ids::{
    AlertId, DatasetId, DeliveryId, EventId, JobId, KeyId, ModelId, StreamId, TaskId,
};
use crate::limits::MAX_UPLOAD_URL_SECS;
use crate::time::Timestamp;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// What a storage, queue or push operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A record with that id exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The record changed since it was read: the compare-and-set lost.
    #[error("{0} changed since it was read")]
    Conflict(String),
    /// No such record (for this tenant).
    #[error("{0} not found")]
    NotFound(String),
    /// A listing's `next_token` is not one this store gave out.
    #[error("invalid page token")]
    BadPageToken,
    /// The backend failed; `operation` names what was being done.
    #[error("{operation}: {source}")]
    Backend {
        /// What was being done, e.g. `put task`.
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// Wraps a backend error with what was being done.
    pub fn backend(
        operation: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Backend {
            operation,
            source: Box::new(source),
        }
    }
}

/// Result of a port call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Which page of a listing to read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageRequest {
    /// At most this many items (1 to 1000; 0 means the default, 50).
    pub limit: usize,
    /// The `next_token` of the previous page.
    pub token: Option<String>,
}

impl PageRequest {
    /// The limit, defaulted and capped.
    pub fn effective_limit(&self) -> usize {
        Self::cap(self.limit)
    }

    /// A requested page size defaulted (0 means 50) and capped at 1000.
    pub fn cap(limit: usize) -> usize {
        match limit {
            0 => 50,
            n => n.min(1000),
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Opaque token for the next page; `None` on the last page.
    pub next_token: Option<String>,
}

/// Tasks, with compare-and-set updates.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Stores a new task. `AlreadyExists` if its id is taken.
    async fn create_task(&self, task: &Task) -> StoreResult<()>;
    /// The task, if it exists and belongs to `tenant`.
    async fn get_task(&self, tenant: &TenantId, id: &TaskId) -> StoreResult<Option<Task>>;
    /// The tenant's tasks, newest first.
    async fn list_tasks(&self, tenant: &TenantId, page: &PageRequest) -> StoreResult<Page<Task>>;
    /// Replaces the stored task with `task` if and only if the stored version is
    /// `task.version - 1` (the version it was made from with [`Task::transition`]).
    /// `Conflict` otherwise; `NotFound` if there is no such task for the tenant. Of two
    /// writers racing from the same version, exactly one wins.
    async fn update_task(&self, task: &Task) -> StoreResult<()>;
    /// Up to `limit` running tasks of any tenant last changed before `before`, oldest
    /// first: the tasks whose worker stopped reporting. The one listing that crosses
    /// tenants; only the scheduler calls it.
    async fn stale_running(&self, before: Timestamp, limit: usize) -> StoreResult<Vec<Task>>;
    /// How many of the tenant's tasks are `running`, counted up to `up_to` (a count of
    /// `up_to` means at least that many). Read without touching other tenants' records
    /// where the backend can; it may lag a write by a moment (an index), so it is for
    /// caps that tolerate a little overshoot.
    async fn count_running(&self, tenant: &TenantId, up_to: usize) -> StoreResult<usize>;
}

/// The append-only event log.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Appends an event. Appending the same `event_id` twice stores it once
    /// (`AlreadyExists` the second time).
    async fn append(&self, event: &Event) -> StoreResult<()>;
    /// Stores `task` as [`TaskStore::update_task`] does (a compare-and-set: `Conflict` or
    /// `NotFound` when it loses) and appends `event`, in one transaction: a reader sees
    /// both or neither. A task finishes this way, so its final status and its
    /// `task.completed` or `task.failed` event cannot part.
    async fn append_with_task(&self, event: &Event, task: &Task) -> StoreResult<()>;
    /// The tenant's events with ids after `after` (all when `None`), oldest first.
    async fn events_after(
        &self,
        tenant: &TenantId,
        after: Option<&EventId>,
        limit: usize,
    ) -> StoreResult<Page<Event>>;
}

/// Trained models' records.
#[async_trait]
pub trait ModelRegistry: Send + Sync {
    /// Stores a new record. `AlreadyExists` if its id is taken.
    async fn put_model(&self, model: &ModelRecord) -> StoreResult<()>;
    /// The record, if it exists and belongs to `tenant`.
    async fn get_model(&self, tenant: &TenantId, id: &ModelId) -> StoreResult<Option<ModelRecord>>;
    /// The tenant's models, newest first.
    async fn list_models(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<ModelRecord>>;
    /// Removes the record. `NotFound` if the tenant has no such model.
    async fn delete_model(&self, tenant: &TenantId, id: &ModelId) -> StoreResult<()>;
}

/// Datasets' records.
#[async_trait]
pub trait DatasetStore: Send + Sync {
    /// Stores or replaces a record (replacing is how a profile is added).
    async fn put_dataset(&self, dataset: &Dataset) -> StoreResult<()>;
    /// The record, if it exists and belongs to `tenant`.
    async fn get_dataset(&self, tenant: &TenantId, id: &DatasetId) -> StoreResult<Option<Dataset>>;
    /// The tenant's datasets, newest first.
    async fn list_datasets(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<Dataset>>;
    /// Removes the record. `NotFound` if the tenant has no such dataset.
    async fn delete_dataset(&self, tenant: &TenantId, id: &DatasetId) -> StoreResult<()>;
}

/// Streams and their detectors' state, with compare-and-set updates.
#[async_trait]
pub trait StreamStore: Send + Sync {
    /// Stores a new stream (its `version` is 1) with its state. `AlreadyExists` if its
    /// id is taken.
    async fn create_stream(&self, stream: &Stream, state: &StreamState) -> StoreResult<()>;
    /// The stream and where its state is, if it exists and belongs to `tenant`.
    async fn get_stream(
        &self,
        tenant: &TenantId,
        id: &StreamId,
    ) -> StoreResult<Option<(Stream, StreamState)>>;
    /// The tenant's streams, newest first (records only, not their state).
    async fn list_streams(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<Stream>>;
    /// Replaces the stored stream and state if and only if the stored version is
    /// `stream.version - 1`. `Conflict` otherwise; `NotFound` if there is no such stream
    /// for the tenant. Of two writers racing from the same version, exactly one wins, so
    /// no update is lost: the loser reads again and reapplies its points.
    async fn update_stream(&self, stream: &Stream, state: &StreamState) -> StoreResult<()>;
    /// Removes the record if its version is still `version` (so a write that landed
    /// after the caller read it, and the state it points at, is not lost unseen).
    /// `Conflict` if the version moved, `NotFound` if the tenant has no such stream.
    async fn delete_stream(
        &self,
        tenant: &TenantId,
        id: &StreamId,
        version: u64,
    ) -> StoreResult<()>;

    /// Entities of a stream split by entity, each with its detector state: those of
    /// `names` that exist, and how many entities the stream holds. Adapters read in
    /// batches (DynamoDB: BatchGetItem, 100 keys a call), never one call per entity.
    async fn get_entities(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        names: &[String],
    ) -> StoreResult<EntitiesRead>;
    /// Stores each entity and its state if its stored version is `version - 1` (for
    /// version 1: if it does not exist yet), in batches (DynamoDB: TransactWriteItems),
    /// and counts new ones against `max_entities`. Answers how each write ended, in the
    /// order given; an entity's write is all or nothing, and a `Conflict` or `OverCap`
    /// one stored nothing of that entity.
    async fn put_entities(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        writes: &[(StreamEntity, Vec<u8>)],
        max_entities: u64,
    ) -> StoreResult<Vec<EntityWritten>>;
    /// Up to `limit` entities of the stream with no point since `seen_before` (wall
    /// clock), with their versions.
    async fn idle_entities(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        seen_before: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<(String, u64)>>;
    /// Deletes each named entity that is still at the version given (one that moved was
    /// not idle after all), and answers the names deleted.
    async fn evict_entities(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        which: &[(String, u64)],
    ) -> StoreResult<Vec<String>>;
    /// The stream's entities in name order (records only, not their state).
    async fn list_entities(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        page: &PageRequest,
    ) -> StoreResult<Page<StreamEntity>>;
    /// Deletes all the stream's entities and their count (when the stream is deleted).
    async fn delete_entities(&self, tenant: &TenantId, stream: &StreamId) -> StoreResult<()>;
}

/// What [`StreamStore::get_entities`] found.
#[derive(Debug, Clone, Default)]
pub struct EntitiesRead {
    /// The entities asked for that exist, with their state, in no particular order.
    pub entities: Vec<(StreamEntity, Vec<u8>)>,
    /// How many entities the stream holds.
    pub count: u64,
}

/// API keys (stored hashed).
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores a new key record.
    async fn put_key(&self, key: &ApiKey) -> StoreResult<()>;
    /// The key record with this id, whatever its tenant (authentication looks keys up
    /// before it knows the tenant).
    async fn get_key(&self, id: &KeyId) -> StoreResult<Option<ApiKey>>;
    /// The tenant's keys.
    async fn list_keys(&self, tenant: &TenantId) -> StoreResult<Vec<ApiKey>>;
    /// Marks the key revoked from now on. `NotFound` if the tenant has no such key.
    async fn revoke_key(&self, tenant: &TenantId, id: &KeyId) -> StoreResult<()>;
}

/// Binary objects: datasets, model artifacts, reports, large job payloads.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` under `key`, replacing what was there; readers see the old object or
    /// the new one, never a mix.
    async fn put_blob(&self, key: &BlobKey, bytes: Vec<u8>) -> StoreResult<()>;
    /// Stores the finished file at `file` under `key`, as [`BlobStore::put_blob`] does
    /// with bytes. Stores that keep files move it into place (it must then not be used
    /// again); the default reads it and calls `put_blob`. The caller removes `file` if it
    /// is still there afterwards.
    async fn put_blob_file(&self, key: &BlobKey, file: &std::path::Path) -> StoreResult<()> {
        let file = file.to_path_buf();
        let bytes =
            crate::local_files::blocking("read a file to store it", move || std::fs::read(file))
                .await?;
        self.put_blob(key, bytes).await
    }
    /// The object, if any.
    async fn get_blob(&self, key: &BlobKey) -> StoreResult<Option<Vec<u8>>>;
    /// Removes the object (no error if there was none).
    async fn delete_blob(&self, key: &BlobKey) -> StoreResult<()>;
    /// The object's size in bytes, if it exists (without reading it).
    async fn blob_size(&self, key: &BlobKey) -> StoreResult<Option<u64>>;
    /// Bytes `start..end` of the object (an S3 ranged GET), cut short at its end: empty
    /// when `start` is at or past the end. `None` if there is no such object. Large
    /// objects are read this way, a range at a time, never whole.
    async fn get_blob_range(
        &self,
        key: &BlobKey,
        start: u64,
        end: u64,
    ) -> StoreResult<Option<Vec<u8>>>;
}

/// A blob's key: always under `tenants/<tenant>/`, built from checked parts, so one
/// tenant's key can never name another's object or climb out of its folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BlobKey(String);

impl TryFrom<String> for BlobKey {
    type Error = InvalidBlobKey;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        BlobKey::parse(&text)
    }
}

impl From<BlobKey> for String {
    fn from(key: BlobKey) -> String {
        key.0
    }
}

impl BlobKey {
    /// Checks a key read back from storage or a message: `tenants/<tenant>/` and at least
    /// one checked part.
    pub fn parse(text: &str) -> Result<Self, InvalidBlobKey> {
        let mut parts = text.split('/');
        let (Some("tenants"), Some(tenant)) = (parts.next(), parts.next()) else {
            return Err(InvalidBlobKey(text.to_string()));
        };
        let tenant = TenantId::parse(tenant).map_err(|_| InvalidBlobKey(text.to_string()))?;
        let rest: Vec<&str> = parts.collect();
        if rest.is_empty() {
            return Err(InvalidBlobKey(text.to_string()));
        }
        BlobKey::for_tenant(&tenant, &rest)
    }

    /// `tenants/<tenant>/<part>/<part>...`; each part is 1-128 characters of
    /// `A-Za-z0-9._-` and not `.` or `..`.
    pub fn for_tenant(tenant: &TenantId, parts: &[&str]) -> Result<Self, InvalidBlobKey> {
        let mut key = format!("tenants/{tenant}");
        for part in parts {
            let ok = (1..=128).contains(&part.len())
                && *part != "."
                && *part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
            if !ok {
                return Err(InvalidBlobKey(part.to_string()));
            }
            key.push('/');
            key.push_str(part);
        }
        Ok(BlobKey(key))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the key lies under `tenant`'s folder.
    pub fn belongs_to(&self, tenant: &TenantId) -> bool {
        self.0.starts_with(&format!("tenants/{tenant}/"))
    }
}

/// A blob key part that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not allowed in a storage key (1-128 characters of A-Z a-z 0-9 . _ -, not . or ..)"
)]
pub struct InvalidBlobKey(pub String);

/// A job: the small JSON envelope that travels on the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Its id (also the idempotency key of its handling).
    pub job_id: JobId,
    /// Whose.
    pub tenant: TenantId,
    /// Which handler runs it (`train`, `detect`, `profile`, ...).
    pub kind: String,
    /// The request it belongs to.
    pub correlation_id: String,
    /// The handler's input. Large inputs travel as blob keys, not inline.
    pub body: serde_json::Value,
}

/// A job handed to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The job.
    pub job: Job,
    /// Names this delivery for `delete` and `change_visibility`.
    pub receipt: String,
    /// How many times the job has been received, this time included.
    pub receive_count: u32,
}

/// A queue with SQS's semantics: at-least-once delivery, a received job is invisible
/// for its visibility timeout and comes back unless deleted, and a job received more than
/// the queue's maximum is moved to its dead-letter queue instead.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Enqueues jobs (in batches where the backend has them).
    async fn send(&self, jobs: &[Job]) -> StoreResult<()>;
    /// Enqueues jobs that stay hidden for `delay_secs` first (SQS's `DelaySeconds`; at most
    /// 900, longer is cut to it), as a job held back for later is.
    async fn send_after(&self, jobs: &[Job], delay_secs: u32) -> StoreResult<()>;
    /// Up to `max` visible jobs, each hidden for `visibility_secs` from now.
    async fn receive(&self, max: usize, visibility_secs: u32) -> StoreResult<Vec<Delivery>>;
    /// Removes a delivered job for good. A receipt from an earlier delivery of the job is
    /// accepted without error; as in SQS, it may or may not delete the job.
    async fn delete(&self, receipt: &str) -> StoreResult<()>;
    /// Hides a delivered job for `secs` from now (0 makes it visible at once).
    async fn change_visibility(&self, receipt: &str, secs: u32) -> StoreResult<()>;
    /// Up to `max` jobs from the dead-letter queue.
    async fn dead_letters(&self, max: usize) -> StoreResult<Vec<Job>>;
}

/// Live WebSocket connections.
#[async_trait]
pub trait ConnectionRegistry: Send + Sync {
    /// Stores or replaces a connection.
    async fn put_connection(&self, connection: &Connection) -> StoreResult<()>;
    /// The connection, if registered and not expired.
    async fn get_connection(&self, id: &str) -> StoreResult<Option<Connection>>;
    /// Forgets a connection (no error if unknown).
    async fn delete_connection(&self, id: &str) -> StoreResult<()>;
    /// Every unexpired connection of the tenant (all pages).
    async fn tenant_connections(&self, tenant: &TenantId) -> StoreResult<Vec<Connection>>;
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The connection is gone for good (API Gateway's 410): forget it.
    #[error("connection {0} is gone")]
    Gone(String),
    /// Anything else; the push may be retried.
    #[error("push to {connection}: {source}")]
    Failed {
        /// The connection.
        connection: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Sends messages to WebSocket connections.
#[async_trait]
pub trait PushNotifier: Send + Sync {
    /// Sends one message to one connection.
    async fn push(&self, connection_id: &str, message: &[u8]) -> Result<(), PushError>;
    /// Closes a connection from the server's side (no error if it is already gone).
    async fn disconnect(&self, connection_id: &str) -> Result<(), PushError>;
}

/// Verdicts on stream results.
#[async_trait]
pub trait FeedbackStore: Send + Sync {
    /// Stores a verdict; `AlreadyExists` if its id is taken.
    async fn put_feedback(&self, feedback: &Feedback) -> StoreResult<()>;
    /// A page of a tenant's verdicts, newest first.
    async fn list_feedback(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<Feedback>>;
}

/// Alert rules and the log of their deliveries.
#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Stores a rule, new or changed.
    async fn put_rule(&self, rule: &AlertRule) -> StoreResult<()>;
    /// A tenant's rule.
    async fn get_rule(&self, tenant: &TenantId, id: &AlertId) -> StoreResult<Option<AlertRule>>;
    /// A page of a tenant's rules, newest first.
    async fn list_rules(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<AlertRule>>;
    /// Deletes a rule and its delivery log; `NotFound` if there is no such rule.
    async fn delete_rule(&self, tenant: &TenantId, id: &AlertId) -> StoreResult<()>;
    /// Stores a new delivery; `AlreadyExists` if its id is taken.
    async fn create_delivery(&self, delivery: &AlertDelivery) -> StoreResult<()>;
    /// Stores a delivery's new status, attempts and error. Its `count` is left as stored
    /// (it grows by [`AlertStore::add_to_count`] meanwhile).
    async fn update_delivery(&self, delivery: &AlertDelivery) -> StoreResult<()>;
    /// One delivery of a tenant's rule, with its count as stored.
    async fn get_delivery(
        &self,
        tenant: &TenantId,
        rule: &AlertId,
        id: &DeliveryId,
    ) -> StoreResult<Option<AlertDelivery>>;
    /// A page of a rule's deliveries, newest first.
    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        rule: &AlertId,
        page: &PageRequest,
    ) -> StoreResult<Page<AlertDelivery>>;
    /// Adds `n` to a delivery's count in one atomic step (matches of its group during
    /// the cooldown); `NotFound` if there is no such delivery.
    async fn add_to_count(
        &self,
        tenant: &TenantId,
        rule: &AlertId,
        id: &DeliveryId,
        n: u64,
    ) -> StoreResult<()>;
}

/// What became of one attempt to send an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The receiver took it (2xx).
    Delivered {
        /// Its status.
        status: u16,
    },
    /// Worth trying again: a 5xx, 408 or 429, a timeout, a connection that failed.
    Retry {
        /// The status, if the receiver answered.
        status: Option<u16>,
        /// What went wrong.
        error: String,
    },
    /// Never worth trying again: another 4xx, a forbidden address, a destination this
    /// deployment cannot send to.
    Refused {
        /// The status, if the receiver answered.
        status: Option<u16>,
        /// Why.
        error: String,
    },
}

/// A signed webhook request, ready to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    /// Where.
    pub url: String,
    /// Headers besides `Content-Type: application/json`.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// Sends alerts out: webhooks over HTTPS, events to an EventBridge bus.
#[async_trait]
pub trait AlertSender: Send + Sync {
    /// Whether `url` may be a webhook here: its scheme, and every address its host
    /// resolves to now (`Err` says why not).
    async fn check_url(&self, url: &str) -> Result<(), String>;
    /// POSTs a webhook: the host is resolved and checked once more, and the connection
    /// goes to the address checked.
    async fn post(&self, request: &WebhookRequest) -> SendOutcome;
    /// The EventBridge bus this deployment may put events on, if any.
    fn bus(&self) -> Option<&str>;
    /// Puts one alert on `bus` (`detail_type`, JSON `detail`).
    async fn put_event(&self, bus: &str, detail_type: &str, detail: &str) -> SendOutcome;
}

/// The first response to a request carrying an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Claim {
    /// This caller is the first: it does the work, then calls `complete`.
    New,
    /// Another caller claimed the key and has not finished.
    InProgress,
    /// The work was done: here is its stored response.
    Done(Vec<u8>),
}

/// Remembers requests by idempotency key for a while.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for `ttl_secs` (a lease: longer than the work may take, so a caller
    /// that dies mid-way blocks retries only that long); exactly one of concurrent callers
    /// gets `New`.
    async fn claim(&self, tenant: &TenantId, key: &str, ttl_secs: u32) -> StoreResult<Claim>;
    /// Stores the response of a claimed key, kept for `ttl_secs` from now.
    async fn complete(
        &self,
        tenant: &TenantId,
        key: &str,
        response: &[u8],
        ttl_secs: u32,
    ) -> StoreResult<()>;
    /// Gives up a claim without a response (the work failed in a way a retry may fix), so
    /// the next request with the key is `New` again. No error if there was no claim.
    async fn release(&self, tenant: &TenantId, key: &str) -> StoreResult<()>;
}

/// Removes records whose time to live has passed (connections, idempotency records,
/// cached results). Readers already ignore expired records; this reclaims their space
/// where the backend does not do it by itself or does it late (DynamoDB's TTL may take
/// days, and emulators never do it).
#[async_trait]
pub trait ExpirySweeper: Send + Sync {
    /// Deletes up to `limit` expired records; returns how many it deleted.
    async fn sweep_expired(&self, limit: usize) -> StoreResult<usize>;
}

/// Counts each tenant's requests in fixed windows of time, so that a request limit holds
/// across every process sharing the store (on AWS, every Lambda instance).
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request of `tenant` in window number `window` (windows are `window_secs`
    /// long, counted from the Unix epoch) if fewer than `limit` were counted in it, and
    /// says whether it was counted. Of any number of concurrent callers, at most `limit`
    /// are counted in one window. A window's count may be dropped once it has passed.
    async fn admit(
        &self,
        tenant: &TenantId,
        window: i64,
        window_secs: u32,
        limit: u32,
    ) -> StoreResult<bool>;
}

/// A presigned upload: PUT the bytes to `url` with exactly these headers before
/// `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PresignedUpload {
    /// Where to PUT.
    pub url: String,
    /// The method (`PUT`).
    pub method: String,
    /// Headers the signature covers (`content-length` among them).
    pub headers: Vec<(String, String)>,
    /// When the URL stops working.
    pub expires_at: Timestamp,
}

/// An upload URL's lifetime as granted: `asked` clamped to 1 s ..= [`MAX_UPLOAD_URL_SECS`].
pub fn upload_url_lifetime(asked: u32) -> u32 {
    asked.clamp(1, MAX_UPLOAD_URL_SECS)
}

/// A presigned download: GET `url` (no other credentials) before `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresignedDownload {
    /// Where to GET.
    pub url: String,
    /// When the URL stops working.
    pub expires_at: Timestamp,
}

/// Grants access to one blob key for a limited time, without the caller's credentials:
/// one upload of a declared size, or downloads.
#[async_trait]
pub trait UrlSigner: Send + Sync {
    /// A URL that stores exactly `size` bytes under `key` until `expires_in_secs` pass
    /// (as [`upload_url_lifetime`] clamps it).
    async fn presign_upload(
        &self,
        key: &BlobKey,
        size: u64,
        expires_in_secs: u32,
    ) -> StoreResult<PresignedUpload>;

    /// A URL that reads `key` until `expires_in_secs` pass (clamped as uploads are).
    /// `content_type` is what the download is served as.
    async fn presign_download(
        &self,
        key: &BlobKey,
        content_type: &str,
        expires_in_secs: u32,
    ) -> StoreResult<PresignedDownload>;
}

/// A cache of results with a time to live.
#[async_trait]
pub trait ResultCache: Send + Sync {
    /// The cached value, if present and not expired.
    async fn get_cached(&self, tenant: &TenantId, key: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Caches a value for `ttl_secs`.
    async fn put_cached(
        &self,
        tenant: &TenantId,
        key: &str,
        value: &[u8],
        ttl_secs: u32,
    ) -> StoreResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_keys_stay_in_the_tenant_folder() {
        let acme = TenantId::parse("acme").unwrap();
        let k = BlobKey::for_tenant(&acme, &["datasets", "dst_1.csv"]).unwrap();
        assert_eq!(k.as_str(), "tenants/acme/datasets/dst_1.csv");
        assert!(k.belongs_to(&acme));
        assert!(!k.belongs_to(&TenantId::parse("acm").unwrap()));
        for bad in ["..", ".", "", "a/b", "a\\b", "x y", &"a".repeat(129)] {
            assert!(
                BlobKey::for_tenant(&acme, &["datasets", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn stored_blob_keys_are_checked_again() {
        let acme = TenantId::parse("acme").unwrap();
        let k = BlobKey::for_tenant(&acme, &["datasets", "dst_1.csv"]).unwrap();
        assert_eq!(BlobKey::parse(k.as_str()), Ok(k.clone()));
        for bad in [
            "tenants/acme",
            "tenants/acme/../x",
            "other/acme/x",
            "tenants/ACME/x",
            "tenants/acme//x",
        ] {
            assert!(BlobKey::parse(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<BlobKey>("\"tenants/acme/../../etc\"").is_err());
    }

    #[test]
    fn page_limits_default_and_cap() {
        assert_eq!(PageRequest::default().effective_limit(), 50);
        let big = PageRequest {
            limit: 5000,
            token: None,
        };
        assert_eq!(big.effective_limit(), 1000);
    }
}
