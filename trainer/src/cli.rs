//! The command line of `tilt` (clap derive) and what each command does.
//!
//! Exit codes: 0 success; 1 the command failed while running (I/O, a diverged run, ...);
//! 2 the input was wrong (command-line usage, an invalid config, a missing or corrupt input
//! file: model, tokenizer, word list, checkpoint; a checkpoint that does not fit the config) or
//! the command is not implemented yet; 130 a run stopped by Ctrl-C or SIGTERM (after writing a
//! checkpoint).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};

use crate::config::{Backend, DeviceSpec};
use crate::plan::{Overrides, Plan};

const AFTER_HELP: &str = "\
Exit status: 0 success; 1 the command failed while running; 2 wrong input (usage, invalid \
config, missing or corrupt input file, a checkpoint that does not fit the config) or a command \
that is not implemented yet; 130 a training run stopped by Ctrl-C, SIGTERM or SIGHUP (it \
finishes the step and writes a checkpoint first; `tilt train --resume DIR` continues it).

A config is a TOML file (every field is documented in the tilt-trainer crate's `config` module); \
`tilt check --config run.toml` validates one and prints the resulting plan.";

/// tilt: fine-tune language models by distribution matching (DPG, GDC, GDC++, f-DPG) or reward
/// maximisation (REINFORCE, KL-control).
#[derive(Debug, Parser)]
#[command(name = "tilt", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fine-tune a policy as a config says: fit λ, train, evaluate, checkpoint, export.
    Train(TrainArgs),
    /// Validate a config and print the plan it gives (touches nothing).
    Check(CheckArgs),
    /// Draw samples from a model with the sampler's options; print them or write JSONL.
    Sample(SampleArgs),
    /// Evaluate a model against a config's target: moments of φ, KL(p‖π), KL(π‖a), diversity
    Eval(EvalArgs),
    /// Fit λ for a config's distributional constraints and print the fit report.
    Fit(FitArgs),
    /// Compare runs: each group's final metrics as mean ± std over seeds, and the curves.
    Compare(CompareArgs),
    /// Pretrain a small causal LM from text files (this builds the demo base model).
    Pretrain(PretrainArgs),
    /// Download a GPT-2 model by id from the Hugging Face hub (cargo feature `hub`).
    ///
    /// Files go to the Hugging Face cache shared with Python (`$HF_HOME/hub`, default
    /// `~/.cache/huggingface/hub`) and are fetched only once; `HF_ENDPOINT` names a mirror.
    Download(DownloadArgs),
    /// Run the coordinator that the nodes of a multi-node `tilt train` meet at.
    Coordinator(CoordinatorArgs),
}

/// `tilt coordinator`.
#[derive(Debug, Args)]
#[command(after_help = COORDINATOR_HELP)]
pub struct CoordinatorArgs {
    /// The port to listen on (all interfaces).
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
}

const COORDINATOR_HELP: &str = "\
Start it first, then one `tilt train --nodes N --node-rank R --coordinator HOST:PORT \
--node-address THIS_HOST:PORT2` per node. It runs until Ctrl-C.";

/// Data parallelism of `tilt train` (burn-collective).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Data parallelism")]
pub struct ParallelArgs {
    /// Peers in this process: a count (N peers on --device's kind: cpu, or cuda:i, cuda:i+1,
    /// …) or a list of devices (cuda:0,cuda:2).
    #[arg(long, value_name = "N|LIST")]
    pub devices: Option<String>,
    /// Processes (nodes) in the run, each running `tilt train` with the same config.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub nodes: u32,
    /// This process's rank, 0..N (node 0 writes the run's files).
    #[arg(long, default_value_t = 0, value_name = "R")]
    pub node_rank: u32,
    /// The coordinator (`tilt coordinator`), HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub coordinator: Option<String>,
    /// Where the other nodes reach this one, HOST:PORT (this node serves tensors on PORT).
    #[arg(long, value_name = "HOST:PORT")]
    pub node_address: Option<String>,
    /// Seconds a peer waits for the others before the run stops with an error.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub peer_timeout: u64,
    /// Sample streams per batch (default: one per peer). With a fixed number the run draws
    /// the same samples on any number of peers that divides it.
    #[arg(long, value_name = "S")]
    pub sample_streams: Option<usize>,
}

impl ParallelArgs {
    /// The topology and this process's devices, or `None` for a plain single-device run.
    pub fn topology(
        &self,
        device: DeviceSpec,
    ) -> Result<Option<(crate::parallel::Topology, Vec<DeviceSpec>)>> {
        if self.devices.is_none() && self.nodes == 1 && self.sample_streams.is_none() {
            return Ok(None);
        }
        let devices = match &self.devices {
            None => vec![device],
            Some(spec) => parse_devices(spec, device)?,
        };
        let address = |a: &Option<String>| a.as_deref().map(crate::parallel::ws_address);
        let bad = |e: anyhow::Error| BadInput(e.to_string());
        let topology = crate::parallel::Topology {
            devices: devices.len(),
            nodes: self.nodes,
            node_rank: self.node_rank,
            coordinator: address(&self.coordinator).transpose().map_err(bad)?,
            node_address: address(&self.node_address).transpose().map_err(bad)?,
            data_port: None,
            timeout: std::time::Duration::from_secs(self.peer_timeout.max(1)),
            sample_streams: self.sample_streams,
        };
        Ok(Some((topology, devices)))
    }
}

/// `--devices`: a count of `base`'s kind, or a comma-separated list.
fn parse_devices(spec: &str, base: DeviceSpec) -> Result<Vec<DeviceSpec>> {
    if let Ok(n) = spec.trim().parse::<usize>() {
        if n == 0 {
            return Err(BadInput("--devices 0: at least one device".into()).into());
        }
        return Ok((0..n)
            .map(|k| match base {
                DeviceSpec::Cpu => DeviceSpec::Cpu,
                DeviceSpec::Cuda(i) => DeviceSpec::Cuda(i + k),
                DeviceSpec::Gpu(i) => DeviceSpec::Gpu(i + k),
            })
            .collect());
    }
    spec.split(',')
        .map(|d| {
            d.trim().parse::<DeviceSpec>().map_err(|e| BadInput(format!("--devices: {e}")).into())
        })
        .collect()
}

/// `tilt compare`.
#[derive(Debug, Args)]
#[command(after_help = COMPARE_HELP)]
pub struct CompareArgs {
    /// Directories searched for runs (directories holding a metrics.jsonl).
    #[arg(required = true, value_name = "RUNS")]
    pub roots: Vec<PathBuf>,
    /// Where the table (table.md), summary.json and plots go (default: FIRST_ROOT/report).
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Also compare runs that have not finished (their last evaluation counts as final).
    #[arg(long)]
    pub include_unfinished: bool,
}

const COMPARE_HELP: &str = "\
Every directory under RUNS that holds a metrics.jsonl is a run. Runs in directories named \
seed-* are the seeds of one group, named by their parent directory; a group named TASK-METHOD \
(e.g. house-gdc_pp) goes in TASK's table. scripts/reproduce.sh lays its runs out this way.

Example: tilt compare runs/reproduce --output docs/reproduction";

/// `tilt download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The model id, e.g. `gpt2` or `openai-community/gpt2`.
    pub model_id: String,
    /// A branch, tag or commit (default: main).
    #[arg(long)]
    pub revision: Option<String>,
    /// Copy the files here (e.g. `models/gpt2`, where the paper configs look) instead of only
    /// printing the cache directory.
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

/// Backend and device, shared by the commands that run a model.
#[derive(Debug, Clone, Default, Args)]
pub struct BackendArgs {
    /// Backend, replacing the config's (must be compiled in: cargo feature of the same name).
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// Device, replacing the config's: cpu, cuda, cuda:N, gpu, gpu:N.
    #[arg(long, value_parser = parse_device)]
    pub device: Option<DeviceSpec>,
}

impl BackendArgs {
    fn overrides(&self) -> Overrides {
        Overrides { backend: self.backend, device: self.device }
    }
}

fn parse_device(s: &str) -> Result<DeviceSpec, String> {
    s.parse()
}

/// `tilt train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The run config (TOML). Without it, the embedded demo runs.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Continue the run whose checkpoint directory (or output directory) this is.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Validate the config and print the plan, without training (same as `tilt check`).
    #[arg(long)]
    pub dry_run: bool,
    /// Write the run here instead of the config's `output_dir` (the embedded demo's default:
    /// `tilt-demo`).
    #[arg(short, long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Use this seed instead of the config's `seed` (for repeating one config over seeds).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Start afresh even if the output directory holds an earlier run: everything it wrote
    /// (metrics, samples, checkpoints, final/, plots/, run.json) is moved into
    /// .replaced-run/, deleted once the new run has written its first checkpoint.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Backend and device.
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Data parallelism.
    #[command(flatten)]
    pub parallel: ParallelArgs,
}

/// `tilt check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The run config (TOML).
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
    /// Check only the config, not that the model and tokenizer files exist.
    #[arg(long)]
    pub config_only: bool,
    /// Backend and device.
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// `tilt sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// The model directory (Hugging Face GPT-2 layout).
    #[arg(short, long, value_name = "DIR")]
    pub model: PathBuf,
    /// The tokenizer (default: tokenizer.json in the model directory).
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Number of samples.
    #[arg(short, long, default_value_t = 10)]
    pub n: u64,
    /// New tokens per sample.
    #[arg(long, default_value_t = 40)]
    pub new_tokens: u32,
    /// Prompt text (default: the end-of-text token alone).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Softmax temperature.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Keep the k most likely tokens (default: off).
    #[arg(long)]
    pub top_k: Option<u32>,
    /// Nucleus mass in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Stop each sample at end-of-text.
    #[arg(long)]
    pub stop_at_eos: bool,
    /// Where each next token is drawn: on the device without top-k / top-p (auto), on the
    /// host (host), or on the device (device; temperature only).
    #[arg(long, value_enum, default_value_t = crate::config::SamplingDraw::Auto)]
    pub draw: crate::config::SamplingDraw,
    /// Seed.
    #[arg(long, default_value_t = 12)]
    pub seed: u64,
    /// Write JSONL ({"text", "log_prob"} per line) here instead of printing.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Backend and device.
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// `tilt eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The run config that defines the target (constraints, base model, eval settings).
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
    /// The model to evaluate (default: the config's initial policy, or its base).
    #[arg(short, long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Write the metrics as one JSON object here instead of printing a table.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Backend and device.
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// `tilt fit`.
#[derive(Debug, Args)]
pub struct FitArgs {
    /// The run config with distributional constraints.
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
    /// Backend and device.
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// `tilt pretrain`.
#[derive(Debug, Clone, Args)]
#[command(after_help = PRETRAIN_HELP)]
pub struct PretrainArgs {
    /// Hyper-parameters (TOML; every key optional, defaults are the tilt-mini recipe, see
    /// trainer/assets/tilt-mini/pretrain.toml).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Training text (UTF-8, documents separated by blank lines); repeat for several files.
    #[arg(long, value_name = "FILE")]
    pub train: Vec<PathBuf>,
    /// Training tokens instead of text: a cache written by --save-tokens.
    #[arg(long, value_name = "FILE")]
    pub train_tokens: Option<PathBuf>,
    /// Validation text (held-out loss and perplexity at every evaluation); repeatable.
    #[arg(long, value_name = "FILE")]
    pub valid: Vec<PathBuf>,
    /// Validation tokens instead of text: a cache written by --save-tokens.
    #[arg(long, value_name = "FILE")]
    pub valid_tokens: Option<PathBuf>,
    /// Tokenizer (tokenizer.json with <|endoftext|> = 0; default: the embedded tilt-mini one).
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Where the model (Hugging Face layout), tokenizer.json and pretrain.jsonl go; must not
    /// already hold a model.
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Replace the config's max_steps.
    #[arg(long, value_name = "N")]
    pub max_steps: Option<usize>,
    /// Replace the config's shard_mib (largest weights file in MiB; 0: one file).
    #[arg(long, value_name = "MIB")]
    pub shard_mib: Option<usize>,
    /// Only encode --train/--valid text into DIR/train.tokens and DIR/valid.tokens, then exit.
    #[arg(long, value_name = "DIR")]
    pub save_tokens: Option<PathBuf>,
    /// Backend and device.
    #[command(flatten)]
    pub backend: BackendArgs,
}

const PRETRAIN_HELP: &str = "\
Trains a GPT-2 from scratch (causal LM, AdamW, warm-up + cosine, global grad-norm clipping) on \
random windows of the training tokens, evaluates validation perplexity every eval_every steps \
(writing OUTPUT/checkpoint/), and writes OUTPUT/{config.json, model*.safetensors \
[+ model.safetensors.index.json], tokenizer.json, pretrain.jsonl, pretrain.toml}. Use -v to see \
progress on stderr.

Example: tilt -v pretrain --train train.txt --valid valid.txt --output tilt-mini \
--backend tch --device cuda:0";

/// A command that exists but whose machinery other crates are still building.
#[derive(Debug, thiserror::Error)]
#[error("`tilt {command}` is not implemented yet: it needs {needs}")]
pub struct NotImplemented {
    /// The command.
    pub command: &'static str,
    /// What it waits for.
    pub needs: &'static str,
}

/// Input that is wrong in a way the user must fix (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => train(&args),
        Command::Check(args) => check(&args),
        Command::Sample(args) => sample(&args),
        Command::Eval(args) => eval(&args),
        Command::Fit(args) => fit(&args),
        Command::Compare(args) => compare(&args),
        Command::Pretrain(args) => crate::pretrain::command::run(&args),
        Command::Download(args) => download(&args),
        Command::Coordinator(args) => coordinator(&args),
    }
}

/// The exit code for an error returned by [`run`] (see the module documentation).
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.is::<crate::train::Interrupted>() {
        return 130;
    }
    let wrong_input = error.chain().any(|e| {
        e.is::<NotImplemented>()
            || e.is::<BadInput>()
            || e.is::<crate::config::ConfigError>()
            || e.is::<crate::plan::LoadError>()
            || e.downcast_ref().is_some_and(is_bad_checkpoint)
            || e.downcast_ref().is_some_and(is_bad_model_input)
            || e.downcast_ref().is_some_and(is_bad_constraint)
    });
    if wrong_input { 2 } else { 1 }
}

/// A checkpoint that is missing, corrupt or of another format (not an I/O failure).
fn is_bad_checkpoint(e: &crate::checkpoint::CheckpointError) -> bool {
    use crate::checkpoint::CheckpointError as E;
    match e {
        E::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        E::Invalid(_) => false,
        _ => true,
    }
}

/// A model or tokenizer file that is missing, malformed or of another shape.
fn is_bad_model_input(e: &tilt_policies::Error) -> bool {
    use tilt_policies::Error as E;
    match e {
        E::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        E::Json { .. }
        | E::Config { .. }
        | E::Safetensors { .. }
        | E::CheckpointMismatch { .. }
        | E::Tensor { .. }
        | E::Tokenizer { .. }
        | E::Sampling { .. } => true,
        _ => false,
    }
}

/// A constraint that cannot be built as written (not a scorer failing while it runs).
fn is_bad_constraint(e: &tilt_constraints::Error) -> bool {
    use tilt_constraints::Error as E;
    matches!(
        e,
        E::Spec { .. }
            | E::EmptyWord { .. }
            | E::EmptyWordList { .. }
            | E::WordListFile { .. }
            | E::Regex { .. }
            | E::NotBinaryFeature { .. }
            | E::NoFeatures { .. }
            | E::Parameter { .. }
    )
}

fn load_plan(config: &std::path::Path, overrides: &Overrides) -> Result<Plan> {
    // A `--backend` that is not compiled in is the problem to report, before whatever the
    // plan finds wrong with the config's device for it.
    if let Some(b) = overrides.backend {
        ensure_compiled(b)?;
    }
    let plan = Plan::load(config, overrides)?;
    ensure_compiled(plan.backend)?;
    Ok(plan)
}

fn compare(args: &CompareArgs) -> Result<()> {
    for root in &args.roots {
        if !root.is_dir() {
            return Err(BadInput(format!("{}: not a directory", root.display())).into());
        }
    }
    let (mut runs, empty) = crate::report::find_runs(&args.roots)?;
    for dir in &empty {
        println!("skipping {} (its metrics.jsonl has no evaluation yet)", dir.display());
    }
    if !args.include_unfinished {
        for r in runs.iter().filter(|r| !r.finished) {
            println!("skipping {} (not finished; --include-unfinished counts it)", r.dir.display());
        }
        runs.retain(|r| r.finished);
    }
    if runs.is_empty() {
        let roots: Vec<String> = args.roots.iter().map(|r| r.display().to_string()).collect();
        let what = if empty.is_empty() { "no runs (metrics.jsonl)" } else { "no evaluated runs" };
        return Err(BadInput(format!("{what} under {}", roots.join(", "))).into());
    }
    let out = args.output.clone().unwrap_or_else(|| args.roots[0].join("report"));
    let table = crate::report::compare(&runs, &out)?;
    println!("{table}");
    println!("{} runs compared; table, summary.json and plots in {}", runs.len(), out.display());
    Ok(())
}

fn check(args: &CheckArgs) -> Result<()> {
    let plan = load_plan(&args.config, &args.backend.overrides())?;
    println!("{plan}");
    if !args.config_only {
        let missing = plan.missing_inputs();
        if !missing.is_empty() {
            let list: Vec<String> = missing
                .iter()
                .map(|(field, p)| format!("{field}: {} does not exist", p.display()))
                .collect();
            return Err(BadInput(format!(
                "{}: the config is valid but inputs are missing (--config-only skips this check):\n  {}",
                args.config.display(),
                list.join("\n  ")
            ))
            .into());
        }
    }
    println!("config OK");
    Ok(())
}

fn train(args: &TrainArgs) -> Result<()> {
    let config = train_config(args)?;
    let mut plan = load_plan(&config, &args.backend.overrides())?;
    if let Some(dir) = &args.output_dir {
        plan.output_dir = dir.clone();
    }
    if let Some(seed) = args.seed {
        plan.seed = seed;
    }
    let writer = args.parallel.node_rank == 0;
    match &args.resume {
        Some(dir) => check_resume(dir, &plan)?,
        // Only node 0 writes the run's files; the other nodes leave the directory alone.
        None if !writer || args.overwrite => {}
        None => refuse_earlier_run(&plan.output_dir)?,
    }
    let (topology, devices) = match args.parallel.topology(plan.device)? {
        Some((t, d)) => (Some(t), d),
        None => (None, vec![plan.device]),
    };
    if let Some(t) = &topology {
        t.validate(plan.batch_size).map_err(|e| BadInput(e.to_string()))?;
    }
    if args.dry_run {
        crate::train::print_line(&plan.to_string());
        return Ok(());
    }
    if args.overwrite && writer {
        set_aside_earlier_run(&plan.output_dir)?;
    }
    let options = crate::train::RunOptions {
        resume: args.resume.clone(),
        stop_after: None,
        interrupt: Some(interrupt_flag()),
        progress_bar: true,
    };
    let job = crate::train::TrainJob { plan: plan.clone(), options, topology };
    let devices = devices.into_iter().map(Some).collect();
    let summary = crate::backend::launch_on(plan.backend, devices, job)?;
    if let Some(dir) = &summary.final_dir {
        let done = format!("{} steps; final policy in {}", summary.steps, dir.display());
        crate::train::print_line(&done);
    }
    Ok(())
}

/// The config `tilt train` runs: `--config`, the demo's config of a `--resume`d demo, or the
/// embedded demo's (written into its directory; a dry run or `--overwrite` skips the check
/// for an earlier demo run there, which the common checks then make).
fn train_config(args: &TrainArgs) -> Result<PathBuf> {
    Ok(match (&args.config, &args.resume) {
        (Some(config), _) => config.clone(),
        // `tilt train --resume tilt-demo`: the demo's own config.
        (None, Some(dir)) => crate::demo::config_of(dir).ok_or_else(|| {
            BadInput(format!(
                "--resume {} without --config: that directory holds no {} (pass the run's \
                 --config)",
                dir.display(),
                crate::demo::CONFIG_FILE
            ))
        })?,
        (None, None) => {
            let dir = args.output_dir.clone().unwrap_or_else(|| crate::demo::DEFAULT_DIR.into());
            // Node 0 alone checks the directory: the other nodes of a multi-node demo may
            // share it, and must not refuse node 0's fresh run.
            let config = if args.parallel.node_rank > 0 || args.overwrite || args.dry_run {
                crate::demo::write_files(&dir)?
            } else {
                crate::demo::prepare(&dir)?
            };
            crate::train::print_line(&format!(
                "tilt demo: GDC++ fine-tunes tilt-mini toward two constraints, \"every sample \
                 mentions family\" (pointwise) and \"50% of samples are about women\" \
                 (distributional), on the CPU.\nThe run's config is {}; outputs go to {}.",
                config.display(),
                dir.display()
            ));
            config
        }
    })
}

/// Checks that `--resume dir` names a checkpoint that `plan` can continue into
/// `plan.output_dir` (see [`crate::train::check_resumable`]), before anything is written.
fn check_resume(dir: &Path, plan: &Plan) -> Result<()> {
    let found = crate::checkpoint::resolve(dir)
        .with_context(|| format!("cannot resume from {}", dir.display()))?;
    crate::train::check_resumable(&found, plan)?;
    let manifest = found.manifest();
    if manifest.config_hash != plan.config_hash {
        log::warn!(
            "the config differs from the one the checkpoint was written with (sha256 {} vs {}); \
             the estimator and model match, so the run continues with the new settings",
            manifest.config_hash.chars().take(12).collect::<String>(),
            &plan.config_hash[..12]
        );
    }
    let resuming = format!("resuming from {} (step {})", found.dir().display(), manifest.step);
    crate::train::print_line(&resuming);
    Ok(())
}

fn sample(args: &SampleArgs) -> Result<()> {
    let job = crate::commands::SampleJob {
        model: args.model.clone(),
        tokenizer: args.tokenizer.clone().unwrap_or_else(|| args.model.join("tokenizer.json")),
        sampling: crate::plan::Sampling {
            prompt: args.prompt.clone(),
            new_tokens: args.new_tokens,
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            stop_at_eos: args.stop_at_eos,
            draw: args.draw,
        },
        n: args.n as usize,
        seed: args.seed,
        output: args.output.clone(),
    };
    job.validate()?;
    if let Some(path) = &job.output {
        check_writable("--output", path)?;
    }
    let backend = args.backend.backend.unwrap_or_default();
    ensure_compiled(backend)?;
    crate::backend::launch(backend, args.backend.device, job.clone())?;
    if let Some(path) = &job.output {
        println!("{} samples written to {}", job.n, path.display());
    }
    Ok(())
}

#[cfg(feature = "hub")]
fn download(args: &DownloadArgs) -> Result<()> {
    let dir = tilt_policies::hub::download(&args.model_id, args.revision.as_deref())?;
    let Some(out) = &args.output else {
        println!("{}", dir.display());
        return Ok(());
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let from = entry?.path();
        let Some(name) = from.file_name() else { continue };
        let to = out.join(name);
        // The cache holds symbolic links to blobs: copy what they point to.
        std::fs::copy(&from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    println!("{} (from {})", out.display(), dir.display());
    Ok(())
}

#[cfg(not(feature = "hub"))]
fn download(_: &DownloadArgs) -> Result<()> {
    Err(BadInput(
        "this tilt was built without the `hub` feature (on by default): rebuild it without \
         `--no-default-features`, or add `--features hub`"
            .into(),
    )
    .into())
}

/// Checks, before the work, that the file `path` (option `option`) can be written: its
/// directory exists and accepts a new file, and `path` is not a directory.
fn check_writable(option: &str, path: &Path) -> Result<()> {
    let bad = |why: String| -> anyhow::Error {
        BadInput(format!("{option} {}: {why}", path.display())).into()
    };
    if path.is_dir() {
        return Err(bad("is a directory".into()));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(bad(format!("the directory {} does not exist", dir.display())));
    }
    let probe = dir.join(format!(".tilt-write-check-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(bad(format!("cannot write in {}: {e}", dir.display()))),
    }
}

fn ensure_compiled(backend: Backend) -> Result<()> {
    if crate::backend::is_compiled(backend) {
        return Ok(());
    }
    Err(BadInput(format!(
        "backend `{backend}` is not compiled into this tilt; rebuild with `--features {backend}`"
    ))
    .into())
}

fn fit(args: &FitArgs) -> Result<()> {
    let plan = load_plan(&args.config, &args.backend.overrides())?;
    let job = crate::commands::FitJob { plan: plan.clone() };
    let fit = crate::backend::launch(plan.backend, Some(plan.device), job)?;
    println!("{}", crate::commands::fit_report_text(&fit));
    Ok(())
}

fn eval(args: &EvalArgs) -> Result<()> {
    let plan = load_plan(&args.config, &args.backend.overrides())?;
    let model = args
        .model
        .clone()
        .or_else(|| plan.policy_init.clone())
        .unwrap_or_else(|| plan.base_model.clone());
    if !model.exists() {
        return Err(BadInput(format!("--model {}: no such directory", model.display())).into());
    }
    if let Some(path) = &args.output {
        check_writable("--output", path)?;
    }
    let job = crate::commands::EvalJob { plan: plan.clone(), model };
    let (record, targets) = crate::backend::launch(plan.backend, Some(plan.device), job)?;
    match &args.output {
        Some(path) => {
            let json = serde_json::to_string_pretty(&record).context("serialising the metrics")?;
            std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
            println!("metrics written to {}", path.display());
        }
        None => println!("{}", crate::commands::eval_text(&record, &targets)),
    }
    Ok(())
}

fn coordinator(args: &CoordinatorArgs) -> Result<()> {
    // A clear error for a port in use (burn's server only logs it).
    std::net::TcpListener::bind(("0.0.0.0", args.port))
        .with_context(|| format!("cannot listen on port {}", args.port))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the coordinator's runtime")?;
    println!("tilt coordinator: listening on port {} (Ctrl-C stops it)", args.port);
    runtime.block_on(burn::collective::start_global_orchestrator(args.port));
    Ok(())
}

/// A flag that the first Ctrl-C, SIGTERM or SIGHUP sets (the run stops after its current step,
/// with a checkpoint); a second one exits at once (checkpoints are atomic, so none is left
/// half-written).
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&flag);
    let installed = ctrlc::set_handler(move || {
        if seen.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting now, without a new checkpoint");
            std::process::exit(130);
        }
        eprintln!(
            "\ninterrupted: finishing this step and writing a checkpoint (Ctrl-C again quits now)"
        );
    });
    if let Err(e) = installed {
        log::warn!("Ctrl-C and SIGTERM will not write a checkpoint: {e}");
    }
    flag
}

/// `--overwrite`: moves everything an earlier run wrote in `dir` into `dir/.replaced-run/`,
/// which the new run deletes once it has written its first checkpoint (until then the earlier
/// run can be recovered from there). When `.replaced-run/` already exists, it holds the run
/// an earlier `--overwrite` replaced by one that never reached a checkpoint: it stays, and the
/// files of that unfinished start are deleted.
fn set_aside_earlier_run(dir: &Path) -> Result<()> {
    let aside = dir.join(crate::train::REPLACED_RUN_DIR);
    let keep_older = aside.exists();
    for name in crate::train::run_outputs() {
        let path = dir.join(name);
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        if keep_older {
            remove_path(&path)?;
        } else {
            std::fs::create_dir_all(&aside)
                .with_context(|| format!("creating {}", aside.display()))?;
            let to = aside.join(name);
            std::fs::rename(&path, &to)
                .with_context(|| format!("moving {} to {}", path.display(), to.display()))?;
        }
    }
    Ok(())
}

fn remove_path(path: &Path) -> Result<()> {
    let removed = match path.is_dir() {
        true => std::fs::remove_dir_all(path),
        false => std::fs::remove_file(path),
    };
    removed.with_context(|| format!("removing {}", path.display()))
}

/// A fresh run must not silently replace an earlier run's metrics and checkpoints. An output
/// directory with an empty metrics.jsonl and no checkpoint (a run that failed before its first
/// evaluation) holds nothing to keep.
fn refuse_earlier_run(dir: &Path) -> Result<()> {
    let metrics = dir.join(crate::train::METRICS_FILE);
    let latest = dir.join(crate::checkpoint::CHECKPOINTS_DIR).join(crate::checkpoint::LATEST);
    let how = if latest.exists() {
        format!("continue it with --resume {}, start afresh there with --overwrite", dir.display())
    } else if crate::train::has_records(&metrics) {
        "it has no checkpoint to resume: start afresh there with --overwrite".to_owned()
    } else {
        return Ok(());
    };
    let what = if latest.exists() { &latest } else { &metrics };
    Err(BadInput(format!(
        "output_dir {} already holds a run ({} exists): {how}, or choose another output_dir \
         (--output-dir)",
        dir.display(),
        what.display()
    ))
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn not_implemented_and_config_errors_exit_2() {
        let e: anyhow::Error = NotImplemented { command: "x", needs: "y" }.into();
        assert_eq!(exit_code(&e), 2);
        let e = anyhow::Error::from(std::io::Error::other("disk full")).context("writing");
        assert_eq!(exit_code(&e), 1);
    }

    #[test]
    fn missing_or_corrupt_input_files_exit_2() {
        use std::io::{Error, ErrorKind};
        let code = |e: anyhow::Error| exit_code(&e.context("cannot resume from x"));
        let path = PathBuf::from("x");
        let missing = crate::checkpoint::CheckpointError::NotFound { path: path.clone() };
        assert_eq!(code(missing.into()), 2);
        let full = Error::other("disk full");
        let io = crate::checkpoint::CheckpointError::Io { path: path.clone(), source: full };
        assert_eq!(code(io.into()), 1);
        let source = Error::new(ErrorKind::NotFound, "no such file");
        let model = tilt_policies::Error::Io { path: path.clone(), source };
        assert_eq!(code(model.into()), 2);
        let source = Error::other("disk full");
        assert_eq!(code(tilt_policies::Error::Io { path, source }.into()), 1);
        let spec = tilt_constraints::Error::Spec {
            constraint: "c".into(),
            field: "feature".into(),
            reason: "bad".into(),
        };
        assert_eq!(code(spec.into()), 2);
    }
}
