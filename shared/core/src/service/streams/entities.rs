//! Streams split by entity: one detector per value of the stream's entity field (each
//! host, endpoint or store), made on the entity's first point from the stream's own
//! state, which is only the template.
//!
//! A request's points are grouped by entity. The entities are read in one batch, each
//! group is scored and learned on its own entity's detector, and the new states are
//! written in one batch, each entity under its own compare-and-set: an entity another
//! writer moved meanwhile is read and learned again, the others stay stored. So writers
//! touching different entities never hold each other up, and of two writers touching the
//! same entity neither loses its points.
//!
//! A stream holds at most `max_entities`. A request bringing new entities past that
//! first evicts entities idle for longer than the stream's `entity_ttl` (the answer
//! names them); if there is still no room, it is refused with 422 and nothing is stored.

use super::append::{learn, publish, Anomaly, Appended, GapsFound, Learned, Refused, Rules};
use super::request::Point;
use super::state::load_state;
use super::{entity_threshold, threshold_of, MAX_ROUNDS};
use crate::domain::{EntitySplit, EntityWritten, Stream, StreamEntity, StreamState, TenantId};
use crate::ids::{EventId, StreamId};
use crate::ports::{Page, PageRequest};
use crate::service::uses::{UsesBlobs, UsesEvents, UsesSettings, UsesStreams};
use crate::service::Problem;
use crate::time::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Distinct entities one request may name.
pub const REQUEST_MAX_ENTITIES: usize = 1_000;
/// The largest state one entity may keep (it is stored with the entity's record, and a
/// DynamoDB item holds 400 KB).
pub const ENTITY_MAX_STATE_BYTES: usize = 350_000;
/// Events published at once for one request's entities.
const PUBLISHING_AT_ONCE: usize = 16;

/// What a request did to a stream's entities.
#[derive(Debug, Clone, PartialEq, Default, Serialize, utoipa::ToSchema)]
pub struct Touched {
    /// Entities the request named.
    pub touched: usize,
    /// Of which new: their detectors were made by this request.
    pub created: usize,
    /// Entities evicted (idle for longer than the stream's `entity_ttl`) to make room.
    pub evicted: Vec<String>,
    /// Compare-and-set rounds lost to writers touching the same entities.
    pub conflicts: u32,
    /// The `anomaly.detected` events published, one per entity with anomalies.
    pub events: Vec<EventId>,
}

/// An entity as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EntityView {
    /// Its name: the value of the stream's entity field.
    pub name: String,
    /// Points learned.
    pub points: u64,
    /// Points that scored at or above the threshold.
    pub anomalies: u64,
    /// Its last point's time (Unix seconds).
    pub last_timestamp: Option<i64>,
    /// The time of its latest anomaly (Unix seconds).
    pub last_anomaly: Option<i64>,
    /// RFC 3339 of its last point's arrival: idleness is measured from it.
    pub last_seen: String,
    /// RFC 3339 of its first point's arrival.
    pub created_at: String,
    /// Seconds between its points, when known.
    pub interval: Option<i64>,
    /// Its own threshold, set by feedback on its results; absent: the stream's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// The WebSocket channel of its anomalies: `stream:<id>:<entity>`.
    pub channel: String,
    /// Its last points: `t` (Unix seconds), `v` (the first column's value), `s` (its
    /// score), and where the detector expects a value, `e` and the band's half-width `b`.
    pub recent: Vec<crate::domain::RecentPoint>,
}

impl EntityView {
    /// `entity` as shown.
    pub fn of(entity: &StreamEntity) -> Self {
        EntityView {
            name: entity.name.clone(),
            points: entity.points,
            anomalies: entity.anomalies,
            last_timestamp: entity.last_timestamp,
            last_anomaly: entity.last_anomaly,
            last_seen: entity.updated_at.rfc3339(),
            created_at: entity.created_at.rfc3339(),
            interval: entity.interval,
            threshold: entity.threshold,
            channel: format!("stream:{}:{}", entity.stream_id, entity.name),
            recent: entity.recent.clone(),
        }
    }
}

/// One page of the stream's entities, in name order.
pub async fn list(
    services: &impl UsesStreams,
    tenant: &TenantId,
    id: &StreamId,
    page: &PageRequest,
) -> Result<Page<EntityView>, Problem> {
    split_of(services, tenant, id).await?;
    let found = services.streams().list_entities(tenant, id, page).await?;
    Ok(Page {
        items: found.items.iter().map(EntityView::of).collect(),
        next_token: found.next_token,
    })
}

/// One entity of the stream, or 404.
pub async fn get(
    services: &impl UsesStreams,
    tenant: &TenantId,
    id: &StreamId,
    name: &str,
) -> Result<EntityView, Problem> {
    split_of(services, tenant, id).await?;
    let read = services
        .streams()
        .get_entities(tenant, id, &[name.to_string()])
        .await?;
    read.entities
        .first()
        .map(|(e, _)| EntityView::of(e))
        .ok_or_else(|| Problem::not_found(format!("stream {id} has no entity {name:?}")))
}

/// The stream's split, or 404 for no such stream and 400 for a stream not split.
async fn split_of(
    services: &impl UsesStreams,
    tenant: &TenantId,
    id: &StreamId,
) -> Result<EntitySplit, Problem> {
    let (stream, _) = super::get(services, tenant, id).await?;
    stream.entity.ok_or_else(|| {
        Problem::invalid_parameter(format!(
            "stream {id} is not split by entity: it has no entities"
        ))
    })
}

/// Groups `points` by entity: each entity's points' positions in the request, in order.
fn group(points: &[Point], split: &EntitySplit) -> Result<BTreeMap<String, Vec<usize>>, Problem> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, p) in points.iter().enumerate() {
        match &p.entity {
            Some((key, name)) if *key == split.field => {
                groups.entry(name.clone()).or_default().push(i)
            }
            Some((key, _)) => {
                return Err(Problem::invalid_data(format!(
                    "point {i}: unknown field `{key}`: this stream's entity is named by `{}`",
                    split.field
                )))
            }
            None => {
                return Err(Problem::invalid_data(format!(
                "point {i} names no entity: this stream is split by `{}`, and each point gives it",
                split.field
            )))
            }
        }
    }
    if groups.len() > REQUEST_MAX_ENTITIES {
        return Err(Problem::too_large(format!(
            "one request names at most {REQUEST_MAX_ENTITIES} entities (this one names {})",
            groups.len()
        )));
    }
    Ok(groups)
}

/// One entity's part of a request, to learn: its name, its record and state (the
/// template's state for a new one), and its points.
type Job = (String, Option<StreamEntity>, Vec<u8>, Vec<Point>);

/// One entity's part of a request, learned: its name, its record as read, and what
/// its points came to.
type LearnedEntity = (String, Option<StreamEntity>, Learned);

/// One entity's part of the request, learned.
struct Done {
    /// Its record after the write (or as it was, when nothing was learned).
    entity: StreamEntity,
    learned: Learned,
    /// Positions of its points in the request.
    at: Vec<usize>,
}

/// Appends `points` to a stream split by entity (see the module doc).
pub(super) async fn append(
    services: &(impl UsesEvents + UsesStreams + UsesBlobs + UsesSettings),
    correlation_id: &str,
    (stream, template, split): (Stream, StreamState, EntitySplit),
    points: Arc<Vec<Point>>,
) -> Result<Appended, Problem> {
    let groups = group(&points, &split)?;
    let template = load_state(services, &template).await?.ok_or_else(|| {
        Problem::internal(format!(
            "the state of stream {} is missing from storage",
            stream.id
        ))
    })?;
    let (tenant, id) = (&stream.tenant, &stream.id);
    let mut pending: Vec<String> = groups.keys().cloned().collect();
    let mut done: BTreeMap<String, Done> = BTreeMap::new();
    let mut touched = Touched {
        touched: groups.len(),
        ..Touched::default()
    };
    let mut refused_entities: Vec<(String, &'static str)> = Vec::new();
    for round in 0..MAX_ROUNDS {
        if pending.is_empty() {
            break;
        }
        if round > 0 {
            super::append::backoff(round - 1).await;
            touched.conflicts += 1;
        }
        let read = services
            .streams()
            .get_entities(tenant, id, &pending)
            .await?;
        let mut found: HashMap<String, (StreamEntity, Vec<u8>)> = read
            .entities
            .into_iter()
            .map(|(e, bytes)| (e.name.clone(), (e, bytes)))
            .collect();
        let new = pending.iter().filter(|n| !found.contains_key(*n)).count() as u64;
        if new > 0 && read.count + new > split.max_entities {
            let evicted = make_room(services, &stream, &split, read.count + new).await?;
            let held = read.count - evicted.len() as u64;
            touched.evicted.extend(evicted);
            if held + new > split.max_entities && done.is_empty() {
                return Err(Problem::invalid_data(format!(
                    "stream {id} holds {held} entities of its {}, and this request names {new} new ones; \
                     none more has gone {} seconds without a point, so none could be evicted. \
                     Nothing was stored: make a stream with a larger `max_entities`, or send fewer new entities",
                    split.max_entities, split.idle_ttl
                )));
            }
        }
        let jobs: Vec<Job> = pending
            .iter()
            .map(|name| {
                let (entity, bytes) = match found.remove(name) {
                    Some((e, bytes)) => (Some(e), bytes),
                    None => (None, template.clone()),
                };
                let mine = groups[name].iter().map(|&i| points[i].clone()).collect();
                (name.clone(), entity, bytes, mine)
            })
            .collect();
        let learned = learn_all(&stream, jobs).await?;
        let mut writes = Vec::new();
        let mut waiting = Vec::new();
        for (name, before, learned) in learned {
            let at = groups[&name].clone();
            let next = next_record(&stream, &name, before.as_ref(), &learned, &points, &at);
            match learned.bytes.clone() {
                Some(bytes) if bytes.len() > ENTITY_MAX_STATE_BYTES => {
                    return Err(Problem::invalid_data(format!(
                        "entity {name:?}: its detector's state would grow to {} bytes, past the {ENTITY_MAX_STATE_BYTES} one entity may keep; nothing more was stored",
                        bytes.len()
                    )));
                }
                Some(bytes) => {
                    writes.push((next.clone(), bytes));
                    waiting.push((
                        name,
                        Done {
                            entity: next,
                            learned,
                            at,
                        },
                    ));
                }
                // Nothing learned (every point was late or a repeat): nothing to write.
                None => {
                    let entity = before.unwrap_or(next);
                    done.insert(
                        name,
                        Done {
                            entity,
                            learned,
                            at,
                        },
                    );
                }
            }
        }
        let outcomes = services
            .streams()
            .put_entities(tenant, id, &writes, split.max_entities)
            .await?;
        pending.clear();
        for ((name, entry), outcome) in waiting.into_iter().zip(outcomes) {
            match outcome {
                EntityWritten::Stored => {
                    if entry.entity.version == 1 {
                        touched.created += 1;
                    }
                    done.insert(name, entry);
                }
                EntityWritten::Conflict => pending.push(name),
                EntityWritten::OverCap => refused_entities.push((name, "entity_cap")),
            }
        }
    }
    refused_entities.extend(pending.into_iter().map(|name| (name, "contention")));
    let threshold = threshold_of(&stream);
    let answer = assemble(
        &stream,
        &points,
        &groups,
        &done,
        &refused_entities,
        threshold,
        touched,
    );
    let mut answer = answer;
    let events = publish_all(services, &stream, correlation_id, &points, &done, &answer).await;
    answer.event_id = events.first().cloned();
    if let Some(t) = answer.entities.as_mut() {
        t.events = events;
    }
    let m = crate::metrics::global();
    m.add(crate::metrics::Counter::RowsScored, answer.appended as u64);
    m.add(
        crate::metrics::Counter::AnomaliesFound,
        answer.anomalies.len() as u64,
    );
    Ok(answer)
}

/// Evicts entities idle for longer than the stream's TTL, enough to hold `wanted`
/// entities if there are that many idle; answers those evicted.
async fn make_room(
    services: &impl UsesStreams,
    stream: &Stream,
    split: &EntitySplit,
    wanted: u64,
) -> Result<Vec<String>, Problem> {
    let over = wanted.saturating_sub(split.max_entities) as usize;
    let seen_before = Timestamp::from_millis(
        Timestamp::now()
            .millis()
            .saturating_sub(split.idle_ttl.saturating_mul(1000)),
    );
    let idle = services
        .streams()
        .idle_entities(&stream.tenant, &stream.id, seen_before, over)
        .await?;
    if idle.is_empty() {
        return Ok(Vec::new());
    }
    let evicted = services
        .streams()
        .evict_entities(&stream.tenant, &stream.id, &idle)
        .await?;
    tracing::info!(stream_id = %stream.id, evicted = evicted.len(), "idle entities evicted to make room");
    Ok(evicted)
}

/// Learns each entity's points on its own detector, all in one blocking task.
async fn learn_all(stream: &Stream, jobs: Vec<Job>) -> Result<Vec<LearnedEntity>, Problem> {
    let width = stream.columns.len();
    let (late, gaps, interval) = (stream.late, stream.gaps, stream.interval);
    tokio::task::spawn_blocking(move || {
        jobs.into_iter()
            .map(|(name, entity, bytes, points)| {
                let rules = Rules {
                    late,
                    gaps,
                    interval: interval.or(entity.as_ref().and_then(|e| e.interval)),
                };
                let learned = learn(&bytes, width, rules, &points).map_err(|mut e| {
                    e.detail = format!("entity {name:?}: {}", e.detail);
                    e
                })?;
                Ok((name, entity, learned))
            })
            .collect::<Result<Vec<_>, Problem>>()
    })
    .await
    .map_err(|e| Problem::internal(e.to_string()))?
}

/// The entity's record after learning `learned` (its points at `at` in the request).
fn next_record(
    stream: &Stream,
    name: &str,
    before: Option<&StreamEntity>,
    learned: &Learned,
    points: &[Point],
    at: &[usize],
) -> StreamEntity {
    let now = Timestamp::now();
    let mut next = before.cloned().unwrap_or_else(|| StreamEntity {
        tenant: stream.tenant.clone(),
        stream_id: stream.id.clone(),
        name: name.to_string(),
        points: 0,
        anomalies: 0,
        last_timestamp: None,
        last_anomaly: None,
        interval: None,
        threshold: None,
        recent: Vec::new(),
        version: 0,
        write_id: String::new(),
        created_at: now,
        updated_at: now,
    });
    let threshold = entity_threshold(stream, &next);
    let mine: Vec<Point> = at.iter().map(|&i| points[i].clone()).collect();
    let anomalous: Vec<i64> = mine
        .iter()
        .zip(&learned.scores)
        .filter(|(_, s)| s.as_ref().is_some_and(|s| s.score >= threshold))
        .map(|(p, _)| p.t)
        .collect();
    next.version += 1;
    next.write_id = crate::ids::Ulid::new().encode();
    next.points += learned.scores.iter().filter(|s| s.is_some()).count() as u64;
    next.anomalies += anomalous.len() as u64;
    next.last_anomaly = anomalous.last().copied().or(next.last_anomaly);
    next.last_timestamp = learned.last_t.or(next.last_timestamp);
    next.interval = next.interval.or(learned.interval);
    next.recent = super::recent::after(&next.recent, &mine, &learned.scores);
    next.updated_at = now;
    next
}

/// The answer: each point's score in the order sent, and the anomalies with their
/// entity.
fn assemble(
    stream: &Stream,
    points: &[Point],
    groups: &BTreeMap<String, Vec<usize>>,
    done: &BTreeMap<String, Done>,
    refused_entities: &[(String, &'static str)],
    threshold: f64,
    touched: Touched,
) -> Appended {
    let n = points.len();
    let (mut scores, mut raw_scores) = (vec![None; n], vec![None; n]);
    let mut refused: Vec<Refused> = Vec::new();
    let mut anomalies = Vec::new();
    let mut gaps = GapsFound::default();
    let mut learned_in_all = 0;
    for (name, d) in done {
        learned_in_all += d.entity.points;
        gaps.found += d.learned.gaps.found;
        gaps.missing += d.learned.gaps.missing;
        gaps.filled += d.learned.gaps.filled;
        let own = entity_threshold(stream, &d.entity);
        for (k, s) in d.learned.scores.iter().enumerate() {
            let i = d.at[k];
            if let Some(s) = s {
                scores[i] = Some(s.score);
                raw_scores[i] = Some(s.raw);
                if s.score >= own {
                    let mut a = Anomaly::new(i, &points[i], s, &stream.columns);
                    a.entity = Some(name.clone());
                    anomalies.push(a);
                }
            }
        }
        refused.extend(d.learned.refused.iter().map(|r| Refused {
            index: d.at[r.index],
            ..r.clone()
        }));
    }
    for (name, reason) in refused_entities {
        refused.extend(groups[name].iter().map(|&i| Refused {
            index: i,
            timestamp: points[i].t,
            reason,
            action: "dropped",
            learned_at: None,
        }));
    }
    anomalies.sort_by_key(|a| a.index);
    refused.sort_by_key(|r| r.index);
    let appended = scores.iter().filter(|s| s.is_some()).count();
    let clamped = refused.iter().filter(|r| r.action == "clamped").count();
    Appended {
        stream_id: stream.id.clone(),
        version: stream.version,
        appended,
        points: learned_in_all,
        scores,
        raw_scores,
        dropped: n - appended,
        clamped,
        refused: refused.into_iter().take(100).collect(),
        interval: stream.interval,
        gaps,
        anomalies,
        threshold,
        retries: touched.conflicts,
        event_id: None,
        entities: Some(touched),
    }
}

/// Publishes one `anomaly.detected` per entity with anomalies, a few at a time; answers
/// the events stored (a failure is logged: the points are stored already).
async fn publish_all(
    services: &impl UsesEvents,
    stream: &Stream,
    correlation_id: &str,
    points: &[Point],
    done: &BTreeMap<String, Done>,
    answer: &Appended,
) -> Vec<EventId> {
    let by_entity: Vec<(&Done, Vec<Anomaly>)> = done
        .iter()
        .map(|(name, d)| {
            let mine: Vec<Anomaly> = answer
                .anomalies
                .iter()
                .filter(|a| a.entity.as_deref() == Some(name.as_str()))
                .cloned()
                .collect();
            (d, mine)
        })
        .filter(|(_, a)| !a.is_empty())
        .collect();
    let mut events = Vec::new();
    for chunk in by_entity.chunks(PUBLISHING_AT_ONCE) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|(d, anomalies)| {
                publish_one(services, stream, correlation_id, points, d, anomalies)
            })
            .collect();
        events.extend(
            futures_util::future::join_all(batch)
                .await
                .into_iter()
                .flatten(),
        );
    }
    events
}

/// Publishes one entity's anomalies.
async fn publish_one(
    services: &impl UsesEvents,
    stream: &Stream,
    correlation_id: &str,
    points: &[Point],
    done: &Done,
    anomalies: &[Anomaly],
) -> Option<EventId> {
    let mut at = stream.clone();
    at.version = done.entity.version;
    at.threshold = entity_threshold(stream, &done.entity);
    let scored = done.learned.scores.iter().filter(|s| s.is_some()).count();
    publish(services, &at, correlation_id, anomalies, points, scored).await
}
