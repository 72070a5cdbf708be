//! KL, TVD and JS estimators: unbiased with the exact Z, calibrated standard errors with the
//! exact or the self-normalised Z, against exact values on the toy space.

use crate::toy::{self, Categorical, N_SEQ, Toy};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tilt_ebm::{
    Estimate, LogZ, js_target_model, kl_model_base, kl_target_model, kl_target_proposal,
    log_sum_exp, tvd_target_model,
};

const LAMBDA: [f64; 4] = [1.2, 0.7, -0.6, 0.5];

struct Setup {
    log_p: Vec<f64>,
    log_z: f64,
    log_q: Vec<f64>,
    log_m: Vec<f64>,
    log_a: Vec<f64>,
}

fn mix(parts: &[(f64, &[f64])]) -> Vec<f64> {
    let mut out: Vec<f64> =
        (0..N_SEQ).map(|k| parts.iter().map(|(w, lp)| w * lp[k].exp()).sum::<f64>().ln()).collect();
    toy::log_normalize(&mut out);
    out
}

fn setup() -> Setup {
    let toy = Toy::new(20);
    let log_p: Vec<f64> = toy.log_target(&LAMBDA).iter().map(|v| v - 2.0).collect();
    let log_z = log_sum_exp(&log_p);
    let p: Vec<f64> = log_p.iter().map(|v| v - log_z).collect();
    let uniform = vec![-(N_SEQ as f64).ln(); N_SEQ];
    let other = toy::random_log_dist(21, 1.0);
    let log_q = mix(&[(0.5, &p), (0.5, &uniform)]);
    let log_m = mix(&[(0.5, &p), (0.3, &other), (0.2, &uniform)]);
    Setup { log_p, log_z, log_q, log_m, log_a: toy.log_a }
}

fn exact(s: &Setup) -> [f64; 4] {
    let (mut kl_m, mut kl_q, mut tvd, mut js) = (0.0, 0.0, 0.0, 0.0);
    for k in 0..N_SEQ {
        let p = (s.log_p[k] - s.log_z).exp();
        let (m, q) = (s.log_m[k].exp(), s.log_q[k].exp());
        kl_m += p * (p / m).ln();
        kl_q += p * (p / q).ln();
        tvd += 0.5 * (p - m).abs();
        let mid = 0.5 * (p + m);
        js += 0.5 * p * (p / mid).ln() + 0.5 * m * (m / mid).ln();
    }
    [kl_m, kl_q, tvd, js]
}

fn run(log_z: impl Fn(&Setup) -> LogZ, n: usize, reps: u64) -> (Setup, [Vec<Estimate>; 4]) {
    let s = setup();
    let sampler = Categorical::new(&s.log_q);
    let mut out: [Vec<Estimate>; 4] = Default::default();
    for rep in 0..reps {
        let mut rng = ChaCha8Rng::seed_from_u64(rep);
        let idx = sampler.sample_n(n, &mut rng);
        let (lp, lq, lm) =
            (toy::gather(&s.log_p, &idx), toy::gather(&s.log_q, &idx), toy::gather(&s.log_m, &idx));
        let lz = log_z(&s);
        out[0].push(kl_target_model(&lp, &lq, &lm, lz).unwrap());
        out[1].push(kl_target_proposal(&lp, &lq, lz).unwrap());
        out[2].push(tvd_target_model(&lp, &lq, &lm, lz).unwrap());
        out[3].push(js_target_model(&lp, &lq, &lm, lz).unwrap());
    }
    (s, out)
}

const NAMES: [&str; 4] = ["KL(p||m)", "KL(p||q)", "TVD(p,m)", "JS(p,m)"];

#[test]
fn with_exact_z_estimators_are_unbiased_and_calibrated() {
    let (s, est) = run(|s| LogZ::Known(s.log_z), 200, 500);
    let truth = exact(&s);
    assert!(truth.iter().all(|t| *t > 0.01), "degenerate setup: {truth:?}");
    for k in 0..4 {
        toy::assert_unbiased_and_calibrated(NAMES[k], &est[k], truth[k]);
    }
}

#[test]
fn self_normalised_estimators_are_calibrated() {
    let (s, est) = run(|_| LogZ::SelfNormalized, 400, 400);
    let truth = exact(&s);
    for k in 0..4 {
        toy::assert_calibrated(NAMES[k], &est[k], truth[k]);
        // Consistent: with 400 samples the O(1/n) bias is well inside one standard error.
        let (mean, _, _) = toy::summarize(&est[k], truth[k]);
        let typical_se = est[k].iter().map(|e| e.se).sum::<f64>() / est[k].len() as f64;
        assert!(
            (mean - truth[k]).abs() < typical_se,
            "{}: bias {} vs se {typical_se}",
            NAMES[k],
            mean - truth[k]
        );
    }
}

#[test]
fn kl_model_base_from_model_samples_is_unbiased_and_calibrated() {
    let s = setup();
    let truth: f64 = (0..N_SEQ).map(|k| s.log_m[k].exp() * (s.log_m[k] - s.log_a[k])).sum();
    let sampler = Categorical::new(&s.log_m);
    let est: Vec<Estimate> = (0..500u64)
        .map(|rep| {
            let mut rng = ChaCha8Rng::seed_from_u64(700 + rep);
            let idx = sampler.sample_n(200, &mut rng);
            kl_model_base(&toy::gather(&s.log_m, &idx), &toy::gather(&s.log_a, &idx)).unwrap()
        })
        .collect();
    toy::assert_unbiased_and_calibrated("KL(m||a)", &est, truth);
}

#[test]
fn a_wrong_truth_is_detected() {
    // The unbiasedness check can fail: it rejects a truth shifted by 10% of TVD.
    let (s, est) = run(|s| LogZ::Known(s.log_z), 200, 500);
    let truth = exact(&s)[2] * 1.1;
    let (mean, se, _) = toy::summarize(&est[2], truth);
    assert!((mean - truth).abs() > 3.0 * se);
}
