//! Save → load round trips on the selected backend: moving f32 weights to the device and back
//! must be lossless, and a reloaded model must compute what the saved one did.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use tilt_policies::{Gpt2, Gpt2Config, checkpoint};
use tilt_tests::{BACKEND, Fixture, Inner, device, max_abs_diff, to_vec, tolerance};

/// The fixture's weights straight from the file, in `Gpt2::named_tensors` form.
fn file_tensors() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let path = Fixture::model_dir().join(checkpoint::WEIGHTS_FILE);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("fixture safetensors");
    let mut out: Vec<_> = st
        .iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let values =
                view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()));
            let name = name.strip_prefix("transformer.").unwrap_or(name).to_string();
            (name, view.shape().to_vec(), values.collect())
        })
        .filter(|(name, ..)| !name.ends_with(".attn.bias") && !name.ends_with(".attn.masked_bias"))
        .filter(|(name, ..)| name != "lm_head.weight")
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn sorted<B: Backend>(model: &Gpt2<B>) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut t = model.named_tensors();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

fn fixture_weights_survive_the_device<B: Backend>(device: &B::Device) {
    let model = checkpoint::load_hf_dir::<B>(Fixture::model_dir(), device).unwrap();
    let on_device = sorted(&model);
    let from_file = file_tensors();
    assert_eq!(on_device.len(), from_file.len());
    for (got, want) in on_device.iter().zip(&from_file) {
        assert_eq!((&got.0, &got.1), (&want.0, &want.1));
        // Bitwise: an upload or download that rounds is a bug.
        assert!(got.2.iter().zip(&want.2).all(|(a, b)| a.to_bits() == b.to_bits()), "{}", got.0);
    }

    let dir = tempfile::tempdir().unwrap();
    model.save_hf_dir(dir.path()).unwrap();
    let loaded = checkpoint::load_hf_dir::<B>(dir.path(), device).unwrap();
    assert_eq!(loaded.config(), model.config());
    assert_eq!(sorted(&loaded), on_device);
}

fn seeded_model_round_trips<B: Backend>(device: &B::Device, logits_abs: f32) {
    let model = Gpt2Config::tiny().init_seeded::<B>(device, 7);
    let dir = tempfile::tempdir().unwrap();
    model.save_hf_dir(dir.path()).unwrap();
    let loaded = checkpoint::load_hf_dir::<B>(dir.path(), device).unwrap();
    assert_eq!(loaded.config(), model.config());
    assert_eq!(sorted(&loaded), sorted(&model));

    let ids = || {
        let ids = TensorData::new(vec![1i64, 5, 9, 2, 7, 3, 3, 0], [2, 4]);
        Tensor::<B, 2, Int>::from_data(ids, device)
    };
    let a = to_vec(model.forward(ids(), None, None));
    let b = to_vec(loaded.forward(ids(), None, None));
    // Same weights and kernels; a GPU may still reduce in another order between calls.
    let err = max_abs_diff(&a, &b);
    eprintln!("[{BACKEND}] reloaded model logits: max abs difference {err:.3e}");
    assert!(err <= logits_abs, "{err:e}");
    assert!(a.iter().all(|x| x.is_finite()));
}

#[test]
fn fixture_weights_round_trip_bitwise() {
    fixture_weights_survive_the_device::<Inner>(&device());
}

#[test]
fn seeded_model_save_then_load_computes_the_same() {
    let d = device();
    seeded_model_round_trips::<Inner>(&d, tolerance(&d).logits_abs);
}
