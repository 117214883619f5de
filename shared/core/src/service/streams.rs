//! Streams: named series of points scored the moment they arrive by a detector that
//! learns them (`nomaly_detect::stream`).
//!
//! Appending is a compare-and-set loop: read the stream and its state, score and learn
//! the points, and write the new state only if the stream's version is still the one
//! read. A writer that loses reads again and reapplies its points, so two concurrent
//! writers never lose an update, and a request is all or nothing: a point refused
//! (wrong width, not a number, earlier than the stream's last point) refuses the request
//! and stores nothing.
//!
//! The detector's state is kept in the stream's own record while it is at most
//! [`Settings::stream_inline_state_bytes`](crate::service::Settings) long (a DynamoDB
//! item holds 400 KB). Larger state is written to the blob store first, under a key
//! naming the version and the writer (`tenants/<t>/streams/<id>/state-<version>-<ulid>.json`),
//! and the record points at it; the previous version's object is deleted once the new
//! record is stored, and a losing writer deletes its own.
//!
//! Each write carries its own `write_id`. When the store's answer is unclear (a lost
//! response the SDK retried into a failed condition, a timeout after the write landed),
//! the writer reads the stream back and knows its own write: it is neither applied twice
//! nor has its state deleted.

use crate::domain::{EventType, Stream, StreamState, TenantId};
use crate::ids::{EventId, StreamId, TaskId};
use crate::limits::{
    STREAM_MAX_POINTS, STREAM_MAX_REQUEST_WORK, STREAM_MAX_STATE_VALUES, STREAM_MAX_WIDTH,
};
use crate::ports::{BlobKey, StoreError};
use crate::service::{Problem, Services};
use crate::time::{parse_instant, Timestamp};
use nomaly_detect::stream::{Scored, StreamDetector, StreamSpec};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Compare-and-set rounds before a write gives up with 409.
const MAX_ROUNDS: u32 = 24;
/// Anomalous points listed in one `anomaly.detected` event.
const EVENT_POINTS: usize = 100;
/// Streams up to this wide list each anomalous point's values in the event.
const EVENT_VALUES_UP_TO: usize = 16;

/// `POST /v1/streams`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStream {
    /// A name for people (1-128 characters).
    pub name: String,
    /// `seasonal` (the default), `half_space_trees`, `rolling_median` or `rolling_mean`.
    #[serde(default)]
    pub detector: Option<String>,
    /// The detector's parameters.
    #[serde(default)]
    pub params: Option<Value>,
    /// Half-Space Trees only: consecutive values of a univariate series per point.
    #[serde(default)]
    pub shingle: Option<usize>,
    /// Names of each point's values (default `["value"]`).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Points scoring at or above this are anomalies, on the common scale in (0, 1]
    /// (default: `StreamSpec::default_threshold`, chosen on NAB).
    #[serde(default)]
    pub threshold: Option<f64>,
    /// A completed backtest task whose detector, as it stood at the backtest's last point,
    /// the stream starts from (no warm-up); its detector and columns come with it.
    #[serde(default)]
    pub from_backtest: Option<TaskId>,
}

/// A stream's name, checked and trimmed.
fn checked_name(name: &str) -> Result<String, Problem> {
    let name = name.trim().to_string();
    if !(1..=128).contains(&name.chars().count()) || name.chars().any(char::is_control) {
        return Err(Problem::invalid_parameter(
            "`name` must be 1 to 128 characters, none of them control characters",
        ));
    }
    Ok(name)
}

/// A threshold, checked to lie on the scores' scale.
pub(crate) fn checked_threshold(threshold: f64) -> Result<f64, Problem> {
    if on_the_scale(threshold) {
        Ok(threshold)
    } else {
        Err(Problem::invalid_parameter(
            "`threshold` must be a number above 0 and at most 1: stream scores are anomaly likelihoods on one scale (0.5 is a one-in-100,000 point)",
        ))
    }
}

impl CreateStream {
    /// The checked name, spec, columns and threshold.
    pub(crate) fn into_parts(self) -> Result<(String, StreamSpec, Vec<String>, f64), Problem> {
        let name = checked_name(&self.name)?;
        let detector = self.detector.unwrap_or_else(|| "seasonal".to_string());
        let mut spec = serde_json::Map::new();
        spec.insert("detector".into(), Value::String(detector.clone()));
        if let Some(params) = self.params {
            if !params.is_object() {
                return Err(Problem::invalid_parameter("`params` must be an object"));
            }
            spec.insert("params".into(), params);
        }
        if let Some(shingle) = self.shingle {
            if detector != "half_space_trees" {
                return Err(Problem::invalid_parameter(
                    "`shingle` applies to the half_space_trees detector only",
                ));
            }
            spec.insert("shingle".into(), json!(shingle));
        }
        let spec: StreamSpec = serde_json::from_value(Value::Object(spec)).map_err(|e| {
            Problem::invalid_parameter(format!(
                "`detector` must be seasonal, half_space_trees, random_cut_forest, rolling_median or rolling_mean, with valid `params`: {e}"
            ))
        })?;
        let columns = self.columns.unwrap_or_else(|| vec!["value".to_string()]);
        if columns.is_empty() || columns.len() > STREAM_MAX_WIDTH {
            return Err(Problem::invalid_parameter(format!(
                "`columns` must name 1 to {STREAM_MAX_WIDTH} values"
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for c in &columns {
            if c.is_empty()
                || c.len() > 128
                || c == "timestamp"
                || c.chars().any(char::is_control)
                || !seen.insert(c)
            {
                return Err(Problem::invalid_parameter(format!(
                    "column {c:?}: names are 1 to 128 bytes without control characters, unique, and not `timestamp`"
                )));
            }
        }
        let threshold =
            checked_threshold(self.threshold.unwrap_or_else(|| spec.default_threshold()))?;
        check_footprint(&spec, columns.len())?;
        Ok((name, spec, columns, threshold))
    }
}

/// A point's time: Unix seconds, or a written instant.
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum When {
    /// Unix seconds (0 or later, as in CSV).
    Seconds(f64),
    /// RFC 3339 or `YYYY-MM-DD HH:MM:SS` (UTC).
    Text(String),
}

impl When {
    pub(crate) fn seconds(&self) -> Option<i64> {
        match self {
            When::Seconds(s) if s.is_finite() && (0.0..1e12).contains(s) => Some(s.floor() as i64),
            When::Seconds(_) => None,
            When::Text(t) => parse_instant(t),
        }
    }
}

/// One point as sent: a timestamp and one `value` or several `values`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PointIn {
    /// When.
    pub timestamp: When,
    /// The value of a univariate stream.
    #[serde(default)]
    pub value: Option<f64>,
    /// The values, in the stream's column order.
    #[serde(default)]
    pub values: Option<Vec<f64>>,
}

/// `POST /v1/streams/{id}/points` as JSON.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PointsRequest {
    /// The points, in time order.
    pub points: Vec<PointIn>,
}

/// A checked point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Unix seconds.
    pub t: i64,
    /// Its values.
    pub values: Vec<f64>,
}

/// Checks points as sent: a timestamp that reads, exactly one of `value` and `values`.
pub fn points_from_json(points: Vec<PointIn>) -> Result<Vec<Point>, Problem> {
    check_count(points.len())?;
    read_points(points)
}

/// [`points_from_json`] without the count limit of one append.
pub(crate) fn read_points(points: Vec<PointIn>) -> Result<Vec<Point>, Problem> {
    points
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let t = p.timestamp.seconds().ok_or_else(|| {
                Problem::invalid_data(format!(
                    "point {i}: `timestamp` must be Unix seconds, RFC 3339 or YYYY-MM-DD HH:MM:SS (UTC)"
                ))
            })?;
            let values = match (p.value, p.values) {
                (Some(v), None) => vec![v],
                (None, Some(vs)) => vs,
                _ => {
                    return Err(Problem::invalid_data(format!(
                        "point {i}: give exactly one of `value` and `values`"
                    )))
                }
            };
            Ok(Point { t, values })
        })
        .collect()
}

fn check_count(n: usize) -> Result<(), Problem> {
    if n == 0 {
        return Err(Problem::invalid_data("no points were sent"));
    }
    if n > STREAM_MAX_POINTS {
        return Err(Problem::too_large(format!(
            "one request appends at most {STREAM_MAX_POINTS} points"
        )));
    }
    Ok(())
}

/// Reads points from CSV: a header with a `timestamp` column and the stream's value
/// columns by name (in any order; a univariate stream takes any one value column, such
/// as NAB's `value`).
pub fn points_from_csv(bytes: &[u8], columns: &[String]) -> Result<Vec<Point>, Problem> {
    let (points, _) = read_csv(
        bytes,
        columns,
        None,
        (
            STREAM_MAX_POINTS,
            &format!("one request appends at most {STREAM_MAX_POINTS} points"),
        ),
    )?;
    check_count(points.len())?;
    Ok(points)
}

/// Reads points from CSV as [`points_from_csv`] does, with a 0/1 label per point from
/// `label_column` when one is named (a label column is no value column). Past `limit`'s
/// count of points the read stops with 413 and `limit`'s words.
pub(crate) fn read_csv(
    bytes: &[u8],
    columns: &[String],
    label_column: Option<&str>,
    limit: (usize, &str),
) -> Result<(Vec<Point>, Option<Vec<bool>>), Problem> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| Problem::invalid_data(format!("CSV header: {e}")))?
        .iter()
        .map(str::to_string)
        .collect();
    let find = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            Problem::invalid_data(format!(
                "the CSV header has no `{name}` column (the value columns are {})",
                columns.join(", ")
            ))
        })
    };
    let t_col = find("timestamp")?;
    let label = label_column.map(find).transpose()?;
    let others: Vec<usize> = (0..header.len())
        .filter(|&i| i != t_col && Some(i) != label)
        .collect();
    let picks: Vec<usize> = if columns.len() == 1 && others.len() == 1 {
        others
    } else {
        columns.iter().map(|c| find(c)).collect::<Result<_, _>>()?
    };
    let mut points = Vec::new();
    let mut labels = label.map(|_| Vec::new());
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| Problem::invalid_data(format!("CSV line {line}: {e}")))?;
        if points.len() == limit.0 {
            return Err(Problem::too_large(limit.1));
        }
        let cell = |j: usize| record.get(j).unwrap_or("");
        let number = |j: usize| {
            cell(j)
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    Problem::invalid_data(format!(
                        "CSV line {line}, column `{}`: `{}` is not a finite number",
                        header[j],
                        cell(j)
                    ))
                })
        };
        let t = parse_instant(cell(t_col)).ok_or_else(|| {
            Problem::invalid_data(format!(
                "CSV line {line}: timestamp `{}` is not Unix seconds, RFC 3339 or YYYY-MM-DD HH:MM:SS",
                cell(t_col)
            ))
        })?;
        let values = picks.iter().map(|&j| number(j)).collect::<Result<_, _>>()?;
        if let (Some(j), Some(labels)) = (label, labels.as_mut()) {
            labels.push(number(j)? != 0.0);
        }
        points.push(Point { t, values });
    }
    Ok((points, labels))
}

/// Whether `threshold` lies on the stream scores' scale, (0, 1] (NaN and infinities do
/// not).
fn on_the_scale(threshold: f64) -> bool {
    threshold > 0.0 && threshold <= 1.0
}

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

/// A stream as the API shows it.
pub fn view(stream: &Stream, state: Option<&StreamState>) -> Value {
    let mut v = json!({
        "stream_id": stream.id,
        "name": stream.name,
        "detector": stream.detector,
        "columns": stream.columns,
        "threshold": threshold_of(stream),
        "points": stream.points,
        "anomalies": stream.anomalies,
        "last_timestamp": stream.last_timestamp,
        "version": stream.version,
        "created_at": stream.created_at.rfc3339(),
        "updated_at": stream.updated_at.rfc3339(),
        "channel": format!("stream:{}", stream.id),
    });
    if let Some(state) = state {
        v["state_stored"] = json!(match state {
            StreamState::Inline(_) => "inline",
            StreamState::Blob(_) => "blob",
        });
    }
    v
}

/// Creates a stream with a fresh detector.
pub async fn create(
    services: &Services,
    tenant: &TenantId,
    request: CreateStream,
) -> Result<Stream, Problem> {
    let (stream, bytes) = match request.from_backtest.clone() {
        Some(task) => from_backtest(services, tenant, request, &task).await?,
        None => {
            let (name, spec, columns, threshold) = request.into_parts()?;
            let bytes = StreamDetector::new(spec.clone(), columns.len())?.to_json()?;
            let detector_json =
                serde_json::to_value(&spec).map_err(|e| Problem::internal(e.to_string()))?;
            let stream = Stream::new(tenant.clone(), name, detector_json, columns, threshold);
            (stream, bytes)
        }
    };
    let state = store_state(services, &stream, bytes).await?;
    if let Err(e) = services.streams.create_stream(&stream, &state).await {
        discard(services, &state).await;
        return Err(e.into());
    }
    tracing::info!(stream_id = %stream.id, detector = %stream.detector["detector"], "stream created");
    Ok(stream)
}

/// A new stream that starts where backtest `task` ended: its detector, columns, points
/// learned and last timestamp, and its threshold unless the request gives one.
async fn from_backtest(
    services: &Services,
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
    let end = crate::service::backtest::end_state(services, tenant, task).await?;
    let threshold = checked_threshold(request.threshold.unwrap_or(end.threshold))?;
    let bytes = serde_json::to_vec(&end.detector).map_err(|e| Problem::internal(e.to_string()))?;
    let detector = StreamDetector::from_json(&bytes)?;
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
    services: &Services,
    tenant: &TenantId,
    id: &StreamId,
) -> Result<(Stream, StreamState), Problem> {
    services
        .streams
        .get_stream(tenant, id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("stream {id} not found")))
}

/// Deletes the stream and its state. The record goes only if no write landed since it
/// was read, so the state deleted is the state it pointed at.
pub async fn delete(services: &Services, tenant: &TenantId, id: &StreamId) -> Result<(), Problem> {
    for round in 0..MAX_ROUNDS {
        let (stream, state) = get(services, tenant, id).await?;
        match services
            .streams
            .delete_stream(tenant, id, stream.version)
            .await
        {
            Ok(()) => {
                discard(services, &state).await;
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

/// What appending points gave.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Appended {
    /// The stream.
    pub stream_id: StreamId,
    /// The stream's version after the write.
    pub version: u64,
    /// Points appended by this request.
    pub appended: usize,
    /// Points the stream has learned in all.
    pub points: u64,
    /// Each point's score on the common scale (the anomaly likelihood, in [0, 1]: what the
    /// threshold applies to), in the order sent.
    pub scores: Vec<f64>,
    /// Each point's raw score from the detector itself (a z-score, a tree mass score).
    pub raw_scores: Vec<f64>,
    /// The points scoring at or above the threshold.
    pub anomalies: Vec<Anomaly>,
    /// The threshold.
    pub threshold: f64,
    /// Compare-and-set rounds lost to concurrent writers before this one won.
    pub retries: u32,
    /// The `anomaly.detected` event published for the anomalies; `None` when there were
    /// none, or when storing the event failed (the points are stored all the same, and
    /// the anomalies are in this answer).
    pub event_id: Option<EventId>,
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
/// `anomaly.detected` on the stream's channel.
pub async fn append(
    services: &Services,
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
        let (scores, new_bytes, last_t) = tokio::task::spawn_blocking(move || {
            let mut detector = StreamDetector::from_json(&bytes)?;
            if detector.width() != width {
                return Err(Problem::internal("the stream's state does not match its record"));
            }
            let mut scores = Vec::with_capacity(batch.len());
            for (i, p) in batch.iter().enumerate() {
                scores.push(
                    detector
                        .update(p.t, &p.values)
                        .map_err(|e| Problem::invalid_data(format!("point {i}: {e}")))?,
                );
            }
            let bytes = detector.to_json()?;
            // Never store a state that would not load back: the stream would be stuck.
            StreamDetector::from_json(&bytes).map_err(|e| {
                Problem::invalid_data(format!(
                    "these points would leave the detector's state unusable ({e}); nothing was stored"
                ))
            })?;
            Ok((scores, bytes, batch.last().map(|p| p.t)))
        })
        .await
        .map_err(|e| Problem::internal(e.to_string()))??;
        let threshold = threshold_of(&stream);
        let anomalies: Vec<Anomaly> = scores
            .iter()
            .enumerate()
            .filter(|(_, s)| s.score >= threshold)
            .map(|(index, s)| Anomaly::new(index, &points[index], s, &stream.columns))
            .collect();
        let mut next = stream.clone();
        next.threshold = threshold;
        next.version += 1;
        next.write_id = crate::ids::Ulid::new().encode();
        next.points += points.len() as u64;
        next.anomalies += anomalies.len() as u64;
        next.last_timestamp = last_t.or(stream.last_timestamp);
        next.updated_at = Timestamp::now();
        let new_state = store_state(services, &next, new_bytes).await?;
        match write(services, &next, &new_state).await? {
            Written::Mine => {
                if old_state.blob() != new_state.blob() {
                    discard(services, &old_state).await;
                }
                let m = crate::metrics::global();
                m.add(crate::metrics::Counter::RowsScored, points.len() as u64);
                m.add(
                    crate::metrics::Counter::AnomaliesFound,
                    anomalies.len() as u64,
                );
                let event_id = if anomalies.is_empty() {
                    None
                } else {
                    publish(services, &next, correlation_id, &anomalies, &points).await
                };
                return Ok(Appended {
                    stream_id: next.id.clone(),
                    version: next.version,
                    appended: points.len(),
                    points: next.points,
                    raw_scores: scores.iter().map(|s| s.raw).collect(),
                    scores: scores.iter().map(|s| s.score).collect(),
                    anomalies,
                    threshold: next.threshold,
                    retries: round,
                    event_id,
                });
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
    services: &Services,
    next: &Stream,
    state: &StreamState,
) -> Result<Written, Problem> {
    let failure = match services.streams.update_stream(next, state).await {
        Ok(()) => return Ok(Written::Mine),
        Err(StoreError::Conflict(_)) => None,
        Err(StoreError::NotFound(what)) => {
            discard(services, state).await;
            return Err(Problem::not_found(format!("stream {what} not found")));
        }
        Err(e) => Some(e),
    };
    let stored = services.streams.get_stream(&next.tenant, &next.id).await;
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

/// The most points `spec` on `width` values may take within `budget` of work.
pub(crate) fn most_points(spec: &StreamSpec, width: usize, budget: usize) -> usize {
    let work = spec.footprint(width).work_per_point.max(1);
    (budget / work).max(1)
}

/// Refuses a request whose points would take the stream's detector too long.
fn check_work(stream: &Stream, points: usize) -> Result<(), Problem> {
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
async fn publish(
    services: &Services,
    stream: &Stream,
    correlation_id: &str,
    anomalies: &[Anomaly],
    points: &[Point],
) -> Option<EventId> {
    // Values only for narrow streams, so an event stays well under a WebSocket frame.
    let with_values = stream.columns.len() <= EVENT_VALUES_UP_TO;
    let listed: Vec<Value> = anomalies
        .iter()
        .take(EVENT_POINTS)
        .map(|a| {
            let mut p = json!({"index": a.index, "timestamp": a.timestamp, "score": a.score, "raw_score": a.raw_score});
            if with_values {
                p["values"] = json!(points[a.index].values);
                if let Some(expected) = &a.expected {
                    p["expected"] = json!(expected);
                }
                if let Some(shares) = &a.shares {
                    p["shares"] = json!(shares);
                }
                if let Some(direction) = &a.direction {
                    p["direction"] = json!(direction);
                }
            }
            p
        })
        .collect();
    let max_score = anomalies
        .iter()
        .map(|a| a.score)
        .fold(f64::NEG_INFINITY, f64::max);
    let published = services
        .publish(
            &stream.tenant,
            EventType::AnomalyDetected,
            correlation_id,
            json!({
                "stream_id": stream.id,
                "stream_name": stream.name,
                "points_scored": points.len(),
                "anomalies": anomalies.len(),
                "anomaly_points": listed,
                "max_score": max_score,
                "threshold": stream.threshold,
                "stream_version": stream.version,
            }),
        )
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

/// A fresh blob key for `stream`'s state at its version. Racing writers make the same
/// version, so the key also carries a writer-unique id: a loser deleting its own object
/// never deletes the winner's.
fn state_key(stream: &Stream) -> Result<BlobKey, Problem> {
    let file = format!(
        "state-{:020}-{}.json",
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
async fn store_state(
    services: &Services,
    stream: &Stream,
    bytes: Vec<u8>,
) -> Result<StreamState, Problem> {
    let record = serde_json::to_vec(stream)
        .map(|r| r.len())
        .map_err(|e| Problem::internal(e.to_string()))?;
    let limit = services
        .settings
        .stream_inline_state_bytes
        .min(MAX_INLINE_ITEM_BYTES);
    if bytes.len() + record + 1024 <= limit {
        return Ok(StreamState::Inline(bytes));
    }
    let key = state_key(stream)?;
    services.blobs.put_blob(&key, bytes).await?;
    Ok(StreamState::Blob(key))
}

/// The state's bytes; `None` when its blob is gone (a newer version replaced it).
async fn load_state(services: &Services, state: &StreamState) -> Result<Option<Vec<u8>>, Problem> {
    match state {
        StreamState::Inline(bytes) => Ok(Some(bytes.clone())),
        StreamState::Blob(key) => Ok(services.blobs.get_blob(key).await?),
    }
}

/// Deletes a state blob no record points at any more (logged, never failing the caller:
/// a leftover object costs storage, not correctness).
async fn discard(services: &Services, state: &StreamState) {
    if let Some(key) = state.blob() {
        if let Err(e) = services.blobs.delete_blob(key).await {
            tracing::warn!(key = key.as_str(), error = %e, "an old stream state was not deleted");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_read_from_json_and_csv_alike() {
        let json: PointsRequest = serde_json::from_str(
            r#"{"points":[{"timestamp":1396310400,"value":1.5},{"timestamp":"2014-04-01 00:05:00","values":[2.5]}]}"#,
        )
        .unwrap();
        let from_json = points_from_json(json.points).unwrap();
        let csv = b"timestamp,value\n2014-04-01 00:00:00,1.5\n1396310700,2.5\n";
        let from_csv = points_from_csv(csv, &["cpu".to_string()]).unwrap();
        assert_eq!(from_json, from_csv);
        assert_eq!(from_json[1].t, 1_396_310_700);
    }

    #[test]
    fn csv_columns_are_matched_by_name() {
        let cols = vec!["a".to_string(), "b".to_string()];
        let p = points_from_csv(b"b,timestamp,a\n2,10,1\n", &cols).unwrap();
        assert_eq!(
            p,
            vec![Point {
                t: 10,
                values: vec![1.0, 2.0]
            }]
        );
        for (bad, needle) in [
            (&b"a,b\n1,2\n"[..], "no `timestamp`"),
            (b"timestamp,a\n1,2\n", "no `b` column"),
            (b"timestamp,a,b\nnever,1,2\n", "line 2: timestamp `never`"),
            (b"timestamp,a,b\n1,x,2\n", "column `a`: `x`"),
            (b"timestamp,a,b\n1,NaN,2\n", "column `a`"),
            (b"timestamp,a,b\n", "no points"),
            (b"timestamp,a,b\n1,2\n", "CSV line 2"),
        ] {
            let e = points_from_csv(bad, &cols).unwrap_err();
            assert!(e.detail.contains(needle), "{needle}: {}", e.detail);
            assert!(e.status == 422, "{}", e.status);
        }
    }

    #[test]
    fn json_points_need_a_time_and_one_kind_of_value() {
        for (bad, needle) in [
            (r#"{"timestamp":"soon","value":1}"#, "`timestamp` must be"),
            (r#"{"timestamp":1,"value":1,"values":[1]}"#, "exactly one"),
            (r#"{"timestamp":1}"#, "exactly one"),
            (r#"{"timestamp":1e300,"value":1}"#, "`timestamp` must be"),
        ] {
            let p: PointIn = serde_json::from_str(bad).unwrap();
            let e = points_from_json(vec![p]).unwrap_err();
            assert!(e.detail.contains(needle), "{bad}: {}", e.detail);
        }
        assert_eq!(points_from_json(vec![]).unwrap_err().status, 422);
        let many = vec![
            PointIn {
                timestamp: When::Seconds(1.0),
                value: Some(1.0),
                values: None
            };
            STREAM_MAX_POINTS + 1
        ];
        assert_eq!(points_from_json(many).unwrap_err().status, 413);
    }

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

    #[test]
    fn creation_requests_are_checked() {
        let ok: CreateStream = serde_json::from_str(r#"{"name":"cpu"}"#).unwrap();
        let (name, spec, columns, threshold) = ok.into_parts().unwrap();
        assert_eq!(
            (name.as_str(), spec.name(), threshold),
            ("cpu", "seasonal", 0.5)
        );
        assert_eq!(columns, vec!["value"]);
        let hst: CreateStream = serde_json::from_str(
            r#"{"name":"m","detector":"half_space_trees","shingle":4,"params":{"n_trees":10}}"#,
        )
        .unwrap();
        assert_eq!(hst.into_parts().unwrap().1.name(), "half_space_trees");
        for bad in [
            r#"{"name":""}"#,
            r#"{"name":"x","detector":"prophet"}"#,
            r#"{"name":"x","detector":"seasonal","shingle":2}"#,
            r#"{"name":"x","params":[1]}"#,
            r#"{"name":"x","columns":[]}"#,
            r#"{"name":"x","columns":["a","a"]}"#,
            r#"{"name":"x","columns":["timestamp"]}"#,
            r#"{"name":"x","columns":["a\u0007b"]}"#,
            r#"{"name":"x\nnew line"}"#,
            r#"{"name":"x","threshold":0}"#,
            r#"{"name":"x","threshold":5.6}"#,
        ] {
            let r: CreateStream = serde_json::from_str(bad).unwrap();
            assert_eq!(r.into_parts().unwrap_err().status, 400, "{bad}");
        }
    }
}
