//! Verdicts on a stream's results (`POST /v1/feedback`): stored per tenant, and applied to
//! the stream's threshold within bounds ([`nomaly_detect::stream::feedback`]): a false
//! positive raises it above the flagged point's score, a miss lowers it below the best
//! score of the range that should have flagged, a true positive changes nothing. The
//! answer says what changed.
//!
//! The point is named by an `anomaly.detected` event and the `index` of one of its
//! anomalies, or by a time range over the stream's last points (the 120 it keeps for
//! charts). A stream split by entity shares one threshold across its entities, so a
//! verdict on one entity is refused rather than applied to all of them.

use crate::domain::{Event, Feedback, FeedbackLabel, Stream, TenantId};
use crate::ids::{EventId, FeedbackId, StreamId, Ulid};
use crate::ports::{Page, PageRequest, StoreError};
use crate::service::uses::{UsesEvents, UsesFeedback, UsesStreams};
use crate::service::{streams, Problem};
use crate::time::Timestamp;
use nomaly_detect::stream::feedback as rule;
use serde::{Deserialize, Serialize};

/// What `POST /v1/feedback` takes.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// The stream.
    pub stream_id: StreamId,
    /// `false_positive`, `true_positive` or `missed`.
    pub label: FeedbackLabel,
    /// An `anomaly.detected` event of the stream (with `index`).
    #[serde(default)]
    pub event_id: Option<EventId>,
    /// The `index` of one of that event's `anomaly_points`.
    #[serde(default)]
    pub index: Option<usize>,
    /// A range of the stream's time (Unix seconds or RFC 3339; with `to`), instead of an
    /// event: required for `missed`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub from: Option<serde_json::Value>,
    /// The range's end, inclusive.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub to: Option<serde_json::Value>,
    /// A note, at most 1,000 characters.
    #[serde(default)]
    pub note: Option<String>,
}

/// What `POST /v1/feedback` answers: the verdict stored, and what it changed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FeedbackAnswer {
    /// The verdict as stored.
    pub feedback: Feedback,
    /// Whether the stream's threshold moved.
    pub changed: bool,
}

fn instant(value: &serde_json::Value, what: &str) -> Result<i64, Problem> {
    let parsed = match value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => crate::time::parse_instant(s),
        _ => None,
    };
    parsed.ok_or_else(|| {
        Problem::invalid_data(format!("`{what}` must be Unix seconds or an RFC 3339 time"))
    })
}

/// The event `id` of `tenant`, read from the log just before it.
async fn event_of(
    services: &impl UsesEvents,
    tenant: &TenantId,
    id: &EventId,
) -> Result<Event, Problem> {
    let ms = id
        .as_str()
        .strip_prefix("evt_")
        .and_then(Ulid::decode)
        .map(|u| u.millis())
        .unwrap_or(0);
    let before = EventId::parse(&format!("evt_{}", Ulid::floor(ms - 1).encode()))
        .map_err(|_| Problem::internal("an event id bound"))?;
    let page = services
        .events()
        .events_after(tenant, Some(&before), 1000)
        .await?;
    page.items
        .into_iter()
        .find(|e| &e.event_id == id)
        .ok_or_else(|| Problem::not_found(format!("event {id} not found")))
}

/// The score a verdict is about: a flagged point's (by event and index), or the best of a
/// range of the stream's last points.
async fn score_of(
    services: &impl UsesEvents,
    stream: &Stream,
    request: &FeedbackRequest,
    range: Option<(i64, i64)>,
) -> Result<f64, Problem> {
    if let Some(id) = &request.event_id {
        let index = request.index.ok_or_else(|| {
            Problem::invalid_data("`event_id` needs `index`: which of its anomalies")
        })?;
        let event = event_of(services, &stream.tenant, id).await?;
        if event.payload.get("stream_id").and_then(|s| s.as_str()) != Some(stream.id.as_str()) {
            return Err(Problem::invalid_data(format!(
                "event {id} is not an anomaly of stream {}",
                stream.id
            )));
        }
        return event
            .payload
            .get("anomaly_points")
            .and_then(|p| p.as_array())
            .and_then(|points| {
                points
                    .iter()
                    .find(|p| p.get("index").and_then(|i| i.as_u64()) == Some(index as u64))
            })
            .and_then(|p| p.get("score").and_then(|s| s.as_f64()))
            .ok_or_else(|| {
                Problem::invalid_data(format!("event {id} has no anomaly with index {index}"))
            });
    }
    let (from, to) = range.ok_or_else(|| {
        Problem::invalid_data("name the point: `event_id` and `index`, or `from` and `to`")
    })?;
    let inside: Vec<f64> = stream
        .recent
        .iter()
        .filter(|p| p.t >= from && p.t <= to)
        .map(|p| p.s)
        .collect();
    if inside.is_empty() {
        let kept = match (stream.recent.first(), stream.recent.last()) {
            (Some(a), Some(b)) => format!("{} to {}", a.t, b.t),
            _ => "none yet".into(),
        };
        return Err(Problem::invalid_data(format!(
            "no point of the stream's last {} lies in that range (they span {kept})",
            stream.recent.len()
        )));
    }
    Ok(inside.into_iter().fold(f64::MIN, f64::max))
}

/// Stores a verdict and applies it to the stream's threshold.
pub async fn give(
    services: &(impl UsesStreams + UsesEvents + UsesFeedback),
    tenant: &TenantId,
    request: FeedbackRequest,
) -> Result<FeedbackAnswer, Problem> {
    if request
        .note
        .as_ref()
        .is_some_and(|n| n.chars().count() > 1000)
    {
        return Err(Problem::invalid_data("`note` is at most 1,000 characters"));
    }
    let range = match (&request.from, &request.to) {
        (Some(f), Some(t)) => {
            let (f, t) = (instant(f, "from")?, instant(t, "to")?);
            if f > t {
                return Err(Problem::invalid_data("`from` is after `to`"));
            }
            Some((f, t))
        }
        (None, None) => None,
        _ => return Err(Problem::invalid_data("a range needs both `from` and `to`")),
    };
    if request.label == FeedbackLabel::Missed && range.is_none() {
        return Err(Problem::invalid_data(
            "`missed` names the range that should have been flagged: `from` and `to`",
        ));
    }
    for _ in 0..8 {
        let (stream, state) = streams::get(services, tenant, &request.stream_id).await?;
        if stream.entity.is_some() {
            return Err(Problem::invalid_data(
                "this stream is split by entity and its entities share one threshold: feedback on one entity is not applied (not yet supported)",
            ));
        }
        let before = streams::threshold_of(&stream);
        let score = score_of(services, &stream, &request, range).await?;
        let (after, effect) = match request.label {
            FeedbackLabel::TruePositive => (before, "none: a true positive confirms the threshold".to_string()),
            FeedbackLabel::FalsePositive if score < before => (
                before,
                format!("none: the point scored {score:.4}, below the threshold {before:.4}, so it was not flagged"),
            ),
            FeedbackLabel::FalsePositive => {
                let after = rule::after_false_positive(before, score);
                (after, format!("threshold raised from {before:.4} to {after:.4}, above the point's score {score:.4} (at most {})", rule::CEILING))
            }
            FeedbackLabel::Missed if score >= before => (
                before,
                format!("none: the range's best score {score:.4} reached the threshold {before:.4}, so it was flagged"),
            ),
            FeedbackLabel::Missed => {
                let after = rule::after_miss(before, score);
                (after, format!("threshold lowered from {before:.4} to {after:.4}, below the range's best score {score:.4} (at least {})", rule::FLOOR))
            }
        };
        let changed = after != before;
        if changed {
            let mut next = stream.clone();
            next.threshold = after;
            next.version += 1;
            next.write_id = Ulid::new().encode();
            match services.streams().update_stream(&next, &state).await {
                Ok(()) => {}
                // Another writer moved the stream on: read it again and decide anew.
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let feedback = Feedback {
            id: FeedbackId::new(),
            tenant: tenant.clone(),
            stream_id: stream.id.clone(),
            label: request.label,
            event_id: request.event_id.clone(),
            index: request.index,
            from: range.map(|r| r.0),
            to: range.map(|r| r.1),
            score: Some(score),
            threshold_before: before,
            threshold_after: after,
            effect,
            note: request.note.clone(),
            created_at: Timestamp::now(),
        };
        services.feedback().put_feedback(&feedback).await?;
        tracing::info!(stream_id = %stream.id, label = ?request.label, before, after, "feedback");
        return Ok(FeedbackAnswer { feedback, changed });
    }
    Err(Problem::conflict("the stream kept changing under other writers; retry").retry_after(1))
}

/// A page of the tenant's verdicts, newest first.
pub async fn list(
    services: &impl UsesFeedback,
    tenant: &TenantId,
    page: &PageRequest,
) -> Result<Page<Feedback>, Problem> {
    Ok(services.feedback().list_feedback(tenant, page).await?)
}
