//! The one sampler: batched, KV-cached, seeded ancestral sampling with temperature, top-k
//! and top-p ([`SamplingConfig`], [`Gpt2::sample`], [`Samples`]).

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, FloatDType, Int, Tensor, TensorData};
use rand::{Rng, RngCore};
use rayon::prelude::*;

use crate::cache::KvCache;
use crate::draw::draw_on_device;
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
    /// Where the next tokens are drawn.
    pub draw: Draw,
}

/// Where [`Gpt2::sample`] draws the next tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Draw {
    /// On the device when the warper is a temperature only (no top-k, no top-p), else on the
    /// host.
    #[default]
    Auto,
    /// On the host: each step's `[batch, vocab]` logits are read back, warped and drawn from
    /// in double precision. Any warper.
    Host,
    /// On the model's device: the logits never leave it, and decoding does not wait for the
    /// device at every token. Temperature only: top-k or top-p is an error.
    Device,
}

impl SamplingConfig {
    /// Ancestral sampling of exactly `n` new tokens.
    pub fn fixed_length(n: usize) -> Self {
        Self {
            max_new_tokens: n,
            warper: Warper::ANCESTRAL,
            stop: StopMode::FixedLength,
            pad_token_id: None,
            draw: Draw::Auto,
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

    /// The same config drawing tokens where `draw` says.
    pub fn with_draw(self, draw: Draw) -> Self {
        Self { draw, ..self }
    }

    /// Whether tokens are drawn on the device; an error for [`Draw::Device`] with top-k or
    /// top-p.
    pub fn draws_on_device(&self) -> Result<bool> {
        let tempered_only = self.warper.is_temperature_only();
        match self.draw {
            Draw::Auto => Ok(tempered_only),
            Draw::Host => Ok(false),
            Draw::Device if tempered_only => Ok(true),
            Draw::Device => Err(Error::Input(
                "drawing on the device supports temperature only, not top-k or top-p".into(),
            )),
        }
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
pub(crate) fn draw_weighted(weights: &[f64], total: f64, u: f64) -> usize {
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

/// The error for sampled values that cannot be read back.
fn read_error(what: &'static str) -> impl Fn(burn::tensor::DataError) -> Error {
    move |e| Error::Input(format!("reading sampled {what}: {e:?}"))
}

/// A bool tensor's values on the host, row-major. Bools are read as integers: GPU backends
/// store them as `u8` or `u32`, which `TensorData::into_vec::<bool>` refuses.
fn host_bools<B: Backend, const D: usize>(
    t: Tensor<B, D, Bool>,
) -> std::result::Result<Vec<bool>, burn::tensor::DataError> {
    let ints = t.int().into_data().convert::<i64>().into_vec::<i64>()?;
    Ok(ints.into_iter().map(|v| v != 0).collect())
}

/// How many decoding steps [`Draw::Device`] runs between two checks of whether every row
/// has stopped at end-of-sequence (each check waits for the device).
const EOS_CHECK_EVERY: usize = 8;

/// The host state of one sampling call: `[batch, capacity]` ids and mask, and the
/// `[batch, max_new_tokens]` per-step results, row-major.
struct Decoding {
    batch: usize,
    capacity: usize,
    prompt_len: usize,
    steps_max: usize,
    pad: u32,
    /// The end-of-sequence id when decoding stops at it.
    stop_at: Option<u32>,
    ids: Vec<u32>,
    mask: Vec<bool>,
    generated_mask: Vec<bool>,
    sampling_lp: Vec<f32>,
    model_lp: Vec<f32>,
    /// Decoding steps run.
    steps: usize,
}

impl Decoding {
    /// Left-pads the prompts into a `[batch, prompt_len + steps_max]` state.
    fn new(prompts: &[Vec<u32>], steps_max: usize, pad: u32, stop_at: Option<u32>) -> Self {
        let batch = prompts.len();
        let prompt_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let capacity = prompt_len + steps_max;
        let mut ids = vec![pad; batch * capacity];
        let mut mask = vec![false; batch * capacity];
        for (b, p) in prompts.iter().enumerate() {
            let start = b * capacity + prompt_len - p.len();
            ids[start..start + p.len()].copy_from_slice(p);
            mask[start..start + p.len()].fill(true);
        }
        Self {
            batch,
            capacity,
            prompt_len,
            steps_max,
            pad,
            stop_at,
            ids,
            mask,
            generated_mask: vec![false; batch * steps_max],
            sampling_lp: vec![0.0; batch * steps_max],
            model_lp: vec![0.0; batch * steps_max],
            steps: 0,
        }
    }

    /// Columns `range` of the ids, `[batch, range.len()]`.
    fn ids_tensor<B: Backend>(
        &self,
        range: std::ops::Range<usize>,
        device: &B::Device,
    ) -> Tensor<B, 2, Int> {
        let data: Vec<i64> = (0..self.batch)
            .flat_map(|b| {
                let row = b * self.capacity;
                self.ids[row + range.start..row + range.end].iter().map(|&x| i64::from(x))
            })
            .collect();
        Tensor::from_data(TensorData::new(data, [self.batch, range.len()]), device)
    }

    /// The first `len` columns of the mask, `[batch, len]`.
    fn mask_tensor<B: Backend>(&self, len: usize, device: &B::Device) -> Tensor<B, 2, Bool> {
        let data: Vec<bool> = (0..self.batch)
            .flat_map(|b| self.mask[b * self.capacity..b * self.capacity + len].iter().copied())
            .collect();
        Tensor::from_data(TensorData::new(data, [self.batch, len]), device)
    }

    /// Records row `b`'s token at step `step`.
    fn record(&mut self, b: usize, step: usize, token: u32, warped_lp: f32, model_lp: f32) {
        let i = b * self.steps_max + step;
        self.generated_mask[i] = true;
        self.sampling_lp[i] = warped_lp;
        self.model_lp[i] = model_lp;
        let j = b * self.capacity + self.prompt_len + step;
        self.ids[j] = token;
        self.mask[j] = true;
    }

    /// The result, trimmed to the steps run.
    fn into_samples<B: Backend>(self, device: &B::Device) -> Result<Samples<B>> {
        let (batch, steps, steps_max, prompt_len) =
            (self.batch, self.steps, self.steps_max, self.prompt_len);
        let width = prompt_len + steps;
        let rows = |v: &[u32]| -> Vec<u32> {
            (0..batch)
                .flat_map(|b| v[b * self.capacity..b * self.capacity + width].iter().copied())
                .collect()
        };
        let token_ids = rows(&self.ids);
        let attention_mask: Vec<bool> = (0..batch)
            .flat_map(|b| self.mask[b * self.capacity..b * self.capacity + width].iter().copied())
            .collect();
        let keep = |v: &[f32]| -> Vec<f32> {
            (0..batch)
                .flat_map(|b| v[b * steps_max..b * steps_max + steps].iter().copied())
                .collect()
        };
        let generated_mask: Vec<bool> = (0..batch)
            .flat_map(|b| self.generated_mask[b * steps_max..b * steps_max + steps].iter().copied())
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
            device,
        )?;
        Ok(Samples {
            batch: scoring,
            token_ids,
            attention_mask,
            prompt_len,
            steps,
            generated_mask,
            sampling_log_probs: keep(&self.sampling_lp),
            model_log_probs: keep(&self.model_lp),
        })
    }
}

impl<B: Backend> Gpt2<B> {
    /// Samples continuations of `prompts` (token ids, possibly of different lengths) as one
    /// batch, with KV-cached incremental decoding.
    ///
    /// Prompts are left-padded; the attention mask and position ids make each row's samples
    /// independent of the others. The KV cache is allocated once at `P + max_new_tokens`.
    /// Randomness comes from `rng` only (never burn's global RNG), so the same seed gives the
    /// same samples on the same backend. Where the tokens are drawn is
    /// [`SamplingConfig::draw`]:
    /// - on the host, each step reads the batch's next-token logits back once, and warps and
    ///   draws there in double precision (rows in parallel), by inverting the CDF at one
    ///   uniform per unfinished row, in row order;
    /// - on the device, the logits stay there: each row draws a block of 128 tokens and then
    ///   a token of that block, each by inverting a CDF in single precision, at two uniforms
    ///   per row and step drawn up front (stopped rows included), and only the finished
    ///   samples are read back. Decoding waits for the device only to check, every 8 steps,
    ///   whether all rows have stopped at EOS.
    ///
    /// The two give different samples for the same seed, from the same distribution.
    ///
    /// Dropout: on an autodiff backend with positive dropout the model would drop units and
    /// record a graph; sample from `model.valid()` (or a model without dropout).
    ///
    /// Errors on an empty or out-of-vocabulary prompt, invalid warper settings, top-k or
    /// top-p with [`Draw::Device`], or if the longest prompt plus `max_new_tokens` exceeds
    /// `n_positions`.
    pub fn sample(
        &self,
        prompts: &[Vec<u32>],
        config: &SamplingConfig,
        rng: &mut dyn RngCore,
    ) -> Result<Samples<B>> {
        let mut state = self.start_decoding(prompts, config)?;
        let device = self.wte.weight.val().device();
        if config.draws_on_device()? {
            self.decode_on_device(&mut state, config.warper.temperature, rng, &device)?;
        } else {
            self.decode_on_host(&mut state, &config.warper, rng, &device)?;
        }
        state.into_samples(&device)
    }

    /// Checks the request and lays out the prompts.
    fn start_decoding(&self, prompts: &[Vec<u32>], config: &SamplingConfig) -> Result<Decoding> {
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
        if prompts.is_empty() {
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
        if prompt_len + config.max_new_tokens > model_config.n_positions {
            return Err(Error::Input(format!(
                "prompt length {prompt_len} + {} new tokens exceeds n_positions {}",
                config.max_new_tokens, model_config.n_positions
            )));
        }
        let stop_at = eos.filter(|_| config.stop == StopMode::AtEos);
        Ok(Decoding::new(prompts, config.max_new_tokens, pad, stop_at))
    }

    /// The next-token logits of the last position, `[batch, vocab]` in float 32.
    fn next_logits(
        &self,
        input: Tensor<B, 2, Int>,
        mask: Tensor<B, 2, Bool>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 2> {
        let hidden = self.forward_hidden(input, Some(mask), Some(cache));
        let [batch, seq, d] = hidden.dims();
        self.lm_head(hidden.slice([0..batch, seq - 1..seq, 0..d]))
            .reshape([batch, self.config().vocab_size])
            .cast(FloatDType::F32)
    }

    /// Decoding with the draws on the host ([`Draw::Host`]).
    fn decode_on_host(
        &self,
        state: &mut Decoding,
        warper: &Warper,
        rng: &mut dyn RngCore,
        device: &B::Device,
    ) -> Result<()> {
        let vocab = self.config().vocab_size;
        let mut cache = KvCache::new(self.config(), state.batch, state.capacity, device);
        let identity = warper.is_identity();
        let mut finished = vec![false; state.batch];
        let mut input = state.ids_tensor(0..state.prompt_len, device);
        for step in 0..state.steps_max {
            let filled = state.prompt_len + step;
            let mask = state.mask_tensor(filled, device);
            let logits = self
                .next_logits(input, mask, &mut cache)
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
                    u.map(|u| scratch.draw(row, u, identity, warper))
                })
                .collect();
            for (b, d) in drawn.into_iter().enumerate() {
                let Some(Drawn { token, warped_lp, model_lp }) = d else { continue };
                state.record(b, step, token as u32, warped_lp as f32, model_lp as f32);
                if state.stop_at == Some(token as u32) {
                    finished[b] = true;
                }
            }
            state.steps = step + 1;
            if finished.iter().all(|&f| f) {
                break;
            }
            input = state.ids_tensor(filled..filled + 1, device);
        }
        Ok(())
    }

    /// Decoding with the draws on the device ([`Draw::Device`]).
    fn decode_on_device(
        &self,
        state: &mut Decoding,
        temperature: f64,
        rng: &mut dyn RngCore,
        device: &B::Device,
    ) -> Result<()> {
        let (batch, steps_max) = (state.batch, state.steps_max);
        if steps_max == 0 {
            return Ok(());
        }
        // Two per row and step (block, then token), step-major, rows in order.
        let uniforms: Vec<f32> =
            (0..steps_max * batch * 2).map(|_| rng.random::<f64>() as f32).collect();
        let uniforms =
            Tensor::<B, 3>::from_data(TensorData::new(uniforms, [steps_max, batch, 2]), device);
        let mut cache = KvCache::new(self.config(), batch, state.capacity, device);
        let every_row =
            Tensor::<B, 2, Bool>::from_data(TensorData::new(vec![true; batch], [batch, 1]), device);
        let mut finished = every_row.clone().bool_not();
        let mut input = state.ids_tensor(0..state.prompt_len, device);
        let mut mask = state.mask_tensor(state.prompt_len, device);
        let (mut tokens, mut generated, mut warped, mut model) = (vec![], vec![], vec![], vec![]);
        for step in 0..steps_max {
            let logits = self.next_logits(input, mask.clone(), &mut cache);
            let u = uniforms.clone().slice([step..step + 1, 0..batch, 0..2]).reshape([batch, 2]);
            let draws = draw_on_device(logits, u, temperature);
            let (token, live) = match state.stop_at {
                Some(eos) => {
                    let token = draws.tokens.mask_fill(finished.clone(), state.pad as i64);
                    let live = finished.clone().bool_not();
                    finished = finished.bool_or(token.clone().equal_elem(eos as i64));
                    (token, live)
                }
                None => (draws.tokens, every_row.clone()),
            };
            let stopped = live.clone().bool_not();
            warped.push(draws.warped_log_probs.mask_fill(stopped.clone(), 0.0));
            model.push(draws.model_log_probs.mask_fill(stopped, 0.0));
            mask = Tensor::cat(vec![mask, live.clone()], 1);
            tokens.push(token.clone());
            generated.push(live);
            input = token;
            let check = state.stop_at.is_some() && (step + 1) % EOS_CHECK_EVERY == 0;
            if check && host_bools(finished.clone().all()).map_err(read_error("stops"))? == [true] {
                break;
            }
        }
        let tokens: Vec<i64> = Tensor::cat(tokens, 1)
            .into_data()
            .convert::<i64>()
            .into_vec()
            .map_err(read_error("tokens"))?;
        let generated: Vec<bool> =
            host_bools(Tensor::cat(generated, 1)).map_err(read_error("mask"))?;
        let floats =
            |v: Vec<Tensor<B, 2>>| Tensor::cat(v, 1).into_data().convert::<f32>().into_vec::<f32>();
        let warped = floats(warped).map_err(read_error("log-probs"))?;
        let model = floats(model).map_err(read_error("log-probs"))?;
        let run = generated.len() / batch;
        for b in 0..batch {
            for t in 0..run {
                let i = b * run + t;
                if generated[i] {
                    state.record(b, t, tokens[i] as u32, warped[i], model[i]);
                    state.steps = state.steps.max(t + 1);
                }
            }
        }
        Ok(())
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
        let scored = host_bools(batch.score_mask.clone()).map_err(read_error("score mask"))?;
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
