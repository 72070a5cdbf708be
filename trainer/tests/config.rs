//! Config parsing and plan validation: defaults, a full example, and every bad-config case
//! errors with the field's path and line.

use std::path::Path;

use tilt_trainer::config::{ConfigSource, OptimizerKind, ProposalCriterion, SamplingDraw};
use tilt_trainer::plan::{Beta, Estimator, Plan};

const MINIMAL: &str = r#"
output_dir = "runs/x"
[model]
base = "models/gpt2"
[[constraints]]
name = "amazing"
pointwise = true
feature = { kind = "word", word = "amazing" }
"#;

fn source(text: &str) -> ConfigSource {
    ConfigSource { path: "configs/run.toml".into(), text: text.to_owned() }
}

fn plan(text: &str) -> Result<Plan, String> {
    let src = source(text);
    let (config, map) = src.parse().map_err(|e| e.to_string())?;
    Plan::new(&config, &map, &src.path, &src.base_dir()).map_err(|e| e.to_string())
}

/// The error of `text`, which must fail; checks it starts with `file:line:col: path:`.
#[track_caller]
fn error(text: &str, path: &str, line: usize) -> String {
    let e = plan(text).expect_err("config should be rejected");
    let prefix = format!("configs/run.toml:{line}:");
    let found = e.lines().any(|l| l.starts_with(&prefix) && l.contains(&format!(": {path}: ")));
    assert!(found, "expected an error at line {line} naming `{path}`, got:\n{e}");
    e
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect("needle in text") + 1
}

/// MINIMAL with `extra` appended.
fn with(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

#[test]
fn minimal_config_gets_the_papers_defaults() {
    let p = plan(MINIMAL).unwrap();
    assert_eq!(p.seed, 12);
    assert_eq!(p.base_model, Path::new("configs/models/gpt2"));
    assert_eq!(p.tokenizer, Path::new("configs/models/gpt2/tokenizer.json"));
    assert_eq!(p.output_dir, Path::new("configs/runs/x"));
    assert_eq!(p.policy_init, None);
    assert_eq!(p.dropout, 0.1);
    assert_eq!(p.estimator, Estimator::GdcPp { normalize_by_z: false });
    assert_eq!((p.batch_size, p.minibatch_size, p.accumulation_steps), (512, 32, 16));
    assert_eq!((p.total_samples, p.steps), (6_400_000, 12_500));
    assert_eq!(p.max_grad_norm, None);
    assert_eq!(p.optimizer.algorithm, OptimizerKind::Adam);
    assert_eq!(p.optimizer.lr, 1.41e-5);
    assert_eq!(p.schedule.warmup_steps, 100);
    assert_eq!(p.schedule.factor(0), 0.0, "transformers' warm-up starts at 0");
    assert_eq!(p.schedule.factor(1), 0.01);
    assert_eq!(p.schedule.factor(100), 1.0);
    assert_eq!(p.schedule.factor(12_499), 1.0);
    assert_eq!(p.sampling.new_tokens, 40);
    assert_eq!((p.sampling.top_k, p.sampling.top_p, p.sampling.temperature), (None, 1.0, 1.0));
    assert!(!p.sampling.stop_at_eos && p.sampling.prompt.is_none());
    let q = p.proposal.unwrap();
    assert_eq!((q.criterion, q.interval, q.samples), (ProposalCriterion::Kl, 10, 5120));
    assert_eq!(p.lambda_fit, None, "no moment constraint, no λ fit");
    assert_eq!((p.eval.interval, p.eval.samples, p.eval.top_p), (10, 2048, 0.9));
    assert_eq!(p.eval.self_bleu_samples, 500);
    assert_eq!(p.checkpoint_interval, 10);
    assert_eq!(p.constraint_names, ["amazing"]);
    // The plan prints.
    let shown = p.to_string();
    assert!(shown.contains("6400000 samples = 12500 steps of 512 (16 × 32"), "{shown}");
    // A total that is not a whole number of steps is rounded up, and the plan says so.
    let text = with(
        "[training]\ntotal_samples = 50\nbatch_size = 32\nminibatch_size = 32\n[schedule]\nwarmup_steps = 1\n",
    );
    let shown = plan(&text).unwrap().to_string();
    let rounded = "64 samples (total_samples 50 rounded up to whole steps) = 2 steps of 32";
    assert!(shown.contains(rounded), "{shown}");
}

#[test]
fn schedules_decay_to_zero_at_the_end() {
    use tilt_trainer::config::ScheduleKind;
    use tilt_trainer::plan::Schedule;
    let s = |kind| Schedule { kind, warmup_steps: 10, total_steps: 110 };
    assert_eq!(s(ScheduleKind::Linear).factor(5), 0.5);
    assert_eq!(s(ScheduleKind::Linear).factor(10), 1.0);
    assert_eq!(s(ScheduleKind::Linear).factor(60), 0.5);
    assert_eq!(s(ScheduleKind::Linear).factor(110), 0.0);
    assert!((s(ScheduleKind::Cosine).factor(60) - 0.5).abs() < 1e-15);
    assert!(s(ScheduleKind::Cosine).factor(110).abs() < 1e-15);
    assert_eq!(s(ScheduleKind::Constant).factor(109), 1.0);
}

#[test]
fn lambda_is_fitted_only_for_distributional_targets() {
    let moment = "[[constraints]]\nname = \"female\"\nmoment = 0.5\nfeature = { kind = \"gender\", class = \"female\" }\n";
    let p = plan(&with(&format!("{moment}[lambda_fit]\nsamples = 2048\n"))).unwrap();
    assert_eq!(p.lambda_fit.unwrap().samples, 2048);
    let one = moment.replace("0.5", "1");
    assert_eq!(plan(&with(&one)).unwrap().lambda_fit, None, "moment 1 is pointwise");
    // REINFORCE needs a pointwise constraint for its reward.
    let text = format!(
        "output_dir = \"o\"\n[model]\nbase = \"b\"\n{moment}[estimator]\nkind = \"reinforce\"\n"
    );
    let e = plan(&text).unwrap_err();
    assert!(
        e.contains("constraints: reward.source = \"constraints\" needs at least one pointwise"),
        "{e}"
    );
}

#[test]
fn critic_options_need_the_critic_and_the_per_token_penalty() {
    let text = with("[estimator]\nkind = \"kl_control\"\ngae_lambda = 0.95\n");
    let e = error(&text, "estimator.gae_lambda", line_of(&text, "gae_lambda"));
    assert!(e.contains("without critic = true"), "{e}");
    let text =
        with("[estimator]\nkind = \"kl_control\"\ncritic = true\nkl_penalty = \"sequence\"\n");
    let e = error(&text, "estimator.critic", line_of(&text, "critic"));
    assert!(e.contains("per_token"), "{e}");
    let text = with("[estimator]\nkind = \"kl_control\"\nppo = false\ncritic = true\n");
    error(&text, "estimator.critic", line_of(&text, "critic"));
    let text = with("[estimator]\nkind = \"kl_control\"\ncritic = true\ngae_lambda = 1.5\n");
    error(&text, "estimator.gae_lambda", line_of(&text, "gae_lambda"));
    let text = with("[estimator]\nkind = \"kl_control\"\ncritic = true\nvalue_clip = 0\n");
    error(&text, "estimator.value_clip", line_of(&text, "value_clip"));
    let text = with("[estimator]\nkind = \"gdc_pp\"\ncritic = true\n");
    error(&text, "estimator.critic", line_of(&text, "critic"));
    // The defaults are gdc's and trl's.
    let text = with("[estimator]\nkind = \"kl_control\"\ncritic = true\n");
    let p = plan(&text).unwrap();
    assert_eq!(p.estimator.critic(), Some(tilt_estimators::Critic::default()));
}

#[test]
fn full_example_config_parses() {
    let text = include_str!("fixtures/full.toml");
    let p = plan(text).unwrap();
    assert_eq!(p.seed, 7);
    assert!(!p.estimator.is_off_policy());
    match p.estimator {
        Estimator::KlControl {
            beta: Beta::Adaptive { init, target, horizon },
            ppo: Some(ppo),
            ..
        } => {
            assert_eq!((init, target, horizon), (0.1, 5.0, 5000));
            assert_eq!((ppo.clip, ppo.epochs), (0.3, 2));
            let critic =
                tilt_estimators::Critic { gae_lambda: 0.9, value_coef: 0.2, value_clip: Some(0.5) };
            assert_eq!(ppo.critic, Some(critic));
        }
        other => panic!("unexpected estimator {other:?}"),
    }
    assert_eq!(p.optimizer.algorithm, OptimizerKind::Adamw);
    assert_eq!(p.optimizer.weight_decay, 0.05);
    assert_eq!((p.batch_size, p.minibatch_size, p.steps), (256, 64, 40));
    assert_eq!(p.sampling.prompt.as_deref(), Some("My name is"));
    assert_eq!(p.eval.grad_variance_interval, Some(25));
    // λ is fitted for reward maximisation too: its π is evaluated against p.
    assert_eq!(p.lambda_fit.map(|f| f.samples), Some(2048), "RM is evaluated against p");
    assert_eq!(p.constraint_names, ["female", "science"]);
    assert_eq!(p.policy_init.as_deref(), Some(Path::new("/abs/pi")));
}

#[test]
fn every_estimator_kind_parses_with_its_options() {
    for (kind, opts) in [
        ("reinforce", "baseline = \"leave_one_out\""),
        (
            "kl_control",
            "beta = 0.05\nbeta_control = \"fixed\"\nkl_penalty = \"sequence\"\nppo = false",
        ),
        ("dpg", "baseline = \"z\"\nnormalize_by_z = true"),
        ("gdc", "normalize_by_z = true"),
        ("gdc_pp", ""),
        ("fdpg", "divergence = \"js\"\nbaseline_window = 64\non_policy = true"),
    ] {
        let p = plan(&with(&format!("[estimator]\nkind = \"{kind}\"\n{opts}\n")))
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(p.proposal.is_some(), matches!(kind, "gdc" | "gdc_pp"), "{kind}");
    }
}

#[test]
fn unknown_field_names_it() {
    let text = with("[training]\nbatch_size = 64\nminibatch = 32\n");
    let e = error(&text, "training.minibatch", line_of(&text, "minibatch ="));
    assert!(e.contains("unknown field `minibatch`"), "{e}");
    let text = format!("colour = \"blue\"\n{MINIMAL}");
    error(&text, "colour", 1);
}

#[test]
fn wrong_type_names_the_field() {
    let text = with("[training]\nbatch_size = \"512\"\n");
    let e = error(&text, "training.batch_size", line_of(&text, "batch_size ="));
    assert!(e.contains("invalid type"), "{e}");
    let text = with("[optimizer]\nbetas = 0.9\n");
    error(&text, "optimizer.betas", line_of(&text, "betas"));
}

#[test]
fn unknown_variant_names_the_field() {
    let text = with("[estimator]\nkind = \"ppo\"\n");
    let e = error(&text, "estimator.kind", line_of(&text, "kind = \"ppo\""));
    assert!(e.contains("unknown variant `ppo`") && e.contains("gdc_pp"), "{e}");
    let text = with("[schedule]\nkind = \"step\"\n");
    error(&text, "schedule.kind", line_of(&text, "\"step\""));
    let text = MINIMAL.replace("output_dir", "backend = \"metal\"\noutput_dir");
    error(&text, "backend", line_of(&text, "metal"));
    let text = MINIMAL.replace("output_dir", "device = \"tpu:0\"\noutput_dir");
    let e = error(&text, "device", line_of(&text, "tpu"));
    assert!(e.contains("invalid device `tpu:0`"), "{e}");
}

#[test]
fn batch_not_multiple_of_minibatch() {
    let text = with("[training]\nbatch_size = 512\nminibatch_size = 100\n");
    let e = error(&text, "training.minibatch_size", line_of(&text, "minibatch_size"));
    assert!(e.contains("multiple"), "{e}");
    // Only the batch is set: it is the one blamed.
    let text = with("[training]\nbatch_size = 500\n");
    error(&text, "training.batch_size", line_of(&text, "batch_size"));
}

#[test]
fn non_positive_learning_rate() {
    for lr in ["0.0", "-1e-5", "nan", "inf"] {
        let text = with(&format!("[optimizer]\nlr = {lr}\n"));
        error(&text, "optimizer.lr", line_of(&text, "lr ="));
    }
}

#[test]
fn top_p_outside_unit_interval() {
    for (section, v) in [("sampling", "0.0"), ("sampling", "1.5"), ("eval", "-0.1")] {
        let text = with(&format!("[{section}]\ntop_p = {v}\n"));
        error(&text, &format!("{section}.top_p"), line_of(&text, "top_p"));
    }
    let text = with("[sampling]\ntop_k = 0\n");
    error(&text, "sampling.top_k", line_of(&text, "top_k"));
}

#[test]
fn device_draws_parse() {
    let p = plan(&with("[sampling]\ndraw = \"device\"\ntemperature = 0.8\n")).unwrap();
    assert_eq!(p.sampling.draw, SamplingDraw::Device);
    assert_eq!(plan(MINIMAL).unwrap().sampling.draw, SamplingDraw::Auto);
    let text = with("[sampling]\ndraw = \"gpu\"\n");
    error(&text, "sampling.draw", line_of(&text, "draw"));
}

#[test]
fn training_samples_are_not_truncated_nor_tempered_on_policy() {
    // Truncation is an error for every estimator: q = 0 where p may be positive.
    for (kind, extra) in [("gdc_pp", "top_k = 40"), ("gdc_pp", "top_p = 0.9"), ("dpg", "top_k = 5")]
    {
        let text = with(&format!("[estimator]\nkind = \"{kind}\"\n[sampling]\n{extra}\n"));
        let field = extra.split(' ').next().unwrap();
        let e = error(&text, &format!("sampling.{field}"), line_of(&text, field));
        assert!(e.contains("truncates the training distribution"), "{e}");
    }
    // A temperature: fine off-policy (P/q corrects for it), an error on-policy.
    for kind in ["gdc", "gdc_pp"] {
        plan(&with(&format!("[estimator]\nkind = \"{kind}\"\n[sampling]\ntemperature = 0.8\n")))
            .unwrap();
    }
    let text =
        with("[estimator]\nkind = \"fdpg\"\non_policy = false\n[sampling]\ntemperature = 0.8\n");
    plan(&text).unwrap();
    for estimator in ["kind = \"dpg\"", "kind = \"fdpg\"\non_policy = true", "kind = \"reinforce\""]
    {
        let text = with(&format!("[estimator]\n{estimator}\n[sampling]\ntemperature = 0.8\n"));
        let e = error(&text, "sampling.temperature", line_of(&text, "temperature"));
        assert!(e.contains("on-policy"), "{e}");
    }
}

#[test]
fn f_dpg_rejects_what_it_cannot_use() {
    // Reverse KL is infinite at the first sample that breaks a pointwise constraint.
    let text = with("[estimator]\nkind = \"fdpg\"\ndivergence = \"rkl\"\n");
    let e = error(&text, "estimator.divergence", line_of(&text, "divergence"));
    assert!(e.contains("pointwise"), "{e}");
    // f-DPG always divides by Z.
    let text = with("[estimator]\nkind = \"fdpg\"\nnormalize_by_z = true\n");
    let e = error(&text, "estimator.normalize_by_z", line_of(&text, "normalize_by_z"));
    assert!(e.contains("always divides by Z"), "{e}");
}

#[test]
fn negative_and_zero_sizes() {
    let text = with("[training]\nbatch_size = -512\n");
    error(&text, "training.batch_size", line_of(&text, "-512"));
    let text = with("[eval]\nsamples = -1\n");
    error(&text, "eval.samples", line_of(&text, "samples = -1"));
    let text = with("[lambda_fit]\nsamples = 0\n");
    error(&text, "lambda_fit.samples", line_of(&text, "samples = 0"));
    let text = with("[sampling]\nnew_tokens = 0\n");
    error(&text, "sampling.new_tokens", line_of(&text, "new_tokens"));
}

#[test]
fn missing_required_paths() {
    let text = MINIMAL.replace("base = \"models/gpt2\"", "");
    let e = error(&text, "model.base", line_of(&text, "[model]"));
    assert!(e.contains("missing field `base`"), "{e}");
    let text = MINIMAL.replace("output_dir = \"runs/x\"", "");
    let e = plan(&text).unwrap_err();
    assert!(e.contains("output_dir") && e.contains("missing field"), "{e}");
    let text = MINIMAL.replace("models/gpt2", "");
    error(&text, "model.base", line_of(&text, "base ="));
}

#[test]
fn options_of_another_estimator_are_rejected() {
    let text = with("[estimator]\nkind = \"gdc_pp\"\nbeta = 0.1\n");
    let e = error(&text, "estimator.beta", line_of(&text, "beta ="));
    assert!(e.contains("not used by estimator.kind = \"gdc_pp\""), "{e}");
    let text = with("[estimator]\nkind = \"reinforce\"\nbaseline = \"z\"\n");
    error(&text, "estimator.baseline", line_of(&text, "baseline"));
    let text = with("[estimator]\nkind = \"dpg\"\n[proposal]\ninterval = 5\n");
    error(&text, "proposal", line_of(&text, "[proposal]"));
    let text = with("[optimizer]\nweight_decay = 0.1\n");
    error(&text, "optimizer.weight_decay", line_of(&text, "weight_decay"));
    let text = with("[reward]\nscale = 2.0\n");
    error(&text, "reward", line_of(&text, "[reward]"));
}

#[test]
fn device_must_suit_backend_and_constraints_need_names() {
    let text = MINIMAL.replace("output_dir", "device = \"cuda:0\"\noutput_dir");
    let e = error(&text, "device", line_of(&text, "cuda:0"));
    assert!(e.contains("backend `flex` has no device `cuda:0`"), "{e}");
    let text = with("[[constraints]]\nname = \"amazing\"\nmoment = 0.5\n");
    let line = text
        .lines()
        .collect::<Vec<_>>()
        .iter()
        .rposition(|l| l.contains("name = \"amazing\""))
        .unwrap()
        + 1;
    error(&text, "constraints[1].name", line);
    let text = MINIMAL.replace("[[constraints]]\nname = \"amazing\"\npointwise = true\nfeature = { kind = \"word\", word = \"amazing\" }\n", "");
    let e = plan(&text).unwrap_err();
    assert!(e.contains("constraints: estimator `gdc_pp` needs at least one"), "{e}");
}

#[test]
fn all_issues_are_reported_together() {
    let text = with("[optimizer]\nlr = -1.0\neps = 0.0\n[sampling]\ntemperature = 0.0\n");
    let e = plan(&text).unwrap_err();
    assert_eq!(e.lines().filter(|l| l.starts_with("configs/run.toml:")).count(), 3, "{e}");
}

#[test]
fn syntax_error_has_a_location() {
    let e = plan("output_dir = \"x\"\n[model\nbase = 1\n").unwrap_err();
    assert!(e.starts_with("configs/run.toml:2:"), "{e}");
}

#[test]
fn the_documented_example_is_valid_and_all_defaults() {
    let doc = include_str!("../src/config/mod.rs");
    let example: String = doc
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .skip_while(|l| *l != "```toml")
        .skip(1)
        .take_while(|l| *l != "```")
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(example.contains("[estimator]"), "{example}");
    let documented = plan(&example).unwrap();
    let minimal = plan(&format!(
        "output_dir = \"runs/amazing-gdcpp\"\n[model]\nbase = \"models/gpt2\"\n{}",
        &MINIMAL[MINIMAL.find("[[constraints]]").unwrap()..]
    ))
    .unwrap();
    let mut documented = documented;
    documented.config_hash.clone_from(&minimal.config_hash);
    assert_eq!(documented, minimal, "the example spells out the defaults");
}

/// Every shipped config is valid; the CPU ones also find their inputs (the bundled tilt-mini).
#[test]
fn shipped_configs_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut seen = 0;
    for (folder, inputs_here) in [("paper", false), ("cpu", true), ("reproduce", true)] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(folder))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "configs/{folder} is empty");
        for path in files {
            let plan = tilt_trainer::plan::Plan::load(&path, &Default::default())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if inputs_here {
                assert!(plan.missing_inputs().is_empty(), "{}", path.display());
            }
            seen += 1;
        }
    }
    assert!(seen >= 62, "{seen} configs");
}

#[test]
fn constraints_are_built_when_the_config_is_checked() {
    let constraint = |body: &str| {
        format!(
            "output_dir = \"runs/x\"\n[model]\nbase = \"models/gpt2\"\n[[constraints]]\n\
             name = \"c\"\n{body}\n"
        )
    };
    for (body, path, needle) in [
        (
            "moment = 1.5\nfeature = { kind = \"gender\", class = \"female\" }",
            "constraints[0].moment",
            "outside",
        ),
        (
            "pointwise = true\nfeature = { kind = \"wordlist\", words = [] }",
            "constraints[0].feature",
            "empty",
        ),
        ("pointwise = true\nfeature = { kind = \"alien\" }", "constraints[0]", "alien"),
        (
            "moment = \"half\"\nfeature = { kind = \"gender\", class = \"female\" }",
            "constraints[0]",
            "half",
        ),
    ] {
        let e = plan(&constraint(body)).expect_err(body);
        assert!(e.contains(&format!(": {path}")) && e.contains(needle), "{body}: {e}");
    }
    // A missing word-list file is a missing input, as a missing model is (`tilt check`
    // lists them), and the constraints are built once it is there.
    let p = plan(&constraint(
        "pointwise = true\nfeature = { kind = \"wordlist\", file = \"no/such/file.txt\" }",
    ))
    .unwrap();
    let missing: Vec<_> = p.missing_inputs().into_iter().map(|(_, f)| f).collect();
    assert!(missing.contains(&Path::new("configs/no/such/file.txt").to_owned()), "{missing:?}");
    // A reward feature too.
    let text = format!(
        "{}[estimator]\nkind = \"reinforce\"\n[reward]\nsource = \"feature\"\n\
         feature = {{ kind = \"regex\", pattern = \"(\" }}\n",
        constraint("pointwise = true\nfeature = { kind = \"word\", word = \"amazing\" }")
    );
    let e = plan(&text).expect_err("bad regex");
    assert!(e.contains("reward.feature"), "{e}");
}

const CDPG: &str = "[estimator]\nkind = \"cdpg\"\n";

#[test]
fn a_conditional_run_gets_its_contexts_and_defaults() {
    let p = plan(&with(&format!("{CDPG}[contexts]\nfile = \"prompts.txt\"\n"))).unwrap();
    assert_eq!(p.estimator, Estimator::Cdpg { baseline: false, ppo: None });
    let c = p.contexts.as_ref().unwrap();
    assert_eq!(c.file, Path::new("configs/prompts.txt"));
    assert_eq!((c.per_step, c.eval_contexts, c.eval_file.as_ref()), (16, 16, None));
    let missing = p.missing_inputs();
    assert!(missing.iter().any(|(what, f)| *what == "contexts.file" && f.ends_with("prompts.txt")));
    assert!(p.to_string().contains("16 per batch (32 samples each)"), "{p}");
    let p = plan(&with(&format!(
        "{CDPG}baseline = \"z\"\n[contexts]\nfile = \"p.txt\"\nper_step = 8\neval_file = \"e.jsonl\"\n"
    )))
    .unwrap();
    assert_eq!(p.estimator, Estimator::Cdpg { baseline: true, ppo: None });
    assert_eq!(p.contexts.unwrap().eval_file.unwrap(), Path::new("configs/e.jsonl"));
    // Reward maximisation on the same contexts.
    let rm = "[estimator]\nkind = \"reinforce\"\nbaseline = \"leave_one_out\"\n\
              [contexts]\nfile = \"p.txt\"\n";
    assert!(plan(&with(rm)).unwrap().contexts.is_some());
}

#[test]
fn conditional_mistakes_name_their_field() {
    // CDPG without contexts.
    let text = with(CDPG);
    error(&text, "estimator.kind", line_of(&text, "cdpg"));
    // Contexts with an estimator of one Z.
    let text = with("[contexts]\nfile = \"p.txt\"\n");
    let e = error(&text, "contexts", line_of(&text, "[contexts]"));
    assert!(e.contains("use kind = \"cdpg\""), "{e}");
    // A batch that the contexts do not divide, and one sample per context.
    let text = with(&format!("{CDPG}[contexts]\nfile = \"p.txt\"\nper_step = 5\n"));
    error(&text, "contexts.per_step", line_of(&text, "per_step"));
    let text = with(&format!(
        "{CDPG}[training]\nbatch_size = 32\n[contexts]\nfile = \"p.txt\"\nper_step = 32\n"
    ));
    let e = error(&text, "contexts.per_step", line_of(&text, "per_step"));
    assert!(e.contains("at least 2 per context"), "{e}");
    // A prompt, normalize_by_z, too few evaluation samples (the moment constraint is fine).
    let text = with(&format!(
        "[[constraints]]\nname = \"m\"\nmoment = 0.3\nfeature = {{ kind = \"word\", word = \"x\" }}\n\
         {CDPG}normalize_by_z = true\n[sampling]\nprompt = \"Hi\"\n[eval]\nproposal_samples = 10\n\
         [contexts]\nfile = \"p.txt\"\neval_contexts = 8\n"
    ));
    error(&text, "estimator.normalize_by_z", line_of(&text, "normalize_by_z"));
    error(&text, "sampling.prompt", line_of(&text, "prompt ="));
    error(&text, "eval.proposal_samples", line_of(&text, "proposal_samples"));
    let text = with(&format!("{CDPG}baseline = \"mean\"\n[contexts]\nfile = \"p.txt\"\n"));
    error(&text, "estimator.baseline", line_of(&text, "baseline"));
    // The λ fit's contexts: only in a conditional run, and at least 2 samples each.
    let text = with("[lambda_fit]\ncontexts = 4\n");
    error(&text, "lambda_fit.contexts", line_of(&text, "contexts ="));
    let text = with(&format!(
        "{CDPG}[lambda_fit]\nsamples = 10\ncontexts = 6\n[contexts]\nfile = \"p.txt\"\n"
    ));
    let e = error(&text, "lambda_fit.contexts", line_of(&text, "contexts = 6"));
    assert!(e.contains("at least 2 per context"), "{e}");
}

#[test]
fn the_contexts_file_is_read_by_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("three.txt"), "a\nb\n\nc\n").unwrap();
    std::fs::write(dir.path().join("bad.jsonl"), "\"ok\"\n42\n").unwrap();
    let load = |extra: &str| {
        let path = dir.path().join("run.toml");
        std::fs::write(&path, with(&format!("{CDPG}[contexts]\n{extra}"))).unwrap();
        Plan::load(&path, &Default::default()).map_err(|e| e.to_string())
    };
    let e = load("file = \"three.txt\"\nper_step = 4\n").unwrap_err();
    assert!(e.contains("contexts.per_step") && e.contains("has only 3"), "{e}");
    let e = load("file = \"bad.jsonl\"\nper_step = 1\n").unwrap_err();
    assert!(e.contains("contexts.file") && e.contains("bad.jsonl:2"), "{e}");
    let p = load("file = \"three.txt\"\nper_step = 2\neval_file = \"bad.jsonl\"\n").unwrap_err();
    assert!(p.contains("contexts.eval_file"), "{p}");
    assert!(load("file = \"three.txt\"\nper_step = 2\n").is_ok());
}

#[test]
fn ppo_applies_to_the_on_policy_dpg_estimators() {
    use tilt_trainer::plan::Ppo;
    let p = plan(&with("[estimator]\nkind = \"dpg\"\nppo = true\n")).unwrap();
    let ppo = Ppo { clip: 0.2, epochs: 4, critic: None };
    assert_eq!(p.estimator.ppo(), Some(ppo));
    let p = plan(&with("[estimator]\nkind = \"dpg\"\n")).unwrap();
    assert_eq!(p.estimator.ppo(), None, "DPG takes one plain step per batch by default");
    let text = with(&format!(
        "{CDPG}ppo = true\nppo_clip = 0.1\nppo_epochs = 2\n[contexts]\nfile = \"p.txt\"\n"
    ));
    let ppo = Ppo { clip: 0.1, epochs: 2, critic: None };
    assert_eq!(plan(&text).unwrap().estimator.ppo(), Some(ppo));
    // Off-policy estimators have no π_old to clip against; the settings need ppo = true.
    let text = with("[estimator]\nkind = \"gdc_pp\"\nppo = true\n");
    let e = error(&text, "estimator.ppo", line_of(&text, "ppo ="));
    assert!(e.contains("PPO applies to kl_control, dpg and cdpg"), "{e}");
    let text = with("[estimator]\nkind = \"dpg\"\nppo_epochs = 3\n");
    let e = error(&text, "estimator.ppo_epochs", line_of(&text, "ppo_epochs"));
    assert!(e.contains("without ppo = true"), "{e}");
}
