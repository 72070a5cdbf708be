//! f-DPG: distribution matching under any f-divergence.

use burn::tensor::backend::Backend;

use crate::batch::{Rule, Validity, require, require_log_z};
use crate::loss::score_function_loss;
use crate::{
    Estimator, EstimatorOutput, FDivergence, MovingAverage, Result, ScoredBatch, StepStats,
};

/// f-DPG (Go et al. 2023, arXiv 2302.08215): minimises `D_f(π ‖ p) = E_p[f(π/p)]`, `p = P/Z`.
///
/// With `t = π/p` (`log t = log π − log P + log Z`),
///
/// `∇_θ D_f(π ‖ p) = Σ_x f'(t(x)) ∇π(x) = E_q[(π/q) f'(t) ∇log π]`,
///
/// so with the pseudo-reward `R = −f'(t)` and advantage `A = (π/q)(R − B)` the loss
/// `L = −(1/m) Σ_i A_i log π(x_i)` has `E[∇L] = ∇D_f(π ‖ p)` exactly (when `log_z` is exact).
/// The baseline B (optional) is the moving average of past pseudo-rewards, read before the
/// batch is added (disco); it adds `−B E_q[(π/q)∇log π] = 0` in expectation, since it does not
/// depend on the current samples. [`ForwardKl`](crate::ForwardKl) gives normalised DPG
/// (`A = P/(Zq)`), and with B = 1 exactly normalised GDC++.
///
/// Needs `log_target`, `log_z`, and `log_q` when `off_policy` (otherwise `q = π`). Samples
/// with `P = 0` have `log t = +inf`; divergences whose `f'` is infinite there (reverse KL,
/// Pearson χ²) report [`Error::NonFiniteAdvantage`](crate::Error::NonFiniteAdvantage). Source: METHODS §3; disco
/// `tuners/losses/f_divergence.py`.
#[derive(Debug, Clone)]
pub struct FDpg<F: FDivergence> {
    /// The divergence.
    pub divergence: F,
    /// Samples come from a proposal q (`log_q` needed) rather than from π.
    pub off_policy: bool,
    /// The moving-average baseline, if any.
    pub baseline: Option<MovingAverage>,
}

impl<F: FDivergence> FDpg<F> {
    /// On-policy f-DPG without a baseline.
    pub fn new(divergence: F) -> Self {
        Self { divergence, off_policy: false, baseline: None }
    }

    /// Samples from a proposal.
    pub fn off_policy(self) -> Self {
        Self { off_policy: true, ..self }
    }

    /// With a moving-average baseline over about `window` past pseudo-rewards (disco: 1024).
    pub fn with_baseline(self, window: usize) -> Self {
        Self { baseline: Some(MovingAverage::new(window)), ..self }
    }
}

impl<B: Backend, F: FDivergence> Estimator<B> for FDpg<F> {
    fn name(&self) -> &'static str {
        self.divergence.name()
    }

    fn loss(&self, batch: &ScoredBatch<B>) -> Result<EstimatorOutput<B>> {
        let name = "f_dpg";
        let log_target = require(batch.log_target(), name, "log_target")?;
        let log_pi = batch.log_pi_host();
        let log_q = if self.off_policy { require(batch.log_q(), name, "log_q")? } else { log_pi };
        let log_z = require_log_z(batch, name)?;
        let mut v = Validity::new(batch)?;
        v.check_per_sample("log_target", log_target, Rule::LogNonNegative)?;
        v.check_per_sample("log_q", log_q, Rule::Finite)?;
        let b = self.baseline.as_ref().and_then(MovingAverage::value).unwrap_or(0.0);
        let n = batch.len();
        let mut advantages = vec![0.0; n];
        let (mut r_sum, mut r_count) = (0.0, 0usize);
        for i in 0..n {
            if !v.is_used(i) {
                continue;
            }
            let log_t = log_pi[i] - log_target[i] + log_z;
            let reward = -self.divergence.f_prime(log_t);
            let a = (log_pi[i] - log_q[i]).exp() * (reward - b);
            if a.is_finite() {
                advantages[i] = a;
                r_sum += reward;
                r_count += 1;
            } else {
                v.reject_advantage(name, i, if a.is_nan() { reward } else { a })?;
            }
        }
        v.ensure_some(name)?;
        let (loss, host) = score_function_loss(batch, &advantages, &v);
        let used: Vec<bool> = v.skip.iter().map(|s| !s).collect();
        let log_w: Vec<f64> = log_target.iter().zip(log_q).map(|(p, q)| p - q).collect();
        let mut stats = StepStats::new(name, &advantages, &used).with_target_weights(&log_w, &used);
        if self.off_policy {
            let log_r: Vec<f64> = log_pi.iter().zip(log_q).map(|(p, q)| p - q).collect();
            stats = stats.with_policy_weights(&log_r, &used);
        }
        stats.estimator = self.divergence.name();
        stats.log_z = Some(log_z);
        stats.pseudo_reward = Some((r_sum / r_count.max(1) as f64, r_count));
        stats.loss = host;
        Ok(EstimatorOutput { loss, advantages, token_advantages: None, value_targets: None, stats })
    }

    /// Adds the step's pseudo-rewards to the moving-average baseline.
    fn update(&mut self, stats: &StepStats) {
        if let (Some(avg), Some((mean, count))) = (self.baseline.as_mut(), stats.pseudo_reward) {
            avg.push(mean, count);
        }
    }

    /// The moving-average baseline's state, if it has one.
    fn state(&self) -> Vec<f64> {
        self.baseline.as_ref().map(MovingAverage::to_state).unwrap_or_default()
    }

    fn restore(&mut self, state: &[f64]) -> Result<()> {
        match &mut self.baseline {
            None if state.is_empty() => Ok(()),
            Some(avg) => {
                *avg = MovingAverage::from_state(avg.window(), state).ok_or_else(|| {
                    crate::Error::InvalidState {
                        estimator: "f-DPG",
                        reason: format!("not a moving-average state: {state:?}"),
                    }
                })?;
                Ok(())
            }
            None => Err(crate::Error::InvalidState {
                estimator: "f-DPG",
                reason: format!("it has no baseline, got {} numbers", state.len()),
            }),
        }
    }
}
