//! Distinct-n (Li et al. 2016), as naver/gdc computes it.

use std::collections::HashSet;

use super::TokenizedTexts;

/// Distinct-n: for each text, the number of distinct n-grams divided by the number of tokens,
/// averaged over the texts. An empty text counts as 0 (and still counts in the average).
///
/// This is naver/gdc's `Distinct_N` (`rm_vs_dm/gdc/gdc/metrics.py`): note the denominator is
/// the token count, not the n-gram count, so Distinct-2 of a text of k distinct tokens is
/// (k-1)/k. Returns `None` when there are no texts.
///
/// # Panics
/// If `n` is 0.
pub fn distinct_n(texts: &TokenizedTexts, n: usize) -> Option<f64> {
    assert!(n > 0, "n-gram order must be positive");
    if texts.is_empty() {
        return None;
    }
    let mut seen = HashSet::new();
    let total: f64 = texts
        .texts()
        .iter()
        .filter(|t| !t.is_empty())
        .map(|t| {
            seen.clear();
            seen.extend(t.windows(n));
            seen.len() as f64 / t.len() as f64
        })
        .sum();
    Some(total / texts.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::TokenUnit;

    #[test]
    fn distinct_counts_over_tokens() {
        let t = TokenizedTexts::new(&["a b a b", ""], TokenUnit::Whitespace);
        // Text 1: unigrams {a, b} / 4 = 0.5, bigrams {ab, ba} / 4 = 0.5, trigrams {aba, bab} / 4.
        // Text 2 is empty and counts 0.
        assert_eq!(distinct_n(&t, 1), Some(0.25));
        assert_eq!(distinct_n(&t, 2), Some(0.25));
        assert_eq!(distinct_n(&t, 3), Some(0.25));
        // Shorter than n: no n-grams.
        let short = TokenizedTexts::new(&["a b"], TokenUnit::Whitespace);
        assert_eq!(distinct_n(&short, 3), Some(0.0));
        assert_eq!(distinct_n(&TokenizedTexts::default(), 1), None);
    }
}
