//! [`Gpt2`]: the transformer and its tied language-model head.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::sigmoid;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::attention::Attention;
use crate::cache::{KvCache, LayerCache};
use crate::config::Gpt2Config;

/// Standard deviation of GPT-2's weight initialisation (`initializer_range`).
pub(crate) const INIT_STD: f64 = 0.02;

/// Additive attention bias for a forbidden (future or padding) key. Finite rather than
/// -inf so that a query with no visible key (a left-padding position) gets a uniform
/// distribution instead of NaN, which would leak into real positions through 0 * NaN.
/// exp(-1e9) is exactly 0 in f32, so visible keys are unaffected.
const MASKED_BIAS: f32 = -1.0e9;

/// GPT-2's feed-forward block (`h.N.mlp`): `c_fc`, gelu_new, `c_proj`, dropout.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// Expansion, weight `[n_embd, inner]`.
    pub c_fc: Linear<B>,
    /// Projection back, weight `[inner, n_embd]`.
    pub c_proj: Linear<B>,
    /// Residual dropout.
    pub dropout: Dropout,
}

impl<B: Backend> Mlp<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        // gelu_new is GELU's tanh approximation.
        let h = gelu_new(linear_tokens(&self.c_fc, x));
        self.dropout.forward(linear_tokens(&self.c_proj, h))
    }
}

/// `layer` applied to every token of `x` `[batch, seq, in]` as one `[batch·seq, in]` matrix
/// product. burn's `Linear` on a 3-D input broadcasts its weight over a batched matmul, which
/// burn-flex runs as one `[seq, in]` product per row: while sampling (seq = 1) that is a
/// matrix-vector product per row, each reading the whole weight.
pub(crate) fn linear_tokens<B: Backend>(layer: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [batch, seq, d] = x.dims();
    let y = layer.forward(x.reshape([batch * seq, d]));
    let out = y.dims()[1];
    y.reshape([batch, seq, out])
}

/// `gelu_new`: `x/2 · (1 + tanh(u))` with `u = √(2/π) (x + 0.044715 x³)`, GELU's tanh
/// approximation, computed as the identical `x · σ(2u)`.
///
/// burn's `gelu_approximate` costs about a sixth of a CPU training step on the flex backend:
/// its `powf(3)`, and `tanh` (scalar `expm1`) with extra passes; `σ` is one `exp` per element,
/// with a fused backward.
fn gelu_new<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    const TWO_SQRT_2_OVER_PI: f64 =
        2.0 * core::f64::consts::FRAC_2_SQRT_PI * core::f64::consts::FRAC_1_SQRT_2;
    let two_u = (x.clone() * x.clone() * 0.044715 + 1.0) * x.clone() * TWO_SQRT_2_OVER_PI;
    x * sigmoid(two_u)
}

/// One pre-norm transformer block (`h.N`).
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// Layer norm before attention.
    pub ln_1: LayerNorm<B>,
    /// Causal self-attention.
    pub attn: Attention<B>,
    /// Layer norm before the MLP.
    pub ln_2: LayerNorm<B>,
    /// Feed-forward block.
    pub mlp: Mlp<B>,
}

impl<B: Backend> Block<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        bias: Tensor<B, 4>,
        past: usize,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let x = x.clone() + self.attn.forward(self.ln_1.forward(x), bias, past, cache);
        x.clone() + self.mlp.forward(self.ln_2.forward(x))
    }
}

/// GPT-2 (Hugging Face `GPT2LMHeadModel`) with the LM head tied to the token embedding.
///
/// Field names mirror the checkpoint keys (`wte`, `wpe`, `h.N.ln_1`, `h.N.attn.c_attn`, …,
/// `ln_f`), so [`crate::checkpoint`] maps them one to one (LayerNorm `weight`/`bias` are
/// burn's `gamma`/`beta`).
///
/// Dropout follows burn's rule: it acts only when the backend records gradients
/// (`B::ad_enabled`) and its probability is positive. Scoring on `model.valid()` (the inner
/// backend) or on a model from [`Gpt2::without_dropout`] is deterministic.
#[derive(Module, Debug)]
pub struct Gpt2<B: Backend> {
    /// Token embedding `[vocab_size, n_embd]`, also the LM head (tied).
    pub wte: Embedding<B>,
    /// Position embedding `[n_positions, n_embd]`.
    pub wpe: Embedding<B>,
    /// Dropout on the embeddings.
    pub drop: Dropout,
    /// The transformer blocks.
    pub h: Vec<Block<B>>,
    /// Final layer norm.
    pub ln_f: LayerNorm<B>,
    #[module(skip)]
    config: Gpt2Config,
}

/// Host-side normal sampler for initialisation.
struct Init {
    rng: ChaCha8Rng,
}

impl Init {
    fn normal<B: Backend, const D: usize>(
        &mut self,
        shape: [usize; D],
        std: f64,
        device: &B::Device,
    ) -> Param<Tensor<B, D>> {
        let n = shape.iter().product();
        let dist = Normal::new(0.0f32, std as f32).expect("std is positive and finite");
        let values: Vec<f32> = (0..n).map(|_| dist.sample(&mut self.rng)).collect();
        Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
    }

    fn linear<B: Backend>(
        &mut self,
        d_in: usize,
        d_out: usize,
        std: f64,
        device: &B::Device,
    ) -> Linear<B> {
        Linear {
            weight: self.normal([d_in, d_out], std, device),
            bias: Some(Param::from_tensor(Tensor::zeros([d_out], device))),
        }
    }
}

pub(crate) fn layer_norm<B: Backend>(config: &Gpt2Config, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(config.n_embd).with_epsilon(config.layer_norm_epsilon).init(device)
}

impl<B: Backend> Gpt2<B> {
    pub(crate) fn init_seeded(config: &Gpt2Config, device: &B::Device, seed: u64) -> Self {
        let mut init = Init { rng: ChaCha8Rng::seed_from_u64(seed) };
        let d = config.n_embd;
        // Residual projections are scaled by 1/sqrt(2 n_layer) (GPT-2 paper; HF _init_weights).
        let resid_std = INIT_STD / ((2 * config.n_layer) as f64).sqrt();
        let wte = Embedding { weight: init.normal([config.vocab_size, d], INIT_STD, device) };
        let wpe = Embedding { weight: init.normal([config.n_positions, d], INIT_STD, device) };
        let h = (0..config.n_layer)
            .map(|_| {
                let c_attn = init.linear(d, 3 * d, INIT_STD, device);
                let c_proj = init.linear(d, d, resid_std, device);
                let c_fc = init.linear(d, config.inner_dim(), INIT_STD, device);
                let mlp_proj = init.linear(config.inner_dim(), d, resid_std, device);
                Block::assemble(config, c_attn, c_proj, c_fc, mlp_proj, device)
            })
            .collect();
        Self::assemble(config.clone(), wte, wpe, h, layer_norm(config, device))
    }

    pub(crate) fn assemble(
        config: Gpt2Config,
        wte: Embedding<B>,
        wpe: Embedding<B>,
        h: Vec<Block<B>>,
        ln_f: LayerNorm<B>,
    ) -> Self {
        Self { wte, wpe, drop: DropoutConfig::new(config.embd_pdrop).init(), h, ln_f, config }
    }

    /// The model's configuration.
    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    /// The same model with every dropout probability set to 0 (deterministic forward on any
    /// backend, autodiff included); the config records the change.
    pub fn without_dropout(self) -> Self {
        self.with_dropout(0.0, 0.0, 0.0)
    }

    /// The same model with new dropout probabilities (residual, embedding, attention).
    ///
    /// # Panics
    /// If a probability is outside `[0, 1]`.
    pub fn with_dropout(mut self, resid_pdrop: f64, embd_pdrop: f64, attn_pdrop: f64) -> Self {
        let dropout = |p: f64| DropoutConfig::new(p).init();
        self.drop = dropout(embd_pdrop);
        for block in &mut self.h {
            block.attn.attn_dropout = dropout(attn_pdrop);
            block.attn.resid_dropout = dropout(resid_pdrop);
            block.mlp.dropout = dropout(resid_pdrop);
        }
        self.config.resid_pdrop = resid_pdrop;
        self.config.embd_pdrop = embd_pdrop;
        self.config.attn_pdrop = attn_pdrop;
        self
    }

    /// Logits for every position.
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, seq]` token ids (`< vocab_size`).
    /// - `attention_mask`: `[batch, past + seq]`, `true` for real tokens and `false` for
    ///   padding, covering the cached positions too (Hugging Face's convention). Padding
    ///   goes on the left. `None` means every position is real.
    /// - output: `[batch, seq, vocab_size]`.
    ///
    /// Position ids follow Hugging Face's generate for left-padded prompts: the number of
    /// real tokens before a position (`cumsum(mask) - 1`, clamped at 0 on padding), so a
    /// padded prompt gets the same logits as the unpadded one. Padding keys are never
    /// attended to; outputs at padding positions are finite but meaningless.
    ///
    /// With `cache`, the `seq` new positions are appended after the `past = cache.len()`
    /// positions already there, and the cache grows by `seq`.
    ///
    /// # Panics
    /// If shapes disagree (mask length, cache batch), if `past + seq` exceeds the cache's
    /// capacity or `n_positions`.
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Bool>>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        self.lm_head(self.forward_hidden(input_ids, attention_mask, cache))
    }

    /// The final hidden states (after `ln_f`), for callers that need logits at only some
    /// positions ([`Gpt2::lm_head`]). Same arguments and panics as [`Gpt2::forward`].
    ///
    /// # Shapes
    /// - output: `[batch, seq, n_embd]`.
    pub fn forward_hidden(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Bool>>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let [batch, seq] = input_ids.dims();
        let device = input_ids.device();
        let past = cache.as_ref().map_or(0, |c| c.len());
        let total = past + seq;
        assert!(
            total <= self.config.n_positions,
            "sequence length {total} exceeds n_positions {}",
            self.config.n_positions
        );
        if let Some(c) = cache.as_ref() {
            assert!(
                total <= c.capacity() && c.batch_size() == batch,
                "KV cache (batch {}, capacity {}) cannot hold batch {batch} x {total} positions",
                c.batch_size(),
                c.capacity()
            );
        }

        // Causal part of the bias: query i (absolute position past + i) sees keys 0..=past+i.
        let causal: Vec<f32> = (0..seq)
            .flat_map(|i| (0..total).map(move |j| if j <= past + i { 0.0 } else { MASKED_BIAS }))
            .collect();
        let causal = Tensor::<B, 2>::from_data(TensorData::new(causal, [seq, total]), &device)
            .reshape([1, 1, seq, total]);

        let (position_ids, bias) = match attention_mask {
            Some(mask) => {
                assert_eq!(
                    mask.dims(),
                    [batch, total],
                    "attention mask must be [batch, past + seq]"
                );
                let real = mask.int();
                let positions =
                    (real.clone().cumsum(1) - 1).clamp_min(0).slice([0..batch, past..total]);
                let padding =
                    (real.float() - 1.0).mul_scalar(-MASKED_BIAS).reshape([batch, 1, 1, total]);
                (positions, causal + padding)
            }
            None => {
                let positions = Tensor::<B, 1, Int>::arange(past as i64..total as i64, &device)
                    .reshape([1, seq])
                    .expand([batch, seq]);
                (positions, causal.expand([batch, 1, seq, total]))
            }
        };

        let mut x = self.drop.forward(self.wte.forward(input_ids) + self.wpe.forward(position_ids));
        for (i, block) in self.h.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            x = block.forward(x, bias.clone(), past, layer_cache);
        }
        if let Some(c) = cache {
            c.advance(seq);
        }
        self.ln_f.forward(x)
    }

    /// The tied LM head: logits = hidden · wteᵀ.
    ///
    /// # Shapes
    /// - `hidden`: `[batch, seq, n_embd]`; output `[batch, seq, vocab_size]`.
    pub fn lm_head(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, seq, d] = hidden.dims();
        let w = self.wte.weight.val().transpose();
        let vocab = self.config.vocab_size;
        hidden.reshape([batch * seq, d]).matmul(w).reshape([batch, seq, vocab])
    }
}

impl<B: Backend> Block<B> {
    pub(crate) fn assemble(
        config: &Gpt2Config,
        c_attn: Linear<B>,
        c_proj: Linear<B>,
        c_fc: Linear<B>,
        mlp_proj: Linear<B>,
        device: &B::Device,
    ) -> Self {
        Self {
            ln_1: layer_norm(config, device),
            attn: Attention::new(
                c_attn,
                c_proj,
                config.n_head,
                config.attn_pdrop,
                config.resid_pdrop,
            ),
            ln_2: layer_norm(config, device),
            mlp: Mlp {
                c_fc,
                c_proj: mlp_proj,
                dropout: DropoutConfig::new(config.resid_pdrop).init(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;

    type B = Flex;

    fn ids(rows: &[&[i64]], device: &burn::backend::flex::FlexDevice) -> Tensor<B, 2, Int> {
        let seq = rows[0].len();
        let flat: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), seq]), device)
    }

    fn host<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().into_vec().unwrap()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn kv_cache_decoding_matches_full_forward() {
        let device = Default::default();
        let config = Gpt2Config::tiny();
        let model = config.init_seeded::<B>(&device, 3);
        let rows: [&[i64]; 2] = [&[1, 4, 9, 2, 7, 11], &[3, 3, 14, 0, 5, 8]];
        let full = host(model.forward(ids(&rows, &device), None, None));

        let mut cache = KvCache::new(&config, 2, 6, &device);
        let mut pieces = Vec::new();
        for (start, end) in [(0, 3), (3, 4), (4, 6)] {
            let part: Vec<&[i64]> = rows.iter().map(|r| &r[start..end]).collect();
            let logits = model.forward(ids(&part, &device), None, Some(&mut cache));
            pieces.push(logits);
        }
        assert_eq!(cache.len(), 6);
        let incremental = host(Tensor::cat(pieces, 1));
        let err = max_diff(&full, &incremental);
        assert!(err < 1e-5, "max diff {err}");
    }

    #[test]
    fn left_padding_does_not_change_real_positions() {
        let device = Default::default();
        let config = Gpt2Config::tiny();
        let model = config.init_seeded::<B>(&device, 4);
        let alone = host(model.forward(ids(&[&[5, 6, 7]], &device), None, None));
        let padded_ids = ids(&[&[0, 0, 5, 6, 7], &[1, 2, 3, 4, 5]], &device);
        let mask = Tensor::<B, 2, Bool>::from_data(
            TensorData::new(
                vec![false, false, true, true, true, true, true, true, true, true],
                [2, 5],
            ),
            &device,
        );
        let padded = host(model.forward(padded_ids, Some(mask.clone()), None));
        let v = config.vocab_size;
        let err = max_diff(&alone, &padded[2 * v..5 * v]);
        assert!(err < 1e-5, "max diff {err}");
        assert!(padded.iter().all(|x| x.is_finite()));

        // The same through the cache: prefill the padded prompt, then one step.
        let mut cache = KvCache::new(&config, 2, 6, &device);
        model.forward(
            ids(&[&[0, 0, 5, 6, 7], &[1, 2, 3, 4, 5]], &device),
            Some(mask),
            Some(&mut cache),
        );
        let step_mask = Tensor::<B, 2, Bool>::from_data(
            TensorData::new(
                vec![false, false, true, true, true, true, true, true, true, true, true, true],
                [2, 6],
            ),
            &device,
        );
        let step =
            host(model.forward(ids(&[&[9], &[9]], &device), Some(step_mask), Some(&mut cache)));
        let alone4 = host(model.forward(ids(&[&[5, 6, 7, 9]], &device), None, None));
        let err = max_diff(&alone4[3 * v..], &step[..v]);
        assert!(err < 1e-5, "max diff {err}");
    }

    #[test]
    fn dropout_only_when_recording_gradients() {
        type AD = Autodiff<Flex>;
        let device = Default::default();
        let config = Gpt2Config::tiny().with_dropout(0.5);
        let model = config.init_seeded::<AD>(&device, 5);
        let x = || {
            Tensor::<AD, 2, Int>::from_data(TensorData::new(vec![1i64, 2, 3, 4], [1, 4]), &device)
        };
        let h = |m: &Gpt2<AD>| -> Vec<f32> {
            m.forward(x(), None, None).into_data().convert::<f32>().into_vec().unwrap()
        };
        assert_ne!(h(&model), h(&model), "dropout should act on an autodiff backend");
        let quiet = model.clone().without_dropout();
        assert_eq!(h(&quiet), h(&quiet));
        assert_eq!(quiet.config().attn_pdrop, 0.0);
        let inner = model.valid();
        let xi = || {
            Tensor::<Flex, 2, Int>::from_data(TensorData::new(vec![1i64, 2, 3, 4], [1, 4]), &device)
        };
        let a = host(inner.forward(xi(), None, None));
        assert_eq!(a, host(inner.forward(xi(), None, None)));
        // valid() and without_dropout() compute the same function.
        let q: Vec<f32> = h(&quiet);
        assert!(max_diff(&a, &q) < 1e-6);
    }

    #[test]
    fn init_follows_gpt2() {
        let device = Default::default();
        let config = Gpt2Config::new(64, 16, 64, 8, 4);
        let model = config.init_seeded::<B>(&device, 6);
        let std = |t: Tensor<B, 2>| {
            let v = host(t);
            let n = v.len() as f32;
            let mean = v.iter().sum::<f32>() / n;
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n).sqrt()
        };
        let wte = std(model.wte.weight.val());
        assert!((wte - 0.02).abs() < 0.002, "{wte}");
        let resid = std(model.h[0].mlp.c_proj.weight.val());
        let want = 0.02 / 4.0; // 0.02 / sqrt(2 * 8)
        assert!((resid - want).abs() < 0.1 * want, "{resid} vs {want}");
        assert!(
            host(model.h[1].attn.c_attn.bias.as_ref().unwrap().val().reshape([1, 192]))
                .iter()
                .all(|&b| b == 0.0)
        );
        let again = config.init_seeded::<B>(&device, 6);
        assert_eq!(host(again.wpe.weight.val()), host(model.wpe.weight.val()));
    }
}
