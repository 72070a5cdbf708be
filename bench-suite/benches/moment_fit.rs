//! `MomentFit` benchmark: fitting λ for d features on n samples, from synthetic data with a
//! fixed seed.
//!
//! Data: binary features (as in tilt's word, word-list and pronoun constraints) firing at rates
//! drawn from [0.05, 0.5]; log q and log a drawn from U(-1, 1); a planted λ from U(-0.1, 0.1);
//! the targets μ̄ are the SNIS moments at the planted λ, so the problem is feasible and the fit
//! runs from λ = 0 to the default tolerance 1e-8 on max |μ̂ − μ̄|.
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;
use tilt_ebm::{MomentFit, RowMatrix, snis_moments};

/// One synthetic problem.
struct Problem {
    n: usize,
    d: usize,
    features: Vec<f64>,
    log_q: Vec<f64>,
    log_a: Vec<f64>,
    targets: Vec<f64>,
}

impl Problem {
    fn new(n: usize, d: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let rates: Vec<f64> = (0..d).map(|_| rng.random_range(0.05..0.5)).collect();
        let mut features = vec![0.0; n * d];
        for row in features.chunks_exact_mut(d) {
            for (f, &r) in row.iter_mut().zip(&rates) {
                if rng.random::<f64>() < r {
                    *f = 1.0;
                }
            }
        }
        let log_q: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let log_a: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let planted: Vec<f64> = (0..d).map(|_| rng.random_range(-0.1..0.1)).collect();
        let m = RowMatrix::new(&features, n, d).expect("shape");
        let targets = snis_moments(&planted, &log_q, &log_a, m).expect("moments");
        Self { n, d, features, log_q, log_a, targets }
    }

    fn fit(&self) -> tilt_ebm::FitReport {
        let m = RowMatrix::new(&self.features, self.n, self.d).expect("shape");
        let report =
            MomentFit::new(self.targets.clone()).fit(&self.log_q, &self.log_a, m).expect("fit");
        assert!(report.converged, "{report:?}");
        report
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu/moment_fit");
    for (d, n, samples) in [(100usize, 10_000usize, 50usize), (1000, 100_000, 10)] {
        let problem = Problem::new(n, d, 12);
        group.sample_size(samples);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(if n >= 100_000 { 30 } else { 5 }));
        group.bench_function(BenchmarkId::from_parameter(format!("{d}x{n}")), |b| {
            b.iter(|| problem.fit())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
