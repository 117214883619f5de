//! Every limit on what one caller may send, store or make the service do, written once.
//!
//! Each limit is a constant here and a row of [`TABLE`]; the table in `docs/limits.md`
//! shows the same rows (a test checks that the two agree), and no other document states
//! a limit's value. Limits a deployment may change name their environment variable; the
//! constant is then the default.

/// How a limit's value reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A byte count, shown in KiB, MiB or GiB when it divides evenly.
    Bytes,
    /// A plain count.
    Count,
    /// Seconds.
    Seconds,
    /// Milliseconds.
    Millis,
    /// A ratio (`100×`).
    Ratio,
}

/// One row of the limits table.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// What is limited, as the table in `docs/limits.md` says it.
    pub name: &'static str,
    /// The value (the default, when `variable` can change it).
    pub value: u64,
    /// How the value reads.
    pub unit: Unit,
    /// The environment variable that changes it, if any.
    pub variable: Option<&'static str>,
    /// What exceeding it answers.
    pub answer: &'static str,
}

impl Limit {
    /// The value as `docs/limits.md` shows it.
    pub fn shown(&self) -> String {
        let v = self.value;
        match self.unit {
            Unit::Bytes => {
                for (shift, name) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
                    if v >= 1 << shift && v.is_multiple_of(1 << shift) {
                        return format!("{} {name}", v >> shift);
                    }
                }
                format!("{} bytes", grouped(v))
            }
            Unit::Count => grouped(v),
            Unit::Seconds => format!("{} s", grouped(v)),
            Unit::Millis => format!("{} ms", grouped(v)),
            Unit::Ratio => format!("{v}×"),
        }
    }
}

/// The table as `docs/limits.md` shows it (Markdown), between its markers.
pub fn markdown() -> String {
    let mut out = String::from("| Limit | Value | Set by | Past it |\n|---|---:|---|---|\n");
    for l in TABLE {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            l.name,
            l.shown(),
            l.variable.map_or("fixed".to_string(), |v| format!("`{v}`")),
            l.answer
        ));
    }
    out
}

/// `1234567` as `1,234,567`.
fn grouped(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---- Request bodies and tables ---------------------------------------------------------

/// Largest request body: a synchronous Lambda invocation's payload limit.
pub const MAX_BODY_BYTES: usize = 6 << 20;
/// The most a gzip request body may inflate to.
pub const MAX_INFLATED_BODY_BYTES: u64 = 64 << 20;
/// The most a dataset upload may inflate to when it is profiled or read.
pub const MAX_INFLATED_DATASET_BYTES: u64 = 4 << 30;
/// Gzip may inflate at most this many times the compressed bytes read so far ...
pub const MAX_INFLATE_RATIO: u64 = 200;
/// ... once past this many inflated bytes (small files of one repeated value compress
/// far better than any real table).
pub const INFLATE_RATIO_FROM_BYTES: u64 = 1 << 20;
/// The longest line (header or row) of any CSV read, before or after inflating.
pub const MAX_LINE_BYTES: u64 = 1 << 20;
/// Widest table accepted: wider ones are refused before any work.
pub const MAX_COLUMNS: usize = 10_000;
/// Values (rows x columns) one request may carry, JSON or CSV.
pub const MAX_REQUEST_CELLS: u64 = 4_000_000;
/// Values (rows x columns) read from a dataset to train on or score.
pub const MAX_DATASET_CELLS: u64 = 20_000_000;

// ---- Datasets ----------------------------------------------------------------------------

/// Largest dataset upload accepted (`NOMALY_MAX_UPLOAD_BYTES`).
pub const MAX_UPLOAD_BYTES: u64 = 512 << 20;
/// Uploads up to this size are profiled by `ingest` itself; larger ones by a worker job
/// (`NOMALY_INLINE_PROFILE_BYTES`).
pub const INLINE_PROFILE_BYTES: u64 = 64 << 20;
/// Numbers a profile keeps, over all columns, for its quantiles; past it they come from a
/// uniform sample.
pub const PROFILE_SAMPLE_VALUES: usize = 4_000_000;
/// Distinct values a profile counts exactly, over all columns.
pub const PROFILE_DISTINCT_VALUES: usize = 1_000_000;
/// Profiles up to this many bytes of JSON are kept in the dataset's record; larger ones
/// in the blob store, the record keeping a summary and a pointer (a DynamoDB item holds
/// 400 KB, and a page of 50 datasets must fit in one response).
pub const PROFILE_INLINE_BYTES: usize = 64 << 10;
/// Times a dataset's profiling may start; a dataset still unprofiled after that many is
/// `rejected` with the reason.
pub const MAX_PROFILE_ATTEMPTS: u32 = 3;
/// Uploads one tenant may be sending to `nomaly serve` at once: each streams to a file,
/// so this bounds the files open and the disk written for one tenant, not memory.
pub const MAX_UPLOADS_PER_TENANT: usize = 4;
/// The longest `nomaly serve` waits for the next bytes of an upload before it drops it,
/// so a client that stops sending cannot hold a slot.
pub const UPLOAD_READ_TIMEOUT_SECS: u64 = 30;
/// The longest an upload URL may live: 7 days, S3's limit for a presigned URL.
pub const MAX_UPLOAD_URL_SECS: u32 = 7 * 24 * 3600;

// ---- Detection -----------------------------------------------------------------------------

/// Detections predicted to take longer go to a task (202); `NOMALY_DETECT_BUDGET_MS`.
pub const DETECT_BUDGET_MS: u64 = 3000;
/// Result documents up to this size are answered inline; larger ones with a download URL
/// (a Lambda response carries at most 6 MB).
pub const INLINE_RESULT_BYTES: usize = 5 << 20;
/// Trees an isolation forest may grow (`n_estimators`).
pub const MAX_TREES: usize = 1000;
/// Neighbours knn and lof may compare (`n_neighbors`; fewer than the rows, too).
pub const MAX_NEIGHBORS: usize = 200;
/// Columns pca may fit (its covariance is columns², its eigendecomposition columns³).
pub const MAX_PCA_COLUMNS: usize = 1000;
/// Work predicted to take longer than this is refused: no worker (900 s timeout) could
/// finish it.
pub const MAX_TASK_MS: u64 = 600_000;
/// Answers kept for `Idempotency-Key` replays up to this size sit in their record; larger
/// ones in the blob store, the record pointing there.
pub const IDEMPOTENT_INLINE_BYTES: usize = 256 << 10;
/// Requests one tenant may make per rate window (`NOMALY_RATE_LIMIT`; 0 turns it off).
pub const RATE_LIMIT: u32 = 100;
/// The rate window in seconds (`NOMALY_RATE_WINDOW_SECS`).
pub const RATE_WINDOW_SECS: u32 = 1;
/// Jobs of one tenant a worker starts while that many of its tasks run already: past it
/// the job is sent again for later ([`DEFERRED_JOB_DELAY_SECS`]), so one tenant's flood
/// of heavy jobs leaves the other workers to the other tenants.
pub const MAX_RUNNING_JOBS_PER_TENANT: u32 = 5;
/// How long a job deferred by [`MAX_RUNNING_JOBS_PER_TENANT`] waits before it is tried
/// again (at most 900 s, SQS's longest delay).
pub const DEFERRED_JOB_DELAY_SECS: u32 = 30;
/// Seconds a worker or chunks function keeps back from its invocation's timeout: a job
/// still running then is stopped and handed back to the queue alone, its task `queued`
/// again (or `failed`, saying so, on the last delivery), instead of the function's
/// timeout failing the invocation with the task left `running` until its lease ends.
pub const JOB_DEADLINE_MARGIN_SECS: u32 = 30;
const _: () = assert!(DEFERRED_JOB_DELAY_SECS >= 1 && DEFERRED_JOB_DELAY_SECS <= 900);
const _: () = assert!(MAX_RUNNING_JOBS_PER_TENANT >= 1);

// ---- Streams and backtests -----------------------------------------------------------------

/// Points one request may append.
pub const STREAM_MAX_POINTS: usize = 10_000;
/// Values one point may have.
pub const STREAM_MAX_WIDTH: usize = 256;
/// At most this many numbers in one stream's detector state.
pub const STREAM_MAX_STATE_VALUES: usize = 500_000;
/// At most this much detector work (the footprint's operations per point, times points)
/// in one request: a few seconds.
pub const STREAM_MAX_REQUEST_WORK: usize = 100_000_000;
/// Points one backtest may run over.
pub const BACKTEST_MAX_POINTS: usize = 200_000;
/// Detector work one backtest may take (the footprint's operations per point, times
/// points): fifty times one append's.
pub const BACKTEST_MAX_WORK: usize = 50 * STREAM_MAX_REQUEST_WORK;
/// The most bytes a dataset may inflate to when read for a backtest.
pub const BACKTEST_MAX_INFLATED_BYTES: u64 = 64 << 20;
/// Labelled windows one backtest may name.
pub const BACKTEST_MAX_WINDOWS: usize = 10_000;
/// Values (points x columns) one backtest may run over.
pub const BACKTEST_MAX_CELLS: usize = 2_000_000;
/// Anomalies listed in a result (all are counted in `anomaly_count`).
pub const BACKTEST_MAX_LISTED_ANOMALIES: usize = 10_000;
/// Rows one `score` message may carry.
pub const WS_MAX_SCORE_ROWS: usize = 1000;
/// Events replayed by one subscribe at most.
pub const WS_MAX_REPLAY: usize = 5000;
/// WebSocket connections one tenant may hold open at once (each is a record, and every
/// event of the tenant is matched against all of them).
pub const MAX_CONNECTIONS_PER_TENANT: usize = 1000;
/// Channels one WebSocket connection may subscribe to (they live in its record).
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 100;
/// Pushes of one event in flight at once: fan-out runs them concurrently up to this, so
/// one tenant's many sockets cannot stall the events stream.
pub const FANOUT_CONCURRENCY: usize = 32;
/// The most chunks a batch may have (with the default 64 MiB chunks, 640 GiB).
pub const BATCH_MAX_CHUNKS: u64 = 10_000;
/// The longest header a batch takes: it travels in every chunk job, and ten jobs (one
/// SQS send) must stay under 256 KiB even with every character escaped.
pub const BATCH_MAX_HEADER_BYTES: usize = 8 << 10;

/// The limits table's row for [`INFLATED_BODY`]'s value.
pub const INFLATED_BODY: Limit = row(
    "Request body, inflated from gzip",
    MAX_INFLATED_BODY_BYTES,
    Unit::Bytes,
    None,
    TOO_LARGE,
);
/// The limits table's row for [`INFLATED_DATASET`]'s value.
pub const INFLATED_DATASET: Limit = row(
    "Dataset, inflated from gzip",
    MAX_INFLATED_DATASET_BYTES,
    Unit::Bytes,
    None,
    "dataset `rejected`; a training or backtest task `failed` (413)",
);
/// The limits table's row for [`INFLATE_RATIO`]'s value.
pub const INFLATE_RATIO: Limit = row(
    "Gzip inflation ratio",
    MAX_INFLATE_RATIO,
    Unit::Ratio,
    None,
    "413; dataset `rejected`",
);
/// The limits table's row for [`LINE`]'s value.
pub const LINE: Limit = row(
    "CSV line",
    MAX_LINE_BYTES,
    Unit::Bytes,
    None,
    "413; dataset `rejected`; batch task `failed`",
);
/// The limits table's row for [`COLUMNS`]'s value.
pub const COLUMNS: Limit = row(
    "Columns in a table",
    MAX_COLUMNS as u64,
    Unit::Count,
    None,
    TOO_LARGE,
);
/// The limits table's row for [`REQUEST_CELLS`]'s value.
pub const REQUEST_CELLS: Limit = row(
    "Values per request (rows × columns)",
    MAX_REQUEST_CELLS,
    Unit::Count,
    None,
    TOO_LARGE,
);
/// The limits table's row for [`DATASET_CELLS`]'s value.
pub const DATASET_CELLS: Limit = row(
    "Values read from a dataset (rows × columns)",
    MAX_DATASET_CELLS,
    Unit::Count,
    None,
    "the training or report task `failed` (413)",
);
/// The limits table's row for [`MAX_PROFILE_ATTEMPTS`].
pub const PROFILE_ATTEMPTS: Limit = row(
    "Profiling attempts per dataset",
    MAX_PROFILE_ATTEMPTS as u64,
    Unit::Count,
    None,
    "dataset `rejected` with the reason",
);
/// The limits table's row for [`BACKTEST_MAX_INFLATED_BYTES`].
pub const BACKTEST_INFLATED: Limit = row(
    "Dataset inflated for a backtest",
    BACKTEST_MAX_INFLATED_BYTES,
    Unit::Bytes,
    None,
    TOO_LARGE,
);
/// The limits table's row for [`MAX_TREES`].
pub const TREES: Limit = row(
    "Isolation forest trees (`n_estimators`)",
    MAX_TREES as u64,
    Unit::Count,
    None,
    TOO_LARGE,
);
/// The limits table's row for [`MAX_NEIGHBORS`].
pub const NEIGHBORS: Limit = row(
    "Neighbours for knn and lof (`n_neighbors`)",
    MAX_NEIGHBORS as u64,
    Unit::Count,
    None,
    TOO_LARGE,
);
/// The limits table's row for [`MAX_PCA_COLUMNS`].
pub const PCA_COLUMNS: Limit = row(
    "Columns pca fits",
    MAX_PCA_COLUMNS as u64,
    Unit::Count,
    None,
    TOO_LARGE,
);
/// The limits table's row for [`MAX_TASK_MS`].
pub const TASK_MS: Limit = row(
    "Predicted work per task",
    MAX_TASK_MS,
    Unit::Millis,
    None,
    TOO_LARGE,
);
/// The limits table's row for [`MAX_CONNECTIONS_PER_TENANT`].
pub const CONNECTIONS_PER_TENANT: Limit = row(
    "Open WebSocket connections per tenant",
    MAX_CONNECTIONS_PER_TENANT as u64,
    Unit::Count,
    None,
    "`$connect` refused: 429 with `Retry-After`",
);
/// The limits table's row for [`MAX_SUBSCRIPTIONS_PER_CONNECTION`].
pub const SUBSCRIPTIONS_PER_CONNECTION: Limit = row(
    "Subscriptions per WebSocket connection",
    MAX_SUBSCRIPTIONS_PER_CONNECTION as u64,
    Unit::Count,
    None,
    "WebSocket `error` (413)",
);
/// The limits table's row for [`DETECT_BUDGET_MS`].
pub const DETECT_BUDGET: Limit = row(
    "Inline detection budget (predicted)",
    DETECT_BUDGET_MS,
    Unit::Millis,
    Some("NOMALY_DETECT_BUDGET_MS"),
    "202 and a task; WebSocket `score`: `error` (413)",
);

/// The rows of [`TABLE`], in the order of `docs/limits.md`.
pub const TABLE: &[Limit] = &[
    row(
        "Request body",
        MAX_BODY_BYTES as u64,
        Unit::Bytes,
        None,
        TOO_LARGE,
    ),
    INFLATED_BODY,
    row(
        "Dataset upload",
        MAX_UPLOAD_BYTES,
        Unit::Bytes,
        Some("NOMALY_MAX_UPLOAD_BYTES"),
        "400 `invalid-parameter` when registered; `rejected` when the upload is larger than declared",
    ),
    INFLATED_DATASET,
    INFLATE_RATIO,
    row(
        "Inflated bytes before the ratio applies",
        INFLATE_RATIO_FROM_BYTES,
        Unit::Bytes,
        None,
        "-",
    ),
    LINE,
    COLUMNS,
    REQUEST_CELLS,
    DATASET_CELLS,
    row(
        "Dataset profiled by `ingest` itself",
        INLINE_PROFILE_BYTES,
        Unit::Bytes,
        Some("NOMALY_INLINE_PROFILE_BYTES"),
        "profiled by a worker job instead",
    ),
    row(
        "Numbers a profile keeps for quantiles",
        PROFILE_SAMPLE_VALUES as u64,
        Unit::Count,
        None,
        "quantiles from a uniform sample (`sampled_quantiles`)",
    ),
    row(
        "Distinct values a profile counts",
        PROFILE_DISTINCT_VALUES as u64,
        Unit::Count,
        None,
        "`distinct_capped: true`",
    ),
    PROFILE_ATTEMPTS,
    row(
        "Profile kept in the dataset's record",
        PROFILE_INLINE_BYTES as u64,
        Unit::Bytes,
        None,
        "the record keeps a summary and `$blob`, the whole profile's key; `GET /v1/datasets/{id}` reads it whole",
    ),
    row(
        "Uploads one tenant sends to `nomaly serve` at once",
        MAX_UPLOADS_PER_TENANT as u64,
        Unit::Count,
        None,
        "429 `rate-limited` with `Retry-After`; nothing stored",
    ),
    row(
        "Wait for an upload's next bytes (`nomaly serve`)",
        UPLOAD_READ_TIMEOUT_SECS,
        Unit::Seconds,
        None,
        "400 `malformed-request`; nothing stored",
    ),
    row(
        "Upload URL lifetime",
        MAX_UPLOAD_URL_SECS as u64,
        Unit::Seconds,
        None, "the lifetime asked is cut to it",),
    DETECT_BUDGET,
    TREES,
    NEIGHBORS,
    PCA_COLUMNS,
    TASK_MS,
    row(
        "Idempotent answer kept in its record",
        IDEMPOTENT_INLINE_BYTES as u64,
        Unit::Bytes,
        None,
        "the answer's body goes to the blob store; replays read it back",
    ),
    row(
        "Result answered inline",
        INLINE_RESULT_BYTES as u64,
        Unit::Bytes,
        None, "`{url, expires_at, content_type, bytes}`: a download URL",),
    row(
        "Requests per tenant per rate window",
        RATE_LIMIT as u64,
        Unit::Count,
        Some("NOMALY_RATE_LIMIT"),
        "429 with `Retry-After` (HTTP requests, WebSocket `$connect` and actions)",
    ),
    row(
        "Rate window",
        RATE_WINDOW_SECS as u64,
        Unit::Seconds,
        Some("NOMALY_RATE_WINDOW_SECS"),
        "-",
    ),
    row(
        "Jobs running at once per tenant",
        MAX_RUNNING_JOBS_PER_TENANT as u64,
        Unit::Count,
        None,
        "the job is queued again to start later",
    ),
    row(
        "Wait before a job held back by the running-jobs cap is tried again",
        DEFERRED_JOB_DELAY_SECS as u64,
        Unit::Seconds,
        None,
        "-",
    ),
    row(
        "Time a worker function keeps back from its timeout (AWS)",
        JOB_DEADLINE_MARGIN_SECS as u64,
        Unit::Seconds,
        None,
        "the job is stopped and handed back to the queue; on its last delivery its task fails",
    ),
    row(
        "Points per stream append",
        STREAM_MAX_POINTS as u64,
        Unit::Count,
        None,
        TOO_LARGE,
    ),
    row(
        "Values per stream point",
        STREAM_MAX_WIDTH as u64,
        Unit::Count,
        None, "400 `invalid-parameter`",),
    row(
        "Numbers in a stream's detector state",
        STREAM_MAX_STATE_VALUES as u64,
        Unit::Count,
        None,
        "400 `invalid-parameter`",
    ),
    row(
        "Detector work per stream append",
        STREAM_MAX_REQUEST_WORK as u64,
        Unit::Count,
        None,
        TOO_LARGE,
    ),
    row(
        "Points per backtest",
        BACKTEST_MAX_POINTS as u64,
        Unit::Count,
        None,
        TOO_LARGE,
    ),
    row(
        "Detector work per backtest",
        BACKTEST_MAX_WORK as u64,
        Unit::Count,
        None,
        TOO_LARGE,
    ),
    BACKTEST_INFLATED,
    row(
        "Labelled windows per backtest",
        BACKTEST_MAX_WINDOWS as u64,
        Unit::Count,
        None, "400 `invalid-parameter`",),
    row(
        "Values per backtest (points × columns)",
        BACKTEST_MAX_CELLS as u64,
        Unit::Count,
        None,
        TOO_LARGE,
    ),
    row(
        "Anomalies listed in a backtest result",
        BACKTEST_MAX_LISTED_ANOMALIES as u64,
        Unit::Count,
        None,
        "all counted, the first listed",
    ),
    row(
        "Rows per WebSocket `score`",
        WS_MAX_SCORE_ROWS as u64,
        Unit::Count,
        None, "WebSocket `error` (413)",),
    row(
        "Events replayed per WebSocket subscribe",
        WS_MAX_REPLAY as u64,
        Unit::Count,
        None, "the replay stops there",),
    CONNECTIONS_PER_TENANT,
    SUBSCRIPTIONS_PER_CONNECTION,
    row(
        "Pushes of one event in flight at once",
        FANOUT_CONCURRENCY as u64,
        Unit::Count,
        None,
        "the other pushes wait their turn",
    ),
    row(
        "Chunks per batch",
        BATCH_MAX_CHUNKS,
        Unit::Count,
        None, "413 at submit; the task `failed` when the plan finds more",),
    row(
        "Batch source header",
        BATCH_MAX_HEADER_BYTES as u64,
        Unit::Bytes,
        None, "the task `failed` (422)",),
];

const TOO_LARGE: &str = "413 `payload-too-large`";

const fn row(
    name: &'static str,
    value: u64,
    unit: Unit,
    variable: Option<&'static str>,
    answer: &'static str,
) -> Limit {
    Limit {
        name,
        value,
        unit,
        variable,
        answer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_people_write_them() {
        let limit = |value, unit| Limit {
            name: "x",
            value,
            unit,
            variable: None,
            answer: "",
        };
        assert_eq!(limit(6 << 20, Unit::Bytes).shown(), "6 MiB");
        assert_eq!(limit(1500, Unit::Bytes).shown(), "1,500 bytes");
        assert_eq!(limit(10_000, Unit::Count).shown(), "10,000");
        assert_eq!(limit(200, Unit::Ratio).shown(), "200×");
    }

    #[test]
    fn every_limit_is_named_once() {
        let mut names: Vec<&str> = TABLE.iter().map(|l| l.name).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a limit is listed twice");
    }

    #[test]
    fn docs_limits_shows_this_table() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/limits.md"))
                .expect("docs/limits.md in the repository");
        let start = "<!-- limits:start (written by shared/core/src/limits.rs; `cargo test -p nomaly-core limits` checks it) -->\n";
        let end = "<!-- limits:end -->";
        let shown = doc
            .split_once(start)
            .and_then(|(_, rest)| rest.split_once(end))
            .map(|(table, _)| table)
            .expect("the limits table of docs/limits.md between its markers");
        assert_eq!(
            shown,
            markdown(),
            "the limits table of docs/limits.md differs from limits.rs; paste this between its markers:\n{}",
            markdown()
        );
    }
}
