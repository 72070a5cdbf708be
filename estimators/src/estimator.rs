//! The [`Estimator`] trait: a scored batch in, a loss whose gradient is the estimator out.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::{Result, ScoredBatch, StepStats};

/// What an estimator returns for one batch.
#[derive(Debug, Clone)]
pub struct EstimatorOutput<B: Backend> {
    /// The loss `[1]`; `loss.backward()` yields the gradient estimate. For the score-function
    /// estimators `L = −(1/m) Σ_i A_i log π(x_i)` with `A` detached, so `∇L = −(1/m) Σ_i A_i
    /// ∇log π(x_i)`: a **descent** direction for the objective the estimator names.
    pub loss: Tensor<B, 1>,
    /// The per-sample advantages `A_i` (0 for skipped samples). For the per-token KL-control
    /// estimator, each sequence's total return.
    pub advantages: Vec<f64>,
    /// Per-token estimators only: each token's weight (its return-to-go `G_t`), row-major
    /// `[n, T]`, 0 at masked positions and skipped rows; the loss is
    /// `−(1/m) Σ_i Σ_t G_{i,t} log π_t(x_i)`.
    pub token_advantages: Option<Vec<f64>>,
    /// KL-control with a critic only: the value function's regression targets; the trainer
    /// adds [`ValueTargets::loss`](crate::ValueTargets::loss) of its differentiable values to
    /// `loss`, which holds only the policy term (`stats.loss` holds both).
    pub value_targets: Option<crate::ValueTargets>,
    /// Per-step statistics.
    pub stats: StepStats,
}

/// A gradient estimator: turns a [`ScoredBatch`] into a loss and its statistics.
///
/// `loss` has no side effects, so it may be called several times on the same batch (PPO
/// epochs). Estimators with state (the adaptive KL coefficient, moving-average baselines)
/// change it only in [`update`](Self::update), which the training loop calls **once per
/// step** with that step's statistics.
pub trait Estimator<B: Backend> {
    /// A short name for logs.
    fn name(&self) -> &'static str;

    /// The loss for `batch`.
    fn loss(&self, batch: &ScoredBatch<B>) -> Result<EstimatorOutput<B>>;

    /// Advances the estimator's state after a step (default: nothing).
    fn update(&mut self, stats: &StepStats) {
        let _ = stats;
    }

    /// The state that [`update`](Self::update) changes, as numbers for a checkpoint (default:
    /// none). [`restore`](Self::restore) of it gives an estimator that behaves identically.
    fn state(&self) -> Vec<f64> {
        Vec::new()
    }

    /// Restores a [`state`](Self::state) (default: only the empty state).
    ///
    /// # Errors
    /// [`Error::InvalidState`](crate::Error::InvalidState) when `state` does not fit.
    fn restore(&mut self, state: &[f64]) -> Result<()> {
        if state.is_empty() {
            return Ok(());
        }
        Err(crate::Error::InvalidState {
            estimator: self.name(),
            reason: format!("it has no state, got {} numbers", state.len()),
        })
    }
}
