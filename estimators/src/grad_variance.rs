//! Per-sample gradient variance, the paper's diagnostic (gdc `GradientMonitor`).

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

use crate::{Error, Result};

/// The spread of per-sample gradients `g_i` (METHODS §5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientVariance {
    /// `mean_i ‖g_i‖² − ‖mean_i g_i‖²`: the trace of the (population) covariance of the `g_i`,
    /// the paper's "gradient variance".
    pub trace: f64,
    /// `mean_i ‖g_i‖²`.
    pub mean_sq_norm: f64,
    /// `‖mean_i g_i‖²`.
    pub sq_norm_of_mean: f64,
    /// Number of per-sample gradients.
    pub n: usize,
}

/// The trace of the covariance of flattened per-sample gradients. Fails if there are none or
/// their lengths differ.
pub fn gradient_variance(per_sample: &[Vec<f64>]) -> Result<GradientVariance> {
    let mut acc = GradientVarianceAccumulator::new();
    for g in per_sample {
        acc.push(g)?;
    }
    acc.finish()
}

/// [`gradient_variance`] one gradient at a time, in memory for one gradient (per-sample
/// gradients of a large model do not fit in memory together).
#[derive(Debug, Clone, Default)]
pub struct GradientVarianceAccumulator {
    sum: Vec<f64>,
    sum_sq_norm: f64,
    n: usize,
}

impl GradientVarianceAccumulator {
    /// No gradients yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one flattened per-sample gradient; it must have the length of the first.
    pub fn push(&mut self, g: &[f64]) -> Result<()> {
        if self.n == 0 {
            self.sum = vec![0.0; g.len()];
        } else if g.len() != self.sum.len() {
            return Err(Error::ShapeMismatch {
                what: "per-sample gradient",
                expected: self.sum.len(),
                got: g.len(),
            });
        }
        self.sum_sq_norm += g.iter().map(|x| x * x).sum::<f64>();
        for (s, x) in self.sum.iter_mut().zip(g) {
            *s += x;
        }
        self.n += 1;
        Ok(())
    }

    /// The sums kept: `Σ g_i` (empty before the first push), `Σ ‖g_i‖²` and the count; with
    /// [`from_parts`](Self::from_parts), accumulators of several workers are added.
    pub fn into_parts(self) -> (Vec<f64>, f64, usize) {
        (self.sum, self.sum_sq_norm, self.n)
    }

    /// An accumulator holding these sums (see [`into_parts`](Self::into_parts)).
    pub fn from_parts(sum: Vec<f64>, sum_sq_norm: f64, n: usize) -> Self {
        Self { sum, sum_sq_norm, n }
    }

    /// The statistics of the gradients pushed so far (an error if none).
    pub fn finish(&self) -> Result<GradientVariance> {
        if self.n == 0 {
            return Err(Error::EmptyBatch { what: "gradient_variance" });
        }
        let n = self.n as f64;
        let mean_sq_norm = self.sum_sq_norm / n;
        let sq_norm_of_mean = self.sum.iter().map(|s| (s / n).powi(2)).sum::<f64>();
        Ok(GradientVariance {
            trace: mean_sq_norm - sq_norm_of_mean,
            mean_sq_norm,
            sq_norm_of_mean,
            n: self.n,
        })
    }
}

struct Flatten<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    out: Vec<f64>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        match value.grad(self.grads) {
            Some(g) => self.out.extend(g.into_data().iter::<f64>()),
            None => self.out.extend(std::iter::repeat_n(0.0, value.shape().num_elements())),
        }
    }
}

/// The gradient of every float parameter of `module`, flattened in visiting order (zeros for
/// parameters the loss does not reach). One host read per parameter tensor.
pub fn flatten_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &B::Gradients,
) -> Vec<f64> {
    let mut v = Flatten::<B> { grads, out: Vec::new() };
    module.visit(&mut v);
    v.out
}

/// Per-sample gradients `g_i = ∇(−A_i log π(x_i))` of a batch, with `log_pi_of(i)` scoring
/// sample i alone (a `[1]` tensor; each needs its own graph, so this costs one forward and one
/// backward per sample: use it on a monitoring minibatch, as the paper does every 25 steps).
pub fn per_sample_gradients<B, M, F>(
    module: &M,
    advantages: &[f64],
    mut log_pi_of: F,
) -> Vec<Vec<f64>>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    F: FnMut(usize) -> Tensor<B, 1>,
{
    advantages
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            let loss = log_pi_of(i).sum().mul_scalar(-a);
            let grads = loss.backward();
            flatten_gradients(module, &grads)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn trace_of_covariance() {
        let g = vec![vec![1.0, 0.0], vec![3.0, 2.0]];
        let v = gradient_variance(&g).unwrap();
        // mean (2,1); mean ‖g‖² = (1 + 13)/2 = 7; ‖mean‖² = 5; trace = var(x)+var(y) = 1+1.
        assert_relative_eq!(v.trace, 2.0);
        assert_relative_eq!(v.mean_sq_norm, 7.0);
        assert!(gradient_variance(&[]).is_err());
        assert!(gradient_variance(&[vec![1.0], vec![1.0, 2.0]]).is_err());
    }
}
