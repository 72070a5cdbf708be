//! Self-BLEU (Zhu et al. 2018), with NLTK's sentence BLEU and smoothing `method1`.

use std::collections::HashMap;

use super::TokenizedTexts;

/// NLTK's `SmoothingFunction().method1` epsilon: a precision with no matches counts as
/// `0.1 / (number of hypothesis n-grams)`.
const METHOD1_EPSILON: f64 = 0.1;

/// Self-BLEU-`order` of `texts`: see [`SelfBleu`]. `None` with fewer than two texts.
///
/// # Panics
/// If `order` is 0.
pub fn self_bleu(texts: &TokenizedTexts, order: usize) -> Option<f64> {
    SelfBleu::new(texts, order).map(|s| s.score(order))
}

/// Self-BLEU of a set of texts, for every order up to a maximum, from n-gram tables built once.
///
/// Each text is the hypothesis once, with all the other texts as its references; its score is
/// NLTK's `sentence_bleu(references, hypothesis, weights = (1/n,) * n,
/// smoothing_function = SmoothingFunction().method1)`; Self-BLEU-n is the mean over the texts.
/// This is what naver/gdc's `SelfBlEU` computes (`rm_vs_dm/gdc/gdc/metrics.py`), and the tests
/// check it against NLTK 3.9.1 to 1e-9. In detail, for a hypothesis h and order k:
/// - the clipped count of an n-gram g is `min(count_h(g), max over references r of count_r(g))`,
///   and `p_k = sum of clipped counts / max(1, number of k-grams of h)`;
/// - when no unigram matches, the score is 0; otherwise a `p_k` with no match becomes
///   `0.1 / max(1, number of k-grams of h)` (method1);
/// - the brevity penalty uses the reference length closest to `|h|` (the shorter on ties):
///   1 if `|h| > r`, else `exp(1 - r/|h|)`;
/// - BLEU = BP · exp(Σ_k (1/n) ln p_k).
///
/// The maximum over the other texts is computed in O(total n-grams) rather than over all
/// pairs: for every n-gram the table keeps its largest count, the text holding it, and the
/// largest count in any other text, so "max over the texts but i" is one lookup.
#[derive(Debug, Clone)]
pub struct SelfBleu {
    /// `matches[i][k - 1]`: clipped k-gram matches of text i against the others.
    matches: Vec<Vec<u64>>,
    /// Text lengths in tokens.
    lengths: Vec<usize>,
    /// The closest reference length of each text.
    closest_ref: Vec<usize>,
    max_order: usize,
}

/// The two largest per-text counts of an n-gram.
#[derive(Debug, Clone, Copy)]
struct Top2 {
    best: u32,
    best_text: usize,
    second: u32,
}

impl SelfBleu {
    /// Builds the n-gram tables of orders 1..=`max_order`. `None` with fewer than two texts
    /// (a text needs at least one reference).
    ///
    /// # Panics
    /// If `max_order` is 0.
    pub fn new(texts: &TokenizedTexts, max_order: usize) -> Option<Self> {
        assert!(max_order > 0, "BLEU order must be positive");
        let texts = texts.texts();
        if texts.len() < 2 {
            return None;
        }
        let mut matches = vec![vec![0u64; max_order]; texts.len()];
        for k in 1..=max_order {
            // Per-text counts, then the top two counts of every n-gram over the texts.
            let per_text: Vec<HashMap<&[u32], u32>> = texts
                .iter()
                .map(|t| {
                    let mut counts = HashMap::new();
                    for g in t.windows(k) {
                        *counts.entry(g).or_insert(0) += 1;
                    }
                    counts
                })
                .collect();
            let mut top: HashMap<&[u32], Top2> = HashMap::new();
            for (i, counts) in per_text.iter().enumerate() {
                for (&g, &c) in counts {
                    top.entry(g)
                        .and_modify(|t| {
                            if c > t.best {
                                t.second = t.best;
                                t.best = c;
                                t.best_text = i;
                            } else if c > t.second {
                                t.second = c;
                            }
                        })
                        .or_insert(Top2 { best: c, best_text: i, second: 0 });
                }
            }
            for (i, counts) in per_text.iter().enumerate() {
                matches[i][k - 1] = counts
                    .iter()
                    .map(|(g, &c)| {
                        let t = top[g];
                        let others = if t.best_text == i { t.second } else { t.best };
                        u64::from(c.min(others))
                    })
                    .sum();
            }
        }
        let lengths: Vec<usize> = texts.iter().map(Vec::len).collect();
        let closest_ref = (0..lengths.len())
            .map(|i| {
                let h = lengths[i];
                lengths
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, &r)| r)
                    .min_by_key(|&r| (r.abs_diff(h), r))
                    .expect("at least one other text")
            })
            .collect();
        Some(Self { matches, lengths, closest_ref, max_order })
    }

    /// Self-BLEU-`order`: the mean over texts of their sentence BLEU against the others.
    ///
    /// # Panics
    /// If `order` is 0 or above the `max_order` given to [`SelfBleu::new`].
    pub fn score(&self, order: usize) -> f64 {
        assert!(
            (1..=self.max_order).contains(&order),
            "order {order} not in 1..={}",
            self.max_order
        );
        let total = neumaier_sum((0..self.lengths.len()).map(|i| self.sentence_bleu(i, order)));
        total / self.lengths.len() as f64
    }

    /// The BLEU of text `i` against the others; see the type's documentation.
    pub fn sentence_bleu(&self, i: usize, order: usize) -> f64 {
        let h = self.lengths[i];
        let matches = &self.matches[i];
        if matches[0] == 0 {
            return 0.0;
        }
        let weight = 1.0 / order as f64;
        let log_sum = neumaier_sum((1..=order).map(|k| {
            let denominator = (h + 1).saturating_sub(k).max(1) as f64;
            let p = match matches[k - 1] {
                0 => METHOD1_EPSILON / denominator,
                m => m as f64 / denominator,
            };
            weight * p.ln()
        }));
        let r = self.closest_ref[i];
        // h > 0 here: a text with a unigram match has tokens.
        let brevity = if h > r { 1.0 } else { (1.0 - r as f64 / h as f64).exp() };
        brevity * log_sum.exp()
    }
}

/// Compensated summation (NLTK uses `math.fsum`; this agrees with it to an ulp or so).
fn neumaier_sum(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut compensation) = (0.0f64, 0.0f64);
    for v in values {
        let t = sum + v;
        compensation += if sum.abs() >= v.abs() { (sum - t) + v } else { (v - t) + sum };
        sum = t;
    }
    sum + compensation
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::TokenUnit;

    #[test]
    fn identical_texts_score_one_and_disjoint_texts_zero() {
        let same = TokenizedTexts::new(&["a b c d e"; 3], TokenUnit::Whitespace);
        assert_eq!(self_bleu(&same, 4), Some(1.0));
        let disjoint = TokenizedTexts::new(&["a b c", "d e f"], TokenUnit::Whitespace);
        assert_eq!(self_bleu(&disjoint, 3), Some(0.0));
        let one = TokenizedTexts::new(&["a b c"], TokenUnit::Whitespace);
        assert_eq!(self_bleu(&one, 3), None);
    }

    #[test]
    fn hand_computed_case() {
        // h = "a b c d", the only reference "a b x d": p1 = 3/4, p2 = 1/3, p3 = 0 -> 0.1/2,
        // equal lengths so BP = 1; BLEU-3 = (3/4 * 1/3 * 1/20)^(1/3). Symmetric for the other.
        let t = TokenizedTexts::new(&["a b c d", "a b x d"], TokenUnit::Whitespace);
        let expected = (0.75f64 * (1.0 / 3.0) * 0.05).powf(1.0 / 3.0);
        assert!((self_bleu(&t, 3).unwrap() - expected).abs() < 1e-15);
    }

    #[test]
    fn max_over_other_texts_excludes_self() {
        // Text 0 holds "a" twice; the others once: text 0's clipped count is 1, not 2.
        let t = TokenizedTexts::new(&["a a", "a b", "a c"], TokenUnit::Whitespace);
        let s = SelfBleu::new(&t, 1).unwrap();
        assert_eq!(s.matches[0][0], 1);
        assert_eq!(s.matches[1][0], 1);
    }

    #[test]
    fn neumaier_is_exact_where_naive_is_not() {
        let v = [1e16, 1.0, -1e16];
        assert_eq!(neumaier_sum(v.into_iter()), 1.0);
    }
}
