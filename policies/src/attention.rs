//! Causal multi-head self-attention (`h.N.attn`).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use crate::cache::LayerCache;

/// GPT-2's attention: one fused `c_attn` projection to queries, keys and values, scaled
/// dot-product attention with scale `1/sqrt(head_dim)`, and the output projection `c_proj`.
///
/// Field names mirror the Hugging Face keys (`attn.c_attn`, `attn.c_proj`); both weights are
/// `[in, out]` like Hugging Face's Conv1D, which is burn's `Linear` layout.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// Query/key/value projection, weight `[n_embd, 3 * n_embd]`.
    pub c_attn: Linear<B>,
    /// Output projection, weight `[n_embd, n_embd]`.
    pub c_proj: Linear<B>,
    /// Dropout on the attention probabilities.
    pub attn_dropout: Dropout,
    /// Dropout on the output projection.
    pub resid_dropout: Dropout,
    /// Number of heads.
    pub n_head: usize,
}

impl<B: Backend> Attention<B> {
    pub(crate) fn new(
        c_attn: Linear<B>,
        c_proj: Linear<B>,
        n_head: usize,
        attn_pdrop: f64,
        resid_pdrop: f64,
    ) -> Self {
        Self {
            c_attn,
            c_proj,
            attn_dropout: DropoutConfig::new(attn_pdrop).init(),
            resid_dropout: DropoutConfig::new(resid_pdrop).init(),
            n_head,
        }
    }

    /// Attention over the current positions (and the cached past ones).
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, n_embd]`, the new positions.
    /// - `bias`: `[batch, 1, seq, past + seq]`, additive: 0 where a query may attend to a
    ///   key, a large negative number where it may not (causal or padding).
    /// - output: `[batch, seq, n_embd]`.
    ///
    /// With `cache`, the new keys/values are written at `past..past + seq` and the queries
    /// attend to positions `0..past + seq`; without it `past` must be 0.
    pub(crate) fn forward(
        &self,
        x: Tensor<B, 3>,
        bias: Tensor<B, 4>,
        past: usize,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let [batch, seq, n_embd] = x.dims();
        let head_dim = n_embd / self.n_head;
        let qkv = crate::model::linear_tokens(&self.c_attn, x);
        let heads = |i: usize| {
            qkv.clone()
                .slice([0..batch, 0..seq, i * n_embd..(i + 1) * n_embd])
                .reshape([batch, seq, self.n_head, head_dim])
                .swap_dims(1, 2)
        };
        let (q, k, v) = (heads(0), heads(1), heads(2));
        let (k, v) = match cache {
            Some(cache) => cache.update(past, k, v),
            None => (k, v),
        };
        let dropout_active = self.attn_dropout.prob > 0.0 && B::ad_enabled(&q.device());
        let context = if dropout_active {
            // Spelled out so that dropout can act on the probabilities.
            let scale = 1.0 / (head_dim as f64).sqrt();
            let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale) + bias;
            let probs = self.attn_dropout.forward(softmax(scores, 3));
            probs.matmul(v)
        } else {
            // The backend's fused kernel; the default scale is 1/sqrt(head_dim).
            attention(q, k, v, None, Some(bias), AttentionModuleOptions::default())
        };
        let context = context.swap_dims(1, 2).reshape([batch, seq, n_embd]);
        self.resid_dropout.forward(crate::model::linear_tokens(&self.c_proj, context))
    }
}
