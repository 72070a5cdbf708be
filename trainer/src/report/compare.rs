//! `tilt compare`: several runs side by side. Runs are grouped by directory (the seeds of one
//! method on one task), each group's final evaluation is reported as mean ± standard deviation
//! over its runs, and the curves are averaged over runs against samples seen.
//!
//! Layout: every directory under the roots that holds a `metrics.jsonl` is a run. A run in a
//! directory named `seed-*` belongs to the group of its parent directory, any other run is a
//! group of its own. A group named `TASK-METHOD` (split at the first `-`) is reported in the
//! table of TASK; its constraint targets come from the runs' `run.json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plots::{Band, draw_bands};
use super::{EvalRecord, ReportError, read_metrics};

/// The file a finished run writes next to its metrics: what `tilt compare` needs to know about
/// it beyond its records.
pub const RUN_FILE: &str = "run.json";

/// The contents of [`RUN_FILE`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The config file of the run.
    pub config: PathBuf,
    /// Its sha256.
    pub config_hash: String,
    /// The estimator and its settings.
    pub estimator: String,
    /// The seed.
    pub seed: u64,
    /// Optimizer steps done.
    pub steps: u64,
    /// Training samples drawn.
    pub samples_seen: u64,
    /// Each constraint's target: the moment, or 1 for a pointwise constraint.
    pub targets: BTreeMap<String, f64>,
    /// λ, in the order of the moment constraints.
    pub lambda: Vec<f64>,
    /// Peers that trained it (data parallelism; 1 otherwise).
    #[serde(default = "one")]
    pub peers: usize,
    /// Sample streams per batch (the same samples on any topology with this many).
    #[serde(default = "one")]
    pub sample_streams: usize,
    /// A SHA-256 of π's weights (every peer's was checked to be the same).
    #[serde(default)]
    pub fingerprint: String,
}

fn one() -> usize {
    1
}

/// One run: its directory, group, `run.json` (if it has one) and records.
#[derive(Debug, Clone)]
pub struct RunRecords {
    /// The run's directory.
    pub dir: PathBuf,
    /// Its group's name.
    pub group: String,
    /// Its `run.json`, absent for a run that has not finished.
    pub info: Option<RunInfo>,
    /// Its evaluations.
    pub records: Vec<EvalRecord>,
    /// Whether it ran to the end (it has a `run.json` or an exported `final/` policy).
    pub finished: bool,
}

/// Directories a run writes inside its own; never searched for runs.
const NOT_RUNS: [&str; 4] = ["checkpoints", "final", "plots", "report"];

/// Every run under `roots`, sorted by group then directory, with the directories whose
/// `metrics.jsonl` has no record yet (a run stopped before its first evaluation), which
/// [`compare`] cannot use.
pub fn find_runs(roots: &[PathBuf]) -> Result<(Vec<RunRecords>, Vec<PathBuf>), ReportError> {
    let mut runs = Vec::new();
    for root in roots {
        collect(root, root, 0, &mut runs)?;
    }
    let (runs, empty): (Vec<_>, Vec<_>) = runs.into_iter().partition(|r| !r.records.is_empty());
    let mut empty: Vec<PathBuf> = empty.into_iter().map(|r| r.dir).collect();
    empty.sort();
    let mut runs = runs;
    runs.sort_by(|a, b| (&a.group, &a.dir).cmp(&(&b.group, &b.dir)));
    Ok((runs, empty))
}

fn collect(
    root: &Path,
    dir: &Path,
    depth: usize,
    runs: &mut Vec<RunRecords>,
) -> Result<(), ReportError> {
    let io = |source| ReportError::Io { path: dir.to_owned(), source };
    let metrics = dir.join(crate::train::METRICS_FILE);
    if metrics.is_file() {
        runs.push(RunRecords {
            dir: dir.to_owned(),
            group: group_of(root, dir),
            info: read_info(&dir.join(RUN_FILE))?,
            records: read_metrics(&metrics)?,
            finished: dir.join(RUN_FILE).is_file()
                || dir.join(crate::train::FINAL_DIR).join("config.json").is_file(),
        });
        return Ok(());
    }
    if depth >= 4 {
        return Ok(());
    }
    let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .filter(|p| !p.file_name().is_some_and(|n| NOT_RUNS.iter().any(|s| n == *s)))
        .collect();
    children.sort();
    for child in children {
        collect(root, &child, depth + 1, runs)?;
    }
    Ok(())
}

/// The group of the run in `dir`: its parent's name for a `seed-*` directory, else its own
/// (the root's own name for a run at the root).
fn group_of(root: &Path, dir: &Path) -> String {
    let name = |p: &Path| {
        p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
    };
    let is_seed = dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with("seed-"));
    match dir.parent() {
        Some(parent) if is_seed && dir != root => name(parent),
        _ => name(dir),
    }
}

fn read_info(path: &Path) -> Result<Option<RunInfo>, ReportError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path)
        .map_err(|source| ReportError::Io { path: path.to_owned(), source })?;
    serde_json::from_str(&text).map(Some).map_err(|source| ReportError::BadRecord {
        path: path.to_owned(),
        line: 1,
        source,
    })
}

/// Mean, sample standard deviation (n − 1; 0 for one value) and count of the finite values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    /// The mean.
    pub mean: f64,
    /// The sample standard deviation.
    pub std: f64,
    /// How many values.
    pub n: usize,
}

impl Stat {
    /// `None` when no value is finite.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        let n = v.len();
        if n == 0 {
            return None;
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Some(Self { mean, std: var.sqrt(), n })
    }
}

/// Reads one value from a run.
type RunValue = Box<dyn Fn(&RunRecords) -> Option<f64>>;
/// Reads one value from an evaluation.
type RecordValue = fn(&EvalRecord) -> Option<f64>;

/// A reported quantity: its column name and how it is read from a run (one value per run).
struct Column {
    name: String,
    value: RunValue,
}

fn last(run: &RunRecords) -> &EvalRecord {
    run.records.last().expect("runs without records are skipped")
}

/// The columns of a task's table: E\[φ\] of each constraint, then the divergences, diversity
/// and the gradient variance (the mean of the run's measurements).
fn columns(constraints: &[String], targets: &BTreeMap<String, f64>) -> Vec<Column> {
    let mut cols: Vec<Column> = constraints
        .iter()
        .map(|c| {
            let c2 = c.clone();
            let target = targets.get(c).map_or(String::new(), |t| format!(" (→ {t})"));
            Column {
                name: format!("E[φ {c}]{target}"),
                value: Box::new(move |r| last(r).moments.get(&c2).copied()),
            }
        })
        .collect();
    type Getter = fn(&RunRecords) -> Option<f64>;
    let fixed: [(&str, Getter); 6] = [
        ("KL(p‖π)", |r| last(r).kl_p_pi),
        ("KL(π‖a)", |r| last(r).kl_pi_a),
        ("TVD(p,π)", |r| last(r).tvd_p_pi),
        ("Self-BLEU-5", |r| last(r).self_bleu_5),
        ("Distinct-1", |r| last(r).distinct_1),
        ("grad variance", |r| {
            Stat::of(r.records.iter().filter_map(|e| e.grad_variance)).map(|s| s.mean)
        }),
    ];
    cols.extend(fixed.into_iter().map(|(n, f)| Column { name: n.to_owned(), value: Box::new(f) }));
    cols
}

/// The comparison of every group found: a markdown table per task (written to
/// `out/table.md` and returned), `out/summary.json` and curve plots `out/TASK-METRIC.png`.
pub fn compare(runs: &[RunRecords], out: &Path) -> Result<String, ReportError> {
    std::fs::create_dir_all(out)
        .map_err(|source| ReportError::Io { path: out.to_owned(), source })?;
    let mut tasks: BTreeMap<String, Vec<(String, Vec<&RunRecords>)>> = BTreeMap::new();
    for run in runs {
        let (task, method) = split_group(&run.group);
        let methods = tasks.entry(task).or_default();
        match methods.iter_mut().find(|(m, _)| *m == method) {
            Some((_, v)) => v.push(run),
            None => methods.push((method, vec![run])),
        }
    }
    let mut table = String::new();
    let mut summary = BTreeMap::new();
    for (task, mut methods) in tasks {
        methods.sort_by_key(|(m, _)| (method_rank(m), m.clone()));
        let group_runs: Vec<&RunRecords> =
            methods.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        let targets = targets_of(&group_runs);
        let constraints = constraint_names(&group_runs);
        let cols = columns(&constraints, &targets);
        let samples = Stat::of(group_runs.iter().map(|r| last(r).samples_seen as f64));
        let heading = if task.is_empty() { "runs".to_owned() } else { format!("task `{task}`") };
        writeln!(
            table,
            "### {heading}\n\nFinal evaluation after {} training samples; mean ± std over the runs \
             (n); gradient variance: the mean of each run's measurements.\n",
            samples.map_or("?".to_owned(), |s| format!("{:.0}", s.mean))
        )
        .expect("writing to a String");
        let header: Vec<&str> = std::iter::once("method")
            .chain(cols.iter().map(|c| c.name.as_str()))
            .chain(["n"])
            .collect();
        writeln!(table, "| {} |", header.join(" | ")).expect("writing to a String");
        writeln!(table, "|{}", "---|".repeat(header.len())).expect("writing to a String");
        let mut task_summary = BTreeMap::new();
        for (method, group) in &methods {
            let stats: Vec<Option<Stat>> =
                cols.iter().map(|c| Stat::of(group.iter().filter_map(|r| (c.value)(r)))).collect();
            let cells: Vec<String> =
                stats.iter().map(|s| s.map_or("-".to_owned(), format_stat)).collect();
            writeln!(
                table,
                "| {} | {} | {} |",
                display_name(method),
                cells.join(" | "),
                group.len()
            )
            .expect("writing to a String");
            let entry: BTreeMap<&str, Option<Stat>> =
                cols.iter().map(|c| c.name.as_str()).zip(stats.iter().copied()).collect();
            task_summary
                .insert(method.clone(), serde_json::json!({ "runs": group.len(), "final": entry }));
        }
        table.push('\n');
        plot_task(&task, &methods, &constraints, &targets, out)?;
        summary.insert(task, task_summary);
    }
    write(&out.join("table.md"), table.as_bytes())?;
    let json = serde_json::to_vec_pretty(&summary).expect("summary serialises");
    write(&out.join("summary.json"), &json)?;
    Ok(table)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    std::fs::write(path, bytes).map_err(|source| ReportError::Io { path: path.to_owned(), source })
}

/// "house-gdc_pp" → ("house", "gdc_pp"); a name without `-` is a method of the task "".
fn split_group(group: &str) -> (String, String) {
    match group.split_once('-') {
        Some((task, method)) => (task.to_owned(), method.to_owned()),
        None => (String::new(), group.to_owned()),
    }
}

/// How a method is shown in tables and legends: the paper's name for tilt's config names
/// (`gdc_pp` → GDC++), any other group name as it is.
fn display_name(method: &str) -> String {
    let name = match method {
        "dpg" => "DPG",
        "gdc" => "GDC",
        "gdc_pp" => "GDC++",
        "fdpg_js" => "f-DPG (JS)",
        "fdpg" => "f-DPG",
        "reinforce" => "REINFORCE",
        "kl_control" => "KL-control",
        other => other,
    };
    name.to_owned()
}

/// Distribution matching first, in the paper's order, then reward maximisation.
fn method_rank(method: &str) -> usize {
    const ORDER: [&str; 7] = ["dpg", "gdc", "gdc_pp", "fdpg_js", "fdpg", "reinforce", "kl_control"];
    ORDER.iter().position(|m| *m == method).unwrap_or(ORDER.len())
}

fn targets_of(runs: &[&RunRecords]) -> BTreeMap<String, f64> {
    runs.iter().filter_map(|r| r.info.as_ref()).flat_map(|i| i.targets.clone()).collect()
}

fn constraint_names(runs: &[&RunRecords]) -> Vec<String> {
    let mut names: Vec<String> = runs
        .iter()
        .flat_map(|r| r.records.iter().flat_map(|e| e.moments.keys().cloned()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// "0.123 ± 0.045"; large or small values in scientific notation.
fn format_stat(s: Stat) -> String {
    let f = |v: f64| {
        if v != 0.0 && (v.abs() >= 1e4 || v.abs() < 1e-3) {
            format!("{v:.2e}")
        } else {
            format!("{v:.3}")
        }
    };
    if s.n > 1 { format!("{} ± {}", f(s.mean), f(s.std)) } else { f(s.mean) }
}

/// The curves of one task: each metric against samples seen, one line per method (the mean
/// over its runs at each evaluation) with a ±1 std band.
fn plot_task(
    task: &str,
    methods: &[(String, Vec<&RunRecords>)],
    constraints: &[String],
    targets: &BTreeMap<String, f64>,
    out: &Path,
) -> Result<(), ReportError> {
    type Getter = Box<dyn Fn(&EvalRecord) -> Option<f64>>;
    let mut metrics: Vec<(String, String, Getter, Option<f64>)> = constraints
        .iter()
        .map(|c| {
            let c2 = c.clone();
            let get: Getter = Box::new(move |e: &EvalRecord| e.moments.get(&c2).copied());
            (
                format!("moment-{c}"),
                format!("Constraint satisfaction E_π[φ {c}]"),
                get,
                targets.get(c).copied(),
            )
        })
        .collect();
    let fixed: [(&str, &str, RecordValue); 5] = [
        ("kl_p_pi", "Distance to the target KL(p‖π)", |e| e.kl_p_pi),
        ("kl_pi_a", "Forgetting KL(π‖a)", |e| e.kl_pi_a),
        ("self_bleu_5", "Self-BLEU-5 (lower: more diverse)", |e| e.self_bleu_5),
        ("distinct_1", "Distinct-1", |e| e.distinct_1),
        ("grad_variance", "Gradient variance", |e| e.grad_variance),
    ];
    metrics.extend(
        fixed
            .into_iter()
            .map(|(f, t, g)| (f.to_owned(), t.to_owned(), Box::new(g) as Getter, None)),
    );
    for (file, title, get, target) in metrics {
        let bands: Vec<Band> = methods
            .iter()
            .map(|(method, runs)| Band {
                name: display_name(method),
                points: mean_curve(runs, &get),
            })
            .filter(|b| !b.points.is_empty())
            .collect();
        if bands.is_empty() {
            continue;
        }
        let name =
            if task.is_empty() { format!("{file}.png") } else { format!("{task}-{file}.png") };
        let path = out.join(name);
        draw_bands(&path, &title, &bands, target)
            .map_err(|message| ReportError::Plot { path: path.clone(), message })?;
    }
    Ok(())
}

/// (samples seen, mean, std) over the runs at each evaluation where at least one run has a
/// finite value.
fn mean_curve(
    runs: &[&RunRecords],
    get: &dyn Fn(&EvalRecord) -> Option<f64>,
) -> Vec<(f64, f64, f64)> {
    let mut at: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for run in runs {
        for e in &run.records {
            if let Some(v) = get(e).filter(|v| v.is_finite()) {
                at.entry(e.samples_seen).or_default().push(v);
            }
        }
    }
    at.into_iter().filter_map(|(x, v)| Stat::of(v).map(|s| (x as f64, s.mean, s.std))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: u64, phi: f64, kl: f64) -> EvalRecord {
        let mut e =
            EvalRecord { step, samples_seen: step * 64, kl_p_pi: Some(kl), ..Default::default() };
        e.moments.insert("house".into(), phi);
        e
    }

    fn write_run(dir: &Path, records: &[EvalRecord], targets: &[(&str, f64)]) {
        std::fs::create_dir_all(dir).unwrap();
        let lines: Vec<String> =
            records.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
        std::fs::write(dir.join("metrics.jsonl"), lines.join("\n") + "\n").unwrap();
        let info = RunInfo {
            targets: targets.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Default::default()
        };
        std::fs::write(dir.join(RUN_FILE), serde_json::to_vec(&info).unwrap()).unwrap();
    }

    #[test]
    fn stats_are_mean_and_sample_std() {
        let s = Stat::of([1.0, 2.0, 3.0, f64::NAN]).unwrap();
        assert_eq!((s.mean, s.std, s.n), (2.0, 1.0, 3));
        assert_eq!(Stat::of([5.0]).unwrap().std, 0.0);
        assert!(Stat::of([f64::NAN]).is_none());
        assert_eq!(format_stat(s), "2.000 ± 1.000");
        assert_eq!(format_stat(Stat { mean: 123456.0, std: 0.0, n: 1 }), "1.23e5");
    }

    #[test]
    fn groups_by_seed_directories_and_reports_mean_and_std() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("runs");
        for (seed, phi) in [(1, 0.2), (2, 0.4)] {
            let dir = root.join("house-gdc_pp").join(format!("seed-{seed}"));
            write_run(&dir, &[record(0, 0.04, 3.0), record(10, phi, 2.0)], &[("house", 1.0)]);
        }
        write_run(
            &root.join("house-reinforce/seed-1"),
            &[record(0, 0.04, 3.0), record(10, 0.9, 4.0)],
            &[],
        );
        // A run's own subdirectories are not runs.
        write_run(&root.join("house-reinforce/seed-1/final"), &[record(0, 0.0, 0.0)], &[]);
        // A run stopped before its first evaluation: listed apart.
        let stopped = root.join("house-reinforce/seed-2");
        std::fs::create_dir_all(&stopped).unwrap();
        std::fs::write(stopped.join(crate::train::METRICS_FILE), "").unwrap();
        let (runs, empty) = find_runs(std::slice::from_ref(&root)).unwrap();
        assert_eq!(empty, [stopped]);
        let groups: Vec<&str> = runs.iter().map(|r| r.group.as_str()).collect();
        assert_eq!(groups, ["house-gdc_pp", "house-gdc_pp", "house-reinforce"]);
        let out = tmp.path().join("report");
        let table = compare(&runs, &out).unwrap();
        assert!(table.contains("### task `house`"), "{table}");
        assert!(table.contains("| E[φ house] (→ 1) | KL(p‖π) |"), "{table}");
        let gdc_pp = table.lines().find(|l| l.starts_with("| GDC++ ")).unwrap();
        assert!(gdc_pp.starts_with("| GDC++ | 0.300 ± 0.141 | 2.000 ± 0.000 |"), "{gdc_pp}");
        assert!(gdc_pp.ends_with("| 2 |"), "{gdc_pp}");
        let reinforce = table.lines().find(|l| l.starts_with("| REINFORCE ")).unwrap();
        assert!(reinforce.starts_with("| REINFORCE | 0.900 | 4.000 |"), "{reinforce}");
        for f in ["table.md", "summary.json", "house-moment-house.png", "house-kl_p_pi.png"] {
            assert!(out.join(f).is_file(), "{f} not written");
        }
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["house"]["gdc_pp"]["final"]["KL(p‖π)"]["mean"], 2.0);
    }

    #[test]
    fn a_bad_run_file_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("x/seed-1");
        write_run(&dir, &[record(0, 0.0, 1.0)], &[]);
        std::fs::write(dir.join(RUN_FILE), "{not json").unwrap();
        let e = find_runs(&[tmp.path().to_owned()]).unwrap_err().to_string();
        assert!(e.contains("run.json"), "{e}");
    }
}
