//! Datasets: registering an upload (a presigned URL for a declared size), taking the
//! uploaded object in when the blob store says it arrived, and profiling it. The upload
//! key is `tenants/<tenant>/uploads/<dataset id>.upload`; the bucket notification on AWS
//! fires on that suffix.
//!
//! Registering uploads and taking them in (`upload.rs`) and profiling them
//! (`profiling.rs`). This module deletes datasets.

mod profiling;
mod upload;

pub use profiling::{profile_of, run_profile, ProfileJob};
pub use upload::{
    check_upload_open, object_created, register, upload_key, UploadGrant, UploadRequest,
    UPLOAD_SUFFIX,
};

use crate::domain::TenantId;
use crate::ids::DatasetId;
use crate::ports::BlobKey;
use crate::service::uses::{UsesBlobs, UsesDatasets};
use crate::service::Problem;
use profiling::{profile_key, PROFILE_REF};

/// Deletes the tenant's dataset: its record, then its upload.
pub async fn delete(
    services: &(impl UsesDatasets + UsesBlobs),
    tenant: &TenantId,
    id: &DatasetId,
) -> Result<(), Problem> {
    let dataset = services
        .datasets()
        .get_dataset(tenant, id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("dataset {id} not found")))?;
    services.datasets().delete_dataset(tenant, id).await?;
    if let Ok(key) = BlobKey::parse(&dataset.blob_key) {
        if key.belongs_to(tenant) {
            services.blobs().delete_blob(&key).await?;
        }
    }
    if dataset
        .profile
        .as_ref()
        .is_some_and(|p| p.get(PROFILE_REF).is_some())
    {
        if let Ok(key) = profile_key(&dataset) {
            services.blobs().delete_blob(&key).await?;
        }
    }
    Ok(())
}
