//! Quasi-rejection sampling (QRS, Eikema et al. 2022) and exact rejection sampling
//! (METHODS §7).
//!
//! Draw `x ~ q` and accept it with probability `min(1, P(x) / (β q(x)))`. Accepted samples
//! follow `p_β(x) = min(P(x), β q(x)) / Z_β` with `Z_β = E_q[min(P/q, β)]`, and the acceptance
//! rate is `Z_β / β`. As β grows, p_β approaches p and the acceptance rate falls; once
//! `β ≥ max_x P(x)/q(x)`, p_β = p exactly (rejection sampling). β is handled as `log β`.

use crate::divergence::LogZ;
use crate::estimate::{mean_se, mean_with_influence};
use crate::logspace::{log_mean_exp, normalized_weights};
use crate::matrix::check_len;
use crate::partition::log_weights;
use crate::{Error, Estimate, Result, RowMatrix};
use rand::Rng;

/// Bisection steps on log β: the bracket starts at most a few thousand nats wide, and 200
/// halvings bring it below f64 resolution.
const BISECTION_STEPS: usize = 200;

/// A quasi-rejection sampler with threshold β (stored as `log β`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Qrs {
    log_beta: f64,
}

/// The outcome of accept/reject over a batch of proposal samples.
#[derive(Debug, Clone, PartialEq)]
pub struct QrsDraw {
    /// Indices of the accepted samples, in order.
    pub accepted: Vec<usize>,
    /// `max_i log(P_i / q_i)` over the batch (`-inf` if every P is 0).
    pub max_log_ratio: f64,
    /// Whether `P/q ≤ β` held on every sample of the batch: if it holds everywhere, the
    /// accepted samples follow p exactly. Seeing it hold on samples is evidence, not proof.
    pub bound_held: bool,
}

/// What QRS at β does, estimated from proposal samples.
#[derive(Debug, Clone, PartialEq)]
pub struct QrsReport {
    /// `log β`.
    pub log_beta: f64,
    /// Acceptance rate `Z_β / β = E_q[min(1, P/(β q))]`: unbiased mean, `se = sd / √n`.
    pub acceptance_rate: Estimate,
    /// `log Ẑ_β`, `Ẑ_β = mean_i min(P_i/q_i, β)`.
    pub log_z_beta: f64,
    /// `KL(p ‖ p_β) = E_p[max(0, log(P/(β q)))] + log Z_β − log Z`, with delta-method se.
    pub kl: Estimate,
    /// `TVD(p, p_β) = ½ E_q |P/(Z q) − min(P, β q)/(Z_β q)|`, with delta-method se.
    pub tvd: Estimate,
    /// Feature moments under p_β: `Σ min(w_i, β) φ_i / Σ min(w_i, β)` (empty without
    /// features).
    pub moments: Vec<f64>,
    /// `max_i log(P_i/q_i)` on the samples.
    pub max_log_ratio: f64,
    /// Whether `P/q ≤ β` on every sample (then p_β = p on the samples seen).
    pub bound_held: bool,
}

impl Qrs {
    /// A sampler with threshold `β = exp(log_beta)`; fails unless `log_beta` is finite.
    pub fn new(log_beta: f64) -> Result<Self> {
        if !log_beta.is_finite() {
            return Err(Error::InvalidParameter {
                name: "log_beta",
                value: log_beta,
                reason: "must be finite",
            });
        }
        Ok(Self { log_beta })
    }

    /// Exact rejection sampling with a known bound `log max_x P(x)/q(x) ≤ log_bound`: QRS with
    /// β at the bound, where p_β = p.
    pub fn exact(log_bound: f64) -> Result<Self> {
        Self::new(log_bound)
    }

    /// `log β`.
    pub fn log_beta(&self) -> f64 {
        self.log_beta
    }

    /// Chooses β so that the estimated acceptance rate `mean_i min(1, w_i/β)` on these
    /// proposal samples equals `rate`.
    ///
    /// The rate is continuous and non-increasing in β, so log β is found by bisection between
    /// the smallest positive weight (where every sample with P > 0 is accepted) and the
    /// largest; below `Ẑ / max w` the answer is closed-form, `β = Ẑ / rate`. Fails unless
    /// `0 < rate ≤ f`, with f the fraction of samples with P > 0 (samples with P = 0 are never
    /// accepted).
    pub fn for_acceptance_rate(
        log_target: &[f64],
        log_proposal: &[f64],
        rate: f64,
    ) -> Result<Self> {
        let lw = log_weights(log_target, log_proposal)?;
        let positive: Vec<f64> = lw.iter().copied().filter(|v| *v > f64::NEG_INFINITY).collect();
        if positive.is_empty() {
            return Err(Error::NoSupport { what: "Qrs::for_acceptance_rate", n_samples: lw.len() });
        }
        let reachable = positive.len() as f64 / lw.len() as f64;
        if !(rate > 0.0 && rate <= reachable) {
            return Err(Error::InvalidParameter {
                name: "rate",
                value: rate,
                reason: "the acceptance rate must be in (0, f], f = fraction of samples with P > 0",
            });
        }
        let lo_start = positive.iter().copied().fold(f64::INFINITY, f64::min);
        let hi_start = positive.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let log_z = log_mean_exp(&lw);
        // For β ≥ max w, rate(β) = Ẑ / β.
        if rate <= (log_z - hi_start).exp() {
            return Self::new(log_z - rate.ln());
        }
        if rate >= reachable {
            return Self::new(lo_start);
        }
        let rate_at = |log_beta: f64| {
            lw.iter().map(|&l| (l - log_beta).min(0.0).exp()).sum::<f64>() / lw.len() as f64
        };
        let (mut lo, mut hi) = (lo_start, hi_start);
        for _ in 0..BISECTION_STEPS {
            let mid = 0.5 * (lo + hi);
            if mid <= lo || mid >= hi {
                break;
            }
            if rate_at(mid) > rate {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Self::new(0.5 * (lo + hi))
    }

    /// `log min(1, P/(β q))`, the log acceptance probability of one sample.
    pub fn log_acceptance_probability(&self, log_target: f64, log_proposal: f64) -> f64 {
        (log_target - log_proposal - self.log_beta).min(0.0)
    }

    /// Accepts or rejects each proposal sample `x_i ~ q` with probability
    /// `min(1, P_i/(β q_i))`, drawing one uniform from `rng` per sample.
    pub fn sample<R: Rng + ?Sized>(
        &self,
        log_target: &[f64],
        log_proposal: &[f64],
        rng: &mut R,
    ) -> Result<QrsDraw> {
        let lw = log_weights(log_target, log_proposal)?;
        let mut accepted = Vec::new();
        for (i, &l) in lw.iter().enumerate() {
            let u: f64 = rng.random();
            if u < (l - self.log_beta).min(0.0).exp() {
                accepted.push(i);
            }
        }
        let max_log_ratio = lw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Ok(QrsDraw { accepted, max_log_ratio, bound_held: max_log_ratio <= self.log_beta })
    }

    /// Estimates the acceptance rate, Z_β, KL(p ‖ p_β), TVD(p, p_β) and (with `features`,
    /// `n × d`) the feature moments under p_β, from proposal samples.
    ///
    /// With [`LogZ::Known`] only Z_β is estimated from the samples; with
    /// [`LogZ::SelfNormalized`] Z is too. KL and TVD are smooth functions of sample means
    /// (consistent, bias O(1/n)); their standard errors are the delta method's, with influence
    /// values (`ŵ_i = w_i/Z`, `m̂_i = min(w_i, β)/Z_β`, `h_i = max(0, log(w_i/β))`):
    /// KL: `ψ_i = ŵ_i h_i + m̂_i − [self-normalised] (KL_1 + 1) ŵ_i`, `KL_1 = mean ŵ h`;
    /// TVD: `ψ_i = ½|ŵ_i − m̂_i| + ½ mean(s m̂) m̂_i − [self-normalised] ½ mean(s ŵ) ŵ_i`,
    /// `s = sign(ŵ − m̂)`.
    pub fn report(
        &self,
        log_target: &[f64],
        log_proposal: &[f64],
        features: Option<RowMatrix<'_>>,
        log_z: LogZ,
    ) -> Result<QrsReport> {
        let lw = log_weights(log_target, log_proposal)?;
        let n = lw.len();
        if let Some(f) = features {
            check_len("features rows", n, f.rows())?;
            f.check_finite("features")?;
        }
        let log_beta = self.log_beta;
        let log_min: Vec<f64> = lw.iter().map(|l| l.min(log_beta)).collect();
        let log_z_beta = log_mean_exp(&log_min);
        if log_z_beta == f64::NEG_INFINITY {
            return Err(Error::NoSupport { what: "Qrs::report (every P is 0)", n_samples: n });
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
            LogZ::SelfNormalized => (log_mean_exp(&lw), true),
        };
        let accept: Vec<f64> = lw.iter().map(|l| (l - log_beta).min(0.0).exp()).collect();
        let w_hat: Vec<f64> = lw.iter().map(|l| (l - log_z).exp()).collect();
        let m_hat: Vec<f64> = log_min.iter().map(|l| (l - log_z_beta).exp()).collect();
        let excess: Vec<f64> = lw.iter().map(|l| (l - log_beta).max(0.0)).collect();

        // KL(p ‖ p_β) = mean ŵ h + log Ẑ_β − log Z.
        let kl_terms: Vec<f64> = w_hat.iter().zip(&excess).map(|(w, h)| w * h).collect();
        let kl1 = kl_terms.iter().sum::<f64>() / n as f64;
        let kl_psi: Vec<f64> = (0..n)
            .map(|i| {
                let base = kl_terms[i] + m_hat[i];
                if self_normalized { base - (kl1 + 1.0) * w_hat[i] } else { base }
            })
            .collect();
        let shift = log_z_beta - log_z;
        let kl_mean = mean_with_influence(&kl_terms, &kl_psi);
        let kl = Estimate { value: kl_mean.value + shift, ..kl_mean };

        // TVD(p, p_β) = ½ mean |ŵ − m̂|.
        let tvd_terms: Vec<f64> =
            w_hat.iter().zip(&m_hat).map(|(w, m)| 0.5 * (w - m).abs()).collect();
        let sign: Vec<f64> = w_hat.iter().zip(&m_hat).map(|(w, m)| (w - m).signum()).collect();
        let s_m = sign.iter().zip(&m_hat).map(|(s, m)| s * m).sum::<f64>() / n as f64;
        let s_w = sign.iter().zip(&w_hat).map(|(s, w)| s * w).sum::<f64>() / n as f64;
        let tvd_psi: Vec<f64> = (0..n)
            .map(|i| {
                let base = tvd_terms[i] + 0.5 * s_m * m_hat[i];
                if self_normalized { base - 0.5 * s_w * w_hat[i] } else { base }
            })
            .collect();
        let tvd = mean_with_influence(&tvd_terms, &tvd_psi);

        let moments = match features {
            None => Vec::new(),
            Some(f) => {
                let w = normalized_weights(&log_min);
                let mut mu = vec![0.0; f.cols()];
                for (i, wi) in w.iter().enumerate() {
                    if *wi > 0.0 {
                        mu.iter_mut().zip(f.row(i)).for_each(|(m, x)| *m += wi * x);
                    }
                }
                mu
            }
        };
        let max_log_ratio = lw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Ok(QrsReport {
            log_beta,
            acceptance_rate: mean_se(&accept),
            log_z_beta,
            kl,
            tvd,
            moments,
            max_log_ratio,
            bound_held: max_log_ratio <= log_beta,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use rand::SeedableRng;

    #[test]
    fn acceptance_rate_is_inverted_by_bisection() {
        let log_q = [0.25f64.ln(); 4];
        let log_p = [1.0f64.ln(), 2.0f64.ln(), 0.5f64.ln(), f64::NEG_INFINITY];
        for rate in [0.75, 0.6, 0.3, 0.05] {
            let qrs = Qrs::for_acceptance_rate(&log_p, &log_q, rate).unwrap();
            let r = qrs.report(&log_p, &log_q, None, LogZ::SelfNormalized).unwrap();
            assert_relative_eq!(r.acceptance_rate.value, rate, epsilon = 1e-10);
        }
        assert!(Qrs::for_acceptance_rate(&log_p, &log_q, 0.8).is_err());
        assert!(Qrs::for_acceptance_rate(&log_p, &log_q, 0.0).is_err());
    }

    #[test]
    fn large_beta_is_exact_and_reports_the_bound() {
        let log_q = [0.5f64.ln(); 2];
        let log_p = [0.0, 1.0];
        let qrs = Qrs::exact(1.0 - 0.5f64.ln()).unwrap();
        let r = qrs.report(&log_p, &log_q, None, LogZ::SelfNormalized).unwrap();
        assert!(r.bound_held);
        assert_relative_eq!(r.kl.value, 0.0, epsilon = 1e-12);
        assert_relative_eq!(r.tvd.value, 0.0, epsilon = 1e-12);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let draw = Qrs::new(0.0).unwrap().sample(&log_p, &log_q, &mut rng).unwrap();
        assert!(!draw.bound_held);
        assert_relative_eq!(draw.max_log_ratio, 1.0 - 0.5f64.ln());
    }
}
