//! [`Policy`]: the seam between language models and the estimators.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use rand::RngCore;

use crate::error::Result;
use crate::model::Gpt2;
use crate::sampler::{Samples, SamplingConfig};
use crate::scoring::SequenceBatch;

/// A language model that samples continuations and scores given ones.
///
/// Implemented by [`Gpt2`]; estimators and the trainer depend on this trait, not on GPT-2.
pub trait Policy<B: Backend> {
    /// Samples continuations of `prompts` (see [`Gpt2::sample`]).
    fn sample(
        &self,
        prompts: &[Vec<u32>],
        config: &SamplingConfig,
        rng: &mut dyn RngCore,
    ) -> Result<Samples<B>>;

    /// Sequence log-probs of the scored tokens, `[batch]`, differentiable on an autodiff
    /// backend (see [`Gpt2::log_prob`]).
    fn log_prob(&self, batch: &SequenceBatch<B>) -> Tensor<B, 1>;

    /// Per-token log-probs, `[batch, seq]` (see [`Gpt2::token_log_probs`]).
    fn token_log_probs(&self, batch: &SequenceBatch<B>) -> Tensor<B, 2>;
}

impl<B: Backend> Policy<B> for Gpt2<B> {
    fn sample(
        &self,
        prompts: &[Vec<u32>],
        config: &SamplingConfig,
        rng: &mut dyn RngCore,
    ) -> Result<Samples<B>> {
        Gpt2::sample(self, prompts, config, rng)
    }

    fn log_prob(&self, batch: &SequenceBatch<B>) -> Tensor<B, 1> {
        Gpt2::log_prob(self, batch)
    }

    fn token_log_probs(&self, batch: &SequenceBatch<B>) -> Tensor<B, 2> {
        Gpt2::token_log_probs(self, batch)
    }
}
