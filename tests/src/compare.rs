//! Reading tensors back to the host and measuring errors against reference values.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// A float tensor read back to the host as f32, row-major.
///
/// # Panics
/// If the backend cannot convert its float element to f32 (every tilt backend can).
pub fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec::<f32>().expect("converted to f32")
}

/// Largest absolute elementwise difference.
///
/// # Panics
/// If the lengths differ.
pub fn max_abs_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

/// Relative errors of `got` against a nonzero reference `want`:
/// `(‖got − want‖₂ / ‖want‖₂, max |got − want| / max |want|)`.
///
/// # Panics
/// If the lengths differ or `want` is all zeros (a zero reference cannot test anything).
pub fn rel_errors(got: &[f32], want: &[f32]) -> (f32, f32) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    let norm = want.iter().map(|x| x * x).sum::<f32>().sqrt();
    let max_ref = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(norm > 0.0, "reference is zero");
    let err = got.iter().zip(want).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt();
    (err / norm, max_abs_diff(got, want) / max_ref)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_measures() {
        assert_eq!(max_abs_diff(&[1.0, -2.0], &[1.5, -2.0]), 0.5);
        let (l2, max) = rel_errors(&[3.0, 4.0], &[3.0, 0.0]);
        assert_eq!((l2, max), (4.0 / 3.0, 4.0 / 3.0));
    }

    #[test]
    #[should_panic(expected = "reference is zero")]
    fn zero_reference_is_refused() {
        rel_errors(&[1.0], &[0.0]);
    }
}
