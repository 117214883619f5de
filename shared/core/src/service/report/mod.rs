//! Reports: a `report` job scores rows (an uploaded dataset, or rows sent inline) with a
//! stored model and renders one HTML page with SVG plots — the score distribution with
//! the threshold, the scores in row order with the anomalies marked, the top anomalies
//! with the features that drove them, and the data's profile. The page is a blob,
//! fetched through a presigned URL (`GET /v1/tasks/{id}/report`).

pub mod render;
pub mod svg;

use crate::domain::{Task, TaskKind, TaskStatus, TenantId};
use crate::ids::{DatasetId, ModelId, TaskId};
use crate::ports::{BlobKey, PresignedDownload};
use crate::service::detection::{score_with, Contribution};
use crate::service::input::Rows;
use crate::service::jobs::{self, JobError};
use crate::service::training::TrainingData;
use crate::service::{cost, datasets, models, profile, Problem, Services};
use serde::{Deserialize, Serialize};

/// Rows explained in the "top anomalies" table.
pub const TOP_ANOMALIES: usize = 20;
/// Features shown per explained row.
const TOP_FEATURES: usize = 5;
/// What a report is served as.
pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";
/// How long a report's download URL works.
pub const DOWNLOAD_URL_SECS: u32 = 900;

/// The JSON body of `POST /v1/models/{id}/reports`: the rows to report on.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// An uploaded, profiled dataset (or give `rows`).
    #[serde(default)]
    pub dataset_id: Option<DatasetId>,
    /// Dataset columns to leave out (labels, ids).
    #[serde(default)]
    pub exclude_columns: Vec<String>,
    /// Inline rows (or give `dataset_id`).
    #[serde(default)]
    pub rows: Option<Vec<Vec<f64>>>,
    /// Their column names (the model's feature names when left out).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
}

/// The body of a `report` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportJob {
    /// The task.
    pub task_id: TaskId,
    /// The model that scores.
    pub model_id: ModelId,
    /// The rows it scores.
    pub data: TrainingData,
}

/// What a finished report says of itself (the `task.completed` payload's core).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Rows scored.
    pub rows: usize,
    /// Of which anomalies.
    pub anomalies: usize,
    /// Size of the page in bytes.
    pub bytes: usize,
}

/// Where a report task's page is stored.
pub fn report_key(tenant: &TenantId, task: &TaskId) -> BlobKey {
    BlobKey::for_tenant(tenant, &["reports", &format!("{task}.html")])
        .expect("task ids and tenant ids are valid key segments")
}

/// Queues a report on `model_id` (the tenant's) over the data the request names.
pub async fn submit(
    services: &Services,
    tenant: &TenantId,
    correlation_id: &str,
    model_id: &ModelId,
    request: ReportRequest,
) -> Result<Task, Problem> {
    let mut data = TrainingData::from_parts(
        request.rows,
        request.columns,
        request.dataset_id,
        request.exclude_columns,
    )?;
    let model = models::record(services, tenant, model_id).await?;
    let (n, d) = match &mut data {
        TrainingData::Dataset { dataset_id, .. } => {
            let dataset = datasets::profiled_dataset(services, tenant, dataset_id).await?;
            datasets::dataset_shape(&dataset)
        }
        TrainingData::Inline(rows) => {
            // Stored as the model takes them: its features, by name or by position.
            let (aligned, _) = std::mem::take(rows).for_model(&model.feature_names)?;
            *rows = aligned;
            (rows.len(), rows.columns.len())
        }
    };
    // Scored and explained: refused when no worker could finish it.
    let (_, loaded) = models::load(services, tenant, model_id).await?;
    let predicted = cost::predict_ms(loaded.algorithm(), false, n, d, loaded.training().rows);
    cost::check_task(2.0 * predicted)?;
    let task = Task::new(tenant.clone(), TaskKind::Report, correlation_id);
    let job = ReportJob {
        task_id: task.id.clone(),
        model_id: model_id.clone(),
        data,
    };
    jobs::submit(services, task, jobs::JobKind::Report, &job).await
}

/// Runs a `report` job: load the model and the rows, score, explain the top rows,
/// render and store the page. `progress` gets 0 to 1. A redelivered job renders the
/// page again under the same key.
pub async fn run_job(
    services: &Services,
    tenant: &TenantId,
    job: &ReportJob,
    progress: impl Fn(f64) + Send + Sync + 'static,
) -> Result<(BlobKey, Summary), JobError> {
    let (record, model) = models::load(services, tenant, &job.model_id).await?;
    // The dataset's record is read once: for its rows, its name and its profile.
    let (rows, source, stored_profile) = match &job.data {
        TrainingData::Dataset {
            dataset_id,
            exclude_columns,
        } => {
            let dataset = datasets::profiled_dataset(services, tenant, dataset_id).await?;
            let rows = datasets::dataset_rows(services, tenant, &dataset, exclude_columns).await?;
            let profile = crate::service::ingest::profile_of(services, &dataset).await?;
            (
                rows,
                format!("dataset {} ({})", dataset.name, dataset.id),
                profile,
            )
        }
        TrainingData::Inline(rows) => (
            rows.clone(),
            format!("{} rows sent with the request", rows.len()),
            None,
        ),
    };
    let (rows, _) = rows.for_model(&record.feature_names)?;
    progress(0.1);
    let render = move || -> Result<(String, Summary), Problem> {
        let profile = match stored_profile {
            Some(p) => Some(p),
            None => profile_of(&rows)?,
        };
        let detection = score_with(&model, Some(record.id.clone()), &rows, false, None, &|p| {
            progress(0.1 + 0.7 * p)
        })?;
        let mut order: Vec<usize> = (0..detection.scores.len()).collect();
        order.sort_by(|&a, &b| detection.scores[b].total_cmp(&detection.scores[a]));
        let x = rows.matrix();
        let mut method = None;
        let mut top = Vec::new();
        for &row in order.iter().take(TOP_ANOMALIES) {
            let e = model.explain(x.row(row))?;
            method.get_or_insert(e.method.clone());
            top.push(render::TopAnomaly {
                row,
                score: detection.scores[row],
                features: e
                    .features
                    .into_iter()
                    .take(TOP_FEATURES)
                    .map(|f| Contribution {
                        feature: f.feature,
                        contribution: f.contribution,
                    })
                    .collect(),
            });
        }
        progress(0.9);
        let page = render::html(&render::Contents {
            model: &record,
            source,
            detection: &detection,
            top,
            explanation_method: method,
            profile: profile.as_ref(),
            generated_at: crate::time::Timestamp::now().rfc3339(),
        });
        let summary = Summary {
            rows: detection.rows,
            anomalies: detection.anomalies,
            bytes: page.len(),
        };
        Ok((page, summary))
    };
    let (page, summary) = tokio::task::spawn_blocking(render)
        .await
        .map_err(|e| JobError::Fail(Problem::internal(format!("rendering stopped: {e}"))))??;
    let key = report_key(tenant, &job.task_id);
    services.blobs.put_blob(&key, page.into_bytes()).await?;
    Ok((key, summary))
}

/// The profile of inline rows, as an upload of the same values would get (column names
/// quoted as CSV needs).
fn profile_of(rows: &Rows) -> Result<Option<serde_json::Value>, Problem> {
    let unreadable = |e: &dyn std::fmt::Display| {
        Problem::invalid_data(format!("the rows could not be profiled: {e}"))
    };
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(&rows.columns)
        .map_err(|e| unreadable(&e))?;
    for r in &rows.rows {
        csv.write_record(r.iter().map(|v| format!("{v:?}")))
            .map_err(|e| unreadable(&e))?;
    }
    let bytes = csv.into_inner().map_err(|e| unreadable(&e))?;
    let p = profile::profile_csv(&bytes).map_err(|e| unreadable(&e))?;
    Ok(serde_json::to_value(p).ok())
}

/// A download URL for a completed report task's page.
pub async fn download(services: &Services, task: &Task) -> Result<PresignedDownload, Problem> {
    if task.kind != TaskKind::Report {
        return Err(Problem::not_found(format!(
            "task {} is a {} task; only report tasks have a report",
            task.id,
            task.kind.as_str()
        )));
    }
    if task.status != TaskStatus::Completed {
        return Err(Problem::conflict(format!(
            "task {} is {}",
            task.id,
            task.status.as_str()
        )));
    }
    let key = report_key(&task.tenant, &task.id);
    Ok(services
        .uploads
        .presign_download(&key, CONTENT_TYPE, DOWNLOAD_URL_SECS)
        .await?)
}
