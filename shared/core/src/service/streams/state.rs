//! Where a stream's detector state is kept, and how large it may grow.
//!
//! The detector's state is kept in the stream's own record while it is at most
//! [`Settings::stream_inline_state_bytes`](crate::service::Settings) long (a DynamoDB
//! item holds 400 KB). Larger state is written to the blob store first, under a key
//! naming the version and the writer (`tenants/<t>/streams/<id>/state-<version>-<ulid>.bin`),
//! and the record points at it; the previous version's object is deleted once the new
//! record is stored, and a losing writer deletes its own.

use crate::domain::{Stream, StreamState};
use crate::limits::STREAM_MAX_STATE_VALUES;
use crate::ports::BlobKey;
use crate::service::uses::{UsesBlobs, UsesSettings};
use crate::service::Problem;
use nomaly_detect::stream::StreamSpec;

/// Refuses a detector whose state would be too large to keep.
pub(crate) fn check_footprint(spec: &StreamSpec, width: usize) -> Result<(), Problem> {
    let footprint = spec.footprint(width);
    if footprint.state_values > STREAM_MAX_STATE_VALUES {
        return Err(Problem::invalid_parameter(format!(
            "this detector would keep {} numbers per stream; at most {STREAM_MAX_STATE_VALUES} are kept \
             (fewer trees or a lower height, a shorter window, fewer columns)",
            footprint.state_values
        )));
    }
    Ok(())
}

/// Refuses a detector too large to keep once per entity: an entity's state is stored
/// with its record, so it must stay well under a DynamoDB item's 400 KB.
pub(crate) fn check_entity_footprint(spec: &StreamSpec, width: usize) -> Result<(), Problem> {
    let footprint = spec.footprint(width);
    if footprint.state_values > ENTITY_MAX_STATE_VALUES {
        return Err(Problem::invalid_parameter(format!(
            "this detector would keep {} numbers per entity; a stream split by `entity` keeps at most {ENTITY_MAX_STATE_VALUES} per entity \
             (fewer trees or a lower height, a shorter window, fewer columns)",
            footprint.state_values
        )));
    }
    Ok(())
}

/// Numbers one entity's detector may keep (Half-Space Trees store about 2.4 bytes per
/// number, so the default 25 trees of height 8 fit; the stored bytes are checked too).
pub const ENTITY_MAX_STATE_VALUES: usize = 100_000;

/// A fresh blob key for `stream`'s state at its version. Racing writers make the same
/// version, so the key also carries a writer-unique id: a loser deleting its own object
/// never deletes the winner's.
fn state_key(stream: &Stream) -> Result<BlobKey, Problem> {
    let file = format!(
        "state-{:020}-{}.bin",
        stream.version,
        crate::ids::Ulid::new().encode()
    );
    BlobKey::for_tenant(&stream.tenant, &["streams", stream.id.as_str(), &file])
        .map_err(|e| Problem::internal(e.to_string()))
}

/// The largest record and state kept together in one row or item: a DynamoDB item holds
/// at most 400 KB, attribute names and numbers included.
pub const MAX_INLINE_ITEM_BYTES: usize = 380_000;

/// Keeps `bytes` inline when they and the record fit the setting (capped at
/// [`MAX_INLINE_ITEM_BYTES`]), else writes them to the blob store under the version's own
/// key and answers the pointer.
pub(super) async fn store_state(
    services: &(impl UsesBlobs + UsesSettings),
    stream: &Stream,
    bytes: Vec<u8>,
) -> Result<StreamState, Problem> {
    let record = serde_json::to_vec(stream)
        .map(|r| r.len())
        .map_err(|e| Problem::internal(e.to_string()))?;
    let limit = services
        .settings()
        .stream_inline_state_bytes
        .min(MAX_INLINE_ITEM_BYTES);
    if bytes.len() + record + 1024 <= limit {
        return Ok(StreamState::Inline(bytes));
    }
    let key = state_key(stream)?;
    services.blobs().put_blob(&key, bytes).await?;
    Ok(StreamState::Blob(key))
}

/// The state's bytes; `None` when its blob is gone (a newer version replaced it).
pub(super) async fn load_state(
    services: &impl UsesBlobs,
    state: &StreamState,
) -> Result<Option<Vec<u8>>, Problem> {
    match state {
        StreamState::Inline(bytes) => Ok(Some(bytes.clone())),
        StreamState::Blob(key) => Ok(services.blobs().get_blob(key).await?),
    }
}

/// Deletes a state blob no record points at any more (logged, never failing the caller:
/// a leftover object costs storage, not correctness).
pub(super) async fn discard(services: &impl UsesBlobs, state: &StreamState) {
    if let Some(key) = state.blob() {
        if let Err(e) = services.blobs().delete_blob(key).await {
            tracing::warn!(key = key.as_str(), error = %e, "an old stream state was not deleted");
        }
    }
}
