//! The paper's Theorem 1 on the enumerable model: the KL-control gradient is the gradient of
//! −β·KL(π, p_z) with P_z = a·exp(r/β).

use tilt_estimators::{Estimator, FDpg, KlControl, ReverseKl, ScoredBatch};

use crate::common::*;

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let diff: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    norm(&diff) / norm(b)
}

/// `E[∇L] = −Σ_x π(x) A(x) J[x]` for advantages over the whole enumeration.
fn expected_loss_gradient(w: &World, advantages: &[f64]) -> Vec<f64> {
    let mut g = vec![0.0; w.d];
    for (x, a) in advantages.iter().enumerate() {
        let c = -w.pi.prob[x] * a;
        for (gj, jj) in g.iter_mut().zip(w.row(x)) {
            *gj += c * jj;
        }
    }
    g
}

#[test]
fn kl_control_gradient_is_minus_beta_reverse_kl_gradient() {
    let w = world();
    let beta = 0.5;
    let r: Vec<f64> = (0..N).map(b).collect();
    let log_pz = Target::new((0..N).map(|x| w.a.log_prob[x] + r[x] / beta).collect());
    let (rr, la) = (r.clone(), w.a.log_prob.clone());
    // ∇(−J), J = E_π[r] − β KL(π ‖ a), by autodiff on the enumeration.
    let neg_j = exact_gradient(move |lp| {
        let pi = lp.clone().exp();
        ((pi.clone() * constant(&rr)).sum() - (pi * (lp - constant(&la))).sum().mul_scalar(beta))
            .neg()
    });
    // ∇(β KL(π ‖ p_z)), by autodiff on the enumeration.
    let log_p: Vec<f64> = log_pz.log_p.iter().map(|l| l - log_pz.log_z).collect();
    let beta_rkl = exact_gradient(move |lp| {
        (lp.clone().exp() * (lp - constant(&log_p))).sum().mul_scalar(beta)
    });
    let e_autodiff = rel(&neg_j, &beta_rkl);

    // The estimators' exact expectations over the enumeration.
    let all: Vec<usize> = (0..N).collect();
    let lp = w.pi.at(&all);
    let base = ScoredBatch::with_host_log_pi(host_constant(&lp), lp).unwrap();
    let kl_batch =
        base.clone().with_reward(r.clone()).unwrap().with_log_a(w.a.log_prob.clone()).unwrap();
    let kl_adv = KlControl::fixed(beta).loss(&kl_batch).unwrap().advantages;
    let e_kl = rel(&expected_loss_gradient(w, &kl_adv), &beta_rkl);
    let f_batch = base.with_log_target(log_pz.log_p.clone()).unwrap().with_log_z(log_pz.log_z);
    let f_adv = Estimator::<I>::loss(&FDpg::new(ReverseKl), &f_batch).unwrap().advantages;
    let e_f = rel(&scale(&expected_loss_gradient(w, &f_adv), beta), &beta_rkl);
    eprintln!(
        "theorem 1 (β = {beta}): relative error ‖∇(−J) − β∇KL(π,p_z)‖/‖·‖ = {e_autodiff:.2e} \
         (autodiff both sides); KL-control estimator's exact expectation {e_kl:.2e}; \
         β × reverse-KL f-DPG expectation {e_f:.2e}; ‖β∇KL‖ = {:.3e}",
        norm(&beta_rkl)
    );
    assert!(e_autodiff < 1e-5, "{e_autodiff}");
    assert!(e_kl < 1e-4, "{e_kl}");
    assert!(e_f < 1e-4, "{e_f}");
}
