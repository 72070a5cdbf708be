//! Checkpoint round trips and error listings.

use burn::tensor::{Int, Tensor, TensorData};
use tilt_policies::{Error, Gpt2Config, checkpoint};

use crate::common::*;

fn ids(device: &burn::backend::flex::FlexDevice) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(vec![1i64, 5, 9, 2, 7, 3, 3, 0], [2, 4]), device)
}

#[test]
fn save_then_load_gives_identical_logits() {
    let device = Default::default();
    let model = Gpt2Config::tiny().init_seeded::<B>(&device, 7);
    let dir = tempfile::tempdir().unwrap();
    model.save_hf_dir(dir.path()).unwrap();
    let loaded = checkpoint::load_hf_dir::<B>(dir.path(), &device).unwrap();
    assert_eq!(loaded.config(), model.config());
    let a = to_vec(model.forward(ids(&device), None, None));
    let b = to_vec(loaded.forward(ids(&device), None, None));
    assert_eq!(a, b);
    // No temporary files left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn fixture_round_trips_through_save() {
    let device = Default::default();
    let model = checkpoint::load_hf_dir::<B>(tiny_dir(), &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    model.save_hf_dir(dir.path()).unwrap();
    let loaded = checkpoint::load_hf_dir::<B>(dir.path(), &device).unwrap();
    assert_eq!(model.named_tensors(), loaded.named_tensors());
    // Also leave a copy where make_gpt2_fixture.py --check-saved can load it with
    // GPT2LMHeadModel.from_pretrained (by hand; CI has no Python).
    let keep = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("saved-tiny-gpt2");
    loaded.save_hf_dir(&keep).unwrap();
}

/// Rewrites the fixture's safetensors with `edit` applied to its tensor list.
fn edited_checkpoint(
    edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<u8>)>),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(tiny_dir().join("config.json"), dir.path().join("config.json")).unwrap();
    let bytes = std::fs::read(tiny_dir().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> =
        st.iter().map(|(n, v)| (n.to_string(), v.shape().to_vec(), v.data().to_vec())).collect();
    edit(&mut tensors);
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                    .unwrap(),
            )
        })
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), out).unwrap();
    dir
}

#[test]
fn mismatched_checkpoint_lists_every_problem() {
    let dir = edited_checkpoint(|t| {
        t.retain(|(n, _, _)| {
            n != "transformer.h.1.mlp.c_fc.bias" && n != "transformer.ln_f.weight"
        });
        t.push(("transformer.h.2.ln_1.weight".into(), vec![32], vec![0; 128]));
        let wpe = t.iter_mut().find(|(n, _, _)| n == "transformer.wpe.weight").unwrap();
        wpe.1 = vec![32, 64];
        // Buffers are ignored.
        t.push(("transformer.h.0.attn.bias".into(), vec![1], vec![0; 4]));
    });
    let device = Default::default();
    let err = checkpoint::load_hf_dir::<B>(dir.path(), &device).unwrap_err();
    match &err {
        Error::CheckpointMismatch { path, missing, unexpected, mis_shaped } => {
            assert!(path.ends_with("model.safetensors"), "{path:?}");
            assert_eq!(missing, &["h.1.mlp.c_fc.bias".to_string(), "ln_f.weight".to_string()]);
            assert_eq!(unexpected, &["h.2.ln_1.weight".to_string()]);
            assert_eq!(mis_shaped, &[("wpe.weight".to_string(), vec![64, 32], vec![32, 64])]);
        }
        other => panic!("wrong error {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("model.safetensors") && msg.contains("ln_f.weight"), "{msg}");
}

#[test]
fn truncated_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(tiny_dir().join("config.json"), dir.path().join("config.json")).unwrap();
    let bytes = std::fs::read(tiny_dir().join("model.safetensors")).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let device = Default::default();
    let err = checkpoint::load_hf_dir::<B>(dir.path(), &device).unwrap_err();
    assert!(matches!(err, Error::Safetensors { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn untied_lm_head_is_rejected_and_tied_one_accepted() {
    let device = Default::default();
    let tied = edited_checkpoint(|t| {
        let wte = t.iter().find(|(n, _, _)| n == "transformer.wte.weight").unwrap().clone();
        t.push(("lm_head.weight".into(), wte.1, wte.2));
    });
    checkpoint::load_hf_dir::<B>(tied.path(), &device).unwrap();
    let untied = edited_checkpoint(|t| {
        let wte = t.iter().find(|(n, _, _)| n == "transformer.wte.weight").unwrap().clone();
        t.push(("lm_head.weight".into(), wte.1, vec![0; wte.2.len()]));
    });
    let err = checkpoint::load_hf_dir::<B>(untied.path(), &device).unwrap_err();
    assert!(err.to_string().contains("lm_head.weight"), "{err}");
}

/// A tensor to write: name, shape, bytes, dtype.
type Stored = (String, Vec<usize>, Vec<u8>, safetensors::Dtype);

#[test]
fn sharded_and_half_precision_checkpoints_load() {
    let device = Default::default();
    let reference = checkpoint::load_hf_dir::<B>(tiny_dir(), &device).unwrap();
    let bytes = std::fs::read(tiny_dir().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(tiny_dir().join("config.json"), dir.path().join("config.json")).unwrap();
    // Two shards; the first stored as bf16 (exactly representable after rounding down).
    let mut shards: [Vec<Stored>; 2] = [vec![], vec![]];
    for (i, (n, v)) in st.iter().enumerate() {
        let f32s: Vec<f32> =
            v.data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        if i % 2 == 0 {
            let bf: Vec<u8> =
                f32s.iter().flat_map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes()).collect();
            shards[0].push((n.to_string(), v.shape().to_vec(), bf, safetensors::Dtype::BF16));
        } else {
            shards[1].push((
                n.to_string(),
                v.shape().to_vec(),
                v.data().to_vec(),
                safetensors::Dtype::F32,
            ));
        }
    }
    let mut weight_map = serde_json::Map::new();
    for (k, shard) in shards.iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", k + 1);
        let views: Vec<_> = shard
            .iter()
            .map(|(n, s, d, t)| {
                (n.clone(), safetensors::tensor::TensorView::new(*t, s.clone(), d).unwrap())
            })
            .collect();
        std::fs::write(dir.path().join(&file), safetensors::serialize(views, None).unwrap())
            .unwrap();
        for (n, ..) in shard {
            weight_map.insert(n.clone(), serde_json::Value::String(file.clone()));
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    let loaded = checkpoint::load_hf_dir::<B>(dir.path(), &device).unwrap();
    for ((n1, s1, v1), (n2, s2, v2)) in reference.named_tensors().iter().zip(loaded.named_tensors())
    {
        assert_eq!((n1, s1), (&n2, &s2));
        for (a, b) in v1.iter().zip(&v2) {
            // bf16 keeps 8 bits of mantissa (truncation: relative error < 2^-7).
            assert!((a - b).abs() <= a.abs() / 128.0, "{n1}: {a} vs {b}");
        }
    }
}
