//! The target: the constraint plan's features, the EBM `P = a · b · exp(λ·φ)` with λ fitted on
//! samples of a, and (reward maximisation) the reward R(x).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use tilt_constraints::{ConstraintSpec, Feature, FeatureSpec, Sample};
use tilt_ebm::{Ebm, FitReport, MomentFit, RowMatrix};

use crate::plan::{LambdaFit, Plan, Reward};

/// The reward of the reward-maximisation estimators.
#[derive(Debug)]
enum RewardFn {
    /// `scale · Π b_i(x)`.
    Constraints(f64),
    /// `scale · φ(x)` of a feature of its own.
    Feature(Box<dyn Feature>, f64),
}

/// Every feature value of a batch, computed once: per constraint (for E\[φ\]), and what the
/// target needs (`log b`, the moment matrix), plus the reward.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct FeatureScores {
    /// φ per constraint name (pointwise b_i and moment features alike), per sample.
    pub by_name: BTreeMap<String, Vec<f64>>,
    /// `Σ_i log b_i(x)`: 0 or `-inf` per sample.
    pub log_b: Vec<f64>,
    /// The moment features, row-major `[n, moments]`.
    pub moments: Vec<f64>,
    /// R(x) (reward-maximisation runs only).
    pub reward: Option<Vec<f64>>,
}

impl FeatureScores {
    /// The scores of several batches, one after the other (the peers' shares, in peer order).
    pub fn concat(parts: Vec<FeatureScores>) -> FeatureScores {
        let mut out = FeatureScores::default();
        for p in parts {
            for (k, v) in p.by_name {
                out.by_name.entry(k).or_default().extend(v);
            }
            out.log_b.extend(p.log_b);
            out.moments.extend(p.moments);
            if let Some(r) = p.reward {
                out.reward.get_or_insert_with(Vec::new).extend(r);
            }
        }
        out
    }

    /// Mean φ per constraint name.
    pub fn means(&self) -> BTreeMap<String, f64> {
        self.by_name
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().sum::<f64>() / v.len().max(1) as f64))
            .collect()
    }
}

/// The constraints and the EBM they define.
#[derive(Debug)]
pub struct Target {
    constraints: tilt_constraints::Plan,
    reward: Option<RewardFn>,
    ebm: Ebm,
    /// The λ fit, when there were moment constraints to fit.
    pub fit: Option<FitReport>,
}

/// Converts the config's raw `[[constraints]]` tables into specs and builds them.
fn build_constraints(plan: &Plan, base_dir: &Path) -> Result<tilt_constraints::Plan> {
    let specs: Vec<ConstraintSpec> = plan
        .constraints
        .iter()
        .map(|t| toml::Value::Table(t.clone()).try_into::<ConstraintSpec>())
        .collect::<Result<_, _>>()
        .context("reading [[constraints]]")?;
    tilt_constraints::build(&specs, base_dir).context("building the constraints")
}

fn build_reward(reward: &Reward, base_dir: &Path) -> Result<RewardFn> {
    Ok(match reward {
        Reward::Constraints { scale } => RewardFn::Constraints(*scale),
        Reward::Feature { feature, scale } => {
            let spec: FeatureSpec =
                toml::Value::Table(feature.clone()).try_into().context("reading reward.feature")?;
            RewardFn::Feature(spec.build("reward", base_dir)?, *scale)
        }
    })
}

impl Target {
    /// Builds the constraints (paths relative to the config file's directory) and the reward.
    /// λ is 0 until [`fit_lambda`](Self::fit_lambda) or [`set_lambda`](Self::set_lambda).
    pub fn new(plan: &Plan) -> Result<Self> {
        let base_dir = plan.config_file.parent().unwrap_or(Path::new("."));
        let constraints = build_constraints(plan, base_dir)?;
        let reward = plan.reward.as_ref().map(|r| build_reward(r, base_dir)).transpose()?;
        // λ is fitted for moment constraints whatever the estimator: RM is evaluated against p too.
        let n_moments = if plan.lambda_fit.is_some() { constraints.moments.len() } else { 0 };
        let ebm =
            if n_moments == 0 { Ebm::pointwise(1) } else { Ebm::hybrid(1, vec![0.0; n_moments])? };
        Ok(Self { constraints, reward, ebm, fit: None })
    }

    /// λ (empty without moment constraints).
    pub fn lambda(&self) -> &[f64] {
        self.ebm.lambda()
    }

    /// Replaces λ (resume).
    pub fn set_lambda(&mut self, lambda: Vec<f64>) -> Result<()> {
        self.ebm.set_lambda(lambda).context("restoring λ")
    }

    /// The moment targets μ̄ and the names of every constraint's target value (pointwise
    /// constraints: 1), for reports.
    pub fn targets(&self) -> BTreeMap<String, f64> {
        let mut t: BTreeMap<String, f64> =
            self.constraints.pointwise.iter().map(|c| (c.name.clone(), 1.0)).collect();
        t.extend(self.constraints.moments.iter().map(|m| (m.name.clone(), m.target)));
        t
    }

    /// The moment targets μ̄, in λ's order.
    pub fn moment_targets(&self) -> Vec<f64> {
        self.constraints.targets()
    }

    /// The last λ fit in one line per moment ([`fit_summary`]), if there was one.
    pub fn fit_text(&self) -> Option<String> {
        let report = self.fit.as_ref()?;
        Some(fit_summary(report, &self.moment_names(), &self.moment_targets()))
    }

    /// The names of the moment constraints, in λ's order.
    pub fn moment_names(&self) -> Vec<String> {
        self.constraints.moment_names().iter().map(|s| s.to_string()).collect()
    }

    /// Whether λ must be fitted.
    pub fn needs_fit(&self) -> bool {
        self.ebm.n_features() > 0
    }

    /// Scores every feature once.
    pub fn score(&self, samples: &[Sample<'_>]) -> Result<FeatureScores> {
        let n = samples.len();
        let mut by_name = BTreeMap::new();
        let mut log_b = vec![0.0; n];
        for c in &self.constraints.pointwise {
            let b = checked(c.feature.as_ref(), samples)?;
            for (lb, v) in log_b.iter_mut().zip(&b) {
                if *v != 1.0 {
                    *lb = f64::NEG_INFINITY;
                }
            }
            by_name.insert(c.name.clone(), b);
        }
        let k = self.constraints.moments.len();
        let mut moments = vec![0.0; n * k];
        for (j, m) in self.constraints.moments.iter().enumerate() {
            let phi = checked(m.feature.as_ref(), samples)?;
            for (i, v) in phi.iter().enumerate() {
                moments[i * k + j] = *v;
            }
            by_name.insert(m.name.clone(), phi);
        }
        let reward = match &self.reward {
            None => None,
            Some(RewardFn::Constraints(scale)) => {
                Some(log_b.iter().map(|lb| if *lb == 0.0 { *scale } else { 0.0 }).collect())
            }
            Some(RewardFn::Feature(f, scale)) => {
                Some(checked(f.as_ref(), samples)?.into_iter().map(|v| v * scale).collect())
            }
        };
        Ok(FeatureScores { by_name, log_b, moments, reward })
    }

    /// `log P(x) = log a(x) + log b(x) + λ·φ(x)` (moments ignored when λ is empty).
    pub fn log_target(&self, log_a: &[f64], scores: &FeatureScores) -> Result<Vec<f64>> {
        let n = log_a.len();
        let d = self.ebm.n_features();
        let features: &[f64] = if d == 0 { &[] } else { &scores.moments };
        let out = self.ebm.log_scores(
            log_a,
            RowMatrix::new(&scores.log_b, n, 1)?,
            RowMatrix::new(features, n, d)?,
        )?;
        Ok(out)
    }

    /// Fits λ with `plan.lambda_fit` on fresh samples of the base model a drawn with
    /// `sampler` (`None`: no moment constraint to fit); in a conditional run (`contexts`) the
    /// samples are shared among the fit's contexts
    /// ([`Contexts::for_fit`](crate::contexts::Contexts::for_fit)).
    pub fn fit_on_samples_of<B: burn::tensor::backend::Backend>(
        &mut self,
        plan: &crate::plan::Plan,
        base: &tilt_policies::Gpt2<B>,
        sampler: &super::rollout::Sampler,
        contexts: Option<&crate::contexts::Contexts>,
        tokenizer: &tilt_policies::Gpt2Tokenizer,
        rng: &mut dyn rand::RngCore,
    ) -> Result<Option<&FitReport>> {
        let Some(settings) = plan.lambda_fit else { return Ok(None) };
        if !self.needs_fit() {
            return Ok(None);
        }
        let n = settings.samples as usize;
        let rows = crate::contexts::fit_rows(contexts, plan.seed, settings.contexts, n);
        let r = sampler.draw(base, &rows, tokenizer, rng)?;
        let scores = self.score(&r.samples())?;
        let groups = crate::contexts::group_sizes(&rows);
        // Samples of a: their log a is the sampler's unmodified-model log-probability.
        self.fit_lambda(&settings, &r.log_sampler, &r.log_model, &scores, &groups).map(Some)
    }

    /// Fits λ on samples of q = a (`log_q` their sampled log-probs, `log_a` the base model's),
    /// in consecutive groups of `group_sizes` samples of one context each (one group in an
    /// unconditional run): λ matches the moments averaged over the contexts, each normalised
    /// by its own Z_c ([`MomentFit::fit_conditional`], which is the pooled fit for one group).
    pub fn fit_lambda(
        &mut self,
        settings: &LambdaFit,
        log_q: &[f64],
        log_a: &[f64],
        scores: &FeatureScores,
        group_sizes: &[usize],
    ) -> Result<&FitReport> {
        let n = log_q.len();
        let d = self.ebm.n_features();
        // Pointwise factors enter the base: P = (a b) exp(λ·φ).
        let log_ab: Vec<f64> = log_a.iter().zip(&scores.log_b).map(|(a, b)| a + b).collect();
        let names = self.moment_names();
        let report = MomentFit::new(self.constraints.targets())
            .feature_names(names.clone())
            .tolerance(settings.tolerance)
            .max_iterations(settings.max_iterations as usize)
            .fit_conditional(log_q, &log_ab, RowMatrix::new(&scores.moments, n, d)?, group_sizes)
            .map_err(|e| name_the_feature(e, &names))
            .context("fitting λ")?;
        anyhow::ensure!(report.converged, "{}", not_converged(&report, &names, settings, n));
        if report.groups_without_support > 0 {
            log::warn!(
                "λ fit: {} of {} contexts left out (none of their samples meets the pointwise \
                 constraints)",
                report.groups_without_support,
                group_sizes.len()
            );
        }
        warn_if_uncertain(&report, &names, &self.constraints.targets());
        self.ebm.set_lambda(report.lambda.clone())?;
        Ok(&*self.fit.insert(report))
    }
}

/// A fit error that points at a feature by index, with the constraint's name added.
fn name_the_feature(e: tilt_ebm::Error, names: &[String]) -> anyhow::Error {
    match &e {
        tilt_ebm::Error::NonFinite { feature: Some(j), .. } if *j < names.len() => {
            anyhow::anyhow!("{e} (constraint `{}`)", names[*j])
        }
        _ => e.into(),
    }
}

/// Why training must not go on with a λ fit that did not converge: its target's moments are
/// not the constraints'.
fn not_converged(report: &FitReport, names: &[String], settings: &LambdaFit, n: usize) -> String {
    format!(
        "fitting λ did not converge: after {} iterations the moments are still {:.2e} from \
         their targets (ESS {:.0} of {n} samples; λ = {}). The targets may be jointly \
         unreachable (outside the convex hull of the sampled features: check the moments \
         of [[constraints]]), or the tolerance ({:e}) too tight for the iterations \
         (lambda_fit.max_iterations = {}); `tilt fit` shows the fit alone",
        report.iterations,
        report.residual,
        report.ess,
        lambda_text(&report.lambda, names),
        settings.tolerance,
        settings.max_iterations,
    )
}

/// `name = value` for each λ.
fn lambda_text(lambda: &[f64], names: &[String]) -> String {
    let pairs = lambda.iter().zip(names).map(|(l, name)| format!("{name} {l:.4}"));
    pairs.collect::<Vec<_>>().join(", ")
}

/// Warns when the fitted target's moments are uncertain: a 95% interval (± 1.96 standard
/// errors, [`FitReport::moment_std_err`]) wider than ± 10% of the target (of 0.1 for targets
/// nearer 0). Hybrid targets fit λ only on the samples that meet the pointwise constraints,
/// which can be few.
fn warn_if_uncertain(report: &FitReport, names: &[String], targets: &[f64]) {
    for ((se, name), target) in report.moment_std_err.iter().zip(names).zip(targets) {
        if 1.96 * se > 0.1 * target.abs().max(0.1) {
            log::warn!(
                "λ[{name}] is uncertain: the fitted target's E[{name}] is {target} ± {se:.3} \
                 (one standard error; ESS {:.0}); more [lambda_fit] samples narrow it",
                report.ess
            );
        }
    }
}

/// The fit in one line per moment: λ, and the fitted target's moment with its standard error.
pub fn fit_summary(report: &FitReport, names: &[String], targets: &[f64]) -> String {
    let lines = report.lambda.iter().enumerate().map(|(j, l)| {
        let name = names.get(j).map_or("?", String::as_str);
        let target = targets.get(j).copied().unwrap_or(f64::NAN);
        let se = report.moment_std_err.get(j).copied().unwrap_or(f64::NAN);
        format!("λ[{name}] = {l:.6}  (E[{name}] under the fitted target: {target} ± {se:.4})")
    });
    lines.collect::<Vec<_>>().join("\n")
}

fn checked(feature: &dyn Feature, samples: &[Sample<'_>]) -> Result<Vec<f64>> {
    let v = feature.score(samples).with_context(|| format!("scoring {}", feature.name()))?;
    anyhow::ensure!(
        v.len() == samples.len(),
        "feature {} returned {} values for {} samples",
        feature.name(),
        v.len(),
        samples.len()
    );
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_finite_feature_is_named_by_its_constraint() {
        let names = vec!["female".to_owned(), "length".to_owned()];
        let e = tilt_ebm::Error::NonFinite {
            what: "features",
            sample: 3,
            feature: Some(1),
            value: f64::NAN,
        };
        assert_eq!(
            name_the_feature(e, &names).to_string(),
            "features is NaN at sample 3, feature 1 (constraint `length`)"
        );
        let other = tilt_ebm::Error::NoSupport { what: "MomentFit", n_samples: 4 };
        let shown = other.to_string();
        assert_eq!(name_the_feature(other, &names).to_string(), shown);
    }
}
