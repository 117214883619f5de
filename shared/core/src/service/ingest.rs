//! Datasets: registering an upload (a presigned URL for a declared size), taking the
//! uploaded object in when the blob store says it arrived, and profiling it. The upload
//! key is `tenants/<tenant>/uploads/<dataset id>.upload`; the bucket notification on AWS
//! fires on that suffix.

use crate::domain::{Dataset, DatasetStatus, EventType, Task, TaskKind, TenantId};
use crate::ids::DatasetId;
use crate::limits::{self, MAX_PROFILE_ATTEMPTS};
use crate::ports::{BlobKey, PresignedUpload};
use crate::service::input::FitSpec;
use crate::service::jobs::{self, JobError};
use crate::service::profile::profile_csv;
use crate::service::{Problem, Services};
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

/// The body of a `profile` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileJob {
    /// The task.
    pub task_id: crate::ids::TaskId,
    /// The dataset.
    pub dataset_id: DatasetId,
    /// The uploaded object's size.
    pub size: u64,
}

/// Where a dataset's upload goes.
pub fn upload_key(tenant: &TenantId, id: &DatasetId) -> BlobKey {
    BlobKey::for_tenant(tenant, &["uploads", &format!("{id}{UPLOAD_SUFFIX}")])
        .expect("a dataset id is a valid key part")
}

/// Registers a dataset and grants its upload.
pub async fn register(
    services: &Services,
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
    if request.size == 0 || request.size > services.settings.max_upload_bytes {
        return Err(Problem::invalid_parameter(format!(
            "`size` must be between 1 and {} bytes",
            services.settings.max_upload_bytes
        )));
    }
    if let Some(spec) = &request.train {
        spec.validate()?;
    }
    let id = DatasetId::new();
    let key = upload_key(tenant, &id);
    let upload = services
        .uploads
        .presign_upload(&key, request.size, services.settings.upload_url_ttl_secs)
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
    services.datasets.put_dataset(&dataset).await?;
    Ok(UploadGrant { dataset, upload })
}

/// Takes in an object the blob store reports as created (`ingest`'s S3 event, or the
/// local server's upload route): checks it against its dataset's declared size, then
/// profiles it here or, when large, in a worker job. Keys that are not uploads, and
/// uploads of unknown or already-handled datasets, are ignored.
pub async fn object_created(services: &Services, key: &str, size: u64) -> Result<(), Problem> {
    let Some((tenant, id)) = parse_upload_key(key) else {
        tracing::info!(key, "not an upload key; ignored");
        return Ok(());
    };
    let Some(mut dataset) = services.datasets.get_dataset(&tenant, &id).await? else {
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
        services.datasets.put_dataset(&dataset).await?;
        if let Ok(k) = BlobKey::parse(key) {
            services.blobs.delete_blob(&k).await?;
        }
        announce(services, &dataset, &correlation).await?;
        return Ok(());
    }
    dataset.status = DatasetStatus::Profiling;
    services.datasets.put_dataset(&dataset).await?;
    if size > services.settings.inline_profile_bytes {
        let task = Task::new(tenant.clone(), TaskKind::Profile, &correlation);
        let job = ProfileJob {
            task_id: task.id.clone(),
            dataset_id: id,
            size,
        };
        jobs::submit(services, task, jobs::JobKind::Profile, &job).await?;
        return Ok(());
    }
    run_profile(services, &tenant, &correlation, &id, size).await?;
    Ok(())
}

/// Deletes the tenant's dataset: its record, then its upload.
pub async fn delete(services: &Services, tenant: &TenantId, id: &DatasetId) -> Result<(), Problem> {
    let dataset = services
        .datasets
        .get_dataset(tenant, id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("dataset {id} not found")))?;
    services.datasets.delete_dataset(tenant, id).await?;
    if let Ok(key) = BlobKey::parse(&dataset.blob_key) {
        if key.belongs_to(tenant) {
            services.blobs.delete_blob(&key).await?;
        }
    }
    if dataset
        .profile
        .as_ref()
        .is_some_and(|p| p.get(PROFILE_REF).is_some())
    {
        if let Ok(key) = profile_key(&dataset) {
            services.blobs.delete_blob(&key).await?;
        }
    }
    Ok(())
}

/// Whether an upload to `key` may still be stored: its dataset exists and is waiting
/// for its upload. A second PUT to a URL that already delivered would replace the file
/// the profile describes and training reads: 409.
pub async fn check_upload_open(services: &Services, key: &str) -> Result<(), Problem> {
    let (tenant, id) = parse_upload_key(key)
        .ok_or_else(|| Problem::forbidden("this is not an upload location"))?;
    let dataset = services
        .datasets
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

/// Profiles the dataset's upload, stores the report and publishes `dataset.profiled`
/// (saying whether the upload asked for training: the `events` function starts it). A
/// failure retrying cannot mend (the upload is gone) rejects the dataset, with its reason.
pub async fn run_profile(
    services: &Services,
    tenant: &TenantId,
    correlation_id: &str,
    id: &DatasetId,
    size: u64,
) -> Result<Dataset, JobError> {
    match profile_once(services, tenant, correlation_id, id, size).await {
        Err(JobError::Fail(problem)) => {
            if let Some(mut dataset) = services.datasets.get_dataset(tenant, id).await? {
                dataset.status = DatasetStatus::Rejected;
                dataset.error = Some(problem.detail.clone());
                services.datasets.put_dataset(&dataset).await?;
                announce(services, &dataset, correlation_id).await?;
            }
            Err(JobError::Fail(problem))
        }
        other => other,
    }
}

async fn profile_once(
    services: &Services,
    tenant: &TenantId,
    correlation_id: &str,
    id: &DatasetId,
    _size: u64,
) -> Result<Dataset, JobError> {
    let mut dataset = services
        .datasets
        .get_dataset(tenant, id)
        .await?
        .ok_or_else(|| JobError::Fail(Problem::not_found(format!("dataset {id} not found"))))?;
    if dataset.status == DatasetStatus::Profiled {
        return Ok(dataset);
    }
    // Counted before the work, so a run the process does not survive (out of memory,
    // a timeout) still counts: an upload that kills its profiler stops being retried.
    if dataset.profile_attempts >= MAX_PROFILE_ATTEMPTS {
        return Err(JobError::Fail(Problem::too_large(format!(
            "profiling started {} times and never finished (the process stopped each time); \
             limit `{}`, see docs/limits.md",
            dataset.profile_attempts,
            limits::PROFILE_ATTEMPTS.name
        ))));
    }
    dataset.profile_attempts += 1;
    services.datasets.put_dataset(&dataset).await?;
    let key = upload_key(tenant, id);
    let bytes = services.blobs.get_blob(&key).await?.ok_or_else(|| {
        JobError::Fail(Problem::not_found(format!(
            "dataset {id}'s upload is missing"
        )))
    })?;
    let profiled = tokio::task::spawn_blocking(move || profile_csv(&bytes))
        .await
        .map_err(|e| JobError::Fail(Problem::internal(e.to_string())))?;
    match profiled {
        Ok(profile) => {
            let profile = serde_json::to_value(profile)
                .map_err(|e| JobError::Fail(Problem::internal(e.to_string())))?;
            dataset.profile = Some(check_in_profile(services, &dataset, profile).await?);
            dataset.status = DatasetStatus::Profiled;
        }
        Err(e) => {
            dataset.status = DatasetStatus::Rejected;
            dataset.error = Some(e.to_string());
        }
    }
    services.datasets.put_dataset(&dataset).await?;
    announce(services, &dataset, correlation_id).await?;
    Ok(dataset)
}

/// Issues a `dataset.profiled` event lists (all are counted in `issues_total`).
const EVENT_ISSUES: usize = 20;
/// The field of a stored profile that points at the whole of it in the blob store.
const PROFILE_REF: &str = "$blob";

/// Where a dataset's profile is kept when it is too large for its record.
fn profile_key(dataset: &Dataset) -> Result<BlobKey, JobError> {
    BlobKey::for_tenant(
        &dataset.tenant,
        &["profiles", &format!("{}.json", dataset.id)],
    )
    .map_err(|e| JobError::Fail(Problem::internal(e.to_string())))
}

/// The profile as the dataset's record keeps it: whole when small; otherwise (a wide file
/// makes a profile of megabytes, and a DynamoDB item holds 400 KB) stored in the blob
/// store, with a summary and a pointer in the record (the claim check).
async fn check_in_profile(
    services: &Services,
    dataset: &Dataset,
    profile: serde_json::Value,
) -> Result<serde_json::Value, JobError> {
    let bytes = serde_json::to_vec(&profile)
        .map_err(|e| JobError::Fail(Problem::internal(e.to_string())))?;
    if bytes.len() <= limits::PROFILE_INLINE_BYTES {
        return Ok(profile);
    }
    let key = profile_key(dataset)?;
    services.blobs.put_blob(&key, bytes).await?;
    let issues = profile["issues"].as_array().cloned().unwrap_or_default();
    Ok(serde_json::json!({
        "rows": profile["rows"],
        "columns": profile["columns"],
        "ragged_rows": profile["ragged_rows"],
        "sampled_quantiles": profile["sampled_quantiles"],
        "issues": issues.iter().take(EVENT_ISSUES).collect::<Vec<_>>(),
        "issues_total": issues.len(),
        PROFILE_REF: key.as_str(),
    }))
}

/// The dataset's whole profile: from its record, or from the blob store when the record
/// keeps a pointer. Only a key under the dataset's tenant is read.
pub async fn profile_of(
    services: &Services,
    dataset: &Dataset,
) -> Result<Option<serde_json::Value>, Problem> {
    let Some(profile) = &dataset.profile else {
        return Ok(None);
    };
    let Some(reference) = profile.get(PROFILE_REF).and_then(|r| r.as_str()) else {
        return Ok(Some(profile.clone()));
    };
    let key = BlobKey::parse(reference)
        .ok()
        .filter(|k| k.belongs_to(&dataset.tenant))
        .ok_or_else(|| {
            Problem::internal(format!("dataset {}'s profile key is invalid", dataset.id))
        })?;
    let bytes = services.blobs.get_blob(&key).await?.ok_or_else(|| {
        Problem::internal(format!(
            "dataset {}'s profile is missing from storage",
            dataset.id
        ))
    })?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Problem::internal(format!("dataset {}'s profile: {e}", dataset.id)))
}

async fn announce(
    services: &Services,
    dataset: &Dataset,
    correlation_id: &str,
) -> Result<(), JobError> {
    let profile = dataset.profile.as_ref();
    services
        .publish(
            &dataset.tenant,
            EventType::DatasetProfiled,
            correlation_id,
            serde_json::json!({
                "dataset_id": dataset.id,
                "status": dataset.status,
                "error": dataset.error,
                "rows": profile.and_then(|p| p.get("rows")),
                "columns": profile.and_then(|p| p.get("columns")),
                "issues": profile
                    .and_then(|p| p.get("issues"))
                    .and_then(|i| i.as_array())
                    .map(|i| i.iter().take(EVENT_ISSUES).collect::<Vec<_>>()),
                "issues_total": profile
                    .and_then(|p| p.get("issues_total").or_else(|| p.get("issues")))
                    .map(|i| i.as_array().map_or(i.as_u64().unwrap_or(0), |a| a.len() as u64)),
                "train": dataset.train_on_upload && dataset.status == DatasetStatus::Profiled,
            }),
        )
        .await?;
    Ok(())
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
