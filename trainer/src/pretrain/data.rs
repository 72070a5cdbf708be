//! Pretraining data: corpus files → documents → one token stream → fixed-length examples.
//!
//! Corpus files follow the convention of `scripts/fetch-corpora.sh`: UTF-8, one paragraph per
//! line, documents separated by one or more blank lines.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, ensure};
use tokenizers::Tokenizer;

use super::tokenizer::{EOS_ID, EOS_TOKEN};

/// Documents encoded per `encode_batch` call: bounds the memory held by full `Encoding`s.
const ENCODE_BATCH: usize = 64;

/// Reads corpus files into documents, in file order.
///
/// A document is a maximal run of non-blank lines; its lines are joined with `\n` (a trailing
/// `\r` is dropped). Blank lines (empty or whitespace only) separate documents and are not part
/// of any.
pub fn read_documents(files: &[PathBuf]) -> Result<Vec<String>> {
    let mut docs = Vec::new();
    for file in files {
        let text = fs::read_to_string(file)
            .with_context(|| format!("cannot read corpus file {}", file.display()))?;
        split_documents(&text, &mut docs);
    }
    Ok(docs)
}

fn split_documents(text: &str, docs: &mut Vec<String>) {
    let mut current = String::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                docs.push(std::mem::take(&mut current));
            }
        } else {
            if !current.is_empty() {
                current.push('\n');
            }
            current.push_str(line);
        }
    }
    if !current.is_empty() {
        docs.push(current);
    }
}

/// A corpus as one stream of token ids: `EOS doc₁ EOS doc₂ EOS … docₙ EOS`.
///
/// Every document is preceded by [`EOS_TOKEN`] (so a sampler can start a fresh document from
/// `EOS` alone) and the stream ends with one; documents never share a token. Cut it into training
/// examples with [`TokenStream::examples`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenStream {
    ids: Vec<u32>,
    documents: usize,
}

impl TokenStream {
    /// Reads corpus files ([`read_documents`]) and encodes them.
    pub fn from_files(tokenizer: &Tokenizer, files: &[PathBuf]) -> Result<Self> {
        let docs = read_documents(files)?;
        Self::from_documents(tokenizer, &docs).with_context(|| format!("encoding {files:?}"))
    }

    /// Encodes documents with `tokenizer` (no added special tokens besides the separators).
    ///
    /// The tokenizer must map [`EOS_TOKEN`] to [`EOS_ID`].
    pub fn from_documents(tokenizer: &Tokenizer, docs: &[String]) -> Result<Self> {
        ensure!(
            tokenizer.token_to_id(EOS_TOKEN) == Some(EOS_ID),
            "the tokenizer does not map {EOS_TOKEN} to id {EOS_ID}"
        );
        let mut ids = vec![EOS_ID];
        for batch in docs.chunks(ENCODE_BATCH) {
            let inputs: Vec<&str> = batch.iter().map(String::as_str).collect();
            let encodings =
                tokenizer.encode_batch_fast(inputs, false).map_err(|e| anyhow!("encoding: {e}"))?;
            for enc in encodings {
                ids.extend_from_slice(enc.get_ids());
                ids.push(EOS_ID);
            }
        }
        Ok(Self { ids, documents: docs.len() })
    }

    /// Reads a stream written by [`TokenStream::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes =
            fs::read(path).with_context(|| format!("cannot read token file {}", path.display()))?;
        ensure!(
            bytes.len() % 4 == 0,
            "token file {} has {} bytes, not a multiple of 4",
            path.display(),
            bytes.len()
        );
        let ids: Vec<u32> =
            bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let documents = ids.iter().filter(|&&id| id == EOS_ID).count().saturating_sub(1);
        Ok(Self { ids, documents })
    }

    /// Writes the ids as little-endian `u32`s (a cache: encoding a large corpus takes a while).
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes: Vec<u8> = self.ids.iter().flat_map(|id| id.to_le_bytes()).collect();
        fs::write(path, bytes)
            .with_context(|| format!("cannot write token file {}", path.display()))
    }

    /// All token ids, separators included.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Number of token ids, separators included.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the stream holds no id at all (never true for a stream built here, which always
    /// has at least one separator).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of documents encoded.
    pub fn documents(&self) -> usize {
        self.documents
    }

    /// Consecutive, non-overlapping examples of exactly `context_len` ids, in stream order; the
    /// incomplete tail is left out. Examples cross document boundaries, with [`EOS_ID`] marking
    /// them. For next-token training with inputs and targets of length `n`, ask for `n + 1`.
    ///
    /// # Panics
    /// If `context_len` is 0.
    pub fn examples(&self, context_len: usize) -> std::slice::ChunksExact<'_, u32> {
        assert!(context_len > 0, "context_len must be positive");
        self.ids.chunks_exact(context_len)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tokenizer::train_tokenizer;
    use super::*;

    fn tokenizer(dir: &Path) -> Tokenizer {
        let corpus = dir.join("train.txt");
        let text = "The whale swam.\nThe sea was grey and the whale was white.\n\n\
                    Mr. Darcy bowed. Elizabeth smiled at the sea.\n";
        fs::write(&corpus, text.repeat(20)).expect("write corpus");
        train_tokenizer(&[corpus], 300, &dir.join("tokenizer.json")).expect("train")
    }

    #[test]
    fn documents_are_split_on_blank_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
        fs::write(&a, "\n\nOne.\nTwo.\n\n  \nThree.\r\n").expect("write a");
        fs::write(&b, "Four.").expect("write b");
        let docs = read_documents(&[a, b]).expect("read");
        assert_eq!(docs, ["One.\nTwo.", "Three.", "Four."]);
        let err = read_documents(&[dir.path().join("gone.txt")]).unwrap_err();
        assert!(format!("{err:#}").contains("gone.txt"), "{err:#}");
    }

    #[test]
    fn stream_separates_documents_and_chunks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tok = tokenizer(dir.path());
        let docs = vec!["The whale swam.".to_string(), "Mr. Darcy bowed.\nThe sea.".to_string()];
        let stream = TokenStream::from_documents(&tok, &docs).expect("encode");
        assert_eq!(stream.documents(), 2);
        let ids = stream.ids();
        assert_eq!(ids.first(), Some(&EOS_ID));
        assert_eq!(ids.last(), Some(&EOS_ID));
        assert_eq!(ids.iter().filter(|&&id| id == EOS_ID).count(), 3);
        // Decoding each segment between separators gives the documents back.
        let segments: Vec<String> = ids[1..ids.len() - 1]
            .split(|&id| id == EOS_ID)
            .map(|seg| tok.decode(seg, false).expect("decode"))
            .collect();
        assert_eq!(segments, docs);

        let n = 3;
        let examples: Vec<&[u32]> = stream.examples(n).collect();
        assert_eq!(examples.len(), stream.len() / n);
        assert!(examples.iter().all(|e| e.len() == n));
        assert_eq!(examples.concat(), ids[..examples.len() * n]);

        let path = dir.path().join("ids.bin");
        stream.save(&path).expect("save");
        assert_eq!(TokenStream::load(&path).expect("load"), stream);
    }

    #[test]
    fn from_files_matches_from_documents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tok = tokenizer(dir.path());
        let file = dir.path().join("c.txt");
        fs::write(&file, "The whale.\n\nThe sea.\nGrey.\n").expect("write");
        let a = TokenStream::from_files(&tok, &[file]).expect("files");
        let b = TokenStream::from_documents(&tok, &["The whale.".into(), "The sea.\nGrey.".into()])
            .expect("docs");
        assert_eq!(a, b);
    }
}
