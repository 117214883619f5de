//! Scoring one chunk's rows with a model, a slice at a time, into a `score,label` part,
//! and counting a written part's rows.

use crate::service::Problem;
use crate::table::{read_csv, CsvOptions};
use nomaly_detect::columns::map_columns;
use nomaly_detect::Model;

/// One chunk scored.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredChunk {
    /// One `score,label` line per row, in the chunk's order.
    pub csv: Vec<u8>,
    /// Rows scored.
    pub rows: usize,
    /// Rows labelled anomalous.
    pub anomalies: usize,
}

/// The column names of a `header` line, checked to hold every feature `model` takes.
pub fn check_features(model: &Model, header: &str) -> Result<Vec<String>, Problem> {
    let names: Vec<String> = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .from_reader(header.as_bytes())
        .records()
        .next()
        .and_then(Result::ok)
        .map(|r| r.iter().map(str::to_string).collect())
        .unwrap_or_default();
    // The message names the model's features only, never the source's header.
    map_columns(model.feature_names(), Some(&names), names.len())
        .map_err(|e| Problem::invalid_data(format!("the object's header: {e}")))?;
    Ok(names)
}

/// The rows and anomalies of a part written by [`score_chunk`] (`score,label` lines).
pub fn count_part(part: &[u8]) -> (u64, u64) {
    let lines = part.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    lines.fold((0, 0), |(rows, anomalies), l| {
        (rows + 1, anomalies + u64::from(l.ends_with(b",1")))
    })
}

/// Rows parsed and scored at a time within a chunk (about this many bytes of them), so
/// a chunk's parsed matrix never holds more than a slice of it: a worker's memory is its
/// chunk's bytes, its output and one slice.
const SLICE_BYTES: usize = 4 << 20;

/// Scores one chunk's rows (CSV lines without the header) with `model`. The object's
/// `header` names the columns; the model's features are taken by name, in the model's
/// order, and other columns are left out. A row that is ragged or not numeric refuses
/// the chunk, naming the line within it (counted from the slice of rows it is in, whose
/// first byte the message gives).
pub fn score_chunk(model: &Model, header: &str, rows: &[u8]) -> Result<ScoredChunk, Problem> {
    score_in_slices(model, header, rows, SLICE_BYTES)
}

fn score_in_slices(
    model: &Model,
    header: &str,
    rows: &[u8],
    slice_bytes: usize,
) -> Result<ScoredChunk, Problem> {
    let names = check_features(model, header)?;
    let features = model.feature_names();
    let exclude: Vec<String> = names
        .iter()
        .filter(|n| !features.contains(n))
        .cloned()
        .collect();
    let header_line = format!("{header}\n");
    let mut out = ScoredChunk {
        csv: Vec::with_capacity(rows.len() / 3),
        rows: 0,
        anomalies: 0,
    };
    let mut at = 0;
    while at < rows.len() {
        let cut = (at + slice_bytes.max(1)).min(rows.len());
        let end = match rows[cut..].iter().position(|&b| b == b'\n') {
            Some(i) if cut < rows.len() => cut + i + 1,
            _ => rows.len(),
        };
        let slice = &rows[at..end];
        if slice.iter().all(u8::is_ascii_whitespace) {
            // Blank lines (a file's trailing newlines) have no rows to score.
            at = end;
            continue;
        }
        let input = std::io::Read::chain(header_line.as_bytes(), slice);
        let table = read_csv(input, &CsvOptions::dataset(&exclude)).map_err(|e| {
            let p = Problem::from(e);
            if at == 0 {
                p
            } else {
                Problem::for_status(
                    p.status,
                    format!("in the rows from byte {at} of the chunk: {}", p.detail),
                )
            }
        })?;
        let order = map_columns(features, Some(&table.columns), table.columns.len())
            .map_err(|e| Problem::invalid_data(e.to_string()))?
            .order;
        let x = table.data.select(ndarray::Axis(1), &order);
        drop(table);
        let scores = model.score(x.view())?;
        let labels = model.labels(&scores);
        for (s, l) in scores.iter().zip(&labels) {
            std::io::Write::write_fmt(&mut out.csv, format_args!("{s},{l}\n"))
                .map_err(|e| Problem::internal(e.to_string()))?;
        }
        out.rows += scores.len();
        out.anomalies += labels.iter().filter(|&&l| l == 1).count();
        at = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_is_scored_by_feature_name_whatever_the_column_order() {
        use nomaly_detect::{Algorithm, FitOptions};
        let train: Vec<f64> = (0..200)
            .flat_map(|i| [(i % 10) as f64, (i % 7) as f64])
            .collect();
        let x = ndarray::Array2::from_shape_vec((200, 2), train).unwrap();
        let mut options = FitOptions::new(Algorithm::named("zscore").unwrap());
        options.feature_names = Some(vec!["a".into(), "b".into()]);
        let model = Model::fit(x.view(), &options).unwrap().model;
        // The object's columns: b, an id the model does not take, a.
        let rows = b"3,r1,4\n1,r2,2\n-50,r3,90\n";
        let scored = score_chunk(&model, "b,id,a", rows);
        // `id` is text, so it must be left out before parsing: it is.
        let scored = scored.unwrap();
        assert_eq!(scored.rows, 3);
        let expected = model
            .score(ndarray::array![[4.0, 3.0], [2.0, 1.0], [90.0, -50.0]].view())
            .unwrap();
        let got: Vec<f64> = String::from_utf8(scored.csv)
            .unwrap()
            .lines()
            .map(|l| l.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(got, expected);
        assert_eq!(scored.anomalies, 1, "the far row");
        let e = score_chunk(&model, "a,c", b"1,2\n").unwrap_err();
        assert!(e.detail.contains("no `b` column"), "{}", e.detail);
        let e = score_chunk(&model, "a,b", b"1,2\n3\n").unwrap_err();
        assert_eq!(e.status, 422, "{}", e.detail);

        // Scored a slice at a time, from one row per slice to all at once: the same bytes.
        let many: String = (0..500)
            .map(|i| format!("{},r{i},{}\r\n", i % 7, if i == 321 { 99 } else { i % 10 }))
            .collect();
        let whole = score_in_slices(&model, "b,id,a", many.as_bytes(), usize::MAX).unwrap();
        assert_eq!(whole.rows, 500);
        for slice in [1, 7, 100, 4096] {
            let sliced = score_in_slices(&model, "b,id,a", many.as_bytes(), slice).unwrap();
            assert_eq!(sliced, whole, "slices of {slice} bytes");
        }
        assert_eq!(
            count_part(&whole.csv),
            (whole.rows as u64, whole.anomalies as u64)
        );
        // Blank lines alone (a chunk of trailing newlines) score nothing and fail nothing.
        let blank = score_in_slices(&model, "b,id,a", b"\r\n\n", 1).unwrap();
        assert_eq!((blank.rows, blank.csv.len()), (0, 0));
        let bad = many.replace("r400,", "r400,x,");
        let e = score_in_slices(&model, "b,id,a", bad.as_bytes(), 1000).unwrap_err();
        assert!(e.detail.contains("in the rows from byte"), "{}", e.detail);
    }
}
