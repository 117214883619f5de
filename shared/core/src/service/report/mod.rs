//! Reports: a `report` job scores rows (an uploaded dataset, or rows sent inline) with a
//! stored model and renders one HTML page with SVG plots — the score distribution with
//! the threshold, the scores in row order with the anomalies marked, the top anomalies
//! with the features that drove them, and the data's profile. The page is a blob,
//! fetched through a presigned URL (`GET /v1/tasks/{id}/report`).

pub mod render;
mod request;
mod run;
pub mod svg;

pub use request::{ReportJob, ReportRequest};
pub use run::{run_job, Summary};

use crate::domain::{Task, TaskKind, TaskStatus, TenantId};
use crate::ids::{ModelId, TaskId};
use crate::ports::{BlobKey, PresignedDownload};
use crate::service::jobs;
use crate::service::training::TrainingData;
use crate::service::uses::{
    UsesBlobs, UsesDatasets, UsesLoadedModels, UsesModels, UsesQueue, UsesSettings, UsesTasks,
    UsesUploads,
};
use crate::service::{cost, datasets, models, Problem};

/// Rows explained in the "top anomalies" table.
pub const TOP_ANOMALIES: usize = 20;
/// What a report is served as.
pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";
/// How long a report's download URL works.
pub const DOWNLOAD_URL_SECS: u32 = 900;

/// Where a report task's page is stored.
pub fn report_key(tenant: &TenantId, task: &TaskId) -> BlobKey {
    BlobKey::for_tenant(tenant, &["reports", &format!("{task}.html")])
        .expect("task ids and tenant ids are valid key segments")
}

/// Queues a report on `model_id` (the tenant's) over the data the request names.
pub async fn submit(
    services: &(impl UsesTasks
          + UsesModels
          + UsesDatasets
          + UsesBlobs
          + UsesQueue
          + UsesSettings
          + UsesLoadedModels),
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
    jobs::submit(services, task, &job).await
}

/// A download URL for a completed report task's page.
pub async fn download(
    services: &impl UsesUploads,
    task: &Task,
) -> Result<PresignedDownload, Problem> {
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
        .uploads()
        .presign_download(&key, CONTENT_TYPE, DOWNLOAD_URL_SECS)
        .await?)
}
