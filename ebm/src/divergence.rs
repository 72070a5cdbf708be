//! Divergences between the normalised target p = P/Z and a model m, estimated from samples,
//! each with a standard error (METHODS §5; the importance-sampling estimators of Korbak et
//! al., "On Reinforcement Learning and Distribution Matching for Fine-Tuning Language Models
//! with no Catastrophic Forgetting", NeurIPS 2022, with standard errors added).
//!
//! All but [`kl_model_base`] use samples `x_i ~ q` of a proposal and importance weights
//! `ŵ_i = P(x_i) / (Z q(x_i))`, with `E_q[ŵ] = 1`. Z is given by [`LogZ`]:
//!
//! * [`LogZ::Known`]: the estimator is a plain mean of terms `t_i`, with standard error
//!   `sd(t) / √n`. With the exact Z, each `t_i` has expectation under q equal to the
//!   divergence, so the estimate is **unbiased**. With a plug-in estimate Ẑ (e.g. from other
//!   samples) it is only **consistent**, and its standard error is conditional on Ẑ: it
//!   ignores Ẑ's own variance.
//! * [`LogZ::SelfNormalized`]: Z is replaced by `Ẑ = mean_i P_i/q_i` from the same samples
//!   (so `mean_i ŵ_i = 1` exactly). The estimator is then a smooth function of sample means:
//!   **consistent, with a bias of order 1/n**, not unbiased. Its standard error is the delta
//!   method's, `sd(ψ) / √n`, where `ψ_i` is the estimator's influence value (the linear term of
//!   its expansion in the sample means; each function states its ψ).
//!
//! Samples with P = 0 (`log P = -inf`) contribute 0 (the `0 · log 0 = 0` convention), never
//! NaN. `log m` must be a *normalised* log-probability, and q must cover the support of m for
//! the TVD and JS (they integrate m over q's samples).

use crate::estimate::{mean_se, mean_with_influence};
use crate::logspace::{log_add_exp, log_mean_exp};
use crate::matrix::{check_finite_slice, check_len, check_log_scores};
use crate::{Error, Estimate, Result};

use std::f64::consts::LN_2;

/// How the divergence estimators get `log Z`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LogZ {
    /// A given value: the exact log Z gives unbiased estimates; a plug-in estimate gives
    /// consistent ones whose standard errors are conditional on it (they ignore its variance).
    Known(f64),
    /// Estimated from the same samples: consistent, bias O(1/n), delta-method standard errors.
    SelfNormalized,
}

/// Validated proposal samples: `log w_i = log P_i − log q_i` and the log Z to use.
struct Weighted {
    log_w: Vec<f64>,
    log_z: f64,
    self_normalized: bool,
}

impl Weighted {
    fn new(log_target: &[f64], log_proposal: &[f64], log_z: LogZ) -> Result<Self> {
        let log_w = crate::partition::log_weights(log_target, log_proposal)?;
        if log_w.is_empty() {
            return Err(Error::NoSupport { what: "divergence estimate", n_samples: 0 });
        }
        let (log_z, self_normalized) = match log_z {
            LogZ::Known(z) if z.is_finite() => (z, false),
            LogZ::Known(z) => {
                return Err(Error::InvalidParameter {
                    name: "log_z",
                    value: z,
                    reason: "a known log Z must be finite",
                });
            }
            LogZ::SelfNormalized => {
                let z = log_mean_exp(&log_w);
                if z == f64::NEG_INFINITY {
                    return Err(Error::NoSupport {
                        what: "self-normalised divergence estimate (every P is 0)",
                        n_samples: log_w.len(),
                    });
                }
                (z, true)
            }
        };
        Ok(Self { log_w, log_z, self_normalized })
    }

    /// `log(P_i / (Z q_i)) = log p_i − log q_i`.
    fn log_ratio(&self, i: usize) -> f64 {
        self.log_w[i] - self.log_z
    }
}

/// `KL(p ‖ m) = E_p[log p − log m]` from samples of q (METHODS §5):
/// `KL = mean_i ŵ_i (log P_i − log Z − log m_i)`.
///
/// Terms with P = 0 count 0; a sample with P > 0 and m = 0 makes the estimate `+inf`.
/// Self-normalised influence: `ψ_i = ŵ_i (log p_i − log m_i − KL − 1)`.
pub fn kl_target_model(
    log_target: &[f64],
    log_proposal: &[f64],
    log_model: &[f64],
    log_z: LogZ,
) -> Result<Estimate> {
    let s = Weighted::new(log_target, log_proposal, log_z)?;
    check_len("log_model", s.log_w.len(), log_model.len())?;
    check_log_scores("log_model", log_model)?;
    let n = s.log_w.len();
    let mut terms = Vec::with_capacity(n);
    let mut w_hat = Vec::with_capacity(n);
    for i in 0..n {
        let lr = s.log_ratio(i);
        if lr == f64::NEG_INFINITY {
            terms.push(0.0);
            w_hat.push(0.0);
        } else {
            // log p − log m = (log p − log q) + log q − log m.
            terms.push(weighted_log_ratio(lr, lr + log_proposal[i] - log_model[i]));
            w_hat.push(lr.exp());
        }
    }
    Ok(finish(&s, &terms, |est| {
        terms.iter().zip(&w_hat).map(|(t, w)| t - (est + 1.0) * w).collect()
    }))
}

/// The KL term `ŵ · d` with `ŵ = e^log_w > 0`, without `0 · inf = NaN`: an infinite `d`
/// (m = 0 where P > 0) stays infinite even when `ŵ` underflows to 0.
fn weighted_log_ratio(log_w: f64, d: f64) -> f64 {
    if d.is_infinite() { d } else { log_w.exp() * d }
}

/// `KL(p ‖ q)` from samples of q itself: [`kl_target_model`] with m = q.
pub fn kl_target_proposal(
    log_target: &[f64],
    log_proposal: &[f64],
    log_z: LogZ,
) -> Result<Estimate> {
    kl_target_model(log_target, log_proposal, log_proposal, log_z)
}

/// `TVD(p, m) = ½ Σ_x |p(x) − m(x)| = ½ E_q |m/q − P/(Z q)|` (METHODS §5), in [0, 1].
///
/// Self-normalised influence: `ψ_i = t_i + ½ c ŵ_i`, `c = mean_j s_j ŵ_j`,
/// `s_j = sign(m_j/q_j − ŵ_j)` (the derivative through Ẑ).
pub fn tvd_target_model(
    log_target: &[f64],
    log_proposal: &[f64],
    log_model: &[f64],
    log_z: LogZ,
) -> Result<Estimate> {
    let s = Weighted::new(log_target, log_proposal, log_z)?;
    check_len("log_model", s.log_w.len(), log_model.len())?;
    check_log_scores("log_model", log_model)?;
    let n = s.log_w.len();
    let (mut terms, mut w_hat, mut signed) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let w = s.log_ratio(i).exp();
        let r = (log_model[i] - log_proposal[i]).exp();
        terms.push(0.5 * (r - w).abs());
        w_hat.push(w);
        signed.push((r - w).signum() * w);
    }
    Ok(finish(&s, &terms, |_| {
        let c = signed.iter().sum::<f64>() / n as f64;
        terms.iter().zip(&w_hat).map(|(t, w)| t + 0.5 * c * w).collect()
    }))
}

/// Jensen–Shannon divergence `JS(p, m) = ½ KL(p ‖ M) + ½ KL(m ‖ M)`, `M = (p + m)/2`, in nats
/// (between 0 and ln 2), from samples of q:
/// `t_i = ½ ρ_i log(2ρ_i/(ρ_i + μ_i)) + ½ μ_i log(2μ_i/(ρ_i + μ_i))` with `ρ_i = ŵ_i = p_i/q_i`
/// and `μ_i = m_i/q_i`.
///
/// Self-normalised influence: `ψ_i = t_i − c ŵ_i`, `c = mean_j ½ ρ_j log(2ρ_j/(ρ_j + μ_j))`.
pub fn js_target_model(
    log_target: &[f64],
    log_proposal: &[f64],
    log_model: &[f64],
    log_z: LogZ,
) -> Result<Estimate> {
    let s = Weighted::new(log_target, log_proposal, log_z)?;
    check_len("log_model", s.log_w.len(), log_model.len())?;
    check_log_scores("log_model", log_model)?;
    let n = s.log_w.len();
    let (mut terms, mut w_hat, mut p_part) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let lp = s.log_ratio(i);
        let lm = log_model[i] - log_proposal[i];
        let lmix = log_add_exp(lp, lm);
        let half_term = |l: f64| {
            if l == f64::NEG_INFINITY { 0.0 } else { 0.5 * l.exp() * (LN_2 + l - lmix) }
        };
        let (tp, tm) = (half_term(lp), half_term(lm));
        terms.push(tp + tm);
        w_hat.push(lp.exp());
        p_part.push(tp);
    }
    Ok(finish(&s, &terms, |_| {
        let c = p_part.iter().sum::<f64>() / n as f64;
        terms.iter().zip(&w_hat).map(|(t, w)| t - c * w).collect()
    }))
}

/// `KL(m ‖ a) = E_m[log m − log a]` from samples `x_i ~ m` (e.g. the forgetting metric
/// KL(π ‖ a) on samples of the policy): a plain mean, unbiased, with `se = sd / √n`.
///
/// `log_model` must be finite (m sampled these points); a sample with a = 0 makes the
/// estimate `+inf`.
pub fn kl_model_base(log_model: &[f64], log_base: &[f64]) -> Result<Estimate> {
    check_len("log_base", log_model.len(), log_base.len())?;
    if log_model.is_empty() {
        return Err(Error::NoSupport { what: "kl_model_base", n_samples: 0 });
    }
    check_finite_slice("log_model", log_model)?;
    check_log_scores("log_base", log_base)?;
    let terms: Vec<f64> = log_model.iter().zip(log_base).map(|(m, a)| m - a).collect();
    Ok(mean_se(&terms))
}

/// Known Z: mean and plain se of the terms; self-normalised: the same mean with the se of the
/// influence values `psi(mean)`.
fn finish(s: &Weighted, terms: &[f64], psi: impl FnOnce(f64) -> Vec<f64>) -> Estimate {
    let plain = mean_se(terms);
    if !s.self_normalized || plain.value.is_infinite() {
        return plain;
    }
    mean_with_influence(terms, &psi(plain.value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn exact_on_a_proposal_that_enumerates_the_space() {
        // Space {0,1,2}; q uniform; each point sampled once: mean_q is then the exact sum / 3.
        let log_q = [(1.0f64 / 3.0).ln(); 3];
        let p = [0.5f64, 0.25, 0.25];
        let m = [0.25f64, 0.25, 0.5];
        let big_z = 8.0f64;
        let log_p: Vec<f64> = p.iter().map(|v| (v * big_z).ln()).collect();
        let log_m: Vec<f64> = m.iter().map(|v| v.ln()).collect();
        let kl: f64 = p.iter().zip(&m).map(|(p, m)| p * (p / m).ln()).sum();
        let tvd = 0.5 * p.iter().zip(&m).map(|(p, m)| (p - m).abs()).sum::<f64>();
        let js: f64 = p
            .iter()
            .zip(&m)
            .map(|(p, m)| {
                let mix = 0.5 * (p + m);
                0.5 * p * (p / mix).ln() + 0.5 * m * (m / mix).ln()
            })
            .sum();
        for lz in [LogZ::Known(big_z.ln()), LogZ::SelfNormalized] {
            let e = kl_target_model(&log_p, &log_q, &log_m, lz).unwrap();
            assert_relative_eq!(e.value, kl, epsilon = 1e-12);
            let e = tvd_target_model(&log_p, &log_q, &log_m, lz).unwrap();
            assert_relative_eq!(e.value, tvd, epsilon = 1e-12);
            let e = js_target_model(&log_p, &log_q, &log_m, lz).unwrap();
            assert_relative_eq!(e.value, js, epsilon = 1e-12);
            let e = kl_target_proposal(&log_p, &log_q, lz).unwrap();
            let kl_q: f64 = p.iter().map(|p| p * (p * 3.0).ln()).sum();
            assert_relative_eq!(e.value, kl_q, epsilon = 1e-12);
        }
    }

    #[test]
    fn zero_target_terms_count_zero_and_zero_model_gives_infinity() {
        let log_q = [0.5f64.ln(); 2];
        let log_p = [0.0, f64::NEG_INFINITY];
        let log_m = [0.5f64.ln(), f64::NEG_INFINITY];
        // p = (1, 0); m need not be normalised for this check, only finiteness matters.
        let e = kl_target_model(&log_p, &log_q, &log_m, LogZ::SelfNormalized).unwrap();
        assert!(e.value.is_finite() && e.se.is_finite());
        let e = kl_target_model(&log_p, &log_q, &[f64::NEG_INFINITY, 0.0], LogZ::SelfNormalized)
            .unwrap();
        assert_eq!(e.value, f64::INFINITY);
        let e = js_target_model(&log_p, &log_q, &log_m, LogZ::SelfNormalized).unwrap();
        assert!(!e.value.is_nan() && !e.se.is_nan());
        assert_eq!(kl_model_base(&[-1.0], &[f64::NEG_INFINITY]).unwrap().value, f64::INFINITY);
    }

    #[test]
    fn zero_model_at_an_underflowing_weight_gives_infinity() {
        // Sample 1 has P > 0 but P/q = e^-800 underflows to 0, and m = 0 there: KL(p ‖ m) = +inf.
        let (log_p, log_q) = ([0.0, -800.0], [0.0, 0.0]);
        let log_m = [-0.1, f64::NEG_INFINITY];
        for lz in [LogZ::SelfNormalized, LogZ::Known(0.0)] {
            let e = kl_target_model(&log_p, &log_q, &log_m, lz).unwrap();
            assert_eq!((e.value, e.se), (f64::INFINITY, f64::INFINITY), "{lz:?}");
            for e in [
                tvd_target_model(&log_p, &log_q, &log_m, lz).unwrap(),
                js_target_model(&log_p, &log_q, &log_m, lz).unwrap(),
                kl_target_proposal(&log_p, &log_q, lz).unwrap(),
            ] {
                assert!(e.value.is_finite() && !e.se.is_nan(), "{lz:?}: {e:?}");
            }
        }
    }

    #[test]
    fn bad_inputs_are_named() {
        let err = kl_target_model(&[0.0, 0.0], &[0.0, f64::NAN], &[0.0, 0.0], LogZ::SelfNormalized)
            .unwrap_err();
        assert_eq!(err.to_string(), "log_proposal is NaN at sample 1");
        assert!(matches!(
            tvd_target_model(&[0.0], &[0.0], &[0.0, 0.0], LogZ::Known(0.0)),
            Err(Error::DimensionMismatch { what: "log_model", expected: 1, got: 2 })
        ));
        assert!(matches!(
            js_target_model(&[f64::NEG_INFINITY], &[0.0], &[0.0], LogZ::SelfNormalized),
            Err(Error::NoSupport { .. })
        ));
        assert!(kl_target_proposal(&[0.0], &[0.0], LogZ::Known(f64::NAN)).is_err());
    }
}
