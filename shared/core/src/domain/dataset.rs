//! Datasets: an uploaded object and, once profiled, its profile.

use crate::domain::TenantId;
use crate::ids::DatasetId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// A dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Dataset {
    /// Its id.
    pub id: DatasetId,
    /// Its tenant.
    pub tenant: TenantId,
    /// The name the user gave (shown, never used as a storage key).
    pub name: String,
    /// Where the object is in the blob store.
    pub blob_key: String,
    /// Size the upload declared (and signed), in bytes.
    pub declared_size: u64,
    /// Whether training should start once it is profiled.
    pub train_on_upload: bool,
    /// What to train once profiled (algorithm, params, threshold), when `train_on_upload`.
    #[serde(default)]
    pub train_spec: Option<serde_json::Value>,
    /// Where the upload is.
    #[serde(default)]
    pub status: DatasetStatus,
    /// Why the upload was rejected, when it was.
    #[serde(default)]
    pub error: Option<String>,
    /// The quality report, once profiled.
    pub profile: Option<serde_json::Value>,
    /// Times profiling has started on the upload; past the limits table's
    /// `Profiling attempts per dataset` the dataset is rejected instead of profiled again.
    #[serde(default)]
    pub profile_attempts: u32,
    /// When it was registered.
    pub created_at: Timestamp,
}

/// Where a dataset's upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DatasetStatus {
    /// Registered; the upload has not arrived.
    #[default]
    AwaitingUpload,
    /// Uploaded and being profiled.
    Profiling,
    /// Profiled: `profile` holds the report.
    Profiled,
    /// Refused (larger than declared, unreadable): `error` says why.
    Rejected,
}
