//! The proposal rule's paired improvement estimate is unbiased with a calibrated standard error,
//! and requiring k standard errors cuts the rate of wrong updates.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tilt_estimators::{ProposalCriterion, ProposalUpdate};

use crate::common::*;

/// Repeats the check `reps` times on fresh samples of `proposal`; returns the improvements,
/// their reported standard errors, and the update rates of the point rule and the k = 2 rule.
fn repeat(
    criterion: ProposalCriterion,
    proposal: &Enumerated,
    policy: &Enumerated,
    reps: usize,
) -> (Vec<f64>, Vec<f64>, f64, f64) {
    let w = world();
    let t = &w.hybrid;
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let point = ProposalUpdate { criterion, interval: 10, min_z_score: None };
    let strict = ProposalUpdate { min_z_score: Some(2.0), ..point };
    let (mut imp, mut se, mut n_point, mut n_strict) = (Vec::new(), Vec::new(), 0, 0);
    for _ in 0..reps {
        let xs = proposal.sample(&mut rng, 256);
        let (lp, lq, lpi) = (t.at(&xs), proposal.at(&xs), policy.at(&xs));
        let d = point.decide(&lp, &lq, &lpi, t.log_z).unwrap();
        let e = d.improvement.unwrap();
        imp.push(e.value);
        se.push(e.se);
        n_point += usize::from(d.update);
        n_strict += usize::from(strict.decide(&lp, &lq, &lpi, t.log_z).unwrap().update);
    }
    (imp, se, n_point as f64 / reps as f64, n_strict as f64 / reps as f64)
}

#[test]
fn improvement_is_unbiased_and_its_standard_error_calibrated() {
    let w = world();
    let t = &w.hybrid;
    let reps = 400;
    // π is (slightly) better than q = a: Δ = KL(p‖q) − KL(p‖π) > 0.
    let delta = t.kl_to(&w.q) - t.kl_to(&w.pi);
    let (imp, se, up_point, up_strict) = repeat(ProposalCriterion::Kl, &w.q, &w.pi, reps);
    let (m, m_se) = mean_se(&imp);
    let sd = m_se * (reps as f64).sqrt();
    let mean_reported = se.iter().sum::<f64>() / reps as f64;
    eprintln!(
        "proposal rule (KL): exact Δ = {delta:.5}, mean estimate {m:.5} ± {m_se:.5}; sd of \
         estimates {sd:.5} vs mean reported SE {mean_reported:.5}; update rate {up_point:.3} \
         (point rule), {up_strict:.3} (k = 2)"
    );
    assert!((m - delta).abs() < 4.0 * m_se);
    assert!((0.8..1.25).contains(&(sd / mean_reported)), "{sd} vs {mean_reported}");
    assert!(up_strict <= up_point);

    // Reversed roles: the "policy" a is worse than the proposal π (Δ < 0): every update is
    // wrong. The point rule makes many; requiring 2 SE makes few (≈ 2.3% at Δ = 0, fewer
    // below).
    let (_, _, wrong_point, wrong_strict) = repeat(ProposalCriterion::Kl, &w.pi, &w.q, reps);
    let (_, _, tvd_point, tvd_strict) = repeat(ProposalCriterion::Tvd, &w.pi, &w.q, reps);
    eprintln!(
        "proposal rule, policy worse than proposal: wrong-update rate KL {wrong_point:.3} \
         (point) vs {wrong_strict:.3} (k = 2); TVD {tvd_point:.3} vs {tvd_strict:.3}"
    );
    assert!(wrong_strict <= 0.05 && wrong_strict < wrong_point);
    assert!(tvd_strict <= 0.05 && tvd_strict <= tvd_point);
}
