//! Rows from requests: a JSON matrix or a CSV body, checked into a matrix with column
//! names, and the fitting options a request names.

use crate::bounded::Exceeded;
use crate::limits::{self, MAX_COLUMNS};
use crate::service::Problem;
use crate::table::{read_csv, CsvOptions};
use ndarray::Array2;
use nomaly_detect::columns::map_columns;
use nomaly_detect::{Algorithm, DetectError, FitOptions, ThresholdRule};
use serde::{Deserialize, Serialize};

/// Rows to fit or score, with their column names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rows {
    /// Column names, in matrix column order.
    pub columns: Vec<String>,
    /// One row per input row.
    pub rows: Vec<Vec<f64>>,
    /// Whether the sender named the columns (a CSV header, JSON `columns`). Unnamed
    /// rows are called `f0, f1, ...` and go to a stored model by position.
    #[serde(default)]
    pub named: bool,
}

impl Rows {
    /// Checks a JSON matrix: at least one row, every row as wide as the first, every value
    /// finite, at most [`MAX_COLUMNS`] columns, and `columns` (when given) naming each column once.
    /// Missing names are `f0, f1, ...`.
    pub fn new(rows: Vec<Vec<f64>>, columns: Option<Vec<String>>) -> Result<Self, Problem> {
        let width = rows
            .first()
            .map(Vec::len)
            .ok_or_else(|| Problem::invalid_data("`rows` is empty: send at least one row"))?;
        if width == 0 {
            return Err(Problem::invalid_data("row 0 has no values"));
        }
        if width > MAX_COLUMNS {
            return Err(Exceeded {
                limit: limits::COLUMNS.name,
                detail: format!(
                    "rows have {width} columns; at most {} are accepted",
                    limits::COLUMNS.shown()
                ),
            }
            .into());
        }
        if (rows.len() as u64).saturating_mul(width as u64) > limits::MAX_REQUEST_CELLS {
            return Err(Exceeded {
                limit: limits::REQUEST_CELLS.name,
                detail: format!(
                    "{} rows of {width} values; at most {} values are accepted",
                    rows.len(),
                    limits::REQUEST_CELLS.shown()
                ),
            }
            .into());
        }
        if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != width) {
            return Err(Problem::invalid_data(format!(
                "row {i} has {} values, but row 0 has {width}",
                r.len()
            )));
        }
        for (i, r) in rows.iter().enumerate() {
            if let Some(j) = r.iter().position(|v| !v.is_finite()) {
                return Err(Problem::invalid_data(format!(
                    "row {i}, column {j} is not a finite number"
                )));
            }
        }
        let named = columns.is_some();
        let columns = match columns {
            Some(c) if c.len() != width => {
                return Err(Problem::invalid_data(format!(
                    "`columns` names {} columns, but the rows have {width}",
                    c.len()
                )))
            }
            Some(c) => {
                let mut seen = std::collections::HashSet::new();
                if let Some(dup) = c.iter().find(|n| !seen.insert(n.as_str())) {
                    return Err(Problem::invalid_data(format!(
                        "column `{dup}` is named twice"
                    )));
                }
                c
            }
            None => (0..width).map(|i| format!("f{i}")).collect(),
        };
        Ok(Rows {
            columns,
            rows,
            named,
        })
    }

    /// Reads a CSV (a header, then numbers; gzip accepted) within `options`' limits.
    pub fn from_csv(bytes: &[u8], options: &CsvOptions) -> Result<Self, Problem> {
        let table = read_csv(bytes, options)?;
        let rows = table.data.outer_iter().map(|r| r.to_vec()).collect();
        Ok(Rows {
            columns: table.columns,
            rows,
            named: true,
        })
    }

    /// The rows as a stored model takes them: its features, by name when the rows name
    /// their columns (other columns are left out, and listed in the answer), by position
    /// when they do not. A feature the rows do not name is a 422 naming it.
    pub fn for_model(self, features: &[String]) -> Result<(Rows, Vec<String>), Problem> {
        let width = self.columns.len();
        let map =
            map_columns(features, self.named.then_some(&self.columns[..]), width).map_err(|e| {
                match e {
                    DetectError::WidthMismatch { expected, found } => {
                        Problem::invalid_data(format!(
                    "the model takes {expected} features ({}), but the rows have {found} values; \
                     name the columns (`columns`, or a CSV header) to have them matched by name",
                    features.join(", ")
                ))
                    }
                    other => Problem::from(other),
                }
            })?;
        let rows = if map.is_identity(width) {
            self.rows
        } else {
            self.rows
                .iter()
                .map(|r| map.order.iter().map(|&j| r[j]).collect())
                .collect()
        };
        let aligned = Rows {
            columns: features.to_vec(),
            rows,
            named: true,
        };
        Ok((aligned, map.ignored))
    }

    /// The rows as a matrix.
    pub fn matrix(&self) -> Array2<f64> {
        let width = self.columns.len();
        let flat: Vec<f64> = self.rows.iter().flatten().copied().collect();
        Array2::from_shape_vec((self.rows.len(), width), flat)
            .unwrap_or_else(|_| Array2::zeros((0, width)))
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// What to fit: an algorithm, its parameters and the threshold rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FitSpec {
    /// `iforest`, `ecod`, `copod`, `hbos`, `zscore`, `knn`, `lof`, `pca` or `kmeans`.
    pub algorithm: String,
    /// Algorithm parameters (left-out ones take their defaults).
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Share of rows expected to be anomalies, in (0, 0.5] (default 0.1).
    #[serde(default)]
    pub contamination: Option<f64>,
    /// A fixed score threshold instead of a contamination.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Seed of every random choice (default 0).
    #[serde(default)]
    pub seed: u64,
}

impl FitSpec {
    /// The fitting options, checked: a known algorithm, known parameters in range, and
    /// at most one of `contamination` and `threshold`.
    pub fn options(&self, feature_names: Vec<String>) -> Result<FitOptions, Problem> {
        let algorithm = Algorithm::with_params(&self.algorithm, &self.params)?;
        let mut options = FitOptions::new(algorithm);
        options.seed = self.seed;
        options.feature_names = Some(feature_names);
        options.threshold = match (self.contamination, self.threshold) {
            (Some(_), Some(_)) => {
                return Err(Problem::invalid_parameter(
                    "give `contamination` or `threshold`, not both",
                ))
            }
            (Some(c), None) => ThresholdRule::Contamination(c),
            (None, Some(t)) => ThresholdRule::Score(t),
            (None, None) => ThresholdRule::default(),
        };
        Ok(options)
    }

    /// Checks the spec without data.
    pub fn validate(&self) -> Result<(), Problem> {
        let options = self.options(Vec::new())?;
        if let ThresholdRule::Contamination(c) = options.threshold {
            if !(c > 0.0 && c <= 0.5) {
                return Err(Problem::invalid_parameter(
                    "`contamination` must be in (0, 0.5]",
                ));
            }
        }
        if let Some(t) = self.threshold {
            if !t.is_finite() {
                return Err(Problem::invalid_parameter("`threshold` must be finite"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_rows_are_checked() {
        assert!(Rows::new(vec![], None).is_err());
        assert!(Rows::new(vec![vec![]], None).is_err());
        let ragged = Rows::new(vec![vec![1.0, 2.0], vec![1.0]], None).unwrap_err();
        assert!(ragged.detail.contains("row 1 has 1 values"), "{ragged}");
        assert!(Rows::new(vec![vec![1.0]], Some(vec!["a".into(), "b".into()])).is_err());
        assert!(Rows::new(vec![vec![1.0, 2.0]], Some(vec!["a".into(), "a".into()])).is_err());
        assert!(Rows::new(vec![vec![0.0; MAX_COLUMNS + 1]], None).is_err());
        let ok = Rows::new(vec![vec![1.0, 2.0], vec![3.0, 4.0]], None).unwrap();
        assert_eq!(ok.columns, vec!["f0", "f1"]);
        assert_eq!(ok.matrix()[[1, 0]], 3.0);
    }

    #[test]
    fn csv_rows_keep_names_and_refuse_text() {
        let r = Rows::from_csv(
            b"a,b,label\n1,2,0\n3,4,1\n",
            &CsvOptions::request(&["label".into()]),
        )
        .unwrap();
        assert_eq!(r.columns, vec!["a", "b"]);
        assert_eq!(r.rows, vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
        let e = Rows::from_csv(b"a,b\n1,x\n", &CsvOptions::default()).unwrap_err();
        assert_eq!(e.status, 422);
        assert!(e.detail.contains("line 2"), "{e}");
        let wide = format!("{}\n", vec!["c"; MAX_COLUMNS + 1].join(","));
        assert_eq!(
            Rows::from_csv(wide.as_bytes(), &CsvOptions::default())
                .unwrap_err()
                .status,
            413
        );
    }

    #[test]
    fn fit_specs_are_checked() {
        let spec: FitSpec = serde_json::from_str(r#"{"algorithm":"iforest"}"#).unwrap();
        spec.validate().unwrap();
        let both: FitSpec =
            serde_json::from_str(r#"{"algorithm":"iforest","contamination":0.1,"threshold":0.5}"#)
                .unwrap();
        assert_eq!(both.validate().unwrap_err().status, 400);
        let unknown: FitSpec = serde_json::from_str(r#"{"algorithm":"magic"}"#).unwrap();
        assert_eq!(unknown.validate().unwrap_err().slug, "invalid-parameter");
        let bad_param: FitSpec =
            serde_json::from_str(r#"{"algorithm":"knn","params":{"nope":1}}"#).unwrap();
        assert_eq!(bad_param.validate().unwrap_err().slug, "invalid-parameter");
        assert!(serde_json::from_str::<FitSpec>(r#"{"algorithm":"knn","nope":1}"#).is_err());
    }

    /// Bounded fuzzing of the matrix parsers (a fixed number of cases, so it runs in
    /// CI): CSV bodies built from cells that break parsers, and random bytes, must parse
    /// or be refused with a 4xx problem, never panic; what parses is rectangular and
    /// finite.
    #[test]
    fn the_matrix_parsers_refuse_or_parse_anything_without_panicking() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let cell = prop::sample::select(vec![
            "1",
            "-2.5",
            "1e308",
            "1e999",
            "-1e999",
            "NaN",
            "nan",
            "inf",
            "-Infinity",
            "",
            " ",
            "x",
            "\"",
            "\"1\"",
            "\"a,b\"",
            "0x10",
            "1_000",
            "\u{feff}1",
            "é",
            "\r",
            "\t3",
            "label",
        ]);
        let line = prop::collection::vec(cell, 0..6).prop_map(|c| c.join(","));
        let csv = prop_oneof![
            3 => prop::collection::vec(line, 0..8).prop_map(|l| l.join("\n").into_bytes()),
            1 => prop::collection::vec(any::<u8>(), 0..200),
        ];
        let mut runner = TestRunner::new(Config {
            cases: 4000,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&(csv, any::<bool>()), |(bytes, exclude)| {
                let exclude = if exclude {
                    vec!["label".to_string()]
                } else {
                    vec![]
                };
                match Rows::from_csv(&bytes, &CsvOptions::request(&exclude)) {
                    Ok(rows) => {
                        let width = rows.columns.len();
                        prop_assert!(width > 0 && !rows.rows.is_empty());
                        prop_assert!(rows.rows.iter().all(|r| r.len() == width));
                        prop_assert!(rows.rows.iter().flatten().all(|v| v.is_finite()));
                    }
                    Err(p) => prop_assert!((400..500).contains(&p.status), "{p}"),
                }
                Ok(())
            })
            .unwrap();
        let number = prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), Just(0.0)];
        let rows = prop::collection::vec(prop::collection::vec(number, 0..5), 0..6);
        runner
            .run(&rows, |rows| {
                match Rows::new(rows, None) {
                    Ok(r) => prop_assert!(r.rows.iter().flatten().all(|v| v.is_finite())),
                    Err(p) => prop_assert!((400..500).contains(&p.status), "{p}"),
                }
                Ok(())
            })
            .unwrap();
    }
}
