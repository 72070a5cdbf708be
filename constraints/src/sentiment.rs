//! A lexicon sentiment score ([`Sentiment`], VADER).

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::{Deserialize, Serialize};
use vader_sentiment::SentimentIntensityAnalyzer;

use crate::error::{Error, Result};
use crate::feature::{Feature, Sample};

/// Which of VADER's four scores a [`Sentiment`] feature returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SentimentScore {
    /// The normalised sum of valences, in [-1, 1] (VADER's headline score).
    #[default]
    Compound,
    /// The positive share of the text, in [0, 1].
    Positive,
    /// The negative share of the text, in [0, 1].
    Negative,
    /// The neutral share of the text, in [0, 1].
    Neutral,
}

impl SentimentScore {
    fn key(self) -> &'static str {
        match self {
            Self::Compound => "compound",
            Self::Positive => "pos",
            Self::Negative => "neg",
            Self::Neutral => "neu",
        }
    }
}

/// VADER sentiment of the text (Hutto & Gilbert 2014, through the `vader_sentiment` crate):
/// by default the compound score in [-1, 1], real-valued. Use a threshold to make it binary.
/// A text without sentiment-bearing words has compound 0 and neutral 1; an empty text scores
/// 0 for all four scores.
pub struct Sentiment {
    score: SentimentScore,
    name: String,
    analyzer: SentimentIntensityAnalyzer<'static>,
}

impl std::fmt::Debug for Sentiment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sentiment").field("score", &self.score).finish_non_exhaustive()
    }
}

impl Sentiment {
    /// The feature returning `score`.
    pub fn new(score: SentimentScore) -> Self {
        let name = format!("VADER sentiment {}", score.key());
        Self { score, name, analyzer: SentimentIntensityAnalyzer::new() }
    }

    fn one(&self, text: &str) -> f64 {
        self.analyzer.polarity_scores(text).get(self.score.key()).copied().unwrap_or(0.0)
    }
}

impl Feature for Sentiment {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_binary(&self) -> bool {
        false
    }

    fn bounds(&self) -> (f64, f64) {
        match self.score {
            SentimentScore::Compound => (-1.0, 1.0),
            _ => (0.0, 1.0),
        }
    }

    fn score(&self, samples: &[Sample<'_>]) -> Result<Vec<f64>> {
        samples
            .iter()
            .enumerate()
            .map(|(index, s)| {
                // vader_sentiment indexes into token vectors; guard against a panic on odd input
                // rather than taking the whole training run down.
                catch_unwind(AssertUnwindSafe(|| self.one(s.text)))
                    .map_err(|_| Error::Sentiment { index })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(kind: SentimentScore, texts: &[&str]) -> Vec<f64> {
        let samples: Vec<Sample<'_>> = texts.iter().map(|t| Sample::text(t)).collect();
        Sentiment::new(kind).score(&samples).unwrap()
    }

    const TEXTS: [&str; 4] = [
        "VADER is smart, handsome, and funny.",
        "The movie was terrible.",
        "The food was not good, but the service was GREAT!!!",
        "A table.",
    ];

    #[test]
    fn compound_on_known_sentences() {
        let values = score(SentimentScore::Compound, &TEXTS);
        // Computed once with vader_sentiment 0.1.1 and pinned. The first agrees with Python
        // vaderSentiment's 0.8316 for the example sentence of VADER's README; the third
        // exercises negation, "but", capitals and exclamation marks.
        let expected = [0.8316320352807864, -0.4766576055745744, 0.836932103170979, 0.0];
        for (v, e) in values.iter().zip(expected) {
            approx::assert_abs_diff_eq!(*v, e, epsilon = 1e-12);
        }
    }

    #[test]
    fn shares_on_known_sentences() {
        // Pinned from vader_sentiment 0.1.1 (Python vaderSentiment: pos 0.746, neu 0.254 for
        // the first sentence).
        let cases = [
            (SentimentScore::Positive, [0.7457627118644068, 0.0, 0.4400554000634793, 0.0]),
            (
                SentimentScore::Neutral,
                [0.2542372881355932, 0.49180327868852464, 0.46166719566032843, 1.0],
            ),
            (SentimentScore::Negative, [0.0, 0.5081967213114754, 0.0982774042761924, 0.0]),
        ];
        for (kind, expected) in cases {
            for (v, e) in score(kind, &TEXTS).iter().zip(expected) {
                approx::assert_abs_diff_eq!(*v, e, epsilon = 1e-12);
            }
        }
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let values =
            score(SentimentScore::Compound, &["", "   ", "!!!", "😀", "but", "kind of", "no"]);
        assert_eq!(values.len(), 7);
        assert!(values.iter().all(|v| (-1.0..=1.0).contains(v)));
        assert_eq!(values[0], 0.0);
    }

    #[test]
    fn bounds_and_name() {
        assert_eq!(Sentiment::new(SentimentScore::Compound).bounds(), (-1.0, 1.0));
        assert_eq!(Sentiment::new(SentimentScore::Positive).bounds(), (0.0, 1.0));
        assert!(!Sentiment::new(SentimentScore::Compound).is_binary());
        assert_eq!(Sentiment::new(SentimentScore::Compound).name(), "VADER sentiment compound");
    }
}
