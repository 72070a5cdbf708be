//! Sampling: draw sequences from a model with the one sampler, decode them once, and keep
//! everything later passes need (token ids, masks, the sampled distribution's log-probs).

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use rand::RngCore;
use tilt_constraints::Sample;
use tilt_policies::{
    Draw, Gpt2, Gpt2Tokenizer, SamplingConfig, SequenceBatch, StopMode, ValueHead, Warper,
};

use crate::config::SamplingDraw;
use crate::plan::Sampling;

/// One chunk of sampled sequences, in the sampler's row layout `[rows, prompt_len + steps]`.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Token ids, row-major.
    pub token_ids: Vec<u32>,
    /// Real tokens.
    pub attention_mask: Vec<bool>,
    /// Generated (scored) tokens, same layout as `token_ids`.
    pub score_mask: Vec<bool>,
    /// Rows.
    pub rows: usize,
    /// Padded prompt length.
    pub prompt_len: usize,
    /// Decoding steps.
    pub steps: usize,
}

impl Chunk {
    /// The chunk as a scoring batch on any backend (no device read-back).
    pub fn batch<B: Backend>(&self, device: &B::Device) -> Result<SequenceBatch<B>> {
        let width = self.prompt_len + self.steps;
        SequenceBatch::from_host(
            &self.token_ids,
            &self.attention_mask,
            &self.score_mask,
            [self.rows, width],
            device,
        )
        .context("rebuilding a sampled batch")
    }
}

/// Sequences drawn from one model, decoded, with their log-probabilities under the distribution
/// actually sampled from (after temperature / top-k / top-p) and under the unwarped model.
#[derive(Debug, Clone, Default)]
pub struct Rollout {
    /// The sampled chunks, in order (sample i of the rollout is row i of their concatenation).
    pub chunks: Vec<Chunk>,
    /// Generated token ids per sample (prompt excluded).
    pub tokens: Vec<Vec<u32>>,
    /// Decoded texts (special tokens skipped).
    pub texts: Vec<String>,
    /// Whether each sample ended with end-of-text.
    pub eos: Vec<bool>,
    /// `log q(x)`: sequence log-prob under the sampled (warped) distribution.
    pub log_sampler: Vec<f64>,
    /// Sequence log-prob under the unwarped model.
    pub log_model: Vec<f64>,
    /// Per-token log-probs under the sampled distribution, row-major `[n, steps]`, 0 where
    /// not generated (every chunk has the same `steps` when sampling a fixed length).
    pub token_log_sampler: Vec<f64>,
    /// Generated-token mask `[n, steps]`.
    pub generated_mask: Vec<bool>,
}

impl Rollout {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// The samples as features see them.
    pub fn samples(&self) -> Vec<Sample<'_>> {
        (0..self.len()).map(|i| Sample::new(&self.texts[i], &self.tokens[i], self.eos[i])).collect()
    }

    /// Appends `other`'s samples after these.
    pub fn append(&mut self, other: Rollout) {
        self.chunks.extend(other.chunks);
        self.tokens.extend(other.tokens);
        self.texts.extend(other.texts);
        self.eos.extend(other.eos);
        self.log_sampler.extend(other.log_sampler);
        self.log_model.extend(other.log_model);
        self.token_log_sampler.extend(other.token_log_sampler);
        self.generated_mask.extend(other.generated_mask);
    }

    /// Decoding steps of the chunks (they agree: all chunks use the same `max_new_tokens`
    /// unless every row stopped early, which per-token estimators reject).
    pub fn steps(&self) -> usize {
        self.chunks.iter().map(|c| c.steps).max().unwrap_or(0)
    }
}

/// What the sampler needs besides the model: prompt ids, settings and the tokenizer.
#[derive(Debug, Clone)]
pub struct Sampler {
    /// The token ids of each prompt, indexed by context id: the contexts of a conditional
    /// run, or the one prompt (the end-of-text token alone by default).
    pub prompts: Vec<Vec<u32>>,
    /// Sampler settings.
    pub config: SamplingConfig,
    /// Rows per sampling call.
    pub chunk: usize,
}

impl Sampler {
    /// The training sampler of a plan; `contexts` replace `sampling.prompt` in a conditional
    /// run.
    pub fn new(
        sampling: &Sampling,
        contexts: Option<&crate::contexts::Contexts>,
        tokenizer: &Gpt2Tokenizer,
        chunk: usize,
    ) -> Result<Self> {
        let prompts = match (contexts, &sampling.prompt) {
            (Some(c), _) => c
                .texts
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let ids = tokenizer.encode(text).context("tokenizing a context")?;
                    anyhow::ensure!(!ids.is_empty(), "context {i} ({text:?}) tokenizes to nothing");
                    Ok(ids)
                })
                .collect::<Result<Vec<_>>>()?,
            (None, Some(text)) => {
                let ids = tokenizer.encode(text).context("tokenizing sampling.prompt")?;
                anyhow::ensure!(!ids.is_empty(), "sampling.prompt tokenizes to nothing");
                vec![ids]
            }
            (None, None) => vec![vec![tokenizer.eos_token_id()]],
        };
        let warper = Warper {
            temperature: sampling.temperature,
            top_k: sampling.top_k.map(|k| k as usize),
            top_p: (sampling.top_p < 1.0).then_some(sampling.top_p),
        };
        let base = if sampling.stop_at_eos {
            SamplingConfig::until_eos(sampling.new_tokens as usize)
        } else {
            SamplingConfig::fixed_length(sampling.new_tokens as usize)
        };
        let draw = match sampling.draw {
            SamplingDraw::Auto => Draw::Auto,
            SamplingDraw::Host => Draw::Host,
            SamplingDraw::Device => Draw::Device,
        };
        let config = base.with_warper(warper).with_draw(draw);
        config.draws_on_device().context("sampling.draw")?;
        Ok(Self { prompts, config, chunk: chunk.max(1) })
    }

    /// The same sampler with nucleus mass `top_p` (evaluation); drawn on the host if
    /// `top_p` is below 1 (the device draws with a temperature only).
    pub fn with_top_p(&self, top_p: f64) -> Self {
        let mut s = self.clone();
        s.config.warper.top_p = (top_p < 1.0).then_some(top_p);
        if s.config.draws_on_device().is_err() {
            s.config.draw = Draw::Host;
        }
        s
    }

    /// Whether samples have a fixed number of tokens.
    pub fn fixed_length(&self) -> bool {
        self.config.stop == StopMode::FixedLength
    }

    /// The longest prompt, in tokens.
    pub fn longest_prompt(&self) -> usize {
        self.prompts.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// Draws `n` samples of the first prompt (the one prompt of an unconditional run).
    pub fn draw_n<B: Backend>(
        &self,
        model: &Gpt2<B>,
        n: usize,
        tokenizer: &Gpt2Tokenizer,
        rng: &mut dyn RngCore,
    ) -> Result<Rollout> {
        self.draw(model, &vec![0; n], tokenizer, rng)
    }

    /// Draws one sample from `model` per entry of `contexts` (the prompt ids of the samples),
    /// in chunks, decoding each once.
    pub fn draw<B: Backend>(
        &self,
        model: &Gpt2<B>,
        contexts: &[usize],
        tokenizer: &Gpt2Tokenizer,
        rng: &mut dyn RngCore,
    ) -> Result<Rollout> {
        let mut out = Rollout::default();
        for ids in contexts.chunks(self.chunk) {
            let rows = ids.len();
            let prompts: Vec<Vec<u32>> = ids.iter().map(|&c| self.prompts[c].clone()).collect();
            let s = model.sample(&prompts, &self.config, rng).context("sampling")?;
            let generated = s.generated();
            for ids in &generated {
                out.texts.push(tokenizer.decode(ids, true).context("decoding a sample")?);
                let eos = self.config.stop == StopMode::AtEos
                    && ids.last().is_some_and(|&t| t == tokenizer.eos_token_id());
                out.eos.push(eos);
            }
            out.tokens.extend(generated);
            out.log_sampler.extend(s.sequence_sampling_log_probs().iter().map(|&v| f64::from(v)));
            out.log_model.extend(s.sequence_model_log_probs().iter().map(|&v| f64::from(v)));
            out.token_log_sampler.extend(s.sampling_log_probs.iter().map(|&v| f64::from(v)));
            out.generated_mask.extend_from_slice(&s.generated_mask);
            let width = s.prompt_len + s.steps;
            let mut score_mask = vec![false; rows * width];
            for r in 0..rows {
                for t in 0..s.steps {
                    score_mask[r * width + s.prompt_len + t] = s.generated_mask[r * s.steps + t];
                }
            }
            out.chunks.push(Chunk {
                token_ids: s.token_ids,
                attention_mask: s.attention_mask,
                score_mask,
                rows,
                prompt_len: s.prompt_len,
                steps: s.steps,
            });
        }
        Ok(out)
    }
}

/// Draws `rows[i]` samples with `rngs[i]` for each sample stream `i`, one after the other;
/// `contexts` holds the context of each of the `Σ rows` samples, in that order.
pub fn draw_streams<B: Backend, R: RngCore>(
    sampler: &Sampler,
    model: &Gpt2<B>,
    rows: &[usize],
    contexts: &[usize],
    tokenizer: &Gpt2Tokenizer,
    rngs: &mut [R],
) -> Result<Rollout> {
    anyhow::ensure!(
        rows.iter().sum::<usize>() == contexts.len(),
        "one context per sample: {} samples, {} contexts",
        rows.iter().sum::<usize>(),
        contexts.len()
    );
    let mut out = Rollout::default();
    let mut first = 0;
    for (rng, &n) in rngs.iter_mut().zip(rows) {
        out.append(sampler.draw(model, &contexts[first..first + n], tokenizer, rng)?);
        first += n;
    }
    Ok(out)
}

/// Sequence log-probs of every sample of `rollout` under `model` (no gradient: call it with a
/// model on the inner backend), one forward pass per chunk.
pub fn log_probs<B: Backend>(
    model: &Gpt2<B>,
    rollout: &Rollout,
    device: &B::Device,
) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(rollout.len());
    for chunk in &rollout.chunks {
        let lp = model.log_prob(&chunk.batch::<B>(device)?);
        out.extend(lp.into_data().iter::<f64>());
    }
    Ok(out)
}

/// Per-token log-probs of the generated tokens under `model`, row-major `[n, steps]` aligned
/// with [`Rollout::generated_mask`] (0 elsewhere).
pub fn token_log_probs<B: Backend>(
    model: &Gpt2<B>,
    rollout: &Rollout,
    device: &B::Device,
) -> Result<Vec<f64>> {
    generated_columns(rollout, device, |batch| model.token_log_probs(batch))
}

/// The value head's `V_t` of each generated token's prefix, on π's final hidden states,
/// row-major `[n, steps]` aligned with [`Rollout::generated_mask`] (0 elsewhere).
pub fn token_values<B: Backend>(
    model: &Gpt2<B>,
    head: &ValueHead<B>,
    rollout: &Rollout,
    device: &B::Device,
) -> Result<Vec<f64>> {
    generated_columns(rollout, device, |batch| {
        let mask = Some(batch.attention_mask.clone());
        head.token_values(model.forward_hidden(batch.input_ids.clone(), mask, None), batch)
    })
}

/// `per_position` (a `[rows, prompt_len + steps]` tensor of each chunk's batch) at the
/// generated positions, row-major `[n, steps]`; the chunks must have equal `steps`.
fn generated_columns<B: Backend>(
    rollout: &Rollout,
    device: &B::Device,
    per_position: impl Fn(&SequenceBatch<B>) -> burn::tensor::Tensor<B, 2>,
) -> Result<Vec<f64>> {
    let steps = rollout.steps();
    let mut out = Vec::with_capacity(rollout.len() * steps);
    for chunk in &rollout.chunks {
        anyhow::ensure!(chunk.steps == steps, "per-token scores need equal-length chunks");
        let values: Vec<f64> =
            per_position(&chunk.batch::<B>(device)?).into_data().iter::<f64>().collect();
        let width = chunk.prompt_len + chunk.steps;
        for r in 0..chunk.rows {
            out.extend_from_slice(&values[r * width + chunk.prompt_len..(r + 1) * width]);
        }
    }
    Ok(out)
}
