//! One full GDC++ training step ([`tilt_bench::TrainStep`]: sample from q, score a and the
//! feature, score π with the loss's backward pass, Adam) on the default CPU backend (flex).
//! The size is tilt-mini's width with 2 layers, so criterion's ten samples take seconds; the
//! GPT-2-small step is timed against disco by `compare/train_step.py`.
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tilt_bench::{ModelShape, TrainStep};

const BATCH: usize = 64;
const NEW_TOKENS: usize = 40;

fn train_step(c: &mut Criterion) {
    let shape = ModelShape::Mini2;
    let mut step = TrainStep::new(shape, BATCH, NEW_TOKENS, 0);
    let mut group = c.benchmark_group("flex/train_step");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(shape.id(BATCH, NEW_TOKENS), |b| b.iter(|| step.step(1.41e-5)));
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
