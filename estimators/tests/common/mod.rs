//! An enumerable world: a tiny GPT-2 (vocabulary 6, prompt = BOS, 4 new tokens, so 6⁴ = 1,296
//! sequences), exact distributions, targets and the Jacobian of log π.

#![allow(dead_code)]

use std::sync::OnceLock;

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module};
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tilt_estimators::flatten_gradients;
use tilt_policies::{Gpt2, Gpt2Config, SequenceBatch};

pub type B = Autodiff<Flex>;
pub type I = Flex;

pub const VOCAB: usize = 6;
pub const LEN: usize = 4;
pub const N: usize = 1296;
pub const BOS: u32 = 0;
/// λ of the distributional feature φ(x) = [count of token 3 ≥ 2] (fixed, not fitted).
pub const LAMBDA: f64 = 1.5;

/// The base model a: seed and weight scale (see `WEIGHT_SCALE`).
pub const A: (u64, f64) = (11, 25.0);
/// The proposal q: the base model itself, as at the start of GDC.
pub const Q: (u64, f64) = A;
/// The policy π: the base model's weights shrunk by 0.92 (a slightly flatter model near a, as
/// π is near q between proposal updates), so that π ≠ q with moderate weights π/q.
pub const PI: (u64, f64) = (11, 23.0);

pub fn config() -> Gpt2Config {
    // vocab 6, context 8, width 8, 1 layer, 2 heads, no dropout, bos = eos = 0.
    Gpt2Config::new(VOCAB, 8, 8, 1, 2)
        .with_resid_pdrop(0.0)
        .with_embd_pdrop(0.0)
        .with_attn_pdrop(0.0)
        .with_bos_token_id(0)
        .with_eos_token_id(0)
}

/// Multiplies every weight matrix (parameters of rank ≥ 2) by a constant, keeping ids.
struct ScaleWeights(f64);

impl<BB: burn::tensor::backend::Backend> burn::module::ModuleMapper<BB> for ScaleWeights {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<BB, D>>,
    ) -> burn::module::Param<Tensor<BB, D>> {
        let s = self.0;
        if D < 2 {
            return param;
        }
        // Through the host, so the result is a fresh leaf (a parameter) again.
        param.map(|t| {
            let device = t.device();
            Tensor::from_data(t.mul_scalar(s).into_data(), &device).require_grad()
        })
    }
}

/// A model with random weights: GPT-2's initialisation (weights N(0, 0.02), which makes a
/// 1-layer, width-8 model almost uniform) with every weight matrix multiplied by `scale`
/// (25 gives std 0.5, a distribution far from uniform). The initialisation is host-seeded, so
/// the same seed always gives the same weights.
pub fn model_ad((seed, scale): (u64, f64)) -> Gpt2<B> {
    config().init_seeded::<B>(&Default::default(), seed).map(&mut ScaleWeights(scale))
}

pub fn sequence(x: usize) -> [u32; LEN] {
    let mut s = [0u32; LEN];
    let mut r = x;
    for t in (0..LEN).rev() {
        s[t] = (r % VOCAB) as u32;
        r /= VOCAB;
    }
    s
}

pub fn rows(xs: &[usize]) -> Vec<Vec<u32>> {
    rows_with_prompt(BOS, xs)
}

/// Rows `[prompt, x_1, .., x_LEN]`.
pub fn rows_with_prompt(prompt: u32, xs: &[usize]) -> Vec<Vec<u32>> {
    xs.iter()
        .map(|&x| {
            let mut r = vec![prompt];
            r.extend(sequence(x));
            r
        })
        .collect()
}

pub fn seq_batch<BB: burn::tensor::backend::Backend>(xs: &[usize]) -> SequenceBatch<BB> {
    SequenceBatch::from_rows(&rows(xs), &vec![1; xs.len()], &Default::default()).unwrap()
}

/// Token log-probs `[n, LEN]` (generated positions only) of a batch.
pub fn token_log_probs<BB: burn::tensor::backend::Backend>(
    model: &Gpt2<BB>,
    xs: &[usize],
) -> Tensor<BB, 2> {
    let n = xs.len();
    model.token_log_probs(&seq_batch(xs)).slice([0..n, 1..LEN + 1])
}

/// Host values of every sequence's log-prob and token log-probs.
#[derive(Debug, Clone)]
pub struct Enumerated {
    pub log_prob: Vec<f64>,
    /// `[N, LEN]` row-major.
    pub token_log_prob: Vec<f64>,
    /// `exp(log_prob)` normalised to sum to 1 (for sampling).
    pub prob: Vec<f64>,
    /// Cumulative `prob`.
    cdf: Vec<f64>,
}

impl Enumerated {
    pub fn of(model: &Gpt2<I>) -> Self {
        Self::of_prompt(model, BOS)
    }

    /// The distribution of the 4 tokens after a one-token prompt.
    pub fn of_prompt(model: &Gpt2<I>, prompt: u32) -> Self {
        let sb = SequenceBatch::<I>::from_rows(
            &rows_with_prompt(prompt, &(0..N).collect::<Vec<_>>()),
            &[1; N],
            &Default::default(),
        )
        .unwrap();
        let tok: Vec<f64> = model
            .token_log_probs(&sb)
            .slice([0..N, 1..LEN + 1])
            .into_data()
            .iter::<f64>()
            .collect();
        let log_prob: Vec<f64> = tok.chunks(LEN).map(|r| r.iter().sum()).collect();
        let total: f64 = log_prob.iter().map(|l| l.exp()).sum();
        let prob: Vec<f64> = log_prob.iter().map(|l| l.exp() / total).collect();
        let mut acc = 0.0;
        let cdf = prob
            .iter()
            .map(|p| {
                acc += p;
                acc
            })
            .collect();
        Self { log_prob, token_log_prob: tok, prob, cdf }
    }

    pub fn sample(&self, rng: &mut ChaCha8Rng, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| {
                let u: f64 = rng.random::<f64>() * self.cdf[N - 1];
                self.cdf.partition_point(|c| *c < u).min(N - 1)
            })
            .collect()
    }

    pub fn tokens(&self, xs: &[usize]) -> Vec<f64> {
        xs.iter()
            .flat_map(|&x| self.token_log_prob[x * LEN..(x + 1) * LEN].iter().copied())
            .collect()
    }

    pub fn at(&self, xs: &[usize]) -> Vec<f64> {
        xs.iter().map(|&x| self.log_prob[x]).collect()
    }

    /// Σ_x m(x) (log m(x) − log other(x)).
    pub fn kl_to(&self, other: &Enumerated) -> f64 {
        (0..N).map(|x| self.prob[x] * (self.log_prob[x] - other.log_prob[x])).sum()
    }
}

/// b(x) = contains token 2 (pointwise).
pub fn b(x: usize) -> f64 {
    f64::from(u8::from(sequence(x).contains(&2)))
}

/// φ(x) = [count of token 3 ≥ 2] (distributional).
pub fn phi(x: usize) -> f64 {
    f64::from(u8::from(sequence(x).iter().filter(|&&t| t == 3).count() >= 2))
}

/// A target `log P` over all sequences, with its exact `log Z` and `p`.
#[derive(Debug, Clone)]
pub struct Target {
    pub log_p: Vec<f64>,
    pub log_z: f64,
    pub p: Vec<f64>,
}

impl Target {
    pub fn new(log_p: Vec<f64>) -> Self {
        let max = log_p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let log_z = max + log_p.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
        let p = log_p.iter().map(|l| (l - log_z).exp()).collect();
        Self { log_p, log_z, p }
    }

    pub fn at(&self, xs: &[usize]) -> Vec<f64> {
        xs.iter().map(|&x| self.log_p[x]).collect()
    }

    /// Exact KL(p ‖ m).
    pub fn kl_to(&self, m: &Enumerated) -> f64 {
        (0..N)
            .filter(|&x| self.p[x] > 0.0)
            .map(|x| self.p[x] * (self.log_p[x] - self.log_z - m.log_prob[x]))
            .sum()
    }
}

pub fn hybrid_target(a: &Enumerated) -> Target {
    Target::new(
        (0..N)
            .map(|x| if b(x) > 0.0 { a.log_prob[x] + LAMBDA * phi(x) } else { f64::NEG_INFINITY })
            .collect(),
    )
}

pub struct World {
    pub a: Enumerated,
    pub q: Enumerated,
    pub pi: Enumerated,
    /// Hybrid: P = a · b · exp(λ φ).
    pub hybrid: Target,
    /// Distributional only: P = a · exp(λ φ) (positive everywhere).
    pub distributional: Target,
    /// Jacobian of log π: row-major with `d` columns; row x < N is ∇_θ log π(x), then the rows
    /// of every shorter prefix (`prefix_row`).
    pub jac: Vec<f64>,
    /// ‖J[x]‖².
    pub jac_sq_norm: Vec<f64>,
    pub d: usize,
}

impl World {
    pub fn row(&self, x: usize) -> &[f64] {
        &self.jac[x * self.d..(x + 1) * self.d]
    }
}

/// The Jacobian row of `log π(x_1..x_t)`, the first t tokens of sequence x (t = 1..=LEN).
pub fn prefix_row(x: usize, t: usize) -> usize {
    if t == LEN {
        return x;
    }
    let offset: usize = N + (1..t).map(|s| VOCAB.pow(s as u32)).sum::<usize>();
    offset + x / VOCAB.pow((LEN - t) as u32)
}

/// The gradient terms of a sequence-level estimator: sample i contributes `A_i J[x_i]`.
pub fn sequence_terms(xs: &[usize], advantages: &[f64]) -> Vec<Vec<(usize, f64)>> {
    xs.iter().zip(advantages).map(|(&x, &a)| vec![(x, a)]).collect()
}

/// The gradient terms of a per-token estimator with returns-to-go `G_t` (`[n, LEN]`):
/// `Σ_t G_t ∇log π_t = Σ_t (G_t − G_{t+1}) ∇log π(x_≤t)` (prefix rows, `G_{LEN+1} = 0`).
pub fn token_terms(xs: &[usize], returns: &[f64]) -> Vec<Vec<(usize, f64)>> {
    xs.iter()
        .enumerate()
        .map(|(i, &x)| {
            (1..=LEN)
                .map(|t| {
                    let g = returns[i * LEN + t - 1];
                    let next = if t < LEN { returns[i * LEN + t] } else { 0.0 };
                    (prefix_row(x, t), g - next)
                })
                .collect()
        })
        .collect()
}

/// Serialises the tests' autodiff work. Run concurrently from several test threads, burn 0.21's
/// autodiff occasionally produced slightly wrong gradients here (a Jacobian built while other
/// tests ran backward passes disagreed with the exact gradient by ~1e-3 relative, in about one
/// full run in three; never when run alone), so every autodiff section holds this lock. Host-only
/// Monte Carlo loops run in parallel. Take it only after `world()` (which takes it to build).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(build_world)
}

fn build_world() -> World {
    let _serial = serial();
    let t0 = std::time::Instant::now();
    let a = Enumerated::of(&model_ad(A).valid());
    let q = Enumerated::of(&model_ad(Q).valid());
    let pi_model = model_ad(PI);
    let pi = Enumerated::of(&pi_model.clone().valid());
    let hybrid = hybrid_target(&a);
    let distributional = Target::new((0..N).map(|x| a.log_prob[x] + LAMBDA * phi(x)).collect());
    let mut jac = Vec::new();
    let mut d = 0;
    // Rows 0..N: whole sequences; then every prefix of length 1, 2, 3 (see `prefix_row`).
    let mut all_rows = rows(&(0..N).collect::<Vec<_>>());
    for t in 1..LEN {
        for id in 0..VOCAB.pow(t as u32) {
            let mut r = vec![BOS];
            let mut rem = id;
            let mut toks = vec![0u32; t];
            for j in (0..t).rev() {
                toks[j] = (rem % VOCAB) as u32;
                rem /= VOCAB;
            }
            r.extend(toks);
            all_rows.push(r);
        }
    }
    for row in &all_rows {
        let sb =
            SequenceBatch::<B>::from_rows(std::slice::from_ref(row), &[1], &Default::default())
                .unwrap();
        let g = flatten_gradients(&pi_model, &pi_model.log_prob(&sb).sum().backward());
        d = g.len();
        jac.extend(g);
    }
    let jac_sq_norm = jac.chunks(d).map(|r| r.iter().map(|v| v * v).sum()).collect();
    let entropy = |m: &Enumerated| -(0..N).map(|x| m.prob[x] * m.log_prob[x]).sum::<f64>();
    eprintln!(
        "world: d = {d} parameters, built in {:.2?}; entropies a {:.3}, q {:.3}, π {:.3} \
         (uniform {:.3}); Z hybrid {:.4}, Z distributional {:.4}; KL(p‖π) {:.4}, KL(p‖q) {:.4}, \
         KL(π‖q) {:.4}",
        t0.elapsed(),
        entropy(&a),
        entropy(&q),
        entropy(&pi),
        (N as f64).ln(),
        hybrid.log_z.exp(),
        distributional.log_z.exp(),
        hybrid.kl_to(&pi),
        hybrid.kl_to(&q),
        pi.kl_to(&q),
    );
    World { a, q, pi, hybrid, distributional, jac, jac_sq_norm, d }
}

/// The gradient of a scalar function of the enumerated `log π` (autodiff through the model).
pub fn exact_gradient(objective: impl FnOnce(Tensor<B, 1>) -> Tensor<B, 1>) -> Vec<f64> {
    let _serial = serial();
    let model = model_ad(PI);
    let all: Vec<usize> = (0..N).collect();
    let log_pi = model.log_prob(&seq_batch::<B>(&all));
    flatten_gradients(&model, &objective(log_pi).backward())
}

pub fn constant(values: &[f64]) -> Tensor<B, 1> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), &Default::default())
}

pub fn host_constant(values: &[f64]) -> Tensor<I, 1> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), &Default::default())
}

pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (norm(a) * norm(b))
}

pub fn norm(a: &[f64]) -> f64 {
    a.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Monte Carlo summary of an estimator's gradient over K independent batches.
#[derive(Debug, Clone)]
pub struct Mc {
    /// Mean over batches of the loss gradient `−(1/n) Σ_i A_i J[x_i]`.
    pub mean: Vec<f64>,
    /// Standard error of each coordinate of `mean`.
    pub se: Vec<f64>,
    /// Per batch, the per-sample gradient-variance monitor
    /// (`mean_i ‖g_i‖² − ‖mean_i g_i‖²`, `g_i = −A_i J[x_i]`).
    pub monitor: Vec<f64>,
    pub batches: usize,
}

/// Runs `k` batches of `n` samples from `sampler`; `advantages(xs)` returns the estimator's
/// advantages for the samples `xs` (sequence level).
pub fn monte_carlo(
    w: &World,
    sampler: &Enumerated,
    n: usize,
    k: usize,
    seed: u64,
    mut advantages: impl FnMut(&[usize]) -> Vec<f64>,
) -> Mc {
    monte_carlo_terms(w, sampler, n, k, seed, |xs| sequence_terms(xs, &advantages(xs)))
}

/// Like `monte_carlo`, with each sample's gradient given as terms `(Jacobian row, weight)`:
/// the loss gradient of the batch is `−(1/n) Σ_i Σ_terms weight · J[row]`.
pub fn monte_carlo_terms(
    w: &World,
    sampler: &Enumerated,
    n: usize,
    k: usize,
    seed: u64,
    mut terms: impl FnMut(&[usize]) -> Vec<Vec<(usize, f64)>>,
) -> Mc {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = w.d;
    let (mut sum, mut sum_sq) = (vec![0.0; d], vec![0.0; d]);
    let mut monitor = Vec::with_capacity(k);
    let mut g = vec![0.0; d];
    let mut gi = vec![0.0; d];
    for _ in 0..k {
        let xs = sampler.sample(&mut rng, n);
        let per_sample = terms(&xs);
        g.iter_mut().for_each(|v| *v = 0.0);
        let mut sq = 0.0;
        for sample in &per_sample {
            if let [(row, a)] = sample.as_slice() {
                // One term: ‖g_i‖² = a² ‖J[row]‖² without building g_i.
                let c = -a / n as f64;
                for (gj, jj) in g.iter_mut().zip(w.row(*row)) {
                    *gj += c * jj;
                }
                sq += a * a * w.jac_sq_norm[*row];
                continue;
            }
            gi.iter_mut().for_each(|v| *v = 0.0);
            for &(row, a) in sample {
                for (gj, jj) in gi.iter_mut().zip(w.row(row)) {
                    *gj -= a * jj;
                }
            }
            sq += norm(&gi).powi(2);
            for (gj, v) in g.iter_mut().zip(&gi) {
                *gj += v / n as f64;
            }
        }
        monitor.push(sq / n as f64 - norm(&g).powi(2));
        for j in 0..d {
            sum[j] += g[j];
            sum_sq[j] += g[j] * g[j];
        }
    }
    let kf = k as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / kf).collect();
    let se = sum_sq
        .iter()
        .zip(&mean)
        .map(|(s2, m)| ((s2 / kf - m * m).max(0.0) / (kf - 1.0)).sqrt())
        .collect();
    Mc { mean, se, monitor, batches: k }
}

/// The rule for "matches the exact gradient": cosine ≥ 0.99 and |mean − exact| ≤ 4·SE
/// (+ 1e-5·max|exact| for f32 round-off) for at least 99% of the coordinates. Returns
/// (cosine, fraction within) and panics with the figures otherwise.
pub fn assert_matches(name: &str, mc: &Mc, exact: &[f64]) -> (f64, f64) {
    let cos = cosine(&mc.mean, exact);
    // f32 round-off floor: coordinates whose exact gradient is 0 in exact arithmetic (e.g. the
    // attention key bias, to which softmax is invariant) come out at ~1e-9 in f32.
    let max_abs = exact.iter().fold(0.0f64, |m, e| m.max(e.abs()));
    let within = mc
        .mean
        .iter()
        .zip(exact)
        .zip(&mc.se)
        .filter(|((m, e), se)| (*m - *e).abs() <= 4.0 * **se + 1e-5 * max_abs)
        .count() as f64
        / exact.len() as f64;
    eprintln!(
        "{name}: cosine {cos:.5}, {:.2}% of {} coordinates within 4 SE, ‖exact‖ {:.3e}, {} batches",
        100.0 * within,
        exact.len(),
        norm(exact),
        mc.batches
    );
    assert!(cos >= 0.99, "{name}: cosine {cos} < 0.99");
    assert!(within >= 0.99, "{name}: only {within} of the coordinates within 4 SE");
    (cos, within)
}

/// Mean and standard error of a slice.
pub fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

pub fn scale(v: &[f64], c: f64) -> Vec<f64> {
    v.iter().map(|x| x * c).collect()
}
