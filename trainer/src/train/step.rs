//! One optimizer step: sample, score once, estimator advantages on the whole batch, gradient
//! accumulation over forward minibatches, optimizer step, estimator and Z updates.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use burn::module::{AutodiffModule, Module};
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use tilt_estimators::{
    AdaptiveKlController, Cdpg, ChiSquare, Dpg, Estimator, EstimatorOutput, FDpg, ForwardKl,
    JensenShannon, KlControl, Reinforce, ReverseKl, RewardBaseline, ScoredBatch, StepStats,
    TotalVariation,
};
use tilt_policies::{Gpt2, SequenceBatch, ValueHead};

use super::Run;
use super::rollout::{self, Chunk, Rollout};
use super::target::FeatureScores;
use crate::config::{FDivergence, KlPenalty};
use crate::plan::{Beta, Estimator as EstimatorPlan, Ppo, ReinforceBaseline};

/// What a training step reports.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// The estimator's statistics on the batch.
    pub stats: StepStats,
    /// The learning rate used.
    pub lr: f64,
    /// E\[φ\] on the training batch (from the sampler: q off-policy, π on-policy).
    pub batch_moments: BTreeMap<String, f64>,
    /// `log Z` the estimator used.
    pub log_z: Option<f64>,
    /// The trace of the covariance of per-sample gradients, on steps that measure it
    /// (`eval.grad_variance_interval`).
    pub grad_variance: Option<f64>,
    /// The global L2 norm of the step's gradient, before clipping.
    pub grad_norm: f64,
}

/// Samples whose per-sample gradients measure the gradient variance (at most).
const GRAD_VARIANCE_SAMPLES: usize = 64;

/// The loss was NaN or infinite: the run stops, keeping its last good checkpoint.
#[derive(Debug, thiserror::Error)]
#[error(
    "the loss is {value} at step {step}: training stopped (the last good checkpoint is kept; \
     try a lower optimizer.lr or normalize_by_z = true)"
)]
pub struct NonFiniteLoss {
    /// The step (from 1) whose loss was not finite.
    pub step: u64,
    /// The loss value.
    pub value: f64,
}

/// The estimator of a plan, as a trait object.
pub fn build_estimator<B: AutodiffBackend>(e: &EstimatorPlan) -> Result<Box<dyn Estimator<B>>> {
    Ok(match *e {
        EstimatorPlan::Reinforce { baseline } => Box::new(Reinforce::new(match baseline {
            ReinforceBaseline::None => RewardBaseline::None,
            ReinforceBaseline::Mean => RewardBaseline::BatchMean,
            ReinforceBaseline::LeaveOneOut => RewardBaseline::LeaveOneOut,
        })),
        EstimatorPlan::KlControl { beta, penalty, ppo } => {
            let kl = match beta {
                Beta::Fixed(b) => KlControl::fixed(b),
                Beta::Adaptive { init, target, horizon } => {
                    KlControl::adaptive(AdaptiveKlController::new(init, target, horizon as f64)?)
                }
            };
            let kl = kl.with_penalty(match penalty {
                KlPenalty::Sequence => tilt_estimators::KlPenalty::Sequence,
                KlPenalty::PerToken => tilt_estimators::KlPenalty::PerToken,
            });
            match ppo {
                Some(Ppo { clip, critic: Some(c), .. }) => {
                    Box::new(kl.with_clip(clip).with_critic(c))
                }
                Some(p) => Box::new(kl.with_clip(p.clip)),
                None => Box::new(kl),
            }
        }
        EstimatorPlan::Dpg { baseline_z, normalize_by_z, .. } => {
            let d = if baseline_z { Dpg::on_policy_baseline() } else { Dpg::on_policy() };
            Box::new(if normalize_by_z { d.normalized() } else { d })
        }
        EstimatorPlan::Cdpg { baseline, .. } => Box::new(Cdpg { baseline, off_policy: false }),
        EstimatorPlan::Gdc { normalize_by_z } => {
            Box::new(if normalize_by_z { Dpg::gdc().normalized() } else { Dpg::gdc() })
        }
        EstimatorPlan::GdcPp { normalize_by_z } => Box::new(if normalize_by_z {
            Dpg::gdc_plus_plus().normalized()
        } else {
            Dpg::gdc_plus_plus()
        }),
        EstimatorPlan::Fdpg { divergence, baseline_window, on_policy, .. } => {
            fn make<B: AutodiffBackend, F: tilt_estimators::FDivergence + 'static>(
                f: F,
                window: Option<u64>,
                on_policy: bool,
            ) -> Box<dyn Estimator<B>> {
                let mut e = FDpg::new(f);
                if !on_policy {
                    e = e.off_policy();
                }
                if let Some(w) = window {
                    e = e.with_baseline(w as usize);
                }
                Box::new(e)
            }
            match divergence {
                FDivergence::Kl => make(ForwardKl, baseline_window, on_policy),
                FDivergence::Rkl => make(ReverseKl, baseline_window, on_policy),
                FDivergence::Js => make(JensenShannon, baseline_window, on_policy),
                FDivergence::Tv => make(TotalVariation, baseline_window, on_policy),
                FDivergence::Chi2 => make(ChiSquare, baseline_window, on_policy),
            }
        }
    })
}

/// The per-sample host values of a batch: the peers exchange these, so every statistic of the
/// batch is computed on all of it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct HostScores {
    scores: FeatureScores,
    log_a: Vec<f64>,
    log_q: Vec<f64>,
    log_pi: Vec<f64>,
    log_target: Vec<f64>,
    /// Per-token inputs of the per-token KL-control: (log π_t from the sampler, log a_t).
    tokens: Option<(Vec<f64>, Vec<f64>)>,
    /// KL-control's critic: the value head's `V_t` at sampling time, `[n, steps]`.
    values: Option<Vec<f64>>,
    /// Generated-token mask `[n, steps]`.
    generated_mask: Vec<bool>,
    /// Decoding steps.
    steps: usize,
    /// The context id of each sample of the whole batch (conditional runs): every peer
    /// computes it, so it is not exchanged.
    #[serde(skip)]
    contexts: Vec<usize>,
}

impl HostScores {
    /// The peers' batches, one after the other.
    fn concat(parts: Vec<HostScores>) -> HostScores {
        let steps = parts.iter().map(|p| p.steps).max().unwrap_or(0);
        let mut out = HostScores { steps, ..HostScores::default() };
        let mut scores = Vec::with_capacity(parts.len());
        for p in parts {
            scores.push(p.scores);
            out.log_a.extend(p.log_a);
            out.log_q.extend(p.log_q);
            out.log_pi.extend(p.log_pi);
            out.log_target.extend(p.log_target);
            out.generated_mask.extend(p.generated_mask);
            if let Some((lp, la)) = p.tokens {
                let t = out.tokens.get_or_insert_with(Default::default);
                t.0.extend(lp);
                t.1.extend(la);
            }
            if let Some(v) = p.values {
                out.values.get_or_insert_with(Vec::new).extend(v);
            }
        }
        out.scores = FeatureScores::concat(scores);
        out
    }
}

/// One training batch, scored once: this peer's samples and the whole batch's host values.
struct Scored {
    /// This peer's samples.
    rollout: Rollout,
    /// The whole batch (every peer's samples, in peer order).
    host: HostScores,
    /// The index of this peer's first sample in the whole batch.
    offset: usize,
}

fn per_token(e: &EstimatorPlan) -> bool {
    matches!(e, EstimatorPlan::KlControl { penalty: KlPenalty::PerToken, .. })
}

impl<B: AutodiffBackend> Run<B> {
    /// Samples this peer's share of the training batch (one draw per own sample stream),
    /// computes every host score once, and gathers the whole batch's host values.
    fn sample_and_score(&mut self) -> Result<Scored> {
        let n = self.plan.batch_size as usize;
        let (rows, offset) = self.peer.rows_of(n);
        let sampler_model = match &self.proposal {
            Some(q) => q.clone(),
            None => self.policy.valid(),
        };
        let contexts =
            crate::contexts::step_rows(self.contexts.as_ref(), self.plan.seed, self.step, n);
        let mine = &contexts[offset..offset + rows.iter().sum::<usize>()];
        let t0 = std::time::Instant::now();
        let rollout = rollout::draw_streams(
            &self.sampler,
            &sampler_model,
            &rows,
            mine,
            &self.tokenizer,
            &mut self.rngs,
        )?;
        let t1 = std::time::Instant::now();
        let inner = self.inner_device();
        let log_a = self.base_log_probs_of_sampler_samples(&rollout)?;
        log::debug!(
            "sampling {} {:.2} s, scoring them under a {:.2} s",
            rollout.len(),
            (t1 - t0).as_secs_f64(),
            t1.elapsed().as_secs_f64()
        );
        let scores = self.target.score(&rollout.samples())?;
        let log_target = self.target.log_target(&log_a, &scores)?;
        let log_q = rollout.log_sampler.clone();
        // Importance weights need the distribution sampled from: on-policy that is π itself
        // (the sampler's log-probs: the plan allows on-policy estimators no temperature and no
        // truncation); off-policy π is scored on q's samples without dropout.
        let log_pi = if self.proposal.is_some() {
            rollout::log_probs(&self.policy.valid(), &rollout, &inner)?
        } else {
            log_q.clone()
        };
        let tokens = if per_token(&self.plan.estimator) {
            anyhow::ensure!(
                self.sampler.fixed_length(),
                "per-token KL-control needs fixed-length samples"
            );
            let a = rollout::token_log_probs(&self.base, &rollout, &inner)?;
            Some((rollout.token_log_sampler.clone(), a))
        } else {
            None
        };
        let values = match &self.critic {
            Some(c) => Some(rollout::token_values(
                &self.policy.valid(),
                &c.head.valid(),
                &rollout,
                &inner,
            )?),
            None => None,
        };
        let mine = HostScores {
            scores,
            log_a,
            log_q,
            log_pi,
            log_target,
            tokens,
            values,
            generated_mask: rollout.generated_mask.clone(),
            steps: rollout.steps(),
            contexts: Vec::new(),
        };
        let host =
            HostScores { contexts, ..HostScores::concat(self.gather(mine, "the batch's scores")?) };
        Ok(Scored { rollout, host, offset })
    }

    /// The estimator's output on the whole batch, with `log π` detached: advantages and
    /// statistics for every sample (batch-level baselines see the whole batch).
    fn advantages(&self, s: &HostScores, log_z: Option<f64>) -> Result<EstimatorOutput<B>> {
        let n = s.log_pi.len();
        let device = self.device.clone();
        let log_pi: Tensor<B, 1> =
            Tensor::from_data(TensorData::new(s.log_pi.clone(), [n]), &device);
        let mut batch = ScoredBatch::with_host_log_pi(log_pi, s.log_pi.clone())?
            .with_log_q(s.log_q.clone())?
            .with_log_a(s.log_a.clone())?;
        if self.plan.estimator.is_distribution_matching() {
            batch = batch.with_log_target(s.log_target.clone())?;
        }
        if let Some(r) = &s.scores.reward {
            batch = batch.with_reward(r.clone())?;
        }
        if let Some(z) = log_z {
            batch = batch.with_log_z(z);
        }
        if self.contexts.is_some() {
            batch = batch.with_contexts(s.contexts.clone())?;
        }
        if let Some((lp, la)) = &s.tokens {
            let t = s.steps;
            let tok: Tensor<B, 2> = Tensor::from_data(TensorData::new(lp.clone(), [n, t]), &device);
            batch = batch
                .with_token_log_pi(tok, s.generated_mask.clone())?
                .with_token_log_a(la.clone())?;
            if let Some(v) = &s.values {
                batch = batch.with_token_values(v.clone())?;
            }
        }
        Ok(self.estimator.loss(&batch)?)
    }

    /// `−(1/m) Σ_i A_i log π(x_i)` over the `rows` samples from `first` (in batch order), which
    /// `mb` holds (rows of `chunk`); with per-token advantages `−(1/m) Σ_i Σ_t A_it log π_t`.
    /// `log π` is differentiable (with dropout).
    fn weighted_log_prob(
        &self,
        mb: &SequenceBatch<B>,
        chunk: &Chunk,
        first: usize,
        rows: usize,
        out: &EstimatorOutput<B>,
        m: f64,
    ) -> Tensor<B, 1> {
        match &out.token_advantages {
            Some(g) => self.token_term(self.policy.token_log_probs(mb), g, chunk, first, m),
            None => {
                let lp = self.policy.log_prob(mb);
                let w: Vec<f64> =
                    out.advantages[first..first + rows].iter().map(|a| -a / m).collect();
                let w: Tensor<B, 1> = Tensor::from_data(TensorData::new(w, [rows]), &self.device);
                (lp * w).sum()
            }
        }
    }

    /// The gradient's global norm, clipped to `max_grad_norm` when that is set. With a critic
    /// the value head's gradient counts too: π and the head are clipped as one model, as
    /// PyTorch's `clip_grad_norm_` over a policy-and-value model does (trl).
    fn clip(&self, grads: &mut GradientsParams, head_grads: Option<&mut GradientsParams>) -> f64 {
        let head = self.critic.as_ref().map(|c| &c.head).zip(head_grads);
        let norm = crate::grad_clip::clip_together::<B, _, _>(
            &self.policy,
            grads,
            head,
            self.plan.max_grad_norm,
        );
        norm.into_scalar().elem::<f64>()
    }

    /// KL-control with a critic, on minibatch `mb` (rows `first ..` of the batch): the policy
    /// term `−(1/m) Σ_i Σ_t A_it log π_t` and the value loss of the head's values, from one
    /// forward pass of π (with dropout).
    fn actor_critic_loss(
        &self,
        mb: &SequenceBatch<B>,
        chunk: &Chunk,
        first: usize,
        out: &EstimatorOutput<B>,
        head: &ValueHead<B>,
        targets: &tilt_estimators::ValueTargets,
    ) -> Result<Tensor<B, 1>> {
        let m = out.stats.n_used.max(1) as f64;
        let g = out.token_advantages.as_ref().context("a critic without token advantages")?;
        let (rows, t, p) = (mb.dims()[0], chunk.steps, chunk.prompt_len);
        let (lp, hidden) = self.policy.token_log_probs_and_hidden(mb);
        let values = head.token_values(hidden, mb).slice([0..rows, p..p + t]);
        Ok(self.token_term(lp, g, chunk, first, m) + targets.loss(values, first))
    }

    /// `−(1/m) Σ_i Σ_t g_it log π_t` over the generated tokens of `lp` (a minibatch's
    /// `[rows, prompt_len + steps]` token log-probs, rows `first ..` of the batch).
    fn token_term(
        &self,
        lp: Tensor<B, 2>,
        g: &[f64],
        chunk: &Chunk,
        first: usize,
        m: f64,
    ) -> Tensor<B, 1> {
        let (rows, t, p) = (lp.dims()[0], chunk.steps, chunk.prompt_len);
        let w: Vec<f64> = g[first * t..(first + rows) * t].iter().map(|v| -v / m).collect();
        let w: Tensor<B, 2> = Tensor::from_data(TensorData::new(w, [rows, t]), &self.device);
        (lp.slice([0..rows, p..p + t]) * w).sum()
    }

    /// Accumulates `∇ −(1/m) Σ_i A_i log π(x_i)` over forward minibatches, `log π` recomputed
    /// differentiably (with dropout) per minibatch; per-token advantages weight each token.
    /// With a critic the value loss is added, and the value head's gradient is returned too.
    /// Each peer takes its own samples (`m` counts the whole batch), and the peers' sums are
    /// added: the result is the whole batch's gradient on every peer.
    fn accumulate(
        &self,
        s: &Scored,
        out: &EstimatorOutput<B>,
    ) -> Result<(GradientsParams, Option<GradientsParams>)> {
        let m = out.stats.n_used.max(1) as f64;
        let mut acc = GradientsAccumulator::<Gpt2<B>>::new();
        let mut head_acc = GradientsAccumulator::<ValueHead<B>>::new();
        let critic = self.critic.as_ref().zip(out.value_targets.as_ref());
        let mut row = s.offset;
        for chunk in &s.rollout.chunks {
            let batch = chunk.batch::<B>(&self.device)?;
            for start in (0..chunk.rows).step_by(self.plan.minibatch_size as usize) {
                let end = (start + self.plan.minibatch_size as usize).min(chunk.rows);
                let mb = batch.rows(start, end);
                let grads = match critic {
                    Some((c, targets)) => {
                        let loss =
                            self.actor_critic_loss(&mb, chunk, row + start, out, &c.head, targets)?;
                        let mut grads = loss.backward();
                        head_acc
                            .accumulate(&c.head, GradientsParams::from_module(&mut grads, &c.head));
                        grads
                    }
                    None => self
                        .weighted_log_prob(&mb, chunk, row + start, end - start, out, m)
                        .backward(),
                };
                acc.accumulate(&self.policy, GradientsParams::from_grads(grads, &self.policy));
            }
            row += chunk.rows;
        }
        let policy = self.peer.all_reduce_grads(&self.policy, acc.grads())?;
        let head = match critic {
            Some((c, _)) => Some(self.peer.all_reduce_grads(&c.head, head_acc.grads())?),
            None => None,
        };
        Ok((policy, head))
    }

    /// A further PPO epoch over the batch (KL-control, on-policy DPG and CDPG with
    /// `estimator.ppo_epochs` > 1): the
    /// gradient of PPO's clipped surrogate `min(ρA, clip(ρ, 1−ε, 1+ε) A)` at the current π is
    /// `ρA ∇log π` where the unclipped term is the minimum and 0 where the clip holds, so the
    /// epoch reuses [`accumulate`](Self::accumulate) with those weights in place of the
    /// advantages (`ρ = π/π_old` per sequence, or per token with the per-token penalty; the
    /// advantages stay those computed at sampling time, as in PPO).
    fn ppo_epoch(
        &self,
        s: &Scored,
        first: &EstimatorOutput<B>,
        eps: f64,
    ) -> Result<EstimatorOutput<B>> {
        let weight = |lp_new: f64, lp_old: f64, a: f64| {
            let rho = (lp_new - lp_old).exp();
            let clipped = rho.clamp(1.0 - eps, 1.0 + eps);
            if rho * a <= clipped * a { rho * a } else { 0.0 }
        };
        let inner = self.inner_device();
        let pi = self.policy.valid();
        let mut out = first.clone();
        match &first.token_advantages {
            Some(g) => {
                let (old, _) =
                    s.host.tokens.as_ref().context("per-token KL-control without tokens")?;
                let new = rollout::token_log_probs(&pi, &s.rollout, &inner)?;
                let new: Vec<f64> = self.gather(new, "the PPO ratios")?.concat();
                let w = g.iter().zip(new.iter().zip(old)).map(|(&a, (&n, &o))| weight(n, o, a));
                out.token_advantages = Some(w.collect());
            }
            None => {
                let new = rollout::log_probs(&pi, &s.rollout, &inner)?;
                let new: Vec<f64> = self.gather(new, "the PPO ratios")?.concat();
                let old = &s.host.log_q;
                let w = (0..new.len()).map(|i| weight(new[i], old[i], first.advantages[i]));
                out.advantages = w.collect();
            }
        }
        Ok(out)
    }

    /// The gradient variance (METHODS §5): the trace of the covariance of the per-sample
    /// gradients `g_i = ∇(−A_i log π(x_i))` (per-token advantages: `∇(−Σ_t A_it log π_t)`) of
    /// the batch's first samples (at most [`GRAD_VARIANCE_SAMPLES`]), at the parameters before
    /// this step's update; one forward and backward pass per sample. Each peer takes those of
    /// its own samples, and the sums `Σ g_i`, `Σ ‖g_i‖²` and the count are added across peers.
    fn grad_variance(&self, s: &Scored, out: &EstimatorOutput<B>) -> Result<f64> {
        let mut acc = tilt_estimators::GradientVarianceAccumulator::new();
        let mut row = s.offset;
        'chunks: for chunk in &s.rollout.chunks {
            let batch = chunk.batch::<B>(&self.device)?;
            for r in 0..chunk.rows {
                if row + r >= GRAD_VARIANCE_SAMPLES {
                    break 'chunks;
                }
                let one = batch.rows(r, r + 1);
                let loss = self.weighted_log_prob(&one, chunk, row + r, 1, out, 1.0);
                let grads = loss.backward();
                acc.push(&tilt_estimators::flatten_gradients(&self.policy, &grads))?;
            }
            row += chunk.rows;
        }
        if self.peer.is_parallel() {
            let params = self.policy.num_params();
            let (sum, sum_sq_norm, n) = acc.into_parts();
            let sum: Vec<f32> = match sum.len() {
                0 => vec![0.0; params],
                _ => sum.iter().map(|&v| v as f32).collect(),
            };
            let sum = self.peer.sum_floats::<B::InnerBackend>(
                &self.inner_device(),
                sum,
                "the gradient-variance sums",
            )?;
            let parts = self.gather((sum_sq_norm, n), "the gradient-variance counts")?;
            let (sq, n) = parts.iter().fold((0.0, 0), |(a, b), (x, y)| (a + x, b + y));
            let sum = sum.into_iter().map(f64::from).collect();
            acc = tilt_estimators::GradientVarianceAccumulator::from_parts(sum, sq, n);
        }
        Ok(acc.finish()?.trace)
    }

    /// One optimizer update of π, and of the value head when it has gradients.
    fn apply(&mut self, lr: f64, grads: GradientsParams, head_grads: Option<GradientsParams>) {
        let policy = self.policy.clone();
        self.policy = self.optimizer.step(lr, policy, grads);
        if let (Some(c), Some(g)) = (self.critic.as_mut(), head_grads) {
            c.head = c.optimizer.step(lr, c.head.clone(), g);
        }
    }

    /// Counts a finished step and pools its batch into Z (E_q\[P/q\] = Z for any q) when π
    /// is trained toward one p. Reward maximisation's batches come from π, which may miss part
    /// of p's support: its P/π weights are heavy-tailed and would swamp the samples of a that
    /// its evaluation pools (see `evaluate_importance`). CDPG's Z_c differ by context: it
    /// estimates each on its batch.
    fn finish_step(&mut self, step: u64, host: &HostScores) -> Result<()> {
        if self.plan.estimator.tracks_z() {
            self.z.push(&host.log_target, &host.log_q).context("Z tracker")?;
        }
        self.step = step;
        self.samples_seen += host.log_q.len() as u64;
        Ok(())
    }

    /// A step without an update: no sample seen so far, this batch's included, has P > 0, so
    /// Z is unknown and every distribution-matching advantage is 0 (P = 0, and the GDC++
    /// baseline Z·π/q vanishes with Z's estimate). The samples still count and still pool
    /// into Z.
    fn skip_step(&mut self, step: u64, host: &HostScores) -> Result<StepReport> {
        log::warn!(
            "step {step}: no sample so far has P > 0 (every one breaks a pointwise \
             constraint), so Z is unknown and the gradient is 0: no update"
        );
        let n = host.log_q.len();
        let stats = StepStats {
            estimator: self.estimator.name(),
            n,
            zero_target_fraction: Some(1.0),
            ..StepStats::default()
        };
        self.finish_step(step, host)?;
        let lr = self.lr(step - 1);
        Ok(StepReport {
            stats,
            lr,
            batch_moments: host.scores.means(),
            log_z: None,
            grad_variance: None,
            grad_norm: 0.0,
        })
    }

    /// The learning rate of the step after `completed` steps.
    fn lr(&self, completed: u64) -> f64 {
        self.plan.optimizer.lr * self.plan.schedule.factor(completed)
    }

    /// One optimizer step (`self.step` counts completed steps; this is step `self.step + 1`).
    pub(super) fn train_step(&mut self) -> Result<StepReport> {
        // Dropout draws from burn's process-global RNG, whose state cannot be saved: reseeding
        // it from (seed, step) makes a resumed run drop the same units.
        // Peers drop different units (peer 0 as a single-peer run).
        let peer = (self.peer.index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        B::seed(&self.device, self.plan.seed.wrapping_add(self.step) ^ peer);
        let t0 = std::time::Instant::now();
        let s = self.sample_and_score()?;
        let t1 = std::time::Instant::now();
        let log_z = match self.z.log_z() {
            // Conditional runs: each context has its own Z_c (CDPG estimates them itself).
            _ if self.contexts.is_some() => None,
            Some(z) => Some(z),
            None => {
                tilt_ebm::estimate_log_z(&tilt_ebm::log_weights(&s.host.log_target, &s.host.log_q)?)
                    .ok()
                    .map(|e| e.log_z)
                    .filter(|z| z.is_finite())
            }
        };
        let step = self.step + 1;
        if log_z.is_none() && self.plan.estimator.tracks_z() {
            return self.skip_step(step, &s.host);
        }
        let out = self.advantages(&s.host, log_z).context("estimator")?;
        if !out.stats.loss.is_finite() {
            return Err(NonFiniteLoss { step, value: out.stats.loss }.into());
        }
        let grad_variance = match self.plan.eval.grad_variance_interval {
            Some(k) if step.is_multiple_of(k) => Some(self.grad_variance(&s, &out)?),
            _ => None,
        };
        let (mut grads, mut head_grads) = self.accumulate(&s, &out)?;
        let grad_norm = self.clip(&mut grads, head_grads.as_mut());
        log::debug!(
            "step {step}: sampling and scoring {:.2} s, gradient {:.2} s",
            (t1 - t0).as_secs_f64(),
            t1.elapsed().as_secs_f64()
        );
        let lr = self.lr(self.step);
        self.apply(lr, grads, head_grads);
        if let Some(ppo) = self.plan.estimator.ppo() {
            for _ in 1..ppo.epochs {
                let again = self.ppo_epoch(&s, &out, ppo.clip)?;
                let (mut grads, mut head_grads) = self.accumulate(&s, &again)?;
                self.clip(&mut grads, head_grads.as_mut());
                self.apply(lr, grads, head_grads);
            }
        }
        self.estimator.update(&out.stats);
        self.finish_step(step, &s.host)?;
        Ok(StepReport {
            stats: out.stats,
            lr,
            batch_moments: s.host.scores.means(),
            log_z,
            grad_variance,
            grad_norm,
        })
    }
}
