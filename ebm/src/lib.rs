//! Energy-based targets for tilt: the exact mathematics of distribution matching, with no
//! neural network in sight (plain `f64` slices, log space throughout).
//!
//! tilt fine-tunes a language model `a` towards a target `p = P / Z` given as an unnormalised
//! energy-based model (METHODS §1):
//!
//! ```text
//! log P(x) = log a(x) + Σ_i log b_i(x) + λ · φ(x)
//! ```
//!
//! with pointwise constraints `b_i(x) ∈ {0, 1}` (P = 0 is `log P = -inf`), moment constraints
//! on features φ, or the KL-control target `a(x) exp(r(x)/β)`. This crate holds:
//!
//! * [`Ebm`]: the target and its scores, for pointwise, distributional, hybrid and
//!   KL-control targets.
//! * [`MomentFit`]: fits λ so that the self-normalised importance-sampling moments of φ under
//!   `p_λ` equal targets μ̄, from samples of any proposal, by Newton–CG on the convex dual;
//!   returns a [`FitReport`]. Infeasible targets are errors that name the feature.
//!   [`MomentFit::fit_conditional`] fits conditional moments over contexts (prompts), each
//!   context normalised by its own Z_c.
//! * Partition function: [`estimate_log_z`] (importance sampling, with standard errors and
//!   ESS) and [`PooledZ`] (unbiased across a sequence of changing proposals).
//! * Divergences with standard errors: [`kl_target_model`], [`kl_target_proposal`],
//!   [`tvd_target_model`], [`js_target_model`] from proposal samples, and [`kl_model_base`]
//!   from model samples; [`LogZ`] says whether Z is given (unbiased when exact) or self-normalised.
//! * Quasi-rejection sampling: [`Qrs`] accepts proposal samples with probability
//!   `min(1, P/(βq))`, reports acceptance, KL/TVD and moments of `p_β`, chooses β for a target
//!   acceptance rate, and is exact rejection sampling when β bounds P/q.
//! * Log-space helpers: [`log_sum_exp`], [`log_mean_exp`], [`effective_sample_size`], ...
//!
//! Every estimator treats terms with P = 0 as 0 (never NaN), and handles log weights of ±1000.
//!
//! # Example
//!
//! Fit λ so that a binary feature fires 50% of the time under `p_λ ∝ a e^{λφ}`, from samples
//! of `a` itself (q = a), then measure Z and KL(p ‖ a):
//!
//! ```
//! use tilt_ebm::{Ebm, LogZ, MomentFit, RowMatrix, estimate_log_z, kl_target_proposal, log_weights};
//!
//! # fn main() -> tilt_ebm::Result<()> {
//! // Six samples from a: log a(x_i) and the feature φ(x_i) ("the text mentions a woman").
//! let log_a = [-2.0, -1.5, -3.0, -2.2, -1.0, -2.5];
//! let phi = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];
//! let features = RowMatrix::new(&phi, 6, 1)?;
//!
//! // q = a: the proposal is the base model.
//! let report = MomentFit::new(vec![0.5]).fit(&log_a, &log_a, features)?;
//! assert!(report.converged);
//! // Two of six samples fire, so λ = ln 2 reweights them to one half.
//! assert!((report.lambda[0] - 2f64.ln()).abs() < 1e-6);
//!
//! let ebm = Ebm::distributional(report.lambda)?;
//! let log_p = ebm.log_scores(&log_a, RowMatrix::empty(6), features)?;
//! let z = estimate_log_z(&log_weights(&log_p, &log_a)?)?;
//! assert!((z.log_z - (4.0f64 / 3.0).ln()).abs() < 1e-9); // mean of (2, 1, 1, 2, 1, 1)
//! let kl = kl_target_proposal(&log_p, &log_a, LogZ::SelfNormalized)?;
//! assert!(kl.value > 0.0 && kl.se.is_finite());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod divergence;
mod dual;
mod error;
mod estimate;
mod logspace;
mod matrix;
mod moment_fit;
mod partition;
mod qrs;
mod target;

pub use crate::{
    divergence::{
        LogZ, js_target_model, kl_model_base, kl_target_model, kl_target_proposal, tvd_target_model,
    },
    error::{Error, Result},
    estimate::Estimate,
    logspace::{effective_sample_size, log_add_exp, log_mean_exp, log_sum_exp, normalized_weights},
    matrix::RowMatrix,
    moment_fit::{FitReport, MomentFit, snis_moments},
    partition::{PooledZ, ZEstimate, estimate_log_z, log_weights},
    qrs::{Qrs, QrsDraw, QrsReport},
    target::{Ebm, TargetKind, log_indicator},
};
