//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in `tilt-policies`.
///
/// Variants carry the context needed to act on them (file paths, tensor names, shapes).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (config, index) could not be parsed.
    #[error("invalid JSON in {path}: {source}")]
    Json {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A model configuration is invalid or unsupported.
    #[error("invalid GPT-2 config{}: {reason}", path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Config {
        /// The config file, if the config came from one.
        path: Option<PathBuf>,
        /// What is wrong.
        reason: String,
    },
    /// A safetensors file could not be parsed or written.
    #[error("safetensors error in {path}: {reason}")]
    Safetensors {
        /// The file involved.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A checkpoint does not match the model: every problem is listed.
    #[error(
        "checkpoint {path} does not match the GPT-2 config: missing {missing:?}, unexpected {unexpected:?}, mis-shaped {mis_shaped:?}"
    )]
    CheckpointMismatch {
        /// The checkpoint file (or directory for sharded checkpoints).
        path: PathBuf,
        /// Keys the model needs that the checkpoint lacks.
        missing: Vec<String>,
        /// Keys in the checkpoint that the model does not know.
        unexpected: Vec<String>,
        /// `(key, expected shape, shape in the file)` for tensors of the wrong shape.
        mis_shaped: Vec<(String, Vec<usize>, Vec<usize>)>,
    },
    /// A tensor in a checkpoint has a dtype we cannot read, or disagrees with its tied twin.
    #[error("tensor {name} in {path}: {reason}")]
    Tensor {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor's key.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The tokenizer could not be loaded or failed on an input.
    #[error("tokenizer error{}: {reason}", path.as_ref().map(|p| format!(" ({})", p.display())).unwrap_or_default())]
    Tokenizer {
        /// The tokenizer file(s), when loading.
        path: Option<PathBuf>,
        /// What went wrong.
        reason: String,
    },
    /// A download from the Hugging Face hub failed (cargo feature `hub`).
    #[error("Hugging Face hub, model {model_id}, file {file}: {reason}")]
    Hub {
        /// The model id.
        model_id: String,
        /// The file being fetched (`-` before any).
        file: String,
        /// What went wrong.
        reason: String,
    },
    /// Inputs to a forward, scoring or sampling call are inconsistent.
    #[error("invalid input: {0}")]
    Input(String),
    /// A sampling setting is out of range.
    #[error("invalid sampling setting {name} = {value}: {reason}")]
    Sampling {
        /// The setting.
        name: &'static str,
        /// Its value, formatted.
        value: String,
        /// The allowed range.
        reason: &'static str,
    },
    /// This feature is declared but not built yet.
    #[error("{0} is not available in this build")]
    Unsupported(&'static str),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
