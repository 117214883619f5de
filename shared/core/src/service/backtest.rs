//! Backtests: a `backtest` job runs a stream detector spec over a history (an uploaded
//! dataset of `timestamp,value...` with an optional label column, or points sent inline)
//! exactly as a stream would score it point by point, and stores:
//! - the result (`GET /v1/tasks/{id}/result`): every point's score and raw score, the
//!   anomalies at the threshold and, when labelled windows are given, how the detector
//!   fared against them (windows found, false positives, precision, recall, NAB score)
//!   and the threshold that would have served best;
//! - the detector as it stood after the last point, from which `POST /v1/streams` with
//!   `from_backtest` starts a live stream that needs no warm-up.

use crate::bounded::{self, Bounds, Exceeded};
use crate::domain::{Task, TaskKind, TaskStatus, TenantId};
use crate::ids::{DatasetId, TaskId};
use crate::limits::{
    self, BACKTEST_MAX_CELLS, BACKTEST_MAX_INFLATED_BYTES, BACKTEST_MAX_LISTED_ANOMALIES,
    BACKTEST_MAX_POINTS, BACKTEST_MAX_WINDOWS, BACKTEST_MAX_WORK,
};
use crate::ports::BlobKey;
use crate::service::jobs::{self, JobError};
use crate::service::streams::{self, Anomaly, CreateStream, Point, PointIn, When};
use crate::service::{training, Problem, Services};
use nomaly_detect::backtest::{self as judge, Evaluation, Labels};
use nomaly_detect::stream::{StreamDetector, StreamSpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Read;

/// `POST /v1/backtests`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BacktestRequest {
    /// The detector, as for `POST /v1/streams` (default `seasonal`).
    #[serde(default)]
    pub detector: Option<String>,
    /// Its parameters.
    #[serde(default)]
    pub params: Option<Value>,
    /// Half-Space Trees only: values per point from consecutive points.
    #[serde(default)]
    pub shingle: Option<usize>,
    /// The value columns (default: a dataset's columns but `timestamp` and the label
    /// column; `["value"]` inline).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// The threshold judged (default: the detector's default).
    #[serde(default)]
    pub threshold: Option<f64>,
    /// An uploaded, profiled dataset with a `timestamp` column (or give `points`).
    #[serde(default)]
    pub dataset_id: Option<DatasetId>,
    /// Points inline, as for `POST /v1/streams/{id}/points` (or give `dataset_id`).
    #[serde(default)]
    pub points: Option<Vec<PointIn>>,
    /// The dataset's 0/1 label column (default `label` when the dataset has one).
    #[serde(default)]
    pub label_column: Option<String>,
    /// Labelled windows as inclusive time ranges (instead of a label column).
    #[serde(default)]
    pub windows: Option<Vec<WindowIn>>,
}

/// A labelled window as sent.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowIn {
    /// Its first instant.
    pub start: When,
    /// Its last instant.
    pub end: When,
}

/// Where a backtest's points come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// An uploaded dataset.
    Dataset {
        /// Which.
        dataset_id: DatasetId,
        /// Its label column, if any.
        label_column: Option<String>,
    },
    /// Points sent with the request: `(unix seconds, values)`.
    Inline {
        /// The points.
        points: Vec<(i64, Vec<f64>)>,
    },
}

/// The body of a `backtest` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BacktestJob {
    /// The task.
    pub task_id: TaskId,
    /// The detector.
    pub spec: StreamSpec,
    /// Its value columns.
    pub columns: Vec<String>,
    /// The threshold judged.
    pub threshold: f64,
    /// The points.
    pub source: Source,
    /// Labelled windows as inclusive Unix-second ranges, when given as times.
    pub windows: Option<Vec<(i64, i64)>>,
}

/// What a finished backtest says of itself (the `task.completed` payload's core).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Points scored.
    pub points: usize,
    /// Of which at or above the threshold.
    pub anomalies: usize,
    /// The threshold.
    pub threshold: f64,
    /// How the detector fared against the labels, when there were any.
    pub evaluation: Option<Evaluation>,
    /// The best threshold on these labels and how it fared.
    pub best: Option<Evaluation>,
}

/// The detector as a backtest left it: what `from_backtest` starts a stream with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndState {
    /// The detector spec.
    pub spec: StreamSpec,
    /// Its value columns.
    pub columns: Vec<String>,
    /// The threshold the backtest judged.
    pub threshold: f64,
    /// Points learned.
    pub points: u64,
    /// The last point's time.
    pub last_timestamp: Option<i64>,
    /// The detector's state.
    pub detector: Value,
}

/// Where a backtest task's result document is stored.
pub fn result_key(tenant: &TenantId, task: &TaskId) -> BlobKey {
    BlobKey::for_tenant(tenant, &["backtests", &format!("{task}.json")])
        .expect("task ids and tenant ids are valid key segments")
}

/// Where a backtest task's end state is stored.
pub fn end_key(tenant: &TenantId, task: &TaskId) -> BlobKey {
    BlobKey::for_tenant(tenant, &["backtests", &format!("{task}.end.json")])
        .expect("task ids and tenant ids are valid key segments")
}

/// Queues a backtest after checking everything that can be checked before reading the
/// data: the detector, the columns and labels against the dataset's profile, the windows.
pub async fn submit(
    services: &Services,
    tenant: &TenantId,
    correlation_id: &str,
    request: BacktestRequest,
) -> Result<Task, Problem> {
    if request.windows.is_some() && request.label_column.is_some() {
        return Err(Problem::invalid_parameter(
            "give labels as `label_column` or as `windows`, not both",
        ));
    }
    let windows = match request.windows {
        None => None,
        Some(w) => Some(windows_of(w)?),
    };
    let (source, columns) = match (request.dataset_id, request.points) {
        (Some(dataset_id), None) => {
            let dataset = training::profiled_dataset(services, tenant, &dataset_id).await?;
            if dataset.declared_size > BACKTEST_MAX_INFLATED_BYTES {
                return Err(Problem::too_large(format!(
                    "dataset {dataset_id} is {} bytes; a backtest reads at most {} MiB",
                    dataset.declared_size,
                    BACKTEST_MAX_INFLATED_BYTES >> 20
                )));
            }
            let profile = crate::service::ingest::profile_of(services, &dataset).await?;
            let header = header_of(&profile);
            let numeric = numeric_columns(&profile);
            let label_column = match request.label_column {
                Some(l) if !header.contains(&l) => {
                    return Err(Problem::invalid_parameter(format!(
                        "dataset {dataset_id} has no column `{l}` to take labels from"
                    )))
                }
                Some(l) => Some(l),
                None if windows.is_none() && header.iter().any(|h| h == "label") => {
                    Some("label".to_string())
                }
                None => None,
            };
            if !header.iter().any(|h| h == "timestamp") {
                return Err(Problem::invalid_data(format!(
                    "dataset {dataset_id} has no `timestamp` column"
                )));
            }
            let columns = match request.columns {
                Some(columns) => {
                    if let Some(missing) = columns.iter().find(|c| !header.contains(c)) {
                        return Err(Problem::invalid_parameter(format!(
                            "dataset {dataset_id} has no column `{missing}`"
                        )));
                    }
                    columns
                }
                // Numbers only, and never the labels, even when `windows` label the rows.
                None => numeric
                    .into_iter()
                    .filter(|h| {
                        h != "timestamp" && h != "label" && Some(h) != label_column.as_ref()
                    })
                    .collect(),
            };
            if label_column.as_ref().is_some_and(|l| columns.contains(l)) {
                return Err(Problem::invalid_parameter(
                    "the label column cannot also be a value column",
                ));
            }
            let source = Source::Dataset {
                dataset_id,
                label_column,
            };
            (source, Some(columns))
        }
        (None, Some(points)) => {
            if request.label_column.is_some() {
                return Err(Problem::invalid_parameter(
                    "`label_column` applies to a dataset; label inline points with `windows`",
                ));
            }
            check_count(points.len())?;
            let points = streams::read_points(points)?
                .into_iter()
                .map(|p| (p.t, p.values))
                .collect();
            (Source::Inline { points }, request.columns)
        }
        _ => {
            return Err(Problem::invalid_parameter(
                "give exactly one of `dataset_id` and `points`",
            ))
        }
    };
    let (_, spec, columns, threshold) = CreateStream {
        name: "backtest".into(),
        detector: request.detector,
        params: request.params,
        shingle: request.shingle,
        columns,
        threshold: request.threshold,
        from_backtest: None,
    }
    .into_parts()?;
    // Every parameter and the detector's fit to the columns, checked before queueing.
    StreamDetector::new(spec.clone(), columns.len())?;
    if let Source::Inline { points } = &source {
        check_work(&spec, columns.len(), points.len())?;
    }
    let task = Task::new(tenant.clone(), TaskKind::Backtest, correlation_id);
    let job = BacktestJob {
        task_id: task.id.clone(),
        spec,
        columns,
        threshold,
        source,
        windows,
    };
    jobs::submit(services, task, jobs::JobKind::Backtest, &job).await
}

fn windows_of(windows: Vec<WindowIn>) -> Result<Vec<(i64, i64)>, Problem> {
    if windows.len() > BACKTEST_MAX_WINDOWS {
        return Err(Problem::invalid_parameter(format!(
            "at most {BACKTEST_MAX_WINDOWS} windows are accepted"
        )));
    }
    windows
        .into_iter()
        .enumerate()
        .map(|(i, w)| match (w.start.seconds(), w.end.seconds()) {
            (Some(s), Some(e)) => Ok((s, e)),
            _ => Err(Problem::invalid_parameter(format!(
                "window {i}: `start` and `end` must be Unix seconds, RFC 3339 or YYYY-MM-DD HH:MM:SS (UTC)"
            ))),
        })
        .collect()
}

/// The column names of a dataset's stored profile.
fn header_of(profile: &Option<Value>) -> Vec<String> {
    columns_where(profile, |_| true)
}

/// The numeric columns of a dataset's stored profile.
fn numeric_columns(profile: &Option<Value>) -> Vec<String> {
    columns_where(profile, |c| {
        c.get("type").and_then(Value::as_str) == Some("numeric")
    })
}

fn columns_where(profile: &Option<Value>, keep: impl Fn(&Value) -> bool) -> Vec<String> {
    profile
        .as_ref()
        .and_then(|p| p.get("column_profiles"))
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .filter(|c| keep(c))
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn check_count(n: usize) -> Result<(), Problem> {
    if n == 0 {
        return Err(Problem::invalid_data("the backtest has no points"));
    }
    if n > BACKTEST_MAX_POINTS {
        return Err(Problem::too_large(format!(
            "a backtest runs over at most {BACKTEST_MAX_POINTS} points (this one has {n})"
        )));
    }
    Ok(())
}

fn check_work(spec: &StreamSpec, width: usize, points: usize) -> Result<(), Problem> {
    if points.saturating_mul(width) > BACKTEST_MAX_CELLS {
        return Err(Problem::too_large(format!(
            "a backtest takes at most {BACKTEST_MAX_CELLS} values (points x columns); this one has {points} x {width}"
        )));
    }
    let most = streams::most_points(spec, width, BACKTEST_MAX_WORK);
    if points > most {
        return Err(Problem::too_large(format!(
            "this detector backtests at most {most} points; use fewer points, or a lighter detector"
        )));
    }
    Ok(())
}

/// Runs a `backtest` job: read the points, score them one by one, judge the scores
/// against the labels, store the result and the end state. `progress` gets 0 to 1. A
/// redelivered job runs again and writes the same keys.
pub async fn run_job(
    services: &Services,
    tenant: &TenantId,
    job: &BacktestJob,
    progress: impl Fn(f64) + Send + Sync + 'static,
) -> Result<Summary, JobError> {
    let (points, labels) = match &job.source {
        Source::Inline { points } => (
            points
                .iter()
                .map(|(t, values)| Point {
                    t: *t,
                    values: values.clone(),
                })
                .collect(),
            None,
        ),
        Source::Dataset {
            dataset_id,
            label_column,
        } => {
            let dataset = training::profiled_dataset(services, tenant, dataset_id).await?;
            let bytes = training::dataset_bytes(services, tenant, &dataset).await?;
            let columns = job.columns.clone();
            let label = label_column.clone();
            tokio::task::spawn_blocking(move || read_csv(&bytes, &columns, label.as_deref()))
                .await
                .map_err(|e| JobError::Fail(Problem::internal(e.to_string())))?
                .map_err(JobError::Fail)?
        }
    };
    check_count(points.len())?;
    check_work(&job.spec, job.columns.len(), points.len())?;
    let times: Vec<i64> = points.iter().map(|p| p.t).collect();
    let windows =
        match (&job.windows, labels) {
            (Some(w), _) => Some(judge::windows_of_times(&times, w).map_err(|e| {
                JobError::Fail(Problem::invalid_parameter(format!("`windows`: {e}")))
            })?),
            (None, Some(labels)) => Some(judge::windows_of_labels(&labels)),
            (None, None) => None,
        };
    progress(0.05);
    let spec = job.spec.clone();
    let width = job.columns.len();
    let threshold = job.threshold;
    let columns = job.columns.clone();
    let work = move || -> Result<(Document, EndState), Problem> {
        let mut detector = StreamDetector::new(spec.clone(), width)?;
        let mut scores = Vec::with_capacity(points.len());
        let mut raw_scores = Vec::with_capacity(points.len());
        let mut anomalies = Vec::new();
        let mut anomaly_count = 0;
        let step = (points.len() / 100).max(1);
        for (i, p) in points.iter().enumerate() {
            let s = detector
                .update(p.t, &p.values)
                .map_err(|e| Problem::invalid_data(format!("point {i}: {e}")))?;
            if s.score >= threshold {
                anomaly_count += 1;
                if anomalies.len() < BACKTEST_MAX_LISTED_ANOMALIES {
                    anomalies.push(Anomaly::new(i, p, &s, &columns));
                }
            }
            scores.push(s.score);
            raw_scores.push(s.raw);
            if i % step == 0 {
                progress(0.05 + 0.8 * i as f64 / points.len() as f64);
            }
        }
        let (evaluation, best, probation) = match &windows {
            None => (None, None, None),
            Some(windows) => {
                let labels = Labels::new(points.len(), windows)
                    .map_err(|e| Problem::invalid_parameter(format!("labels: {e}")))?;
                (
                    Some(labels.evaluate(&scores, threshold)),
                    labels.best(&scores),
                    Some(labels.probation()),
                )
            }
        };
        progress(0.9);
        let state: Value = serde_json::from_slice(&detector.to_json()?)
            .map_err(|e| Problem::internal(e.to_string()))?;
        let end = EndState {
            spec: spec.clone(),
            columns: columns.clone(),
            threshold,
            points: points.len() as u64,
            last_timestamp: points.last().map(|p| p.t),
            detector: state,
        };
        let document = Document {
            detector: spec,
            columns,
            threshold,
            points: points.len(),
            first_timestamp: points.first().map(|p| p.t),
            last_timestamp: points.last().map(|p| p.t),
            windows: windows.map(|w| w.iter().map(|&(s, e)| (points[s].t, points[e].t)).collect()),
            probation_points: probation,
            evaluation,
            best,
            anomaly_count,
            anomalies,
            scores,
            raw_scores,
        };
        Ok((document, end))
    };
    let (document, end) = tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| JobError::Fail(Problem::internal(format!("the backtest stopped: {e}"))))??;
    services
        .blobs
        .put_blob(&end_key(tenant, &job.task_id), json_bytes(&end)?)
        .await?;
    services
        .blobs
        .put_blob(&result_key(tenant, &job.task_id), json_bytes(&document)?)
        .await?;
    Ok(Summary {
        points: document.points,
        anomalies: document.anomaly_count,
        threshold: document.threshold,
        evaluation: document.evaluation,
        best: document.best,
    })
}

fn json_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, JobError> {
    serde_json::to_vec(value).map_err(|e| JobError::Fail(Problem::internal(e.to_string())))
}

/// A backtest's result document.
#[derive(Debug, Serialize)]
struct Document {
    detector: StreamSpec,
    columns: Vec<String>,
    threshold: f64,
    points: usize,
    first_timestamp: Option<i64>,
    last_timestamp: Option<i64>,
    /// The labelled windows, as the first and last point's time in each.
    windows: Option<Vec<(i64, i64)>>,
    /// Points at the start that NAB's scoring leaves out while the detector learns.
    probation_points: Option<usize>,
    evaluation: Option<Evaluation>,
    best: Option<Evaluation>,
    anomaly_count: usize,
    anomalies: Vec<Anomaly>,
    scores: Vec<f64>,
    raw_scores: Vec<f64>,
}

/// Reads a dataset's points (`timestamp`, the value columns by name) and its 0/1 labels,
/// inflating gzip within [`limits::BACKTEST_INFLATED`].
fn read_csv(
    bytes: &[u8],
    columns: &[String],
    label_column: Option<&str>,
) -> Result<(Vec<Point>, Option<Vec<bool>>), Problem> {
    let bounds = Bounds {
        inflated: &limits::BACKTEST_INFLATED,
        line_bytes: limits::MAX_LINE_BYTES,
    };
    let mut inflated = Vec::new();
    bounded::open(bytes, bounds)
        .read_to_end(&mut inflated)
        .map_err(|e| match Exceeded::in_io(&e) {
            Some(limit) => Problem::from(limit.clone()),
            None => Problem::invalid_data(format!("the dataset could not be read: {e}")),
        })?;
    streams::read_csv(
        &inflated,
        columns,
        label_column,
        (
            BACKTEST_MAX_POINTS,
            &format!("a backtest runs over at most {BACKTEST_MAX_POINTS} points"),
        ),
    )
}

/// The end state of the tenant's completed backtest `task`.
pub async fn end_state(
    services: &Services,
    tenant: &TenantId,
    task: &TaskId,
) -> Result<EndState, Problem> {
    let record = services
        .tasks
        .get_task(tenant, task)
        .await?
        .ok_or_else(|| Problem::not_found(format!("backtest {task} not found")))?;
    if record.kind != TaskKind::Backtest {
        return Err(Problem::invalid_parameter(format!(
            "task {task} is a {} task, not a backtest",
            record.kind.as_str()
        )));
    }
    if record.status != TaskStatus::Completed {
        return Err(Problem::conflict(format!(
            "backtest {task} is {}",
            record.status.as_str()
        )));
    }
    let bytes = services
        .blobs
        .get_blob(&end_key(tenant, task))
        .await?
        .ok_or_else(|| Problem::not_found(format!("backtest {task}'s end state is gone")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Problem::internal(format!("backtest {task}'s end state does not read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dataset_reads_with_its_labels_by_name() {
        let csv = b"label,timestamp,b,a\n0,2014-04-01 00:00:00,1,2\n1,1396310700,3,4\n";
        let (points, labels) =
            read_csv(csv, &["a".to_string(), "b".to_string()], Some("label")).unwrap();
        assert_eq!(points.len(), 2);
        assert_eq!(points[1].t, 1_396_310_700);
        assert_eq!(points[0].values, vec![2.0, 1.0]);
        assert_eq!(labels, Some(vec![false, true]));
        let err = read_csv(csv, &["c".to_string()], None).unwrap_err();
        assert_eq!(err.status, 422);
        assert!(err.detail.contains("`c`"), "{}", err.detail);
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(b"timestamp,value\n").unwrap();
        let line = b"1396310400,0\n".repeat(1 << 16);
        for _ in 0..((BACKTEST_MAX_INFLATED_BYTES as usize / line.len()) + 2) {
            gz.write_all(&line).unwrap();
        }
        let bytes = gz.finish().unwrap();
        let err = read_csv(&bytes, &["value".to_string()], None).unwrap_err();
        assert_eq!(err.status, 413);
    }
}
