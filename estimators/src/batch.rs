//! [`ScoredBatch`]: one batch of samples with everything an estimator may need.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::{Error, Result};

/// What an estimator does with a sample whose inputs are NaN or illegally infinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidSamples {
    /// Fail with [`Error::NonFinite`] naming the input, the sample and the value (the default).
    #[default]
    Error,
    /// Drop the sample: it gets advantage 0, the loss averages over the remaining samples, and
    /// [`StepStats::n_skipped`](crate::StepStats::n_skipped) counts it.
    Skip,
}

/// Per-token scores of the generated tokens, for the per-token KL-control estimator.
///
/// # Shapes
/// `log_pi` is `[n, T]` (the policy's token log-probs, differentiable, aligned with `mask`),
/// `mask`, `log_a` and `log_pi_old` are row-major `[n, T]` host vectors. Positions with
/// `mask = false` (prompt, padding) are ignored wherever they appear.
#[derive(Debug, Clone)]
pub struct TokenScores<B: Backend> {
    pub(crate) log_pi: Tensor<B, 2>,
    pub(crate) log_pi_host: Vec<f64>,
    pub(crate) mask: Vec<bool>,
    pub(crate) log_a: Option<Vec<f64>>,
    pub(crate) log_pi_old: Option<Vec<f64>>,
    pub(crate) values: Option<Vec<f64>>,
    pub(crate) dims: [usize; 2],
}

impl<B: Backend> TokenScores<B> {
    /// `[n, T]`.
    pub fn dims(&self) -> [usize; 2] {
        self.dims
    }

    /// The mask (row-major `[n, T]`).
    pub fn mask(&self) -> &[bool] {
        &self.mask
    }

    /// The detached policy token log-probs (row-major `[n, T]`).
    pub fn log_pi_host(&self) -> &[f64] {
        &self.log_pi_host
    }
}

/// A batch of `n` sampled sequences, scored.
///
/// Only `log_pi` (the policy's sequence log-probabilities, **differentiable**) is required;
/// each estimator says which of the other inputs it needs and fails with
/// [`Error::MissingInput`] when one is absent. All detached quantities are host `f64`
/// vectors in **log space** (`P/q` for a 40-token sequence overflows f32), read back from the
/// device once, when the batch is built.
///
/// | input | meaning | legal values |
/// |---|---|---|
/// | `log_pi` | `log π(x_i)`, summed over generated tokens | finite |
/// | `log_q` | `log q(x_i)` of the proposal that drew `x_i` | finite |
/// | `log_a` | `log a(x_i)` of the base model | finite |
/// | `log_target` | `log P(x_i)` of the EBM (from `tilt-ebm`) | finite or `-inf` (P = 0) |
/// | `reward` | `r(x_i)` for the RM estimators | finite |
/// | `log_pi_old` | `log π_old(x_i)` when the batch was sampled (PPO epochs) | finite |
/// | `log_z` | the current estimate of `log Z` (e.g. [`ZTracker`](crate::ZTracker)) | finite |
/// | `contexts` | context id of each sample (CDPG) | any |
/// | `tokens` | per-token scores ([`TokenScores`]) | finite where masked |
#[derive(Debug, Clone)]
pub struct ScoredBatch<B: Backend> {
    pub(crate) log_pi: Tensor<B, 1>,
    pub(crate) log_pi_host: Vec<f64>,
    pub(crate) log_pi_old: Option<Vec<f64>>,
    pub(crate) log_q: Option<Vec<f64>>,
    pub(crate) log_a: Option<Vec<f64>>,
    pub(crate) log_target: Option<Vec<f64>>,
    pub(crate) reward: Option<Vec<f64>>,
    pub(crate) log_z: Option<f64>,
    pub(crate) contexts: Option<Vec<usize>>,
    pub(crate) tokens: Option<TokenScores<B>>,
    pub(crate) on_invalid: InvalidSamples,
}

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got { Ok(()) } else { Err(Error::ShapeMismatch { what, expected, got }) }
}

fn host_values<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Vec<f64> {
    t.to_data().iter::<f64>().collect()
}

impl<B: Backend> ScoredBatch<B> {
    /// A batch from the policy's differentiable sequence log-probs `[n]`; reads them back to
    /// the host once. Fails on an empty batch.
    pub fn new(log_pi: Tensor<B, 1>) -> Result<Self> {
        let host = host_values(&log_pi);
        Self::with_host_log_pi(log_pi, host)
    }

    /// Like [`new`](Self::new) when the caller already holds the detached values (no device
    /// read-back). `log_pi_host` must equal `log_pi`'s values.
    pub fn with_host_log_pi(log_pi: Tensor<B, 1>, log_pi_host: Vec<f64>) -> Result<Self> {
        let [n] = log_pi.dims();
        if n == 0 {
            return Err(Error::EmptyBatch { what: "ScoredBatch" });
        }
        check_len("log_pi_host", n, log_pi_host.len())?;
        Ok(Self {
            log_pi,
            log_pi_host,
            log_pi_old: None,
            log_q: None,
            log_a: None,
            log_target: None,
            reward: None,
            log_z: None,
            contexts: None,
            tokens: None,
            on_invalid: InvalidSamples::Error,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.log_pi_host.len()
    }

    /// Always false (an empty batch cannot be built); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.log_pi_host.is_empty()
    }

    /// Sets `log q(x_i)`, the proposal that drew the samples (off-policy estimators).
    pub fn with_log_q(mut self, log_q: Vec<f64>) -> Result<Self> {
        check_len("log_q", self.len(), log_q.len())?;
        self.log_q = Some(log_q);
        Ok(self)
    }

    /// Sets `log a(x_i)`, the base model (KL-control).
    pub fn with_log_a(mut self, log_a: Vec<f64>) -> Result<Self> {
        check_len("log_a", self.len(), log_a.len())?;
        self.log_a = Some(log_a);
        Ok(self)
    }

    /// Sets `log P(x_i)`, the unnormalised target (DM estimators); `-inf` means P = 0.
    pub fn with_log_target(mut self, log_target: Vec<f64>) -> Result<Self> {
        check_len("log_target", self.len(), log_target.len())?;
        self.log_target = Some(log_target);
        Ok(self)
    }

    /// Sets the rewards `r(x_i)` (RM estimators).
    pub fn with_reward(mut self, reward: Vec<f64>) -> Result<Self> {
        check_len("reward", self.len(), reward.len())?;
        self.reward = Some(reward);
        Ok(self)
    }

    /// Sets the log-probs of the policy that sampled the batch, for PPO-style clipped epochs
    /// (the ratio is `π/π_old`; KL penalties are frozen at `π_old`).
    pub fn with_log_pi_old(mut self, log_pi_old: Vec<f64>) -> Result<Self> {
        check_len("log_pi_old", self.len(), log_pi_old.len())?;
        self.log_pi_old = Some(log_pi_old);
        Ok(self)
    }

    /// Sets the current estimate of `log Z` (for GDC++, the baselines, normalisation by Z and
    /// f-DPG). Validated when used.
    pub fn with_log_z(mut self, log_z: f64) -> Self {
        self.log_z = Some(log_z);
        self
    }

    /// Sets each sample's context id (CDPG).
    pub fn with_contexts(mut self, contexts: Vec<usize>) -> Result<Self> {
        check_len("contexts", self.len(), contexts.len())?;
        self.contexts = Some(contexts);
        Ok(self)
    }

    /// Sets the per-token policy log-probs `[n, T]` (differentiable) and which positions are
    /// generated tokens (row-major `[n, T]`); reads the values back once.
    ///
    /// The masked token log-probs of each row should sum to that row's `log_pi`.
    pub fn with_token_log_pi(mut self, log_pi: Tensor<B, 2>, mask: Vec<bool>) -> Result<Self> {
        let dims = log_pi.dims();
        check_len("token log_pi rows", self.len(), dims[0])?;
        check_len("token mask", dims[0] * dims[1], mask.len())?;
        let log_pi_host = host_values(&log_pi);
        self.tokens = Some(TokenScores {
            log_pi,
            log_pi_host,
            mask,
            log_a: None,
            log_pi_old: None,
            values: None,
            dims,
        });
        Ok(self)
    }

    /// Sets the base model's per-token log-probs (row-major `[n, T]`), after
    /// [`with_token_log_pi`](Self::with_token_log_pi).
    pub fn with_token_log_a(self, log_a: Vec<f64>) -> Result<Self> {
        self.with_token_column("ScoredBatch::with_token_log_a", "token log_a", log_a, |t| {
            &mut t.log_a
        })
    }

    /// Sets the sampling policy's per-token log-probs (row-major `[n, T]`) for per-token PPO
    /// clipping, after [`with_token_log_pi`](Self::with_token_log_pi).
    pub fn with_token_log_pi_old(self, log_pi_old: Vec<f64>) -> Result<Self> {
        let who = "ScoredBatch::with_token_log_pi_old";
        self.with_token_column(who, "token log_pi_old", log_pi_old, |t| &mut t.log_pi_old)
    }

    /// Sets the critic's values `V_t` at sampling time (row-major `[n, T]`, `V_t` of the prefix
    /// before token t), for KL-control with a critic; after
    /// [`with_token_log_pi`](Self::with_token_log_pi).
    pub fn with_token_values(self, values: Vec<f64>) -> Result<Self> {
        let who = "ScoredBatch::with_token_values";
        self.with_token_column(who, "token values", values, |t| &mut t.values)
    }

    /// Stores a `[n, T]` column of the token scores, checking its length.
    fn with_token_column(
        mut self,
        who: &'static str,
        what: &'static str,
        values: Vec<f64>,
        field: impl FnOnce(&mut TokenScores<B>) -> &mut Option<Vec<f64>>,
    ) -> Result<Self> {
        let tokens = self
            .tokens
            .as_mut()
            .ok_or(Error::MissingInput { estimator: who, input: "token log_pi" })?;
        check_len(what, tokens.dims[0] * tokens.dims[1], values.len())?;
        *field(tokens) = Some(values);
        Ok(self)
    }

    /// Chooses what to do with invalid samples (default: [`InvalidSamples::Error`]).
    pub fn on_invalid(mut self, policy: InvalidSamples) -> Self {
        self.on_invalid = policy;
        self
    }

    /// The differentiable sequence log-probs.
    pub fn log_pi(&self) -> &Tensor<B, 1> {
        &self.log_pi
    }

    /// The detached sequence log-probs.
    pub fn log_pi_host(&self) -> &[f64] {
        &self.log_pi_host
    }

    /// `log q`, if set.
    pub fn log_q(&self) -> Option<&[f64]> {
        self.log_q.as_deref()
    }

    /// `log a`, if set.
    pub fn log_a(&self) -> Option<&[f64]> {
        self.log_a.as_deref()
    }

    /// `log P`, if set.
    pub fn log_target(&self) -> Option<&[f64]> {
        self.log_target.as_deref()
    }

    /// The rewards, if set.
    pub fn reward(&self) -> Option<&[f64]> {
        self.reward.as_deref()
    }

    /// `log Z`, if set.
    pub fn log_z(&self) -> Option<f64> {
        self.log_z
    }

    /// The context ids, if set.
    pub fn contexts(&self) -> Option<&[usize]> {
        self.contexts.as_deref()
    }

    /// The per-token scores, if set.
    pub fn tokens(&self) -> Option<&TokenScores<B>> {
        self.tokens.as_ref()
    }

    pub(crate) fn device(&self) -> B::Device {
        self.log_pi.device()
    }

    /// A host vector as a `[n]` tensor on the batch's device (default float dtype).
    pub(crate) fn tensor_1d(&self, values: Vec<f64>) -> Tensor<B, 1> {
        let n = values.len();
        Tensor::from_data(TensorData::new(values, [n]), &self.device())
    }

    /// A host vector as a `[n, T]` tensor on the batch's device.
    pub(crate) fn tensor_2d(&self, values: Vec<f64>, dims: [usize; 2]) -> Tensor<B, 2> {
        Tensor::from_data(TensorData::new(values, dims), &self.device())
    }
}

/// Which validity rule an input follows.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rule {
    /// Must be finite.
    Finite,
    /// May be `-inf` (a log of a non-negative quantity that can be 0), not NaN or `+inf`.
    LogNonNegative,
}

impl Rule {
    fn ok(self, v: f64) -> bool {
        match self {
            Rule::Finite => v.is_finite(),
            Rule::LogNonNegative => !v.is_nan() && v != f64::INFINITY,
        }
    }
}

/// Which samples an estimator uses, after validation.
#[derive(Debug, Clone)]
pub(crate) struct Validity {
    pub(crate) skip: Vec<bool>,
    pub(crate) n_skipped: usize,
    policy: InvalidSamples,
}

impl Validity {
    /// Starts with every sample used, then applies the check every estimator needs: `log π`
    /// finite.
    pub(crate) fn new<B: Backend>(batch: &ScoredBatch<B>) -> Result<Self> {
        let mut v = Self { skip: vec![false; batch.len()], n_skipped: 0, policy: batch.on_invalid };
        v.check_per_sample("log_pi", &batch.log_pi_host, Rule::Finite)?;
        Ok(v)
    }

    /// Applies `rule` to every value; under [`InvalidSamples::Error`] the first violation is
    /// returned as [`Error::NonFinite`].
    pub(crate) fn check_per_sample(
        &mut self,
        what: &'static str,
        values: &[f64],
        rule: Rule,
    ) -> Result<()> {
        for (i, &v) in values.iter().enumerate() {
            if !rule.ok(v) {
                self.reject(what, i, v)?;
            }
        }
        Ok(())
    }

    /// Applies `rule` to the masked entries of a row-major `[n, T]` vector.
    pub(crate) fn check_per_token(
        &mut self,
        what: &'static str,
        values: &[f64],
        mask: &[bool],
        t: usize,
        rule: Rule,
    ) -> Result<()> {
        for (k, (&v, &m)) in values.iter().zip(mask).enumerate() {
            if m && !rule.ok(v) {
                self.reject(what, k / t.max(1), v)?;
            }
        }
        Ok(())
    }

    /// Marks sample `i` as invalid (or fails, per the batch's policy).
    pub(crate) fn reject(&mut self, what: &'static str, sample: usize, value: f64) -> Result<()> {
        match self.policy {
            InvalidSamples::Error => Err(Error::NonFinite { what, sample, value }),
            InvalidSamples::Skip => {
                log::debug!("skipping sample {sample}: {what} is {value}");
                if !self.skip[sample] {
                    self.skip[sample] = true;
                    self.n_skipped += 1;
                }
                Ok(())
            }
        }
    }

    /// Marks sample `i` whose advantage came out non-finite.
    pub(crate) fn reject_advantage(
        &mut self,
        estimator: &'static str,
        sample: usize,
        value: f64,
    ) -> Result<()> {
        match self.policy {
            InvalidSamples::Error => Err(Error::NonFiniteAdvantage { estimator, sample, value }),
            InvalidSamples::Skip => self.reject("advantage", sample, value),
        }
    }

    pub(crate) fn n_used(&self) -> usize {
        self.skip.len() - self.n_skipped
    }

    pub(crate) fn is_used(&self, i: usize) -> bool {
        !self.skip[i]
    }

    /// Fails if nothing is left.
    pub(crate) fn ensure_some(&self, estimator: &'static str) -> Result<()> {
        if self.n_used() == 0 {
            Err(Error::NoValidSamples { estimator, skipped: self.n_skipped })
        } else {
            Ok(())
        }
    }
}

/// Fetches a required per-sample input or fails with [`Error::MissingInput`].
pub(crate) fn require<'a>(
    v: Option<&'a [f64]>,
    estimator: &'static str,
    input: &'static str,
) -> Result<&'a [f64]> {
    v.ok_or(Error::MissingInput { estimator, input })
}

/// Fetches and validates `log Z`.
pub(crate) fn require_log_z<B: Backend>(
    batch: &ScoredBatch<B>,
    estimator: &'static str,
) -> Result<f64> {
    let log_z = batch.log_z.ok_or(Error::MissingInput { estimator, input: "log_z" })?;
    if log_z.is_finite() {
        Ok(log_z)
    } else {
        Err(Error::InvalidLogZ { what: estimator, value: log_z })
    }
}
