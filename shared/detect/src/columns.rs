//! How the columns of rows sent to a model map onto the features it was trained on: by
//! name when the rows name their columns, by position when they do not. One function,
//! used wherever a stored model scores rows.

use crate::{DetectError, Result};

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
pub fn map_columns(
    features: &[String],
    columns: Option<&[String]>,
    width: usize,
) -> Result<ColumnMap> {
    let Some(columns) = columns else {
        if width != features.len() {
            return Err(DetectError::WidthMismatch {
                expected: features.len(),
                found: width,
            });
        }
        return Ok(ColumnMap {
            order: (0..width).collect(),
            ignored: Vec::new(),
        });
    };
    if let Some(dup) = columns
        .iter()
        .enumerate()
        .find(|(i, c)| columns[..*i].contains(c))
        .map(|(_, c)| c)
    {
        return Err(DetectError::InvalidParameter {
            name: "columns",
            reason: format!("name `{dup}` more than once"),
        });
    }
    let mut order = Vec::with_capacity(features.len());
    let mut missing = Vec::new();
    for f in features {
        match columns.iter().position(|c| c == f) {
            Some(j) => order.push(j),
            None => missing.push(f.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(DetectError::MissingColumns {
            missing,
            features: features.to_vec(),
        });
    }
    let ignored = columns
        .iter()
        .filter(|c| !features.contains(c))
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
}
