//! Partition-function and divergence estimators of `tilt-ebm` (issue 6), on synthetic samples
//! from a fixed seed (`tilt_bench::ZProblem`: log q of 40-token sequences, a fifth of the
//! samples with P = 0, a model near q). All on the host, in f64; each input is validated on
//! every call, as in training.
//!
//! - `cpu/log_z/100000`: `estimate_log_z` on precomputed log weights;
//! - `cpu/kl_target_model/100000`, `cpu/tvd/100000`, `cpu/js/100000`: KL(p‖π), TVD(p, π),
//!   JS(p, π) from proposal samples, Z self-normalised;
//! - `cpu/kl_model_base/100000`: KL(π‖a) from samples of π;
//! - `cpu/pooled_z/100x1000`: 100 batches of 1,000 pushed into a `PooledZ`, then its estimate;
//! - `cpu/qrs/100000`: `Qrs::report` (acceptance, Z_β, KL and TVD to p, Z self-normalised) at
//!   a fixed β; `cpu/qrs_for_rate/100000`: choosing β for a 10% acceptance rate (bisection).
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tilt_bench::ZProblem;
use tilt_ebm::{
    LogZ, PooledZ, Qrs, estimate_log_z, js_target_model, kl_model_base, kl_target_model,
    tvd_target_model,
};

const N: usize = 100_000;
const POOLED_BATCHES: usize = 100;

fn estimates(c: &mut Criterion) {
    let p = ZProblem::new(N, 6);
    let log_w = p.log_weights();
    let (lt, lq, lm) = (&p.log_target[..], &p.log_proposal[..], &p.log_model[..]);
    let mut group = c.benchmark_group("cpu");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    let id = |op: &str| BenchmarkId::new(op, N);

    group.bench_function(id("log_z"), |b| b.iter(|| estimate_log_z(&log_w).unwrap()));
    group.bench_function(id("kl_target_model"), |b| {
        b.iter(|| kl_target_model(lt, lq, lm, LogZ::SelfNormalized).unwrap())
    });
    group.bench_function(id("tvd"), |b| {
        b.iter(|| tvd_target_model(lt, lq, lm, LogZ::SelfNormalized).unwrap())
    });
    group.bench_function(id("js"), |b| {
        b.iter(|| js_target_model(lt, lq, lm, LogZ::SelfNormalized).unwrap())
    });
    group.bench_function(id("kl_model_base"), |b| b.iter(|| kl_model_base(lm, lq).unwrap()));
    let size = N / POOLED_BATCHES;
    group.bench_function(BenchmarkId::new("pooled_z", format!("{POOLED_BATCHES}x{size}")), |b| {
        b.iter(|| {
            let mut pooled = PooledZ::new();
            for chunk in log_w.chunks(size) {
                pooled.push(chunk).unwrap();
            }
            pooled.estimate()
        })
    });
    let qrs = Qrs::for_acceptance_rate(lt, lq, 0.1).unwrap();
    group.bench_function(id("qrs"), |b| {
        b.iter(|| qrs.report(lt, lq, None, LogZ::SelfNormalized).unwrap())
    });
    group.bench_function(id("qrs_for_rate"), |b| {
        b.iter(|| Qrs::for_acceptance_rate(lt, lq, 0.1).unwrap())
    });
    group.finish();
}

criterion_group!(benches, estimates);
criterion_main!(benches);
