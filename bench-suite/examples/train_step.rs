//! Times full GDC++ training steps ([`tilt_bench::TrainStep`]) on the CPU (flex) and prints one
//! line per step, for `compare/train_step.py`, which runs disco's `DPGTuner` on the same work.
//! (`tilt-tests`' `throughput` example runs it on the backend that crate is built with, a
//! GPU's included.)
//!
//! Usage: `cargo run --release -p tilt-bench --example train_step -- [gpt2-small|mini2] [BATCH]
//! [NEW_TOKENS] [STEPS]` (defaults: gpt2-small 32 40 3). Each line:
//! `tilt-train-step seconds=<total> sample=<s> target=<s> policy=<s> optimizer=<s> loss=<l>`.

fn main() {
    tilt_bench::train_step_main::<tilt_bench::AdFlex>(&Default::default());
}
