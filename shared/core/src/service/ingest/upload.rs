//! Registering a dataset's upload (a presigned URL for a declared size) and taking the
//! uploaded object in when the blob store says it arrived.

use super::profiling::{announce, run_profile, ProfileJob};
use crate::domain::{Dataset, DatasetStatus, Task, TaskKind, TenantId};
use crate::ids::DatasetId;
use crate::ports::{BlobKey, PresignedUpload};
use crate::service::input::FitSpec;
use crate::service::jobs;
use crate::service::uses::{
    UsesBlobs, UsesDatasets, UsesEvents, UsesQueue, UsesSettings, UsesTasks, UsesUploads,
};
use crate::service::Problem;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The suffix of upload keys (what the bucket notification filters on).
pub const UPLOAD_SUFFIX: &str = ".upload";

/// The JSON body of `POST /v1/datasets`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    /// A file name to show (1-200 printable characters without `/` or `\`; never used
    /// in a storage key).
    pub name: String,
    /// The exact size of the file to upload, in bytes.
    pub size: u64,
    /// Train this once the upload is profiled.
    #[serde(default)]
    pub train: Option<FitSpec>,
}

/// What `POST /v1/datasets` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadGrant {
    /// The dataset record.
    pub dataset: Dataset,
    /// Where and how to upload.
    pub upload: PresignedUpload,
}

/// Where a dataset's upload goes.
pub fn upload_key(tenant: &TenantId, id: &DatasetId) -> BlobKey {
    BlobKey::for_tenant(tenant, &["uploads", &format!("{id}{UPLOAD_SUFFIX}")])
        .expect("a dataset id is a valid key part")
}

/// Registers a dataset and grants its upload.
pub async fn register(
    services: &(impl UsesDatasets + UsesUploads + UsesSettings),
    tenant: &TenantId,
    request: UploadRequest,
) -> Result<UploadGrant, Problem> {
    let name = request.name.trim();
    if name.is_empty()
        || name.chars().count() > 200
        || name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
        || name == "."
        || name == ".."
    {
        return Err(Problem::invalid_parameter(
            "`name` is a file name: 1-200 printable characters, without / or \\, not . or ..",
        ));
    }
    if request.size == 0 || request.size > services.settings().max_upload_bytes {
        return Err(Problem::invalid_parameter(format!(
            "`size` must be between 1 and {} bytes",
            services.settings().max_upload_bytes
        )));
    }
    if let Some(spec) = &request.train {
        spec.validate()?;
    }
    let id = DatasetId::new();
    let key = upload_key(tenant, &id);
    let upload = services
        .uploads()
        .presign_upload(&key, request.size, services.settings().upload_url_ttl_secs)
        .await?;
    let dataset = Dataset {
        id,
        tenant: tenant.clone(),
        name: name.to_string(),
        blob_key: key.as_str().to_string(),
        declared_size: request.size,
        train_on_upload: request.train.is_some(),
        train_spec: request
            .train
            .map(|s| serde_json::to_value(s).unwrap_or_default()),
        status: DatasetStatus::AwaitingUpload,
        error: None,
        profile: None,
        profile_attempts: 0,
        created_at: Timestamp::now(),
    };
    services.datasets().put_dataset(&dataset).await?;
    Ok(UploadGrant { dataset, upload })
}

/// Takes in an object the blob store reports as created (`ingest`'s S3 event, or the
/// local server's upload route): checks it against its dataset's declared size, then
/// profiles it here or, when large, in a worker job. Keys that are not uploads, and
/// uploads of unknown or already-handled datasets, are ignored.
pub async fn object_created(
    services: &(impl UsesTasks + UsesEvents + UsesDatasets + UsesBlobs + UsesQueue + UsesSettings),
    key: &str,
    size: u64,
) -> Result<(), Problem> {
    let Some((tenant, id)) = parse_upload_key(key) else {
        tracing::info!(key, "not an upload key; ignored");
        return Ok(());
    };
    let Some(mut dataset) = services.datasets().get_dataset(&tenant, &id).await? else {
        tracing::warn!(key, "an upload for no registered dataset; ignored");
        return Ok(());
    };
    // `Profiling` is taken in again: a notification retried after a failure part-way
    // must finish the job (profiling is idempotent).
    if !matches!(
        dataset.status,
        DatasetStatus::AwaitingUpload | DatasetStatus::Profiling
    ) {
        tracing::info!(dataset_id = %id, status = ?dataset.status, "upload already taken in");
        return Ok(());
    }
    let correlation = format!("ingest-{id}");
    if size > dataset.declared_size {
        dataset.status = DatasetStatus::Rejected;
        dataset.error = Some(format!(
            "the upload is {size} bytes, larger than the {} declared",
            dataset.declared_size
        ));
        services.datasets().put_dataset(&dataset).await?;
        if let Ok(k) = BlobKey::parse(key) {
            services.blobs().delete_blob(&k).await?;
        }
        announce(services, &dataset, &correlation).await?;
        return Ok(());
    }
    dataset.status = DatasetStatus::Profiling;
    services.datasets().put_dataset(&dataset).await?;
    if size > services.settings().inline_profile_bytes {
        let task = Task::new(tenant.clone(), TaskKind::Profile, &correlation);
        let job = ProfileJob {
            task_id: task.id.clone(),
            dataset_id: id,
            size,
        };
        jobs::submit(services, task, &job).await?;
        return Ok(());
    }
    run_profile(services, &tenant, &correlation, &id, size).await?;
    Ok(())
}

/// Whether an upload to `key` may still be stored: its dataset exists and is waiting
/// for its upload. A second PUT to a URL that already delivered would replace the file
/// the profile describes and training reads: 409.
pub async fn check_upload_open(services: &impl UsesDatasets, key: &str) -> Result<(), Problem> {
    let (tenant, id) = parse_upload_key(key)
        .ok_or_else(|| Problem::forbidden("this is not an upload location"))?;
    let dataset = services
        .datasets()
        .get_dataset(&tenant, &id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("dataset {id} not found")))?;
    if dataset.status != DatasetStatus::AwaitingUpload {
        return Err(Problem::conflict(format!(
            "dataset {id} already has its upload (status {:?}); register a new dataset to upload again",
            dataset.status
        )));
    }
    Ok(())
}

fn parse_upload_key(key: &str) -> Option<(TenantId, DatasetId)> {
    let key = BlobKey::parse(key).ok()?;
    let mut parts = key.as_str().split('/');
    let (_, tenant, folder, file) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if folder != "uploads" || parts.next().is_some() {
        return None;
    }
    let id = DatasetId::parse(file.strip_suffix(UPLOAD_SUFFIX)?).ok()?;
    Some((TenantId::parse(tenant).ok()?, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_upload_keys_parse() {
        let t = TenantId::parse("acme").unwrap();
        let id = DatasetId::new();
        let key = upload_key(&t, &id);
        assert_eq!(
            parse_upload_key(key.as_str()),
            Some((t.clone(), id.clone()))
        );
        for bad in [
            format!("tenants/acme/models/{id}.upload"),
            format!("tenants/acme/uploads/{id}.csv"),
            format!("tenants/acme/uploads/x/{id}.upload"),
            "tenants/acme/uploads/nope.upload".to_string(),
            format!("tenants/../uploads/{id}.upload"),
        ] {
            assert_eq!(parse_upload_key(&bad), None, "{bad}");
        }
    }
}
