//! [`PretrainConfig`]: the hyper-parameters of `tilt pretrain` (a TOML file; every field has a
//! default, so an empty file is the tilt-mini recipe).

use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};
use tilt_policies::Gpt2Config;

use super::tokenizer::{EOS_ID, TILT_MINI_VOCAB_SIZE};

/// The model's shape (GPT-2 architecture). Defaults: tilt-mini, 8,192 × 256 embedding tied to
/// the head, 6 blocks of width 256 with 8 heads, 256 positions: 6.9M parameters (27.6 MB f32).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelShape {
    /// Vocabulary size; at least the tokenizer's (default 8,192, the embedded tokenizer's).
    pub vocab_size: usize,
    /// Number of position embeddings: the longest context the model can ever take (default 256).
    pub n_positions: usize,
    /// Width (default 256).
    pub n_embd: usize,
    /// Number of transformer blocks (default 6).
    pub n_layer: usize,
    /// Number of attention heads; divides `n_embd` (default 8).
    pub n_head: usize,
    /// Dropout on embeddings, attention probabilities and residual branches during training
    /// (default 0.1: the corpus is ~5M tokens, so a run sees it several times). The saved
    /// `config.json` records it; inference never drops.
    pub dropout: f64,
}

impl Default for ModelShape {
    fn default() -> Self {
        Self {
            vocab_size: TILT_MINI_VOCAB_SIZE,
            n_positions: 256,
            n_embd: 256,
            n_layer: 6,
            n_head: 8,
            dropout: 0.1,
        }
    }
}

impl ModelShape {
    /// The GPT-2 config of this shape (`<|endoftext|>` is both bos and eos).
    pub fn gpt2_config(&self) -> Gpt2Config {
        Gpt2Config::new(self.vocab_size, self.n_positions, self.n_embd, self.n_layer, self.n_head)
            .with_dropout(self.dropout)
            .with_bos_token_id(EOS_ID as usize)
            .with_eos_token_id(EOS_ID as usize)
    }
}

/// Hyper-parameters of causal-LM pretraining. Defaults are the tilt-mini recipe
/// (`trainer/assets/tilt-mini/pretrain.toml` spells them out).
///
/// Optimiser: AdamW (β₁ 0.9, β₂ 0.95, ε 1e-8) with decoupled weight decay on the weight matrices
/// and embeddings only (rank-2 parameters; not on biases and layer norms), the gradient's
/// global L2 norm clipped to `grad_clip`. Learning rate: linear warm-up over `warmup_steps`
/// (step s, 0-based, uses `(s + 1) / warmup_steps` of the peak), then cosine decay to
/// `min_lr_ratio` × peak at the last step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainConfig {
    /// Tokens per training sequence (default 256; at most `model.n_positions`).
    pub context_len: usize,
    /// Sequences per step (default 32: 8,192 tokens a step).
    pub batch_size: usize,
    /// Optimiser steps (default 4,000: 32.8M tokens, about 6.6 passes over the 4.95M-token
    /// training set).
    pub max_steps: usize,
    /// Peak learning rate (default 6e-4).
    pub learning_rate: f64,
    /// Final learning rate as a fraction of the peak (default 0.1).
    pub min_lr_ratio: f64,
    /// Linear warm-up steps (default 200).
    pub warmup_steps: usize,
    /// AdamW β₁ (default 0.9).
    pub beta1: f64,
    /// AdamW β₂ (default 0.95).
    pub beta2: f64,
    /// AdamW ε (default 1e-8).
    pub epsilon: f64,
    /// Decoupled weight decay on rank-2 parameters (default 0.1).
    pub weight_decay: f64,
    /// Clip the gradient's global L2 norm to this (default 1.0; 0 disables).
    pub grad_clip: f64,
    /// Seed of the initialisation, the batch sampler and dropout (default 1234).
    pub seed: u64,
    /// Log (stderr and `pretrain.jsonl`) every this many steps (default 10).
    pub log_every: usize,
    /// Evaluate on the validation set and write a checkpoint every this many steps (default
    /// 250; 0: only at the end).
    pub eval_every: usize,
    /// Validation tokens scored per evaluation: the first ones of the stream, in windows of
    /// `context_len` (default 0: the whole validation set, 89,694 tokens for tilt-mini).
    pub eval_tokens: usize,
    /// Largest safetensors file written, in MiB (default 15: files must stay under 16 MiB);
    /// a larger model is sharded with a `model.safetensors.index.json`. 0: one file.
    pub shard_mib: usize,
    /// The model's shape (the `[model]` table; declared last so that TOML output puts it
    /// after the plain keys).
    pub model: ModelShape,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            model: ModelShape::default(),
            context_len: 256,
            batch_size: 32,
            max_steps: 4000,
            learning_rate: 6e-4,
            min_lr_ratio: 0.1,
            warmup_steps: 200,
            beta1: 0.9,
            beta2: 0.95,
            epsilon: 1e-8,
            weight_decay: 0.1,
            grad_clip: 1.0,
            seed: 1234,
            log_every: 10,
            eval_every: 250,
            eval_tokens: 0,
            shard_mib: 15,
        }
    }
}

impl PretrainConfig {
    /// Reads a TOML file (unknown keys are errors) and validates it.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read pretrain config {}", path.display()))?;
        let config: Self = toml::from_str(&text)
            .with_context(|| format!("invalid pretrain config {}", path.display()))?;
        config.validate().with_context(|| format!("invalid pretrain config {}", path.display()))?;
        Ok(config)
    }

    /// Checks the values that would otherwise fail deep inside the run.
    pub fn validate(&self) -> Result<()> {
        self.model.gpt2_config().validate()?;
        ensure!(self.context_len >= 1, "context_len must be positive");
        ensure!(
            self.context_len <= self.model.n_positions,
            "context_len {} exceeds model.n_positions {}",
            self.context_len,
            self.model.n_positions
        );
        ensure!(self.batch_size >= 1, "batch_size must be positive");
        ensure!(self.max_steps >= 1, "max_steps must be positive");
        ensure!(
            self.learning_rate.is_finite() && self.learning_rate > 0.0,
            "learning_rate must be positive"
        );
        ensure!((0.0..=1.0).contains(&self.min_lr_ratio), "min_lr_ratio must be in [0, 1]");
        ensure!((0.0..1.0).contains(&self.beta1), "beta1 must be in [0, 1)");
        ensure!((0.0..1.0).contains(&self.beta2), "beta2 must be in [0, 1)");
        ensure!(self.epsilon > 0.0, "epsilon must be positive");
        ensure!(self.weight_decay >= 0.0, "weight_decay must be non-negative");
        ensure!(self.grad_clip >= 0.0, "grad_clip must be non-negative (0 disables it)");
        ensure!(self.log_every >= 1, "log_every must be positive");
        Ok(())
    }

    /// The learning rate of step `step` (0-based): warm-up, then cosine decay.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        let peak = self.learning_rate;
        if step < self.warmup_steps {
            return peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.max_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        peak * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_tilt_mini_and_valid() {
        let c = PretrainConfig::default();
        c.validate().unwrap();
        let params: usize = tilt_policies::checkpoint::expected_tensors(&c.model.gpt2_config())
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        assert!(params * 4 <= 30_000_000, "{params} parameters");
        let empty: PretrainConfig = toml::from_str("").unwrap();
        assert_eq!(empty, c);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<PretrainConfig>("batch_sise = 3").unwrap_err().to_string();
        assert!(err.contains("batch_sise"), "{err}");
        let err = toml::from_str::<PretrainConfig>("[model]\nlayers = 3").unwrap_err().to_string();
        assert!(err.contains("layers"), "{err}");
    }

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let c = PretrainConfig { max_steps: 100, warmup_steps: 10, ..Default::default() };
        let peak = c.learning_rate;
        assert!((c.learning_rate_at(0) - peak / 10.0).abs() < 1e-12);
        assert!((c.learning_rate_at(9) - peak).abs() < 1e-12);
        assert!((c.learning_rate_at(10) - peak).abs() < 1e-12);
        assert!((c.learning_rate_at(55) - peak * 0.55).abs() < 1e-12, "half way: mid-point");
        assert!((c.learning_rate_at(100) - 0.1 * peak).abs() < 1e-12);
        let lrs: Vec<f64> = (10..100).map(|s| c.learning_rate_at(s)).collect();
        assert!(lrs.windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn context_longer_than_positions_is_rejected() {
        let c = PretrainConfig { context_len: 512, ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("n_positions"));
    }
}
