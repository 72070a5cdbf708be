//! The library behind the `tilt` binary: config, plan, training loop, evaluation, outputs.
//!
//! Most users run the binary; the library exists so that the integration tests (and the bench
//! suite) can drive the same code.

pub mod metrics;
pub mod pretrain;
