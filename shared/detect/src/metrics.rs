//! Ranking quality of scores against 0/1 labels: ROC AUC and average precision, with
//! ties handled as scikit-learn does (`roc_auc_score`, `average_precision_score`).

/// Area under the ROC curve (the probability that a random anomaly outscores a random
/// normal row, ties counting one half). `None` when the labels hold only one class or
/// the lengths differ.
pub fn roc_auc(labels: &[bool], scores: &[f64]) -> Option<f64> {
    if labels.len() != scores.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    // Sum of the (tie-averaged, 1-based) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        let pos_in_group = order[i..=j].iter().filter(|&&k| labels[k]).count();
        rank_sum += avg_rank * pos_in_group as f64;
        i = j + 1;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// Average precision: the sum over score thresholds (highest first) of the precision at
/// each threshold times the recall it adds. `None` when there are no positives or the
/// lengths differ.
pub fn average_precision(labels: &[bool], scores: &[f64]) -> Option<f64> {
    if labels.len() != scores.len() {
        return None;
    }
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let (mut ap, mut prev_recall) = (0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            if labels[order[j]] {
                tp += 1;
            } else {
                fp += 1;
            }
            j += 1;
        }
        let recall = tp as f64 / positives as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
        i = j;
    }
    Some(ap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scikit_learn_on_small_cases() {
        // sklearn.metrics.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
        let y = [false, false, true, true];
        let s = [0.1, 0.4, 0.35, 0.8];
        assert_eq!(roc_auc(&y, &s), Some(0.75));
        // sklearn.metrics.average_precision_score(y, s) == 0.8333...
        assert!((average_precision(&y, &s).unwrap() - 5.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn ties_count_one_half() {
        let y = [false, true];
        assert_eq!(roc_auc(&y, &[1.0, 1.0]), Some(0.5));
        // One threshold holding both rows: precision 1/2 at recall 1.
        assert_eq!(average_precision(&y, &[1.0, 1.0]), Some(0.5));
    }

    #[test]
    fn perfect_and_reversed_rankings() {
        let y = [false, false, true];
        assert_eq!(roc_auc(&y, &[0.0, 1.0, 2.0]), Some(1.0));
        assert_eq!(roc_auc(&y, &[2.0, 1.0, 0.0]), Some(0.0));
        assert_eq!(average_precision(&y, &[0.0, 1.0, 2.0]), Some(1.0));
    }

    #[test]
    fn one_class_has_no_auc() {
        assert_eq!(roc_auc(&[true, true], &[0.0, 1.0]), None);
        assert_eq!(average_precision(&[false], &[0.0]), None);
        assert_eq!(roc_auc(&[true], &[0.0, 1.0]), None);
    }
}
