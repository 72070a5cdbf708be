//! MomentFit recovers planted λ from exact weights, and on sampled data its λ matches the
//! moments within sampling error, which its `moment_std_err` measures.

use crate::toy::{self, Categorical, D, N_SEQ, Toy};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tilt_ebm::{Estimate, MomentFit, RowMatrix, snis_moments};

const PLANTED: [f64; D] = [1.3, -0.9, 0.6, 0.4];

#[test]
fn recovers_planted_lambda_from_exact_weights() {
    let toy = Toy::new(1);
    let targets = toy::exact_moments(&toy.log_target(&PLANTED), &toy.features, D);
    // Each sequence listed once under a uniform "proposal": SNIS over all of them is exact.
    let log_q = vec![-(N_SEQ as f64).ln(); N_SEQ];
    let m = RowMatrix::new(&toy.features, N_SEQ, D).unwrap();
    for threads in [1, 2] {
        let report =
            MomentFit::new(targets.clone()).threads(threads).fit(&log_q, &toy.log_a, m).unwrap();
        assert!(report.converged, "{report:?}");
        for (got, want) in report.lambda.iter().zip(PLANTED) {
            assert!((got - want).abs() < 1e-6, "lambda {:?} vs planted {PLANTED:?}", report.lambda);
        }
        assert!(report.residual <= 1e-8);
        assert!(report.ess > 1.0 && report.ess <= N_SEQ as f64);
    }
}

#[test]
fn recovers_planted_lambda_of_a_hybrid_target() {
    // b(x) = [last symbol != 4] zeroes a fifth of the space; λ is fitted on a · b.
    let toy = Toy::new(2);
    let log_ab: Vec<f64> = (0..N_SEQ)
        .map(|k| if toy::sequence(k)[3] == 4 { f64::NEG_INFINITY } else { toy.log_a[k] })
        .collect();
    let hybrid = Toy { log_a: log_ab.clone(), features: toy.features.clone() };
    let targets = toy::exact_moments(&hybrid.log_target(&PLANTED), &toy.features, D);
    let log_q = vec![-(N_SEQ as f64).ln(); N_SEQ];
    let m = RowMatrix::new(&toy.features, N_SEQ, D).unwrap();
    let report = MomentFit::new(targets).fit(&log_q, &log_ab, m).unwrap();
    for (got, want) in report.lambda.iter().zip(PLANTED) {
        assert!((got - want).abs() < 1e-6, "lambda {:?} vs planted {PLANTED:?}", report.lambda);
    }
}

#[test]
fn starting_from_the_answer_takes_no_iteration() {
    let toy = Toy::new(3);
    let log_q = vec![-(N_SEQ as f64).ln(); N_SEQ];
    let m = RowMatrix::new(&toy.features, N_SEQ, D).unwrap();
    let targets = snis_moments(&PLANTED, &log_q, &toy.log_a, m).unwrap();
    let report = MomentFit::new(targets)
        .initial_lambda(PLANTED.to_vec())
        .fit(&log_q, &toy.log_a, m)
        .unwrap();
    assert_eq!(report.iterations, 0);
    assert!(report.converged);
}

#[test]
fn threads_agree_on_a_larger_real_valued_problem() {
    use rand::Rng;
    // 50,000 samples × 8 real features (enough for the threaded passes), q ≠ a.
    let (n, d) = (50_000usize, 8usize);
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let features: Vec<f64> = (0..n * d).map(|_| rng.random_range(-1.0..1.0)).collect();
    let log_q: Vec<f64> = (0..n).map(|_| rng.random_range(-2.0..0.0)).collect();
    let log_a: Vec<f64> = (0..n).map(|_| rng.random_range(-2.0..0.0)).collect();
    let m = RowMatrix::new(&features, n, d).unwrap();
    let planted: Vec<f64> = (0..d).map(|j| 0.3 * (j as f64) - 1.0).collect();
    let targets = snis_moments(&planted, &log_q, &log_a, m).unwrap();
    let one = MomentFit::new(targets.clone()).threads(1).fit(&log_q, &log_a, m).unwrap();
    let two = MomentFit::new(targets).threads(2).fit(&log_q, &log_a, m).unwrap();
    assert!(one.converged && two.converged);
    for ((a, b), p) in one.lambda.iter().zip(&two.lambda).zip(&planted) {
        assert!((a - b).abs() < 1e-9 && (a - p).abs() < 1e-6, "{a} {b} {p}");
    }
    assert!((one.ess - two.ess).abs() < 1e-6 * one.ess);
}

#[test]
fn moment_std_err_is_calibrated() {
    // Fit λ on 2,000 samples of a (q = a) to the exact moments μ̄ of p_λ*, repeatedly: the
    // exact moments of p_λ̂ should lie within μ̄ ± 1.96 moment_std_err in about 95% of fits.
    let toy = Toy::new(4);
    let targets = toy::exact_moments(&toy.log_target(&PLANTED), &toy.features, D);
    let sampler = Categorical::new(&toy.log_a);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut per_feature: Vec<Vec<Estimate>> = vec![Vec::new(); D];
    for _ in 0..400 {
        let idx = sampler.sample_n(2_000, &mut rng);
        let log_q = toy::gather(&toy.log_a, &idx);
        let rows = toy::gather_rows(&toy.features, D, &idx);
        let m = RowMatrix::new(&rows, idx.len(), D).unwrap();
        let report = MomentFit::new(targets.clone()).fit(&log_q, &log_q, m).unwrap();
        assert!(report.converged, "{report:?}");
        let fitted = toy::exact_moments(&toy.log_target(&report.lambda), &toy.features, D);
        for (j, estimates) in per_feature.iter_mut().enumerate() {
            let se = report.moment_std_err[j];
            estimates.push(Estimate { value: fitted[j], se, n: idx.len() });
        }
    }
    for (j, estimates) in per_feature.iter().enumerate() {
        toy::assert_calibrated(
            &format!("moment of feature {j} at the fitted lambda"),
            estimates,
            targets[j],
        );
    }
}

/// Random features on the toy space: two binary (random firing rates), two real-valued.
fn random_features(seed: u64) -> Vec<f64> {
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let rates: [f64; 2] = [rng.random_range(0.2..0.8), rng.random_range(0.2..0.8)];
    let mut f = Vec::with_capacity(N_SEQ * D);
    for _ in 0..N_SEQ {
        f.push(f64::from(u8::from(rng.random::<f64>() < rates[0])));
        f.push(f64::from(u8::from(rng.random::<f64>() < rates[1])));
        f.push(rng.random_range(-1.0..1.0));
        f.push(rng.random_range(0.0..2.0));
    }
    f
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Sample 20,000 sequences from a (q = a), fit λ to the exact moments μ̄ of a planted p_λ*,
    /// then check that the *exact* moments of p_λ̂ are within sampling error of μ̄:
    /// 5 standard deviations of a SNIS mean, sd_p(φ_j) / √ESS.
    #[test]
    fn sampled_fit_matches_exact_moments_within_sampling_error(
        seed in 0u64..1_000_000,
        lambda in prop::collection::vec(-1.2f64..1.2, D),
    ) {
        let toy = Toy::new(seed);
        let features = random_features(seed ^ 0x5eed);
        let with = Toy { log_a: toy.log_a.clone(), features: features.clone() };
        let exact_log_p = with.log_target(&lambda);
        let targets = toy::exact_moments(&exact_log_p, &features, D);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let idx = Categorical::new(&toy.log_a).sample_n(20_000, &mut rng);
        let log_q = toy::gather(&toy.log_a, &idx);
        let rows = toy::gather_rows(&features, D, &idx);
        let m = RowMatrix::new(&rows, idx.len(), D).unwrap();
        let report = MomentFit::new(targets.clone()).fit(&log_q, &log_q, m).unwrap();
        prop_assert!(report.converged, "{:?}", report);
        let fitted = toy::exact_moments(&with.log_target(&report.lambda), &features, D);
        let second = toy::exact_moments(
            &exact_log_p,
            &features.iter().map(|f| f * f).collect::<Vec<_>>(),
            D,
        );
        for j in 0..D {
            let sd = (second[j] - targets[j] * targets[j]).max(0.0).sqrt();
            let tol = 5.0 * sd / report.ess.sqrt();
            prop_assert!(
                (fitted[j] - targets[j]).abs() <= tol,
                "feature {}: exact moment {} at the fitted lambda vs target {} (tolerance {})",
                j, fitted[j], targets[j], tol
            );
        }
    }
}
