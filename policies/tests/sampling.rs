//! The sampler: log-probs equal a fresh scoring pass, padding, EOS masks, seeding, and the
//! sampled distribution itself.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tilt_policies::{
    Draw, Gpt2, Gpt2Config, Samples, SamplingConfig, StopMode, Warper, checkpoint,
};

use crate::common::*;

const TOL: f32 = 1e-5;

fn fixture_model() -> Gpt2<B> {
    checkpoint::load_hf_dir::<B>(tiny_dir(), &Default::default()).unwrap()
}

fn prompts() -> Vec<Vec<u32>> {
    vec![vec![5, 17, 42], vec![8], vec![3, 61, 27, 9, 1], vec![70, 2]]
}

/// Checks both kinds of log-probs against fresh scoring passes.
fn check_against_scoring(model: &Gpt2<B>, s: &Samples<B>, warper: &Warper) {
    let steps = s.steps;
    let width = s.prompt_len + steps;
    let batch = s.batch_size();
    let tok = to_vec(model.token_log_probs(&s.batch));
    let warped = model.warped_token_log_probs(&s.batch, warper).unwrap();
    let mut max_model = 0.0f32;
    let mut max_warped = 0.0f32;
    for b in 0..batch {
        for t in 0..steps {
            let i = b * steps + t;
            let j = b * width + s.prompt_len + t;
            if s.generated_mask[i] {
                max_model = max_model.max((s.model_log_probs[i] - tok[j]).abs());
                max_warped = max_warped.max((s.sampling_log_probs[i] - warped[j]).abs());
            } else {
                assert_eq!(tok[j], 0.0);
                assert_eq!(s.model_log_probs[i], 0.0);
                assert_eq!(s.sampling_log_probs[i], 0.0);
            }
        }
    }
    eprintln!("{warper:?}: max |sampler - rescoring| model {max_model:e}, warped {max_warped:e}");
    assert!(max_model < TOL, "model log-probs differ by {max_model}");
    assert!(max_warped < TOL, "warped log-probs differ by {max_warped}");
    let seq = to_vec(model.log_prob(&s.batch));
    for (a, b) in seq.iter().zip(s.sequence_model_log_probs()) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}

#[test]
fn sampling_log_probs_equal_rescoring() {
    let model = fixture_model();
    let warpers = [
        Warper::ANCESTRAL,
        Warper { temperature: 0.7, ..Warper::ANCESTRAL },
        Warper { top_p: Some(0.8), ..Warper::ANCESTRAL },
        Warper { temperature: 1.3, top_k: Some(10), top_p: Some(0.9) },
    ];
    for (seed, warper) in warpers.into_iter().enumerate() {
        let config = SamplingConfig::fixed_length(6).with_warper(warper);
        let mut rng = ChaCha8Rng::seed_from_u64(seed as u64);
        let s = model.sample(&prompts(), &config, &mut rng).unwrap();
        assert_eq!(s.steps, 6);
        assert!(s.generated_mask.iter().all(|&g| g));
        check_against_scoring(&model, &s, &warper);
        if warper.is_identity() {
            assert_eq!(s.sampling_log_probs, s.model_log_probs);
        } else {
            assert_ne!(s.sampling_log_probs, s.model_log_probs);
        }
        // Prompts are left-padded in place.
        let width = s.prompt_len + s.steps;
        for (b, p) in prompts().iter().enumerate() {
            let row = &s.token_ids[b * width..(b + 1) * width];
            assert_eq!(&row[s.prompt_len - p.len()..s.prompt_len], p.as_slice());
            assert!(
                s.attention_mask[b * width..b * width + s.prompt_len - p.len()].iter().all(|&m| !m)
            );
        }
    }
}

#[test]
fn stop_at_eos_masks_the_rest() {
    // Vocabulary of 6 with eos = 0: most rows stop within 12 steps.
    let device = Default::default();
    let model = Gpt2Config::tiny().with_vocab_size(6).init_seeded::<B>(&device, 21);
    let config = SamplingConfig::until_eos(12)
        .with_warper(Warper { top_p: Some(0.95), ..Warper::ANCESTRAL });
    let prompts: Vec<Vec<u32>> = (0..12).map(|i| vec![1 + (i % 5); 1 + (i as usize % 3)]).collect();
    let s = model.sample(&prompts, &config, &mut ChaCha8Rng::seed_from_u64(9)).unwrap();
    let generated = s.generated();
    let mut stopped = 0;
    for (b, g) in generated.iter().enumerate() {
        let eos_at = g.iter().position(|&t| t == 0);
        match eos_at {
            Some(k) => {
                stopped += 1;
                assert_eq!(k, g.len() - 1, "row {b}: tokens after EOS");
                let width = s.prompt_len + s.steps;
                for t in g.len()..s.steps {
                    assert!(!s.generated_mask[b * s.steps + t]);
                    assert!(!s.attention_mask[b * width + s.prompt_len + t]);
                    assert_eq!(s.token_ids[b * width + s.prompt_len + t], 0, "pad id = eos");
                }
            }
            None => assert_eq!(g.len(), s.steps),
        }
    }
    assert!(stopped >= 6, "only {stopped} rows stopped");
    check_against_scoring(&model, &s, &config.warper);

    // If every row stops, decoding ends early.
    let short = model
        .sample(&[vec![1]], &SamplingConfig::until_eos(30), &mut ChaCha8Rng::seed_from_u64(1))
        .unwrap();
    assert!(short.steps < 30 && short.generated()[0].last() == Some(&0));
    // Fixed length ignores EOS.
    let fixed = model
        .sample(&prompts, &SamplingConfig::fixed_length(12), &mut ChaCha8Rng::seed_from_u64(9))
        .unwrap();
    assert!(fixed.generated().iter().all(|g| g.len() == 12));
    assert_eq!(fixed.steps, 12);
    let _ = StopMode::FixedLength;
}

#[test]
fn same_seed_same_samples() {
    let model = fixture_model();
    for draw in [Draw::Host, Draw::Device] {
        let config = SamplingConfig::fixed_length(8).with_draw(draw);
        let run =
            |seed| model.sample(&prompts(), &config, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
        let (a, b, c) = (run(5), run(5), run(6));
        assert_eq!(a.token_ids, b.token_ids);
        assert_eq!(a.sampling_log_probs, b.sampling_log_probs);
        assert_ne!(a.token_ids, c.token_ids);
    }
}

#[test]
fn device_draws_stop_at_eos() {
    // Vocabulary of 6 with eos = 0: every row stops, most within a few steps.
    let device = Default::default();
    let model = Gpt2Config::tiny().with_vocab_size(6).init_seeded::<B>(&device, 21);
    let config = SamplingConfig::until_eos(29).with_draw(Draw::Device);
    let prompts: Vec<Vec<u32>> = (0..12).map(|i| vec![1 + (i % 5); 1 + (i as usize % 3)]).collect();
    let s = model.sample(&prompts, &config, &mut ChaCha8Rng::seed_from_u64(4)).unwrap();
    let generated = s.generated();
    let width = s.prompt_len + s.steps;
    for (b, g) in generated.iter().enumerate() {
        if let Some(k) = g.iter().position(|&t| t == 0) {
            assert_eq!(k, g.len() - 1, "row {b}: tokens after EOS");
            for t in g.len()..s.steps {
                assert!(!s.generated_mask[b * s.steps + t]);
                assert!(!s.attention_mask[b * width + s.prompt_len + t]);
                assert_eq!(s.token_ids[b * width + s.prompt_len + t], 0, "pad id = eos");
                assert_eq!(s.model_log_probs[b * s.steps + t], 0.0);
            }
        } else {
            assert_eq!(g.len(), s.steps, "row {b} neither stopped nor ran to the end");
        }
    }
    // Trimmed to the last step any row generated, though the device ran to a check.
    assert_eq!(s.steps, generated.iter().map(Vec::len).max().unwrap());
    assert!(s.steps < 29, "every row should stop within 29 steps");
    check_against_scoring(&model, &s, &config.warper);
}

#[test]
fn device_draws_refuse_top_k_and_top_p() {
    let model = fixture_model();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for warper in [
        Warper { top_k: Some(5), ..Warper::ANCESTRAL },
        Warper { top_p: Some(0.9), ..Warper::ANCESTRAL },
    ] {
        let device = SamplingConfig::fixed_length(2).with_warper(warper).with_draw(Draw::Device);
        let err = model.sample(&prompts(), &device, &mut rng).unwrap_err().to_string();
        assert!(err.contains("temperature only"), "{err}");
        // Auto draws those on the host.
        let auto = device.with_draw(Draw::Auto);
        assert!(!auto.draws_on_device().unwrap());
        assert!(model.sample(&prompts(), &auto, &mut rng).is_ok());
    }
    let tempered = SamplingConfig::fixed_length(2).with_warper(Warper {
        temperature: 0.8,
        top_p: Some(1.0),
        ..Warper::ANCESTRAL
    });
    assert!(tempered.draws_on_device().unwrap());
}

#[test]
fn invalid_requests_are_errors() {
    let model = fixture_model();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let ok = SamplingConfig::fixed_length(2);
    assert!(model.sample(&[vec![]], &ok, &mut rng).is_err());
    assert!(model.sample(&[vec![100]], &ok, &mut rng).is_err());
    assert!(model.sample(&[vec![1; 60]], &SamplingConfig::fixed_length(5), &mut rng).is_err());
    let bad = ok.with_warper(Warper { temperature: -1.0, ..Warper::ANCESTRAL });
    assert!(model.sample(&[vec![1]], &bad, &mut rng).is_err());
}

/// The empirical distribution of one sampled token matches the (warped) model distribution.
#[test]
fn samples_follow_the_warped_distribution() {
    let device = Default::default();
    let model = Gpt2Config::tiny().with_vocab_size(6).init_seeded::<B>(&device, 2);
    let n = 3000;
    let prompts = vec![vec![3u32, 1]; n];
    let cases = [
        (Warper::ANCESTRAL, Draw::Host),
        (Warper::ANCESTRAL, Draw::Device),
        (Warper { temperature: 0.5, ..Warper::ANCESTRAL }, Draw::Device),
        (Warper { top_k: Some(3), temperature: 0.5, top_p: None }, Draw::Host),
    ];
    for (warper, draw) in cases {
        let config = SamplingConfig::fixed_length(1).with_warper(warper).with_draw(draw);
        let s = model.sample(&prompts, &config, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        let mut counts = [0usize; 6];
        let mut prob = [f32::NEG_INFINITY; 6];
        for (b, g) in s.generated().iter().enumerate() {
            counts[g[0] as usize] += 1;
            prob[g[0] as usize] = s.sampling_log_probs[b].exp();
        }
        let support = counts.iter().filter(|&&c| c > 0).count();
        if warper.top_k.is_some() {
            assert!(support <= 3, "{counts:?}");
        }
        for v in 0..6 {
            if counts[v] > 0 {
                let p = prob[v] as f64;
                let sd = (p * (1.0 - p) / n as f64).sqrt();
                let freq = counts[v] as f64 / n as f64;
                assert!(
                    (freq - p).abs() < 4.0 * sd + 1e-9,
                    "token {v}: freq {freq} vs p {p} ({counts:?})"
                );
            }
        }
    }
}

#[test]
fn zero_new_tokens_returns_the_prompts() {
    let model = fixture_model();
    let s = model
        .sample(&prompts(), &SamplingConfig::fixed_length(0), &mut ChaCha8Rng::seed_from_u64(0))
        .unwrap();
    assert_eq!((s.batch_size(), s.steps, s.prompt_len), (4, 0, 5));
    assert!(s.generated().iter().all(Vec::is_empty));
    assert_eq!(s.sequence_model_log_probs(), vec![0.0; 4]);
}
