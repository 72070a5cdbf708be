//! [`KvCache`]: keys and values of past positions for incremental decoding.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::config::Gpt2Config;

/// Keys and values of one attention layer, preallocated at full length.
#[derive(Debug, Clone)]
pub(crate) struct LayerCache<B: Backend> {
    /// `[batch, n_head, capacity, head_dim]`.
    pub(crate) key: Tensor<B, 4>,
    /// `[batch, n_head, capacity, head_dim]`.
    pub(crate) value: Tensor<B, 4>,
}

/// The key/value cache of a batch being decoded, passed `&mut` to [`crate::Gpt2::forward`].
///
/// Allocated **once** per batch at its full length (`capacity` = prompt length + new tokens);
/// each forward call writes the new positions in place (`slice_assign`) and attends to the
/// filled prefix, so no tensor is concatenated or reallocated while decoding.
///
/// Layout per layer: keys and values `[batch, n_head, capacity, head_dim]`, positions
/// `0..len()` filled. Positions are in the padded coordinate system of the batch (left
/// padding included); the attention mask passed to forward says which of them are real.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    pub(crate) layers: Vec<LayerCache<B>>,
    len: usize,
    capacity: usize,
    batch: usize,
}

impl<B: Backend> KvCache<B> {
    /// Allocates a zeroed cache for `batch` sequences of up to `capacity` positions.
    pub fn new(config: &Gpt2Config, batch: usize, capacity: usize, device: &B::Device) -> Self {
        let shape = [batch, config.n_head, capacity, config.head_dim()];
        let layers = (0..config.n_layer)
            .map(|_| LayerCache {
                key: Tensor::zeros(shape, device),
                value: Tensor::zeros(shape, device),
            })
            .collect();
        Self { layers, len: 0, capacity, batch }
    }

    /// Number of positions already filled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is filled yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum number of positions.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Batch size the cache was allocated for.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// Forgets all positions (keeps the memory) so the cache can serve a new batch of the
    /// same size.
    pub fn reset(&mut self) {
        self.len = 0;
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}

impl<B: Backend> LayerCache<B> {
    /// Writes `key`/`value` (`[batch, n_head, seq, head_dim]`) at positions `start..start+seq`
    /// and returns the filled prefix `0..start+seq` of both.
    pub(crate) fn update(
        &mut self,
        start: usize,
        key: Tensor<B, 4>,
        value: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [b, h, seq, d] = key.dims();
        let end = start + seq;
        // Move the tensors out so the backend sees a unique handle and can write in place.
        let k = std::mem::replace(&mut self.key, key.clone());
        let v = std::mem::replace(&mut self.value, value.clone());
        self.key = k.slice_assign([0..b, 0..h, start..end, 0..d], key);
        self.value = v.slice_assign([0..b, 0..h, start..end, 0..d], value);
        (
            self.key.clone().slice([0..b, 0..h, 0..end, 0..d]),
            self.value.clone().slice([0..b, 0..h, 0..end, 0..d]),
        )
    }
}
