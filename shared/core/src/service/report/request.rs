//! What a report is asked for: the request's rows, and the job that carries them.

use crate::ids::{DatasetId, ModelId, TaskId};
use crate::service::training::TrainingData;
use serde::{Deserialize, Serialize};

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
