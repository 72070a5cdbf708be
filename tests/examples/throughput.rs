//! GDC++ training-step throughput ([`tilt_bench::TrainStep`]: sample from q, score a, score π
//! with its backward pass, Adam) on the backend this crate is built with, on the device of
//! `TILT_DEVICE` (see [`tilt_tests::backend`]). `scripts/gpu-check.sh` runs it on a GPU beside
//! `bench-suite/compare/torch_step.py`, which does the same work in PyTorch/transformers.
//!
//! Usage: `TILT_DEVICE=cuda:0 target/release/examples/throughput [gpt2-small|mini2] [BATCH]
//! [NEW_TOKENS] [STEPS]` (defaults: gpt2-small 32 40 3), built with e.g.
//! `cargo build --release -p tilt-tests --no-default-features --features cuda --example
//! throughput`. Prints `tilt-backend <name> <device>`, then one line per step:
//! `tilt-train-step seconds=<total> sample=<s> target=<s> policy=<s> optimizer=<s> loss=<l>`.
use tilt_tests::backend::{BACKEND, TestBackend, device_from_env};

fn main() {
    let device = device_from_env().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    println!("tilt-backend {BACKEND} {device:?}");
    tilt_bench::train_step_main::<TestBackend>(&device);
}
