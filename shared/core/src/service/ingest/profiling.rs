//! Profiling an uploaded dataset: the `profile` job, keeping the profile (in the record
//! or, when large, in the blob store), reading it back, and announcing the result.

use super::upload::upload_key;
use crate::domain::payload::DatasetProfiled;
use crate::domain::{Dataset, DatasetStatus, TenantId};
use crate::ids::DatasetId;
use crate::limits::{self, MAX_PROFILE_ATTEMPTS};
use crate::ports::BlobKey;
use crate::service::jobs::JobError;
use crate::service::profile::profile_csv;
use crate::service::uses::{UsesBlobs, UsesDatasets, UsesEvents};
use crate::service::Problem;
use serde::{Deserialize, Serialize};

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

/// Profiles the dataset's upload, stores the report and publishes `dataset.profiled`
/// (saying whether the upload asked for training: the `events` function starts it). A
/// failure retrying cannot mend (the upload is gone) rejects the dataset, with its reason.
pub async fn run_profile(
    services: &(impl UsesEvents + UsesDatasets + UsesBlobs),
    tenant: &TenantId,
    correlation_id: &str,
    id: &DatasetId,
    size: u64,
) -> Result<Dataset, JobError> {
    match profile_once(services, tenant, correlation_id, id, size).await {
        Err(JobError::Fail(problem)) => {
            if let Some(mut dataset) = services.datasets().get_dataset(tenant, id).await? {
                dataset.status = DatasetStatus::Rejected;
                dataset.error = Some(problem.detail.clone());
                services.datasets().put_dataset(&dataset).await?;
                announce(services, &dataset, correlation_id).await?;
            }
            Err(JobError::Fail(problem))
        }
        other => other,
    }
}

async fn profile_once(
    services: &(impl UsesEvents + UsesDatasets + UsesBlobs),
    tenant: &TenantId,
    correlation_id: &str,
    id: &DatasetId,
    _size: u64,
) -> Result<Dataset, JobError> {
    let mut dataset = services
        .datasets()
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
    services.datasets().put_dataset(&dataset).await?;
    let key = upload_key(tenant, id);
    let bytes = services.blobs().get_blob(&key).await?.ok_or_else(|| {
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
    services.datasets().put_dataset(&dataset).await?;
    announce(services, &dataset, correlation_id).await?;
    Ok(dataset)
}

/// Issues a `dataset.profiled` event lists (all are counted in `issues_total`).
const EVENT_ISSUES: usize = 20;
/// The field of a stored profile that points at the whole of it in the blob store.
pub(super) const PROFILE_REF: &str = "$blob";

/// Where a dataset's profile is kept when it is too large for its record.
pub(super) fn profile_key(dataset: &Dataset) -> Result<BlobKey, JobError> {
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
    services: &impl UsesBlobs,
    dataset: &Dataset,
    profile: serde_json::Value,
) -> Result<serde_json::Value, JobError> {
    let bytes = serde_json::to_vec(&profile)
        .map_err(|e| JobError::Fail(Problem::internal(e.to_string())))?;
    if bytes.len() <= limits::PROFILE_INLINE_BYTES {
        return Ok(profile);
    }
    let key = profile_key(dataset)?;
    services.blobs().put_blob(&key, bytes).await?;
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
    services: &impl UsesBlobs,
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
    let bytes = services.blobs().get_blob(&key).await?.ok_or_else(|| {
        Problem::internal(format!(
            "dataset {}'s profile is missing from storage",
            dataset.id
        ))
    })?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Problem::internal(format!("dataset {}'s profile: {e}", dataset.id)))
}

pub(super) async fn announce(
    services: &impl UsesEvents,
    dataset: &Dataset,
    correlation_id: &str,
) -> Result<(), JobError> {
    let profile = dataset.profile.as_ref();
    let payload = DatasetProfiled {
        dataset_id: dataset.id.clone(),
        status: dataset.status,
        error: dataset.error.clone(),
        rows: profile.and_then(|p| p.get("rows")).and_then(|v| v.as_u64()),
        columns: profile
            .and_then(|p| p.get("columns"))
            .and_then(|v| v.as_u64()),
        issues: profile
            .and_then(|p| p.get("issues"))
            .and_then(|i| i.as_array())
            .map(|i| i.iter().take(EVENT_ISSUES).cloned().collect()),
        issues_total: profile
            .and_then(|p| p.get("issues_total").or_else(|| p.get("issues")))
            .map(|i| {
                i.as_array()
                    .map_or(i.as_u64().unwrap_or(0), |a| a.len() as u64)
            }),
        train: dataset.train_on_upload && dataset.status == DatasetStatus::Profiled,
    };
    services
        .events()
        .publish(&dataset.tenant, correlation_id, &payload)
        .await?;
    Ok(())
}
