//! [`FDivergence`]: the generator `f` of an f-divergence and its derivative, for f-DPG.

use std::f64::consts::LN_2;

/// An f-divergence `D_f(π ‖ p) = E_p[f(π/p)]` (f convex, `f(1) = 0`), given through its
/// generator at `t = π(x)/p(x)`.
///
/// Both methods take `log t` (so `t` never overflows) and must accept `log t = +inf`
/// (`p(x) = 0 < π(x)`), returning the limit (possibly infinite: then the divergence is infinite
/// and f-DPG reports a non-finite advantage).
pub trait FDivergence: std::fmt::Debug {
    /// A short name.
    fn name(&self) -> &'static str;

    /// `f(t)` at `t = exp(log_t)`.
    fn f(&self, log_t: f64) -> f64;

    /// `f'(t)` at `t = exp(log_t)`. The f-DPG pseudo-reward is `−f'(t)`.
    fn f_prime(&self, log_t: f64) -> f64;
}

/// Forward KL, `D_f = KL(p ‖ π)`: `f(t) = −log t`, `f'(t) = −1/t` (pseudo-reward `p/π`: DPG).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ForwardKl;

/// Reverse KL, `D_f = KL(π ‖ p)`: `f(t) = t log t`, `f'(t) = log t + 1`.
/// Infinite where `p = 0 < π` (pointwise targets): use it only with a positive target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReverseKl;

/// Total variation, `D_f = TVD(π, p) = ½ Σ|π − p|`: `f(t) = |t − 1|/2`,
/// `f'(t) = sign(t − 1)/2` (0 at t = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TotalVariation;

/// Jensen–Shannon, `D_f = JS(π, p) = ½ KL(π ‖ M) + ½ KL(p ‖ M)`, `M = (π + p)/2`, in nats
/// (≤ ln 2): `f(t) = ½ [t log(2t/(1+t)) + log(2/(1+t))]`, `f'(t) = ½ log(2t/(1+t))`.
/// disco's `JSLoss` uses `log(2t/(1+t))`, twice this (the gradient of 2·JS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JensenShannon;

/// Neyman χ², disco's `ChiSquaredLoss`: `D_f = χ²(p ‖ π) = Σ (p − π)²/π`,
/// `f(t) = (t − 1)²/t`, `f'(t) = 1 − 1/t²` (pseudo-reward `−f'(t) = 1/t² − 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChiSquare;

/// Pearson χ², disco's `ReverseChiSquaredLoss`: `D_f = χ²(π ‖ p) = Σ (π − p)²/p`,
/// `f(t) = (t − 1)²`, `f'(t) = 2(t − 1)`. Infinite where `p = 0 < π`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReverseChiSquare;

impl FDivergence for ForwardKl {
    fn name(&self) -> &'static str {
        "forward_kl"
    }
    fn f(&self, log_t: f64) -> f64 {
        -log_t
    }
    fn f_prime(&self, log_t: f64) -> f64 {
        -(-log_t).exp()
    }
}

impl FDivergence for ReverseKl {
    fn name(&self) -> &'static str {
        "reverse_kl"
    }
    fn f(&self, log_t: f64) -> f64 {
        if log_t == f64::NEG_INFINITY { 0.0 } else { log_t.exp() * log_t }
    }
    fn f_prime(&self, log_t: f64) -> f64 {
        log_t + 1.0
    }
}

impl FDivergence for TotalVariation {
    fn name(&self) -> &'static str {
        "total_variation"
    }
    fn f(&self, log_t: f64) -> f64 {
        0.5 * (log_t.exp() - 1.0).abs()
    }
    fn f_prime(&self, log_t: f64) -> f64 {
        if log_t > 0.0 {
            0.5
        } else if log_t < 0.0 {
            -0.5
        } else {
            0.0
        }
    }
}

/// `log(1 + e^x)` without overflow.
fn softplus(x: f64) -> f64 {
    if x > 0.0 { x + (-x).exp().ln_1p() } else { x.exp().ln_1p() }
}

impl FDivergence for JensenShannon {
    fn name(&self) -> &'static str {
        "jensen_shannon"
    }
    fn f(&self, log_t: f64) -> f64 {
        // log(1 + t) = softplus(log t); log(2t/(1+t)) = ln2 + log t − softplus(log t).
        let l1t = softplus(log_t);
        let t = log_t.exp();
        let first = if log_t == f64::NEG_INFINITY { 0.0 } else { t * (LN_2 + log_t - l1t) };
        0.5 * (first + LN_2 - l1t)
    }
    fn f_prime(&self, log_t: f64) -> f64 {
        // ½ log(2t/(1+t)) = ½ (ln 2 − softplus(−log t)); → ½ ln 2 as t → ∞.
        0.5 * (LN_2 - softplus(-log_t))
    }
}

impl FDivergence for ChiSquare {
    fn name(&self) -> &'static str {
        "chi_square"
    }
    fn f(&self, log_t: f64) -> f64 {
        let t = log_t.exp();
        (t - 1.0).powi(2) / t
    }
    fn f_prime(&self, log_t: f64) -> f64 {
        1.0 - (-2.0 * log_t).exp()
    }
}

impl FDivergence for ReverseChiSquare {
    fn name(&self) -> &'static str {
        "reverse_chi_square"
    }
    fn f(&self, log_t: f64) -> f64 {
        (log_t.exp() - 1.0).powi(2)
    }
    fn f_prime(&self, log_t: f64) -> f64 {
        2.0 * (log_t.exp() - 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn all() -> Vec<Box<dyn FDivergence>> {
        vec![
            Box::new(ForwardKl),
            Box::new(ReverseKl),
            Box::new(TotalVariation),
            Box::new(JensenShannon),
            Box::new(ChiSquare),
            Box::new(ReverseChiSquare),
        ]
    }

    #[test]
    fn generators_vanish_at_one_and_f_prime_is_the_derivative() {
        for d in all() {
            assert_relative_eq!(d.f(0.0), 0.0, epsilon = 1e-15);
            for t in [0.05f64, 0.3, 0.9, 1.7, 4.0, 30.0] {
                let h = 1e-6 * t;
                let num = (d.f((t + h).ln()) - d.f((t - h).ln())) / (2.0 * h);
                assert_relative_eq!(d.f_prime(t.ln()), num, epsilon = 1e-6, max_relative = 1e-6);
            }
        }
    }

    #[test]
    fn limits_at_zero_target_are_not_nan() {
        for d in all() {
            assert!(!d.f_prime(f64::INFINITY).is_nan(), "{}", d.name());
        }
        assert_eq!(ForwardKl.f_prime(f64::INFINITY), 0.0);
        assert_eq!(JensenShannon.f_prime(f64::INFINITY), 0.5 * LN_2);
        assert_eq!(TotalVariation.f_prime(f64::INFINITY), 0.5);
        assert_eq!(ChiSquare.f_prime(f64::INFINITY), 1.0);
        assert_eq!(ReverseKl.f_prime(f64::INFINITY), f64::INFINITY);
    }
}
