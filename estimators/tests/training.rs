//! Short training runs of the tiny GPT-2 with burn's Adam, measured exactly on the enumeration.

use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tilt_estimators::{
    Dpg, Estimator, ProposalUpdate, Reinforce, RewardBaseline, ScoredBatch, ZTracker,
};

use crate::common::*;

fn window_means(v: &[f64], windows: usize) -> Vec<f64> {
    let w = v.len() / windows;
    v.chunks(w).map(|c| c.iter().sum::<f64>() / c.len() as f64).collect()
}

#[test]
fn gdc_plus_plus_drives_kl_p_pi_down() {
    let _serial = serial();
    let steps = 300;
    let batch_size = 64;
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    // π ← a, q ← a; target p = a·b·exp(λφ)/Z.
    let mut pi = model_ad(A);
    let a = Enumerated::of(&pi.valid());
    let target = hybrid_target(&a);
    let mut q = a.clone();
    let mut z = ZTracker::new();
    let rule = ProposalUpdate::default();
    let estimator = Dpg::gdc_plus_plus().normalized();
    let mut optim = AdamConfig::new().init();
    let (mut kl_pi, mut kl_q, mut updates) = (Vec::new(), Vec::new(), 0);
    for step in 1..=steps {
        let xs = q.sample(&mut rng, batch_size);
        let (log_q, log_p) = (q.at(&xs), target.at(&xs));
        z.push(&log_p, &log_q).unwrap();
        let log_pi = pi.log_prob(&seq_batch::<B>(&xs));
        let batch = ScoredBatch::new(log_pi)
            .unwrap()
            .with_log_q(log_q)
            .unwrap()
            .with_log_target(log_p)
            .unwrap()
            .with_log_z(z.log_z().unwrap());
        let out = estimator.loss(&batch).unwrap();
        let grads = GradientsParams::from_grads(out.loss.backward(), &pi);
        pi = optim.step(2e-3, pi, grads);
        let now = Enumerated::of(&pi.valid());
        kl_pi.push(target.kl_to(&now));
        kl_q.push(target.kl_to(&q));
        if rule.is_due(step) {
            // Fresh samples from q, scored by π.
            let fresh = q.sample(&mut rng, 256);
            let d = rule
                .decide(&target.at(&fresh), &q.at(&fresh), &now.at(&fresh), z.log_z().unwrap())
                .unwrap();
            if d.update {
                q = now;
                z.new_proposal();
                updates += 1;
            }
        }
    }
    let means = window_means(&kl_pi, 6);
    let z_est = z.estimate();
    eprintln!(
        "gdc++ training: exact KL(p‖π) by 50-step window {means:.4?} (start {:.4}); \
         KL(p‖q) last {:.4}; {updates} proposal updates; pooled Z {:.4} ± {:.4} (exact {:.4})",
        target.kl_to(&a),
        kl_q[steps - 1],
        z_est.z(),
        z_est.se_z(),
        target.log_z.exp(),
    );
    assert!(means[5] < 0.25 * means[0], "{means:?}");
    let decreasing = means.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(decreasing >= 4, "{means:?}");
    assert!(updates >= 1);
    assert!((z_est.z() - target.log_z.exp()).abs() < 4.0 * z_est.se_z());
}

#[test]
fn reinforce_raises_the_reward_and_drifts_from_a() {
    let _serial = serial();
    let steps = 200;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut pi = model_ad(A);
    let a = Enumerated::of(&pi.valid());
    let estimator = Reinforce::new(RewardBaseline::LeaveOneOut);
    let mut optim = AdamConfig::new().init();
    let (mut eb, mut kl) = (Vec::new(), Vec::new());
    let mut now = a.clone();
    let expected_b = |m: &Enumerated| (0..N).map(|x| m.prob[x] * b(x)).sum::<f64>();
    for _ in 0..steps {
        let xs = now.sample(&mut rng, 64);
        let log_pi = pi.log_prob(&seq_batch::<B>(&xs));
        let batch = ScoredBatch::new(log_pi)
            .unwrap()
            .with_reward(xs.iter().map(|&x| b(x)).collect())
            .unwrap();
        let out = estimator.loss(&batch).unwrap();
        let grads = GradientsParams::from_grads(out.loss.backward(), &pi);
        pi = optim.step(5e-3, pi, grads);
        now = Enumerated::of(&pi.valid());
        eb.push(expected_b(&now));
        kl.push(now.kl_to(&a));
    }
    eprintln!(
        "reinforce training: E_π[b] {:.4} → {:.4} (a: {:.4}); KL(π‖a) {:.4} → {:.4}",
        eb[0],
        eb[steps - 1],
        expected_b(&a),
        kl[0],
        kl[steps - 1]
    );
    assert!(eb[steps - 1] > expected_b(&a) + 0.2);
    assert!(kl[steps - 1] > 10.0 * kl[0].max(1e-3));
}

#[test]
fn adaptive_kl_control_holds_kl_below_fixed_beta() {
    let _serial = serial();
    use tilt_estimators::{AdaptiveKlController, KlControl};
    let steps = 150;
    let a_model = model_ad(A);
    let a = Enumerated::of(&a_model.valid());
    let train = |mut est: KlControl| {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let mut pi = model_ad(A);
        let mut optim = AdamConfig::new().init();
        let mut now = a.clone();
        for _ in 0..steps {
            let xs = now.sample(&mut rng, 64);
            let batch = ScoredBatch::new(pi.log_prob(&seq_batch::<B>(&xs)))
                .unwrap()
                .with_reward(xs.iter().map(|&x| b(x)).collect())
                .unwrap()
                .with_log_a(a.at(&xs))
                .unwrap();
            let out = est.loss(&batch).unwrap();
            Estimator::<B>::update(&mut est, &out.stats);
            let grads = GradientsParams::from_grads(out.loss.backward(), &pi);
            pi = optim.step(5e-3, pi, grads);
            now = Enumerated::of(&pi.valid());
        }
        (now.kl_to(&a), est.beta())
    };
    // Target KL 0.3, horizon 640 (β can change by up to 2% per step of 64 samples).
    let controller = AdaptiveKlController::new(0.05, 0.3, 640.0).unwrap();
    let (kl_adaptive, beta) = train(KlControl::adaptive(controller));
    let (kl_fixed, _) = train(KlControl::fixed(0.05));
    eprintln!(
        "kl-control training: KL(π‖a) {kl_adaptive:.4} with adaptive β (β 0.05 → {beta:.4}, \
         target 0.3) vs {kl_fixed:.4} with fixed β = 0.05"
    );
    assert!(beta > 0.05);
    assert!(kl_adaptive < kl_fixed);
    assert!((kl_adaptive - 0.3).abs() < 0.2, "{kl_adaptive}");
}
