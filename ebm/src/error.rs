//! The crate's error type.

/// Everything that can go wrong in `tilt-ebm`.
///
/// Every variant carries enough context to find the offending input: the sample index, the
/// feature index and name, the value, or the range the samples span.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two inputs that must agree in length (or a matrix and its declared shape) do not.
    #[error("dimension mismatch for {what}: expected {expected}, got {got}")]
    DimensionMismatch {
        /// Which input is wrong.
        what: &'static str,
        /// The length implied by the other inputs.
        expected: usize,
        /// The length given.
        got: usize,
    },

    /// An input holds NaN, or an infinity where none is allowed.
    #[error("{what} is {value} at sample {sample}{}", feature_suffix(*feature))]
    NonFinite {
        /// Which input (`"log_proposal"`, `"features"`, ...).
        what: &'static str,
        /// The sample (row) index.
        sample: usize,
        /// The feature (column) index, for matrix inputs.
        feature: Option<usize>,
        /// The offending value (NaN or ±inf).
        value: f64,
    },

    /// A moment target lies outside the range of values the feature takes on the samples that
    /// have positive weight, so no finite λ (indeed no reweighting of these samples) reaches it.
    #[error(
        "target {target} for feature {feature} (`{name}`) is outside the range [{min}, {max}] \
         that the feature spans on the {n_samples} samples with positive weight"
    )]
    TargetOutOfRange {
        /// Feature index.
        feature: usize,
        /// Feature name (or `phi[j]` when none was given).
        name: String,
        /// The requested moment.
        target: f64,
        /// Smallest value of the feature on the samples.
        min: f64,
        /// Largest value of the feature on the samples.
        max: f64,
        /// Number of samples with positive weight.
        n_samples: usize,
    },

    /// A binary feature is 0 on every sample but its target is strictly above 0.
    #[error(
        "binary feature {feature} (`{name}`) never fires on the {n_samples} samples with \
         positive weight, but its target is {target}: draw more samples or use a proposal \
         that produces it"
    )]
    NeverFires {
        /// Feature index.
        feature: usize,
        /// Feature name.
        name: String,
        /// The requested moment.
        target: f64,
        /// Number of samples with positive weight.
        n_samples: usize,
    },

    /// A binary feature is 1 on every sample but its target is strictly below 1.
    #[error(
        "binary feature {feature} (`{name}`) never fails (is 1 on all {n_samples} samples with \
         positive weight), but its target is {target}: draw more samples or use a proposal \
         that produces its absence"
    )]
    NeverFails {
        /// Feature index.
        feature: usize,
        /// Feature name.
        name: String,
        /// The requested moment.
        target: f64,
        /// Number of samples with positive weight.
        n_samples: usize,
    },

    /// A target equals the smallest or largest value a non-constant feature takes: the
    /// moment is only reached as λ goes to ±infinity. A target of 0 or 1 for a binary
    /// feature should be a pointwise constraint instead.
    #[error(
        "target {target} for feature {feature} (`{name}`) sits on the edge of the range \
         [{min}, {max}] the samples span: λ would be infinite (make it a pointwise constraint)"
    )]
    TargetOnBoundary {
        /// Feature index.
        feature: usize,
        /// Feature name.
        name: String,
        /// The requested moment.
        target: f64,
        /// Smallest value of the feature on the samples.
        min: f64,
        /// Largest value of the feature on the samples.
        max: f64,
    },

    /// Every sample has weight zero (P = 0 everywhere), or there are no samples.
    #[error("{what}: no sample has positive weight ({n_samples} samples)")]
    NoSupport {
        /// Which computation.
        what: &'static str,
        /// Number of samples given.
        n_samples: usize,
    },

    /// A parameter is outside its domain.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What it must satisfy.
        reason: &'static str,
    },
}

fn feature_suffix(feature: Option<usize>) -> String {
    feature.map(|j| format!(", feature {j}")).unwrap_or_default()
}

/// `Result` with this crate's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_context() {
        let e = Error::NonFinite { what: "features", sample: 7, feature: Some(3), value: f64::NAN };
        assert_eq!(e.to_string(), "features is NaN at sample 7, feature 3");
        let e = Error::TargetOutOfRange {
            feature: 1,
            name: "female".into(),
            target: 0.9,
            min: 0.0,
            max: 0.5,
            n_samples: 10,
        };
        let s = e.to_string();
        assert!(s.contains("feature 1 (`female`)") && s.contains("[0, 0.5]"), "{s}");
    }
}
