//! The real loss path: autodiff of each estimator's loss through the model equals
//! `−(1/n) Σ_i A_i ∇log π(x_i)` built from the Jacobian rows.

use burn::tensor::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tilt_estimators::{
    Dpg, Estimator, FDpg, JensenShannon, KlControl, KlPenalty, Reinforce, RewardBaseline,
    ScoredBatch, flatten_gradients, gradient_variance, per_sample_gradients,
};

use crate::common::*;

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let diff: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    norm(&diff) / norm(b)
}

fn from_terms(w: &World, terms: &[Vec<(usize, f64)>]) -> Vec<f64> {
    let n = terms.len() as f64;
    let mut g = vec![0.0; w.d];
    for t in terms {
        for &(row, a) in t {
            for (gj, jj) in g.iter_mut().zip(w.row(row)) {
                *gj -= a * jj / n;
            }
        }
    }
    g
}

#[test]
fn autodiff_of_the_loss_equals_the_jacobian_formula() {
    let w = world();
    let _serial = serial();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let reward = |xs: &[usize]| xs.iter().map(|&x| b(x)).collect::<Vec<_>>();
    // A fresh forward pass per loss: backward consumes the graph.
    let scored = |model: &tilt_policies::Gpt2<B>, xs: &[usize]| {
        let tokens = token_log_probs(model, xs);
        let log_pi: Tensor<B, 1> = tokens.clone().sum_dim(1).reshape([xs.len()]);
        ScoredBatch::new(log_pi)
            .unwrap()
            .with_log_q(w.q.at(xs))
            .unwrap()
            .with_log_a(w.a.at(xs))
            .unwrap()
            .with_log_target(w.hybrid.at(xs))
            .unwrap()
            .with_log_z(w.hybrid.log_z)
            .with_reward(reward(xs))
            .unwrap()
            .with_token_log_pi(tokens, vec![true; xs.len() * LEN])
            .unwrap()
            .with_token_log_a(w.a.tokens(xs))
            .unwrap()
    };
    for round in 0..3 {
        let xs = w.q.sample(&mut rng, 32);
        let model = model_ad(PI);
        let estimators: Vec<(&str, Box<dyn Estimator<B>>)> = vec![
            ("gdc++", Box::new(Dpg::gdc_plus_plus())),
            ("gdc normalised", Box::new(Dpg::gdc().normalized())),
            ("f-dpg js", Box::new(FDpg::new(JensenShannon).off_policy())),
            ("reinforce loo", Box::new(Reinforce::new(RewardBaseline::LeaveOneOut))),
            ("kl-control", Box::new(KlControl::fixed(0.2))),
            ("kl-control ppo (ratio 1)", Box::new(KlControl::fixed(0.2).with_clip(0.2))),
            (
                "kl-control per token",
                Box::new(KlControl::fixed(0.2).with_penalty(KlPenalty::PerToken)),
            ),
            (
                "kl-control per token ppo",
                Box::new(KlControl::fixed(0.2).with_penalty(KlPenalty::PerToken).with_clip(0.2)),
            ),
        ];
        for (name, est) in estimators {
            let out = est.loss(&scored(&model, &xs)).unwrap();
            let autodiff = flatten_gradients(&model, &out.loss.backward());
            let terms = match &out.token_advantages {
                Some(g) => token_terms(&xs, g),
                None => sequence_terms(&xs, &out.advantages),
            };
            let e = rel(&autodiff, &from_terms(w, &terms));
            if round == 0 {
                eprintln!("loss path {name}: relative error {e:.2e}");
            }
            assert!(e < 1e-4, "{name}: {e}");
        }
    }
}

#[test]
fn per_sample_gradients_and_their_variance() {
    let w = world();
    let _serial = serial();
    let xs = [3usize, 200, 1000, 17];
    let adv = [0.5, -1.0, 2.0, 0.1];
    let model = model_ad(PI);
    let g = per_sample_gradients(&model, &adv, |i| model.log_prob(&seq_batch::<B>(&xs[i..i + 1])));
    for (i, gi) in g.iter().enumerate() {
        let expected: Vec<f64> = w.row(xs[i]).iter().map(|j| -adv[i] * j).collect();
        assert!(rel(gi, &expected) < 1e-5);
    }
    let v = gradient_variance(&g).unwrap();
    let mean: Vec<f64> = (0..w.d).map(|k| g.iter().map(|gi| gi[k]).sum::<f64>() / 4.0).collect();
    let direct: f64 = g.iter().map(|gi| norm(gi).powi(2)).sum::<f64>() / 4.0 - norm(&mean).powi(2);
    assert!((v.trace - direct).abs() < 1e-9 * direct.abs().max(1.0));
    assert!(v.trace > 0.0);
}

#[test]
fn ppo_clipping_stops_the_gradient_outside_the_trust_region() {
    // Sequence-level: ρ = e^{0.5} > 1 + ε with A > 0 is clipped (no gradient); ρ = e^{-0.5}
    // with A > 0 is not (gradient ρ·A/m through log π).
    let _serial = serial();
    let device = Default::default();
    let log_pi = Tensor::<B, 1>::from_floats([-1.0, -1.0], &device).require_grad();
    let batch = ScoredBatch::new(log_pi.clone())
        .unwrap()
        .with_log_pi_old(vec![-1.5, -0.5])
        .unwrap()
        .with_reward(vec![1.0, 1.0])
        .unwrap()
        .with_log_a(vec![-1.5, -0.5])
        .unwrap();
    let out = KlControl::fixed(0.0).with_clip(0.2).loss(&batch).unwrap();
    assert_eq!(out.stats.clipped_fraction, Some(1.0));
    let g: Vec<f32> = log_pi.grad(&out.loss.backward()).unwrap().into_data().to_vec().unwrap();
    assert_eq!(g[0], 0.0);
    assert!((f64::from(g[1]) - (-(-0.5f64).exp() / 2.0)).abs() < 1e-6, "{g:?}");
}
