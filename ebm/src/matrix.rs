//! A borrowed, row-major matrix of f64: one row per sample, one column per feature.

use crate::{Error, Result};

/// A borrowed row-major `rows × cols` matrix: row `i` is `data[i * cols..(i + 1) * cols]`.
///
/// This is how features φ(x) (and pointwise log b(x)) are passed around: one flat slice, so
/// that a pass over 100,000 × 1,000 values streams memory once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowMatrix<'a> {
    data: &'a [f64],
    rows: usize,
    cols: usize,
}

impl<'a> RowMatrix<'a> {
    /// Wraps `data` as `rows × cols`; fails unless `data.len() == rows * cols`.
    pub fn new(data: &'a [f64], rows: usize, cols: usize) -> Result<Self> {
        let expected = rows.checked_mul(cols).ok_or(Error::DimensionMismatch {
            what: "matrix rows * cols (overflows usize)",
            expected: usize::MAX,
            got: data.len(),
        })?;
        if data.len() != expected {
            return Err(Error::DimensionMismatch {
                what: "matrix data (rows * cols)",
                expected,
                got: data.len(),
            });
        }
        Ok(Self { data, rows, cols })
    }

    /// A matrix with `rows` rows and no columns (no features).
    pub fn empty(rows: usize) -> Self {
        Self { data: &[], rows, cols: 0 }
    }

    /// Number of rows (samples).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (features).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i`.
    ///
    /// # Panics
    /// If `i >= self.rows()`.
    pub fn row(&self, i: usize) -> &'a [f64] {
        assert!(i < self.rows, "row {i} out of {} rows", self.rows);
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// The flat row-major data.
    pub fn data(&self) -> &'a [f64] {
        self.data
    }

    /// Fails with [`Error::NonFinite`] naming the first NaN or infinite entry.
    pub(crate) fn check_finite(&self, what: &'static str) -> Result<()> {
        match self.data.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(k) => Err(Error::NonFinite {
                what,
                sample: k / self.cols,
                feature: Some(k % self.cols),
                value: self.data[k],
            }),
        }
    }
}

/// Fails unless `got == expected`.
pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got { Ok(()) } else { Err(Error::DimensionMismatch { what, expected, got }) }
}

/// Log-probabilities of the proposal at its own samples: must be finite (a sample drawn from q
/// has q > 0).
pub(crate) fn check_finite_slice(what: &'static str, xs: &[f64]) -> Result<()> {
    match xs.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::NonFinite { what, sample: i, feature: None, value: xs[i] }),
    }
}

/// Log-scores that may be `-inf` (a zero) but never NaN or `+inf`.
pub(crate) fn check_log_scores(what: &'static str, xs: &[f64]) -> Result<()> {
    match xs.iter().position(|v| v.is_nan() || *v == f64::INFINITY) {
        None => Ok(()),
        Some(i) => Err(Error::NonFinite { what, sample: i, feature: None, value: xs[i] }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_is_checked_and_rows_slice() {
        let data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let m = RowMatrix::new(&data, 2, 3).unwrap();
        assert_eq!(m.row(1), &[4.0, 5.0, 6.0]);
        assert!(matches!(
            RowMatrix::new(&data, 4, 2),
            Err(Error::DimensionMismatch { expected: 8, got: 6, .. })
        ));
        let bad = [1.0, f64::NAN, 0.0, 0.0];
        let m = RowMatrix::new(&bad, 2, 2).unwrap();
        assert_eq!(
            m.check_finite("features").unwrap_err().to_string(),
            "features is NaN at sample 0, feature 1"
        );
    }

    #[test]
    fn log_scores_allow_minus_infinity_only() {
        assert!(check_log_scores("log_target", &[0.0, f64::NEG_INFINITY]).is_ok());
        assert!(check_log_scores("log_target", &[0.0, f64::INFINITY]).is_err());
        assert!(check_finite_slice("log_proposal", &[0.0, f64::NEG_INFINITY]).is_err());
    }
}
