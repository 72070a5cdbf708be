//! The one sampler: batched, KV-cached, seeded ancestral sampling with temperature, top-k
//! and top-p ([`SamplingConfig`], [`Gpt2::sample`], [`Samples`]).

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, FloatDType, Int, Tensor, TensorData};
use rand::{Rng, RngCore};
use rayon::prelude::*;

use crate::cache::KvCache;
use crate::error::{Error, Result};
use crate::model::Gpt2;
use crate::scoring::SequenceBatch;
use crate::warp::Warper;

/// When a sequence stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Exactly `max_new_tokens` tokens per sequence, end-of-sequence tokens included like any
    /// other (the paper's setting: 40 new tokens, no stop).
    FixedLength,
    /// A sequence stops after it emits the model's `eos_token_id` (which is kept and scored);
    /// later positions are padding (masked). Decoding ends early when every row has stopped.
    AtEos,
}

/// Settings of one sampling call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingConfig {
    /// Number of new tokens (the maximum in [`StopMode::AtEos`]).
    pub max_new_tokens: usize,
    /// Temperature, top-k, top-p.
    pub warper: Warper,
    /// Fixed length or stop at end-of-sequence.
    pub stop: StopMode,
    /// Id written at padding positions (left of short prompts, after a stop). `None` uses the
    /// model's `eos_token_id` (Hugging Face's choice for GPT-2). Never attended to or scored.
    pub pad_token_id: Option<u32>,
}

impl SamplingConfig {
    /// Ancestral sampling of exactly `n` new tokens.
    pub fn fixed_length(n: usize) -> Self {
        Self {
            max_new_tokens: n,
            warper: Warper::ANCESTRAL,
            stop: StopMode::FixedLength,
            pad_token_id: None,
        }
    }

    /// Ancestral sampling of up to `n` new tokens, stopping at end-of-sequence.
    pub fn until_eos(n: usize) -> Self {
        Self { stop: StopMode::AtEos, ..Self::fixed_length(n) }
    }

    /// The same config with another warper.
    pub fn with_warper(self, warper: Warper) -> Self {
        Self { warper, ..self }
    }
}

/// The result of [`Gpt2::sample`].
///
/// Host arrays are row-major. With `P` the padded prompt length and `T` the number of
/// decoding steps run (`max_new_tokens`, or fewer if every row stopped at EOS), rows are
/// `[padding, prompt, generated]` of length `P + T`.
#[derive(Debug, Clone)]
pub struct Samples<B: Backend> {
    /// The sequences as a scoring batch (`[batch, P + T]`), generated tokens marked in
    /// `score_mask`: `model.log_prob(&samples.batch)` rescores them.
    pub batch: SequenceBatch<B>,
    /// Token ids `[batch, P + T]`.
    pub token_ids: Vec<u32>,
    /// `true` for real tokens `[batch, P + T]`.
    pub attention_mask: Vec<bool>,
    /// Padded prompt length `P`.
    pub prompt_len: usize,
    /// Number of decoding steps `T`.
    pub steps: usize,
    /// `true` where a token was generated (not padding after a stop), `[batch, T]`.
    pub generated_mask: Vec<bool>,
    /// Per-token log-probs under the distribution actually sampled from (after temperature,
    /// top-k, top-p), `[batch, T]`, 0 where not generated. Importance weights need these.
    pub sampling_log_probs: Vec<f32>,
    /// Per-token log-probs under the unmodified model, `[batch, T]`, 0 where not generated.
    pub model_log_probs: Vec<f32>,
}

impl<B: Backend> Samples<B> {
    /// Number of sequences.
    pub fn batch_size(&self) -> usize {
        // Every prompt has at least one token, so the row width is positive.
        self.token_ids.len() / (self.prompt_len + self.steps).max(1)
    }

    /// The generated tokens of each row (through its end-of-sequence token, if any).
    pub fn generated(&self) -> Vec<Vec<u32>> {
        let width = self.prompt_len + self.steps;
        (0..self.batch_size())
            .map(|b| {
                (0..self.steps)
                    .filter(|&t| self.generated_mask[b * self.steps + t])
                    .map(|t| self.token_ids[b * width + self.prompt_len + t])
                    .collect()
            })
            .collect()
    }

    /// Sequence log-probs under the sampling distribution, `[batch]`.
    pub fn sequence_sampling_log_probs(&self) -> Vec<f32> {
        row_sums(&self.sampling_log_probs, self.batch_size(), self.steps)
    }

    /// Sequence log-probs under the unmodified model, `[batch]`.
    pub fn sequence_model_log_probs(&self) -> Vec<f32> {
        row_sums(&self.model_log_probs, self.batch_size(), self.steps)
    }
}

fn row_sums(x: &[f32], batch: usize, width: usize) -> Vec<f32> {
    if width == 0 {
        return vec![0.0; batch];
    }
    x.chunks(width).map(|r| r.iter().map(|&v| f64::from(v)).sum::<f64>() as f32).collect()
}

/// Draws an index with probability `weights[i] / total` by inverting the CDF at a uniform
/// draw; falls back to the last positive weight against rounding.
fn draw_weighted(weights: &[f64], total: f64, u: f64) -> usize {
    let target = u * total;
    let mut acc = 0.0;
    let mut last = 0;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            acc += w;
            last = i;
            if target < acc {
                return i;
            }
        }
    }
    last
}

/// Draws an index from log-probabilities (`-inf` = excluded) by inverting the CDF at the
/// uniform draw `u`; falls back to the last allowed index against rounding.
fn draw(log_probs: &[f64], u: f64) -> usize {
    let mut acc = 0.0;
    let mut last = 0;
    for (i, &lp) in log_probs.iter().enumerate() {
        if lp > f64::NEG_INFINITY {
            acc += lp.exp();
            last = i;
            if u < acc {
                return i;
            }
        }
    }
    last
}

/// One row's draw: the token, its log-prob under the warped distribution and under the model.
struct Drawn {
    token: usize,
    warped_lp: f64,
    model_lp: f64,
}

/// Per-thread buffers for [`RowScratch::draw`].
#[derive(Default)]
struct RowScratch {
    weights: Vec<f64>,
    warped: Vec<f64>,
    scratch: Vec<usize>,
}

impl RowScratch {
    /// Draws the next token of one row from its logits at the uniform `u`.
    fn draw(&mut self, row: &[f32], u: f64, identity: bool, warper: &Warper) -> Drawn {
        // Unnormalised probabilities exp(x - max): one exp per entry serves both the model's
        // log-sum-exp and, without warping, the draw.
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        self.weights.clear();
        self.weights.extend(row.iter().map(|&x| f64::from(x - max).exp()));
        let total: f64 = self.weights.iter().sum();
        let lse = f64::from(max) + total.ln();
        let (token, warped_lp) = if identity {
            let token = draw_weighted(&self.weights, total, u);
            (token, f64::from(row[token]) - lse)
        } else {
            warper.log_probs(row, &mut self.warped, &mut self.scratch);
            let token = draw(&self.warped, u);
            (token, self.warped[token])
        };
        Drawn { token, warped_lp, model_lp: f64::from(row[token]) - lse }
    }
}

impl<B: Backend> Gpt2<B> {
    /// Samples continuations of `prompts` (token ids, possibly of different lengths) as one
    /// batch, with KV-cached incremental decoding.
    ///
    /// Prompts are left-padded; the attention mask and position ids make each row's samples
    /// independent of the others. The KV cache is allocated once at `P + max_new_tokens`.
    /// Each step reads the batch's next-token logits back to the host once; warping and
    /// drawing happen there, from `rng` only (never burn's global RNG), so the same seed gives
    /// the same samples on the same backend.
    ///
    /// Dropout: on an autodiff backend with positive dropout the model would drop units and
    /// record a graph; sample from `model.valid()` (or a model without dropout).
    ///
    /// Errors on an empty or out-of-vocabulary prompt, invalid warper settings, or if the
    /// longest prompt plus `max_new_tokens` exceeds `n_positions`.
    pub fn sample(
        &self,
        prompts: &[Vec<u32>],
        config: &SamplingConfig,
        rng: &mut dyn RngCore,
    ) -> Result<Samples<B>> {
        let model_config = self.config();
        let vocab = model_config.vocab_size;
        config.warper.validate()?;
        let eos = u32::try_from(model_config.eos_token_id).ok().filter(|&e| (e as usize) < vocab);
        let pad = match config.pad_token_id {
            Some(p) => p,
            None => eos.unwrap_or(0),
        };
        if pad as usize >= vocab {
            return Err(Error::Input(format!(
                "pad_token_id {pad} is not below vocab_size {vocab}"
            )));
        }
        if config.stop == StopMode::AtEos && eos.is_none() {
            return Err(Error::Input(format!(
                "stop at EOS needs eos_token_id {} below vocab_size {vocab}",
                model_config.eos_token_id
            )));
        }
        let batch = prompts.len();
        if batch == 0 {
            return Err(Error::Input("no prompts".into()));
        }
        for (b, p) in prompts.iter().enumerate() {
            if p.is_empty() {
                return Err(Error::Input(format!("prompt {b} is empty")));
            }
            if let Some(&bad) = p.iter().find(|&&t| t as usize >= vocab) {
                return Err(Error::Input(format!(
                    "prompt {b} has token {bad} >= vocab_size {vocab}"
                )));
            }
        }
        let prompt_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let capacity = prompt_len + config.max_new_tokens;
        if capacity > model_config.n_positions {
            return Err(Error::Input(format!(
                "prompt length {prompt_len} + {} new tokens exceeds n_positions {}",
                config.max_new_tokens, model_config.n_positions
            )));
        }

        let device = self.wte.weight.val().device();
        // Host state: ids and mask grow by one column per step ([batch, capacity], row-major).
        let mut ids = vec![pad; batch * capacity];
        let mut mask = vec![false; batch * capacity];
        for (b, p) in prompts.iter().enumerate() {
            let start = b * capacity + prompt_len - p.len();
            ids[start..start + p.len()].copy_from_slice(p);
            mask[start..start + p.len()].fill(true);
        }
        let steps_max = config.max_new_tokens;
        let mut generated_mask = vec![false; batch * steps_max];
        let mut sampling_lp = vec![0.0f32; batch * steps_max];
        let mut model_lp = vec![0.0f32; batch * steps_max];
        let mut finished = vec![false; batch];

        let mut cache = KvCache::new(model_config, batch, capacity, &device);
        let column = |ids: &[u32], range: std::ops::Range<usize>| -> Tensor<B, 2, Int> {
            let width = range.len();
            let data: Vec<i64> = (0..batch)
                .flat_map(|b| {
                    ids[b * capacity + range.start..b * capacity + range.end]
                        .iter()
                        .map(|&x| i64::from(x))
                })
                .collect();
            Tensor::from_data(TensorData::new(data, [batch, width]), &device)
        };
        let mask_tensor = |mask: &[bool], len: usize| -> Tensor<B, 2, Bool> {
            let data: Vec<bool> = (0..batch)
                .flat_map(|b| mask[b * capacity..b * capacity + len].iter().copied())
                .collect();
            Tensor::from_data(TensorData::new(data, [batch, len]), &device)
        };

        let identity = config.warper.is_identity();
        let mut steps = 0;
        let mut input = column(&ids, 0..prompt_len);
        for step in 0..steps_max {
            let filled = prompt_len + step;
            let hidden =
                self.forward_hidden(input, Some(mask_tensor(&mask, filled)), Some(&mut cache));
            let [_, seq, d] = hidden.dims();
            let logits = self
                .lm_head(hidden.slice([0..batch, seq - 1..seq, 0..d]))
                .cast(FloatDType::F32)
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .map_err(|e| Error::Input(format!("reading logits: {e:?}")))?;
            // One uniform per unfinished row, drawn in row order (the same stream as a serial
            // loop), then the rows' softmax, warping and draws in parallel.
            let uniforms: Vec<Option<f64>> =
                finished.iter().map(|&f| (!f).then(|| rng.random::<f64>())).collect();
            let drawn: Vec<Option<Drawn>> = logits
                .par_chunks(vocab)
                .zip(uniforms.par_iter())
                .map_init(RowScratch::default, |scratch, (row, u)| {
                    u.map(|u| scratch.draw(row, u, identity, &config.warper))
                })
                .collect();
            for (b, d) in drawn.into_iter().enumerate() {
                let Some(Drawn { token, warped_lp, model_lp: lp }) = d else { continue };
                let i = b * steps_max + step;
                generated_mask[i] = true;
                sampling_lp[i] = warped_lp as f32;
                model_lp[i] = lp as f32;
                ids[b * capacity + filled] = token as u32;
                mask[b * capacity + filled] = true;
                if config.stop == StopMode::AtEos && Some(token as u32) == eos {
                    finished[b] = true;
                }
            }
            steps = step + 1;
            if finished.iter().all(|&f| f) {
                break;
            }
            input = column(&ids, filled..filled + 1);
        }

        // Trim to the steps actually run.
        let width = prompt_len + steps;
        let trim = |v: &[u32]| -> Vec<u32> {
            (0..batch).flat_map(|b| v[b * capacity..b * capacity + width].iter().copied()).collect()
        };
        let token_ids = trim(&ids);
        let attention_mask: Vec<bool> = (0..batch)
            .flat_map(|b| mask[b * capacity..b * capacity + width].iter().copied())
            .collect();
        let keep = |v: &[f32]| -> Vec<f32> {
            (0..batch)
                .flat_map(|b| v[b * steps_max..b * steps_max + steps].iter().copied())
                .collect()
        };
        let generated_mask: Vec<bool> = (0..batch)
            .flat_map(|b| generated_mask[b * steps_max..b * steps_max + steps].iter().copied())
            .collect();
        let score_mask: Vec<bool> = (0..batch)
            .flat_map(|b| {
                let g = &generated_mask[b * steps..(b + 1) * steps];
                std::iter::repeat_n(false, prompt_len).chain(g.iter().copied())
            })
            .collect();
        let scoring = SequenceBatch::from_host(
            &token_ids,
            &attention_mask,
            &score_mask,
            [batch, width],
            &device,
        )?;
        Ok(Samples {
            batch: scoring,
            token_ids,
            attention_mask,
            prompt_len,
            steps,
            generated_mask,
            sampling_log_probs: keep(&sampling_lp),
            model_log_probs: keep(&model_lp),
        })
    }

    /// Per-token log-probs of the batch's tokens under the **warped** next-token distribution
    /// (temperature, top-k, top-p applied exactly as when sampling), `[batch, seq]` row-major
    /// on the host, 0 where `score_mask` is false, `-inf` for a token the warper removes.
    ///
    /// Not differentiable (the warped proposal q enters importance weights as a constant).
    /// One forward pass; the logits are read back to the host once.
    pub fn warped_token_log_probs(
        &self,
        batch: &SequenceBatch<B>,
        warper: &Warper,
    ) -> Result<Vec<f32>> {
        warper.validate()?;
        let [b, seq] = batch.dims();
        let mut out = vec![0.0f32; b * seq];
        if seq < 2 {
            return Ok(out);
        }
        let vocab = self.config().vocab_size;
        let logits = self
            .forward(batch.input_ids.clone(), Some(batch.attention_mask.clone()), None)
            .cast(FloatDType::F32)
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| Error::Input(format!("reading logits: {e:?}")))?;
        let ids: Vec<i64> = batch
            .input_ids
            .to_data()
            .convert::<i64>()
            .into_vec()
            .map_err(|e| Error::Input(format!("{e:?}")))?;
        let scored: Vec<bool> =
            batch.score_mask.to_data().into_vec().map_err(|e| Error::Input(format!("{e:?}")))?;
        let (mut row, mut scratch) = (Vec::new(), Vec::new());
        for r in 0..b {
            for t in 1..seq {
                let i = r * seq + t;
                if scored[i] {
                    let prev = (r * seq + t - 1) * vocab;
                    warper.log_probs(&logits[prev..prev + vocab], &mut row, &mut scratch);
                    out[i] = row[ids[i] as usize] as f32;
                }
            }
        }
        Ok(out)
    }
}
