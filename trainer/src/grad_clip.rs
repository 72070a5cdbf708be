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

/// The global L2 norm of `model`'s gradients and, when given, of a second module's (`other`)
/// together, as one model; when `max_norm` is set, both are scaled so that this norm is at most
/// `max_norm`. Returns the norm before clipping, on the device.
pub(crate) fn clip_together<B: AutodiffBackend, M: Module<B>, H: Module<B>>(
    model: &M,
    grads: &mut GradientsParams,
    other: Option<(&H, &mut GradientsParams)>,
    max_norm: Option<f64>,
) -> Tensor<B::InnerBackend, 1> {
    let mut norm = global_grad_norm::<B, _>(model, grads);
    if let Some((m, g)) = &other {
        let h = global_grad_norm::<B, _>(*m, g);
        norm = (norm.powi_scalar(2) + h.powi_scalar(2)).sqrt();
    }
    if let Some(max) = max_norm {
        if let Some((m, g)) = other {
            clip_to(m, g, norm.clone(), max);
        }
        clip_to(model, grads, norm.clone(), max);
    }
    norm
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::TensorData;

    use super::*;

    type AD = Autodiff<Flex>;

    /// A `Linear(2 → 1)` with bias and gradients `weight_grad` (2 values) and `bias_grad`.
    fn linear_with_grads(weight_grad: [f32; 2], bias_grad: f32) -> (Linear<AD>, GradientsParams) {
        let device = Default::default();
        let layer = LinearConfig::new(2, 1).init::<AD>(&device);
        let mut grads = GradientsParams::new();
        let w =
            Tensor::<Flex, 2>::from_data(TensorData::new(weight_grad.to_vec(), [2, 1]), &device);
        let b = Tensor::<Flex, 1>::from_data(TensorData::new(vec![bias_grad], [1]), &device);
        grads.register(layer.weight.id, w);
        grads.register(layer.bias.as_ref().unwrap().id, b);
        (layer, grads)
    }

    fn values(layer: &Linear<AD>, grads: &GradientsParams) -> Vec<f32> {
        let w = grads.get::<Flex, 2>(layer.weight.id).unwrap();
        let b = grads.get::<Flex, 1>(layer.bias.as_ref().unwrap().id).unwrap();
        [w.into_data().to_vec::<f32>().unwrap(), b.into_data().to_vec::<f32>().unwrap()].concat()
    }

    #[test]
    fn two_modules_are_clipped_as_one() {
        // ‖(3, 0, 4)‖ = 5 and ‖(0, 12, 0)‖ = 12: together 13; clipped to 6.5, both halve.
        let (a, mut ga) = linear_with_grads([3.0, 0.0], 4.0);
        let (h, mut gh) = linear_with_grads([0.0, 12.0], 0.0);
        let norm = clip_together::<AD, _, _>(&a, &mut ga, Some((&h, &mut gh)), Some(6.5));
        assert!((norm.into_scalar() - 13.0).abs() < 1e-5);
        let (va, vh) = (values(&a, &ga), values(&h, &gh));
        for (got, want) in va.iter().chain(&vh).zip([1.5, 0.0, 2.0, 0.0, 6.0, 0.0]) {
            assert!((got - want).abs() < 1e-5, "{va:?} {vh:?}");
        }
    }

    #[test]
    fn a_norm_under_the_limit_or_no_limit_leaves_the_gradients() {
        let (a, mut ga) = linear_with_grads([3.0, 0.0], 4.0);
        let norm = clip_together::<AD, _, Linear<AD>>(&a, &mut ga, None, Some(10.0));
        assert!((norm.into_scalar() - 5.0).abs() < 1e-5);
        assert_eq!(values(&a, &ga), [3.0, 0.0, 4.0]);
        let (h, mut gh) = linear_with_grads([0.0, 12.0], 0.0);
        let norm = clip_together::<AD, _, _>(&a, &mut ga, Some((&h, &mut gh)), None);
        assert!((norm.into_scalar() - 13.0).abs() < 1e-5);
        assert_eq!(values(&h, &gh), [0.0, 12.0, 0.0]);
    }
}
