//! QRS: accepted samples follow p_β (chi-square against the exact p_β), the acceptance rate is
//! Z_β/β, and with β ≥ max P/q the samples follow p exactly.

use crate::toy::{self, Categorical, D, N_SEQ, Toy};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tilt_ebm::{LogZ, Qrs, RowMatrix, log_sum_exp};

const LAMBDA: [f64; 4] = [2.0, -1.0, 1.5, 0.5];
const DRAWS: usize = 200_000;
/// Upper tail of the chi-square test: about 1 in 4,000 under the null.
const Z_CRIT: f64 = 3.5;

struct Setup {
    toy: Toy,
    log_p: Vec<f64>,
    log_q: Vec<f64>,
}

/// q = a, P = a · exp(λ·φ) · e^1.5, so P/q = exp(λ·φ + 1.5) takes many values.
fn setup() -> Setup {
    let toy = Toy::new(30);
    let log_p = toy.log_target(&LAMBDA).iter().map(|v| v + 1.5).collect();
    Setup { log_q: toy.log_a.clone(), log_p, toy }
}

/// Exact `log p_β ∝ min(log P, log β + log q)`.
fn exact_p_beta(s: &Setup, log_beta: f64) -> Vec<f64> {
    let mut v: Vec<f64> = s.log_p.iter().zip(&s.log_q).map(|(p, q)| p.min(log_beta + q)).collect();
    toy::log_normalize(&mut v);
    v
}

fn probs(log_p: &[f64]) -> Vec<f64> {
    let z = log_sum_exp(log_p);
    log_p.iter().map(|v| (v - z).exp()).collect()
}

/// Draws from q, runs QRS, and returns the per-sequence counts of accepted samples and the
/// number accepted.
fn accepted_counts(s: &Setup, qrs: &Qrs, seed: u64) -> (Vec<usize>, usize, bool) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let idx = Categorical::new(&s.log_q).sample_n(DRAWS, &mut rng);
    let draw =
        qrs.sample(&toy::gather(&s.log_p, &idx), &toy::gather(&s.log_q, &idx), &mut rng).unwrap();
    let mut counts = vec![0usize; N_SEQ];
    for &i in &draw.accepted {
        counts[idx[i]] += 1;
    }
    (counts, draw.accepted.len(), draw.bound_held)
}

#[test]
fn accepted_samples_follow_p_beta_and_the_rate_is_z_beta_over_beta() {
    let s = setup();
    let log_z = log_sum_exp(&s.log_p);
    // β = Z: a middle threshold (P/q ranges far on both sides of it).
    let log_beta = log_z;
    let qrs = Qrs::new(log_beta).unwrap();
    let (counts, n_acc, bound_held) = accepted_counts(&s, &qrs, 1);
    assert!(!bound_held);
    let p_beta = probs(&exact_p_beta(&s, log_beta));
    let (stat, df) = toy::chi_square(&counts, &p_beta);
    let crit = toy::chi_square_critical(df, Z_CRIT);
    assert!(stat < crit, "chi-square vs p_beta: {stat} on {df} df (critical {crit})");
    // Power: the same counts are far from p itself.
    let (stat_p, df_p) = toy::chi_square(&counts, &probs(&s.log_p));
    assert!(stat_p > toy::chi_square_critical(df_p, Z_CRIT), "cannot tell p_beta from p");

    // Acceptance rate = Z_β / β, exactly by enumeration.
    let log_z_beta = log_sum_exp(
        &s.log_p.iter().zip(&s.log_q).map(|(p, q)| p.min(log_beta + q)).collect::<Vec<_>>(),
    );
    let rate = (log_z_beta - log_beta).exp();
    let observed = n_acc as f64 / DRAWS as f64;
    let se = (rate * (1.0 - rate) / DRAWS as f64).sqrt();
    assert!((observed - rate).abs() < 4.0 * se, "acceptance {observed} vs Z_beta/beta {rate}");
}

#[test]
fn beta_above_max_ratio_is_exact_rejection_sampling() {
    let s = setup();
    let max_log_ratio =
        s.log_p.iter().zip(&s.log_q).map(|(p, q)| p - q).fold(f64::NEG_INFINITY, f64::max);
    let qrs = Qrs::exact(max_log_ratio).unwrap();
    let (counts, n_acc, bound_held) = accepted_counts(&s, &qrs, 2);
    assert!(bound_held);
    assert!(n_acc > 1000, "too few accepted: {n_acc}");
    let (stat, df) = toy::chi_square(&counts, &probs(&s.log_p));
    let crit = toy::chi_square_critical(df, Z_CRIT);
    assert!(stat < crit, "chi-square vs p: {stat} on {df} df (critical {crit})");
    // Acceptance rate of exact rejection sampling: Z / max(P/q).
    let rate = (log_sum_exp(&s.log_p) - max_log_ratio).exp();
    let se = (rate * (1.0 - rate) / DRAWS as f64).sqrt();
    assert!((n_acc as f64 / DRAWS as f64 - rate).abs() < 4.0 * se);
}

#[test]
fn report_matches_exact_kl_tvd_moments_and_rate() {
    let s = setup();
    let log_z = log_sum_exp(&s.log_p);
    let log_beta = log_z + 0.5;
    let p = probs(&s.log_p);
    let pb = probs(&exact_p_beta(&s, log_beta));
    let kl: f64 = p.iter().zip(&pb).map(|(a, b)| a * (a / b).ln()).sum();
    let tvd: f64 = 0.5 * p.iter().zip(&pb).map(|(a, b)| (a - b).abs()).sum::<f64>();
    let moments = toy::exact_moments(&exact_p_beta(&s, log_beta), &s.toy.features, D);
    let log_z_beta = log_sum_exp(
        &s.log_p.iter().zip(&s.log_q).map(|(p, q)| p.min(log_beta + q)).collect::<Vec<_>>(),
    );
    let rate = (log_z_beta - log_beta).exp();

    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let idx = Categorical::new(&s.log_q).sample_n(50_000, &mut rng);
    let (lp, lq) = (toy::gather(&s.log_p, &idx), toy::gather(&s.log_q, &idx));
    let rows = toy::gather_rows(&s.toy.features, D, &idx);
    let f = RowMatrix::new(&rows, idx.len(), D).unwrap();
    for lz in [LogZ::Known(log_z), LogZ::SelfNormalized] {
        let r = Qrs::new(log_beta).unwrap().report(&lp, &lq, Some(f), lz).unwrap();
        assert!(r.acceptance_rate.covers(rate, 4.0), "{:?} vs {rate}", r.acceptance_rate);
        assert!(r.kl.covers(kl, 4.0), "KL {:?} vs {kl}", r.kl);
        assert!(r.tvd.covers(tvd, 4.0), "TVD {:?} vs {tvd}", r.tvd);
        assert!((r.log_z_beta - log_z_beta).abs() < 0.05);
        for j in 0..D {
            assert!(
                (r.moments[j] - moments[j]).abs() < 0.02,
                "moment {j}: {:?} vs {moments:?}",
                r.moments
            );
        }
        assert!(!r.bound_held);
    }
}

#[test]
fn beta_for_a_target_acceptance_rate() {
    let s = setup();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let idx = Categorical::new(&s.log_q).sample_n(20_000, &mut rng);
    let (lp, lq) = (toy::gather(&s.log_p, &idx), toy::gather(&s.log_q, &idx));
    for target in [0.9, 0.5, 0.1, 0.01] {
        let qrs = Qrs::for_acceptance_rate(&lp, &lq, target).unwrap();
        // The exact acceptance rate at that β: Σ_x q min(1, P/(β q)).
        let exact: f64 = s
            .log_p
            .iter()
            .zip(&s.log_q)
            .map(|(p, q)| (q + (p - q - qrs.log_beta()).min(0.0)).exp())
            .sum();
        assert!((exact - target).abs() < 0.02 * target.max(0.1), "target {target}: exact {exact}");
    }
}

#[test]
fn report_standard_errors_are_calibrated() {
    let s = setup();
    let log_z = log_sum_exp(&s.log_p);
    let log_beta = log_z + 0.5;
    let p = probs(&s.log_p);
    let pb = probs(&exact_p_beta(&s, log_beta));
    let kl: f64 = p.iter().zip(&pb).map(|(a, b)| a * (a / b).ln()).sum();
    let tvd: f64 = 0.5 * p.iter().zip(&pb).map(|(a, b)| (a - b).abs()).sum::<f64>();
    let log_z_beta = log_sum_exp(
        &s.log_p.iter().zip(&s.log_q).map(|(p, q)| p.min(log_beta + q)).collect::<Vec<_>>(),
    );
    let rate = (log_z_beta - log_beta).exp();
    let sampler = Categorical::new(&s.log_q);
    let qrs = Qrs::new(log_beta).unwrap();
    for (name, lz) in [("known Z", LogZ::Known(log_z)), ("self-normalised", LogZ::SelfNormalized)] {
        let (mut kls, mut tvds, mut rates) = (Vec::new(), Vec::new(), Vec::new());
        for rep in 0..400u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(9000 + rep);
            let idx = sampler.sample_n(1000, &mut rng);
            let (lp, lq) = (toy::gather(&s.log_p, &idx), toy::gather(&s.log_q, &idx));
            let r = qrs.report(&lp, &lq, None, lz).unwrap();
            kls.push(r.kl);
            tvds.push(r.tvd);
            rates.push(r.acceptance_rate);
        }
        toy::assert_calibrated(&format!("QRS KL(p||p_beta), {name}"), &kls, kl);
        toy::assert_calibrated(&format!("QRS TVD(p,p_beta), {name}"), &tvds, tvd);
        toy::assert_unbiased_and_calibrated(&format!("QRS acceptance, {name}"), &rates, rate);
    }
}
