//! `tilt sample`, `tilt fit`, `tilt eval`, the embedded demo, refusing to overwrite a run, and
//! resuming from a corrupt checkpoint, through the binary.

use std::path::Path;

use crate::cli::tilt;
use crate::train::{SERIAL, conditional_config, config, tiny_base};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn sample_writes_jsonl_and_checks_its_options() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let out = dir.path().join("samples.jsonl");
    let args = ["sample", "--model", s(&base), "-n", "3", "--new-tokens", "4", "--top-k", "50"];
    let (code, stdout, err) = tilt(&[&args[..], &["--output", s(&out)]].concat());
    assert_eq!(code, 0, "{stdout}{err}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for l in &lines {
        assert_eq!(l["tokens"].as_array().unwrap().len(), 4);
        // top-k renormalises: the sampled distribution gives each sample at least its
        // probability under the model.
        assert!(l["log_prob"].as_f64().unwrap() >= l["log_prob_model"].as_f64().unwrap());
    }
    // The same seed gives the same samples; printing works too.
    let (code, printed, _) = tilt(&args);
    assert_eq!(code, 0);
    assert!(printed.contains(lines[0]["text"].as_str().unwrap().trim()), "{printed}");

    let (code, _, err) = tilt(&["sample", "--model", s(&base), "--top-p", "1.5"]);
    assert_eq!(code, 2);
    assert!(err.contains("--top-p must be in (0, 1], got 1.5"), "{err}");
}

#[test]
fn fit_prints_lambda_and_eval_prints_the_metrics() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let run = config(dir.path(), r#"kind = "gdc_pp""#, 2, "");
    let (code, out, err) = tilt(&["fit", "--config", s(&run)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("λ[has_a] = ") && out.contains("converged"), "{out}");

    let metrics = dir.path().join("eval.json");
    let (code, out, err) = tilt(&["eval", "--config", s(&run)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("E[φ] has_a") && out.contains("(target 0.5)"), "{out}");
    assert!(out.contains("KL(π‖a)") && out.contains("KL(p‖π)"), "{out}");
    let (code, _, err) = tilt(&["eval", "--config", s(&run), "--output", s(&metrics)]);
    assert_eq!(code, 0, "{err}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    // The base model against itself: KL(π‖a) = 0.
    assert!(record["kl_pi_a"].as_f64().unwrap().abs() < 1e-4, "{record}");

    // Nothing to fit: exit 2.
    let pointwise = dir.path().join("pointwise.toml");
    let text = std::fs::read_to_string(&run).unwrap().replace("moment = 0.5", "pointwise = true");
    std::fs::write(&pointwise, text).unwrap();
    let (code, _, err) = tilt(&["fit", "--config", s(&pointwise)]);
    assert_eq!(code, 2);
    assert!(err.contains("there is no λ to fit"), "{err}");
}

#[test]
fn eval_of_a_conditional_config_reports_per_context_metrics() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let run = conditional_config(dir.path(), r#"kind = "cdpg""#, 2);
    let metrics = dir.path().join("eval.json");
    let (code, out, err) = tilt(&["eval", "--config", s(&run), "--output", s(&metrics)]);
    assert_eq!(code, 0, "{out}{err}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    assert_eq!(record["contexts"], 2, "{record}");
    assert!(record["kl_p_pi"].as_f64().unwrap().is_finite(), "{record}");
    assert!(record["z"].is_null(), "{record}");
    // The base model against itself, on prompts of different lengths: KL(π‖a) = 0.
    assert!(record["kl_pi_a"].as_f64().unwrap().abs() < 1e-4, "{record}");
}

#[test]
fn a_second_run_into_the_same_directory_is_refused_and_a_corrupt_checkpoint_named() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let run = config(dir.path(), r#"kind = "gdc_pp""#, 5, "");
    let (code, out, err) = tilt(&["train", "--config", s(&run)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("step 5/5"), "{out}");

    let (code, _, err) = tilt(&["train", "--config", s(&run)]);
    assert_eq!(code, 2);
    assert!(err.contains("already holds a run") && err.contains("--overwrite"), "{err}");

    // Flip a byte of π's weights in the checkpoint: resuming names the file.
    let step = dir.path().join("out/checkpoints/step-00000005");
    let policy = step.join("policy.mpk");
    let mut bytes = std::fs::read(&policy).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&policy, bytes).unwrap();
    let (code, _, err) =
        tilt(&["train", "--config", s(&run), "--resume", s(&dir.path().join("out"))]);
    assert_ne!(code, 0);
    assert!(err.contains("policy.mpk"), "{err}");

    let (code, out, err) = tilt(&["train", "--config", s(&run), "--overwrite"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn the_embedded_demo_prepares_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let (code, out, err) = tilt(&["train", "--output-dir", s(&demo), "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("tilt demo: GDC++"), "{out}");
    assert!(demo.join("demo.toml").is_file() && demo.join("tilt-mini/config.json").is_file());
    let (code, out, err) = tilt(&["check", "--config", s(&demo.join("demo.toml"))]);
    assert_eq!(code, 0, "{out}{err}");
}

/// A real Ctrl-C (SIGINT) during `tilt train`: exit code 130, a checkpoint, and the message
/// says how to resume.
#[cfg(unix)]
#[test]
fn sigint_writes_a_checkpoint_and_exits_130() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    // Long enough that the signal arrives mid-run.
    let run = config(dir.path(), r#"kind = "gdc_pp""#, 100_000, "");
    let child = Command::new(env!("CARGO_BIN_EXE_tilt"))
        .args(["train", "--config", s(&run)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for training to start: the step-0 evaluation is in metrics.jsonl.
    let metrics = dir.path().join("out/metrics.jsonl");
    let start = Instant::now();
    while std::fs::read_to_string(&metrics).map_or(true, |t| t.is_empty()) {
        assert!(start.elapsed() < Duration::from_secs(120), "training did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted after step") && err.contains("--resume"), "{err}");
    assert!(dir.path().join("out/checkpoints/latest").is_file());
}
