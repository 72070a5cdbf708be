//! End-to-end runs of the training loop on a tiny random GPT-2 (the committed tilt-mini
//! tokenizer, 8,192 tokens), one per estimator, plus resume identity and the NaN stop.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use burn::backend::{Autodiff, Flex};
use tilt_policies::{Gpt2Config, Gpt2Tokenizer, checkpoint::load_hf_dir};
use tilt_trainer::plan::{Overrides, Plan};
use tilt_trainer::report::read_metrics;
use tilt_trainer::train::{Interrupted, NonFiniteLoss, RunOptions, run};

type B = Autodiff<Flex>;

/// burn's RNG (dropout) is process-global: runs go one at a time.
pub(crate) static SERIAL: Mutex<()> = Mutex::new(());

const TOKENIZER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/tilt-mini/tokenizer.json");

/// A tiny random GPT-2 with the tilt-mini vocabulary, saved with its tokenizer in `dir/base`.
pub(crate) fn tiny_base(dir: &Path) -> PathBuf {
    let tokenizer = Gpt2Tokenizer::from_file(TOKENIZER).unwrap();
    let eos = tokenizer.eos_token_id() as usize;
    let config = Gpt2Config::tiny()
        .with_vocab_size(tokenizer.vocab_size())
        .with_bos_token_id(eos)
        .with_eos_token_id(eos);
    let model = config.init_seeded::<Flex>(&Default::default(), 7);
    let base = dir.join("base");
    model.save_hf_dir(&base).unwrap();
    tokenizer.save(base.join("tokenizer.json")).unwrap();
    base
}

/// A run config: a pointwise constraint (the text has an `e`), a 50% moment (it has an `a`),
/// `estimator` as given, 8 samples per step over 2 forward minibatches.
pub(crate) fn config(dir: &Path, estimator: &str, steps: u64, extra: &str) -> PathBuf {
    let text = format!(
        r#"
output_dir = "out"
seed = 3

[model]
base = "base"
dropout = 0.0

[[constraints]]
name = "has_e"
pointwise = true
feature = {{ kind = "regex", pattern = "e" }}

[[constraints]]
name = "has_a"
moment = 0.5
feature = {{ kind = "regex", pattern = "a" }}

[estimator]
{estimator}

[training]
total_samples = {total}
batch_size = 8
minibatch_size = 4

[optimizer]
lr = 1e-3

[schedule]
warmup_steps = 1

[sampling]
new_tokens = 6

[lambda_fit]
samples = 128

[eval]
interval = 5
samples = 32
proposal_samples = 64
self_bleu_samples = 8

[checkpoint]
interval = 5
{extra}
"#,
        total = 8 * steps
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn plan(path: &Path) -> Plan {
    Plan::load(path, &Overrides::default()).unwrap()
}

fn weights(dir: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    load_hf_dir::<Flex>(dir, &Default::default()).unwrap().named_tensors()
}

/// Runs `steps` steps with `estimator` and checks the metrics are sane.
fn sane_run(estimator: &str, extra: &str) {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let plan = plan(&config(dir.path(), estimator, 5, extra));
    let summary = run::<B>(&plan, Default::default(), &RunOptions::default()).unwrap();
    assert_eq!(summary.steps, 5);
    let final_dir = summary.final_dir.expect("the final policy is exported");
    assert_eq!(weights(&final_dir).len(), weights(&dir.path().join("base")).len());
    let records = read_metrics(&plan.output_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(records.iter().map(|r| r.step).collect::<Vec<_>>(), [0, 5], "{estimator}");
    for r in &records {
        for (name, m) in &r.moments {
            assert!((0.0..=1.0).contains(m), "{estimator}: E[{name}] = {m}");
        }
        assert_eq!(r.moments.len(), 2);
        let kl_pi_a = r.kl_pi_a.expect("KL(π‖a)");
        // π = a exactly at step 0 (no dropout): the estimate is 0 there.
        if r.step == 0 {
            assert!(kl_pi_a.abs() < 1e-4, "{estimator}: KL(π‖a) = {kl_pi_a} at step 0");
        }
        assert!(kl_pi_a > -0.5, "{estimator}: KL(π‖a) = {kl_pi_a}");
        // 64 importance-sampled draws: the estimate is noisy but a KL, so not very negative.
        let kl = r.kl_p_pi.expect("KL(p‖π)");
        assert!(kl > -0.5 && kl.is_finite(), "{estimator}: KL(p‖π) = {kl}");
        let z = r.z.expect("Z");
        assert!(z > 0.0 && z.is_finite(), "{estimator}: Z = {z}");
        assert!(r.z_stderr.unwrap().is_finite());
        assert!(r.mean_log_a.unwrap() < 0.0);
        assert!(r.distinct_1.unwrap() > 0.0 && r.self_bleu_3.unwrap() >= 0.0);
        let tvd = r.tvd_p_pi.unwrap();
        assert!((0.0..=1.5).contains(&tvd), "{estimator}: TVD = {tvd}");
    }
    let last = records.last().unwrap();
    assert!(last.extra.contains_key("train/loss"), "{estimator}: {:?}", last.extra.keys());
    assert!(plan.output_dir.join("samples.jsonl").metadata().unwrap().len() > 0);
    assert!(plan.output_dir.join("plots").is_dir());
    let info: tilt_trainer::report::RunInfo = serde_json::from_slice(
        &std::fs::read(plan.output_dir.join(tilt_trainer::report::RUN_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!((info.steps, info.seed), (5, 3), "{estimator}: run.json");
    assert_eq!(info.targets["has_a"], 0.5);
    assert!(plan.checkpoints_dir().join("latest").is_file());
}

#[test]
fn gdc_plus_plus_runs_end_to_end_with_sane_metrics() {
    sane_run(r#"kind = "gdc_pp""#, "[proposal]\ninterval = 2");
}

#[test]
fn gdc_runs() {
    sane_run(r#"kind = "gdc""#, "[proposal]\ninterval = 2\ncriterion = \"interval\"");
}

#[test]
fn on_policy_dpg_runs() {
    sane_run("kind = \"dpg\"\nbaseline = \"z\"", "");
}

#[test]
fn on_policy_dpg_with_ppo_epochs_runs() {
    sane_run("kind = \"dpg\"\nppo = true\nppo_epochs = 2", "");
}

#[test]
fn fdpg_runs() {
    sane_run("kind = \"fdpg\"\ndivergence = \"js\"", "[proposal]\ninterval = 2");
}

#[test]
fn reinforce_runs() {
    sane_run("kind = \"reinforce\"\nbaseline = \"leave_one_out\"", "");
}

#[test]
fn kl_control_runs() {
    sane_run(r#"kind = "kl_control""#, "");
}

#[test]
fn kl_control_with_two_ppo_epochs_runs() {
    sane_run("kind = \"kl_control\"\nppo_epochs = 2", "");
    sane_run("kind = \"kl_control\"\nppo_epochs = 2\nkl_penalty = \"sequence\"", "");
}

#[test]
fn kl_control_sequence_fixed_beta_runs() {
    sane_run(
        "kind = \"kl_control\"\nkl_penalty = \"sequence\"\nbeta_control = \"fixed\"\nppo = false",
        "",
    );
}

#[test]
fn kl_control_with_a_critic_runs_and_checkpoints_its_value_head() {
    sane_run("kind = \"kl_control\"\ncritic = true\nppo_epochs = 2", "");
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let estimator = "kind = \"kl_control\"\ncritic = true\ngae_lambda = 0.9\nvalue_coef = 0.5";
    let plan = plan(&config(dir.path(), estimator, 2, ""));
    run::<B>(&plan, Default::default(), &RunOptions::default()).unwrap();
    let records = read_metrics(&plan.output_dir.join("metrics.jsonl")).unwrap();
    let last = &records.last().unwrap().extra;
    let loss = last["train/value_loss"].as_f64().unwrap();
    assert!(loss.is_finite() && loss >= 0.0, "{last:?}");
    assert!(last["train/value_explained_variance"].as_f64().unwrap().is_finite());
    let step = plan.checkpoints_dir().join("step-00000002");
    for file in ["value_head.mpk", "value_optimizer.mpk", "policy.mpk"] {
        assert!(step.join(file).is_file(), "{file}");
    }
}

/// 10 steps straight and 5 + resume + 5 give bit-identical weights with `estimator`.
fn resume_identity(estimator: &str, extra: &str) {
    resume_identity_of(estimator, |dir, steps| config(dir, estimator, steps, extra));
}

/// [`resume_identity`] for the config `make(dir, steps)`.
fn resume_identity_of(estimator: &str, make: impl Fn(&Path, u64) -> PathBuf) {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let straight = tempfile::tempdir().unwrap();
    tiny_base(straight.path());
    let a = plan(&make(straight.path(), 10));
    run::<B>(&a, Default::default(), &RunOptions::default()).unwrap();

    let split = tempfile::tempdir().unwrap();
    tiny_base(split.path());
    let b = plan(&make(split.path(), 10));
    let first = RunOptions { stop_after: Some(5), ..RunOptions::default() };
    let s = run::<B>(&b, Default::default(), &first).unwrap();
    assert_eq!((s.steps, s.final_dir.is_none()), (5, true));
    let again = RunOptions { resume: Some(b.output_dir.clone()), ..RunOptions::default() };
    let s = run::<B>(&b, Default::default(), &again).unwrap();
    assert_eq!(s.steps, 10);

    let wa = weights(&a.output_dir.join("final"));
    let wb = weights(&b.output_dir.join("final"));
    let base = weights(&straight.path().join("base"));
    assert_ne!(wa, base, "training changed the weights");
    assert_eq!(wa, wb, "{estimator}: resumed weights differ from the straight run's");
    // The metrics log holds each evaluation once, and the estimator's state (adaptive β,
    // moving-average baseline) resumed too: the last records agree.
    let ra = read_metrics(&a.output_dir.join("metrics.jsonl")).unwrap();
    let rb = read_metrics(&b.output_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(rb.iter().map(|r| r.step).collect::<Vec<_>>(), [0, 5, 10]);
    assert_eq!(ra.last().unwrap().extra, rb.last().unwrap().extra, "{estimator}");
}

#[test]
fn resume_gives_identical_weights() {
    resume_identity(r#"kind = "gdc_pp""#, "[proposal]\ninterval = 2");
}

#[test]
fn resume_restores_the_adaptive_kl_coefficient() {
    resume_identity("kind = \"kl_control\"\nkl_target = 0.01\nkl_horizon = 100", "");
}

#[test]
fn resume_restores_the_value_head_and_its_optimizer() {
    resume_identity("kind = \"kl_control\"\ncritic = true", "");
}

#[test]
fn resume_restores_the_f_dpg_baseline() {
    resume_identity("kind = \"fdpg\"\ndivergence = \"js\"", "[proposal]\ninterval = 2");
}

/// The moment constraint of [`config`].
const MOMENT: &str = "[[constraints]]\nname = \"has_a\"\nmoment = 0.5\n\
                      feature = { kind = \"regex\", pattern = \"a\" }\n";

const CONTEXTS: [&str; 4] = ["Yes", "The cat", "A dog said", "Once upon a time"];

/// A conditional run: [`config`] without its moment constraint and with a rarer pointwise one
/// (the text has an `o`: the rewards and P/π differ within a context), on four contexts of
/// different token lengths (so that prompts are left-padded), two per batch (four samples
/// each), evaluated on two.
pub(crate) fn conditional_config(dir: &Path, estimator: &str, steps: u64) -> PathBuf {
    std::fs::write(dir.join("contexts.txt"), CONTEXTS.join("\n")).unwrap();
    let extra = "[contexts]\nfile = \"contexts.txt\"\nper_step = 2\neval_contexts = 2";
    let path = config(dir, estimator, steps, extra);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(MOMENT));
    let text = text.replace(MOMENT, "").replace("pattern = \"e\"", "pattern = \"o\"");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs 4 steps of a conditional run and checks its per-context metrics and samples.
fn conditional_run(estimator: &str) {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let plan = plan(&conditional_config(dir.path(), estimator, 4));
    let summary = run::<B>(&plan, Default::default(), &RunOptions::default()).unwrap();
    assert_eq!(summary.steps, 4);
    let records = read_metrics(&plan.output_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(records.iter().map(|r| r.step).collect::<Vec<_>>(), [0, 4], "{estimator}");
    for r in &records {
        assert_eq!(r.extra["contexts"], 2, "{estimator}: {:?}", r.extra);
        assert_eq!(r.z, None, "{estimator}: one Z means nothing across contexts");
        let kl = r.kl_p_pi.expect("E_c KL(p_c‖π_c)");
        assert!(kl > -0.5 && kl.is_finite(), "{estimator}: KL(p‖π) = {kl}");
        let tvd = r.tvd_p_pi.unwrap();
        assert!((0.0..=1.5).contains(&tvd), "{estimator}: TVD = {tvd}");
        assert!(r.ess.unwrap() > 0.0);
        assert!((0.0..=1.0).contains(&r.moments["has_e"]));
        // At step 0 π = a (no dropout): the sampler's log π(x|c) of rows whose prompts have
        // different lengths (left-padded) and a's rescoring of them agree.
        let kl_pi_a = r.kl_pi_a.unwrap();
        assert!(if r.step == 0 { kl_pi_a.abs() < 1e-4 } else { kl_pi_a > -0.5 }, "{kl_pi_a}");
    }
    let last = &records.last().unwrap().extra;
    assert!(last["train/loss"].as_f64().unwrap().is_finite(), "{estimator}: {last:?}");
    // Evaluation samples name their context, one of each evaluation context in turn.
    let samples = std::fs::read_to_string(plan.output_dir.join("samples.jsonl")).unwrap();
    let contexts: Vec<String> = samples
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["context"].to_string())
        .collect();
    assert!(contexts.iter().all(|c| CONTEXTS.iter().any(|k| c.trim_matches('"') == *k)));
    assert_ne!(contexts[0], contexts[1], "{contexts:?}");
    let changed = weights(&summary.final_dir.unwrap()) != weights(&dir.path().join("base"));
    assert!(changed, "{estimator}: training changed no weight");
}

#[test]
fn cdpg_runs_on_contexts_with_per_context_metrics() {
    conditional_run(r#"kind = "cdpg""#);
    conditional_run("kind = \"cdpg\"\nbaseline = \"z\"\nppo = true");
}

/// A distributional constraint in a conditional run: λ is fitted so that the moment averaged
/// over the contexts, each normalised by its own Z_c, meets the target.
#[test]
fn cdpg_fits_lambda_over_contexts() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    std::fs::write(dir.path().join("contexts.txt"), CONTEXTS.join("\n")).unwrap();
    let extra = "[contexts]\nfile = \"contexts.txt\"\nper_step = 2\neval_contexts = 2";
    let plan = plan(&config(dir.path(), r#"kind = "cdpg""#, 2, extra));
    let summary = run::<B>(&plan, Default::default(), &RunOptions::default()).unwrap();
    assert_eq!(summary.lambda.len(), 1);
    assert!(summary.lambda[0].is_finite() && summary.lambda[0] != 0.0, "{:?}", summary.lambda);
    let records = read_metrics(&plan.output_dir.join("metrics.jsonl")).unwrap();
    assert!(records.iter().all(|r| r.moments.contains_key("has_a") && r.kl_p_pi.is_some()));
}

#[test]
fn reward_maximisation_runs_on_contexts() {
    conditional_run("kind = \"reinforce\"\nbaseline = \"leave_one_out\"");
    conditional_run("kind = \"kl_control\"\ncritic = true");
}

#[test]
fn resume_of_a_conditional_run_gives_identical_weights() {
    let cdpg = r#"kind = "cdpg""#;
    resume_identity_of(cdpg, |dir, steps| conditional_config(dir, cdpg, steps));
}

/// A loss that overflows stops the run with [`NonFiniteLoss`] before any update.
#[test]
fn non_finite_loss_stops_cleanly() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    // R = 1e308 on accepted samples: −mean R log π overflows to inf.
    let p = plan(&config(dir.path(), r#"kind = "reinforce""#, 5, "[reward]\nscale = 1e308"));
    let err = run::<B>(&p, Default::default(), &RunOptions::default()).unwrap_err();
    let nan = err.downcast_ref::<NonFiniteLoss>().unwrap_or_else(|| panic!("{err:#}"));
    assert_eq!(nan.step, 1);
    assert!(err.to_string().contains("training stopped"), "{err}");
    assert!(!p.output_dir.join("final").exists());
    assert!(!p.checkpoints_dir().join("step-00000001").exists());
}

/// A pointwise constraint that no sample meets: Z is unknown and every distribution-matching
/// advantage is 0, so each step is skipped with a warning (no update) instead of stopping.
#[test]
fn steps_without_any_sample_in_the_target_skip_their_updates() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let path = config(dir.path(), r#"kind = "gdc_pp""#, 3, "[proposal]\ninterval = 2");
    let text = std::fs::read_to_string(&path).unwrap();
    let moment = "[[constraints]]\nname = \"has_a\"\nmoment = 0.5\n\
                  feature = { kind = \"regex\", pattern = \"a\" }\n";
    assert!(text.contains(moment));
    let text = text.replace(moment, "").replace("pattern = \"e\"", "pattern = \"never!\"");
    std::fs::write(&path, text).unwrap();
    let p = plan(&path);
    let summary = run::<B>(&p, Default::default(), &RunOptions::default()).unwrap();
    assert_eq!(summary.steps, 3);
    assert_eq!(weights(&summary.final_dir.unwrap()), weights(&base));
    let records = read_metrics(&p.output_dir.join("metrics.jsonl")).unwrap();
    let last = records.last().unwrap();
    assert_eq!(last.extra["train/zero_target_fraction"].as_f64(), Some(1.0));
    assert_eq!(last.z, None);
}

/// Targets that no λ can reach together (the same feature at 0.5 and at 0.3) stop the run at
/// the λ fit with an error that says so, before any step.
#[test]
fn a_lambda_fit_that_does_not_converge_stops_the_run() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let path = config(dir.path(), r#"kind = "gdc_pp""#, 2, "[proposal]\ninterval = 2");
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "[estimator]",
        "[[constraints]]\nname = \"has_a_too\"\nmoment = 0.3\n\
         feature = { kind = \"regex\", pattern = \"a\" }\n\n[estimator]",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let p = plan(&path);
    let err = run::<B>(&p, Default::default(), &RunOptions::default()).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("fitting λ did not converge"), "{text}");
    assert!(text.contains("has_a_too"), "{text}");
    assert!(!p.checkpoints_dir().join("latest").exists());
}

/// An interrupt (Ctrl-C) stops the run after the current step with a checkpoint, and the run
/// resumes from it to the same weights as a straight run.
#[test]
fn interrupt_checkpoints_and_resumes() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let p = plan(&config(dir.path(), r#"kind = "gdc_pp""#, 4, "[proposal]\ninterval = 2"));
    let flag = Arc::new(AtomicBool::new(true));
    let options = RunOptions { interrupt: Some(flag), ..RunOptions::default() };
    let err = run::<B>(&p, Default::default(), &options).unwrap_err();
    let stop = err.downcast_ref::<Interrupted>().unwrap_or_else(|| panic!("{err:#}"));
    assert_eq!(stop.step, 1);
    assert!(stop.checkpoint.join("manifest.json").is_file(), "{}", stop.checkpoint.display());
    assert!(err.to_string().contains("tilt train --resume"), "{err}");
    let again = RunOptions { resume: Some(p.output_dir.clone()), ..RunOptions::default() };
    let s = run::<B>(&p, Default::default(), &again).unwrap();
    assert_eq!(s.steps, 4);
    assert!(s.final_dir.is_some());
}

/// `eval.grad_variance_interval`: the evaluation records of those steps carry the gradient
/// variance.
#[test]
fn gradient_variance_is_recorded() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let path = config(dir.path(), r#"kind = "gdc_pp""#, 5, "[proposal]\ninterval = 2");
    let text = std::fs::read_to_string(&path).unwrap();
    let text =
        text.replace("self_bleu_samples = 8", "self_bleu_samples = 8\ngrad_variance_interval = 5");
    std::fs::write(&path, text).unwrap();
    let p = plan(&path);
    run::<B>(&p, Default::default(), &RunOptions::default()).unwrap();
    let records = read_metrics(&p.output_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(records[0].grad_variance, None);
    let v = records[1].grad_variance.expect("measured at step 5");
    assert!(v.is_finite() && v > 0.0, "{v}");
}
