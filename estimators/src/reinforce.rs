//! REINFORCE (reward maximisation) with an optional baseline.

use burn::tensor::backend::Backend;

use crate::batch::{Rule, Validity, require};
use crate::loss::score_function_loss;
use crate::{Estimator, EstimatorOutput, Result, ScoredBatch, StepStats};

/// The baseline subtracted from the reward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardBaseline {
    /// `A_i = r_i`: unbiased, high variance (gdc's `PGTrainer`).
    #[default]
    None,
    /// `A_i = r_i − mean_j r_j` over the batch, sample i included. Because `r_i` is in its own
    /// baseline, `E[∇L] = (1 − 1/m)` times the true gradient: biased by a known factor (use
    /// [`LeaveOneOut`](Self::LeaveOneOut) to avoid it).
    BatchMean,
    /// `A_i = r_i − mean_{j≠i} r_j` (RLOO, trl): unbiased, since the baseline does not depend
    /// on `x_i`. Equals `m/(m−1)` times the batch-mean advantage. With one sample the baseline
    /// is 0.
    LeaveOneOut,
}

/// REINFORCE (Williams 1992), the paper's RM baseline: samples `x_i ~ π`, reward `r(x_i)`,
///
/// `∇_θ E_π[r] = E_π[(r(x) − B) ∇log π(x)]`, loss `L = −(1/m) Σ_i (r_i − B_i) log π(x_i)`,
///
/// so `E[∇L] = −∇E_π[r]` (descending L ascends the expected reward). Needs `reward`; with
/// `contexts` (samples of `π(·|c)` for several prompts c) the baselines are per context.
/// Source: METHODS §3; gdc `gdc/pg.py` (no baseline), trl `rloo_trainer.py` (leave-one-out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reinforce {
    /// The baseline.
    pub baseline: RewardBaseline,
}

impl Reinforce {
    /// REINFORCE with the given baseline.
    pub fn new(baseline: RewardBaseline) -> Self {
        Self { baseline }
    }
}

/// Applies a reward baseline to the used samples (skipped samples get 0). With `contexts`
/// (one id per sample: conditional runs) the baseline is computed within each context's
/// samples, as trl's RLOO does per prompt: a reward's scale varies with its context, and a
/// baseline may depend on the context but not on the sample.
pub(crate) fn apply_baseline(
    rewards: &[f64],
    baseline: RewardBaseline,
    v: &Validity,
    contexts: Option<&[usize]>,
) -> Vec<f64> {
    let group = |i: usize| contexts.map_or(0, |c| c[i]);
    let mut sums: std::collections::HashMap<usize, (f64, usize)> = Default::default();
    for i in (0..rewards.len()).filter(|&i| v.is_used(i)) {
        let e = sums.entry(group(i)).or_default();
        e.0 += rewards[i];
        e.1 += 1;
    }
    (0..rewards.len())
        .map(|i| {
            if !v.is_used(i) {
                return 0.0;
            }
            let (sum, m) = sums[&group(i)];
            let b = match baseline {
                RewardBaseline::None => 0.0,
                RewardBaseline::BatchMean => sum / m as f64,
                RewardBaseline::LeaveOneOut if m > 1 => (sum - rewards[i]) / (m - 1) as f64,
                RewardBaseline::LeaveOneOut => 0.0,
            };
            rewards[i] - b
        })
        .collect()
}

impl<B: Backend> Estimator<B> for Reinforce {
    fn name(&self) -> &'static str {
        "reinforce"
    }

    fn loss(&self, batch: &ScoredBatch<B>) -> Result<EstimatorOutput<B>> {
        let name = <Self as Estimator<B>>::name(self);
        let reward = require(batch.reward(), name, "reward")?;
        let mut v = Validity::new(batch)?;
        v.check_per_sample("reward", reward, Rule::Finite)?;
        v.ensure_some(name)?;
        let advantages = apply_baseline(reward, self.baseline, &v, batch.contexts());
        let (loss, host) = score_function_loss(batch, &advantages, &v);
        let used: Vec<bool> = v.skip.iter().map(|s| !s).collect();
        let stats = StepStats { loss: host, ..StepStats::new(name, &advantages, &used) };
        Ok(EstimatorOutput { loss, advantages, token_advantages: None, value_targets: None, stats })
    }
}
