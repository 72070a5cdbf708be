//! Shared helpers for tilt's benchmarks.
//!
//! - [`ScoringFixture`]: a randomly initialised GPT-2-shaped policy, a fixed batch of sampled
//!   sequences and the detached inputs of an off-policy estimator (log q, log P, log Z), with
//!   the three measurements of issue 4's performance criterion: scoring π plus the backward
//!   pass of a plain loss ([`ScoringFixture::score_backward`]), the same with the GDC++ loss
//!   ([`ScoringFixture::gdcpp_backward`]), and the estimator's own work on an already scored
//!   batch ([`ScoringFixture::gdcpp_only`]).
//! - [`ZProblem`]: synthetic log P / log q / log π samples for the partition-function and
//!   divergence benchmarks (issue 6).
//! - [`TrainStep`]: one full GDC++ training step (sample from q, score a, score π with its
//!   backward pass, Adam), the work `compare/train_step.py` times disco's `DPGTuner` on.
//! - [`median`]: for the paired-timing example.
//!
//! Everything is seeded, so two runs measure the same work.

use std::time::Instant;

#[cfg(feature = "flex")]
use burn::backend::{Autodiff, Flex};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{Adam, AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tilt_estimators::{Dpg, Estimator, EstimatorOutput, ScoredBatch};
use tilt_policies::{Draw, Gpt2, Gpt2Config, SamplingConfig, SequenceBatch};

/// The CPU autodiff backend the estimator benchmarks run on (`flex`, the crate's default).
#[cfg(feature = "flex")]
pub type AdFlex = Autodiff<Flex>;

/// Issue 4's batch: 64 sequences.
pub const BATCH: usize = 64;
/// Issue 4's length: 40 generated tokens after a one-token prompt (`<|endoftext|>`).
pub const NEW_TOKENS: usize = 40;

/// The model shapes the estimator-overhead benchmarks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelShape {
    /// GPT-2 small: 12 layers, width 768, 12 heads, vocabulary 50,257 (124M parameters).
    Gpt2Small,
    /// The fast variant: tilt-mini's width and vocabulary (256, 8 heads, 8,192) with 2 layers
    /// (2.7M parameters); the scoring cost is ~40× smaller, so the estimator's fixed cost is a
    /// larger fraction of it (a harsher test of the 2% criterion).
    Mini2,
}

impl ModelShape {
    /// The config, dropout off (so every repetition does identical work).
    pub fn config(self) -> Gpt2Config {
        let c = match self {
            ModelShape::Gpt2Small => Gpt2Config::small(),
            ModelShape::Mini2 => {
                Gpt2Config::new(8192, 256, 256, 2, 8).with_bos_token_id(0).with_eos_token_id(0)
            }
        };
        c.with_dropout(0.0)
    }

    /// The size part of a bench id, e.g. `gpt2-small-b64-t40`.
    pub fn id(self, batch: usize, new_tokens: usize) -> String {
        let name = match self {
            ModelShape::Gpt2Small => "gpt2-small",
            ModelShape::Mini2 => "mini2",
        };
        format!("{name}-b{batch}-t{new_tokens}")
    }
}

/// `n` rows of `[bos, x_1, ..., x_len]` with tokens uniform over the vocabulary (from `seed`),
/// as [`SequenceBatch::from_rows`] takes them with prompt length 1.
pub fn random_rows(n: usize, len: usize, vocab: usize, bos: u32, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            std::iter::once(bos)
                .chain((0..len).map(|_| rng.random_range(0..vocab as u32)))
                .collect()
        })
        .collect()
}

/// A policy, a batch of its sequences and an off-policy estimator's detached inputs.
///
/// The detached inputs mimic a GDC++ step: `log q = log π + U(−0.8, 0.8)` (q near π, as between
/// proposal updates), `log P = log q + U(−1, 1)` with P = 0 for a quarter of the
/// samples (a pointwise constraint), and `log Z` the importance-sampling estimate from those
/// weights. They are computed once, from the untrained model's log π, and reused.
#[derive(Debug)]
pub struct ScoringFixture<B: AutodiffBackend> {
    /// The policy π (random weights, GPT-2's initialisation, fixed seed).
    pub model: Gpt2<B>,
    /// The sequences: `[bos] ++ new tokens`, only the new tokens scored.
    pub batch: SequenceBatch<B>,
    /// `log q(x_i)`.
    pub log_q: Vec<f64>,
    /// `log P(x_i)` (`-inf` for P = 0).
    pub log_target: Vec<f64>,
    /// `log Z`.
    pub log_z: f64,
    /// The detached `log π(x_i)` of the batch, for [`gdcpp_only`](Self::gdcpp_only).
    pub log_pi: Vec<f64>,
}

impl<B: AutodiffBackend> ScoringFixture<B> {
    /// Builds the fixture: model weights from `seed`, tokens from `seed + 1`, the detached
    /// inputs from `seed + 2`.
    pub fn new(
        shape: ModelShape,
        batch: usize,
        new_tokens: usize,
        seed: u64,
        device: &B::Device,
    ) -> Self {
        let config = shape.config();
        let model = config.init_seeded::<B>(device, seed);
        let rows =
            random_rows(batch, new_tokens, config.vocab_size, config.bos_token_id as u32, seed + 1);
        let batch = SequenceBatch::from_rows(&rows, &vec![1; batch], device).expect("valid rows");
        let log_pi: Vec<f64> = model.log_prob(&batch).detach().into_data().iter::<f64>().collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 2);
        let log_q: Vec<f64> =
            log_pi.iter().map(|l| l + rng.random_range(-0.8..0.8)).collect::<Vec<_>>();
        let log_target: Vec<f64> = log_q
            .iter()
            .enumerate()
            .map(
                |(i, q)| {
                    if i % 4 == 3 { f64::NEG_INFINITY } else { q + rng.random_range(-1.0..1.0) }
                },
            )
            .collect();
        let log_w = tilt_ebm::log_weights(&log_target, &log_q).expect("valid weights");
        let log_z = tilt_ebm::estimate_log_z(&log_w).expect("some P > 0").log_z;
        Self { model, batch, log_q, log_target, log_z, log_pi }
    }

    /// (a) The baseline: scores π on the batch and backpropagates `−mean_i log π(x_i)`.
    pub fn score_backward(&self) -> B::Gradients {
        let log_pi = self.model.log_prob(&self.batch);
        log_pi.mean().neg().backward()
    }

    /// (b) Scores π, builds the [`ScoredBatch`] (one read-back of log π), computes GDC++'s
    /// advantages and loss, and backpropagates the loss.
    pub fn gdcpp_backward(&self) -> B::Gradients {
        let log_pi = self.model.log_prob(&self.batch);
        self.gdcpp_loss(log_pi).loss.backward()
    }

    /// (c) The estimator alone: a `[n]` leaf tensor holding the batch's log π stands in for
    /// the scored batch; builds the [`ScoredBatch`] (with its read-back), computes GDC++'s
    /// advantages and loss, and backpropagates the loss to the leaf. This is everything (b)
    /// does beyond (a) except replacing `−mean` by the weighted sum in the graph.
    pub fn gdcpp_only(&self) -> B::Gradients {
        let n = self.log_pi.len();
        let device = self.batch.input_ids.device();
        let leaf = Tensor::<B, 1>::from_data(TensorData::new(self.log_pi.clone(), [n]), &device)
            .require_grad();
        self.gdcpp_loss(leaf).loss.backward()
    }

    /// Any estimator alone on a `[n]` leaf holding the batch's log π, as
    /// [`gdcpp_only`](Self::gdcpp_only) does for GDC++: the batch carries every input some
    /// estimator needs (log q, log P, log Z, a 0/1 reward `[P > 0]`, and log a = log q), so
    /// the same call serves REINFORCE, KL-control (sequence level), DPG, GDC, GDC++ and f-DPG.
    pub fn estimator_only(&self, estimator: &dyn Estimator<B>) -> B::Gradients {
        let n = self.log_pi.len();
        let device = self.batch.input_ids.device();
        let leaf = Tensor::<B, 1>::from_data(TensorData::new(self.log_pi.clone(), [n]), &device)
            .require_grad();
        let reward: Vec<f64> =
            self.log_target.iter().map(|l| f64::from(u8::from(l.is_finite()))).collect();
        let scored = ScoredBatch::new(leaf)
            .and_then(|b| b.with_log_q(self.log_q.clone()))
            .and_then(|b| b.with_log_target(self.log_target.clone()))
            .and_then(|b| b.with_log_a(self.log_q.clone()))
            .and_then(|b| b.with_reward(reward))
            .expect("consistent shapes")
            .with_log_z(self.log_z);
        estimator.loss(&scored).expect("valid inputs").loss.backward()
    }

    /// GDC++'s loss on `log_pi` with the fixture's detached inputs.
    pub fn gdcpp_loss(&self, log_pi: Tensor<B, 1>) -> EstimatorOutput<B> {
        let scored = ScoredBatch::new(log_pi)
            .and_then(|b| b.with_log_q(self.log_q.clone()))
            .and_then(|b| b.with_log_target(self.log_target.clone()))
            .expect("consistent shapes")
            .with_log_z(self.log_z);
        Dpg::gdc_plus_plus().loss(&scored).expect("valid inputs")
    }
}

/// The fixture on [`AdFlex`] for `shape` at issue 4's batch (64 × 40), seed 0.
#[cfg(feature = "flex")]
pub fn flex_fixture(shape: ModelShape) -> ScoringFixture<AdFlex> {
    ScoringFixture::new(shape, BATCH, NEW_TOKENS, 0, &Default::default())
}

/// Synthetic samples for the Z and divergence estimators: `n` draws with
/// `log q ~ U(−60, −20)` (40-token sequences), `log P = log q + U(−2, 2)` with
/// P = 0 for a fifth of the samples, and a model `log π = log q + U(−1, 1)`.
#[derive(Debug, Clone)]
pub struct ZProblem {
    /// `log P(x_i)` (`-inf` for P = 0).
    pub log_target: Vec<f64>,
    /// `log q(x_i)`.
    pub log_proposal: Vec<f64>,
    /// `log π(x_i)`.
    pub log_model: Vec<f64>,
}

impl ZProblem {
    /// `n` samples from `seed`.
    pub fn new(n: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let log_proposal: Vec<f64> = (0..n).map(|_| rng.random_range(-60.0..-20.0)).collect();
        let log_target = log_proposal
            .iter()
            .map(|q| {
                if rng.random::<f64>() < 0.2 {
                    f64::NEG_INFINITY
                } else {
                    q + rng.random_range(-2.0..2.0)
                }
            })
            .collect();
        let log_model = log_proposal.iter().map(|q| q + rng.random_range(-1.0..1.0)).collect();
        Self { log_target, log_proposal, log_model }
    }

    /// `log P − log q`.
    pub fn log_weights(&self) -> Vec<f64> {
        tilt_ebm::log_weights(&self.log_target, &self.log_proposal).expect("valid weights")
    }
}

/// One full GDC++ training step on a random GPT-2-shaped model, as tilt-trainer runs it once
/// q has been replaced (so log a needs its own forward pass), and as disco's `DPGTuner._step`
/// does it: draw `batch` sequences of `new_tokens` from q (ancestral, KV cache, one
/// `<|endoftext|>` prompt), score them under a (no gradient) and the pointwise feature
/// b(x) = [first token mod 4 ≠ 3] (so P = 0 for about a quarter), update the running Z, score
/// them under π with the GDC++ loss and its backward pass, and take one Adam step on π.
pub struct TrainStep<B: AutodiffBackend> {
    /// π, trained.
    pub policy: Gpt2<B>,
    /// a, the base model of the target.
    pub base: Gpt2<B::InnerBackend>,
    /// q, the proposal (a copy of a; its weights do not change the cost).
    pub proposal: Gpt2<B::InnerBackend>,
    optimizer: OptimizerAdaptor<Adam, Gpt2<B>, B>,
    device: B::Device,
    sampling: SamplingConfig,
    prompts: Vec<Vec<u32>>,
    rng: ChaCha8Rng,
    /// Importance weights P/q of every sample so far (the running Z).
    log_weights: Vec<f64>,
}

impl<B: AutodiffBackend> std::fmt::Debug for TrainStep<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainStep")
            .field("batch", &self.prompts.len())
            .field("new_tokens", &self.sampling.max_new_tokens)
            .field("samples_seen", &self.log_weights.len())
            .finish_non_exhaustive()
    }
}

/// How long each part of a [`TrainStep::step`] took, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepTimes {
    /// Sampling from q.
    pub sample: f64,
    /// Scoring under a, the feature and Z.
    pub target: f64,
    /// Scoring π, the GDC++ loss and its backward pass.
    pub policy: f64,
    /// The Adam step.
    pub optimizer: f64,
}

impl StepTimes {
    /// The whole step.
    pub fn total(&self) -> f64 {
        self.sample + self.target + self.policy + self.optimizer
    }
}

#[cfg(feature = "flex")]
impl TrainStep<AdFlex> {
    /// [`TrainStep::on`] the CPU (flex).
    pub fn new(shape: ModelShape, batch: usize, new_tokens: usize, seed: u64) -> Self {
        Self::on(shape, batch, new_tokens, seed, &Default::default())
    }
}

impl<B: AutodiffBackend> TrainStep<B> {
    /// π, a and q all start from the weights of `seed`, on `device`; samples come from
    /// `seed + 1`.
    pub fn on(
        shape: ModelShape,
        batch: usize,
        new_tokens: usize,
        seed: u64,
        device: &B::Device,
    ) -> Self {
        let config = shape.config();
        let base = config.init_seeded::<B::InnerBackend>(device, seed);
        Self {
            policy: config.init_seeded::<B>(device, seed),
            proposal: base.clone(),
            base,
            optimizer: AdamConfig::new().init(),
            device: device.clone(),
            sampling: SamplingConfig::fixed_length(new_tokens),
            prompts: vec![vec![config.bos_token_id as u32]; batch],
            rng: ChaCha8Rng::seed_from_u64(seed + 1),
            log_weights: Vec::new(),
        }
    }

    /// Waits for the device's queued work (a GPU runs asynchronously), so that each part's
    /// time is its own.
    fn sync(&self) {
        B::sync(&self.device).expect("the device finishes its work");
    }

    /// Draws q's tokens where `draw` says (default: [`Draw::Auto`]).
    pub fn with_draw(mut self, draw: Draw) -> Self {
        self.sampling = self.sampling.with_draw(draw);
        self
    }

    /// One step with learning rate `lr`; returns its timings and the loss.
    pub fn step(&mut self, lr: f64) -> (StepTimes, f64) {
        self.sync();
        let clock = Instant::now();
        let samples =
            self.proposal.sample(&self.prompts, &self.sampling, &mut self.rng).expect("valid");
        let sample = clock.elapsed().as_secs_f64();

        let clock = Instant::now();
        let log_q: Vec<f64> =
            samples.sequence_sampling_log_probs().iter().map(|&l| f64::from(l)).collect();
        let log_a: Vec<f64> =
            self.base.log_prob(&samples.batch).into_data().iter::<f64>().collect();
        let generated = samples.generated();
        let log_target: Vec<f64> = generated
            .iter()
            .zip(&log_a)
            .map(
                |(x, a)| if x.first().is_some_and(|t| t % 4 == 3) { f64::NEG_INFINITY } else { *a },
            )
            .collect();
        self.log_weights.extend(tilt_ebm::log_weights(&log_target, &log_q).expect("valid weights"));
        let log_z = tilt_ebm::estimate_log_z(&self.log_weights).map_or(0.0, |e| e.log_z);
        let target = clock.elapsed().as_secs_f64();

        let clock = Instant::now();
        let rows: Vec<Vec<u32>> =
            self.prompts.iter().zip(&generated).map(|(p, g)| [p.as_slice(), g].concat()).collect();
        let batch = SequenceBatch::<B>::from_rows(&rows, &vec![1; rows.len()], &self.device)
            .expect("valid rows");
        let scored = ScoredBatch::new(self.policy.log_prob(&batch))
            .and_then(|b| b.with_log_q(log_q))
            .and_then(|b| b.with_log_target(log_target))
            .expect("consistent shapes")
            .with_log_z(log_z);
        let out = Dpg::gdc_plus_plus().loss(&scored).expect("valid inputs");
        let loss = out.loss.clone().into_scalar().elem::<f64>();
        let grads = GradientsParams::from_grads(out.loss.backward(), &self.policy);
        self.sync();
        let policy = clock.elapsed().as_secs_f64();

        let clock = Instant::now();
        self.policy = self.optimizer.step(lr, self.policy.clone(), grads);
        self.sync();
        let optimizer = clock.elapsed().as_secs_f64();
        (StepTimes { sample, target, policy, optimizer }, loss)
    }
}

/// The command line of bench-suite's `train_step` example (flex) and tilt-tests' `throughput`
/// example (the backend that crate is built with): `[gpt2-small|mini2] [BATCH] [NEW_TOKENS]
/// [STEPS]` (defaults: gpt2-small 32 40 3), with `TILT_DRAW=host|device|auto` (default auto)
/// choosing where q's tokens are drawn; one line per step:
/// `tilt-train-step seconds=<total> sample=<s> target=<s> policy=<s> optimizer=<s> loss=<l>`.
/// Exits with status 2 and a message on a bad argument.
pub fn train_step_main<B: AutodiffBackend>(device: &B::Device) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let shape = match args.first().map(String::as_str) {
        None | Some("gpt2-small") => ModelShape::Gpt2Small,
        Some("mini2") => ModelShape::Mini2,
        Some(other) => {
            eprintln!("unknown shape `{other}`: use gpt2-small or mini2");
            std::process::exit(2);
        }
    };
    let number = |i: usize, default: usize, name: &str| -> usize {
        args.get(i).map_or(default, |s| match s.parse() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("{name} must be a positive integer, got `{s}`");
                std::process::exit(2)
            }
        })
    };
    let batch = number(1, 32, "BATCH");
    let new_tokens = number(2, 40, "NEW_TOKENS");
    let steps = number(3, 3, "STEPS");
    let draw = draw_from_env();
    println!("tilt-draw {draw:?}");
    let mut step = TrainStep::<B>::on(shape, batch, new_tokens, 0, device).with_draw(draw);
    for _ in 0..steps {
        let (t, loss) = step.step(1.41e-5);
        println!(
            "tilt-train-step seconds={:.4} sample={:.4} target={:.4} policy={:.4} optimizer={:.4} \
             loss={loss:.4e}",
            t.total(),
            t.sample,
            t.target,
            t.policy,
            t.optimizer
        );
    }
}

/// Where the sampler draws tokens, from `TILT_DRAW=host|device|auto` (unset: auto); exits
/// with status 2 and a message on another value.
pub fn draw_from_env() -> Draw {
    match std::env::var("TILT_DRAW").as_deref() {
        Err(_) | Ok("auto") => Draw::Auto,
        Ok("host") => Draw::Host,
        Ok("device") => Draw::Device,
        Ok(other) => {
            eprintln!("TILT_DRAW must be host, device or auto, got `{other}`");
            std::process::exit(2)
        }
    }
}

/// The median of `xs` (mean of the middle two for an even count); NaN for an empty slice.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len().is_multiple_of(2) { 0.5 * (v[m - 1] + v[m]) } else { v[m] }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn rows_start_with_bos_and_stay_in_vocabulary() {
        let rows = random_rows(3, 5, 7, 6, 1);
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|r| r.len() == 6 && r[0] == 6 && r.iter().all(|&t| t < 7)));
        assert_eq!(rows, random_rows(3, 5, 7, 6, 1));
    }

    #[test]
    fn estimator_loss_has_the_gradient_of_the_baseline_graph() {
        // A tiny model: the GDC++ backward reaches the parameters, and the estimator-only
        // path gives dL/dlog π = −A/m.
        let device = Default::default();
        let mut f = ScoringFixture::<AdFlex>::new(ModelShape::Mini2, 4, 3, 5, &device);
        f.model = Gpt2Config::tiny().init_seeded(&device, 5);
        let rows = random_rows(4, 3, 16, 0, 6);
        f.batch = SequenceBatch::from_rows(&rows, &[1; 4], &device).unwrap();
        f.log_pi = f.model.log_prob(&f.batch).into_data().iter::<f64>().collect();
        let _ = f.score_backward();
        let _ = f.gdcpp_backward();
        let n = f.log_pi.len();
        let leaf = Tensor::<AdFlex, 1>::from_data(TensorData::new(f.log_pi.clone(), [n]), &device)
            .require_grad();
        let out = f.gdcpp_loss(leaf.clone());
        let grads = out.loss.backward();
        let g: Vec<f64> = leaf.grad(&grads).unwrap().into_data().iter::<f64>().collect();
        for (gi, a) in g.iter().zip(&out.advantages) {
            assert!((gi + a / n as f64).abs() < 1e-4 * (1.0 + a.abs()), "{g:?}");
        }
        assert_eq!(out.advantages[3], -(f.log_z + f.log_pi[3] - f.log_q[3]).exp());
    }

    #[test]
    fn a_train_step_moves_the_policy_and_is_seeded() {
        let mut a = TrainStep::new(ModelShape::Mini2, 4, 3, 7);
        let before: Vec<f32> =
            a.policy.log_prob(&first_batch()).into_data().iter::<f32>().collect();
        let (times, loss) = a.step(1e-3);
        assert!(loss.is_finite() && times.total() > 0.0);
        let after: Vec<f32> = a.policy.log_prob(&first_batch()).into_data().iter::<f32>().collect();
        assert_ne!(before, after, "the Adam step changed nothing");
        let mut b = TrainStep::new(ModelShape::Mini2, 4, 3, 7);
        assert_eq!(b.step(1e-3).1, loss, "same seed, same step");
    }

    fn first_batch() -> SequenceBatch<AdFlex> {
        SequenceBatch::from_rows(&random_rows(2, 3, 8192, 0, 1), &[1; 2], &Default::default())
            .unwrap()
    }

    #[test]
    fn z_problem_is_seeded_and_has_zero_weights() {
        let p = ZProblem::new(1000, 3);
        assert_eq!(p.log_weights(), ZProblem::new(1000, 3).log_weights());
        let zeros = p.log_target.iter().filter(|l| **l == f64::NEG_INFINITY).count();
        assert!((100..300).contains(&zeros));
    }
}
