//! Hugging Face checkpoints: load a GPT-2 directory (`config.json` + `model.safetensors` or a
//! sharded `model.safetensors.index.json`) and save one back in the same layout.
//!
//! Keys are Hugging Face's (`wte.weight`, `h.0.attn.c_attn.weight`, …), optionally prefixed
//! `transformer.`; LayerNorm `weight`/`bias` become burn's `gamma`/`beta`. GPT-2's Conv1D
//! weights are stored `[in, out]`, which is burn's `Linear` layout: nothing is transposed.
//! The causal-mask buffers `h.N.attn.bias` / `h.N.attn.masked_bias` are ignored, and so is
//! `lm_head.weight` once checked equal to `wte.weight` (the head is tied).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::config::Gpt2Config;
use crate::error::{Error, Result};
use crate::model::{Block, Gpt2, layer_norm};

/// Name of the weights file in a Hugging Face directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Name of the index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// Name of the config file.
pub const CONFIG_FILE: &str = "config.json";

/// A tensor read from a checkpoint, converted to f32.
#[derive(Debug)]
struct HostTensor {
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// Every tensor a GPT-2 of this config needs, with its shape, in Hugging Face naming.
pub fn expected_tensors(config: &Gpt2Config) -> Vec<(String, Vec<usize>)> {
    let d = config.n_embd;
    let inner = config.inner_dim();
    let mut out = vec![
        ("wte.weight".to_string(), vec![config.vocab_size, d]),
        ("wpe.weight".to_string(), vec![config.n_positions, d]),
    ];
    for i in 0..config.n_layer {
        let p = |s: &str| format!("h.{i}.{s}");
        out.extend([
            (p("ln_1.weight"), vec![d]),
            (p("ln_1.bias"), vec![d]),
            (p("attn.c_attn.weight"), vec![d, 3 * d]),
            (p("attn.c_attn.bias"), vec![3 * d]),
            (p("attn.c_proj.weight"), vec![d, d]),
            (p("attn.c_proj.bias"), vec![d]),
            (p("ln_2.weight"), vec![d]),
            (p("ln_2.bias"), vec![d]),
            (p("mlp.c_fc.weight"), vec![d, inner]),
            (p("mlp.c_fc.bias"), vec![inner]),
            (p("mlp.c_proj.weight"), vec![inner, d]),
            (p("mlp.c_proj.bias"), vec![d]),
        ]);
    }
    out.extend([("ln_f.weight".to_string(), vec![d]), ("ln_f.bias".to_string(), vec![d])]);
    out
}

/// Whether a (prefix-stripped) key is a buffer or tied copy that the model does not load.
fn is_ignored(key: &str) -> bool {
    if key == "lm_head.weight" {
        return true;
    }
    let Some(rest) = key.strip_prefix("h.") else {
        return false;
    };
    let Some((n, tail)) = rest.split_once('.') else {
        return false;
    };
    n.parse::<usize>().is_ok() && (tail == "attn.bias" || tail == "attn.masked_bias")
}

fn safetensors_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Safetensors { path: path.to_path_buf(), reason: e.to_string() }
}

/// Converts one stored tensor to f32.
fn to_host(path: &Path, name: &str, view: &TensorView<'_>) -> Result<HostTensor> {
    let shape = view.shape().to_vec();
    let dtype = match view.dtype() {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F64 => DType::F64,
        other => {
            return Err(Error::Tensor {
                path: path.to_path_buf(),
                name: name.to_string(),
                reason: format!("dtype {other:?} is not a float type"),
            });
        }
    };
    let data =
        TensorData::from_bytes_vec(view.data().to_vec(), shape.clone(), dtype).convert::<f32>();
    let values = data.into_vec::<f32>().map_err(|e| Error::Tensor {
        path: path.to_path_buf(),
        name: name.to_string(),
        reason: format!("{e:?}"),
    })?;
    Ok(HostTensor { shape, values })
}

/// Reads every tensor of one safetensors file, keys stripped of `transformer.`.
fn read_file(path: &Path, out: &mut BTreeMap<String, HostTensor>) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| safetensors_err(path, e))?;
    for (name, view) in st.iter() {
        let key = name.strip_prefix("transformer.").unwrap_or(name).to_string();
        let tensor = to_host(path, name, &view)?;
        out.insert(key, tensor);
    }
    Ok(())
}

/// The safetensors files of a checkpoint directory (one file, or the shards of the index).
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join(WEIGHTS_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(INDEX_FILE);
    if !index.is_file() {
        return Err(Error::io(
            &single,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("neither {WEIGHTS_FILE} nor {INDEX_FILE} exists"),
            ),
        ));
    }
    let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|source| Error::Json { path: index.clone(), source })?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| safetensors_err(&index, "index has no weight_map object"))?;
    let shards: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
    if shards.len() != map.len().min(shards.len()) || shards.is_empty() {
        return Err(safetensors_err(&index, "weight_map lists no shard files"));
    }
    Ok(shards.into_iter().map(|s| dir.join(s)).collect())
}

/// Loads a GPT-2 from a Hugging Face model directory.
///
/// Reads `config.json` ([`Gpt2Config::from_hf_json`]) and `model.safetensors` (or every shard
/// named by `model.safetensors.index.json`); f16/bf16/f64 tensors are converted to f32.
/// Every key and shape is checked: a checkpoint that does not match the config gives one
/// [`Error::CheckpointMismatch`] listing the missing, unexpected and mis-shaped tensors.
pub fn load_hf_dir<B: Backend>(dir: impl AsRef<Path>, device: &B::Device) -> Result<Gpt2<B>> {
    let dir = dir.as_ref();
    let config = Gpt2Config::from_hf_json(dir.join(CONFIG_FILE))?;
    let files = weight_files(dir)?;
    let mut tensors = BTreeMap::new();
    for file in &files {
        read_file(file, &mut tensors)?;
    }
    let source = if files.len() == 1 { files[0].clone() } else { dir.to_path_buf() };
    from_tensors(config, tensors, &source, device)
}

/// Loads the weights of one safetensors file into a model of the given config (for files
/// outside a Hugging Face directory). Same checks as [`load_hf_dir`].
pub fn load_safetensors<B: Backend>(
    config: Gpt2Config,
    path: impl AsRef<Path>,
    device: &B::Device,
) -> Result<Gpt2<B>> {
    let path = path.as_ref();
    config.validate()?;
    let mut tensors = BTreeMap::new();
    read_file(path, &mut tensors)?;
    from_tensors(config, tensors, path, device)
}

fn from_tensors<B: Backend>(
    config: Gpt2Config,
    mut tensors: BTreeMap<String, HostTensor>,
    path: &Path,
    device: &B::Device,
) -> Result<Gpt2<B>> {
    let expected = expected_tensors(&config);
    let expected_names: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let missing: Vec<String> =
        expected.iter().filter(|(n, _)| !tensors.contains_key(n)).map(|(n, _)| n.clone()).collect();
    let unexpected: Vec<String> = tensors
        .keys()
        .filter(|k| !expected_names.contains(k.as_str()) && !is_ignored(k))
        .cloned()
        .collect();
    let mis_shaped: Vec<(String, Vec<usize>, Vec<usize>)> = expected
        .iter()
        .filter_map(|(n, shape)| {
            let t = tensors.get(n)?;
            (&t.shape != shape).then(|| (n.clone(), shape.clone(), t.shape.clone()))
        })
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() || !mis_shaped.is_empty() {
        return Err(Error::CheckpointMismatch {
            path: path.to_path_buf(),
            missing,
            unexpected,
            mis_shaped,
        });
    }
    if let Some(head) = tensors.get("lm_head.weight") {
        let wte = &tensors["wte.weight"];
        if head.shape != wte.shape || head.values != wte.values {
            return Err(Error::Tensor {
                path: path.to_path_buf(),
                name: "lm_head.weight".into(),
                reason: "differs from wte.weight; only tied LM heads are supported".into(),
            });
        }
    }

    let mut take = |name: &str| -> HostTensor {
        // Presence and shape were checked above.
        tensors.remove(name).expect("checked key")
    };
    fn param<B: Backend, const D: usize>(t: HostTensor, device: &B::Device) -> Param<Tensor<B, D>> {
        Param::from_tensor(Tensor::from_data(TensorData::new(t.values, t.shape), device))
    }
    let mut linear = |prefix: &str| -> Linear<B> {
        Linear {
            weight: param(take(&format!("{prefix}.weight")), device),
            bias: Some(param(take(&format!("{prefix}.bias")), device)),
        }
    };
    let mut blocks_parts = Vec::with_capacity(config.n_layer);
    for i in 0..config.n_layer {
        blocks_parts.push((
            linear(&format!("h.{i}.attn.c_attn")),
            linear(&format!("h.{i}.attn.c_proj")),
            linear(&format!("h.{i}.mlp.c_fc")),
            linear(&format!("h.{i}.mlp.c_proj")),
        ));
    }
    let mut norm = |prefix: &str| -> LayerNorm<B> {
        let mut ln = layer_norm(&config, device);
        ln.gamma = param(take(&format!("{prefix}.weight")), device);
        ln.beta = Some(param(take(&format!("{prefix}.bias")), device));
        ln
    };
    let mut h = Vec::with_capacity(config.n_layer);
    for (i, (c_attn, c_proj, c_fc, mlp_proj)) in blocks_parts.into_iter().enumerate() {
        let mut block = Block::assemble(&config, c_attn, c_proj, c_fc, mlp_proj, device);
        block.ln_1 = norm(&format!("h.{i}.ln_1"));
        block.ln_2 = norm(&format!("h.{i}.ln_2"));
        h.push(block);
    }
    let ln_f = norm("ln_f");
    let wte = Embedding { weight: param(take("wte.weight"), device) };
    let wpe = Embedding { weight: param(take("wpe.weight"), device) };
    Ok(Gpt2::assemble(config, wte, wpe, h, ln_f))
}

impl<B: Backend> Gpt2<B> {
    /// Every parameter in Hugging Face naming (no `transformer.` prefix, no `lm_head`), read
    /// back to the host as f32: `(key, shape, values)`.
    pub fn named_tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        fn host<B: Backend, const D: usize>(
            name: String,
            t: Tensor<B, D>,
        ) -> (String, Vec<usize>, Vec<f32>) {
            let data = t.into_data().convert::<f32>();
            let shape = data.shape.to_vec();
            let values = data.into_vec::<f32>().expect("converted to f32");
            (name, shape, values)
        }
        let mut out = vec![
            host("wte.weight".into(), self.wte.weight.val()),
            host("wpe.weight".into(), self.wpe.weight.val()),
        ];
        let linear = |out: &mut Vec<_>, prefix: String, l: &Linear<B>| {
            out.push(host(format!("{prefix}.weight"), l.weight.val()));
            if let Some(b) = &l.bias {
                out.push(host(format!("{prefix}.bias"), b.val()));
            }
        };
        let norm = |out: &mut Vec<_>, prefix: String, l: &LayerNorm<B>| {
            out.push(host(format!("{prefix}.weight"), l.gamma.val()));
            if let Some(b) = &l.beta {
                out.push(host(format!("{prefix}.bias"), b.val()));
            }
        };
        for (i, block) in self.h.iter().enumerate() {
            norm(&mut out, format!("h.{i}.ln_1"), &block.ln_1);
            linear(&mut out, format!("h.{i}.attn.c_attn"), &block.attn.c_attn);
            linear(&mut out, format!("h.{i}.attn.c_proj"), &block.attn.c_proj);
            norm(&mut out, format!("h.{i}.ln_2"), &block.ln_2);
            linear(&mut out, format!("h.{i}.mlp.c_fc"), &block.mlp.c_fc);
            linear(&mut out, format!("h.{i}.mlp.c_proj"), &block.mlp.c_proj);
        }
        norm(&mut out, "ln_f".into(), &self.ln_f);
        out
    }

    /// Saves the model as a Hugging Face directory: `config.json` and `model.safetensors`
    /// (f32, GPT2LMHeadModel keys without the `transformer.` prefix, tied head omitted), so
    /// `GPT2LMHeadModel.from_pretrained(dir)` and [`load_hf_dir`] both read it. Each file is
    /// written to a temporary name in `dir` and renamed into place, so a crash never leaves a
    /// half-written checkpoint under the final name. Creates `dir` if needed.
    pub fn save_hf_dir(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tensors = self.named_tensors();
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .into_iter()
            .map(|(name, shape, values)| {
                let b = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                (name, shape, b)
            })
            .collect();
        let weights_path = dir.join(WEIGHTS_FILE);
        let views = bytes
            .iter()
            .map(|(name, shape, b)| {
                TensorView::new(Dtype::F32, shape.clone(), b)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| safetensors_err(&weights_path, e))
            })
            .collect::<Result<Vec<_>>>()?;
        // transformers refuses safetensors files without this metadata.
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        let serialized = safetensors::serialize(views, Some(metadata))
            .map_err(|e| safetensors_err(&weights_path, e))?;
        write_atomic(&weights_path, &serialized)?;
        let config = serde_json::to_vec_pretty(&self.config().to_hf_json())
            .map_err(|source| Error::Json { path: dir.join(CONFIG_FILE), source })?;
        write_atomic(&dir.join(CONFIG_FILE), &config)
    }
}

/// Writes `bytes` to a temporary file next to `path`, syncs it, and renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_keys() {
        assert!(is_ignored("h.3.attn.bias"));
        assert!(is_ignored("h.0.attn.masked_bias"));
        assert!(is_ignored("lm_head.weight"));
        assert!(!is_ignored("h.0.attn.c_attn.bias"));
        assert!(!is_ignored("h.x.attn.bias"));
    }

    #[test]
    fn expected_tensor_count() {
        let c = Gpt2Config::tiny();
        assert_eq!(expected_tensors(&c).len(), 2 + 12 * c.n_layer + 2);
    }
}
