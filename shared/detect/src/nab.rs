//! The Numenta Anomaly Benchmark's scorer (Lavin & Ahmad 2015), as NAB's `nab/sweeper.py`
//! computes it, so that a figure from here is a figure NAB's own code would print.
//!
//! **Per row.** Every row gets a weight before any threshold is applied:
//! - inside a window `[s, e]` (inclusive rows), `A_TP · σ(p) / σ(−1)` with
//!   `p = −(e − i + 1) / (e − s + 1)`, so the window's first row is worth exactly `A_TP`
//!   and later rows less;
//! - outside every window, `A_FP · σ(p)` with `p = |e' − i| / (w' − 1)` for the closest
//!   window before it (right edge `e'`, width `w'`), and `p = 3` (the full `−A_FP`) when no
//!   window came before;
//! - rows of the probationary period, the first `min(⌊0.15 n⌋, 750)`, are not scored.
//!
//! Here `σ(p) = 2 / (1 + e^{5p}) − 1`, and `σ(p) = −1` from `p = 3` on.
//!
//! **Per threshold.** A row is a detection when its anomaly score is at or above the
//! threshold. A series scores the sum of its false positives' weights, plus for each window
//! the largest weight among its detections (its earliest), or `−A_FN` with none. The counts
//! `tp`, `fp`, `tn`, `fn` are of rows, as NAB counts them.
//!
//! **Over a corpus.** NAB picks one threshold per detector for the whole corpus: it pools
//! every scorable row of every series, sweeps the threshold down through each distinct
//! score, and keeps the threshold with the highest summed score (the highest such threshold
//! on a tie) ([`sweep`], [`optimize`]). The normalized score is
//! `100 · (raw − null) / (perfect − null)`, where `perfect` is `A_TP` for every labelled
//! window and `null` is the score of flagging nothing ([`Tally::normalized`]).

/// The weights of one NAB application profile (`config/profiles.json`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Worth of a window's earliest possible detection.
    pub tp: f64,
    /// Price of a false positive far from any window.
    pub fp: f64,
    /// Price of a window without a detection.
    pub fn_: f64,
}

/// NAB's standard profile, the one its scoreboard leads with.
pub const STANDARD: Profile = Profile {
    tp: 1.0,
    fp: 0.11,
    fn_: 1.0,
};

/// NAB's scaled sigmoid of a relative position.
pub fn scaled_sigmoid(position: f64) -> f64 {
    if position >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * position).exp()) - 1.0
    }
}

/// Rows at the start of a series of `rows` rows that are learned from but never scored:
/// `min(⌊0.15 · rows⌋, 750)`.
pub fn probation(rows: usize) -> usize {
    ((rows as f64 * 0.15).floor()).min(750.0) as usize
}

/// Where a row falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Probation,
    Outside,
    /// The index of its window in the series.
    Window(usize),
}

/// What is wrong with a series' windows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LabelError {
    /// A window ends before it starts, or past the last row.
    #[error("window {index} ({start}..={end}) does not lie within the series' {rows} rows")]
    OutOfRange {
        /// Which window.
        index: usize,
        /// Its first row.
        start: usize,
        /// Its last row.
        end: usize,
        /// Rows in the series.
        rows: usize,
    },
    /// Windows overlap or are out of order.
    #[error("window {index} starts before the window before it ends")]
    Overlap {
        /// Which window.
        index: usize,
    },
}

/// A labelled series, weighed once for every threshold: each row's place and NAB weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    places: Vec<Place>,
    weights: Vec<f64>,
    /// Windows labelled.
    windows: usize,
    /// Windows with at least one row after the probation.
    scorable: usize,
    profile: Profile,
}

impl Labelled {
    /// Weighs a series of `rows` rows with `windows` (inclusive row ranges, in order, not
    /// overlapping) for `profile`.
    pub fn new(
        rows: usize,
        windows: &[(usize, usize)],
        profile: Profile,
    ) -> Result<Labelled, LabelError> {
        for (index, &(start, end)) in windows.iter().enumerate() {
            if start > end || end >= rows {
                return Err(LabelError::OutOfRange {
                    index,
                    start,
                    end,
                    rows,
                });
            }
            if index > 0 && windows[index - 1].1 >= start {
                return Err(LabelError::Overlap { index });
            }
        }
        let max_tp = scaled_sigmoid(-1.0);
        let probation = probation(rows);
        let mut places = Vec::with_capacity(rows);
        let mut weights = Vec::with_capacity(rows);
        let mut next = 0;
        // The right edge and width of the last window passed.
        let mut previous: Option<(usize, f64)> = None;
        for i in 0..rows {
            let inside = windows
                .get(next)
                .filter(|&&(start, end)| (start..=end).contains(&i));
            let (place, weight) = match inside {
                Some(&(start, end)) => {
                    let width = (end - start + 1) as f64;
                    let position = -((end - i + 1) as f64) / width;
                    let place = Place::Window(next);
                    if i == end {
                        previous = Some((end, width));
                        next += 1;
                    }
                    (place, scaled_sigmoid(position) * profile.tp / max_tp)
                }
                None => {
                    let position = match previous {
                        Some((end, width)) => (i - end) as f64 / (width - 1.0),
                        None => 3.0,
                    };
                    (Place::Outside, scaled_sigmoid(position) * profile.fp)
                }
            };
            places.push(if i < probation {
                Place::Probation
            } else {
                place
            });
            weights.push(weight);
        }
        let scorable = windows.iter().filter(|&&(_, end)| end >= probation).count();
        Ok(Labelled {
            places,
            weights,
            windows: windows.len(),
            scorable,
            profile,
        })
    }

    /// Rows in the series.
    pub fn rows(&self) -> usize {
        self.places.len()
    }

    /// Windows labelled.
    pub fn windows(&self) -> usize {
        self.windows
    }

    /// Rows of the probationary period.
    pub fn probation(&self) -> usize {
        probation(self.places.len())
    }

    /// The first row flagged at `threshold` outside every window and past the probation:
    /// the first false positive a person would see.
    pub fn first_false_positive(&self, scores: &[f64], threshold: f64) -> Option<usize> {
        self.places
            .iter()
            .zip(scores)
            .position(|(place, score)| matches!(place, Place::Outside) && *score >= threshold)
    }

    /// How flagging every row whose score is at or above `threshold` scores.
    ///
    /// # Panics
    /// When `scores` is not one score per row.
    pub fn score(&self, scores: &[f64], threshold: f64) -> Tally {
        assert_eq!(scores.len(), self.places.len(), "one score per row");
        let mut tally = Tally::nothing(self, threshold);
        let mut best = vec![None::<f64>; self.windows];
        for ((place, weight), score) in self.places.iter().zip(&self.weights).zip(scores) {
            let flagged = *score >= threshold;
            match (place, flagged) {
                (Place::Probation, _) => {}
                (Place::Outside, true) => {
                    tally.fp += 1;
                    tally.tn -= 1;
                    tally.raw += weight;
                }
                (Place::Window(w), true) => {
                    tally.tp += 1;
                    tally.fn_ -= 1;
                    best[*w] = Some(best[*w].map_or(*weight, |b: f64| b.max(*weight)));
                }
                (_, false) => {}
            }
        }
        for b in best.into_iter().flatten() {
            tally.windows_found += 1;
            tally.raw += b + self.profile.fn_;
        }
        tally
    }
}

/// How a detector did at one threshold, on one series or summed over a corpus.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tally {
    /// Rows whose score is at or above it are detections.
    pub threshold: f64,
    /// The raw NAB score.
    pub raw: f64,
    /// Detections inside a window (rows).
    pub tp: usize,
    /// Rows outside every window not flagged.
    pub tn: usize,
    /// Detections outside every window (rows).
    pub fp: usize,
    /// Rows inside a window not flagged.
    pub fn_: usize,
    /// Windows with at least one detection.
    pub windows_found: usize,
    /// Windows that can be scored (with rows after the probation).
    pub scorable: usize,
    /// Windows labelled, scorable or not: `perfect` is `A_TP` for each.
    pub windows: usize,
    /// The profile's `A_TP` (for `perfect`).
    tp_weight: f64,
    /// The raw score of flagging nothing.
    pub null: f64,
}

impl Tally {
    /// Flagging nothing on `series`.
    fn nothing(series: &Labelled, threshold: f64) -> Tally {
        let scored = series
            .places
            .iter()
            .filter(|p| !matches!(p, Place::Probation));
        let inside = scored
            .clone()
            .filter(|p| matches!(p, Place::Window(_)))
            .count();
        let null = -series.profile.fn_ * series.scorable as f64;
        Tally {
            threshold,
            raw: null,
            tp: 0,
            tn: scored.count() - inside,
            fp: 0,
            fn_: inside,
            windows_found: 0,
            scorable: series.scorable,
            windows: series.windows,
            tp_weight: series.profile.tp,
            null,
        }
    }

    /// A tally of nothing, to sum series into.
    pub fn zero(threshold: f64) -> Tally {
        Tally {
            threshold,
            raw: 0.0,
            tp: 0,
            tn: 0,
            fp: 0,
            fn_: 0,
            windows_found: 0,
            scorable: 0,
            windows: 0,
            tp_weight: STANDARD.tp,
            null: 0.0,
        }
    }

    /// Adds another series' tally (NAB normalizes a corpus over the sums).
    pub fn add(&mut self, other: &Tally) {
        self.raw += other.raw;
        self.tp += other.tp;
        self.tn += other.tn;
        self.fp += other.fp;
        self.fn_ += other.fn_;
        self.windows_found += other.windows_found;
        self.scorable += other.scorable;
        self.windows += other.windows;
        self.tp_weight = other.tp_weight;
        self.null += other.null;
    }

    /// The raw score of a detector that flags each window's first row and nothing else.
    pub fn perfect(&self) -> f64 {
        self.tp_weight * self.windows as f64
    }

    /// `100 · (raw − null) / (perfect − null)`: 0 flags nothing, 100 is perfect.
    pub fn normalized(&self) -> f64 {
        let span = self.perfect() - self.null;
        if span <= 0.0 {
            0.0
        } else {
            100.0 * (self.raw - self.null) / span
        }
    }
}

/// Every threshold worth trying over a corpus of `(series, scores)`, from flagging nothing
/// (threshold `+∞`) down through each distinct score, with the corpus tally at each, as
/// NAB's `calcScoreByThreshold` lists them (NAB starts at 1.1, above its scores in [0, 1];
/// scores here may be larger).
///
/// # Panics
/// When a series' scores are not one per row.
pub fn sweep(corpus: &[(&Labelled, &[f64])]) -> Vec<Tally> {
    // Every scorable row: its score, its window (numbered across the corpus) and weight.
    let mut rows: Vec<(f64, Option<usize>, f64)> = Vec::new();
    let mut start = Tally::zero(f64::INFINITY);
    let mut offset = 0;
    for (series, scores) in corpus {
        assert_eq!(scores.len(), series.rows(), "one score per row");
        start.add(&Tally::nothing(series, f64::INFINITY));
        for ((place, weight), score) in series.places.iter().zip(&series.weights).zip(*scores) {
            match place {
                Place::Probation => {}
                Place::Outside => rows.push((*score, None, *weight)),
                Place::Window(w) => rows.push((*score, Some(offset + w), *weight)),
            }
        }
        offset += series.windows;
    }
    // A NaN score is never at or above a threshold: such rows stay undetected.
    rows.retain(|r| !r.0.is_nan());
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let fn_weight = corpus.first().map_or(STANDARD.fn_, |(s, _)| s.profile.fn_);
    let mut best: Vec<Option<f64>> = vec![None; offset];
    let mut tally = start;
    let mut out = Vec::new();
    for (score, window, weight) in rows {
        if score != tally.threshold {
            out.push(tally);
            tally.threshold = score;
        }
        match window {
            None => {
                tally.fp += 1;
                tally.tn -= 1;
                tally.raw += weight;
            }
            Some(w) => {
                tally.tp += 1;
                tally.fn_ -= 1;
                match best[w] {
                    None => {
                        tally.windows_found += 1;
                        tally.raw += weight + fn_weight;
                        best[w] = Some(weight);
                    }
                    Some(b) if weight > b => {
                        tally.raw += weight - b;
                        best[w] = Some(weight);
                    }
                    Some(_) => {}
                }
            }
        }
    }
    out.push(tally);
    out
}

/// The threshold NAB's optimiser picks for a corpus: the highest corpus score, and the
/// highest threshold among equals.
pub fn optimize(corpus: &[(&Labelled, &[f64])]) -> Tally {
    let mut best: Option<Tally> = None;
    for t in sweep(corpus) {
        if best.is_none_or(|b| t.raw > b.raw) {
            best = Some(t);
        }
    }
    best.unwrap_or_else(|| Tally::zero(f64::INFINITY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scaled_sigmoid_matches_nab() {
        assert!((scaled_sigmoid(-1.0) - 0.986_614_298_151_430_3).abs() < 1e-12);
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        assert!(scaled_sigmoid(0.5) < 0.0 && scaled_sigmoid(0.5) > -1.0);
        assert_eq!(scaled_sigmoid(3.0), -1.0);
    }

    #[test]
    fn probation_is_fifteen_percent_capped_at_750_rows() {
        assert_eq!(probation(4032), 604);
        assert_eq!(probation(1000), 150);
        assert_eq!(probation(5000), 750);
        assert_eq!(probation(22695), 750);
    }

    fn flags(n: usize, rows: &[usize]) -> Vec<f64> {
        let mut d = vec![0.0; n];
        for &r in rows {
            d[r] = 1.0;
        }
        d
    }

    #[test]
    fn perfect_null_and_mixed_detectors() {
        let windows = [(200, 299), (500, 599)];
        let n = 1000; // probation: 150 rows
        let series = Labelled::new(n, &windows, STANDARD).expect("valid");
        let perfect = series.score(&flags(n, &[200, 500]), 0.5);
        assert!((perfect.raw - 2.0).abs() < 1e-12, "{perfect:?}");
        assert!((perfect.normalized() - 100.0).abs() < 1e-9);
        let nothing = series.score(&flags(n, &[]), 0.5);
        assert_eq!((nothing.raw, nothing.normalized()), (-2.0, 0.0));
        assert_eq!((nothing.fn_, nothing.tn), (200, 650));
        // Late in the first window, a second detection in it (only the earliest counts),
        // one false positive right after it (cheap), one far from any window (full
        // price), one in the probation (not counted), and the second window missed.
        let mixed = series.score(&flags(n, &[10, 290, 295, 301, 450]), 0.5);
        assert_eq!((mixed.windows_found, mixed.tp, mixed.fp), (1, 2, 2));
        let expected_raw = scaled_sigmoid(-10.0 / 100.0) / scaled_sigmoid(-1.0)
            + 0.11 * scaled_sigmoid(2.0 / 99.0)
            + 0.11 * scaled_sigmoid(151.0 / 99.0)
            - 1.0;
        assert!((mixed.raw - expected_raw).abs() < 1e-12, "{mixed:?}");
        // A false positive before any window pays the full A_FP.
        let early = series.score(&flags(n, &[160]), 0.5);
        assert!((early.raw - (-0.11 - 2.0)).abs() < 1e-12);
    }

    #[test]
    fn the_sweep_agrees_with_scoring_each_threshold_and_picks_the_best() {
        let windows = [(300, 349), (700, 760)];
        let n = 1200;
        let series = Labelled::new(n, &windows, STANDARD).expect("valid");
        // Noise with two bumps inside the windows and a few ties.
        let scores: Vec<f64> = (0..n)
            .map(|i| {
                let base = ((i * 37) % 101) as f64 / 200.0;
                match i {
                    305 | 710 => 0.9,
                    306..=320 => 0.7,
                    _ => base,
                }
            })
            .collect();
        let swept = sweep(&[(&series, &scores)]);
        assert_eq!(swept[0].threshold, f64::INFINITY);
        assert_eq!(swept[0].raw, -2.0);
        for t in &swept {
            let direct = series.score(&scores, t.threshold);
            assert!((t.raw - direct.raw).abs() < 1e-9, "{t:?} vs {direct:?}");
            assert_eq!(
                (t.tp, t.fp, t.tn, t.fn_, t.windows_found),
                (
                    direct.tp,
                    direct.fp,
                    direct.tn,
                    direct.fn_,
                    direct.windows_found
                )
            );
        }
        let best = optimize(&[(&series, &scores)]);
        assert_eq!(best.threshold, 0.9);
        assert_eq!(best.windows_found, 2);
        // A NaN score is never a detection, and does not upset the sweep.
        let mut with_nan = scores.clone();
        with_nan[500] = f64::NAN;
        assert_eq!(optimize(&[(&series, &with_nan)]).threshold, 0.9);
        assert!(sweep(&[(&series, &with_nan)])
            .iter()
            .all(|t| !t.threshold.is_nan()));
    }

    #[test]
    fn bad_windows_are_refused() {
        assert!(Labelled::new(100, &[(50, 120)], STANDARD).is_err());
        assert!(Labelled::new(100, &[(50, 40)], STANDARD).is_err());
        assert!(Labelled::new(100, &[(10, 40), (40, 50)], STANDARD).is_err());
    }

    /// NAB's "numenta" detector over the 55 series (`tests/data/nab/nab-results`): per
    /// file, its name, the weighed series and NAB's per-row scores.
    fn numenta_corpus() -> Vec<(String, Labelled, Vec<f64>)> {
        use std::collections::BTreeMap;
        use std::io::Read;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/nab");
        let mut text = String::new();
        flate2::read::GzDecoder::new(
            std::fs::File::open(dir.join("nab-results/numenta.csv.gz")).expect("numenta.csv.gz"),
        )
        .read_to_string(&mut text)
        .expect("gzip");
        // file -> (timestamps, scores), in row order.
        let mut files: BTreeMap<String, (Vec<String>, Vec<f64>)> = BTreeMap::new();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let entry = files.entry(f[0].to_string()).or_default();
            entry.0.push(f[1].to_string());
            entry.1.push(f[2].parse().expect("score"));
        }
        files
            .into_iter()
            .map(|(file, (times, scores))| {
                let name = file
                    .rsplit('/')
                    .next()
                    .expect("name")
                    .trim_end_matches(".csv");
                let labels: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(dir.join(format!("{name}.windows.json"))).expect("windows"),
                )
                .expect("json");
                // Window edges are timestamps of rows (`... 00:00:00.000000`).
                let row_of = |edge: &serde_json::Value| {
                    let edge = &edge.as_str().expect("timestamp")[..19];
                    times
                        .iter()
                        .position(|t| t == edge)
                        .expect("window edge is a row")
                };
                let windows: Vec<(usize, usize)> = labels["windows"]
                    .as_array()
                    .expect("windows")
                    .iter()
                    .map(|w| (row_of(&w[0]), row_of(&w[1])))
                    .collect();
                let series = Labelled::new(times.len(), &windows, STANDARD).expect("labels");
                (file, series, scores)
            })
            .collect()
    }

    /// NAB's per-row scores for its "numenta" detector, at the threshold NAB's optimiser
    /// chose, give NAB's per-file row counts and raw scores here too.
    #[test]
    fn nab_s_numenta_results_are_reproduced_file_by_file() {
        let results = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/data/nab/nab-results");
        let thresholds: serde_json::Value = serde_json::from_slice(
            &std::fs::read(results.join("thresholds.json")).expect("thresholds.json"),
        )
        .expect("json");
        let threshold = thresholds["numenta"]["standard"]["threshold"]
            .as_f64()
            .expect("threshold");
        let expected =
            std::fs::read_to_string(results.join("numenta_standard_scores.csv")).expect("scores");
        let corpus = numenta_corpus();
        assert_eq!(corpus.len(), 55);
        let mut total = Tally::zero(threshold);
        for line in expected.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let (_, series, scores) = corpus
                .iter()
                .find(|(file, _, _)| file == f[2])
                .unwrap_or_else(|| panic!("{} has NAB scores", f[2]));
            let tally = series.score(scores, threshold);
            let want: Vec<usize> = f[5..10].iter().map(|v| v.parse().expect("count")).collect();
            let rows = tally.tp + tally.tn + tally.fp + tally.fn_ + series.probation();
            assert_eq!(
                vec![tally.tp, tally.tn, tally.fp, tally.fn_, rows],
                want,
                "{}: TP, TN, FP, FN, rows",
                f[2]
            );
            let want_raw: f64 = f[4].parse().expect("Score");
            assert!(
                (tally.raw - want_raw).abs() < 1e-9,
                "{}: raw {} vs NAB's {want_raw}",
                f[2],
                tally.raw
            );
            total.add(&tally);
        }
        // The 55 series' share of NAB's published corpus score.
        assert!((total.raw - 44.416_882_861_389).abs() < 1e-6, "{total:?}");
        // The corpus sweep, at the lowest threshold that flags the same rows, is the sum
        // of the files.
        let pooled: Vec<(&Labelled, &[f64])> = corpus
            .iter()
            .map(|(_, series, scores)| (series, scores.as_slice()))
            .collect();
        // (NAB chose its threshold over 58 series: it need not be a score of these 55.)
        let at = sweep(&pooled)
            .into_iter()
            .take_while(|t| t.threshold >= threshold)
            .last()
            .expect("thresholds from +inf down");
        assert!((at.raw - total.raw).abs() < 1e-6);
        assert_eq!(
            (at.tp, at.fp, at.fn_, at.tn, at.windows),
            (total.tp, total.fp, total.fn_, total.tn, total.windows)
        );
    }
}
