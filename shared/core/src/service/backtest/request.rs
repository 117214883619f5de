//! What a backtest request sends and how it is checked before and after queueing: the
//! request, the job it becomes, its labels, its size, and reading a dataset's points.

use crate::bounded::{self, Bounds, Exceeded};
use crate::ids::{DatasetId, TaskId};
use crate::limits::{
    self, BACKTEST_MAX_CELLS, BACKTEST_MAX_POINTS, BACKTEST_MAX_WINDOWS, BACKTEST_MAX_WORK,
};
use crate::service::streams::{self, Point, PointIn, When};
use crate::service::Problem;
use nomaly_detect::stream::StreamSpec;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Read;

/// `POST /v1/backtests`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BacktestRequest {
    /// The detector, as for `POST /v1/streams` (default `seasonal`).
    #[serde(default)]
    pub detector: Option<String>,
    /// Its parameters.
    #[serde(default)]
    pub params: Option<Value>,
    /// Half-Space Trees only: values per point from consecutive points.
    #[serde(default)]
    pub shingle: Option<usize>,
    /// The value columns (default: a dataset's columns but `timestamp` and the label
    /// column; `["value"]` inline).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// The threshold judged (default: the detector's default).
    #[serde(default)]
    pub threshold: Option<f64>,
    /// An uploaded, profiled dataset with a `timestamp` column (or give `points`).
    #[serde(default)]
    pub dataset_id: Option<DatasetId>,
    /// Points inline, as for `POST /v1/streams/{id}/points` (or give `dataset_id`).
    #[serde(default)]
    pub points: Option<Vec<PointIn>>,
    /// The dataset's 0/1 label column (default `label` when the dataset has one).
    #[serde(default)]
    pub label_column: Option<String>,
    /// Labelled windows as inclusive time ranges (instead of a label column).
    #[serde(default)]
    pub windows: Option<Vec<WindowIn>>,
}

/// A labelled window as sent.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowIn {
    /// Its first instant.
    pub start: When,
    /// Its last instant.
    pub end: When,
}

/// Where a backtest's points come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// An uploaded dataset.
    Dataset {
        /// Which.
        dataset_id: DatasetId,
        /// Its label column, if any.
        label_column: Option<String>,
    },
    /// Points sent with the request: `(unix seconds, values)`.
    Inline {
        /// The points.
        points: Vec<(i64, Vec<f64>)>,
    },
}

/// The body of a `backtest` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BacktestJob {
    /// The task.
    pub task_id: TaskId,
    /// The detector.
    pub spec: StreamSpec,
    /// Its value columns.
    pub columns: Vec<String>,
    /// The threshold judged.
    pub threshold: f64,
    /// The points.
    pub source: Source,
    /// Labelled windows as inclusive Unix-second ranges, when given as times.
    pub windows: Option<Vec<(i64, i64)>>,
}
pub(super) fn windows_of(windows: Vec<WindowIn>) -> Result<Vec<(i64, i64)>, Problem> {
    if windows.len() > BACKTEST_MAX_WINDOWS {
        return Err(Problem::invalid_parameter(format!(
            "at most {BACKTEST_MAX_WINDOWS} windows are accepted"
        )));
    }
    windows
        .into_iter()
        .enumerate()
        .map(|(i, w)| match (w.start.seconds(), w.end.seconds()) {
            (Some(s), Some(e)) => Ok((s, e)),
            _ => Err(Problem::invalid_parameter(format!(
                "window {i}: `start` and `end` must be Unix seconds, RFC 3339 or YYYY-MM-DD HH:MM:SS (UTC)"
            ))),
        })
        .collect()
}

/// The column names of a dataset's stored profile.
pub(super) fn header_of(profile: &Option<Value>) -> Vec<String> {
    columns_where(profile, |_| true)
}

/// The numeric columns of a dataset's stored profile.
pub(super) fn numeric_columns(profile: &Option<Value>) -> Vec<String> {
    columns_where(profile, |c| {
        c.get("type").and_then(Value::as_str) == Some("numeric")
    })
}

fn columns_where(profile: &Option<Value>, keep: impl Fn(&Value) -> bool) -> Vec<String> {
    profile
        .as_ref()
        .and_then(|p| p.get("column_profiles"))
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .filter(|c| keep(c))
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn check_count(n: usize) -> Result<(), Problem> {
    if n == 0 {
        return Err(Problem::invalid_data("the backtest has no points"));
    }
    if n > BACKTEST_MAX_POINTS {
        return Err(Problem::too_large(format!(
            "a backtest runs over at most {BACKTEST_MAX_POINTS} points (this one has {n})"
        )));
    }
    Ok(())
}

pub(super) fn check_work(spec: &StreamSpec, width: usize, points: usize) -> Result<(), Problem> {
    if points.saturating_mul(width) > BACKTEST_MAX_CELLS {
        return Err(Problem::too_large(format!(
            "a backtest takes at most {BACKTEST_MAX_CELLS} values (points x columns); this one has {points} x {width}"
        )));
    }
    let most = streams::most_points(spec, width, BACKTEST_MAX_WORK);
    if points > most {
        return Err(Problem::too_large(format!(
            "this detector backtests at most {most} points; use fewer points, or a lighter detector"
        )));
    }
    Ok(())
}

/// Reads a dataset's points (`timestamp`, the value columns by name) and its 0/1 labels,
/// inflating gzip within [`limits::BACKTEST_INFLATED`].
pub(super) fn read_csv(
    bytes: &[u8],
    columns: &[String],
    label_column: Option<&str>,
) -> Result<(Vec<Point>, Option<Vec<bool>>), Problem> {
    let bounds = Bounds {
        inflated: &limits::BACKTEST_INFLATED,
        line_bytes: limits::MAX_LINE_BYTES,
    };
    let mut inflated = Vec::new();
    bounded::open(bytes, bounds)
        .read_to_end(&mut inflated)
        .map_err(|e| match Exceeded::in_io(&e) {
            Some(limit) => Problem::from(limit.clone()),
            None => Problem::invalid_data(format!("the dataset could not be read: {e}")),
        })?;
    streams::read_csv(
        &inflated,
        columns,
        streams::Columns {
            label: label_column,
            entity: None,
        },
        (
            BACKTEST_MAX_POINTS,
            &format!("a backtest runs over at most {BACKTEST_MAX_POINTS} points"),
        ),
    )
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::BACKTEST_MAX_INFLATED_BYTES;

    #[test]
    fn a_dataset_reads_with_its_labels_by_name() {
        let csv = b"label,timestamp,b,a\n0,2014-04-01 00:00:00,1,2\n1,1396310700,3,4\n";
        let (points, labels) =
            read_csv(csv, &["a".to_string(), "b".to_string()], Some("label")).unwrap();
        assert_eq!(points.len(), 2);
        assert_eq!(points[1].t, 1_396_310_700);
        assert_eq!(points[0].values, vec![2.0, 1.0]);
        assert_eq!(labels, Some(vec![false, true]));
        let err = read_csv(csv, &["c".to_string()], None).unwrap_err();
        assert_eq!(err.status, 422);
        assert!(err.detail.contains("`c`"), "{}", err.detail);
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(b"timestamp,value\n").unwrap();
        let line = b"1396310400,0\n".repeat(1 << 16);
        for _ in 0..((BACKTEST_MAX_INFLATED_BYTES as usize / line.len()) + 2) {
            gz.write_all(&line).unwrap();
        }
        let bytes = gz.finish().unwrap();
        let err = read_csv(&bytes, &["value".to_string()], None).unwrap_err();
        assert_eq!(err.status, 413);
    }
}
