//! Running a `backtest` job: scoring its points as a stream would, judging the scores
//! against the labels, and storing its result document.

use super::request::{check_count, check_work, read_csv, BacktestJob, Source};
use crate::domain::TenantId;
use crate::ids::TaskId;
use crate::limits::BACKTEST_MAX_LISTED_ANOMALIES;
use crate::ports::BlobKey;
use crate::service::jobs::JobError;
use crate::service::streams::{end_key, EndState};
use crate::service::streams::{Anomaly, Point};
use crate::service::uses::{UsesBlobs, UsesDatasets};
use crate::service::{datasets, Problem};
use nomaly_detect::backtest::{self as judge, Evaluation, Labels};
use nomaly_detect::stream::{StreamDetector, StreamSpec};
use serde::Serialize;
use serde_json::Value;

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
/// Where a backtest task's result document is stored.
pub fn result_key(tenant: &TenantId, task: &TaskId) -> BlobKey {
    BlobKey::for_tenant(tenant, &["backtests", &format!("{task}.json")])
        .expect("task ids and tenant ids are valid key segments")
}
/// Runs a `backtest` job: read the points, score them one by one, judge the scores
/// against the labels, store the result and the end state. `progress` gets 0 to 1. A
/// redelivered job runs again and writes the same keys.
pub async fn run_job(
    services: &(impl UsesDatasets + UsesBlobs),
    tenant: &TenantId,
    job: &BacktestJob,
    progress: impl Fn(f64) + Send + Sync + 'static,
) -> Result<Summary, JobError> {
    let (points, labels) = match &job.source {
        Source::Inline { points } => (
            points
                .iter()
                .map(|(t, values)| Point::new(*t, values.clone()))
                .collect(),
            None,
        ),
        Source::Dataset {
            dataset_id,
            label_column,
        } => {
            let dataset = datasets::profiled_dataset(services, tenant, dataset_id).await?;
            let bytes = datasets::dataset_bytes(services, tenant, &dataset).await?;
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
        .blobs()
        .put_blob(&end_key(tenant, &job.task_id), json_bytes(&end)?)
        .await?;
    services
        .blobs()
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
