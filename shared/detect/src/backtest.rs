//! Judging a stream detector's scores on a labelled history: which labelled windows it
//! found, how many false alarms it raised, its precision and recall, its NAB score, and
//! the threshold that would have served best.
//!
//! Windows are inclusive row ranges. Rows of NAB's probationary period (the first
//! [`nab::probation`] rows, while the detector learns) count for nothing, as in NAB.

use crate::nab::{self, LabelError, Labelled, Tally};
use serde::{Deserialize, Serialize};

/// How flagging the rows scoring at or above a threshold fares against the labels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The threshold judged.
    pub threshold: f64,
    /// Windows labelled.
    pub windows: usize,
    /// Windows ending after the probationary period (the ones that can be found).
    pub scorable_windows: usize,
    /// Windows with at least one flagged row.
    pub windows_found: usize,
    /// Flagged rows inside a window.
    pub flagged_in_windows: usize,
    /// Flagged rows outside every window: false positives.
    pub false_positives: usize,
    /// Flagged rows inside a window over all flagged rows (after the probation); `None`
    /// when nothing was flagged.
    pub precision: Option<f64>,
    /// Windows found over scorable windows; `None` when no window can be scored.
    pub recall: Option<f64>,
    /// NAB's standard-profile score of this series, normalised: 0 flags nothing, 100 flags
    /// each window's first row and nothing else.
    pub nab_score: f64,
    /// NAB's raw score.
    pub nab_raw: f64,
}

impl Evaluation {
    fn of(tally: &Tally) -> Evaluation {
        let flagged = tally.tp + tally.fp;
        Evaluation {
            threshold: tally.threshold,
            windows: tally.windows,
            scorable_windows: tally.scorable,
            windows_found: tally.windows_found,
            flagged_in_windows: tally.tp,
            false_positives: tally.fp,
            precision: (flagged > 0).then(|| tally.tp as f64 / flagged as f64),
            recall: (tally.scorable > 0)
                .then(|| tally.windows_found as f64 / tally.scorable as f64),
            nab_score: tally.normalized(),
            nab_raw: tally.raw,
        }
    }
}

/// A labelled history, weighed once for any number of thresholds.
#[derive(Debug, Clone)]
pub struct Labels {
    labelled: Labelled,
}

impl Labels {
    /// `rows` rows with `windows` (inclusive row ranges, in order, not overlapping).
    pub fn new(rows: usize, windows: &[(usize, usize)]) -> Result<Labels, LabelError> {
        Ok(Labels {
            labelled: Labelled::new(rows, windows, nab::STANDARD)?,
        })
    }

    /// Rows of the probationary period.
    pub fn probation(&self) -> usize {
        self.labelled.probation()
    }

    /// How `scores` fare at `threshold` (rows scoring at or above it are flagged).
    ///
    /// # Panics
    /// When `scores` is not one score per row.
    pub fn evaluate(&self, scores: &[f64], threshold: f64) -> Evaluation {
        Evaluation::of(&self.labelled.score(scores, threshold))
    }

    /// The threshold with the best NAB score on `scores` (the highest among equals, as
    /// NAB's optimiser picks), with how it fares; `None` when flagging nothing is best.
    pub fn best(&self, scores: &[f64]) -> Option<Evaluation> {
        let best = nab::optimize(&[(&self.labelled, scores)]);
        best.threshold.is_finite().then(|| Evaluation::of(&best))
    }
}

/// The windows of a 0/1 label per row: each run of labelled rows.
pub fn windows_of_labels(labels: &[bool]) -> Vec<(usize, usize)> {
    let mut windows = Vec::new();
    let mut start = None;
    for (i, &l) in labels.iter().enumerate() {
        match (l, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                windows.push((s, i - 1));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        windows.push((s, labels.len() - 1));
    }
    windows
}

/// Why windows given as times do not fit the rows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WindowError {
    /// A window ends before it starts.
    #[error("window {index} ends before it starts")]
    Backwards {
        /// Which window.
        index: usize,
    },
    /// No row's time falls inside a window.
    #[error("window {index} holds no point")]
    Empty {
        /// Which window.
        index: usize,
    },
    /// Windows overlap.
    #[error("window {index} overlaps the window before it")]
    Overlap {
        /// Which window.
        index: usize,
    },
}

/// Windows given as inclusive time ranges, as row ranges over `times` (ascending): each
/// window holds the rows whose time falls inside it.
pub fn windows_of_times(
    times: &[i64],
    windows: &[(i64, i64)],
) -> Result<Vec<(usize, usize)>, WindowError> {
    let mut sorted: Vec<(usize, (i64, i64))> = windows.iter().copied().enumerate().collect();
    sorted.sort_by_key(|(_, (start, _))| *start);
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(windows.len());
    for (index, (start, end)) in sorted {
        if end < start {
            return Err(WindowError::Backwards { index });
        }
        let first = times.partition_point(|&t| t < start);
        let after = times.partition_point(|&t| t <= end);
        if first >= after {
            return Err(WindowError::Empty { index });
        }
        if out.last().is_some_and(|&(_, last)| last >= first) {
            return Err(WindowError::Overlap { index });
        }
        out.push((first, after - 1));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_labels_are_windows() {
        let l = |s: &str| s.chars().map(|c| c == '1').collect::<Vec<_>>();
        assert_eq!(windows_of_labels(&l("0011001")), vec![(2, 3), (6, 6)]);
        assert_eq!(windows_of_labels(&l("1100")), vec![(0, 1)]);
        assert!(windows_of_labels(&l("000")).is_empty());
    }

    #[test]
    fn time_windows_hold_the_rows_inside_them() {
        let times: Vec<i64> = (0..10).map(|i| i * 60).collect();
        assert_eq!(
            windows_of_times(&times, &[(100, 250), (300, 300)]),
            Ok(vec![(2, 4), (5, 5)])
        );
        assert_eq!(
            windows_of_times(&times, &[(10, 50)]),
            Err(WindowError::Empty { index: 0 })
        );
        assert_eq!(
            windows_of_times(&times, &[(300, 200)]),
            Err(WindowError::Backwards { index: 0 })
        );
        assert_eq!(
            windows_of_times(&times, &[(0, 130), (120, 200)]),
            Err(WindowError::Overlap { index: 1 })
        );
    }

    #[test]
    fn a_detector_flagging_a_window_early_beats_one_flagging_noise() {
        // 1000 rows: the probation is 150; one window at rows 600..=649.
        let labels = Labels::new(1000, &[(600, 649)]).unwrap();
        let mut good = vec![0.1; 1000];
        good[600] = 0.9;
        let mut noisy = good.clone();
        for r in [200, 300, 400, 800] {
            noisy[r] = 0.7;
        }
        let g = labels.evaluate(&good, 0.5);
        assert_eq!((g.windows_found, g.false_positives), (1, 0));
        assert_eq!((g.precision, g.recall), (Some(1.0), Some(1.0)));
        assert!((g.nab_score - 100.0).abs() < 1e-9, "{}", g.nab_score);
        let n = labels.evaluate(&noisy, 0.5);
        assert_eq!((n.windows_found, n.false_positives), (1, 4));
        assert_eq!(n.precision, Some(0.2));
        assert!(n.nab_score < g.nab_score);
        // The best threshold for the noisy scores keeps the window and drops the noise.
        let best = labels.best(&noisy).unwrap();
        assert_eq!(best.threshold, 0.9);
        assert_eq!((best.windows_found, best.false_positives), (1, 0));
        // Scores that never reach a window: flagging nothing is best.
        assert_eq!(labels.best(&vec![0.1; 1000]), None);
    }
}
