//! Exact, differentiable scoring of given sequences: [`SequenceBatch`], [`Gpt2::log_prob`],
//! [`Gpt2::token_log_probs`].

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, FloatDType, Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::model::Gpt2;

/// A batch of token sequences to score, left-padded to one length.
///
/// Row `b` is `[padding..., prompt..., generated...]`. Only positions with `score_mask` set
/// contribute to [`Gpt2::log_prob`]; a scored position needs a real token before it (a
/// prediction is made from the previous position), so position 0 is never scored.
///
/// # Shapes
/// All three tensors are `[batch, seq]`.
#[derive(Debug, Clone)]
pub struct SequenceBatch<B: Backend> {
    /// Token ids; padding positions hold any valid id.
    pub input_ids: Tensor<B, 2, Int>,
    /// `true` for real tokens (prompt or generated), `false` for padding.
    pub attention_mask: Tensor<B, 2, Bool>,
    /// `true` for the generated tokens whose log-probability is summed.
    pub score_mask: Tensor<B, 2, Bool>,
}

impl<B: Backend> SequenceBatch<B> {
    /// Builds a batch from host data, checking it.
    ///
    /// `ids`, `attention_mask` and `score_mask` are row-major `[batch, seq]`. Errors if a
    /// length disagrees with `[batch, seq]`, if a scored position is padding or has no real
    /// token before it, or if an id does not fit in the backend's int type.
    pub fn from_host(
        ids: &[u32],
        attention_mask: &[bool],
        score_mask: &[bool],
        [batch, seq]: [usize; 2],
        device: &B::Device,
    ) -> Result<Self> {
        let n = batch * seq;
        if ids.len() != n || attention_mask.len() != n || score_mask.len() != n {
            return Err(Error::Input(format!(
                "ids/attention_mask/score_mask have {}/{}/{} entries, expected {batch} x {seq} = {n}",
                ids.len(),
                attention_mask.len(),
                score_mask.len()
            )));
        }
        for b in 0..batch {
            for t in 0..seq {
                let i = b * seq + t;
                if score_mask[i] && (!attention_mask[i] || t == 0 || !attention_mask[i - 1]) {
                    return Err(Error::Input(format!(
                        "row {b}, position {t} is scored but is padding or has no real token before it"
                    )));
                }
            }
        }
        let ids: Vec<i64> = ids.iter().map(|&x| i64::from(x)).collect();
        Ok(Self {
            input_ids: Tensor::from_data(TensorData::new(ids, [batch, seq]), device),
            attention_mask: Tensor::from_data(
                TensorData::new(attention_mask.to_vec(), [batch, seq]),
                device,
            ),
            score_mask: Tensor::from_data(
                TensorData::new(score_mask.to_vec(), [batch, seq]),
                device,
            ),
        })
    }

    /// Builds a left-padded batch from whole rows (`prompt ++ continuation`) and the length of
    /// each row's prompt; every token after the prompt is scored. Padding uses id 0.
    ///
    /// Errors if a prompt is empty or longer than its row, or if the counts disagree.
    pub fn from_rows(rows: &[Vec<u32>], prompt_lens: &[usize], device: &B::Device) -> Result<Self> {
        if rows.len() != prompt_lens.len() {
            return Err(Error::Input(format!(
                "{} rows but {} prompt lengths",
                rows.len(),
                prompt_lens.len()
            )));
        }
        let seq = rows.iter().map(Vec::len).max().unwrap_or(0);
        let batch = rows.len();
        let mut ids = vec![0u32; batch * seq];
        let mut attention = vec![false; batch * seq];
        let mut score = vec![false; batch * seq];
        for (b, (row, &p)) in rows.iter().zip(prompt_lens).enumerate() {
            if p == 0 || p > row.len() {
                return Err(Error::Input(format!(
                    "row {b}: prompt length {p} must be in 1..={}",
                    row.len()
                )));
            }
            let pad = seq - row.len();
            for (t, &id) in row.iter().enumerate() {
                let i = b * seq + pad + t;
                ids[i] = id;
                attention[i] = true;
                score[i] = t >= p;
            }
        }
        Self::from_host(&ids, &attention, &score, [batch, seq], device)
    }

    /// `[batch, seq]`.
    pub fn dims(&self) -> [usize; 2] {
        self.input_ids.dims()
    }

    /// Rows `start..end` as a batch of their own.
    pub fn rows(&self, start: usize, end: usize) -> Self {
        let [_, seq] = self.dims();
        Self {
            input_ids: self.input_ids.clone().slice([start..end, 0..seq]),
            attention_mask: self.attention_mask.clone().slice([start..end, 0..seq]),
            score_mask: self.score_mask.clone().slice([start..end, 0..seq]),
        }
    }

    /// Splits the batch into consecutive minibatches of at most `size` rows (for gradient
    /// accumulation: score and backpropagate one minibatch at a time).
    ///
    /// # Panics
    /// If `size` is 0.
    pub fn minibatches(&self, size: usize) -> Vec<Self> {
        assert!(size > 0, "minibatch size must be positive");
        let [batch, _] = self.dims();
        (0..batch).step_by(size).map(|start| self.rows(start, (start + size).min(batch))).collect()
    }
}

impl<B: Backend> Gpt2<B> {
    /// Per-token log-probabilities `log p(x_t | x_<t)` of the batch's tokens.
    ///
    /// Computed in f32 as `logit[x_t] - logsumexp(logits)` (no full log-softmax tensor);
    /// differentiable on an autodiff backend. Dropout acts if the backend records gradients
    /// and the model's dropout is positive (see [`Gpt2`]).
    ///
    /// # Shapes
    /// - output: `[batch, seq]`, aligned with `input_ids`; 0 where `score_mask` is false
    ///   (always at position 0).
    pub fn token_log_probs(&self, batch: &SequenceBatch<B>) -> Tensor<B, 2> {
        self.token_log_probs_and_hidden(batch).0
    }

    /// [`Gpt2::token_log_probs`] and the final hidden states `[batch, seq, n_embd]` of the same
    /// forward pass (for a [`ValueHead`](crate::ValueHead)).
    pub fn token_log_probs_and_hidden(
        &self,
        batch: &SequenceBatch<B>,
    ) -> (Tensor<B, 2>, Tensor<B, 3>) {
        let [b, seq] = batch.dims();
        let device = batch.input_ids.device();
        let hidden =
            self.forward_hidden(batch.input_ids.clone(), Some(batch.attention_mask.clone()), None);
        if seq < 2 {
            return (Tensor::zeros([b, seq], &device), hidden);
        }
        let d = hidden.dims()[2];
        // Position t - 1 predicts token t.
        let logits =
            self.lm_head(hidden.clone().slice([0..b, 0..seq - 1, 0..d])).cast(FloatDType::F32);
        let targets = batch.input_ids.clone().slice([0..b, 1..seq]);
        let picked = logits.clone().gather(2, targets.unsqueeze_dim(2)).squeeze_dim::<2>(2);
        // Log-sum-exp with the max taken out; the max is a constant for the gradient.
        let max = logits.clone().detach().max_dim(2);
        let lse = (logits - max.clone()).exp().sum_dim(2).log() + max;
        let lp = picked - lse.squeeze_dim::<2>(2);
        let scored = batch.score_mask.clone().slice([0..b, 1..seq]);
        let lp = lp.mask_fill(scored.bool_not(), 0.0);
        (Tensor::cat(vec![Tensor::zeros([b, 1], &device), lp], 1), hidden)
    }

    /// Sequence log-probabilities: the sum of [`Gpt2::token_log_probs`] over scored positions.
    ///
    /// # Shapes
    /// - output: `[batch]`.
    pub fn log_prob(&self, batch: &SequenceBatch<B>) -> Tensor<B, 1> {
        let [b, _] = batch.dims();
        self.token_log_probs(batch).sum_dim(1).reshape([b])
    }

    /// [`Gpt2::log_prob`] computed `minibatch` rows at a time and concatenated, bounding the
    /// size of the logits tensor. On an autodiff backend the graphs of all minibatches stay
    /// alive until backward; to bound memory there, backpropagate per element of
    /// [`SequenceBatch::minibatches`] instead.
    ///
    /// # Panics
    /// If `minibatch` is 0.
    pub fn log_prob_minibatched(&self, batch: &SequenceBatch<B>, minibatch: usize) -> Tensor<B, 1> {
        let parts: Vec<_> =
            batch.minibatches(minibatch).iter().map(|mb| self.log_prob(mb)).collect();
        Tensor::cat(parts, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Gpt2Config;
    use burn::backend::Flex;
    use burn::tensor::activation::log_softmax;

    type B = Flex;

    #[test]
    fn token_log_probs_are_log_softmax_at_scored_positions() {
        let device = Default::default();
        let model = Gpt2Config::tiny().init_seeded::<B>(&device, 11);
        let rows = vec![vec![1, 2, 3, 4, 5], vec![6, 7, 8]];
        let batch = SequenceBatch::<B>::from_rows(&rows, &[2, 1], &device).unwrap();
        let tok: Vec<f32> = model.token_log_probs(&batch).into_data().to_vec().unwrap();
        let logits =
            model.forward(batch.input_ids.clone(), Some(batch.attention_mask.clone()), None);
        let lsm: Vec<f32> = log_softmax(logits, 2).into_data().to_vec().unwrap();
        let v = 16;
        // Row 0: no padding; positions 2,3,4 scored (prompt length 2).
        // Row 1: two padding positions; positions 3,4 scored (prompt length 1).
        let mut want = vec![0.0f32; 10];
        let padded = [vec![1, 2, 3, 4, 5], vec![0, 0, 6, 7, 8]];
        for (b, scored) in [(0usize, 2..5), (1, 3..5)] {
            for t in scored {
                want[b * 5 + t] = lsm[(b * 5 + t - 1) * v + padded[b][t] as usize];
            }
        }
        for (g, w) in tok.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{tok:?} vs {want:?}");
        }
        let seq: Vec<f32> = model.log_prob(&batch).into_data().to_vec().unwrap();
        assert!((seq[0] - want[..5].iter().sum::<f32>()).abs() < 1e-5);
        assert!((seq[1] - want[5..].iter().sum::<f32>()).abs() < 1e-5);
    }

    #[test]
    fn invalid_batches_are_rejected() {
        let device = Default::default();
        // Scoring a padding position.
        let r =
            SequenceBatch::<B>::from_host(&[0, 1], &[false, true], &[true, false], [1, 2], &device);
        assert!(r.is_err());
        // Scoring position 0.
        let r =
            SequenceBatch::<B>::from_host(&[0, 1], &[true, true], &[true, true], [1, 2], &device);
        assert!(r.is_err());
        // Wrong lengths.
        assert!(
            SequenceBatch::<B>::from_host(&[0], &[true, true], &[false, true], [1, 2], &device)
                .is_err()
        );
        // Empty prompt.
        assert!(SequenceBatch::<B>::from_rows(&[vec![1, 2]], &[0], &device).is_err());
    }
}
