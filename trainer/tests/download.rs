//! `tilt download` (cargo feature `hub`) against a local server that answers as the Hugging
//! Face hub does, found through `HF_ENDPOINT` as Python's `huggingface_hub` finds a mirror.
//! Needs the `hub` feature (on by default).

#[path = "../../policies/tests/mock_hub.rs"]
mod mock_hub;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mock_hub::{MockHub, Repos};

const FILES: [&str; 4] = ["config.json", "model.safetensors", "vocab.json", "merges.txt"];

fn source(file: &str) -> PathBuf {
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    match file {
        "vocab.json" | "merges.txt" => policies.join("assets/gpt2-tokenizer").join(file),
        _ => policies.join("tests/fixtures/tiny-gpt2").join(file),
    }
}

fn hub() -> MockHub {
    let files = FILES.iter().map(|f| (f.to_string(), std::fs::read(source(f)).unwrap())).collect();
    let mut repos = Repos::new();
    repos.insert("tilt-test/tiny-gpt2".into(), BTreeMap::from([("main".into(), files)]));
    MockHub::start(repos)
}

fn download(hub: &MockHub, home: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tilt"))
        .arg("download")
        .args(args)
        .env("HF_ENDPOINT", &hub.endpoint)
        .env("HF_HOME", home)
        .output()
        .expect("tilt runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn downloads_into_the_cache_and_copies_real_files_to_output() {
    let hub = hub();
    let tmp = tempfile::tempdir().unwrap();
    let (home, out) = (tmp.path().join("hf"), tmp.path().join("models/tiny"));
    let (ok, stdout, stderr) =
        download(&hub, &home, &["tilt-test/tiny-gpt2", "--output", out.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(home.join("hub/models--tilt-test--tiny-gpt2").to_str().unwrap()));
    for file in FILES {
        let copied = out.join(file);
        assert!(copied.symlink_metadata().unwrap().is_file(), "{file} is a plain file");
        assert_eq!(std::fs::read(copied).unwrap(), std::fs::read(source(file)).unwrap(), "{file}");
    }
    let log = hub.log.lock().unwrap();
    for file in FILES {
        assert!(log.iter().any(|p| p.ends_with(&format!("/resolve/main/{file}"))), "{log:?}");
    }
}

#[test]
fn a_missing_model_names_the_model_and_the_file() {
    let hub = hub();
    let tmp = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = download(&hub, tmp.path(), &["tilt-test/no-such-model"]);
    assert!(!ok);
    assert!(stderr.contains("tilt-test/no-such-model"), "{stderr}");
    assert!(stderr.contains("config.json"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
