//! A person's verdict on a result: a flagged point or row that was no anomaly, one that
//! was, or one that should have been flagged and was not. On a stream's result it moves
//! the stream's threshold; on a row of a dataset it is a label for the next model
//! trained on that dataset.

use crate::domain::TenantId;
use crate::ids::{DatasetId, EventId, FeedbackId, ModelId, StreamId};
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
    /// The stream, for a verdict on a stream's result.
    #[serde(default)]
    pub stream_id: Option<StreamId>,
    /// The stream's entity, for a stream split by entity.
    #[serde(default)]
    pub entity: Option<String>,
    /// The model whose result it is, for a verdict on a row.
    #[serde(default)]
    pub model_id: Option<ModelId>,
    /// The dataset of the row.
    #[serde(default)]
    pub dataset_id: Option<DatasetId>,
    /// The row: its 0-based index among the dataset's data rows.
    #[serde(default)]
    pub row: Option<usize>,
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
    /// The stream's threshold before (for a row: the model's, if one was named, which a
    /// label leaves as it is until the next training).
    pub threshold_before: Option<f64>,
    /// And after.
    pub threshold_after: Option<f64>,
    /// What changed, in words.
    pub effect: String,
    /// A note from the person.
    pub note: Option<String>,
    /// When it was given.
    #[schema(value_type = i64)]
    pub created_at: Timestamp,
}

impl FeedbackLabel {
    /// Whether the label says the point or row is an anomaly.
    pub fn is_anomaly(self) -> bool {
        !matches!(self, FeedbackLabel::FalsePositive)
    }
}
