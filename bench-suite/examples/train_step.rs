//! Times full GDC++ training steps ([`tilt_bench::TrainStep`]) and prints one line per step,
//! for `compare/train_step.py`, which runs disco's `DPGTuner` on the same work.
//!
//! Usage: `cargo run --release -p tilt-bench --example train_step -- [gpt2-small|mini2] [BATCH]
//! [NEW_TOKENS] [STEPS]` (defaults: gpt2-small 32 40 3). Each line:
//! `tilt-train-step seconds=<total> sample=<s> target=<s> policy=<s> optimizer=<s> loss=<l>`.
use tilt_bench::{ModelShape, TrainStep};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let shape = match args.first().map(String::as_str) {
        None | Some("gpt2-small") => ModelShape::Gpt2Small,
        Some("mini2") => ModelShape::Mini2,
        Some(other) => {
            eprintln!("unknown shape `{other}`: use gpt2-small or mini2");
            std::process::exit(2);
        }
    };
    let number = |i: usize, default: usize, name: &str| -> usize {
        args.get(i).map_or(default, |s| {
            s.parse().unwrap_or_else(|_| {
                eprintln!("{name} must be a positive integer, got `{s}`");
                std::process::exit(2)
            })
        })
    };
    let batch = number(1, 32, "BATCH");
    let new_tokens = number(2, 40, "NEW_TOKENS");
    let steps = number(3, 3, "STEPS");
    let mut step = TrainStep::new(shape, batch, new_tokens, 0);
    for _ in 0..steps {
        let (t, loss) = step.step(1.41e-5);
        println!(
            "tilt-train-step seconds={:.3} sample={:.3} target={:.3} policy={:.3} optimizer={:.3} \
             loss={loss:.4e}",
            t.total(),
            t.sample,
            t.target,
            t.policy,
            t.optimizer
        );
    }
}
