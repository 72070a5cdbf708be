//! Writing a model as a Hugging Face directory, sharded when it is larger than a size limit.
//!
//! `tilt_policies`' `Gpt2::save_hf_dir` writes a single `model.safetensors`; pretraining
//! output must come back from machines that return files of at most 16 MiB, so this writes
//! the same tensors (`Gpt2::named_tensors`: HF keys, f32, tied head omitted) into
//! `model-0000i-of-0000n.safetensors` shards plus `model.safetensors.index.json`
//! (`{"metadata": {"total_size"}, "weight_map": {key: shard}}`), the layout `transformers`
//! writes and both it and `tilt_policies::checkpoint::load_hf_dir` read. A model that fits in
//! one shard is written as a plain `model.safetensors`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use burn::tensor::backend::Backend;
use safetensors::{Dtype, tensor::TensorView};
use tilt_policies::Gpt2;
use tilt_policies::checkpoint::{CONFIG_FILE, INDEX_FILE, WEIGHTS_FILE};

/// Name of the tokenizer file written next to the model.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Writes `model` (config.json, weights, and `tokenizer_json` as tokenizer.json) into `dir`.
///
/// Every file goes to a temporary name and is renamed into place; `config.json` is renamed
/// last, so a directory with a `config.json` holds a complete model. A stale weights file or
/// index of the other layout is removed first (the loader would prefer it). `shard_bytes` 0
/// means one file whatever the size. Returns the weight files written.
pub fn save_model<B: Backend>(
    model: &Gpt2<B>,
    tokenizer_json: &[u8],
    dir: &Path,
    shard_bytes: u64,
) -> Result<Vec<String>> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = model
        .named_tensors()
        .into_iter()
        .map(|(name, shape, values)| {
            (name, shape, values.iter().flat_map(|v| v.to_le_bytes()).collect())
        })
        .collect();

    // Greedy grouping in the model's order (embeddings, blocks, final norm).
    let mut groups: Vec<Vec<usize>> = vec![Vec::new()];
    let mut size = 0u64;
    for (i, (_, _, bytes)) in tensors.iter().enumerate() {
        let n = bytes.len() as u64;
        let current = groups.last_mut().expect("one group");
        if shard_bytes > 0 && !current.is_empty() && size + n > shard_bytes {
            groups.push(vec![i]);
            size = n;
        } else {
            current.push(i);
            size += n;
        }
    }
    let n_shards = groups.len();
    let names: Vec<String> = if n_shards == 1 {
        vec![WEIGHTS_FILE.to_string()]
    } else {
        (1..=n_shards).map(|i| format!("model-{i:05}-of-{n_shards:05}.safetensors")).collect()
    };

    // The loader prefers model.safetensors over an index: never leave the other layout behind.
    let stale = if n_shards == 1 { INDEX_FILE } else { WEIGHTS_FILE };
    match fs::remove_file(dir.join(stale)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot remove {}", dir.join(stale).display()));
        }
    }

    // transformers refuses safetensors files without this metadata.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let mut weight_map = BTreeMap::new();
    let mut total_size = 0u64;
    for (group, name) in groups.iter().zip(&names) {
        let path = dir.join(name);
        let views = group
            .iter()
            .map(|&i| {
                let (key, shape, bytes) = &tensors[i];
                weight_map.insert(key.clone(), name.clone());
                total_size += bytes.len() as u64;
                TensorView::new(Dtype::F32, shape.clone(), bytes)
                    .map(|v| (key.clone(), v))
                    .map_err(|e| anyhow!("{}: tensor {key}: {e}", path.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = safetensors::serialize(views, Some(metadata.clone()))
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        write_atomic(&path, &bytes)?;
    }
    if n_shards > 1 {
        let index = serde_json::json!({
            "metadata": { "total_size": total_size },
            "weight_map": weight_map,
        });
        write_atomic(&dir.join(INDEX_FILE), &serde_json::to_vec_pretty(&index)?)?;
    }
    write_atomic(&dir.join(TOKENIZER_FILE), tokenizer_json)?;
    let config = serde_json::to_vec_pretty(&model.config().to_hf_json())?;
    write_atomic(&dir.join(CONFIG_FILE), &config)?;
    Ok(names)
}

/// Writes `bytes` to a temporary file next to `path`, syncs it, and renames it over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    write().with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}
