//! A person's verdict on a stream's result: a flagged point that was no anomaly, one that
//! was, or a range that should have been flagged and was not.

use crate::domain::TenantId;
use crate::ids::{EventId, FeedbackId, StreamId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// What the person says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackLabel {
    /// Flagged, but not an anomaly.
    FalsePositive,
    /// Flagged, and rightly.
    TruePositive,
    /// Not flagged, but should have been.
    Missed,
}

/// One verdict as stored, with what it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Feedback {
    /// Its id.
    pub id: FeedbackId,
    /// Whose.
    #[schema(value_type = String)]
    pub tenant: TenantId,
    /// The stream.
    pub stream_id: StreamId,
    /// The verdict.
    pub label: FeedbackLabel,
    /// The `anomaly.detected` event named, if one was.
    pub event_id: Option<EventId>,
    /// The point's `index` in that event.
    pub index: Option<usize>,
    /// The range named (Unix seconds, inclusive), if one was.
    pub from: Option<i64>,
    /// Its end.
    pub to: Option<i64>,
    /// The score the verdict is about: the flagged point's, or the best of the range.
    pub score: Option<f64>,
    /// The stream's threshold before.
    pub threshold_before: f64,
    /// And after.
    pub threshold_after: f64,
    /// What changed, in words.
    pub effect: String,
    /// A note from the person.
    pub note: Option<String>,
    /// When it was given.
    #[schema(value_type = i64)]
    pub created_at: Timestamp,
}
