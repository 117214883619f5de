//! The claim check: a job body too large for a queue message (SQS takes 256 KiB) goes to
//! the blob store, and the message carries its key instead.

use crate::ports::{BlobKey, BlobStore, Job, StoreError, StoreResult};

/// Bodies larger than this (in bytes of JSON) travel by reference: well under SQS's
/// 256 KiB, leaving room for the envelope.
pub const INLINE_LIMIT: usize = 200 * 1024;

/// The field a checked body is replaced by.
const REF_FIELD: &str = "$blob";

/// The job to put on the queue: `job` itself when its body is small, otherwise a copy
/// whose body is `{"$blob": "tenants/<tenant>/jobs/<job id>.json"}` with the body stored
/// there first.
pub async fn check_in(job: &Job, blobs: &dyn BlobStore) -> StoreResult<Job> {
    let body =
        serde_json::to_vec(&job.body).map_err(|e| StoreError::backend("encode a job body", e))?;
    if body.len() <= INLINE_LIMIT {
        return Ok(job.clone());
    }
    let key = BlobKey::for_tenant(&job.tenant, &["jobs", &format!("{}.json", job.job_id)])
        .map_err(|e| StoreError::backend("name a job body", e))?;
    blobs.put_blob(&key, body).await?;
    let mut small = job.clone();
    small.body = serde_json::json!({ REF_FIELD: key.as_str() });
    Ok(small)
}

/// The job as sent: its body fetched back from the blob store when it travelled by
/// reference. A reference outside the job's tenant folder is refused.
pub async fn check_out(job: &Job, blobs: &dyn BlobStore) -> StoreResult<Job> {
    let Some(reference) = job.body.get(REF_FIELD).and_then(|v| v.as_str()) else {
        return Ok(job.clone());
    };
    let key = BlobKey::parse(reference)
        .map_err(|e| StoreError::backend("read a job body reference", e))?;
    if !key.belongs_to(&job.tenant) {
        return Err(StoreError::NotFound(reference.to_string()));
    }
    let bytes = blobs
        .get_blob(&key)
        .await?
        .ok_or_else(|| StoreError::NotFound(reference.to_string()))?;
    let mut full = job.clone();
    full.body =
        serde_json::from_slice(&bytes).map_err(|e| StoreError::backend("decode a job body", e))?;
    Ok(full)
}
