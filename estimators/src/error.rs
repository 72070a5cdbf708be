//! The crate's error type.

/// Everything that can go wrong in `tilt-estimators`.
///
/// Variants carry the offending input's name, the sample index and the value, so that a bad
/// batch can be traced back to the sample that broke it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A batch with no samples (or a computation that needs at least one).
    #[error("empty batch: {what} needs at least one sample")]
    EmptyBatch {
        /// What was being computed.
        what: &'static str,
    },

    /// Two per-sample inputs disagree in length, or a per-token input has the wrong shape.
    #[error("shape mismatch for {what}: expected {expected}, got {got}")]
    ShapeMismatch {
        /// Which input is wrong.
        what: &'static str,
        /// The length (or element count) implied by the batch.
        expected: usize,
        /// The length given.
        got: usize,
    },

    /// An estimator needs an input the batch does not carry.
    #[error("{estimator} needs `{input}`, which the batch does not carry")]
    MissingInput {
        /// The estimator.
        estimator: &'static str,
        /// The missing input (`"log_q"`, `"log_z"`, ...).
        input: &'static str,
    },

    /// An input is NaN, or infinite where that is not allowed (`-inf` is legal only for
    /// `log_target`, meaning P = 0).
    #[error("{what} is {value} at sample {sample}")]
    NonFinite {
        /// Which input (`"log_target"`, `"reward"`, `"log_q"`, ...).
        what: &'static str,
        /// The sample index.
        sample: usize,
        /// The offending value.
        value: f64,
    },

    /// A computed advantage is not finite (e.g. reverse KL at a sample with P = 0, where the
    /// divergence itself is infinite, or `P/q` overflowing f64).
    #[error("{estimator}: advantage is {value} at sample {sample}")]
    NonFiniteAdvantage {
        /// The estimator.
        estimator: &'static str,
        /// The sample index.
        sample: usize,
        /// The offending value.
        value: f64,
    },

    /// Every sample of the batch was skipped as invalid, so there is nothing to learn from.
    #[error("{estimator}: all {skipped} samples of the batch were invalid and skipped")]
    NoValidSamples {
        /// The estimator.
        estimator: &'static str,
        /// How many were skipped.
        skipped: usize,
    },

    /// `log Z` is needed but is not a finite number (Z = 0 means every P seen was 0).
    #[error("{what}: log Z must be finite, got {value}")]
    InvalidLogZ {
        /// Who needed it.
        what: &'static str,
        /// The value given.
        value: f64,
    },

    /// A configuration value is out of range.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidConfig {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: f64,
        /// What is allowed.
        reason: &'static str,
    },

    /// A saved estimator state (checkpoint) does not fit the estimator.
    #[error("{estimator}: cannot restore the saved state: {reason}")]
    InvalidState {
        /// The estimator.
        estimator: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// An estimate from `tilt-ebm` (Z, divergences) failed.
    #[error(transparent)]
    Ebm(#[from] tilt_ebm::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
