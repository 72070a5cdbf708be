//! A value head for actor-critic fine-tuning: Ziegler et al.'s KL-control with PPO learns
//! `V(x_{<t})`, the expected return from each prefix, from the policy's final hidden states.
//! As gdc's and trl's `ValueHead`: dropout, then one linear map of `n_embd` to a scalar.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::SequenceBatch;
use crate::model::{INIT_STD, linear_tokens};

/// `V = w · dropout(h) + b` on each position's final hidden state `h` (after `ln_f`).
#[derive(Module, Debug)]
pub struct ValueHead<B: Backend> {
    summary: Linear<B>,
    dropout: Dropout,
}

impl<B: Backend> ValueHead<B> {
    /// A head for hidden size `n_embd` with GPT-2's initialisation of a linear layer (weights
    /// normal with standard deviation 0.02, bias 0), as gdc's `GPT2HeadWithValueModel` gets it
    /// from `init_weights()`; the weights are drawn from ChaCha8 seeded with `seed`, so that
    /// every peer of a data-parallel run builds the same head. Dropout `dropout` before the map
    /// (GPT-2's `summary_first_dropout`: 0.1), active only while gradients are recorded.
    pub fn init_seeded(n_embd: usize, dropout: f64, device: &B::Device, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let normal = Normal::new(0.0f32, INIT_STD as f32).expect("a positive standard deviation");
        let weight: Vec<f32> = (0..n_embd).map(|_| normal.sample(&mut rng)).collect();
        let weight = Tensor::from_data(TensorData::new(weight, [n_embd, 1]), device);
        Self {
            summary: Linear {
                weight: Param::from_tensor(weight),
                bias: Some(Param::from_tensor(Tensor::zeros([1], device))),
            },
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    /// One value per position.
    ///
    /// # Shapes
    /// - `hidden`: `[batch, seq, n_embd]`; output `[batch, seq]`.
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let [b, s, _] = hidden.dims();
        linear_tokens(&self.summary, self.dropout.forward(hidden)).reshape([b, s])
    }

    /// Values aligned with [`Gpt2::token_log_probs`](crate::Gpt2::token_log_probs): position
    /// `t` holds `V` of the prefix before token `t` (the hidden state at `t − 1`, the one that
    /// predicts token `t`); 0 at position 0 and wherever `score_mask` is false.
    ///
    /// # Shapes
    /// - `hidden`: `[batch, seq, n_embd]` of `batch`'s sequences; output `[batch, seq]`.
    pub fn token_values(&self, hidden: Tensor<B, 3>, batch: &SequenceBatch<B>) -> Tensor<B, 2> {
        let [b, seq, d] = hidden.dims();
        let device = hidden.device();
        if seq < 2 {
            return Tensor::zeros([b, seq], &device);
        }
        let v = self.forward(hidden.slice([0..b, 0..seq - 1, 0..d]));
        let v = Tensor::cat(vec![Tensor::zeros([b, 1], &device), v], 1);
        v.mask_fill(batch.score_mask.clone().bool_not(), 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Gpt2Config;
    use burn::backend::Flex;

    type B = Flex;

    #[test]
    fn values_align_with_token_log_probs() {
        let device = Default::default();
        let model = Gpt2Config::tiny().init_seeded::<B>(&device, 1);
        let head = ValueHead::<B>::init_seeded(model.config().n_embd, 0.1, &device, 2);
        let batch =
            SequenceBatch::<B>::from_rows(&[vec![3, 5, 7, 2], vec![4, 6, 1, 9]], &[1, 2], &device)
                .unwrap();
        let (lp, hidden) = model.token_log_probs_and_hidden(&batch);
        let lp_only = model.token_log_probs(&batch);
        assert_eq!(lp.into_data(), lp_only.into_data());
        let all = head.forward(hidden.clone()).into_data().to_vec::<f32>().unwrap();
        let v = head.token_values(hidden, &batch).into_data().to_vec::<f32>().unwrap();
        // Row 0: prompt 1 token, tokens 1..4 scored; row 1: prompt 2 tokens, tokens 2..4.
        assert_eq!(&v[0..4], &[0.0, all[0], all[1], all[2]]);
        assert_eq!(&v[4..8], &[0.0, 0.0, all[5], all[6]]);
        // The same seed gives the same head.
        let again = ValueHead::<B>::init_seeded(model.config().n_embd, 0.1, &device, 2);
        assert_eq!(head.summary.weight.val().into_data(), again.summary.weight.val().into_data());
        let w = head.summary.weight.val().into_data().to_vec::<f32>().unwrap();
        let std = (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt();
        assert!((0.01..0.03).contains(&std), "{std}");
    }
}
