//! Numeric tables read from CSV: a header of column names, then one row of numbers per
//! line. Every error names the line (1 is the header) and the column.

use crate::bounded::{self, Bounds, Exceeded};
use crate::limits::{self, Limit};
use ndarray::Array2;
use std::borrow::Cow;
use std::io::{BufRead, Read};
use thiserror::Error;

/// A numeric table: column names and a row-major matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column names, in matrix column order.
    pub columns: Vec<String>,
    /// One row per data line.
    pub data: Array2<f64>,
}

/// What went wrong reading a table.
#[derive(Debug, Error)]
pub enum TableError {
    /// The input has no header line.
    #[error("the input is empty: expected a header line of column names")]
    Empty,
    /// The header has an empty or repeated name.
    #[error("line 1: {0}")]
    Header(String),
    /// A column to exclude is not in the header.
    #[error("column `{0}` given to exclude is not in the header")]
    UnknownColumn(String),
    /// Excluding columns left none.
    #[error("no columns are left after excluding {0}")]
    NoColumnsLeft(String),
    /// A line has more or fewer fields than the header.
    #[error("line {line}: {found} fields, but the header has {expected}")]
    Ragged {
        /// 1-based line number.
        line: u64,
        /// Header width.
        expected: usize,
        /// Fields on this line.
        found: usize,
    },
    /// A cell is not a finite number.
    #[error("line {line}, column `{column}`: {problem}")]
    Cell {
        /// 1-based line number.
        line: u64,
        /// Column name.
        column: String,
        /// What is wrong with the value.
        problem: String,
    },
    /// The header has no data lines under it.
    #[error("the input has a header but no data rows")]
    NoRows,
    /// Reading failed (I/O, bad gzip).
    #[error("after line {line}: {cause}")]
    Read {
        /// 1-based number of the last line read whole.
        line: u64,
        /// What went wrong.
        cause: String,
    },
    /// The input went past one of the limits.
    #[error("{0}")]
    Limit(#[from] Exceeded),
    /// A line's quoting is broken.
    #[error("line {line}: {cause}")]
    Quoting {
        /// 1-based line number.
        line: u64,
        /// What the CSV parser said.
        cause: String,
    },
}

/// Options for [`read_csv`].
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// Columns dropped before anything else (for example a `label` column).
    pub exclude: Vec<String>,
    /// What the input may inflate to, and its longest line.
    pub bounds: Bounds,
    /// The most values (rows x kept columns) read.
    pub cells: &'static Limit,
}

impl Default for CsvOptions {
    /// A request body's limits.
    fn default() -> Self {
        CsvOptions {
            exclude: Vec::new(),
            bounds: Bounds::REQUEST,
            cells: &limits::REQUEST_CELLS,
        }
    }
}

impl CsvOptions {
    /// A stored dataset's limits, leaving out `exclude`.
    pub fn dataset(exclude: &[String]) -> Self {
        CsvOptions {
            exclude: exclude.to_vec(),
            bounds: Bounds::DATASET,
            cells: &limits::DATASET_CELLS,
        }
    }

    /// A request body's limits, leaving out `exclude`.
    pub fn request(exclude: &[String]) -> Self {
        CsvOptions {
            exclude: exclude.to_vec(),
            ..CsvOptions::default()
        }
    }
}

/// Reads a CSV table. Values must be finite numbers (surrounding spaces allowed); a
/// gzip stream (it starts with the gzip magic bytes) is decompressed first. The read
/// stops at the first limit of `options` it passes: inflated bytes, line length, columns
/// or values.
pub fn read_csv<R: Read>(reader: R, options: &CsvOptions) -> Result<Table, TableError> {
    read_plain(bounded::open(reader, options.bounds), options)
}

/// Reads one line into `buf` without its line ending; false at the end of the input.
fn next_line<R: BufRead>(reader: &mut R, buf: &mut Vec<u8>, line: u64) -> Result<bool, TableError> {
    buf.clear();
    let n = reader
        .read_until(b'\n', buf)
        .map_err(|e| match Exceeded::in_io(&e) {
            Some(limit) => TableError::Limit(limit.clone()),
            None => TableError::Read {
                line,
                cause: e.to_string(),
            },
        })?;
    while buf.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
        buf.pop();
    }
    Ok(n > 0)
}

/// The fields of one line, trimmed. Lines with quotes go through the CSV parser; the rest
/// (numeric data) are split on commas directly.
pub(crate) fn split_fields<'a>(
    line: &'a [u8],
    number: u64,
    out: &mut Vec<Cow<'a, [u8]>>,
) -> Result<(), TableError> {
    out.clear();
    if !line.contains(&b'"') {
        out.extend(
            line.split(|&b| b == b',')
                .map(|f| Cow::Borrowed(f.trim_ascii())),
        );
        return Ok(());
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .from_reader(line);
    let mut record = csv::ByteRecord::new();
    let quoting = |cause: String| TableError::Quoting {
        line: number,
        cause,
    };
    reader
        .read_byte_record(&mut record)
        .map_err(|e| quoting(e.to_string()))?;
    out.extend(record.iter().map(|f| Cow::Owned(f.to_vec())));
    if reader
        .read_byte_record(&mut record)
        .map_err(|e| quoting(e.to_string()))?
    {
        return Err(quoting(
            "a quoted field runs past the end of the line".into(),
        ));
    }
    Ok(())
}

/// Line numbers count every line of the input, blank ones too, so errors point at the
/// line a user sees in an editor. Quoted fields may not span lines.
fn read_plain<R: BufRead>(mut reader: R, options: &CsvOptions) -> Result<Table, TableError> {
    let mut buf = Vec::new();
    if !next_line(&mut reader, &mut buf, 0)? {
        return Err(TableError::Empty);
    }
    let mut fields = Vec::new();
    split_fields(&buf, 1, &mut fields)?;
    let header: Vec<String> = fields
        .iter()
        .map(|f| {
            String::from_utf8_lossy(f)
                .trim_start_matches('\u{feff}')
                .to_string()
        })
        .collect();
    if header.len() > limits::MAX_COLUMNS {
        return Err(TableError::Limit(Exceeded {
            limit: limits::COLUMNS.name,
            detail: format!(
                "the header has {} columns; at most {} are accepted",
                header.len(),
                limits::COLUMNS.shown()
            ),
        }));
    }
    for (i, name) in header.iter().enumerate() {
        if name.is_empty() {
            return Err(TableError::Header(format!("column {} has no name", i + 1)));
        }
        if header[..i].contains(name) {
            return Err(TableError::Header(format!("column `{name}` appears twice")));
        }
    }
    for name in &options.exclude {
        if !header.contains(name) {
            return Err(TableError::UnknownColumn(name.clone()));
        }
    }
    let keep: Vec<usize> = (0..header.len())
        .filter(|&i| !options.exclude.contains(&header[i]))
        .collect();
    if keep.is_empty() {
        return Err(TableError::NoColumnsLeft(options.exclude.join(", ")));
    }
    let columns: Vec<String> = keep.iter().map(|&i| header[i].clone()).collect();
    let mut values: Vec<f64> = Vec::new();
    let mut rows = 0usize;
    let mut line = 1u64;
    while next_line(&mut reader, &mut buf, line)? {
        line += 1;
        // With several columns a blank line is no row; with one column it is a missing
        // value, refused below like any other empty cell.
        if header.len() > 1 && buf.trim_ascii().is_empty() {
            continue;
        }
        if (values.len() + keep.len()) as u64 > options.cells.value {
            return Err(TableError::Limit(Exceeded {
                limit: options.cells.name,
                detail: format!(
                    "more than {} values ({} columns)",
                    options.cells.shown(),
                    keep.len()
                ),
            }));
        }
        let mut fields = Vec::with_capacity(header.len());
        split_fields(&buf, line, &mut fields)?;
        if fields.len() != header.len() {
            return Err(TableError::Ragged {
                line,
                expected: header.len(),
                found: fields.len(),
            });
        }
        for &i in &keep {
            values.push(parse_cell(&fields[i]).map_err(|problem| TableError::Cell {
                line,
                column: header[i].clone(),
                problem,
            })?);
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(TableError::NoRows);
    }
    let data =
        Array2::from_shape_vec((rows, keep.len()), values).map_err(|e| TableError::Cell {
            line: 0,
            column: String::new(),
            problem: e.to_string(),
        })?;
    Ok(Table { columns, data })
}

/// A finite number, or a message saying why the cell is not one.
fn parse_cell(field: &[u8]) -> Result<f64, String> {
    if field.is_empty() {
        return Err("empty value (missing values are not supported)".into());
    }
    let text = std::str::from_utf8(field).map_err(|_| "value is not valid UTF-8".to_string())?;
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("`{text}` is not a finite number")),
        Err(_) => Err(format!("`{}` is not a number", shorten(text))),
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() > 40 {
        format!("{}...", text.chars().take(40).collect::<String>())
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read(text: &str, exclude: &[&str]) -> Result<Table, TableError> {
        read_csv(
            text.as_bytes(),
            &CsvOptions::request(&exclude.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
        )
    }

    #[test]
    fn reads_numbers_and_drops_excluded_columns() {
        let t = read(
            "\u{feff}a,label,\"b\"\r\n1,0,2.5\r\n-3e2, 1 ,\"4\"\n\n",
            &["label"],
        )
        .unwrap();
        assert_eq!(t.columns, vec!["a", "b"]);
        assert_eq!(t.data, ndarray::array![[1.0, 2.5], [-300.0, 4.0]]);
    }

    #[test]
    fn a_truncated_gzip_names_where_it_stopped_once() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let text: String = (0..2000).map(|i| format!("{i},{i}\n")).collect();
        gz.write_all(format!("x,y\n{text}").as_bytes()).unwrap();
        let bytes = gz.finish().unwrap();
        let e = read_csv(&bytes[..bytes.len() / 2], &CsvOptions::default()).unwrap_err();
        let message = e.to_string();
        assert!(message.starts_with("after line "), "{message}");
        assert!(!message.starts_with("after line 0"), "{message}");
        assert!(
            std::error::Error::source(&e).is_none(),
            "the cause is told once"
        );
    }

    #[test]
    fn reads_gzip() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"x,y\n1,2\n3,4\n").unwrap();
        let bytes = gz.finish().unwrap();
        let t = read_csv(&bytes[..], &CsvOptions::default()).unwrap();
        assert_eq!(t.data, ndarray::array![[1.0, 2.0], [3.0, 4.0]]);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = read("a,b\n1,2\n3,abc\n", &[]).unwrap_err();
        assert_eq!(e.to_string(), "line 3, column `b`: `abc` is not a number");
        let e = read("a,b\n1,2\n3\n", &[]).unwrap_err();
        assert_eq!(e.to_string(), "line 3: 1 fields, but the header has 2");
        let e = read("a,b\n1,\n", &[]).unwrap_err();
        assert!(
            e.to_string().starts_with("line 2, column `b`: empty value"),
            "{e}"
        );
        let e = read("a,b\nNaN,1\n", &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2, column `a`: `NaN` is not a finite number"
        );
        assert!(matches!(read("", &[]), Err(TableError::Empty)));
        assert!(matches!(read("a,b\n", &[]), Err(TableError::NoRows)));
        assert!(matches!(
            read("a,a\n1,2\n", &[]),
            Err(TableError::Header(_))
        ));
        assert!(matches!(
            read("a,b\n1,2\n", &["c"]),
            Err(TableError::UnknownColumn(_))
        ));
        assert!(matches!(
            read("a\n1\n", &["a"]),
            Err(TableError::NoColumnsLeft(_))
        ));
        // With one column a blank line is a missing value, not something to skip.
        // Blank lines count, so the line named is the one an editor shows.
        let e = read("a,b\n1,2\n\n\n3,x\n", &[]).unwrap_err();
        assert_eq!(e.to_string(), "line 5, column `b`: `x` is not a number");
        // Quoted cells are unquoted (numeric data rarely has them, headers sometimes do).
        let t = read("\"a\",\"b\"\n\"1\",\" 2 \"\n", &[]).unwrap();
        assert_eq!(t.data, ndarray::array![[1.0, 2.0]]);
        let e = read("a\n1\n\n2\n", &[]).unwrap_err();
        assert!(
            e.to_string().starts_with("line 3, column `a`: empty value"),
            "{e}"
        );
        let e = read_csv(&b"a\n\xff\n"[..], &CsvOptions::default()).unwrap_err();
        assert!(e.to_string().contains("UTF-8"), "{e}");
    }

    #[test]
    fn reads_stop_at_the_request_limits() {
        // The bomb, scaled down: one repeated row that inflates 1000-fold.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(b"a,b,c\n").unwrap();
        for _ in 0..2_000 {
            gz.write_all(&b"0,0,0\n".repeat(10_000)).unwrap();
        }
        let bomb = gz.finish().unwrap();
        // Whichever limit it meets first (the ratio allows a head start of one buffer of
        // gzip), it stops long before 120 MB are inflated.
        match read_csv(&bomb[..], &CsvOptions::default()) {
            Err(TableError::Limit(e)) => assert!(
                [limits::INFLATE_RATIO.name, limits::REQUEST_CELLS.name].contains(&e.limit),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
        // Plain rows past the values a request may carry.
        let rows = limits::MAX_REQUEST_CELLS / 2 + 1;
        let mut text = b"a,b\n".to_vec();
        for i in 0..rows {
            text.extend_from_slice(format!("{i},1\n").as_bytes());
        }
        match read_csv(&text[..], &CsvOptions::default()) {
            Err(TableError::Limit(e)) => assert_eq!(e.limit, limits::REQUEST_CELLS.name),
            other => panic!("{other:?}"),
        }
        let t = read_csv(&text[..], &CsvOptions::dataset(&[])).unwrap();
        assert_eq!(t.data.nrows() as u64, rows);
    }
}
