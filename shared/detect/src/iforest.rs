//! Isolation Forest (Liu, Ting and Zhou, 2008), as in scikit-learn's `IsolationForest`.
//!
//! Each tree is grown on `max_samples` rows drawn without replacement, splitting on a
//! random non-constant feature at a uniform random threshold between the node's minimum
//! and maximum, down to depth `ceil(log2(max_samples))` or a single row. Like
//! scikit-learn, which converts its input to `float32` before growing trees, the forest
//! compares feature values at single precision: each threshold is stored as the largest
//! `f32` at or below the drawn one, which sends every `f32` value the same way. A row's path
//! length in a tree is the depth of the leaf it reaches plus `c(n)`, the average path
//! length of an unsuccessful search in a binary tree of the `n` training rows left in that
//! leaf. The score is `2^(-E[h(x)] / c(max_samples))`: near 1 for anomalies, below 0.5 for
//! normal rows.
//!
//! Scoring lays every tree out as a complete binary tree of depth `D` in one array (a
//! leaf above depth `D` becomes a chain of pass-through nodes), so a row walks exactly
//! `D` steps with no branch on the data. Rows are scored in blocks of 256, transposed to
//! feature-major `f32`: the top three levels compare every row with all seven nodes there
//! over contiguous columns (vectorised) and a table turns the seven bits into a position;
//! the remaining levels are walked level by level across the whole block.
//!
//! Explanation: path-depth attribution. In every tree each split on the row's path
//! credits its feature with `1 / h`, where `h` is the row's path length in that tree, so
//! features that isolate the row early (short paths) weigh most.

use crate::error::{invalid, DetectError, Result};
use crate::rng::{child_seed, Rng};
use crate::scorer::Scorer;
use ndarray::{ArrayView1, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The largest `max_samples` accepted: trees of depth 16 at most.
pub const MAX_SAMPLES_LIMIT: usize = 65_536;

/// The most leaf slots the scoring layout of a forest may take: trees times 2^depth,
/// 16 bytes each with its node (256 MiB).
pub const MAX_LAYOUT_SLOTS: usize = 1 << 24;

/// Isolation Forest parameters (scikit-learn's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Number of trees.
    #[serde(default = "default_estimators")]
    pub n_estimators: usize,
    /// Rows drawn (without replacement) to grow each tree; all rows when fewer.
    #[serde(default = "default_max_samples")]
    pub max_samples: usize,
}

fn default_estimators() -> usize {
    100
}
fn default_max_samples() -> usize {
    256
}

impl Default for Params {
    fn default() -> Self {
        Params {
            n_estimators: default_estimators(),
            max_samples: default_max_samples(),
        }
    }
}

impl Params {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if !(1..=10_000).contains(&self.n_estimators) {
            return Err(invalid("n_estimators", "must be between 1 and 10000"));
        }
        if !(1..=MAX_SAMPLES_LIMIT).contains(&self.max_samples) {
            return Err(invalid(
                "max_samples",
                format!("must be between 1 and {MAX_SAMPLES_LIMIT}"),
            ));
        }
        if self.n_estimators << depth_limit(self.max_samples) > MAX_LAYOUT_SLOTS {
            return Err(invalid(
                "n_estimators",
                format!(
                    "times 2^ceil(log2(max_samples)) must be at most {MAX_LAYOUT_SLOTS} (the forest's size in memory)"
                ),
            ));
        }
        Ok(())
    }
}

/// `c(n)`: average path length of an unsuccessful binary-search-tree lookup among `n`
/// items (scikit-learn's `_average_path_length`).
pub fn average_path_length(n: usize) -> f64 {
    const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
        }
    }
}

/// Tree depth limit for a subsample of `psi` rows: `ceil(log2(max(psi, 2)))`.
fn depth_limit(psi: usize) -> usize {
    let psi = psi.max(2);
    (usize::BITS - (psi - 1).leading_zeros()) as usize
}

/// One tree as grown, in pre-order, in the layout of scikit-learn's `tree_`:
/// `feature[i] < 0` marks a leaf holding `size[i]` training rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    feature: Vec<i32>,
    threshold: Vec<f64>,
    left: Vec<u32>,
    right: Vec<u32>,
    size: Vec<u32>,
}

impl Tree {
    fn push(&mut self, feature: i32, threshold: f64, size: usize) -> usize {
        self.feature.push(feature);
        self.threshold.push(threshold);
        self.left.push(0);
        self.right.push(0);
        self.size.push(size as u32);
        self.feature.len() - 1
    }

    fn len(&self) -> usize {
        self.feature.len()
    }
}

/// A node of the scoring layout: 8 bytes, one load per step. `offset` is the slot of
/// the node's feature (its place among the features the forest uses) times
/// [`BLOCK_ROWS`]: where that feature's values start in a scoring block.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Node {
    threshold: f32,
    offset: u32,
}

impl Node {
    fn slot(&self) -> usize {
        self.offset as usize / BLOCK_ROWS
    }
}

/// The largest `f32` at or below `t`: `x <= t` and `x <= floor_f32(t)` agree for every
/// `f32` value `x`.
fn floor_f32(t: f64) -> f32 {
    let r = t as f32;
    if f64::from(r) > t {
        r.next_down()
    } else {
        r
    }
}

/// The forest: trees as grown (what is saved) and their scoring layout.
#[derive(Debug, Clone)]
pub struct IForest {
    n_features: usize,
    psi: usize,
    trees: Vec<Tree>,
    depth: usize,
    /// The features some split uses, ascending (at least one): a scoring block holds only
    /// these, so wide data costs no more than the trees look at.
    used: Vec<usize>,
    /// Internal nodes of every tree, `2^depth - 1` per tree.
    nodes: Vec<Node>,
    /// Path lengths at the leaves of every tree, `2^depth` per tree.
    leaves: Vec<f64>,
}

/// Rows a block holds while every tree walks it.
const BLOCK_ROWS: usize = 256;

impl IForest {
    /// Grows the forest on `x` (checked by the caller).
    pub fn fit(x: ArrayView2<f64>, params: &Params, seed: u64) -> Result<Self> {
        params.validate()?;
        let n = x.nrows();
        let psi = params.max_samples.min(n);
        let depth = depth_limit(psi);
        let trees: Vec<Tree> = (0..params.n_estimators)
            .into_par_iter()
            .map(|t| {
                let mut rng = Rng::new(child_seed(seed, t as u64));
                let mut rows = rng.sample_indices(n, psi);
                let mut tree = Tree {
                    feature: Vec::new(),
                    threshold: Vec::new(),
                    left: Vec::new(),
                    right: Vec::new(),
                    size: Vec::new(),
                };
                let mut candidates = Vec::with_capacity(x.ncols());
                grow(x, &mut rows, 0, depth, &mut rng, &mut tree, &mut candidates);
                tree
            })
            .collect();
        Self::from_trees(x.ncols(), psi, trees)
    }

    fn from_trees(n_features: usize, psi: usize, trees: Vec<Tree>) -> Result<Self> {
        if psi == 0 || psi > MAX_SAMPLES_LIMIT || trees.is_empty() {
            return Err(DetectError::InvalidModel(
                "isolation forest has no trees or an invalid sample size".into(),
            ));
        }
        if n_features == 0 {
            return Err(DetectError::InvalidModel(
                "isolation forest has no features".into(),
            ));
        }
        // Laid out as deep as the deepest leaf of any tree: the same scores as the depth
        // limit, with no slots for levels no tree reaches.
        let mut depth = 1;
        for tree in &trees {
            depth = depth.max(check_tree(tree, n_features, depth_limit(psi))?);
        }
        if trees.len() << depth > MAX_LAYOUT_SLOTS {
            return Err(DetectError::InvalidModel(format!(
                "isolation forest too large: {} trees of depth {depth}",
                trees.len()
            )));
        }
        let inner = (1usize << depth) - 1;
        let mut used: Vec<usize> = trees
            .iter()
            .flat_map(|t| t.feature.iter().filter(|&&f| f >= 0).map(|&f| f as usize))
            .collect();
        used.sort_unstable();
        used.dedup();
        if used.is_empty() {
            used.push(0);
        }
        let mut nodes = Vec::with_capacity(inner * trees.len());
        let mut leaves = Vec::with_capacity((inner + 1) * trees.len());
        for tree in &trees {
            let mut t_nodes = vec![
                Node {
                    threshold: f32::INFINITY,
                    offset: 0
                };
                inner
            ];
            let mut t_leaves = vec![0.0; inner + 1];
            layout(tree, &used, 0, 0, 0, depth, &mut t_nodes, &mut t_leaves);
            nodes.extend_from_slice(&t_nodes);
            leaves.extend_from_slice(&t_leaves);
        }
        Ok(IForest {
            n_features,
            psi,
            trees,
            depth,
            used,
            nodes,
            leaves,
        })
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    /// Number of features of the rows it scores.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Sum of path lengths over the trees for each row of a block of at most
    /// [`BLOCK_ROWS`] rows, given feature-major at single precision: value `f` of row `r` at
    /// `xt[f * BLOCK_ROWS + r]`, rows past the block's end repeating its last row.
    ///
    /// Every row of the block takes one step down a tree before any takes the next, so the
    /// processor overlaps a whole block of independent walks, and the block stays in L1
    /// cache while every tree goes through it. The top levels are compared over contiguous
    /// columns (vectorised) instead of walked.
    fn path_sums(&self, xt: &[f32], out: &mut [f64]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: this processor has AVX2 (checked just above).
            return unsafe { self.path_sums_avx2(xt, out) };
        }
        self.path_sums_body(xt, out)
    }

    /// [`Self::path_sums`] compiled for AVX2, so the top levels compare eight rows per
    /// instruction. (Walking the lower levels with AVX2 gathers was measured slower than
    /// the scalar walk on this project's machines, so the walk stays scalar.)
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn path_sums_avx2(&self, xt: &[f32], out: &mut [f64]) {
        self.path_sums_body(xt, out)
    }

    #[inline(always)]
    fn path_sums_body(&self, xt: &[f32], out: &mut [f64]) {
        let rows = out.len();
        assert!(
            rows <= BLOCK_ROWS && xt.len() == self.used.len() * BLOCK_ROWS,
            "block shape"
        );
        let inner = (1usize << self.depth) - 1;
        out.fill(0.0);
        let top = self.depth.min(TOP_LEVELS);
        let walk = &WALKS[top];
        let mut idx = [0u32; BLOCK_ROWS];
        let mut mask = [0u32; BLOCK_ROWS];
        for (nodes, leaves) in self
            .nodes
            .chunks_exact(inner)
            .zip(self.leaves.chunks_exact(inner + 1))
        {
            // The top levels: every row against every node there, over contiguous
            // columns (vectorised), then one table look-up turns the bits into a position.
            mask.fill(0);
            for (j, node) in nodes[..(1 << top) - 1].iter().enumerate() {
                let column = &xt[node.offset as usize..node.offset as usize + BLOCK_ROWS];
                for (m, &v) in mask.iter_mut().zip(column) {
                    *m |= u32::from(v > node.threshold) << j;
                }
            }
            for (i, &m) in idx.iter_mut().zip(&mask) {
                *i = u32::from(walk[m as usize]);
            }
            walk_lower(nodes, top, self.depth, &mut idx, xt);
            for (acc, &i) in out.iter_mut().zip(&idx) {
                *acc += leaves[i as usize];
            }
        }
    }
}

/// Walks every row of a block from level `top` down to `depth`, level by level: every
/// row takes one step before any takes the next. `idx` holds each walk's position
/// relative to its level.
#[inline(always)]
fn walk_lower(nodes: &[Node], top: usize, depth: usize, idx: &mut [u32; BLOCK_ROWS], xt: &[f32]) {
    assert!(nodes.len() >= (1 << depth) - 1, "tree shape");
    for level in top..depth {
        // The nodes of this level.
        let level_nodes = &nodes[(1usize << level) - 1..(2usize << level) - 1];
        for (r, i) in idx.iter_mut().enumerate() {
            // SAFETY: at `level` a walk's relative position is below 2^level, the length of
            // `level_nodes`; a node's `offset` is a slot below `used.len()` times
            // BLOCK_ROWS (pass-through nodes use 0) and `r < BLOCK_ROWS`, so the value
            // index is inside `xt` (its length is asserted by the caller).
            let (node, v) = unsafe {
                let node = *level_nodes.get_unchecked(*i as usize);
                (node, *xt.get_unchecked(node.offset as usize + r))
            };
            *i = 2 * *i + u32::from(v > node.threshold);
        }
    }
}

/// Levels walked by comparing every row with every node (7 nodes for 3 levels).
const TOP_LEVELS: usize = 3;

/// `WALKS[t][m]`: the position after `t` levels of a walk whose comparisons at the top
/// `2^t - 1` nodes (level order) are the bits of `m`.
const WALKS: [[u8; 128]; TOP_LEVELS + 1] =
    [walk_table(0), walk_table(1), walk_table(2), walk_table(3)];

const fn walk_table(top: usize) -> [u8; 128] {
    let mut table = [0u8; 128];
    let mut m = 0;
    while m < 128 {
        let (mut i, mut level) = (0usize, 0usize);
        while level < top {
            let bit = (m >> ((1 << level) - 1 + i)) & 1;
            i = 2 * i + bit;
            level += 1;
        }
        table[m] = i as u8;
        m += 1;
    }
    table
}

/// Grows one node over `rows`; returns its index in `tree`.
fn grow(
    x: ArrayView2<f64>,
    rows: &mut [usize],
    depth: usize,
    limit: usize,
    rng: &mut Rng,
    tree: &mut Tree,
    candidates: &mut Vec<usize>,
) -> usize {
    if depth >= limit || rows.len() <= 1 {
        return tree.push(-1, 0.0, rows.len());
    }
    candidates.clear();
    candidates.extend(0..x.ncols());
    while !candidates.is_empty() {
        let pick = rng.below(candidates.len());
        let f = candidates[pick];
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for &r in rows.iter() {
            let v = x[[r, f]] as f32;
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if hi <= lo {
            candidates.swap_remove(pick);
            continue;
        }
        let (lo64, hi64) = (f64::from(lo), f64::from(hi));
        let mut drawn = lo64 + rng.next_f64() * (hi64 - lo64);
        if drawn >= hi64 {
            drawn = lo64;
        }
        let threshold = floor_f32(drawn);
        // Partition: rows at or below the threshold first.
        let mut split = 0;
        for i in 0..rows.len() {
            if x[[rows[i], f]] as f32 <= threshold {
                rows.swap(i, split);
                split += 1;
            }
        }
        let node = tree.push(f as i32, f64::from(threshold), rows.len());
        let (left_rows, right_rows) = rows.split_at_mut(split);
        let left = grow(x, left_rows, depth + 1, limit, rng, tree, candidates);
        let right = grow(x, right_rows, depth + 1, limit, rng, tree, candidates);
        tree.left[node] = left as u32;
        tree.right[node] = right as u32;
        return node;
    }
    // Every feature is constant over these rows: they cannot be told apart.
    tree.push(-1, 0.0, rows.len())
}

/// Checks a tree read from outside: pre-order children, known features, depth at most
/// `depth`. Returns the depth of its deepest leaf.
fn check_tree(tree: &Tree, n_features: usize, depth: usize) -> Result<usize> {
    let n = tree.len();
    let bad = |what: &str| DetectError::InvalidModel(format!("isolation tree: {what}"));
    if n == 0
        || tree.threshold.len() != n
        || tree.left.len() != n
        || tree.right.len() != n
        || tree.size.len() != n
    {
        return Err(bad("arrays of different lengths"));
    }
    let mut stack = vec![(0usize, 0usize)];
    let mut seen = 0usize;
    let mut deepest = 0usize;
    while let Some((i, d)) = stack.pop() {
        seen += 1;
        if seen > n {
            return Err(bad("nodes are shared or cyclic"));
        }
        if tree.feature[i] >= 0 {
            if d >= depth {
                return Err(bad("deeper than its sample size allows"));
            }
            let t = tree.threshold[i];
            if tree.feature[i] as usize >= n_features || !t.is_finite() || f64::from(t as f32) != t
            {
                return Err(bad(
                    "split on an unknown feature or a threshold that is not a finite f32",
                ));
            }
            let (l, r) = (tree.left[i] as usize, tree.right[i] as usize);
            if l <= i || r <= i || l >= n || r >= n {
                return Err(bad("child index out of order"));
            }
            stack.push((l, d + 1));
            stack.push((r, d + 1));
        } else {
            deepest = deepest.max(d);
        }
    }
    Ok(deepest)
}

/// Writes the subtree at `node` of `tree` into the complete layout at position `pos`.
#[allow(clippy::too_many_arguments)]
fn layout(
    tree: &Tree,
    used: &[usize],
    node: usize,
    pos: usize,
    level: usize,
    depth: usize,
    nodes: &mut [Node],
    leaves: &mut [f64],
) {
    let inner = nodes.len();
    if tree.feature[node] >= 0 {
        nodes[pos] = Node {
            threshold: tree.threshold[node] as f32,
            // `used` holds every split feature, and fewer than 2^24 of them (the layout
            // cap), so the offset fits in 32 bits.
            offset: (used
                .binary_search(&(tree.feature[node] as usize))
                .unwrap_or(0)
                * BLOCK_ROWS) as u32,
        };
        let (left, right) = (tree.left[node] as usize, tree.right[node] as usize);
        layout(
            tree,
            used,
            left,
            2 * pos + 1,
            level + 1,
            depth,
            nodes,
            leaves,
        );
        layout(
            tree,
            used,
            right,
            2 * pos + 2,
            level + 1,
            depth,
            nodes,
            leaves,
        );
    } else {
        // A leaf at `level`: pass-through nodes below it (threshold +inf, always left)
        // and its path length on every leaf slot beneath.
        let h = level as f64 + average_path_length(tree.size[node] as usize);
        let (mut first, mut count) = (pos, 1usize);
        for _ in level..depth {
            nodes[first..first + count].fill(Node {
                threshold: f32::INFINITY,
                offset: 0,
            });
            first = 2 * first + 1;
            count *= 2;
        }
        leaves[first - inner..first - inner + count].fill(h);
    }
}

impl Scorer for IForest {
    fn score(&self, x: ArrayView2<f64>) -> Vec<f64> {
        let d = x.ncols();
        assert_eq!(d, self.n_features, "rows must have the forest's width");
        let data = x.as_standard_layout();
        let flat = data.as_slice().unwrap_or(&[]);
        let mut out = vec![0.0; x.nrows()];
        let mut xt = vec![0.0f32; self.used.len() * BLOCK_ROWS];
        for (block, acc) in flat.chunks(BLOCK_ROWS * d).zip(out.chunks_mut(BLOCK_ROWS)) {
            let rows = acc.len();
            for r in 0..BLOCK_ROWS {
                let row = &block[r.min(rows - 1) * d..][..d];
                for (slot, &f) in self.used.iter().enumerate() {
                    xt[slot * BLOCK_ROWS + r] = row[f] as f32;
                }
            }
            self.path_sums(&xt, acc);
        }
        let denom = self.trees.len() as f64 * average_path_length(self.psi);
        for v in out.iter_mut() {
            *v = if denom > 0.0 {
                2f64.powf(-*v / denom)
            } else {
                0.5
            };
        }
        out
    }

    fn contributions(&self, row: ArrayView1<f64>) -> Vec<f64> {
        let inner = (1usize << self.depth) - 1;
        let mut credit = vec![0.0; self.n_features];
        let mut path = Vec::with_capacity(self.depth);
        for (nodes, leaves) in self
            .nodes
            .chunks_exact(inner)
            .zip(self.leaves.chunks_exact(inner + 1))
        {
            path.clear();
            let mut i = 0usize;
            for _ in 0..self.depth {
                let node = nodes[i];
                let feature = self.used[node.slot()];
                if node.threshold.is_finite() {
                    path.push(feature);
                }
                i = 2 * i + 1 + usize::from(row[feature] as f32 > node.threshold);
            }
            let h = leaves[i - inner];
            if h > 0.0 {
                for &f in &path {
                    credit[f] += 1.0 / h;
                }
            }
        }
        let total: f64 = credit.iter().sum();
        if total > 0.0 {
            credit.iter_mut().for_each(|c| *c /= total);
        }
        credit
    }

    fn explanation_method(&self) -> &'static str {
        "path-depth attribution: each split on the row's path credits its feature with 1/path length, summed over trees, as shares of 1"
    }
}

#[derive(Serialize)]
struct SavedRef<'a> {
    n_features: usize,
    max_samples: usize,
    trees: &'a [Tree],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    n_features: usize,
    max_samples: usize,
    trees: Vec<Tree>,
}

impl Serialize for IForest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        SavedRef {
            n_features: self.n_features,
            max_samples: self.psi,
            trees: &self.trees,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for IForest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let saved = Saved::deserialize(d)?;
        IForest::from_trees(saved.n_features, saved.max_samples, saved.trees)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};

    #[test]
    fn average_path_length_matches_scikit_learn() {
        // sklearn.ensemble._iforest._average_path_length([1, 2, 3, 256])
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        assert!((average_path_length(3) - 1.207_392_357_589_949).abs() < 1e-12);
        assert!((average_path_length(256) - 10.244_770_920_116_851).abs() < 1e-9);
    }

    #[test]
    fn depth_limit_is_ceil_log2() {
        assert_eq!(depth_limit(1), 1);
        assert_eq!(depth_limit(2), 1);
        assert_eq!(depth_limit(3), 2);
        assert_eq!(depth_limit(256), 8);
        assert_eq!(depth_limit(257), 9);
    }

    #[test]
    fn a_far_point_scores_highest_and_is_explained_by_its_feature() {
        // 200 points on a tight grid in (x, y), one point far out along y only.
        let mut rows = Vec::new();
        for i in 0..200 {
            rows.push([(i % 20) as f64 * 0.1, (i / 20) as f64 * 0.1]);
        }
        rows.push([1.0, 50.0]);
        let x = Array2::from_shape_vec((201, 2), rows.concat()).unwrap();
        let f = IForest::fit(x.view(), &Params::default(), 0).unwrap();
        let s = f.score(x.view());
        let top = s.iter().cloned().fold(f64::MIN, f64::max);
        assert_eq!(s[200], top);
        assert!(s[200] > 0.7, "outlier score {}", s[200]);
        assert!(s[..200].iter().all(|&v| v < s[200] - 0.1));
        let c = f.contributions(x.row(200));
        assert!(c[1] > c[0], "{c:?}");
        assert!((c.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn hand_built_tree_scores_by_the_formula() {
        // One tree, max_samples 4 -> depth 2: root splits f0 at 0.5; its left child is a
        // leaf with 3 rows, the right child a leaf with 1 row.
        let tree = Tree {
            feature: vec![0, -1, -1],
            threshold: vec![0.5, 0.0, 0.0],
            left: vec![1, 0, 0],
            right: vec![2, 0, 0],
            size: vec![4, 3, 1],
        };
        let f = IForest::from_trees(1, 4, vec![tree]).unwrap();
        let s = f.score(array![[0.0], [1.0]].view());
        let c4 = average_path_length(4);
        let expect_left = 2f64.powf(-(1.0 + average_path_length(3)) / c4);
        let expect_right = 2f64.powf(-1.0 / c4);
        assert!((s[0] - expect_left).abs() < 1e-15);
        assert!((s[1] - expect_right).abs() < 1e-15);
    }

    #[test]
    fn constant_data_gives_one_leaf_and_equal_scores() {
        let x = Array2::from_elem((50, 3), 7.0);
        let f = IForest::fit(x.view(), &Params::default(), 1).unwrap();
        let s = f.score(x.view());
        assert!(s.iter().all(|&v| v == s[0]));
    }

    #[test]
    fn block_and_lane_boundaries_do_not_change_scores() {
        let mut rng = Rng::new(9);
        let x = Array2::from_shape_fn((1000, 4), |_| rng.next_f64());
        let f = IForest::fit(x.view(), &Params::default(), 3).unwrap();
        let all = f.score(x.view());
        for (i, r) in x.outer_iter().enumerate().step_by(97) {
            let one = f.score(r.insert_axis(ndarray::Axis(0)));
            assert_eq!(one[0].to_bits(), all[i].to_bits());
        }
    }

    #[test]
    fn portable_and_avx2_scoring_agree_bit_for_bit() {
        let mut rng = Rng::new(21);
        let x = Array2::from_shape_fn((3000, 6), |_| rng.next_f64() * 100.0 - 50.0);
        let f = IForest::fit(x.view(), &Params::default(), 8).unwrap();
        let mut xt = vec![0.0f32; f.used.len() * BLOCK_ROWS];
        for (r, row) in x.outer_iter().take(BLOCK_ROWS).enumerate() {
            for (slot, &feature) in f.used.iter().enumerate() {
                xt[slot * BLOCK_ROWS + r] = row[feature] as f32;
            }
        }
        let mut portable = vec![0.0; BLOCK_ROWS];
        f.path_sums_body(&xt, &mut portable);
        let mut dispatched = vec![0.0; BLOCK_ROWS];
        f.path_sums(&xt, &mut dispatched);
        assert_eq!(portable, dispatched);
        // And both agree with a plain walk of the trees as grown.
        for (r, row) in x.outer_iter().take(BLOCK_ROWS).enumerate() {
            let mut total = 0.0;
            for tree in &f.trees {
                let (mut node, mut depth) = (0usize, 0usize);
                while tree.feature[node] >= 0 {
                    let v = row[tree.feature[node] as usize] as f32;
                    node = if f64::from(v) <= tree.threshold[node] {
                        tree.left[node] as usize
                    } else {
                        tree.right[node] as usize
                    };
                    depth += 1;
                }
                total += depth as f64 + average_path_length(tree.size[node] as usize);
            }
            assert_eq!(total, portable[r], "row {r}");
        }
    }

    #[test]
    fn thresholds_are_f32_and_send_f32_values_the_same_way() {
        // 0.1f32 lies above 0.1, so the floor is the f32 just below it.
        assert!(f64::from(0.1f32) > 0.1);
        assert_eq!(floor_f32(0.1), 0.1f32.next_down());
        let t = 1.0 + 1e-12;
        assert_eq!(floor_f32(t), 1.0f32);
        assert!(f64::from(floor_f32(-0.3)) <= -0.3);
        let mut rng = Rng::new(2);
        let x = Array2::from_shape_fn((500, 3), |_| rng.next_f64());
        let f = IForest::fit(x.view(), &Params::default(), 0).unwrap();
        for tree in &f.trees {
            for &t in &tree.threshold {
                assert_eq!(f64::from(t as f32), t);
            }
        }
    }

    #[test]
    fn wide_data_only_transposes_the_features_the_trees_use() {
        let mut rng = Rng::new(4);
        let x = Array2::from_shape_fn((300, 5000), |_| rng.next_f64());
        let p = Params {
            n_estimators: 3,
            max_samples: 16,
        };
        let f = IForest::fit(x.view(), &p, 0).unwrap();
        assert!(f.used.len() <= 3 * 15, "{} features in use", f.used.len());
        let s = f.score(x.view());
        assert!(s.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn corrupt_trees_are_refused() {
        let cyclic = Tree {
            feature: vec![0, 0],
            threshold: vec![0.5, 0.5],
            left: vec![1, 0],
            right: vec![1, 0],
            size: vec![2, 1],
        };
        assert!(IForest::from_trees(1, 4, vec![cyclic]).is_err());
        let unknown_feature = Tree {
            feature: vec![5, -1, -1],
            threshold: vec![0.5, 0.0, 0.0],
            left: vec![1, 0, 0],
            right: vec![2, 0, 0],
            size: vec![2, 1, 1],
        };
        assert!(IForest::from_trees(1, 4, vec![unknown_feature]).is_err());
    }

    #[test]
    fn oversized_forests_are_refused_before_any_allocation() {
        let huge = Params {
            n_estimators: 10_000,
            max_samples: MAX_SAMPLES_LIMIT,
        };
        assert!(matches!(
            huge.validate(),
            Err(DetectError::InvalidParameter { .. })
        ));
        // A saved forest of one-leaf trees claiming the largest sample size is laid out at
        // depth 1, not 16.
        let leaf = Tree {
            feature: vec![-1],
            threshold: vec![0.0],
            left: vec![0],
            right: vec![0],
            size: vec![3],
        };
        let f = IForest::from_trees(2, MAX_SAMPLES_LIMIT, vec![leaf.clone(); 1000]).unwrap();
        assert_eq!(f.depth, 1);
        assert_eq!(f.nodes.len(), 1000);
        assert!(IForest::from_trees(0, 4, vec![leaf]).is_err());
    }

    #[test]
    fn parameters_out_of_range_are_refused() {
        let x = array![[1.0], [2.0]];
        for p in [
            Params {
                n_estimators: 0,
                ..Params::default()
            },
            Params {
                max_samples: 0,
                ..Params::default()
            },
            Params {
                max_samples: MAX_SAMPLES_LIMIT + 1,
                ..Params::default()
            },
        ] {
            assert!(matches!(
                IForest::fit(x.view(), &p, 0),
                Err(DetectError::InvalidParameter { .. })
            ));
        }
    }
}
