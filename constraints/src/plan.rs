//! Turning specs into features: [`build`] and the [`Plan`] it returns.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use crate::combinators::{And, Not, Or, Threshold};
use crate::error::{Error, Result};
use crate::external::External;
use crate::feature::{Feature, Sample, score_checked};
use crate::gender::Gender;
use crate::length::{EndsWithEos, Length};
use crate::pattern::Pattern;
use crate::sentiment::Sentiment;
use crate::spec::{ConstraintSpec, ConstraintsSpec, FeatureSpec};
use crate::word::{Word, WordList};

/// A pointwise constraint: b(x) = φ(x) ∈ {0, 1}.
#[derive(Debug)]
pub struct PointwiseConstraint {
    /// The constraint's name.
    pub name: String,
    /// The binary feature.
    pub feature: Box<dyn Feature>,
}

/// A distributional constraint: E_p[φ(x)] = `target`.
#[derive(Debug)]
pub struct MomentConstraint {
    /// The constraint's name.
    pub name: String,
    /// The feature φ.
    pub feature: Box<dyn Feature>,
    /// The target moment μ̄.
    pub target: f64,
}

/// Validated constraints, ready to score: the pointwise ones make b(x) = Π b_i(x), the moment
/// ones give φ(x) and μ̄ for the λ fit. Built by [`build`].
#[derive(Debug, Default)]
pub struct Plan {
    /// The pointwise constraints, in spec order.
    pub pointwise: Vec<PointwiseConstraint>,
    /// The moment constraints, in spec order.
    pub moments: Vec<MomentConstraint>,
}

impl Plan {
    /// The target moments μ̄, one per moment constraint.
    pub fn targets(&self) -> Vec<f64> {
        self.moments.iter().map(|m| m.target).collect()
    }

    /// b(x) = Π b_i(x) for every sample: whether it satisfies every pointwise constraint
    /// (all true without pointwise constraints). Every b_i is checked to be exactly 0 or 1.
    pub fn accepts(&self, samples: &[Sample<'_>]) -> Result<Vec<bool>> {
        let mut ok = vec![true; samples.len()];
        for c in &self.pointwise {
            let b = score_checked(c.feature.as_ref(), samples, true)?;
            ok.iter_mut().zip(b).for_each(|(ok, b)| *ok &= b == 1.0);
        }
        Ok(ok)
    }

    /// log b(x): 0 for accepted samples, -inf for the others.
    pub fn log_b(&self, samples: &[Sample<'_>]) -> Result<Vec<f64>> {
        let ok = self.accepts(samples)?;
        Ok(ok.into_iter().map(|ok| if ok { 0.0 } else { f64::NEG_INFINITY }).collect())
    }

    /// The names of the moment constraints, in order.
    pub fn moment_names(&self) -> Vec<&str> {
        self.moments.iter().map(|m| m.name.as_str()).collect()
    }

    /// φ(x) of the moment constraints, one vector per constraint: `result[k][i]` is feature k
    /// on sample i.
    pub fn moment_features(&self, samples: &[Sample<'_>]) -> Result<Vec<Vec<f64>>> {
        self.moments.iter().map(|m| score_checked(m.feature.as_ref(), samples, false)).collect()
    }

    /// φ(x) of the moment constraints as one row-major `samples.len() × moments.len()` matrix
    /// (row i = sample i), the layout `tilt-ebm` takes for λ fitting.
    pub fn moment_matrix(&self, samples: &[Sample<'_>]) -> Result<Vec<f64>> {
        let columns = self.moment_features(samples)?;
        let k = columns.len();
        let mut matrix = vec![0.0; samples.len() * k];
        for (j, column) in columns.iter().enumerate() {
            for (i, &v) in column.iter().enumerate() {
                matrix[i * k + j] = v;
            }
        }
        Ok(matrix)
    }
}

impl ConstraintsSpec {
    /// [`build`]s these constraints.
    pub fn build(&self, base_dir: &Path) -> Result<Plan> {
        build(&self.constraints, base_dir)
    }
}

/// Validates `specs` and builds their features. Relative paths (word-list files, an external
/// program given as a path) are resolved against `base_dir`, the directory of the config file,
/// which is also the working directory of external programs.
///
/// Every error is [`Error::Spec`] naming the constraint and the field: a duplicate or empty
/// `name`; neither or both of `pointwise = true` and `moment`; a pointwise constraint on a
/// real-valued feature; a moment that is not finite, lies outside the feature's range
/// ([0, 1] for a binary feature) or on a finite end of a real-valued feature's range (e.g.
/// sentiment 1); an empty word or word list, a missing word-list file, an
/// invalid regex, a non-finite threshold, a real-valued feature under `and`/`or`/`not`, an
/// external program that is not found, a non-positive timeout.
///
/// A binary feature with `moment = 1` becomes the pointwise constraint φ, and `moment = 0` the
/// pointwise constraint not φ: the I-projections these targets define (λ = ±∞) are exactly the
/// pointwise targets, which need no λ.
pub fn build(specs: &[ConstraintSpec], base_dir: &Path) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut names = HashSet::new();
    for (index, spec) in specs.iter().enumerate() {
        let shown =
            if spec.name.trim().is_empty() { format!("#{index}") } else { spec.name.clone() };
        let invalid = |field: &str, reason: String| Error::Spec {
            constraint: shown.clone(),
            field: field.to_owned(),
            reason,
        };
        if spec.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty".into()));
        }
        if !names.insert(spec.name.as_str()) {
            return Err(invalid("name", "another constraint has the same name".into()));
        }
        let feature = build_feature(&spec.feature, base_dir, "feature")
            .map_err(|Invalid { field, reason }| invalid(&field, reason))?;
        match (spec.pointwise, spec.moment) {
            (true, Some(_)) => {
                return Err(invalid(
                    "moment",
                    "give either `pointwise = true` or `moment`, not both".into(),
                ));
            }
            (false, None) => {
                return Err(invalid(
                    "moment",
                    "missing: give `moment = <target>` (a distributional constraint) or \
                     `pointwise = true` (b(x) = φ(x))"
                        .into(),
                ));
            }
            (true, None) => {
                if !feature.is_binary() {
                    return Err(invalid(
                        "pointwise",
                        format!(
                            "a pointwise constraint needs a binary feature (values in {{0, 1}}), \
                             but `{}` is real-valued; wrap it in kind = \"threshold\"",
                            feature.name()
                        ),
                    ));
                }
                plan.pointwise.push(PointwiseConstraint { name: spec.name.clone(), feature });
            }
            (false, Some(target)) => {
                check_moment(target, feature.as_ref()).map_err(|r| invalid("moment", r))?;
                let name = spec.name.clone();
                if feature.is_binary() && (target == 0.0 || target == 1.0) {
                    log::info!(
                        "constraint `{name}`: moment {target} of a binary feature is pointwise"
                    );
                    let feature: Box<dyn Feature> =
                        if target == 1.0 { feature } else { Box::new(Not::new(feature)?) };
                    plan.pointwise.push(PointwiseConstraint { name, feature });
                } else {
                    plan.moments.push(MomentConstraint { name, feature, target });
                }
            }
        }
    }
    Ok(plan)
}

/// Why `target` cannot be the moment of `feature`, if it cannot: it is not finite, lies outside
/// the feature's range, or (for a real-valued feature) sits on a finite end of that range,
/// which λ reaches only at ±∞. A binary feature may take 0 and 1: [`build`] makes them
/// pointwise.
fn check_moment(target: f64, feature: &dyn Feature) -> Result<(), String> {
    let ((lo, hi), name) = (feature.bounds(), feature.name());
    if !target.is_finite() {
        return Err(format!("{target} is not a finite number"));
    }
    if target < lo || target > hi {
        return Err(format!("{target} is outside [{lo}, {hi}], the range of `{name}`"));
    }
    if !feature.is_binary() && (target == lo || target == hi) {
        return Err(format!(
            "{target} is on the edge of [{lo}, {hi}], the range of `{name}`: λ would be \
             infinite; give a target inside the range, or require the value with a pointwise \
             constraint (kind = \"threshold\")"
        ));
    }
    Ok(())
}

impl FeatureSpec {
    /// Builds this feature alone (outside a constraint), resolving paths against `base_dir`;
    /// errors are [`Error::Spec`] with `constraint` set to `name`.
    pub fn build(&self, name: &str, base_dir: &Path) -> Result<Box<dyn Feature>> {
        build_feature(self, base_dir, "feature").map_err(|Invalid { field, reason }| Error::Spec {
            constraint: name.to_owned(),
            field,
            reason,
        })
    }
}

/// A field of a feature spec that cannot be built, and why.
struct Invalid {
    field: String,
    reason: String,
}

fn at(field: &str, name: &str) -> impl FnOnce(Error) -> Invalid {
    let field = format!("{field}.{name}");
    move |e| Invalid { field, reason: e.to_string() }
}

fn build_feature(
    spec: &FeatureSpec,
    base_dir: &Path,
    field: &str,
) -> Result<Box<dyn Feature>, Invalid> {
    let invalid = |name: &str, reason: &str| Invalid {
        field: format!("{field}.{name}"),
        reason: reason.to_owned(),
    };
    let children = |specs: &[FeatureSpec], name: &str| -> Result<Vec<Box<dyn Feature>>, Invalid> {
        if specs.is_empty() {
            return Err(invalid(name, "needs at least one feature"));
        }
        specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let child = format!("{field}.{name}[{i}]");
                let f = build_feature(s, base_dir, &child)?;
                require_binary(f, &child)
            })
            .collect()
    };
    Ok(match spec {
        FeatureSpec::Word { word, case_sensitive } => {
            Box::new(Word::new(word, *case_sensitive).map_err(at(field, "word"))?)
        }
        FeatureSpec::Wordlist { words, file, case_sensitive } => match (words, file) {
            (Some(words), None) => {
                Box::new(WordList::new(words, *case_sensitive).map_err(at(field, "words"))?)
            }
            (None, Some(file)) => {
                let path = base_dir.join(file);
                Box::new(WordList::from_file(&path, *case_sensitive).map_err(at(field, "file"))?)
            }
            (Some(_), Some(_)) => return Err(invalid("file", "give `words` or `file`, not both")),
            (None, None) => return Err(invalid("words", "missing: give `words` or `file`")),
        },
        FeatureSpec::Regex { pattern } => {
            Box::new(Pattern::new(pattern).map_err(at(field, "pattern"))?)
        }
        FeatureSpec::Gender { class } => Box::new(Gender::new(*class)),
        FeatureSpec::Length {} => Box::new(Length),
        FeatureSpec::Eos {} => Box::new(EndsWithEos),
        FeatureSpec::Sentiment { score } => Box::new(Sentiment::new(*score)),
        FeatureSpec::Threshold { feature, at: t } => {
            let inner = build_feature(feature, base_dir, &format!("{field}.feature"))?;
            Box::new(Threshold::new(inner, *t).map_err(at(field, "at"))?)
        }
        FeatureSpec::And { features } => {
            Box::new(And::new(children(features, "features")?).map_err(at(field, "features"))?)
        }
        FeatureSpec::Or { features } => {
            Box::new(Or::new(children(features, "features")?).map_err(at(field, "features"))?)
        }
        FeatureSpec::Not { feature } => {
            let child = format!("{field}.feature");
            let inner = require_binary(build_feature(feature, base_dir, &child)?, &child)?;
            Box::new(Not::new(inner).map_err(at(field, "feature"))?)
        }
        FeatureSpec::External { command, timeout_s, binary, allow_nan } => {
            let timeout = match Duration::try_from_secs_f64(*timeout_s) {
                Ok(t) if !t.is_zero() => t,
                _ => return Err(invalid("timeout_s", "must be a positive number of seconds")),
            };
            let dir = (!base_dir.as_os_str().is_empty()).then_some(base_dir);
            let external = External::new(command, dir).map_err(at(field, "command"))?;
            Box::new(external.with_timeout(timeout).with_binary(*binary).with_allow_nan(*allow_nan))
        }
    })
}

fn require_binary(f: Box<dyn Feature>, field: &str) -> Result<Box<dyn Feature>, Invalid> {
    if f.is_binary() {
        Ok(f)
    } else {
        Err(Invalid {
            field: field.to_owned(),
            reason: format!(
                "`{}` is real-valued, but `and`, `or` and `not` need binary features; \
                 wrap it in kind = \"threshold\"",
                f.name()
            ),
        })
    }
}
