//! Detectors that learn as points arrive, one point at a time, in constant memory per
//! stream: Half-Space Trees ([`hst`]) and Random Cut Forest ([`rcf`]) for multivariate
//! points, a seasonal baseline for univariate series with timestamps ([`seasonal`]), and
//! rolling windows ([`window`]).
//!
//! A [`StreamDetector`] scores each point against what it learned before it, then learns
//! it (test-then-train, no look-ahead). Its raw score goes through the anomaly
//! likelihood ([`likelihood`]), which puts every detector and every series on one scale
//! in [0, 1]; the answer keeps both ([`Scored`]). Its whole state is plain data: it
//! serializes to JSON between points ([`StreamDetector::to_json`]) and a restored detector gives
//! exactly the scores the original would have.

pub mod feedback;
pub mod hst;
pub mod likelihood;
pub mod rcf;
pub mod seasonal;
pub mod window;

use crate::{DetectError, Result};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Which detector a stream runs, with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "detector", rename_all = "snake_case")]
pub enum StreamSpec {
    /// Half-Space Trees over each point, or over the last `shingle` values of a
    /// univariate series.
    HalfSpaceTrees {
        /// The trees.
        #[serde(default)]
        params: hst::HstParams,
        /// Consecutive values of a univariate series that make one point (default 1:
        /// the point itself).
        #[serde(default = "one")]
        shingle: usize,
    },
    /// Random Cut Forest over shingles of the points.
    RandomCutForest {
        /// The forest.
        #[serde(default)]
        params: rcf::RcfParams,
    },
    /// The seasonal baseline (univariate).
    Seasonal {
        /// Its parameters.
        #[serde(default)]
        params: seasonal::SeasonalParams,
    },
    /// The robust z-score against a rolling window's median and MAD.
    RollingMedian {
        /// The window.
        #[serde(default)]
        params: window::WindowParams,
    },
    /// The z-score against a rolling window's mean and standard deviation.
    RollingMean {
        /// The window.
        #[serde(default)]
        params: window::WindowParams,
    },
}

fn one() -> usize {
    1
}

/// The default threshold on the common scale ([`StreamSpec::default_threshold`]).
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// Largest magnitude a point's value may have: the detectors square differences of
/// values and sum them over windows, which stays finite (and storable as JSON) below this.
pub const MAX_VALUE: f64 = 1e100;

/// A point must have `width` values, all finite and within ±[`MAX_VALUE`].
pub(crate) fn check_point(x: &[f64], width: usize) -> Result<()> {
    if x.len() != width {
        return Err(DetectError::WidthMismatch {
            expected: width,
            found: x.len(),
        });
    }
    if let Some((column, v)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(DetectError::NonFinite {
            row: 0,
            column,
            value: v.to_string(),
        });
    }
    if let Some((column, v)) = x.iter().enumerate().find(|(_, v)| v.abs() > MAX_VALUE) {
        return Err(DetectError::InvalidParameter {
            name: "value",
            reason: format!("value {column} is {v}; values must lie within ±1e100"),
        });
    }
    Ok(())
}

/// What a stream's detector costs, from its spec alone: the most numbers its state can
/// hold, and about how many operations one point takes. Callers cap both (a stream's
/// state travels to and from storage on every request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Numbers the state holds once full.
    pub state_values: usize,
    /// Operations per point, roughly.
    pub work_per_point: usize,
}

impl StreamSpec {
    /// The footprint of this detector on points of `width` values.
    pub fn footprint(&self, width: usize) -> Footprint {
        let width = width.max(1);
        match self {
            StreamSpec::HalfSpaceTrees { params, shingle } => {
                let nodes = params
                    .n_trees
                    .saturating_mul((2usize << params.height.min(30)) - 1);
                let point = width.saturating_mul(*shingle);
                Footprint {
                    // Two masses per node, a feature and a split per inner node, and the
                    // first window's points until the trees are built.
                    state_values: nodes
                        .saturating_mul(3)
                        .saturating_add(params.window_size.saturating_mul(point)),
                    work_per_point: params
                        .n_trees
                        .saturating_mul(params.height)
                        .saturating_mul(2)
                        .saturating_add(point),
                }
            }
            StreamSpec::RandomCutForest { params } => {
                let leaves = params.num_trees.saturating_mul(params.sample_size);
                let dims = params.dimensions(width);
                Footprint {
                    // Per tree: the sampler's points, weights and nodes (a cut, its
                    // dimension, children, parent and mass each); the point store's
                    // shingles, and the warm-up's points.
                    state_values: leaves
                        .saturating_mul(12)
                        .saturating_add(leaves.saturating_mul(dims))
                        .saturating_add(params.warmup.saturating_mul(width)),
                    // Scoring and learning (and, for several columns, attributing) each
                    // walk a tree; without a bounding-box cache a node's box is rebuilt
                    // from its subtree, so a walk can touch every sampled point's
                    // dimensions. An explained point imputes each column, a walk each:
                    // counted for every point, as a long anomalous run explains them all.
                    work_per_point: params
                        .num_trees
                        .saturating_mul(params.sample_size)
                        .saturating_mul(dims)
                        .saturating_mul(if width >= 2 { 3 } else { 2 } + width),
                }
            }
            StreamSpec::Seasonal { params } => {
                let period = params.period.unwrap_or(seasonal::MAX_PERIOD);
                Footprint {
                    state_values: period
                        .saturating_mul(params.cycles)
                        .saturating_add(params.warmup.saturating_mul(2))
                        .saturating_add(params.residual_window),
                    // Two medians (the slot's, the residuals' with their MAD) per point.
                    work_per_point: params
                        .residual_window
                        .saturating_mul(4)
                        .saturating_add(params.cycles * 2),
                }
            }
            StreamSpec::RollingMedian { params } | StreamSpec::RollingMean { params } => {
                let values = params.window.saturating_mul(width);
                Footprint {
                    state_values: values,
                    work_per_point: values.saturating_mul(4),
                }
            }
        }
    }

    /// The threshold a stream alerts at (score at or above it) unless told otherwise. Every
    /// detector's score is on the likelihood's common scale, so one value serves them all.
    /// Chosen with NAB's optimiser over the 55 NAB series in `tests/data/nab`, and checked
    /// by choosing on one half and scoring the other (`nab-bench`, `bench/README.md`).
    pub fn default_threshold(&self) -> f64 {
        DEFAULT_THRESHOLD
    }

    /// The detector's name.
    pub fn name(&self) -> &'static str {
        match self {
            StreamSpec::HalfSpaceTrees { .. } => "half_space_trees",
            StreamSpec::RandomCutForest { .. } => "random_cut_forest",
            StreamSpec::Seasonal { .. } => "seasonal",
            StreamSpec::RollingMedian { .. } => "rolling_median",
            StreamSpec::RollingMean { .. } => "rolling_mean",
        }
    }
}

/// The running detector of one stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamDetector {
    spec: StreamSpec,
    width: usize,
    state: State,
    /// The last point's timestamp: points come in time order.
    last_t: Option<i64>,
    /// The last point's values (states stored before it was kept have none), so a
    /// point sent twice can be told from a new one at the same time.
    #[serde(default)]
    last_x: Option<Vec<f64>>,
    /// Points learned.
    seen: u64,
    /// The raw scores' calibration to one scale (states stored before it start afresh).
    #[serde(default)]
    likelihood: likelihood::Likelihood,
}

/// The first bytes of a stored state in the binary format.
pub const STATE_MAGIC: &[u8; 3] = b"NMS";
/// The binary format's version, the byte after [`STATE_MAGIC`].
pub const STATE_FORMAT: u8 = 1;

/// How points missing from a regular series are handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapFill {
    /// Learn only the points that came.
    #[default]
    Skip,
    /// Learn each missing point as the last value again.
    Previous,
    /// Learn each missing point on the straight line between the points either side.
    Linear,
}

/// A gap found before a point, and what was done about it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gap {
    /// Points missing (0: no gap).
    pub missing: usize,
    /// Points learned in their place.
    pub filled: usize,
}

/// The interval of a regular series: the median of the positive steps between
/// consecutive times, once there are at least two.
pub fn infer_interval(times: impl IntoIterator<Item = i64>) -> Option<i64> {
    let mut last = None;
    let mut steps = Vec::new();
    for t in times {
        if let Some(l) = last {
            if t > l {
                steps.push(t - l);
            }
        }
        last = Some(t);
    }
    if steps.len() < 2 {
        return None;
    }
    steps.sort_unstable();
    Some(steps[steps.len() / 2])
}

/// Where a point stands against the last one a detector learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeliness {
    /// At or after the last point's time (a new point).
    OnTime,
    /// Earlier than the last point, which was at `last`.
    Late {
        /// The last point's time.
        last: i64,
    },
    /// The last point again: the same time and the same values.
    Duplicate,
}

/// A point's score on the common scale (what thresholds apply to), the detector's own
/// raw score behind it, and what the detector expected.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The anomaly likelihood's score, in [0, 1] ([`likelihood`]).
    pub score: f64,
    /// The detector's raw score (a z-score, or a tree mass score).
    pub raw: f64,
    /// The value expected for each of the point's values, where the detector has one
    /// (the seasonal baseline and the rolling windows; not Half-Space Trees), once it has
    /// enough history.
    pub expected: Option<Vec<f64>>,
    /// For points of several values, each value's share of how unusual the point is
    /// (its |z| over the sum of them; they add up to 1).
    pub shares: Option<Vec<f64>>,
}

/// What a detector makes of one point before learning it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assessment {
    /// The raw score.
    pub raw: f64,
    /// The expected values, where known.
    pub expected: Option<Vec<f64>>,
    /// Each value's share, for several values.
    pub shares: Option<Vec<f64>>,
}

impl Assessment {
    /// A univariate point's score and expected value.
    pub(crate) fn univariate(raw: f64, expected: f64) -> Self {
        Assessment {
            raw,
            expected: Some(vec![expected]),
            shares: None,
        }
    }
}

/// Each |z|'s share of their sum, for two values or more; equal shares when all are 0.
pub(crate) fn shares(zs: &[f64]) -> Option<Vec<f64>> {
    if zs.len() < 2 {
        return None;
    }
    let total: f64 = zs.iter().sum();
    Some(if total > 0.0 && total.is_finite() {
        zs.iter().map(|z| z / total).collect()
    } else if total.is_infinite() {
        // Some values are infinitely far out: they share the whole.
        let far = zs.iter().filter(|z| z.is_infinite()).count() as f64;
        zs.iter()
            .map(|z| if z.is_infinite() { 1.0 / far } else { 0.0 })
            .collect()
    } else {
        vec![1.0 / zs.len() as f64; zs.len()]
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum State {
    Hst {
        trees: hst::HalfSpaceTrees,
        shingle: usize,
        recent: VecDeque<f64>,
    },
    Seasonal {
        baseline: seasonal::Seasonal,
    },
    Rcf {
        forest: Box<rcf::Forest>,
    },
    Rolling {
        window: window::Rolling,
    },
}

impl StreamDetector {
    /// A fresh detector for points of `width` values.
    pub fn new(spec: StreamSpec, width: usize) -> Result<Self> {
        if width == 0 {
            return Err(DetectError::NoColumns);
        }
        let univariate = |name: &'static str| {
            if width == 1 {
                Ok(())
            } else {
                Err(DetectError::InvalidParameter {
                    name,
                    reason: format!(
                        "applies to a univariate series; the points have {width} values"
                    ),
                })
            }
        };
        let state = match &spec {
            StreamSpec::HalfSpaceTrees { params, shingle } => {
                if !(1..=64).contains(shingle) {
                    return Err(DetectError::InvalidParameter {
                        name: "shingle",
                        reason: "must be between 1 and 64".into(),
                    });
                }
                if *shingle > 1 {
                    univariate("shingle")?;
                }
                State::Hst {
                    trees: hst::HalfSpaceTrees::new(params.clone(), width * shingle)?,
                    shingle: *shingle,
                    recent: VecDeque::new(),
                }
            }
            StreamSpec::RandomCutForest { params } => State::Rcf {
                forest: Box::new(rcf::Forest::new(params.clone(), width)?),
            },
            StreamSpec::Seasonal { params } => {
                univariate("detector")?;
                State::Seasonal {
                    baseline: seasonal::Seasonal::new(params.clone())?,
                }
            }
            StreamSpec::RollingMedian { params } => State::Rolling {
                window: window::Rolling::new(params.clone(), window::Center::Median, width)?,
            },
            StreamSpec::RollingMean { params } => State::Rolling {
                window: window::Rolling::new(params.clone(), window::Center::Mean, width)?,
            },
        };
        Ok(StreamDetector {
            spec,
            width,
            state,
            last_t: None,
            last_x: None,
            seen: 0,
            likelihood: likelihood::Likelihood::default(),
        })
    }

    /// The spec it runs.
    pub fn spec(&self) -> &StreamSpec {
        &self.spec
    }

    /// Values per point.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Points learned so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Finds the points missing between the last point learned and one at `t` with values
    /// `x`, on a series `interval` seconds apart, and learns them as `fill` says (their
    /// scores are not reported: nothing was sent there). A gap of more than `cap` points
    /// is reported but not filled.
    pub fn fill_gap(
        &mut self,
        t: i64,
        x: &[f64],
        interval: i64,
        fill: GapFill,
        cap: usize,
    ) -> Result<Gap> {
        let (Some(last), Some(last_x)) = (self.last_t, self.last_x.as_deref()) else {
            return Ok(Gap::default());
        };
        if interval <= 0 || t <= last || last_x.len() != x.len() {
            return Ok(Gap::default());
        }
        let steps = ((t - last) as f64 / interval as f64).round() as usize;
        let missing = steps.saturating_sub(1);
        if missing == 0 || fill == GapFill::Skip || missing > cap {
            return Ok(Gap { missing, filled: 0 });
        }
        // Copied only when there is a gap to fill: this runs before every point.
        let last_x = last_x.to_vec();
        for j in 1..=missing {
            let at = last + interval * j as i64;
            let value: Vec<f64> = match fill {
                GapFill::Linear => {
                    let w = j as f64 / steps as f64;
                    last_x.iter().zip(x).map(|(a, b)| a + (b - a) * w).collect()
                }
                _ => last_x.clone(),
            };
            self.update(at, &value)?;
        }
        Ok(Gap {
            missing,
            filled: missing,
        })
    }

    /// The last point's time.
    pub fn last_time(&self) -> Option<i64> {
        self.last_t
    }

    /// Where a point at `t` with values `x` stands against the last point learned.
    pub fn timeliness(&self, t: i64, x: &[f64]) -> Timeliness {
        match self.last_t {
            Some(last) if t < last => Timeliness::Late { last },
            Some(last) if t == last && self.last_x.as_deref() == Some(x) => Timeliness::Duplicate,
            _ => Timeliness::OnTime,
        }
    }

    /// Scores the point `x` at `t` (seconds) against what came before, then learns it.
    /// Points must come in time order (equal timestamps are allowed) with finite values.
    pub fn update(&mut self, t: i64, x: &[f64]) -> Result<Scored> {
        check_point(x, self.width)?;
        if self.last_t.is_some_and(|last| t < last) {
            return Err(DetectError::InvalidParameter {
                name: "timestamp",
                reason: format!(
                    "{t} is before the stream's last point ({}); points come in time order",
                    self.last_t.unwrap_or_default()
                ),
            });
        }
        let assessed = match &mut self.state {
            State::Hst {
                trees,
                shingle,
                recent,
            } => {
                recent.extend(x.iter().copied());
                while recent.len() > *shingle * x.len() {
                    recent.pop_front();
                }
                if recent.len() < *shingle * x.len() {
                    Assessment::default()
                } else {
                    let point: Vec<f64> = recent.iter().copied().collect();
                    let s = trees.score_one(&point)?;
                    trees.learn_one(&point)?;
                    Assessment {
                        raw: s,
                        ..Assessment::default()
                    }
                }
            }
            State::Seasonal { baseline } => {
                let a = baseline.assess(t, x[0])?;
                baseline.learn_one(t, x[0])?;
                a
            }
            State::Rolling { window } => {
                let a = window.assess(x)?;
                window.learn_one(x)?;
                a
            }
            State::Rcf { forest } => {
                let judged = forest.assess(x)?;
                Assessment {
                    raw: judged.raw,
                    expected: None,
                    shares: judged.shares,
                }
            }
        };
        let raw = assessed.raw;
        // Half-Space Trees' score is one minus a mass share, bunched just under 1; its
        // surprise, −ln(share), spreads it out as z-scores are spread.
        let evidence = match self.state {
            State::Hst { .. } => -(1.0 - raw).max(1e-12).ln(),
            _ => raw,
        };
        let score = self.likelihood.update(evidence);
        let mut expected = assessed.expected;
        if let State::Rcf { forest } = &mut self.state {
            // The forest imputes expected values only for points worth explaining, and
            // learns the point after.
            if score >= rcf::EXPLAIN_FROM {
                expected = forest.expected(x)?;
            }
            forest.learn_one(x)?;
        }
        self.last_t = Some(t);
        self.last_x = Some(x.to_vec());
        self.seen += 1;
        Ok(Scored {
            score,
            raw,
            expected,
            shares: assessed.shares,
        })
    }

    /// The whole state in its stored form: [`STATE_MAGIC`], the format's version
    /// ([`STATE_FORMAT`]), then MessagePack with named fields (self-describing, so the
    /// tagged enums and defaulted fields read as they do from JSON; numbers are binary,
    /// about half the bytes of JSON's decimal text).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(STATE_MAGIC);
        out.push(STATE_FORMAT);
        rmp_serde::encode::write_named(&mut out, self)
            .map_err(|e| DetectError::InvalidModel(e.to_string()))?;
        Ok(out)
    }

    /// A detector restored from [`StreamDetector::to_bytes`], or from the JSON states
    /// were stored as before the binary format.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let Some(rest) = bytes.strip_prefix(STATE_MAGIC.as_slice()) else {
            return Self::from_json(bytes);
        };
        let d: StreamDetector = match rest.split_first() {
            Some((&STATE_FORMAT, body)) => {
                rmp_serde::from_slice(body).map_err(|e| DetectError::InvalidModel(e.to_string()))?
            }
            Some((version, _)) => {
                return Err(DetectError::InvalidModel(format!(
                "the state is in format {version}; this build reads format {STATE_FORMAT} and JSON"
            )))
            }
            None => return Err(DetectError::InvalidModel("the state is empty".into())),
        };
        d.checked()
    }

    /// The whole state as JSON.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| DetectError::InvalidModel(e.to_string()))
    }

    /// A detector restored from [`StreamDetector::to_json`].
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let d: StreamDetector =
            serde_json::from_slice(bytes).map_err(|e| DetectError::InvalidModel(e.to_string()))?;
        d.checked()
    }

    /// The spec is checked again: a stored state must be one this build could make.
    fn checked(self) -> Result<Self> {
        StreamDetector::new(self.spec.clone(), self.width)?;
        self.likelihood.params().validate()?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn series(n: usize, seed: u64) -> Vec<(i64, f64)> {
        let mut rng = Rng::new(seed);
        (0..n)
            .map(|i| {
                let day = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
                let spike = if i % 997 == 500 { 40.0 } else { 0.0 };
                (
                    1_400_000_000 + 300 * i as i64,
                    50.0 + 10.0 * day.sin() + rng.next_f64() + spike,
                )
            })
            .collect()
    }

    #[test]
    fn late_and_repeated_points_are_told_from_new_ones() {
        let spec = StreamSpec::Seasonal {
            params: seasonal::SeasonalParams::default(),
        };
        let mut d = StreamDetector::new(spec, 1).unwrap();
        assert_eq!(d.timeliness(5, &[1.0]), Timeliness::OnTime);
        d.update(10, &[1.0]).unwrap();
        assert_eq!(d.timeliness(9, &[1.0]), Timeliness::Late { last: 10 });
        assert_eq!(d.timeliness(10, &[1.0]), Timeliness::Duplicate);
        assert_eq!(d.timeliness(10, &[2.0]), Timeliness::OnTime);
        assert_eq!(d.timeliness(11, &[1.0]), Timeliness::OnTime);
        // The last values survive a round trip through the stored state.
        let back = StreamDetector::from_json(&d.to_json().unwrap()).unwrap();
        assert_eq!(back.timeliness(10, &[1.0]), Timeliness::Duplicate);
    }

    /// Unix seconds of NAB's `YYYY-MM-DD HH:MM:SS` (UTC).
    fn nab_time(text: &str) -> i64 {
        let n = |r: std::ops::Range<usize>| text[r].parse::<i64>().expect("digits");
        let (y, m, d) = (n(0..4), n(5..7), n(8..10));
        // Days from the civil date (Howard Hinnant's algorithm).
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
    }

    fn nab_series(name: &str) -> Vec<(i64, f64)> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/data/nab")
            .join(name);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .lines()
            .skip(1)
            .map(|l| {
                let (t, v) = l.split_once(',').expect("timestamp,value");
                (nab_time(t), v.trim().parse().expect("value"))
            })
            .collect()
    }

    /// NAB series with 5 % of their points removed at random: the scores on the points
    /// left stay close to the full series' scores at the same points. The measure: the
    /// mean absolute difference of the likelihood scores over the points left (scores
    /// lie in [0, 1]), with skipping the gaps as the baseline to beat, and the interval
    /// inferred from the points as a stream infers it.
    #[test]
    fn filling_gaps_keeps_scores_close_to_the_full_series() {
        let files = [
            "nyc_taxi.csv",
            "ec2_cpu_utilization_24ae8d.csv",
            "ec2_network_in_257a54.csv",
            "art_daily_jumpsup.csv",
            "occupancy_6005.csv",
            "Twitter_volume_AMZN.csv",
        ];
        let spec = StreamSpec::Seasonal {
            params: seasonal::SeasonalParams::default(),
        };
        let mut totals = [0.0f64; 3];
        for (k, file) in files.iter().enumerate() {
            let full = nab_series(file);
            let mut straight = StreamDetector::new(spec.clone(), 1).unwrap();
            let reference: Vec<f64> = full
                .iter()
                .map(|(t, v)| straight.update(*t, &[*v]).unwrap().score)
                .collect();
            let mut rng = Rng::new(1000 + k as u64);
            let keep: Vec<bool> = (0..full.len())
                .map(|i| i < 10 || rng.next_f64() >= 0.05)
                .collect();
            let interval = infer_interval(
                full.iter()
                    .zip(&keep)
                    .filter(|(_, k)| **k)
                    .map(|(p, _)| p.0),
            )
            .expect("an interval");
            let mut line = format!("{file:45} interval {interval:>5} s");
            for (f, fill) in [GapFill::Skip, GapFill::Previous, GapFill::Linear]
                .into_iter()
                .enumerate()
            {
                let mut d = StreamDetector::new(spec.clone(), 1).unwrap();
                let (mut diff, mut n, mut filled) = (0.0, 0usize, 0usize);
                for (i, (t, v)) in full.iter().enumerate() {
                    if !keep[i] {
                        continue;
                    }
                    filled += d
                        .fill_gap(*t, &[*v], interval, fill, 10_000)
                        .unwrap()
                        .filled;
                    let score = d.update(*t, &[*v]).unwrap().score;
                    diff += (score - reference[i]).abs();
                    n += 1;
                }
                let mean = diff / n as f64;
                totals[f] += mean;
                line += &format!("  {fill:?}: {mean:.4} ({filled} filled)");
                if fill == GapFill::Skip {
                    assert_eq!(filled, 0);
                } else {
                    assert!(filled > full.len() / 40, "{line}");
                }
            }
            println!("{line}");
        }
        let mean = totals.map(|t| t / files.len() as f64);
        println!(
            "mean |score difference|: skip {:.4}, previous {:.4}, linear {:.4}",
            mean[0], mean[1], mean[2]
        );
        // Filling brings the scores closer to the full series' than skipping does, and
        // stays close in absolute terms.
        assert!(mean[2] < mean[0], "{mean:?}");
        assert!(mean[1] < mean[0] * 1.1, "{mean:?}");
        assert!(mean[2] < 0.05, "{mean:?}");
    }

    fn specs() -> Vec<StreamSpec> {
        vec![
            StreamSpec::HalfSpaceTrees {
                params: hst::HstParams {
                    window_size: 100,
                    ..hst::HstParams::default()
                },
                shingle: 3,
            },
            StreamSpec::Seasonal {
                params: seasonal::SeasonalParams::default(),
            },
            StreamSpec::RollingMedian {
                params: window::WindowParams::default(),
            },
            StreamSpec::RollingMean {
                params: window::WindowParams::default(),
            },
            StreamSpec::RandomCutForest {
                params: rcf::RcfParams::default(),
            },
        ]
    }

    #[test]
    fn the_binary_state_is_smaller_loads_as_json_did_and_names_its_format() {
        let points = series(1500, 5);
        for spec in specs() {
            let mut d = StreamDetector::new(spec.clone(), 1).expect("valid");
            for (t, v) in &points {
                d.update(*t, &[*v]).expect("update");
            }
            let (json, binary) = (d.to_json().unwrap(), d.to_bytes().unwrap());
            assert_eq!(&binary[..4], b"NMS\x01", "{}", spec.name());
            // The tree detectors' large states shrink; a small seasonal state of whole
            // numbers may not (MessagePack writes every float in 9 bytes).
            let trees = matches!(
                spec,
                StreamSpec::HalfSpaceTrees { .. } | StreamSpec::RandomCutForest { .. }
            );
            assert!(
                !trees || binary.len() * 10 < json.len() * 6,
                "{}: {} binary bytes vs {} JSON",
                spec.name(),
                binary.len(),
                json.len()
            );
            // Both forms load to the same detector: states stored as JSON still read.
            assert_eq!(StreamDetector::from_bytes(&binary).unwrap(), d);
            assert_eq!(StreamDetector::from_bytes(&json).unwrap(), d);
            let mut newer = binary.clone();
            newer[3] = STATE_FORMAT + 1;
            let refused = StreamDetector::from_bytes(&newer).unwrap_err().to_string();
            assert!(refused.contains("format 2"), "{refused}");
            assert!(StreamDetector::from_bytes(&binary[..binary.len() / 2]).is_err());
            assert!(StreamDetector::from_bytes(b"NMS").is_err());
        }
    }

    #[test]
    fn footprints_bound_the_state_a_detector_reaches() {
        let points = series(3000, 11);
        for spec in specs() {
            let mut d = StreamDetector::new(spec.clone(), 1).expect("valid");
            for (t, v) in &points {
                d.update(*t, &[*v]).expect("update");
            }
            let bytes = d.to_json().expect("json");
            let numbers = bytes
                .split(|b| matches!(b, b',' | b'[' | b']' | b':'))
                .filter(|f| f.first().is_some_and(|c| c.is_ascii_digit() || *c == b'-'))
                .count();
            let footprint = spec.footprint(1);
            assert!(
                numbers <= footprint.state_values + 64,
                "{}: {numbers} numbers stored, footprint {footprint:?}",
                spec.name()
            );
        }
    }

    #[test]
    fn values_past_the_bound_are_refused_before_they_touch_the_state() {
        for spec in specs() {
            let mut d = StreamDetector::new(spec.clone(), 1).expect("valid");
            let before = d.clone();
            assert!(d.update(1, &[1.7e308]).is_err(), "{}", spec.name());
            assert!(d.update(1, &[-2e100]).is_err(), "{}", spec.name());
            assert_eq!(
                d,
                before,
                "{}: a refused point changes nothing",
                spec.name()
            );
            d.update(1, &[1e100]).expect("the bound itself is accepted");
            d.update(2, &[-1e100])
                .expect("the bound itself is accepted");
            StreamDetector::from_json(&d.to_json().expect("json")).expect("and stays storable");
        }
    }

    #[test]
    fn restoring_between_any_two_points_gives_the_same_scores_as_never_stopping() {
        let points = series(2000, 7);
        for spec in specs() {
            let mut straight = StreamDetector::new(spec.clone(), 1).expect("valid");
            let expected: Vec<Scored> = points
                .iter()
                .map(|(t, v)| straight.update(*t, &[*v]).expect("update"))
                .collect();
            // Stop and restore after every point, as a Lambda between requests.
            let mut bytes = StreamDetector::new(spec.clone(), 1)
                .expect("valid")
                .to_bytes()
                .expect("bytes");
            let mut restored = Vec::new();
            for (t, v) in &points {
                let mut d = StreamDetector::from_bytes(&bytes).expect("restore");
                restored.push(d.update(*t, &[*v]).expect("update"));
                bytes = d.to_bytes().expect("bytes");
            }
            let bits = |s: &[Scored]| {
                s.iter()
                    .map(|s| (s.score.to_bits(), s.raw.to_bits()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(&expected), bits(&restored), "{}", spec.name());
            // The spikes stand out once the detector has history.
            let spikes: Vec<f64> = (0..points.len())
                .filter(|i| i % 997 == 500 && *i > 1000)
                .map(|i| expected[i].raw)
                .collect();
            let mut normal: Vec<f64> = (1000..points.len())
                .filter(|i| i % 997 != 500)
                .map(|i| expected[i].raw)
                .collect();
            normal.sort_by(f64::total_cmp);
            let p99 = normal[normal.len() * 99 / 100];
            assert!(
                spikes.iter().all(|s| *s > p99),
                "{}: spikes {spikes:?} vs p99 {p99}",
                spec.name()
            );
        }
    }

    #[test]
    fn anomalies_say_what_was_expected_and_which_value_drove_them() {
        // Seasonal: the expected value follows the daily cycle.
        let points = series(3000, 5);
        let mut d = StreamDetector::new(specs()[1].clone(), 1).expect("valid");
        let mut last = None;
        for (t, v) in &points {
            last = Some(d.update(*t, &[*v]).expect("update"));
        }
        let t = points[points.len() - 1].0 + 300;
        let day = (points.len() % 288) as f64 / 288.0 * std::f64::consts::TAU;
        let truth = 50.0 + 10.0 * day.sin() + 0.5;
        let spike = d.update(t, &[truth + 40.0]).expect("update");
        let expected = spike.expected.clone().expect("an expected value")[0];
        assert!((expected - truth).abs() < 1.5, "{expected} vs {truth}");
        assert!(spike.score >= likelihood::RED, "{spike:?}");
        assert_eq!(spike.shares, None, "one value, no shares");
        assert!(last.and_then(|s| s.expected).is_some());
        // Rolling, three values: the one that moved takes nearly the whole share.
        let mut r = StreamDetector::new(specs()[3].clone(), 3).expect("valid");
        let mut rng = Rng::new(2);
        for i in 0..500 {
            r.update(
                i,
                &[rng.next_f64(), 10.0 + rng.next_f64(), 5.0 * rng.next_f64()],
            )
            .expect("update");
        }
        let odd = r.update(500, &[0.5, 30.0, 2.5]).expect("update");
        let shares = odd.shares.expect("shares");
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(shares[1] > 0.9, "{shares:?}");
        let expected = odd.expected.expect("expected");
        assert!((expected[1] - 10.5).abs() < 0.2, "{expected:?}");
        // Half-Space Trees expects nothing.
        let mut h = StreamDetector::new(specs()[0].clone(), 1).expect("valid");
        for (t, v) in points.iter().take(300) {
            assert_eq!(h.update(*t, &[*v]).expect("update").expected, None);
        }
    }

    #[test]
    fn state_size_stays_bounded() {
        for spec in specs() {
            let mut d = StreamDetector::new(spec.clone(), 1).expect("valid");
            let mut sizes = Vec::new();
            for (i, (t, v)) in series(6000, 9).iter().enumerate() {
                d.update(*t, &[*v]).expect("update");
                if i % 2000 == 1999 {
                    sizes.push(d.to_json().expect("json").len());
                }
            }
            let (first, last) = (sizes[0] as f64, sizes[sizes.len() - 1] as f64);
            assert!(last < first * 1.2, "{}: {sizes:?}", spec.name());
            // All but the forest fit a DynamoDB item beside the stream's record; the
            // forest's state (its sampled shingles and 30 trees) lives in the blob store.
            let most = match spec {
                StreamSpec::RandomCutForest { .. } => 600_000.0,
                _ => 350_000.0,
            };
            assert!(last < most, "{}: {last} bytes", spec.name());
        }
    }

    #[test]
    fn points_out_of_order_or_of_the_wrong_shape_are_refused_and_change_nothing() {
        let mut d = StreamDetector::new(specs()[2].clone(), 1).expect("valid");
        d.update(100, &[1.0]).expect("update");
        let before = d.to_json().expect("json");
        assert!(d.update(99, &[1.0]).is_err());
        assert!(d.update(101, &[1.0, 2.0]).is_err());
        assert!(d.update(101, &[f64::INFINITY]).is_err());
        assert_eq!(d.to_json().expect("json"), before);
        assert!(
            StreamDetector::new(specs()[1].clone(), 2).is_err(),
            "seasonal is univariate"
        );
        let spec: StreamSpec =
            serde_json::from_str(r#"{"detector":"half_space_trees","params":{"n_trees":10}}"#)
                .expect("parses");
        assert!(matches!(
            spec,
            StreamSpec::HalfSpaceTrees { shingle: 1, .. }
        ));
        assert!(serde_json::from_str::<StreamSpec>(
            r#"{"detector":"seasonal","params":{"cycle":3}}"#
        )
        .is_err());
    }
}
