//! [`ZTracker`]: the partition function Z pooled across successive proposals.

use tilt_ebm::{PooledZ, ZEstimate, log_weights};

use crate::Result;

/// A running estimate of `Z = E_q[P/q]`, pooled over every batch from every proposal.
///
/// The weights `P/q_t` of a batch from proposal `q_t` have mean Z whatever `q_t` is (and
/// whatever earlier batches made the trainer choose it), so the mean of all weights seen is
/// unbiased for Z (METHODS §4; gdc keeps a cumulative mean of per-check estimates, disco a
/// cumulative per-sample mean). The pooling and its standard error are `tilt-ebm`'s
/// [`PooledZ`]; this type adds the bookkeeping per proposal: call
/// [`new_proposal`](Self::new_proposal) when q is replaced, and read both the pooled and the
/// current proposal's own estimate.
#[derive(Debug, Clone, Default)]
pub struct ZTracker {
    pooled: PooledZ,
    current: PooledZ,
    proposals: usize,
}

impl ZTracker {
    /// No samples yet; the first proposal is current.
    pub fn new() -> Self {
        Self { pooled: PooledZ::new(), current: PooledZ::new(), proposals: 1 }
    }

    /// Adds a batch drawn from the current proposal (`log P`, `-inf` for P = 0, and
    /// `log q`) and returns that batch's own estimate. Fails, adding nothing, on a length
    /// mismatch, NaN, `+inf` in `log_target` or a non-finite `log_proposal`.
    pub fn push(&mut self, log_target: &[f64], log_proposal: &[f64]) -> Result<ZEstimate> {
        let lw = log_weights(log_target, log_proposal)?;
        let batch = self.pooled.push(&lw)?;
        self.current.push(&lw)?;
        Ok(batch)
    }

    /// Marks that q was replaced: later batches belong to a new proposal.
    pub fn new_proposal(&mut self) {
        self.current = PooledZ::new();
        self.proposals += 1;
    }

    /// The pooled estimate over all samples (log Z, its standard error, ESS, n).
    pub fn estimate(&self) -> ZEstimate {
        self.pooled.estimate()
    }

    /// The estimate from the current proposal's samples only.
    pub fn current_estimate(&self) -> ZEstimate {
        self.current.estimate()
    }

    /// `log Ẑ`, or `None` before any sample with `P > 0`.
    pub fn log_z(&self) -> Option<f64> {
        let e = self.estimate();
        (self.pooled.n() > 0 && e.log_z.is_finite()).then_some(e.log_z)
    }

    /// Number of samples pooled.
    pub fn n(&self) -> usize {
        self.pooled.n()
    }

    /// Number of proposals seen (1 before any [`new_proposal`](Self::new_proposal)).
    pub fn proposals(&self) -> usize {
        self.proposals
    }

    /// The exact state as 13 numbers, for checkpoints: the pooled and the current proposal's
    /// [`PooledZ::to_state`], then the number of proposals. Constant in size.
    pub fn to_state(&self) -> [f64; 13] {
        let mut s = [0.0; 13];
        s[..6].copy_from_slice(&self.pooled.to_state());
        s[6..12].copy_from_slice(&self.current.to_state());
        s[12] = self.proposals as f64;
        s
    }

    /// The tracker [`to_state`](Self::to_state) described, bit for bit.
    ///
    /// # Errors
    /// [`Error::InvalidState`](crate::Error::InvalidState) for a state no tracker can be in.
    pub fn from_state(state: [f64; 13]) -> Result<Self> {
        let part = |r: std::ops::Range<usize>| -> Result<PooledZ> {
            let s: [f64; 6] = state[r].try_into().expect("six numbers");
            PooledZ::from_state(s).map_err(|e| crate::Error::InvalidState {
                estimator: "z_tracker",
                reason: e.to_string(),
            })
        };
        let (pooled, current) = (part(0..6)?, part(6..12)?);
        let proposals = state[12];
        let consistent = proposals >= 1.0
            && proposals.fract() == 0.0
            && proposals < 2f64.powi(53)
            && current.n() <= pooled.n()
            && current.batches() <= pooled.batches();
        if !consistent {
            return Err(crate::Error::InvalidState {
                estimator: "z_tracker",
                reason: format!(
                    "{proposals} proposals, {} of {} samples in the current one",
                    current.n(),
                    pooled.n()
                ),
            });
        }
        Ok(Self { pooled, current, proposals: proposals as usize })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn pools_all_batches_and_tracks_the_current_proposal() {
        let mut z = ZTracker::new();
        assert_eq!(z.log_z(), None);
        // weights 2, 0, 4 then (new proposal) 3, 1
        z.push(&[2f64.ln(), f64::NEG_INFINITY, 4f64.ln()], &[0.0; 3]).unwrap();
        z.new_proposal();
        z.push(&[3f64.ln() - 1.0, -1.0], &[-1.0, -1.0]).unwrap();
        assert_relative_eq!(z.estimate().z(), 2.0, epsilon = 1e-12);
        assert_relative_eq!(z.current_estimate().z(), 2.0, epsilon = 1e-12);
        assert_eq!((z.n(), z.proposals()), (5, 2));
        // sample sd of {2,0,4,3,1} = sqrt(2.5); se = sqrt(2.5/5)
        assert_relative_eq!(z.estimate().se_z(), 0.5f64.sqrt(), epsilon = 1e-12);
        assert!(z.push(&[f64::NAN], &[0.0]).is_err());
        assert_eq!(z.n(), 5);
        let restored = ZTracker::from_state(z.to_state()).unwrap();
        assert_eq!(restored.to_state().map(f64::to_bits), z.to_state().map(f64::to_bits));
        assert_eq!(restored.current_estimate(), z.current_estimate());
        let mut bad = z.to_state();
        bad[12] = 0.0;
        assert!(ZTracker::from_state(bad).is_err());
        let mut bad = z.to_state();
        bad[6] = 99.0;
        assert!(ZTracker::from_state(bad).is_err());
    }
}
