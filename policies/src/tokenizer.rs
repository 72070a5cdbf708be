//! [`Gpt2Tokenizer`]: GPT-2's byte-level BPE through the `tokenizers` crate.

use std::path::Path;

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Error, Result};

/// GPT-2's end-of-text token, also its only special token.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// GPT-2's tokenizer: byte-level BPE, no prefix space, `<|endoftext|>` as special token.
#[derive(Debug, Clone)]
pub struct Gpt2Tokenizer {
    inner: Tokenizer,
    eos_token_id: u32,
}

fn tok_err(path: Option<&Path>, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer { path: path.map(Path::to_path_buf), reason: e.to_string() }
}

impl Gpt2Tokenizer {
    fn wrap(inner: Tokenizer, path: Option<&Path>) -> Result<Self> {
        let eos_token_id = inner
            .token_to_id(END_OF_TEXT)
            .ok_or_else(|| tok_err(path, format!("vocabulary has no {END_OF_TEXT}")))?;
        Ok(Self { inner, eos_token_id })
    }

    /// Loads a `tokenizer.json` (as written by Hugging Face or [`Gpt2Tokenizer::save`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such tokenizer file"),
            ));
        }
        let inner = Tokenizer::from_file(path).map_err(|e| tok_err(Some(path), e))?;
        Self::wrap(inner, Some(path))
    }

    /// Builds the tokenizer from GPT-2's `vocab.json` and `merges.txt`.
    pub fn from_vocab_merges(vocab: impl AsRef<Path>, merges: impl AsRef<Path>) -> Result<Self> {
        let (vocab, merges) = (vocab.as_ref(), merges.as_ref());
        for p in [vocab, merges] {
            if !p.is_file() {
                return Err(Error::io(
                    p,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such tokenizer file"),
                ));
            }
        }
        let as_str = |p: &Path| {
            p.to_str().map(str::to_owned).ok_or_else(|| tok_err(Some(p), "path is not UTF-8"))
        };
        let bpe = BPE::from_file(&as_str(vocab)?, &as_str(merges)?)
            .build()
            .map_err(|e| tok_err(Some(vocab), e))?;
        let mut inner = Tokenizer::new(bpe);
        inner
            .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
            .with_decoder(Some(ByteLevel::default()))
            .with_post_processor(Some(ByteLevel::default().trim_offsets(false)));
        inner.add_special_tokens(&[AddedToken::from(END_OF_TEXT, true)]);
        Self::wrap(inner, Some(vocab))
    }

    /// Loads the tokenizer of a Hugging Face model directory: `tokenizer.json` if present,
    /// else `vocab.json` + `merges.txt`.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            Self::from_file(json)
        } else {
            Self::from_vocab_merges(dir.join("vocab.json"), dir.join("merges.txt"))
        }
    }

    /// Writes a `tokenizer.json`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.inner.save(path, false).map_err(|e| tok_err(Some(path), e))
    }

    /// Token ids of `text` (no BOS/EOS added; `<|endoftext|>` in the text is the special token).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode(text, false).map_err(|e| tok_err(None, e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`; special tokens are kept when `skip_special` is false.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(|e| tok_err(None, e))
    }

    /// Vocabulary size including special tokens (50,257 for GPT-2).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of `<|endoftext|>`.
    pub fn eos_token_id(&self) -> u32 {
        self.eos_token_id
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}
