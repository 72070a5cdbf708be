//! Sequence features: [`Length`] in tokens and [`EndsWithEos`].

use crate::error::Result;
use crate::feature::{Feature, Sample, bit};

/// The number of generated tokens, `sample.tokens.len()` (real-valued, ≥ 0).
#[derive(Debug, Clone, Copy, Default)]
pub struct Length;

impl Feature for Length {
    fn name(&self) -> &str {
        "length in tokens"
    }

    fn is_binary(&self) -> bool {
        false
    }

    fn bounds(&self) -> (f64, f64) {
        (0.0, f64::INFINITY)
    }

    fn score(&self, samples: &[Sample<'_>]) -> Result<Vec<f64>> {
        // Lengths are far below 2^53, so the conversion is exact.
        Ok(samples.iter().map(|s| s.tokens.len() as f64).collect())
    }
}

/// 1 if generation stopped on an end-of-sequence token (`sample.eos`), else 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct EndsWithEos;

impl Feature for EndsWithEos {
    fn name(&self) -> &str {
        "ends with EOS"
    }

    fn is_binary(&self) -> bool {
        true
    }

    fn score(&self, samples: &[Sample<'_>]) -> Result<Vec<f64>> {
        Ok(samples.iter().map(|s| bit(s.eos)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_counts_tokens_not_characters() {
        let samples = [
            Sample::new("a long text with few tokens", &[1, 2], true),
            Sample::new("", &[], false),
            Sample::new("x", &[5, 5, 5, 5, 5], false),
        ];
        assert_eq!(Length.score(&samples).unwrap(), [2., 0., 5.]);
        assert!(!Length.is_binary());
        assert_eq!(Length.bounds(), (0.0, f64::INFINITY));
    }

    #[test]
    fn eos_flag() {
        let samples = [Sample::new("a", &[1], true), Sample::new("b", &[1], false)];
        assert_eq!(EndsWithEos.score(&samples).unwrap(), [1., 0.]);
        assert!(EndsWithEos.is_binary());
        assert_eq!(EndsWithEos.bounds(), (0.0, 1.0));
    }
}
