//! Streams: named series of points scored the moment they arrive by a detector that
//! learns them (`nomaly_detect::stream`).
//!
//! What a request sends and how it is read (`request.rs`), appending points to a stream
//! (`append.rs`), and keeping the detector's state (`state.rs`). This module makes,
//! finds, shows and deletes streams.

mod append;
pub mod entities;
mod from_backtest;
mod recent;
mod request;
mod state;

pub use append::{append, Anomaly, Appended, GapsFound, Refused};
pub(crate) use append::{backoff, most_points};
pub use entities::{EntityView, Touched};
pub use from_backtest::{end_key, EndState};
pub use request::{
    points_from_csv, points_from_json, CreateStream, Point, PointIn, PointsRequest, When,
};
pub(crate) use request::{read_csv, read_points, Columns};
pub use state::MAX_INLINE_ITEM_BYTES;

use crate::domain::{Stream, StreamState, TenantId};
use crate::ids::{StreamId, TaskId};
use crate::ports::StoreError;
use crate::service::uses::{UsesBlobs, UsesSettings, UsesStreams, UsesTasks};
use crate::service::Problem;
use nomaly_detect::stream::StreamDetector;
use request::{checked_name, checked_threshold, on_the_scale};
use state::{discard, store_state};

/// Compare-and-set rounds before a write gives up with 409.
const MAX_ROUNDS: u32 = 24;

/// The threshold a stream's scores are held to. Streams made before scores moved to the
/// likelihood's (0, 1] scale stored a threshold on their detector's raw scale (seasonal
/// 5.6, rolling median 12, rolling mean 3), which no score reaches any more: those take
/// the new scale's default, and the next append stores it.
pub fn threshold_of(stream: &Stream) -> f64 {
    if on_the_scale(stream.threshold) {
        stream.threshold
    } else {
        nomaly_detect::stream::DEFAULT_THRESHOLD
    }
}

/// The threshold an entity's scores are held to: its own, set by feedback, or else the
/// stream's.
pub fn entity_threshold(stream: &Stream, entity: &crate::domain::StreamEntity) -> f64 {
    match entity.threshold {
        Some(t) if on_the_scale(t) => t,
        _ => threshold_of(stream),
    }
}

/// Creates a stream with a fresh detector.
pub async fn create(
    services: &(impl UsesTasks + UsesStreams + UsesBlobs + UsesSettings),
    tenant: &TenantId,
    request: CreateStream,
) -> Result<Stream, Problem> {
    let late = request.late.unwrap_or_default();
    let gaps = request.gaps.unwrap_or_default();
    let interval = request::checked_interval(request.interval)?;
    let default_columns = ["value".to_string()];
    let split = request.entity_split(request.columns.as_deref().unwrap_or(&default_columns))?;
    let (mut stream, bytes) = match request.from_backtest.clone() {
        Some(task) => from_backtest(services, tenant, request, &task).await?,
        None => {
            let (name, spec, columns, threshold) = request.into_parts()?;
            if split.is_some() {
                state::check_entity_footprint(&spec, columns.len())?;
            }
            let bytes = StreamDetector::new(spec.clone(), columns.len())?.to_bytes()?;
            let detector_json =
                serde_json::to_value(&spec).map_err(|e| Problem::internal(e.to_string()))?;
            let stream = Stream::new(tenant.clone(), name, detector_json, columns, threshold);
            (stream, bytes)
        }
    };
    stream.late = late;
    stream.gaps = gaps;
    stream.interval = interval;
    stream.entity = split;
    let state = store_state(services, &stream, bytes).await?;
    if let Err(e) = services.streams().create_stream(&stream, &state).await {
        discard(services, &state).await;
        return Err(e.into());
    }
    tracing::info!(stream_id = %stream.id, detector = %stream.detector["detector"], "stream created");
    Ok(stream)
}

/// A new stream that starts where backtest `task` ended: its detector, columns, points
/// learned and last timestamp, and its threshold unless the request gives one.
async fn from_backtest(
    services: &(impl UsesTasks + UsesBlobs + UsesSettings),
    tenant: &TenantId,
    request: CreateStream,
    task: &TaskId,
) -> Result<(Stream, Vec<u8>), Problem> {
    if request.detector.is_some()
        || request.params.is_some()
        || request.shingle.is_some()
        || request.columns.is_some()
    {
        return Err(Problem::invalid_parameter(
            "a stream made `from_backtest` takes its detector, params and columns from the backtest; give only `name` and, if you like, `threshold`",
        ));
    }
    let name = checked_name(&request.name)?;
    let end = from_backtest::end_state(services, tenant, task).await?;
    let threshold = checked_threshold(request.threshold.unwrap_or(end.threshold))?;
    let json = serde_json::to_vec(&end.detector).map_err(|e| Problem::internal(e.to_string()))?;
    let detector = StreamDetector::from_json(&json)?;
    let bytes = detector.to_bytes()?;
    if detector.width() != end.columns.len() {
        return Err(Problem::internal(
            "the backtest's end state does not match its columns",
        ));
    }
    let detector_json =
        serde_json::to_value(&end.spec).map_err(|e| Problem::internal(e.to_string()))?;
    let mut stream = Stream::new(tenant.clone(), name, detector_json, end.columns, threshold);
    stream.points = end.points;
    stream.last_timestamp = end.last_timestamp;
    Ok((stream, bytes))
}

/// The stream, or 404 (also for another tenant's).
pub async fn get(
    services: &impl UsesStreams,
    tenant: &TenantId,
    id: &StreamId,
) -> Result<(Stream, StreamState), Problem> {
    services
        .streams()
        .get_stream(tenant, id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("stream {id} not found")))
}

/// Deletes the stream and its state. The record goes only if no write landed since it
/// was read, so the state deleted is the state it pointed at.
pub async fn delete(
    services: &(impl UsesStreams + UsesBlobs),
    tenant: &TenantId,
    id: &StreamId,
) -> Result<(), Problem> {
    for round in 0..MAX_ROUNDS {
        let (stream, state) = get(services, tenant, id).await?;
        match services
            .streams()
            .delete_stream(tenant, id, stream.version)
            .await
        {
            Ok(()) => {
                discard(services, &state).await;
                if stream.entity.is_some() {
                    if let Err(e) = services.streams().delete_entities(tenant, id).await {
                        tracing::error!(stream_id = %id, error = %e, "the stream is deleted but some of its entities were not");
                        return Err(e.into());
                    }
                }
                return Ok(());
            }
            Err(StoreError::Conflict(_)) => backoff(round).await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Problem::conflict(format!(
        "stream {id} kept changing under other writers; retry"
    ))
    .retry_after(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thresholds_stored_on_the_old_raw_scale_take_the_new_default() {
        let stream = |threshold| {
            Stream::new(
                TenantId::parse("acme").unwrap(),
                "s".into(),
                json!({"detector": "seasonal"}),
                vec!["value".into()],
                threshold,
            )
        };
        assert_eq!(threshold_of(&stream(0.7)), 0.7);
        assert_eq!(threshold_of(&stream(1.0)), 1.0);
        for old in [5.6, 12.0, 3.0, 0.0] {
            assert_eq!(threshold_of(&stream(old)), 0.5, "{old}");
        }
    }
}
