//! The energy-based target `P(x) = a(x) · Π_i b_i(x) · exp(λ · φ(x))`, scored in log space.

use crate::matrix::{check_len, check_log_scores};
use crate::{Error, Result, RowMatrix};

/// Which family an [`Ebm`] belongs to (METHODS §1).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum TargetKind {
    /// `P = a · Π b_i`: pointwise constraints only (no λ).
    Pointwise,
    /// `P = a · exp(λ · φ)`: the I-projection of `a` onto moment constraints.
    Distributional,
    /// Both pointwise factors and moment constraints.
    Hybrid,
    /// `P = a · exp(r / β)`: the target whose reverse KL equals KL-regularised reward
    /// maximisation (the paper's Theorem 1). One feature, the reward r, with λ = 1/β.
    KlControl {
        /// The KL coefficient β > 0.
        beta: f64,
    },
}

/// An unnormalised target `log P(x) = log a(x) + Σ_i log b_i(x) + λ · φ(x)`.
///
/// The `Ebm` holds only λ and the shape of the target; per-sample inputs (log a from the base
/// model, log b_i from pointwise constraints, φ from features) are passed to
/// [`log_score`](Self::log_score) / [`log_scores`](Self::log_scores). A pointwise factor
/// `b_i(x) = 0` is `log b_i = -inf` and makes `log P = -inf` (P = 0 exactly), whatever λ · φ is.
#[derive(Debug, Clone, PartialEq)]
pub struct Ebm {
    kind: TargetKind,
    n_pointwise: usize,
    lambda: Vec<f64>,
}

impl Ebm {
    /// `P = a · Π_{i < n_constraints} b_i`.
    pub fn pointwise(n_constraints: usize) -> Self {
        Self { kind: TargetKind::Pointwise, n_pointwise: n_constraints, lambda: Vec::new() }
    }

    /// `P = a · exp(λ · φ)`. Fails on a non-finite λ.
    pub fn distributional(lambda: Vec<f64>) -> Result<Self> {
        check_lambda(&lambda)?;
        Ok(Self { kind: TargetKind::Distributional, n_pointwise: 0, lambda })
    }

    /// `P = a · Π_{i < n_pointwise} b_i · exp(λ · φ)`. Fails on a non-finite λ.
    pub fn hybrid(n_pointwise: usize, lambda: Vec<f64>) -> Result<Self> {
        check_lambda(&lambda)?;
        Ok(Self { kind: TargetKind::Hybrid, n_pointwise, lambda })
    }

    /// `P = a · exp(r / β)` with the reward r passed as the single feature. Fails unless
    /// `0 < β < inf`.
    pub fn kl_control(beta: f64) -> Result<Self> {
        if !(beta > 0.0 && beta.is_finite()) {
            return Err(Error::InvalidParameter {
                name: "beta",
                value: beta,
                reason: "the KL coefficient must be positive and finite",
            });
        }
        Ok(Self { kind: TargetKind::KlControl { beta }, n_pointwise: 0, lambda: vec![1.0 / beta] })
    }

    /// The family of this target.
    pub fn kind(&self) -> TargetKind {
        self.kind
    }

    /// The coefficients λ (one per feature; `[1/β]` for KL-control).
    pub fn lambda(&self) -> &[f64] {
        &self.lambda
    }

    /// Number of features φ the target expects.
    pub fn n_features(&self) -> usize {
        self.lambda.len()
    }

    /// Number of pointwise factors b_i the target expects.
    pub fn n_pointwise(&self) -> usize {
        self.n_pointwise
    }

    /// Replaces λ (e.g. with a [`FitReport`](crate::FitReport)'s). Fails if the length changes
    /// or a value is not finite. For KL-control, sets β = 1/λ.
    pub fn set_lambda(&mut self, lambda: Vec<f64>) -> Result<()> {
        check_len("lambda", self.lambda.len(), lambda.len())?;
        check_lambda(&lambda)?;
        if let TargetKind::KlControl { beta } = &mut self.kind {
            if lambda[0] <= 0.0 {
                return Err(Error::InvalidParameter {
                    name: "lambda",
                    value: lambda[0],
                    reason: "a KL-control target needs 1/beta > 0",
                });
            }
            *beta = 1.0 / lambda[0];
        }
        self.lambda = lambda;
        Ok(())
    }

    /// `log P(x)` for one sample: `log_base` = log a(x), `log_pointwise` = the log b_i(x)
    /// (`-inf` for b_i = 0), `features` = φ(x).
    ///
    /// Fails on wrong lengths, NaN or `+inf` in `log_base`/`log_pointwise`, or non-finite φ.
    pub fn log_score(&self, log_base: f64, log_pointwise: &[f64], features: &[f64]) -> Result<f64> {
        check_len("log_pointwise (per sample)", self.n_pointwise, log_pointwise.len())?;
        check_len("features (per sample)", self.lambda.len(), features.len())?;
        check_log_scores("log_base", &[log_base])?;
        if let Some(i) = log_pointwise.iter().position(|v| v.is_nan() || *v == f64::INFINITY) {
            return Err(Error::NonFinite {
                what: "log_pointwise",
                sample: 0,
                feature: Some(i),
                value: log_pointwise[i],
            });
        }
        if let Some(j) = features.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: "features",
                sample: 0,
                feature: Some(j),
                value: features[j],
            });
        }
        Ok(self.score_unchecked(log_base, log_pointwise, features))
    }

    /// `log P(x_k)` for a batch: `log_base[k]`, row k of `log_pointwise` (`n × n_pointwise`)
    /// and row k of `features` (`n × n_features`).
    pub fn log_scores(
        &self,
        log_base: &[f64],
        log_pointwise: RowMatrix<'_>,
        features: RowMatrix<'_>,
    ) -> Result<Vec<f64>> {
        let n = log_base.len();
        check_len("log_pointwise rows", n, log_pointwise.rows())?;
        check_len("log_pointwise columns", self.n_pointwise, log_pointwise.cols())?;
        check_len("features rows", n, features.rows())?;
        check_len("features columns", self.lambda.len(), features.cols())?;
        check_log_scores("log_base", log_base)?;
        if let Some(k) = log_pointwise.data().iter().position(|v| v.is_nan() || *v == f64::INFINITY)
        {
            return Err(Error::NonFinite {
                what: "log_pointwise",
                sample: k / self.n_pointwise,
                feature: Some(k % self.n_pointwise),
                value: log_pointwise.data()[k],
            });
        }
        features.check_finite("features")?;
        Ok((0..n)
            .map(|k| {
                let lp = if self.n_pointwise == 0 { &[][..] } else { log_pointwise.row(k) };
                let f = if self.lambda.is_empty() { &[][..] } else { features.row(k) };
                self.score_unchecked(log_base[k], lp, f)
            })
            .collect())
    }

    fn score_unchecked(&self, log_base: f64, log_pointwise: &[f64], features: &[f64]) -> f64 {
        let log_b: f64 = log_pointwise.iter().sum();
        let head = log_base + log_b;
        if head == f64::NEG_INFINITY {
            return f64::NEG_INFINITY;
        }
        head + self.lambda.iter().zip(features).map(|(l, f)| l * f).sum::<f64>()
    }
}

/// The log of a pointwise constraint's value: 0 when satisfied, `-inf` when not.
pub fn log_indicator(satisfied: bool) -> f64 {
    if satisfied { 0.0 } else { f64::NEG_INFINITY }
}

fn check_lambda(lambda: &[f64]) -> Result<()> {
    match lambda.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(j) => Err(Error::InvalidParameter {
            name: "lambda",
            value: lambda[j],
            reason: "every coefficient must be finite",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn scores_each_family() {
        let ebm = Ebm::hybrid(2, vec![0.5, -1.0]).unwrap();
        assert_relative_eq!(ebm.log_score(-3.0, &[0.0, 0.0], &[2.0, 1.0]).unwrap(), -3.0);
        assert_eq!(
            ebm.log_score(-3.0, &[0.0, log_indicator(false)], &[2.0, 1.0]).unwrap(),
            f64::NEG_INFINITY
        );
        let kl = Ebm::kl_control(0.5).unwrap();
        assert_relative_eq!(kl.log_score(-1.0, &[], &[3.0]).unwrap(), -1.0 + 6.0);
        assert_eq!(kl.kind(), TargetKind::KlControl { beta: 0.5 });
        assert!(Ebm::kl_control(0.0).is_err());
        let pw = Ebm::pointwise(1);
        assert_eq!(pw.log_score(-2.0, &[0.0], &[]).unwrap(), -2.0);
        assert_eq!(pw.log_score(f64::NEG_INFINITY, &[0.0], &[]).unwrap(), f64::NEG_INFINITY);
    }

    #[test]
    fn batch_matches_single_and_rejects_bad_input() {
        let ebm = Ebm::hybrid(1, vec![2.0]).unwrap();
        let lp = [0.0, f64::NEG_INFINITY, 0.0];
        let f = [1.0, 5.0, -1.0];
        let out = ebm
            .log_scores(
                &[-1.0, -2.0, -3.0],
                RowMatrix::new(&lp, 3, 1).unwrap(),
                RowMatrix::new(&f, 3, 1).unwrap(),
            )
            .unwrap();
        assert_eq!(out, vec![1.0, f64::NEG_INFINITY, -5.0]);
        let bad = [1.0, f64::INFINITY, 0.0];
        let err = ebm
            .log_scores(
                &[-1.0, -2.0, -3.0],
                RowMatrix::new(&lp, 3, 1).unwrap(),
                RowMatrix::new(&bad, 3, 1).unwrap(),
            )
            .unwrap_err();
        assert_eq!(err.to_string(), "features is inf at sample 1, feature 0");
        assert!(matches!(
            ebm.log_score(0.0, &[], &[1.0]),
            Err(Error::DimensionMismatch { expected: 1, got: 0, .. })
        ));
        let mut kl = Ebm::kl_control(2.0).unwrap();
        kl.set_lambda(vec![0.25]).unwrap();
        assert_eq!(kl.kind(), TargetKind::KlControl { beta: 4.0 });
    }
}
