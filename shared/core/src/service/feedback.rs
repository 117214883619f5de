//! Verdicts on results (`POST /v1/feedback`), stored per tenant.
//!
//! On a stream's result a verdict moves the stream's threshold within bounds
//! ([`nomaly_detect::stream::feedback`]): a false positive raises it above the flagged
//! point's score, a miss lowers it below the best score of the range that should have
//! flagged, a true positive changes nothing. The answer says what changed. The point is
//! named by an `anomaly.detected` event and the `index` of one of its anomalies, or by a
//! time range over the stream's last points (the 120 it keeps for charts). On a stream
//! split by entity it moves that entity's own threshold (the event names the entity; a
//! range names it with `entity`), and the other entities keep theirs.
//!
//! On a row of a dataset (a model's result on it) a verdict is a label: the next model
//! trained on that dataset fits its threshold to the labelled rows
//! ([`nomaly_detect::labels`]), the latest verdict on a row counting.

use crate::domain::{EntityWritten, Event, Feedback, FeedbackLabel, RecentPoint, Stream, TenantId};
use crate::ids::{DatasetId, EventId, FeedbackId, ModelId, StreamId, Ulid};
use crate::ports::{Page, PageRequest, StoreError};
use crate::service::datasets::{dataset_shape, profiled_dataset};
use crate::service::uses::{UsesDatasets, UsesEvents, UsesFeedback, UsesModels, UsesStreams};
use crate::service::{streams, Problem};
use crate::time::Timestamp;
use nomaly_detect::labels::Labelled;
use nomaly_detect::stream::feedback as rule;
use serde::{Deserialize, Serialize};

/// What `POST /v1/feedback` takes.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// The stream, for a verdict on a stream's result (or give `dataset_id` and `row`).
    #[serde(default)]
    pub stream_id: Option<StreamId>,
    /// `false_positive`, `true_positive` or `missed`.
    pub label: FeedbackLabel,
    /// An `anomaly.detected` event of the stream (with `index`).
    #[serde(default)]
    pub event_id: Option<EventId>,
    /// The `index` of one of that event's `anomaly_points`.
    #[serde(default)]
    pub index: Option<usize>,
    /// For a stream split by entity: the entity (an event names its own).
    #[serde(default)]
    pub entity: Option<String>,
    /// A range of the stream's time (Unix seconds or RFC 3339; with `to`), instead of an
    /// event: required for `missed`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub from: Option<serde_json::Value>,
    /// The range's end, inclusive.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub to: Option<serde_json::Value>,
    /// A dataset, for a verdict on one of its rows as a model scored it (with `row`): a
    /// label for the next model trained on the dataset.
    #[serde(default)]
    pub dataset_id: Option<DatasetId>,
    /// The row: its 0-based index among the dataset's data rows, as detection numbers
    /// them.
    #[serde(default)]
    pub row: Option<usize>,
    /// The model whose result the row was, if you want it kept with the verdict.
    #[serde(default)]
    pub model_id: Option<ModelId>,
    /// A note, at most 1,000 characters.
    #[serde(default)]
    pub note: Option<String>,
}

/// What `POST /v1/feedback` answers: the verdict stored, and what it changed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FeedbackAnswer {
    /// The verdict as stored.
    pub feedback: Feedback,
    /// Whether the stream's threshold moved (never, for a row: its label counts at the
    /// next training).
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

/// A flagged point's score, named by its `anomaly.detected` event and `index`, and the
/// entity the event was about, if any.
async fn event_score(
    services: &impl UsesEvents,
    stream: &Stream,
    id: &EventId,
    index: Option<usize>,
) -> Result<(f64, Option<String>), Problem> {
    let index = index
        .ok_or_else(|| Problem::invalid_data("`event_id` needs `index`: which of its anomalies"))?;
    let event = event_of(services, &stream.tenant, id).await?;
    if event.payload.get("stream_id").and_then(|s| s.as_str()) != Some(stream.id.as_str()) {
        return Err(Problem::invalid_data(format!(
            "event {id} is not an anomaly of stream {}",
            stream.id
        )));
    }
    let score = event
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
        })?;
    let entity = event
        .payload
        .get("entity")
        .and_then(|e| e.as_str())
        .map(str::to_string);
    Ok((score, entity))
}

/// The best score of the points of `recent` (a stream's or an entity's last points) in
/// the range `from..=to`.
fn range_score(recent: &[RecentPoint], (from, to): (i64, i64)) -> Result<f64, Problem> {
    let inside: Vec<f64> = recent
        .iter()
        .filter(|p| p.t >= from && p.t <= to)
        .map(|p| p.s)
        .collect();
    if inside.is_empty() {
        let kept = match (recent.first(), recent.last()) {
            (Some(a), Some(b)) => format!("{} to {}", a.t, b.t),
            _ => "none yet".into(),
        };
        return Err(Problem::invalid_data(format!(
            "no point of the last {} lies in that range (they span {kept})",
            recent.len()
        )));
    }
    Ok(inside.into_iter().fold(f64::MIN, f64::max))
}

/// What a verdict does to a threshold `before`, for a point (or a range's best) that
/// scored `score`: the threshold after, and why, in words.
fn judge(label: FeedbackLabel, before: f64, score: f64) -> (f64, String) {
    match label {
        FeedbackLabel::TruePositive => (before, "none: a true positive confirms the threshold".to_string()),
        FeedbackLabel::FalsePositive if score < before => (
            before,
            format!("none: the point scored {score:.4}, below the threshold {before:.4}, so it was not flagged"),
        ),
        FeedbackLabel::FalsePositive => {
            let after = rule::after_false_positive(before, score);
            let effect = if after <= before {
                format!("none: the threshold {before:.4} is at its ceiling {}, so a point scoring {score:.4} is still flagged", rule::CEILING)
            } else if after <= score {
                format!("threshold raised from {before:.4} to its ceiling {after:.4}: points scoring below that no longer flag, but this one scored {score:.4} and one like it still would")
            } else {
                format!("threshold raised from {before:.4} to {after:.4}, above the point's score {score:.4} (at most {})", rule::CEILING)
            };
            (after, effect)
        }
        FeedbackLabel::Missed if score >= before => (
            before,
            format!("none: the range's best score {score:.4} reached the threshold {before:.4}, so it was flagged"),
        ),
        FeedbackLabel::Missed => {
            let after = rule::after_miss(before, score);
            let effect = if after >= before {
                format!("none: the threshold {before:.4} is at its floor {}, so a range scoring {score:.4} is still not flagged", rule::FLOOR)
            } else if after > score {
                format!("threshold lowered from {before:.4} to its floor {after:.4}: points scoring above that now flag, but the range's best scored {score:.4} and one like it still would not")
            } else {
                format!("threshold lowered from {before:.4} to {after:.4}, below the range's best score {score:.4} (at least {})", rule::FLOOR)
            };
            (after, effect)
        }
    }
}

/// The entity a verdict on `stream` is about: the one named, or the event's; `None` for
/// a stream not split by entity.
fn entity_of(
    stream: &Stream,
    named: Option<&String>,
    from_event: Option<&String>,
) -> Result<Option<String>, Problem> {
    match (&stream.entity, named, from_event) {
        (None, Some(_), _) => Err(Problem::invalid_data(format!(
            "stream {} is not split by entity: leave `entity` out",
            stream.id
        ))),
        (None, None, _) => Ok(None),
        (Some(_), Some(a), Some(b)) if a != b => Err(Problem::invalid_data(format!(
            "the event is about entity {b:?}, not {a:?}"
        ))),
        (Some(_), Some(a), _) => Ok(Some(a.clone())),
        (Some(_), None, Some(b)) => Ok(Some(b.clone())),
        (Some(split), None, None) => Err(Problem::invalid_data(format!(
            "stream {} is split by `{}`: name the entity (`entity`)",
            stream.id, split.field
        ))),
    }
}

/// Stores a verdict: on a stream's result it is applied to the stream's threshold; on a
/// dataset's row it is kept as a label for the next training.
pub async fn give(
    services: &(impl UsesStreams + UsesEvents + UsesFeedback + UsesDatasets + UsesModels),
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
    match (&request.stream_id, &request.dataset_id) {
        (Some(_), Some(_)) => Err(Problem::invalid_data(
            "name a stream's result (`stream_id`) or a dataset's row (`dataset_id` and `row`), not both",
        )),
        (None, None) => Err(Problem::invalid_data(
            "name a stream's result (`stream_id`) or a dataset's row (`dataset_id` and `row`)",
        )),
        (Some(stream_id), None) => {
            if request.model_id.is_some() || request.row.is_some() {
                return Err(Problem::invalid_data(
                    "`model_id` and `row` name a dataset's row: give them with `dataset_id`, not `stream_id`",
                ));
            }
            on_stream(services, tenant, stream_id, &request).await
        }
        (None, Some(dataset_id)) => on_row(services, tenant, dataset_id, &request).await,
    }
}

/// A verdict on a dataset's row, kept as a label.
async fn on_row(
    services: &(impl UsesFeedback + UsesDatasets + UsesModels),
    tenant: &TenantId,
    dataset_id: &DatasetId,
    request: &FeedbackRequest,
) -> Result<FeedbackAnswer, Problem> {
    if request.event_id.is_some()
        || request.index.is_some()
        || request.entity.is_some()
        || request.from.is_some()
        || request.to.is_some()
    {
        return Err(Problem::invalid_data(
            "a row is named by `dataset_id` and `row`; `event_id`, `index`, `entity`, `from` and `to` name a stream's points",
        ));
    }
    let row = request
        .row
        .ok_or_else(|| Problem::invalid_data("`dataset_id` needs `row`: which of its rows"))?;
    let dataset = profiled_dataset(services, tenant, dataset_id).await?;
    let (rows, _) = dataset_shape(&dataset);
    if row >= rows {
        return Err(Problem::invalid_data(format!(
            "dataset {dataset_id} has {rows} data rows (0 to {}); there is no row {row}",
            rows.saturating_sub(1)
        )));
    }
    let threshold = match &request.model_id {
        Some(id) => {
            let model = services
                .models()
                .get_model(tenant, id)
                .await?
                .ok_or_else(|| Problem::not_found(format!("model {id} not found")))?;
            model.training.get("threshold").and_then(|t| t.as_f64())
        }
        None => None,
    };
    let mut feedback = Feedback {
        id: FeedbackId::new(),
        tenant: tenant.clone(),
        stream_id: None,
        entity: None,
        model_id: request.model_id.clone(),
        dataset_id: Some(dataset_id.clone()),
        row: Some(row),
        label: request.label,
        event_id: None,
        index: None,
        from: None,
        to: None,
        score: None,
        threshold_before: threshold,
        threshold_after: threshold,
        effect: String::new(),
        note: request.note.clone(),
        created_at: Timestamp::now(),
    };
    let mut labels = dataset_labels(services, tenant, dataset_id).await?;
    labels.retain(|l| l.row != row);
    labels.push(Labelled {
        row,
        anomaly: request.label.is_anomaly(),
    });
    let anomalies = labels.iter().filter(|l| l.anomaly).count();
    feedback.effect = format!(
        "row {row} of dataset {dataset_id} is labelled {}: the next model trained on the dataset fits its threshold to its {} labelled rows ({anomalies} anomalies); models already trained keep theirs",
        if request.label.is_anomaly() { "an anomaly" } else { "normal" },
        labels.len(),
    );
    services.feedback().put_feedback(&feedback).await?;
    tracing::info!(dataset_id = %dataset_id, row, label = ?request.label, "feedback on a row");
    Ok(FeedbackAnswer {
        feedback,
        changed: false,
    })
}

/// Most verdicts read for a dataset's labels (newest first).
const MAX_LABEL_VERDICTS: usize = 20_000;

/// The labels the tenant's verdicts give a dataset's rows: the latest verdict on each row
/// counts. At most the newest [`MAX_LABEL_VERDICTS`] verdicts are read.
pub async fn dataset_labels(
    services: &impl UsesFeedback,
    tenant: &TenantId,
    dataset_id: &DatasetId,
) -> Result<Vec<Labelled>, StoreError> {
    let mut seen = std::collections::HashSet::new();
    let mut labels = Vec::new();
    let mut page = PageRequest {
        limit: 1000,
        token: None,
    };
    let mut read = 0;
    while read < MAX_LABEL_VERDICTS {
        let got = services.feedback().list_feedback(tenant, &page).await?;
        if got.items.is_empty() {
            break;
        }
        read += got.items.len();
        for f in got.items {
            if f.dataset_id.as_ref() != Some(dataset_id) {
                continue;
            }
            if let Some(row) = f.row {
                if seen.insert(row) {
                    labels.push(Labelled {
                        row,
                        anomaly: f.label.is_anomaly(),
                    });
                }
            }
        }
        match got.next_token {
            Some(token) => page.token = Some(token),
            None => break,
        }
    }
    Ok(labels)
}

/// A verdict on a stream's result, applied to its threshold.
async fn on_stream(
    services: &(impl UsesStreams + UsesEvents + UsesFeedback),
    tenant: &TenantId,
    stream_id: &StreamId,
    request: &FeedbackRequest,
) -> Result<FeedbackAnswer, Problem> {
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
        let (stream, state) = streams::get(services, tenant, stream_id).await?;
        let from_event = match &request.event_id {
            Some(id) => Some(event_score(services, &stream, id, request.index).await?),
            None => None,
        };
        let entity = entity_of(
            &stream,
            request.entity.as_ref(),
            from_event.as_ref().and_then(|e| e.1.as_ref()),
        )?;
        let target = match &entity {
            Some(name) => Some(
                services
                    .streams()
                    .get_entities(tenant, stream_id, std::slice::from_ref(name))
                    .await?
                    .entities
                    .into_iter()
                    .find(|(e, _)| &e.name == name)
                    .ok_or_else(|| {
                        Problem::not_found(format!(
                            "entity {name:?} of stream {stream_id} not found"
                        ))
                    })?,
            ),
            None => None,
        };
        let score = match (&from_event, range) {
            (Some((score, _)), _) => *score,
            (None, Some(range)) => range_score(
                target.as_ref().map_or(&stream.recent, |(e, _)| &e.recent),
                range,
            )?,
            (None, None) => {
                return Err(Problem::invalid_data(
                    "name the point: `event_id` and `index`, or `from` and `to`",
                ))
            }
        };
        let before = match &target {
            Some((e, _)) => streams::entity_threshold(&stream, e),
            None => streams::threshold_of(&stream),
        };
        let (after, effect) = judge(request.label, before, score);
        let changed = after != before;
        if changed {
            let written = match &target {
                Some((e, bytes)) => {
                    let mut next = e.clone();
                    next.threshold = Some(after);
                    next.version += 1;
                    next.write_id = Ulid::new().encode();
                    let cap = stream.entity.as_ref().map_or(u64::MAX, |s| s.max_entities);
                    let outcome = services
                        .streams()
                        .put_entities(tenant, stream_id, &[(next, bytes.clone())], cap)
                        .await?;
                    matches!(outcome.first(), Some(EntityWritten::Stored))
                }
                None => {
                    let mut next = stream.clone();
                    next.threshold = after;
                    next.version += 1;
                    next.write_id = Ulid::new().encode();
                    match services.streams().update_stream(&next, &state).await {
                        Ok(()) => true,
                        Err(StoreError::Conflict(_)) => false,
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            if !written {
                // Another writer moved the stream or entity on: read it again and decide
                // anew.
                continue;
            }
        }
        let feedback = Feedback {
            id: FeedbackId::new(),
            tenant: tenant.clone(),
            stream_id: Some(stream.id.clone()),
            entity,
            model_id: None,
            dataset_id: None,
            row: None,
            label: request.label,
            event_id: request.event_id.clone(),
            index: request.index,
            from: range.map(|r| r.0),
            to: range.map(|r| r.1),
            score: Some(score),
            threshold_before: Some(before),
            threshold_after: Some(after),
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
