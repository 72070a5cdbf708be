//! End-to-end tests of pretraining on a tiny model (flex backend, seconds).

use std::fs;
use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Int, Tensor, TensorData};
use tilt_policies::Gpt2;
use tilt_policies::checkpoint::{INDEX_FILE, WEIGHTS_FILE, load_hf_dir};

use super::*;
use crate::cli::{BackendArgs, BadInput, PretrainArgs};

type AD = Autodiff<Flex>;

const TEXT: &str = "The whale swam in the grey sea, and the captain watched it from the deck.\n\
                    Elizabeth smiled, for the letter said that Mr. Darcy would come on Tuesday.\n";

/// A tokenizer trained on `TEXT` (300 tokens) and its bytes.
fn tiny_tokenizer(dir: &Path) -> (tokenizers::Tokenizer, Vec<u8>) {
    let corpus = dir.join("tok.txt");
    fs::write(&corpus, TEXT.repeat(10)).unwrap();
    let out = dir.join("tokenizer.json");
    let tok = train_tokenizer(&[corpus], 300, &out).unwrap();
    (tok, fs::read(out).unwrap())
}

fn tiny_config() -> PretrainConfig {
    PretrainConfig {
        model: ModelShape {
            vocab_size: 300,
            n_positions: 32,
            n_embd: 32,
            n_layer: 2,
            n_head: 4,
            dropout: 0.0,
        },
        context_len: 16,
        batch_size: 8,
        max_steps: 40,
        learning_rate: 1e-2,
        warmup_steps: 4,
        log_every: 5,
        eval_every: 20,
        seed: 7,
        ..Default::default()
    }
}

fn logits<B: burn::tensor::backend::Backend>(model: &Gpt2<B>, device: &B::Device) -> Vec<f32> {
    let ids = Tensor::<B, 2, Int>::from_data(
        TensorData::new(vec![0i64, 5, 9, 42, 17, 3, 250, 11], [2, 4]),
        device,
    );
    model.forward(ids, None, None).into_data().convert::<f32>().into_vec().unwrap()
}

#[test]
fn memorises_a_repeated_text_and_saves_a_loadable_model() {
    let dir = tempfile::tempdir().unwrap();
    let (tok, json) = tiny_tokenizer(dir.path());
    let docs: Vec<String> = (0..40).map(|_| TEXT.trim().to_string()).collect();
    let train = TokenStream::from_documents(&tok, &docs).unwrap();
    let valid = TokenStream::from_documents(&tok, &docs[..4]).unwrap();
    let data = PretrainData { train, valid: Some(valid), tokenizer_json: json.clone() };
    let out = dir.path().join("out");
    let device = Default::default();
    let config = tiny_config();
    let (model, report) = pretrain::<AD>(&config, &data, &out, &device).unwrap();

    assert_eq!(report.steps, 40);
    assert_eq!(report.tokens, 40 * 8 * 16);
    assert!(report.first_loss > 4.0, "starts near ln(300) = 5.7: {}", report.first_loss);
    assert!(report.last_loss < 0.5 * report.first_loss, "{report:?}");
    let (valid_loss, ppl) = report.valid.unwrap();
    assert!(valid_loss < 0.5 * report.first_loss, "{report:?}");
    assert!((ppl - valid_loss.exp()).abs() < 1e-9);

    // The log: one training line per log_every steps, one eval line per eval_every steps.
    let log = fs::read_to_string(out.join(LOG_FILE)).unwrap();
    let lines: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.iter().filter(|l| l.get("loss").is_some()).count(), 8);
    assert_eq!(lines.iter().filter(|l| l.get("valid_loss").is_some()).count(), 2);
    assert!(lines.iter().all(|l| l["step"].as_u64().unwrap() <= 40));
    let config_copy: PretrainConfig =
        toml::from_str(&fs::read_to_string(out.join(CONFIG_COPY)).unwrap()).unwrap();
    assert_eq!(config_copy, config);
    assert!(!out.join(CHECKPOINT_DIR).exists(), "the final model supersedes the checkpoint");

    // The saved directory loads back and computes the same logits.
    assert_eq!(fs::read(out.join(TOKENIZER_FILE)).unwrap(), json);
    let loaded: Gpt2<Flex> = load_hf_dir(&out, &device).unwrap();
    assert_eq!(loaded.config(), model.config());
    let (a, b) = (logits(&model, &device), logits(&loaded, &device));
    assert!(a.iter().zip(&b).all(|(x, y)| x == y));

    // A second run never overwrites a model.
    let err = pretrain::<AD>(&config, &data, &out, &device).unwrap_err();
    assert!(format!("{err:#}").contains("already holds a model"), "{err:#}");
}

#[test]
fn the_same_seed_gives_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let (tok, json) = tiny_tokenizer(dir.path());
    let docs: Vec<String> = (0..10).map(|_| TEXT.trim().to_string()).collect();
    let train = TokenStream::from_documents(&tok, &docs).unwrap();
    let data = PretrainData { train, valid: None, tokenizer_json: json };
    let config = PretrainConfig { max_steps: 3, eval_every: 0, ..tiny_config() };
    let device = Default::default();
    let (a, _) = pretrain::<AD>(&config, &data, &dir.path().join("a"), &device).unwrap();
    let (b, _) = pretrain::<AD>(&config, &data, &dir.path().join("b"), &device).unwrap();
    assert_eq!(logits(&a, &device), logits(&b, &device));
}

#[test]
fn sharded_save_round_trips_and_switches_layout() {
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let model: Gpt2<Flex> = tiny_config().model.gpt2_config().init_seeded(&device, 3);
    let out = dir.path().join("m");
    // 20 kB shards: the 300 x 32 embedding (38 kB) gets one of its own.
    let files = save_model(&model, b"{}", &out, 20_000).unwrap();
    assert!(files.len() > 2, "{files:?}");
    assert!(out.join(INDEX_FILE).exists() && !out.join(WEIGHTS_FILE).exists());
    for f in &files {
        assert!(f.starts_with("model-") && out.join(f).exists(), "{f}");
    }
    let loaded: Gpt2<Flex> = load_hf_dir(&out, &device).unwrap();
    assert_eq!(logits(&model, &device), logits(&loaded, &device));
    let index: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join(INDEX_FILE)).unwrap()).unwrap();
    let total: u64 =
        model.named_tensors().iter().map(|(_, s, _)| 4 * s.iter().product::<usize>() as u64).sum();
    assert_eq!(index["metadata"]["total_size"].as_u64(), Some(total));

    // Saving again unsharded removes the index (the loader would otherwise be ambiguous).
    assert_eq!(save_model(&model, b"{}", &out, 0).unwrap(), [WEIGHTS_FILE]);
    assert!(!out.join(INDEX_FILE).exists());
    let loaded: Gpt2<Flex> = load_hf_dir(&out, &device).unwrap();
    assert_eq!(logits(&model, &device), logits(&loaded, &device));
}

fn args(dir: &Path) -> PretrainArgs {
    PretrainArgs {
        config: None,
        train: vec![],
        train_tokens: None,
        valid: vec![],
        valid_tokens: None,
        tokenizer: None,
        output: Some(dir.join("out")),
        max_steps: None,
        shard_mib: None,
        save_tokens: None,
        backend: BackendArgs::default(),
    }
}

#[test]
fn missing_or_empty_data_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("gone.txt");
    let empty = dir.path().join("empty.txt");
    fs::write(&empty, "\n  \n").unwrap();
    for (file, what) in [(&missing, "gone.txt"), (&empty, "empty.txt")] {
        let a = PretrainArgs { train: vec![file.clone()], ..args(dir.path()) };
        let err = command::run(&a).unwrap_err();
        assert!(err.is::<BadInput>(), "{err:#}");
        assert!(format!("{err:#}").contains(what), "{err:#}");
        let a = PretrainArgs { train_tokens: Some(file.clone()), ..args(dir.path()) };
        let err = command::run(&a).unwrap_err();
        assert!(format!("{err:#}").contains(what), "{err:#}");
    }
    let err = command::run(&args(dir.path())).unwrap_err();
    assert!(err.to_string().contains("--train"), "{err}");
}

#[test]
fn token_caches_train_like_text() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _) = tiny_tokenizer(dir.path());
    let text = dir.path().join("train.txt");
    fs::write(&text, format!("{TEXT}\n").repeat(20)).unwrap();
    let tokenizer = Some(dir.path().join("tokenizer.json"));
    let cache = dir.path().join("cache");
    let a = PretrainArgs {
        train: vec![text.clone()],
        valid: vec![text.clone()],
        tokenizer: tokenizer.clone(),
        save_tokens: Some(cache.clone()),
        output: None,
        ..args(dir.path())
    };
    command::run(&a).unwrap();
    let config = dir.path().join("tiny.toml");
    let mut c = tiny_config();
    c.max_steps = 2;
    fs::write(&config, toml::to_string(&c).unwrap()).unwrap();
    let run = |a: PretrainArgs, out: &str| {
        let out = dir.path().join(out);
        command::run(&PretrainArgs { output: Some(out.clone()), ..a }).unwrap();
        fs::read_to_string(out.join(LOG_FILE)).unwrap()
    };
    let base = PretrainArgs { config: Some(config), tokenizer, ..args(dir.path()) };
    let from_text =
        run(PretrainArgs { train: vec![text.clone()], valid: vec![text], ..base.clone() }, "t");
    let from_cache = run(
        PretrainArgs {
            train_tokens: Some(cache.join(command::TRAIN_TOKENS)),
            valid_tokens: Some(cache.join(command::VALID_TOKENS)),
            ..base
        },
        "c",
    );
    let losses = |log: &str| -> Vec<f64> {
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["loss"].as_f64())
            .collect()
    };
    assert_eq!(losses(&from_text), losses(&from_cache));
    assert!(!losses(&from_text).is_empty());

    // A cache with ids outside the vocabulary (another tokenizer) is refused.
    let c2 = PretrainConfig {
        model: ModelShape { vocab_size: 8192, ..Default::default() },
        ..Default::default()
    };
    let big = TokenStream::from_documents(&tilt_mini_tokenizer().unwrap(), &[TEXT.into()]).unwrap();
    let err = train::check_stream(
        "x",
        &big,
        &PretrainConfig { model: ModelShape { vocab_size: 10, ..c2.model }, context_len: 4, ..c2 },
    )
    .unwrap_err();
    assert!(err.to_string().contains("outside the model's vocabulary"), "{err}");
}
