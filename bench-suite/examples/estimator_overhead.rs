//! Paired timing of issue 4's criterion: what GDC++ adds to scoring π plus the backward pass.
//!
//! ```text
//! cargo run --release -p tilt-bench --example estimator_overhead -- [gpt2-small|mini2] [REPS]
//! ```
//!
//! On the same fixture (`tilt_bench::ScoringFixture`: random-init model, 64 sequences × 40
//! generated tokens, fixed seed) it runs REPS rounds (default 5 for GPT-2 small, 20 for mini2)
//! of, in alternating order, (a) scoring + backward of `−mean log π` and (b) scoring + GDC++'s
//! `ScoredBatch`, advantages, loss and backward, after one untimed round of each. Alternating
//! (a b, b a, a b, ...) exposes both to the same load, so the per-round ratio b/a is
//! meaningful on a shared machine even when the absolute times drift. It then times (c), the
//! estimator alone on a `[64]` leaf, 200 times. It prints the medians of (a), (b), (c), the
//! median of the per-round ratios b/a − 1 and c/a.
use std::time::Instant;

use tilt_bench::{BATCH, ModelShape, NEW_TOKENS, flex_fixture, median};

fn time<T>(f: impl FnOnce() -> T) -> f64 {
    let t = Instant::now();
    let out = f();
    let s = t.elapsed().as_secs_f64();
    drop(out);
    s
}

fn main() {
    let mut args = std::env::args().skip(1);
    let shape = match args.next().as_deref() {
        None | Some("gpt2-small") => ModelShape::Gpt2Small,
        Some("mini2") => ModelShape::Mini2,
        Some(other) => {
            eprintln!("unknown shape {other:?}: expected gpt2-small or mini2");
            std::process::exit(2);
        }
    };
    let default_reps = if shape == ModelShape::Gpt2Small { 5 } else { 20 };
    let reps: usize = args.next().map_or(default_reps, |s| s.parse().expect("REPS: an integer"));

    let t = Instant::now();
    let fixture = flex_fixture(shape);
    eprintln!(
        "{}: fixture built in {:.1} s",
        shape.id(BATCH, NEW_TOKENS),
        t.elapsed().as_secs_f64()
    );
    // Warm-up: one untimed round of each.
    drop(fixture.score_backward());
    drop(fixture.gdcpp_backward());

    let (mut a, mut b, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..reps {
        let (ta, tb) = if round.is_multiple_of(2) {
            let ta = time(|| fixture.score_backward());
            (ta, time(|| fixture.gdcpp_backward()))
        } else {
            let tb = time(|| fixture.gdcpp_backward());
            (time(|| fixture.score_backward()), tb)
        };
        eprintln!(
            "round {round}: a {ta:.4} s, b {tb:.4} s, b/a - 1 = {:+.2}%",
            100.0 * (tb / ta - 1.0)
        );
        a.push(ta);
        b.push(tb);
        ratio.push(tb / ta - 1.0);
    }
    let c: Vec<f64> = (0..200).map(|_| time(|| fixture.gdcpp_only())).collect();

    let (ma, mb, mc) = (median(&a), median(&b), median(&c));
    println!("shape: {} ({reps} alternating rounds)", shape.id(BATCH, NEW_TOKENS));
    println!("(a) score + backward of -mean log pi:      median {:.4} s", ma);
    println!("(b) score + GDC++ loss + backward:          median {:.4} s", mb);
    println!("(c) GDC++ alone (batch, loss, backward):    median {:.1} us", mc * 1e6);
    println!(
        "overhead (b - a)/a: median of per-round ratios {:+.3}% (ratio of medians {:+.3}%)",
        100.0 * median(&ratio),
        100.0 * (mb / ma - 1.0)
    );
    println!("(c)/a: {:.5}%", 100.0 * mc / ma);
}
