//! The training loop (METHODS §4): load a, π and q, build the target (fit λ for moment
//! constraints), then per step sample, score once, estimate, accumulate, step, track Z, update
//! the proposal; evaluate every `eval.interval` steps; checkpoint; export π at the end.
//!
//! - [`rollout`]: the sampler and the once-per-sample host scores,
//! - [`target`]: constraints, EBM, λ fit, reward,
//! - `step`: one optimizer step, `eval`: the metrics, `state`: checkpoints and resume.

pub(crate) mod eval;
mod progress;
pub mod rollout;
mod state;
mod step;
pub mod target;
mod ztrack;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use self::ztrack::ZLog;
use anyhow::{Context, Result};
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tilt_estimators::{Estimator, ProposalCriterion, ProposalUpdate};
use tilt_policies::{Gpt2, Gpt2Tokenizer, ValueHead, checkpoint::load_hf_dir};

pub(crate) use self::progress::print_line;
use self::rollout::Sampler;
pub(crate) use self::state::has_records;
pub use self::state::{check_resumable, resume_from};
pub use self::step::{NonFiniteLoss, StepReport, build_estimator};
use self::target::Target;
use crate::contexts::Contexts;
use crate::parallel::Peer;
use crate::plan::{Plan, Proposal};
use crate::report::{EvalRecord, MetricsLog, read_metrics, render_plots, summary_table};

/// Files a run writes under `output_dir`.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The samples file.
pub const SAMPLES_FILE: &str = "samples.jsonl";
/// The final policy (Hugging Face layout, with the tokenizer).
pub const FINAL_DIR: &str = "final";
/// Plots.
pub const PLOTS_DIR: &str = "plots";
/// Where `tilt train --overwrite` sets the earlier run's files aside; the new run deletes it
/// once it has written its first checkpoint.
pub const REPLACED_RUN_DIR: &str = ".replaced-run";

/// Everything a run writes under `output_dir` (what `--overwrite` replaces).
pub fn run_outputs() -> [&'static str; 6] {
    [
        METRICS_FILE,
        SAMPLES_FILE,
        crate::checkpoint::CHECKPOINTS_DIR,
        FINAL_DIR,
        PLOTS_DIR,
        crate::report::RUN_FILE,
    ]
}

/// Rows per sampling call (bounded by the forward minibatch for memory).
const SAMPLE_CHUNK: usize = 64;

/// Options of a run beyond its plan.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from this checkpoint (a `step-N` directory, a `checkpoints/` directory or the
    /// run's output directory).
    pub resume: Option<PathBuf>,
    /// Stop after this many optimizer steps in total (tests; the plan's `steps` otherwise).
    pub stop_after: Option<u64>,
    /// Set (by a Ctrl-C handler) to stop after the current step with a checkpoint: the run
    /// then returns [`Interrupted`].
    pub interrupt: Option<Arc<AtomicBool>>,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress_bar: bool,
}

/// The run was interrupted (Ctrl-C) and stopped cleanly after a checkpoint.
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted after step {step}: the checkpoint is in {checkpoint}; continue the run with \
     `tilt train --resume {output}`",
    checkpoint = .checkpoint.display(),
    output = .output_dir.display()
)]
pub struct Interrupted {
    /// The last completed step.
    pub step: u64,
    /// The checkpoint written.
    pub checkpoint: PathBuf,
    /// The run's output directory.
    pub output_dir: PathBuf,
}

/// What a finished run returns.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Optimizer steps done.
    pub steps: u64,
    /// The evaluation records of the run (this invocation's).
    pub records: Vec<EvalRecord>,
    /// The exported policy.
    pub final_dir: Option<PathBuf>,
    /// The λ fit's report line, if λ was fitted.
    pub lambda: Vec<f64>,
}

/// The state of a run in progress.
pub(crate) struct Run<B: AutodiffBackend> {
    plan: Plan,
    device: B::Device,
    tokenizer: Gpt2Tokenizer,
    /// a, never trained, scored without gradients.
    base: Gpt2<B::InnerBackend>,
    /// π, trained (with dropout as configured).
    policy: Gpt2<B>,
    /// q (off-policy estimators only).
    proposal: Option<Gpt2<B::InnerBackend>>,
    sampler: Sampler,
    /// The contexts of a conditional run.
    contexts: Option<Contexts>,
    target: Target,
    estimator: Box<dyn Estimator<B>>,
    optimizer: OptimizerAdaptor<AdamW, Gpt2<B>, B>,
    /// KL-control's value head (`estimator.critic = true`).
    critic: Option<Critic<B>>,
    z: ZLog,
    /// This peer of the run (the only one unless the run is data-parallel).
    peer: Peer,
    /// Training samples: one RNG per sample stream this peer draws.
    rngs: Vec<ChaCha8Rng>,
    /// Evaluation, λ-fit and proposal-check samples, one RNG per own sample stream (streams
    /// of their own, so evaluating does not change the training samples).
    eval_rngs: Vec<ChaCha8Rng>,
    step: u64,
    samples_seen: u64,
    /// The run's files (the writing peer only).
    metrics: Option<MetricsLog>,
    samples_file: Option<File>,
    /// Training time, over all the run's resumes (`elapsed_s`).
    started: RunClock,
}

/// The run's training time: the time before this process resumed it, plus this process's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunClock {
    since: Instant,
    before: Duration,
}

impl RunClock {
    /// A clock that has already counted `before_s` seconds (0 for a fresh run).
    fn starting_at(before_s: f64) -> Self {
        let before = Duration::try_from_secs_f64(before_s).unwrap_or_default();
        Self { since: Instant::now(), before }
    }

    /// The training time so far.
    pub(crate) fn elapsed(&self) -> Duration {
        self.before + self.since.elapsed()
    }
}

/// KL-control's value head on π's final hidden states, with an optimizer of its own (the same
/// settings and learning rate as π's). The value loss's gradient also reaches π's body.
pub(crate) struct Critic<B: AutodiffBackend> {
    head: ValueHead<B>,
    optimizer: OptimizerAdaptor<AdamW, ValueHead<B>, B>,
}

/// The value head's seed, from the run's: every peer builds the same head.
fn value_head_seed(seed: u64) -> u64 {
    seed ^ 0x7a1e_0c21_71c0
}

/// Training-sample stream `stream` of `seed` (stream 0 is the single-peer run's RNG).
fn stream_rng(seed: u64, stream: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream as u64);
    rng
}

/// The evaluation RNGs' seed.
fn eval_seed(seed: u64) -> u64 {
    seed ^ 0x5eed_e7a1
}

fn optimizer<B: AutodiffBackend, M: AutodiffModule<B>>(
    plan: &Plan,
) -> OptimizerAdaptor<AdamW, M, B> {
    let o = &plan.optimizer;
    // Adam is AdamW with zero decoupled weight decay (the update is then identical).
    AdamWConfig::new()
        .with_beta_1(o.betas[0] as f32)
        .with_beta_2(o.betas[1] as f32)
        .with_epsilon(o.eps as f32)
        .with_weight_decay(o.weight_decay as f32)
        .init()
}

pub(crate) fn load_model<B: burn::tensor::backend::Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<Gpt2<B>> {
    load_hf_dir::<B>(dir, device).with_context(|| format!("loading the model {}", dir.display()))
}

/// Creates the output directory and opens metrics.jsonl and samples.jsonl: afresh, or, for a
/// run resumed at step `resumed`, to append after dropping their records of later steps (written
/// after that checkpoint), so each reads as one uninterrupted run.
fn open_run_files(plan: &Plan, resumed: Option<u64>) -> Result<(MetricsLog, File)> {
    std::fs::create_dir_all(&plan.output_dir)
        .with_context(|| format!("creating {}", plan.output_dir.display()))?;
    let metrics_path = plan.output_dir.join(METRICS_FILE);
    let samples_path = plan.output_dir.join(SAMPLES_FILE);
    let metrics = match resumed {
        Some(step) => {
            keep_samples_up_to(&samples_path, step)?;
            MetricsLog::resume(&metrics_path, step)?
        }
        None => {
            let _ = std::fs::remove_file(&metrics_path);
            MetricsLog::open(&metrics_path)?
        }
    };
    let samples_file = std::fs::OpenOptions::new()
        .create(true)
        .append(resumed.is_some())
        .write(true)
        .truncate(resumed.is_none())
        .open(&samples_path)
        .with_context(|| format!("opening {}", samples_path.display()))?;
    Ok((metrics, samples_file))
}

/// Drops the lines of samples.jsonl at `path` whose step is after `step` (and a torn last line),
/// atomically.
fn keep_samples_up_to(path: &Path, step: u64) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let kept: String = text
        .lines()
        .filter(|line| sample_step(line).is_some_and(|s| s <= step))
        .map(|line| format!("{line}\n"))
        .collect();
    if kept.len() != text.len() {
        crate::checkpoint::write_atomic(path, kept.as_bytes())?;
    }
    Ok(())
}

/// The `step` of one line of samples.jsonl (`None` if the line is not such a record).
fn sample_step(line: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(line).ok()?.get("step")?.as_u64()
}

impl<B: AutodiffBackend> Run<B> {
    /// Loads the models and builds the target; the run's files are opened by
    /// [`open_files`](Self::open_files).
    fn new(plan: Plan, device: B::Device, peer: Peer) -> Result<Self> {
        let tokenizer = Gpt2Tokenizer::from_file(&plan.tokenizer)
            .with_context(|| format!("loading the tokenizer {}", plan.tokenizer.display()))?;
        let base: Gpt2<B> = load_model(&plan.base_model, &device)?;
        let base = base.valid().without_dropout();
        let policy_dir = plan.policy_init.clone().unwrap_or_else(|| plan.base_model.clone());
        let p = plan.dropout;
        let policy = load_model::<B>(&policy_dir, &device)?.with_dropout(p, p, p);
        let proposal = plan.estimator.is_off_policy().then(|| policy.valid());
        let contexts = Contexts::of_plan(&plan)?;
        let sampler = Sampler::new(&plan.sampling, contexts.as_ref(), &tokenizer, SAMPLE_CHUNK)?;
        let longest = sampler.longest_prompt() + plan.sampling.new_tokens as usize;
        anyhow::ensure!(
            longest <= policy.config().n_positions,
            "the longest prompt ({} tokens) and sampling.new_tokens ({}) exceed the model's {} \
             positions",
            sampler.longest_prompt(),
            plan.sampling.new_tokens,
            policy.config().n_positions
        );
        let target = Target::new(&plan)?;
        let estimator = build_estimator::<B>(&plan.estimator)?;
        let critic = plan.estimator.critic().map(|_| Critic {
            head: ValueHead::init_seeded(
                policy.config().n_embd,
                p,
                &device,
                value_head_seed(plan.seed),
            ),
            optimizer: optimizer::<B, ValueHead<B>>(&plan),
        });
        B::seed(&device, plan.seed);
        Ok(Self {
            rngs: peer.own_streams().map(|s| stream_rng(plan.seed, s)).collect(),
            eval_rngs: peer.own_streams().map(|s| stream_rng(eval_seed(plan.seed), s)).collect(),
            optimizer: optimizer::<B, Gpt2<B>>(&plan),
            critic,
            plan,
            device,
            tokenizer,
            base,
            policy,
            proposal,
            sampler,
            contexts,
            target,
            estimator,
            z: ZLog::new(),
            peer,
            step: 0,
            samples_seen: 0,
            metrics: None,
            samples_file: None,
            started: RunClock::starting_at(0.0),
        })
    }

    /// Opens metrics.jsonl and samples.jsonl (the writing peer): afresh, or after the step of
    /// the checkpoint this run resumed from (`resumed`).
    fn open_files(&mut self, resumed: bool) -> Result<()> {
        if self.peer.is_writer() {
            let (m, f) = open_run_files(&self.plan, resumed.then_some(self.step))?;
            (self.metrics, self.samples_file) = (Some(m), Some(f));
        }
        Ok(())
    }

    /// This peer's part of `n` fresh samples from `model` with `sampler` (the evaluation
    /// streams; in a conditional run, the evaluation contexts in equal shares).
    fn draw_eval<M: burn::tensor::backend::Backend>(
        &mut self,
        sampler: &Sampler,
        model: &Gpt2<M>,
        n: usize,
    ) -> Result<rollout::Rollout> {
        let contexts = crate::contexts::eval_rows(self.contexts.as_ref(), n);
        self.draw_rows(sampler, model, &contexts)
    }

    /// This peer's part of fresh samples from `model`, one per entry of `contexts` (the
    /// whole batch's contexts), with the evaluation streams.
    fn draw_rows<M: burn::tensor::backend::Backend>(
        &mut self,
        sampler: &Sampler,
        model: &Gpt2<M>,
        contexts: &[usize],
    ) -> Result<rollout::Rollout> {
        let (rows, offset) = self.peer.rows_of(contexts.len());
        let mine = &contexts[offset..offset + rows.iter().sum::<usize>()];
        rollout::draw_streams(sampler, model, &rows, mine, &self.tokenizer, &mut self.eval_rngs)
    }

    /// Every peer's `value`, in peer order (just `value` in a single-peer run).
    fn gather<T>(&self, value: T, what: &str) -> Result<Vec<T>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        self.peer.gather::<B::InnerBackend, T>(&self.inner_device(), value, what)
    }

    fn inner_device(&self) -> burn::tensor::Device<B::InnerBackend> {
        self.device.clone()
    }

    /// Whether q is still a itself: the initial π was a copy of a and q has not been replaced.
    fn proposal_is_base(&self) -> bool {
        self.proposal.is_some() && self.plan.policy_init.is_none() && self.z.proposals() == 1
    }

    /// `log a(x)` of samples drawn by the training sampler (q, or π on-policy): while q is a,
    /// the sampler's own log-probabilities under the unmodified model (no forward pass); a
    /// forward pass of a otherwise.
    fn base_log_probs_of_sampler_samples(&self, r: &rollout::Rollout) -> Result<Vec<f64>> {
        if self.proposal_is_base() {
            return Ok(r.log_model.clone());
        }
        rollout::log_probs(&self.base, r, &self.inner_device())
    }

    /// Fits λ on `lambda_fit.samples` samples of a (q = a at the start), drawn in shares by
    /// the peers.
    fn fit_lambda(&mut self) -> Result<()> {
        let Some(settings) = self.plan.lambda_fit else { return Ok(()) };
        if !self.target.needs_fit() {
            return Ok(());
        }
        let n = settings.samples;
        let (sampler, base) = (self.sampler.clone(), self.base.clone());
        let (k, n_rows) = (settings.contexts, n as usize);
        let rows = crate::contexts::fit_rows(self.contexts.as_ref(), self.plan.seed, k, n_rows);
        let r = self.draw_rows(&sampler, &base, &rows)?;
        let scores = self.target.score(&r.samples())?;
        // Samples of a: their log a is the sampler's unmodified-model log-probability.
        let mine = ([r.log_sampler.clone(), r.log_model.clone()], scores);
        let ([log_q, log_a], scores) = concat_scored(self.gather(mine, "the λ-fit samples")?);
        let groups = crate::contexts::group_sizes(&rows);
        let report = self.target.fit_lambda(&settings, &log_q, &log_a, &scores, &groups)?;
        let (ess, iterations) = (report.ess, report.iterations);
        let over = match groups.len() {
            1 => String::new(),
            k => format!(" over {k} contexts"),
        };
        log::info!(
            "λ fitted on {n} samples of a{over} (ESS {ess:.0}, {iterations} iterations):\n{}",
            self.target.fit_text().unwrap_or_default()
        );
        Ok(())
    }

    /// The proposal check (METHODS §4) on fresh q samples; q ← π when π is closer to p.
    fn check_proposal(&mut self, settings: &Proposal) -> Result<Option<bool>> {
        let Some(q) = &self.proposal else { return Ok(None) };
        let criterion = match settings.criterion {
            crate::config::ProposalCriterion::Never => return Ok(None),
            crate::config::ProposalCriterion::Interval => ProposalCriterion::Interval,
            crate::config::ProposalCriterion::Kl => ProposalCriterion::Kl,
            crate::config::ProposalCriterion::Tvd => ProposalCriterion::Tvd,
        };
        let rule = ProposalUpdate {
            criterion,
            interval: settings.interval as usize,
            // One-sided test at level α: the improvement must exceed z_{1−α} standard errors.
            min_z_score: settings.significance_level.map(normal_quantile_upper),
        };
        let q = q.clone();
        let inner = self.inner_device();
        let sampler = self.sampler.clone();
        let r = self.draw_eval(&sampler, &q, settings.samples as usize)?;
        let log_a = self.base_log_probs_of_sampler_samples(&r)?;
        let scores = self.target.score(&r.samples())?;
        let log_p = self.target.log_target(&log_a, &scores)?;
        let log_pi = rollout::log_probs(&self.policy.valid(), &r, &inner)?;
        let mine = [log_p, r.log_sampler.clone(), log_pi];
        let [log_p, log_q, log_pi] = concat_columns(self.gather(mine, "the proposal check")?);
        self.z.push(&log_p, &log_q)?;
        let Some(log_z) = self.z.log_z() else { return Ok(Some(false)) };
        let decision = rule.decide(&log_p, &log_q, &log_pi, log_z)?;
        if decision.update {
            self.proposal = Some(self.policy.valid());
            self.z.new_proposal();
        }
        if self.peer.is_writer() {
            log::info!("step {}: proposal check, q ← π: {}", self.step, decision.update);
        }
        Ok(Some(decision.update))
    }

    fn write_record(&mut self, mut record: EvalRecord, step: Option<&StepReport>) -> Result<()> {
        if let Some(s) = step {
            record.extra.extend(eval::step_metrics(s));
        }
        if let Some(m) = &mut self.metrics {
            m.append(&record)?;
        }
        Ok(())
    }

    /// Checks that every peer holds the same π (and value head), then (the writing peer) writes
    /// plots, the summary table, run.json and the final policy.
    fn finish(&mut self) -> Result<Option<PathBuf>> {
        let fingerprint = self
            .peer
            .check_identical::<B::InnerBackend, _>(&self.inner_device(), &self.policy.valid())?;
        if self.peer.is_parallel() {
            log::info!("π is identical on all {} peers ({fingerprint})", self.peer.count);
        }
        if let Some(c) = &self.critic {
            let head = self
                .peer
                .check_identical::<B::InnerBackend, _>(&self.inner_device(), &c.head.valid())?;
            if self.peer.is_parallel() {
                log::info!("the value head is identical on all {} peers ({head})", self.peer.count);
            }
        }
        if !self.peer.is_writer() {
            return Ok(None);
        }
        let records = read_metrics(&self.plan.output_dir.join(METRICS_FILE))?;
        let targets = self.target.targets();
        render_plots(&records, &targets, &self.plan.output_dir.join(PLOTS_DIR))?;
        if let (Some(first), Some(last)) = (records.first(), records.last()) {
            print_line(&summary_table(first, last, &targets));
        }
        let info = crate::report::RunInfo {
            config: self.plan.config_file.clone(),
            config_hash: self.plan.config_hash.clone(),
            estimator: format!("{:?}", self.plan.estimator),
            seed: self.plan.seed,
            steps: self.step,
            samples_seen: self.samples_seen,
            targets,
            lambda: self.target.lambda().to_vec(),
            peers: self.peer.count,
            sample_streams: self.peer.streams,
            fingerprint,
        };
        let json = serde_json::to_vec_pretty(&info).context("serialising run.json")?;
        crate::checkpoint::write_atomic(
            &self.plan.output_dir.join(crate::report::RUN_FILE),
            &json,
        )?;
        let dir = self.plan.output_dir.join(FINAL_DIR);
        self.policy.valid().save_hf_dir(&dir).context("exporting the final policy")?;
        self.tokenizer.save(dir.join("tokenizer.json")).context("exporting the tokenizer")?;
        Ok(Some(dir))
    }
}

/// The peers' parts of `N` per-sample columns, each concatenated in peer order.
pub(crate) fn concat_columns<const N: usize>(parts: Vec<[Vec<f64>; N]>) -> [Vec<f64>; N] {
    let mut out: [Vec<f64>; N] = std::array::from_fn(|_| Vec::new());
    for part in parts {
        for (column, values) in out.iter_mut().zip(part) {
            column.extend(values);
        }
    }
    out
}

/// [`concat_columns`] for columns that come with the samples' feature scores.
pub(crate) fn concat_scored<const N: usize>(
    parts: Vec<([Vec<f64>; N], target::FeatureScores)>,
) -> ([Vec<f64>; N], target::FeatureScores) {
    let (columns, scores): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
    (concat_columns(columns), target::FeatureScores::concat(scores))
}

/// `z` with `P(N(0,1) > z) = alpha`, by bisection on erfc (called once per run).
fn normal_quantile_upper(alpha: f64) -> f64 {
    let tail = |z: f64| 0.5 * libm_erfc(z / std::f64::consts::SQRT_2);
    let (mut lo, mut hi) = (-10.0, 10.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if tail(mid) > alpha { lo = mid } else { hi = mid }
    }
    0.5 * (lo + hi)
}

/// erfc by the Numerical Recipes Chebyshev fit (relative error < 1.2e-7).
fn libm_erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Runs the plan's training on backend `B` (see [`crate::backend`]), or continues it from a
/// checkpoint.
pub fn run<B: AutodiffBackend>(
    plan: &Plan,
    device: B::Device,
    options: &RunOptions,
) -> Result<RunSummary> {
    run_peer::<B>(plan, device, options, Peer::single())
}

/// Runs the plan data-parallel: one peer per device of `devices` in this process, on the
/// `topology` (other processes run the other nodes' peers). Returns the writing peer's
/// summary, or this process's first peer's on other nodes.
///
/// # Errors
/// The first error of any local peer (the other peers are abandoned: they would wait for it
/// forever); a peer that waits longer than `topology.timeout` ends the process (see
/// [`crate::parallel::Watchdog`]).
pub fn run_parallel<B: AutodiffBackend>(
    plan: &Plan,
    devices: Vec<B::Device>,
    topology: &crate::parallel::Topology,
    options: &RunOptions,
) -> Result<RunSummary> {
    topology.validate(plan.batch_size).map_err(|e| crate::cli::BadInput(e.to_string()))?;
    anyhow::ensure!(
        devices.len() == topology.devices,
        "{} devices for a topology of {} per node",
        devices.len(),
        topology.devices
    );
    if topology.peers() == 1 {
        // One peer, drawing one or several streams (the samples of a run on more peers).
        let peer = Peer::single_with_streams(topology.streams());
        return run_peer::<B>(plan, devices[0].clone(), options, peer);
    }
    let (peers, dog) =
        crate::parallel::register::<B::InnerBackend>(topology, &devices, &plan.output_dir)?;
    let (tx, rx) = std::sync::mpsc::channel();
    for (peer, device) in peers.into_iter().zip(devices) {
        let (tx, plan, options, topology) =
            (tx.clone(), plan.clone(), options.clone(), topology.clone());
        std::thread::Builder::new()
            .name(format!("tilt-peer-{}", peer.index))
            .spawn(move || {
                let index = peer.index;
                let joined = crate::parallel::join::<B::InnerBackend>(&topology, &peer, &device);
                let result = joined.and_then(|()| {
                    let options = RunOptions {
                        progress_bar: options.progress_bar && peer.is_writer(),
                        ..options
                    };
                    let summary = run_peer::<B>(&plan, device, &options, peer.clone())?;
                    peer.finish::<B::InnerBackend>()?;
                    Ok(summary)
                });
                let _ = tx.send((index, result));
            })
            .context("starting a peer thread")?;
    }
    drop(tx);
    let mut first = None;
    for _ in 0..topology.devices {
        let Ok((index, result)) = rx.recv() else { break };
        match result {
            Ok(summary) => {
                if first.is_none() || index == 0 {
                    first = Some(summary);
                }
            }
            Err(e) => {
                dog.disarm();
                log::debug!("peer {index} failed");
                return Err(e);
            }
        }
    }
    dog.disarm();
    first.context("no peer finished")
}

/// The training loop of one peer (every peer runs it, in step).
fn run_peer<B: AutodiffBackend>(
    plan: &Plan,
    device: B::Device,
    options: &RunOptions,
    peer: Peer,
) -> Result<RunSummary> {
    let writer = peer.is_writer();
    let mut run = Run::<B>::new(plan.clone(), device, peer)?;
    if let Some(dir) = &options.resume {
        run.resume(dir)?;
    }
    run.open_files(options.resume.is_some())?;
    if options.resume.is_none() {
        run.fit_lambda()?;
        let record = run.evaluate()?;
        run.write_record(record, None)?;
    }
    let last = options.stop_after.unwrap_or(plan.steps).min(plan.steps);
    let targets = run.target.targets();
    let mut progress =
        progress::Progress::new(plan.steps, run.step, options.progress_bar && writer);
    if writer && let Some(first) = read_metrics(&plan.output_dir.join(METRICS_FILE))?.last() {
        progress.evaluation(first, &targets);
    }
    let mut records = Vec::new();
    while run.step < last {
        let report = match run.train_step() {
            Ok(r) => r,
            Err(e) => {
                progress.finish();
                if let Some(nan) = e.downcast_ref::<NonFiniteLoss>() {
                    log::error!("{nan}");
                }
                return Err(e);
            }
        };
        let step = run.step;
        progress.step(step, report.stats.loss);
        if let Some(p) = plan.proposal
            && step.is_multiple_of(p.interval)
        {
            run.check_proposal(&p)?;
        }
        let due = step.is_multiple_of(plan.eval.interval) || step == last;
        if due {
            let mut record = run.evaluate()?;
            record.grad_variance = report.grad_variance;
            progress.evaluation(&record, &targets);
            records.push(record.clone());
            run.write_record(record, Some(&report))?;
        }
        let flag = options.interrupt.as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
        // Every peer stops at the same step when any of them was interrupted.
        let interrupted = match run.peer.is_parallel() {
            true => run.peer.any::<B::InnerBackend>(&run.inner_device(), flag, "Ctrl-C")?,
            false => flag,
        };
        if step.is_multiple_of(plan.checkpoint_interval) || step == last || interrupted {
            run.save_checkpoint()?;
        }
        if writer {
            log::info!(
                "step {step}/{}: loss {:.4e}, lr {:.2e}",
                plan.steps,
                report.stats.loss,
                report.lr
            );
        }
        if interrupted && step < last {
            progress.finish();
            return Err(Interrupted {
                step,
                checkpoint: plan.checkpoints_dir().join(crate::checkpoint::step_dir_name(step)),
                output_dir: plan.output_dir.clone(),
            }
            .into());
        }
    }
    progress.finish();
    let final_dir = if run.step == plan.steps { run.finish()? } else { None };
    Ok(RunSummary { steps: run.step, records, final_dir, lambda: run.target.lambda().to_vec() })
}

/// `tilt train` as a [`Job`](crate::backend::Job) for [`launch`](crate::backend::launch).
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// The plan.
    pub plan: Plan,
    /// Resume and stop options.
    pub options: RunOptions,
    /// Data parallelism (`None`: one peer on one device).
    pub topology: Option<crate::parallel::Topology>,
}

impl crate::backend::Job for TrainJob {
    type Output = RunSummary;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<RunSummary> {
        self.run_on::<B>(vec![device])
    }

    fn run_on<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Result<RunSummary> {
        match &self.topology {
            Some(t) => run_parallel::<B>(&self.plan, devices, t, &self.options),
            None => {
                let device = devices.into_iter().next().context("no device")?;
                run::<B>(&self.plan, device, &self.options)
            }
        }
    }
}
