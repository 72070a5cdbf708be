//! [`Gpt2Config`]: GPT-2's hyper-parameters, named as in Hugging Face's `config.json`.

use std::path::Path;

use burn::config::Config;
use burn::tensor::backend::Backend;

use crate::error::{Error, Result};
use crate::model::Gpt2;

/// GPT-2 hyper-parameters.
///
/// Field names follow Hugging Face's `GPT2Config` (`config.json`), so a checkpoint's config
/// reads without a rename table ([`Gpt2Config::from_hf_json`]). The activation is always
/// `gelu_new` (the tanh approximation), as in every released GPT-2.
///
/// Dropout is applied only when the backend records gradients (burn's `Dropout` checks
/// `B::ad_enabled`), so inference on a plain backend (or on `model.valid()`) never drops.
/// Set the three `*_pdrop` fields to 0 (or call [`Gpt2::without_dropout`]) for deterministic
/// differentiable scoring.
#[derive(Config, Debug, PartialEq)]
pub struct Gpt2Config {
    /// Vocabulary size (50,257 for GPT-2's byte-level BPE).
    pub vocab_size: usize,
    /// Maximum sequence length (number of learned position embeddings).
    pub n_positions: usize,
    /// Model width (embedding size).
    pub n_embd: usize,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Number of attention heads; must divide `n_embd`.
    pub n_head: usize,
    /// Width of the MLP's hidden layer; `None` means `4 * n_embd` (as in Hugging Face).
    #[config(default = "None")]
    pub n_inner: Option<usize>,
    /// Layer-norm epsilon.
    #[config(default = 1e-5)]
    pub layer_norm_epsilon: f64,
    /// Dropout on the residual branches (attention and MLP outputs).
    #[config(default = 0.1)]
    pub resid_pdrop: f64,
    /// Dropout on the sum of token and position embeddings.
    #[config(default = 0.1)]
    pub embd_pdrop: f64,
    /// Dropout on the attention probabilities.
    #[config(default = 0.1)]
    pub attn_pdrop: f64,
    /// Id of the beginning-of-sequence token.
    #[config(default = 50256)]
    pub bos_token_id: usize,
    /// Id of the end-of-sequence token (`<|endoftext|>` = 50256 for GPT-2).
    #[config(default = 50256)]
    pub eos_token_id: usize,
}

/// Hugging Face's defaults for GPT-2 (`GPT2Config()`): 124M parameters.
const GPT2_VOCAB: usize = 50257;
/// GPT-2's context length.
const GPT2_CONTEXT: usize = 1024;

impl Gpt2Config {
    /// GPT-2 small (124M): 12 layers, width 768, 12 heads.
    pub fn small() -> Self {
        Self::new(GPT2_VOCAB, GPT2_CONTEXT, 768, 12, 12)
    }

    /// GPT-2 medium (355M): 24 layers, width 1024, 16 heads.
    pub fn medium() -> Self {
        Self::new(GPT2_VOCAB, GPT2_CONTEXT, 1024, 24, 16)
    }

    /// GPT-2 large (774M): 36 layers, width 1280, 20 heads.
    pub fn large() -> Self {
        Self::new(GPT2_VOCAB, GPT2_CONTEXT, 1280, 36, 20)
    }

    /// GPT-2 XL (1.5B): 48 layers, width 1600, 25 heads.
    pub fn xl() -> Self {
        Self::new(GPT2_VOCAB, GPT2_CONTEXT, 1600, 48, 25)
    }

    /// A tiny model for tests: vocabulary 16, context 32, width 16, 2 layers, 2 heads,
    /// **no dropout**, bos = eos = 0 (so `.with_vocab_size(v)` keeps it valid for any `v`).
    pub fn tiny() -> Self {
        Self::new(16, 32, 16, 2, 2)
            .with_resid_pdrop(0.0)
            .with_embd_pdrop(0.0)
            .with_attn_pdrop(0.0)
            .with_bos_token_id(0)
            .with_eos_token_id(0)
    }

    /// The same config with another vocabulary size.
    pub fn with_vocab_size(mut self, vocab_size: usize) -> Self {
        self.vocab_size = vocab_size;
        self
    }

    /// The same config with another context length.
    pub fn with_n_positions(mut self, n_positions: usize) -> Self {
        self.n_positions = n_positions;
        self
    }

    /// The same config with another width.
    pub fn with_n_embd(mut self, n_embd: usize) -> Self {
        self.n_embd = n_embd;
        self
    }

    /// The same config with another number of blocks.
    pub fn with_n_layer(mut self, n_layer: usize) -> Self {
        self.n_layer = n_layer;
        self
    }

    /// The same config with another number of heads.
    pub fn with_n_head(mut self, n_head: usize) -> Self {
        self.n_head = n_head;
        self
    }

    /// The same config with all three dropout probabilities set to `p`.
    pub fn with_dropout(self, p: f64) -> Self {
        self.with_resid_pdrop(p).with_embd_pdrop(p).with_attn_pdrop(p)
    }

    /// Width of one attention head (`n_embd / n_head`).
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Width of the MLP's hidden layer.
    pub fn inner_dim(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// Checks that the numbers describe a buildable GPT-2.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::Config { path: None, reason });
        if self.vocab_size == 0 || self.n_positions == 0 || self.n_embd == 0 || self.n_layer == 0 {
            return bad("vocab_size, n_positions, n_embd and n_layer must be positive".into());
        }
        if self.n_head == 0 || !self.n_embd.is_multiple_of(self.n_head) {
            return bad(format!("n_head {} must divide n_embd {}", self.n_head, self.n_embd));
        }
        for (name, p) in [
            ("resid_pdrop", self.resid_pdrop),
            ("embd_pdrop", self.embd_pdrop),
            ("attn_pdrop", self.attn_pdrop),
        ] {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("{name} = {p} is not in [0, 1)"));
            }
        }
        if self.layer_norm_epsilon.is_nan() || self.layer_norm_epsilon <= 0.0 {
            return bad(format!("layer_norm_epsilon {} must be positive", self.layer_norm_epsilon));
        }
        Ok(())
    }

    /// Reads a Hugging Face `config.json` (GPT-2 architecture).
    ///
    /// Accepts the legacy key `n_ctx` when `n_positions` is absent, rejects activations other
    /// than `gelu_new` and configs whose `model_type` is not `gpt2`. Unknown keys are ignored
    /// (Hugging Face writes many that do not affect the forward pass).
    pub fn from_hf_json(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_hf_str(&text).map_err(|e| match e {
            Error::Config { reason, .. } => {
                Error::Config { path: Some(path.to_path_buf()), reason }
            }
            Error::Json { source, .. } => Error::Json { path: path.to_path_buf(), source },
            other => other,
        })
    }

    /// Parses the text of a Hugging Face `config.json`; see [`Gpt2Config::from_hf_json`].
    pub fn from_hf_str(text: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|source| Error::Json { path: "<string>".into(), source })?;
        let bad = |reason: String| Error::Config { path: None, reason };
        let obj =
            value.as_object().ok_or_else(|| bad("config.json is not a JSON object".into()))?;
        if let Some(t) = obj.get("model_type").and_then(|v| v.as_str())
            && t != "gpt2"
        {
            return Err(bad(format!("model_type is {t:?}, expected \"gpt2\"")));
        }
        if let Some(a) = obj.get("activation_function").and_then(|v| v.as_str())
            && a != "gelu_new"
        {
            return Err(bad(format!("activation_function {a:?} is not supported (only gelu_new)")));
        }
        for flag in ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"] {
            if obj.get(flag).and_then(|v| v.as_bool()) == Some(true) {
                return Err(bad(format!("{flag} = true is not supported")));
            }
        }
        if obj.get("scale_attn_weights").and_then(|v| v.as_bool()) == Some(false) {
            return Err(bad("scale_attn_weights = false is not supported".into()));
        }
        let usize_key = |key: &str| -> Result<Option<usize>> {
            match obj.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(|n| Some(n as usize))
                    .ok_or_else(|| bad(format!("{key} = {v} is not a non-negative integer"))),
            }
        };
        let f64_key = |key: &str| -> Result<Option<f64>> {
            match obj.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => {
                    v.as_f64().map(Some).ok_or_else(|| bad(format!("{key} = {v} is not a number")))
                }
            }
        };
        let required = |key: &str| -> Result<usize> {
            usize_key(key)?.ok_or_else(|| bad(format!("missing {key}")))
        };
        let n_positions = match usize_key("n_positions")? {
            Some(n) => n,
            None => required("n_ctx")?,
        };
        let mut config = Self::new(
            required("vocab_size")?,
            n_positions,
            required("n_embd")?,
            required("n_layer")?,
            required("n_head")?,
        );
        config.n_inner = usize_key("n_inner")?;
        if let Some(x) = f64_key("layer_norm_epsilon")? {
            config.layer_norm_epsilon = x;
        }
        if let Some(x) = f64_key("resid_pdrop")? {
            config.resid_pdrop = x;
        }
        if let Some(x) = f64_key("embd_pdrop")? {
            config.embd_pdrop = x;
        }
        if let Some(x) = f64_key("attn_pdrop")? {
            config.attn_pdrop = x;
        }
        if let Some(x) = usize_key("bos_token_id")? {
            config.bos_token_id = x;
        }
        if let Some(x) = usize_key("eos_token_id")? {
            config.eos_token_id = x;
        }
        config.validate()?;
        Ok(config)
    }

    /// The Hugging Face `config.json` for this model (`GPT2LMHeadModel`, tied embeddings).
    pub fn to_hf_json(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "activation_function": "gelu_new",
            "vocab_size": self.vocab_size,
            "n_positions": self.n_positions,
            "n_ctx": self.n_positions,
            "n_embd": self.n_embd,
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_inner": self.n_inner,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "resid_pdrop": self.resid_pdrop,
            "embd_pdrop": self.embd_pdrop,
            "attn_pdrop": self.attn_pdrop,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "initializer_range": 0.02,
            "scale_attn_weights": true,
            "scale_attn_by_inverse_layer_idx": false,
            "reorder_and_upcast_attn": false,
            "tie_word_embeddings": true,
            "torch_dtype": "float32",
        })
    }

    /// Builds a randomly initialised model with GPT-2's initialisation, seeded from the OS.
    ///
    /// See [`Gpt2Config::init_seeded`] for the distribution and a reproducible variant.
    ///
    /// # Panics
    /// If the config is invalid ([`Gpt2Config::validate`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Gpt2<B> {
        self.init_seeded(device, rand::random())
    }

    /// Builds a randomly initialised model, reproducibly from `seed`.
    ///
    /// GPT-2's initialisation (Hugging Face `_init_weights`): embeddings and all weight
    /// matrices N(0, 0.02); the two residual output projections (`attn.c_proj`, `mlp.c_proj`)
    /// N(0, 0.02 / sqrt(2 · n_layer)); biases 0; layer norms γ = 1, β = 0. The weights are
    /// drawn on the host from a ChaCha8 stream, not from burn's process-global RNG, so the
    /// result does not depend on other threads or on the backend.
    ///
    /// # Panics
    /// If the config is invalid ([`Gpt2Config::validate`]).
    pub fn init_seeded<B: Backend>(&self, device: &B::Device, seed: u64) -> Gpt2<B> {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        Gpt2::init_seeded(self, device, seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hf_config_with_n_ctx_and_extra_keys() {
        let text = r#"{"model_type":"gpt2","activation_function":"gelu_new","vocab_size":100,
            "n_ctx":64,"n_embd":32,"n_layer":2,"n_head":4,"layer_norm_epsilon":1e-5,
            "resid_pdrop":0.0,"embd_pdrop":0.1,"attn_pdrop":0.2,"bos_token_id":99,
            "eos_token_id":99,"n_inner":null,"task_specific_params":{"x":1}}"#;
        let c = Gpt2Config::from_hf_str(text).unwrap();
        assert_eq!(c.n_positions, 64);
        assert_eq!(c.vocab_size, 100);
        assert_eq!(c.attn_pdrop, 0.2);
        assert_eq!(c.inner_dim(), 128);
        assert_eq!(c.head_dim(), 8);
        let back = Gpt2Config::from_hf_str(&c.to_hf_json().to_string()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn rejects_unsupported_configs() {
        let base = r#""vocab_size":100,"n_positions":64,"n_embd":32,"n_layer":2"#;
        assert!(Gpt2Config::from_hf_str(&format!("{{{base},\"n_head\":5}}")).is_err());
        assert!(Gpt2Config::from_hf_str(&format!("{{{base}}}")).is_err());
        let relu = format!("{{{base},\"n_head\":4,\"activation_function\":\"relu\"}}");
        let err = Gpt2Config::from_hf_str(&relu).unwrap_err().to_string();
        assert!(err.contains("relu"), "{err}");
        assert!(Gpt2Config::from_hf_str(&format!("{{{base},\"n_head\":4}}")).is_ok());
    }

    #[test]
    fn presets_are_valid() {
        for c in [
            Gpt2Config::small(),
            Gpt2Config::medium(),
            Gpt2Config::large(),
            Gpt2Config::xl(),
            Gpt2Config::tiny(),
        ] {
            c.validate().unwrap();
        }
        assert_eq!(Gpt2Config::small().resid_pdrop, 0.1);
        assert_eq!(Gpt2Config::tiny().attn_pdrop, 0.0);
    }
}
