//! The sections of [`Config`](super::Config). Defaults are the paper's (METHODS.md section 6).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ConstraintSpec;

/// A burn backend; the binary must be built with the cargo feature of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Pure-Rust CPU backend (the default; no native libraries).
    #[default]
    Flex,
    /// ndarray CPU backend.
    Ndarray,
    /// libtorch through tch (CPU or CUDA).
    Tch,
    /// wgpu (Vulkan, Metal, DirectX).
    Wgpu,
    /// CUDA through CubeCL.
    Cuda,
}

impl Backend {
    /// The name used in configs, on the command line and as the cargo feature.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Tch => "tch",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A device: `cpu`, `cuda` / `cuda:N` (tch, cuda) or `gpu` / `gpu:N` (wgpu: the N-th
/// adapter). A string in TOML and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The CPU.
    #[default]
    Cpu,
    /// An NVIDIA GPU by index.
    Cuda(usize),
    /// A wgpu adapter by index.
    Gpu(usize),
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
            DeviceSpec::Gpu(i) => write!(f, "gpu:{i}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, index) = match s.split_once(':') {
            Some((kind, index)) => {
                let i = index.parse::<usize>().map_err(|_| {
                    format!("invalid device `{s}`: the index after `:` must be a number")
                })?;
                (kind, i)
            }
            None => (s, 0),
        };
        match kind {
            "cpu" if !s.contains(':') => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(index)),
            "gpu" => Ok(DeviceSpec::Gpu(index)),
            _ => Err(format!(
                "invalid device `{s}`, expected `cpu`, `cuda`, `cuda:N`, `gpu` or `gpu:N`"
            )),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `[model]`: the base model a, the initial policy π and the tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The base model a(x) (a Hugging Face GPT-2 directory); required.
    pub base: PathBuf,
    /// The initial policy π (default: a copy of the base, as in the paper).
    #[serde(default)]
    pub policy_init: Option<PathBuf>,
    /// The tokenizer (default: `tokenizer.json` in the base model's directory).
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// Dropout on π during training (a, q and evaluation run without). Paper: 0.1.
    #[serde(default = "default_dropout")]
    pub dropout: f64,
}

fn default_dropout() -> f64 {
    0.1
}

/// Where a reward-maximisation estimator's reward R(x) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardSource {
    /// R(x) = the product of the pointwise constraints b(x) (the paper's RM baselines).
    #[default]
    Constraints,
    /// R(x) = the feature in `reward.feature` (a real-valued score, e.g. a classifier's).
    Feature,
}

/// `[reward]`: the reward of REINFORCE and KL-control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardConfig {
    /// Where R(x) comes from.
    #[serde(default)]
    pub source: RewardSource,
    /// The feature when `source = "feature"` (a tilt-constraints feature table; SEAM: raw
    /// until the trainer depends on tilt-constraints).
    #[serde(default)]
    pub feature: Option<toml::Table>,
    /// R(x) is multiplied by this.
    #[serde(default = "one")]
    pub scale: f64,
}

fn one() -> f64 {
    1.0
}

/// The gradient estimators (METHODS.md section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EstimatorKind {
    /// REINFORCE on samples from π, advantage R(x) − baseline.
    Reinforce,
    /// Ziegler et al.'s KL-control: reward r(x) − β log(π/a), optionally PPO-clipped.
    KlControl,
    /// On-policy DPG (Parshakova et al.): samples from π, advantage P/π (− Z with a baseline).
    Dpg,
    /// Off-policy DPG with a KL-adaptive proposal q (Khalifa et al.): advantage P/q. Off-policy
    /// DPG with a fixed proposal q = a is this with `proposal.criterion = "never"`.
    Gdc,
    /// GDC with the baseline of the paper: advantage P/q − Z π/q.
    #[default]
    GdcPp,
    /// f-DPG (Go et al.): minimise an f-divergence D_f(π‖p).
    Fdpg,
    /// Conditional DPG (Korbak et al. 2022, arXiv 2112.00791): on-policy DPG toward
    /// p_c ∝ a(x|c) b(x) for each context c of `[contexts]`, each advantage divided by its
    /// context's Ẑ_c estimated on the batch.
    Cdpg,
}

impl EstimatorKind {
    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            EstimatorKind::Reinforce => "reinforce",
            EstimatorKind::KlControl => "kl_control",
            EstimatorKind::Dpg => "dpg",
            EstimatorKind::Gdc => "gdc",
            EstimatorKind::GdcPp => "gdc_pp",
            EstimatorKind::Fdpg => "fdpg",
            EstimatorKind::Cdpg => "cdpg",
        }
    }
}

/// The baseline subtracted from an estimator's advantage; which ones apply depends on
/// `estimator.kind` (the plan rejects the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// No baseline.
    None,
    /// REINFORCE: the batch's mean reward.
    Mean,
    /// REINFORCE: the mean reward of the other samples of the batch (RLOO).
    LeaveOneOut,
    /// On-policy DPG: the running estimate of Z; CDPG: Ẑ_c (its advantage
    /// P/(Ẑ_c π) − 1).
    Z,
    /// f-DPG: a moving average of past pseudo-rewards over `baseline_window` samples.
    MovingAverage,
}

/// Whether KL-control's β is fixed or adapted toward a target KL (Ziegler et al.).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaControl {
    /// β stays at `beta`.
    Fixed,
    /// `e = clip(KL/kl_target − 1, ±0.2)`, `β ← β (1 + e · batch / kl_horizon)`.
    Adaptive,
}

/// Where KL-control's KL penalty goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlPenalty {
    /// −β (log π(x) − log a(x)) on the whole sequence, added to r(x).
    Sequence,
    /// −β (log π_t − log a_t) on each token, r(x) on the last (Ziegler; the paper's code).
    PerToken,
}

/// f-DPG's divergence D_f(π‖p).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FDivergence {
    /// Forward KL(p‖π) (this is DPG).
    Kl,
    /// Reverse KL(π‖p).
    Rkl,
    /// Jensen-Shannon.
    Js,
    /// Total variation.
    Tv,
    /// Neyman χ², disco's `ChiSquaredLoss` (pseudo-reward exp(−2 log t) − 1).
    Chi2,
}

/// `[estimator]`: which estimator, and its options. Options that belong to another kind are
/// errors (the plan says which kind uses them), never silently ignored.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimatorConfig {
    /// The estimator (default: GDC++, the paper's method).
    #[serde(default)]
    pub kind: EstimatorKind,
    /// Divide the advantage by the running Z, making the step size independent of Z
    /// (distribution-matching kinds; the paper's code does not: default false).
    #[serde(default)]
    pub normalize_by_z: Option<bool>,
    /// The baseline: reinforce none | mean | leave_one_out (default none, as gdc's PGTrainer);
    /// dpg and cdpg none | z (default none); fdpg none | moving_average (default
    /// moving_average).
    #[serde(default)]
    pub baseline: Option<Baseline>,
    /// f-DPG: the window of the moving-average baseline, in samples (disco: 1024).
    #[serde(default)]
    pub baseline_window: Option<u64>,
    /// f-DPG: the divergence (default kl).
    #[serde(default)]
    pub divergence: Option<FDivergence>,
    /// f-DPG: sample from π instead of the proposal q (default false).
    #[serde(default)]
    pub on_policy: Option<bool>,
    /// KL-control: β, or its initial value when adaptive (paper: 0.2).
    #[serde(default)]
    pub beta: Option<f64>,
    /// KL-control: fixed or adaptive β (paper: adaptive).
    #[serde(default)]
    pub beta_control: Option<BetaControl>,
    /// KL-control, adaptive β: the target KL(π‖a) in nats (paper: 6).
    #[serde(default)]
    pub kl_target: Option<f64>,
    /// KL-control, adaptive β: the horizon in samples (paper: 10000).
    #[serde(default)]
    pub kl_horizon: Option<u64>,
    /// KL-control: sequence-level or per-token penalty (paper: per_token).
    #[serde(default)]
    pub kl_penalty: Option<KlPenalty>,
    /// PPO-clipped updates: KL-control (paper: true), and on-policy dpg and cdpg (default
    /// false; gdc's CDPG code has it as `loss_type: PPO`), whose epochs then reuse each batch
    /// with the clipped surrogate `min(ρA, clip(ρ, 1 ± ε) A)`, `ρ = π(x)/π_old(x)` per
    /// sequence, A the advantage at sampling time.
    #[serde(default)]
    pub ppo: Option<bool>,
    /// With PPO: the ratio clip ε (paper: 0.2).
    #[serde(default)]
    pub ppo_clip: Option<f64>,
    /// With PPO: optimisation epochs per batch (KL-control: the paper's 1; dpg and cdpg: 4,
    /// since with one epoch the clip never binds).
    #[serde(default)]
    pub ppo_epochs: Option<u32>,
    /// KL-control with PPO: learn a value head on π's final hidden states and use GAE
    /// advantages, whitened, as Ziegler et al., gdc and trl do (paper: true; default false:
    /// rewards-to-go without a learned baseline). Needs `kl_penalty = "per_token"`.
    #[serde(default)]
    pub critic: Option<bool>,
    /// KL-control with a critic: GAE λ, with γ = 1 (paper: 0.95).
    #[serde(default)]
    pub gae_lambda: Option<f64>,
    /// KL-control with a critic: the value loss's coefficient (paper: 0.1).
    #[serde(default)]
    pub value_coef: Option<f64>,
    /// KL-control with a critic: clip the new values to `V_old ± value_clip` in the value loss
    /// (gdc and trl: 0.2).
    #[serde(default)]
    pub value_clip: Option<f64>,
}

/// `[training]`: run length and batch sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Samples drawn for training in the whole run (paper: 6.4M pointwise, 8.4M
    /// distributional). Steps = ceil(total_samples / batch_size).
    pub total_samples: u64,
    /// Samples per optimizer step (paper: 512; REINFORCE and KL-control 256).
    pub batch_size: u64,
    /// Samples per forward pass; gradients are accumulated over batch_size / minibatch_size
    /// passes (paper: 32 or 64).
    pub minibatch_size: u64,
    /// Clip the gradient's global L2 norm to this (paper: no clipping); with KL-control's
    /// critic, π and the value head are clipped together.
    pub max_grad_norm: Option<f64>,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self { total_samples: 6_400_000, batch_size: 512, minibatch_size: 32, max_grad_norm: None }
    }
}

/// The optimizers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Adam (the paper's).
    #[default]
    Adam,
    /// AdamW (decoupled weight decay).
    Adamw,
}

/// `[optimizer]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// Adam or AdamW.
    pub algorithm: OptimizerKind,
    /// The peak learning rate (paper: 1.41e-5).
    pub lr: f64,
    /// Adam's β1, β2 (PyTorch's defaults, which the paper used).
    pub betas: [f64; 2],
    /// Adam's ε.
    pub eps: f64,
    /// AdamW's decoupled weight decay (AdamW only; default 0.01, PyTorch's).
    pub weight_decay: Option<f64>,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            algorithm: OptimizerKind::Adam,
            lr: 1.41e-5,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: None,
        }
    }
}

/// Learning-rate schedules (after warm-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Constant (the paper's).
    #[default]
    Constant,
    /// Linear decay to 0 at the last step.
    Linear,
    /// Cosine decay to 0 at the last step.
    Cosine,
}

/// `[schedule]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// The shape after warm-up.
    pub kind: ScheduleKind,
    /// Linear warm-up from 0 over this many optimizer steps (paper: 100).
    pub warmup_steps: u64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self { kind: ScheduleKind::Constant, warmup_steps: 100 }
    }
}

/// `[contexts]`: the prompts of a conditional run (CDPG, and REINFORCE or KL-control on the
/// same prompts). Each training batch draws `per_step` distinct contexts and gives each
/// `training.batch_size / per_step` samples of π(·|c); evaluation uses fixed contexts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextsConfig {
    /// The training contexts: a UTF-8 text file with one context per line (blank lines are
    /// skipped), or a `.jsonl` file with one JSON string per line (for contexts with line
    /// breaks). A context's tokens are the prompt; they are not scored.
    pub file: PathBuf,
    /// Contexts per training batch, drawn without replacement (disco: 16).
    #[serde(default = "default_contexts_per_step")]
    pub per_step: u64,
    /// Held-out evaluation contexts, in the same format (default: drawn from `file`).
    #[serde(default)]
    pub eval_file: Option<PathBuf>,
    /// Contexts per evaluation, fixed for the whole run (the first ones of `eval_file`, or a
    /// seeded draw from `file`); `eval.samples` and `eval.proposal_samples` are shared out
    /// equally among them (default 16, or fewer if there are fewer).
    #[serde(default = "default_contexts_per_step")]
    pub eval_contexts: u64,
}

fn default_contexts_per_step() -> u64 {
    16
}

/// `[sampling]`: how training samples are drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    /// The prompt text (default: none, generation starts from the tokenizer's end-of-text
    /// token, as in the paper). Its tokens are not scored.
    pub prompt: Option<String>,
    /// Tokens generated per sample (paper: 40; RM baselines 25).
    pub new_tokens: u32,
    /// Softmax temperature (paper: 1). Off-policy estimators only (gdc, gdc_pp, fdpg with
    /// `on_policy = false`): their importance weights P/q correct for a tempered q, while the
    /// on-policy ones take the samples to come from π itself.
    pub temperature: f64,
    /// Keep the k most likely tokens. Always an error here: truncation gives q = 0 where p
    /// may be positive, which no importance weight corrects (`tilt sample --top-k` and
    /// `eval.top_p` are where truncation belongs). Kept so that the error names it.
    pub top_k: Option<u32>,
    /// Nucleus sampling mass in (0, 1]: 1 (the paper's, for training), for the same reason
    /// as `top_k`.
    pub top_p: f64,
    /// Stop a sample at the end-of-text token (paper: false, always `new_tokens` tokens).
    pub stop_at_eos: bool,
    /// Where the training samples' tokens are drawn (default: auto).
    pub draw: SamplingDraw,
}

/// `sampling.draw`: where the sampler draws each next token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SamplingDraw {
    /// On the device, except evaluation samples with `eval.top_p` below 1 (on the host).
    #[default]
    Auto,
    /// On the host: each step's logits are read back (double precision).
    Host,
    /// On the device: the logits stay there (evaluation samples with `eval.top_p` below 1
    /// are drawn on the host).
    Device,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            prompt: None,
            new_tokens: 40,
            temperature: 1.0,
            top_k: None,
            top_p: 1.0,
            stop_at_eos: false,
            draw: SamplingDraw::Auto,
        }
    }
}

/// When the proposal q takes π's weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalCriterion {
    /// When the estimated KL(p‖π) < KL(p‖q) (the paper's).
    #[default]
    Kl,
    /// When the estimated TVD(p,π) < TVD(p,q).
    Tvd,
    /// At every check, unconditionally.
    Interval,
    /// Never: q stays the base model.
    Never,
}

/// `[proposal]`: the KL-adaptive proposal of the off-policy estimators (gdc, gdc_pp, fdpg
/// off-policy). An error with an on-policy estimator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProposalConfig {
    /// The update rule.
    pub criterion: ProposalCriterion,
    /// Check every this many optimizer steps (paper: 10).
    pub interval: u64,
    /// Fresh q samples per check (default: interval × batch_size, as gdc).
    pub samples: Option<u64>,
    /// Update only when π is better by a significant margin (one-sided test on the paired
    /// per-sample differences) rather than on the point estimates (paper: false).
    pub require_significance: bool,
    /// The test's level when `require_significance`.
    pub significance_level: f64,
}

impl Default for ProposalConfig {
    fn default() -> Self {
        Self {
            criterion: ProposalCriterion::Kl,
            interval: 10,
            samples: None,
            require_significance: false,
            significance_level: 0.05,
        }
    }
}

/// `[lambda_fit]`: fitting λ for distributional constraints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LambdaFitConfig {
    /// Samples from a (paper: 10,240).
    pub samples: u64,
    /// Stop when the L2 norm of the moment residual is below this (paper's code: 0.01).
    pub tolerance: f64,
    /// At most this many iterations.
    pub max_iterations: u32,
    /// Conditional runs: the training contexts (a seeded draw) the samples are shared among,
    /// λ then matching the moments averaged over them, each context normalised by its own
    /// Z_c (default: every training context, but at most one per 16 samples).
    pub contexts: Option<u64>,
}

impl Default for LambdaFitConfig {
    fn default() -> Self {
        Self { samples: 10_240, tolerance: 0.01, max_iterations: 1000, contexts: None }
    }
}

/// `[eval]`: evaluation (METHODS.md section 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Evaluate every this many optimizer steps, and at the start and end (paper: 10).
    pub interval: u64,
    /// Samples from π per evaluation, drawn with `top_p` (paper: 2048): E\[φ\], diversity,
    /// fluency, KL(π‖a).
    pub samples: u64,
    /// Samples from the training sampler (q, or π for on-policy distribution matching; a for
    /// reward maximisation, whose π need not cover p) per evaluation, for the
    /// importance-sampled KL(p‖π), KL(p‖q), TVD and Z (default 2048).
    pub proposal_samples: u64,
    /// Nucleus mass of the evaluation samples from π (paper: 0.9).
    pub top_p: f64,
    /// Self-BLEU on the first this many evaluation samples (paper: 500).
    pub self_bleu_samples: u64,
    /// How texts are tokenised for Distinct-n and Self-BLEU.
    pub diversity_tokens: crate::metrics::TokenUnit,
    /// Estimate the gradient variance every this many steps, a multiple of `interval` (default
    /// off: it costs one forward and backward pass per sample, on the batch's first 64 samples;
    /// the paper's diagnosis runs used 25).
    pub grad_variance_interval: Option<u64>,
    /// Texts written to the samples file per evaluation.
    pub samples_to_log: u64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            interval: 10,
            samples: 2048,
            proposal_samples: 2048,
            top_p: 0.9,
            self_bleu_samples: 500,
            diversity_tokens: crate::metrics::TokenUnit::Words,
            grad_variance_interval: None,
            samples_to_log: 20,
        }
    }
}

/// `[checkpoint]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Write a checkpoint every this many optimizer steps (paper: 10), and at the end.
    pub interval: u64,
    /// Keep only the newest this many (default 2; 0 keeps all).
    pub keep_last: u64,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self { interval: 10, keep_last: 2 }
    }
}

/// Names of the constraints, for reports (SEAM: from the raw tables).
pub fn constraint_name(spec: &ConstraintSpec) -> Option<&str> {
    spec.get("name").and_then(toml::Value::as_str)
}
