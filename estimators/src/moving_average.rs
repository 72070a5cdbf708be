//! [`MovingAverage`]: a windowed mean of past values, for f-DPG's baseline.

use std::collections::VecDeque;

/// The mean of (about) the last `window` values, pushed a batch at a time.
///
/// Whole batches are kept or dropped: after a push, the oldest batches are dropped while the
/// rest still hold at least `window` values. disco's `WindowedMovingAverage` (window 1024)
/// keeps exactly the last 1024 values; this keeps between `window` and `window + batch`.
#[derive(Debug, Clone, PartialEq)]
pub struct MovingAverage {
    window: usize,
    batches: VecDeque<(f64, usize)>,
    sum: f64,
    count: usize,
}

impl MovingAverage {
    /// An empty average over `window` values (at least 1).
    pub fn new(window: usize) -> Self {
        Self { window: window.max(1), batches: VecDeque::new(), sum: 0.0, count: 0 }
    }

    /// Adds a batch of `count` values with mean `mean` (ignored if `count` is 0 or `mean` is
    /// not finite).
    pub fn push(&mut self, mean: f64, count: usize) {
        if count == 0 || !mean.is_finite() {
            return;
        }
        self.batches.push_back((mean * count as f64, count));
        self.sum += mean * count as f64;
        self.count += count;
        while let Some(&(s, c)) = self.batches.front() {
            if self.count - c < self.window {
                break;
            }
            self.batches.pop_front();
            self.sum -= s;
            self.count -= c;
        }
    }

    /// The current mean, `None` before the first push.
    pub fn value(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The state as numbers: `[sum, count, (batch sum, batch count)...]`.
    pub fn to_state(&self) -> Vec<f64> {
        let mut v = vec![self.sum, self.count as f64];
        for &(s, c) in &self.batches {
            v.extend([s, c as f64]);
        }
        v
    }

    /// The average [`to_state`](Self::to_state) saved, with this average's window; `None` if
    /// `state` is not such a state.
    pub fn from_state(window: usize, state: &[f64]) -> Option<Self> {
        let (&[sum, count], rest) = state.split_first_chunk::<2>()?;
        if rest.len() % 2 != 0 || count < 0.0 || count.fract() != 0.0 {
            return None;
        }
        let batches = rest.chunks(2).map(|b| (b[0], b[1] as usize)).collect();
        Some(Self { window: window.max(1), batches, sum, count: count as usize })
    }

    /// The window, in values.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Number of values in the window.
    pub fn count(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_window_of_batches() {
        let mut m = MovingAverage::new(4);
        assert_eq!(m.value(), None);
        m.push(1.0, 2);
        m.push(3.0, 2);
        assert_eq!(m.value(), Some(2.0));
        m.push(5.0, 2); // drops the first batch: (3+3+5+5)/4
        assert_eq!((m.value(), m.count()), (Some(4.0), 4));
        m.push(f64::NAN, 3);
        assert_eq!(m.count(), 4);
        let mut back = MovingAverage::from_state(4, &m.to_state()).unwrap();
        assert_eq!((back.value(), back.count()), (m.value(), m.count()));
        back.push(7.0, 2);
        m.push(7.0, 2);
        assert_eq!(back.to_state(), m.to_state());
        assert!(MovingAverage::from_state(4, &[1.0]).is_none());
        assert!(MovingAverage::from_state(4, &[1.0, 2.0, 3.0]).is_none());
    }
}
