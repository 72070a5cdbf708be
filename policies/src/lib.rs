//! GPT-2 for tilt: the language models that play the base model a(x), the proposal q and the
//! policy π.
//!
//! - [`Gpt2Config`] / [`Gpt2`]: GPT-2 in burn, generic over the backend, with the tied LM head.
//! - [`KvCache`]: keys/values allocated once per batch, written in place while decoding.
//! - [`SequenceBatch`] and [`Gpt2::log_prob`]: exact, differentiable sequence log-probs.
//! - [`Gpt2::sample`] ([`SamplingConfig`], [`Warper`], [`Samples`]): the one batched, seeded,
//!   KV-cached sampler, returning log-probs under both the warped and the unmodified model.
//! - [`checkpoint`]: Hugging Face directories in and out; [`Gpt2Tokenizer`]: GPT-2's BPE.
//! - [`Policy`]: the trait the estimators use.
//! - [`ValueHead`]: a critic on the final hidden states (KL-control with PPO and GAE).
//!
//! # Example
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::{Int, Tensor, TensorData};
//! use tilt_policies::{Gpt2Config, SequenceBatch};
//!
//! let device = Default::default();
//! let model = Gpt2Config::tiny().init_seeded::<Flex>(&device, 0);
//! // One prompt token (id 3) followed by two generated tokens.
//! let batch = SequenceBatch::<Flex>::from_rows(&[vec![3, 5, 7]], &[1], &device).unwrap();
//! let log_p = model.log_prob(&batch);
//! assert_eq!(log_p.dims(), [1]);
//! assert!(log_p.into_data().to_vec::<f32>().unwrap()[0] < 0.0);
//! ```
#![deny(missing_docs)]

mod attention;
mod cache;
pub mod checkpoint;
mod config;
mod draw;
mod error;
#[cfg(feature = "hub")]
pub mod hub;
mod model;
mod policy;
mod sampler;
mod scoring;
mod tokenizer;
mod value;
mod warp;

pub use attention::Attention;
pub use cache::KvCache;
pub use config::Gpt2Config;
pub use error::{Error, Result};
pub use model::{Block, Gpt2, Mlp};
pub use policy::Policy;
pub use sampler::{Draw, Samples, SamplingConfig, StopMode};
pub use scoring::SequenceBatch;
pub use tokenizer::{END_OF_TEXT, Gpt2Tokenizer};
pub use value::ValueHead;
pub use warp::Warper;
