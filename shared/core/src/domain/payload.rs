//! What each event says: one type per event type, written into [`Event::payload`].
//!
//! Stored and pushed events keep their payload as JSON (readers of the audit log and
//! WebSocket clients get it as it was written); the use cases build it only from these
//! types, and [`Payload::decode`] reads any stored payload back into them. The fixtures
//! under `shared/core/fixtures/events/` (events as `nomaly serve` stored them) decode and
//! re-encode byte for byte.
//!
//! [`Event::payload`]: crate::domain::Event::payload

use crate::domain::{DatasetStatus, EventType, Task, TaskKind};
use crate::ids::{DatasetId, ModelId, StreamId, TaskId};
use nomaly_detect::backtest::Evaluation;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// The payload of one event type.
pub trait EventPayload: Serialize {
    /// The event type it is the payload of.
    fn event_type(&self) -> EventType;

    /// As stored in [`Event::payload`](crate::domain::Event::payload).
    fn to_json(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

/// `task.progress`: a task started (with its `attempt`) or moved on (a batch with its
/// `chunks`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskProgress {
    /// The task.
    pub task_id: TaskId,
    /// Its kind.
    pub kind: TaskKind,
    /// Percent done.
    pub progress: u8,
    /// Which attempt started (on the event that says it started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// A batch's chunks done so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<ChunksDone>,
}

/// A batch's chunks done, of all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChunksDone {
    /// Done.
    pub done: u32,
    /// All.
    pub total: u32,
}

/// `task.completed`: the task and what its work made, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskCompleted {
    /// The task.
    pub task_id: TaskId,
    /// What it made; written with the task's `kind` beside its fields.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What a completed task made, one variant per task kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// A stored model.
    Train {
        /// The model.
        model_id: ModelId,
        /// Its algorithm.
        algorithm: String,
        /// The model record's training summary.
        #[schema(value_type = Object)]
        training: Value,
    },
    /// Scores of rows.
    Detect {
        /// The model that scored, if a stored one did.
        model_id: Option<ModelId>,
        /// Rows scored.
        rows: usize,
        /// Of which anomalous.
        anomalies: usize,
        /// Where the scores are.
        result_url: String,
    },
    /// A dataset's profile.
    Profile {
        /// The dataset.
        dataset_id: DatasetId,
        /// Where it now is.
        status: DatasetStatus,
    },
    /// A rendered report.
    Report {
        /// The model that scored.
        model_id: ModelId,
        /// Rows scored.
        rows: usize,
        /// Of which anomalous.
        anomalies: usize,
        /// The page's size.
        bytes: usize,
        /// Where the page is.
        report_url: String,
    },
    /// A batch's parts and manifest.
    Batch {
        /// The model that scored.
        model_id: ModelId,
        /// Rows scored.
        rows: u64,
        /// Of which anomalous.
        anomalies: u64,
        /// Chunks.
        chunks: u32,
        /// The manifest's key.
        manifest: String,
        /// Where the manifest is served.
        result_url: String,
    },
    /// A backtest's verdict.
    Backtest {
        /// Points scored.
        points: usize,
        /// Of which at or above the threshold.
        anomalies: usize,
        /// The threshold.
        threshold: f64,
        /// How the detector fared against the labels, when there were any.
        #[schema(value_type = Option<Object>)]
        evaluation: Option<Evaluation>,
        /// The best threshold on these labels and how it fared.
        #[schema(value_type = Option<Object>)]
        best: Option<Evaluation>,
        /// Where the scores are.
        result_url: String,
    },
}

/// `task.failed`: why; for a batch failed by one chunk, which.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskFailed {
    /// The task.
    pub task_id: TaskId,
    /// Its kind.
    pub kind: TaskKind,
    /// Why it failed.
    pub error: String,
    /// The chunk that failed a batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<u32>,
}

/// `task.cancelled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskCancelled {
    /// The task.
    pub task_id: TaskId,
    /// Its kind.
    pub kind: TaskKind,
}

/// `anomaly.detected`: from scoring rows, or from a stream's points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum AnomalyDetected {
    /// Rows scored by `POST /v1/detect` or a `detect` task.
    Rows(RowAnomalies),
    /// Points appended to a stream.
    Stream(StreamAnomalies),
}

/// Anomalies among scored rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RowAnomalies {
    /// The stored model that scored, if one did.
    pub model_id: Option<ModelId>,
    /// The task that scored, if a task did.
    pub task_id: Option<TaskId>,
    /// The algorithm.
    pub algorithm: String,
    /// Rows scored.
    pub rows_scored: usize,
    /// Of which anomalous.
    pub anomalies: usize,
    /// The first anomalous rows' positions.
    pub anomaly_rows: Vec<usize>,
    /// The highest score.
    pub max_score: f64,
    /// The threshold.
    pub threshold: f64,
}

/// Anomalies among a stream's appended points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamAnomalies {
    /// The stream.
    pub stream_id: StreamId,
    /// Its name.
    pub stream_name: String,
    /// The entity the anomalies are of, for a stream split by entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// Points scored in the request.
    pub points_scored: usize,
    /// Of which anomalous.
    pub anomalies: usize,
    /// The first anomalous points.
    pub anomaly_points: Vec<PointAnomaly>,
    /// The highest score.
    pub max_score: f64,
    /// The stream's threshold.
    pub threshold: f64,
    /// The stream's version after the request.
    pub stream_version: u64,
}

/// One anomalous point of a stream. Values and explanations are left out for streams of
/// many columns, so an event stays well under a WebSocket frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PointAnomaly {
    /// Its position in the request.
    pub index: usize,
    /// Its time (Unix seconds).
    pub timestamp: i64,
    /// Its score on the common scale.
    pub score: f64,
    /// The detector's raw score.
    pub raw_score: f64,
    /// Its values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<f64>>,
    /// The value expected for each column.
    #[schema(value_type = Option<Object>)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Map<String, Value>>,
    /// Each column's share of how unusual the point is.
    #[schema(value_type = Option<Object>)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares: Option<Map<String, Value>>,
    /// Where each column's value lies against what was expected.
    #[schema(value_type = Option<Object>)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Map<String, Value>>,
}

/// `dataset.profiled`: the upload's profile in brief, and whether training follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetProfiled {
    /// The dataset.
    pub dataset_id: DatasetId,
    /// Profiled or rejected.
    pub status: DatasetStatus,
    /// Why it was rejected.
    pub error: Option<String>,
    /// Rows.
    pub rows: Option<u64>,
    /// Columns.
    pub columns: Option<u64>,
    /// The first issues found.
    #[schema(value_type = Option<Vec<Object>>)]
    pub issues: Option<Vec<Value>>,
    /// Issues found in all.
    pub issues_total: Option<u64>,
    /// Whether the upload asked for training (and the `events` function starts it).
    pub train: bool,
}

impl TaskProgress {
    /// Where `task` is.
    pub fn of(task: &Task) -> Self {
        TaskProgress {
            task_id: task.id.clone(),
            kind: task.kind,
            progress: task.progress,
            attempt: None,
            chunks: None,
        }
    }
}

impl TaskFailed {
    /// `task` failed for `error`.
    pub fn of(task: &Task, error: &str) -> Self {
        TaskFailed {
            task_id: task.id.clone(),
            kind: task.kind,
            error: error.to_string(),
            chunk: None,
        }
    }
}

impl TaskCancelled {
    /// `task` was cancelled.
    pub fn of(task: &Task) -> Self {
        TaskCancelled {
            task_id: task.id.clone(),
            kind: task.kind,
        }
    }
}

macro_rules! payload_of {
    ($($ty:ty => $event:expr),* $(,)?) => {
        $(impl EventPayload for $ty {
            fn event_type(&self) -> EventType {
                $event
            }
        })*
    };
}

payload_of! {
    TaskProgress => EventType::TaskProgress,
    TaskCompleted => EventType::TaskCompleted,
    TaskFailed => EventType::TaskFailed,
    TaskCancelled => EventType::TaskCancelled,
    AnomalyDetected => EventType::AnomalyDetected,
    DatasetProfiled => EventType::DatasetProfiled,
}

/// Any event's payload: one shape per event type.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Payload {
    /// `task.progress`.
    TaskProgress(TaskProgress),
    /// `task.completed`.
    TaskCompleted(TaskCompleted),
    /// `task.failed`.
    TaskFailed(TaskFailed),
    /// `task.cancelled`.
    TaskCancelled(TaskCancelled),
    /// `anomaly.detected`.
    AnomalyDetected(AnomalyDetected),
    /// `dataset.profiled`.
    DatasetProfiled(DatasetProfiled),
}

impl Payload {
    /// Reads the stored payload of an event of type `kind` (written as the payload
    /// itself).
    pub fn decode(kind: EventType, payload: &Value) -> Result<Self, serde_json::Error> {
        use serde::de::Deserialize as _;
        Ok(match kind {
            EventType::TaskProgress => Payload::TaskProgress(TaskProgress::deserialize(payload)?),
            EventType::TaskCompleted => {
                Payload::TaskCompleted(TaskCompleted::deserialize(payload)?)
            }
            EventType::TaskFailed => Payload::TaskFailed(TaskFailed::deserialize(payload)?),
            EventType::TaskCancelled => {
                Payload::TaskCancelled(TaskCancelled::deserialize(payload)?)
            }
            EventType::AnomalyDetected => {
                Payload::AnomalyDetected(AnomalyDetected::deserialize(payload)?)
            }
            EventType::DatasetProfiled => {
                Payload::DatasetProfiled(DatasetProfiled::deserialize(payload)?)
            }
        })
    }

    /// The payload as stored.
    pub fn encode(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Event;

    fn fixtures() -> Vec<(String, String)> {
        crate::fixtures::stored("events")
    }

    #[test]
    fn stored_events_of_every_type_decode_and_encode_byte_for_byte() {
        let mut types = std::collections::BTreeSet::new();
        for (path, text) in fixtures() {
            let event: Event = serde_json::from_str(&text).expect(&path);
            let payload = Payload::decode(event.kind, &event.payload)
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            let again = Event {
                payload: payload.encode().expect("encodes"),
                ..event.clone()
            };
            let written = serde_json::to_string(&again).expect("encodes") + "\n";
            assert_eq!(written, text, "{path} re-encodes differently");
            types.insert(event.kind.as_str());
        }
        let all = [
            EventType::TaskProgress,
            EventType::TaskCompleted,
            EventType::TaskFailed,
            EventType::TaskCancelled,
            EventType::AnomalyDetected,
            EventType::DatasetProfiled,
        ];
        for kind in all {
            assert!(
                types.contains(kind.as_str()),
                "no fixture of {}",
                kind.as_str()
            );
        }
    }

    #[test]
    fn every_task_kind_completes_in_a_fixture() {
        let kinds: std::collections::BTreeSet<String> = fixtures()
            .into_iter()
            .filter_map(|(_, text)| {
                let event: Event = serde_json::from_str(&text).ok()?;
                match Payload::decode(event.kind, &event.payload).ok()? {
                    Payload::TaskCompleted(done) => Some(
                        serde_json::to_value(&done).ok()?["kind"]
                            .as_str()?
                            .to_string(),
                    ),
                    _ => None,
                }
            })
            .collect();
        for kind in TaskKind::ALL {
            assert!(
                kinds.contains(kind.as_str()),
                "no completed {}",
                kind.as_str()
            );
        }
    }

    #[test]
    fn a_payload_of_the_wrong_shape_does_not_decode() {
        let progress = serde_json::json!({"task_id": "tsk_01M930KGMT45C3JACJ4JSFTY9Z", "kind": "train", "progress": 5, "extra": 1});
        assert!(Payload::decode(EventType::TaskProgress, &progress).is_err());
        let completed =
            serde_json::json!({"task_id": "tsk_01M930KGMT45C3JACJ4JSFTY9Z", "kind": "chunk"});
        assert!(Payload::decode(EventType::TaskCompleted, &completed).is_err());
    }
}
