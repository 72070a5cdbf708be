//! Drawing the next tokens on the model's device, at uniforms chosen on the host, so that
//! decoding never reads the `[batch, vocab]` logits back.
//!
//! The draw has two stages, a block of [`BLOCK`] tokens and then a token of that block, each
//! by inverting a CDF: every cumulative sum is then at most `max(vocab / BLOCK, BLOCK)` long
//! (a cumulative sum is quadratic in its length on CubeCL, whose kernel sums the whole
//! prefix for every entry), and single-precision rounding stays relative to each stage's
//! mass (see [`two_stage`]).

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// Tokens per block of the two-level search.
const BLOCK: usize = 128;

/// The draws of one decoding step, all on the device, `[batch, 1]` each.
pub(crate) struct DeviceDraws<B: Backend> {
    /// The drawn tokens.
    pub tokens: Tensor<B, 2, Int>,
    /// Their log-probs under the tempered distribution sampled from.
    pub warped_log_probs: Tensor<B, 2>,
    /// Their log-probs under the model.
    pub model_log_probs: Tensor<B, 2>,
}

/// Draws one token per row of `logits` (`[batch, vocab]`, float 32) from
/// `softmax(logits / temperature)` with the two uniforms of each row (`uniforms`,
/// `[batch, 2]`, in [0, 1)): see [`two_stage`]. A token of zero probability (underflow) is
/// never drawn.
pub(crate) fn draw_on_device<B: Backend>(
    logits: Tensor<B, 2>,
    uniforms: Tensor<B, 2>,
    temperature: f64,
) -> DeviceDraws<B> {
    // Unnormalised probabilities exp(x - max): one exponential per entry serves the draw and
    // the model's log-sum-exp (a second one with a temperature).
    let shifted = logits.clone() - logits.max_dim(1);
    let weights = shifted.clone().exp();
    let log_total = weights.clone().sum_dim(1).log();
    if temperature == 1.0 {
        let tokens = two_stage(weights, uniforms);
        let model_log_probs = shifted.gather(1, tokens.clone()) - log_total;
        let warped_log_probs = model_log_probs.clone();
        return DeviceDraws { tokens, warped_log_probs, model_log_probs };
    }
    let tempered = shifted.clone().div_scalar(temperature);
    let tempered_weights = tempered.clone().exp();
    let tempered_log_total = tempered_weights.clone().sum_dim(1).log();
    let tokens = two_stage(tempered_weights, uniforms);
    let model_log_probs = shifted.gather(1, tokens.clone()) - log_total;
    let warped_log_probs = tempered.gather(1, tokens.clone()) - tempered_log_total;
    DeviceDraws { tokens, warped_log_probs, model_log_probs }
}

/// Draws an index from each row of the probabilities `probs` (`[batch, n]`, non-negative,
/// not necessarily normalised) in two exact stages, each by inverting a CDF: a block of
/// [`BLOCK`] entries with probability proportional to its mass, at the row's first uniform,
/// then an entry of that block with probability proportional to its own, at the second
/// (`uniforms`, `[batch, 2]`). Each stage's rounding is relative to its own total, so an
/// entry's probability is off by at most about `ε · max(mass, block mass / BLOCK)` (single
/// precision ε) rather than `ε` of the whole distribution, which would distort every token
/// rarer than a few in ten million. Returns `[batch, 1]`.
fn two_stage<B: Backend>(probs: Tensor<B, 2>, uniforms: Tensor<B, 2>) -> Tensor<B, 2, Int> {
    let [batch, n] = probs.dims();
    let blocks_n = n.div_ceil(BLOCK);
    let padded = if blocks_n * BLOCK > n {
        let zeros = Tensor::zeros([batch, blocks_n * BLOCK - n], &probs.device());
        Tensor::cat(vec![probs, zeros], 1)
    } else {
        probs
    };
    let blocks = padded.reshape([batch, blocks_n, BLOCK]);
    let sums = blocks.clone().sum_dim(2).reshape([batch, blocks_n]);
    let block = invert_cdf(sums, uniforms.clone().slice([0..batch, 0..1]));
    let index = block.clone().reshape([batch, 1, 1]).expand([batch, 1, BLOCK]);
    let row = blocks.gather(1, index).reshape([batch, BLOCK]);
    let within = invert_cdf(row, uniforms.slice([0..batch, 1..2]));
    block.mul_scalar(BLOCK as i64) + within
}

/// The index `i` with `cdf(i - 1) <= u · total < cdf(i)` in each row of the non-negative
/// `weights` (`[batch, m]`, at least one positive per row) at the uniforms `u`
/// (`[batch, 1]`), `[batch, 1]`; the last positive index if rounding puts `u · total` past
/// the end. The cumulative sum is `m` long: keep `m` small (it is quadratic on CubeCL).
fn invert_cdf<B: Backend>(weights: Tensor<B, 2>, u: Tensor<B, 2>) -> Tensor<B, 2, Int> {
    let [batch, m] = weights.dims();
    let cumulative = weights.clone().cumsum(1);
    let target = u * cumulative.clone().slice([0..batch, m - 1..m]);
    // Clamped at 0 for a row without positive weight (NaN logits), to stay a valid index.
    count_at_or_below(cumulative, target).min_pair(last_positive(weights)).clamp_min(0)
}

/// Per row, the number of entries of the non-decreasing `values` (`[batch, n]`) that are at
/// most `target` (`[batch, 1]`), `[batch, 1]`.
fn count_at_or_below<B: Backend>(values: Tensor<B, 2>, target: Tensor<B, 2>) -> Tensor<B, 2, Int> {
    let dims = values.dims();
    values.lower_equal(target.expand(dims)).int().sum_dim(1)
}

/// Per row, the index of the last positive entry of `x` (`[batch, n]`), `[batch, 1]`; -1 if
/// none is positive.
fn last_positive<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2, Int> {
    let [batch, n] = x.dims();
    let one_based = Tensor::<B, 1, Int>::arange(1..n as i64 + 1, &x.device())
        .reshape([1, n])
        .expand([batch, n]);
    (x.greater_elem(0.0).int() * one_based).max_dim(1) - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    type B = Flex;

    fn tensor(data: Vec<f32>, shape: [usize; 2]) -> Tensor<B, 2> {
        Tensor::from_data(TensorData::new(data, shape), &Default::default())
    }

    fn ints(t: Tensor<B, 2, Int>) -> Vec<i64> {
        t.into_data().convert::<i64>().into_vec().unwrap()
    }

    /// The host sampler's inverse CDF (double precision) over `weights`, at `u`.
    fn inverse(weights: &[f64], u: f64) -> usize {
        crate::sampler::draw_weighted(weights, weights.iter().sum(), u)
    }

    /// The two-stage draw in double precision.
    fn reference(probs: &[f32], u: [f64; 2]) -> i64 {
        let p: Vec<f64> = probs.iter().map(|&x| f64::from(x)).collect();
        let blocks: Vec<f64> = p.chunks(BLOCK).map(|c| c.iter().sum()).collect();
        let block = inverse(&blocks, u[0]);
        let end = (block * BLOCK + BLOCK).min(p.len());
        (block * BLOCK + inverse(&p[block * BLOCK..end], u[1])) as i64
    }

    #[test]
    fn draws_a_block_then_an_entry() {
        // 3 rows over 300 entries (3 blocks, the last one padded).
        let n = 300;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut probs: Vec<f32> = (0..3 * n).map(|_| rng.random::<f32>()).collect();
        // Row 1: zeros except three entries, one in each block.
        for (i, p) in probs[n..2 * n].iter_mut().enumerate() {
            *p = if [5, 200, 299].contains(&i) { 1.0 } else { 0.0 };
        }
        let mut seen = std::collections::BTreeSet::new();
        for k in 0..200 {
            // Away from the float-32 rounding of a boundary: multiples of 1/256 and 1/64.
            let u: Vec<[f64; 2]> = (0..3)
                .map(|r| {
                    [((k * 5 + r) % 256) as f64 / 256.0, ((k * 7 + r) % 64) as f64 / 64.0 + 1e-3]
                })
                .collect();
            let flat: Vec<f32> = u.iter().flat_map(|p| p.map(|x| x as f32)).collect();
            let got = ints(two_stage(tensor(probs.clone(), [3, n]), tensor(flat, [3, 2])));
            for r in 0..3 {
                let want = reference(&probs[r * n..(r + 1) * n], u[r]);
                assert_eq!(got[r], want, "row {r}, u {:?}", u[r]);
                seen.insert((r, want / BLOCK as i64));
            }
        }
        // Every block of every row was drawn from.
        assert_eq!(seen.len(), 9);
    }

    #[test]
    fn never_draws_a_zero_probability_token() {
        // Mass only in the first block of row 0, and at one entry of row 1's second block;
        // uniforms of (almost) 1 must not land in the zeros.
        let mut probs = vec![0.0f32; 2 * 256];
        probs[3] = 0.5;
        probs[7] = 0.5;
        probs[256 + 130] = 1.0;
        let u = tensor(vec![1.0 - f32::EPSILON / 2.0, 1.0, 1.0, 1.0 - f32::EPSILON / 2.0], [2, 2]);
        assert_eq!(ints(two_stage(tensor(probs, [2, 256]), u)), vec![7, 130]);
        // A row without mass (NaN logits) still gives a valid index.
        let nan = tensor(vec![f32::NAN; 200], [1, 200]);
        let i = ints(two_stage(nan, tensor(vec![0.5, 0.5], [1, 2])))[0];
        assert!((0..200).contains(&i), "{i}");
    }

    #[test]
    fn log_probs_are_the_model_and_the_tempered_ones() {
        let logits = vec![0.5f32, -1.0, 2.0, 0.0, 1.0, 1.0];
        let draws = draw_on_device(
            tensor(logits.clone(), [2, 3]),
            tensor(vec![0.5, 0.99, 0.5, 0.0], [2, 2]),
            0.5,
        );
        assert_eq!(ints(draws.tokens), vec![2, 0]);
        let lse = |xs: &[f32], t: f32| xs.iter().map(|x| (x / t).exp()).sum::<f32>().ln();
        let model: Vec<f32> = draws.model_log_probs.into_data().to_vec().unwrap();
        let warped: Vec<f32> = draws.warped_log_probs.into_data().to_vec().unwrap();
        let expect_model = [2.0 - lse(&logits[..3], 1.0), 0.0 - lse(&logits[3..], 1.0)];
        let expect_warped = [4.0 - lse(&logits[..3], 0.5), 0.0 - lse(&logits[3..], 0.5)];
        for i in 0..2 {
            assert!((model[i] - expect_model[i]).abs() < 1e-6);
            assert!((warped[i] - expect_warped[i]).abs() < 1e-6);
        }
    }
}
