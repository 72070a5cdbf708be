//! [`ProposalUpdate`]: when to replace the proposal q by the current policy π (GDC).

use tilt_ebm::{Estimate, LogZ, kl_target_model, tvd_target_model};

use crate::{Error, Result};

/// The rule that decides whether `q ← π`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalCriterion {
    /// Replace q at every check, unconditionally (gdc `q_update_criterion = "interval"`).
    Interval,
    /// Replace q when `KL(p ‖ π) < KL(p ‖ q)` (gdc `"kld"`, the paper's configs).
    #[default]
    Kl,
    /// Replace q when `TVD(p, π) < TVD(p, q)` (gdc `"tvd"`).
    Tvd,
}

/// The KL-adaptive proposal of GDC (METHODS §4): every `interval` steps, estimate the
/// divergences of π and q from p on **fresh** samples of q, and copy π into q when π is closer.
///
/// The comparison uses the paired per-sample difference on the same samples `x_i ~ q`, with
/// `ŵ_i = P_i / (Z q_i)`:
///
/// * KL: `d_i = ŵ_i (log π_i − log q_i)`, so `mean d = KL(p‖q) − KL(p‖π)` (the `log p` terms
///   cancel; P = 0 terms are 0);
/// * TVD: `d_i = ½ (|1 − ŵ_i| − |π_i/q_i − ŵ_i|)`, so `mean d = TVD(p,q) − TVD(p,π)`.
///
/// The improvement is `mean d` with standard error `sd(d)/√n` (Z taken as known). Without
/// `min_z_score` the rule is gdc's point comparison, `mean d > 0`; with `Some(k)` it also
/// requires `mean d > k · SE`, so that noise alone replaces q rarely (about 2.3% of checks at
/// k = 2 when π is no better). None of the peers has this option.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalUpdate {
    /// The rule.
    pub criterion: ProposalCriterion,
    /// Check every `interval` steps (10 in the paper's configs).
    pub interval: usize,
    /// Require the improvement to exceed this many standard errors.
    pub min_z_score: Option<f64>,
}

impl Default for ProposalUpdate {
    /// KL rule, every 10 steps, point comparison (the paper's configs).
    fn default() -> Self {
        Self { criterion: ProposalCriterion::Kl, interval: 10, min_z_score: None }
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProposalDecision {
    /// Whether to copy π into q.
    pub update: bool,
    /// `D(p, q) − D(p, π)` (positive: π is better) with its paired standard error; `None` for
    /// [`ProposalCriterion::Interval`].
    pub improvement: Option<Estimate>,
    /// `D(p, q)` on the fresh samples (KL or TVD), with its own standard error.
    pub divergence_proposal: Option<Estimate>,
    /// `D(p, π)` on the fresh samples.
    pub divergence_policy: Option<Estimate>,
}

fn mean_se(d: &[f64]) -> Estimate {
    let n = d.len();
    let mean = d.iter().sum::<f64>() / n as f64;
    let se = if n < 2 {
        f64::INFINITY
    } else {
        (d.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / ((n - 1) * n) as f64).sqrt()
    };
    Estimate { value: mean, se, n }
}

impl ProposalUpdate {
    /// Whether step `step` (counted from 1) is a check step.
    pub fn is_due(&self, step: usize) -> bool {
        self.interval > 0 && step > 0 && step.is_multiple_of(self.interval)
    }

    /// Decides from fresh samples `x_i ~ q`: their `log P` (`-inf` for P = 0), `log q`, `log π`,
    /// and the current `log Z` (e.g. [`ZTracker::log_z`](crate::ZTracker::log_z)).
    pub fn decide(
        &self,
        log_target: &[f64],
        log_proposal: &[f64],
        log_policy: &[f64],
        log_z: f64,
    ) -> Result<ProposalDecision> {
        if self.criterion == ProposalCriterion::Interval {
            return Ok(ProposalDecision {
                update: true,
                improvement: None,
                divergence_proposal: None,
                divergence_policy: None,
            });
        }
        if !log_z.is_finite() {
            return Err(Error::InvalidLogZ { what: "ProposalUpdate::decide", value: log_z });
        }
        let z = LogZ::Known(log_z);
        let (dq, dpi) = match self.criterion {
            ProposalCriterion::Kl => (
                kl_target_model(log_target, log_proposal, log_proposal, z)?,
                kl_target_model(log_target, log_proposal, log_policy, z)?,
            ),
            _ => (
                tvd_target_model(log_target, log_proposal, log_proposal, z)?,
                tvd_target_model(log_target, log_proposal, log_policy, z)?,
            ),
        };
        // The inputs are validated (lengths, NaN) by the ebm estimators above.
        let d: Vec<f64> = (0..log_target.len())
            .map(|i| {
                let lw = log_target[i] - log_proposal[i] - log_z;
                let w = lw.exp();
                let log_r = log_policy[i] - log_proposal[i];
                match self.criterion {
                    ProposalCriterion::Kl if lw == f64::NEG_INFINITY => 0.0,
                    ProposalCriterion::Kl => w * log_r,
                    _ => 0.5 * ((1.0 - w).abs() - (log_r.exp() - w).abs()),
                }
            })
            .collect();
        let improvement = mean_se(&d);
        let threshold = self.min_z_score.map_or(0.0, |k| k * improvement.se);
        Ok(ProposalDecision {
            update: improvement.value > threshold,
            improvement: Some(improvement),
            divergence_proposal: Some(dq),
            divergence_policy: Some(dpi),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn paired_difference_equals_difference_of_estimates() {
        let lp = [-1.0, -2.0, f64::NEG_INFINITY, -0.5, -1.5];
        let lq = [-1.2, -1.0, -2.0, -1.0, -1.1];
        let lpi = [-0.9, -1.9, -2.5, -0.7, -1.4];
        for criterion in [ProposalCriterion::Kl, ProposalCriterion::Tvd] {
            let rule = ProposalUpdate { criterion, interval: 1, min_z_score: None };
            let d = rule.decide(&lp, &lq, &lpi, -0.3).unwrap();
            let (a, b) = (d.divergence_proposal.unwrap().value, d.divergence_policy.unwrap().value);
            assert_relative_eq!(d.improvement.unwrap().value, a - b, epsilon = 1e-12);
            assert_eq!(d.update, a > b);
            let strict = ProposalUpdate { min_z_score: Some(1e6), ..rule };
            assert!(!strict.decide(&lp, &lq, &lpi, -0.3).unwrap().update);
        }
        assert!(ProposalUpdate::default().is_due(20));
        assert!(!ProposalUpdate::default().is_due(0));
        assert!(ProposalUpdate::default().decide(&lp, &lq, &lpi, f64::NAN).is_err());
    }
}
