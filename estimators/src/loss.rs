//! The two loss shapes every estimator reduces to: the score-function loss
//! `L = −(1/m) Σ_i A_i log π(x_i)` and its PPO-clipped variant. Advantages are computed on the
//! host in f64 and enter as one detached tensor; the loss is one fused expression.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorData};

use crate::batch::{ScoredBatch, Validity};

/// `[n]` bool tensor of skipped samples, or `None` when none is skipped.
fn skip_mask<B: Backend>(batch: &ScoredBatch<B>, v: &Validity) -> Option<Tensor<B, 1, Bool>> {
    (v.n_skipped > 0).then(|| {
        let n = v.skip.len();
        Tensor::from_data(TensorData::new(v.skip.clone(), [n]), &batch.device())
    })
}

/// Per-sample coefficients `−A_i / m` (0 for skipped samples), m = number of used samples.
fn coefficients(advantages: &[f64], v: &Validity) -> Vec<f64> {
    let m = v.n_used().max(1) as f64;
    advantages.iter().enumerate().map(|(i, a)| if v.is_used(i) { -a / m } else { 0.0 }).collect()
}

/// `L = −(1/m) Σ_{i used} A_i log π(x_i)`; returns the loss tensor `[1]` and its host value.
///
/// Skipped samples are masked out of `log π` before the product, so a NaN there cannot leak
/// into the loss or its gradient.
pub(crate) fn score_function_loss<B: Backend>(
    batch: &ScoredBatch<B>,
    advantages: &[f64],
    v: &Validity,
) -> (Tensor<B, 1>, f64) {
    let coef = coefficients(advantages, v);
    let host: f64 =
        coef.iter().zip(&batch.log_pi_host).map(|(c, l)| if *c == 0.0 { 0.0 } else { c * l }).sum();
    let mut log_pi = batch.log_pi.clone();
    if let Some(mask) = skip_mask(batch, v) {
        log_pi = log_pi.mask_fill(mask, 0.0);
    }
    ((log_pi * batch.tensor_1d(coef)).sum(), host)
}

/// PPO's clipped surrogate at the sequence level:
/// `L = −(1/m) Σ_i min(ρ_i A_i, clip(ρ_i, 1 − ε, 1 + ε) A_i)`, `ρ_i = π(x_i)/π_old(x_i)`.
///
/// Returns the loss, its host value and the fraction of used samples with a clipped ratio.
pub(crate) fn clipped_loss<B: Backend>(
    batch: &ScoredBatch<B>,
    log_pi_old: &[f64],
    advantages: &[f64],
    epsilon: f64,
    v: &Validity,
) -> (Tensor<B, 1>, f64, f64) {
    let coef = coefficients(advantages, v);
    let old: Vec<f64> =
        log_pi_old.iter().enumerate().map(|(i, o)| if v.is_used(i) { *o } else { 0.0 }).collect();
    let (mut host, mut clipped) = (0.0, 0usize);
    for i in (0..coef.len()).filter(|&i| v.is_used(i)) {
        let rho = (batch.log_pi_host[i] - old[i]).exp();
        let a = advantages[i];
        let rc = rho.clamp(1.0 - epsilon, 1.0 + epsilon);
        host -= (rho * a).min(rc * a) / v.n_used() as f64;
        clipped += usize::from(rc != rho);
    }
    let mut log_pi = batch.log_pi.clone();
    if let Some(mask) = skip_mask(batch, v) {
        log_pi = log_pi.mask_fill(mask, 0.0);
    }
    let rho = (log_pi - batch.tensor_1d(old)).exp();
    // coef = −A/m, so −min(ρA, clip(ρ)A)/m = max(ρ·coef, clip(ρ)·coef).
    let c = batch.tensor_1d(coef);
    let loss =
        (rho.clone() * c.clone()).max_pair(rho.clamp(1.0 - epsilon, 1.0 + epsilon) * c).sum();
    (loss, host, clipped as f64 / v.n_used().max(1) as f64)
}
