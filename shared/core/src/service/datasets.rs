//! Reading a tenant's profiled dataset: the record (checked profiled), its shape, its
//! upload's bytes and its rows, for training, reports and backtests.

use crate::domain::{DatasetStatus, TenantId};
use crate::ids::DatasetId;
use crate::ports::BlobKey;
use crate::service::input::Rows;
use crate::service::jobs::JobError;
use crate::service::uses::{UsesBlobs, UsesDatasets, UsesSettings};
use crate::service::Problem;

/// The tenant's dataset `id`, which must be profiled (404 or 409 otherwise).
pub async fn profiled_dataset(
    services: &impl UsesDatasets,
    tenant: &TenantId,
    id: &DatasetId,
) -> Result<crate::domain::Dataset, Problem> {
    let dataset = services
        .datasets()
        .get_dataset(tenant, id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("dataset {id} not found")))?;
    if dataset.status != DatasetStatus::Profiled {
        return Err(Problem::conflict(format!(
            "dataset {id} is {:?}, not profiled yet",
            dataset.status
        )));
    }
    Ok(dataset)
}

/// A profiled dataset's rows and columns, as its profile (whole or summary) counts them.
pub fn dataset_shape(dataset: &crate::domain::Dataset) -> (usize, usize) {
    let size = |field: &str| {
        dataset
            .profile
            .as_ref()
            .and_then(|p| p.get(field))
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as usize
    };
    (size("rows"), size("columns"))
}

/// The bytes of a dataset's upload (the tenant's own key only).
pub async fn dataset_bytes(
    services: &impl UsesBlobs,
    tenant: &TenantId,
    dataset: &crate::domain::Dataset,
) -> Result<Vec<u8>, JobError> {
    let key = BlobKey::parse(&dataset.blob_key)
        .ok()
        .filter(|k| k.belongs_to(tenant))
        .ok_or_else(|| JobError::Fail(Problem::internal("the dataset's key is invalid")))?;
    services.blobs().get_blob(&key).await?.ok_or_else(|| {
        JobError::Fail(Problem::not_found(format!(
            "dataset {}'s upload is gone",
            dataset.id
        )))
    })
}

/// The rows of a dataset's upload, less `exclude_columns`.
pub async fn dataset_rows(
    services: &(impl UsesBlobs + UsesSettings),
    tenant: &TenantId,
    dataset: &crate::domain::Dataset,
    exclude_columns: &[String],
) -> Result<Rows, JobError> {
    let bytes = dataset_bytes(services, tenant, dataset).await?;
    let exclude = exclude_columns.to_vec();
    tokio::task::spawn_blocking(move || {
        Rows::from_csv(&bytes, &crate::table::CsvOptions::dataset(&exclude))
    })
    .await
    .map_err(|e| JobError::Fail(Problem::internal(e.to_string())))?
    .map_err(JobError::Fail)
}
