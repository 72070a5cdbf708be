//! Bad input: clear errors, or skipped and counted samples; never a NaN loss.

use burn::tensor::Tensor;
use tilt_estimators::{
    Cdpg, ChiSquare, Dpg, Error, Estimator, FDpg, ForwardKl, InvalidSamples, JensenShannon,
    KlControl, Reinforce, ReverseKl, RewardBaseline, ScoredBatch, TotalVariation,
};

use crate::common::*;

const NEG_INF: f64 = f64::NEG_INFINITY;

fn batch(log_pi: &[f64]) -> ScoredBatch<I> {
    ScoredBatch::new(host_constant(log_pi)).unwrap()
}

fn dm(log_target: Vec<f64>) -> ScoredBatch<I> {
    batch(&[-1.0, -2.0, -1.5])
        .with_log_q(vec![-1.2, -1.8, -1.0])
        .unwrap()
        .with_log_target(log_target)
        .unwrap()
        .with_log_z(-0.5)
}

fn loss_value(out: &tilt_estimators::EstimatorOutput<I>) -> f64 {
    out.loss.clone().into_data().iter::<f64>().next().unwrap()
}

#[test]
fn zero_target_is_legal_and_gives_finite_advantages() {
    let bt = dm(vec![-1.0, NEG_INF, -2.0]);
    let ests: Vec<Box<dyn Estimator<I>>> = vec![
        Box::new(Dpg::on_policy()),
        Box::new(Dpg::gdc()),
        Box::new(Dpg::gdc_plus_plus()),
        Box::new(Dpg::on_policy_baseline().normalized()),
        Box::new(FDpg::new(ForwardKl).off_policy()),
        Box::new(FDpg::new(JensenShannon)),
        Box::new(FDpg::new(TotalVariation)),
        Box::new(FDpg::new(ChiSquare)),
    ];
    for e in ests {
        let out = e.loss(&bt).unwrap();
        assert!(out.advantages.iter().all(|a| a.is_finite()), "{}: {:?}", e.name(), out.advantages);
        assert!(loss_value(&out).is_finite());
        assert!((out.stats.zero_target_fraction.unwrap() - 1.0 / 3.0).abs() < 1e-12);
    }
    // GDC: P = 0 gives exactly 0; GDC++: only the baseline −Zπ/q.
    let gdc = Dpg::gdc().loss(&bt).unwrap();
    assert_eq!(gdc.advantages[1], 0.0);
    let pp = Dpg::gdc_plus_plus().loss(&bt).unwrap();
    assert!((pp.advantages[1] + (-0.5f64 - 2.0 + 1.8).exp()).abs() < 1e-12);
    // Reverse KL is infinite where P = 0 < π: a clear error, or skipped when asked.
    let rkl = FDpg::new(ReverseKl);
    assert!(matches!(
        Estimator::<I>::loss(&rkl, &bt),
        Err(Error::NonFiniteAdvantage { sample: 1, .. })
    ));
    let out = Estimator::<I>::loss(&rkl, &bt.on_invalid(InvalidSamples::Skip)).unwrap();
    assert_eq!((out.stats.n_skipped, out.advantages[1]), (1, 0.0));
}

#[test]
fn nan_and_infinity_are_errors_or_skipped() {
    let bad = dm(vec![-1.0, f64::NAN, -2.0]);
    assert!(matches!(
        Dpg::gdc().loss(&bad),
        Err(Error::NonFinite { what: "log_target", sample: 1, .. })
    ));
    let out = Dpg::gdc().loss(&bad.clone().on_invalid(InvalidSamples::Skip)).unwrap();
    assert_eq!((out.stats.n_used, out.stats.n_skipped), (2, 1));
    assert!(loss_value(&out).is_finite());
    assert!(matches!(
        Dpg::gdc().loss(&dm(vec![-1.0, f64::INFINITY, -2.0])),
        Err(Error::NonFinite { what: "log_target", sample: 1, .. })
    ));
    let r = batch(&[-1.0, -2.0]).with_reward(vec![f64::INFINITY, 1.0]).unwrap();
    assert!(matches!(
        Reinforce::default().loss(&r),
        Err(Error::NonFinite { what: "reward", sample: 0, .. })
    ));
    let all_bad =
        batch(&[-1.0]).with_reward(vec![f64::NAN]).unwrap().on_invalid(InvalidSamples::Skip);
    assert!(matches!(
        Reinforce::default().loss(&all_bad),
        Err(Error::NoValidSamples { skipped: 1, .. })
    ));
    let q_bad = dm(vec![-1.0, -1.0, -1.0]).with_log_q(vec![0.0, NEG_INF, 0.0]).unwrap();
    assert!(matches!(
        Dpg::gdc().loss(&q_bad),
        Err(Error::NonFinite { what: "log_q", sample: 1, .. })
    ));
}

#[test]
fn a_nan_log_pi_that_is_skipped_does_not_reach_the_gradient() {
    let _serial = serial();
    let device = Default::default();
    let log_pi = Tensor::<B, 1>::from_floats([-1.0, f32::NAN, -2.0], &device).require_grad();
    let bt = ScoredBatch::new(log_pi.clone())
        .unwrap()
        .with_reward(vec![1.0, 2.0, 3.0])
        .unwrap()
        .on_invalid(InvalidSamples::Skip);
    let out = Reinforce::new(RewardBaseline::BatchMean).loss(&bt).unwrap();
    assert_eq!(out.stats.n_skipped, 1);
    // Baseline over the two valid rewards (1, 3): advantages −1, 0, +1.
    assert_eq!(out.advantages, vec![-1.0, 0.0, 1.0]);
    let g: Vec<f32> =
        log_pi.grad(&out.loss.clone().backward()).unwrap().into_data().to_vec().unwrap();
    assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
    assert_eq!(g, vec![0.5, 0.0, -0.5]);
    let strict = bt.on_invalid(InvalidSamples::Error);
    assert!(matches!(
        Reinforce::default().loss(&strict),
        Err(Error::NonFinite { what: "log_pi", sample: 1, .. })
    ));
}

#[test]
fn shapes_missing_inputs_and_log_z() {
    let empty = ScoredBatch::new(Tensor::<I, 1>::zeros([0], &Default::default()));
    assert!(matches!(empty, Err(Error::EmptyBatch { .. })));
    assert!(matches!(
        batch(&[-1.0, -2.0]).with_log_q(vec![0.0]),
        Err(Error::ShapeMismatch { what: "log_q", expected: 2, got: 1 })
    ));
    let tokens = Tensor::<I, 2>::zeros([2, 3], &Default::default());
    assert!(matches!(
        batch(&[-1.0, -2.0]).with_token_log_pi(tokens, vec![true; 5]),
        Err(Error::ShapeMismatch { what: "token mask", expected: 6, got: 5 })
    ));
    let no_q = batch(&[-1.0]).with_log_target(vec![-1.0]).unwrap().with_log_z(0.0);
    assert!(matches!(Dpg::gdc().loss(&no_q), Err(Error::MissingInput { input: "log_q", .. })));
    let no_z = batch(&[-1.0]).with_log_target(vec![-1.0]).unwrap();
    assert!(matches!(
        Dpg::on_policy_baseline().loss(&no_z),
        Err(Error::MissingInput { input: "log_z", .. })
    ));
    assert!(Dpg::on_policy().loss(&no_z).is_ok());
    assert!(matches!(
        Dpg::on_policy().normalized().loss(&no_z.with_log_z(NEG_INF)),
        Err(Error::InvalidLogZ { .. })
    ));
    assert!(matches!(
        KlControl::fixed(0.1).loss(&batch(&[-1.0]).with_reward(vec![1.0]).unwrap()),
        Err(Error::MissingInput { input: "log_a", .. })
    ));
    assert!(matches!(
        KlControl::fixed(0.1).with_clip(1.5).loss(&batch(&[-1.0])),
        Err(Error::InvalidConfig { name: "clip", .. })
    ));
    assert!(matches!(
        Cdpg::default().loss(&batch(&[-1.0]).with_log_target(vec![0.0]).unwrap()),
        Err(Error::MissingInput { input: "contexts", .. })
    ));
}

#[test]
fn cdpg_divides_by_each_contexts_own_z() {
    // Context 0: on-policy weights P/π = 1, 3 (Ẑ_0 = 2); context 1: 10, 30 (Ẑ_1 = 20);
    // context 2: all P = 0 (skipped).
    let lp = [-1.0, -1.0, -2.0, -2.0, -1.0];
    let lt = vec![-1.0, 3f64.ln() - 1.0, 10f64.ln() - 2.0, 30f64.ln() - 2.0, NEG_INF];
    let bt = batch(&lp).with_log_target(lt).unwrap().with_contexts(vec![0, 0, 1, 1, 2]).unwrap();
    let out = Cdpg::default().loss(&bt).unwrap();
    let expected = [0.5, 1.5, 0.5, 1.5, 0.0];
    for (a, e) in out.advantages.iter().zip(expected) {
        assert!((a - e).abs() < 1e-12, "{:?}", out.advantages);
    }
    assert_eq!(out.stats.contexts_skipped, Some(1));
    let with_b = Cdpg { baseline: true, off_policy: false }.loss(&bt).unwrap();
    assert!((with_b.advantages[0] + 0.5).abs() < 1e-12);
}

/// Two rows of three tokens with rewards 1 and 2, the last token of row 0 and the first of
/// row 1 masked out (NaN there); the token log π leaf for gradients.
fn token_batch() -> (ScoredBatch<B>, Tensor<B, 2>) {
    use burn::tensor::TensorData;
    let device = Default::default();
    let nan = f64::NAN;
    let tok = Tensor::<B, 2>::from_data(
        TensorData::new(vec![-1.0, -2.0, nan, 0.0, -0.5, -1.5], [2, 3]),
        &device,
    )
    .require_grad();
    let bt = ScoredBatch::new(Tensor::<B, 1>::from_floats([-3.0, -2.0], &device))
        .unwrap()
        .with_reward(vec![1.0, 2.0])
        .unwrap()
        .with_token_log_pi(tok.clone(), vec![true, true, false, false, true, true])
        .unwrap()
        .with_token_log_a(vec![-1.5, -1.5, nan, nan, -1.0, -1.0])
        .unwrap();
    (bt, tok)
}

#[test]
fn per_token_kl_control_ignores_masked_positions() {
    let _serial = serial();
    let (bt, tok) = token_batch();
    let out =
        KlControl::fixed(0.5).with_penalty(tilt_estimators::KlPenalty::PerToken).loss(&bt).unwrap();
    // Returns-to-go: r − β Σ_{s ≥ t} (log π_s − log a_s), 0 where masked.
    assert_eq!(out.token_advantages.as_deref().unwrap(), &[1.0, 1.25, 0.0, 0.0, 2.0, 2.25]);
    assert_eq!(out.advantages, vec![1.0, 2.0]);
    assert_eq!(out.stats.kl_policy_base, Some(0.0));
    assert!((out.stats.loss - 3.9375).abs() < 1e-12);
    let value: f64 = out.loss.clone().into_data().iter::<f64>().next().unwrap();
    assert!((value - 3.9375).abs() < 1e-5);
    let g: Vec<f32> = tok.grad(&out.loss.backward()).unwrap().into_data().to_vec().unwrap();
    assert_eq!(g, vec![-0.5, -0.625, 0.0, 0.0, -1.0, -1.125]);
}

#[test]
fn a_row_skipped_for_a_nan_value_does_not_reach_the_other_rows() {
    let _serial = serial();
    use tilt_estimators::{Critic, KlPenalty};
    let nan = f64::NAN;
    let critic = Critic { gae_lambda: 0.5, value_coef: 0.1, value_clip: Some(0.2) };
    let kl = KlControl::fixed(0.5).with_penalty(KlPenalty::PerToken).with_critic(critic);
    let (base, _) = token_batch();
    // Row 1's last value is NaN at a generated token: the row is dropped, row 0 stays.
    let bt = base
        .with_token_values(vec![0.5, 1.0, nan, nan, 0.2, nan])
        .unwrap()
        .on_invalid(InvalidSamples::Skip);
    let out = kl.loss(&bt).unwrap();
    assert_eq!(out.stats.n_skipped, 1);
    let loss: f64 = out.loss.clone().into_data().iter::<f64>().next().unwrap();
    assert!(loss.is_finite());
    let g = out.token_advantages.as_deref().unwrap();
    assert!(g.iter().all(|a| a.is_finite()), "{g:?}");
    assert_eq!(&g[3..], &[0.0; 3]);
    let targets = out.value_targets.as_ref().unwrap();
    assert_eq!(targets.keep, vec![true, true, false, false, false, false]);
    assert!(targets.returns.iter().all(|r| r.is_finite()), "{targets:?}");
}

#[test]
fn kl_control_with_a_critic_uses_whitened_gae_and_returns_value_targets() {
    let _serial = serial();
    use tilt_estimators::{Critic, KlPenalty, whiten};
    let nan = f64::NAN;
    let keep = vec![true, true, false, false, true, true];
    let critic = Critic { gae_lambda: 0.5, value_coef: 0.1, value_clip: Some(0.2) };
    let kl = KlControl::fixed(0.5).with_penalty(KlPenalty::PerToken).with_critic(critic);
    let (base, tok) = token_batch();
    let bt = base.clone().with_token_values(vec![0.5, 1.0, nan, nan, 0.2, 1.5]).unwrap();
    let out = kl.loss(&bt).unwrap();
    // Rewards −β(log π − log a), the sequence reward on the last token: row 0 (−0.25, 1.25),
    // row 1 (−0.25, 2.25). GAE with λ = 0.5 by hand: row 0 A = (0.375, 0.25), R = (0.875,
    // 1.25); row 1 A = (1.425, 0.75), R = (1.625, 2.25).
    let targets = out.value_targets.as_ref().unwrap();
    let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
    assert!(close(&targets.returns, &[0.875, 1.25, 0.0, 0.0, 1.625, 2.25]), "{targets:?}");
    assert_eq!(targets.keep, keep);
    assert!((targets.weight - 0.1 / 4.0).abs() < 1e-15);
    // Token weights: whitened A, scaled by m/N = 2/4.
    let white = whiten(&[0.375, 0.25, 0.0, 0.0, 1.425, 0.75], &keep);
    let g = out.token_advantages.as_deref().unwrap();
    assert!(close(g, &white.iter().map(|w| w * 0.5).collect::<Vec<_>>()), "{g:?}");
    // The sequence advantages stay the total returns; stats carry the value loss.
    assert_eq!(out.advantages, vec![1.0, 2.0]);
    let expected = 0.5 * [0.375f64, 0.25, 1.425, 0.75].iter().map(|a| a * a).sum::<f64>() / 4.0;
    assert!((out.stats.value_loss.unwrap() - expected).abs() < 1e-12);
    // The policy loss is the token mean −(1/N) Σ Â_t log π_t.
    let grad: Vec<f32> = tok.grad(&out.loss.backward()).unwrap().into_data().to_vec().unwrap();
    for k in 0..6 {
        assert!((f64::from(grad[k]) + white[k] / 4.0).abs() < 1e-6, "{grad:?}");
    }
    // Missing values, or a critic on the sequence penalty, are errors.
    assert!(matches!(kl.loss(&base), Err(Error::MissingInput { .. })));
    let seq = KlControl::fixed(0.5).with_critic(critic);
    assert!(matches!(seq.loss(&bt), Err(Error::InvalidConfig { .. })));
    let bad = KlControl::fixed(0.5)
        .with_penalty(KlPenalty::PerToken)
        .with_critic(Critic { gae_lambda: 1.5, ..critic });
    assert!(matches!(bad.loss(&bt), Err(Error::InvalidConfig { name: "gae_lambda", .. })));
}

#[test]
fn reinforce_baselines_are_computed_within_each_context() {
    // Contexts 7 (rewards 1, 3) and 2 (rewards 10, 20, 30): each sample's baseline sees only
    // its own context's rewards.
    let reward = vec![1.0, 10.0, 3.0, 20.0, 30.0];
    let contexts = vec![7, 2, 7, 2, 2];
    let b = batch(&[-1.0; 5]).with_reward(reward).unwrap().with_contexts(contexts).unwrap();
    let mean = Reinforce::new(RewardBaseline::BatchMean).loss(&b).unwrap().advantages;
    assert_eq!(mean, vec![-1.0, -10.0, 1.0, 0.0, 10.0]);
    let loo = Reinforce::new(RewardBaseline::LeaveOneOut).loss(&b).unwrap().advantages;
    assert_eq!(loo, vec![-2.0, -15.0, 2.0, 0.0, 15.0]);
    // A context with one sample has no other sample to compare with: baseline 0.
    let single = batch(&[-1.0; 3])
        .with_reward(vec![5.0, 1.0, 3.0])
        .unwrap()
        .with_contexts(vec![0, 1, 1])
        .unwrap();
    let loo = Reinforce::new(RewardBaseline::LeaveOneOut).loss(&single).unwrap().advantages;
    assert_eq!(loo, vec![5.0, -2.0, 2.0]);
}
