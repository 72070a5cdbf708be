//! The causal-LM pretraining loop, generic over `B: AutodiffBackend`.
//!
//! Each step draws `batch_size` windows of `context_len + 1` tokens at uniformly random offsets
//! of the training stream (ChaCha8 seeded from the config: the batches do not depend on the
//! backend), predicts every next token, and minimises the mean token negative log-likelihood
//! with AdamW ([`PretrainConfig`] documents the optimiser and schedule).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use burn::module::{AutodiffModule, Module, ModuleMapper, Param};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion as _, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tilt_policies::Gpt2;
use tilt_policies::checkpoint::CONFIG_FILE;

use super::config::PretrainConfig;
use super::data::TokenStream;
use super::save::{save_model, write_atomic};
use crate::grad_clip::{clip_to, global_grad_norm};

/// Name of the log written into the output directory (one JSON object per line).
pub const LOG_FILE: &str = "pretrain.jsonl";
/// Name of the intermediate checkpoint directory inside the output directory (the latest
/// evaluation's model; removed once the final model is written).
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// Name of the copy of the config written into the output directory.
pub const CONFIG_COPY: &str = "pretrain.toml";

/// What a run trains on: token streams and the tokenizer they were made with.
#[derive(Debug, Clone)]
pub struct PretrainData {
    /// The training stream.
    pub train: TokenStream,
    /// The validation stream (perplexity at every evaluation), if any.
    pub valid: Option<TokenStream>,
    /// The tokenizer's `tokenizer.json`, copied into every saved model directory.
    pub tokenizer_json: Vec<u8>,
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainReport {
    /// Steps taken.
    pub steps: usize,
    /// Training tokens consumed (predicted positions).
    pub tokens: u64,
    /// Mean training loss over the first logging interval.
    pub first_loss: f64,
    /// Mean training loss over the last logging interval.
    pub last_loss: f64,
    /// Final validation loss (mean token NLL, nats) and perplexity, if there is a valid set.
    pub valid: Option<(f64, f64)>,
    /// Training throughput over the whole run (tokens per second, evaluations excluded).
    pub tokens_per_second: f64,
}

/// One line of `pretrain.jsonl`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum LogLine {
    Train {
        step: usize,
        tokens: u64,
        loss: f64,
        lr: f64,
        grad_norm: f64,
        tokens_per_second: f64,
        elapsed_s: f64,
    },
    Eval {
        step: usize,
        tokens: u64,
        valid_loss: f64,
        valid_ppl: f64,
        valid_tokens: usize,
    },
}

/// Checks that `output` can receive a new model: it must not already hold one.
pub fn check_output_dir(output: &Path) -> Result<()> {
    ensure!(
        !output.join(CONFIG_FILE).exists(),
        "{} already holds a model ({CONFIG_FILE}); choose another --output directory",
        output.display()
    );
    Ok(())
}

/// Checks a stream against the run: every id inside the vocabulary, enough tokens for one
/// window.
pub fn check_stream(name: &str, stream: &TokenStream, config: &PretrainConfig) -> Result<()> {
    let vocab = config.model.vocab_size;
    if let Some(&bad) = stream.ids().iter().find(|&&id| id as usize >= vocab) {
        bail!(
            "{name} holds token id {bad}, outside the model's vocabulary of {vocab} \
             (a token cache made with another tokenizer?)"
        );
    }
    ensure!(
        stream.len() > config.context_len + 1,
        "{name} has {} tokens, fewer than one training window of {} (context_len + 1)",
        stream.len(),
        config.context_len + 1
    );
    Ok(())
}

/// Pretrains a fresh model on `data` and writes it (Hugging Face layout, sharded as the config
/// says, with the tokenizer) into `output`, with `pretrain.jsonl` and a copy of the config.
///
/// Every `eval_every` steps (and at the end) the validation loss is computed and the model is
/// written to `output/checkpoint/` (replaced atomically). A non-finite loss stops the run with
/// an error, leaving the last checkpoint. Returns the final model (as saved) and a report.
pub fn pretrain<B: AutodiffBackend>(
    config: &PretrainConfig,
    data: &PretrainData,
    output: &Path,
    device: &B::Device,
) -> Result<(Gpt2<B::InnerBackend>, PretrainReport)> {
    config.validate()?;
    check_output_dir(output)?;
    check_stream("the training data", &data.train, config)?;
    if let Some(valid) = &data.valid {
        check_stream("the validation data", valid, config)?;
    }
    fs::create_dir_all(output).with_context(|| format!("cannot create {}", output.display()))?;
    write_atomic(&output.join(CONFIG_COPY), toml::to_string_pretty(config)?.as_bytes())?;
    let log_path = output.join(LOG_FILE);
    let mut log_file = BufWriter::new(
        File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?,
    );
    let mut write_log = |line: &LogLine| -> Result<()> {
        serde_json::to_writer(&mut log_file, line)?;
        log_file.write_all(b"\n")?;
        log_file.flush().with_context(|| format!("cannot write {}", log_path.display()))
    };

    B::seed(device, config.seed);
    let gpt2 = config.model.gpt2_config();
    let mut model: Gpt2<B> = gpt2.init_seeded(device, config.seed);
    let mut optimizer = AdamWConfig::new()
        .with_beta_1(config.beta1 as f32)
        .with_beta_2(config.beta2 as f32)
        .with_epsilon(config.epsilon as f32)
        // Decay is applied below, to rank-2 parameters only.
        .with_weight_decay(0.0)
        .init::<B, Gpt2<B>>();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let tokens_per_step = (config.batch_size * config.context_len) as u64;
    log::info!(
        "pretraining {} layers x {} wide, {} parameters, {} steps of {} tokens",
        gpt2.n_layer,
        gpt2.n_embd,
        model.num_params(),
        config.max_steps,
        tokens_per_step
    );

    let run_start = Instant::now();
    let mut train_seconds = 0.0;
    let mut interval_start = Instant::now();
    let mut interval_loss: Option<Tensor<B::InnerBackend, 1>> = None;
    let mut interval_steps = 0usize;
    let mut first_loss = None;
    let mut last_loss = f64::NAN;
    let mut valid_result = None;
    let mut tokens = 0u64;

    for step in 0..config.max_steps {
        let lr = config.learning_rate_at(step);
        let (inputs, targets) = random_batch::<B>(&data.train, config, &mut rng, device);
        let logits = model.forward(inputs, None, None);
        let loss = token_nll(logits, targets).mean();
        let loss_value = loss.clone().inner();
        interval_loss = Some(match interval_loss.take() {
            Some(sum) => sum + loss_value,
            None => loss_value,
        });
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let norm = global_grad_norm::<B, _>(&model, &grads);
        if config.grad_clip > 0.0 {
            clip_to(&model, &mut grads, norm.clone(), config.grad_clip);
        }
        if config.weight_decay > 0.0 {
            model = model.map(&mut DecayMatrices { factor: 1.0 - lr * config.weight_decay });
        }
        model = optimizer.step(lr, model, grads);
        tokens += tokens_per_step;
        interval_steps += 1;

        let done = step + 1 == config.max_steps;
        if (step + 1) % config.log_every == 0 || done {
            // One read-back per logging interval: the summed losses (this also waits for the
            // device, so the timing is honest).
            let loss_sum = scalar(interval_loss.take().expect("at least one step"));
            let grad_norm = scalar(norm);
            let seconds = interval_start.elapsed().as_secs_f64();
            train_seconds += seconds;
            let mean = loss_sum / interval_steps as f64;
            ensure!(
                mean.is_finite(),
                "the training loss is {mean} at step {}; stopping (the last checkpoint, if any, \
                 is in {})",
                step + 1,
                output.join(CHECKPOINT_DIR).display()
            );
            first_loss.get_or_insert(mean);
            last_loss = mean;
            let tps = (interval_steps as u64 * tokens_per_step) as f64 / seconds;
            log::info!(
                "step {:>6}/{} loss {mean:.4} lr {lr:.3e} |g| {grad_norm:.3} {tps:.0} tok/s",
                step + 1,
                config.max_steps
            );
            write_log(&LogLine::Train {
                step: step + 1,
                tokens,
                loss: mean,
                lr,
                grad_norm,
                tokens_per_second: tps,
                elapsed_s: run_start.elapsed().as_secs_f64(),
            })?;
            interval_steps = 0;
            interval_start = Instant::now();
        }

        let eval_now = done || (config.eval_every > 0 && (step + 1) % config.eval_every == 0);
        if eval_now {
            if let Some(valid) = &data.valid {
                let (nll, n) = evaluate(&model.valid(), valid, config, device);
                let ppl = nll.exp();
                log::info!(
                    "step {:>6} valid loss {nll:.4} perplexity {ppl:.2} ({n} tokens)",
                    step + 1
                );
                write_log(&LogLine::Eval {
                    step: step + 1,
                    tokens,
                    valid_loss: nll,
                    valid_ppl: ppl,
                    valid_tokens: n,
                })?;
                valid_result = Some((nll, ppl));
            }
            if !done {
                write_checkpoint(&model, data, config, output)?;
            }
            interval_start = Instant::now();
        }
    }

    let final_model = model.valid();
    let files = save_model(&final_model, &data.tokenizer_json, output, shard_bytes(config))?;
    log::info!("wrote the model to {} ({})", output.display(), files.join(", "));
    let checkpoint = output.join(CHECKPOINT_DIR);
    if checkpoint.exists() {
        fs::remove_dir_all(&checkpoint)
            .with_context(|| format!("cannot remove {}", checkpoint.display()))?;
    }
    let report = PretrainReport {
        steps: config.max_steps,
        tokens,
        first_loss: first_loss.unwrap_or(f64::NAN),
        last_loss,
        valid: valid_result,
        tokens_per_second: tokens as f64 / train_seconds.max(1e-9),
    };
    Ok((final_model, report))
}

fn shard_bytes(config: &PretrainConfig) -> u64 {
    config.shard_mib as u64 * 1024 * 1024
}

/// Writes the model into `output/checkpoint/`: built in `checkpoint.tmp/`, then swapped in by
/// renames, so `checkpoint/` is always a complete model or absent.
fn write_checkpoint<B: AutodiffBackend>(
    model: &Gpt2<B>,
    data: &PretrainData,
    config: &PretrainConfig,
    output: &Path,
) -> Result<()> {
    let dir = output.join(CHECKPOINT_DIR);
    let tmp: PathBuf = output.join(format!("{CHECKPOINT_DIR}.tmp"));
    let old: PathBuf = output.join(format!("{CHECKPOINT_DIR}.old"));
    for stale in [&tmp, &old] {
        if stale.exists() {
            fs::remove_dir_all(stale)
                .with_context(|| format!("cannot remove {}", stale.display()))?;
        }
    }
    save_model(&model.valid(), &data.tokenizer_json, &tmp, shard_bytes(config))?;
    if dir.exists() {
        fs::rename(&dir, &old).with_context(|| format!("cannot rename {}", dir.display()))?;
    }
    fs::rename(&tmp, &dir).with_context(|| format!("cannot rename {}", tmp.display()))?;
    if old.exists() {
        fs::remove_dir_all(&old).with_context(|| format!("cannot remove {}", old.display()))?;
    }
    Ok(())
}

/// Reads a one-element tensor back to the host.
fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_scalar().elem::<f64>()
}

/// A batch of random windows: inputs `[batch, context_len]` and their next tokens.
fn random_batch<B: Backend>(
    stream: &TokenStream,
    config: &PretrainConfig,
    rng: &mut ChaCha8Rng,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let (b, t) = (config.batch_size, config.context_len);
    let ids = stream.ids();
    let last_start = ids.len() - (t + 1);
    let mut inputs = Vec::with_capacity(b * t);
    let mut targets = Vec::with_capacity(b * t);
    for _ in 0..b {
        let start = rng.random_range(0..=last_start);
        let window = &ids[start..start + t + 1];
        inputs.extend(window[..t].iter().map(|&id| id as i64));
        targets.extend(window[1..].iter().map(|&id| id as i64));
    }
    (
        Tensor::from_data(TensorData::new(inputs, [b, t]), device),
        Tensor::from_data(TensorData::new(targets, [b, t]), device),
    )
}

/// Negative log-likelihood of every target token.
///
/// # Shapes
/// - `logits`: `[batch, seq, vocab]`; `targets`: `[batch, seq]`; output `[batch * seq]`.
pub fn token_nll<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    let [b, t, v] = logits.dims();
    let log_p = log_softmax(logits.reshape([b * t, v]), 1);
    log_p.gather(1, targets.reshape([b * t, 1])).reshape([b * t]).neg()
}

/// Mean token NLL over the validation windows (non-overlapping windows of `context_len + 1`
/// tokens from the start of the stream, `eval_tokens` predicted tokens at most; all when 0).
/// Returns the mean and the number of tokens scored.
pub fn evaluate<B: Backend>(
    model: &Gpt2<B>,
    stream: &TokenStream,
    config: &PretrainConfig,
    device: &B::Device,
) -> (f64, usize) {
    let t = config.context_len;
    let mut windows: Vec<&[u32]> = stream.examples(t + 1).collect();
    if config.eval_tokens > 0 {
        windows.truncate(config.eval_tokens.div_ceil(t).max(1));
    }
    let mut total: Option<Tensor<B, 1>> = None;
    for chunk in windows.chunks(config.batch_size) {
        let b = chunk.len();
        let flat = |range: std::ops::Range<usize>| -> Vec<i64> {
            chunk.iter().flat_map(|w| w[range.clone()].iter().map(|&id| id as i64)).collect()
        };
        let inputs = Tensor::<B, 2, Int>::from_data(TensorData::new(flat(0..t), [b, t]), device);
        let targets =
            Tensor::<B, 2, Int>::from_data(TensorData::new(flat(1..t + 1), [b, t]), device);
        let sum = token_nll(model.forward(inputs, None, None), targets).sum();
        total = Some(match total.take() {
            Some(acc) => acc + sum,
            None => sum,
        });
    }
    let n = windows.len() * t;
    match total {
        Some(sum) => (scalar(sum) / n as f64, n),
        None => (f64::NAN, 0),
    }
}

/// Decoupled weight decay `w ← factor · w` on rank-2 parameters (weight matrices and
/// embeddings), outside the autodiff graph.
struct DecayMatrices {
    factor: f64,
}

impl<B: AutodiffBackend> ModuleMapper<B> for DecayMatrices {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if D != 2 {
            return param;
        }
        let factor = self.factor;
        param.map(|t| {
            let require_grad = t.is_require_grad();
            let t = Tensor::from_inner(t.inner().mul_scalar(factor));
            if require_grad { t.require_grad() } else { t }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    #[test]
    fn token_nll_is_log_softmax_of_the_target() {
        let device = Default::default();
        let logits = Tensor::<Flex, 3>::from_data(
            TensorData::new(vec![0.0f32, 1.0, 2.0, 3.0, 3.0, 3.0], [1, 2, 3]),
            &device,
        );
        let targets =
            Tensor::<Flex, 2, Int>::from_data(TensorData::new(vec![2i64, 0], [1, 2]), &device);
        let nll: Vec<f32> =
            token_nll(logits, targets).into_data().convert::<f32>().into_vec().unwrap();
        let z = (0f32.exp() + 1f32.exp() + 2f32.exp()).ln();
        assert!((nll[0] - (z - 2.0)).abs() < 1e-5);
        assert!((nll[1] - 3f32.ln()).abs() < 1e-5);
    }

    #[test]
    fn clipping_scales_the_global_norm_and_decay_touches_matrices_only() {
        type AD = Autodiff<Flex>;
        let device = Default::default();
        let config = tilt_policies::Gpt2Config::tiny();
        let model: Gpt2<AD> = config.init_seeded(&device, 1);
        let ids =
            Tensor::<AD, 2, Int>::from_data(TensorData::new(vec![1i64, 2, 3, 4], [1, 4]), &device);
        let targets =
            Tensor::<AD, 2, Int>::from_data(TensorData::new(vec![2i64, 3, 4, 5], [1, 4]), &device);
        let loss = token_nll(model.forward(ids, None, None), targets).mean().mul_scalar(100.0);
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let norm = scalar(global_grad_norm::<AD, _>(&model, &grads));
        assert!(norm > 1.0, "{norm}");
        let norm_t = global_grad_norm::<AD, _>(&model, &grads);
        crate::grad_clip::clip_to(&model, &mut grads, norm_t, 0.5);
        let clipped = scalar(global_grad_norm::<AD, _>(&model, &grads));
        assert!((clipped - 0.5).abs() < 1e-4, "{clipped}");

        let before = model.named_tensors();
        let after = model.clone().map(&mut DecayMatrices { factor: 0.5 }).named_tensors();
        for ((name, shape, a), (_, _, b)) in before.iter().zip(&after) {
            let want = if shape.len() == 2 { 0.5 } else { 1.0 };
            assert!(a.iter().zip(b).all(|(x, y)| (x * want - y).abs() < 1e-7), "{name}");
        }
    }
}
