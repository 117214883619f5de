//! Exact k-nearest-neighbour search (Euclidean) with a k-d tree.
//!
//! Splits on the dimension of widest spread at the median, with leaves of up to 16
//! points; a node whose points are all equal stays a leaf. Ties in distance are broken by
//! the lower row index, so results never depend on traversal order.

use ndarray::{Array2, ArrayView1, ArrayView2};

const LEAF_SIZE: usize = 16;

#[derive(Debug, Clone)]
enum KdNode {
    Leaf {
        start: usize,
        end: usize,
    },
    Split {
        dim: usize,
        value: f64,
        left: usize,
        right: usize,
    },
}

/// A k-d tree over the rows of an owned matrix.
#[derive(Debug, Clone)]
pub struct KdTree {
    data: Array2<f64>,
    order: Vec<usize>,
    nodes: Vec<KdNode>,
}

/// One neighbour: its row index and its Euclidean distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    /// Row index in the indexed matrix.
    pub index: usize,
    /// Euclidean distance to the query.
    pub distance: f64,
}

impl KdTree {
    /// Indexes the rows of `data`.
    pub fn new(data: Array2<f64>) -> Self {
        let data = data.as_standard_layout().into_owned();
        let mut tree = KdTree {
            order: (0..data.nrows()).collect(),
            nodes: Vec::new(),
            data,
        };
        if tree.data.nrows() > 0 {
            tree.build(0, tree.data.nrows());
        }
        tree
    }

    /// The indexed rows.
    pub fn data(&self) -> ArrayView2<'_, f64> {
        self.data.view()
    }

    fn build(&mut self, start: usize, end: usize) -> usize {
        let id = self.nodes.len();
        self.nodes.push(KdNode::Leaf { start, end });
        if end - start <= LEAF_SIZE {
            return id;
        }
        let d = self.data.ncols();
        let (mut best_dim, mut best_spread) = (0, 0.0);
        for dim in 0..d {
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            for &i in &self.order[start..end] {
                let v = self.data[[i, dim]];
                lo = lo.min(v);
                hi = hi.max(v);
            }
            if hi - lo > best_spread {
                best_spread = hi - lo;
                best_dim = dim;
            }
        }
        if best_spread <= 0.0 {
            return id;
        }
        let mid = start + (end - start) / 2;
        let data = &self.data;
        self.order[start..end].select_nth_unstable_by(mid - start, |&a, &b| {
            data[[a, best_dim]].total_cmp(&data[[b, best_dim]])
        });
        let value = self.data[[self.order[mid], best_dim]];
        let left = self.build(start, mid);
        let right = self.build(mid, end);
        self.nodes[id] = KdNode::Split {
            dim: best_dim,
            value,
            left,
            right,
        };
        id
    }

    /// The `k` nearest rows to `query`, nearest first, leaving out row `exclude` (used to
    /// find a training row's neighbours among the other training rows).
    pub fn nearest(
        &self,
        query: ArrayView1<f64>,
        k: usize,
        exclude: Option<usize>,
    ) -> Vec<Neighbor> {
        let mut best: Vec<(f64, usize)> = Vec::with_capacity(k + 1);
        if k > 0 && !self.nodes.is_empty() {
            let q = query.as_standard_layout();
            let q = q.as_slice().unwrap_or(&[]);
            self.search(0, q, k, exclude, &mut best);
        }
        best.into_iter()
            .map(|(d2, index)| Neighbor {
                index,
                distance: d2.sqrt(),
            })
            .collect()
    }

    fn search(
        &self,
        node: usize,
        q: &[f64],
        k: usize,
        exclude: Option<usize>,
        best: &mut Vec<(f64, usize)>,
    ) {
        match self.nodes[node] {
            KdNode::Leaf { start, end } => {
                for &i in &self.order[start..end] {
                    if Some(i) == exclude {
                        continue;
                    }
                    let row = self.data.row(i);
                    let row = row.as_slice().unwrap_or(&[]);
                    let d2: f64 = row.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
                    let cand = (d2, i);
                    if best.len() == k {
                        let worst = best[k - 1];
                        if cand.0 > worst.0 || (cand.0 == worst.0 && cand.1 > worst.1) {
                            continue;
                        }
                        best.pop();
                    }
                    let pos =
                        best.partition_point(|b| b.0 < cand.0 || (b.0 == cand.0 && b.1 < cand.1));
                    best.insert(pos, cand);
                }
            }
            KdNode::Split {
                dim,
                value,
                left,
                right,
            } => {
                let diff = q[dim] - value;
                let (near, far) = if diff <= 0.0 {
                    (left, right)
                } else {
                    (right, left)
                };
                self.search(near, q, k, exclude, best);
                if best.len() < k || diff * diff <= best[k - 1].0 {
                    self.search(far, q, k, exclude, best);
                }
            }
        }
    }
}

/// Training rows kept for neighbour search, with each feature's standard deviation for
/// explanations. Saved as the plain rows; the tree is rebuilt on load.
#[derive(Debug, Clone)]
pub struct TrainingSet {
    tree: KdTree,
    std: Vec<f64>,
}

impl TrainingSet {
    /// Indexes `x` (checked by the caller).
    pub fn new(x: ArrayView2<f64>) -> Self {
        let (_, std) = crate::stats::standardizer(x);
        TrainingSet {
            tree: KdTree::new(x.to_owned()),
            std: std.to_vec(),
        }
    }

    /// Number of training rows.
    pub fn len(&self) -> usize {
        self.tree.data.nrows()
    }

    /// Whether there are no training rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The k-d tree over the rows.
    pub fn tree(&self) -> &KdTree {
        &self.tree
    }

    /// Per-feature distance of `row` from the mean of `neighbors`, in training standard
    /// deviations: the explanation of the neighbour-based detectors.
    pub fn deviation_from(&self, row: ArrayView1<f64>, neighbors: &[Neighbor]) -> Vec<f64> {
        let d = row.len();
        let mut mean = vec![0.0; d];
        for n in neighbors {
            for (m, v) in mean.iter_mut().zip(self.tree.data.row(n.index)) {
                *m += v;
            }
        }
        let k = neighbors.len().max(1) as f64;
        row.iter()
            .zip(mean)
            .zip(&self.std)
            .map(|((x, m), s)| (x - m / k).abs() / s)
            .collect()
    }
}

#[derive(serde::Serialize)]
struct SavedRef<'a> {
    n_features: usize,
    rows: &'a [f64],
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    n_features: usize,
    rows: Vec<f64>,
}

impl serde::Serialize for TrainingSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SavedRef {
            n_features: self.tree.data.ncols(),
            rows: self.tree.data.as_slice().unwrap_or(&[]),
        }
        .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for TrainingSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let saved = Saved::deserialize(d)?;
        if saved.n_features == 0
            || saved.rows.is_empty()
            || saved.rows.len() % saved.n_features != 0
            || !saved.rows.iter().all(|v| v.is_finite())
        {
            return Err(D::Error::custom("training rows are malformed"));
        }
        let n = saved.rows.len() / saved.n_features;
        let x =
            Array2::from_shape_vec((n, saved.n_features), saved.rows).map_err(D::Error::custom)?;
        Ok(TrainingSet::new(x.view()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn brute(
        data: &Array2<f64>,
        q: ArrayView1<f64>,
        k: usize,
        exclude: Option<usize>,
    ) -> Vec<Neighbor> {
        let mut all: Vec<(f64, usize)> = data
            .outer_iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != exclude)
            .map(|(i, r)| (r.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum(), i))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        all.truncate(k);
        all.into_iter()
            .map(|(d2, index)| Neighbor {
                index,
                distance: d2.sqrt(),
            })
            .collect()
    }

    #[test]
    fn matches_brute_force_including_ties_and_duplicates() {
        let mut rng = Rng::new(11);
        // Integer coordinates in a small range: many ties and exact duplicates.
        let data = Array2::from_shape_fn((500, 3), |_| rng.below(6) as f64);
        let tree = KdTree::new(data.clone());
        for i in (0..500).step_by(7) {
            for k in [1, 5, 20] {
                assert_eq!(
                    tree.nearest(data.row(i), k, Some(i)),
                    brute(&data, data.row(i), k, Some(i)),
                    "row {i} k {k}"
                );
            }
        }
        let q = ndarray::array![2.5, 2.5, 2.5];
        assert_eq!(
            tree.nearest(q.view(), 5, None),
            brute(&data, q.view(), 5, None)
        );
    }

    #[test]
    fn k_larger_than_the_data_returns_everything() {
        let data = ndarray::array![[0.0], [1.0], [3.0]];
        let tree = KdTree::new(data);
        let n = tree.nearest(ndarray::array![0.9].view(), 10, None);
        assert_eq!(n.iter().map(|n| n.index).collect::<Vec<_>>(), vec![1, 0, 2]);
    }
}
