//! Numeric tables read from CSV: a header of column names, then one row of numbers per
//! line. Every error names the line (1 is the header) and the column.

use ndarray::Array2;
use std::io::{BufRead, BufReader, Read};
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
    /// Reading failed (I/O, bad gzip, invalid CSV quoting).
    #[error("line {line}: {source}")]
    Read {
        /// 1-based line number where reading stopped.
        line: u64,
        /// The underlying error.
        #[source]
        source: csv::Error,
    },
}

/// Options for [`read_csv`].
#[derive(Debug, Clone, Default)]
pub struct CsvOptions {
    /// Columns dropped before anything else (for example a `label` column).
    pub exclude: Vec<String>,
}

/// Reads a CSV table. Values must be finite numbers (surrounding spaces allowed); a
/// gzip stream (it starts with the gzip magic bytes) is decompressed first.
pub fn read_csv<R: Read>(reader: R, options: &CsvOptions) -> Result<Table, TableError> {
    let mut buffered = BufReader::with_capacity(1 << 16, reader);
    let is_gzip = buffered
        .fill_buf()
        .map(|b| b.starts_with(&[0x1f, 0x8b]))
        .unwrap_or(false);
    if is_gzip {
        read_plain(flate2::bufread::MultiGzDecoder::new(buffered), options)
    } else {
        read_plain(buffered, options)
    }
}

fn read_plain<R: Read>(reader: R, options: &CsvOptions) -> Result<Table, TableError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .buffer_capacity(1 << 16)
        .from_reader(reader);
    let mut record = csv::ByteRecord::new();
    let read_err = |source: csv::Error| TableError::Read {
        line: source.position().map_or(0, |p| p.line()),
        source,
    };
    if !csv.read_byte_record(&mut record).map_err(read_err)? {
        return Err(TableError::Empty);
    }
    let header: Vec<String> = record
        .iter()
        .map(|f| {
            String::from_utf8_lossy(f)
                .trim_start_matches('\u{feff}')
                .to_string()
        })
        .collect();
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
    while csv.read_byte_record(&mut record).map_err(read_err)? {
        let line = record.position().map_or(0, |p| p.line());
        if record.len() == 1 && record.get(0) == Some(b"") {
            continue; // a blank line
        }
        if record.len() != header.len() {
            return Err(TableError::Ragged {
                line,
                expected: header.len(),
                found: record.len(),
            });
        }
        for &i in &keep {
            let field = record.get(i).unwrap_or_default();
            values.push(parse_cell(field).map_err(|problem| TableError::Cell {
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
            &CsvOptions {
                exclude: exclude.iter().map(|s| s.to_string()).collect(),
            },
        )
    }

    #[test]
    fn reads_numbers_and_drops_excluded_columns() {
        let t = read("a,label,b\n1,0,2.5\n-3e2, 1 ,4\n\n", &["label"]).unwrap();
        assert_eq!(t.columns, vec!["a", "b"]);
        assert_eq!(t.data, ndarray::array![[1.0, 2.5], [-300.0, 4.0]]);
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
        let e = read_csv(&b"a\n\xff\n"[..], &CsvOptions::default()).unwrap_err();
        assert!(e.to_string().contains("UTF-8"), "{e}");
    }
}
