//! [`ZLog`]: the estimators' [`ZTracker`] with a replay log, so that a checkpoint restores it
//! exactly (the tracker itself has no serialised form): every batch of log weights and every
//! proposal change is recorded and replayed in order on resume.

use anyhow::{Result, ensure};
use tilt_ebm::ZEstimate;
use tilt_estimators::ZTracker;

/// A Z tracker that remembers what it was fed.
#[derive(Debug, Clone, Default)]
pub struct ZLog {
    tracker: ZTracker,
    /// Batches of `log P − log q`; an empty batch marks a new proposal.
    events: Vec<Vec<f64>>,
}

impl ZLog {
    /// No samples yet.
    pub fn new() -> Self {
        Self { tracker: ZTracker::new(), events: Vec::new() }
    }

    /// Adds a batch from the current proposal.
    pub fn push(&mut self, log_target: &[f64], log_proposal: &[f64]) -> Result<ZEstimate> {
        let e = self.tracker.push(log_target, log_proposal)?;
        self.events.push(log_target.iter().zip(log_proposal).map(|(p, q)| p - q).collect());
        Ok(e)
    }

    /// q was replaced.
    pub fn new_proposal(&mut self) {
        self.tracker.new_proposal();
        self.events.push(Vec::new());
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

    /// The replay log: for each event its length (u64 LE) then its f64s (LE).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for e in &self.events {
            b.extend_from_slice(&(e.len() as u64).to_le_bytes());
            e.iter().for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
        }
        b
    }

    /// Rebuilds the tracker by replaying [`to_bytes`](Self::to_bytes)'s log.
    pub fn from_bytes(mut b: &[u8]) -> Result<Self> {
        let mut z = Self::new();
        let word = |b: &[u8]| -> [u8; 8] { b[..8].try_into().expect("8 bytes") };
        while !b.is_empty() {
            ensure!(b.len() >= 8, "truncated Z tracker log");
            let n = u64::from_le_bytes(word(b)) as usize;
            b = &b[8..];
            ensure!(b.len() >= 8 * n, "truncated Z tracker log");
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
