//! The shapes the API answers in, as types: the routes build them and the OpenAPI
//! document (`openapi.rs`) describes them from the same definitions.
//!
//! Fields are declared in alphabetical order: that is the order the hand-built JSON these
//! types replaced had, so an answer's bytes are what they were.

use crate::domain::{StreamState, Task, TaskKind, TaskStatus};
use crate::ids::{ModelId, StreamId, TaskId};
use crate::service::streams::threshold_of;
use serde::Serialize;
use utoipa::ToSchema;

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
    /// The service's version.
    pub version: &'static str,
}

/// A page of a listing: the items, and the token of the next page (`null` on the last).
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// This page's items.
    pub items: Vec<T>,
    /// Pass as `?next_token=` for the next page; `null` when there is none.
    pub next_token: Option<String>,
}

/// A batch task's chunks, as a task shows them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Chunks {
    /// Rows labelled anomalous by the chunks done.
    pub anomalies: u64,
    /// Chunks done.
    pub done: u32,
    /// Rows scored by the chunks done.
    pub rows: u64,
    /// Chunks in the plan.
    pub total: u32,
}

/// A task as the API shows it (the job envelope stays inside).
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskView {
    /// How many times a worker has started it.
    pub attempts: u32,
    /// A batch task's chunks, once planned.
    pub chunks: Option<Chunks>,
    /// The request that made it.
    pub correlation_id: String,
    /// RFC 3339.
    pub created_at: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Its id.
    pub id: TaskId,
    /// What it does.
    pub kind: TaskKind,
    /// 0 to 100.
    pub progress: u8,
    /// Where its output is (a model id, a blob key).
    pub result: Option<String>,
    /// Where it is.
    pub status: TaskStatus,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<&Task> for TaskView {
    fn from(task: &Task) -> Self {
        TaskView {
            attempts: task.attempts,
            chunks: task.batch.as_ref().map(|b| Chunks {
                anomalies: b.anomalies,
                done: b.done,
                rows: b.rows,
                total: b.total,
            }),
            correlation_id: task.correlation_id.clone(),
            created_at: task.created_at.rfc3339(),
            error: task.error.clone(),
            id: task.id.clone(),
            kind: task.kind,
            progress: task.progress,
            result: task.result.clone(),
            status: task.status,
            updated_at: task.updated_at.rfc3339(),
        }
    }
}

/// 202: the task that will do the work, and where to watch it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// `/v1/tasks/{id}`.
    pub status_url: String,
    /// The task.
    pub task: TaskView,
}

impl Accepted {
    /// The answer for `task`.
    pub fn of(task: &Task) -> Self {
        Accepted {
            status_url: status_url(&task.id),
            task: task.into(),
        }
    }
}

/// `/v1/tasks/{id}` of a task.
pub fn status_url(id: &TaskId) -> String {
    format!("/v1/tasks/{id}")
}

/// 202 for a batch: the task, and where its result will be.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedBatch {
    /// `/v1/tasks/{id}/result`: the manifest once the task completes.
    pub result_url: String,
    /// `/v1/tasks/{id}`.
    pub status_url: String,
    /// The task.
    pub task: TaskView,
}

/// 202 for training: the task, and the model it will make.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedTraining {
    /// The id the model will have once the task completes.
    pub model_id: ModelId,
    /// `/v1/tasks/{id}`.
    pub status_url: String,
    /// The task.
    pub task: TaskView,
}

/// A presigned download: a GET on `url` until `expires_at` needs no key.
#[derive(Debug, Serialize, ToSchema)]
pub struct Download {
    /// The document's size, for documents answered by reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// What the download is.
    pub content_type: String,
    /// RFC 3339.
    pub expires_at: String,
    /// The presigned URL.
    pub url: String,
}

/// Where a stream's detector state is stored.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateStored {
    /// In the stream's own record.
    Inline,
    /// In the blob store.
    Blob,
}

/// A stream as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamView {
    /// Points that scored at or above the threshold so far.
    pub anomalies: u64,
    /// The WebSocket channel its anomalies are published on: `stream:<id>`.
    pub channel: String,
    /// Values per point, and their names.
    pub columns: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// The detector and its parameters.
    #[schema(value_type = Object)]
    pub detector: serde_json::Value,
    /// For a stream split by entity: the field naming each point's entity, the most
    /// entities it keeps, and the seconds an entity may idle before it may be evicted
    /// (`GET /v1/streams/{id}/entities` lists them); `null` otherwise.
    pub entity: Option<crate::domain::EntitySplit>,
    /// What it does with points missing from the series: `skip`, `previous` or `linear`.
    pub gaps: crate::domain::GapPolicy,
    /// Seconds between points, given or inferred; `null` until known.
    pub interval: Option<i64>,
    /// The last point's time (Unix seconds).
    pub last_timestamp: Option<i64>,
    /// What it does with a late or repeated point: `reject`, `drop` or `clamp`.
    pub late: crate::domain::LatePolicy,
    /// The name the tenant gave it.
    pub name: String,
    /// Points learned so far (a stream split by entity counts them per entity).
    pub points: u64,
    /// Its last points, for a chart: `t` (Unix seconds), `v` (the first column's value),
    /// `s` (its score), and where the detector expects a value, `e` and the band's
    /// half-width `b` (a stream split by entity keeps them per entity).
    pub recent: Vec<crate::domain::RecentPoint>,
    /// Where the detector state is (`GET /v1/streams/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_stored: Option<StateStored>,
    /// Its id.
    pub stream_id: StreamId,
    /// Points scoring at or above this are anomalies, in (0, 1].
    pub threshold: f64,
    /// RFC 3339 of the last append.
    pub updated_at: String,
    /// Bumped by every write.
    pub version: u64,
}

impl StreamView {
    /// `stream`, with where its state is when that was read.
    pub fn of(stream: &crate::domain::Stream, state: Option<&StreamState>) -> Self {
        StreamView {
            anomalies: stream.anomalies,
            channel: format!("stream:{}", stream.id),
            columns: stream.columns.clone(),
            created_at: stream.created_at.rfc3339(),
            detector: stream.detector.clone(),
            entity: stream.entity.clone(),
            gaps: stream.gaps,
            interval: stream.interval,
            last_timestamp: stream.last_timestamp,
            late: stream.late,
            name: stream.name.clone(),
            points: stream.points,
            recent: stream.recent.clone(),
            state_stored: state.map(|s| match s {
                StreamState::Inline(_) => StateStored::Inline,
                StreamState::Blob(_) => StateStored::Blob,
            }),
            stream_id: stream.id.clone(),
            threshold: threshold_of(stream),
            updated_at: stream.updated_at.rfc3339(),
            version: stream.version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BatchProgress, Stream, TenantId};
    use serde_json::json;

    fn tenant() -> TenantId {
        TenantId::parse("t1").expect("a tenant id")
    }

    /// The typed views answer exactly the bytes the hand-built JSON they replaced did.
    #[test]
    fn a_task_view_is_the_json_it_replaced() {
        let mut task = Task::new(tenant(), TaskKind::Batch, "corr-1");
        task.error = Some("why".into());
        for batch in [
            None,
            Some(BatchProgress {
                total: 4,
                done: 2,
                done_bits: "03".into(),
                rows: 10,
                anomalies: 1,
            }),
        ] {
            task.batch = batch;
            let before = json!({
                "id": task.id,
                "kind": task.kind,
                "status": task.status,
                "progress": task.progress,
                "attempts": task.attempts,
                "created_at": task.created_at.rfc3339(),
                "updated_at": task.updated_at.rfc3339(),
                "error": task.error,
                "result": task.result,
                "correlation_id": task.correlation_id,
                "chunks": task.batch.as_ref().map(|b| json!({
                    "done": b.done, "total": b.total, "rows": b.rows, "anomalies": b.anomalies,
                })),
            });
            assert_eq!(
                serde_json::to_string(&TaskView::from(&task)).expect("json"),
                serde_json::to_string(&before).expect("json")
            );
        }
    }

    #[test]
    fn a_stream_view_is_the_json_it_replaced() {
        let stream = Stream::new(
            tenant(),
            "cpu".into(),
            json!({"detector": "seasonal"}),
            vec!["value".into()],
            0.5,
        );
        for state in [None, Some(StreamState::Inline(Vec::new()))] {
            let mut before = json!({
                "stream_id": stream.id,
                "name": stream.name,
                "detector": stream.detector,
                "entity": null,
                "recent": [],
                "columns": stream.columns,
                "threshold": threshold_of(&stream),
                "points": stream.points,
                "anomalies": stream.anomalies,
                "last_timestamp": stream.last_timestamp,
                "late": "drop",
                "gaps": "skip",
                "interval": null,
                "version": stream.version,
                "created_at": stream.created_at.rfc3339(),
                "updated_at": stream.updated_at.rfc3339(),
                "channel": format!("stream:{}", stream.id),
            });
            if state.is_some() {
                before["state_stored"] = json!("inline");
            }
            assert_eq!(
                serde_json::to_string(&StreamView::of(&stream, state.as_ref())).expect("json"),
                serde_json::to_string(&before).expect("json")
            );
        }
    }
}
