//! Model records: what the registry knows of a trained model; the model itself is a blob.

use crate::domain::TenantId;
use crate::ids::ModelId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// A trained model's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelRecord {
    /// Its id.
    pub id: ModelId,
    /// Its tenant.
    pub tenant: TenantId,
    /// Algorithm name (`iforest`, ...).
    pub algorithm: String,
    /// Algorithm parameters.
    pub params: serde_json::Value,
    /// Feature names, in column order.
    pub feature_names: Vec<String>,
    /// Training summary (rows, anomalies, score range, threshold).
    pub training: serde_json::Value,
    /// Where the saved model is in the blob store.
    pub artifact_key: String,
    /// Saved-model format version.
    pub version: u32,
    /// When it was trained.
    pub created_at: Timestamp,
}
