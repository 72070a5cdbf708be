//! Fitting λ so that the target's moments match: the `MomentFit` builder and its report.

use crate::dual::{Dual, Eval, dot, weights};
use crate::matrix::{check_finite_slice, check_len, check_log_scores};
use crate::{Error, Result, RowMatrix};

/// Armijo sufficient-decrease constant of the line search.
const ARMIJO: f64 = 1e-4;
/// Halvings of the step before the line search gives up.
const MAX_HALVINGS: usize = 40;
/// Upper bound on conjugate-gradient iterations per Newton step (each is one pass).
const MAX_CG: usize = 500;

/// What [`MomentFit::fit`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct FitReport {
    /// The fitted coefficients λ.
    pub lambda: Vec<f64>,
    /// Newton iterations taken.
    pub iterations: usize,
    /// `max_j |μ̂_j(λ) − μ̄_j|`: the largest moment error left, with μ̂ the SNIS moments.
    pub residual: f64,
    /// Kish effective sample size `(Σ w)² / Σ w²` of the weights `a e^{λ·φ} / q` at λ.
    pub ess: f64,
    /// For each feature j, the standard error of its SNIS moment estimate μ̂_j at the fitted λ:
    /// `√(Σ_i w̃_i² (φ_ij − μ̂_j)²)` with `w̃` the normalised weights (the delta method for a
    /// ratio estimator). The fit sets μ̂ to the targets, so this says how far the true moments
    /// `E_{p_λ}[φ_j]` of the fitted target may be from the targets because λ was fitted on
    /// finitely many samples: λ's uncertainty in moment units. It shrinks like `1/√n`, and is
    /// itself unreliable when `ess` is small.
    pub moment_std_err: Vec<f64>,
    /// Whether `residual <= tolerance`.
    pub converged: bool,
    /// [`fit_conditional`](MomentFit::fit_conditional): the contexts left out because none of
    /// their samples has a positive weight (0 for [`fit`](MomentFit::fit)).
    pub groups_without_support: usize,
}

/// Fits λ so that the self-normalised importance-sampling moments of φ under
/// `p_λ ∝ a · exp(λ · φ)` equal the targets μ̄ (METHODS §2; the exponential-family target of
/// Khalifa, Elsahar and Dymetman, "A Distributional Approach to Controlled Text Generation",
/// ICLR 2021, whose code and disco fit λ by fixed-step gradient descent instead).
///
/// From samples `x_i` of any proposal q, given `log q(x_i)`, `log a(x_i)` and `φ(x_i)`, the
/// SNIS moments are `μ̂(λ) = Σ w_i φ_i / Σ w_i` with `w_i = a_i e^{λ·φ_i} / q_i`. They equal μ̄
/// at the minimum of the convex dual
///
/// `L(λ) = log Σ_i exp(log a_i − log q_i + λ·φ_i) − λ·μ̄`,
///
/// whose gradient is `μ̂ − μ̄` and whose Hessian is the SNIS covariance of φ. The fit is a
/// damped Newton method with an Armijo backtracking line search. Each Newton system
/// `(H + δI) p = −∇L` is solved by conjugate gradients preconditioned with the Hessian's
/// diagonal, using Hessian-vector products (one pass over the samples each, never forming the
/// d × d Hessian), to a relative accuracy `min(0.5, √‖∇L‖)` (Eisenstat–Walker, which keeps
/// Newton's fast local convergence), relaxed on the last step to what the tolerance needs.
/// The damping `δ` is tiny and shrinks with the gradient: it only matters when the Hessian is
/// singular (constant or duplicated features).
///
/// `log a` may include pointwise factors (`log a + Σ log b_i`): samples with `-inf` have
/// weight 0 and are ignored. Before iterating, every target is checked against the range its
/// feature spans on the samples with positive weight, which catches what makes the dual
/// unbounded feature by feature; a target that is inside each feature's range but outside the
/// joint convex hull of the samples' φ vectors shows up as `converged = false`.
///
/// The fitted λ matches the targets on these samples only: the true moments of `p_λ` differ
/// from them by sampling error, of the size the report's
/// [`moment_std_err`](FitReport::moment_std_err) gives per feature.
///
/// # Cost
/// One validation pass, then per Newton iteration one value-and-gradient pass per line-search
/// trial (usually one) and one pass per conjugate-gradient step, each O(n·d) over the
/// row-major matrix, split over threads (`std::thread::scope`). No d × d matrix is formed, so
/// memory is O(n + d) beyond the input. On a binary 100,000 × 1,000 problem a fit from λ = 0
/// to 1e-8 takes about 20 passes.
#[derive(Debug, Clone, PartialEq)]
pub struct MomentFit {
    targets: Vec<f64>,
    names: Option<Vec<String>>,
    tolerance: f64,
    max_iterations: usize,
    initial_lambda: Option<Vec<f64>>,
    threads: Option<usize>,
}

impl MomentFit {
    /// A fit to the moment targets μ̄ (one per feature), with defaults: tolerance `1e-8` on
    /// `max |μ̂ − μ̄|`, at most 100 Newton iterations, λ starting at 0, all available threads.
    pub fn new(targets: Vec<f64>) -> Self {
        Self {
            targets,
            names: None,
            tolerance: 1e-8,
            max_iterations: 100,
            initial_lambda: None,
            threads: None,
        }
    }

    /// Feature names used in error messages (one per feature).
    pub fn feature_names(mut self, names: Vec<String>) -> Self {
        self.names = Some(names);
        self
    }

    /// Stop when `max_j |μ̂_j − μ̄_j| <= tolerance` (absolute, in the features' units).
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Give up (with `converged = false`) after this many Newton iterations.
    pub fn max_iterations(mut self, max_iterations: usize) -> Self {
        self.max_iterations = max_iterations;
        self
    }

    /// Start from this λ (e.g. the previous fit) instead of 0.
    pub fn initial_lambda(mut self, lambda: Vec<f64>) -> Self {
        self.initial_lambda = Some(lambda);
        self
    }

    /// Number of threads for the passes over the samples (default: available parallelism).
    /// Small problems run on one thread whatever this says.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads.max(1));
        self
    }

    /// The moment targets μ̄.
    pub fn targets(&self) -> &[f64] {
        &self.targets
    }

    /// Fits λ on samples of a proposal q: `log_proposal[i] = log q(x_i)`,
    /// `log_base[i] = log a(x_i)` (plus pointwise log b; `-inf` allowed) and row i of
    /// `features` = φ(x_i) (`n × d`, d = number of targets).
    ///
    /// Errors: mismatched dimensions; NaN or infinite inputs (naming the sample and feature);
    /// no sample with positive weight; a target outside the range its feature spans on the
    /// samples ([`Error::TargetOutOfRange`]), on its edge ([`Error::TargetOnBoundary`]), or a
    /// binary feature that never fires or never fails while its target is strictly between 0
    /// and 1 ([`Error::NeverFires`], [`Error::NeverFails`]); a starting λ (`initial_lambda`)
    /// so large that a log weight overflows ([`Error::NonFinite`]) or every weight underflows
    /// ([`Error::NoSupport`]). Not reaching the tolerance is not an error: the report says
    /// `converged: false`.
    pub fn fit(
        &self,
        log_proposal: &[f64],
        log_base: &[f64],
        features: RowMatrix<'_>,
    ) -> Result<FitReport> {
        let d = self.targets.len();
        self.check_settings()?;
        let offset = offsets(log_proposal, log_base, features, d)?;
        let threads = self
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        let started = std::time::Instant::now();
        let scan = Scan::run(&offset, features, threads)?;
        log::debug!("MomentFit scanned {} x {d} features in {:?}", offset.len(), started.elapsed());
        self.check_reachable(&scan, offset.len())?;
        let lambda = self.initial_lambda.clone().unwrap_or_else(|| vec![0.0; d]);
        let offset = &offset[..];
        let objective =
            Objective { parts: vec![Dual { offset, data: features.data(), d, threads }] };
        let point = objective.eval(&lambda);
        check_start(&point.eval)?;
        Ok(self.newton(&objective, lambda, point, 0))
    }

    /// Fits λ to **conditional** moments: the rows come in consecutive groups of
    /// `group_sizes[c]` samples of a proposal q(·|c) for context c, with `log_base` =
    /// log a(x|c) (plus pointwise log b), and λ is fitted so that the mean over the contexts of
    /// each context's own SNIS moments equals the targets,
    ///
    /// `(1/C) Σ_c μ̂_c(λ) = μ̄`, `μ̂_c = Σ_{i∈c} w_i φ_i / Σ_{i∈c} w_i`,
    ///
    /// the moment of the conditional targets `p_λ(x|c) ∝ a(x|c) e^{λ·φ(x)}` averaged over the
    /// contexts (each normalised by its own Z_c(λ), as CDPG trains toward; pooling all the
    /// weights in one sum would weight each context by its Z_c instead). The dual is
    /// `(1/C) Σ_c log Σ_{i∈c} e^{o_i + λ·φ_i} − λ·μ̄`, convex, with gradient `mean_c μ̂_c − μ̄`
    /// and Hessian the mean of the contexts' SNIS covariances; it is minimised as in
    /// [`fit`](Self::fit). The report's ESS is the sum of the contexts' and its standard
    /// errors are `√(Σ_c se_c²) / C`. A context with no positive weight (every sample breaks
    /// a pointwise constraint) has no estimable moment: it is left out and counted in
    /// [`FitReport::groups_without_support`]; an error if all are.
    pub fn fit_conditional(
        &self,
        log_proposal: &[f64],
        log_base: &[f64],
        features: RowMatrix<'_>,
        group_sizes: &[usize],
    ) -> Result<FitReport> {
        let d = self.targets.len();
        self.check_settings()?;
        let offset = offsets(log_proposal, log_base, features, d)?;
        check_len("sum of group_sizes", offset.len(), group_sizes.iter().sum())?;
        let threads = self
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        let scan = Scan::run(&offset, features, threads)?;
        self.check_reachable(&scan, offset.len())?;
        let (mut parts, mut start, mut empty) = (Vec::new(), 0, 0);
        for &size in group_sizes {
            let rows = start..start + size;
            start += size;
            if offset[rows.clone()].iter().all(|o| *o == f64::NEG_INFINITY) {
                empty += 1;
                continue;
            }
            let data = &features.data()[rows.start * d..rows.end * d];
            parts.push(Dual { offset: &offset[rows], data, d, threads });
        }
        if parts.is_empty() {
            return Err(Error::NoSupport {
                what: "MomentFit::fit_conditional (no context has a sample with positive weight)",
                n_samples: offset.len(),
            });
        }
        let lambda = self.initial_lambda.clone().unwrap_or_else(|| vec![0.0; d]);
        let objective = Objective { parts };
        let point = objective.eval(&lambda);
        check_start(&point.eval)?;
        Ok(self.newton(&objective, lambda, point, empty))
    }

    fn check_settings(&self) -> Result<()> {
        let d = self.targets.len();
        check_finite_slice("targets", &self.targets)?;
        if let Some(names) = &self.names {
            check_len("feature_names", d, names.len())?;
        }
        if let Some(l) = &self.initial_lambda {
            check_len("initial_lambda", d, l.len())?;
            check_finite_slice("initial_lambda", l)?;
        }
        if self.tolerance.is_nan() || self.tolerance <= 0.0 {
            return Err(Error::InvalidParameter {
                name: "tolerance",
                value: self.tolerance,
                reason: "must be positive",
            });
        }
        Ok(())
    }

    fn name(&self, j: usize) -> String {
        match &self.names {
            Some(names) => names[j].clone(),
            None => format!("phi[{j}]"),
        }
    }

    /// Checks every target against the range of its feature on the positive-weight samples.
    fn check_reachable(&self, scan: &Scan, n_samples: usize) -> Result<()> {
        let (min, max, binary, n_active) = (&scan.min, &scan.max, &scan.binary, scan.n_active);
        if n_active == 0 {
            return Err(Error::NoSupport { what: "MomentFit", n_samples });
        }
        for (j, &target) in self.targets.iter().enumerate() {
            let (lo, hi) = (min[j], max[j]);
            let inside = target > 0.0 && target < 1.0;
            if binary[j] && inside && hi == 0.0 {
                return Err(Error::NeverFires {
                    feature: j,
                    name: self.name(j),
                    target,
                    n_samples: n_active,
                });
            }
            if binary[j] && inside && lo == 1.0 {
                return Err(Error::NeverFails {
                    feature: j,
                    name: self.name(j),
                    target,
                    n_samples: n_active,
                });
            }
            if target < lo || target > hi {
                return Err(Error::TargetOutOfRange {
                    feature: j,
                    name: self.name(j),
                    target,
                    min: lo,
                    max: hi,
                    n_samples: n_active,
                });
            }
            if lo < hi && (target == lo || target == hi) {
                return Err(Error::TargetOnBoundary {
                    feature: j,
                    name: self.name(j),
                    target,
                    min: lo,
                    max: hi,
                });
            }
        }
        Ok(())
    }

    fn gradient(&self, eval: &Eval) -> Vec<f64> {
        eval.mean.iter().zip(&self.targets).map(|(m, t)| m - t).collect()
    }

    fn loss(&self, eval: &Eval, lambda: &[f64]) -> f64 {
        eval.log_norm - dot(lambda, &self.targets)
    }

    fn newton(
        &self,
        objective: &Objective<'_>,
        mut lambda: Vec<f64>,
        mut point: Point,
        empty: usize,
    ) -> FitReport {
        let d = lambda.len();
        let mut iterations = 0;
        loop {
            let eval = &point.eval;
            let grad = self.gradient(eval);
            let residual = max_abs(&grad);
            if residual <= self.tolerance || iterations >= self.max_iterations || d == 0 {
                let converged = residual <= self.tolerance;
                if !converged {
                    log::warn!(
                        "MomentFit stopped after {iterations} iterations with max |mu_hat - \
                         mu_bar| = {residual:e} (tolerance {:e}); ESS {:.1}",
                        self.tolerance,
                        eval.ess
                    );
                }
                return report(objective, &point, lambda, iterations, residual, converged, empty);
            }
            iterations += 1;
            let (step, products) = newton_direction(objective, &point, &grad, self.tolerance);
            let loss = self.loss(eval, &lambda);
            let slope = dot(&grad, &step);
            let grad_norm = dot(&grad, &grad).sqrt();
            let mut alpha = 1.0;
            let mut accepted = None;
            let mut trials = 0;
            for _ in 0..MAX_HALVINGS {
                trials += 1;
                let trial: Vec<f64> =
                    lambda.iter().zip(&step).map(|(l, p)| l + alpha * p).collect();
                let trial_point = objective.eval(&trial);
                let trial_loss = self.loss(&trial_point.eval, &trial);
                let sufficient = trial_loss <= loss + ARMIJO * alpha * slope;
                // Near the optimum the loss changes by less than its rounding error: accept a
                // step that does not increase it beyond rounding and shrinks the gradient.
                let flat = (trial_loss - loss).abs() <= 1e-12 * (1.0 + loss.abs()) && {
                    let g = self.gradient(&trial_point.eval);
                    dot(&g, &g).sqrt() < grad_norm
                };
                if sufficient || flat {
                    accepted = Some((trial, trial_point));
                    break;
                }
                alpha *= 0.5;
            }
            log::debug!(
                "MomentFit iteration {iterations}: residual {residual:e}, {products} \
                 Hessian-vector products, {trials} line-search evaluations, step {alpha}"
            );
            match accepted {
                Some((l, p)) => {
                    lambda = l;
                    point = p;
                }
                None => {
                    log::warn!(
                        "MomentFit line search failed at iteration {iterations} with max \
                         |mu_hat - mu_bar| = {residual:e}: the targets may lie outside the \
                         convex hull of the sampled features"
                    );
                    return report(objective, &point, lambda, iterations, residual, false, empty);
                }
            }
        }
    }
}

/// The dual of a fit: one part ([`MomentFit::fit`]) or one per context
/// ([`MomentFit::fit_conditional`]), the objective being the mean of the parts' log
/// normalisers minus `λ·μ̄`.
struct Objective<'a> {
    parts: Vec<Dual<'a>>,
}

/// The objective evaluated at one λ: each part's pass, and their combination (means of the
/// log normalisers, moments and variances; sums of the ESS; the scores concatenated).
struct Point {
    eval: Eval,
    parts: Vec<Eval>,
}

impl Objective<'_> {
    fn eval(&self, lambda: &[f64]) -> Point {
        let parts: Vec<Eval> = self.parts.iter().map(|p| p.eval(lambda)).collect();
        let c = parts.len().max(1) as f64;
        let d = lambda.len();
        let mean_of = |f: &dyn Fn(&Eval) -> &[f64]| -> Vec<f64> {
            (0..d).map(|j| parts.iter().map(|e| f(e)[j]).sum::<f64>() / c).collect()
        };
        let eval = Eval {
            log_norm: parts.iter().map(|e| e.log_norm).sum::<f64>() / c,
            mean: mean_of(&|e| &e.mean),
            var: mean_of(&|e| &e.var),
            ess: parts.iter().map(|e| e.ess).sum(),
            scores: parts.iter().flat_map(|e| e.scores.iter().copied()).collect(),
        };
        Point { eval, parts }
    }

    /// The normalised weights of each part at `point`.
    fn weights(&self, point: &Point) -> Vec<Vec<f64>> {
        point.parts.iter().map(weights).collect()
    }

    /// `H v`: the mean over the parts of their SNIS covariances applied to `v`.
    fn hvp(&self, point: &Point, weights: &[Vec<f64>], v: &[f64]) -> Vec<f64> {
        let c = self.parts.len().max(1) as f64;
        let mut out = vec![0.0; v.len()];
        for ((dual, e), w) in self.parts.iter().zip(&point.parts).zip(weights) {
            out.iter_mut().zip(dual.hvp(w, &e.mean, v)).for_each(|(o, h)| *o += h);
        }
        out.iter_mut().for_each(|o| *o /= c);
        out
    }

    /// Standard errors of the combined moments: `√(Σ_c se_c²) / C`.
    fn moment_std_err(&self, point: &Point) -> Vec<f64> {
        let c = self.parts.len().max(1) as f64;
        let mut sum_sq = vec![0.0; point.eval.mean.len()];
        for (dual, e) in self.parts.iter().zip(&point.parts) {
            let se = dual.moment_std_err(e);
            sum_sq.iter_mut().zip(se).for_each(|(s, v)| *s += v * v);
        }
        sum_sq.into_iter().map(|s| s.sqrt() / c).collect()
    }
}

/// The report of a fit that ends at `lambda`, evaluated as `point`.
fn report(
    objective: &Objective<'_>,
    point: &Point,
    lambda: Vec<f64>,
    iterations: usize,
    residual: f64,
    converged: bool,
    groups_without_support: usize,
) -> FitReport {
    let moment_std_err = objective.moment_std_err(point);
    let ess = point.eval.ess;
    FitReport {
        lambda,
        iterations,
        residual,
        ess,
        moment_std_err,
        converged,
        groups_without_support,
    }
}

/// `max_j |g_j|`, or `+inf` if some `g_j` is NaN (`f64::max` would skip it): a NaN gradient
/// must never look converged.
fn max_abs(g: &[f64]) -> f64 {
    g.iter().fold(0.0, |m, g| if g.is_nan() { f64::INFINITY } else { m.max(g.abs()) })
}

/// Fails unless the dual is finite at the starting λ: a huge `initial_lambda` can overflow a
/// log weight `log a_i − log q_i + λ·φ_i` (to `+inf` or NaN) or underflow every one to `-inf`.
fn check_start(eval: &Eval) -> Result<()> {
    let bad = eval.scores.iter().position(|s| s.is_nan() || *s == f64::INFINITY);
    if let Some(sample) = bad {
        return Err(Error::NonFinite {
            what: "log weight at the starting lambda (initial_lambda)",
            sample,
            feature: None,
            value: eval.scores[sample],
        });
    }
    if eval.log_norm == f64::NEG_INFINITY {
        return Err(Error::NoSupport {
            what: "MomentFit: every weight underflows at the starting lambda (initial_lambda)",
            n_samples: eval.scores.len(),
        });
    }
    Ok(())
}

/// Solves `(H + δI) p = −g` by Jacobi-preconditioned conjugate gradients with Hessian-vector
/// products, to relative residual `min(0.5, max(√‖g‖, tolerance / (4‖g‖)))`.
fn newton_direction(
    objective: &Objective<'_>,
    point: &Point,
    grad: &[f64],
    tolerance: f64,
) -> (Vec<f64>, usize) {
    let eval = &point.eval;
    let d = grad.len();
    let g_norm = dot(grad, grad).sqrt();
    let g_inf = max_abs(grad);
    let scale = (eval.var.iter().sum::<f64>() / d as f64).max(f64::MIN_POSITIVE);
    let damping = scale * (1e-10 + 1e-3 * g_inf.min(1.0));
    let precond: Vec<f64> = eval.var.iter().map(|v| 1.0 / (v + damping)).collect();
    // Eisenstat–Walker forcing √‖g‖, but no tighter than needed to bring the linear model's
    // residual to a quarter of the tolerance: the last step is not over-solved.
    let forcing = 0.5f64.min(g_norm.sqrt().max(0.25 * tolerance / g_norm));
    let weights = objective.weights(point);

    let mut x = vec![0.0; d];
    let mut r: Vec<f64> = grad.iter().map(|g| -g).collect();
    let mut z: Vec<f64> = r.iter().zip(&precond).map(|(r, m)| r * m).collect();
    let mut p = z.clone();
    let mut rz = dot(&r, &z);
    let max_cg = (2 * d + 10).min(MAX_CG);
    let mut products = 0;
    for _ in 0..max_cg {
        products += 1;
        let mut hp = objective.hvp(point, &weights, &p);
        hp.iter_mut().zip(&p).for_each(|(h, p)| *h += damping * p);
        let php = dot(&p, &hp);
        if php.is_nan() || php <= 0.0 {
            break;
        }
        let alpha = rz / php;
        x.iter_mut().zip(&p).for_each(|(x, p)| *x += alpha * p);
        r.iter_mut().zip(&hp).for_each(|(r, h)| *r -= alpha * h);
        if dot(&r, &r).sqrt() <= forcing * g_norm {
            break;
        }
        z = r.iter().zip(&precond).map(|(r, m)| r * m).collect();
        let rz_next = dot(&r, &z);
        let beta = rz_next / rz;
        rz = rz_next;
        p.iter_mut().zip(&z).for_each(|(p, z)| *p = z + beta * *p);
    }
    if x.iter().all(|v| *v == 0.0) {
        // No progress (e.g. zero curvature): a preconditioned gradient step.
        return (grad.iter().zip(&precond).map(|(g, m)| -g * m).collect(), products);
    }
    (x, products)
}

/// One (threaded) pass over the features before fitting: finiteness, each feature's range and
/// whether it is binary on the positive-weight samples.
#[derive(Debug)]
struct Scan {
    min: Vec<f64>,
    max: Vec<f64>,
    binary: Vec<bool>,
    n_active: usize,
}

/// What one thread's share of the scan found.
#[derive(Debug)]
struct ScanPart {
    min: Vec<f64>,
    max: Vec<f64>,
    /// `max |v (1 − v)|`: 0 iff every value is 0 or 1.
    non_binary: Vec<f64>,
    n_active: usize,
    first_bad: Option<(usize, usize, f64)>,
}

impl Scan {
    fn run(offset: &[f64], features: RowMatrix<'_>, threads: usize) -> Result<Self> {
        let d = features.cols();
        let data = features.data();
        let work = |range: std::ops::Range<usize>, _: &mut [f64]| {
            let mut part = ScanPart {
                min: vec![f64::INFINITY; d],
                max: vec![f64::NEG_INFINITY; d],
                non_binary: vec![0.0; d],
                n_active: 0,
                first_bad: None,
            };
            for i in range {
                let row = &data[i * d..(i + 1) * d];
                if !row_is_finite(row) {
                    let j = row.iter().position(|v| !v.is_finite()).unwrap_or(0);
                    part.first_bad = Some((i, j, row[j]));
                    return part;
                }
                if offset[i] == f64::NEG_INFINITY {
                    continue;
                }
                part.n_active += 1;
                // One branch-free loop that vectorises: v (1 − v) is 0 exactly for v ∈ {0, 1}.
                let cols = part.min.iter_mut().zip(&mut part.max).zip(&mut part.non_binary);
                for (((lo, hi), nb), &v) in cols.zip(row) {
                    *lo = if v < *lo { v } else { *lo };
                    *hi = if v > *hi { v } else { *hi };
                    let t = (v * (1.0 - v)).abs();
                    *nb = if t > *nb { t } else { *nb };
                }
            }
            part
        };
        let parts = crate::dual::par_rows(offset.len(), d, threads, &mut [], 0, &work);
        let mut scan = Self {
            min: vec![f64::INFINITY; d],
            max: vec![f64::NEG_INFINITY; d],
            binary: vec![true; d],
            n_active: 0,
        };
        for part in parts {
            if let Some((sample, feature, value)) = part.first_bad {
                return Err(Error::NonFinite {
                    what: "features",
                    sample,
                    feature: Some(feature),
                    value,
                });
            }
            for j in 0..d {
                scan.min[j] = scan.min[j].min(part.min[j]);
                scan.max[j] = scan.max[j].max(part.max[j]);
                scan.binary[j] &= part.non_binary[j] == 0.0;
            }
            scan.n_active += part.n_active;
        }
        Ok(scan)
    }
}

/// Whether every value of `row` is finite: `v · 0` is NaN exactly for NaN and ±inf, and the
/// eight-lane sum vectorises where `all(is_finite)` would stop at each element.
fn row_is_finite(row: &[f64]) -> bool {
    let (chunks, tail) = row.as_chunks::<8>();
    let mut acc = [0.0f64; 8];
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v * 0.0;
        }
    }
    acc.iter().chain(tail).fold(0.0, |a, v| a + v * 0.0) == 0.0
}

/// Validates the inputs of a fit (all but the feature values) and returns `log a_i − log q_i`.
fn offsets(
    log_proposal: &[f64],
    log_base: &[f64],
    features: RowMatrix<'_>,
    d: usize,
) -> Result<Vec<f64>> {
    let n = log_proposal.len();
    check_len("log_base", n, log_base.len())?;
    check_len("features rows", n, features.rows())?;
    check_len("features columns (one per target)", d, features.cols())?;
    check_finite_slice("log_proposal", log_proposal)?;
    check_log_scores("log_base", log_base)?;
    Ok(log_base.iter().zip(log_proposal).map(|(a, q)| a - q).collect())
}

/// The SNIS moments `Σ w_i φ_i / Σ w_i`, `w_i = a_i e^{λ·φ_i} / q_i`, of the features under
/// `p_λ ∝ a e^{λ·φ}` estimated from samples of q (the quantity [`MomentFit`] matches).
///
/// Fails on the same malformed inputs as [`MomentFit::fit`], or when every weight is zero.
pub fn snis_moments(
    lambda: &[f64],
    log_proposal: &[f64],
    log_base: &[f64],
    features: RowMatrix<'_>,
) -> Result<Vec<f64>> {
    check_finite_slice("lambda", lambda)?;
    let offset = offsets(log_proposal, log_base, features, lambda.len())?;
    features.check_finite("features")?;
    let dual = Dual { offset: &offset, data: features.data(), d: lambda.len(), threads: 1 };
    let eval = dual.eval(lambda);
    if eval.log_norm == f64::NEG_INFINITY {
        return Err(Error::NoSupport { what: "snis_moments", n_samples: offset.len() });
    }
    Ok(eval.mean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn two_point_problem_has_closed_form() {
        // Samples φ = 0 and φ = 1 with equal weight: μ̂(λ) = σ(λ), so λ = logit(μ̄).
        let f = [0.0, 1.0];
        let m = RowMatrix::new(&f, 2, 1).unwrap();
        let report = MomentFit::new(vec![0.8]).fit(&[0.0, 0.0], &[0.0, 0.0], m).unwrap();
        assert!(report.converged);
        assert_relative_eq!(report.lambda[0], (0.8f64 / 0.2).ln(), epsilon = 1e-7);
        assert!(report.residual <= 1e-8);
        assert!(report.iterations < 10);
    }

    #[test]
    fn conditional_moments_normalise_each_context_and_have_a_closed_form() {
        // Two contexts with samples φ = 0 and φ = 1. In context A both have weight 1, so
        // μ̂_A = σ(λ); in B the φ = 1 sample has weight 1/3, so μ̂_B = σ(λ − ln 3). The mean
        // (σ(λ) + σ(λ − ln 3)) / 2 = 0.5 at λ = ln 3 / 2. A third context whose samples all
        // break a pointwise constraint (log a = −inf) is left out.
        let f = [0.0, 1.0, 0.0, 1.0, 0.0, 1.0];
        let m = RowMatrix::new(&f, 6, 1).unwrap();
        let ninf = f64::NEG_INFINITY;
        let log_base = [0.0, 0.0, 0.0, -(3f64.ln()), ninf, ninf];
        let fit = MomentFit::new(vec![0.5]);
        let report = fit.fit_conditional(&[0.0; 6], &log_base, m, &[2, 2, 2]).unwrap();
        assert!(report.converged);
        assert_relative_eq!(report.lambda[0], 0.5 * 3f64.ln(), epsilon = 1e-7);
        assert_eq!(report.groups_without_support, 1);
        // Pooling the four weights in one sum gives another λ: (4/3) e^λ / (2 + (4/3) e^λ)
        // = 0.5 at λ = ln 1.5.
        let pooled = fit.fit(&[0.0; 6], &log_base, m).unwrap();
        assert_relative_eq!(pooled.lambda[0], 1.5f64.ln(), epsilon = 1e-7);
        // One group is the pooled fit, to the bit.
        let one = fit.fit_conditional(&[0.0; 6], &log_base, m, &[6]).unwrap();
        assert_eq!(one, pooled);
        // Group sizes must cover the rows; a fit with no supported context is an error.
        assert!(fit.fit_conditional(&[0.0; 6], &log_base, m, &[2, 2]).is_err());
        let all_empty = [ninf; 6];
        assert!(matches!(
            fit.fit_conditional(&[0.0; 6], &all_empty, m, &[6]),
            Err(Error::NoSupport { .. })
        ));
    }

    #[test]
    fn moment_std_err_has_a_closed_form_and_shrinks_like_one_over_root_n() {
        // n samples, half φ = 0 and half φ = 1, equal weights; target 0.8 gives λ = ln 4, so
        // w̃ = 8/(5n) on φ = 1 and 2/(5n) on φ = 0, and
        // Σ w̃² (φ − 0.8)² = (n/2) (64 · 0.04 + 4 · 0.64) / (25 n²) = 0.1024 / n.
        for n in [2usize, 8, 200] {
            let phi: Vec<f64> = (0..n).map(|i| (i % 2) as f64).collect();
            let m = RowMatrix::new(&phi, n, 1).unwrap();
            let report = MomentFit::new(vec![0.8]).fit(&vec![0.0; n], &vec![0.0; n], m).unwrap();
            let expected = 0.32 / (n as f64).sqrt();
            assert_relative_eq!(report.moment_std_err[0], expected, max_relative = 1e-6);
        }
    }

    #[test]
    fn non_finite_start_is_an_error_naming_initial_lambda() {
        // λ = 1e308 overflows the log weight λ·φ of the sample with φ = 10.
        let m = RowMatrix::new(&[0.0, 1.0, 10.0], 3, 1).unwrap();
        let fit = MomentFit::new(vec![0.5]).initial_lambda(vec![1e308]);
        let err = fit.fit(&[0.0; 3], &[0.0; 3], m).unwrap_err();
        assert_eq!(
            err,
            Error::NonFinite {
                what: "log weight at the starting lambda (initial_lambda)",
                sample: 2,
                feature: None,
                value: f64::INFINITY
            }
        );
        // λ = -1e308 underflows every weight (φ >= 2 on every sample).
        let m = RowMatrix::new(&[2.0, 3.0, 10.0], 3, 1).unwrap();
        let fit = MomentFit::new(vec![5.0]).initial_lambda(vec![-1e308]);
        let err = fit.fit(&[0.0; 3], &[0.0; 3], m).unwrap_err();
        assert!(matches!(err, Error::NoSupport { n_samples: 3, .. }), "{err}");
        assert!(err.to_string().contains("initial_lambda"), "{err}");
    }

    #[test]
    fn residual_counts_nan_as_infinite() {
        assert_eq!(max_abs(&[0.5, -2.0]), 2.0);
        assert_eq!(max_abs(&[0.5, f64::NAN, -2.0]), f64::INFINITY);
        assert_eq!(max_abs(&[]), 0.0);
    }

    #[test]
    fn constant_and_duplicate_features_are_regularised() {
        // Feature 1 is constant at its target; features 0 and 2 are identical.
        let rows = [[0.0, 3.0, 0.0], [1.0, 3.0, 1.0], [1.0, 3.0, 1.0], [0.0, 3.0, 0.0]];
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        let m = RowMatrix::new(&flat, 4, 3).unwrap();
        let report = MomentFit::new(vec![0.3, 3.0, 0.3]).fit(&[0.0; 4], &[0.0; 4], m).unwrap();
        assert!(report.converged, "{report:?}");
        assert_relative_eq!(report.lambda[1], 0.0, epsilon = 1e-6);
        assert_relative_eq!(report.lambda[0], report.lambda[2], epsilon = 1e-9);
        let mu = snis_moments(&report.lambda, &[0.0; 4], &[0.0; 4], m).unwrap();
        assert_relative_eq!(mu[0], 0.3, epsilon = 1e-8);
    }

    #[test]
    fn jointly_infeasible_targets_do_not_converge() {
        // Features always equal, targets differ: each target is in range, the pair is not.
        let flat = [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0];
        let m = RowMatrix::new(&flat, 4, 2).unwrap();
        let report = MomentFit::new(vec![0.2, 0.7]).max_iterations(30).fit(&[0.0; 4], &[0.0; 4], m);
        assert!(!report.unwrap().converged);
    }
}
