//! Text-diversity metrics of the paper's evaluation (METHODS.md section 5): Distinct-n and
//! Self-BLEU.
//!
//! Both work on [`TokenizedTexts`]: the texts tokenised once and interned as `u32` ids, so that
//! Distinct-1/2/3 and Self-BLEU-3/4/5 share one tokenisation. [`diversity`] computes the six
//! numbers the trainer logs.

mod distinct;
mod self_bleu;
mod tokens;

pub use distinct::distinct_n;
pub use self_bleu::{SelfBleu, self_bleu};
pub use tokens::{TokenUnit, TokenizedTexts};

use serde::{Deserialize, Serialize};

/// The diversity metrics of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DiversityReport {
    /// Distinct-1, Distinct-2, Distinct-3 over all the texts (`None` without texts).
    pub distinct: [Option<f64>; 3],
    /// Self-BLEU-3, Self-BLEU-4, Self-BLEU-5 over the first `self_bleu_samples` texts (`None`
    /// with fewer than two texts).
    pub self_bleu: [Option<f64>; 3],
}

/// Distinct-1/2/3 on all `texts` and Self-BLEU-3/4/5 on the first `self_bleu_samples` of them
/// (naver/gdc takes the first 500), both tokenised with `unit`.
pub fn diversity<S: AsRef<str>>(
    texts: &[S],
    unit: TokenUnit,
    self_bleu_samples: usize,
) -> DiversityReport {
    let all = TokenizedTexts::new(texts, unit);
    let distinct = [1, 2, 3].map(|n| distinct_n(&all, n));
    let head = all.head(self_bleu_samples);
    let scores = SelfBleu::new(&head, 5).map(|s| [3, 4, 5].map(|n| s.score(n)));
    let self_bleu = match scores {
        Some(s) => s.map(Some),
        None => [None; 3],
    };
    DiversityReport { distinct, self_bleu }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diversity_of_identical_texts_is_zero() {
        let texts = vec!["the cat sat on the mat"; 4];
        let r = diversity(&texts, TokenUnit::Words, 500);
        assert_eq!(r.self_bleu, [Some(1.0); 3]);
        // 5 distinct unigrams out of 6 tokens.
        assert!((r.distinct[0].unwrap() - 5.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn diversity_of_one_text_has_no_self_bleu() {
        let r = diversity(&["a b c"], TokenUnit::Words, 500);
        assert_eq!(r.self_bleu, [None; 3]);
        assert_eq!(r.distinct[0], Some(1.0));
        let r = diversity::<&str>(&[], TokenUnit::Words, 500);
        assert_eq!(r.distinct, [None; 3]);
    }

    #[test]
    fn self_bleu_uses_only_the_head() {
        // The third text would change the score if it were included.
        let texts = ["a b c d e", "a b c d e", "x y z w v"];
        let r = diversity(&texts, TokenUnit::Words, 2);
        assert_eq!(r.self_bleu, [Some(1.0); 3]);
    }
}
