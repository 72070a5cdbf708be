//! The run config: what a user writes in `run.toml`, deserialised strictly.
//!
//! Every struct denies unknown fields, every choice is an enum, and every field has a default
//! equal to the paper's set-up (METHODS.md section 6: naver/gdc's `rm_vs_dm` configs) except
//! the two that cannot have one: `output_dir` and `model.base`. [`Config`] is only the shape;
//! [`Plan::new`](crate::plan::Plan::new) checks the values and the combinations once, and every
//! error names the field and its place in the file (`run.toml:12:18: training.minibatch_size:
//! ...`).
//!
//! A complete example, every value the paper's default:
//!
//! ```toml
//! output_dir = "runs/amazing-gdcpp"
//! seed = 12
//! backend = "flex"        # flex | ndarray | tch | wgpu | cuda
//! device = "cpu"          # cpu | cuda | cuda:N | gpu | gpu:N
//!
//! [model]
//! base = "models/gpt2"    # a(x): a Hugging Face GPT-2 directory (required)
//! # policy_init = "..."   # the initial π (default: a copy of the base)
//! # tokenizer = "..."     # default: <base>/tokenizer.json
//! dropout = 0.1           # on π only
//!
//! [[constraints]]         # read by tilt-constraints (name, feature, pointwise | moment)
//! name = "amazing"
//! pointwise = true
//! feature = { kind = "word", word = "amazing" }
//!
//! [estimator]
//! kind = "gdc_pp"         # reinforce | kl_control | dpg | gdc | gdc_pp | fdpg | cdpg
//! normalize_by_z = false
//!
//! [training]
//! total_samples = 6_400_000
//! batch_size = 512
//! minibatch_size = 32     # forward minibatch: 16 gradient-accumulation steps
//!
//! [optimizer]
//! algorithm = "adam"      # adam | adamw
//! lr = 1.41e-5
//! betas = [0.9, 0.999]
//! eps = 1e-8
//!
//! [schedule]
//! kind = "constant"       # constant | linear | cosine
//! warmup_steps = 100
//!
//! [sampling]
//! new_tokens = 40
//! temperature = 1.0
//! top_p = 1.0
//! stop_at_eos = false
//! draw = "auto"           # auto (device; top-p evaluation on the host) | host | device
//!
//! # [contexts]           # a conditional run (estimator cdpg, reinforce or kl_control)
//! # file = "prompts.txt"  # one context per line, or .jsonl of JSON strings
//! # per_step = 16         # contexts per batch, batch_size / per_step samples each
//! # eval_file = "..."     # held-out evaluation contexts (default: drawn from file)
//! # eval_contexts = 16
//!
//! [proposal]
//! criterion = "kl"        # kl | tvd | interval | never
//! interval = 10
//!
//! [lambda_fit]
//! samples = 10_240
//! tolerance = 0.01
//! # contexts = 64         # conditional runs: contexts the samples are shared among
//!
//! [eval]
//! interval = 10
//! samples = 2048
//! top_p = 0.9
//!
//! [checkpoint]
//! interval = 10
//! ```

mod sections;
mod source;

pub use sections::*;
pub use source::{ConfigError, Issue, Location, SourceMap};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A `[[constraints]]` table (`name`, `feature`, and `pointwise = true` or `moment = μ̄`),
/// kept raw so that the config round-trips as written; [`Plan::new`](crate::plan::Plan::new)
/// reads it into `tilt_constraints::ConstraintSpec` and builds it, as a run does.
pub type ConstraintSpec = toml::Table;

/// A whole run config (see the module documentation for an example).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where metrics, plots, samples, checkpoints and the final model go (required).
    pub output_dir: PathBuf,
    /// The seed of every random draw of the run (paper: 12).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The burn backend (it must be compiled in: cargo feature of the same name).
    #[serde(default)]
    pub backend: Backend,
    /// The device on that backend.
    #[serde(default)]
    pub device: DeviceSpec,
    /// The models: base a, initial π, tokenizer.
    pub model: ModelConfig,
    /// The constraints that define the target P (distribution-matching estimators) or the
    /// reward (reward-maximisation estimators with `reward.source = "constraints"`).
    #[serde(default)]
    pub constraints: Vec<ConstraintSpec>,
    /// The reward of the reward-maximisation estimators (REINFORCE, KL-control).
    #[serde(default)]
    pub reward: Option<RewardConfig>,
    /// The gradient estimator and its options.
    #[serde(default)]
    pub estimator: EstimatorConfig,
    /// Batch sizes and run length.
    #[serde(default)]
    pub training: TrainingConfig,
    /// The optimizer.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule.
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// How training samples are drawn (from q or π).
    #[serde(default)]
    pub sampling: SamplingConfig,
    /// The contexts of a conditional run (absent: one prompt, `sampling.prompt`).
    #[serde(default)]
    pub contexts: Option<ContextsConfig>,
    /// The KL-adaptive proposal of the off-policy estimators (absent: their default).
    #[serde(default)]
    pub proposal: Option<ProposalConfig>,
    /// Fitting λ for distributional constraints.
    #[serde(default)]
    pub lambda_fit: LambdaFitConfig,
    /// Evaluation.
    #[serde(default)]
    pub eval: EvalConfig,
    /// Checkpoints.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
}

fn default_seed() -> u64 {
    12
}

/// A config file's text with its name, as read from disk.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The path as given (shown in messages; relative paths in the config resolve against its
    /// directory).
    pub path: PathBuf,
    /// The TOML text.
    pub text: String,
}

impl ConfigSource {
    /// Reads a config file.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        Ok(Self { path: path.to_owned(), text: std::fs::read_to_string(path)? })
    }

    /// The directory relative paths in the config are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        }
    }

    /// Deserialises the text strictly. A syntax error, an unknown field, a wrong type or an
    /// unknown enum variant comes back with the field's dotted path and its line and column.
    pub fn parse(&self) -> Result<(Config, SourceMap), ConfigError> {
        let map = SourceMap::new(&self.text)
            .map_err(|e| ConfigError::from_toml(&self.path, &self.text, None, &e))?;
        let config: Config = toml::from_str(&self.text)
            .map_err(|e| ConfigError::from_toml(&self.path, &self.text, Some(&map), &e))?;
        Ok((config, map))
    }
}

impl Config {
    /// A stable SHA-256 (hex) of the config's content (not of its formatting), recorded in
    /// checkpoints so that a resume with a different config is noticed.
    pub fn content_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_vec(self).expect("a config serialises to JSON");
        Sha256::digest(&json).iter().map(|b| format!("{b:02x}")).collect()
    }
}
