//! Training: fit a model on inline rows or an uploaded dataset and store it.

use crate::domain::ModelRecord;
use crate::domain::{Task, TaskKind, TenantId};
use crate::ids::{DatasetId, ModelId, TaskId};
use crate::service::datasets::{dataset_rows, dataset_shape, profiled_dataset};
use crate::service::input::{FitSpec, Rows};
use crate::service::jobs::{self, JobError};
use crate::service::uses::{
    UsesBlobs, UsesDatasets, UsesFeedback, UsesModels, UsesQueue, UsesSettings, UsesTasks,
};
use crate::service::{cost, feedback, models, Problem};
use nomaly_detect::Model;
use serde::{Deserialize, Serialize};

/// Where training rows come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum TrainingData {
    /// Rows sent with the request.
    Inline(Rows),
    /// An uploaded, profiled dataset of the tenant's.
    Dataset {
        /// The dataset.
        dataset_id: DatasetId,
        /// Columns to leave out (labels, ids).
        #[serde(default)]
        exclude_columns: Vec<String>,
    },
}

/// The body of a `train` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainJob {
    /// The task.
    pub task_id: TaskId,
    /// The model it makes (chosen up front, so a redelivered job makes the same one).
    pub model_id: ModelId,
    /// What to fit.
    pub spec: FitSpec,
    /// On what.
    pub data: TrainingData,
}

/// The JSON body of `POST /v1/models`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainRequest {
    /// Algorithm.
    pub algorithm: String,
    /// Parameters.
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Share of anomalies.
    #[serde(default)]
    pub contamination: Option<f64>,
    /// Fixed threshold.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Seed.
    #[serde(default)]
    pub seed: u64,
    /// Inline rows (or give `dataset_id`).
    #[serde(default)]
    pub rows: Option<Vec<Vec<f64>>>,
    /// Their column names.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// An uploaded dataset (or give `rows`).
    #[serde(default)]
    pub dataset_id: Option<DatasetId>,
    /// Dataset columns to leave out.
    #[serde(default)]
    pub exclude_columns: Vec<String>,
}

impl TrainRequest {
    /// The spec and the data, checked.
    pub fn into_parts(self) -> Result<(FitSpec, TrainingData), Problem> {
        let spec = FitSpec {
            algorithm: self.algorithm,
            params: self.params,
            contamination: self.contamination,
            threshold: self.threshold,
            seed: self.seed,
        };
        spec.validate()?;
        let data = TrainingData::from_parts(
            self.rows,
            self.columns,
            self.dataset_id,
            self.exclude_columns,
        )?;
        Ok((spec, data))
    }
}

impl TrainingData {
    /// The data a request names: inline `rows` (with `columns`), or an uploaded dataset
    /// (less `exclude_columns`), never both.
    pub fn from_parts(
        rows: Option<Vec<Vec<f64>>>,
        columns: Option<Vec<String>>,
        dataset_id: Option<DatasetId>,
        exclude_columns: Vec<String>,
    ) -> Result<Self, Problem> {
        match (rows, dataset_id) {
            (Some(_), Some(_)) => Err(Problem::invalid_parameter(
                "give `rows` or `dataset_id`, not both",
            )),
            (None, None) => Err(Problem::invalid_parameter(
                "give `rows` (inline data) or `dataset_id` (an uploaded dataset)",
            )),
            (Some(rows), None) => {
                if !exclude_columns.is_empty() {
                    return Err(Problem::invalid_parameter(
                        "`exclude_columns` applies to datasets; leave the columns out of `rows`",
                    ));
                }
                Ok(TrainingData::Inline(Rows::new(rows, columns)?))
            }
            (None, Some(dataset_id)) => Ok(TrainingData::Dataset {
                dataset_id,
                exclude_columns,
            }),
        }
    }
}

/// Refuses a fit whose parameters pass their caps, or that no worker could finish.
fn check_cost(spec: &FitSpec, rows: usize, cols: usize) -> Result<(), Problem> {
    let algorithm = nomaly_detect::Algorithm::with_params(&spec.algorithm, &spec.params)?;
    cost::check_fit(&algorithm, rows, cols)?;
    cost::check_task(cost::predict_ms(&algorithm, true, rows, cols, rows))
}

/// Queues training. A dataset must be the tenant's and profiled; the fit's predicted
/// cost must be within the limits.
pub async fn submit(
    services: &(impl UsesTasks + UsesDatasets + UsesBlobs + UsesQueue + UsesSettings),
    tenant: &TenantId,
    correlation_id: &str,
    spec: FitSpec,
    data: TrainingData,
) -> Result<(Task, ModelId), Problem> {
    let (rows, cols) = match &data {
        TrainingData::Dataset {
            dataset_id,
            exclude_columns,
        } => {
            let dataset = profiled_dataset(services, tenant, dataset_id).await?;
            let (rows, cols) = dataset_shape(&dataset);
            (rows, cols.saturating_sub(exclude_columns.len()))
        }
        TrainingData::Inline(rows) => (rows.len(), rows.columns.len()),
    };
    check_cost(&spec, rows, cols)?;
    let task = Task::new(tenant.clone(), TaskKind::Train, correlation_id);
    let model_id = ModelId::new();
    let job = TrainJob {
        task_id: task.id.clone(),
        model_id: model_id.clone(),
        spec,
        data,
    };
    let task = jobs::submit(services, task, &job).await?;
    Ok((task, model_id))
}

/// Loads the rows a training job names.
async fn rows(
    services: &(impl UsesDatasets + UsesBlobs + UsesSettings),
    tenant: &TenantId,
    data: &TrainingData,
) -> Result<Rows, JobError> {
    match data {
        TrainingData::Inline(rows) => Ok(rows.clone()),
        TrainingData::Dataset {
            dataset_id,
            exclude_columns,
        } => {
            let dataset = services
                .datasets()
                .get_dataset(tenant, dataset_id)
                .await?
                .ok_or_else(|| {
                    JobError::Fail(Problem::not_found(format!(
                        "dataset {dataset_id} not found"
                    )))
                })?;
            dataset_rows(services, tenant, &dataset, exclude_columns).await
        }
    }
}

/// Runs a `train` job's work: load the rows, fit with progress (reported as 0 to 1 of
/// the fit), fit the threshold to the rows of the dataset people labelled
/// (`POST /v1/feedback` with `dataset_id` and `row`) unless a fixed threshold was asked
/// for, store the model. A redelivered job
/// stores the same model id once.
pub async fn run_job(
    services: &(impl UsesModels + UsesDatasets + UsesBlobs + UsesSettings + UsesFeedback),
    tenant: &TenantId,
    job: &TrainJob,
    progress: impl Fn(f64) + Send + Sync + 'static,
) -> Result<ModelRecord, JobError> {
    if let Some(existing) = services.models().get_model(tenant, &job.model_id).await? {
        return Ok(existing);
    }
    let rows = rows(services, tenant, &job.data).await?;
    // A fixed `threshold` asked for is kept; a contamination is a guess labels can
    // correct.
    let labels = match &job.data {
        TrainingData::Dataset { dataset_id, .. } if job.spec.threshold.is_none() => {
            feedback::dataset_labels(services, tenant, dataset_id).await?
        }
        _ => Vec::new(),
    };
    let options = job
        .spec
        .options(rows.columns.clone())
        .map_err(JobError::Fail)?;
    let (fitted, labelled) = tokio::task::spawn_blocking(move || {
        let mut fitted = Model::fit_with_progress(rows.matrix().view(), &options, &progress)?;
        let labelled = fitted.fit_to_labels(&labels);
        Ok::<_, nomaly_detect::DetectError>((fitted, labelled))
    })
    .await
    .map_err(|e| JobError::Fail(Problem::internal(format!("training stopped: {e}"))))?
    .map_err(|e| JobError::Fail(Problem::from(e)))?;
    if let Some(fit) = &labelled {
        tracing::info!(
            model_id = %job.model_id,
            labelled = fit.labelled,
            errors_before = fit.errors_before,
            errors = fit.errors,
            threshold = fit.threshold,
            "threshold fitted to labels"
        );
    }
    let params = serde_json::to_value(&job.spec.params).unwrap_or_default();
    Ok(models::save(
        services,
        tenant,
        &job.model_id,
        &fitted.model,
        params,
        labelled.as_ref(),
    )
    .await?)
}
