//! What a person's verdict on a stream's result does to its threshold (on the common
//! (0, 1] scale of stream scores). A false positive raises the threshold above the point's
//! score, so a point like it no longer flags; a miss lowers it below the best score of the
//! range that should have flagged. Both stay within [`FLOOR`, `CEILING`]: one verdict can
//! neither silence a stream nor make it flag everything.
//!
//! The rule is fixed, not fitted: halfway from the score to 1 for a false positive, 5 %
//! below the best score for a miss. (Chosen by reasoning about the scale, not on NAB;
//! bench/README.md reports what it does there.)

/// The highest threshold a false positive can raise a stream to.
pub const CEILING: f64 = 0.999;

/// The lowest threshold a miss can lower a stream to.
pub const FLOOR: f64 = 0.05;

/// The threshold after a false positive scored `score`: halfway from `score` to 1, never
/// lower than it was, never above [`CEILING`].
pub fn after_false_positive(threshold: f64, score: f64) -> f64 {
    let score = score.clamp(0.0, 1.0);
    (score + (1.0 - score) * 0.5)
        .max(threshold)
        .min(CEILING.max(threshold))
}

/// The threshold after a miss whose range's best score was `best`: 5 % below it, never
/// higher than it was, never below [`FLOOR`].
pub fn after_miss(threshold: f64, best: f64) -> f64 {
    let best = best.clamp(0.0, 1.0);
    (best * 0.95).min(threshold).max(FLOOR.min(threshold))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_false_positive_raises_the_threshold_above_its_score() {
        let t = after_false_positive(0.5, 0.9);
        assert!((t - 0.95).abs() < 1e-12);
        assert!(
            after_false_positive(0.5, 0.9) > 0.9,
            "the point no longer flags"
        );
        assert_eq!(after_false_positive(0.97, 0.6), 0.97, "never lowered");
        assert_eq!(after_false_positive(0.5, 1.0), CEILING, "bounded");
    }

    #[test]
    fn a_miss_lowers_the_threshold_below_the_best_score() {
        let t = after_miss(0.5, 0.4);
        assert!((t - 0.38).abs() < 1e-12);
        assert!(t < 0.4, "the missed point would now flag");
        assert_eq!(after_miss(0.3, 0.9), 0.3, "never raised");
        assert_eq!(after_miss(0.5, 0.01), FLOOR, "bounded");
    }
}
