//! Ziegler et al.'s adaptive KL coefficient.

use crate::{Error, Result};

/// The proportional controller of Ziegler et al. 2019 ("Fine-Tuning Language Models from
/// Human Preferences", §2.2) that keeps KL(π‖a) near a target:
///
/// `e = clip(KL / target − 1, −0.2, 0.2)`, `β ← β (1 + e · n / horizon)`,
///
/// where KL is the batch's `mean(log π − log a)` and n the number of samples in the step.
/// Defaults ([`ziegler`](Self::ziegler)): β₀ = 0.2, target 6 nats, horizon 10,000 (the
/// paper's PPO config; gdc `gdc/ppo.py:53-76`, trl before PR #2480).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveKlController {
    beta: f64,
    target: f64,
    horizon: f64,
}

/// The clip on the proportional error (Ziegler et al.).
const ERROR_CLIP: f64 = 0.2;

impl AdaptiveKlController {
    /// A controller starting at `init_beta`; all three must be positive and finite.
    pub fn new(init_beta: f64, target: f64, horizon: f64) -> Result<Self> {
        for (name, value) in [("init_beta", init_beta), ("target", target), ("horizon", horizon)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(Error::InvalidConfig {
                    name,
                    value,
                    reason: "must be positive and finite",
                });
            }
        }
        Ok(Self { beta: init_beta, target, horizon })
    }

    /// β₀ = 0.2, target KL 6, horizon 10,000.
    pub fn ziegler() -> Self {
        Self { beta: 0.2, target: 6.0, horizon: 10_000.0 }
    }

    /// The current β.
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// The target KL.
    pub fn target(&self) -> f64 {
        self.target
    }

    /// Sets β (restoring a saved controller).
    pub(crate) fn set_beta(&mut self, beta: f64) {
        self.beta = beta;
    }

    /// One controller step after a batch of `n_samples` whose KL estimate was `kl`: moves β
    /// toward the target (see the type's documentation). A non-finite `kl` leaves β unchanged.
    pub fn update(&mut self, kl: f64, n_samples: usize) {
        if !kl.is_finite() {
            return;
        }
        let e = (kl / self.target - 1.0).clamp(-ERROR_CLIP, ERROR_CLIP);
        self.beta *= 1.0 + e * n_samples as f64 / self.horizon;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn follows_the_formula_and_clips() {
        let mut c = AdaptiveKlController::ziegler();
        c.update(6.6, 100); // e = 0.1
        assert_relative_eq!(c.beta(), 0.2 * (1.0 + 0.1 * 0.01), epsilon = 1e-15);
        let b = c.beta();
        c.update(600.0, 1000); // clipped to 0.2
        assert_relative_eq!(c.beta(), b * 1.02, epsilon = 1e-15);
        let b = c.beta();
        c.update(0.0, 1000); // clipped to -0.2
        assert_relative_eq!(c.beta(), b * 0.98, epsilon = 1e-15);
        c.update(f64::NAN, 1000);
        assert_relative_eq!(c.beta(), b * 0.98, epsilon = 1e-15);
        assert!(AdaptiveKlController::new(0.0, 6.0, 1.0).is_err());
    }
}
