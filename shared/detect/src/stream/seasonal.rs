//! A seasonal baseline for a univariate series with timestamps: each point is compared
//! with the median of the last `cycles` points at the same phase of the period (the same
//! time of day, or of the week), and its residual is scored as a robust z-score against
//! the recent residuals (median and MAD × 1.4826).
//!
//! The period is given, or chosen after `warmup` points: the sampling step is the median
//! gap between timestamps, the candidates are a day and a week of steps (those with two
//! whole cycles in the warm-up), and the one whose autocorrelation is highest wins if it
//! reaches 0.3; otherwise the period is 1 (the baseline is the last `cycles` points).
//! Until then points are scored against the warm-up's recent values.
//!
//! Constant memory: `period × cycles + 2 × residual_window` values (the period is capped
//! at 4032), plus the warm-up buffer until the period is chosen.

use super::window::{median, median_mad, z};
use crate::{DetectError, Result};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Longest period kept (two weeks of 5-minute points).
pub const MAX_PERIOD: usize = 4032;
/// Autocorrelation a candidate period needs.
const MIN_AUTOCORRELATION: f64 = 0.3;

/// Parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeasonalParams {
    /// Points per cycle; chosen from the data when left out.
    #[serde(default)]
    pub period: Option<usize>,
    /// Past cycles whose median is the baseline (default 4).
    #[serde(default = "default_cycles")]
    pub cycles: usize,
    /// Points seen before the period is chosen (default 700).
    #[serde(default = "default_warmup")]
    pub warmup: usize,
    /// Recent residuals the score is scaled by (default 288).
    #[serde(default = "default_residuals")]
    pub residual_window: usize,
}

fn default_cycles() -> usize {
    4
}
fn default_warmup() -> usize {
    700
}
fn default_residuals() -> usize {
    288
}

impl Default for SeasonalParams {
    fn default() -> Self {
        SeasonalParams {
            period: None,
            cycles: default_cycles(),
            warmup: default_warmup(),
            residual_window: default_residuals(),
        }
    }
}

impl SeasonalParams {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, reason: &str| {
            Err(DetectError::InvalidParameter {
                name,
                reason: reason.to_string(),
            })
        };
        if self.period.is_some_and(|p| !(1..=MAX_PERIOD).contains(&p)) {
            return bad("period", "must be between 1 and 4032 points");
        }
        if !(1..=20).contains(&self.cycles) {
            return bad("cycles", "must be between 1 and 20");
        }
        if !(10..=20_000).contains(&self.warmup) {
            return bad("warmup", "must be between 10 and 20000");
        }
        if !(10..=10_000).contains(&self.residual_window) {
            return bad("residual_window", "must be between 10 and 10000");
        }
        Ok(())
    }
}

/// The state of one series' seasonal baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seasonal {
    params: SeasonalParams,
    /// Points of the warm-up, until the period is chosen.
    warm: Vec<(i64, f64)>,
    /// Seconds between points.
    step: i64,
    /// Points per cycle, once chosen.
    period: Option<usize>,
    /// The last `cycles` values at each phase.
    slots: Vec<VecDeque<f64>>,
    /// Recent residuals.
    residuals: VecDeque<f64>,
}

impl Seasonal {
    /// A baseline with these parameters.
    pub fn new(params: SeasonalParams) -> Result<Self> {
        params.validate()?;
        Ok(Seasonal {
            params,
            warm: Vec::new(),
            step: 1,
            period: None,
            slots: Vec::new(),
            residuals: VecDeque::new(),
        })
    }

    /// The period in points, once chosen.
    pub fn period(&self) -> Option<usize> {
        self.period
    }

    fn slot(&self, t: i64) -> usize {
        let period = self.period.unwrap_or(1).max(1) as i64;
        t.div_euclid(self.step.max(1)).rem_euclid(period) as usize
    }

    /// The baseline at `t`: the median of the slot's past values.
    fn expected(&self, t: i64) -> Option<f64> {
        let slot = self.slots.get(self.slot(t))?;
        if slot.is_empty() {
            return None;
        }
        let mut values: Vec<f64> = slot.iter().copied().collect();
        Some(median(&mut values))
    }

    /// The robust z-score of `value` at `t`; 0 while there is too little history.
    pub fn score_one(&self, t: i64, value: f64) -> Result<f64> {
        Ok(self.assess(t, value)?.raw)
    }

    /// The robust z-score of `value` at `t`, with the value expected there: the phase's
    /// baseline plus the recent residuals' median (in the warm-up, the recent values'
    /// median).
    pub fn assess(&self, t: i64, value: f64) -> Result<super::Assessment> {
        check(value)?;
        if self.period.is_none() {
            // Warm-up: against the recent values.
            let start = self.warm.len().saturating_sub(self.params.residual_window);
            let mut recent: Vec<f64> = self.warm[start..].iter().map(|p| p.1).collect();
            if recent.len() < 2 {
                return Ok(super::Assessment::default());
            }
            let (centre, spread) = median_mad(&mut recent);
            return Ok(super::Assessment::univariate(
                z(value, centre, spread),
                centre,
            ));
        }
        let Some(baseline) = self.expected(t) else {
            return Ok(super::Assessment::default());
        };
        if self.residuals.len() < 2 {
            return Ok(super::Assessment::default());
        }
        let mut recent: Vec<f64> = self.residuals.iter().copied().collect();
        let (centre, spread) = median_mad(&mut recent);
        Ok(super::Assessment::univariate(
            z(value - baseline, centre, spread),
            baseline + centre,
        ))
    }

    /// Learns `value` at `t`.
    pub fn learn_one(&mut self, t: i64, value: f64) -> Result<()> {
        check(value)?;
        if self.period.is_some() {
            self.remember(t, value);
            return Ok(());
        }
        self.warm.push((t, value));
        if self.warm.len() >= self.params.warmup {
            let warm = std::mem::take(&mut self.warm);
            self.step = sampling_step(&warm);
            let period = self
                .params
                .period
                .unwrap_or_else(|| choose_period(&warm, self.step));
            self.period = Some(period);
            self.slots = vec![VecDeque::new(); period];
            for (t, v) in warm {
                self.remember(t, v);
            }
        }
        Ok(())
    }

    fn remember(&mut self, t: i64, value: f64) {
        if let Some(expected) = self.expected(t) {
            if self.residuals.len() == self.params.residual_window {
                self.residuals.pop_front();
            }
            self.residuals.push_back(value - expected);
        }
        let cycles = self.params.cycles;
        let slot = self.slot(t);
        if let Some(s) = self.slots.get_mut(slot) {
            if s.len() == cycles {
                s.pop_front();
            }
            s.push_back(value);
        }
    }
}

fn check(value: f64) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(DetectError::NonFinite {
            row: 0,
            column: 0,
            value: value.to_string(),
        })
    }
}

/// The median gap between consecutive timestamps, at least 1 s.
fn sampling_step(points: &[(i64, f64)]) -> i64 {
    let mut gaps: Vec<f64> = points
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) as f64)
        .filter(|g| *g > 0.0)
        .collect();
    if gaps.is_empty() {
        return 1;
    }
    (median(&mut gaps).round() as i64).max(1)
}

/// A day or a week of steps, whichever correlates best with itself (at least 0.3); else 1.
fn choose_period(points: &[(i64, f64)], step: i64) -> usize {
    let values: Vec<f64> = points.iter().map(|p| p.1).collect();
    [86_400i64, 604_800]
        .iter()
        .filter(|&&secs| secs % step == 0)
        .map(|&secs| (secs / step) as usize)
        .filter(|&lag| (2..=MAX_PERIOD).contains(&lag) && 2 * lag <= values.len())
        .map(|lag| (lag, autocorrelation(&values, lag)))
        .filter(|(_, r)| *r >= MIN_AUTOCORRELATION)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(lag, _)| lag)
        .unwrap_or(1)
}

/// The autocorrelation of `values` at `lag`, with the lagged covariance averaged over
/// its own `n - lag` pairs. (The textbook estimator divides by `n` and so shrinks long
/// lags: a week of half-hourly points in a two-week warm-up looked half as correlated as
/// it is, and the day won over the week on NAB's taxi series.)
pub(crate) fn autocorrelation(values: &[f64], lag: usize) -> f64 {
    let n = values.len();
    if lag >= n {
        return 0.0;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let var: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
    if var <= 0.0 {
        return 0.0;
    }
    let cov: f64 = (lag..n)
        .map(|i| (values[i] - mean) * (values[i - lag] - mean))
        .sum();
    (cov / (n - lag) as f64) / (var / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daily cycle of 5-minute points with a little deterministic noise.
    fn daily(points: usize) -> Vec<(i64, f64)> {
        (0..points)
            .map(|i| {
                let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
                let noise = ((i * 7919) % 13) as f64 / 13.0 - 0.5;
                (
                    1_400_000_000 + 300 * i as i64,
                    100.0 + 30.0 * phase.sin() + noise,
                )
            })
            .collect()
    }

    #[test]
    fn the_daily_period_is_found_and_a_break_from_it_scores_high() {
        let mut s = Seasonal::new(SeasonalParams::default()).expect("valid");
        let series = daily(288 * 5);
        for &(t, v) in &series {
            s.learn_one(t, v).expect("learn");
        }
        assert_eq!(s.period(), Some(288));
        let t = series.last().map(|p| p.0).unwrap_or(0) + 300;
        let (t_next, expected_v) = daily(288 * 5 + 1)[288 * 5];
        assert_eq!(t_next, t);
        let normal = s.score_one(t, expected_v).expect("score");
        // The next point is at phase 0 (about 100); 128 is ordinary for the series (it
        // peaks at 130 six hours later) but wrong for the hour.
        let off_phase = s.score_one(t, 128.0).expect("score");
        assert!(normal < 3.0, "normal {normal}");
        assert!(off_phase > 10.0, "off phase {off_phase}");
    }

    #[test]
    fn no_period_is_chosen_for_noise_and_a_given_period_is_kept() {
        let mut s = Seasonal::new(SeasonalParams::default()).expect("valid");
        for i in 0..800i64 {
            s.learn_one(i * 60, ((i * 7919) % 101) as f64)
                .expect("learn");
        }
        assert_eq!(s.period(), Some(1));
        let mut given = Seasonal::new(SeasonalParams {
            period: Some(7),
            warmup: 10,
            ..SeasonalParams::default()
        })
        .expect("valid");
        for i in 0..20i64 {
            given.learn_one(i, (i % 7) as f64).expect("learn");
        }
        assert_eq!(given.period(), Some(7));
        assert!(Seasonal::new(SeasonalParams {
            period: Some(0),
            ..SeasonalParams::default()
        })
        .is_err());
    }

    #[test]
    fn a_weekly_cycle_wins_over_its_daily_one() {
        // Half-hourly points: a daily cycle whose weekends are quieter, as city traffic.
        let series: Vec<(i64, f64)> = (0..700)
            .map(|i| {
                let day = (i / 48) % 7;
                let phase = (i % 48) as f64 / 48.0 * std::f64::consts::TAU;
                let level = if day >= 5 { 40.0 } else { 100.0 };
                (1_400_000_000 + 1800 * i as i64, level + 30.0 * phase.sin())
            })
            .collect();
        assert_eq!(sampling_step(&series), 1800);
        assert_eq!(choose_period(&series, 1800), 336);
    }

    #[test]
    fn autocorrelation_is_one_at_the_period_of_a_pure_cycle() {
        let v: Vec<f64> = (0..400).map(|i| ((i % 20) as f64).sin()).collect();
        assert!(autocorrelation(&v, 20) > 0.9);
        assert!(autocorrelation(&v, 10) < 0.5);
    }
}
