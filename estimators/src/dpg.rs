//! The DPG family: on-policy DPG, off-policy DPG (GDC), GDC++ and on-policy DPG with baseline.

use burn::tensor::backend::Backend;

use crate::batch::{Rule, Validity, require, require_log_z};
use crate::loss::score_function_loss;
use crate::{Estimator, EstimatorOutput, Result, ScoredBatch, StepStats};

/// Which member of the DPG family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DpgVariant {
    /// DPG on-policy (Parshakova et al. 2019): `x ~ π`, `A = P/π`.
    OnPolicy,
    /// On-policy DPG with baseline: `x ~ π`, `A = P/π − Z`.
    OnPolicyBaseline,
    /// Off-policy DPG, GDC (Khalifa et al. 2021): `x ~ q`, `A = P/q`.
    OffPolicy,
    /// GDC++ (Korbak et al. 2022, the paper): `x ~ q`, `A = P/q − Z π/q`, π detached.
    OffPolicyBaseline,
}

/// Distributional policy gradient: minimises `KL(p, π)`, `p = P/Z`, by the score-function
/// identity
///
/// `∇_θ KL(p, π) = −E_p[∇log π] = −(1/Z) E_q[(P(x)/q(x)) ∇log π(x)]`,
///
/// with `q = π` on-policy. The loss is `L = −(1/m) Σ_i A_i log π(x_i)` with the advantage of
/// [`DpgVariant`] computed on the host in log space (`P/q = exp(log P − log q)`, so a
/// 40-token sequence does not overflow). All four are unbiased for `Z ∇KL(p, π)`:
/// the baselines have expectation zero because `E_π[∇log π] = 0` and
/// `E_q[(π/q) ∇log π] = 0`; they need the batch's `log_z`.
///
/// `normalize_by_z = false` (the released gdc code): `E[∇L] = Z ∇KL(p, π)`, the factor Z
/// folded into the learning rate. `normalize_by_z = true` divides every advantage by the
/// batch's `exp(log_z)` (e.g. the running [`ZTracker`](crate::ZTracker) estimate; gdc's
/// `divide_reward_by_Z`, disco always): `E[∇L] = ∇KL(p, π)` when `log_z` is exact, so the step
/// size does not depend on Z. Samples with `P = 0` (`log P = −inf`) contribute `P/q = 0`.
///
/// Needs `log_target`; `log_q` off-policy; `log_z` for the baselines or normalisation.
/// Source: METHODS §3; Korbak et al. 2022 (arXiv 2206.00761) §3, Algorithm 1; gdc
/// `gdc/gdc.py` (`GDCTrainer`, `BaselineGDCTrainer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dpg {
    /// The variant.
    pub variant: DpgVariant,
    /// Divide the advantages by Z.
    pub normalize_by_z: bool,
}

impl Dpg {
    /// `variant`, not normalised by Z.
    pub fn new(variant: DpgVariant) -> Self {
        Self { variant, normalize_by_z: false }
    }

    /// On-policy DPG.
    pub fn on_policy() -> Self {
        Self::new(DpgVariant::OnPolicy)
    }

    /// On-policy DPG with baseline Z.
    pub fn on_policy_baseline() -> Self {
        Self::new(DpgVariant::OnPolicyBaseline)
    }

    /// GDC (off-policy DPG).
    pub fn gdc() -> Self {
        Self::new(DpgVariant::OffPolicy)
    }

    /// GDC++ (off-policy DPG with baseline).
    pub fn gdc_plus_plus() -> Self {
        Self::new(DpgVariant::OffPolicyBaseline)
    }

    /// The same, with advantages divided by Z.
    pub fn normalized(self) -> Self {
        Self { normalize_by_z: true, ..self }
    }

    fn off_policy(&self) -> bool {
        matches!(self.variant, DpgVariant::OffPolicy | DpgVariant::OffPolicyBaseline)
    }

    fn needs_z(&self) -> bool {
        self.normalize_by_z
            || matches!(self.variant, DpgVariant::OnPolicyBaseline | DpgVariant::OffPolicyBaseline)
    }
}

impl<B: Backend> Estimator<B> for Dpg {
    fn name(&self) -> &'static str {
        match self.variant {
            DpgVariant::OnPolicy => "dpg",
            DpgVariant::OnPolicyBaseline => "dpg_baseline",
            DpgVariant::OffPolicy => "gdc",
            DpgVariant::OffPolicyBaseline => "gdc++",
        }
    }

    fn loss(&self, batch: &ScoredBatch<B>) -> Result<EstimatorOutput<B>> {
        let name = <Self as Estimator<B>>::name(self);
        let log_target = require(batch.log_target(), name, "log_target")?;
        let log_pi = batch.log_pi_host();
        let log_q = if self.off_policy() { require(batch.log_q(), name, "log_q")? } else { log_pi };
        let log_z = if self.needs_z() { Some(require_log_z(batch, name)?) } else { None };
        let mut v = Validity::new(batch)?;
        v.check_per_sample("log_target", log_target, Rule::LogNonNegative)?;
        v.check_per_sample("log_q", log_q, Rule::Finite)?;
        // log of the factor every advantage is divided by.
        let scale = if self.normalize_by_z { log_z.unwrap_or(0.0) } else { 0.0 };
        let n = batch.len();
        let mut advantages = vec![0.0; n];
        for i in 0..n {
            if !v.is_used(i) {
                continue;
            }
            // P/q (or P/π), scaled; exp(−inf) = 0 handles P = 0.
            let ratio = (log_target[i] - log_q[i] - scale).exp();
            let baseline = match (self.variant, log_z) {
                (DpgVariant::OnPolicyBaseline, Some(lz)) => (lz - scale).exp(),
                (DpgVariant::OffPolicyBaseline, Some(lz)) => {
                    (lz + log_pi[i] - log_q[i] - scale).exp()
                }
                _ => 0.0,
            };
            let a = ratio - baseline;
            if a.is_finite() {
                advantages[i] = a;
            } else {
                v.reject_advantage(name, i, a)?;
            }
        }
        v.ensure_some(name)?;
        let (loss, host) = score_function_loss(batch, &advantages, &v);
        let used: Vec<bool> = v.skip.iter().map(|s| !s).collect();
        let log_w: Vec<f64> = log_target.iter().zip(log_q).map(|(p, q)| p - q).collect();
        let mut stats = StepStats::new(name, &advantages, &used).with_target_weights(&log_w, &used);
        if self.off_policy() {
            let log_r: Vec<f64> = log_pi.iter().zip(log_q).map(|(p, q)| p - q).collect();
            stats = stats.with_policy_weights(&log_r, &used);
        }
        stats.log_z = log_z;
        stats.loss = host;
        Ok(EstimatorOutput { loss, advantages, token_advantages: None, value_targets: None, stats })
    }
}
