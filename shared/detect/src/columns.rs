//! How the columns of rows sent to a model map onto the features it was trained on: by
//! name when the rows name their columns, by position when they do not. One function,
//! used wherever a stored model scores rows.

use crate::{DetectError, Result};
use std::collections::HashMap;

/// Where a model's features are in the input, and what the input has besides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMap {
    /// For each feature, in the model's order, the input column holding it.
    pub order: Vec<usize>,
    /// Input columns the model does not take (ids, labels), in input order.
    pub ignored: Vec<String>,
}

impl ColumnMap {
    /// Whether the input is already the model's columns in the model's order.
    pub fn is_identity(&self, width: usize) -> bool {
        self.ignored.is_empty()
            && self.order.len() == width
            && self.order.iter().enumerate().all(|(i, &j)| i == j)
    }
}

/// Maps input columns onto `features`.
///
/// - `columns` names the input's columns: each feature is taken by name, wherever it
///   is; columns the model does not take are left out and listed; a feature the input
///   does not name is an error that names it.
/// - `columns` is `None` (rows without names): they are taken in the model's order, and
///   must be exactly as wide.
/// - A model fitted on rows without names has the features `f0, f1, ...`: named input
///   as wide as it, naming none of them, is taken by position too.
pub fn map_columns(
    features: &[String],
    columns: Option<&[String]>,
    width: usize,
) -> Result<ColumnMap> {
    let by_position = || {
        if width != features.len() {
            return Err(DetectError::WidthMismatch {
                expected: features.len(),
                found: width,
            });
        }
        Ok(ColumnMap {
            order: (0..width).collect(),
            ignored: Vec::new(),
        })
    };
    let Some(columns) = columns else {
        return by_position();
    };
    let mut at: HashMap<&str, usize> = HashMap::with_capacity(columns.len());
    for (j, c) in columns.iter().enumerate() {
        if at.insert(c.as_str(), j).is_some() {
            return Err(DetectError::InvalidParameter {
                name: "columns",
                reason: format!("name `{c}` more than once"),
            });
        }
    }
    let unnamed_model = features
        .iter()
        .enumerate()
        .all(|(i, f)| *f == format!("f{i}"));
    if unnamed_model
        && width == features.len()
        && features.iter().all(|f| !at.contains_key(f.as_str()))
    {
        return by_position();
    }
    let mut order = Vec::with_capacity(features.len());
    let mut missing = Vec::new();
    for f in features {
        match at.get(f.as_str()) {
            Some(&j) => order.push(j),
            None => missing.push(f.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(DetectError::MissingColumns {
            missing,
            features: features.to_vec(),
        });
    }
    let taken: std::collections::HashSet<&str> = features.iter().map(String::as_str).collect();
    let ignored = columns
        .iter()
        .filter(|c| !taken.contains(c.as_str()))
        .cloned()
        .collect();
    Ok(ColumnMap { order, ignored })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &str) -> Vec<String> {
        s.split(',').map(str::to_string).collect()
    }

    #[test]
    fn named_columns_are_taken_by_name_and_extras_are_listed() {
        let m = map_columns(&names("cpu,mem,disk"), Some(&names("id,disk,cpu,mem")), 4).unwrap();
        assert_eq!(m.order, vec![2, 3, 1]);
        assert_eq!(m.ignored, vec!["id"]);
        assert!(!m.is_identity(4));
        let same = map_columns(&names("cpu,mem"), Some(&names("cpu,mem")), 2).unwrap();
        assert!(same.is_identity(2));
    }

    #[test]
    fn a_missing_column_is_named() {
        let e = map_columns(&names("cpu,mem,disk"), Some(&names("cpu,mem,net")), 3).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the rows have no `disk` column, which the model takes (its features are cpu, mem, disk)"
        );
        let e = map_columns(&names("a,b,c"), Some(&names("x")), 1).unwrap_err();
        assert!(e.to_string().contains("`a`, `b` and `c` columns"), "{e}");
    }

    #[test]
    fn unnamed_rows_go_by_position_and_must_fit() {
        let m = map_columns(&names("cpu,mem"), None, 2).unwrap();
        assert_eq!(m.order, vec![0, 1]);
        assert!(matches!(
            map_columns(&names("cpu,mem"), None, 3),
            Err(DetectError::WidthMismatch {
                expected: 2,
                found: 3
            })
        ));
        assert!(map_columns(&names("cpu"), Some(&names("cpu,cpu")), 2).is_err());
    }

    #[test]
    fn a_model_fitted_without_names_takes_a_header_by_position() {
        let m = map_columns(&names("f0,f1"), Some(&names("a,b")), 2).unwrap();
        assert_eq!(m.order, vec![0, 1]);
        // A header naming its features is still read by name.
        let m = map_columns(&names("f0,f1"), Some(&names("f1,f0")), 2).unwrap();
        assert_eq!(m.order, vec![1, 0]);
        assert!(map_columns(&names("f0,f1"), Some(&names("a,b,c")), 3).is_err());
    }
}
