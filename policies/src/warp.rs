//! [`Warper`]: temperature, top-k and top-p, the transformations of the next-token
//! distribution that the sampler draws from and that importance weights must use.

use crate::error::{Error, Result};

/// How the model's next-token distribution is transformed before sampling.
///
/// Applied in Hugging Face's order: temperature, then top-k, then top-p. The log-probs of
/// the transformed distribution (what [`crate::Samples::sampling_log_probs`] reports and
/// [`crate::Gpt2::warped_token_log_probs`] recomputes) are `z_i - logsumexp(z_kept)` for
/// kept tokens (`z = logits / temperature`) and `-inf` for removed ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warper {
    /// Divides the logits; must be positive and finite. 1 leaves them unchanged.
    pub temperature: f64,
    /// Keep only tokens whose (tempered) logit is at least the k-th largest (ties kept, as
    /// Hugging Face does). `None` keeps all.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p`
    /// (nucleus sampling; the token that crosses the threshold is kept). `None` or 1 keeps all.
    pub top_p: Option<f64>,
}

impl Default for Warper {
    fn default() -> Self {
        Self::ANCESTRAL
    }
}

impl Warper {
    /// Plain ancestral sampling from the model (the paper's default).
    pub const ANCESTRAL: Self = Self { temperature: 1.0, top_k: None, top_p: None };

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::Sampling {
                name: "temperature",
                value: self.temperature.to_string(),
                reason: "must be positive and finite",
            });
        }
        if self.top_k == Some(0) {
            return Err(Error::Sampling {
                name: "top_k",
                value: "0".into(),
                reason: "must be at least 1 (use None to disable)",
            });
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(Error::Sampling {
                name: "top_p",
                value: p.to_string(),
                reason: "must be in (0, 1]",
            });
        }
        Ok(())
    }

    /// Whether this warper leaves the distribution unchanged.
    pub fn is_identity(&self) -> bool {
        self.temperature == 1.0 && self.is_temperature_only()
    }

    /// Whether this warper truncates nothing (no top-k, no top-p below 1): at most a
    /// temperature.
    pub fn is_temperature_only(&self) -> bool {
        self.top_k.is_none() && self.top_p.is_none_or(|p| p >= 1.0)
    }

    /// Writes the warped log-probabilities of one logits row into `out` (`-inf` for removed
    /// tokens). `scratch` is reused between calls to avoid allocation.
    pub(crate) fn log_probs(&self, logits: &[f32], out: &mut Vec<f64>, scratch: &mut Vec<usize>) {
        let t = self.temperature;
        out.clear();
        out.extend(logits.iter().map(|&x| f64::from(x) / t));
        if let Some(k) = self.top_k
            && k < out.len()
        {
            scratch.clear();
            scratch.extend(0..out.len());
            // k-th largest value: partition so that index k-1 holds it.
            let (_, kth, _) =
                scratch.select_nth_unstable_by(k - 1, |&a, &b| out[b].total_cmp(&out[a]));
            let threshold = out[*kth];
            for z in out.iter_mut() {
                if *z < threshold {
                    *z = f64::NEG_INFINITY;
                }
            }
        }
        if let Some(p) = self.top_p
            && p < 1.0
        {
            let lse = log_sum_exp(out);
            scratch.clear();
            scratch.extend((0..out.len()).filter(|&i| out[i] > f64::NEG_INFINITY));
            // Most likely first; ties broken by id so the result is deterministic.
            scratch.sort_unstable_by(|&a, &b| out[b].total_cmp(&out[a]).then(a.cmp(&b)));
            let mut mass_before = 0.0;
            let mut cut = scratch.len();
            for (rank, &i) in scratch.iter().enumerate() {
                if mass_before >= p {
                    cut = rank;
                    break;
                }
                mass_before += (out[i] - lse).exp();
            }
            for &i in &scratch[cut..] {
                out[i] = f64::NEG_INFINITY;
            }
        }
        let lse = log_sum_exp(out);
        for z in out.iter_mut() {
            *z -= lse;
        }
    }
}

/// `log(sum(exp(x)))`, with the maximum taken out; `-inf` entries contribute nothing.
fn log_sum_exp(x: &[f64]) -> f64 {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + x.iter().map(|&v| (v - max).exp()).sum::<f64>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warp(w: Warper, logits: &[f32]) -> Vec<f64> {
        let mut out = Vec::new();
        w.log_probs(logits, &mut out, &mut Vec::new());
        out
    }

    #[test]
    fn identity_is_log_softmax() {
        let lp = warp(Warper::ANCESTRAL, &[1.0, 2.0, 3.0]);
        let z: f64 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        for (i, v) in lp.iter().enumerate() {
            assert!((v - ((i + 1) as f64 - z)).abs() < 1e-12);
        }
    }

    #[test]
    fn temperature_top_k_top_p() {
        let logits = [0.0f32, 2.0, 1.0, 2.0, -1.0];
        let t = warp(Warper { temperature: 2.0, ..Warper::ANCESTRAL }, &logits);
        let z: f64 = logits.iter().map(|&x| (f64::from(x) / 2.0).exp()).sum::<f64>().ln();
        assert!((t[1] - (1.0 - z)).abs() < 1e-12);
        // top-2 keeps the two tied 2.0 logits; top-3 keeps 2.0, 2.0, 1.0.
        let k2 = warp(Warper { top_k: Some(2), ..Warper::ANCESTRAL }, &logits);
        assert_eq!(k2.iter().filter(|v| v.is_finite()).count(), 2);
        assert!((k2[1] - 0.5f64.ln()).abs() < 1e-12);
        let k1 = warp(Warper { top_k: Some(1), ..Warper::ANCESTRAL }, &logits);
        assert_eq!(
            k1.iter().filter(|v| v.is_finite()).count(),
            2,
            "ties at the k-th value are kept"
        );
        // probabilities: p(2.0) = 0.3907 each, p(1.0) = 0.1437, p(0) = 0.0529, p(-1) = 0.0195.
        let p = warp(Warper { top_p: Some(0.5), ..Warper::ANCESTRAL }, &logits);
        assert_eq!(p.iter().filter(|v| v.is_finite()).count(), 2);
        let p = warp(Warper { top_p: Some(0.9), ..Warper::ANCESTRAL }, &logits);
        assert_eq!(p.iter().filter(|v| v.is_finite()).count(), 3);
        let total: f64 = p.iter().map(|v| v.exp()).sum();
        assert!((total - 1.0).abs() < 1e-12);
    }

    #[test]
    fn invalid_settings() {
        assert!(Warper { temperature: 0.0, ..Warper::ANCESTRAL }.validate().is_err());
        assert!(Warper { top_k: Some(0), ..Warper::ANCESTRAL }.validate().is_err());
        assert!(Warper { top_p: Some(1.5), ..Warper::ANCESTRAL }.validate().is_err());
        assert!(Warper { top_p: Some(1.0), ..Warper::ANCESTRAL }.is_identity());
    }
}
