//! Each estimator's Monte-Carlo mean gradient against the exact gradient of its objective,
//! and the variance reductions of the baselines.

use burn::tensor::Tensor;
use tilt_estimators::{
    ChiSquare, Dpg, Estimator, FDivergence, FDpg, ForwardKl, JensenShannon, KlControl, KlPenalty,
    Reinforce, ReverseKl, RewardBaseline, ScoredBatch, TotalVariation,
};

use crate::common::*;

/// Batch size of every Monte-Carlo run.
const BATCH: usize = 64;

/// A batch of samples `xs` with the policy's log-probs as a constant (the estimators' maths is
/// on the host; the loss path itself is checked in `loss_path`).
fn batch(w: &World, xs: &[usize]) -> ScoredBatch<I> {
    let lp = w.pi.at(xs);
    ScoredBatch::with_host_log_pi(host_constant(&lp), lp).unwrap()
}

fn dm_batch(w: &World, target: &Target, xs: &[usize], off_policy: bool) -> ScoredBatch<I> {
    let mut bt = batch(w, xs).with_log_target(target.at(xs)).unwrap().with_log_z(target.log_z);
    if off_policy {
        bt = bt.with_log_q(w.q.at(xs)).unwrap();
    }
    bt
}

/// ∇_θ KL(p ‖ π) = −Σ_x p(x) ∇log π(x).
fn exact_forward_kl(target: &Target) -> Vec<f64> {
    let p = target.p.clone();
    exact_gradient(move |lp| (lp * constant(&p)).sum().neg())
}

/// Paired comparison of the per-sample gradient-variance monitor (the paper's) of two
/// estimators run on the same batches: returns (ratio of means, z-score of the paired mean
/// difference). Also reports the ratio of the batch gradients' covariance traces
/// (`Σ_k Var(g_k)` across batches), the variance that reaches the optimiser at this batch size.
fn paired_variance(name: &str, with: &Mc, without: &Mc) -> (f64, f64) {
    let diff: Vec<f64> = without.monitor.iter().zip(&with.monitor).map(|(a, b)| a - b).collect();
    let (d, se) = mean_se(&diff);
    let (m_with, _) = mean_se(&with.monitor);
    let (m_without, _) = mean_se(&without.monitor);
    let ratio = m_with / m_without;
    let trace = |mc: &Mc| mc.se.iter().map(|s| s * s).sum::<f64>() * mc.batches as f64;
    let batch_ratio = trace(with) / trace(without);
    eprintln!(
        "{name}: per-sample gradient variance {m_with:.4e} vs {m_without:.4e} without baseline \
         (ratio {ratio:.3}); paired difference {d:.4e} ± {se:.2e} (z = {:.1}); batch-gradient \
         covariance trace ratio {batch_ratio:.3}",
        d / se
    );
    (ratio, d / se)
}

#[test]
fn dpg_family_matches_the_exact_kl_gradient_and_baselines_cut_variance() {
    let w = world();
    let t = &w.hybrid;
    let z = t.log_z.exp();
    let g = exact_forward_kl(t);
    let zg = scale(&g, z);
    let k = 2000;
    let run = |est: Dpg, off: bool, seed| {
        let sampler = if off { &w.q } else { &w.pi };
        monte_carlo(w, sampler, BATCH, k, seed, |xs| {
            est.loss(&dm_batch(w, t, xs, off)).unwrap().advantages
        })
    };
    // Same seed for the paired variance comparisons: identical batches.
    let on = run(Dpg::on_policy(), false, 1);
    let on_b = run(Dpg::on_policy_baseline(), false, 1);
    let gdc = run(Dpg::gdc(), true, 2);
    let gdcpp = run(Dpg::gdc_plus_plus(), true, 2);
    let gdcpp_norm = run(Dpg::gdc_plus_plus().normalized(), true, 3);
    let on_norm = run(Dpg::on_policy().normalized(), false, 4);
    assert_matches("dpg on-policy (E = Z ∇KL)", &on, &zg);
    assert_matches("dpg on-policy + baseline Z", &on_b, &zg);
    assert_matches("gdc (off-policy)", &gdc, &zg);
    assert_matches("gdc++", &gdcpp, &zg);
    assert_matches("gdc++ normalised by Z (E = ∇KL)", &gdcpp_norm, &g);
    assert_matches("dpg on-policy normalised by Z", &on_norm, &g);

    // The paper's claim: the baseline lowers the per-sample gradient variance at equal batch
    // size. Margin: the paired mean difference (same batches) must exceed 4 standard errors.
    let (r2, z2) = paired_variance("on-policy dpg: baseline vs none (hybrid)", &on_b, &on);
    assert!(r2 < 1.0 && z2 > 4.0, "on-policy baseline variance ratio {r2}, z {z2}");
    let (r1, z1) = paired_variance("gdc++ vs gdc (hybrid)", &gdcpp, &gdc);
    assert!(r1 < 1.0 && z1 > 4.0, "gdc++ variance ratio {r1}, z {z1}");
    // Also on the distributional target (P > 0 everywhere). Note: the reduction depends on π
    // being near q (KL(π‖q) = 0.03 here, as between proposal updates); with π far from q
    // (weights × 0.8, KL(π‖q) = 0.2) GDC++ and GDC had equal variance on the hybrid target.
    let d = &w.distributional;
    let run_d = |est: Dpg| {
        monte_carlo(w, &w.q, BATCH, 1000, 5, |xs| {
            est.loss(&dm_batch(w, d, xs, true)).unwrap().advantages
        })
    };
    let (gdc_d, gdcpp_d) = (run_d(Dpg::gdc()), run_d(Dpg::gdc_plus_plus()));
    let (r3, z3) = paired_variance("gdc++ vs gdc (distributional)", &gdcpp_d, &gdc_d);
    assert!(r3 < 1.0 && z3 > 4.0, "gdc++ variance ratio {r3}, z {z3}");
}

/// `D_f(π ‖ p)` as a differentiable function of the enumerated log π, written directly from the
/// divergence's definition (independently of `FDivergence::f_prime`).
fn exact_f_gradient(name: &str, target: &Target) -> Vec<f64> {
    let p = target.p.clone();
    let log_p: Vec<f64> = target.log_p.iter().map(|l| l - target.log_z).collect();
    let name = name.to_string();
    exact_gradient(move |lp: Tensor<B, 1>| {
        let pi = lp.clone().exp();
        let pt = constant(&p);
        match name.as_str() {
            "forward_kl" => (lp * pt).sum().neg(),
            "reverse_kl" => (pi * (lp - constant(&log_p))).sum(),
            "total_variation" => (pi - pt).abs().sum().mul_scalar(0.5),
            "jensen_shannon" => {
                // ½ Σ π log(2π/(π+p)) + ½ Σ p log(2p/(π+p)); the p log 2p part is constant.
                let mix = (pi.clone() + pt.clone()).log();
                let a = (pi * (lp.add_scalar(std::f64::consts::LN_2) - mix.clone())).sum();
                let b = (pt * mix).sum().neg();
                (a + b).mul_scalar(0.5)
            }
            "chi_square" => {
                let diff = pt - pi.clone();
                (diff.clone() * diff / pi).sum()
            }
            other => panic!("no exact form for {other}"),
        }
    })
}

fn check_f<F: FDivergence + Clone>(div: F, target: &Target, off: bool, baseline: bool, seed: u64) {
    let w = world();
    let name = div.name();
    let exact = exact_f_gradient(name, target);
    let mut est = FDpg::new(div);
    if off {
        est = est.off_policy();
    }
    if baseline {
        est = est.with_baseline(1024);
    }
    let sampler = if off { &w.q } else { &w.pi };
    let mc = monte_carlo(w, sampler, BATCH, 2000, seed, |xs| {
        let out = Estimator::<I>::loss(&est, &dm_batch(w, target, xs, off)).unwrap();
        Estimator::<I>::update(&mut est, &out.stats);
        out.advantages
    });
    let label = format!(
        "f-dpg {name} ({}{})",
        if off { "off-policy" } else { "on-policy" },
        if baseline { ", moving-average baseline" } else { "" }
    );
    assert_matches(&label, &mc, &exact);
}

#[test]
fn f_dpg_matches_the_exact_divergence_gradients() {
    let w = world();
    // Forward KL, JS, TV and χ² are finite on the hybrid (pointwise) target; reverse KL is
    // infinite there (π > 0 = p), so it uses the distributional target.
    check_f(ForwardKl, &w.hybrid, true, true, 10);
    check_f(ForwardKl, &w.hybrid, false, false, 11);
    check_f(JensenShannon, &w.hybrid, true, true, 12);
    check_f(TotalVariation, &w.hybrid, false, true, 13);
    check_f(ChiSquare, &w.hybrid, false, false, 14);
    check_f(ReverseKl, &w.distributional, true, false, 15);
    check_f(ReverseKl, &w.distributional, false, true, 16);
}

#[test]
fn rm_estimators_match_the_exact_objective_gradients() {
    let w = world();
    let reward: Vec<f64> = (0..N).map(b).collect();
    // ∇L should be −∇E_π[b].
    let r = reward.clone();
    let neg_eb = exact_gradient(move |lp| (lp.exp() * constant(&r)).sum().neg());
    let run = |est: Reinforce, seed| {
        monte_carlo(w, &w.pi, BATCH, 2000, seed, |xs| {
            let rw: Vec<f64> = xs.iter().map(|&x| reward[x]).collect();
            est.loss(&batch(w, xs).with_reward(rw).unwrap()).unwrap().advantages
        })
    };
    let none = run(Reinforce::new(RewardBaseline::None), 20);
    let loo = run(Reinforce::new(RewardBaseline::LeaveOneOut), 20);
    let mean = run(Reinforce::new(RewardBaseline::BatchMean), 21);
    assert_matches("reinforce", &none, &neg_eb);
    assert_matches("reinforce, leave-one-out baseline", &loo, &neg_eb);
    // The batch-mean baseline includes r_i itself: E[∇L] = (1 − 1/n)(−∇E_π[b]).
    assert_matches(
        "reinforce, batch-mean baseline (× (1 − 1/n))",
        &mean,
        &scale(&neg_eb, 1.0 - 1.0 / BATCH as f64),
    );
    let (ratio, zs) = paired_variance("reinforce: leave-one-out vs none", &loo, &none);
    assert!(ratio < 1.0 && zs > 4.0);

    // KL-control: ∇L should be −∇(E_π[r] − β KL(π ‖ a)).
    let beta = 0.3;
    let (r, la) = (reward.clone(), w.a.log_prob.clone());
    let neg_j = exact_gradient(move |lp| {
        let pi = lp.clone().exp();
        let j =
            (pi.clone() * constant(&r)).sum() - (pi * (lp - constant(&la))).sum().mul_scalar(beta);
        j.neg()
    });
    for penalty in [KlPenalty::Sequence, KlPenalty::PerToken] {
        let est = KlControl::fixed(beta).with_penalty(penalty);
        let mc = monte_carlo_terms(w, &w.pi, BATCH, 2000, 22, |xs| {
            let rw: Vec<f64> = xs.iter().map(|&x| reward[x]).collect();
            let bt = batch(w, xs).with_reward(rw).unwrap();
            let bt = match penalty {
                KlPenalty::Sequence => bt.with_log_a(w.a.at(xs)).unwrap(),
                KlPenalty::PerToken => {
                    let tok = w.pi.tokens(xs);
                    let tensor = Tensor::<I, 1>::from_floats(tok.as_slice(), &Default::default())
                        .reshape([xs.len(), LEN]);
                    bt.with_token_log_pi(tensor, vec![true; xs.len() * LEN])
                        .unwrap()
                        .with_token_log_a(w.a.tokens(xs))
                        .unwrap()
                }
            };
            let out = est.loss(&bt).unwrap();
            match penalty {
                KlPenalty::Sequence => sequence_terms(xs, &out.advantages),
                KlPenalty::PerToken => token_terms(xs, out.token_advantages.as_ref().unwrap()),
            }
        });
        assert_matches(&format!("kl-control {penalty:?}, β = {beta}"), &mc, &neg_j);
    }
}
