//! GPT-2 tokenizer: known ids and round trips.

use std::path::PathBuf;

use tilt_policies::Gpt2Tokenizer;

fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/gpt2-tokenizer")
}

#[test]
fn known_gpt2_ids() {
    let tok = Gpt2Tokenizer::from_dir(assets()).unwrap();
    assert_eq!(tok.vocab_size(), 50257);
    assert_eq!(tok.eos_token_id(), 50256);
    assert_eq!(tok.encode("Hello").unwrap(), vec![15496]);
    assert_eq!(tok.encode(" world").unwrap(), vec![995]);
    assert_eq!(tok.encode("Hello world").unwrap(), vec![15496, 995]);
    assert_eq!(tok.encode("<|endoftext|>").unwrap(), vec![50256]);
    assert_eq!(tok.encode("Hello<|endoftext|>").unwrap(), vec![15496, 50256]);
}

#[test]
fn round_trips_and_tokenizer_json() {
    let tok = Gpt2Tokenizer::from_dir(assets()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    tok.save(dir.path().join("tokenizer.json")).unwrap();
    let from_json = Gpt2Tokenizer::from_dir(dir.path()).unwrap();
    for text in [
        "Hello world",
        "  leading spaces, émojis 🎉 and \u{1F600}\n\ttabs",
        "The quick brown fox jumps over the lazy dog.<|endoftext|>Next",
        "数字 123 4567",
    ] {
        let ids = tok.encode(text).unwrap();
        assert_eq!(from_json.encode(text).unwrap(), ids);
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
        assert_eq!(from_json.decode(&ids, false).unwrap(), text);
    }
}

#[test]
fn missing_files_are_errors() {
    let err = Gpt2Tokenizer::from_dir("/nonexistent-dir").unwrap_err();
    assert!(err.to_string().contains("vocab.json"), "{err}");
}
