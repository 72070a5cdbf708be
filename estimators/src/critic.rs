//! The critic of Ziegler et al.'s KL-control with PPO (gdc `gdc/ppo.py`, trl's PPO): per-token
//! advantages by generalised advantage estimation (GAE, γ = 1) from a learned value function,
//! whitened over the batch, and PPO's clipped value loss.
//!
//! With values `V_t` (of the prefix before token t, from the sampling-time model) and per-token
//! rewards `r_t`, `δ_t = r_t + V_{t+1} − V_t` (`V` after the last token is 0),
//! `A_t = Σ_{s ≥ t} λ^{s−t} δ_s` and the value targets are the returns `R_t = A_t + V_t`.
//! λ = 1 gives `A_t = G_t − V_t` (return-to-go minus the baseline); λ = 0 the one-step TD error.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorData};

use crate::{Error, Result};

/// The critic's settings (gdc / trl: λ = 0.95, value coefficient 0.1, value clip 0.2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Critic {
    /// GAE λ in `[0, 1]` (γ = 1).
    pub gae_lambda: f64,
    /// The value loss's weight in the total loss.
    pub value_coef: f64,
    /// Clip the new values to `V_old ± value_clip` in the value loss (`None`: unclipped).
    pub value_clip: Option<f64>,
}

impl Default for Critic {
    fn default() -> Self {
        Self { gae_lambda: 0.95, value_coef: 0.1, value_clip: Some(0.2) }
    }
}

impl Critic {
    pub(crate) fn check(&self) -> Result<()> {
        let bad = |name, value, reason| Err(Error::InvalidConfig { name, value, reason });
        if !(0.0..=1.0).contains(&self.gae_lambda) {
            return bad("gae_lambda", self.gae_lambda, "must be in [0, 1]");
        }
        if !(self.value_coef.is_finite() && self.value_coef >= 0.0) {
            return bad("value_coef", self.value_coef, "must be ≥ 0 and finite");
        }
        if let Some(c) = self.value_clip
            && !(c.is_finite() && c > 0.0)
        {
            return bad("value_clip", c, "must be > 0 and finite");
        }
        Ok(())
    }
}

/// GAE advantages and returns `(A, R)`, row-major `[n, T]`, over the positions where `keep`
/// holds (0 elsewhere); each row's kept positions are its tokens in order.
pub fn gae(
    rewards: &[f64],
    values: &[f64],
    keep: &[bool],
    [n, t]: [usize; 2],
    lambda: f64,
) -> (Vec<f64>, Vec<f64>) {
    let mut adv = vec![0.0; n * t];
    let mut ret = vec![0.0; n * t];
    for i in 0..n {
        let (mut next_value, mut next_adv) = (0.0, 0.0);
        for s in (0..t).rev() {
            let k = i * t + s;
            if !keep[k] {
                continue;
            }
            let delta = rewards[k] + next_value - values[k];
            next_adv = delta + lambda * next_adv;
            adv[k] = next_adv;
            ret[k] = next_adv + values[k];
            next_value = values[k];
        }
    }
    (adv, ret)
}

/// `(x − mean) / √(var + 1e-8)` over the kept positions (unbiased variance, as gdc's and trl's
/// `whiten`); 0 elsewhere. One kept value is only centred.
pub fn whiten(values: &[f64], keep: &[bool]) -> Vec<f64> {
    let kept: Vec<f64> = values.iter().zip(keep).filter(|(_, k)| **k).map(|(v, _)| *v).collect();
    let n = kept.len() as f64;
    let mean = kept.iter().sum::<f64>() / n.max(1.0);
    let var = if kept.len() > 1 {
        kept.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0)
    } else {
        1.0 - 1e-8
    };
    let scale = 1.0 / (var + 1e-8).sqrt();
    values.iter().zip(keep).map(|(v, k)| if *k { (v - mean) * scale } else { 0.0 }).collect()
}

/// What the value loss needs, row-major `[n, T]` over the generated tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueTargets {
    /// The returns `R_t`, the regression targets.
    pub returns: Vec<f64>,
    /// The values at sampling time, `V_old`.
    pub old: Vec<f64>,
    /// Positions that count (generated tokens of used rows).
    pub keep: Vec<bool>,
    /// `[n, T]`.
    pub dims: [usize; 2],
    /// `value_coef / (kept positions)`: the loss is a mean over the batch's tokens.
    pub weight: f64,
    /// The value clip range.
    pub clip: Option<f64>,
}

impl ValueTargets {
    /// PPO's value loss over rows `first .. first + rows` of the batch:
    /// `weight · Σ_t ½ max((V − R)², (V_old + clip(V − V_old, ±c) − R)²)` (unclipped:
    /// `½ (V − R)²`). Summed over the batch's row ranges it is
    /// `value_coef · mean_t ½ max(…)`, the value term of gdc's and trl's PPO loss.
    ///
    /// # Shapes
    /// - `values`: `[rows, T]`, differentiable, aligned with the generated tokens.
    pub fn loss<B: Backend>(&self, values: Tensor<B, 2>, first: usize) -> Tensor<B, 1> {
        let [rows, t] = values.dims();
        let device = values.device();
        let range = first * t..(first + rows) * t;
        let host = |v: &[f64]| -> Tensor<B, 2> {
            Tensor::from_data(TensorData::new(v[range.clone()].to_vec(), [rows, t]), &device)
        };
        let drop: Vec<bool> = self.keep[range.clone()].iter().map(|k| !k).collect();
        let drop: Tensor<B, 2, Bool> = Tensor::from_data(TensorData::new(drop, [rows, t]), &device);
        let (returns, old) = (host(&self.returns), host(&self.old));
        let unclipped = (values.clone() - returns.clone()).powi_scalar(2);
        let sq = match self.clip {
            Some(c) => {
                let clipped = old.clone() + (values - old).clamp(-c, c);
                unclipped.max_pair((clipped - returns).powi_scalar(2))
            }
            None => unclipped,
        };
        sq.mask_fill(drop, 0.0).sum().mul_scalar(0.5 * self.weight)
    }

    /// The value loss at `V = V_old` without the coefficient, `mean_t ½ (V_old − R)²`, and the
    /// explained variance `1 − Var(R − V_old) / Var(R)` over the kept positions (NaN when the
    /// returns do not vary, where it is undefined; callers report it as missing).
    pub fn host_stats(&self) -> (f64, f64) {
        let pairs: Vec<(f64, f64)> = (0..self.keep.len())
            .filter(|&k| self.keep[k])
            .map(|k| (self.returns[k], self.old[k]))
            .collect();
        let n = pairs.len().max(1) as f64;
        let loss = pairs.iter().map(|(r, v)| 0.5 * (v - r) * (v - r)).sum::<f64>() / n;
        let var = |xs: &mut dyn Iterator<Item = f64>| {
            let xs: Vec<f64> = xs.collect();
            let m = xs.iter().sum::<f64>() / n;
            xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n
        };
        let var_r = var(&mut pairs.iter().map(|(r, _)| *r));
        let var_e = var(&mut pairs.iter().map(|(r, v)| r - v));
        let explained = if var_r > 0.0 { 1.0 - var_e / var_r } else { f64::NAN };
        (loss, explained)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use burn::backend::{Autodiff, Flex};

    #[test]
    fn gae_by_hand() {
        // One row of 3 tokens, the middle one masked out; λ = 0.5.
        let r = [1.0, 9.0, 2.0];
        let v = [0.5, 9.0, 1.5];
        let keep = [true, false, true];
        let (a, ret) = gae(&r, &v, &keep, [1, 3], 0.5);
        // Last kept: δ = 2 + 0 − 1.5 = 0.5. First: δ = 1 + 1.5 − 0.5 = 2, A = 2 + 0.5·0.5.
        assert_relative_eq!(a[2], 0.5);
        assert_relative_eq!(a[0], 2.25);
        assert_eq!(a[1], 0.0);
        assert_relative_eq!(ret[0], 2.75);
        assert_relative_eq!(ret[2], 2.0);
        // λ = 1: A_t = G_t − V_t with G the reward-to-go.
        let (a, _) = gae(&[1.0, 2.0, 3.0], &[0.1, 0.2, 0.3], &[true; 3], [1, 3], 1.0);
        for (k, g) in [6.0, 5.0, 3.0].iter().enumerate() {
            assert_relative_eq!(a[k], g - [0.1, 0.2, 0.3][k], epsilon = 1e-12);
        }
    }

    #[test]
    fn whiten_has_zero_mean_unit_unbiased_variance() {
        let w = whiten(&[1.0, 5.0, 2.0, 3.0], &[true, false, true, true]);
        assert_eq!(w[1], 0.0);
        let kept = [w[0], w[2], w[3]];
        assert_relative_eq!(kept.iter().sum::<f64>(), 0.0, epsilon = 1e-12);
        let var = kept.iter().map(|x| x * x).sum::<f64>() / 2.0;
        assert_relative_eq!(var, 1.0, epsilon = 1e-6);
    }

    #[test]
    fn value_loss_and_its_gradient() {
        type B = Autodiff<Flex>;
        let targets = ValueTargets {
            returns: vec![1.0, 2.0, 0.0, 4.0],
            old: vec![0.5, 2.5, 0.0, 3.0],
            keep: vec![true, true, false, true],
            dims: [2, 2],
            weight: 0.1 / 3.0,
            clip: Some(0.2),
        };
        let device = Default::default();
        // Rows 1..2 only: position (1,0) is masked out, (1,1): V = 3.5, V_old = 3, R = 4.
        let v = Tensor::<B, 2>::from_data(TensorData::new(vec![7.0f32, 3.5], [1, 2]), &device)
            .require_grad();
        let loss = targets.loss(v.clone(), 1);
        // Unclipped (3.5 − 4)² = 0.25; clipped V = 3.2: (3.2 − 4)² = 0.64 → max 0.64.
        let value = loss.clone().into_data().to_vec::<f32>().unwrap()[0];
        assert_relative_eq!(value, 0.5 * 0.64 * 0.1 / 3.0, epsilon = 1e-7);
        // The clipped branch is constant in V (V − V_old beyond the clip): zero gradient there.
        let g = v.grad(&loss.backward()).unwrap().into_data().to_vec::<f32>().unwrap();
        assert_eq!(g, vec![0.0, 0.0]);
        // Row 0 alone: (0.5→V=1.5): unclipped (1.5 − 1)² = 0.25, clipped V = 0.7: 0.09 → 0.25,
        // gradient weight·(V − R) = weight · 0.5. Position (0,1): V = R = 2, V_old = 2.5:
        // unclipped 0, clipped V = 2.3: 0.09 (constant in V).
        let v = Tensor::<B, 2>::from_data(TensorData::new(vec![1.5f32, 2.0], [1, 2]), &device)
            .require_grad();
        let loss = targets.loss(v.clone(), 0);
        let value = loss.clone().into_data().to_vec::<f32>().unwrap()[0];
        assert_relative_eq!(value, 0.5 * (0.25 + 0.09) * 0.1 / 3.0, epsilon = 1e-7);
        let g = v.grad(&loss.backward()).unwrap().into_data().to_vec::<f32>().unwrap();
        assert_relative_eq!(g[0], 0.1 / 3.0 * 0.5, epsilon = 1e-7);
        assert_eq!(g[1], 0.0);
        let (host, ev) = targets.host_stats();
        assert_relative_eq!(host, 0.5 * (0.25 + 0.25 + 1.0) / 3.0);
        assert!(ev.is_finite());
    }
}
