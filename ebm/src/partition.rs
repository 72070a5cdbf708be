//! Importance-sampling estimates of the partition function `Z = Σ_x P(x) = E_q[P/q]`.
//!
//! For samples `x_i ~ q`, the weights `w_i = P(x_i)/q(x_i)` have mean Z under q, for *any* q
//! whose support covers P's. So `Ẑ = (1/n) Σ w_i` is unbiased; it is computed as a
//! log-mean-exp of `log w_i` so that weights of `e^±1000` neither overflow nor vanish.

use crate::logspace::log_sum_exp;
use crate::matrix::{check_finite_slice, check_len, check_log_scores};
use crate::{Error, Result};

/// An estimate of Z from importance weights, in log space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZEstimate {
    /// `log Ẑ`, `Ẑ = mean_i w_i` (unbiased for Z; `log Ẑ` itself is biased low by about
    /// `se_log_z² / 2`, Jensen).
    pub log_z: f64,
    /// The log of the standard error of Ẑ: `SE(Ẑ) = exp(log_se_z)`, with
    /// `SE(Ẑ)² = Σ (w_i − Ẑ)² / (n (n − 1))`. Kept in log space because Ẑ itself may overflow.
    pub log_se_z: f64,
    /// Standard error of `log Ẑ` by the delta method: `SE(Ẑ) / Ẑ` (the relative error of Ẑ).
    pub se_log_z: f64,
    /// Kish effective sample size `(Σ w)² / Σ w²` of the weights (0 if all are zero).
    pub ess: f64,
    /// Number of samples, zero weights included.
    pub n: usize,
}

impl ZEstimate {
    /// `Ẑ` (may overflow to `inf`; prefer [`log_z`](Self::log_z)).
    pub fn z(&self) -> f64 {
        self.log_z.exp()
    }

    /// `SE(Ẑ)` (may overflow to `inf`).
    pub fn se_z(&self) -> f64 {
        self.log_se_z.exp()
    }
}

/// `log w_i = log P(x_i) − log q(x_i)`, validated: `log_target` may be `-inf` (P = 0, a zero
/// weight) but not NaN or `+inf`; `log_proposal` must be finite (q > 0 where q sampled).
pub fn log_weights(log_target: &[f64], log_proposal: &[f64]) -> Result<Vec<f64>> {
    check_len("log_proposal", log_target.len(), log_proposal.len())?;
    check_log_scores("log_target", log_target)?;
    check_finite_slice("log_proposal", log_proposal)?;
    Ok(log_target.iter().zip(log_proposal).map(|(p, q)| p - q).collect())
}

/// Running sums of weights scaled by `exp(-reference)`, in the form that merges exactly
/// (Chan et al.'s parallel variance update).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Moments {
    n: usize,
    /// Log of the scale every sum below is relative to (`-inf`: no positive weight yet).
    reference: f64,
    /// Mean of `w / e^reference`.
    mean: f64,
    /// `Σ (w − w̄)² / e^(2 reference)`.
    m2: f64,
    /// `Σ w² / e^(2 reference)`.
    sum_sq: f64,
}

impl Moments {
    const EMPTY: Self =
        Self { n: 0, reference: f64::NEG_INFINITY, mean: 0.0, m2: 0.0, sum_sq: 0.0 };

    fn of(log_weights: &[f64]) -> Result<Self> {
        if let Some(i) = log_weights.iter().position(|v| v.is_nan() || *v == f64::INFINITY) {
            return Err(Error::NonFinite {
                what: "log_weights",
                sample: i,
                feature: None,
                value: log_weights[i],
            });
        }
        let n = log_weights.len();
        let reference = log_weights.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if n == 0 || reference == f64::NEG_INFINITY {
            return Ok(Self { n, ..Self::EMPTY });
        }
        let scaled = |lw: f64| (lw - reference).exp();
        let mean = log_weights.iter().map(|&lw| scaled(lw)).sum::<f64>() / n as f64;
        let (m2, sum_sq) = log_weights.iter().fold((0.0, 0.0), |(m2, sq), &lw| {
            let w = scaled(lw);
            (m2 + (w - mean) * (w - mean), sq + w * w)
        });
        Ok(Self { n, reference, mean, m2, sum_sq })
    }

    /// Re-expresses the sums relative to `reference` (which must be ≥ the current one).
    fn rescaled(self, reference: f64) -> Self {
        if self.reference == f64::NEG_INFINITY || reference == self.reference {
            return Self { reference, ..self };
        }
        let f = (self.reference - reference).exp();
        Self {
            reference,
            mean: self.mean * f,
            m2: self.m2 * f * f,
            sum_sq: self.sum_sq * f * f,
            ..self
        }
    }

    fn merge(self, other: Self) -> Self {
        let reference = self.reference.max(other.reference);
        let (a, b) = (self.rescaled(reference), other.rescaled(reference));
        let n = a.n + b.n;
        if n == 0 {
            return Self::EMPTY;
        }
        let delta = b.mean - a.mean;
        let mean = a.mean + delta * (b.n as f64 / n as f64);
        let m2 = a.m2 + b.m2 + delta * delta * (a.n as f64 * b.n as f64 / n as f64);
        Self { n, reference, mean, m2, sum_sq: a.sum_sq + b.sum_sq }
    }

    fn estimate(&self) -> ZEstimate {
        let n = self.n;
        if self.reference == f64::NEG_INFINITY || self.mean == 0.0 {
            // Every weight is zero: Ẑ = 0 exactly, and its relative error is unknown.
            return ZEstimate {
                log_z: f64::NEG_INFINITY,
                log_se_z: if n >= 2 { f64::NEG_INFINITY } else { f64::INFINITY },
                se_log_z: f64::INFINITY,
                ess: 0.0,
                n,
            };
        }
        let log_z = self.reference + self.mean.ln();
        let ess = (n as f64 * self.mean).powi(2) / self.sum_sq;
        if n < 2 {
            return ZEstimate { log_z, log_se_z: f64::INFINITY, se_log_z: f64::INFINITY, ess, n };
        }
        let var_of_mean = self.m2 / ((n - 1) as f64 * n as f64);
        ZEstimate {
            log_z,
            log_se_z: self.reference + 0.5 * var_of_mean.ln(),
            se_log_z: var_of_mean.sqrt() / self.mean,
            ess,
            n,
        }
    }
}

/// Estimates Z from the log importance weights `log P(x_i) − log q(x_i)` of samples `x_i ~ q`
/// (see [`log_weights`]). `-inf` weights (P = 0) count as zeros.
///
/// Fails on an empty slice, NaN or `+inf`.
pub fn estimate_log_z(log_weights: &[f64]) -> Result<ZEstimate> {
    if log_weights.is_empty() {
        return Err(Error::NoSupport { what: "estimate_log_z", n_samples: 0 });
    }
    let est = Moments::of(log_weights)?.estimate();
    debug_assert!(
        est.log_z == f64::NEG_INFINITY
            || (est.log_z - (log_sum_exp(log_weights) - (log_weights.len() as f64).ln())).abs()
                < 1e-9 * (1.0 + est.log_z.abs())
    );
    Ok(est)
}

/// An estimate of Z pooled over batches drawn from a *sequence* of proposals.
///
/// Each batch from proposal `q_t` has weights `P/q_t` with mean exactly Z (also when `q_t` was
/// chosen from earlier batches: `E[w | past] = Z`, a martingale). So the plain mean of **all**
/// raw weights seen so far is unbiased for Z, however the proposal changed; this is the
/// running mean GDC keeps, done over samples rather than over batch means (which weights a
/// batch by its size, as it should). Reweighting batches by their estimated variance would
/// introduce a bias (the weights correlate with the values), so it is not done.
///
/// Standard error: `SE² = Σ_i (w_i − Ẑ)² / (n (n − 1))`. The weights are independent with
/// common mean Z but different variances σ_t²; this formula is still unbiased for
/// `Var(Ẑ) = Σ_i σ_i² / n²`, because `E Σ (w_i − w̄)² = (1 − 1/n) Σ σ_i²` when all means agree.
#[derive(Debug, Clone, PartialEq)]
pub struct PooledZ {
    moments: Moments,
    batches: usize,
}

impl Default for PooledZ {
    fn default() -> Self {
        Self::new()
    }
}

impl PooledZ {
    /// No samples yet.
    pub fn new() -> Self {
        Self { moments: Moments::EMPTY, batches: 0 }
    }

    /// Adds a batch of log weights `log P − log q_t` from the current proposal `q_t` and returns
    /// that batch's own estimate. Fails (and adds nothing) on NaN or `+inf`.
    pub fn push(&mut self, log_weights: &[f64]) -> Result<ZEstimate> {
        let batch = Moments::of(log_weights)?;
        self.moments = self.moments.merge(batch);
        self.batches += 1;
        Ok(batch.estimate())
    }

    /// The pooled estimate over every weight pushed so far.
    pub fn estimate(&self) -> ZEstimate {
        self.moments.estimate()
    }

    /// Number of weights pushed.
    pub fn n(&self) -> usize {
        self.moments.n
    }

    /// Number of batches pushed.
    pub fn batches(&self) -> usize {
        self.batches
    }

    /// The exact state as numbers, for checkpoints: `[n, batches, reference, mean, m2,
    /// sum_sq]` (the counts are exact as f64 up to 2^53). [`from_state`](Self::from_state)
    /// restores it bit for bit, in constant size however many weights were pushed.
    pub fn to_state(&self) -> [f64; 6] {
        let m = &self.moments;
        [m.n as f64, self.batches as f64, m.reference, m.mean, m.m2, m.sum_sq]
    }

    /// The tracker [`to_state`](Self::to_state) described.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a state no tracker can be in (a count that is not a
    /// whole number, NaN, a negative or infinite sum, sums without a reference).
    pub fn from_state(state: [f64; 6]) -> Result<Self> {
        let [n, batches, reference, mean, m2, sum_sq] = state;
        let bad = |name: &'static str, value: f64, reason: &'static str| {
            Err(Error::InvalidParameter { name, value, reason })
        };
        let count = |v: f64| v >= 0.0 && v.fract() == 0.0 && v < 2f64.powi(53);
        if !count(n) {
            return bad("PooledZ state n", n, "must be a whole number ≥ 0");
        }
        if !count(batches) {
            return bad("PooledZ state batches", batches, "must be a whole number ≥ 0");
        }
        if reference.is_nan() || reference == f64::INFINITY {
            return bad("PooledZ state reference", reference, "must be finite or -inf");
        }
        for (name, v) in [("mean", mean), ("m2", m2), ("sum_sq", sum_sq)] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(
                    "PooledZ state sum",
                    v,
                    if name == "mean" {
                        "the mean must be ≥ 0 and finite"
                    } else {
                        "the sums of squares must be ≥ 0 and finite"
                    },
                );
            }
        }
        if reference == f64::NEG_INFINITY && (mean, m2, sum_sq) != (0.0, 0.0, 0.0) {
            return bad("PooledZ state mean", mean, "sums without a positive weight");
        }
        let moments = Moments { n: n as usize, reference, mean, m2, sum_sq };
        Ok(Self { moments, batches: batches as usize })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn pooled_state_round_trips_exactly_and_bad_states_are_refused() {
        let mut z = PooledZ::new();
        assert_eq!(PooledZ::from_state(z.to_state()).unwrap(), z);
        z.push(&[f64::NEG_INFINITY]).unwrap();
        assert_eq!(PooledZ::from_state(z.to_state()).unwrap(), z);
        z.push(&[0.3, -1.7, 2.9, f64::NEG_INFINITY]).unwrap();
        z.push(&[40.0, -3.0]).unwrap();
        let mut restored = PooledZ::from_state(z.to_state()).unwrap();
        assert_eq!(restored, z);
        // The same future after a restore.
        z.push(&[1.5, 0.2]).unwrap();
        restored.push(&[1.5, 0.2]).unwrap();
        assert_eq!(restored.estimate(), z.estimate());
        let good = z.to_state();
        for (i, v) in
            [(0, 2.5), (1, -1.0), (2, f64::NAN), (2, f64::INFINITY), (3, f64::NAN), (4, -1.0)]
        {
            let mut s = good;
            s[i] = v;
            assert!(PooledZ::from_state(s).is_err(), "state[{i}] = {v}");
        }
        let orphan = [1.0, 1.0, f64::NEG_INFINITY, 0.5, 0.0, 0.0];
        assert!(PooledZ::from_state(orphan).is_err());
    }

    #[test]
    fn plain_estimate_matches_direct_formulas() {
        let w = [1.0f64, 2.0, 0.0, 5.0];
        let lw: Vec<f64> = w.iter().map(|x| x.ln()).collect();
        let e = estimate_log_z(&lw).unwrap();
        assert_relative_eq!(e.z(), 2.0, epsilon = 1e-12);
        // sample variance = (1 + 0 + 4 + 9) / 3 = 14/3; SE = sqrt(14/12)
        assert_relative_eq!(e.se_z(), (14.0f64 / 12.0).sqrt(), epsilon = 1e-12);
        assert_relative_eq!(e.se_log_z, (14.0f64 / 12.0).sqrt() / 2.0, epsilon = 1e-12);
        assert_relative_eq!(e.ess, 64.0 / 30.0, epsilon = 1e-12);
        assert_eq!(e.n, 4);
    }

    #[test]
    fn shift_by_a_thousand_moves_only_log_z() {
        let lw = [0.3, -1.2, 0.7, f64::NEG_INFINITY, 2.0];
        let base = estimate_log_z(&lw).unwrap();
        for shift in [1000.0, -1000.0] {
            let shifted: Vec<f64> = lw.iter().map(|x| x + shift).collect();
            let e = estimate_log_z(&shifted).unwrap();
            assert_relative_eq!(e.log_z, base.log_z + shift, epsilon = 1e-9);
            assert_relative_eq!(e.log_se_z, base.log_se_z + shift, epsilon = 1e-9);
            assert_relative_eq!(e.se_log_z, base.se_log_z, epsilon = 1e-12);
            assert_relative_eq!(e.ess, base.ess, epsilon = 1e-12);
        }
    }

    #[test]
    fn pooling_batches_equals_one_big_batch() {
        let a = [1000.0, 999.0, 1001.5];
        let b = [-5.0, f64::NEG_INFINITY];
        let c = [1003.0, 1000.2, 998.0, 1000.0];
        let mut pooled = PooledZ::new();
        for batch in [&a[..], &b[..], &c[..]] {
            pooled.push(batch).unwrap();
        }
        let all: Vec<f64> = a.iter().chain(&b).chain(&c).copied().collect();
        let one = estimate_log_z(&all).unwrap();
        let p = pooled.estimate();
        assert_eq!((p.n, pooled.batches()), (9, 3));
        assert_relative_eq!(p.log_z, one.log_z, epsilon = 1e-12);
        assert_relative_eq!(p.log_se_z, one.log_se_z, epsilon = 1e-9);
        assert_relative_eq!(p.ess, one.ess, epsilon = 1e-9);
    }

    #[test]
    fn degenerate_inputs() {
        assert!(estimate_log_z(&[]).is_err());
        assert!(matches!(
            estimate_log_z(&[0.0, f64::NAN]),
            Err(Error::NonFinite { sample: 1, .. })
        ));
        let zero = estimate_log_z(&[f64::NEG_INFINITY; 3]).unwrap();
        assert_eq!((zero.log_z, zero.ess), (f64::NEG_INFINITY, 0.0));
        assert!(!zero.se_log_z.is_nan());
        let mut pooled = PooledZ::new();
        assert!(pooled.push(&[f64::INFINITY]).is_err());
        assert_eq!(pooled.n(), 0);
        assert!(log_weights(&[0.0], &[f64::NEG_INFINITY]).is_err());
    }
}
