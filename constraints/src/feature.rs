//! The [`Feature`] trait and the [`Sample`] it scores.

use crate::error::{Error, Result};

/// One generated sequence, as a feature sees it.
///
/// `tokens` are the generated token ids (prompt excluded), `text` their decoding, and `eos`
/// whether generation stopped on an end-of-sequence token (the EOS id itself need not be in
/// `tokens`; that is the caller's convention, and [`Length`](crate::Length) counts `tokens` as
/// given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample<'a> {
    /// The decoded text.
    pub text: &'a str,
    /// The generated token ids.
    pub tokens: &'a [u32],
    /// Whether the sequence ended with an end-of-sequence token.
    pub eos: bool,
}

impl<'a> Sample<'a> {
    /// A sample with text, tokens and EOS flag.
    pub fn new(text: &'a str, tokens: &'a [u32], eos: bool) -> Self {
        Self { text, tokens, eos }
    }

    /// A sample with only text (no tokens, no EOS), for text features and tests.
    pub fn text(text: &'a str) -> Self {
        Self { text, tokens: &[], eos: false }
    }
}

/// A feature φ(x): scores a batch of samples to one f64 each.
///
/// Values are φ(x) itself, never its logarithm (disco's `score`/`log_score` pair confused its
/// users; here there is only `score`). A binary feature answers exactly 0.0 or 1.0, and can then
/// serve as a pointwise constraint b(x) or be combined with `and`/`or`/`not`.
///
/// Implementations are `Send + Sync` so a plan can be shared between threads; the trait is
/// object-safe, and [`Plan`](crate::Plan) holds `Box<dyn Feature>`.
///
/// # Example
/// A feature of one's own, used beside a built-in one:
/// ```
/// use tilt_constraints::{Feature, Result, Sample, Word};
///
/// /// 1 if the text is all ASCII.
/// #[derive(Debug)]
/// struct Ascii;
///
/// impl Feature for Ascii {
///     fn name(&self) -> &str {
///         "ascii"
///     }
///     fn is_binary(&self) -> bool {
///         true
///     }
///     fn score(&self, samples: &[Sample<'_>]) -> Result<Vec<f64>> {
///         Ok(samples.iter().map(|s| if s.text.is_ascii() { 1.0 } else { 0.0 }).collect())
///     }
/// }
///
/// let features: Vec<Box<dyn Feature>> = vec![Box::new(Ascii), Box::new(Word::new("café", false)?)];
/// let samples = [Sample::text("Un café."), Sample::text("A coffee.")];
/// let scores: Vec<Vec<f64>> = features.iter().map(|f| f.score(&samples)).collect::<Result<_>>()?;
/// assert_eq!(scores, [[0.0, 1.0], [1.0, 0.0]]);
/// # Ok::<(), tilt_constraints::Error>(())
/// ```
pub trait Feature: std::fmt::Debug + Send + Sync {
    /// A short human-readable description, e.g. `word "amazing"`, used in errors and logs.
    fn name(&self) -> &str;

    /// Whether every value is 0.0 or 1.0.
    fn is_binary(&self) -> bool;

    /// The closed interval the values lie in (used to validate moment targets).
    /// Binary features answer `(0.0, 1.0)`; the default is unbounded.
    fn bounds(&self) -> (f64, f64) {
        if self.is_binary() { (0.0, 1.0) } else { (f64::NEG_INFINITY, f64::INFINITY) }
    }

    /// φ(x) for every sample, in order: the result has `samples.len()` values.
    fn score(&self, samples: &[Sample<'_>]) -> Result<Vec<f64>>;
}

/// Scores with `feature` and checks the batch size (and, if `require_binary`, that every value
/// is 0 or 1): the guard used wherever a feature's answer is trusted.
pub(crate) fn score_checked(
    feature: &dyn Feature,
    samples: &[Sample<'_>],
    require_binary: bool,
) -> Result<Vec<f64>> {
    let values = feature.score(samples)?;
    if values.len() != samples.len() {
        return Err(Error::BatchSize {
            feature: feature.name().to_owned(),
            expected: samples.len(),
            got: values.len(),
        });
    }
    if require_binary
        && let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !is_bit(**v))
    {
        return Err(Error::NotBinaryValue { feature: feature.name().to_owned(), index, value });
    }
    Ok(values)
}

/// Implements [`Feature`] for types with the fields `name: String` and `regex: Regex`: a binary
/// feature, 1 where the regex matches somewhere in the text, else 0.
macro_rules! regex_feature {
    ($($t:ty),+ $(,)?) => {$(
        impl $crate::feature::Feature for $t {
            fn name(&self) -> &str {
                &self.name
            }

            fn is_binary(&self) -> bool {
                true
            }

            fn score(
                &self,
                samples: &[$crate::feature::Sample<'_>],
            ) -> $crate::error::Result<Vec<f64>> {
                let matches = samples.iter().map(|s| self.regex.is_match(s.text));
                Ok(matches.map($crate::feature::bit).collect())
            }
        }
    )+};
}
pub(crate) use regex_feature;

/// 1.0 for true, 0.0 for false.
pub(crate) fn bit(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// Whether `v` is exactly 0.0 or 1.0.
pub(crate) fn is_bit(v: f64) -> bool {
    v == 0.0 || v == 1.0
}
