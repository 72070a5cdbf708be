//! The contexts of a conditional run (`[contexts]`): reading the files, and which contexts
//! each training batch and each evaluation uses.
//!
//! A training batch of `n` samples draws `per_step` distinct contexts from a seeded stream of
//! its own, a pure function of the run's seed and the step, so every peer of a data-parallel
//! run and every resume of a run draws the same ones. Batch row `i` belongs to context
//! `i / (n / per_step)`: the rows of one context are contiguous.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Why a contexts file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ContextsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}", path = .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A `.jsonl` line is not a JSON string.
    #[error("{path}:{line}: expected a JSON string (one context per line), {reason}", path = .path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Fewer contexts than a batch draws.
    #[error("contexts.per_step is {per_step}, but {path} has only {found} contexts", path = .path.display())]
    TooFew {
        /// The file.
        path: PathBuf,
        /// Contexts per batch.
        per_step: u64,
        /// Contexts in the file.
        found: usize,
    },
    /// The file has no context.
    #[error("{path} has no context (every line is blank)", path = .path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Reads the contexts of `path`: one per line, blank lines skipped; in a `.jsonl` file each
/// line is a JSON string (so that a context may hold line breaks).
pub fn read_contexts(path: &Path) -> Result<Vec<String>, ContextsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ContextsError::Read { path: path.to_owned(), source })?;
    let jsonl = path.extension().is_some_and(|e| e == "jsonl");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let context = if jsonl {
            let bad =
                |reason: String| ContextsError::Line { path: path.to_owned(), line: i + 1, reason };
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(serde_json::Value::String(s)) if !s.is_empty() => s,
                Ok(serde_json::Value::String(_)) => return Err(bad("got an empty string".into())),
                Ok(other) => return Err(bad(format!("got `{other}`"))),
                Err(e) => return Err(bad(e.to_string())),
            }
        } else {
            line.to_owned()
        };
        out.push(context);
    }
    if out.is_empty() {
        return Err(ContextsError::Empty { path: path.to_owned() });
    }
    Ok(out)
}

/// The contexts of a run: the training ones, then the held-out evaluation ones (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct Contexts {
    /// Every context's text; ids index this.
    pub texts: Vec<String>,
    /// The first `n_train` texts are the training contexts.
    pub n_train: usize,
    /// Contexts per training batch.
    pub per_step: usize,
    /// The evaluation contexts' ids, fixed for the run.
    pub eval: Vec<usize>,
}

/// The seed of the stream that draws each step's contexts.
fn step_seed(seed: u64) -> u64 {
    seed ^ 0xc0_7e47_5eed
}

impl Contexts {
    /// Reads the files of `plan` and fixes the evaluation contexts: the first
    /// `eval_contexts` of the held-out file, or a seeded draw of as many training contexts.
    pub fn load(plan: &crate::plan::ContextsPlan, seed: u64) -> Result<Self, ContextsError> {
        let mut texts = read_contexts(&plan.file)?;
        let n_train = texts.len();
        if (n_train as u64) < plan.per_step {
            let path = plan.file.clone();
            return Err(ContextsError::TooFew { path, per_step: plan.per_step, found: n_train });
        }
        let eval = match &plan.eval_file {
            Some(f) => {
                let held_out = read_contexts(f)?;
                let k = (plan.eval_contexts as usize).min(held_out.len());
                texts.extend(held_out.into_iter().take(k));
                (n_train..n_train + k).collect()
            }
            None => {
                let k = (plan.eval_contexts as usize).min(n_train);
                sorted_draw(step_seed(seed) ^ 0xe7a1, n_train, k)
            }
        };
        Ok(Self { texts, n_train, per_step: plan.per_step as usize, eval })
    }

    /// The contexts of `plan`, if it is a conditional run.
    pub fn of_plan(plan: &crate::plan::Plan) -> Result<Option<Self>, ContextsError> {
        plan.contexts.as_ref().map(|c| Self::load(c, plan.seed)).transpose()
    }

    /// The context of each of the `n` rows of training batch `step` (from 0): `per_step`
    /// distinct contexts, `n / per_step` contiguous rows each.
    pub fn for_step(&self, seed: u64, step: u64, n: usize) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(step_seed(seed));
        rng.set_stream(step);
        let ids = rand::seq::index::sample(&mut rng, self.n_train, self.per_step).into_vec();
        spread(&ids, n)
    }

    /// The context of each of the `n` rows of the λ fit: `k` distinct training contexts (a
    /// seeded draw, all of them when `k` is at least their number) in equal shares. `k`
    /// defaults to every training context, but at most one per 16 rows.
    pub fn for_fit(&self, seed: u64, k: Option<u64>, n: usize) -> Vec<usize> {
        let k = k.map_or((n / 16).max(1), |k| k as usize).min(self.n_train).max(1);
        spread(&sorted_draw(step_seed(seed) ^ 0xf17, self.n_train, k), n)
    }

    /// The context of each of `n` evaluation rows: the evaluation contexts in order, sharing
    /// the rows out as equally as they can be (the first `n mod k` get one more).
    pub fn for_eval(&self, n: usize) -> Vec<usize> {
        spread(&self.eval, n)
    }
}

/// `k` distinct ids of `0..n`, drawn with `seed`, in increasing order.
fn sorted_draw(seed: u64, n: usize, k: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ids = rand::seq::index::sample(&mut rng, n, k).into_vec();
    ids.sort_unstable();
    ids
}

/// The context of each of the `n` rows of training batch `step`: [`Contexts::for_step`], or
/// the one prompt (context 0) of an unconditional run.
pub fn step_rows(contexts: Option<&Contexts>, seed: u64, step: u64, n: usize) -> Vec<usize> {
    contexts.map_or_else(|| vec![0; n], |c| c.for_step(seed, step, n))
}

/// The context of each of `n` evaluation rows: [`Contexts::for_eval`], or context 0.
pub fn eval_rows(contexts: Option<&Contexts>, n: usize) -> Vec<usize> {
    contexts.map_or_else(|| vec![0; n], |c| c.for_eval(n))
}

/// The context of each of the `n` rows of the λ fit over `k` contexts:
/// [`Contexts::for_fit`], or context 0.
pub fn fit_rows(contexts: Option<&Contexts>, seed: u64, k: Option<u64>, n: usize) -> Vec<usize> {
    contexts.map_or_else(|| vec![0; n], |c| c.for_fit(seed, k, n))
}

/// The sizes of the runs of equal ids in `rows` (contiguous groups, as [`spread`] makes).
pub fn group_sizes(rows: &[usize]) -> Vec<usize> {
    let mut sizes: Vec<usize> = Vec::new();
    for (i, id) in rows.iter().enumerate() {
        match sizes.last_mut() {
            Some(last) if rows[i - 1] == *id => *last += 1,
            _ => sizes.push(1),
        }
    }
    sizes
}

/// `n` rows over `ids` in contiguous groups whose sizes differ by at most one.
pub fn spread(ids: &[usize], n: usize) -> Vec<usize> {
    let k = ids.len().max(1);
    let (base, extra) = (n / k, n % k);
    let mut out = Vec::with_capacity(n);
    for (j, &id) in ids.iter().enumerate() {
        out.extend(std::iter::repeat_n(id, base + usize::from(j < extra)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ContextsPlan;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn text_files_have_one_context_per_line_and_skip_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "c.txt", "The cat\n\n  \nA dog said\n");
        assert_eq!(read_contexts(&p).unwrap(), ["The cat", "A dog said"]);
    }

    #[test]
    fn jsonl_lines_are_json_strings_and_a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "c.jsonl", "\"two\\nlines\"\n\n\"x\"\n");
        assert_eq!(read_contexts(&p).unwrap(), ["two\nlines", "x"]);
        let bad = write(dir.path(), "bad.jsonl", "\"ok\"\n{\"context\": 1}\n");
        let e = read_contexts(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.jsonl:2:") && e.contains("expected a JSON string"), "{e}");
        let empty = write(dir.path(), "e.txt", "\n \n");
        assert!(read_contexts(&empty).unwrap_err().to_string().contains("has no context"));
        let missing = dir.path().join("missing.txt");
        assert!(read_contexts(&missing).unwrap_err().to_string().contains("missing.txt"));
    }

    #[test]
    fn spread_gives_contiguous_groups_of_near_equal_size() {
        assert_eq!(spread(&[4, 1], 6), [4, 4, 4, 1, 1, 1]);
        assert_eq!(spread(&[4, 1, 7], 5), [4, 4, 1, 1, 7]);
        assert_eq!(spread(&[3], 2), [3, 3]);
    }

    #[test]
    fn group_sizes_are_the_runs_of_equal_ids() {
        assert_eq!(group_sizes(&[4, 4, 4, 1, 1, 7]), [3, 2, 1]);
        assert_eq!(group_sizes(&[0; 5]), [5]);
        assert!(group_sizes(&[]).is_empty());
    }

    #[test]
    fn each_step_draws_distinct_contexts_reproducibly() {
        let dir = tempfile::tempdir().unwrap();
        let text: String = (0..10).map(|i| format!("context {i}\n")).collect();
        let file = write(dir.path(), "c.txt", &text);
        let plan = ContextsPlan { file, per_step: 4, eval_file: None, eval_contexts: 3 };
        let c = Contexts::load(&plan, 12).unwrap();
        assert_eq!((c.n_train, c.eval.len()), (10, 3));
        let rows = c.for_step(12, 5, 8);
        assert_eq!(rows, c.for_step(12, 5, 8), "a function of (seed, step)");
        let mut ids: Vec<usize> = rows.chunks(2).map(|g| g[0]).collect();
        assert!(rows.chunks(2).all(|g| g[0] == g[1]));
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 4, "distinct contexts: {rows:?}");
        assert_ne!(rows, c.for_step(12, 6, 8));
        assert_eq!(c.for_eval(7).len(), 7);
        // The λ fit: every context by default when there are 16 rows per context or more.
        assert_eq!(group_sizes(&c.for_fit(12, None, 160)), [16; 10]);
        assert_eq!(group_sizes(&c.for_fit(12, None, 64)), [16; 4]);
        assert_eq!(group_sizes(&c.for_fit(12, Some(5), 10)), [2; 5]);
    }

    #[test]
    fn held_out_contexts_follow_the_training_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "train.txt", "a\nb\n");
        let eval_file = Some(write(dir.path(), "eval.txt", "x\ny\nz\n"));
        let plan = ContextsPlan { file, per_step: 2, eval_file, eval_contexts: 2 };
        let c = Contexts::load(&plan, 1).unwrap();
        assert_eq!(c.texts, ["a", "b", "x", "y"]);
        assert_eq!(c.eval, [2, 3]);
    }
}
