//! External scorers against the committed scripts in tests/scripts: answers, and every failure
//! naming the program, without hangs or zombies.

use std::path::Path;
use std::time::{Duration, Instant};

use tilt_constraints::{Error, External, ExternalProblem, Feature, Sample};

use crate::scripts;

fn script(name: &str, args: &[&str]) -> External {
    let path = scripts().join(name);
    let mut command = vec!["python3".to_owned(), path.display().to_string()];
    command.extend(args.iter().map(|a| a.to_string()));
    External::new(&command, None).unwrap()
}

fn texts<'a>(texts: &[&'a str]) -> Vec<Sample<'a>> {
    texts.iter().map(|t| Sample::text(t)).collect()
}

/// The problem of a failed call, after checking that the message names the script.
#[track_caller]
fn problem(result: tilt_constraints::Result<Vec<f64>>, script: &str) -> (ExternalProblem, String) {
    let err = result.expect_err("the scorer should fail");
    let message = err.to_string();
    assert!(message.contains("external scorer `python3 "), "{message}");
    assert!(message.contains(script), "`{script}` not named in: {message}");
    match err {
        Error::External { problem, .. } => (problem, message),
        other => panic!("not an external error: {other}"),
    }
}

#[test]
fn echoes_text_lengths() {
    let f = script("echo_len.py", &[]);
    let samples = texts(&["", "abc", "héllo wörld", "line\nbreak \"quoted\" \\ tab\t", "😀"]);
    assert_eq!(f.score(&samples).unwrap(), [0., 3., 11., 26., 1.]);
    assert!(!f.is_binary());
    assert!(f.name().contains("echo_len.py"));
}

#[test]
fn sends_tokens_and_eos() {
    let samples = [
        Sample::new("a", &[50256, 11, 7], true),
        Sample::new("b", &[], false),
        Sample::new("c", &[1], true),
    ];
    assert_eq!(script("echo_len.py", &["tokens"]).score(&samples).unwrap(), [3., 0., 1.]);
    let eos = script("echo_len.py", &["eos"]).with_binary(true);
    assert_eq!(eos.score(&samples).unwrap(), [1., 0., 1.]);
    assert!(eos.is_binary());
}

#[test]
fn large_batches_do_not_deadlock() {
    // About 10 MB each way through the pipes, far beyond their 64 KiB buffers.
    let text = "x".repeat(1000);
    let samples: Vec<Sample<'_>> = (0..10_000).map(|_| Sample::text(&text)).collect();
    let values = script("echo_len.py", &[]).score(&samples).unwrap();
    assert_eq!(values.len(), 10_000);
    assert!(values.iter().all(|&v| v == 1000.0));
}

#[test]
fn runs_in_the_base_dir_from_a_spec() {
    let spec: tilt_constraints::ConstraintsSpec = toml::from_str(
        r#"
        [[constraints]]
        name = "len"
        feature = { kind = "external", command = ["python3", "echo_len.py"], timeout_s = 30 }
        moment = 5
        "#,
    )
    .unwrap();
    let plan = spec.build(&scripts()).unwrap();
    let samples = texts(&["four", "seven!!"]);
    assert_eq!(plan.moment_features(&samples).unwrap(), [[4., 7.]]);
}

#[test]
fn a_non_zero_exit_names_the_program_and_shows_stderr() {
    let (problem, message) = problem(script("crash.py", &[]).score(&texts(&["a"])), "crash.py");
    assert!(
        matches!(problem, ExternalProblem::Exit { ref status, .. } if status.code() == Some(3))
    );
    assert!(message.contains("exit status: 3"), "{message}");
    assert!(message.contains("the model file is corrupt"), "{message}");
}

#[test]
fn a_crash_by_signal_is_reported() {
    let (problem, message) = problem(script("killed.py", &[]).score(&texts(&["a"])), "killed.py");
    assert!(matches!(problem, ExternalProblem::Exit { ref status, .. } if status.code().is_none()));
    assert!(message.contains("signal"), "{message}");
}

#[test]
fn a_python_exception_is_reported_with_its_traceback_tail() {
    let f = External::new(&["python3", "-c", "import sys; sys.stdin.read(); 1/0"], None).unwrap();
    let (_, message) = problem(f.score(&texts(&["a"])), "1/0");
    assert!(message.contains("ZeroDivisionError"), "{message}");
}

#[test]
fn garbage_is_reported_with_its_line() {
    let (problem, message) =
        problem(script("garbage.py", &[]).score(&texts(&["a", "b", "c"])), "garbage.py");
    assert!(matches!(problem, ExternalProblem::Garbage { line: 2, .. }), "{message}");
    assert!(message.contains("`positive`"), "{message}");
    assert!(message.contains("not a number"), "{message}");
}

#[test]
fn too_few_lines_are_reported() {
    let (problem, message) =
        problem(script("too_few.py", &[]).score(&texts(&["a", "b", "c"])), "too_few.py");
    assert!(matches!(problem, ExternalProblem::LineCount { expected: 3, got: 2, .. }), "{message}");
}

#[test]
fn nan_is_rejected_unless_allowed() {
    let (problem, message) = problem(script("nan.py", &[]).score(&texts(&["a"])), "nan.py");
    assert!(matches!(problem, ExternalProblem::Garbage { line: 1, .. }), "{message}");
    assert!(message.contains("allow_nan"), "{message}");
    let values = script("nan.py", &[]).with_allow_nan(true).score(&texts(&["a", "b"])).unwrap();
    assert!(values.len() == 2 && values.iter().all(|v| v.is_nan()));
}

#[test]
fn a_binary_scorer_must_answer_bits() {
    let f = script("echo_len.py", &[]).with_binary(true);
    assert_eq!(f.score(&texts(&["", "a"])).unwrap(), [0., 1.]);
    let (problem, message) = problem(f.score(&texts(&["a", "ab"])), "echo_len.py");
    assert!(matches!(problem, ExternalProblem::Garbage { line: 2, .. }), "{message}");
    assert!(message.contains("binary"), "{message}");
}

#[test]
fn a_program_that_cannot_start_is_named() {
    // Found (a file) but not executable: the start itself fails.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("score.sh"), "echo 1\n").unwrap();
    let f = External::new(&["./score.sh"], Some(dir.path())).unwrap();
    let err = f.score(&texts(&["a"])).unwrap_err();
    assert!(matches!(&err, Error::External { problem: ExternalProblem::Spawn(_), .. }), "{err}");
    assert!(err.to_string().contains("score.sh"), "{err}");
    // Not found at all: reported when built.
    let err = External::new(&["./missing.sh"], Some(dir.path())).unwrap_err();
    assert!(err.to_string().contains("missing.sh"), "{err}");
}

#[test]
fn a_hung_program_times_out_and_is_reaped() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let pid_arg = pid_file.display().to_string();
    let f = script("hang.py", &[&pid_arg]).with_timeout(Duration::from_secs(2));
    let start = Instant::now();
    let (problem, message) = problem(f.score(&texts(&["a", "b"])), "hang.py");
    let elapsed = start.elapsed();
    assert!(matches!(problem, ExternalProblem::Timeout { .. }), "{message}");
    assert!(message.contains("2 s"), "{message}");
    assert!(message.contains("thinking..."), "stderr tail missing: {message}");
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");
    // The process is gone, not a zombie: Linux removes /proc/<pid> once it is reaped.
    let pid = std::fs::read_to_string(&pid_file).expect("hang.py wrote its pid");
    if cfg!(target_os = "linux") {
        assert!(!Path::new(&format!("/proc/{}", pid.trim())).exists(), "pid {pid} still exists");
    }
}

#[test]
fn a_child_left_holding_stdout_does_not_hang_the_call() {
    let f = script("orphan.py", &[]).with_timeout(Duration::from_secs(1));
    let start = Instant::now();
    let (problem, message) = problem(f.score(&texts(&["a"])), "orphan.py");
    assert!(matches!(problem, ExternalProblem::Timeout { .. }), "{message}");
    assert!(start.elapsed() < Duration::from_secs(4), "took {:?}", start.elapsed());
}
