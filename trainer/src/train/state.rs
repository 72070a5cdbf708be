//! Checkpoints and resume: π, q, the value head and the optimizers' states as burn records (parameter ids
//! included, so the optimizer's moments find their parameters again), the Z tracker, λ, the
//! RNG states and the step, written atomically with the trainer's checkpoint helpers.
//!
//! A resume first checks that the checkpoint fits the run (estimator, proposal, value head,
//! the policy's architecture and every weight's shape): a mismatch is a [`BadInput`] naming the
//! checkpoint, not a panic or a run that trains on reinterpreted state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{REPLACED_RUN_DIR, Run, RunClock};
use crate::checkpoint::{
    Checkpoint, CheckpointWriter, ModelShape, RngState, TrainingState, prune, resolve,
};
use crate::cli::BadInput;
use crate::plan::{Estimator, Plan};
use tilt_policies::{Gpt2, Gpt2Config, ValueHead};

type Rec = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// The ChaCha8 state as bytes: seed (32), stream (8, LE), word position (16, LE).
fn rng_bytes(rng: &ChaCha8Rng) -> Vec<u8> {
    let mut b = rng.get_seed().to_vec();
    b.extend_from_slice(&rng.get_stream().to_le_bytes());
    b.extend_from_slice(&rng.get_word_pos().to_le_bytes());
    b
}

/// `kind` for stream or peer 0, `kind-i` for the others.
fn rng_name(kind: &str, i: usize) -> String {
    if i == 0 { kind.to_owned() } else { format!("{kind}-{i}") }
}

fn rng_from(state: &RngState) -> Result<ChaCha8Rng> {
    let b = state
        .bytes()
        .filter(|b| b.len() == 56)
        .with_context(|| format!("checkpoint RNG state `{}` is malformed", state.name))?;
    let seed: [u8; 32] = b[..32].try_into().expect("32 bytes");
    let mut rng = ChaCha8Rng::from_seed(seed);
    rng.set_stream(u64::from_le_bytes(b[32..40].try_into().expect("8 bytes")));
    rng.set_word_pos(u128::from_le_bytes(b[40..56].try_into().expect("16 bytes")));
    Ok(rng)
}

impl<B: AutodiffBackend> Run<B> {
    /// This peer's RNG states, named by sample stream (`sampler`, `sampler-1`, …, and `eval`,
    /// `eval-1`, …): a single-stream run's are `sampler` and `eval`.
    fn rng_states(&self) -> Vec<RngState> {
        let streams = self.peer.own_streams().zip(&self.rngs);
        let mut out: Vec<RngState> = streams
            .map(|(s, rng)| RngState::new(&rng_name("sampler", s), "chacha8", &rng_bytes(rng)))
            .collect();
        let evals = self.peer.own_streams().zip(&self.eval_rngs);
        out.extend(
            evals.map(|(s, rng)| RngState::new(&rng_name("eval", s), "chacha8", &rng_bytes(rng))),
        );
        out
    }

    /// Writes `checkpoints/step-N/` and prunes old ones (the writing peer; the others hand it
    /// their RNG states).
    pub(super) fn save_checkpoint(&mut self) -> Result<()> {
        let rng = self.gather(self.rng_states(), "the RNG states")?.concat();
        if !self.peer.is_writer() {
            return Ok(());
        }
        let root = self.plan.checkpoints_dir();
        let mut w = CheckpointWriter::begin(&root, self.step)?;
        let rec = Rec::default();
        let policy = rec.record(self.policy.clone().into_record(), ()).context("recording π")?;
        w.add_file("policy", "policy.mpk", &policy)?;
        if let Some(q) = &self.proposal {
            let q = rec.record(q.clone().into_record(), ()).context("recording q")?;
            w.add_file("proposal", "proposal.mpk", &q)?;
        }
        let opt = rec.record(self.optimizer.to_record(), ()).context("recording the optimizer")?;
        w.add_file("optimizer", "optimizer.mpk", &opt)?;
        if let Some(critic) = &self.critic {
            let head = rec
                .record(critic.head.clone().into_record(), ())
                .context("recording the value head")?;
            w.add_file("value_head", "value_head.mpk", &head)?;
            let opt = rec
                .record(critic.optimizer.to_record(), ())
                .context("recording the value head's optimizer")?;
            w.add_file("value_optimizer", "value_optimizer.mpk", &opt)?;
        }
        w.add_file("z_tracker", "z_tracker.bin", &self.z.to_bytes())?;
        let estimator: Vec<u8> =
            self.estimator.state().iter().flat_map(|v| v.to_le_bytes()).collect();
        w.add_file("estimator", "estimator.bin", &estimator)?;
        let mut trackers = BTreeMap::new();
        trackers.insert("z_tracker".to_owned(), self.z.summary());
        let state = TrainingState {
            step: self.step,
            samples_seen: self.samples_seen,
            lambda: self.target.lambda().to_vec(),
            trackers,
            rng,
            config_hash: self.plan.config_hash.clone(),
            estimator: Some(estimator_kind(&self.plan.estimator).to_owned()),
            model: Some(model_shape(self.policy.config())),
            elapsed_s: Some(self.started.elapsed().as_secs_f64()),
        };
        let dir = w.commit(state)?;
        prune(&root, self.plan.checkpoint_keep_last as usize)?;
        log::info!("checkpoint {}", dir.display());
        self.drop_replaced_run()
    }

    /// Deletes the earlier run that `--overwrite` set aside, now that this run has a
    /// checkpoint of its own.
    fn drop_replaced_run(&self) -> Result<()> {
        let aside = self.plan.output_dir.join(REPLACED_RUN_DIR);
        if aside.exists() {
            std::fs::remove_dir_all(&aside)
                .with_context(|| format!("removing the replaced run {}", aside.display()))?;
        }
        Ok(())
    }

    /// Restores everything [`save_checkpoint`](Self::save_checkpoint) wrote.
    pub(super) fn resume(&mut self, dir: &Path) -> Result<()> {
        let ck = resolve(dir).with_context(|| format!("cannot resume from {}", dir.display()))?;
        let m = ck.manifest();
        if m.config_hash != self.plan.config_hash {
            log::debug!("resuming with a config that differs from the checkpoint's");
        }
        check_resumable(&ck, &self.plan)?;
        self.check_model(&ck)?;
        self.restore_models(&ck)?;
        self.z = super::ztrack::ZLog::from_bytes(&read_payload(&ck, "z_tracker")?.1)?;
        self.restore_estimator(&ck)?;
        if !m.lambda.is_empty() {
            self.target.set_lambda(m.lambda.clone())?;
        }
        self.restore_rngs(&ck)?;
        self.step = m.step;
        self.samples_seen = m.samples_seen;
        self.started = RunClock::starting_at(m.elapsed_s.unwrap_or(0.0));
        log::info!("resumed from {} at step {}", ck.dir().display(), self.step);
        Ok(())
    }

    /// π, q, the value head and their optimizers' states.
    fn restore_models(&mut self, ck: &Checkpoint) -> Result<()> {
        let rec = Rec::default();
        let (path, bytes) = read_payload(ck, "policy")?;
        self.policy = load_gpt2(&self.policy, bytes, &path, &self.device).context("loading π")?;
        if let Some(q) = self.proposal.take() {
            let (path, bytes) = read_payload(ck, "proposal")?;
            self.proposal = Some(load_gpt2(&q, bytes, &path, &self.device).context("loading q")?);
        }
        let opt = rec.load(read_payload(ck, "optimizer")?.1, &self.device);
        let opt = opt.context("loading the optimizer")?;
        self.optimizer = super::optimizer::<B, Gpt2<B>>(&self.plan).load_record(opt);
        if let Some(critic) = self.critic.take() {
            let head = rec.load(read_payload(ck, "value_head")?.1, &self.device);
            let head = head.context("loading the value head")?;
            let opt = rec.load(read_payload(ck, "value_optimizer")?.1, &self.device);
            let opt = opt.context("loading the value head's optimizer")?;
            self.critic = Some(super::Critic {
                head: critic.head.load_record(head),
                optimizer: super::optimizer::<B, ValueHead<B>>(&self.plan).load_record(opt),
            });
        }
        Ok(())
    }

    /// The estimator's state (adaptive β, a moving-average baseline, ...).
    fn restore_estimator(&mut self, ck: &Checkpoint) -> Result<()> {
        let (path, bytes) = read_payload(ck, "estimator")?;
        let bad = |why: String| BadInput(format!("{}: {why}", path.display()));
        if !bytes.len().is_multiple_of(8) {
            let why = format!("the estimator state is {} bytes, not f64s", bytes.len());
            return Err(bad(why).into());
        }
        let state: Vec<f64> = bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        self.estimator
            .restore(&state)
            .map_err(|e| bad(format!("cannot restore the estimator's state: {e:#}")).into())
    }

    /// The training and evaluation RNGs of this peer's sample streams.
    fn restore_rngs(&mut self, ck: &Checkpoint) -> Result<()> {
        let m = ck.manifest();
        let rng = |name: &str| {
            m.rng
                .iter()
                .find(|r| r.name == name)
                .with_context(|| format!("checkpoint has no RNG `{name}`"))
                .and_then(rng_from)
        };
        let count = |kind: &str| {
            let prefix = format!("{kind}-");
            m.rng.iter().filter(|r| r.name == kind || r.name.starts_with(&prefix)).count()
        };
        let (streams, evals) = (count("sampler"), count("eval"));
        if streams != self.peer.streams || evals != streams {
            bail!(
                "the checkpoint in {} was written by a run drawing {streams} sample stream(s); \
                 this run draws {}: resume with --sample-streams {streams} (on any number of \
                 peers that divides it)",
                ck.dir().display(),
                self.peer.streams
            );
        }
        self.rngs =
            self.peer.own_streams().map(|s| rng(&rng_name("sampler", s))).collect::<Result<_>>()?;
        self.eval_rngs =
            self.peer.own_streams().map(|s| rng(&rng_name("eval", s))).collect::<Result<_>>()?;
        Ok(())
    }
}

/// The payload file of `ck` with this role: its path and its bytes.
fn read_payload(ck: &Checkpoint, role: &str) -> Result<(PathBuf, Vec<u8>)> {
    let path = ck.file(role).with_context(|| format!("checkpoint has no `{role}`"))?;
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok((path, bytes))
}

impl<B: AutodiffBackend> Run<B> {
    /// Checks that the checkpoint's policy has this run's architecture (when its manifest
    /// records it; every weight's shape is checked while loading anyway).
    fn check_model(&self, ck: &Checkpoint) -> Result<()> {
        let Some(saved) = ck.manifest().model else { return Ok(()) };
        let differences = saved.differences(&model_shape(self.policy.config()));
        if differences.is_empty() {
            return Ok(());
        }
        let model = self.plan.policy_init.as_ref().unwrap_or(&self.plan.base_model);
        Err(BadInput(format!(
            "cannot resume from {}: its policy is not the model {} (checkpoint vs model: {}); \
             resume with the run's own model, or start afresh (--overwrite)",
            ck.dir().display(),
            model.display(),
            differences.join(", ")
        ))
        .into())
    }
}

/// The architecture the manifest records for `config`.
fn model_shape(config: &Gpt2Config) -> ModelShape {
    ModelShape {
        n_layer: config.n_layer,
        n_embd: config.n_embd,
        n_head: config.n_head,
        n_inner: config.n_inner.unwrap_or(4 * config.n_embd),
        vocab_size: config.vocab_size,
        n_positions: config.n_positions,
    }
}

/// The `estimator.kind` of `e`, as manifests record it.
fn estimator_kind(e: &Estimator) -> &'static str {
    match e {
        Estimator::Reinforce { .. } => "reinforce",
        Estimator::KlControl { .. } => "kl_control",
        Estimator::Dpg { .. } => "dpg",
        Estimator::Gdc { .. } => "gdc",
        Estimator::GdcPp { .. } => "gdc_pp",
        Estimator::Fdpg { .. } => "fdpg",
        Estimator::Cdpg { .. } => "cdpg",
    }
}

/// Checks that `plan` can continue from checkpoint `ck`: no more steps done than the plan has,
/// the same estimator (when the manifest records it), and a proposal q and a value head exactly
/// when the plan's estimator has them; and `plan.output_dir` must not hold another run.
/// A mismatch is a [`BadInput`] naming the checkpoint and both values. Other differences in
/// the config (learning rate, length, evaluation) are allowed.
pub fn check_resumable(ck: &Checkpoint, plan: &Plan) -> Result<()> {
    let step = ck.manifest().step;
    if step > plan.steps {
        let why = format!("it is at step {step}, past the config's {} steps", plan.steps);
        return Err(not_resumable(ck, &why));
    }
    let kind = estimator_kind(&plan.estimator);
    if let Some(saved) = ck.manifest().estimator.as_deref()
        && saved != kind
    {
        return Err(not_resumable(
            ck,
            &format!("it was written by estimator.kind `{saved}`, the config says `{kind}`"),
        ));
    }
    let parts = [
        ("proposal", plan.estimator.is_off_policy(), "proposal q"),
        ("value_head", plan.estimator.critic().is_some(), "value head (estimator.critic)"),
    ];
    for (role, wanted, what) in parts {
        let saved = ck.file(role).is_some();
        if saved != wanted {
            let (holds, uses) =
                if saved { ("holds a", "does not use one") } else { ("holds no", "uses one") };
            let why = format!("the checkpoint {holds} {what}, and the config's `{kind}` {uses}");
            return Err(not_resumable(ck, &why));
        }
    }
    refuse_other_run_dir(ck.dir(), &plan.output_dir)
}

/// Whether `metrics` holds at least one record (an empty file is not a run).
pub(crate) fn has_records(metrics: &Path) -> bool {
    std::fs::read(metrics).is_ok_and(|b| b.iter().any(|c| !c.is_ascii_whitespace()))
}

/// The run directory a checkpoint directory (`RUN/checkpoints/step-N`) belongs to.
fn run_dir_of(checkpoint: &Path) -> Option<&Path> {
    let checkpoints = checkpoint.parent()?;
    let is_root = checkpoints.file_name()? == crate::checkpoint::CHECKPOINTS_DIR;
    is_root.then(|| checkpoints.parent()).flatten()
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// A resume writes into `output_dir` and drops its metrics after the checkpoint's step: refuse
/// when those metrics are another run's (not the run the checkpoint belongs to).
fn refuse_other_run_dir(checkpoint: &Path, output_dir: &Path) -> Result<()> {
    let metrics = output_dir.join(super::METRICS_FILE);
    if !has_records(&metrics) || run_dir_of(checkpoint).is_some_and(|d| same_dir(d, output_dir)) {
        return Ok(());
    }
    Err(BadInput(format!(
        "cannot resume from {} into {}: that directory holds another run ({} exists), which \
         the resume would overwrite; resume into the checkpoint's own run directory, or choose \
         an empty --output-dir",
        checkpoint.display(),
        output_dir.display(),
        metrics.display()
    ))
    .into())
}

fn not_resumable(ck: &Checkpoint, why: &str) -> anyhow::Error {
    BadInput(format!(
        "cannot resume from {}: {why}; resume with the config the run was started with, or \
         start afresh (--overwrite, or another --output-dir)",
        ck.dir().display()
    ))
    .into()
}

/// `current` with the weights of the GPT-2 record `bytes` (read from `path`), after checking
/// that they have its architecture: a [`BadInput`] naming `path` otherwise.
fn load_gpt2<B: Backend>(
    current: &Gpt2<B>,
    bytes: Vec<u8>,
    path: &Path,
    device: &B::Device,
) -> Result<Gpt2<B>> {
    let record: <Gpt2<B> as Module<B>>::Record = Rec::default()
        .load(bytes, device)
        .map_err(|e| BadInput(format!("{}: not a GPT-2 record: {e}", path.display())))?;
    let wrong = |what: String| -> anyhow::Error {
        BadInput(format!(
            "{}: the checkpoint's weights are of another model than this run's ({what}); \
             resume with the run's own model, or start afresh (--overwrite)",
            path.display()
        ))
        .into()
    };
    if record.h.len() != current.h.len() {
        let (saved, here) = (record.h.len(), current.h.len());
        return Err(wrong(format!("{saved} transformer blocks, the model has {here}")));
    }
    let loaded = current.clone().load_record(record);
    let (want, got) = (param_shapes(current), param_shapes(&loaded));
    if let Some(((name, here), (_, saved))) = want.iter().zip(&got).find(|(a, b)| a != b) {
        return Err(wrong(format!("{name} is {saved:?}, the model's is {here:?}")));
    }
    Ok(loaded)
}

/// Every float parameter of `module` with its path (`h.0.attn.c_attn.weight`) and shape.
fn param_shapes<B: Backend, M: Module<B>>(module: &M) -> Vec<(String, Vec<usize>)> {
    let mut v = ParamShapes { path: Vec::new(), shapes: Vec::new() };
    module.visit(&mut v);
    v.shapes
}

struct ParamShapes {
    path: Vec<String>,
    shapes: Vec<(String, Vec<usize>)>,
}

impl<B: Backend> ModuleVisitor<B> for ParamShapes {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.shapes.push((self.path.join("."), param.lazy_shape().to_vec()));
    }
}

/// Resolves `dir` to the checkpoint a resume would read (for messages).
pub fn resume_from(dir: &Path) -> Result<(std::path::PathBuf, u64)> {
    let ck = resolve(dir)?;
    Ok((ck.dir().to_owned(), ck.manifest().step))
}
