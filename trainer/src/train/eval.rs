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
        self.log_samples(&all.texts)
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

    /// Appends the first `eval.samples_to_log` texts to `samples.jsonl` (the writing peer).
    fn log_samples(&mut self, texts: &[String]) -> Result<()> {
        let step = self.step;
        let Some(file) = &mut self.samples_file else { return Ok(()) };
        let k = (self.plan.eval.samples_to_log as usize).min(texts.len());
        for text in &texts[..k] {
            let line = serde_json::json!({ "step": step, "source": "pi", "text": text });
            writeln!(file, "{line}").context("writing samples.jsonl")?;
        }
        file.flush().context("writing samples.jsonl")
    }
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
    put("log_z", report.log_z);
    for (k, v) in &report.batch_moments {
        put(&format!("moment/{k}"), Some(*v));
    }
    m
}
