//! Dataset profiles: one pass over an uploaded CSV that says what is in it and what is
//! wrong with it, before anyone trains on it.
//!
//! Per column: inferred type (numeric, text or empty), missing cells, distinct values
//! (counted exactly up to a cap), and for numeric columns min, max, mean, standard
//! deviation (exact, Welford) and quantiles (exact up to a cap of rows, from a uniform
//! reservoir sample beyond). Across columns: constant columns and columns identical to
//! an earlier one. Rows with the wrong number of fields are counted, not fatal.
//!
//! Memory is bounded whatever the file's shape: the input is read a line at a time
//! through [`bounded::open`], and the samples and distinct sets of all columns share
//! the limits table's budgets, so a wide file keeps fewer values per column.

use crate::bounded::{self, Bounds, Exceeded};
use crate::limits;
use crate::table;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::BufRead;

/// Values kept per column for quantiles, at most (fewer when the file is wide).
const RESERVOIR: usize = 100_000;
/// Distinct values counted exactly per column, at most (fewer when the file is wide).
const DISTINCT_CAP: usize = 10_000;
/// Quantiles reported.
const QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];

/// What can stop a profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Not CSV with a header.
    #[error("{0}")]
    Unreadable(String),
    /// The file went past one of the limits.
    #[error("{0}")]
    Limit(#[from] Exceeded),
}

/// One column's profile.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnProfile {
    /// Header name.
    pub name: String,
    /// `numeric`, `text` or `empty`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Empty, `NA`, `NaN`, `null` cells.
    pub missing: u64,
    /// Distinct non-missing values (capped; see `distinct_capped`).
    pub distinct: u64,
    /// Whether `distinct` stopped counting at its cap.
    pub distinct_capped: bool,
    /// Numeric columns: smallest value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Numeric columns: largest value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Numeric columns: mean.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// Numeric columns: sample standard deviation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub std: Option<f64>,
    /// Numeric columns: `p1, p5, p25, p50, p75, p95, p99`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<serde_json::Map<String, serde_json::Value>>,
    /// Whether every non-missing value is the same.
    pub constant: bool,
    /// The earlier column this one repeats exactly, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
}

/// A dataset's quality report.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// Data rows (not counting the header or blank lines).
    pub rows: u64,
    /// Columns in the header.
    pub columns: usize,
    /// Rows with more or fewer fields than the header (skipped).
    pub ragged_rows: u64,
    /// Per column.
    pub column_profiles: Vec<ColumnProfile>,
    /// Numeric, non-constant, non-duplicate columns: what training would use.
    pub usable_columns: Vec<String>,
    /// Plain-language findings.
    pub issues: Vec<String>,
    /// Whether the quantiles come from a sample (more than 100 000 rows).
    pub sampled_quantiles: bool,
}

struct Acc {
    missing: u64,
    numeric: u64,
    text: u64,
    min: f64,
    max: f64,
    mean: f64,
    m2: f64,
    n: u64,
    reservoir: Vec<f64>,
    reservoir_cap: usize,
    /// Hashes of the distinct values: 8 bytes each, however long the values.
    distinct: HashSet<u64>,
    distinct_cap: usize,
    distinct_capped: bool,
    hash: Sha256,
    rng: u64,
}

impl Acc {
    fn new(seed: u64, reservoir_cap: usize, distinct_cap: usize) -> Self {
        Acc {
            missing: 0,
            numeric: 0,
            text: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            mean: 0.0,
            m2: 0.0,
            n: 0,
            reservoir: Vec::new(),
            reservoir_cap,
            distinct: HashSet::new(),
            distinct_cap,
            distinct_capped: false,
            hash: Sha256::new(),
            rng: seed | 1,
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: enough for a reservoir.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn add(&mut self, cell: &[u8]) {
        self.hash.update(cell);
        self.hash.update(b"\x1f");
        let trimmed = cell.trim_ascii();
        if trimmed.is_empty() || matches!(trimmed, b"NA" | b"NaN" | b"nan" | b"null" | b"NULL") {
            self.missing += 1;
            return;
        }
        if !self.distinct_capped {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            trimmed.hash(&mut h);
            let h = h.finish();
            if self.distinct.len() < self.distinct_cap {
                self.distinct.insert(h);
            } else if !self.distinct.contains(&h) {
                self.distinct_capped = true;
            }
        }
        match std::str::from_utf8(trimmed)
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|v| v.is_finite())
        {
            Some(v) => {
                self.numeric += 1;
                self.n += 1;
                self.min = self.min.min(v);
                self.max = self.max.max(v);
                let d = v - self.mean;
                self.mean += d / self.n as f64;
                self.m2 += d * (v - self.mean);
                if self.reservoir.len() < self.reservoir_cap {
                    self.reservoir.push(v);
                } else {
                    let j = (self.next_random() % self.n) as usize;
                    if j < self.reservoir_cap {
                        self.reservoir[j] = v;
                    }
                }
            }
            None => self.text += 1,
        }
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    // Linear interpolation between closest ranks (numpy's default).
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Reads the next line into `buf` without its ending; false at the end.
fn next_line(
    reader: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    line: &mut u64,
) -> Result<bool, ProfileError> {
    buf.clear();
    let n = reader
        .read_until(b'\n', buf)
        .map_err(|e| match Exceeded::in_io(&e) {
            Some(limit) => ProfileError::Limit(limit.clone()),
            None => ProfileError::Unreadable(format!("after line {line}: {e}")),
        })?;
    *line += 1;
    while buf.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
        buf.pop();
    }
    Ok(n > 0)
}

/// Profiles a CSV (plain or gzip) with a header line, within the limits table's bounds
/// for datasets. Quoted fields may not span lines (such rows count as ragged).
pub fn profile_csv(bytes: &[u8]) -> Result<Profile, ProfileError> {
    let mut reader = bounded::open(bytes, Bounds::DATASET);
    let mut buf = Vec::new();
    let mut line = 0u64;
    let mut next = |buf: &mut Vec<u8>| -> Result<bool, ProfileError> {
        buf.clear();
        let n = reader
            .read_until(b'\n', buf)
            .map_err(|e| match Exceeded::in_io(&e) {
                Some(limit) => ProfileError::Limit(limit.clone()),
                None => ProfileError::Unreadable(format!("after line {line}: {e}")),
            })?;
        line += 1;
        while buf.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            buf.pop();
        }
        Ok(n > 0)
    };
    if !next(&mut buf)? {
        return Err(ProfileError::Unreadable(
            "the file is empty: expected a header line".into(),
        ));
    }
    let mut head = Vec::new();
    table::split_fields(&buf, 1, &mut head).map_err(|e| ProfileError::Unreadable(e.to_string()))?;
    let header: Vec<String> = head
        .iter()
        .map(|h| {
            String::from_utf8_lossy(h)
                .trim_start_matches('\u{feff}')
                .trim()
                .to_string()
        })
        .collect();
    if header.len() > limits::MAX_COLUMNS {
        return Err(ProfileError::Limit(Exceeded {
            limit: limits::COLUMNS.name,
            detail: format!(
                "the header has {} columns; at most {} are accepted",
                header.len(),
                limits::COLUMNS.shown()
            ),
        }));
    }
    if header.iter().all(|h| h.is_empty()) {
        return Err(ProfileError::Unreadable(
            "the file is empty: expected a header line".into(),
        ));
    }
    let reservoir_cap = (limits::PROFILE_SAMPLE_VALUES / header.len()).clamp(1, RESERVOIR);
    let distinct_cap = (limits::PROFILE_DISTINCT_VALUES / header.len()).clamp(1, DISTINCT_CAP);
    let mut accs: Vec<Acc> = (0..header.len())
        .map(|i| {
            Acc::new(
                0x9E37_79B9_7F4A_7C15 ^ i as u64,
                reservoir_cap,
                distinct_cap,
            )
        })
        .collect();
    let (mut rows, mut ragged) = (0u64, 0u64);
    drop(head);
    while next_line(&mut reader, &mut buf, &mut line)? {
        if buf.trim_ascii().is_empty() {
            continue;
        }
        let mut fields = Vec::with_capacity(header.len());
        if table::split_fields(&buf, line, &mut fields).is_err() || fields.len() != header.len() {
            ragged += 1;
            continue;
        }
        rows += 1;
        for (acc, cell) in accs.iter_mut().zip(fields.iter()) {
            acc.add(cell);
        }
    }
    let mut issues = Vec::new();
    let mut seen_hashes: Vec<(Vec<u8>, String)> = Vec::new();
    let mut column_profiles = Vec::with_capacity(header.len());
    let mut usable = Vec::new();
    let sampled = rows as usize > reservoir_cap;
    for (name, acc) in header.iter().zip(accs) {
        let kind = if acc.numeric + acc.text == 0 {
            "empty"
        } else if acc.text == 0 {
            "numeric"
        } else {
            "text"
        };
        let digest = acc.hash.clone().finalize().to_vec();
        let duplicate_of = seen_hashes
            .iter()
            .find(|(h, _)| *h == digest)
            .map(|(_, n)| n.clone());
        if duplicate_of.is_none() {
            seen_hashes.push((digest, name.clone()));
        }
        let distinct = acc.distinct.len() as u64;
        let constant = distinct <= 1 && !acc.distinct_capped;
        let mut p = ColumnProfile {
            name: name.clone(),
            kind,
            missing: acc.missing,
            distinct,
            distinct_capped: acc.distinct_capped,
            min: None,
            max: None,
            mean: None,
            std: None,
            quantiles: None,
            constant,
            duplicate_of: duplicate_of.clone(),
        };
        if kind == "numeric" {
            let mut sample = acc.reservoir;
            sample.sort_by(f64::total_cmp);
            p.min = Some(acc.min);
            p.max = Some(acc.max);
            p.mean = Some(acc.mean);
            p.std = Some(if acc.n > 1 {
                (acc.m2 / (acc.n - 1) as f64).sqrt()
            } else {
                0.0
            });
            p.quantiles = Some(
                QUANTILES
                    .iter()
                    .map(|&q| {
                        (
                            format!("p{}", (q * 100.0).round()),
                            serde_json::json!(quantile(&sample, q)),
                        )
                    })
                    .collect(),
            );
        }
        match kind {
            "empty" => issues.push(format!("column `{name}` has no values")),
            "text" => issues.push(format!(
                "column `{name}` has {} non-numeric values; it cannot be used for training (exclude it)",
                acc.text
            )),
            _ => {}
        }
        if constant && kind != "empty" {
            issues.push(format!("column `{name}` is constant; it carries no signal"));
        }
        if let Some(first) = &duplicate_of {
            issues.push(format!("column `{name}` repeats column `{first}` exactly"));
        }
        if acc.missing > 0 && rows > 0 {
            issues.push(format!(
                "column `{name}` is missing {} of {rows} values ({:.1} %)",
                acc.missing,
                100.0 * acc.missing as f64 / rows as f64
            ));
        }
        if kind == "numeric" && !constant && duplicate_of.is_none() && acc.missing == 0 {
            usable.push(name.clone());
        }
        column_profiles.push(p);
    }
    if ragged > 0 {
        issues.push(format!(
            "{ragged} rows have a different number of fields from the header"
        ));
    }
    if rows == 0 {
        issues.push("the file has a header but no data rows".into());
    }
    Ok(Profile {
        rows,
        columns: header.len(),
        ragged_rows: ragged,
        column_profiles,
        usable_columns: usable,
        issues,
        sampled_quantiles: sampled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn profiles_types_missing_constants_and_duplicates() {
        let csv = b"a,b,c,d,e\n1,x,5,1,\n2,y,5,2,\n3,,5,3,\n4,z,5,4,\n1,2\n";
        let p = profile_csv(csv).unwrap();
        assert_eq!((p.rows, p.columns, p.ragged_rows), (4, 5, 1));
        let col = |n: &str| p.column_profiles.iter().find(|c| c.name == n).unwrap();
        assert_eq!(col("a").kind, "numeric");
        assert_eq!(col("a").min, Some(1.0));
        assert_eq!(col("a").max, Some(4.0));
        assert_eq!(col("a").mean, Some(2.5));
        assert!((col("a").std.unwrap() - 1.2909944).abs() < 1e-6);
        assert_eq!(col("a").quantiles.as_ref().unwrap()["p50"], 2.5);
        assert_eq!(col("b").kind, "text");
        assert_eq!(col("b").missing, 1);
        assert!(col("c").constant);
        assert_eq!(col("d").duplicate_of.as_deref(), Some("a"));
        assert_eq!(col("e").kind, "empty");
        assert_eq!(p.usable_columns, vec!["a"]);
        assert!(p.issues.iter().any(|i| i.contains("`c` is constant")));
        assert!(p
            .issues
            .iter()
            .any(|i| i.contains("`d` repeats column `a`")));
    }

    #[test]
    fn gzip_and_garbage() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"x\n1\n2\n").unwrap();
        let p = profile_csv(&gz.finish().unwrap()).unwrap();
        assert_eq!(p.rows, 2);
        assert!(profile_csv(b"").is_err());
        let p = profile_csv(b"only\n").unwrap();
        assert_eq!(p.rows, 0);
    }

    #[test]
    fn large_columns_use_a_sample_for_quantiles() {
        let mut text = String::from("v\n");
        for i in 0..150_000 {
            text.push_str(&format!("{i}\n"));
        }
        let p = profile_csv(text.as_bytes()).unwrap();
        assert!(p.sampled_quantiles);
        let c = &p.column_profiles[0];
        assert_eq!(c.max, Some(149_999.0));
        let median = c.quantiles.as_ref().unwrap()["p50"].as_f64().unwrap();
        assert!((median - 75_000.0).abs() < 2_000.0, "{median}");
        assert!(c.distinct_capped);
    }

    #[test]
    fn a_wide_file_keeps_fewer_values_per_column() {
        let columns = 2_000;
        let mut text: String = (0..columns).map(|c| format!("c{c},")).collect();
        text.pop();
        text.push('\n');
        for r in 0..3_000 {
            let row: Vec<String> = (0..columns)
                .map(|c| ((r * 31 + c) % 997).to_string())
                .collect();
            text.push_str(&row.join(","));
            text.push('\n');
        }
        let p = profile_csv(text.as_bytes()).unwrap();
        assert_eq!((p.rows, p.columns), (3_000, columns));
        // 4,000,000 sample values over 2,000 columns: 2,000 each, fewer than the rows.
        assert!(p.sampled_quantiles);
        let c = &p.column_profiles[0];
        assert!(c.distinct_capped, "500 distinct values kept per column");
        assert_eq!(
            c.distinct,
            (limits::PROFILE_DISTINCT_VALUES / columns) as u64
        );
    }

    #[test]
    fn bombs_and_long_lines_stop_at_their_limits() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(b"a,b,c\n").unwrap();
        for _ in 0..2_000 {
            gz.write_all(&b"0,0,0\n".repeat(10_000)).unwrap();
        }
        let bomb = gz.finish().unwrap();
        match profile_csv(&bomb) {
            Err(ProfileError::Limit(e)) => assert_eq!(e.limit, limits::INFLATE_RATIO.name),
            other => panic!("{other:?}"),
        }
        let mut long = b"a\n".to_vec();
        long.extend(std::iter::repeat_n(
            b'7',
            limits::MAX_LINE_BYTES as usize + 1,
        ));
        match profile_csv(&long) {
            Err(ProfileError::Limit(e)) => assert_eq!(e.limit, limits::LINE.name),
            other => panic!("{other:?}"),
        }
        let wide = format!("{}\n", vec!["c"; limits::MAX_COLUMNS + 1].join(","));
        match profile_csv(wide.as_bytes()) {
            Err(ProfileError::Limit(e)) => assert_eq!(e.limit, limits::COLUMNS.name),
            other => panic!("{other:?}"),
        }
    }
}
