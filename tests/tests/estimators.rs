//! Estimator unbiasedness on an enumerable model, on the selected backend.
//!
//! π is a tiny GPT-2 (vocabulary 4, 3 generated tokens: 64 sequences) on `TestBackend`; a and
//! q are random distributions over the same 64 sequences, P(x) = a(x)·b(x) with
//! b(x) = [x contains token 2]. Each estimator's loss gradient is averaged over K batches of
//! samples and compared, coordinate by coordinate, with the exact gradient of its objective
//! computed by enumeration: the difference must stay within 6 standard errors of the batch
//! means. (tilt-estimators' own tests check every estimator and baseline exhaustively on
//! flex; this checks that the same holds on the backend this suite is built for.)

use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tilt_estimators::{
    Dpg, Estimator, FDivergence, FDpg, JensenShannon, Reinforce, RewardBaseline, ScoredBatch,
    flatten_gradients,
};
use tilt_policies::{Gpt2, Gpt2Config, SequenceBatch};
use tilt_tests::{TestBackend, device};

type B = TestBackend;

const VOCAB: usize = 4;
const LEN: usize = 3;
const N: usize = 64;
/// Batches and samples per batch of each Monte Carlo estimate.
const K: usize = 40;
const M: usize = 256;

fn rows(xs: &[usize]) -> Vec<Vec<u32>> {
    xs.iter()
        .map(|&x| {
            let digits = (0..LEN).rev().map(|t| ((x / VOCAB.pow(t as u32)) % VOCAB) as u32);
            std::iter::once(0).chain(digits).collect()
        })
        .collect()
}

fn log_pi(model: &Gpt2<B>, xs: &[usize]) -> Tensor<B, 1> {
    let batch = SequenceBatch::from_rows(&rows(xs), &vec![1; xs.len()], &device()).unwrap();
    model.log_prob(&batch)
}

fn host(t: Tensor<B, 1>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
}

/// A random distribution over the 64 sequences (log-probs), far from uniform.
fn random_log_dist(rng: &mut ChaCha8Rng) -> Vec<f64> {
    let logits: Vec<f64> = (0..N).map(|_| 2.0 * rng.random::<f64>()).collect();
    let log_norm = logits.iter().map(|l| l.exp()).sum::<f64>().ln();
    logits.iter().map(|l| l - log_norm).collect()
}

fn draw(log_p: &[f64], m: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let p: Vec<f64> = log_p.iter().map(|l| l.exp()).collect();
    let total: f64 = p.iter().sum();
    (0..m)
        .map(|_| {
            let mut u = rng.random::<f64>() * total;
            p.iter()
                .position(|&pi| {
                    u -= pi;
                    u <= 0.0
                })
                .unwrap_or(N - 1)
        })
        .collect()
}

struct World {
    pi: Gpt2<B>,
    /// log π of every sequence (host).
    log_pi: Vec<f64>,
    log_q: Vec<f64>,
    log_target: Vec<f64>,
    log_z: f64,
    reward: Vec<f64>,
}

fn world() -> World {
    let config = Gpt2Config::new(VOCAB, 8, 8, 1, 2)
        .with_resid_pdrop(0.0)
        .with_embd_pdrop(0.0)
        .with_attn_pdrop(0.0)
        .with_bos_token_id(0)
        .with_eos_token_id(0);
    let pi = config.init_seeded::<B>(&device(), 3);
    let all: Vec<usize> = (0..N).collect();
    let log_pi = host(log_pi(&pi, &all));
    let total: f64 = log_pi.iter().map(|l| l.exp()).sum();
    assert!((total - 1.0).abs() < 1e-4, "π sums to {total} over the 64 sequences");
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let log_a = random_log_dist(&mut rng);
    let log_q = random_log_dist(&mut rng);
    let reward: Vec<f64> =
        rows(&all).iter().map(|r| f64::from(u8::from(r[1..].contains(&2)))).collect();
    let log_target: Vec<f64> = log_a
        .iter()
        .zip(&reward)
        .map(|(a, b)| if *b > 0.0 { *a } else { f64::NEG_INFINITY })
        .collect();
    let log_z = log_target.iter().map(|l| l.exp()).sum::<f64>().ln();
    World { pi, log_pi, log_q, log_target, log_z, reward }
}

/// The gradient of `Σ_x w_x log π(x)` over all sequences, with `w` held fixed.
fn exact(w: &World, weights: &[f64]) -> Vec<f64> {
    let all: Vec<usize> = (0..N).collect();
    let weights = Tensor::<B, 1>::from_data(TensorData::new(weights.to_vec(), [N]), &device());
    let grads = log_pi(&w.pi, &all).mul(weights).sum().backward();
    flatten_gradients(&w.pi, &grads)
}

/// K batch-mean gradients of `estimator`'s loss, samples drawn from `log_sampler`.
fn monte_carlo(
    w: &World,
    log_sampler: &[f64],
    seed: u64,
    estimator: &dyn Estimator<B>,
    batch: impl Fn(Tensor<B, 1>, &[usize]) -> ScoredBatch<B>,
) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..K)
        .map(|_| {
            let xs = draw(log_sampler, M, &mut rng);
            let out = estimator.loss(&batch(log_pi(&w.pi, &xs), &xs)).unwrap();
            flatten_gradients(&w.pi, &out.loss.backward())
        })
        .collect()
}

/// Every coordinate of the mean of `samples` lies within 6 standard errors of `exact`.
fn assert_unbiased(name: &str, samples: &[Vec<f64>], exact: &[f64]) {
    let k = samples.len() as f64;
    let norm = exact.iter().map(|g| g * g).sum::<f64>().sqrt();
    assert!(norm > 1e-6, "{name}: the exact gradient is 0");
    let mut worst: f64 = 0.0;
    for (j, g) in exact.iter().enumerate() {
        let mean = samples.iter().map(|s| s[j]).sum::<f64>() / k;
        let var = samples.iter().map(|s| (s[j] - mean).powi(2)).sum::<f64>() / (k - 1.0);
        let se = (var / k).sqrt() + 1e-9 * norm;
        worst = worst.max((mean - g).abs() / se);
    }
    eprintln!(
        "[{}] {name}: {} coordinates, ‖exact‖ {norm:.3e}, worst |mean − exact| / se {worst:.2}",
        tilt_tests::BACKEND,
        exact.len()
    );
    assert!(worst < 6.0, "{name}: a coordinate is {worst:.1} standard errors off");
}

/// A distribution-matching batch: log q, log P and the exact log Z of the samples `xs`.
fn dm_batch(w: &World, log_pi: Tensor<B, 1>, xs: &[usize]) -> ScoredBatch<B> {
    ScoredBatch::new(log_pi)
        .and_then(|b| b.with_log_q(xs.iter().map(|&x| w.log_q[x]).collect()))
        .and_then(|b| b.with_log_target(xs.iter().map(|&x| w.log_target[x]).collect()))
        .unwrap()
        .with_log_z(w.log_z)
}

#[test]
fn gdc_pp_is_unbiased_for_the_forward_kl_gradient() {
    let w = world();
    // E_q[∇L] = −Σ_x P(x) ∇log π(x) + Z Σ_x π(x) ∇log π(x), and the second sum is 0.
    let p: Vec<f64> = w.log_target.iter().map(|l| -l.exp()).collect();
    let mc =
        monte_carlo(&w, &w.log_q, 1, &Dpg::gdc_plus_plus(), |log_pi, xs| dm_batch(&w, log_pi, xs));
    assert_unbiased("GDC++", &mc, &exact(&w, &p));
}

#[test]
fn off_policy_f_dpg_js_is_unbiased_for_the_divergence_gradient() {
    let w = world();
    // ∇ D_f(π‖p) = Σ_x π(x) f'(π(x)/p(x)) ∇log π(x).
    let weights: Vec<f64> = (0..N)
        .map(|x| {
            let log_t = w.log_pi[x] - (w.log_target[x] - w.log_z);
            w.log_pi[x].exp() * JensenShannon.f_prime(log_t)
        })
        .collect();
    let estimator = FDpg::new(JensenShannon).off_policy();
    let mc = monte_carlo(&w, &w.log_q, 2, &estimator, |log_pi, xs| dm_batch(&w, log_pi, xs));
    assert_unbiased("f-DPG JS (off-policy)", &mc, &exact(&w, &weights));
}

#[test]
fn reinforce_is_unbiased_for_the_expected_reward_gradient() {
    let w = world();
    // E_π[∇L] = −Σ_x π(x) R(x) ∇log π(x).
    let weights: Vec<f64> = (0..N).map(|x| -w.log_pi[x].exp() * w.reward[x]).collect();
    let estimator = Reinforce::new(RewardBaseline::None);
    let mc = monte_carlo(&w, &w.log_pi, 3, &estimator, |log_pi, xs| {
        ScoredBatch::new(log_pi)
            .and_then(|b| b.with_reward(xs.iter().map(|&x| w.reward[x]).collect()))
            .unwrap()
    });
    assert_unbiased("REINFORCE", &mc, &exact(&w, &weights));
}
