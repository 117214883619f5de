//! A model's threshold fitted to rows a person labelled: the threshold that gets the
//! fewest labelled rows wrong, and of those the one nearest the threshold the
//! contamination rule gave (so a few labels move it no further than they must).
//!
//! A row is flagged when its score is above the threshold, as everywhere in nomaly. The
//! errors are the labelled normal rows flagged plus the labelled anomalies not flagged;
//! they change only at labelled scores, so the best threshold is the prior itself or an
//! end of one of the intervals between them.

use serde::{Deserialize, Serialize};

/// A labelled training row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Labelled {
    /// Its index among the training rows.
    pub row: usize,
    /// Whether the person says it is an anomaly.
    pub anomaly: bool,
}

/// What fitting the threshold to the labels did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelFit {
    /// Labelled rows used (those inside the training rows).
    pub labelled: usize,
    /// Of them, labelled anomalies.
    pub anomalies: usize,
    /// Labels naming rows past the training rows, left out.
    pub ignored: usize,
    /// The threshold before (the contamination rule's, or the fixed one).
    pub threshold_before: f64,
    /// Labelled rows it got wrong.
    pub errors_before: usize,
    /// The threshold fitted to the labels.
    pub threshold: f64,
    /// Labelled rows the fitted one gets wrong.
    pub errors: usize,
    /// The share of training rows above the fitted threshold.
    pub contamination: f64,
}

/// Errors of threshold `t`: labelled normal rows above it, anomalies at or below it.
fn errors(normal: &[f64], anomalous: &[f64], t: f64) -> usize {
    let at_or_below = |sorted: &[f64]| sorted.partition_point(|&s| s <= t);
    (normal.len() - at_or_below(normal)) + at_or_below(anomalous)
}

/// The largest float below `x` (for a threshold that flags a score of exactly `x`).
fn just_below(x: f64) -> f64 {
    if x == 0.0 {
        return -f64::from_bits(1);
    }
    let bits = x.to_bits();
    f64::from_bits(if x > 0.0 { bits - 1 } else { bits + 1 })
}

/// The threshold fitted to `labels` over the training `scores`, starting from `prior`;
/// `None` when no label names a training row or a score is not finite.
pub fn fit_threshold(scores: &[f64], labels: &[Labelled], prior: f64) -> Option<LabelFit> {
    let inside: Vec<&Labelled> = labels.iter().filter(|l| l.row < scores.len()).collect();
    if inside.is_empty() || !prior.is_finite() {
        return None;
    }
    let mut normal = Vec::new();
    let mut anomalous = Vec::new();
    for l in &inside {
        let s = scores[l.row];
        if !s.is_finite() {
            return None;
        }
        if l.anomaly {
            anomalous.push(s);
        } else {
            normal.push(s);
        }
    }
    normal.sort_by(f64::total_cmp);
    anomalous.sort_by(f64::total_cmp);
    let mut candidates = vec![prior];
    for &s in normal.iter().chain(&anomalous) {
        candidates.push(s);
        candidates.push(just_below(s));
    }
    let errors_before = errors(&normal, &anomalous, prior);
    let (threshold, errs) = candidates
        .into_iter()
        .map(|t| (t, errors(&normal, &anomalous, t)))
        .min_by(|a, b| {
            a.1.cmp(&b.1)
                .then((a.0 - prior).abs().total_cmp(&(b.0 - prior).abs()))
        })?;
    let flagged = scores.iter().filter(|&&s| s > threshold).count();
    Some(LabelFit {
        labelled: inside.len(),
        anomalies: anomalous.len(),
        ignored: labels.len() - inside.len(),
        threshold_before: prior,
        errors_before,
        threshold,
        errors: errs,
        contamination: flagged as f64 / scores.len() as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(row: usize, anomaly: bool) -> Labelled {
        Labelled { row, anomaly }
    }

    #[test]
    fn a_false_positive_raises_the_threshold_just_enough() {
        let scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
        // the prior flags 0.7 and up; row 6 (0.7) is said to be normal
        let fit = fit_threshold(&scores, &[label(6, false)], 0.65).unwrap();
        assert_eq!(fit.errors_before, 1);
        assert_eq!(fit.errors, 0);
        assert_eq!(
            fit.threshold, 0.7,
            "the nearest threshold that leaves 0.7 unflagged"
        );
        assert!((fit.contamination - 0.3).abs() < 1e-12);
    }

    #[test]
    fn a_miss_lowers_it_to_flag_the_row() {
        let scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
        let fit = fit_threshold(&scores, &[label(3, true)], 0.85).unwrap();
        assert_eq!((fit.errors_before, fit.errors), (1, 0));
        assert!(fit.threshold < 0.4 && fit.threshold > 0.3999999);
        assert!(scores[3] > fit.threshold);
        assert!((fit.contamination - 0.7).abs() < 1e-12);
    }

    #[test]
    fn labels_that_agree_leave_the_prior_alone() {
        let scores = [0.1, 0.2, 0.9];
        let fit = fit_threshold(&scores, &[label(2, true), label(0, false)], 0.5).unwrap();
        assert_eq!(fit.threshold, 0.5);
        assert_eq!((fit.errors_before, fit.errors), (0, 0));
    }

    #[test]
    fn conflicting_labels_get_the_fewest_errors() {
        // an anomaly at 0.3 and normal rows at 0.4, 0.5 and 0.6: flagging 0.3 would flag
        // three normal rows, so the anomaly stays missed (1 error, not 3)
        let scores = [0.3, 0.4, 0.5, 0.6, 0.95];
        let labels = [
            label(0, true),
            label(1, false),
            label(2, false),
            label(3, false),
            label(4, true),
        ];
        let fit = fit_threshold(&scores, &labels, 0.35).unwrap();
        assert_eq!(fit.errors_before, 4);
        assert_eq!(fit.errors, 1);
        assert!(fit.threshold >= 0.6 && fit.threshold < 0.95);
        assert_eq!(fit.threshold, 0.6, "the optimum nearest the prior");
    }

    #[test]
    fn labels_past_the_rows_are_ignored() {
        assert_eq!(fit_threshold(&[0.1, 0.2], &[label(5, true)], 0.5), None);
        let fit = fit_threshold(&[0.1, 0.9], &[label(5, true), label(1, true)], 0.5).unwrap();
        assert_eq!((fit.labelled, fit.ignored), (1, 1));
    }

    #[test]
    fn zero_and_negative_scores_can_be_flagged() {
        let fit = fit_threshold(&[-1.0, 0.0, 1.0], &[label(1, true)], 0.5).unwrap();
        assert!(fit.threshold < 0.0 && fit.threshold > -1.0);
        let fit = fit_threshold(&[-2.0, -1.0, 1.0], &[label(1, true)], 0.5).unwrap();
        assert!(fit.threshold < -1.0 && fit.threshold > -1.0000001);
    }
}
