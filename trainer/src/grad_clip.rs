//! Clipping the gradient's global L2 norm (over all parameters together, as PyTorch's
//! `clip_grad_norm_`; burn's `GradientClippingConfig::Norm` clips each tensor on its own).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

/// The global L2 norm of all gradients, on the device.
pub(crate) fn global_grad_norm<B: AutodiffBackend, M: Module<B>>(
    model: &M,
    grads: &GradientsParams,
) -> Tensor<B::InnerBackend, 1> {
    struct SumSquares<'a, B: AutodiffBackend> {
        grads: &'a GradientsParams,
        sum: Option<Tensor<B::InnerBackend, 1>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for SumSquares<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                let s = g.square().sum();
                self.sum = Some(match self.sum.take() {
                    Some(acc) => acc + s,
                    None => s,
                });
            }
        }
    }
    let mut visitor = SumSquares::<B> { grads, sum: None };
    model.visit(&mut visitor);
    visitor.sum.expect("the model has parameters with gradients").sqrt()
}

/// Multiplies every gradient by `scale` (a one-element tensor, so no host read-back).
struct ScaleGrads<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    scale: Tensor<B::InnerBackend, 1>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for ScaleGrads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let scale: Tensor<B::InnerBackend, D> = self.scale.clone().reshape([1; D]);
            self.grads.register(param.id, g * scale);
        }
    }
}

/// Scales `grads` so that their global norm (`norm`, from [`global_grad_norm`]) is at most
/// `max_norm`; on the device, without a host read.
pub(crate) fn clip_to<B: AutodiffBackend, M: Module<B>>(
    model: &M,
    grads: &mut GradientsParams,
    norm: Tensor<B::InnerBackend, 1>,
    max_norm: f64,
) {
    let scale = (norm.add_scalar(1e-6).recip() * max_norm).clamp_max(1.0);
    model.visit(&mut ScaleGrads::<B> { grads, scale });
}
