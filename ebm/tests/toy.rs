//! An enumerable toy space: all 5^4 = 625 sequences of length 4 over 5 symbols, with a random
//! base distribution a(x), a few features and helpers to sample and to compute exact answers.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use tilt_ebm::{Estimate, log_sum_exp};

/// Number of sequences.
pub const N_SEQ: usize = 625;
/// Features of [`Toy`]: share of symbol 0 (real in [0,1]), first symbol is 1 (binary),
/// distinct symbols / 4 (real), last symbol is even (binary).
pub const D: usize = 4;

/// The symbols of sequence `k`.
pub fn sequence(k: usize) -> [usize; 4] {
    [k / 125, (k / 25) % 5, (k / 5) % 5, k % 5]
}

/// The base distribution (log-probabilities summing to 1) and the feature table (`N_SEQ × D`).
#[derive(Debug, Clone)]
pub struct Toy {
    pub log_a: Vec<f64>,
    pub features: Vec<f64>,
}

impl Toy {
    pub fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut log_a: Vec<f64> =
            (0..N_SEQ).map(|_| 1.5 * rng.sample::<f64, _>(StandardNormal)).collect();
        log_normalize(&mut log_a);
        let mut features = Vec::with_capacity(N_SEQ * D);
        for k in 0..N_SEQ {
            let s = sequence(k);
            let zeros = s.iter().filter(|&&c| c == 0).count() as f64 / 4.0;
            let mut distinct = s.to_vec();
            distinct.sort_unstable();
            distinct.dedup();
            features.extend([
                zeros,
                f64::from(u8::from(s[0] == 1)),
                distinct.len() as f64 / 4.0,
                f64::from(u8::from(s[3].is_multiple_of(2))),
            ]);
        }
        Self { log_a, features }
    }

    pub fn row(&self, k: usize) -> &[f64] {
        &self.features[k * D..(k + 1) * D]
    }

    /// `log a(x) + λ·φ(x)` for every sequence (unnormalised).
    pub fn log_target(&self, lambda: &[f64]) -> Vec<f64> {
        (0..N_SEQ)
            .map(|k| {
                self.log_a[k] + lambda.iter().zip(self.row(k)).map(|(l, f)| l * f).sum::<f64>()
            })
            .collect()
    }
}

/// Makes `log_p` sum to 1 in probability space.
pub fn log_normalize(log_p: &mut [f64]) {
    let z = log_sum_exp(log_p);
    log_p.iter_mut().for_each(|v| *v -= z);
}

/// Exact moments `Σ_x p(x) φ(x)` of the features `table` (`N_SEQ × d`) under p ∝ exp(log_p).
pub fn exact_moments(log_p: &[f64], table: &[f64], d: usize) -> Vec<f64> {
    let z = log_sum_exp(log_p);
    let mut mu = vec![0.0; d];
    for (k, lp) in log_p.iter().enumerate() {
        let p = (lp - z).exp();
        for j in 0..d {
            mu[j] += p * table[k * d + j];
        }
    }
    mu
}

/// A random distribution over the sequences, `exp(scale · N(0,1))` normalised.
pub fn random_log_dist(seed: u64, scale: f64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v: Vec<f64> =
        (0..N_SEQ).map(|_| scale * rng.sample::<f64, _>(StandardNormal)).collect();
    log_normalize(&mut v);
    v
}

/// Inverse-CDF sampler of a distribution given by log-probabilities.
#[derive(Debug, Clone)]
pub struct Categorical {
    cdf: Vec<f64>,
}

impl Categorical {
    pub fn new(log_p: &[f64]) -> Self {
        let z = log_sum_exp(log_p);
        let mut acc = 0.0;
        let cdf = log_p
            .iter()
            .map(|lp| {
                acc += (lp - z).exp();
                acc
            })
            .collect();
        Self { cdf }
    }

    pub fn sample<R: Rng>(&self, rng: &mut R) -> usize {
        let u = rng.random::<f64>() * self.cdf[self.cdf.len() - 1];
        self.cdf.partition_point(|&c| c <= u).min(self.cdf.len() - 1)
    }

    pub fn sample_n<R: Rng>(&self, n: usize, rng: &mut R) -> Vec<usize> {
        (0..n).map(|_| self.sample(rng)).collect()
    }
}

/// Pearson chi-square statistic of `counts` against probabilities `probs`, pooling cells with
/// expected count below 5 into one; returns (statistic, degrees of freedom).
pub fn chi_square(counts: &[usize], probs: &[f64]) -> (f64, usize) {
    let n: usize = counts.iter().sum();
    let total_p: f64 = probs.iter().sum();
    let (mut stat, mut cells) = (0.0, 0usize);
    let (mut pooled_obs, mut pooled_exp) = (0.0, 0.0);
    for (c, p) in counts.iter().zip(probs) {
        let e = n as f64 * p / total_p;
        if e < 5.0 {
            pooled_obs += *c as f64;
            pooled_exp += e;
        } else {
            stat += (*c as f64 - e).powi(2) / e;
            cells += 1;
        }
    }
    if pooled_exp > 0.0 {
        stat += (pooled_obs - pooled_exp).powi(2) / pooled_exp;
        cells += 1;
    }
    (stat, cells - 1)
}

/// Upper `z`-sigma quantile of chi-square with `df` degrees of freedom (Wilson–Hilferty).
pub fn chi_square_critical(df: usize, z: f64) -> f64 {
    let k = df as f64;
    let h = 2.0 / (9.0 * k);
    k * (1.0 - h + z * h.sqrt()).powi(3)
}

/// Over repetitions: (mean of the estimates, standard error of that mean, share of 95%
/// intervals that cover `truth`).
pub fn summarize(estimates: &[Estimate], truth: f64) -> (f64, f64, f64) {
    let r = estimates.len() as f64;
    let mean = estimates.iter().map(|e| e.value).sum::<f64>() / r;
    let var = estimates.iter().map(|e| (e.value - mean).powi(2)).sum::<f64>() / (r - 1.0);
    let cover = estimates.iter().filter(|e| e.covers(truth, 1.96)).count() as f64 / r;
    (mean, (var / r).sqrt(), cover)
}

/// Asserts unbiasedness (mean within 3 standard errors of truth) and calibration (95%
/// intervals cover truth in 90-99% of repetitions).
pub fn assert_unbiased_and_calibrated(what: &str, estimates: &[Estimate], truth: f64) {
    let (mean, se, cover) = summarize(estimates, truth);
    assert!(
        (mean - truth).abs() <= 3.0 * se,
        "{what}: mean {mean} over {} repetitions is {:.2} standard errors ({se}) from {truth}",
        estimates.len(),
        (mean - truth) / se
    );
    let _ = cover;
    assert_calibrated(what, estimates, truth);
}

/// Asserts that 95% intervals cover truth in 90-99% of repetitions.
pub fn assert_calibrated(what: &str, estimates: &[Estimate], truth: f64) {
    let (mean, se, cover) = summarize(estimates, truth);
    eprintln!(
        "{what}: truth {truth:.6}, mean {mean:.6} (se {se:.2e}), 95% coverage {:.1}% of {}",
        100.0 * cover,
        estimates.len()
    );
    assert!(
        (0.90..=0.99).contains(&cover),
        "{what}: 95% intervals covered {truth} in {:.1}% of {} repetitions",
        100.0 * cover,
        estimates.len()
    );
}

/// Gathers `xs[idx]` for each index.
pub fn gather(xs: &[f64], idx: &[usize]) -> Vec<f64> {
    idx.iter().map(|&i| xs[i]).collect()
}

/// Gathers rows of a `N_SEQ × d` table into a flat `idx.len() × d` matrix.
pub fn gather_rows(table: &[f64], d: usize, idx: &[usize]) -> Vec<f64> {
    idx.iter().flat_map(|&i| table[i * d..(i + 1) * d].iter().copied()).collect()
}
