//! Byte-level BPE tokenizer training (GPT-2 style) with the `tokenizers` crate.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    Tokenizer, TokenizerBuilder,
};

/// The end-of-text special token, placed between documents (GPT-2's spelling).
pub const EOS_TOKEN: &str = "<|endoftext|>";

/// The id of [`EOS_TOKEN`] in every tokenizer that [`train_tokenizer`] makes: the trainer adds
/// special tokens before anything else, so it is always 0 (GPT-2 itself puts it last, 50256).
pub const EOS_ID: u32 = 0;

/// The 256 single-byte tokens of the byte-level alphabet come right after [`EOS_ID`], so a
/// vocabulary must be larger than this to learn any merge.
pub const BASE_VOCAB: usize = 1 + 256;

/// Trains a GPT-2-style byte-level BPE tokenizer on text files and writes it to `out` as a
/// `tokenizer.json` (loadable with [`load_tokenizer`], `tokenizers` or Hugging Face's
/// `PreTrainedTokenizerFast`).
///
/// Every line of every file is one training sequence. The pipeline is GPT-2's: no normaliser,
/// the byte-level pre-tokenizer with GPT-2's split regex and no added prefix space, a BPE model
/// whose initial alphabet is all 256 byte characters (so any input encodes, with no unknown
/// token), the byte-level decoder, and the special token [`EOS_TOKEN`] with id [`EOS_ID`].
/// Training is deterministic: the same files and `vocab_size` give a byte-identical file.
///
/// `vocab_size` counts everything: the special token, the 256 bytes and the merges. Returns the
/// trained tokenizer.
pub fn train_tokenizer(files: &[PathBuf], vocab_size: usize, out: &Path) -> Result<Tokenizer> {
    ensure!(!files.is_empty(), "train_tokenizer: no training files given");
    ensure!(
        vocab_size > BASE_VOCAB,
        "train_tokenizer: vocab_size {vocab_size} leaves no room for merges (needs > {BASE_VOCAB})"
    );
    let mut names = Vec::with_capacity(files.len());
    for file in files {
        // `tokenizers` reports a missing file without its name: check here first.
        fs::File::open(file)
            .with_context(|| format!("cannot read training file {}", file.display()))?;
        let name = file
            .to_str()
            .ok_or_else(|| anyhow!("training file name is not UTF-8: {}", file.display()))?;
        names.push(name.to_owned());
    }

    let mut builder = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new();
    builder = builder
        .with_model(BPE::default())
        .with_normalizer(None)
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true).into()))
        // As in GPT-2's tokenizer.json, the post-processor only maps offsets (adds no token) and
        // the decoder maps byte characters back to bytes; `add_prefix_space` is unused by both
        // and set to false everywhere so that the file reads consistently.
        .with_post_processor(Some(ByteLevel::new(false, false, true).into()))
        .with_decoder(Some(ByteLevel::new(false, true, true).into()));
    let mut tokenizer = builder.build().map_err(|e| anyhow!("building the tokenizer: {e}"))?;

    let alphabet: HashSet<char> = ByteLevel::alphabet().into_iter().collect();
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(0)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(EOS_TOKEN, true)])
        .initial_alphabet(alphabet)
        .build();
    tokenizer
        .train_from_files(&mut trainer, names)
        .map_err(|e| anyhow!("training the tokenizer on {files:?}: {e}"))?;

    let tokenizer = Tokenizer::from(tokenizer);
    check_eos(&tokenizer).context("the trained tokenizer")?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    tokenizer
        .save(out, true)
        .map_err(|e| anyhow!("cannot write tokenizer to {}: {e}", out.display()))?;
    Ok(tokenizer)
}

/// The committed tilt-mini tokenizer (`trainer/assets/tilt-mini/tokenizer.json`, 8,192 tokens,
/// trained by [`train_tokenizer`] on the tilt-mini corpus; see `DATA.md` beside it), compiled in.
pub const TILT_MINI_TOKENIZER_JSON: &str = include_str!("../../assets/tilt-mini/tokenizer.json");

/// Vocabulary size of [`TILT_MINI_TOKENIZER_JSON`].
pub const TILT_MINI_VOCAB_SIZE: usize = 8192;

/// Loads the compiled-in tilt-mini tokenizer ([`TILT_MINI_TOKENIZER_JSON`]).
pub fn tilt_mini_tokenizer() -> Result<Tokenizer> {
    let tokenizer: Tokenizer = TILT_MINI_TOKENIZER_JSON
        .parse()
        .map_err(|e| anyhow!("cannot parse the embedded tilt-mini tokenizer: {e}"))?;
    check_eos(&tokenizer).context("the embedded tilt-mini tokenizer")?;
    Ok(tokenizer)
}

/// Loads a `tokenizer.json` and checks that [`EOS_TOKEN`] has id [`EOS_ID`].
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    let tokenizer = Tokenizer::from_file(path)
        .map_err(|e| anyhow!("cannot load tokenizer {}: {e}", path.display()))?;
    check_eos(&tokenizer).with_context(|| format!("tokenizer {}", path.display()))?;
    Ok(tokenizer)
}

fn check_eos(tokenizer: &Tokenizer) -> Result<()> {
    match tokenizer.token_to_id(EOS_TOKEN) {
        Some(EOS_ID) => Ok(()),
        Some(id) => bail!("{EOS_TOKEN} has id {id}, expected {EOS_ID}"),
        None => bail!("{EOS_TOKEN} is not in the vocabulary"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = "\
It is a truth universally acknowledged, that a single man in possession of a good fortune, \
must be in want of a wife.
However little known the feelings or views of such a man may be on his first entering a \
neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he \
is considered the rightful property of some one or other of their daughters.

\"My dear Mr. Bennet,\" said his lady to him one day, \"have you heard that Netherfield Park \
is let at last?\"
Mr. Bennet replied that he had not.
\"But it is,\" returned she; \"for Mrs. Long has just been here, and she told me all about it.\"
Call me Ishmael. Some years ago\u{2014}never mind how long precisely\u{2014}having little or \
no money in my purse, and nothing particular to interest me on shore, I thought I would sail \
about a little and see the watery part of the world.
";

    fn corpus_file(dir: &Path) -> PathBuf {
        let path = dir.join("corpus.txt");
        fs::write(&path, CORPUS.repeat(3)).expect("write corpus");
        path
    }

    #[test]
    fn trains_a_byte_level_bpe_that_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("sub").join("tokenizer.json");
        let trained = train_tokenizer(&[corpus_file(dir.path())], 300, &out).expect("train");
        let tok = load_tokenizer(&out).expect("load");
        assert_eq!(trained.get_vocab_size(true), 300);
        assert_eq!(tok.get_vocab_size(true), 300);
        assert_eq!(tok.token_to_id(EOS_TOKEN), Some(EOS_ID));

        for text in [
            "It is a truth universally acknowledged.",
            "  Leading spaces,\ttabs and\nnew lines\n\n",
            "Unseen: Zürich, naïve café, \u{2014} \u{1F40B} 3.14159 <xml/>",
            "",
        ] {
            let enc = tok.encode(text, false).expect("encode");
            assert!(enc.get_ids().iter().all(|&id| (id as usize) < 300));
            assert_eq!(tok.decode(enc.get_ids(), false).expect("decode"), text);
        }
        // Merges were learned: the training text takes a quarter fewer tokens than bytes, and the
        // first merged token (right after the bytes) joins two bytes.
        let n_tokens = tok.encode(CORPUS, false).expect("encode").get_ids().len();
        assert!(n_tokens * 4 < CORPUS.len() * 3, "{n_tokens} tokens for {} bytes", CORPUS.len());
        let first_merge = tok.id_to_token(BASE_VOCAB as u32).expect("a merged token");
        assert_eq!(first_merge.chars().count(), 2, "{first_merge}");
        // The special token is recognised in text and kept out of decoded text on request.
        let enc = tok.encode(format!("a man{EOS_TOKEN}a wife"), false).expect("encode");
        assert!(enc.get_ids().contains(&EOS_ID));
        assert_eq!(tok.decode(enc.get_ids(), true).expect("decode"), "a mana wife");
        // Any byte is a token.
        for b in ByteLevel::alphabet() {
            assert!(tok.token_to_id(&b.to_string()).is_some(), "byte char {b:?}");
        }
    }

    #[test]
    fn embedded_tilt_mini_tokenizer_loads_and_round_trips() {
        let tok = tilt_mini_tokenizer().expect("embedded tokenizer");
        assert_eq!(tok.get_vocab_size(true), TILT_MINI_VOCAB_SIZE);
        assert_eq!(tok.token_to_id(EOS_TOKEN), Some(EOS_ID));
        let text = "It is a truth universally acknowledged, that a single man in possession \
                    of a good fortune, must be in want of a wife.\nCall me Ishmael.";
        let enc = tok.encode(text, false).expect("encode");
        assert_eq!(tok.decode(enc.get_ids(), false).expect("decode"), text);
        // Common English words are single tokens (with their leading space).
        for word in [" truth", " good", " fortune", " wife", " whale", " Congress", " said"] {
            let enc = tok.encode(word, false).expect("encode");
            assert_eq!(enc.get_ids().len(), 1, "{word:?} -> {:?}", enc.get_tokens());
        }
    }

    #[test]
    fn training_is_deterministic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = corpus_file(dir.path());
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
        train_tokenizer(std::slice::from_ref(&file), 300, &a).expect("train a");
        train_tokenizer(std::slice::from_ref(&file), 300, &b).expect("train b");
        let (a, b) = (fs::read(&a).expect("read a"), fs::read(&b).expect("read b"));
        assert!(!a.is_empty());
        assert!(a == b, "two trainings on the same data wrote different files");
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.txt");
        let err = train_tokenizer(&[missing], 300, &dir.path().join("t.json")).unwrap_err();
        assert!(format!("{err:#}").contains("missing.txt"), "{err:#}");
        let err = train_tokenizer(&[corpus_file(dir.path())], 100, &dir.path().join("t.json"))
            .unwrap_err();
        assert!(format!("{err:#}").contains("vocab_size"), "{err:#}");
        let err = load_tokenizer(&dir.path().join("nope.json")).unwrap_err();
        assert!(format!("{err:#}").contains("nope.json"), "{err:#}");
    }
}
