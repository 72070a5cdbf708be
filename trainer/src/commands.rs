//! `tilt sample`, `tilt fit` and `tilt eval`: the pieces of a run, one at a time.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tilt_ebm::{FitReport, LogZ, estimate_log_z, kl_target_model, log_weights, tvd_target_model};
use tilt_policies::{Gpt2, Gpt2Tokenizer};

use crate::cli::BadInput;
use crate::contexts::Contexts;
use crate::plan::{Plan, Sampling};
use crate::report::EvalRecord;
use crate::train::eval::{conditional_metrics, finite, policy_metrics};
use crate::train::load_model;
use crate::train::rollout::{Rollout, Sampler};
use crate::train::target::Target;

/// Rows per sampling call.
const CHUNK: usize = 64;

fn load_tokenizer(path: &Path) -> Result<Gpt2Tokenizer> {
    Gpt2Tokenizer::from_file(path)
        .with_context(|| format!("loading the tokenizer {}", path.display()))
}

/// `tilt sample`: samples from a model directory.
#[derive(Debug, Clone)]
pub struct SampleJob {
    /// The model directory.
    pub model: PathBuf,
    /// The tokenizer file.
    pub tokenizer: PathBuf,
    /// How to sample.
    pub sampling: Sampling,
    /// How many samples.
    pub n: usize,
    /// Seed.
    pub seed: u64,
    /// JSONL output (`None`: print the texts).
    pub output: Option<PathBuf>,
}

impl SampleJob {
    /// Checks the options, naming the flag at fault.
    ///
    /// # Errors
    /// A [`BadInput`] for an out-of-range option or a missing model or tokenizer.
    pub fn validate(&self) -> Result<()> {
        let s = &self.sampling;
        let bad = |m: String| Err(BadInput(m).into());
        if self.n == 0 {
            return bad("-n must be at least 1".into());
        }
        if s.new_tokens == 0 {
            return bad("--new-tokens must be at least 1".into());
        }
        if !(s.temperature.is_finite() && s.temperature > 0.0) {
            return bad(format!("--temperature must be positive, got {}", s.temperature));
        }
        if !(s.top_p > 0.0 && s.top_p <= 1.0) {
            return bad(format!("--top-p must be in (0, 1], got {}", s.top_p));
        }
        if s.top_k == Some(0) {
            return bad("--top-k must be at least 1 (leave it out to disable)".into());
        }
        if s.draw == crate::config::SamplingDraw::Device && (s.top_k.is_some() || s.top_p < 1.0) {
            return bad("--draw device draws with a temperature only: drop --top-k and --top-p, \
                        or use --draw auto or host"
                .into());
        }
        for (flag, p) in [("--model", &self.model), ("--tokenizer", &self.tokenizer)] {
            if !p.exists() {
                return bad(format!("{flag} {}: no such file or directory", p.display()));
            }
        }
        Ok(())
    }
}

impl crate::backend::Job for SampleJob {
    type Output = ();

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let tokenizer = load_tokenizer(&self.tokenizer)?;
        let model: Gpt2<B::InnerBackend> = load_model(&self.model, &device)?;
        let sampler = Sampler::new(&self.sampling, None, &tokenizer, CHUNK)?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let r = sampler.draw_n(&model, self.n, &tokenizer, &mut rng)?;
        match &self.output {
            Some(path) => write_jsonl(path, &r),
            None => {
                let mut out = std::io::stdout().lock();
                for text in &r.texts {
                    writeln!(out, "{}\n", text.trim()).context("writing to stdout")?;
                }
                Ok(())
            }
        }
    }
}

/// One JSON object per sample: its text, token ids and log-probabilities under the sampling
/// distribution and under the unmodified model.
fn write_jsonl(path: &Path, r: &Rollout) -> Result<()> {
    let mut text = String::new();
    for i in 0..r.len() {
        let line = serde_json::json!({
            "text": r.texts[i],
            "tokens": r.tokens[i],
            "log_prob": r.log_sampler[i],
            "log_prob_model": r.log_model[i],
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// `tilt fit`: fits λ for a config's distributional constraints.
#[derive(Debug, Clone)]
pub struct FitJob {
    /// The plan.
    pub plan: Plan,
}

/// What `tilt fit` found: the report, and the names and targets of the moment constraints
/// in λ's order.
#[derive(Debug, Clone)]
pub struct Fit {
    /// The fit report.
    pub report: FitReport,
    /// The moment constraints' names.
    pub names: Vec<String>,
    /// Their targets μ̄.
    pub targets: Vec<f64>,
}

impl crate::backend::Job for FitJob {
    type Output = Fit;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<Fit> {
        let plan = &self.plan;
        let mut target = Target::new(plan)?;
        if plan.lambda_fit.is_none() || !target.needs_fit() {
            return Err(BadInput(format!(
                "{}: no distributional constraint (`moment = x`) with a distribution-matching \
                 estimator: there is no λ to fit",
                plan.config_file.display()
            ))
            .into());
        }
        let tokenizer = load_tokenizer(&plan.tokenizer)?;
        let base: Gpt2<B::InnerBackend> = load_model(&plan.base_model, &device)?;
        let contexts = Contexts::of_plan(plan)?;
        let sampler = Sampler::new(&plan.sampling, contexts.as_ref(), &tokenizer, CHUNK)?;
        let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
        let report = target
            .fit_on_samples_of(plan, &base, &sampler, contexts.as_ref(), &tokenizer, &mut rng)?
            .expect("a fit was needed")
            .clone();
        Ok(Fit { report, names: target.moment_names(), targets: target.moment_targets() })
    }
}

/// The text `tilt fit` prints.
pub fn fit_report_text(fit: &Fit) -> String {
    let report = &fit.report;
    let mut s = crate::train::target::fit_summary(report, &fit.names, &fit.targets);
    s.push_str(
        "\n(± one standard error: how far the fitted target's true moments may be from the \
         targets, λ being fitted on finitely many samples)\n",
    );
    s.push_str(&format!(
        "iterations {}, max |μ̂ − μ̄| = {:.2e}, ESS {:.1}, {}",
        report.iterations,
        report.residual,
        report.ess,
        if report.converged { "converged" } else { "NOT converged" }
    ));
    s
}

/// `tilt eval`: the evaluation metrics of a model against a config's target.
#[derive(Debug, Clone)]
pub struct EvalJob {
    /// The plan (target, base model, eval settings).
    pub plan: Plan,
    /// The model evaluated.
    pub model: PathBuf,
}

impl crate::backend::Job for EvalJob {
    /// The metrics, and the targets of the constraints (for the printed table).
    type Output = (EvalRecord, BTreeMap<String, f64>);

    /// Fits λ (if the target has moments), then on fresh samples of the model π: with the
    /// evaluation top-p, E_π\[φ\], KL(π‖a), fluency and diversity; with the training sampler (π
    /// as its own proposal), Z, ESS, KL(p‖π) and TVD(p,π) with a self-normalised Z.
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<Self::Output> {
        let plan = &self.plan;
        let tokenizer = load_tokenizer(&plan.tokenizer)?;
        let base: Gpt2<B::InnerBackend> = load_model(&plan.base_model, &device)?;
        let pi: Gpt2<B::InnerBackend> = load_model(&self.model, &device)?;
        let mut target = Target::new(plan)?;
        let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
        let contexts = Contexts::of_plan(plan)?;
        let sampler = Sampler::new(&plan.sampling, contexts.as_ref(), &tokenizer, CHUNK)?;
        target.fit_on_samples_of(plan, &base, &sampler, contexts.as_ref(), &tokenizer, &mut rng)?;
        let rows = |n: u64| crate::contexts::eval_rows(contexts.as_ref(), n as usize);
        let mut record = EvalRecord::default();
        let eval_sampler = sampler.with_top_p(plan.eval.top_p);
        let r = eval_sampler.draw(&pi, &rows(plan.eval.samples), &tokenizer, &mut rng)?;
        policy_metrics(&r, &base, &target, &plan.eval, &device, &mut record)?;
        let proposal_rows = rows(plan.eval.proposal_samples);
        let r = sampler.draw(&pi, &proposal_rows, &tokenizer, &mut rng)?;
        let log_a = crate::train::rollout::log_probs(&base, &r, &device)?;
        let scores = target.score(&r.samples())?;
        let log_p = target.log_target(&log_a, &scores)?;
        let (log_q, log_pi) = (&r.log_sampler, &r.log_model);
        if contexts.is_some() {
            conditional_metrics(&log_p, log_q, log_pi, &proposal_rows, &mut record)?;
            return Ok((record, target.targets()));
        }
        let z = estimate_log_z(&log_weights(&log_p, log_q)?)?;
        record.ess = Some(z.ess);
        record.z = finite(z.log_z.exp());
        record.extra.insert("log_z".into(), z.log_z.into());
        if z.log_z.is_finite() {
            let sn = LogZ::SelfNormalized;
            record.kl_p_pi = finite(kl_target_model(&log_p, log_q, log_pi, sn)?.value);
            record.tvd_p_pi = finite(tvd_target_model(&log_p, log_q, log_pi, sn)?.value);
        } else {
            log::warn!(
                "no sample of the model has P > 0: Z and the divergences from p are unknown"
            );
        }
        record.extra.insert("lambda".into(), serde_json::json!(target.lambda()));
        Ok((record, target.targets()))
    }
}

/// The text `tilt eval` prints: one metric per line, with the targets of the moments.
pub fn eval_text(record: &EvalRecord, targets: &BTreeMap<String, f64>) -> String {
    let mut lines = Vec::new();
    for (name, m) in &record.moments {
        let t = targets.get(name).map_or(String::new(), |t| format!("  (target {t})"));
        lines.push(format!("E[φ] {name:<16} {m:.4}{t}"));
    }
    let rows: [(&str, Option<f64>); 12] = [
        ("KL(p‖π)", record.kl_p_pi),
        ("TVD(p,π)", record.tvd_p_pi),
        ("KL(π‖a)", record.kl_pi_a),
        ("Z", record.z),
        ("ESS", record.ess),
        ("mean log a(x)", record.mean_log_a),
        ("Distinct-1", record.distinct_1),
        ("Distinct-2", record.distinct_2),
        ("Distinct-3", record.distinct_3),
        ("Self-BLEU-3", record.self_bleu_3),
        ("Self-BLEU-4", record.self_bleu_4),
        ("Self-BLEU-5", record.self_bleu_5),
    ];
    for (name, v) in rows {
        if let Some(v) = v {
            lines.push(format!("{name:<21} {v:.4}"));
        }
    }
    lines.join("\n")
}
