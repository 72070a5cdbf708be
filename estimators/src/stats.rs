//! [`StepStats`]: the per-step statistics every estimator reports.

use tilt_ebm::effective_sample_size;

/// Statistics of one estimator step, computed once on the host from the values the batch
/// already holds (no extra device reads).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepStats {
    /// The estimator's name.
    pub estimator: &'static str,
    /// Samples in the batch.
    pub n: usize,
    /// Samples used (not skipped).
    pub n_used: usize,
    /// Samples skipped as invalid (see [`InvalidSamples`](crate::InvalidSamples)).
    pub n_skipped: usize,
    /// Mean of the advantages of the used samples (the per-sample weights `A_i` of
    /// `-A_i log π(x_i)`; for per-token estimators the whole-sequence return).
    pub advantage_mean: f64,
    /// Their standard deviation (population, `1/n`).
    pub advantage_std: f64,
    /// Their maximum.
    pub advantage_max: f64,
    /// Their minimum.
    pub advantage_min: f64,
    /// Kish effective sample size `(Σw)²/Σw²` of the target weights `w = P/q` (`P/π`
    /// on-policy), when the estimator uses a target.
    pub ess_target: Option<f64>,
    /// Kish effective sample size of the policy weights `π/q`, for off-policy estimators.
    pub ess_policy: Option<f64>,
    /// Fraction of used samples with `P = 0`, when the estimator uses a target.
    pub zero_target_fraction: Option<f64>,
    /// The `log Z` the estimator used (batch-supplied, or per-context mean for CDPG).
    pub log_z: Option<f64>,
    /// The KL coefficient β used (KL-control).
    pub beta: Option<f64>,
    /// `mean(log π − log a)` on the batch, the KL(π‖a) estimate the β controller reads
    /// (KL-control, from `π_old` when given).
    pub kl_policy_base: Option<f64>,
    /// Mean and count of the f-DPG pseudo-rewards `-f'(π/p)` of the used samples (fed to the
    /// moving-average baseline by [`Estimator::update`](crate::Estimator::update)).
    pub pseudo_reward: Option<(f64, usize)>,
    /// Fraction of ratios outside `[1 − ε, 1 + ε]` (PPO clipping).
    pub clipped_fraction: Option<f64>,
    /// KL-control with a critic: the value loss `mean_t ½ (V_old − R_t)²` at the sampling-time
    /// values (without the coefficient).
    pub value_loss: Option<f64>,
    /// KL-control with a critic: `1 − Var(R − V_old) / Var(R)` over the batch's tokens
    /// (`None` when the returns do not vary, where it is undefined).
    pub value_explained_variance: Option<f64>,
    /// Number of contexts skipped because their Z estimate was 0 (CDPG).
    pub contexts_skipped: Option<usize>,
    /// The loss value `−mean_i A_i log π(x_i)` (or the clipped surrogate), from host values;
    /// with a critic, plus `value_coef · value_loss`.
    pub loss: f64,
}

impl StepStats {
    /// Fills the counts and the advantage summary; `used[i]` says whether sample i counts.
    pub(crate) fn new(estimator: &'static str, advantages: &[f64], used: &[bool]) -> Self {
        let vals: Vec<f64> =
            advantages.iter().zip(used).filter(|(_, u)| **u).map(|(a, _)| *a).collect();
        let m = vals.len();
        let (mean, std, max, min) = if m == 0 {
            (f64::NAN, f64::NAN, f64::NAN, f64::NAN)
        } else {
            let mean = vals.iter().sum::<f64>() / m as f64;
            let var = vals.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / m as f64;
            let max = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let min = vals.iter().copied().fold(f64::INFINITY, f64::min);
            (mean, var.sqrt(), max, min)
        };
        Self {
            estimator,
            n: advantages.len(),
            n_used: m,
            n_skipped: advantages.len() - m,
            advantage_mean: mean,
            advantage_std: std,
            advantage_max: max,
            advantage_min: min,
            ..Self::default()
        }
    }

    /// Sets `ess_target` and `zero_target_fraction` from the log target weights of the used
    /// samples (`log P − log q`).
    pub(crate) fn with_target_weights(mut self, log_w: &[f64], used: &[bool]) -> Self {
        let lw: Vec<f64> = log_w.iter().zip(used).filter(|(_, u)| **u).map(|(w, _)| *w).collect();
        if !lw.is_empty() {
            self.ess_target = Some(effective_sample_size(&lw));
            let zeros = lw.iter().filter(|w| **w == f64::NEG_INFINITY).count();
            self.zero_target_fraction = Some(zeros as f64 / lw.len() as f64);
        }
        self
    }

    /// Sets `ess_policy` from the log policy weights `log π − log q` of the used samples.
    pub(crate) fn with_policy_weights(mut self, log_w: &[f64], used: &[bool]) -> Self {
        let lw: Vec<f64> = log_w.iter().zip(used).filter(|(_, u)| **u).map(|(w, _)| *w).collect();
        if !lw.is_empty() {
            self.ess_policy = Some(effective_sample_size(&lw));
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn summary_ignores_skipped_samples() {
        let s = StepStats::new("t", &[1.0, 2.0, 100.0, 3.0], &[true, true, false, true]);
        assert_eq!((s.n, s.n_used, s.n_skipped), (4, 3, 1));
        assert_relative_eq!(s.advantage_mean, 2.0);
        assert_relative_eq!(s.advantage_std, (2.0f64 / 3.0).sqrt());
        assert_eq!((s.advantage_max, s.advantage_min), (3.0, 1.0));
        let s = s.with_target_weights(&[0.0, f64::NEG_INFINITY, 5.0, 0.0], &[true; 4]);
        assert_relative_eq!(s.zero_target_fraction.unwrap(), 0.25);
    }
}
