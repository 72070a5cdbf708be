//! Log weights of ±1000: nothing overflows, and every estimate moves exactly as it should.

use crate::toy::{self, Categorical, D, Toy};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tilt_ebm::{
    Ebm, LogZ, MomentFit, Qrs, RowMatrix, effective_sample_size, estimate_log_z, kl_target_model,
    log_mean_exp, log_weights, tvd_target_model,
};

fn shifted(xs: &[f64], by: f64) -> Vec<f64> {
    xs.iter().map(|x| x + by).collect()
}

#[test]
fn everything_is_shift_invariant_at_plus_minus_a_thousand() {
    let toy = Toy::new(40);
    let lambda = [0.7, -0.4, 0.9, 0.2];
    let log_p = toy.log_target(&lambda);
    let mut rng = ChaCha8Rng::seed_from_u64(40);
    let idx = Categorical::new(&toy.log_a).sample_n(5000, &mut rng);
    let (lp, lq) = (toy::gather(&log_p, &idx), toy::gather(&toy.log_a, &idx));
    let lm = toy::gather(&toy::random_log_dist(41, 0.5), &idx);
    let rows = toy::gather_rows(&toy.features, D, &idx);
    let f = RowMatrix::new(&rows, idx.len(), D).unwrap();
    let targets = vec![0.3, 0.25, 0.6, 0.5];

    let base_z = estimate_log_z(&log_weights(&lp, &lq).unwrap()).unwrap();
    let base_kl = kl_target_model(&lp, &lq, &lm, LogZ::SelfNormalized).unwrap();
    let base_tvd = tvd_target_model(&lp, &lq, &lm, LogZ::Known(base_z.log_z)).unwrap();
    let base_fit = MomentFit::new(targets.clone()).fit(&lq, &lq, f).unwrap();
    let base_qrs =
        Qrs::new(base_z.log_z).unwrap().report(&lp, &lq, Some(f), LogZ::SelfNormalized).unwrap();
    assert!(base_fit.converged);

    for shift in [1000.0, -1000.0] {
        let sp = shifted(&lp, shift);
        let z = estimate_log_z(&log_weights(&sp, &lq).unwrap()).unwrap();
        assert!((z.log_z - base_z.log_z - shift).abs() < 1e-9);
        assert!((z.se_log_z - base_z.se_log_z).abs() < 1e-12 && (z.ess - base_z.ess).abs() < 1e-9);
        assert!(z.log_se_z.is_finite());

        let kl = kl_target_model(&sp, &lq, &lm, LogZ::SelfNormalized).unwrap();
        assert!((kl.value - base_kl.value).abs() < 1e-9 && (kl.se - base_kl.se).abs() < 1e-9);
        let tvd = tvd_target_model(&sp, &lq, &lm, LogZ::Known(base_z.log_z + shift)).unwrap();
        assert!((tvd.value - base_tvd.value).abs() < 1e-9);

        // log a shifted by ±1000: the fitted λ does not move.
        let fit = MomentFit::new(targets.clone()).fit(&lq, &shifted(&lq, shift), f).unwrap();
        assert!(fit.converged);
        for (a, b) in fit.lambda.iter().zip(&base_fit.lambda) {
            assert!((a - b).abs() < 1e-9, "{:?} vs {:?}", fit.lambda, base_fit.lambda);
        }

        let qrs = Qrs::new(base_z.log_z + shift)
            .unwrap()
            .report(&sp, &lq, Some(f), LogZ::SelfNormalized)
            .unwrap();
        assert!((qrs.acceptance_rate.value - base_qrs.acceptance_rate.value).abs() < 1e-12);
        assert!((qrs.kl.value - base_qrs.kl.value).abs() < 1e-9);
        assert!((qrs.log_z_beta - base_qrs.log_z_beta - shift).abs() < 1e-9);
    }
}

#[test]
fn mixed_extreme_weights_stay_finite() {
    let lw = [1000.0, -1000.0, 0.0, f64::NEG_INFINITY];
    let z = estimate_log_z(&lw).unwrap();
    assert!((z.log_z - (1000.0 - 4f64.ln())).abs() < 1e-9);
    assert!(z.se_log_z.is_finite() && (z.ess - 1.0).abs() < 1e-12);
    assert!((log_mean_exp(&lw) - z.log_z).abs() < 1e-12);
    assert!((effective_sample_size(&lw) - 1.0).abs() < 1e-12);
    let kl = kl_target_model(&[1000.0, -1000.0], &[0.0, 0.0], &[-0.5, -1.0], LogZ::SelfNormalized)
        .unwrap();
    assert!(kl.value.is_finite() && !kl.se.is_nan());
    // An EBM with log a = -1000 and a large λ·φ scores without overflow.
    let ebm = Ebm::distributional(vec![500.0]).unwrap();
    assert_eq!(ebm.log_score(-1000.0, &[], &[2.0]).unwrap(), 0.0);
}
