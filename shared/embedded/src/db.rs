//! The SQLite database: opened once, used from blocking threads.

use nomaly_core::ports::{StoreError, StoreResult};
use rusqlite::Connection;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Calls into the database so far, by every [`Database`] of this process.
static STORAGE_CALLS: AtomicU64 = AtomicU64::new(0);

/// How many calls into SQLite (one blocking unit of work each, often one transaction)
/// every store of this process has made so far: what a benchmark compares with the
/// SDK calls of the AWS adapters.
pub fn storage_calls() -> u64 {
    STORAGE_CALLS.load(Ordering::Relaxed)
}

/// The schema. Records are JSON bodies keyed by tenant and id; the columns beside them
/// are what queries filter and sort on.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tasks (tenant TEXT NOT NULL, id TEXT NOT NULL, created_ms INTEGER NOT NULL,
    version INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (tenant, id));
CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks (tenant, json_extract(body, '$.status'));
CREATE TABLE IF NOT EXISTS models (tenant TEXT NOT NULL, id TEXT NOT NULL, created_ms INTEGER NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (tenant, id));
CREATE TABLE IF NOT EXISTS datasets (tenant TEXT NOT NULL, id TEXT NOT NULL, created_ms INTEGER NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (tenant, id));
CREATE TABLE IF NOT EXISTS streams (tenant TEXT NOT NULL, id TEXT NOT NULL, created_ms INTEGER NOT NULL,
    version INTEGER NOT NULL, body TEXT NOT NULL, state BLOB, state_key TEXT, PRIMARY KEY (tenant, id));
CREATE TABLE IF NOT EXISTS events (tenant TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (tenant, id));
CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS connections (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, expires_ms INTEGER NOT NULL,
    body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS connections_by_tenant ON connections (tenant);
CREATE TABLE IF NOT EXISTS idempotency (tenant TEXT NOT NULL, key TEXT NOT NULL, response BLOB,
    expires_ms INTEGER NOT NULL, PRIMARY KEY (tenant, key));
CREATE TABLE IF NOT EXISTS cache (tenant TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
    expires_ms INTEGER NOT NULL, PRIMARY KEY (tenant, key));
CREATE TABLE IF NOT EXISTS jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, body TEXT NOT NULL,
    visible_ms INTEGER NOT NULL, receive_count INTEGER NOT NULL DEFAULT 0, receipt TEXT, dead INTEGER NOT NULL DEFAULT 0,
    tenant TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS jobs_visible ON jobs (queue, dead, visible_ms, seq);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_receipt ON jobs (receipt);
CREATE TABLE IF NOT EXISTS job_turns (queue TEXT NOT NULL, tenant TEXT NOT NULL, served INTEGER NOT NULL,
    PRIMARY KEY (queue, tenant));
CREATE TABLE IF NOT EXISTS stream_entities (tenant TEXT NOT NULL, stream TEXT NOT NULL, name TEXT NOT NULL,
    version INTEGER NOT NULL, seen_ms INTEGER NOT NULL, body TEXT NOT NULL, state BLOB NOT NULL,
    PRIMARY KEY (tenant, stream, name));
CREATE INDEX IF NOT EXISTS stream_entities_by_seen ON stream_entities (tenant, stream, seen_ms);
CREATE TABLE IF NOT EXISTS alert_rules (tenant TEXT NOT NULL, id TEXT NOT NULL, created_ms INTEGER NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (tenant, id));
CREATE TABLE IF NOT EXISTS feedback (tenant TEXT NOT NULL, id TEXT NOT NULL, created_ms INTEGER NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (tenant, id));
CREATE TABLE IF NOT EXISTS alert_deliveries (tenant TEXT NOT NULL, rule TEXT NOT NULL, id TEXT NOT NULL,
    count INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (tenant, rule, id));
";

/// What runs after [`SCHEMA`], once the migrations below have added the columns it names.
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS jobs_by_tenant ON jobs (queue, dead, tenant, seq, visible_ms);
";

/// Brings a database made by an earlier version up to [`SCHEMA`]. Each step checks for
/// itself whether it is needed, so it runs on every open.
///
/// - `jobs.tenant` (the queue takes tenants in turn): added, then filled from each job's
///   body. A body that cannot be read keeps `''`, a tenant of its own, and is still
///   received (and fails where it always did, when decoded).
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has_tenant = conn
        .prepare("SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'tenant'")?
        .exists([])?;
    if !has_tenant {
        conn.execute_batch("ALTER TABLE jobs ADD COLUMN tenant TEXT NOT NULL DEFAULT ''")?;
        let rows: Vec<(i64, String)> = conn
            .prepare("SELECT seq, body FROM jobs")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (seq, body) in rows {
            if let Some(tenant) = job_tenant(&body) {
                conn.execute(
                    "UPDATE jobs SET tenant = ?1 WHERE seq = ?2",
                    rusqlite::params![tenant, seq],
                )?;
            }
        }
        tracing::info!("migrated the job queue: jobs carry their tenant");
    }
    conn.execute_batch(INDEXES)
}

/// The `tenant` of a job's JSON body, if it has one.
pub(crate) fn job_tenant(body: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        tenant: String,
    }
    serde_json::from_str::<Envelope>(body)
        .ok()
        .map(|e| e.tenant)
}

/// A handle on the database, cheap to clone.
#[derive(Clone)]
pub struct Database {
    conn: Arc<Mutex<Connection>>,
}

impl Database {
    /// Opens (creating if needed) `<data_dir>/nomaly.db`.
    pub fn open(data_dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::backend("create the data folder", e))?;
        let conn = Connection::open(data_dir.join("nomaly.db"))
            .map_err(|e| StoreError::backend("open nomaly.db", e))?;
        Self::init(conn)
    }

    /// A database in memory (for tests): gone when the last handle is dropped.
    pub fn in_memory() -> StoreResult<Self> {
        let conn =
            Connection::open_in_memory().map_err(|e| StoreError::backend("open database", e))?;
        Self::init(conn)
    }

    fn init(conn: Connection) -> StoreResult<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")
            // WAL with synchronous=NORMAL: a commit survives the process being killed
            // (the WAL is written before the commit returns) and the database is never
            // corrupted; a power cut or OS crash may roll back the last commits, which are
            // synced at the next checkpoint. FULL (a sync per commit) costs 45 % of the
            // local server's detection throughput (bench/README.md).
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| conn.busy_timeout(std::time::Duration::from_secs(10)))
            .and_then(|_| conn.execute_batch(SCHEMA))
            .and_then(|_| migrate(&conn))
            .map_err(|e| StoreError::backend("prepare the schema", e))?;
        Ok(Database {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection, as blocking work: SQLite calls never stall the
    /// async runtime's other tasks.
    pub(crate) async fn run<T, F>(&self, operation: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        STORAGE_CALLS.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::clone(&self.conn);
        let call = move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        };
        // On a multi-threaded runtime the call runs on this worker thread, which hands
        // its other tasks to the rest of the pool first (no thread hop per query, which
        // was most of a small request's latency); elsewhere on the blocking pool.
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(call),
            _ => tokio::task::spawn_blocking(call)
                .await
                .map_err(|e| StoreError::backend(operation, e))?,
        }
    }
}

/// Maps a SQLite error to a backend error naming the operation.
pub(crate) fn sql(operation: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::backend(operation, e)
}

/// Maps a JSON error to a backend error naming the operation.
pub(crate) fn json(operation: &'static str) -> impl Fn(serde_json::Error) -> StoreError {
    move |e| StoreError::backend(operation, e)
}

/// A fresh random token (receipts).
pub(crate) fn token() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the operating system's random source");
    hex::encode(b)
}
