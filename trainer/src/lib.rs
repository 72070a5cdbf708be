//! The library behind the `tilt` binary: config, plan, training loop, evaluation, outputs.
//!
//! Most users run the binary; the library exists so that the integration tests (and the bench
//! suite) can drive the same code.

pub mod backend;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod config;
pub mod contexts;
pub mod demo;
mod grad_clip;
pub mod metrics;
pub mod parallel;
pub mod plan;
pub mod pretrain;
pub mod report;
pub mod train;
