//! The Z estimators are unbiased and their standard errors calibrated, on the toy space
//! where Z is known exactly.

use crate::toy::{self, Categorical, N_SEQ, Toy};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tilt_ebm::{Estimate, PooledZ, estimate_log_z, log_sum_exp, log_weights};

const LAMBDA: [f64; 4] = [1.0, -0.5, 0.8, 0.3];
/// P is scaled by e^3 so that Z is not 1.
const SCALE: f64 = 3.0;

fn log_target(toy: &Toy) -> Vec<f64> {
    toy.log_target(&LAMBDA).iter().map(|v| v + SCALE).collect()
}

/// `(1 − alpha) · uniform + alpha · p`, normalised, in log space.
fn mixture(log_p: &[f64], alpha: f64) -> Vec<f64> {
    let z = log_sum_exp(log_p);
    let mut q: Vec<f64> = log_p
        .iter()
        .map(|lp| ((1.0 - alpha) / N_SEQ as f64 + alpha * (lp - z).exp()).ln())
        .collect();
    toy::log_normalize(&mut q);
    q
}

#[test]
fn z_is_unbiased_with_calibrated_intervals() {
    let toy = Toy::new(10);
    let log_p = log_target(&toy);
    let log_z = log_sum_exp(&log_p);
    let log_q = mixture(&log_p, 0.5);
    let sampler = Categorical::new(&log_q);
    let (mut z_est, mut log_z_est) = (Vec::new(), Vec::new());
    for rep in 0..500u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(rep);
        let idx = sampler.sample_n(200, &mut rng);
        let lw = log_weights(&toy::gather(&log_p, &idx), &toy::gather(&log_q, &idx)).unwrap();
        let e = estimate_log_z(&lw).unwrap();
        assert_eq!(e.n, 200);
        assert!(e.ess > 1.0 && e.ess <= 200.0);
        z_est.push(Estimate { value: e.z(), se: e.se_z(), n: e.n });
        log_z_est.push(Estimate { value: e.log_z, se: e.se_log_z, n: e.n });
    }
    toy::assert_unbiased_and_calibrated("Z", &z_est, log_z.exp());
    // log Ẑ is only consistent (biased low by Jensen), but its delta-method interval covers.
    toy::assert_calibrated("log Z", &log_z_est, log_z);
}

#[test]
fn pooled_z_over_changing_proposals_is_unbiased_and_calibrated() {
    let toy = Toy::new(11);
    let log_p = log_target(&toy);
    let log_z = log_sum_exp(&log_p);
    // Five proposals, from far (mostly uniform) to close to p, batches of 50.
    let proposals: Vec<Vec<f64>> =
        [0.1, 0.3, 0.5, 0.7, 0.9].iter().map(|&a| mixture(&log_p, a)).collect();
    let samplers: Vec<Categorical> = proposals.iter().map(|q| Categorical::new(q)).collect();
    let mut pooled_est = Vec::new();
    for rep in 0..400u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(1000 + rep);
        let mut pooled = PooledZ::new();
        for (q, s) in proposals.iter().zip(&samplers) {
            let idx = s.sample_n(50, &mut rng);
            let lw = log_weights(&toy::gather(&log_p, &idx), &toy::gather(q, &idx)).unwrap();
            pooled.push(&lw).unwrap();
        }
        assert_eq!((pooled.n(), pooled.batches()), (250, 5));
        let e = pooled.estimate();
        pooled_est.push(Estimate { value: e.z(), se: e.se_z(), n: e.n });
    }
    toy::assert_unbiased_and_calibrated("pooled Z", &pooled_est, log_z.exp());
}

#[test]
fn zero_target_samples_count_as_zero_weights() {
    // A pointwise target: P = a · [first symbol != 0]; q = a. Z = a(first symbol != 0).
    let toy = Toy::new(12);
    let log_p: Vec<f64> = (0..N_SEQ)
        .map(|k| if toy::sequence(k)[0] == 0 { f64::NEG_INFINITY } else { toy.log_a[k] })
        .collect();
    let z = log_sum_exp(&log_p).exp();
    let sampler = Categorical::new(&toy.log_a);
    let mut est = Vec::new();
    for rep in 0..400u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(5000 + rep);
        let idx = sampler.sample_n(100, &mut rng);
        let lw = log_weights(&toy::gather(&log_p, &idx), &toy::gather(&toy.log_a, &idx)).unwrap();
        let e = estimate_log_z(&lw).unwrap();
        assert!(!e.log_z.is_nan() && !e.se_log_z.is_nan());
        est.push(Estimate { value: e.z(), se: e.se_z(), n: e.n });
    }
    toy::assert_unbiased_and_calibrated("pointwise Z", &est, z);
}
