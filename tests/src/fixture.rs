//! The transformers reference fixture of tilt-policies.
//!
//! `policies/tests/fixtures/make_gpt2_fixture.py` (transformers 4.57.1, torch 2.9.0, f32 on
//! the CPU, eval mode) builds a tiny random GPT-2 (2 layers, n_embd 32, 4 heads, vocab 100),
//! saves it as a Hugging Face directory `tiny-gpt2/`, and writes `gpt2_expected.json`:
//! logits of an unpadded batch, logits and sequence log-probs of a left-padded batch, and the
//! gradient of one row's log-prob with respect to six parameters.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The fixture directory: `$TILT_FIXTURES` if set (test binaries copied to another machine,
/// see scripts/gpu-check.sh), else `policies/tests/fixtures` of this checkout.
pub fn fixture_dir() -> PathBuf {
    match std::env::var_os("TILT_FIXTURES") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies/tests/fixtures"),
    }
}

/// A batch without padding.
#[derive(Debug, Clone, Deserialize)]
pub struct Plain {
    /// Token ids, `[batch][seq]`.
    pub ids: Vec<Vec<u32>>,
    /// Positions whose token log-prob is summed, `[batch][seq]` of 0/1.
    pub score_mask: Vec<Vec<u8>>,
    /// Logits, row-major `[batch, seq, vocab]`.
    pub logits: Vec<f32>,
    /// Sequence log-probs, `[batch]`.
    pub log_probs: Vec<f32>,
}

/// A left-padded batch.
#[derive(Debug, Clone, Deserialize)]
pub struct Padded {
    /// Token ids, `[batch][seq]`; padding positions hold arbitrary ids.
    pub ids: Vec<Vec<u32>>,
    /// 1 for real tokens, 0 for padding, `[batch][seq]`.
    pub attention_mask: Vec<Vec<u8>>,
    /// Positions whose token log-prob is summed, `[batch][seq]` of 0/1.
    pub score_mask: Vec<Vec<u8>>,
    /// Prompt length of each row (counting real tokens only).
    pub prompt_lens: Vec<usize>,
    /// Logits, row-major `[batch, seq, vocab]` (padding positions are meaningless).
    pub logits: Vec<f32>,
    /// Sequence log-probs, `[batch]`.
    pub log_probs: Vec<f32>,
}

/// The gradient of one padded row's log-prob.
#[derive(Debug, Clone, Deserialize)]
pub struct Grad {
    /// Row of [`Padded`] that was differentiated.
    pub row: usize,
    /// Its log-prob.
    pub log_prob: f32,
    /// Gradients by Hugging Face parameter name (no `transformer.` prefix), row-major.
    pub params: BTreeMap<String, Vec<f32>>,
}

/// `gpt2_expected.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Fixture {
    /// The unpadded batch.
    pub plain: Plain,
    /// The left-padded batch.
    pub padded: Padded,
    /// Gradients of one padded row.
    pub grad: Grad,
}

impl Fixture {
    /// Reads `gpt2_expected.json` from [`fixture_dir`].
    ///
    /// # Panics
    /// If the file is missing or malformed (a broken fixture is a broken test set-up).
    pub fn load() -> Self {
        let path = fixture_dir().join("gpt2_expected.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (set TILT_FIXTURES?)", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The Hugging Face model directory of the fixture.
    pub fn model_dir() -> PathBuf {
        fixture_dir().join("tiny-gpt2")
    }
}

/// Row-major flattening of a rectangular matrix, with its `[rows, cols]`.
///
/// # Panics
/// If the rows have different lengths.
pub fn flatten<T: Copy>(rows: &[Vec<T>]) -> (Vec<T>, [usize; 2]) {
    let cols = rows.first().map_or(0, Vec::len);
    assert!(rows.iter().all(|r| r.len() == cols), "ragged matrix");
    (rows.concat(), [rows.len(), cols])
}

/// A 0/1 matrix as booleans, row-major.
pub fn flags(rows: &[Vec<u8>]) -> Vec<bool> {
    rows.iter().flatten().map(|&m| m == 1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_is_consistent() {
        let f = Fixture::load();
        let (ids, [b, s]) = flatten(&f.plain.ids);
        assert_eq!(f.plain.logits.len(), ids.len() * 100, "vocab 100");
        assert_eq!(f.plain.log_probs.len(), b);
        let (pids, [pb, ps]) = flatten(&f.padded.ids);
        assert_eq!(flags(&f.padded.attention_mask).len(), pids.len());
        assert_eq!(f.padded.prompt_lens.len(), pb);
        assert_eq!(f.padded.logits.len(), pb * ps * 100);
        assert!(f.grad.row < pb && s > 0);
        assert_eq!(f.grad.log_prob, f.padded.log_probs[f.grad.row]);
        assert!(Fixture::model_dir().join("model.safetensors").is_file());
    }

    #[test]
    #[should_panic(expected = "ragged")]
    fn ragged_matrix_panics() {
        flatten(&[vec![1, 2], vec![3]]);
    }
}
