//! Backtests: a `backtest` job runs a stream detector spec over a history (an uploaded
//! dataset of `timestamp,value...` with an optional label column, or points sent inline)
//! exactly as a stream would score it point by point, and stores:
//! - the result (`GET /v1/tasks/{id}/result`): every point's score and raw score, the
//!   anomalies at the threshold and, when labelled windows are given, how the detector
//!   fared against them (windows found, false positives, precision, recall, NAB score)
//!   and the threshold that would have served best;
//! - the detector as it stood after the last point, from which `POST /v1/streams` with
//!   `from_backtest` starts a live stream that needs no warm-up.
//!
//! What a request sends and how it is checked (`request.rs`), running the job and its
//! result document (`run.rs`); the end state it stores for streams to start from is
//! streams' (`streams/from_backtest.rs`).
//! This module submits backtests.

mod request;
mod run;

pub use request::{BacktestJob, BacktestRequest, Source, WindowIn};
pub use run::{result_key, run_job, Summary};

use crate::domain::{Task, TaskKind, TenantId};
use crate::limits::BACKTEST_MAX_INFLATED_BYTES;
use crate::service::jobs;
use crate::service::streams::{self, CreateStream};
use crate::service::uses::{UsesBlobs, UsesDatasets, UsesQueue, UsesSettings, UsesTasks};
use crate::service::{datasets, Problem};
use nomaly_detect::stream::StreamDetector;
use request::{check_count, check_work, header_of, numeric_columns, windows_of};

/// Queues a backtest after checking everything that can be checked before reading the
/// data: the detector, the columns and labels against the dataset's profile, the windows.
pub async fn submit(
    services: &(impl UsesTasks + UsesDatasets + UsesBlobs + UsesQueue + UsesSettings),
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
            let dataset = datasets::profiled_dataset(services, tenant, &dataset_id).await?;
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
            let points = streams::read_points(points)?;
            if let Some((i, (key, _))) = points
                .iter()
                .enumerate()
                .find_map(|(i, p)| p.entity.as_ref().map(|e| (i, e)))
            {
                return Err(Problem::invalid_data(format!(
                    "point {i}: unknown field `{key}`: a backtest's point has `timestamp` and `value` or `values`"
                )));
            }
            let points = points.into_iter().map(|p| (p.t, p.values)).collect();
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
        late: None,
        gaps: None,
        interval: None,
        entity: None,
        max_entities: None,
        entity_ttl: None,
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
    jobs::submit(services, task, &job).await
}
