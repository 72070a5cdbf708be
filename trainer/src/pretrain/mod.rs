//! Building the demo base model "tilt-mini": corpora, byte-level BPE tokenizer, causal-LM
//! pretraining.
//!
//! The corpora (Austen, Moby-Dick, the State of the Union addresses, Brown) come from package
//! registries through `scripts/fetch-corpora.sh`, which writes cleaned text and a deterministic
//! train/validation split. [`train_tokenizer`] learns the byte-level BPE vocabulary from them
//! (the committed one is `trainer/assets/tilt-mini/tokenizer.json`, see its `DATA.md`), and
//! [`TokenStream`] turns corpus files into token ids and fixed-length training examples.
//! [`pretrain`] trains a GPT-2 from scratch on a stream ([`PretrainConfig`]: the tilt-mini
//! recipe by default) and [`save_model`] writes it as a (sharded) Hugging Face directory;
//! [`command::run`] is `tilt pretrain`.

pub mod command;
mod config;
mod data;
mod save;
mod tokenizer;
mod train;

#[cfg(test)]
mod tests;

pub use config::{ModelShape, PretrainConfig};
pub use data::{TokenStream, read_documents};
pub use save::{TOKENIZER_FILE, save_model};
pub use tokenizer::{
    BASE_VOCAB, EOS_ID, EOS_TOKEN, TILT_MINI_TOKENIZER_JSON, TILT_MINI_VOCAB_SIZE, load_tokenizer,
    tilt_mini_tokenizer, train_tokenizer,
};
pub use train::{
    CHECKPOINT_DIR, CONFIG_COPY, LOG_FILE, PretrainData, PretrainReport, evaluate, pretrain,
    token_nll,
};
