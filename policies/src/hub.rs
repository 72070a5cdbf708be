//! Downloading a GPT-2 model by id from the Hugging Face hub (cargo feature `hub`; for users
//! who are online; tests never reach the real hub).
//!
//! Files go to the hub's usual cache (`$HF_HOME/hub`, default `~/.cache/huggingface/hub`,
//! shared with Python's `huggingface_hub`), so a model downloaded once, by tilt or by
//! transformers, is not fetched again. `HF_ENDPOINT` points [`download`] at a mirror, as it
//! does Python's `huggingface_hub`. The returned directory is the snapshot that holds
//! `config.json`, the weights and the tokenizer, ready for
//! [`load_hf_dir`](crate::checkpoint::load_hf_dir) and
//! [`Gpt2Tokenizer::from_dir`](crate::Gpt2Tokenizer).

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiRepo};
use hf_hub::{Repo, RepoType};

use crate::checkpoint::{CONFIG_FILE, INDEX_FILE, WEIGHTS_FILE};
use crate::{Error, Result};

/// Where [`download_with`] fetches from and caches to.
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// The hub's address, e.g. `https://huggingface.co` or a mirror (default: `HF_ENDPOINT`,
    /// else `https://huggingface.co`).
    pub endpoint: Option<String>,
    /// The cache directory, the one that holds `hub/` (default: `HF_HOME`, else
    /// `~/.cache/huggingface`).
    pub cache_dir: Option<PathBuf>,
    /// Show a progress bar per file.
    pub progress: bool,
}

fn hub_error(model_id: &str, file: &str, e: impl std::fmt::Display) -> Error {
    Error::Hub { model_id: model_id.to_owned(), file: file.to_owned(), reason: e.to_string() }
}

/// Downloads (or finds in the cache) `model_id` at `revision` (default `main`), with the
/// endpoint and cache of the environment (`HF_ENDPOINT`, `HF_HOME`) and progress bars.
/// See [`download_with`].
///
/// # Errors
/// As [`download_with`].
pub fn download(model_id: &str, revision: Option<&str>) -> Result<PathBuf> {
    download_with(model_id, revision, &HubOptions { progress: true, ..HubOptions::default() })
}

/// Downloads (or finds in the cache) `model_id` at `revision` (default `main`): `config.json`,
/// `model.safetensors` or the sharded weights with their index, and `tokenizer.json` or
/// `vocab.json` + `merges.txt`. Returns the snapshot directory.
///
/// # Errors
/// [`Error::Hub`] naming the model and the file that could not be fetched (no network, no
/// such model or revision, a repository without safetensors weights or without a tokenizer).
pub fn download_with(
    model_id: &str,
    revision: Option<&str>,
    options: &HubOptions,
) -> Result<PathBuf> {
    let mut builder = ApiBuilder::from_env().with_progress(options.progress);
    if let Some(endpoint) = &options.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    if let Some(cache) = &options.cache_dir {
        builder = builder.with_cache_dir(cache.join("hub"));
    }
    let api = builder.build().map_err(|e| hub_error(model_id, "-", e))?;
    let repo = api.repo(Repo::with_revision(
        model_id.to_owned(),
        RepoType::Model,
        revision.unwrap_or("main").to_owned(),
    ));
    let config = get(&repo, model_id, CONFIG_FILE)?;
    match repo.get(INDEX_FILE) {
        Ok(index) => {
            for shard in shards(&index, model_id)? {
                get(&repo, model_id, &shard)?;
            }
        }
        Err(_) => {
            get(&repo, model_id, WEIGHTS_FILE).map_err(|e| match e {
                Error::Hub { reason, .. } => hub_error(
                    model_id,
                    WEIGHTS_FILE,
                    format!("{reason} (and no {INDEX_FILE}: tilt reads safetensors weights only)"),
                ),
                other => other,
            })?;
        }
    }
    if repo.get("tokenizer.json").is_err() {
        get(&repo, model_id, "vocab.json")?;
        get(&repo, model_id, "merges.txt")?;
    }
    let dir = config.parent().map(PathBuf::from).ok_or_else(|| {
        hub_error(model_id, CONFIG_FILE, "the cached file has no parent directory")
    })?;
    log::info!("{model_id}: {}", dir.display());
    Ok(dir)
}

fn get(repo: &ApiRepo, model_id: &str, file: &str) -> Result<PathBuf> {
    log::info!("{model_id}: fetching {file}");
    repo.get(file).map_err(|e| hub_error(model_id, file, e))
}

/// The shard file names listed in a `model.safetensors.index.json`.
fn shards(index: &Path, model_id: &str) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index)
        .map_err(|e| Error::Io { path: index.to_owned(), source: e })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| hub_error(model_id, INDEX_FILE, e))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| hub_error(model_id, INDEX_FILE, "no weight_map"))?;
    let mut files: Vec<String> =
        map.values().filter_map(|v| v.as_str().map(str::to_owned)).collect();
    files.sort();
    files.dedup();
    Ok(files)
}
