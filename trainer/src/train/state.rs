//! Checkpoints and resume: π, q, the value head and the optimizers' states as burn records (parameter ids
//! included, so the optimizer's moments find their parameters again), the Z tracker, λ, the
//! RNG states and the step, written atomically with the trainer's checkpoint helpers.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{METRICS_FILE, Run};
use crate::checkpoint::{CheckpointWriter, RngState, TrainingState, prune, resolve};
use crate::report::MetricsLog;
use tilt_policies::{Gpt2, ValueHead};

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
        };
        let dir = w.commit(state)?;
        prune(&root, self.plan.checkpoint_keep_last as usize)?;
        log::info!("checkpoint {}", dir.display());
        Ok(())
    }

    /// Restores everything [`save_checkpoint`](Self::save_checkpoint) wrote.
    pub(super) fn resume(&mut self, dir: &Path) -> Result<()> {
        let ck = resolve(dir).with_context(|| format!("cannot resume from {}", dir.display()))?;
        let m = ck.manifest();
        if m.config_hash != self.plan.config_hash {
            log::debug!("resuming with a config that differs from the checkpoint's");
        }
        let rec = Rec::default();
        let read = |role: &str| -> Result<Vec<u8>> {
            let path = ck.file(role).with_context(|| format!("checkpoint has no `{role}`"))?;
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
        };
        let policy = rec.load(read("policy")?, &self.device).context("loading π")?;
        self.policy = self.policy.clone().load_record(policy);
        if let Some(q) = self.proposal.take() {
            let r = rec.load(read("proposal")?, &self.device).context("loading q")?;
            self.proposal = Some(q.load_record(r));
        }
        let opt = rec.load(read("optimizer")?, &self.device).context("loading the optimizer")?;
        self.optimizer = super::optimizer::<B, Gpt2<B>>(&self.plan).load_record(opt);
        if let Some(critic) = self.critic.take() {
            let head =
                rec.load(read("value_head")?, &self.device).context("loading the value head")?;
            let opt = rec
                .load(read("value_optimizer")?, &self.device)
                .context("loading the value head's optimizer")?;
            self.critic = Some(super::Critic {
                head: critic.head.load_record(head),
                optimizer: super::optimizer::<B, ValueHead<B>>(&self.plan).load_record(opt),
            });
        }
        self.z = super::ztrack::ZLog::from_bytes(&read("z_tracker")?)?;
        let bytes = read("estimator")?;
        anyhow::ensure!(
            bytes.len() % 8 == 0,
            "the estimator state is {} bytes, not f64s",
            bytes.len()
        );
        let state: Vec<f64> = bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        self.estimator.restore(&state).context("restoring the estimator's state")?;
        if !m.lambda.is_empty() {
            self.target.set_lambda(m.lambda.clone())?;
        }
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
        self.step = m.step;
        self.samples_seen = m.samples_seen;
        if self.step > self.plan.steps {
            bail!(
                "the checkpoint is at step {}, past the run's {} steps",
                self.step,
                self.plan.steps
            );
        }
        if self.peer.is_writer() {
            let path = self.plan.output_dir.join(METRICS_FILE);
            self.metrics = Some(MetricsLog::resume(&path, self.step)?);
        }
        log::info!("resumed from {} at step {}", ck.dir().display(), self.step);
        Ok(())
    }
}

/// Resolves `dir` to the checkpoint a resume would read (for messages).
pub fn resume_from(dir: &Path) -> Result<(std::path::PathBuf, u64)> {
    let ck = resolve(dir)?;
    Ok((ck.dir().to_owned(), ck.manifest().step))
}
