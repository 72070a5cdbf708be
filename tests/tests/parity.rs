//! Reference parity with Hugging Face transformers on the selected backend: logits, sequence
//! log-probs (left-padded, whole and minibatched), KV-cached decoding, and gradients of a
//! sequence log-prob. Tolerances per precision class: `tilt_tests::backend`.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Bool, Int, Tensor, TensorData};
use tilt_policies::{Gpt2, KvCache, SequenceBatch, checkpoint};
use tilt_tests::fixture::{flags, flatten};
use tilt_tests::{
    BACKEND, Fixture, Inner, TestBackend, Tolerance, device, max_abs_diff, rel_errors, to_vec,
    tolerance,
};

fn load<B: Backend>(device: &B::Device) -> Gpt2<B> {
    checkpoint::load_hf_dir::<B>(Fixture::model_dir(), device).expect("fixture model loads")
}

fn ids_tensor<B: Backend>(rows: &[Vec<u32>], device: &B::Device) -> Tensor<B, 2, Int> {
    let (ids, dims) = flatten(rows);
    let ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
    Tensor::from_data(TensorData::new(ids, dims), device)
}

fn padded_batch<B: Backend>(f: &Fixture, device: &B::Device) -> SequenceBatch<B> {
    let (ids, dims) = flatten(&f.padded.ids);
    let mask = flags(&f.padded.attention_mask);
    let score = flags(&f.padded.score_mask);
    SequenceBatch::from_host(&ids, &mask, &score, dims, device).expect("valid fixture batch")
}

fn check_close(what: &str, got: &[f32], want: &[f32], bound: f32, tol: Tolerance) {
    let err = max_abs_diff(got, want);
    eprintln!("[{BACKEND} / {}] {what}: max abs error {err:.3e} (bound {bound:.0e})", tol.name);
    assert!(err < bound, "{what}: max abs error {err:e} >= {bound:e} ({})", tol.name);
}

fn unpadded_logits<B: Backend>(device: &B::Device, tol: Tolerance) {
    let f = Fixture::load();
    let model = load::<B>(device);
    let logits = to_vec(model.forward(ids_tensor(&f.plain.ids, device), None, None));
    check_close("unpadded logits", &logits, &f.plain.logits, tol.logits_abs, tol);

    let (ids, dims) = flatten(&f.plain.ids);
    let mask = vec![true; ids.len()];
    let batch =
        SequenceBatch::<B>::from_host(&ids, &mask, &flags(&f.plain.score_mask), dims, device)
            .expect("valid fixture batch");
    let lp = to_vec(model.log_prob(&batch));
    check_close("unpadded log-probs", &lp, &f.plain.log_probs, tol.log_prob_abs, tol);
}

fn left_padded_logits_and_log_probs<B: Backend>(device: &B::Device, tol: Tolerance) {
    let f = Fixture::load();
    let model = load::<B>(device);
    let batch = padded_batch::<B>(&f, device);
    let logits =
        to_vec(model.forward(batch.input_ids.clone(), Some(batch.attention_mask.clone()), None));
    // Only real positions: outputs at padding are meaningless by contract.
    let vocab = model.config().vocab_size;
    let mask = flags(&f.padded.attention_mask);
    let keep = |v: &[f32]| -> Vec<f32> {
        v.chunks(vocab).zip(&mask).filter(|(_, m)| **m).flat_map(|(c, _)| c.to_vec()).collect()
    };
    check_close("left-padded logits", &keep(&logits), &keep(&f.padded.logits), tol.logits_abs, tol);

    let lp = to_vec(model.log_prob(&batch));
    check_close("left-padded log-probs", &lp, &f.padded.log_probs, tol.log_prob_abs, tol);

    // The same rows rebuilt from prompt lengths and scored two rows at a time.
    let rows: Vec<Vec<u32>> = f
        .padded
        .ids
        .iter()
        .zip(&f.padded.attention_mask)
        .map(|(r, m)| r.iter().zip(m).filter(|(_, m)| **m == 1).map(|(x, _)| *x).collect())
        .collect();
    let again = SequenceBatch::<B>::from_rows(&rows, &f.padded.prompt_lens, device).unwrap();
    let lp2 = to_vec(model.log_prob_minibatched(&again, 2));
    check_close("minibatched log-probs", &lp2, &f.padded.log_probs, tol.log_prob_abs, tol);
}

/// Decoding one token at a time through the KV cache gives the full forward's logits (the
/// cache is written in place: a backend-specific path).
fn cached_decoding_matches_full_forward<B: Backend>(device: &B::Device, tol: Tolerance) {
    let f = Fixture::load();
    let model = load::<B>(device);
    let (ids, [batch, seq]) = flatten(&f.padded.ids);
    let mask = flags(&f.padded.attention_mask);
    let ids = Tensor::<B, 2, Int>::from_data(
        TensorData::new(ids.into_iter().map(i64::from).collect::<Vec<_>>(), [batch, seq]),
        device,
    );
    let mask = Tensor::<B, 2, Bool>::from_data(TensorData::new(mask, [batch, seq]), device);
    let full = model.forward(ids.clone(), Some(mask.clone()), None);

    // The prompt part in one call, then one token per call.
    let prefix = 5;
    let mut cache = KvCache::new(model.config(), batch, seq, device);
    let mut parts = vec![model.forward(
        ids.clone().slice([0..batch, 0..prefix]),
        Some(mask.clone().slice([0..batch, 0..prefix])),
        Some(&mut cache),
    )];
    for t in prefix..seq {
        parts.push(model.forward(
            ids.clone().slice([0..batch, t..t + 1]),
            Some(mask.clone().slice([0..batch, 0..t + 1])),
            Some(&mut cache),
        ));
    }
    assert_eq!(cache.len(), seq);
    let cached = Tensor::cat(parts, 1);
    let vocab = model.config().vocab_size;
    let real = flags(&f.padded.attention_mask);
    let keep = |v: Vec<f32>| -> Vec<f32> {
        v.chunks(vocab).zip(&real).filter(|(_, m)| **m).flat_map(|(c, _)| c.to_vec()).collect()
    };
    check_close(
        "KV-cached vs full logits",
        &keep(to_vec(cached)),
        &keep(to_vec(full)),
        tol.logits_abs,
        tol,
    );
}

fn gradients<B: AutodiffBackend>(device: &B::Device, tol: Tolerance) {
    let f = Fixture::load();
    // The fixture's config has dropout 0.1; the reference ran in eval mode.
    let model = load::<B>(device).without_dropout();
    let batch = padded_batch::<B>(&f, device);
    let row = batch.rows(f.grad.row, f.grad.row + 1);
    let lp = model.log_prob(&row);
    let value = to_vec(lp.clone());
    check_close("log-prob of the gradient row", &value, &[f.grad.log_prob], tol.log_prob_abs, tol);
    let grads = lp.sum().backward();

    let grad_of = |name: &str| -> Vec<f32> {
        let g = match name {
            "wte.weight" => model.wte.weight.grad(&grads).map(to_vec),
            "wpe.weight" => model.wpe.weight.grad(&grads).map(to_vec),
            "h.0.attn.c_attn.weight" => model.h[0].attn.c_attn.weight.grad(&grads).map(to_vec),
            "h.1.mlp.c_proj.bias" => {
                model.h[1].mlp.c_proj.bias.as_ref().and_then(|b| b.grad(&grads)).map(to_vec)
            }
            "h.1.ln_2.weight" => model.h[1].ln_2.gamma.grad(&grads).map(to_vec),
            "ln_f.bias" => model.ln_f.beta.as_ref().and_then(|b| b.grad(&grads)).map(to_vec),
            other => panic!("fixture gradient {other} has no accessor here"),
        };
        g.unwrap_or_else(|| panic!("no gradient for {name}"))
    };
    assert_eq!(f.grad.params.len(), 6, "fixture gradient set changed");
    for (name, want) in &f.grad.params {
        let (l2, max_el) = rel_errors(&grad_of(name), want);
        eprintln!(
            "[{BACKEND} / {}] grad {name}: relative L2 error {l2:.3e}, max element error / \
             max |g| {max_el:.3e} (bound {:.0e})",
            tol.name, tol.grad_rel
        );
        assert!(l2 < tol.grad_rel && max_el < tol.grad_rel, "{name}: {l2:e} / {max_el:e}");
    }
}

#[test]
fn logits_match_transformers_unpadded() {
    let d = device();
    unpadded_logits::<Inner>(&d, tolerance(&d));
}

#[test]
fn logits_and_log_probs_match_transformers_left_padded() {
    let d = device();
    left_padded_logits_and_log_probs::<Inner>(&d, tolerance(&d));
}

#[test]
fn kv_cached_decoding_matches_full_forward() {
    let d = device();
    cached_decoding_matches_full_forward::<Inner>(&d, tolerance(&d));
}

#[test]
fn gradients_match_transformers() {
    let d = device();
    gradients::<TestBackend>(&d, tolerance(&d));
}
