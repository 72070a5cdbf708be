//! Checkpoint round trip and every way a checkpoint can be broken.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use tilt_trainer::checkpoint::{
    Checkpoint, CheckpointError, CheckpointWriter, LATEST, MANIFEST, ModelShape, RngState,
    TrainingState, prune, resolve, write_atomic,
};

fn state(step: u64) -> TrainingState {
    let mut trackers = BTreeMap::new();
    trackers.insert("z".to_owned(), serde_json::json!({ "n": 40, "mean": 0.0123, "m2": 1e-5 }));
    TrainingState {
        step,
        samples_seen: step * 512,
        lambda: vec![1.25, -0.5],
        trackers,
        rng: vec![RngState::new("sampler", "chacha20", &[7, 0, 255, 1])],
        config_hash: "ab".repeat(32),
        estimator: Some("gdc_pp".into()),
        model: Some(ModelShape {
            n_layer: 2,
            n_embd: 16,
            n_head: 2,
            n_inner: 64,
            vocab_size: 16,
            n_positions: 32,
        }),
        elapsed_s: Some(12.5),
    }
}

fn write(root: &Path, step: u64) -> std::path::PathBuf {
    let mut w = CheckpointWriter::begin(root, step).unwrap();
    w.add_file("policy", "policy.bin", format!("weights at {step}").as_bytes()).unwrap();
    w.add_file_with("optimizer", "optimizer.bin", |out| out.write_all(&[1, 2, 3])).unwrap();
    w.commit(state(step)).unwrap()
}

#[test]
fn round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("checkpoints");
    let dir = write(&root, 10);
    assert_eq!(dir, root.join("step-00000010"));
    assert_eq!(fs::read_to_string(root.join(LATEST)).unwrap(), "step-00000010\n");
    let c = Checkpoint::latest(&root).unwrap().unwrap();
    assert_eq!(c.manifest().state, state(10));
    assert_eq!(c.manifest().rng[0].bytes().unwrap(), [7, 0, 255, 1]);
    assert_eq!(fs::read(c.file("policy").unwrap()).unwrap(), b"weights at 10");
    assert_eq!(c.manifest().files[1].bytes, 3);
    // sha256 of "\x01\x02\x03", as sha256sum prints it.
    assert_eq!(
        c.manifest().files[1].sha256,
        "039058c6f2c0cb492c533b0a4d14ef77cc0f78abccced5287d84a1a2011cfb81"
    );
    // --resume accepts the checkpoint, the root and the output directory.
    for p in [dir.as_path(), root.as_path(), tmp.path()] {
        assert_eq!(resolve(p).unwrap().manifest().step, 10);
    }
    write(&root, 20);
    assert_eq!(Checkpoint::latest(&root).unwrap().unwrap().manifest().step, 20);
    // Rewriting a step (a resumed run passing it again) replaces it.
    write(&root, 20);
    assert_eq!(Checkpoint::latest(&root).unwrap().unwrap().manifest().step, 20);
}

#[test]
fn no_checkpoint_yet() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(Checkpoint::latest(tmp.path()).unwrap().is_none());
    let e = resolve(tmp.path()).unwrap_err();
    assert!(matches!(e, CheckpointError::NotFound { .. }), "{e}");
}

#[test]
fn corrupt_and_truncated_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write(tmp.path(), 10);
    let manifest = dir.join(MANIFEST);
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, &text[..text.len() / 2]).unwrap();
    let e = Checkpoint::read(&dir).unwrap_err();
    assert!(matches!(e, CheckpointError::CorruptManifest { .. }), "{e}");
    assert!(e.to_string().contains("manifest.json: corrupt checkpoint manifest"), "{e}");

    fs::write(&manifest, text.replace("\"samples_seen\"", "\"samples\"")).unwrap();
    let e = Checkpoint::read(&dir).unwrap_err();
    assert!(matches!(e, CheckpointError::CorruptManifest { .. }), "{e}");

    fs::write(&manifest, text.replace("\"version\": 1", "\"version\": 99")).unwrap();
    let e = Checkpoint::read(&dir).unwrap_err();
    assert!(
        e.to_string().contains("unsupported checkpoint format tilt-checkpoint version 99"),
        "{e}"
    );
}

#[test]
fn missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write(tmp.path(), 10);
    fs::remove_file(dir.join("optimizer.bin")).unwrap();
    let e = Checkpoint::latest(tmp.path()).unwrap_err();
    assert!(matches!(e, CheckpointError::MissingFile { .. }), "{e}");
    assert!(e.to_string().contains("optimizer.bin: missing checkpoint file"), "{e}");
}

#[test]
fn checksum_and_size_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write(tmp.path(), 10);
    // Same size, different content.
    fs::write(dir.join("policy.bin"), b"weights at 99").unwrap();
    let e = Checkpoint::read(&dir).unwrap_err();
    assert!(matches!(e, CheckpointError::ChecksumMismatch { .. }), "{e}");
    assert!(e.to_string().contains("policy.bin: SHA-256"), "{e}");
    // Truncated.
    fs::write(dir.join("policy.bin"), b"weights").unwrap();
    let e = Checkpoint::read(&dir).unwrap_err();
    assert!(matches!(e, CheckpointError::SizeMismatch { expected: 13, found: 7, .. }), "{e}");
}

#[test]
fn bad_latest_pointer() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), 10);
    fs::write(tmp.path().join(LATEST), "../../etc\n").unwrap();
    let e = Checkpoint::latest(tmp.path()).unwrap_err();
    assert!(matches!(e, CheckpointError::BadPointer { .. }), "{e}");
}

#[test]
fn interrupted_write_leaves_the_previous_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, 10);
    {
        // A crash after some payload was written but before the commit.
        let mut w = CheckpointWriter::begin(root, 20).unwrap();
        w.add_file("policy", "policy.bin", b"half-written").unwrap();
        drop(w);
    }
    assert!(root.join("step-00000020.tmp").exists());
    let c = Checkpoint::latest(root).unwrap().unwrap();
    assert_eq!(c.manifest().step, 10);
    assert_eq!(fs::read(c.file("policy").unwrap()).unwrap(), b"weights at 10");
    // The next write of that step starts clean, and pruning removes leftovers.
    write(root, 20);
    assert_eq!(Checkpoint::latest(root).unwrap().unwrap().manifest().step, 20);
    fs::create_dir(root.join("step-00000030.tmp")).unwrap();
    write(root, 25);
    let removed = prune(root, 2).unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(!root.join("step-00000010").exists());
    assert!(root.join("step-00000020").exists() && root.join("step-00000025").exists());
}

#[test]
fn non_finite_lambda_and_bad_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let w = CheckpointWriter::begin(tmp.path(), 1).unwrap();
    let mut s = state(1);
    s.lambda[0] = f64::NAN;
    let e = w.commit(s).unwrap_err();
    assert!(e.to_string().contains("λ contains NaN"), "{e}");
    assert!(Checkpoint::latest(tmp.path()).unwrap().is_none());
    let mut w = CheckpointWriter::begin(tmp.path(), 1).unwrap();
    assert!(w.add_file("policy", "../x", b"").is_err());
    assert!(w.add_file("policy", MANIFEST, b"").is_err());
    w.add_file("policy", "p.bin", b"").unwrap();
    assert!(w.add_file("policy", "q.bin", b"").is_err(), "duplicate role");
}

#[test]
fn atomic_write_replaces_whole_files() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("f.txt");
    write_atomic(&p, b"first").unwrap();
    write_atomic(&p, b"second").unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"second");
    let leftovers: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temp file left behind");
}

/// A crash while a step directory is rewritten leaves `latest` naming a `step-N` that was set
/// aside as `step-N.replaced.tmp`: reading falls back to it and pruning keeps it.
#[test]
fn latest_falls_back_to_a_checkpoint_set_aside_during_a_rewrite() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, 5);
    write(root, 10);
    fs::rename(root.join("step-00000010"), root.join("step-00000010.replaced.tmp")).unwrap();
    assert_eq!(resolve(root).unwrap().manifest().step, 10);
    prune(root, 1).unwrap();
    assert!(root.join("step-00000010.replaced.tmp").is_dir(), "pruning keeps it");
    assert_eq!(resolve(root).unwrap().manifest().step, 10);
    // The rewrite done again completes the replacement.
    write(root, 10);
    prune(root, 1).unwrap();
    assert!(!root.join("step-00000010.replaced.tmp").exists());
    assert_eq!(resolve(root).unwrap().dir(), root.join("step-00000010"));
}

/// Manifests of older builds (without estimator, model and elapsed_s) still read.
#[test]
fn manifests_without_the_newer_fields_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write(tmp.path(), 10);
    let path = dir.join(MANIFEST);
    let mut json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    for field in ["estimator", "model", "elapsed_s"] {
        json.as_object_mut().unwrap().remove(field).expect("written");
    }
    fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let m = Checkpoint::read(&dir).unwrap().manifest().clone();
    assert_eq!((m.estimator.as_deref(), m.model, m.elapsed_s), (None, None, None));
}
