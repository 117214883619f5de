//! Datasets: an uploaded object and, once profiled, its profile.

use crate::domain::TenantId;
use crate::ids::DatasetId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// A dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The quality report, once profiled.
    pub profile: Option<serde_json::Value>,
    /// When it was registered.
    pub created_at: Timestamp,
}
