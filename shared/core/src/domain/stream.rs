//! Streams: a named series of points scored as they arrive by a detector that learns
//! them. The record says what the stream is and how far it has got; the detector's
//! state travels beside it, inline or in the blob store.

use crate::domain::TenantId;
use crate::ids::StreamId;
use crate::ports::BlobKey;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// A stream's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stream {
    /// Its id.
    pub id: StreamId,
    /// Its tenant.
    pub tenant: TenantId,
    /// The name the tenant gave it.
    pub name: String,
    /// The detector and its parameters (`nomaly_detect::stream::StreamSpec` as JSON).
    pub detector: serde_json::Value,
    /// Values per point, and their names.
    pub columns: Vec<String>,
    /// Points scoring at or above this are anomalies (on the likelihood's scale, (0, 1];
    /// records made before that scale may hold a raw-scale value: see
    /// `service::streams::threshold_of`).
    pub threshold: f64,
    /// Points learned so far.
    pub points: u64,
    /// Points that scored at or above the threshold so far.
    pub anomalies: u64,
    /// The last point's time (Unix seconds): later points may not be earlier.
    pub last_timestamp: Option<i64>,
    /// What happens to a point earlier than the last one, or sent twice (streams made
    /// before the policy drop them).
    #[serde(default)]
    pub late: LatePolicy,
    /// What happens to points missing from the series.
    #[serde(default)]
    pub gaps: GapPolicy,
    /// Seconds between points: given at creation, or inferred from the first request
    /// with at least two steps.
    #[serde(default)]
    pub interval: Option<i64>,
    /// Bumped by every write: the compare-and-set token.
    pub version: u64,
    /// Names the write that made this version, so a writer whose answer was lost (a
    /// timeout, a retried request) can tell its own write from another's.
    #[serde(default)]
    pub write_id: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When a point was last appended.
    pub updated_at: Timestamp,
}

impl Stream {
    /// A new stream at version 1, with no points yet.
    pub fn new(
        tenant: TenantId,
        name: String,
        detector: serde_json::Value,
        columns: Vec<String>,
        threshold: f64,
    ) -> Self {
        let now = Timestamp::now();
        Stream {
            id: StreamId::new(),
            tenant,
            name,
            detector,
            columns,
            threshold,
            points: 0,
            anomalies: 0,
            last_timestamp: None,
            late: LatePolicy::default(),
            gaps: GapPolicy::default(),
            interval: None,
            version: 1,
            write_id: String::new(),
            created_at: now,
            updated_at: now,
        }
    }
}

/// What a stream does with a point earlier than its last one (late), or the same as its
/// last one, time and values (a duplicate: a retried request, a feed sending twice).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LatePolicy {
    /// Refuse the whole request with 422, storing nothing.
    Reject,
    /// Store the other points and leave these out; the answer counts them and says why.
    #[default]
    Drop,
    /// Learn a late point as if it came at the last point's time; duplicates are
    /// dropped.
    Clamp,
}

/// What a stream does with points missing from its series (a step of more than one and
/// a half intervals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GapPolicy {
    /// Learn only the points that came (the default).
    #[default]
    Skip,
    /// Learn each missing point as the last value again.
    Previous,
    /// Learn each missing point on the line between the points either side.
    Linear,
}

impl GapPolicy {
    /// The detector's name for it.
    pub fn fill(self) -> nomaly_detect::stream::GapFill {
        match self {
            GapPolicy::Skip => nomaly_detect::stream::GapFill::Skip,
            GapPolicy::Previous => nomaly_detect::stream::GapFill::Previous,
            GapPolicy::Linear => nomaly_detect::stream::GapFill::Linear,
        }
    }
}

/// Where a stream's detector state is: in the record's own row or item while it is
/// small, or in the blob store under a key named for the version and the writer that
/// wrote it (no write ever overwrites another's object, so a reader of version `n` reads
/// version `n`'s state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamState {
    /// The state's JSON.
    Inline(Vec<u8>),
    /// The blob holding it.
    Blob(BlobKey),
}

impl StreamState {
    /// The blob key, if the state is in the blob store.
    pub fn blob(&self) -> Option<&BlobKey> {
        match self {
            StreamState::Blob(key) => Some(key),
            StreamState::Inline(_) => None,
        }
    }
}
