//! Integration tests of tilt-trainer (one test binary; one module per topic).

mod bleu;
mod checkpoint;
mod cli;
mod commands;
mod config;
mod parallel;
mod report;
mod robustness;
mod train;
