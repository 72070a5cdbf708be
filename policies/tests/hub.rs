//! `hub::download_with` against a local server that answers as the Hugging Face hub does
//! (`mock_hub.rs`). Nothing leaves the machine. Built only with the `hub` feature
//! (`cargo test --workspace` turns it on through tilt-trainer).

mod mock_hub;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use tilt_policies::hub::{HubOptions, download_with};
use tilt_policies::{Error, Gpt2Tokenizer, checkpoint};

use mock_hub::{MockHub, Repos};

type B = Flex;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/gpt2-tokenizer")
}

fn options(hub: &MockHub, cache: &Path) -> HubOptions {
    HubOptions {
        endpoint: Some(hub.endpoint.clone()),
        cache_dir: Some(cache.to_owned()),
        progress: false,
    }
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The tiny fixture with the tokenizer as `vocab.json` + `merges.txt`.
fn single_file_repo() -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([
        ("config.json".into(), read(fixtures().join("tiny-gpt2/config.json"))),
        ("model.safetensors".into(), read(fixtures().join("tiny-gpt2/model.safetensors"))),
        ("vocab.json".into(), read(assets().join("vocab.json"))),
        ("merges.txt".into(), read(assets().join("merges.txt"))),
    ])
}

/// The tiny fixture in two shards with an index, and a `tokenizer.json`.
fn sharded_repo() -> BTreeMap<String, Vec<u8>> {
    let bytes = read(fixtures().join("tiny-gpt2/model.safetensors"));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut files = BTreeMap::new();
    let mut weight_map = serde_json::Map::new();
    let tensors: Vec<_> = st.tensors();
    for k in 0..2 {
        let name = format!("model-0000{}-of-00002.safetensors", k + 1);
        let part: Vec<_> = tensors.iter().skip(k).step_by(2).cloned().collect();
        for (n, _) in &part {
            weight_map.insert(n.clone(), name.clone().into());
        }
        files.insert(name, safetensors::serialize(part, None).unwrap());
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    files.insert("model.safetensors.index.json".into(), index.to_string().into_bytes());
    files.insert("config.json".into(), read(fixtures().join("tiny-gpt2/config.json")));
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = Gpt2Tokenizer::from_dir(assets()).unwrap();
    tokenizer.save(dir.path().join("tokenizer.json")).unwrap();
    files.insert("tokenizer.json".into(), read(dir.path().join("tokenizer.json")));
    files
}

fn repos() -> Repos {
    let mut repos = Repos::new();
    repos
        .entry("tilt-test/tiny-gpt2".into())
        .or_default()
        .insert("main".into(), single_file_repo());
    repos.entry("tilt-test/sharded".into()).or_default().insert("v1".into(), sharded_repo());
    let mut no_weights = single_file_repo();
    no_weights.remove("model.safetensors");
    no_weights.insert("pytorch_model.bin".into(), vec![0; 8]);
    repos.entry("tilt-test/pickle-only".into()).or_default().insert("main".into(), no_weights);
    repos
}

fn assert_same_model(dir: &Path) {
    let device = Default::default();
    let reference = checkpoint::load_hf_dir::<B>(fixtures().join("tiny-gpt2"), &device).unwrap();
    let loaded = checkpoint::load_hf_dir::<B>(dir, &device).unwrap();
    assert_eq!(reference.named_tensors(), loaded.named_tensors());
    let tokenizer = Gpt2Tokenizer::from_dir(dir).unwrap();
    assert_eq!(tokenizer.encode("Hello world").unwrap(), vec![15496, 995]);
}

#[test]
fn downloads_a_model_then_finds_it_in_the_cache() {
    let hub = MockHub::start(repos());
    let cache = tempfile::tempdir().unwrap();
    let dir = download_with("tilt-test/tiny-gpt2", None, &options(&hub, cache.path())).unwrap();
    assert!(dir.starts_with(cache.path().join("hub/models--tilt-test--tiny-gpt2/snapshots")));
    assert_same_model(&dir);
    let log = hub.log.lock().unwrap().clone();
    assert!(log.iter().any(|p| p.ends_with("/resolve/main/vocab.json")), "{log:?}");
    // A second call is served by the cache alone.
    let before = hub.log.lock().unwrap().len();
    let again = download_with("tilt-test/tiny-gpt2", None, &options(&hub, cache.path())).unwrap();
    assert_eq!(again, dir);
    // Only the optional files the snapshot lacks are asked for again (index, tokenizer.json).
    let asked: Vec<_> = hub.log.lock().unwrap()[before..].to_vec();
    assert!(
        asked.iter().all(|p| p.ends_with(".index.json") || p.ends_with("/tokenizer.json")),
        "{asked:?}"
    );
}

#[test]
fn downloads_sharded_weights_at_a_revision() {
    let hub = MockHub::start(repos());
    let cache = tempfile::tempdir().unwrap();
    let dir = download_with("tilt-test/sharded", Some("v1"), &options(&hub, cache.path())).unwrap();
    assert!(dir.join("model-00001-of-00002.safetensors").is_file());
    assert!(dir.join("model-00002-of-00002.safetensors").is_file());
    assert!(!dir.join("vocab.json").exists(), "tokenizer.json suffices");
    assert_same_model(&dir);
}

#[test]
fn errors_name_the_model_and_the_file() {
    let hub = MockHub::start(repos());
    let cache = tempfile::tempdir().unwrap();
    let options = options(&hub, cache.path());
    let err = download_with("tilt-test/no-such-model", None, &options).unwrap_err();
    assert!(matches!(&err, Error::Hub { file, .. } if file == "config.json"), "{err}");
    assert!(err.to_string().contains("tilt-test/no-such-model"), "{err}");
    let err = download_with("tilt-test/tiny-gpt2", Some("v9"), &options).unwrap_err();
    assert!(matches!(&err, Error::Hub { file, .. } if file == "config.json"), "{err}");
    let err = download_with("tilt-test/pickle-only", None, &options).unwrap_err();
    assert!(matches!(&err, Error::Hub { file, .. } if file == "model.safetensors"), "{err}");
    assert!(err.to_string().contains("safetensors weights only"), "{err}");
}

#[test]
fn an_unreachable_hub_is_an_error_not_a_hang() {
    // A port that was free a moment ago: connections are refused.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cache = tempfile::tempdir().unwrap();
    let options = HubOptions {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        cache_dir: Some(cache.path().to_owned()),
        progress: false,
    };
    let err = download_with("gpt2", None, &options).unwrap_err();
    assert!(matches!(&err, Error::Hub { file, .. } if file == "config.json"), "{err}");
}
