//! KL-control (Ziegler et al. 2019): reward maximisation with a KL(π‖a) penalty.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorData};

use crate::batch::{Rule, Validity, require};
use crate::critic::{Critic, ValueTargets, gae, whiten};
use crate::loss::{clipped_loss, score_function_loss};
use crate::{
    AdaptiveKlController, Error, Estimator, EstimatorOutput, Result, ScoredBatch, StepStats,
};

/// The KL coefficient β.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KlCoefficient {
    /// A constant β.
    Fixed(f64),
    /// Ziegler's adaptive controller, stepped by [`Estimator::update`].
    Adaptive(AdaptiveKlController),
}

impl KlCoefficient {
    /// The current β.
    pub fn beta(&self) -> f64 {
        match self {
            Self::Fixed(b) => *b,
            Self::Adaptive(c) => c.beta(),
        }
    }
}

/// Where the penalty enters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlPenalty {
    /// One reward per sequence: `R = r − β (log π(x) − log a(x))`, sequence log-probs.
    #[default]
    Sequence,
    /// Per-token rewards `r_t = −β (log π_t − log a_t)` with `r` added at the last generated
    /// token, and each token weighted by its return-to-go `G_t = Σ_{s ≥ t} r_s` (γ = 1, no
    /// critic). Needs the batch's [`TokenScores`](crate::TokenScores) with `log_a`.
    PerToken,
}

/// KL-control, the paper's second RM baseline (Ziegler et al. 2019; Korbak et al. 2022 §2):
/// maximise `J(θ) = E_π[r(x)] − β KL(π, a)` with samples `x ~ π`.
///
/// Sequence level: `∇J = E_π[R(x) ∇log π(x)]`, `R = r − β log(π(x)/a(x))` with π detached
/// (the `−β E_π[∇log π]` term vanishes). Loss `L = −(1/m) Σ_i R_i log π(x_i)`, so
/// `E[∇L] = −∇J`. Per token: `L = −(1/m) Σ_i Σ_t G_{i,t} log π(x_{i,t} | x_{i,<t})`, with the
/// same expectation (a reward at `s < t` is independent of the score at t given the prefix).
///
/// By the paper's Theorem 1, `∇J = −β ∇KL(π, p_z)` with `P_z = a · exp(r/β)`: KL-control is
/// reverse-KL distribution matching to `p_z` (verified exactly in this crate's tests).
///
/// With `clip = Some(ε)` the loss is PPO's clipped surrogate
/// `−(1/m) Σ min(ρA, clip(ρ, 1−ε, 1+ε) A)`, `ρ = π/π_old` (per sequence or per token), for
/// several epochs over one batch; advantages and the KL penalty are then computed from
/// `log π_old` (frozen at sampling time). At `π = π_old` its gradient equals the unclipped one.
/// Without a critic the per-token weights are the returns-to-go (REINFORCE-style KL-control).
/// With one ([`with_critic`](Self::with_critic); per-token penalty only) this is Ziegler's
/// PPO as gdc and trl run it: the weights are GAE advantages from the sampling-time values
/// (batch token `values`), whitened over the batch's tokens, the policy loss is a mean over
/// tokens, and [`EstimatorOutput::value_targets`] carries the returns for the value loss
/// (see [`Critic`]).
///
/// Needs `reward`, and `log_a` (sequence) or token scores with `log_a` (per token).
/// Source: METHODS §3; gdc `gdc/ppo.py`; trl `ppo_trainer.py` (per-token k1 penalty).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KlControl {
    /// β.
    pub coefficient: KlCoefficient,
    /// Sequence or per-token penalty.
    pub penalty: KlPenalty,
    /// PPO clip range ε, if any.
    pub clip: Option<f64>,
    /// A learned value function for GAE advantages (per-token penalty only).
    pub critic: Option<Critic>,
}

impl KlControl {
    /// Sequence-level KL-control with a fixed β.
    pub fn fixed(beta: f64) -> Self {
        Self {
            coefficient: KlCoefficient::Fixed(beta),
            penalty: KlPenalty::Sequence,
            clip: None,
            critic: None,
        }
    }

    /// Sequence-level KL-control with Ziegler's adaptive β.
    pub fn adaptive(controller: AdaptiveKlController) -> Self {
        Self {
            coefficient: KlCoefficient::Adaptive(controller),
            penalty: KlPenalty::Sequence,
            clip: None,
            critic: None,
        }
    }

    /// The same with the given penalty placement.
    pub fn with_penalty(self, penalty: KlPenalty) -> Self {
        Self { penalty, ..self }
    }

    /// The same with PPO clipping at `epsilon`.
    pub fn with_clip(self, epsilon: f64) -> Self {
        Self { clip: Some(epsilon), ..self }
    }

    /// The same with a critic (needs the per-token penalty and batch token `values`).
    pub fn with_critic(self, critic: Critic) -> Self {
        Self { critic: Some(critic), ..self }
    }

    /// The current β.
    pub fn beta(&self) -> f64 {
        self.coefficient.beta()
    }

    fn check_config(&self) -> Result<f64> {
        let beta = self.beta();
        if !(beta.is_finite() && beta >= 0.0) {
            return Err(Error::InvalidConfig {
                name: "beta",
                value: beta,
                reason: "must be ≥ 0 and finite",
            });
        }
        if let Some(e) = self.clip
            && !(e.is_finite() && e > 0.0 && e < 1.0)
        {
            return Err(Error::InvalidConfig {
                name: "clip",
                value: e,
                reason: "must be in (0, 1)",
            });
        }
        if let Some(critic) = &self.critic {
            critic.check()?;
            if self.penalty != KlPenalty::PerToken {
                return Err(Error::InvalidConfig {
                    name: "critic with the sequence penalty",
                    value: critic.gae_lambda,
                    reason: "a critic needs per-token rewards (KlPenalty::PerToken)",
                });
            }
        }
        Ok(beta)
    }

    fn sequence_loss<B: Backend>(
        &self,
        batch: &ScoredBatch<B>,
        beta: f64,
    ) -> Result<EstimatorOutput<B>> {
        let name = "kl_control";
        let reward = require(batch.reward(), name, "reward")?;
        let log_a = require(batch.log_a(), name, "log_a")?;
        let log_pi_old = batch.log_pi_old.as_deref().unwrap_or(&batch.log_pi_host);
        let mut v = Validity::new(batch)?;
        v.check_per_sample("reward", reward, Rule::Finite)?;
        v.check_per_sample("log_a", log_a, Rule::Finite)?;
        v.check_per_sample("log_pi_old", log_pi_old, Rule::Finite)?;
        v.ensure_some(name)?;
        let n = batch.len();
        let mut advantages = vec![0.0; n];
        let mut kl = 0.0;
        for i in (0..n).filter(|&i| v.is_used(i)) {
            let k = log_pi_old[i] - log_a[i];
            kl += k;
            advantages[i] = reward[i] - beta * k;
        }
        kl /= v.n_used() as f64;
        let used: Vec<bool> = v.skip.iter().map(|s| !s).collect();
        let mut stats = StepStats::new(name, &advantages, &used);
        let loss = match self.clip {
            None => {
                let (loss, host) = score_function_loss(batch, &advantages, &v);
                stats.loss = host;
                loss
            }
            Some(eps) => {
                let (loss, host, frac) = clipped_loss(batch, log_pi_old, &advantages, eps, &v);
                stats.loss = host;
                stats.clipped_fraction = Some(frac);
                loss
            }
        };
        stats.beta = Some(beta);
        stats.kl_policy_base = Some(kl);
        Ok(EstimatorOutput { loss, advantages, token_advantages: None, value_targets: None, stats })
    }

    fn token_loss<B: Backend>(
        &self,
        batch: &ScoredBatch<B>,
        beta: f64,
    ) -> Result<EstimatorOutput<B>> {
        let name = "kl_control_per_token";
        let reward = require(batch.reward(), name, "reward")?;
        let tokens =
            batch.tokens().ok_or(Error::MissingInput { estimator: name, input: "token scores" })?;
        let log_a = require(tokens.log_a.as_deref(), name, "token log_a")?;
        let lp_old = tokens.log_pi_old.as_deref().unwrap_or(&tokens.log_pi_host);
        let [n, t] = tokens.dims;
        let mask = &tokens.mask;
        let mut v = Validity::new(batch)?;
        v.check_per_sample("reward", reward, Rule::Finite)?;
        v.check_per_token("token log_a", log_a, mask, t, Rule::Finite)?;
        v.check_per_token("token log_pi", &tokens.log_pi_host, mask, t, Rule::Finite)?;
        v.check_per_token("token log_pi_old", lp_old, mask, t, Rule::Finite)?;
        // The critic's values are checked with the other inputs, before anything is computed
        // from the rows in use: a row dropped for a non-finite value must not reach GAE.
        let values = match &self.critic {
            Some(_) => {
                let values = require(tokens.values.as_deref(), name, "token values")?;
                v.check_per_token("token values", values, mask, t, Rule::Finite)?;
                Some(values)
            }
            None => None,
        };
        v.ensure_some(name)?;
        let m = v.n_used() as f64;
        // Returns-to-go, accumulated backwards along each row.
        let mut g = vec![0.0; n * t];
        let mut advantages = vec![0.0; n];
        let mut kl = 0.0;
        for i in (0..n).filter(|&i| v.is_used(i)) {
            let mut acc = reward[i];
            let mut seen = false;
            for s in (0..t).rev() {
                let k = i * t + s;
                if !mask[k] {
                    continue;
                }
                seen = true;
                let pen = lp_old[k] - log_a[k];
                kl += pen;
                acc -= beta * pen;
                g[k] = acc;
            }
            advantages[i] = if seen { acc } else { 0.0 };
        }
        kl /= m;
        let used: Vec<bool> = v.skip.iter().map(|s| !s).collect();
        let mut stats = StepStats::new(name, &advantages, &used);
        // Zero out everything not used (masked positions, skipped rows) before multiplying.
        let keep: Vec<bool> = (0..n * t).map(|k| mask[k] && v.is_used(k / t)).collect();
        let mut value_targets = None;
        if let (Some(critic), Some(values)) = (&self.critic, values) {
            let (g_gae, targets) =
                critic_weights(critic, reward, lp_old, log_a, values, &keep, [n, t], beta, m);
            g = g_gae;
            let (loss, ev) = targets.host_stats();
            stats.value_loss = Some(loss);
            stats.value_explained_variance = ev.is_finite().then_some(ev);
            value_targets = Some(targets);
        }
        let drop_mask: Tensor<B, 2, Bool> = Tensor::from_data(
            TensorData::new(keep.iter().map(|k| !k).collect::<Vec<_>>(), [n, t]),
            &batch.device(),
        );
        let log_pi = tokens.log_pi.clone().mask_fill(drop_mask, 0.0);
        let coef: Vec<f64> = (0..n * t).map(|k| if keep[k] { -g[k] / m } else { 0.0 }).collect();
        let loss = match self.clip {
            None => {
                stats.loss = (0..n * t)
                    .map(|k| if keep[k] { coef[k] * tokens.log_pi_host[k] } else { 0.0 })
                    .sum();
                (log_pi * batch.tensor_2d(coef, [n, t])).sum()
            }
            Some(eps) => {
                let old: Vec<f64> =
                    (0..n * t).map(|k| if keep[k] { lp_old[k] } else { 0.0 }).collect();
                let (mut host, mut clipped, mut count) = (0.0, 0usize, 0usize);
                for k in (0..n * t).filter(|&k| keep[k]) {
                    let rho = (tokens.log_pi_host[k] - old[k]).exp();
                    let rc = rho.clamp(1.0 - eps, 1.0 + eps);
                    host += (rho * coef[k]).max(rc * coef[k]);
                    clipped += usize::from(rc != rho);
                    count += 1;
                }
                stats.loss = host;
                stats.clipped_fraction = Some(clipped as f64 / count.max(1) as f64);
                let rho = (log_pi - batch.tensor_2d(old, [n, t])).exp();
                let c = batch.tensor_2d(coef, [n, t]);
                (rho.clone() * c.clone()).max_pair(rho.clamp(1.0 - eps, 1.0 + eps) * c).sum()
            }
        };
        stats.beta = Some(beta);
        stats.kl_policy_base = Some(kl);
        if let (Some(c), Some(v)) = (&self.critic, stats.value_loss) {
            // The total, as gdc and trl report it: the value term at V = V_old.
            stats.loss += c.value_coef * v;
        }
        Ok(EstimatorOutput { loss, advantages, token_advantages: Some(g), value_targets, stats })
    }
}

/// The critic's per-token weights and value targets: rewards `r_t = −β (log π_old − log a)_t`
/// with the sequence reward added at the last kept token, GAE advantages whitened over the kept
/// tokens, scaled by `m / N` (N kept tokens) so that the trainer's `−(1/m) Σ_t A_t log π_t` is
/// the token mean `−(1/N) Σ_t Â_t log π_t` of gdc's and trl's PPO.
#[allow(clippy::too_many_arguments)]
fn critic_weights(
    critic: &Critic,
    reward: &[f64],
    lp_old: &[f64],
    log_a: &[f64],
    values: &[f64],
    keep: &[bool],
    [n, t]: [usize; 2],
    beta: f64,
    m: f64,
) -> (Vec<f64>, ValueTargets) {
    let mut rewards = vec![0.0; n * t];
    for (i, r) in reward.iter().enumerate().take(n) {
        let row = i * t..(i + 1) * t;
        for k in row.clone().filter(|&k| keep[k]) {
            rewards[k] = -beta * (lp_old[k] - log_a[k]);
        }
        if let Some(last) = row.rev().find(|&k| keep[k]) {
            rewards[last] += r;
        }
    }
    let (adv, returns) = gae(&rewards, values, keep, [n, t], critic.gae_lambda);
    let count = keep.iter().filter(|k| **k).count().max(1) as f64;
    let g = whiten(&adv, keep).iter().map(|a| a * m / count).collect();
    let targets = ValueTargets {
        returns,
        old: values.iter().zip(keep).map(|(v, k)| if *k { *v } else { 0.0 }).collect(),
        keep: keep.to_vec(),
        dims: [n, t],
        weight: critic.value_coef / count,
        clip: critic.value_clip,
    };
    (g, targets)
}

impl<B: Backend> Estimator<B> for KlControl {
    fn name(&self) -> &'static str {
        match self.penalty {
            KlPenalty::Sequence => "kl_control",
            KlPenalty::PerToken => "kl_control_per_token",
        }
    }

    fn loss(&self, batch: &ScoredBatch<B>) -> Result<EstimatorOutput<B>> {
        let beta = self.check_config()?;
        match self.penalty {
            KlPenalty::Sequence => self.sequence_loss(batch, beta),
            KlPenalty::PerToken => self.token_loss(batch, beta),
        }
    }

    /// Steps the adaptive controller with the step's `kl_policy_base` and `n_used`.
    fn update(&mut self, stats: &StepStats) {
        if let (KlCoefficient::Adaptive(c), Some(kl)) =
            (&mut self.coefficient, stats.kl_policy_base)
        {
            c.update(kl, stats.n_used);
        }
    }

    /// `[β]` when β is adaptive.
    fn state(&self) -> Vec<f64> {
        match &self.coefficient {
            KlCoefficient::Adaptive(c) => vec![c.beta()],
            KlCoefficient::Fixed(_) => Vec::new(),
        }
    }

    fn restore(&mut self, state: &[f64]) -> Result<()> {
        match (&mut self.coefficient, state) {
            (KlCoefficient::Fixed(_), []) => Ok(()),
            (KlCoefficient::Adaptive(c), &[beta]) if beta.is_finite() && beta > 0.0 => {
                c.set_beta(beta);
                Ok(())
            }
            _ => Err(crate::Error::InvalidState {
                estimator: "kl_control",
                reason: format!("expected the adaptive β alone, got {state:?}"),
            }),
        }
    }
}
