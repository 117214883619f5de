//! Appending points to a stream: score and learn them, store the new state, and publish
//! the anomalies.
//!
//! Appending is a compare-and-set loop: read the stream and its state, score and learn
//! the points, and write the new state only if the stream's version is still the one
//! read. A writer that loses reads again and reapplies its points, so two concurrent
//! writers never lose an update, and a request is all or nothing: a point refused
//! (wrong width, not a number) refuses the request and stores nothing.
//!
//! A point earlier than the stream's last, or the last point sent again, follows the
//! stream's [`LatePolicy`]: `reject` refuses the request as above; `drop` leaves the
//! point out and stores the others; `clamp` learns a late point at the last point's
//! time. The answer counts and lists what was dropped or clamped, and why.
//!
//! Each write carries its own `write_id`. When the store's answer is unclear (a lost
//! response the SDK retried into a failed condition, a timeout after the write landed),
//! the writer reads the stream back and knows its own write: it is neither applied twice
//! nor has its state deleted.

use super::request::{check_count, Point};
use super::state::{discard, load_state, store_state};
use super::{get, threshold_of, MAX_ROUNDS};
use crate::domain::payload::{AnomalyDetected, PointAnomaly, StreamAnomalies};
use crate::domain::{GapPolicy, LatePolicy, Stream, StreamState, TenantId};
use crate::ids::{EventId, StreamId};
use crate::limits::STREAM_MAX_REQUEST_WORK;
use crate::ports::StoreError;
use crate::service::uses::{UsesBlobs, UsesEvents, UsesSettings, UsesStreams};
use crate::service::Problem;
use crate::time::Timestamp;
use nomaly_detect::stream::{infer_interval, Scored, StreamDetector, StreamSpec, Timeliness};
use serde::Serialize;
use serde_json::{json, Value};

/// Anomalous points listed in one `anomaly.detected` event.
const EVENT_POINTS: usize = 100;
/// Streams up to this wide list each anomalous point's values in the event.
const EVENT_VALUES_UP_TO: usize = 16;
/// Points dropped or clamped listed one by one in an answer (all are counted).
const REFUSED_LISTED: usize = 100;

/// What appending points gave.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Appended {
    /// The stream.
    pub stream_id: StreamId,
    /// The stream's version after the write.
    pub version: u64,
    /// Points appended by this request (clamped ones included, dropped ones not).
    pub appended: usize,
    /// Points the stream has learned in all.
    pub points: u64,
    /// Each point's score on the common scale (the anomaly likelihood, in [0, 1]: what the
    /// threshold applies to), in the order sent; `null` for a point dropped.
    pub scores: Vec<Option<f64>>,
    /// Each point's raw score from the detector itself (a z-score, a tree mass score);
    /// `null` for a point dropped.
    pub raw_scores: Vec<Option<f64>>,
    /// Points left out under the stream's `late` policy (late or sent twice).
    pub dropped: usize,
    /// Late points learned at the last point's time under the `clamp` policy.
    pub clamped: usize,
    /// The first 100 points dropped or clamped: which, and why.
    pub refused: Vec<Refused>,
    /// Seconds between the stream's points (given, or inferred), when known.
    pub interval: Option<i64>,
    /// Gaps found before this request's points, and the points learned in them.
    pub gaps: GapsFound,
    /// The points scoring at or above the threshold.
    pub anomalies: Vec<Anomaly>,
    /// The threshold.
    pub threshold: f64,
    /// Compare-and-set rounds lost to concurrent writers before this one won.
    pub retries: u32,
    /// The `anomaly.detected` event published for the anomalies; `None` when there were
    /// none, or when storing the event failed (the points are stored all the same, and
    /// the anomalies are in this answer). A stream split by entity publishes one event
    /// per entity with anomalies: this is the first, and `entities.events` lists all.
    pub event_id: Option<EventId>,
    /// For a stream split by entity: the entities this request touched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entities: Option<super::entities::Touched>,
}

/// A point not learned as it was sent.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Refused {
    /// Its position in the request.
    pub index: usize,
    /// Its time as sent (Unix seconds).
    pub timestamp: i64,
    /// `late`: earlier than the point before it; `duplicate`: the point before it again,
    /// time and values.
    pub reason: &'static str,
    /// `dropped` or `clamped` (learned at `learned_at`).
    pub action: &'static str,
    /// The time it was learned at, when clamped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned_at: Option<i64>,
}

/// Gaps found in one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct GapsFound {
    /// Steps of more than one and a half intervals.
    pub found: usize,
    /// Points missing in them.
    pub missing: usize,
    /// Points learned in their place under the stream's `gaps` policy (at most as many
    /// as the request sent; `skip` fills none).
    pub filled: usize,
}

/// How a stream takes points: its policies and its interval.
#[derive(Clone, Copy)]
pub(super) struct Rules {
    pub late: LatePolicy,
    pub gaps: GapPolicy,
    pub interval: Option<i64>,
}

/// What one request's points came to: a score for each point learned, and the points
/// refused.
pub(super) struct Learned {
    pub scores: Vec<Option<Scored>>,
    pub refused: Vec<Refused>,
    /// The new state, unless no point was learned.
    pub bytes: Option<Vec<u8>>,
    pub last_t: Option<i64>,
    pub interval: Option<i64>,
    pub gaps: GapsFound,
}

/// Scores and learns `points` on the detector stored as `bytes`, under the stream's
/// `rules`: late and repeated points, and gaps.
pub(super) fn learn(
    bytes: &[u8],
    width: usize,
    rules: Rules,
    points: &[Point],
) -> Result<Learned, Problem> {
    let mut detector = StreamDetector::from_bytes(bytes)?;
    if detector.width() != width {
        return Err(Problem::internal(
            "the stream's state does not match its record",
        ));
    }
    let policy = rules.late;
    let interval = rules.interval.or_else(|| {
        infer_interval(
            detector
                .last_time()
                .into_iter()
                .chain(points.iter().map(|p| p.t)),
        )
    });
    let mut gaps = GapsFound::default();
    let mut scores = Vec::with_capacity(points.len());
    let mut refused = Vec::new();
    let mut last_t = None;
    for (i, p) in points.iter().enumerate() {
        let (reason, last) = match detector.timeliness(p.t, &p.values) {
            Timeliness::OnTime => ("", None),
            Timeliness::Late { last } => ("late", Some(last)),
            Timeliness::Duplicate => ("duplicate", None),
        };
        let mut t = p.t;
        if !reason.is_empty() {
            let refuse = |action, learned_at| Refused {
                index: i,
                timestamp: p.t,
                reason,
                action,
                learned_at,
            };
            match (policy, last) {
                (LatePolicy::Reject, _) => {
                    return Err(Problem::invalid_data(format!(
                    "point {i}: {}; this stream's `late` policy is `reject`, so nothing was stored",
                    match last {
                        Some(last) => format!("{} is before the stream's last point ({last})", p.t),
                        None =>
                            "it repeats the point before it (the same time and values)".to_string(),
                    }
                )))
                }
                (LatePolicy::Clamp, Some(last)) => {
                    refused.push(refuse("clamped", Some(last)));
                    t = last;
                }
                _ => {
                    refused.push(refuse("dropped", None));
                    scores.push(None);
                    continue;
                }
            }
        }
        if let Some(interval) = interval.filter(|_| reason.is_empty()) {
            let gap = detector
                .fill_gap(
                    t,
                    &p.values,
                    interval,
                    rules.gaps.fill(),
                    points.len() - gaps.filled,
                )
                .map_err(|e| Problem::invalid_data(format!("point {i}: {e}")))?;
            if gap.missing > 0 {
                gaps.found += 1;
                gaps.missing += gap.missing;
                gaps.filled += gap.filled;
            }
        }
        scores.push(Some(
            detector
                .update(t, &p.values)
                .map_err(|e| Problem::invalid_data(format!("point {i}: {e}")))?,
        ));
        last_t = Some(t);
    }
    if last_t.is_none() {
        return Ok(Learned {
            scores,
            refused,
            bytes: None,
            last_t,
            interval,
            gaps,
        });
    }
    let bytes = detector.to_bytes()?;
    // Never store a state that would not load back: the stream would be stuck.
    StreamDetector::from_bytes(&bytes).map_err(|e| {
        Problem::invalid_data(format!(
            "these points would leave the detector's state unusable ({e}); nothing was stored"
        ))
    })?;
    Ok(Learned {
        scores,
        refused,
        bytes: Some(bytes),
        last_t,
        interval,
        gaps,
    })
}

/// An anomalous point.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Anomaly {
    /// Its position in the request.
    pub index: usize,
    /// Its time (Unix seconds).
    pub timestamp: i64,
    /// Its score on the common scale.
    pub score: f64,
    /// The detector's raw score.
    pub raw_score: f64,
    /// Its entity, for a stream split by entity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// The value expected for each column, where the detector has one (seasonal, the
    /// rolling windows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<serde_json::Map<String, Value>>,
    /// For streams of several columns, each column's share of how unusual the point is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shares: Option<serde_json::Map<String, Value>>,
    /// Where each column's value lies against what was expected: `above`, `below`, or
    /// `as_expected`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<serde_json::Map<String, Value>>,
}

impl Anomaly {
    /// Point `index` (`point`), scored `scored`, on a stream of `columns`.
    pub(crate) fn new(index: usize, point: &Point, scored: &Scored, columns: &[String]) -> Self {
        let direction = scored.expected.as_ref().map(|expected| {
            columns
                .iter()
                .zip(point.values.iter().zip(expected))
                .map(|(c, (v, e))| {
                    let way = match v.total_cmp(e) {
                        std::cmp::Ordering::Greater => "above",
                        std::cmp::Ordering::Less => "below",
                        std::cmp::Ordering::Equal => "as_expected",
                    };
                    (c.clone(), json!(way))
                })
                .collect()
        });
        Anomaly {
            index,
            timestamp: point.t,
            score: scored.score,
            raw_score: scored.raw,
            entity: None,
            expected: by_column(columns, scored.expected.as_ref()),
            shares: by_column(columns, scored.shares.as_ref()),
            direction,
        }
    }
}

/// `values`, one per column, as an object keyed by the column names.
fn by_column(
    columns: &[String],
    values: Option<&Vec<f64>>,
) -> Option<serde_json::Map<String, Value>> {
    values.map(|v| {
        columns
            .iter()
            .zip(v)
            .map(|(c, x)| (c.clone(), json!(x)))
            .collect()
    })
}

/// How a compare-and-set write ended.
enum Written {
    /// Stored.
    Mine,
    /// Another writer got there first.
    Lost,
}

/// Scores and learns `points` on the stream, stores the new state (compare-and-set,
/// retried on conflict) and, when some points are anomalous, publishes
/// `anomaly.detected` on the stream's channel. A stream split by entity hands the
/// points to [`super::entities::append`].
pub async fn append(
    services: &(impl UsesEvents + UsesStreams + UsesBlobs + UsesSettings),
    tenant: &TenantId,
    correlation_id: &str,
    id: &StreamId,
    points: Vec<Point>,
) -> Result<Appended, Problem> {
    check_count(points.len())?;
    let points = std::sync::Arc::new(points);
    for round in 0..MAX_ROUNDS {
        let (stream, old_state) = get(services, tenant, id).await?;
        if round == 0 {
            check_work(&stream, points.len())?;
        }
        if let Some(split) = stream.entity.clone() {
            return super::entities::append(
                services,
                correlation_id,
                (stream, old_state, split),
                points,
            )
            .await;
        }
        if let Some(i) = points.iter().position(|p| p.entity.is_some()) {
            let key = points[i]
                .entity
                .as_ref()
                .map(|e| e.0.as_str())
                .unwrap_or("");
            return Err(Problem::invalid_data(format!(
                "point {i}: unknown field `{key}`: this stream is not split by entity"
            )));
        }
        let bytes = match load_state(services, &old_state).await {
            Ok(Some(bytes)) => bytes,
            // The state is gone (a newer writer replaced it in between), or its read failed
            // (S3 without ListBucket answers a vanished object with 403): if the stream
            // moved on meanwhile, read again; if not, say what went wrong.
            lost => {
                let (now, _) = get(services, tenant, id).await?;
                if now.version != stream.version {
                    continue;
                }
                return Err(match lost {
                    Err(e) => e,
                    Ok(_) => {
                        tracing::error!(stream_id = %id, version = stream.version, "a stream's state object is missing");
                        Problem::internal(format!(
                            "the state of stream {id} is missing from storage"
                        ))
                    }
                });
            }
        };
        let width = stream.columns.len();
        let batch = points.clone();
        let rules = Rules {
            late: stream.late,
            gaps: stream.gaps,
            interval: stream.interval,
        };
        let learned = tokio::task::spawn_blocking(move || learn(&bytes, width, rules, &batch))
            .await
            .map_err(|e| Problem::internal(e.to_string()))??;
        let threshold = threshold_of(&stream);
        let anomalies: Vec<Anomaly> = learned
            .scores
            .iter()
            .enumerate()
            .filter_map(|(index, s)| s.as_ref().map(|s| (index, s)))
            .filter(|(_, s)| s.score >= threshold)
            .map(|(index, s)| Anomaly::new(index, &points[index], s, &stream.columns))
            .collect();
        let kept = learned.scores.iter().filter(|s| s.is_some()).count();
        let dropped = points.len() - kept;
        let clamped = learned.refused.len() - dropped;
        let answer = |next: &Stream, event_id| Appended {
            stream_id: next.id.clone(),
            version: next.version,
            appended: kept,
            points: next.points,
            raw_scores: learned
                .scores
                .iter()
                .map(|s| s.as_ref().map(|s| s.raw))
                .collect(),
            scores: learned
                .scores
                .iter()
                .map(|s| s.as_ref().map(|s| s.score))
                .collect(),
            dropped,
            clamped,
            refused: learned
                .refused
                .iter()
                .take(REFUSED_LISTED)
                .cloned()
                .collect(),
            interval: next.interval.or(learned.interval),
            gaps: learned.gaps,
            anomalies: anomalies.clone(),
            threshold,
            retries: round,
            event_id,
            entities: None,
        };
        let Some(new_bytes) = learned.bytes.clone() else {
            // Nothing to learn: the stream stays as it was.
            return Ok(answer(&stream, None));
        };
        let mut next = stream.clone();
        next.threshold = threshold;
        next.version += 1;
        next.write_id = crate::ids::Ulid::new().encode();
        next.points += kept as u64;
        next.anomalies += anomalies.len() as u64;
        next.last_timestamp = learned.last_t.or(stream.last_timestamp);
        next.interval = stream.interval.or(learned.interval);
        next.recent = super::recent::after(&stream.recent, &points, &learned.scores);
        next.updated_at = Timestamp::now();
        let new_state = store_state(services, &next, new_bytes).await?;
        match write(services, &next, &new_state).await? {
            Written::Mine => {
                if old_state.blob() != new_state.blob() {
                    discard(services, &old_state).await;
                }
                let m = crate::metrics::global();
                m.add(crate::metrics::Counter::RowsScored, kept as u64);
                m.add(
                    crate::metrics::Counter::AnomaliesFound,
                    anomalies.len() as u64,
                );
                let event_id = if anomalies.is_empty() {
                    None
                } else {
                    publish(services, &next, correlation_id, &anomalies, &points, kept).await
                };
                return Ok(answer(&next, event_id));
            }
            Written::Lost => {
                discard(services, &new_state).await;
                backoff(round).await;
            }
        }
    }
    Err(Problem::conflict(format!(
        "stream {id} kept changing under other writers; retry"
    ))
    .retry_after(1))
}

/// Stores `next` if the stream is still at the version before it. When the store's
/// answer is unclear (a conflict, which a retried request that had in fact landed also
/// gives, or a failure), the stream is read again: the write is ours if the stored
/// version carries our `write_id`. On a failure whose outcome cannot be read, the new
/// state object is left in place rather than risk deleting what a stored record points
/// at.
async fn write(
    services: &(impl UsesStreams + UsesBlobs),
    next: &Stream,
    state: &StreamState,
) -> Result<Written, Problem> {
    let failure = match services.streams().update_stream(next, state).await {
        Ok(()) => return Ok(Written::Mine),
        Err(StoreError::Conflict(_)) => None,
        Err(StoreError::NotFound(what)) => {
            discard(services, state).await;
            return Err(Problem::not_found(format!("stream {what} not found")));
        }
        Err(e) => Some(e),
    };
    let stored = services.streams().get_stream(&next.tenant, &next.id).await;
    let landed = |s: &Stream| s.version == next.version && s.write_id == next.write_id;
    match (stored, failure) {
        (Ok(Some((s, _))), _) if landed(&s) => {
            tracing::info!(stream_id = %next.id, version = next.version, "the write landed although its answer was an error");
            Ok(Written::Mine)
        }
        (Ok(_), None) => Ok(Written::Lost),
        (Ok(_), Some(e)) => {
            discard(services, state).await;
            Err(e.into())
        }
        (Err(_), Some(e)) | (Err(e), None) => Err(e.into()),
    }
}

/// The most points `spec` on `width` values may take within `budget` of work.
pub(crate) fn most_points(spec: &StreamSpec, width: usize, budget: usize) -> usize {
    let work = spec.footprint(width).work_per_point.max(1);
    (budget / work).max(1)
}

/// Refuses a request whose points would take the stream's detector too long.
pub(super) fn check_work(stream: &Stream, points: usize) -> Result<(), Problem> {
    let Ok(spec) = serde_json::from_value::<StreamSpec>(stream.detector.clone()) else {
        return Ok(());
    };
    let most = most_points(&spec, stream.columns.len(), STREAM_MAX_REQUEST_WORK);
    if points > most {
        return Err(Problem::too_large(format!(
            "this stream's detector takes at most {most} points per request; send the rest in further requests"
        )));
    }
    Ok(())
}

/// Publishes the anomalies; a failure is logged, not returned: the points are stored
/// already, and a retry of the request would learn them twice.
pub(super) async fn publish(
    services: &impl UsesEvents,
    stream: &Stream,
    correlation_id: &str,
    anomalies: &[Anomaly],
    points: &[Point],
    learned: usize,
) -> Option<EventId> {
    // Values only for narrow streams, so an event stays well under a WebSocket frame.
    let with_values = stream.columns.len() <= EVENT_VALUES_UP_TO;
    let listed: Vec<PointAnomaly> = anomalies
        .iter()
        .take(EVENT_POINTS)
        .map(|a| PointAnomaly {
            index: a.index,
            timestamp: a.timestamp,
            score: a.score,
            raw_score: a.raw_score,
            values: with_values.then(|| points[a.index].values.clone()),
            expected: a.expected.clone().filter(|_| with_values),
            shares: a.shares.clone().filter(|_| with_values),
            direction: a.direction.clone().filter(|_| with_values),
        })
        .collect();
    let max_score = anomalies
        .iter()
        .map(|a| a.score)
        .fold(f64::NEG_INFINITY, f64::max);
    let payload = AnomalyDetected::Stream(StreamAnomalies {
        stream_id: stream.id.clone(),
        stream_name: stream.name.clone(),
        entity: anomalies.first().and_then(|a| a.entity.clone()),
        points_scored: learned,
        anomalies: anomalies.len(),
        anomaly_points: listed,
        max_score,
        threshold: stream.threshold,
        stream_version: stream.version,
    });
    let published = services
        .events()
        .publish(&stream.tenant, correlation_id, &payload)
        .await;
    match published {
        Ok(event) => Some(event.event_id),
        Err(e) => {
            tracing::error!(stream_id = %stream.id, version = stream.version, error = %e, "the anomalies were found but their event was not stored");
            None
        }
    }
}

/// Waits a little longer each round, with jitter, so racing writers spread out.
pub(crate) async fn backoff(round: u32) {
    let cap_ms = 2u64 << round.min(6);
    let mut b = [0u8; 2];
    let jitter = match getrandom::fill(&mut b) {
        Ok(()) => u64::from(u16::from_le_bytes(b)) % cap_ms.max(1),
        Err(_) => cap_ms / 2,
    };
    tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
}
