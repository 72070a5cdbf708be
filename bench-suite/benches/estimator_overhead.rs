//! Issue 4's performance criterion: what GDC++ adds to scoring π and the backward pass, for a
//! batch of 64 sequences × 40 generated tokens, on the default CPU backend (flex).
//!
//! Per model shape (GPT-2 small, random init; and the fast `mini2` variant, see
//! `tilt_bench::ModelShape`):
//! - `flex/score_backward/<shape>-b64-t40`: (a) log π of the batch, backward of `−mean log π`;
//! - `flex/gdcpp_loss_backward/<shape>-b64-t40`: (b) log π, `ScoredBatch` (with its read-back),
//!   GDC++ advantages and loss, backward;
//! - `flex/gdcpp_loss/b64`: (c) the estimator alone on a `[64]` leaf (batch, advantages, loss,
//!   backward to the leaf);
//! - `flex/estimator/<name>-b64`: the same for every estimator (REINFORCE with RLOO, KL-control,
//!   on-policy DPG with the Z baseline, GDC, GDC++, f-DPG JS with its baseline).
//!
//! The criterion is (b − a)/a < 2%. Criterion runs (a) and (b) minutes apart, so on a shared
//! machine their difference is mostly load drift: `cargo run --release -p tilt-bench
//! --example estimator_overhead` times them alternately on the same inputs and prints the
//! ratio. Run only the fast variant with `cargo bench -p tilt-bench --bench
//! estimator_overhead -- mini2`.
use std::cell::LazyCell;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tilt_bench::{AdFlex, BATCH, ModelShape, NEW_TOKENS, flex_fixture};
use tilt_estimators::{Dpg, Estimator, FDpg, JensenShannon, KlControl, Reinforce, RewardBaseline};

fn estimator_overhead(c: &mut Criterion) {
    for (shape, secs) in [(ModelShape::Mini2, 10), (ModelShape::Gpt2Small, 60)] {
        // Built on first use, so a filter that skips this shape skips its (slow) set-up.
        let fixture = LazyCell::new(|| flex_fixture(shape));
        let size = shape.id(BATCH, NEW_TOKENS);
        for op in ["score_backward", "gdcpp_loss_backward"] {
            let mut group = c.benchmark_group(format!("flex/{op}"));
            group
                .sample_size(10)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(secs));
            group.bench_function(size.as_str(), |b| {
                let f = &*fixture;
                if op == "score_backward" {
                    b.iter(|| f.score_backward())
                } else {
                    b.iter(|| f.gdcpp_backward())
                }
            });
            group.finish();
        }
        if shape == ModelShape::Mini2 {
            let mut group = c.benchmark_group("flex/gdcpp_loss");
            group.measurement_time(Duration::from_secs(5));
            group.bench_function(format!("b{BATCH}"), |b| {
                let f = &*fixture;
                b.iter(|| f.gdcpp_only())
            });
            group.finish();
            // Every estimator's own cost on the same leaf: flex/estimator/<name>-b64.
            let mut group = c.benchmark_group("flex/estimator");
            group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
            let estimators: Vec<(&str, Box<dyn Estimator<AdFlex>>)> = vec![
                ("reinforce", Box::new(Reinforce::new(RewardBaseline::LeaveOneOut))),
                ("kl_control", Box::new(KlControl::fixed(0.2))),
                ("dpg", Box::new(Dpg::on_policy_baseline())),
                ("gdc", Box::new(Dpg::gdc())),
                ("gdc_pp", Box::new(Dpg::gdc_plus_plus())),
                ("fdpg_js", Box::new(FDpg::new(JensenShannon).off_policy().with_baseline(1024))),
            ];
            for (name, estimator) in &estimators {
                group.bench_function(format!("{name}-b{BATCH}"), |b| {
                    let f = &*fixture;
                    b.iter(|| f.estimator_only(estimator.as_ref()))
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, estimator_overhead);
criterion_main!(benches);
