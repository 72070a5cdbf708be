//! A Monte Carlo estimate with its standard error.

/// A point estimate from `n` samples and its standard error.
///
/// `se` is `+inf` when it cannot be estimated (fewer than two samples) and `value` is `+inf`
/// when the quantity is infinite on the samples (e.g. a KL where the second distribution is 0
/// at a sample where the first is not). Neither is ever NaN for validated inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The point estimate.
    pub value: f64,
    /// Its (estimated) standard error.
    pub se: f64,
    /// Number of samples it was computed from.
    pub n: usize,
}

impl Estimate {
    /// The normal interval `value ± z · se` (z = 1.96 for 95%).
    pub fn interval(&self, z: f64) -> (f64, f64) {
        (self.value - z * self.se, self.value + z * self.se)
    }

    /// Whether `truth` lies in [`interval(z)`](Self::interval).
    pub fn covers(&self, truth: f64, z: f64) -> bool {
        let (lo, hi) = self.interval(z);
        lo <= truth && truth <= hi
    }
}

/// Mean and standard error of the mean (`sd / √n`, with the n-1 variance) of `terms`.
///
/// Any `+inf` term makes the estimate infinite (value and se `+inf`), rather than NaN.
pub(crate) fn mean_se(terms: &[f64]) -> Estimate {
    let n = terms.len();
    if n == 0 {
        return Estimate { value: f64::NAN, se: f64::INFINITY, n };
    }
    if terms.iter().any(|t| t.is_infinite()) {
        let value = terms.iter().sum::<f64>();
        return Estimate { value, se: f64::INFINITY, n };
    }
    let mean = terms.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return Estimate { value: mean, se: f64::INFINITY, n };
    }
    let ss: f64 = terms.iter().map(|t| (t - mean) * (t - mean)).sum();
    Estimate { value: mean, se: (ss / ((n - 1) * n) as f64).sqrt(), n }
}

/// Mean of `terms` with a delta-method standard error: the se is that of the mean of the
/// influence values `psi` (which must have the same length), the linearisation of a
/// non-linear (e.g. self-normalised) estimator.
pub(crate) fn mean_with_influence(terms: &[f64], psi: &[f64]) -> Estimate {
    let value = mean_se(terms);
    if value.value.is_infinite() {
        return value;
    }
    Estimate { se: mean_se(psi).se, ..value }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn mean_and_standard_error() {
        let e = mean_se(&[1.0, 2.0, 3.0, 4.0]);
        assert_relative_eq!(e.value, 2.5);
        // sample variance 5/3, se = sqrt(5/12)
        assert_relative_eq!(e.se, (5.0f64 / 12.0).sqrt());
        assert!(e.covers(2.0, 1.96) && !e.covers(0.0, 1.96));
        let inf = mean_se(&[1.0, f64::INFINITY]);
        assert_eq!((inf.value, inf.se), (f64::INFINITY, f64::INFINITY));
        assert_eq!(mean_se(&[3.0]).se, f64::INFINITY);
    }
}
