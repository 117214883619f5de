//! Tunables: each with a default, and an optional `NOMALY_*` environment variable that
//! overrides it.

use crate::limits;

/// Tunables, each with a default and an optional environment variable.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Synchronous detection answers 200 only when its predicted cost is within this
    /// (`NOMALY_DETECT_BUDGET_MS`; see the limits table); costlier work gets 202 and a task.
    pub detect_budget_ms: u64,
    /// How long identical detection results are served from the cache
    /// (`NOMALY_CACHE_TTL_SECS`, default 3600).
    pub cache_ttl_secs: u32,
    /// How long a WebSocket connection record lives without a refresh
    /// (`NOMALY_CONNECTION_TTL_SECS`, default 7500: API Gateway closes sockets at 2 h).
    pub connection_ttl_secs: u32,
    /// A running task whose worker has not reported for this long is taken to be lost
    /// (`NOMALY_TASK_LEASE_SECS`, default 960: the worker's 900 s timeout and a minute).
    pub task_lease_secs: u32,
    /// Workers a task may be given before it fails (`NOMALY_MAX_ATTEMPTS`, default 3).
    pub max_attempts: u32,
    /// Deliveries of one job before the queue dead-letters it (`NOMALY_MAX_RECEIVES`,
    /// default 3, as the template's redrive policy).
    pub max_receives: u32,
    /// How long an upload URL works (`NOMALY_UPLOAD_URL_TTL_SECS`, default 900).
    pub upload_url_ttl_secs: u32,
    /// Uploads up to this size are profiled by `ingest` itself; larger ones by a worker
    /// job (`NOMALY_INLINE_PROFILE_BYTES`; see the limits table).
    pub inline_profile_bytes: u64,
    /// Largest dataset upload accepted (`NOMALY_MAX_UPLOAD_BYTES`; see the limits table:
    /// profiling and training read an upload whole, and the worker has 3 GB).
    pub max_upload_bytes: u64,
    /// Running tasks last touched before this instant have no live worker, whatever their
    /// lease says. The local server sets its start time here: it holds its data folder's
    /// lock, so no worker of an earlier process is alive. `None` (the default, and on
    /// AWS, where workers come and go) leaves it to the lease.
    pub orphaned_before: Option<crate::time::Timestamp>,
    /// Requests one tenant may make per rate window, over HTTP and WebSocket actions
    /// together (`NOMALY_RATE_LIMIT`; see the limits table; 0 turns the limit off). Past
    /// it the caller gets 429 with `Retry-After`.
    pub rate_limit: u32,
    /// The rate window in seconds (`NOMALY_RATE_WINDOW_SECS`; see the limits table).
    pub rate_window_secs: u32,
    /// A stream's record and detector state are kept together in one row or item while
    /// they take at most this many bytes (`NOMALY_STREAM_INLINE_STATE_BYTES`, default
    /// 300000, never more than 380000: a DynamoDB item holds at most 400 KB); larger state
    /// goes to the blob store behind a versioned key.
    pub stream_inline_state_bytes: usize,
    /// A batch splits its source into chunks of about this many bytes, one job each
    /// (`NOMALY_BATCH_CHUNK_BYTES`, default 64 MiB: a chunk is read whole into its
    /// worker's memory).
    pub batch_chunk_bytes: u64,
    /// The folder a batch may read local files from (`{"source": {"file": ...}}`): the
    /// local server sets `<data-dir>/imports` here. `None` (the default, and on AWS)
    /// refuses file sources.
    pub imports_dir: Option<std::path::PathBuf>,
    /// A worker starts no job of a tenant that has this many tasks running; it queues
    /// the job again for later (see the limits table; fixed outside tests).
    pub max_running_jobs_per_tenant: u32,
    /// How long such a job waits before it is tried again (see the limits table; fixed
    /// outside tests; at most 900 s).
    pub deferred_job_delay_secs: u32,
    /// Attempts an alert gets before it is dead-lettered (`NOMALY_ALERT_MAX_ATTEMPTS`,
    /// default 8).
    pub alert_max_attempts: u32,
    /// The first retry of an alert waits about this long, doubling each time, at most
    /// 900 s (`NOMALY_ALERT_RETRY_BASE_SECS`, default 15: 8 attempts span about half an
    /// hour).
    pub alert_retry_base_secs: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            detect_budget_ms: limits::DETECT_BUDGET_MS,
            cache_ttl_secs: 3600,
            connection_ttl_secs: 7500,
            task_lease_secs: 960,
            max_attempts: 3,
            max_receives: 3,
            upload_url_ttl_secs: 900,
            inline_profile_bytes: limits::INLINE_PROFILE_BYTES,
            max_upload_bytes: limits::MAX_UPLOAD_BYTES,
            orphaned_before: None,
            rate_limit: limits::RATE_LIMIT,
            rate_window_secs: limits::RATE_WINDOW_SECS,
            stream_inline_state_bytes: 300_000,
            batch_chunk_bytes: 64 << 20,
            imports_dir: None,
            max_running_jobs_per_tenant: limits::MAX_RUNNING_JOBS_PER_TENANT,
            deferred_job_delay_secs: limits::DEFERRED_JOB_DELAY_SECS,
            alert_max_attempts: 8,
            alert_retry_base_secs: 15,
        }
    }
}

/// An environment variable that is set but not a number.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name} = `{value}` is not a non-negative whole number")]
pub struct BadSetting {
    /// The variable.
    pub name: &'static str,
    /// Its value.
    pub value: String,
}

impl Settings {
    /// The defaults, overridden by the `NOMALY_*` variables that are set.
    pub fn from_env() -> Result<Self, BadSetting> {
        fn read<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, BadSetting> {
            match std::env::var(name) {
                Ok(value) => value.trim().parse().map_err(|_| BadSetting { name, value }),
                Err(_) => Ok(default),
            }
        }
        let d = Settings::default();
        Ok(Settings {
            detect_budget_ms: read("NOMALY_DETECT_BUDGET_MS", d.detect_budget_ms)?,
            cache_ttl_secs: read("NOMALY_CACHE_TTL_SECS", d.cache_ttl_secs)?,
            connection_ttl_secs: read("NOMALY_CONNECTION_TTL_SECS", d.connection_ttl_secs)?,
            task_lease_secs: read("NOMALY_TASK_LEASE_SECS", d.task_lease_secs)?,
            max_attempts: read("NOMALY_MAX_ATTEMPTS", d.max_attempts)?,
            max_receives: read("NOMALY_MAX_RECEIVES", d.max_receives)?,
            upload_url_ttl_secs: read("NOMALY_UPLOAD_URL_TTL_SECS", d.upload_url_ttl_secs)?,
            inline_profile_bytes: read("NOMALY_INLINE_PROFILE_BYTES", d.inline_profile_bytes)?,
            max_upload_bytes: read("NOMALY_MAX_UPLOAD_BYTES", d.max_upload_bytes)?,
            orphaned_before: None,
            rate_limit: read("NOMALY_RATE_LIMIT", d.rate_limit)?,
            rate_window_secs: read("NOMALY_RATE_WINDOW_SECS", d.rate_window_secs)?.max(1),
            stream_inline_state_bytes: read(
                "NOMALY_STREAM_INLINE_STATE_BYTES",
                d.stream_inline_state_bytes,
            )?,
            batch_chunk_bytes: read("NOMALY_BATCH_CHUNK_BYTES", d.batch_chunk_bytes)?.max(1),
            imports_dir: None,
            max_running_jobs_per_tenant: d.max_running_jobs_per_tenant,
            deferred_job_delay_secs: d.deferred_job_delay_secs,
            alert_max_attempts: read("NOMALY_ALERT_MAX_ATTEMPTS", d.alert_max_attempts)?.max(1),
            alert_retry_base_secs: read("NOMALY_ALERT_RETRY_BASE_SECS", d.alert_retry_base_secs)?,
        })
    }
}
