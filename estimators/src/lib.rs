//! Gradient estimators for tilt: distribution matching (DPG, GDC, GDC++, f-DPG, CDPG) and
//! reward maximisation (REINFORCE, KL-control), as compared in Korbak et al. 2022, "On
//! Reinforcement Learning and Distribution Matching for Fine-Tuning Language Models with no
//! Catastrophic Forgetting" (arXiv 2206.00761).
//!
//! - [`ScoredBatch`]: the policy's differentiable sequence log-probs `log π(x_i)` plus the
//!   detached inputs as host f64 in log space (`log q`, `log a`, `log P`, rewards, `log Z`,
//!   contexts, [`TokenScores`]); [`InvalidSamples`] says whether bad values fail or are skipped.
//! - [`Estimator`]: `loss(&batch)` gives an [`EstimatorOutput`], a loss
//!   `L = −(1/m) Σ_i A_i log π(x_i)` (A detached; its gradient is the estimator, a descent
//!   direction) with the advantages and [`StepStats`]; `update(&stats)` once per step.
//!   Implementations: [`Reinforce`], [`KlControl`] (with [`AdaptiveKlController`]), [`Dpg`]
//!   (on-policy, GDC, GDC++, on-policy with baseline), [`FDpg`] over an [`FDivergence`],
//!   [`Cdpg`].
//! - [`ZTracker`]: Z pooled over proposals; [`ProposalUpdate`]: when q ← π.
//! - [`gradient_variance`], [`per_sample_gradients`], [`flatten_gradients`]: the paper's
//!   gradient-variance monitor.
//!
//! Everything is generic over `B: Backend` (the loss) or `B: AutodiffBackend` (gradients);
//! the crate enables no backend.
//!
//! # Example
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::tensor::Tensor;
//! use tilt_estimators::{Dpg, Estimator, ScoredBatch};
//!
//! type B = Autodiff<Flex>;
//! let device = Default::default();
//! // log π of three samples drawn from a proposal q, as the policy computed them.
//! let log_pi = Tensor::<B, 1>::from_floats([-2.0, -1.5, -3.0], &device).require_grad();
//! let batch = ScoredBatch::new(log_pi.clone())?
//!     .with_log_q(vec![-2.2, -1.4, -2.5])?
//!     .with_log_target(vec![-2.5, f64::NEG_INFINITY, -2.9])? // P = 0 for the second sample
//!     .with_log_z(-0.7);
//! let out = Dpg::gdc_plus_plus().loss(&batch)?;
//! // A = P/q − Z π/q; the second sample only keeps the baseline term.
//! let a1 = -(-0.7f64 - 1.5 + 1.4).exp();
//! assert!((out.advantages[1] - a1).abs() < 1e-12);
//! let grads = out.loss.backward();
//! let g = log_pi.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
//! assert!((g[1] as f64 - (-a1 / 3.0)).abs() < 1e-6); // ∂L/∂log π_i = −A_i / m
//! # Ok::<(), tilt_estimators::Error>(())
//! ```
#![deny(missing_docs)]

mod adaptive_kl;
mod batch;
mod cdpg;
mod critic;
mod dpg;
mod error;
mod estimator;
mod f_divergence;
mod f_dpg;
mod grad_variance;
mod kl_control;
mod loss;
mod moving_average;
mod proposal;
mod reinforce;
mod stats;
mod z_tracker;

pub use crate::{
    adaptive_kl::AdaptiveKlController,
    batch::{InvalidSamples, ScoredBatch, TokenScores},
    cdpg::Cdpg,
    critic::{Critic, ValueTargets, gae, whiten},
    dpg::{Dpg, DpgVariant},
    error::{Error, Result},
    estimator::{Estimator, EstimatorOutput},
    f_divergence::{
        ChiSquare, FDivergence, ForwardKl, JensenShannon, ReverseChiSquare, ReverseKl,
        TotalVariation,
    },
    f_dpg::FDpg,
    grad_variance::{
        GradientVariance, GradientVarianceAccumulator, flatten_gradients, gradient_variance,
        per_sample_gradients,
    },
    kl_control::{KlCoefficient, KlControl, KlPenalty},
    moving_average::MovingAverage,
    proposal::{ProposalCriterion, ProposalDecision, ProposalUpdate},
    reinforce::{Reinforce, RewardBaseline},
    stats::StepStats,
    z_tracker::ZTracker,
};
