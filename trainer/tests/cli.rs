//! The `tilt` binary: exit codes and messages.

use std::process::Command;

pub(crate) fn tilt(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tilt")).args(args).output().expect("tilt runs");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const CONFIG: &str = r#"
output_dir = "out"
[model]
base = "base"
tokenizer = "base/tokenizer.json"
[[constraints]]
name = "amazing"
pointwise = true
feature = { kind = "word", word = "amazing" }
"#;

#[test]
fn check_prints_the_plan_and_finds_missing_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("run.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let config = config.to_str().unwrap();

    let (code, out, err) = tilt(&["check", "--config", config]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("estimator     GdcPp"), "{out}");
    assert!(err.contains("model.base:") && err.contains("does not exist"), "{err}");

    let (code, out, err) = tilt(&["check", "--config", config, "--config-only"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("config OK"), "{out}");

    std::fs::create_dir(tmp.path().join("base")).unwrap();
    std::fs::write(tmp.path().join("base/tokenizer.json"), "{}").unwrap();
    let (code, out, err) = tilt(&["check", "--config", config]);
    assert_eq!(code, 0, "{out}{err}");

    let (code, out, err) = tilt(&["train", "--config", config, "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("12500 steps"), "{out}");

    // A device the backend lacks, from the command line.
    let (code, _, err) = tilt(&["check", "--config", config, "--device", "cuda:0"]);
    assert_eq!(code, 2);
    assert!(err.contains("device: backend `flex` has no device `cuda:0`"), "{err}");
    // A backend that is not compiled in is named as such, not as a device it lacks.
    if !cfg!(feature = "wgpu") {
        let (code, _, err) = tilt(&["check", "--config", config, "--backend", "wgpu"]);
        assert_eq!(code, 2);
        assert!(err.contains("backend `wgpu` is not compiled into this tilt"), "{err}");
    }
}

#[test]
fn invalid_config_exits_2_with_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("run.toml");
    std::fs::write(&config, format!("{CONFIG}[training]\nbatch_size = 500\n")).unwrap();
    let (code, _, err) = tilt(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "run.toml:11:1: training.batch_size: training.batch_size (500) must be a multiple"
        ),
        "{err}"
    );
    let (code, _, err) = tilt(&["check", "--config", "/nonexistent/run.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read config /nonexistent/run.toml"), "{err}");
}

#[test]
fn bad_command_lines_exit_2() {
    let (code, _, err) = tilt(&["sample", "--model", "m"]);
    assert_eq!(code, 2);
    assert!(err.contains("--model m: no such file or directory"), "{err}");
    let (code, _, err) = tilt(&["pretrain"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = tilt(&["train", "--bogus"]);
    assert_eq!(code, 2, "usage errors exit 2");
    let (code, out, _) = tilt(&["train", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("--resume <DIR>") && out.contains("--backend <BACKEND>"), "{out}");
}

#[test]
fn compare_reports_finished_runs_and_refuses_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("runs");
    std::fs::create_dir_all(&root).unwrap();
    let (code, _, err) = tilt(&["compare", root.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no runs (metrics.jsonl)"), "{err}");
    // A run stopped before its first evaluation is named, not passed over in silence.
    let stopped = root.join("t-gdc_pp/seed-9");
    std::fs::create_dir_all(&stopped).unwrap();
    std::fs::write(stopped.join("metrics.jsonl"), "").unwrap();
    let (code, out, err) = tilt(&["compare", root.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(out.contains("seed-9 (its metrics.jsonl has no evaluation yet)"), "{out}");
    assert!(err.contains("no evaluated runs"), "{err}");
    std::fs::remove_dir_all(&stopped).unwrap();
    let record = |step: u64, phi: f64| {
        format!(
            "{{\"step\":{step},\"samples_seen\":{},\"moments\":{{\"w\":{phi}}},\"kl_p_pi\":1.5}}\n",
            step * 8
        )
    };
    for (name, finished) in
        [("t-gdc_pp/seed-1", true), ("t-gdc_pp/seed-2", true), ("t-gdc/seed-1", false)]
    {
        let run = root.join(name);
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("metrics.jsonl"), record(0, 0.1) + &record(5, 0.5)).unwrap();
        if finished {
            std::fs::write(run.join("run.json"), r#"{"config":"x.toml","config_hash":"","estimator":"GdcPp","seed":1,"steps":5,"samples_seen":40,"targets":{"w":1.0},"lambda":[]}"#).unwrap();
        }
    }
    let (code, out, err) = tilt(&["compare", root.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("skipping") && out.contains("t-gdc/seed-1"), "{out}");
    assert!(out.contains("| GDC++ | 0.500 ± 0.000 | 1.500 ± 0.000 |"), "{out}");
    assert!(out.contains("E[φ w] (→ 1)"), "{out}");
    assert!(root.join("report/table.md").is_file() && root.join("report/t-kl_p_pi.png").is_file());
    let (code, out, _) = tilt(&["compare", root.to_str().unwrap(), "--include-unfinished"]);
    assert_eq!(code, 0);
    assert!(out.contains("| GDC | 0.500 |"), "{out}");
}
