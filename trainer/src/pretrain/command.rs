//! `tilt pretrain`: command-line inputs → token streams → the loop on the chosen backend.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::backend::AutodiffBackend;
use tokenizers::Tokenizer;

use super::config::PretrainConfig;
use super::data::{TokenStream, read_documents};
use super::tokenizer::{TILT_MINI_TOKENIZER_JSON, load_tokenizer, tilt_mini_tokenizer};
use super::train::{PretrainData, PretrainReport, check_output_dir, pretrain};
use crate::backend::{Job, launch};
use crate::cli::{BadInput, PretrainArgs};

/// File names written by `--save-tokens DIR`.
pub const TRAIN_TOKENS: &str = "train.tokens";
/// See [`TRAIN_TOKENS`].
pub const VALID_TOKENS: &str = "valid.tokens";

/// Runs `tilt pretrain`.
pub fn run(args: &PretrainArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => PretrainConfig::load(path).map_err(|e| BadInput(format!("{e:#}")))?,
        None => PretrainConfig::default(),
    };
    if let Some(steps) = args.max_steps {
        config.max_steps = steps;
    }
    if let Some(mib) = args.shard_mib {
        config.shard_mib = mib;
    }
    config.validate().map_err(|e| BadInput(format!("{e:#}")))?;

    let (tokenizer, tokenizer_json) = match &args.tokenizer {
        Some(path) => {
            let bytes = fs::read(path)
                .with_context(|| format!("cannot read tokenizer {}", path.display()))
                .map_err(bad_input)?;
            (load_tokenizer(path).map_err(bad_input)?, bytes)
        }
        None => (tilt_mini_tokenizer()?, TILT_MINI_TOKENIZER_JSON.as_bytes().to_vec()),
    };
    let vocab = tokenizer.get_vocab_size(true);
    if vocab > config.model.vocab_size {
        return Err(BadInput(format!(
            "the tokenizer has {vocab} tokens but model.vocab_size is {}",
            config.model.vocab_size
        ))
        .into());
    }

    if let Some(dir) = &args.save_tokens {
        return save_tokens(args, &tokenizer, dir);
    }

    let Some(output) = &args.output else {
        return Err(
            BadInput("tilt pretrain needs --output DIR (or --save-tokens DIR)".into()).into()
        );
    };
    check_output_dir(output).map_err(bad_input)?;
    let train = stream(&tokenizer, &args.train, args.train_tokens.as_deref(), "training")?
        .ok_or_else(|| {
            BadInput("tilt pretrain needs --train FILE or --train-tokens FILE".into())
        })?;
    let valid = stream(&tokenizer, &args.valid, args.valid_tokens.as_deref(), "validation")?;
    log::info!(
        "training stream: {} tokens; validation: {}",
        train.len(),
        valid.as_ref().map_or("none".to_string(), |v| format!("{} tokens", v.len()))
    );
    let data = PretrainData { train, valid, tokenizer_json };
    let job = PretrainJob { config: &config, data: &data, output };
    let report = launch(args.backend.backend.unwrap_or_default(), args.backend.device, job)?;
    println!(
        "pretrained {} steps ({} tokens, {:.0} tokens/s): training loss {:.4} -> {:.4}{}; model in {}",
        report.steps,
        report.tokens,
        report.tokens_per_second,
        report.first_loss,
        report.last_loss,
        report.valid.map_or(String::new(), |(l, p)| format!(
            ", validation loss {l:.4} (perplexity {p:.2})"
        )),
        output.display()
    );
    Ok(())
}

fn bad_input(e: anyhow::Error) -> anyhow::Error {
    BadInput(format!("{e:#}")).into()
}

struct PretrainJob<'a> {
    config: &'a PretrainConfig,
    data: &'a PretrainData,
    output: &'a Path,
}

impl Job for PretrainJob<'_> {
    type Output = PretrainReport;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<PretrainReport> {
        Ok(pretrain::<B>(self.config, self.data, self.output, &device)?.1)
    }
}

/// Encodes text files (each must hold some text), or loads a token cache; `None` when neither
/// is given. Both at once is an error.
fn stream(
    tokenizer: &Tokenizer,
    files: &[PathBuf],
    tokens: Option<&Path>,
    what: &str,
) -> Result<Option<TokenStream>> {
    match (files.is_empty(), tokens) {
        (true, None) => Ok(None),
        (false, Some(_)) => {
            Err(BadInput(format!("give {what} data as text files or as a token file, not both"))
                .into())
        }
        (true, Some(path)) => {
            let stream = TokenStream::load(path).map_err(bad_input)?;
            if stream.len() < 2 {
                bail!(BadInput(format!("token file {} holds no tokens", path.display())));
            }
            Ok(Some(stream))
        }
        (false, None) => {
            let mut docs = Vec::new();
            for file in files {
                let before = docs.len();
                docs.extend(read_documents(std::slice::from_ref(file)).map_err(bad_input)?);
                if docs.len() == before {
                    bail!(BadInput(format!(
                        "{what} file {} holds no text (empty or blank lines only)",
                        file.display()
                    )));
                }
            }
            let stream = TokenStream::from_documents(tokenizer, &docs)
                .with_context(|| format!("encoding {files:?}"))?;
            Ok(Some(stream))
        }
    }
}

/// `--save-tokens DIR`: encodes the text inputs once and writes the token caches.
fn save_tokens(args: &PretrainArgs, tokenizer: &Tokenizer, dir: &Path) -> Result<()> {
    if args.train.is_empty() {
        return Err(BadInput("--save-tokens needs --train FILE (text to encode)".into()).into());
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (files, name) in [(&args.train, TRAIN_TOKENS), (&args.valid, VALID_TOKENS)] {
        if let Some(stream) = stream(tokenizer, files, None, "input")? {
            let path = dir.join(name);
            stream.save(&path)?;
            println!(
                "{}: {} tokens, {} documents",
                path.display(),
                stream.len(),
                stream.documents()
            );
        }
    }
    Ok(())
}
