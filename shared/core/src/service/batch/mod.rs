//! Batch scoring of a large CSV object across many workers.
//!
//! `POST /v1/batch` names a source (the caller's dataset, an object under the caller's
//! own prefix, or on the local server a file under `<data-dir>/imports/`), a model and an
//! output name, and gets a `batch` task. Its job, the planner, runs on the jobs queue:
//! it splits the source into line-aligned byte ranges (reading a small window per chunk,
//! never the whole object), records the chunk count on the task, and sends one chunk
//! job per range on the chunks queue, which has its own workers and concurrency.
//!
//! A chunk worker reads only its own range, scores it, writes one part object
//! (`batches/<output>/part-<index>.csv`, a `score,label` line per row) and then counts
//! its chunk done on the task with a compare-and-set on the task's version: a bit per
//! chunk, so a redelivered chunk is never counted twice. The write that sets the last
//! bit also completes the task, after writing `batches/<output>/manifest.json`; as
//! completing is one conditional write, exactly one delivery completes the task and
//! publishes `task.completed`, however often chunks are delivered. A chunk that cannot
//! be scored (bad rows, a missing model), or that fails on its last delivery, fails the
//! task naming the chunk; the other chunks then find the task finished and stop.
//!
//! What a batch reads (`source.rs`), submitting and planning it (`planner.rs`), and each
//! chunk's work to the batch's end (`chunk.rs`). This module answers a finished batch's
//! result.

mod chunk;
mod planner;
mod source;

pub use chunk::{handle_chunk, ChunkJob};
pub use planner::{manifest_key, part_key, plan, send_chunks, submit, BatchJob};
pub use source::{BatchRequest, Source, SourceSpec};

use crate::domain::Task;
use crate::ports::BlobKey;
use crate::service::uses::{UsesBlobs, UsesSettings, UsesUploads};
use crate::service::Problem;

/// Parts listed (with a download URL each) per answer of [`result`].
pub const PARTS_PER_PAGE: usize = 1000;

/// A completed batch's manifest, with a download URL for each of its parts from `offset`
/// (at most [`PARTS_PER_PAGE`]; `next_offset` names the next page, `null` after the last).
pub async fn result(
    services: &(impl UsesBlobs + UsesUploads + UsesSettings),
    task: &Task,
    offset: usize,
) -> Result<serde_json::Value, Problem> {
    let key = task
        .result
        .as_deref()
        .and_then(|k| BlobKey::parse(k).ok())
        .filter(|k| k.belongs_to(&task.tenant))
        .ok_or_else(|| Problem::internal(format!("task {} has no manifest key", task.id)))?;
    let bytes = services
        .blobs()
        .get_blob(&key)
        .await?
        .ok_or_else(|| Problem::not_found("the batch's manifest was deleted"))?;
    let mut manifest: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Problem::internal(format!("the batch's manifest: {e}")))?;
    let ttl = services.settings().upload_url_ttl_secs;
    let parts = manifest["parts"].as_array().cloned().unwrap_or_default();
    let next = offset.saturating_add(PARTS_PER_PAGE);
    let mut urls = Vec::new();
    for part in parts.iter().skip(offset).take(PARTS_PER_PAGE) {
        // A part outside the task's tenant is never signed, whatever the manifest says.
        let Some(part) = part
            .as_str()
            .and_then(|p| BlobKey::parse(p).ok())
            .filter(|k| k.belongs_to(&task.tenant))
        else {
            continue;
        };
        let signed = services
            .uploads()
            .presign_download(&part, "text/csv", ttl)
            .await?;
        urls.push(serde_json::json!({ "key": part.as_str(), "url": signed.url }));
    }
    manifest["parts"] = serde_json::Value::Array(urls);
    manifest["offset"] = serde_json::json!(offset);
    manifest["next_offset"] = serde_json::json!((next < parts.len()).then_some(next));
    manifest["manifest"] = serde_json::json!(key.as_str());
    Ok(manifest)
}
