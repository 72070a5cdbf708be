//! Bad input and interruptions around `tilt train`: a closed stdout, resuming with another
//! model or estimator, into another run's directory, `--overwrite` and `--dry-run`, signals,
//! exit codes, and output paths checked before the work.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use burn::backend::{Autodiff, Flex};
use tilt_policies::{Gpt2Config, Gpt2Tokenizer};
use tilt_trainer::cli::exit_code;
use tilt_trainer::plan::{Overrides, Plan};
use tilt_trainer::report::read_metrics;
use tilt_trainer::train::{RunOptions, run};

use crate::cli::tilt;
use crate::train::{SERIAL, config, tiny_base};

type B = Autodiff<Flex>;

const GDC_PP: &str = r#"kind = "gdc_pp""#;
const PROPOSAL: &str = "[proposal]\ninterval = 2";

fn plan(path: &Path) -> Plan {
    Plan::load(path, &Overrides::default()).unwrap()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A run of `steps` steps stopped after `stop` (tiny model, gdc_pp; `extra` goes in the
/// `[checkpoint]` section), in a new temp dir.
fn stopped_run(steps: u64, stop: u64, extra: &str) -> (tempfile::TempDir, Plan) {
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let p = plan(&config(dir.path(), GDC_PP, steps, extra));
    let options = RunOptions { stop_after: Some(stop), ..RunOptions::default() };
    run::<B>(&p, Default::default(), &options).unwrap();
    (dir, p)
}

fn resume(p: &Plan, from: &Path) -> anyhow::Result<tilt_trainer::train::RunSummary> {
    let options = RunOptions { resume: Some(from.to_owned()), ..RunOptions::default() };
    run::<B>(p, Default::default(), &options)
}

fn steps_of(path: &Path) -> Vec<u64> {
    read_metrics(path).unwrap().iter().map(|r| r.step).collect()
}

/// A change of the tiny model's architecture.
type Change = fn(&mut Gpt2Config);

/// Replaces the tiny model in `dir/base` with one of another architecture.
fn replace_model(dir: &Path, change: impl Fn(&mut Gpt2Config)) {
    let tokenizer = Gpt2Tokenizer::from_file(dir.join("base/tokenizer.json")).unwrap();
    let eos = tokenizer.eos_token_id() as usize;
    let mut c = Gpt2Config::tiny()
        .with_vocab_size(tokenizer.vocab_size())
        .with_bos_token_id(eos)
        .with_eos_token_id(eos);
    change(&mut c);
    let base = dir.join("base");
    c.init_seeded::<Flex>(&Default::default(), 7).save_hf_dir(&base).unwrap();
}

/// Edits the JSON manifest of the latest checkpoint under `p`.
fn edit_manifest(p: &Plan, edit: impl Fn(&mut serde_json::Map<String, serde_json::Value>)) {
    let ck = tilt_trainer::checkpoint::resolve(&p.output_dir).unwrap();
    let path = ck.dir().join("manifest.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(json.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
}

/// `tilt train --config cfg` in the background, its stdout and stderr piped.
fn spawn_train(cfg: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_tilt"))
        .args(["train", "--config", s(cfg)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn rewrite(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// #36: `tilt train | head -1`: a closed stdout neither panics nor stops the run.
#[test]
fn a_closed_stdout_does_not_stop_training() {
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let cfg = config(dir.path(), GDC_PP, 2, PROPOSAL);
    let mut child = spawn_train(&cfg);
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let output = dir.path().join("out");
    assert!(output.join("final/config.json").is_file());
    assert!(output.join("checkpoints/latest").is_file());
}

/// #20, #21, #17: a checkpoint of another architecture is refused with the checkpoint's name
/// and the difference, from the manifest or (older manifests) from the weights' shapes.
#[test]
fn resuming_with_another_model_is_a_clear_error() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, p) = stopped_run(10, 5, "");
    let changes: [(&str, Change); 2] =
        [("n_layer 2 vs 3", |c| c.n_layer = 3), ("n_embd 16 vs 32", |c| c.n_embd = 32)];
    for (difference, change) in changes {
        replace_model(dir.path(), change);
        let err = resume(&p, &p.output_dir).unwrap_err();
        let msg = format!("{err:#}");
        assert_eq!(exit_code(&err), 2, "{msg}");
        assert!(msg.contains("checkpoints/step-00000005") && msg.contains(difference), "{msg}");
    }
    // A manifest of an older build records no architecture: the weights' shapes tell.
    edit_manifest(&p, |m| {
        m.remove("model");
    });
    for (what, change) in [
        ("2 transformer blocks, the model has 3", (|c| c.n_layer = 3) as Change),
        ("wte.weight is [8192, 16], the model's is [8192, 32]", |c| c.n_embd = 32),
    ] {
        replace_model(dir.path(), change);
        let err = resume(&p, &p.output_dir).unwrap_err();
        let msg = format!("{err:#}");
        assert_eq!(exit_code(&err), 2, "{msg}");
        assert!(msg.contains("step-00000005/policy.mpk") && msg.contains(what), "{msg}");
    }
    assert_eq!(steps_of(&p.output_dir.join("metrics.jsonl")), [0, 5], "no lost work");
}

/// #18, #19: another estimator (whose state the checkpoint cannot hold) is an error naming both
/// kinds; a harmless change (the learning rate) resumes.
#[test]
fn resuming_with_another_estimator_is_a_clear_error() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, p) = stopped_run(10, 5, "");
    let cfg = dir.path().join("run.toml");
    for other in ["kl_control", "gdc", "dpg"] {
        rewrite(&cfg, "kind = \"gdc_pp\"", &format!("kind = \"{other}\""));
        let err = resume(&plan(&cfg), &p.output_dir).unwrap_err();
        let msg = format!("{err:#}");
        assert_eq!(exit_code(&err), 2, "{msg}");
        assert!(msg.contains("step-00000005") && msg.contains("`gdc_pp`"), "{msg}");
        assert!(msg.contains(&format!("`{other}`")), "{msg}");
        rewrite(&cfg, &format!("kind = \"{other}\""), "kind = \"gdc_pp\"");
    }
    // The command line refuses it before touching anything.
    rewrite(&cfg, "kind = \"gdc_pp\"", "kind = \"kl_control\"");
    let (code, _, err) = tilt(&["train", "--config", s(&cfg), "--resume", s(&p.output_dir)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("estimator.kind `gdc_pp`, the config says `kl_control`"), "{err}");
    // Older manifests do not record the estimator: the proposal q tells.
    edit_manifest(&p, |m| {
        m.remove("estimator");
    });
    let err = resume(&plan(&cfg), &p.output_dir).unwrap_err();
    assert_eq!(exit_code(&err), 2, "{err:#}");
    assert!(format!("{err:#}").contains("holds a proposal q"), "{err:#}");
    rewrite(&cfg, "kind = \"kl_control\"", "kind = \"gdc_pp\"");
    rewrite(&cfg, "lr = 1e-3", "lr = 2e-3");
    assert_eq!(resume(&plan(&cfg), &p.output_dir).unwrap().steps, 10);
}

/// #25: `--dry-run --overwrite` leaves the earlier run alone.
#[test]
fn a_dry_run_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let cfg = config(dir.path(), GDC_PP, 2, PROPOSAL);
    let out = fake_run(dir.path());
    let before = listing(&out);
    let (code, stdout, err) = tilt(&["train", "--config", s(&cfg), "--dry-run", "--overwrite"]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("estimator"), "{stdout}");
    assert_eq!(listing(&out), before);
}

/// An earlier, finished run's files in `dir/out` (fake ones: only their names matter).
fn fake_run(dir: &Path) -> PathBuf {
    let out = dir.join("out");
    for sub in ["checkpoints/step-00000002", "final", "plots"] {
        std::fs::create_dir_all(out.join(sub)).unwrap();
    }
    let files = [
        ("metrics.jsonl", "{\"step\":0,\"samples_seen\":0}\n{\"step\":2,\"samples_seen\":16}\n"),
        ("samples.jsonl", "{\"step\":0,\"text\":\"x\"}\n"),
        ("checkpoints/latest", "step-00000002\n"),
        ("final/config.json", "{}"),
        ("plots/kl.png", "png"),
        ("run.json", "{}"),
    ];
    for (name, text) in files {
        std::fs::write(out.join(name), text).unwrap();
    }
    out
}

/// Every path under `dir` with its content (files), sorted.
fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            let name = path.strip_prefix(dir).unwrap().display().to_string();
            if path.is_dir() {
                stack.push(path);
                out.push((name, Vec::new()));
            } else {
                out.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// #22: `--resume A -o B` where B holds another run is refused, B untouched.
#[test]
fn resuming_into_another_runs_directory_is_refused() {
    let (dir, p) = {
        let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        stopped_run(10, 5, "")
    };
    let other = tempfile::tempdir().unwrap();
    let b = fake_run(other.path());
    let before = listing(&b);
    let cfg = dir.path().join("run.toml");
    let args = ["train", "--config", s(&cfg), "--resume", s(&p.output_dir), "-o", s(&b)];
    let (code, _, err) = tilt(&args);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("holds another run") && err.contains("step-00000005"), "{err}");
    assert_eq!(listing(&b), before);
}

/// #33: a resume from an earlier checkpoint drops the samples logged after it, as it drops
/// the metrics.
#[test]
fn resume_drops_the_samples_after_the_checkpoint() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_dir, p) = stopped_run(10, 7, "keep_last = 3");
    let samples = p.output_dir.join("samples.jsonl");
    assert!(sample_steps(&samples).contains(&7));
    resume(&p, &p.checkpoints_dir().join("step-00000005")).unwrap();
    assert_eq!(steps_of(&p.output_dir.join("metrics.jsonl")), [0, 5, 10]);
    let mut steps = sample_steps(&samples);
    steps.dedup();
    assert_eq!(steps, [0, 5, 10]);
}

fn sample_steps(path: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(path).unwrap();
    let step = |l: &str| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64();
    text.lines().map(|l| step(l).unwrap()).collect()
}

/// #34: elapsed_s goes on from the checkpoint's after a resume.
#[test]
fn elapsed_time_continues_after_a_resume() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_dir, p) = stopped_run(10, 5, "");
    let ck = tilt_trainer::checkpoint::resolve(&p.output_dir).unwrap();
    let saved = ck.manifest().elapsed_s.expect("the manifest records the training time");
    assert!(saved > 0.0);
    edit_manifest(&p, |m| {
        m.insert("elapsed_s".into(), 1000.0.into());
    });
    resume(&p, &p.output_dir).unwrap();
    let records = read_metrics(&p.output_dir.join("metrics.jsonl")).unwrap();
    let elapsed: Vec<f64> = records.iter().map(|r| r.elapsed_s.unwrap()).collect();
    assert!(elapsed[1] < 1000.0 && elapsed[2] > 1000.0, "{elapsed:?}");
}

/// #27, #28: `--overwrite` sets the whole earlier run aside until the new run's first
/// checkpoint; a start that failed before any record does not block a plain rerun.
#[test]
fn overwrite_sets_the_earlier_run_aside_until_the_first_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let cfg = config(dir.path(), GDC_PP, 2, PROPOSAL);
    let out = fake_run(dir.path());
    // λ cannot be fitted when no sample has an `a`: the run fails before any record.
    rewrite(&cfg, "pattern = \"a\"", "pattern = \"never!\"");
    let (code, _, err) = tilt(&["train", "--config", s(&cfg), "--overwrite"]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("λ"), "{err}");
    let aside = out.join(".replaced-run");
    for name in ["metrics.jsonl", "samples.jsonl", "checkpoints/latest", "final", "plots"] {
        assert!(aside.join(name).exists(), "{name} set aside");
        assert!(!out.join(name).exists() || name.ends_with(".jsonl"), "{name} left");
    }
    assert!(aside.join("run.json").is_file() && !out.join("run.json").exists());
    let (code, _, err) = tilt(&["train", "--config", s(&cfg)]);
    assert_ne!(code, 0, "λ still cannot be fitted: {err}");
    assert!(!err.contains("already holds a run"), "{err}");
    rewrite(&cfg, "pattern = \"never!\"", "pattern = \"a\"");
    let (code, _, err) = tilt(&["train", "--config", s(&cfg), "--overwrite"]);
    assert_eq!(code, 0, "{err}");
    assert!(!aside.exists(), "deleted after the first checkpoint");
    assert_eq!(steps_of(&out.join("metrics.jsonl")), [0, 2]);
}

/// A directory whose run has records but no checkpoint is refused with --overwrite as the
/// way on (--resume cannot continue it).
#[test]
fn a_run_without_checkpoint_suggests_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let cfg = config(dir.path(), GDC_PP, 2, PROPOSAL);
    let out = fake_run(dir.path());
    std::fs::remove_dir_all(out.join("checkpoints")).unwrap();
    let (code, _, err) = tilt(&["train", "--config", s(&cfg)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no checkpoint to resume") && err.contains("--overwrite"), "{err}");
    assert!(!err.contains("--resume"), "{err}");
}

/// Missing inputs exit 2 (help: "2 wrong input (…, missing file)").
#[test]
fn missing_inputs_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let cfg = config(dir.path(), GDC_PP, 2, PROPOSAL);
    let (code, _, err) = tilt(&["train", "--config", s(&cfg), "--resume", "/nonexistent/run"]);
    assert_eq!(code, 2, "missing checkpoint: {err}");
    std::fs::remove_file(dir.path().join("base/tokenizer.json")).unwrap();
    let (code, _, err) = tilt(&["train", "--config", s(&cfg)]);
    assert_eq!(code, 2, "missing tokenizer: {err}");
    std::fs::remove_dir_all(dir.path().join("base")).unwrap();
    let (code, _, err) = tilt(&["train", "--config", s(&cfg), "--overwrite"]);
    assert_eq!(code, 2, "missing model: {err}");
    let (code, _, err) = tilt(&["fit", "--config", s(&cfg)]);
    assert_eq!(code, 2, "missing model: {err}");
}

/// #46: `eval -o` and `sample -o` into a missing directory fail before the work.
#[test]
fn unwritable_outputs_are_refused_before_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let cfg = config(dir.path(), GDC_PP, 2, PROPOSAL);
    let (code, _, err) = tilt(&["eval", "--config", s(&cfg), "-o", "/nonexistent/x.json"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--output /nonexistent/x.json") && err.contains("does not exist"));
    let args = ["sample", "--model", s(&base), "-n", "1", "-o", "/nonexistent/x.jsonl"];
    let (code, _, err) = tilt(&args);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = tilt(&["sample", "--model", s(&base), "-n", "1", "-o", s(dir.path())]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is a directory"), "{err}");
}

/// #35: SIGTERM stops the run as Ctrl-C does: after the step, with a checkpoint, exit 130;
/// `--resume` continues it (here to a shorter end: a harmless change of total_samples).
#[cfg(unix)]
#[test]
fn sigterm_checkpoints_and_the_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let cfg = config(dir.path(), GDC_PP, 1000, PROPOSAL);
    let mut child = spawn_train(&cfg);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("step 0/1000"), "{first}");
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    drop(lines);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("tilt train --resume"), "{err}");
    let output = dir.path().join("out");
    let step = tilt_trainer::checkpoint::resolve(&output).unwrap().manifest().step;
    assert!(step >= 1);
    rewrite(&cfg, "total_samples = 8000", &format!("total_samples = {}", 8 * (step + 1)));
    let (code, out, err) = tilt(&["train", "--config", s(&cfg), "--resume", s(&output)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("{} steps; final policy", step + 1)), "{out}");
}
