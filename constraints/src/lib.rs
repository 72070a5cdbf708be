//! Feature functions φ(x) and constraint specs for tilt.
//!
//! A constraint says what a fine-tuned model should do, as a feature φ(x) of a generated
//! sequence x: *pointwise* (b(x) = φ(x) ∈ {0, 1} must hold for every sample; the target is
//! P(x) = a(x)·b(x)) or *distributional* (a moment E_p[φ(x)] = μ̄; the target is
//! P(x) = a(x)·exp(λ·φ(x)) with λ fitted by `tilt-ebm`), as in Khalifa et al. 2021 (GDC) and
//! Korbak et al. 2022, whose tasks ("amazing", "WikiLeaks", topic word lists, 50% female
//! biographies) these features express.
//!
//! - [`Feature`]: the object-safe trait, scoring a batch of [`Sample`]s (text, token ids, EOS
//!   flag) to φ(x) values (never log φ). Implementations: [`Word`], [`WordList`], [`Pattern`],
//!   [`Gender`], [`Length`], [`EndsWithEos`], [`Sentiment`] (VADER), [`Threshold`], [`And`],
//!   [`Or`], [`Not`], and [`External`], a user's program speaking JSON lines.
//! - [`ConstraintsSpec`] / [`ConstraintSpec`] / [`FeatureSpec`]: the serde spec, read from TOML
//!   (or any self-describing format); unknown fields and kinds are errors naming the constraint.
//! - [`build`]: validates the specs once and returns a [`Plan`]: the pointwise constraints
//!   ([`Plan::accepts`], [`Plan::log_b`]) and the moment constraints with their targets
//!   ([`Plan::moment_matrix`], [`Plan::targets`]). Every invalid spec is an [`Error::Spec`]
//!   naming the constraint and the field.
//!
//! # The TOML shape
//! Each `[[constraints]]` table has a unique `name`, a `feature` table tagged by `kind`, and
//! either `pointwise = true` or `moment = <target>`:
//!
//! ```
//! use tilt_constraints::{ConstraintsSpec, Sample};
//!
//! let spec: ConstraintsSpec = toml::from_str(r#"
//!     [[constraints]]
//!     name = "amazing"
//!     feature = { kind = "word", word = "amazing", case_sensitive = false }
//!     pointwise = true
//!
//!     [[constraints]]
//!     name = "female"
//!     feature = { kind = "gender", class = "female" }
//!     moment = 0.5
//! "#)?;
//! let plan = spec.build(std::path::Path::new("."))?;
//! assert_eq!(plan.targets(), [0.5]);
//!
//! let samples = [
//!     Sample::text("She said it was amazing."),
//!     Sample::text("He was amazed."),
//! ];
//! assert_eq!(plan.accepts(&samples)?, [true, false]);
//! assert_eq!(plan.log_b(&samples)?, [0.0, f64::NEG_INFINITY]);
//! assert_eq!(plan.moment_features(&samples)?, [[1.0, 0.0]]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The crate's README lists every `kind` with a full example.
#![deny(missing_docs)]

mod combinators;
mod error;
mod external;
mod feature;
mod gender;
mod length;
mod pattern;
mod plan;
mod sentiment;
mod spec;
mod word;

pub use crate::{
    combinators::{And, Not, Or, Threshold},
    error::{Error, ExternalProblem, Result},
    external::{DEFAULT_TIMEOUT, External},
    feature::{Feature, Sample},
    gender::{Gender, GenderClass},
    length::{EndsWithEos, Length},
    pattern::Pattern,
    plan::{MomentConstraint, Plan, PointwiseConstraint, build},
    sentiment::{Sentiment, SentimentScore},
    spec::{ConstraintSpec, ConstraintsSpec, FeatureSpec},
    word::{Word, WordList},
};
