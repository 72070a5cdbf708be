//! CDPG: conditional DPG with a per-context partition function.

use std::collections::BTreeMap;

use burn::tensor::backend::Backend;
use tilt_ebm::log_mean_exp;

use crate::batch::{Rule, Validity, require};
use crate::loss::score_function_loss;
use crate::{Error, Estimator, EstimatorOutput, Result, ScoredBatch, StepStats};

/// Conditional DPG (Korbak et al. 2022, "Controlling Conditional Language Models without
/// Catastrophic Forgetting", arXiv 2112.00791): minimises `E_c KL(p_c, π(·|c))` with
/// `p_c = P_c / Z_c`, `P_c(x) = a(x|c) b(x, c)`.
///
/// Z_c varies by orders of magnitude across contexts, so each context's advantages are divided
/// by its own estimate `Ẑ_c = mean_{i ∈ c} P(x_i|c)/q(x_i|c)` from that context's samples in
/// the batch (the released code's `Z_c: "MC"`):
///
/// `A_i = P(x_i|c)/(Ẑ_c q(x_i|c)) − [baseline] π(x_i|c)/q(x_i|c)`, `L = −(1/m) Σ_i A_i log π(x_i|c_i)`,
///
/// and `E[∇L] ≈ Σ_c (m_c/m) ∇KL(p_c, π(·|c))`, with `m_c` the samples of context c. Using
/// `Ẑ_c` from the same samples makes this a ratio estimator: consistent, with a bias of order
/// `1/m_c` (so give each context enough samples). A context whose samples all have `P = 0`
/// has `Ẑ_c = 0`: its samples get advantage 0 (they stay in the mean) and
/// [`StepStats::contexts_skipped`] counts it (disco skips such contexts).
///
/// Needs `contexts`, `log_target`, and `log_q` when `off_policy` (otherwise `q = π`).
/// Source: METHODS §8; gdc `cdpg/cdpg/base_trainer.py::compute_Z_c_using_MC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cdpg {
    /// Subtract the GDC++ baseline `π/q` (1 on-policy).
    pub baseline: bool,
    /// Samples come from a proposal q rather than from π.
    pub off_policy: bool,
}

impl<B: Backend> Estimator<B> for Cdpg {
    fn name(&self) -> &'static str {
        "cdpg"
    }

    fn loss(&self, batch: &ScoredBatch<B>) -> Result<EstimatorOutput<B>> {
        let name = "cdpg";
        let contexts =
            batch.contexts().ok_or(Error::MissingInput { estimator: name, input: "contexts" })?;
        let log_target = require(batch.log_target(), name, "log_target")?;
        let log_pi = batch.log_pi_host();
        let log_q = if self.off_policy { require(batch.log_q(), name, "log_q")? } else { log_pi };
        let mut v = Validity::new(batch)?;
        v.check_per_sample("log_target", log_target, Rule::LogNonNegative)?;
        v.check_per_sample("log_q", log_q, Rule::Finite)?;
        v.ensure_some(name)?;
        let n = batch.len();
        let log_w: Vec<f64> = (0..n).map(|i| log_target[i] - log_q[i]).collect();
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in (0..n).filter(|&i| v.is_used(i)) {
            groups.entry(contexts[i]).or_default().push(i);
        }
        let mut advantages = vec![0.0; n];
        let mut skipped_contexts = 0;
        for members in groups.values() {
            let lw: Vec<f64> = members.iter().map(|&i| log_w[i]).collect();
            let log_z_c = log_mean_exp(&lw);
            if log_z_c == f64::NEG_INFINITY {
                skipped_contexts += 1;
                continue;
            }
            for &i in members {
                let b = if self.baseline { (log_pi[i] - log_q[i]).exp() } else { 0.0 };
                let a = (log_w[i] - log_z_c).exp() - b;
                if a.is_finite() {
                    advantages[i] = a;
                } else {
                    v.reject_advantage(name, i, a)?;
                }
            }
        }
        v.ensure_some(name)?;
        let (loss, host) = score_function_loss(batch, &advantages, &v);
        let used: Vec<bool> = v.skip.iter().map(|s| !s).collect();
        let mut stats = StepStats::new(name, &advantages, &used).with_target_weights(&log_w, &used);
        if self.off_policy {
            let log_r: Vec<f64> = log_pi.iter().zip(log_q).map(|(p, q)| p - q).collect();
            stats = stats.with_policy_weights(&log_r, &used);
        }
        stats.contexts_skipped = Some(skipped_contexts);
        stats.loss = host;
        Ok(EstimatorOutput { loss, advantages, token_advantages: None, value_targets: None, stats })
    }
}
