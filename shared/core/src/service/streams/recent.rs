//! A stream's (or an entity's) last points, kept for a chart: each point's first value,
//! its score, and the value expected with a band around it where the detector has one.

use super::request::Point;
use crate::domain::RecentPoint;
use nomaly_detect::stream::Scored;

/// Points kept.
pub const RECENT_KEPT: usize = 120;

/// Robust deviations either side of the expected value that the band spans.
const BAND_DEVIATIONS: f64 = 3.0;

/// `before`, then the points scored in `scores` (a dropped point has none), keeping the
/// last [`RECENT_KEPT`].
pub(super) fn after(
    before: &[RecentPoint],
    points: &[Point],
    scores: &[Option<Scored>],
) -> Vec<RecentPoint> {
    let new: Vec<RecentPoint> = points
        .iter()
        .zip(scores)
        .filter_map(|(p, s)| s.as_ref().map(|s| of(p, s)))
        .collect();
    let keep_before = RECENT_KEPT.saturating_sub(new.len()).min(before.len());
    before[before.len() - keep_before..]
        .iter()
        .cloned()
        .chain(new.into_iter().rev().take(RECENT_KEPT).rev())
        .collect()
}

/// One point as the chart shows it. The detectors that expect a value score a point by
/// how many robust deviations it lies from it (`raw`), so one deviation is
/// `|value - expected| / |raw|`, and the band spans three either side.
fn of(point: &Point, scored: &Scored) -> RecentPoint {
    let v = point.values.first().copied().unwrap_or(f64::NAN);
    let e = scored.expected.as_ref().and_then(|e| e.first().copied());
    let b = e
        .filter(|_| scored.raw.abs() > 1e-9 && scored.raw.is_finite())
        .map(|e| BAND_DEVIATIONS * (v - e).abs() / scored.raw.abs())
        .filter(|b| b.is_finite());
    RecentPoint {
        t: point.t,
        v,
        s: scored.score,
        e,
        b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(score: f64, raw: f64, expected: Option<f64>) -> Option<Scored> {
        Some(Scored {
            score,
            raw,
            expected: expected.map(|e| vec![e]),
            shares: None,
        })
    }

    #[test]
    fn the_last_points_are_kept_with_their_band() {
        let points: Vec<Point> = (0..3)
            .map(|t| Point::new(t, vec![10.0 + t as f64]))
            .collect();
        let kept = after(
            &[],
            &points,
            &[scored(0.1, 2.0, Some(8.0)), None, scored(0.9, 0.0, None)],
        );
        assert_eq!(kept.len(), 2, "the dropped point is not charted");
        // 10 is 2 deviations above 8, so a deviation is 1 and the band 3.
        assert_eq!((kept[0].e, kept[0].b), (Some(8.0), Some(3.0)));
        assert_eq!((kept[1].t, kept[1].e, kept[1].b), (2, None, None));
        let many: Vec<Point> = (0..200).map(|t| Point::new(t, vec![1.0])).collect();
        let scores = vec![scored(0.0, 1.0, Some(1.0)); 200];
        let full = after(&kept, &many, &scores);
        assert_eq!(full.len(), RECENT_KEPT);
        assert_eq!(full.last().map(|p| p.t), Some(199));
        assert_eq!(full[0].t, 200 - RECENT_KEPT as i64);
        let some = after(&full, &many[..5], &scores[..5]);
        assert_eq!(
            (some.len(), some[RECENT_KEPT - 6].t, some[RECENT_KEPT - 5].t),
            (RECENT_KEPT, 199, 0)
        );
    }
}
