//! The validated run plan: a [`Config`] checked once, with defaults resolved and typed.
//!
//! [`Plan::new`] checks every value and every combination (an option of another estimator, a
//! batch that is not a multiple of the minibatch, a learning rate ≤ 0, a top-p outside (0, 1],
//! a device the backend does not have, ...) and reports all problems at once, each naming the
//! field and its line. Nothing after the plan re-validates user input.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::{
    Backend, Baseline, BetaControl, Config, ConfigError, ConfigSource, ConstraintSpec, DeviceSpec,
    EstimatorKind, EvalConfig, FDivergence, Issue, KlPenalty, OptimizerKind, ProposalCriterion,
    RewardSource, SamplingConfig, SamplingDraw, ScheduleKind, SourceMap, constraint_name,
};

/// REINFORCE's baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReinforceBaseline {
    /// None (gdc's PGTrainer).
    None,
    /// The batch mean reward.
    Mean,
    /// Leave-one-out: the mean reward of the other samples of the batch.
    LeaveOneOut,
}

/// KL-control's β.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Beta {
    /// A fixed β.
    Fixed(f64),
    /// Ziegler et al.'s adaptive β.
    Adaptive {
        /// Initial β.
        init: f64,
        /// Target KL(π‖a), nats.
        target: f64,
        /// Horizon, samples.
        horizon: u64,
    },
}

/// KL-control's PPO options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ppo {
    /// Ratio clip ε.
    pub clip: f64,
    /// Epochs per batch.
    pub epochs: u32,
    /// A value head and GAE advantages (Ziegler's PPO), or rewards-to-go when `None`.
    pub critic: Option<tilt_estimators::Critic>,
}

/// The estimator with exactly the options that apply to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Estimator {
    /// REINFORCE on π's samples.
    Reinforce {
        /// The baseline.
        baseline: ReinforceBaseline,
    },
    /// KL-control (Ziegler et al.).
    KlControl {
        /// β.
        beta: Beta,
        /// Sequence-level or per-token penalty.
        penalty: KlPenalty,
        /// PPO-clipped updates, or plain policy gradient when `None`.
        ppo: Option<Ppo>,
    },
    /// On-policy DPG.
    Dpg {
        /// Subtract the running Z.
        baseline_z: bool,
        /// Divide the advantage by the running Z.
        normalize_by_z: bool,
        /// PPO-clipped epochs over each batch (gdc's CDPG `loss_type: PPO`), or one plain
        /// update when `None`.
        ppo: Option<Ppo>,
    },
    /// Off-policy DPG with the KL-adaptive proposal.
    Gdc {
        /// Divide the advantage by the running Z.
        normalize_by_z: bool,
    },
    /// GDC++ (the paper's).
    GdcPp {
        /// Divide the advantage by the running Z.
        normalize_by_z: bool,
    },
    /// f-DPG.
    Fdpg {
        /// The divergence.
        divergence: FDivergence,
        /// The moving-average baseline's window in samples, `None` without a baseline.
        baseline_window: Option<u64>,
        /// Sample from π rather than q.
        on_policy: bool,
    },
    /// Conditional DPG (on-policy, per-context Ẑ_c).
    Cdpg {
        /// Subtract the baseline π/q = 1 from the Ẑ_c-normalised advantage.
        baseline: bool,
        /// PPO-clipped epochs over each batch, or one plain update when `None`.
        ppo: Option<Ppo>,
    },
}

impl Estimator {
    /// Whether training samples come from a proposal q (which then has a [`Proposal`]).
    pub fn is_off_policy(&self) -> bool {
        match self {
            Estimator::Gdc { .. } | Estimator::GdcPp { .. } => true,
            Estimator::Fdpg { on_policy, .. } => !on_policy,
            _ => false,
        }
    }

    /// Whether it matches a target distribution (needs constraints) rather than maximising a
    /// reward.
    pub fn is_distribution_matching(&self) -> bool {
        !matches!(self, Estimator::Reinforce { .. } | Estimator::KlControl { .. })
    }

    /// Whether it trains toward one target p = P/Z with one running Z (every
    /// distribution-matching estimator but CDPG, whose Z_c varies with the context).
    pub fn tracks_z(&self) -> bool {
        self.is_distribution_matching() && !matches!(self, Estimator::Cdpg { .. })
    }

    /// The PPO settings of KL-control, on-policy DPG and CDPG, when they use PPO.
    pub fn ppo(&self) -> Option<Ppo> {
        match *self {
            Estimator::KlControl { ppo, .. }
            | Estimator::Dpg { ppo, .. }
            | Estimator::Cdpg { ppo, .. } => ppo,
            _ => None,
        }
    }

    /// KL-control's critic, when it has one.
    pub fn critic(&self) -> Option<tilt_estimators::Critic> {
        match self {
            Estimator::KlControl { ppo: Some(Ppo { critic, .. }), .. } => *critic,
            _ => None,
        }
    }
}

/// The optimizer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Optimizer {
    /// Adam or AdamW.
    pub algorithm: OptimizerKind,
    /// Peak learning rate.
    pub lr: f64,
    /// β1, β2.
    pub betas: [f64; 2],
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay (0 for Adam).
    pub weight_decay: f64,
}

/// The learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Shape after warm-up.
    pub kind: ScheduleKind,
    /// Warm-up steps.
    pub warmup_steps: u64,
    /// Total optimizer steps.
    pub total_steps: u64,
}

impl Schedule {
    /// The learning-rate multiplier in [0, 1] at optimizer step `step` (from 0), with the
    /// conventions of transformers' `get_*_schedule_with_warmup`, which the paper's code used:
    /// linear warm-up `step / warmup_steps` (so the very first update has learning rate 0),
    /// then constant, or linear or cosine decay reaching 0 at `total_steps`.
    pub fn factor(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return step as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => 1.0 - progress,
            ScheduleKind::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        }
    }
}

/// A sampler's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Prompt text (`None`: the end-of-text token alone).
    pub prompt: Option<String>,
    /// New tokens per sample.
    pub new_tokens: u32,
    /// Temperature.
    pub temperature: f64,
    /// Top-k (`None`: off).
    pub top_k: Option<u32>,
    /// Top-p.
    pub top_p: f64,
    /// Stop at end-of-text.
    pub stop_at_eos: bool,
    /// Where tokens are drawn.
    pub draw: SamplingDraw,
}

/// The KL-adaptive proposal's settings (off-policy estimators).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proposal {
    /// Update rule.
    pub criterion: ProposalCriterion,
    /// Check interval, steps.
    pub interval: u64,
    /// Fresh q samples per check.
    pub samples: u64,
    /// Significance level when the update needs a significant improvement.
    pub significance_level: Option<f64>,
}

/// λ fitting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LambdaFit {
    /// Samples from a.
    pub samples: u64,
    /// Residual tolerance (L2).
    pub tolerance: f64,
    /// Iteration cap.
    pub max_iterations: u32,
    /// Conditional runs: `lambda_fit.contexts` as set (`None`: the default).
    pub contexts: Option<u64>,
}

/// The contexts of a conditional run (paths resolved).
#[derive(Debug, Clone, PartialEq)]
pub struct ContextsPlan {
    /// Training contexts.
    pub file: PathBuf,
    /// Contexts per training batch.
    pub per_step: u64,
    /// Held-out evaluation contexts.
    pub eval_file: Option<PathBuf>,
    /// Contexts per evaluation (at most this many).
    pub eval_contexts: u64,
}

/// The reward of the reward-maximisation estimators.
#[derive(Debug, Clone, PartialEq)]
pub enum Reward {
    /// The product of the pointwise constraints.
    Constraints {
        /// Multiplier.
        scale: f64,
    },
    /// A feature (raw tilt-constraints feature table, checked by building it).
    Feature {
        /// The feature table.
        feature: toml::Table,
        /// Multiplier.
        scale: f64,
    },
}

/// Everything a run needs, checked. Paths are resolved against the config file's directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The config file.
    pub config_file: PathBuf,
    /// [`Config::content_hash`].
    pub config_hash: String,
    /// Output directory.
    pub output_dir: PathBuf,
    /// Seed.
    pub seed: u64,
    /// Backend.
    pub backend: Backend,
    /// Device.
    pub device: DeviceSpec,
    /// Base model a.
    pub base_model: PathBuf,
    /// Initial policy (`None`: a copy of the base).
    pub policy_init: Option<PathBuf>,
    /// Tokenizer file.
    pub tokenizer: PathBuf,
    /// Dropout on π.
    pub dropout: f64,
    /// Constraints (raw tables, checked by building them).
    pub constraints: Vec<ConstraintSpec>,
    /// Their names, in order.
    pub constraint_names: Vec<String>,
    /// The word-list files they read (resolved).
    pub constraint_files: Vec<PathBuf>,
    /// The reward (reward-maximisation estimators only).
    pub reward: Option<Reward>,
    /// The estimator.
    pub estimator: Estimator,
    /// Training samples in the whole run.
    pub total_samples: u64,
    /// Optimizer steps: ceil(total_samples / batch_size).
    pub steps: u64,
    /// Samples per optimizer step.
    pub batch_size: u64,
    /// Samples per forward pass.
    pub minibatch_size: u64,
    /// Forward passes per optimizer step (gradient accumulation).
    pub accumulation_steps: u64,
    /// Gradient-norm clip.
    pub max_grad_norm: Option<f64>,
    /// Optimizer.
    pub optimizer: Optimizer,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Training sampler.
    pub sampling: Sampling,
    /// The contexts of a conditional run (`None`: one prompt).
    pub contexts: Option<ContextsPlan>,
    /// Proposal updates (off-policy estimators only).
    pub proposal: Option<Proposal>,
    /// λ fit (any estimator, when a constraint has a `moment` other than 0 or 1: reward
    /// maximisation is evaluated against the same p).
    pub lambda_fit: Option<LambdaFit>,
    /// Evaluation.
    pub eval: EvalConfig,
    /// Checkpoint interval, steps.
    pub checkpoint_interval: u64,
    /// Checkpoints kept (0: all).
    pub checkpoint_keep_last: u64,
}

/// `p` without its `.` components (`run/./final` reads `run/final`); `.` if nothing is left.
fn without_dot_components(p: &Path) -> PathBuf {
    let out: PathBuf =
        p.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect();
    if out.as_os_str().is_empty() { PathBuf::from(".") } else { out }
}

/// Settings given on the command line, which replace the config's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--backend`.
    pub backend: Option<Backend>,
    /// `--device`.
    pub device: Option<DeviceSpec>,
}

impl Overrides {
    /// Replaces the config's values by the overrides that are set.
    pub fn apply(&self, config: &mut Config) {
        if let Some(b) = self.backend {
            config.backend = b;
        }
        if let Some(d) = self.device {
            config.device = d;
        }
    }
}

/// Collects issues against the source map.
struct Checker<'a> {
    map: &'a SourceMap,
    issues: Vec<Issue>,
}

impl Checker<'_> {
    fn fail(&mut self, path: &str, message: impl Into<String>) {
        self.issues.push(self.map.issue(path, message));
    }

    fn positive(&mut self, path: &str, value: f64) {
        if !(value.is_finite() && value > 0.0) {
            self.fail(path, format!("must be a positive number, got {value}"));
        }
    }

    fn non_negative(&mut self, path: &str, value: f64) {
        if !(value.is_finite() && value >= 0.0) {
            self.fail(path, format!("must be a number ≥ 0, got {value}"));
        }
    }

    fn at_least_one(&mut self, path: &str, value: u64) {
        if value == 0 {
            self.fail(path, "must be at least 1, got 0");
        }
    }

    fn probability_mass(&mut self, path: &str, value: f64) {
        if !(value > 0.0 && value <= 1.0) {
            self.fail(path, format!("must be in (0, 1], got {value}"));
        }
    }

    /// An option of `owner` set while it does not apply.
    fn not_here<T>(&mut self, path: &str, value: &Option<T>, why: &str) {
        if value.is_some() {
            self.fail(path, format!("not used {why}; remove it"));
        }
    }
}

impl Plan {
    /// Reads, parses and checks a config file, with command-line `overrides` applied.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Plan, LoadError> {
        let source = ConfigSource::read(path)
            .map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
        let (mut config, map) = source.parse()?;
        overrides.apply(&mut config);
        Ok(Plan::new(&config, &map, &source.path, &source.base_dir())?)
    }

    /// Checks `config` (whose file text `map` indexes) and builds the plan; relative paths are
    /// resolved against `base_dir`. All problems are reported together.
    pub fn new(
        config: &Config,
        map: &SourceMap,
        file: &Path,
        base_dir: &Path,
    ) -> Result<Plan, ConfigError> {
        let mut c = Checker { map, issues: Vec::new() };
        let resolve = |p: &Path| {
            if p.is_absolute() { p.to_owned() } else { without_dot_components(&base_dir.join(p)) }
        };

        if config.output_dir.as_os_str().is_empty() {
            c.fail("output_dir", "must not be empty");
        }
        let device_ok = matches!(
            (config.backend, config.device),
            (Backend::Flex | Backend::Ndarray, DeviceSpec::Cpu)
                | (Backend::Tch, DeviceSpec::Cpu | DeviceSpec::Cuda(_))
                | (Backend::Wgpu, DeviceSpec::Gpu(_))
                | (Backend::Cuda, DeviceSpec::Cuda(_))
        );
        if !device_ok {
            let supported = match config.backend {
                Backend::Flex | Backend::Ndarray => "cpu",
                Backend::Tch => "cpu or cuda:N",
                Backend::Wgpu => "gpu:N",
                Backend::Cuda => "cuda:N",
            };
            c.fail(
                "device",
                format!(
                    "backend `{}` has no device `{}` (it takes {supported})",
                    config.backend, config.device
                ),
            );
        }

        // Models.
        let model = &config.model;
        if model.base.as_os_str().is_empty() {
            c.fail("model.base", "must not be empty");
        }
        if model.policy_init.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            c.fail("model.policy_init", "must not be empty (remove it to start from the base)");
        }
        if model.tokenizer.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            c.fail("model.tokenizer", "must not be empty (remove it to use the base's)");
        }
        if !(0.0..1.0).contains(&model.dropout) {
            c.fail("model.dropout", format!("must be in [0, 1), got {}", model.dropout));
        }

        // Constraints: names and moments here, then `check_constraints` builds them.
        let mut names = Vec::new();
        let mut seen = HashSet::new();
        let mut has_moment = false;
        let mut has_pointwise = false;
        for (i, spec) in config.constraints.iter().enumerate() {
            match constraint_name(spec) {
                Some(name) if !name.is_empty() => {
                    if !seen.insert(name.to_owned()) {
                        c.fail(
                            &format!("constraints[{i}].name"),
                            format!("duplicate name `{name}`"),
                        );
                    }
                    names.push(name.to_owned());
                }
                _ => c.fail(
                    &format!("constraints[{i}].name"),
                    "every constraint needs a non-empty string `name`",
                ),
            }
            // Moments 0 and 1 are pointwise constraints (tilt-constraints turns them into φ
            // and not φ); any other needs λ.
            match spec
                .get("moment")
                .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
            {
                Some(m) if m != 0.0 && m != 1.0 => has_moment = true,
                Some(_) => has_pointwise = true,
                None => {
                    has_pointwise |=
                        spec.get("pointwise").and_then(toml::Value::as_bool) == Some(true)
                }
            }
        }

        let constraint_files: Vec<PathBuf> =
            word_list_files(&config.constraints).iter().map(|f| resolve(f)).collect();
        if constraint_files.iter().all(|f| f.exists()) {
            check_constraints(&mut c, &config.constraints, base_dir);
        }
        let estimator = check_estimator(&mut c, config);
        let kind = config.estimator.kind.name();
        if has_pointwise
            && matches!(estimator, Estimator::Fdpg { divergence: FDivergence::Rkl, .. })
        {
            c.fail(
                "estimator.divergence",
                "\"rkl\" is infinite at the first sample that breaks a pointwise constraint \
                 (KL(π‖p) needs π = 0 wherever P = 0, and π starts as a): with pointwise \
                 [[constraints]] use \"kl\", \"js\", \"tv\" or \"chi2\"",
            );
        }

        // Reward and constraints against the estimator's family.
        let reward = if estimator.is_distribution_matching() {
            if config.reward.is_some() {
                c.fail("reward", format!("only reinforce and kl_control use a reward; estimator.kind is `{kind}` (its target comes from [[constraints]])"));
            }
            if config.constraints.is_empty() {
                c.fail("constraints", format!("estimator `{kind}` needs at least one [[constraints]] table to define its target"));
            }
            None
        } else {
            let reward = config.reward.clone().unwrap_or(crate::config::RewardConfig {
                source: RewardSource::Constraints,
                feature: None,
                scale: 1.0,
            });
            if !(reward.scale.is_finite() && reward.scale != 0.0) {
                c.fail(
                    "reward.scale",
                    format!("must be a finite non-zero number, got {}", reward.scale),
                );
            }
            match (reward.source, reward.feature) {
                (RewardSource::Constraints, feature) => {
                    c.not_here("reward.feature", &feature, "with reward.source = \"constraints\"");
                    if !has_pointwise {
                        c.fail("constraints", "reward.source = \"constraints\" needs at least one pointwise [[constraints]] table (pointwise = true, or moment 0 or 1): the reward is their product");
                    }

                    Some(Reward::Constraints { scale: reward.scale })
                }
                (RewardSource::Feature, Some(feature)) => {
                    check_reward_feature(&mut c, &feature, base_dir);
                    Some(Reward::Feature { feature, scale: reward.scale })
                }
                (RewardSource::Feature, None) => {
                    c.fail("reward.feature", "reward.source = \"feature\" needs a `feature` table");
                    None
                }
            }
        };

        // Batches.
        let t = &config.training;
        c.at_least_one("training.batch_size", t.batch_size);
        c.at_least_one("training.minibatch_size", t.minibatch_size);
        c.at_least_one("training.total_samples", t.total_samples);
        if t.batch_size > 0
            && t.minibatch_size > 0
            && !t.batch_size.is_multiple_of(t.minibatch_size)
        {
            let path = if map.contains("training.minibatch_size")
                || !map.contains("training.batch_size")
            {
                "training.minibatch_size"
            } else {
                "training.batch_size"
            };
            c.fail(
                path,
                format!(
                    "training.batch_size ({}) must be a multiple of training.minibatch_size ({})",
                    t.batch_size, t.minibatch_size
                ),
            );
        }
        if t.batch_size > 0 && t.total_samples > 0 && t.total_samples < t.batch_size {
            c.fail(
                "training.total_samples",
                format!("{} is less than one batch ({})", t.total_samples, t.batch_size),
            );
        }
        if let Some(norm) = t.max_grad_norm {
            c.positive("training.max_grad_norm", norm);
        }
        let steps = t.total_samples.div_ceil(t.batch_size.max(1));
        let accumulation_steps = t.batch_size / t.minibatch_size.max(1);

        // Optimizer and schedule.
        let o = &config.optimizer;
        c.positive("optimizer.lr", o.lr);
        for (i, b) in o.betas.iter().enumerate() {
            if !(0.0..1.0).contains(b) {
                c.fail("optimizer.betas", format!("β{} must be in [0, 1), got {b}", i + 1));
            }
        }
        c.positive("optimizer.eps", o.eps);
        let weight_decay = match (o.algorithm, o.weight_decay) {
            (OptimizerKind::Adam, wd) => {
                c.not_here(
                    "optimizer.weight_decay",
                    &wd,
                    "by algorithm = \"adam\" (use \"adamw\")",
                );
                0.0
            }
            (OptimizerKind::Adamw, wd) => {
                let wd = wd.unwrap_or(0.01);
                c.non_negative("optimizer.weight_decay", wd);
                wd
            }
        };
        let s = &config.schedule;
        if steps > 0 && s.warmup_steps > steps {
            c.fail(
                "schedule.warmup_steps",
                format!(
                    "{} warm-up steps exceed the run's {steps} optimizer steps",
                    s.warmup_steps
                ),
            );
        }

        // Sampling.
        let sp = &config.sampling;
        c.at_least_one("sampling.new_tokens", u64::from(sp.new_tokens));
        c.positive("sampling.temperature", sp.temperature);
        if sp.top_k == Some(0) {
            c.fail("sampling.top_k", "must be at least 1 (remove it to disable top-k)");
        }
        c.probability_mass("sampling.top_p", sp.top_p);
        check_training_distribution(&mut c, sp, &estimator, kind);
        if sp.prompt.as_deref() == Some("") {
            c.fail("sampling.prompt", "must not be empty (remove it to start from end-of-text)");
        }

        let contexts = check_contexts(&mut c, config, &estimator, &resolve);

        // Proposal.
        let proposal = if estimator.is_off_policy() {
            let p = config.proposal.clone().unwrap_or_default();
            c.at_least_one("proposal.interval", p.interval);
            if let Some(n) = p.samples {
                c.at_least_one("proposal.samples", n);
            }
            let significance_level = if p.require_significance {
                if matches!(p.criterion, ProposalCriterion::Interval | ProposalCriterion::Never) {
                    c.fail(
                        "proposal.require_significance",
                        "only applies to criterion = \"kl\" or \"tvd\"",
                    );
                }
                if !(p.significance_level > 0.0 && p.significance_level < 1.0) {
                    c.fail(
                        "proposal.significance_level",
                        format!("must be in (0, 1), got {}", p.significance_level),
                    );
                }
                Some(p.significance_level)
            } else {
                if map.contains("proposal.significance_level") {
                    c.fail(
                        "proposal.significance_level",
                        "not used without require_significance = true; remove it",
                    );
                }
                None
            };
            Some(Proposal {
                criterion: p.criterion,
                interval: p.interval,
                samples: p.samples.unwrap_or(p.interval.saturating_mul(t.batch_size)),
                significance_level,
            })
        } else {
            if config.proposal.is_some() {
                c.fail(
                    "proposal",
                    format!(
                        "estimator `{kind}` samples from π and has no proposal; remove [proposal]"
                    ),
                );
            }
            None
        };

        // λ fit.
        let lf = &config.lambda_fit;
        c.at_least_one("lambda_fit.samples", lf.samples);
        c.positive("lambda_fit.tolerance", lf.tolerance);
        c.at_least_one("lambda_fit.max_iterations", u64::from(lf.max_iterations));
        // λ is fitted whenever there are moment constraints: distribution matching trains
        // toward p, and reward maximisation is evaluated against the same p (KL(p‖π), TVD), so
        // that the two are compared on one target.
        if config.contexts.is_none() {
            c.not_here("lambda_fit.contexts", &lf.contexts, "without a [contexts] table");
        }
        if let Some(k) = lf.contexts {
            c.at_least_one("lambda_fit.contexts", k);
            if k > 0 && lf.samples < 2 * k {
                c.fail(
                    "lambda_fit.contexts",
                    format!(
                        "each context's moments are estimated from its own samples:                          lambda_fit.samples ({}) must be at least 2 per context",
                        lf.samples
                    ),
                );
            }
        }
        let lambda_fit = has_moment.then_some(LambdaFit {
            samples: lf.samples,
            tolerance: lf.tolerance,
            max_iterations: lf.max_iterations,
            contexts: lf.contexts,
        });

        // Evaluation and checkpoints.
        let e = &config.eval;
        c.at_least_one("eval.interval", e.interval);
        c.at_least_one("eval.samples", e.samples);
        c.at_least_one("eval.proposal_samples", e.proposal_samples);
        c.probability_mass("eval.top_p", e.top_p);
        if e.self_bleu_samples < 2 {
            c.fail(
                "eval.self_bleu_samples",
                format!(
                    "must be at least 2 (each text needs another as reference), got {}",
                    e.self_bleu_samples
                ),
            );
        }
        if let Some(k) = e.grad_variance_interval {
            c.at_least_one("eval.grad_variance_interval", k);
            if k > 0 && e.interval > 0 && !k.is_multiple_of(e.interval) {
                c.fail(
                    "eval.grad_variance_interval",
                    format!(
                        "must be a multiple of eval.interval ({}), so that each measurement \
                         lands in an evaluation record; got {k}",
                        e.interval
                    ),
                );
            }
        }
        c.at_least_one("checkpoint.interval", config.checkpoint.interval);

        if !c.issues.is_empty() {
            c.issues.sort_by_key(|i| i.location.map_or((usize::MAX, 0), |l| (l.line, l.column)));
            return Err(ConfigError { file: file.to_owned(), issues: c.issues });
        }
        let base_model = resolve(&model.base);
        Ok(Plan {
            config_file: file.to_owned(),
            config_hash: config.content_hash(),
            output_dir: resolve(&config.output_dir),
            seed: config.seed,
            backend: config.backend,
            device: config.device,
            tokenizer: model
                .tokenizer
                .as_deref()
                .map_or_else(|| base_model.join("tokenizer.json"), resolve),
            base_model,
            policy_init: model.policy_init.as_deref().map(resolve),
            dropout: model.dropout,
            constraints: config.constraints.clone(),
            constraint_names: names,
            constraint_files,
            reward,
            estimator,
            total_samples: t.total_samples,
            steps,
            batch_size: t.batch_size,
            minibatch_size: t.minibatch_size,
            accumulation_steps,
            max_grad_norm: t.max_grad_norm,
            optimizer: Optimizer {
                algorithm: o.algorithm,
                lr: o.lr,
                betas: o.betas,
                eps: o.eps,
                weight_decay,
            },
            schedule: Schedule { kind: s.kind, warmup_steps: s.warmup_steps, total_steps: steps },
            sampling: Sampling {
                prompt: sp.prompt.clone(),
                new_tokens: sp.new_tokens,
                temperature: sp.temperature,
                top_k: sp.top_k,
                top_p: sp.top_p,
                stop_at_eos: sp.stop_at_eos,
                draw: sp.draw,
            },
            contexts,
            proposal,
            lambda_fit,
            eval: e.clone(),
            checkpoint_interval: config.checkpoint.interval,
            checkpoint_keep_last: config.checkpoint.keep_last,
        })
    }

    /// The samples file, metrics log, plots and checkpoints directory under `output_dir`.
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.output_dir.join(crate::checkpoint::CHECKPOINTS_DIR)
    }

    /// The inputs the run reads that do not exist (checked by `tilt check`; the plan itself
    /// reads only the constraints' word lists, to build them, and only when all are there).
    pub fn missing_inputs(&self) -> Vec<(&'static str, PathBuf)> {
        let mut inputs =
            vec![("model.base", &self.base_model), ("model.tokenizer", &self.tokenizer)];
        if let Some(p) = &self.policy_init {
            inputs.push(("model.policy_init", p));
        }
        inputs.extend(self.constraint_files.iter().map(|f| ("constraints (word list)", f)));
        if let Some(c) = &self.contexts {
            inputs.push(("contexts.file", &c.file));
            if let Some(f) = &c.eval_file {
                inputs.push(("contexts.eval_file", f));
            }
        }
        inputs.into_iter().filter(|(_, p)| !p.exists()).map(|(n, p)| (n, p.clone())).collect()
    }
}

/// Why [`Plan::load`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}", path = .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config is invalid.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// The `file` of every word-list feature in `tables`, nested ones included, as written.
fn word_list_files(tables: &[toml::Table]) -> Vec<PathBuf> {
    fn walk(value: &toml::Value, out: &mut Vec<PathBuf>) {
        match value {
            toml::Value::Table(t) => {
                if t.get("kind").and_then(toml::Value::as_str) == Some("wordlist")
                    && let Some(file) = t.get("file").and_then(toml::Value::as_str)
                {
                    out.push(PathBuf::from(file));
                }
                t.values().for_each(|v| walk(v, out));
            }
            toml::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    tables.iter().for_each(|t| walk(&toml::Value::Table(t.clone()), &mut out));
    out
}

/// Reads and builds the `[[constraints]]` tables as a run does (tilt-constraints checks
/// features, moments, word lists, regexes and programs), so that `tilt check` and
/// `--dry-run` reject what `tilt train` would. An error names the table and its field.
fn check_constraints(c: &mut Checker<'_>, tables: &[toml::Table], base_dir: &Path) {
    let mut specs = Vec::new();
    for (i, table) in tables.iter().enumerate() {
        match toml::Value::Table(table.clone()).try_into::<tilt_constraints::ConstraintSpec>() {
            Ok(spec) => specs.push(spec),
            Err(e) => c.fail(&format!("constraints[{i}]"), e.to_string().trim().to_owned()),
        }
    }
    if specs.len() < tables.len() {
        return;
    }
    match tilt_constraints::build(&specs, base_dir) {
        Ok(_) => {}
        Err(tilt_constraints::Error::Spec { constraint, field, reason }) => {
            let path = match specs.iter().position(|s| s.name == constraint) {
                Some(i) => format!("constraints[{i}].{field}"),
                None => "constraints".to_owned(),
            };
            c.fail(&path, format!("constraint `{constraint}`: {reason}"));
        }
        Err(e) => c.fail("constraints", e.to_string()),
    }
}

/// Reads and builds `reward.feature` as a run does.
fn check_reward_feature(c: &mut Checker<'_>, table: &toml::Table, base_dir: &Path) {
    let built = toml::Value::Table(table.clone())
        .try_into::<tilt_constraints::FeatureSpec>()
        .map_err(|e| e.to_string())
        .and_then(|spec| spec.build("reward", base_dir).map(drop).map_err(|e| e.to_string()));
    if let Err(e) = built {
        c.fail("reward.feature", e.trim().to_owned());
    }
}

/// Checks `[contexts]` against the estimator and the constraints, and reads its files when they
/// exist (a missing one is reported by [`Plan::missing_inputs`]).
fn check_contexts(
    c: &mut Checker<'_>,
    config: &Config,
    estimator: &Estimator,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Option<ContextsPlan> {
    let kind = config.estimator.kind.name();
    let Some(cc) = &config.contexts else {
        if matches!(estimator, Estimator::Cdpg { .. }) {
            c.fail(
                "estimator.kind",
                "cdpg is conditional: it needs a [contexts] table (file = one context per line)",
            );
        }
        return None;
    };
    if estimator.tracks_z() {
        c.fail(
            "contexts",
            format!(
                "estimator `{kind}` trains toward one p = P/Z, but with contexts each has its own \
                 Z_c: use kind = \"cdpg\" (or reward maximisation: reinforce, kl_control)"
            ),
        );
    }
    if config.sampling.prompt.is_some() {
        c.fail("sampling.prompt", "a conditional run's prompts are its [contexts]; remove it");
    }
    let batch = config.training.batch_size;
    c.at_least_one("contexts.per_step", cc.per_step);
    if cc.per_step > 0 && batch > 0 {
        if !batch.is_multiple_of(cc.per_step) {
            c.fail(
                "contexts.per_step",
                format!(
                    "training.batch_size ({batch}) must be a multiple of contexts.per_step ({})",
                    cc.per_step
                ),
            );
        } else if matches!(estimator, Estimator::Cdpg { .. }) && batch / cc.per_step < 2 {
            c.fail(
                "contexts.per_step",
                format!(
                    "CDPG estimates each Z_c from its context's samples, which needs at least 2 \
                     per context; training.batch_size / per_step is {}",
                    batch / cc.per_step
                ),
            );
        }
    }
    c.at_least_one("contexts.eval_contexts", cc.eval_contexts);
    let e = &config.eval;
    if cc.eval_contexts > 0 && e.proposal_samples < 2 * cc.eval_contexts {
        c.fail(
            "eval.proposal_samples",
            format!(
                "the importance-sampled metrics estimate each evaluation context's Z_c from its \
                 samples: at least 2 per context, {} for contexts.eval_contexts = {}",
                2 * cc.eval_contexts,
                cc.eval_contexts
            ),
        );
    }
    if cc.eval_contexts > 0 && e.samples < cc.eval_contexts {
        c.fail(
            "eval.samples",
            format!("at least one per evaluation context ({})", cc.eval_contexts),
        );
    }
    let plan = ContextsPlan {
        file: resolve(&cc.file),
        per_step: cc.per_step,
        eval_file: cc.eval_file.as_deref().map(resolve),
        eval_contexts: cc.eval_contexts,
    };
    if plan.file.exists() {
        match crate::contexts::read_contexts(&plan.file) {
            Ok(texts) if (texts.len() as u64) < cc.per_step => c.fail(
                "contexts.per_step",
                format!(
                    "{} distinct contexts per batch, but {} has only {}",
                    cc.per_step,
                    plan.file.display(),
                    texts.len()
                ),
            ),
            Ok(_) => {}
            Err(err) => c.fail("contexts.file", err.to_string()),
        }
    }
    if let Some(f) = plan.eval_file.as_ref().filter(|f| f.exists())
        && let Err(err) = crate::contexts::read_contexts(f)
    {
        c.fail("contexts.eval_file", err.to_string());
    }
    Some(plan)
}

/// Checks that `[sampling]` draws training samples the estimator can use: no truncation
/// (top-k, top-p), which gives q = 0 where p may be positive, so that no importance weight
/// can correct for it; and for on-policy estimators, whose formulas take the samples to
/// come from π itself (q = π), no temperature either. Off-policy estimators weight by P/q,
/// which is exact for a tempered q.
fn check_training_distribution(
    c: &mut Checker<'_>,
    sp: &SamplingConfig,
    estimator: &Estimator,
    kind: &str,
) {
    let truncates = "truncates the training distribution: its samples miss tokens where p may \
                     be positive, which biases every estimator; remove it (evaluation samples \
                     with eval.top_p)";
    if sp.top_k.is_some_and(|k| k > 0) {
        c.fail("sampling.top_k", truncates);
    }
    if sp.top_p > 0.0 && sp.top_p < 1.0 {
        c.fail("sampling.top_p", truncates);
    }
    if !estimator.is_off_policy() && sp.temperature > 0.0 && sp.temperature != 1.0 {
        c.fail(
            "sampling.temperature",
            format!(
                "`{kind}` is on-policy: its formulas take the samples to come from π itself, \
                 and a temperature of {} samples another distribution; use 1, or an \
                 off-policy estimator (gdc, gdc_pp, or fdpg with on_policy = false), whose \
                 importance weights P/q correct for it",
                sp.temperature
            ),
        );
    }
}

/// Checks `[estimator]`: options of other kinds are errors, values in range, defaults filled.
fn check_estimator(c: &mut Checker<'_>, config: &Config) -> Estimator {
    let e = &config.estimator;
    let kind = e.kind.name();
    let dm = !matches!(e.kind, EstimatorKind::Reinforce | EstimatorKind::KlControl);
    let why = format!("by estimator.kind = \"{kind}\"");
    // Options owned by other kinds.
    if !dm {
        c.not_here("estimator.normalize_by_z", &e.normalize_by_z, &why);
    }
    if e.kind == EstimatorKind::Fdpg {
        let why = format!("{why} (f-DPG always divides by Z: its pseudo-rewards use p = P/Z)");
        c.not_here("estimator.normalize_by_z", &e.normalize_by_z, &why);
    }
    if e.kind != EstimatorKind::Fdpg {
        c.not_here("estimator.divergence", &e.divergence, &why);
        c.not_here("estimator.on_policy", &e.on_policy, &why);
        c.not_here("estimator.baseline_window", &e.baseline_window, &why);
    }
    if e.kind != EstimatorKind::KlControl {
        c.not_here("estimator.beta", &e.beta, &why);
        c.not_here("estimator.beta_control", &e.beta_control, &why);
        c.not_here("estimator.kl_target", &e.kl_target, &why);
        c.not_here("estimator.kl_horizon", &e.kl_horizon, &why);
        c.not_here("estimator.kl_penalty", &e.kl_penalty, &why);
        if !matches!(e.kind, EstimatorKind::Dpg | EstimatorKind::Cdpg) {
            let why = format!("{why} (PPO applies to kl_control, dpg and cdpg: on-policy)");
            c.not_here("estimator.ppo", &e.ppo, &why);
            c.not_here("estimator.ppo_clip", &e.ppo_clip, &why);
            c.not_here("estimator.ppo_epochs", &e.ppo_epochs, &why);
        }
        c.not_here("estimator.critic", &e.critic, &why);
        c.not_here("estimator.gae_lambda", &e.gae_lambda, &why);
        c.not_here("estimator.value_coef", &e.value_coef, &why);
        c.not_here("estimator.value_clip", &e.value_clip, &why);
    }
    if e.kind == EstimatorKind::Cdpg {
        let why = format!("{why} (CDPG always divides by its per-context Ẑ_c)");
        c.not_here("estimator.normalize_by_z", &e.normalize_by_z, &why);
    }
    if matches!(e.kind, EstimatorKind::KlControl | EstimatorKind::Gdc | EstimatorKind::GdcPp) {
        c.not_here("estimator.baseline", &e.baseline, &why);
    }
    let bad_baseline = |c: &mut Checker<'_>, allowed: &str| {
        if let Some(b) = e.baseline {
            let name = toml::Value::try_from(b)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            c.fail(
                "estimator.baseline",
                format!("`{name}` is not a baseline of `{kind}`, expected one of {allowed}"),
            );
        }
    };
    // DPG's and CDPG's baseline: none or z.
    let z_baseline = |c: &mut Checker<'_>| match e.baseline {
        None | Some(Baseline::None) => false,
        Some(Baseline::Z) => true,
        Some(_) => {
            bad_baseline(c, "`none`, `z`");
            false
        }
    };
    let normalize_by_z = e.normalize_by_z.unwrap_or(false);
    match e.kind {
        EstimatorKind::Reinforce => {
            let baseline = match e.baseline {
                None | Some(Baseline::None) => ReinforceBaseline::None,
                Some(Baseline::Mean) => ReinforceBaseline::Mean,
                Some(Baseline::LeaveOneOut) => ReinforceBaseline::LeaveOneOut,
                Some(_) => {
                    bad_baseline(c, "`none`, `mean`, `leave_one_out`");
                    ReinforceBaseline::None
                }
            };
            Estimator::Reinforce { baseline }
        }
        EstimatorKind::KlControl => {
            let init = e.beta.unwrap_or(0.2);
            c.positive("estimator.beta", init);
            let beta = match e.beta_control.unwrap_or(BetaControl::Adaptive) {
                BetaControl::Fixed => {
                    let why = "with beta_control = \"fixed\"";
                    c.not_here("estimator.kl_target", &e.kl_target, why);
                    c.not_here("estimator.kl_horizon", &e.kl_horizon, why);
                    Beta::Fixed(init)
                }
                BetaControl::Adaptive => {
                    let target = e.kl_target.unwrap_or(6.0);
                    let horizon = e.kl_horizon.unwrap_or(10_000);
                    c.positive("estimator.kl_target", target);
                    c.at_least_one("estimator.kl_horizon", horizon);
                    Beta::Adaptive { init, target, horizon }
                }
            };
            let penalty = e.kl_penalty.unwrap_or(KlPenalty::PerToken);
            let why = "with ppo = false (the critic is part of KL-control's PPO)";
            let ppo = ppo_settings(c, e, true, 1, why);
            let ppo = if let Some(ppo) = ppo {
                Some(Ppo { critic: critic(c, e, penalty), ..ppo })
            } else {
                c.not_here("estimator.critic", &e.critic, why);
                c.not_here("estimator.gae_lambda", &e.gae_lambda, why);
                c.not_here("estimator.value_coef", &e.value_coef, why);
                c.not_here("estimator.value_clip", &e.value_clip, why);
                None
            };
            Estimator::KlControl { beta, penalty, ppo }
        }
        EstimatorKind::Dpg => {
            Estimator::Dpg { baseline_z: z_baseline(c), normalize_by_z, ppo: dm_ppo(c, e) }
        }
        EstimatorKind::Cdpg => Estimator::Cdpg { baseline: z_baseline(c), ppo: dm_ppo(c, e) },
        EstimatorKind::Gdc => Estimator::Gdc { normalize_by_z },
        EstimatorKind::GdcPp => Estimator::GdcPp { normalize_by_z },
        EstimatorKind::Fdpg => {
            let with_baseline = match e.baseline {
                None | Some(Baseline::MovingAverage) => true,
                Some(Baseline::None) => false,
                Some(_) => {
                    bad_baseline(c, "`none`, `moving_average`");
                    true
                }
            };
            let baseline_window = if with_baseline {
                let w = e.baseline_window.unwrap_or(1024);
                c.at_least_one("estimator.baseline_window", w);
                Some(w)
            } else {
                c.not_here(
                    "estimator.baseline_window",
                    &e.baseline_window,
                    "with baseline = \"none\"",
                );
                None
            };
            Estimator::Fdpg {
                divergence: e.divergence.unwrap_or(FDivergence::Kl),
                baseline_window,
                on_policy: e.on_policy.unwrap_or(false),
            }
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = |o: &Option<PathBuf>| {
            o.as_ref().map_or("(copy of base)".to_owned(), |p| p.display().to_string())
        };
        writeln!(
            f,
            "config        {} (sha256 {})",
            self.config_file.display(),
            &self.config_hash[..12]
        )?;
        writeln!(f, "output        {}", self.output_dir.display())?;
        writeln!(f, "backend       {} on {}; seed {}", self.backend, self.device, self.seed)?;
        writeln!(f, "base model a  {}", self.base_model.display())?;
        writeln!(f, "initial π     {}", p(&self.policy_init))?;
        writeln!(f, "tokenizer     {}", self.tokenizer.display())?;
        writeln!(f, "dropout       {}", self.dropout)?;
        writeln!(
            f,
            "constraints   {}",
            if self.constraint_names.is_empty() {
                "(none)".to_owned()
            } else {
                self.constraint_names.join(", ")
            }
        )?;
        if let Some(r) = &self.reward {
            writeln!(f, "reward        {r:?}")?;
        }
        writeln!(f, "estimator     {:?}", self.estimator)?;
        let drawn = self.steps * self.batch_size;
        let rounded = if drawn == self.total_samples {
            String::new()
        } else {
            format!(" (total_samples {} rounded up to whole steps)", self.total_samples)
        };
        writeln!(
            f,
            "training      {drawn} samples{rounded} = {} steps of {} ({} × {} accumulated); max \
             grad norm {}",
            self.steps,
            self.batch_size,
            self.accumulation_steps,
            self.minibatch_size,
            self.max_grad_norm.map_or("none".to_owned(), |n| n.to_string())
        )?;
        let o = &self.optimizer;
        writeln!(
            f,
            "optimizer     {:?} lr {} betas {:?} eps {} weight decay {}",
            o.algorithm, o.lr, o.betas, o.eps, o.weight_decay
        )?;
        writeln!(
            f,
            "schedule      {:?}, {} warm-up steps",
            self.schedule.kind, self.schedule.warmup_steps
        )?;
        let s = &self.sampling;
        writeln!(
            f,
            "sampling      {} new tokens from {}; temperature {} top-k {} top-p {} stop at EOS {}, \
             drawn {:?}",
            s.new_tokens,
            match (&self.contexts, s.prompt.as_deref()) {
                (Some(_), _) => "each context".to_owned(),
                (None, Some(p)) => format!("{p:?}"),
                (None, None) => "<end-of-text>".to_owned(),
            },
            s.temperature,
            s.top_k.map_or("off".to_owned(), |k| k.to_string()),
            s.top_p,
            s.stop_at_eos,
            s.draw
        )?;
        if let Some(c) = &self.contexts {
            writeln!(
                f,
                "contexts      {}: {} per batch ({} samples each); evaluation on {} of {}",
                c.file.display(),
                c.per_step,
                self.batch_size / c.per_step.max(1),
                c.eval_contexts,
                c.eval_file.as_ref().unwrap_or(&c.file).display()
            )?;
        }
        match &self.proposal {
            Some(p) => writeln!(
                f,
                "proposal      {:?} every {} steps on {} samples{}",
                p.criterion,
                p.interval,
                p.samples,
                p.significance_level.map_or(String::new(), |a| format!(", significant at {a}"))
            )?,
            None => writeln!(f, "proposal      none (on-policy)")?,
        }
        match &self.lambda_fit {
            Some(l) => writeln!(
                f,
                "λ fit         {} samples{}, tolerance {}, ≤ {} iterations",
                l.samples,
                match (&self.contexts, l.contexts) {
                    (None, _) => String::new(),
                    (Some(_), Some(k)) => format!(" over {k} contexts (moments averaged)"),
                    (Some(_), None) => format!(
                        " over every context, at most {} (moments averaged)",
                        (l.samples / 16).max(1)
                    ),
                },
                l.tolerance,
                l.max_iterations
            )?,
            None => writeln!(f, "λ fit         none (no moment constraints)")?,
        }
        let e = &self.eval;
        writeln!(
            f,
            "eval          every {} steps: {} π samples (top-p {}), {} training-sampler samples, Self-BLEU on {} ({:?}), gradient variance {}",
            e.interval,
            e.samples,
            e.top_p,
            e.proposal_samples,
            e.self_bleu_samples,
            e.diversity_tokens,
            e.grad_variance_interval.map_or("off".to_owned(), |k| format!("every {k} steps"))
        )?;
        write!(
            f,
            "checkpoints   every {} steps, keep {}",
            self.checkpoint_interval,
            if self.checkpoint_keep_last == 0 {
                "all".to_owned()
            } else {
                format!("the last {}", self.checkpoint_keep_last)
            }
        )
    }
}

/// PPO for on-policy DPG and CDPG: off unless `ppo = true` (the paper's DPG takes one
/// step per batch); then 4 epochs by default (with one epoch the clip never binds, the first
/// epoch's ratio being 1).
fn dm_ppo(c: &mut Checker<'_>, e: &crate::config::EstimatorConfig) -> Option<Ppo> {
    ppo_settings(c, e, false, 4, "without ppo = true")
}

/// `ppo` (default `on`), with `ppo_clip` (default 0.2) and `ppo_epochs` (default `epochs`),
/// which are errors when PPO is off (`why_off` says why); no critic.
fn ppo_settings(
    c: &mut Checker<'_>,
    e: &crate::config::EstimatorConfig,
    on: bool,
    epochs: u32,
    why_off: &str,
) -> Option<Ppo> {
    if !e.ppo.unwrap_or(on) {
        c.not_here("estimator.ppo_clip", &e.ppo_clip, why_off);
        c.not_here("estimator.ppo_epochs", &e.ppo_epochs, why_off);
        return None;
    }
    let ppo = Ppo {
        clip: e.ppo_clip.unwrap_or(0.2),
        epochs: e.ppo_epochs.unwrap_or(epochs),
        critic: None,
    };
    c.positive("estimator.ppo_clip", ppo.clip);
    c.at_least_one("estimator.ppo_epochs", u64::from(ppo.epochs));
    Some(ppo)
}

/// KL-control's critic from `critic`, `gae_lambda`, `value_coef` and `value_clip` (gdc's and
/// trl's defaults: 0.95, 0.1, 0.2); the three settings need `critic = true`.
fn critic(
    c: &mut Checker<'_>,
    e: &crate::config::EstimatorConfig,
    penalty: KlPenalty,
) -> Option<tilt_estimators::Critic> {
    if !e.critic.unwrap_or(false) {
        let why = "without critic = true (KL-control then weighs tokens by their rewards-to-go, \
                   with no value head)";
        c.not_here("estimator.gae_lambda", &e.gae_lambda, why);
        c.not_here("estimator.value_coef", &e.value_coef, why);
        c.not_here("estimator.value_clip", &e.value_clip, why);
        return None;
    }
    if penalty != KlPenalty::PerToken {
        c.fail(
            "estimator.critic",
            "a critic needs per-token rewards: set kl_penalty = \"per_token\"",
        );
    }
    let d = tilt_estimators::Critic::default();
    let critic = tilt_estimators::Critic {
        gae_lambda: e.gae_lambda.unwrap_or(d.gae_lambda),
        value_coef: e.value_coef.unwrap_or(d.value_coef),
        value_clip: e.value_clip.or(d.value_clip),
    };
    if !(0.0..=1.0).contains(&critic.gae_lambda) {
        c.fail("estimator.gae_lambda", format!("must be in [0, 1], got {}", critic.gae_lambda));
    }
    c.non_negative("estimator.value_coef", critic.value_coef);
    if let Some(v) = e.value_clip {
        c.positive("estimator.value_clip", v);
    }
    Some(critic)
}
