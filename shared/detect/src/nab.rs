//! Scoring detections against labelled anomaly windows as the Numenta Anomaly Benchmark
//! does (Lavin & Ahmad 2015), with its standard profile.
//!
//! Each window is a run of rows. The first detection inside a window is a true positive
//! worth `A_TP · σ(p)`, where `p` runs from −1 at the window's first row to nearly 0 at its
//! last and `σ(p) = 2 / (1 + e^{5p}) − 1`: early detections earn more. Later detections in
//! the same window count for nothing. A window without a detection costs `A_FN`. A
//! detection outside every window costs `A_FP · |σ(p)|`, `p` being its distance past the
//! closest window before it in window lengths (`σ = −1` from three lengths on, or with no
//! window before it). Rows of the probationary period (the series' start) are not scored.
//! The normalized score is `100 · (raw − null) / (perfect − null)`: 0 for a detector that
//! flags nothing, 100 for one that flags the first row of every window and nothing else.

/// The standard profile's weights.
pub const A_TP: f64 = 1.0;
/// The standard profile's false-positive weight.
pub const A_FP: f64 = 0.11;
/// The standard profile's false-negative weight.
pub const A_FN: f64 = 1.0;

/// NAB's scaled sigmoid of a relative position.
pub fn scaled_sigmoid(position: f64) -> f64 {
    if position > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * position).exp()) - 1.0
    }
}

/// How one detector did on one series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Windows scored (those that end after the probationary period).
    pub windows: usize,
    /// Windows with a detection inside.
    pub windows_found: usize,
    /// Detections outside every window.
    pub false_positives: usize,
    /// The raw score.
    pub raw: f64,
    /// The raw score of flagging nothing.
    pub null: f64,
    /// The raw score of flagging each window's first row only.
    pub perfect: f64,
}

impl Outcome {
    /// `100 · (raw − null) / (perfect − null)`.
    pub fn normalized(&self) -> f64 {
        normalized(self.raw, self.null, self.perfect)
    }

    /// Adds another series' outcome (NAB normalizes a corpus over the sums).
    pub fn add(&mut self, other: &Outcome) {
        self.windows += other.windows;
        self.windows_found += other.windows_found;
        self.false_positives += other.false_positives;
        self.raw += other.raw;
        self.null += other.null;
        self.perfect += other.perfect;
    }
}

/// `100 · (raw − null) / (perfect − null)`, 0 when there is nothing to find.
pub fn normalized(raw: f64, null: f64, perfect: f64) -> f64 {
    if perfect - null <= 0.0 {
        0.0
    } else {
        100.0 * (raw - null) / (perfect - null)
    }
}

/// Scores `detections` (one flag per row) against `windows` (inclusive row ranges, in
/// order, not overlapping); rows before `probation` are not scored.
pub fn score(detections: &[bool], windows: &[(usize, usize)], probation: usize) -> Outcome {
    let mut out = Outcome::default();
    let scored: Vec<(usize, usize)> = windows
        .iter()
        .copied()
        .filter(|&(_, end)| end >= probation)
        .collect();
    out.windows = scored.len();
    out.null = -A_FN * scored.len() as f64;
    out.perfect = A_TP * scaled_sigmoid(-1.0) * scored.len() as f64;
    let mut found = vec![false; scored.len()];
    for (row, _) in detections
        .iter()
        .enumerate()
        .filter(|(row, &flag)| flag && *row >= probation)
    {
        match scored.iter().position(|&(s, e)| (s..=e).contains(&row)) {
            Some(w) => {
                if !found[w] {
                    found[w] = true;
                    let (s, e) = scored[w];
                    let length = (e - s + 1) as f64;
                    let position = -((e - row + 1) as f64) / length;
                    out.raw += A_TP * scaled_sigmoid(position);
                }
            }
            None => {
                out.false_positives += 1;
                let before = windows.iter().rev().find(|&&(_, e)| e < row);
                let weight = match before {
                    Some(&(s, e)) => {
                        let length = (e - s + 1) as f64;
                        scaled_sigmoid((row - e) as f64 / length)
                    }
                    None => -1.0,
                };
                out.raw += A_FP * weight;
            }
        }
    }
    out.windows_found = found.iter().filter(|&&f| f).count();
    out.raw -= A_FN * (out.windows - out.windows_found) as f64;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scaled_sigmoid_matches_nab() {
        assert!((scaled_sigmoid(-1.0) - 0.986_614_298_151_430_3).abs() < 1e-12);
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        assert!(scaled_sigmoid(0.5) < 0.0 && scaled_sigmoid(0.5) > -1.0);
        assert_eq!(scaled_sigmoid(3.5), -1.0);
    }

    #[test]
    fn perfect_null_and_mixed_detectors() {
        let windows = [(100, 199), (500, 599)];
        let n = 1000;
        let flag = |rows: &[usize]| {
            let mut d = vec![false; n];
            for &r in rows {
                d[r] = true;
            }
            d
        };
        let perfect = score(&flag(&[100, 500]), &windows, 50);
        assert!((perfect.normalized() - 100.0).abs() < 1e-9);
        assert_eq!((perfect.windows_found, perfect.false_positives), (2, 0));
        let nothing = score(&flag(&[]), &windows, 50);
        assert_eq!(nothing.normalized(), 0.0);
        // Late in the first window, a second detection in it (ignored), one false positive
        // right after it (cheap) and one far from any window (full price), none in the
        // probation, and the second window missed.
        let mixed = score(&flag(&[10, 190, 195, 201, 450]), &windows, 50);
        assert_eq!((mixed.windows_found, mixed.false_positives), (1, 2));
        let expected_raw = scaled_sigmoid(-10.0 / 100.0)
            + A_FP * scaled_sigmoid(2.0 / 100.0)
            + A_FP * scaled_sigmoid(251.0 / 100.0)
            - A_FN;
        assert!((mixed.raw - expected_raw).abs() < 1e-12);
        assert!(mixed.normalized() > 0.0 && mixed.normalized() < 50.0);
        // A false positive before any window pays the full A_FP.
        let early = score(&flag(&[60]), &windows, 50);
        assert!((early.raw - (-A_FP - 2.0 * A_FN)).abs() < 1e-12);
    }
}
