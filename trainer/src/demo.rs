//! The embedded default run: `tilt train` without a config.
//!
//! The binary carries the demo base model tilt-mini (`assets/tilt-mini`, 27.6 MB) and the demo
//! config (`assets/demo.toml`). [`prepare`] writes both into a directory (default
//! [`DEFAULT_DIR`]), so that the run is an ordinary run of an ordinary config that the user can
//! read, edit and rerun with `tilt train --config tilt-demo/demo.toml`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::cli::BadInput;

/// Where `tilt train` without `--config` runs, relative to the working directory.
pub const DEFAULT_DIR: &str = "tilt-demo";

/// The demo config's file name inside the demo directory.
pub const CONFIG_FILE: &str = "demo.toml";

/// The demo config (its `model.base` is the [`MODEL_DIR`] next to it).
pub const CONFIG: &str = include_str!("../assets/demo.toml");

/// The base model's directory inside the demo directory.
pub const MODEL_DIR: &str = "tilt-mini";

/// tilt-mini, file by file (Hugging Face layout, sharded safetensors).
const MODEL_FILES: [(&str, &[u8]); 5] = [
    ("config.json", include_bytes!("../assets/tilt-mini/config.json")),
    (
        "model-00001-of-00002.safetensors",
        include_bytes!("../assets/tilt-mini/model-00001-of-00002.safetensors"),
    ),
    (
        "model-00002-of-00002.safetensors",
        include_bytes!("../assets/tilt-mini/model-00002-of-00002.safetensors"),
    ),
    (
        "model.safetensors.index.json",
        include_bytes!("../assets/tilt-mini/model.safetensors.index.json"),
    ),
    ("tokenizer.json", crate::pretrain::TILT_MINI_TOKENIZER_JSON.as_bytes()),
];

/// Writes the demo into `dir` and returns the path of its config.
///
/// The model files are written when missing or different (each atomically); the config always,
/// since the demo is the embedded one.
///
/// # Errors
/// A [`BadInput`] when `dir` already holds a run (its `metrics.jsonl`): the message says how to
/// continue it or start again. I/O errors name the file.
pub fn prepare(dir: &Path) -> Result<PathBuf> {
    let metrics = dir.join(crate::train::METRICS_FILE);
    if metrics.exists() {
        return Err(BadInput(format!(
            "{} already holds a demo run ({} exists): continue it with `tilt train --resume {0}`, \
             or delete the directory (or pass --output-dir) to start a new one",
            dir.display(),
            metrics.display()
        ))
        .into());
    }
    write_files(dir)
}

/// Writes the demo's model and config into `dir` whatever it holds, as [`prepare`] does after
/// its check: for the nodes of a multi-node demo other than node 0, which may share node 0's
/// directory after node 0's run has begun. Files already there with the same bytes are left
/// alone, and each write goes through a temporary file of this process's own, so nodes writing
/// the same directory at once never see a partial file.
///
/// # Errors
/// I/O errors name the file.
pub fn write_files(dir: &Path) -> Result<PathBuf> {
    let model = dir.join(MODEL_DIR);
    std::fs::create_dir_all(&model).with_context(|| format!("creating {}", model.display()))?;
    for (name, bytes) in MODEL_FILES {
        let path = model.join(name);
        write_unless_same(&path, bytes)?;
    }
    let config = dir.join(CONFIG_FILE);
    write_unless_same(&config, CONFIG.as_bytes())?;
    Ok(config)
}

/// The demo config of an earlier demo run in `dir`, for `tilt train --resume DIR` without
/// `--config`.
pub fn config_of(dir: &Path) -> Option<PathBuf> {
    let config = dir.join(CONFIG_FILE);
    config.is_file().then_some(config)
}

fn write_unless_same(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|existing| existing == bytes) {
        return Ok(());
    }
    let tmp = path.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Overrides, Plan};

    #[test]
    fn the_demo_is_a_valid_run_of_the_embedded_model() {
        let dir = tempfile::tempdir().unwrap();
        let config = prepare(dir.path()).unwrap();
        let plan = Plan::load(&config, &Overrides::default()).unwrap();
        assert!(plan.missing_inputs().is_empty(), "{:?}", plan.missing_inputs());
        assert_eq!(plan.base_model, dir.path().join(MODEL_DIR));
        assert_eq!(plan.output_dir, dir.path().to_path_buf());
        // The model loads and is tilt-mini.
        let model = tilt_policies::checkpoint::load_hf_dir::<burn::backend::Flex>(
            &plan.base_model,
            &Default::default(),
        )
        .unwrap();
        assert_eq!(model.config().vocab_size, 8192);
        // A second prepare of the same directory rewrites nothing it need not.
        prepare(dir.path()).unwrap();
        // Once the directory holds a run, a fresh demo there is refused.
        std::fs::write(dir.path().join(crate::train::METRICS_FILE), "").unwrap();
        let err = prepare(dir.path()).unwrap_err();
        assert!(err.is::<BadInput>());
        assert!(err.to_string().contains("--resume"), "{err}");
        // Another node of the same demo writes its files without that check, and leaves no
        // temporary file behind.
        assert_eq!(write_files(dir.path()).unwrap(), config);
        let names = |d: &Path| -> Vec<String> {
            std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        };
        let all = [names(dir.path()), names(&dir.path().join(MODEL_DIR))].concat();
        assert!(all.iter().all(|n| !n.contains("partial")), "{all:?}");
    }
}
