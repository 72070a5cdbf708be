//! Reference parity with Hugging Face transformers (fixture from
//! tests/fixtures/make_gpt2_fixture.py): logits within 1e-4 absolute, gradients within 1e-3
//! relative.

use burn::tensor::{Int, Tensor, TensorData};
use tilt_policies::{SequenceBatch, checkpoint};

use crate::common::*;

const LOGIT_TOL: f32 = 1e-4;
const GRAD_REL_TOL: f32 = 1e-3;

#[test]
fn logits_match_transformers_unpadded() {
    let exp = expected();
    let device = Default::default();
    let model = checkpoint::load_hf_dir::<B>(tiny_dir(), &device).unwrap();
    let (ids, [b, s]) = matrix(&exp["plain"]["ids"]);
    let ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [b, s]), &device);
    let got = to_vec(model.forward(ids, None, None));
    let want = floats(&exp["plain"]["logits"]);
    assert_eq!(got.len(), want.len());
    let max_err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    eprintln!("unpadded logits: max abs error {max_err:e}");
    assert!(max_err < LOGIT_TOL, "max abs error {max_err}");
}

#[test]
fn logits_and_log_probs_match_transformers_left_padded() {
    let exp = expected();
    let device = Default::default();
    let model = checkpoint::load_hf_dir::<B>(tiny_dir(), &device).unwrap();
    let p = &exp["padded"];
    let (ids, dims) = matrix(&p["ids"]);
    let (mask, _) = matrix(&p["attention_mask"]);
    let (score, _) = matrix(&p["score_mask"]);
    let mask: Vec<bool> = mask.iter().map(|&m| m == 1).collect();
    let score: Vec<bool> = score.iter().map(|&m| m == 1).collect();
    let batch = SequenceBatch::<B>::from_host(&ids, &mask, &score, dims, &device).unwrap();

    let logits =
        to_vec(model.forward(batch.input_ids.clone(), Some(batch.attention_mask.clone()), None));
    let want = floats(&p["logits"]);
    let vocab = model.config().vocab_size;
    let mut max_err = 0.0f32;
    for (pos, &real) in mask.iter().enumerate() {
        if real {
            for v in 0..vocab {
                let i = pos * vocab + v;
                max_err = max_err.max((logits[i] - want[i]).abs());
            }
        }
    }
    eprintln!("left-padded logits (real positions): max abs error {max_err:e}");
    assert!(max_err < LOGIT_TOL, "max abs error {max_err}");

    let lp = to_vec(model.log_prob(&batch));
    let want_lp = floats(&p["log_probs"]);
    for (a, b) in lp.iter().zip(&want_lp) {
        assert!((a - b).abs() < LOGIT_TOL, "log-prob {a} vs {b}");
    }
    // The same rows built from prompt lengths give the same batch.
    let rows: Vec<Vec<u32>> = ids
        .chunks(dims[1])
        .zip(mask.chunks(dims[1]))
        .map(|(r, m)| r.iter().zip(m).filter(|(_, m)| **m).map(|(x, _)| *x).collect())
        .collect();
    let lens = usizes(&p["prompt_lens"]);
    let again = SequenceBatch::<B>::from_rows(&rows, &lens, &device).unwrap();
    let lp2 = to_vec(model.log_prob_minibatched(&again, 2));
    for (a, b) in lp2.iter().zip(&want_lp) {
        assert!((a - b).abs() < LOGIT_TOL, "log-prob {a} vs {b}");
    }
}

#[test]
fn gradients_match_transformers() {
    let exp = expected();
    let device = Default::default();
    // The fixture's config has dropout 0.1; the reference ran in eval mode.
    let model = checkpoint::load_hf_dir::<AD>(tiny_dir(), &device).unwrap().without_dropout();
    let p = &exp["padded"];
    let row = exp["grad"]["row"].as_u64().unwrap() as usize;
    let (ids, [_, s]) = matrix(&p["ids"]);
    let (mask, _) = matrix(&p["attention_mask"]);
    let (score, _) = matrix(&p["score_mask"]);
    let r = row * s..(row + 1) * s;
    let mask: Vec<bool> = mask[r.clone()].iter().map(|&m| m == 1).collect();
    let score: Vec<bool> = score[r.clone()].iter().map(|&m| m == 1).collect();
    let batch = SequenceBatch::<AD>::from_host(&ids[r], &mask, &score, [1, s], &device).unwrap();
    let lp = model.log_prob(&batch);
    let value = lp.clone().into_data().convert::<f32>().into_vec::<f32>().unwrap()[0];
    let want_value = exp["grad"]["log_prob"].as_f64().unwrap() as f32;
    assert!((value - want_value).abs() < LOGIT_TOL, "{value} vs {want_value}");
    let grads = lp.sum().backward();

    let got = |name: &str| -> Vec<f32> {
        let g = match name {
            "wte.weight" => model.wte.weight.grad(&grads).map(to_vec),
            "wpe.weight" => model.wpe.weight.grad(&grads).map(to_vec),
            "h.0.attn.c_attn.weight" => model.h[0].attn.c_attn.weight.grad(&grads).map(to_vec),
            "h.1.mlp.c_proj.bias" => {
                model.h[1].mlp.c_proj.bias.as_ref().unwrap().grad(&grads).map(to_vec)
            }
            "h.1.ln_2.weight" => model.h[1].ln_2.gamma.grad(&grads).map(to_vec),
            "ln_f.bias" => model.ln_f.beta.as_ref().unwrap().grad(&grads).map(to_vec),
            other => panic!("no accessor for {other}"),
        };
        g.unwrap_or_else(|| panic!("no gradient for {name}"))
    };
    let params = exp["grad"]["params"].as_object().unwrap();
    assert_eq!(params.len(), 6);
    for (name, want) in params {
        let want = floats(want);
        let g = got(name);
        assert_eq!(g.len(), want.len(), "{name}");
        let norm = want.iter().map(|x| x * x).sum::<f32>().sqrt();
        let err = g.iter().zip(&want).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt();
        let max_abs = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let max_el = g.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        eprintln!(
            "grad {name}: relative L2 error {:e}, max elementwise error / max |g| {:e}",
            err / norm,
            max_el / max_abs
        );
        assert!(norm > 0.0, "{name}: reference gradient is zero");
        assert!(err / norm < GRAD_REL_TOL, "{name}: relative error {}", err / norm);
        assert!(max_el / max_abs < GRAD_REL_TOL, "{name}: max element error {}", max_el / max_abs);
    }
}
