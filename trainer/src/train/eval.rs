//! Evaluation on fresh samples (METHODS §5): from π (with the evaluation top-p) for E\[φ\],
//! KL(π‖a), fluency and diversity; from the training sampler (q off-policy, π on-policy), or
//! from a for reward maximisation, for the importance-sampled KL(p‖π), KL(p‖q), TVD, Z and ESS.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use tilt_ebm::{
    LogZ, estimate_log_z, kl_model_base, kl_target_model, log_weights, tvd_target_model,
};
use tilt_policies::Gpt2;

use super::Run;
use super::rollout::{self, Rollout};
use super::target::{FeatureScores, Target};
use crate::config::EvalConfig;
use crate::metrics::diversity;
use crate::report::EvalRecord;

pub(crate) fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

impl<B: AutodiffBackend> Run<B> {
    /// Evaluates π (and q) now and returns the record (not yet written).
    ///
    /// In a conditional run every evaluation draws the same evaluation contexts, in equal
    /// shares, and the importance-sampled metrics are per context ([`conditional_metrics`]).
    pub(super) fn evaluate(&mut self) -> Result<EvalRecord> {
        let mut record = EvalRecord {
            step: self.step,
            samples_seen: self.samples_seen,
            elapsed_s: Some(self.started.elapsed().as_secs_f64()),
            ..EvalRecord::default()
        };
        self.evaluate_policy(&mut record).context("evaluating π")?;
        self.evaluate_importance(&mut record).context("importance-sampled metrics")?;
        Ok(record)
    }

    /// Samples from π with the evaluation top-p: E_π\[φ\], KL(π‖a), mean log a, diversity
    /// (each peer draws its share; the metrics are computed on all of them).
    fn evaluate_policy(&mut self, record: &mut EvalRecord) -> Result<()> {
        let n = self.plan.eval.samples as usize;
        let sampler = self.sampler.with_top_p(self.plan.eval.top_p);
        let pi = self.policy.valid();
        let r = self.draw_eval(&sampler, &pi, n)?;
        let mine = PolicySamples::score(&r, &self.base, &self.target, &self.inner_device())?;
        let all = PolicySamples::concat(self.gather(mine, "the evaluation samples")?);
        all.metrics(&self.plan.eval, record)?;
        let contexts = crate::contexts::eval_rows(self.contexts.as_ref(), n);
        self.log_samples(&all.texts, &contexts)
    }

    /// Importance-sampled metrics: Z (pooled into the tracker), ESS, KL(p‖π), KL(p‖q),
    /// TVD(p,π), TVD(p,q), E_q\[φ\]. The samples come from the training sampler (q
    /// off-policy, π for on-policy distribution matching) or, for reward maximisation, from a:
    /// an RM policy may put no mass where p has some (it is not trained toward p), and
    /// importance sampling from π then misses that part of p and reports a KL(p‖π) far too
    /// low, while a covers p by construction (p ≪ a).
    fn evaluate_importance(&mut self, record: &mut EvalRecord) -> Result<()> {
        let n = self.plan.eval.proposal_samples as usize;
        let inner = self.inner_device();
        let from_base = !self.plan.estimator.is_distribution_matching();
        let sampler_model = match &self.proposal {
            _ if from_base => self.base.clone(),
            Some(q) => q.clone(),
            None => self.policy.valid(),
        };
        let sampler = self.sampler.clone();
        let r = self.draw_eval(&sampler, &sampler_model, n)?;
        let log_a = if from_base {
            r.log_model.clone()
        } else {
            self.base_log_probs_of_sampler_samples(&r)?
        };
        let scores = self.target.score(&r.samples())?;
        let log_p = self.target.log_target(&log_a, &scores)?;
        let log_pi = if self.proposal.is_some() || from_base {
            rollout::log_probs(&self.policy.valid(), &r, &inner)?
        } else {
            r.log_sampler.clone()
        };
        let mine = ([log_p, r.log_sampler.clone(), log_pi], scores);
        let all = self.gather(mine, "the importance samples")?;
        let ([log_p, log_q, log_pi], scores) = super::concat_scored(all);
        if let Some(c) = &self.contexts {
            return conditional_metrics(&log_p, &log_q, &log_pi, &c.for_eval(n), record);
        }
        if self.proposal.is_some() {
            record.moments_q = scores.means();
        }
        let batch = estimate_log_z(&log_weights(&log_p, &log_q)?)?;
        self.z.push(&log_p, &log_q)?;
        record.ess = Some(batch.ess);
        let Some(log_z) = self.z.log_z() else {
            log::warn!("no sample with P > 0 yet: Z and the divergences from p are unknown");
            return Ok(());
        };
        let z = self.z.estimate();
        record.z = finite(z.z());
        record.z_stderr = finite(z.se_z());
        let known = LogZ::Known(log_z);
        record.kl_p_pi = finite(kl_target_model(&log_p, &log_q, &log_pi, known)?.value);
        record.tvd_p_pi = finite(tvd_target_model(&log_p, &log_q, &log_pi, known)?.value);
        if self.proposal.is_some() {
            record.kl_p_q = finite(kl_target_model(&log_p, &log_q, &log_q, known)?.value);
            record.tvd_p_q = finite(tvd_target_model(&log_p, &log_q, &log_q, known)?.value);
        }
        record.extra.insert("log_z".into(), log_z.into());
        record.extra.insert("proposals".into(), (self.z.proposals() as u64).into());
        Ok(())
    }

    /// Appends `eval.samples_to_log` texts to `samples.jsonl` (the writing peer): the first
    /// ones, or in a conditional run one of each evaluation context in turn, each with its
    /// context.
    fn log_samples(&mut self, texts: &[String], contexts: &[usize]) -> Result<()> {
        let step = self.step;
        let picked = round_robin(contexts, self.plan.eval.samples_to_log as usize);
        let Some(file) = &mut self.samples_file else { return Ok(()) };
        for i in picked {
            let mut line = serde_json::json!({ "step": step, "source": "pi", "text": texts[i] });
            if let Some(c) = &self.contexts {
                line["context"] = c.texts[contexts[i]].clone().into();
            }
            writeln!(file, "{line}").context("writing samples.jsonl")?;
        }
        file.flush().context("writing samples.jsonl")
    }
}

/// `k` sample indices taking one sample of each context in turn (the contexts' samples are
/// contiguous), in order within a context: the first `k` when there is one context.
fn round_robin(contexts: &[usize], k: usize) -> Vec<usize> {
    let mut rank = vec![0; contexts.len()];
    for i in 1..contexts.len() {
        if contexts[i] == contexts[i - 1] {
            rank[i] = rank[i - 1] + 1;
        }
    }
    let mut order: Vec<usize> = (0..contexts.len()).collect();
    order.sort_by_key(|&i| (rank[i], i));
    order.truncate(k);
    order
}

/// The importance-sampled metrics of a conditional run, from samples of q(·|c) grouped by
/// context: per evaluation context, the self-normalised KL(p_c‖π_c) and TVD(p_c, π_c) with
/// its own Ẑ_c; `kl_p_pi` and `tvd_p_pi` are their means over the contexts (E_c KL(p_c‖π_c),
/// the CDPG objective), `ess` the sum of the contexts' ESS. A context none of whose samples
/// has P > 0 has an unknown Z_c: it is left out and counted (`contexts_without_support`).
pub(crate) fn conditional_metrics(
    log_p: &[f64],
    log_q: &[f64],
    log_pi: &[f64],
    contexts: &[usize],
    record: &mut EvalRecord,
) -> Result<()> {
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &c) in contexts.iter().enumerate() {
        groups.entry(c).or_default().push(i);
    }
    let (mut kl, mut tvd, mut log_z, mut ess, mut supported) = (0.0, 0.0, 0.0, 0.0, 0usize);
    for members in groups.values() {
        let pick = |v: &[f64]| members.iter().map(|&i| v[i]).collect::<Vec<_>>();
        let (lp, lq, lpi) = (pick(log_p), pick(log_q), pick(log_pi));
        let z = estimate_log_z(&log_weights(&lp, &lq)?)?;
        ess += z.ess;
        if !z.log_z.is_finite() {
            continue;
        }
        let sn = LogZ::SelfNormalized;
        kl += kl_target_model(&lp, &lq, &lpi, sn)?.value;
        tvd += tvd_target_model(&lp, &lq, &lpi, sn)?.value;
        log_z += z.log_z;
        supported += 1;
    }
    record.ess = Some(ess);
    record.extra.insert("contexts".into(), (groups.len() as u64).into());
    record
        .extra
        .insert("contexts_without_support".into(), ((groups.len() - supported) as u64).into());
    if supported == 0 {
        log::warn!("no evaluation context has a sample with P > 0: the divergences are unknown");
        return Ok(());
    }
    let k = supported as f64;
    record.kl_p_pi = finite(kl / k);
    record.tvd_p_pi = finite(tvd / k);
    if let Some(v) = finite(log_z / k) {
        record.extra.insert("mean_log_z_c".into(), v.into());
    }
    Ok(())
}

/// The metrics of samples `r` of a policy π drawn with the evaluation sampler: E_π\[φ\],
/// KL(π‖a) (with π's unwarped log-probabilities: exact when `eval.top_p` = 1), mean log a
/// (fluency), Distinct-n and Self-BLEU.
pub(crate) fn policy_metrics<B: Backend>(
    r: &Rollout,
    base: &Gpt2<B>,
    target: &Target,
    eval: &EvalConfig,
    device: &B::Device,
    record: &mut EvalRecord,
) -> Result<()> {
    PolicySamples::score(r, base, target, device)?.metrics(eval, record)
}

/// What the policy metrics need of each sample of π (the peers exchange these).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct PolicySamples {
    log_model: Vec<f64>,
    log_a: Vec<f64>,
    scores: FeatureScores,
    texts: Vec<String>,
}

impl PolicySamples {
    fn score<B: Backend>(
        r: &Rollout,
        base: &Gpt2<B>,
        target: &Target,
        device: &B::Device,
    ) -> Result<Self> {
        Ok(Self {
            log_model: r.log_model.clone(),
            log_a: rollout::log_probs(base, r, device)?,
            scores: target.score(&r.samples())?,
            texts: r.texts.clone(),
        })
    }

    fn concat(parts: Vec<Self>) -> Self {
        let mut out = Self::default();
        let mut scores = Vec::with_capacity(parts.len());
        for p in parts {
            out.log_model.extend(p.log_model);
            out.log_a.extend(p.log_a);
            out.texts.extend(p.texts);
            scores.push(p.scores);
        }
        out.scores = FeatureScores::concat(scores);
        out
    }

    fn metrics(&self, eval: &EvalConfig, record: &mut EvalRecord) -> Result<()> {
        let n = self.log_a.len();
        record.moments = self.scores.means();
        record.kl_pi_a = finite(kl_model_base(&self.log_model, &self.log_a)?.value);
        record.mean_log_a = finite(self.log_a.iter().sum::<f64>() / n.max(1) as f64);
        let d = diversity(&self.texts, eval.diversity_tokens, eval.self_bleu_samples as usize);
        [record.distinct_1, record.distinct_2, record.distinct_3] = d.distinct;
        [record.self_bleu_3, record.self_bleu_4, record.self_bleu_5] = d.self_bleu;
        Ok(())
    }
}

/// The estimator's step statistics as extra metrics (`train/…`, measured on the training
/// batch, which comes from q off-policy and π on-policy).
pub fn step_metrics(report: &super::step::StepReport) -> BTreeMap<String, serde_json::Value> {
    let s = &report.stats;
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: Option<f64>| {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            m.insert(format!("train/{k}"), serde_json::Value::from(v));
        }
    };
    put("loss", Some(s.loss));
    put("lr", Some(report.lr));
    put("grad_norm", Some(report.grad_norm));
    put("advantage_mean", Some(s.advantage_mean));
    put("advantage_std", Some(s.advantage_std));
    put("ess_target", s.ess_target);
    put("ess_policy", s.ess_policy);
    put("zero_target_fraction", s.zero_target_fraction);
    put("beta", s.beta);
    put("kl_policy_base", s.kl_policy_base);
    put("value_loss", s.value_loss);
    put("value_explained_variance", s.value_explained_variance);
    put("contexts_skipped", s.contexts_skipped.map(|n| n as f64));
    put("log_z", report.log_z);
    for (k, v) in &report.batch_moments {
        put(&format!("moment/{k}"), Some(*v));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_takes_one_sample_of_each_context_in_turn() {
        assert_eq!(round_robin(&[4, 4, 4, 1, 1, 7], 4), [0, 3, 5, 1]);
        assert_eq!(round_robin(&[0; 5], 3), [0, 1, 2]);
        assert_eq!(round_robin(&[2, 2], 9), [0, 1]);
    }

    #[test]
    fn conditional_metrics_average_per_context_divergences() {
        // Context 0: π = p exactly (log p − log π = 0 on every sample, q = π): KL 0, TVD 0.
        // Context 1: every sample has P = 0: Z_1 is unknown, the context is left out.
        let log_p = [-1.0, -2.0, f64::NEG_INFINITY, f64::NEG_INFINITY];
        let log_q = [-1.0, -2.0, -0.5, -0.9];
        let mut record = EvalRecord::default();
        conditional_metrics(&log_p, &log_q, &log_q, &[0, 0, 1, 1], &mut record).unwrap();
        assert!(record.kl_p_pi.unwrap().abs() < 1e-12);
        assert!(record.tvd_p_pi.unwrap().abs() < 1e-12);
        assert_eq!(record.extra["contexts"], 2);
        assert_eq!(record.extra["contexts_without_support"], 1);
        assert!((record.extra["mean_log_z_c"].as_f64().unwrap()).abs() < 1e-12);
        assert!((record.ess.unwrap() - 2.0).abs() < 1e-12);
    }
}
