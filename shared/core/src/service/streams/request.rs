//! What a stream's requests send, and how it is read: a new stream's name, detector,
//! columns and threshold, and points as JSON or CSV, checked before anything is stored.

use super::state::check_footprint;
use crate::domain::{GapPolicy, LatePolicy};
use crate::ids::TaskId;
use crate::limits::{STREAM_MAX_POINTS, STREAM_MAX_WIDTH};
use crate::service::Problem;
use crate::time::parse_instant;
use nomaly_detect::stream::StreamSpec;
use serde::Deserialize;
use serde_json::{json, Value};

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
    /// What to do with a point earlier than the stream's last, or the last point sent
    /// again: `reject` the request, `drop` the point (the default) or `clamp` it to the
    /// last point's time.
    #[serde(default)]
    pub late: Option<LatePolicy>,
    /// What to do with points missing from the series: `skip` (the default), or learn
    /// them as the `previous` value or on a `linear` line.
    #[serde(default)]
    pub gaps: Option<GapPolicy>,
    /// Seconds between points (1 to 31,536,000); inferred from the first request with at
    /// least two steps when not given.
    #[serde(default)]
    pub interval: Option<i64>,
    /// Splits the stream by entity: the CSV column or JSON key naming each point's
    /// entity (`host`). Each entity gets its own detector, made on its first point.
    #[serde(default)]
    pub entity: Option<String>,
    /// With `entity`: at most this many entities at once (1 to 100,000; default 10,000).
    #[serde(default)]
    pub max_entities: Option<u64>,
    /// With `entity`: seconds without a point after which an entity may be evicted to
    /// make room for a new one (60 to 31,536,000; default 604,800, a week).
    #[serde(default)]
    pub entity_ttl: Option<i64>,
}

/// Entities per stream, when the request does not say.
pub const DEFAULT_MAX_ENTITIES: u64 = 10_000;
/// The most entities a stream may keep.
pub const MOST_ENTITIES: u64 = 100_000;
/// An entity's idle time before it may be evicted, when the request does not say.
pub const DEFAULT_ENTITY_TTL: i64 = 7 * 86_400;

impl CreateStream {
    /// The entity split asked for, checked against the stream's `columns`.
    pub(super) fn entity_split(
        &self,
        columns: &[String],
    ) -> Result<Option<crate::domain::EntitySplit>, Problem> {
        let Some(field) = self.entity.as_deref() else {
            if self.max_entities.is_some() || self.entity_ttl.is_some() {
                return Err(Problem::invalid_parameter(
                    "`max_entities` and `entity_ttl` apply to a stream split by `entity` only",
                ));
            }
            return Ok(None);
        };
        if !crate::domain::stream::is_entity_name(field)
            || field == "timestamp"
            || columns.iter().any(|c| c == field)
        {
            return Err(Problem::invalid_parameter(
                "`entity` must be 1 to 128 bytes without control characters, and neither `timestamp` nor one of the value columns",
            ));
        }
        if self.from_backtest.is_some() {
            return Err(Problem::invalid_parameter(
                "a stream made `from_backtest` cannot be split by `entity`",
            ));
        }
        let max_entities = self.max_entities.unwrap_or(DEFAULT_MAX_ENTITIES);
        if !(1..=MOST_ENTITIES).contains(&max_entities) {
            return Err(Problem::invalid_parameter(format!(
                "`max_entities` must be 1 to {MOST_ENTITIES}"
            )));
        }
        let idle_ttl = self.entity_ttl.unwrap_or(DEFAULT_ENTITY_TTL);
        if !(60..=31_536_000).contains(&idle_ttl) {
            return Err(Problem::invalid_parameter(
                "`entity_ttl` must be 60 to 31,536,000 seconds",
            ));
        }
        Ok(Some(crate::domain::EntitySplit {
            field: field.to_string(),
            max_entities,
            idle_ttl,
        }))
    }
}

/// An interval, checked.
pub(super) fn checked_interval(interval: Option<i64>) -> Result<Option<i64>, Problem> {
    match interval {
        Some(i) if !(1..=31_536_000).contains(&i) => Err(Problem::invalid_parameter(
            "`interval` must be 1 to 31,536,000 seconds",
        )),
        other => Ok(other),
    }
}

/// A stream's name, checked and trimmed.
pub(super) fn checked_name(name: &str) -> Result<String, Problem> {
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

/// One point as sent: a timestamp and one `value` or several `values`, and for a
/// stream split by entity, its entity under the stream's `entity` key (`"host":
/// "web-1"`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct PointIn {
    /// When.
    pub timestamp: When,
    /// The value of a univariate stream.
    #[serde(default)]
    pub value: Option<f64>,
    /// The values, in the stream's column order.
    #[serde(default)]
    pub values: Option<Vec<f64>>,
    /// Any other key: the entity, under the key the stream names (a string or a number).
    #[serde(flatten)]
    #[schema(ignore)]
    pub other: serde_json::Map<String, Value>,
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
    /// Its entity, as sent: the key or column that named it, and its value.
    pub entity: Option<(String, String)>,
}

impl Point {
    /// A point of no entity.
    pub fn new(t: i64, values: Vec<f64>) -> Self {
        Point {
            t,
            values,
            entity: None,
        }
    }
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
            let mut other = p.other.into_iter();
            let entity = match (other.next(), other.next()) {
                (None, _) => None,
                (Some((key, value)), None) => Some((key, entity_value(i, value)?)),
                (Some((a, _)), Some((b, _))) => {
                    return Err(Problem::invalid_data(format!(
                        "point {i}: unknown fields `{a}` and `{b}`: a point has `timestamp`, `value` or `values`, and its entity under the stream's `entity` key"
                    )))
                }
            };
            Ok(Point { t, values, entity })
        })
        .collect()
}

/// An entity's name as sent in JSON: a string, or a number written as one.
fn entity_value(i: usize, value: Value) -> Result<String, Problem> {
    let name = match value {
        Value::String(s) => s,
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    if !crate::domain::stream::is_entity_name(&name) {
        return Err(Problem::invalid_data(format!(
            "point {i}: an entity is a string or number of 1 to 128 bytes without control characters"
        )));
    }
    Ok(name)
}

pub(super) fn check_count(n: usize) -> Result<(), Problem> {
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
/// For a stream split by entity, `entity` names the column holding each point's entity.
pub fn points_from_csv(
    bytes: &[u8],
    columns: &[String],
    entity: Option<&str>,
) -> Result<Vec<Point>, Problem> {
    let (points, _) = read_csv(
        bytes,
        columns,
        Columns {
            label: None,
            entity,
        },
        (
            STREAM_MAX_POINTS,
            &format!("one request appends at most {STREAM_MAX_POINTS} points"),
        ),
    )?;
    check_count(points.len())?;
    Ok(points)
}

/// Columns of a CSV that hold no values.
#[derive(Clone, Copy, Default)]
pub(crate) struct Columns<'a> {
    /// A 0/1 label per point.
    pub label: Option<&'a str>,
    /// Each point's entity.
    pub entity: Option<&'a str>,
}

/// Reads points from CSV as [`points_from_csv`] does, with a 0/1 label per point from
/// the `label` column and an entity from the `entity` column when they are named
/// (neither is a value column). Past `limit`'s count of points the read stops with 413
/// and `limit`'s words.
pub(crate) fn read_csv(
    bytes: &[u8],
    columns: &[String],
    extra: Columns<'_>,
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
    let label = extra.label.map(find).transpose()?;
    let entity = extra.entity.map(find).transpose()?;
    let others: Vec<usize> = (0..header.len())
        .filter(|&i| i != t_col && Some(i) != label && Some(i) != entity)
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
        let entity = match entity {
            Some(j) if crate::domain::stream::is_entity_name(cell(j)) => {
                Some((header[j].clone(), cell(j).to_string()))
            }
            Some(j) => {
                return Err(Problem::invalid_data(format!(
                    "CSV line {line}, column `{}`: an entity is 1 to 128 bytes without control characters",
                    header[j]
                )))
            }
            None => None,
        };
        points.push(Point { t, values, entity });
    }
    Ok((points, labels))
}

/// Whether `threshold` lies on the stream scores' scale, (0, 1] (NaN and infinities do
/// not).
pub(super) fn on_the_scale(threshold: f64) -> bool {
    threshold > 0.0 && threshold <= 1.0
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
        let from_csv = points_from_csv(csv, &["cpu".to_string()], None).unwrap();
        assert_eq!(from_json, from_csv);
        assert_eq!(from_json[1].t, 1_396_310_700);
    }

    #[test]
    fn csv_columns_are_matched_by_name() {
        let cols = vec!["a".to_string(), "b".to_string()];
        let p = points_from_csv(b"b,timestamp,a\n2,10,1\n", &cols, None).unwrap();
        assert_eq!(p, vec![Point::new(10, vec![1.0, 2.0])]);
        for (bad, needle) in [
            (&b"a,b\n1,2\n"[..], "no `timestamp`"),
            (b"timestamp,a\n1,2\n", "no `b` column"),
            (b"timestamp,a,b\nnever,1,2\n", "line 2: timestamp `never`"),
            (b"timestamp,a,b\n1,x,2\n", "column `a`: `x`"),
            (b"timestamp,a,b\n1,NaN,2\n", "column `a`"),
            (b"timestamp,a,b\n", "no points"),
            (b"timestamp,a,b\n1,2\n", "CSV line 2"),
        ] {
            let e = points_from_csv(bad, &cols, None).unwrap_err();
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
                values: None,
                other: Default::default(),
            };
            STREAM_MAX_POINTS + 1
        ];
        assert_eq!(points_from_json(many).unwrap_err().status, 413);
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
