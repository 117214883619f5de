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
    /// For a stream split by entity: the field naming each point's entity, and how many
    /// entities it keeps. Each entity has its own detector state ([`StreamEntity`]); the
    /// stream's own state is then only the template new entities start from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<EntitySplit>,
    /// Its last points, for a chart (a stream split by entity keeps them per entity).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<RecentPoint>,
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
            entity: None,
            recent: Vec::new(),
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

/// How a stream is split by entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EntitySplit {
    /// The CSV column or JSON key naming each point's entity (`host`).
    pub field: String,
    /// At most this many entities at once; a request bringing more is refused.
    pub max_entities: u64,
    /// Seconds an entity may go without a point before it may be evicted to make room
    /// for a new one.
    pub idle_ttl: i64,
}

/// Whether `name` may name an entity: 1 to 128 bytes, no control characters.
pub fn is_entity_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && !name.chars().any(char::is_control)
}

/// One entity of a stream split by entity: its own counts, beside its own detector
/// state (which the store keeps with it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamEntity {
    /// Its tenant.
    pub tenant: TenantId,
    /// Its stream.
    pub stream_id: StreamId,
    /// Its name: the value of the stream's entity field.
    pub name: String,
    /// Points learned.
    pub points: u64,
    /// Points that scored at or above the threshold.
    pub anomalies: u64,
    /// Its last point's time (Unix seconds).
    pub last_timestamp: Option<i64>,
    /// The time of its latest anomaly (Unix seconds).
    #[serde(default)]
    pub last_anomaly: Option<i64>,
    /// Seconds between its points, given by the stream or inferred.
    #[serde(default)]
    pub interval: Option<i64>,
    /// Its own threshold, set by feedback on its results; `None`: the stream's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Its last points, for a chart.
    #[serde(default)]
    pub recent: Vec<RecentPoint>,
    /// Bumped by every write: the compare-and-set token (1 when made).
    pub version: u64,
    /// Names the write that made this version.
    #[serde(default)]
    pub write_id: String,
    /// When its first point came.
    pub created_at: Timestamp,
    /// When its last point came (wall clock): what idleness is measured from.
    pub updated_at: Timestamp,
}

/// A point as a chart shows it: the first column's value, its score, and the value
/// expected with the band around it, where the detector has them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecentPoint {
    /// Unix seconds.
    pub t: i64,
    /// The first column's value.
    pub v: f64,
    /// Its score on the common scale.
    pub s: f64,
    /// The value expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<f64>,
    /// Half the band's width around `e`: three of the detector's robust deviations, as
    /// this point's raw score measured them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b: Option<f64>,
}

/// How one entity's write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityWritten {
    /// Stored.
    Stored,
    /// Its version moved since it was read (or, for a new one, another writer made it).
    Conflict,
    /// A new entity the stream has no room for.
    OverCap,
}
