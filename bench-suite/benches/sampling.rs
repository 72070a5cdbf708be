//! Sampling throughput of the GPT-2 sampler on the default CPU backend (flex).
//!
//! A GPT-2-small-shaped model (12 layers, width 768, 12 heads, vocabulary 50,257) with random
//! weights (GPT-2's initialisation, fixed seed); 32 prompts of one token (`<|endoftext|>`, as
//! in the paper's unconditional setting), exactly 40 new tokens each, ancestral sampling
//! with a KV cache. Throughput = 32 × 40 new tokens per iteration. `compare/sampling.py`
//! times Hugging Face transformers' `generate` on the same config, batch and length.
//!
//! With `TILT_SAMPLING_ONCE=<n>` in the environment the binary skips criterion and times `n`
//! sampling calls directly (one line per call: `tilt-sampling seconds=<s> tokens_per_s=<t>`),
//! for machines too busy or slow for criterion's ten samples; `TILT_DRAW=host|device|auto`
//! chooses where tokens are drawn in that mode. Criterion times both draws.
use std::time::{Duration, Instant};

use burn::backend::Flex;
use criterion::{Criterion, Throughput, criterion_group};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tilt_policies::{Draw, Gpt2, Gpt2Config, SamplingConfig};

const BATCH: usize = 32;
const NEW_TOKENS: usize = 40;

fn setup() -> (Gpt2<Flex>, Vec<Vec<u32>>, SamplingConfig) {
    let device = Default::default();
    let config = Gpt2Config::small();
    let model = config.init_seeded::<Flex>(&device, 0);
    let prompts = vec![vec![config.bos_token_id as u32]; BATCH];
    (model, prompts, SamplingConfig::fixed_length(NEW_TOKENS))
}

fn sampling(c: &mut Criterion) {
    let (model, prompts, sampling) = setup();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut group = c.benchmark_group("flex/sample");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(30))
        .throughput(Throughput::Elements((BATCH * NEW_TOKENS) as u64));
    group.bench_function("gpt2-small-b32-t40", |b| {
        b.iter(|| model.sample(&prompts, &sampling, &mut rng).expect("valid request"))
    });
    let host = sampling.with_draw(Draw::Host);
    group.bench_function("gpt2-small-b32-t40-host-draw", |b| {
        b.iter(|| model.sample(&prompts, &host, &mut rng).expect("valid request"))
    });
    group.finish();
}

criterion_group!(benches, sampling);

fn main() {
    if let Some(n) = std::env::var("TILT_SAMPLING_ONCE").ok().and_then(|v| v.parse::<usize>().ok())
    {
        let (model, prompts, sampling) = setup();
        let sampling = sampling.with_draw(tilt_bench::draw_from_env());
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for _ in 0..n {
            let start = Instant::now();
            let samples = model.sample(&prompts, &sampling, &mut rng).expect("valid request");
            let secs = start.elapsed().as_secs_f64();
            assert_eq!(samples.steps, NEW_TOKENS);
            println!(
                "tilt-sampling seconds={secs:.3} tokens_per_s={:.1}",
                (BATCH * NEW_TOKENS) as f64 / secs
            );
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
