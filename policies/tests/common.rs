//! Shared helpers.

use std::path::PathBuf;

use burn::backend::{Autodiff, Flex};

pub type B = Flex;
pub type AD = Autodiff<Flex>;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn tiny_dir() -> PathBuf {
    fixtures().join("tiny-gpt2")
}

pub fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("gpt2_expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

pub fn usizes(v: &serde_json::Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

/// Row-major flattening of a JSON matrix of integers.
pub fn matrix(v: &serde_json::Value) -> (Vec<u32>, [usize; 2]) {
    let rows = v.as_array().unwrap();
    let cols = rows[0].as_array().unwrap().len();
    let flat = rows
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32))
        .collect();
    (flat, [rows.len(), cols])
}

pub fn to_vec<const D: usize>(t: burn::tensor::Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec::<f32>().unwrap()
}
