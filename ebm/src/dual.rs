//! The passes over the sample matrix behind [`MomentFit`](crate::MomentFit): the convex dual
//! `L(λ) = log Σ_i exp(o_i + λ·φ_i) − λ·μ̄` (with `o_i = log a_i − log q_i`) with its gradient
//! and Hessian diagonal in one pass, and Hessian-vector products in one pass each.
//!
//! Every pass streams the row-major matrix once, split into contiguous row ranges over scoped
//! threads. Rows are processed in small blocks: the block's scores `s_i = o_i + λ·φ_i` are
//! computed first, the running maximum is updated (rescaling the accumulators when it grows,
//! so no `exp` ever overflows), and the block is accumulated while it is still in cache.

/// Rows per block: 32 rows of 1,000 f64 are 256 KiB, which stays in L2 between the scoring and
/// the accumulation of the block.
const BLOCK: usize = 32;

/// Below this many matrix entries a pass runs on the calling thread: spawning costs more.
const MIN_ENTRIES_PER_THREAD: usize = 1 << 17;

/// Dot product with eight independent accumulators, so that the compiler can vectorise it
/// (a single accumulator would force strict left-to-right float addition).
#[inline]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Dot products of four rows with `v` at once: `v` is loaded once for the four rows, which
/// nearly halves the loads per multiply-add against four separate [`dot`]s.
#[inline]
fn dot4(rows: [&[f64]; 4], v: &[f64]) -> [f64; 4] {
    let (vc, vt) = v.as_chunks::<4>();
    let (c0, t0) = rows[0].as_chunks::<4>();
    let (c1, t1) = rows[1].as_chunks::<4>();
    let (c2, t2) = rows[2].as_chunks::<4>();
    let (c3, t3) = rows[3].as_chunks::<4>();
    let mut acc = [[0.0f64; 4]; 4];
    for ((((x0, x1), x2), x3), y) in c0.iter().zip(c1).zip(c2).zip(c3).zip(vc) {
        for l in 0..4 {
            acc[0][l] += x0[l] * y[l];
            acc[1][l] += x1[l] * y[l];
            acc[2][l] += x2[l] * y[l];
            acc[3][l] += x3[l] * y[l];
        }
    }
    let tails = [t0, t1, t2, t3];
    let mut out = [0.0; 4];
    for ((o, a), t) in out.iter_mut().zip(&acc).zip(tails) {
        let tail: f64 = t.iter().zip(vt).map(|(x, y)| x * y).sum();
        *o = (a[0] + a[2]) + (a[1] + a[3]) + tail;
    }
    out
}

/// `y += Σ_k a_k · x_k` over four rows at once.
#[inline]
fn axpy4(y: &mut [f64], a: [f64; 4], x: [&[f64]; 4]) {
    for ((((y, x0), x1), x2), x3) in y.iter_mut().zip(x[0]).zip(x[1]).zip(x[2]).zip(x[3]) {
        *y += (a[0] * x0 + a[1] * x1) + (a[2] * x2 + a[3] * x3);
    }
}

/// `s1 += Σ_k e_k x_k` and `s2 += Σ_k e_k x_k²` over four rows at once.
#[inline]
fn moments4(s1: &mut [f64], s2: &mut [f64], e: [f64; 4], x: [&[f64]; 4]) {
    let rows = x[0].iter().zip(x[1]).zip(x[2]).zip(x[3]);
    for ((a1, a2), (((x0, x1), x2), x3)) in s1.iter_mut().zip(s2.iter_mut()).zip(rows) {
        let (y0, y1, y2, y3) = (e[0] * x0, e[1] * x1, e[2] * x2, e[3] * x3);
        *a1 += (y0 + y1) + (y2 + y3);
        *a2 += (y0 * x0 + y1 * x1) + (y2 * x2 + y3 * x3);
    }
}

/// `y += a · x`.
#[inline]
fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// The samples of a fit: offsets `o_i` (`-inf` for a zero weight) and the row-major
/// `n × d` features.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dual<'a> {
    pub offset: &'a [f64],
    pub data: &'a [f64],
    pub d: usize,
    pub threads: usize,
}

/// Everything one evaluation pass at λ yields.
#[derive(Debug, Clone)]
pub(crate) struct Eval {
    /// `log Σ_i exp(s_i)`.
    pub log_norm: f64,
    /// SNIS moments `μ̂ = Σ w_i φ_i`, `w_i = exp(s_i − log_norm)`.
    pub mean: Vec<f64>,
    /// SNIS variances of each feature (the Hessian diagonal), clamped at 0.
    pub var: Vec<f64>,
    /// Kish ESS of the weights.
    pub ess: f64,
    /// The scores `s_i`.
    pub scores: Vec<f64>,
}

/// Sums scaled by `exp(-max)`.
#[derive(Debug, Clone)]
struct Partial {
    max: f64,
    s0: f64,
    s00: f64,
    s1: Vec<f64>,
    s2: Vec<f64>,
}

/// Splits rows `0..n` (of `d` entries each) into contiguous ranges, one per thread (fewer for
/// small matrices), and runs `work(range, out_piece)` on each, the first on the calling
/// thread; `out` holds `per_row` entries per row and is split along the same ranges. Returns
/// the results in row order.
pub(crate) fn par_rows<O: Send, R: Send>(
    n: usize,
    d: usize,
    threads: usize,
    out: &mut [O],
    per_row: usize,
    work: &(dyn Fn(std::ops::Range<usize>, &mut [O]) -> R + Sync),
) -> Vec<R> {
    let by_size = (n * d.max(1)) / MIN_ENTRIES_PER_THREAD;
    let t = threads.min(by_size).clamp(1, n.max(1));
    let chunk = n.div_ceil(t).max(1);
    let ranges: Vec<_> = (0..t).map(|k| (k * chunk).min(n)..((k + 1) * chunk).min(n)).collect();
    if ranges.len() == 1 {
        return vec![work(ranges[0].clone(), out)];
    }
    let mut pieces = Vec::with_capacity(ranges.len());
    let mut rest = out;
    for r in &ranges {
        let (head, tail) = rest.split_at_mut((r.len() * per_row).min(rest.len()));
        pieces.push(head);
        rest = tail;
    }
    std::thread::scope(|scope| {
        let mut it = ranges.into_iter().zip(pieces);
        let (first_range, first_out) = it.next().expect("at least one range");
        let handles: Vec<_> = it.map(|(r, o)| scope.spawn(move || work(r, o))).collect();
        let mut results = vec![work(first_range, first_out)];
        results.extend(handles.into_iter().map(|h| h.join().expect("worker thread panicked")));
        results
    })
}

/// The normalised weights `exp(s_i − log_norm)` of an evaluation.
pub(crate) fn weights(eval: &Eval) -> Vec<f64> {
    eval.scores.iter().map(|s| (s - eval.log_norm).exp()).collect()
}

impl Partial {
    fn new(d: usize) -> Self {
        Self { max: f64::NEG_INFINITY, s0: 0.0, s00: 0.0, s1: vec![0.0; d], s2: vec![0.0; d] }
    }

    fn rescale(&mut self, max: f64) {
        if self.max != f64::NEG_INFINITY {
            let f = (self.max - max).exp();
            self.s0 *= f;
            self.s00 *= f * f;
            self.s1.iter_mut().for_each(|v| *v *= f);
            self.s2.iter_mut().for_each(|v| *v *= f);
        }
        self.max = max;
    }

    fn merge(mut self, mut other: Self) -> Self {
        if other.max == f64::NEG_INFINITY {
            return self;
        }
        if self.max == f64::NEG_INFINITY {
            return other;
        }
        let max = self.max.max(other.max);
        self.rescale(max);
        other.rescale(max);
        self.s0 += other.s0;
        self.s00 += other.s00;
        axpy(&mut self.s1, 1.0, &other.s1[..]);
        axpy(&mut self.s2, 1.0, &other.s2[..]);
        self
    }
}

impl Dual<'_> {
    fn n(&self) -> usize {
        self.offset.len()
    }

    fn d(&self) -> usize {
        self.d
    }

    /// Runs `work` over contiguous row ranges, one per thread (see [`par_rows`]).
    fn par_map<R: Send>(
        &self,
        out: &mut [f64],
        work: &(dyn Fn(std::ops::Range<usize>, &mut [f64]) -> R + Sync),
    ) -> Vec<R> {
        let per_row = usize::from(!out.is_empty());
        par_rows(self.n(), self.d(), self.threads, out, per_row, work)
    }

    /// The value-gradient pass at λ.
    pub fn eval(&self, lambda: &[f64]) -> Eval {
        let d = self.d();
        let data = self.data;
        let mut scores = vec![f64::NEG_INFINITY; self.n()];
        let row = |i: usize| &data[i * d..(i + 1) * d];
        let work = |range: std::ops::Range<usize>, s_out: &mut [f64]| {
            let mut p = Partial::new(d);
            let base = range.start;
            let mut start = range.start;
            while start < range.end {
                let end = (start + BLOCK).min(range.end);
                let mut block_max = f64::NEG_INFINITY;
                let mut i = start;
                while i < end {
                    let group = (end - i).min(4);
                    let dots = if group == 4 {
                        dot4(std::array::from_fn(|k| row(i + k)), lambda)
                    } else {
                        std::array::from_fn(
                            |k| if k < group { dot(row(i + k), lambda) } else { 0.0 },
                        )
                    };
                    for (k, dk) in dots.iter().enumerate().take(group) {
                        let o = self.offset[i + k];
                        let s = if o == f64::NEG_INFINITY { o } else { o + dk };
                        s_out[i + k - base] = s;
                        block_max = block_max.max(s);
                    }
                    i += group;
                }
                if block_max > p.max {
                    p.rescale(block_max);
                }
                if block_max > f64::NEG_INFINITY {
                    let mut i = start;
                    while i < end {
                        let group = (end - i).min(4);
                        let e: [f64; 4] = std::array::from_fn(|k| {
                            if k < group { (s_out[i + k - base] - p.max).exp() } else { 0.0 }
                        });
                        p.s0 += e.iter().sum::<f64>();
                        p.s00 += e.iter().map(|e| e * e).sum::<f64>();
                        if group == 4 {
                            moments4(&mut p.s1, &mut p.s2, e, std::array::from_fn(|k| row(i + k)));
                        } else {
                            for (k, &ek) in e.iter().enumerate().take(group) {
                                if ek == 0.0 {
                                    continue;
                                }
                                for ((a1, a2), &f) in
                                    p.s1.iter_mut().zip(p.s2.iter_mut()).zip(row(i + k))
                                {
                                    let ef = ek * f;
                                    *a1 += ef;
                                    *a2 += ef * f;
                                }
                            }
                        }
                        i += group;
                    }
                }
                start = end;
            }
            p
        };
        let total = self
            .par_map(&mut scores, &work)
            .into_iter()
            .reduce(Partial::merge)
            .unwrap_or_else(|| Partial::new(d));
        if total.max == f64::NEG_INFINITY || total.s0 == 0.0 {
            return Eval {
                log_norm: f64::NEG_INFINITY,
                mean: vec![f64::NAN; d],
                var: vec![0.0; d],
                ess: 0.0,
                scores,
            };
        }
        let inv = 1.0 / total.s0;
        let mean: Vec<f64> = total.s1.iter().map(|v| v * inv).collect();
        let var = total.s2.iter().zip(&mean).map(|(s2, m)| (s2 * inv - m * m).max(0.0)).collect();
        Eval {
            log_norm: total.max + total.s0.ln(),
            mean,
            var,
            ess: total.s0 * total.s0 / total.s00,
            scores,
        }
    }

    /// Hessian-vector product `H v = Σ_i w_i (φ_i − μ̂)(φ_i − μ̂)·v`, the SNIS covariance of φ
    /// applied to `v`, in one pass. `w` are the normalised weights, `mean` the SNIS moments.
    pub fn hvp(&self, w: &[f64], mean: &[f64], v: &[f64]) -> Vec<f64> {
        let d = self.d();
        let data = self.data;
        let shift = dot(mean, v);
        let work = |range: std::ops::Range<usize>, _: &mut [f64]| {
            let mut acc = vec![0.0; d];
            let mut sum_u = 0.0;
            let row = |i: usize| &data[i * d..(i + 1) * d];
            let mut i = range.start;
            while i + 4 <= range.end {
                let rows: [&[f64]; 4] = std::array::from_fn(|k| row(i + k));
                let dots = dot4(rows, v);
                let u: [f64; 4] = std::array::from_fn(|k| w[i + k] * (dots[k] - shift));
                sum_u += u.iter().sum::<f64>();
                axpy4(&mut acc, u, rows);
                i += 4;
            }
            for (k, &wk) in w[i..range.end].iter().enumerate() {
                if wk == 0.0 {
                    continue;
                }
                let u = wk * (dot(row(i + k), v) - shift);
                sum_u += u;
                axpy(&mut acc, u, row(i + k));
            }
            (acc, sum_u)
        };
        let parts = self.par_map(&mut [], &work);
        let (mut acc, sum_u) = parts
            .into_iter()
            .reduce(|(mut a, sa), (b, sb)| {
                axpy(&mut a, 1.0, &b[..]);
                (a, sa + sb)
            })
            .unwrap_or_else(|| (vec![0.0; d], 0.0));
        // Σ w_i u_i (φ_i − μ̂) = acc − μ̂ Σ u_i; Σ u_i is 0 up to rounding.
        axpy(&mut acc, -sum_u, mean);
        acc
    }

    /// Standard errors of the SNIS moments of an evaluation, `√(Σ_i w_i² (φ_ij − μ̂_j)²)` for
    /// each feature j (`w` the normalised weights; the delta method for a ratio estimator), in
    /// one pass.
    pub fn moment_std_err(&self, eval: &Eval) -> Vec<f64> {
        let (d, data, mean) = (self.d(), self.data, &eval.mean[..]);
        let work = |range: std::ops::Range<usize>, _: &mut [f64]| {
            let mut acc = vec![0.0; d];
            for i in range {
                let w = (eval.scores[i] - eval.log_norm).exp();
                if w == 0.0 {
                    continue;
                }
                for ((a, f), m) in acc.iter_mut().zip(&data[i * d..(i + 1) * d]).zip(mean) {
                    *a += (w * (f - m)).powi(2);
                }
            }
            acc
        };
        let sums = self.par_map(&mut [], &work).into_iter().reduce(|mut a, b| {
            axpy(&mut a, 1.0, &b);
            a
        });
        sums.unwrap_or_else(|| vec![0.0; d]).into_iter().map(f64::sqrt).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RowMatrix;
    use approx::assert_relative_eq;

    #[test]
    fn dot_matches_naive_for_all_tail_lengths() {
        for n in 0..20 {
            let a: Vec<f64> = (0..n).map(|i| i as f64 * 0.5 - 1.0).collect();
            let b: Vec<f64> = (0..n).map(|i| 1.0 / (1.0 + i as f64)).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert_relative_eq!(dot(&a, &b), naive, epsilon = 1e-12);
            let rows: Vec<Vec<f64>> =
                (0..4).map(|k| a.iter().map(|x| x * (k as f64 + 1.0)).collect()).collect();
            let four = dot4(std::array::from_fn(|k| &rows[k][..]), &b);
            for (k, got) in four.iter().enumerate() {
                assert_relative_eq!(*got, naive * (k as f64 + 1.0), epsilon = 1e-12);
            }
        }
    }

    #[test]
    fn eval_hvp_and_std_err_match_dense_formulas_with_threads() {
        // 3 features, 200,000 rows so that up to 4 threads are used; a zero-weight row too.
        let (n, d) = (200_000usize, 3usize);
        assert!(n * d / MIN_ENTRIES_PER_THREAD >= 3);
        let feats: Vec<f64> = (0..n * d).map(|k| ((k * 7919) % 13) as f64 / 13.0 - 0.3).collect();
        let mut offset: Vec<f64> = (0..n).map(|i| ((i * 31) % 17) as f64 * 0.1 - 700.0).collect();
        offset[5] = f64::NEG_INFINITY;
        let lambda = [0.4, -1.1, 0.7];
        let v = [0.3, 0.2, -0.5];
        let mut results = Vec::new();
        let m = RowMatrix::new(&feats, n, d).unwrap();
        for threads in [1, 2, 3] {
            let dual = Dual { offset: &offset, data: &feats, d, threads };
            let e = dual.eval(&lambda);
            let w = weights(&e);
            let se = dual.moment_std_err(&e);
            results.push((
                e.log_norm,
                e.mean.clone(),
                e.var.clone(),
                dual.hvp(&w, &e.mean, &v),
                se,
            ));
        }
        // Dense reference.
        let s: Vec<f64> = (0..n).map(|i| offset[i] + dot(m.row(i), &lambda)).collect();
        let lse = crate::logspace::log_sum_exp(&s);
        let w: Vec<f64> = s.iter().map(|x| (x - lse).exp()).collect();
        let mu: Vec<f64> =
            (0..d).map(|j| (0..n).map(|i| w[i] * m.row(i)[j]).sum::<f64>()).collect();
        let mut hv = vec![0.0; d];
        for (i, wi) in w.iter().enumerate() {
            let c: Vec<f64> = (0..d).map(|j| m.row(i)[j] - mu[j]).collect();
            let cv = dot(&c, &v);
            for (h, cj) in hv.iter_mut().zip(&c) {
                *h += wi * cj * cv;
            }
        }
        for (log_norm, mean, var, h, se) in results {
            assert_relative_eq!(log_norm, lse, epsilon = 1e-9);
            for j in 0..d {
                assert_relative_eq!(mean[j], mu[j], epsilon = 1e-12);
                let vj: f64 = (0..n).map(|i| w[i] * (m.row(i)[j] - mu[j]).powi(2)).sum();
                assert_relative_eq!(var[j], vj, epsilon = 1e-10);
                assert_relative_eq!(h[j], hv[j], epsilon = 1e-12);
                let se2: f64 = (0..n).map(|i| (w[i] * (m.row(i)[j] - mu[j])).powi(2)).sum();
                assert_relative_eq!(se[j], se2.sqrt(), max_relative = 1e-9);
            }
        }
    }
}
