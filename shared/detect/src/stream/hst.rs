//! Half-Space Trees (Tan, Ting & Liu 2011), as River implements them: an ensemble of
//! random binary trees built without data over a box of feature limits, each node
//! counting how many points of the last full window (the reference mass) and of the
//! current window passed through it. A point that lands where the reference window had
//! little mass, at a shallow depth, scores high.
//!
//! Constant memory per stream: `n_trees × (2^(height+1) − 1)` nodes, and a first window
//! of at most `window_size` points kept only until the trees are built. The limits of
//! the box come from that first window (River asks for them up front): each feature's
//! range, widened by half of it on both sides; points outside the box fall into the
//! outermost leaves, where the reference mass is small.
//!
//! Scores are River's: `1 − Σ_trees Σ_path mass·2^depth / max`, in `[0, 1]`, higher is
//! more anomalous; 0 until the first reference window exists.

use crate::rng::Rng;
use crate::{DetectError, Result};
use serde::{Deserialize, Serialize};

/// Parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HstParams {
    /// Trees in the ensemble (default 25).
    #[serde(default = "default_trees")]
    pub n_trees: usize,
    /// Depth of every tree (default 8).
    #[serde(default = "default_height")]
    pub height: usize,
    /// Points per window (default 250).
    #[serde(default = "default_window")]
    pub window_size: usize,
    /// Seed of the random splits.
    #[serde(default)]
    pub seed: u64,
}

fn default_trees() -> usize {
    25
}
fn default_height() -> usize {
    8
}
fn default_window() -> usize {
    250
}

impl Default for HstParams {
    fn default() -> Self {
        HstParams {
            n_trees: default_trees(),
            height: default_height(),
            window_size: default_window(),
            seed: 0,
        }
    }
}

impl HstParams {
    /// Checks the ranges (trees 1-200, height 1-14, window 10-100000).
    pub fn validate(&self) -> Result<()> {
        let bad = |name, reason: &str| {
            Err(DetectError::InvalidParameter {
                name,
                reason: reason.to_string(),
            })
        };
        if !(1..=200).contains(&self.n_trees) {
            return bad("n_trees", "must be between 1 and 200");
        }
        if !(1..=14).contains(&self.height) {
            return bad("height", "must be between 1 and 14");
        }
        if !(10..=100_000).contains(&self.window_size) {
            return bad("window_size", "must be between 10 and 100000");
        }
        Ok(())
    }
}

/// One tree, stored as a complete binary tree: node `i` has children `2i+1`, `2i+2`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tree {
    /// Split feature of each inner node.
    feature: Vec<u32>,
    /// Split value of each inner node.
    split: Vec<f64>,
    /// Reference mass (the last full window) of every node.
    reference: Vec<u32>,
    /// Mass of the current window of every node.
    latest: Vec<u32>,
}

/// The state of one stream's Half-Space Trees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HalfSpaceTrees {
    params: HstParams,
    width: usize,
    /// Points of the first window, until the trees are built.
    first: Vec<Vec<f64>>,
    trees: Vec<Tree>,
    /// Points learned in the current window.
    counter: usize,
    /// Whether a full reference window exists.
    ready: bool,
}

impl HalfSpaceTrees {
    /// A detector for points of `width` features.
    pub fn new(params: HstParams, width: usize) -> Result<Self> {
        params.validate()?;
        if width == 0 {
            return Err(DetectError::NoColumns);
        }
        Ok(HalfSpaceTrees {
            params,
            width,
            first: Vec::new(),
            trees: Vec::new(),
            counter: 0,
            ready: false,
        })
    }

    /// Features per point.
    pub fn width(&self) -> usize {
        self.width
    }

    fn inner_nodes(&self) -> usize {
        (1 << self.params.height) - 1
    }

    fn all_nodes(&self) -> usize {
        (1 << (self.params.height + 1)) - 1
    }

    /// Builds the trees over the first window's box, then counts that window as the
    /// first reference.
    fn build(&mut self) {
        let mut lo = vec![f64::INFINITY; self.width];
        let mut hi = vec![f64::NEG_INFINITY; self.width];
        for p in &self.first {
            for (j, &v) in p.iter().enumerate() {
                lo[j] = lo[j].min(v);
                hi[j] = hi[j].max(v);
            }
        }
        for j in 0..self.width {
            let span = (hi[j] - lo[j]).max(1e-9 * lo[j].abs().max(1.0));
            lo[j] -= span / 2.0;
            hi[j] += span / 2.0;
        }
        let mut rng = Rng::new(self.params.seed);
        let (inner, all) = (self.inner_nodes(), self.all_nodes());
        self.trees = (0..self.params.n_trees)
            .map(|_| {
                let mut tree = Tree {
                    feature: vec![0; inner],
                    split: vec![0.0; inner],
                    reference: vec![0; all],
                    latest: vec![0; all],
                };
                let spans: Vec<f64> = lo.iter().zip(&hi).map(|(a, b)| b - a).collect();
                grow(
                    &mut tree,
                    0,
                    lo.clone(),
                    hi.clone(),
                    &spans,
                    inner,
                    &mut rng,
                );
                tree
            })
            .collect();
        let first = std::mem::take(&mut self.first);
        for p in &first {
            self.count(p);
        }
        self.rotate();
    }

    /// Adds `x` to the current window's mass along its path in every tree.
    fn count(&mut self, x: &[f64]) {
        let inner = self.inner_nodes();
        for tree in &mut self.trees {
            let mut node = 0;
            loop {
                tree.latest[node] += 1;
                if node >= inner {
                    break;
                }
                node = child(tree, node, x);
            }
        }
    }

    /// The current window becomes the reference.
    fn rotate(&mut self) {
        for tree in &mut self.trees {
            std::mem::swap(&mut tree.reference, &mut tree.latest);
            tree.latest.iter_mut().for_each(|m| *m = 0);
        }
        self.counter = 0;
        self.ready = true;
    }

    /// The score of `x` against the reference window, in `[0, 1]` (0 before one exists).
    pub fn score_one(&self, x: &[f64]) -> Result<f64> {
        self.check(x)?;
        if !self.ready {
            return Ok(0.0);
        }
        let inner = self.inner_nodes();
        // River stops descending once a node's reference mass is under a tenth of the
        // window: deeper nodes say nothing more.
        let size_limit = (self.params.window_size as f64 * 0.1) as u32;
        let mut total = 0.0;
        for tree in &self.trees {
            let mut node = 0;
            let mut depth = 0;
            loop {
                let mass = tree.reference[node];
                total += f64::from(mass) * (1u64 << depth) as f64;
                if node >= inner || mass < size_limit {
                    break;
                }
                node = child(tree, node, x);
                depth += 1;
            }
        }
        let max = self.params.n_trees as f64
            * self.params.window_size as f64
            * ((1u64 << (self.params.height + 1)) - 1) as f64;
        Ok((1.0 - total / max).clamp(0.0, 1.0))
    }

    /// Learns `x`: into the first window until the trees exist, then into the current
    /// window's mass; a full window becomes the reference.
    pub fn learn_one(&mut self, x: &[f64]) -> Result<()> {
        self.check(x)?;
        if self.trees.is_empty() {
            self.first.push(x.to_vec());
            if self.first.len() == self.params.window_size {
                self.build();
            }
            return Ok(());
        }
        self.count(x);
        self.counter += 1;
        if self.counter == self.params.window_size {
            self.rotate();
        }
        Ok(())
    }

    fn check(&self, x: &[f64]) -> Result<()> {
        super::check_point(x, self.width)
    }
}

fn child(tree: &Tree, node: usize, x: &[f64]) -> usize {
    let f = tree.feature[node] as usize;
    if x[f] < tree.split[node] {
        2 * node + 1
    } else {
        2 * node + 2
    }
}

/// River's padded tree over min-max scaled features: a feature chosen with weight by the
/// width of the node's limits relative to the whole box (so every feature starts equal,
/// whatever its units), split uniformly within the middle 70 % of them.
fn grow(
    tree: &mut Tree,
    node: usize,
    lo: Vec<f64>,
    hi: Vec<f64>,
    spans: &[f64],
    inner: usize,
    rng: &mut Rng,
) {
    if node >= inner {
        return;
    }
    let widths: Vec<f64> = lo
        .iter()
        .zip(&hi)
        .zip(spans)
        .map(|((a, b), span)| ((b - a) / span).max(0.0))
        .collect();
    let total: f64 = widths.iter().sum();
    let mut pick = rng.next_f64() * total;
    let mut f = 0;
    for (j, w) in widths.iter().enumerate() {
        f = j;
        if pick < *w {
            break;
        }
        pick -= w;
    }
    let (a, b) = (lo[f], hi[f]);
    let padding = 0.15;
    let at = a + (padding + rng.next_f64() * (1.0 - 2.0 * padding)) * (b - a);
    tree.feature[node] = f as u32;
    tree.split[node] = at;
    let mut left_hi = hi.clone();
    left_hi[f] = at;
    let mut right_lo = lo.clone();
    right_lo[f] = at;
    grow(tree, 2 * node + 1, lo, left_hi, spans, inner, rng);
    grow(tree, 2 * node + 2, right_lo, hi, spans, inner, rng);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal_points(n: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = Rng::new(seed);
        (0..n)
            .map(|_| vec![rng.next_f64(), rng.next_f64() * 2.0, 5.0 + rng.next_f64()])
            .collect()
    }

    #[test]
    fn outliers_score_above_inliers_once_a_window_is_learned() {
        let params = HstParams {
            window_size: 100,
            ..HstParams::default()
        };
        let mut hst = HalfSpaceTrees::new(params, 3).expect("valid");
        assert_eq!(hst.score_one(&[0.5, 1.0, 5.5]).expect("score"), 0.0);
        for p in normal_points(300, 1) {
            hst.learn_one(&p).expect("learn");
        }
        let mut inliers: Vec<f64> = normal_points(200, 9)
            .iter()
            .map(|p| hst.score_one(p).expect("score"))
            .collect();
        inliers.sort_by(f64::total_cmp);
        let p90 = inliers[180];
        let outlier = hst.score_one(&[0.5, 1.0, 60.0]).expect("score");
        let corner = hst.score_one(&[-3.0, 9.0, 5.5]).expect("score");
        println!(
            "inliers p50 {} p90 {p90}, outliers {outlier} {corner}",
            inliers[100]
        );
        assert!(
            outlier > p90 && corner > p90,
            "p90 {p90}: {outlier} {corner}"
        );
        assert!(outlier <= 1.0 && inliers[0] >= 0.0);
    }

    #[test]
    fn memory_is_constant_after_the_first_window() {
        let params = HstParams {
            window_size: 50,
            n_trees: 5,
            height: 4,
            seed: 3,
        };
        let mut hst = HalfSpaceTrees::new(params, 3).expect("valid");
        for p in normal_points(60, 2) {
            hst.learn_one(&p).expect("learn");
        }
        let size = serde_json::to_vec(&hst).expect("json").len();
        for p in normal_points(5000, 3) {
            hst.learn_one(&p).expect("learn");
        }
        let later = serde_json::to_vec(&hst).expect("json").len();
        assert!(hst.first.is_empty());
        assert!(
            later <= size + 5 * 31 * 4 * 3,
            "{size} -> {later}: counts grow in digits only"
        );
    }

    #[test]
    fn bad_points_and_parameters_are_refused() {
        assert!(HalfSpaceTrees::new(
            HstParams {
                height: 30,
                ..HstParams::default()
            },
            2
        )
        .is_err());
        assert!(HalfSpaceTrees::new(HstParams::default(), 0).is_err());
        let mut hst = HalfSpaceTrees::new(HstParams::default(), 2).expect("valid");
        assert!(matches!(
            hst.learn_one(&[1.0]),
            Err(DetectError::WidthMismatch { .. })
        ));
        assert!(matches!(
            hst.score_one(&[1.0, f64::NAN]),
            Err(DetectError::NonFinite { .. })
        ));
    }
}
