//! Log-space arithmetic: log-sum-exp with max subtraction, log-mean-exp, effective sample size.
//!
//! Importance weights P/q of whole sequences over- and underflow f64 (a 40-token sequence has
//! log-probabilities in the hundreds), so every sum of weights in this crate goes through these
//! functions. A log weight of `-inf` is a weight of exactly 0 and contributes nothing.

/// `log(exp(a) + exp(b))`, exact for infinite arguments (`-inf` is a zero term).
pub fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY || hi == f64::INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// `log Σ_i exp(x_i)`, subtracting the maximum first so that no term overflows.
///
/// Returns `-inf` for an empty slice or when every term is `-inf` (a sum of zeros), and
/// `+inf` if any term is `+inf`. NaN in, NaN out: validate inputs first.
pub fn log_sum_exp(xs: &[f64]) -> f64 {
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max.is_infinite() {
        return if xs.iter().any(|x| x.is_nan()) { f64::NAN } else { max };
    }
    let sum: f64 = xs.iter().map(|&x| (x - max).exp()).sum();
    max + sum.ln()
}

/// `log((1/n) Σ_i exp(x_i))`: the log of a mean of weights given in log space.
///
/// `-inf` for an empty slice.
pub fn log_mean_exp(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NEG_INFINITY;
    }
    log_sum_exp(xs) - (xs.len() as f64).ln()
}

/// Normalised weights `exp(x_i) / Σ_j exp(x_j)`. All zeros if every term is `-inf`.
pub fn normalized_weights(log_weights: &[f64]) -> Vec<f64> {
    let lse = log_sum_exp(log_weights);
    if lse == f64::NEG_INFINITY {
        return vec![0.0; log_weights.len()];
    }
    log_weights.iter().map(|&x| (x - lse).exp()).collect()
}

/// Kish's effective sample size `(Σ w)² / Σ w²` of weights given in log space.
///
/// Between 1 and n when some weight is positive; 0 when all are zero (or the slice is empty).
pub fn effective_sample_size(log_weights: &[f64]) -> f64 {
    let max = log_weights.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return 0.0;
    }
    let (s1, s2) = log_weights.iter().fold((0.0, 0.0), |(s1, s2), &x| {
        let w = (x - max).exp();
        (s1 + w, s2 + w * w)
    });
    s1 * s1 / s2
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn log_sum_exp_matches_direct_sum_and_survives_extremes() {
        let xs = [0.1, -2.0, 1.5];
        let direct: f64 = xs.iter().map(|x: &f64| x.exp()).sum::<f64>().ln();
        assert_relative_eq!(log_sum_exp(&xs), direct, epsilon = 1e-14);
        assert_relative_eq!(log_sum_exp(&[1000.0, 1000.0]), 1000.0 + 2f64.ln(), epsilon = 1e-12);
        assert_relative_eq!(log_sum_exp(&[-1000.0, -1000.0]), -1000.0 + 2f64.ln(), epsilon = 1e-12);
        assert_relative_eq!(log_sum_exp(&[1000.0, -1000.0]), 1000.0, epsilon = 1e-12);
        assert_eq!(log_sum_exp(&[]), f64::NEG_INFINITY);
        assert_eq!(log_sum_exp(&[f64::NEG_INFINITY; 3]), f64::NEG_INFINITY);
        assert_eq!(log_sum_exp(&[f64::NEG_INFINITY, 2.0]), 2.0);
        assert_eq!(log_sum_exp(&[f64::INFINITY, 2.0]), f64::INFINITY);
        assert!(log_sum_exp(&[f64::NAN, 2.0]).is_nan());
    }

    #[test]
    fn log_add_exp_handles_infinities() {
        assert_relative_eq!(log_add_exp(1.0, 2.0), (1f64.exp() + 2f64.exp()).ln());
        assert_eq!(log_add_exp(f64::NEG_INFINITY, f64::NEG_INFINITY), f64::NEG_INFINITY);
        assert_eq!(log_add_exp(f64::NEG_INFINITY, -3.0), -3.0);
        assert_relative_eq!(log_add_exp(-1000.0, -1000.0), -1000.0 + 2f64.ln());
    }

    #[test]
    fn mean_weights_and_ess() {
        assert_relative_eq!(log_mean_exp(&[1000.0; 4]), 1000.0, epsilon = 1e-12);
        let w = normalized_weights(&[0.0, 0.0, f64::NEG_INFINITY, 2f64.ln()]);
        assert_eq!(w, vec![0.25, 0.25, 0.0, 0.5]);
        // ESS of (1, 1, 0, 2): 16 / 6.
        assert_relative_eq!(
            effective_sample_size(&[-700.0, -700.0, f64::NEG_INFINITY, -700.0 + 2f64.ln()]),
            16.0 / 6.0,
            epsilon = 1e-12
        );
        assert_eq!(effective_sample_size(&[f64::NEG_INFINITY]), 0.0);
        assert_relative_eq!(effective_sample_size(&[5.0; 10]), 10.0, epsilon = 1e-12);
    }
}
