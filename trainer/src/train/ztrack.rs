//! [`ZLog`]: the estimators' [`ZTracker`] as the checkpoint stores it: its exact state in 112
//! bytes (a tag, then the 13 numbers of [`ZTracker::to_state`]), whatever the number of
//! samples seen. Checkpoints written before this format hold a replay log instead (every batch
//! of log weights, an empty batch for each new proposal); they are still read, by replaying it.

use anyhow::{Result, ensure};
use tilt_ebm::ZEstimate;
use tilt_estimators::ZTracker;

/// The tag of the state format (the replay log starts with a batch length, never this).
const STATE_TAG: &[u8; 8] = b"tiltZ\x02\0\0";

/// The Z tracker of a run.
#[derive(Debug, Clone, Default)]
pub struct ZLog {
    tracker: ZTracker,
}

impl ZLog {
    /// No samples yet.
    pub fn new() -> Self {
        Self { tracker: ZTracker::new() }
    }

    /// Adds a batch from the current proposal.
    pub fn push(&mut self, log_target: &[f64], log_proposal: &[f64]) -> Result<ZEstimate> {
        Ok(self.tracker.push(log_target, log_proposal)?)
    }

    /// q was replaced.
    pub fn new_proposal(&mut self) {
        self.tracker.new_proposal();
    }

    /// `log Ẑ`, pooled (`None` before any sample with P > 0).
    pub fn log_z(&self) -> Option<f64> {
        self.tracker.log_z()
    }

    /// The pooled estimate.
    pub fn estimate(&self) -> ZEstimate {
        self.tracker.estimate()
    }

    /// Proposals seen.
    pub fn proposals(&self) -> usize {
        self.tracker.proposals()
    }

    /// A JSON summary for the manifest.
    pub fn summary(&self) -> serde_json::Value {
        let e = self.estimate();
        serde_json::json!({
            "log_z": e.log_z.is_finite().then_some(e.log_z),
            "se_log_z": e.se_log_z.is_finite().then_some(e.se_log_z),
            "n": self.tracker.n(),
            "proposals": self.proposals(),
        })
    }

    /// The tag, then [`ZTracker::to_state`] (f64s, little-endian).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = STATE_TAG.to_vec();
        for v in self.tracker.to_state() {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// The tracker [`to_bytes`](Self::to_bytes) wrote, or an older checkpoint's replay log.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let Some(rest) = b.strip_prefix(STATE_TAG.as_slice()) else {
            return Self::replay(b);
        };
        ensure!(rest.len() == 13 * 8, "the Z tracker state is {} bytes, not 104", rest.len());
        let mut state = [0.0; 13];
        for (v, chunk) in state.iter_mut().zip(rest.chunks_exact(8)) {
            *v = f64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        }
        Ok(Self { tracker: ZTracker::from_state(state)? })
    }

    /// Rebuilds the tracker from a replay log: for each event its length (u64 LE) then its
    /// f64s (LE); an empty event is a new proposal.
    fn replay(mut b: &[u8]) -> Result<Self> {
        let mut z = Self::new();
        let word = |b: &[u8]| -> [u8; 8] { b[..8].try_into().expect("8 bytes") };
        while !b.is_empty() {
            ensure!(b.len() >= 8, "truncated Z tracker log");
            let n = u64::from_le_bytes(word(b)) as usize;
            b = &b[8..];
            ensure!(b.len() / 8 >= n, "truncated Z tracker log");
            if n == 0 {
                z.new_proposal();
            } else {
                let lw: Vec<f64> = (0..n).map(|i| f64::from_le_bytes(word(&b[8 * i..]))).collect();
                z.push(&lw, &vec![0.0; n])?;
            }
            b = &b[8 * n..];
        }
        Ok(z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed() -> ZLog {
        let mut z = ZLog::new();
        z.push(&[0.5, f64::NEG_INFINITY, -2.0], &[0.0, 0.0, -1.0]).unwrap();
        z.new_proposal();
        z.push(&[1.0, 3.0], &[0.5, 0.5]).unwrap();
        z
    }

    #[test]
    fn state_round_trips_exactly_in_constant_size() {
        let z = fed();
        let bytes = z.to_bytes();
        assert_eq!(bytes.len(), 112);
        let back = ZLog::from_bytes(&bytes).unwrap();
        assert_eq!(
            back.tracker.to_state().map(f64::to_bits),
            z.tracker.to_state().map(f64::to_bits)
        );
        assert!(ZLog::from_bytes(&bytes[..100]).is_err());
        let mut corrupt = bytes.clone();
        corrupt[8..16].copy_from_slice(&f64::NAN.to_le_bytes());
        assert!(ZLog::from_bytes(&corrupt).is_err());
    }

    #[test]
    fn an_older_checkpoints_replay_log_is_still_read() {
        let mut log = Vec::new();
        let mut event = |values: &[f64]| {
            log.extend_from_slice(&(values.len() as u64).to_le_bytes());
            values.iter().for_each(|v| log.extend_from_slice(&v.to_le_bytes()));
        };
        event(&[0.5, f64::NEG_INFINITY, -1.0]);
        event(&[]);
        event(&[0.5, 2.5]);
        let back = ZLog::from_bytes(&log).unwrap();
        let z = fed();
        assert_eq!(
            back.tracker.to_state().map(f64::to_bits),
            z.tracker.to_state().map(f64::to_bits)
        );
        assert!(ZLog::from_bytes(&log[..log.len() - 4]).is_err());
    }
}
