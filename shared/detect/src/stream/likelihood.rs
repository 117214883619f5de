//! One score scale for every stream: the anomaly likelihood of Ahmad et al. (2017,
//! "Unsupervised real-time anomaly detection for streaming data"), over any detector's raw
//! score.
//!
//! A raw score means different things on different series: a robust z-score of 8 is
//! ordinary on a spiky series and unheard of on a smooth one. The likelihood asks instead
//! how unusual the *recent* raw scores are for *this* series:
//!
//! 1. The raw score is compressed, `a = ln(1 + max(raw, 0))`, so that the z-scores of a
//!    flat series (10⁶ and more) and a bounded score in [0, 1] live on comparable scales.
//! 2. The short-term mean `m` of the last `short_window` compressed scores is compared with
//!    the long-run distribution of such means: an exponentially weighted mean `μ` and
//!    variance `σ²` over about `long_window` points, with `σ` floored at `min_spread` so
//!    that no series divides by a near-zero spread.
//! 3. The tail probability `q = Q((m − μ) / σ)` (the upper tail of a normal) becomes the
//!    score `−log10(max(q, 1e−10)) / 10`, in [0, 1]: 0.5 means "one in 100,000", 1 means
//!    "one in 10¹⁰ or rarer". The score's meaning does not depend on the series.
//!    A point whose compressed score passes the largest of about the last `long_window`
//!    points by `spike_margin` is also compared alone with the long-run distribution of
//!    single compressed scores, and the rarer of the two counts: one isolated spike well
//!    beyond anything seen lately is not averaged away by its quiet neighbours.
//! 4. As in Numenta's implementation, a red point (past [`RED`]) right after another red
//!    point is held at [`YELLOW`], so an episode does not alert at every point.
//!
//! The first `learning` points only learn (score 0). [`Likelihood::update`] scores a point
//! against the state, then learns it (test-then-train), so scores never look ahead.
//! State: a few numbers and the short window.

use crate::{DetectError, Result};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// The score of a tail probability of 1e-5, past which a point is "red".
pub const RED: f64 = 0.5;
/// The score a red point's red successor is held at (a tail probability of 1e-3).
pub const YELLOW: f64 = 0.3;

/// Parameters of the likelihood.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LikelihoodParams {
    /// Recent raw scores averaged into the short-term mean (default 3).
    #[serde(default = "default_short")]
    pub short_window: usize,
    /// Points the long-run mean and variance are weighted over (default 8000).
    #[serde(default = "default_long")]
    pub long_window: usize,
    /// Points learned before any is scored (default 20).
    #[serde(default = "default_learning")]
    pub learning: usize,
    /// Least spread of the long-run distribution, in compressed-score units (default 0.2).
    #[serde(default = "default_min_spread")]
    pub min_spread: f64,
    /// A point whose compressed score passes the recent peak by this much is also scored
    /// alone, so that one isolated spike is not averaged away by its quiet neighbours
    /// (default 0.8; `null`: never).
    #[serde(default = "default_spike_margin")]
    pub spike_margin: Option<f64>,
}

fn default_spike_margin() -> Option<f64> {
    Some(0.8)
}

fn default_short() -> usize {
    3
}
fn default_long() -> usize {
    8000
}
fn default_learning() -> usize {
    20
}
fn default_min_spread() -> f64 {
    0.2
}

impl Default for LikelihoodParams {
    fn default() -> Self {
        LikelihoodParams {
            short_window: default_short(),
            long_window: default_long(),
            learning: default_learning(),
            min_spread: default_min_spread(),
            spike_margin: default_spike_margin(),
        }
    }
}

impl LikelihoodParams {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, reason: &str| {
            Err(DetectError::InvalidParameter {
                name,
                reason: reason.to_string(),
            })
        };
        if !(1..=1000).contains(&self.short_window) {
            return bad("short_window", "must be between 1 and 1000");
        }
        if !(10..=1_000_000).contains(&self.long_window) {
            return bad("long_window", "must be between 10 and 1000000");
        }
        if self.learning > 100_000 {
            return bad("learning", "must be at most 100000");
        }
        if !(self.min_spread.is_finite() && self.min_spread > 0.0 && self.min_spread <= 10.0) {
            return bad("min_spread", "must be above 0 and at most 10");
        }
        if self
            .spike_margin
            .is_some_and(|m| !(m.is_finite() && (0.0..=100.0).contains(&m)))
        {
            return bad("spike_margin", "must be between 0 and 100, or null");
        }
        Ok(())
    }
}

/// The likelihood's state for one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Likelihood {
    params: LikelihoodParams,
    /// The last `short_window` compressed raw scores.
    recent: VecDeque<f64>,
    /// Short-term means learned into the long-run distribution.
    learned: u64,
    mean: f64,
    var: f64,
    /// The long-run mean and variance of single compressed scores.
    #[serde(default)]
    point_mean: f64,
    #[serde(default)]
    point_var: f64,
    /// The largest single compressed score of about the last `long_window` points (its
    /// excess over the mean decays by `1 / long_window` a point).
    #[serde(default)]
    peak: f64,
    /// Whether the last point scored was red.
    red: bool,
}

impl Default for Likelihood {
    fn default() -> Self {
        Likelihood::new(LikelihoodParams::default()).expect("the defaults are valid")
    }
}

impl Likelihood {
    /// A fresh likelihood.
    pub fn new(params: LikelihoodParams) -> Result<Self> {
        params.validate()?;
        Ok(Likelihood {
            params,
            recent: VecDeque::new(),
            learned: 0,
            mean: 0.0,
            var: 0.0,
            point_mean: 0.0,
            point_var: 0.0,
            peak: 0.0,
            red: false,
        })
    }

    /// Its parameters.
    pub fn params(&self) -> &LikelihoodParams {
        &self.params
    }

    /// The short-term mean once `raw` joins the recent scores.
    fn short_mean(&self, raw: f64) -> f64 {
        let a = compress(raw);
        let keep = self.params.short_window - 1;
        let skip = self.recent.len().saturating_sub(keep);
        let sum: f64 = self.recent.iter().skip(skip).sum::<f64>() + a;
        sum / (self.recent.len() - skip + 1) as f64
    }

    /// The score of `raw` before the red filter.
    fn unfiltered(&self, raw: f64) -> f64 {
        if self.learned < self.params.learning as u64 || self.learned < 2 {
            return 0.0;
        }
        let floor = self.params.min_spread;
        let tail = |value: f64, mean: f64, var: f64| {
            let spread = var.max(0.0).sqrt().max(floor);
            upper_tail((value - mean) / spread)
        };
        let mut q = tail(self.short_mean(raw), self.mean, self.var);
        let a = compress(raw);
        if self
            .params
            .spike_margin
            .is_some_and(|margin| a > self.peak + margin)
        {
            q = q.min(tail(a, self.point_mean, self.point_var));
        }
        (-(q.max(1e-10)).log10() / 10.0).clamp(0.0, 1.0)
    }

    /// Scores `raw` against what was learned before it, then learns it: the calibrated
    /// score (test-then-train).
    pub fn update(&mut self, raw: f64) -> f64 {
        let unfiltered = self.unfiltered(raw);
        let score = if self.red && unfiltered >= RED {
            YELLOW
        } else {
            unfiltered
        };
        self.red = unfiltered >= RED;
        let m = self.short_mean(raw);
        let a = compress(raw);
        self.recent.push_back(a);
        while self.recent.len() > self.params.short_window {
            self.recent.pop_front();
        }
        self.learned += 1;
        // Plain running moments until `long_window` points, exponential after.
        let alpha = (1.0 / self.learned as f64).max(1.0 / self.params.long_window as f64);
        ew_moments(&mut self.mean, &mut self.var, m, alpha);
        ew_moments(&mut self.point_mean, &mut self.point_var, a, alpha);
        let decayed = self.point_mean + (self.peak - self.point_mean) * (1.0 - alpha);
        self.peak = a.max(decayed);
        score
    }
}

/// Moves an exponentially weighted mean and variance towards `x` by `alpha`.
fn ew_moments(mean: &mut f64, var: &mut f64, x: f64, alpha: f64) {
    let delta = x - *mean;
    *mean += alpha * delta;
    *var = (1.0 - alpha) * (*var + alpha * delta * delta);
}

/// `ln(1 + max(raw, 0))`, with NaN taken as 0.
fn compress(raw: f64) -> f64 {
    if raw > 0.0 {
        raw.ln_1p()
    } else {
        0.0
    }
}

/// `P(Z > z)` for a standard normal `Z` (Abramowitz & Stegun 7.1.26 on erfc, |error| under
/// 1.5e-7, with the far tail by the asymptotic series so tiny probabilities stay ordered).
pub fn upper_tail(z: f64) -> f64 {
    if z.is_nan() {
        return 0.5;
    }
    if z < 0.0 {
        return 1.0 - upper_tail(-z);
    }
    if z > 5.0 {
        // Q(z) ≈ φ(z)/z · (1 − 1/z² + 3/z⁴)
        let phi = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let z2 = z * z;
        return phi / z * (1.0 - 1.0 / z2 + 3.0 / (z2 * z2));
    }
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    0.5 * poly * (-x * x).exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn the_normal_tail_is_right_and_ordered() {
        assert!((upper_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((upper_tail(1.959_964) - 0.025).abs() < 1e-6);
        assert!((upper_tail(-1.959_964) - 0.975).abs() < 1e-6);
        assert!((upper_tail(4.264_891) - 1e-5).abs() < 1e-8);
        let mut last = 1.0;
        for i in 0..200 {
            let q = upper_tail(i as f64 * 0.05);
            assert!(q <= last, "not monotone at {}", i as f64 * 0.05);
            last = q;
        }
        assert!(upper_tail(7.0) > upper_tail(8.0) && upper_tail(8.0) > 0.0);
    }

    /// Raw scores of very different sizes (a bounded score, z-scores, z-scores of a flat
    /// series) give the same picture: quiet noise stays under [`RED`], a burst ten times
    /// the usual raw score is red. What one threshold across every series needs.
    #[test]
    fn the_scale_does_not_depend_on_the_raw_score_s_size() {
        for size in [0.2, 1.0, 30.0, 1e6] {
            let mut rng = Rng::new(3);
            let mut l = Likelihood::default();
            let mut scores = Vec::new();
            for i in 0..3000 {
                let burst = if (2500..2505).contains(&i) { 10.0 } else { 0.0 };
                let raw = size * (rng.next_f64() + burst);
                let s = l.update(raw);
                scores.push(s);
            }
            let quiet = scores[..2500].iter().filter(|s| **s >= RED).count();
            let peak = scores[2500..2510].iter().copied().fold(0.0, f64::max);
            assert_eq!(quiet, 0, "raw size {size}");
            assert!(peak >= RED, "raw size {size}: peak {peak}");
        }
    }

    #[test]
    fn a_quiet_series_scores_low_and_an_episode_alerts_once() {
        let mut rng = Rng::new(9);
        let mut l = Likelihood::default();
        let mut scores = Vec::new();
        for i in 0..4000 {
            let raw = rng.next_f64() * 2.0 + if (3000..3050).contains(&i) { 40.0 } else { 0.0 };
            let s = l.update(raw);
            scores.push(s);
        }
        assert!(scores[..20].iter().all(|s| *s == 0.0), "learning scores 0");
        let quiet = scores[20..3000].iter().filter(|s| **s >= RED).count();
        assert_eq!(quiet, 0, "no red point in noise");
        let red: Vec<usize> = (3000..3100).filter(|&i| scores[i] >= RED).collect();
        assert_eq!(
            red.len(),
            1,
            "the episode's later points are held back: {red:?}"
        );
        assert!(
            red[0] < 3003,
            "the episode alerts within its first points: {red:?}"
        );
        assert!(scores[3000..3050].iter().all(|s| *s >= YELLOW));
    }

    /// A single spike far beyond anything seen is red at once, although the short-term
    /// mean dilutes it with quiet neighbours; with `spike_margin: null` it is not.
    #[test]
    fn an_isolated_spike_is_not_averaged_away() {
        let run = |spike_margin| {
            let mut rng = Rng::new(5);
            let mut l = Likelihood::new(LikelihoodParams {
                spike_margin,
                ..LikelihoodParams::default()
            })
            .expect("valid");
            // Noisy raw scores with the odd 3-sigma-ish bump, then one spike.
            for i in 0..3000 {
                let raw = rng.next_f64() * 3.0 + if i % 97 == 0 { 8.0 } else { 0.0 };
                l.update(raw);
            }
            l.update(60.0)
        };
        assert!(run(Some(0.8)) >= RED, "{}", run(Some(0.8)));
        assert!(run(None) < RED, "{}", run(None));
    }

    #[test]
    fn a_flat_series_with_a_spike_is_finite_and_red() {
        let mut l = Likelihood::default();
        for _ in 0..1000 {
            let s = l.update(0.0);
            assert!(s < 0.1, "{s}");
        }
        let s = l.update(1e9);
        assert!(s.is_finite() && (RED..=1.0).contains(&s), "{s}");
        assert!(Likelihood::new(LikelihoodParams {
            min_spread: 0.0,
            ..LikelihoodParams::default()
        })
        .is_err());
        assert!(Likelihood::new(LikelihoodParams {
            spike_margin: Some(f64::NAN),
            ..LikelihoodParams::default()
        })
        .is_err());
    }
}
