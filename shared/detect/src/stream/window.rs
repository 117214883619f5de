//! Windowed detectors: each point is scored against the `window` points before it, then
//! joins them (the oldest leaves). Constant memory: `window × width` values.
//!
//! - [`Rolling`] with [`Center::Mean`]: the z-score against the window's mean and
//!   standard deviation (NAB's usual baseline: 288 points, |z| > 3).
//! - [`Rolling`] with [`Center::Median`]: the robust z-score against the window's median
//!   and MAD (×1.4826), which one outlier in the window does not inflate.
//!
//! With several features, a point's score is its largest |z|.

use crate::{DetectError, Result};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// How the window's centre and spread are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Center {
    /// Mean and standard deviation.
    Mean,
    /// Median and scaled MAD.
    Median,
}

/// Parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowParams {
    /// Points in the window (default 288: a day of 5-minute points).
    #[serde(default = "default_window")]
    pub window: usize,
}

fn default_window() -> usize {
    288
}

impl Default for WindowParams {
    fn default() -> Self {
        WindowParams {
            window: default_window(),
        }
    }
}

impl WindowParams {
    /// Checks the range (2-100000).
    pub fn validate(&self) -> Result<()> {
        if !(2..=100_000).contains(&self.window) {
            return Err(DetectError::InvalidParameter {
                name: "window",
                reason: "must be between 2 and 100000".into(),
            });
        }
        Ok(())
    }
}

/// A rolling window of points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rolling {
    params: WindowParams,
    center: Center,
    width: usize,
    recent: VecDeque<Vec<f64>>,
}

/// The spread under which a window is taken as constant.
const TINY: f64 = 1e-9;

impl Rolling {
    /// A window over points of `width` features.
    pub fn new(params: WindowParams, center: Center, width: usize) -> Result<Self> {
        params.validate()?;
        if width == 0 {
            return Err(DetectError::NoColumns);
        }
        Ok(Rolling {
            params,
            center,
            width,
            recent: VecDeque::new(),
        })
    }

    /// Features per point.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The largest |z| of `x` against the window; 0 until the window has two points.
    pub fn score_one(&self, x: &[f64]) -> Result<f64> {
        Ok(self.assess(x)?.raw)
    }

    /// The largest |z| of `x` against the window, with each value's expected value (the
    /// window's centre) and, for several values, each one's share of the summed |z|.
    pub fn assess(&self, x: &[f64]) -> Result<super::Assessment> {
        super::check_point(x, self.width)?;
        if self.recent.len() < 2 {
            return Ok(super::Assessment::default());
        }
        let mut worst: f64 = 0.0;
        let mut expected = Vec::with_capacity(x.len());
        let mut zs = Vec::with_capacity(x.len());
        let mut column = Vec::with_capacity(self.recent.len());
        for (j, &v) in x.iter().enumerate() {
            column.clear();
            column.extend(self.recent.iter().map(|p| p[j]));
            let (centre, spread) = match self.center {
                Center::Mean => mean_std(&column),
                Center::Median => median_mad(&mut column),
            };
            let zj = z(v, centre, spread);
            worst = worst.max(zj);
            expected.push(centre);
            zs.push(zj);
        }
        Ok(super::Assessment {
            raw: worst,
            expected: Some(expected),
            shares: super::shares(&zs),
        })
    }

    /// Adds `x` to the window.
    pub fn learn_one(&mut self, x: &[f64]) -> Result<()> {
        super::check_point(x, self.width)?;
        if self.recent.len() == self.params.window {
            self.recent.pop_front();
        }
        self.recent.push_back(x.to_vec());
        Ok(())
    }
}

/// |v − centre| / spread; a constant window scores a different value as far out.
pub(crate) fn z(v: f64, centre: f64, spread: f64) -> f64 {
    let d = (v - centre).abs();
    if spread > TINY * centre.abs().max(1.0) {
        d / spread
    } else if d > TINY * centre.abs().max(1.0) {
        1e6
    } else {
        0.0
    }
}

/// Mean and sample standard deviation.
pub(crate) fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// Median and a robust spread: the larger of MAD × 1.4826 and the mean absolute
/// deviation of the closest 95 % × 1.2533 (both the standard deviation for normal data),
/// so a mostly flat window, whose MAD is 0, still has a scale. Reorders `values`.
pub(crate) fn median_mad(values: &mut [f64]) -> (f64, f64) {
    let median = median(values);
    for v in values.iter_mut() {
        *v = (*v - median).abs();
    }
    // Sorted by `median_of`: the largest 5 % of deviations are left out of the mean, so
    // a few outliers in the window cannot inflate it.
    let mad = median_of(values);
    let kept = &values[..values
        .len()
        .saturating_sub(values.len() / 20)
        .max(1)
        .min(values.len())];
    let mean_abs = kept.iter().sum::<f64>() / kept.len().max(1) as f64;
    (median, (1.4826 * mad).max(1.2533 * mean_abs))
}

/// The median (the mean of the middle two for an even count). Reorders `values`.
pub(crate) fn median(values: &mut [f64]) -> f64 {
    median_of(values)
}

fn median_of(values: &mut [f64]) -> f64 {
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    values.sort_unstable_by(f64::total_cmp);
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_window_is_the_textbook_z_score() {
        let mut r = Rolling::new(WindowParams { window: 4 }, Center::Mean, 1).expect("valid");
        for v in [1.0, 2.0, 3.0, 4.0, 5.0] {
            r.learn_one(&[v]).expect("learn");
        }
        // Window 2, 3, 4, 5: mean 3.5, sample std 1.29099.
        let s = r.score_one(&[10.0]).expect("score");
        assert!((s - 6.5 / 1.2909944487358056).abs() < 1e-12, "{s}");
    }

    #[test]
    fn one_outlier_in_the_window_does_not_blind_the_median_window() {
        let mut mean = Rolling::new(WindowParams { window: 50 }, Center::Mean, 1).expect("valid");
        let mut robust =
            Rolling::new(WindowParams { window: 50 }, Center::Median, 1).expect("valid");
        for i in 0..50 {
            let v = if i == 25 { 1000.0 } else { (i % 5) as f64 };
            mean.learn_one(&[v]).expect("learn");
            robust.learn_one(&[v]).expect("learn");
        }
        assert!(
            mean.score_one(&[20.0]).expect("score") < 3.0,
            "the outlier inflated the std"
        );
        assert!(robust.score_one(&[20.0]).expect("score") > 5.0);
        // Multivariate: the worst feature.
        let mut two = Rolling::new(WindowParams { window: 10 }, Center::Median, 2).expect("valid");
        for i in 0..10 {
            two.learn_one(&[i as f64, 1.0 + (i % 2) as f64])
                .expect("learn");
        }
        assert!(two.score_one(&[4.5, 50.0]).expect("score") > 10.0);
    }

    #[test]
    fn constant_windows_and_short_windows_are_handled() {
        let mut r = Rolling::new(WindowParams { window: 3 }, Center::Median, 1).expect("valid");
        assert_eq!(r.score_one(&[5.0]).expect("score"), 0.0);
        for _ in 0..3 {
            r.learn_one(&[2.0]).expect("learn");
        }
        assert_eq!(r.score_one(&[2.0]).expect("score"), 0.0);
        assert!(r.score_one(&[2.5]).expect("score") >= 1e6);
        assert!(Rolling::new(WindowParams { window: 1 }, Center::Mean, 1).is_err());
    }
}
