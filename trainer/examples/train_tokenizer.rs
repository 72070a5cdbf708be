//! Trains the tilt-mini byte-level BPE tokenizer and reports what it does to the corpora.
//!
//! ```text
//! scripts/fetch-corpora.sh ~/.cache/tilt/corpora
//! C=~/.cache/tilt/corpora
//! cargo run --release -p tilt-trainer --example train_tokenizer -- \
//!     --vocab-size 8192 --out trainer/assets/tilt-mini/tokenizer.json --train $C/train.txt \
//!     --count $C/train.txt --count $C/valid.txt --count $C/austen.txt \
//!     --count $C/moby-dick.txt --count $C/sotu.txt --count $C/brown.txt
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, anyhow};
use clap::Parser;
use tilt_trainer::pretrain::{EOS_ID, TokenStream, load_tokenizer, train_tokenizer};

#[derive(Debug, Parser)]
#[command(about = "Train a byte-level BPE tokenizer (GPT-2 style) and count tokens")]
struct Args {
    /// Vocabulary size, special token and the 256 bytes included.
    #[arg(long, default_value_t = 8192)]
    vocab_size: usize,
    /// Where to write tokenizer.json.
    #[arg(long)]
    out: PathBuf,
    /// Training text files (one paragraph per line, blank line between documents).
    #[arg(long, required = true)]
    train: Vec<PathBuf>,
    /// Files to count tokens in with the trained tokenizer (separators included).
    #[arg(long)]
    count: Vec<PathBuf>,
}

const SENTENCES: &[&str] = &[
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
    "Call me Ishmael. Some years ago\u{2014}never mind how long precisely\u{2014}having little or no money in my purse, I thought I would sail about a little.",
    "The President said that the state of our Union is strong, and that Congress must act to lower taxes.",
    "She smiled at him and said, \"I'm afraid the weather won't improve before Tuesday.\"",
    "The doctor explained that the new vaccine reduced infections by 42 percent in 2021.",
    "My dog loves playing in the park with other dogs.",
];

fn main() -> Result<()> {
    let args = Args::parse();
    let start = Instant::now();
    let tokenizer = train_tokenizer(&args.train, args.vocab_size, &args.out)?;
    println!(
        "trained {} tokens on {:?} in {:.1}s -> {}",
        tokenizer.get_vocab_size(true),
        args.train,
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    // Count with the file as written, as every later user will.
    let tokenizer = load_tokenizer(&args.out)?;

    if !args.count.is_empty() {
        println!("\n| file | documents | characters | tokens | chars/token |");
        println!("|---|---:|---:|---:|---:|");
    }
    for file in &args.count {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
        let chars = text.chars().count();
        let stream = TokenStream::from_files(&tokenizer, std::slice::from_ref(file))?;
        let name = file
            .file_name()
            .map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into());
        println!(
            "| {name} | {} | {chars} | {} | {:.2} |",
            stream.documents(),
            stream.len(),
            chars as f64 / stream.len() as f64
        );
    }

    println!("\nexample encodings (tokens per whitespace-separated word):");
    let (mut all_tokens, mut all_words) = (0, 0);
    for sentence in SENTENCES {
        let enc = tokenizer.encode(*sentence, false).map_err(|e| anyhow!("encode: {e}"))?;
        let words = sentence.split_whitespace().count();
        let pieces: Vec<String> = enc
            .get_ids()
            .iter()
            .map(|&id| tokenizer.decode(&[id], false).unwrap_or_else(|_| format!("<{id}>")))
            .collect();
        println!(
            "\n{} tokens / {} words = {:.2}\n  {}",
            pieces.len(),
            words,
            pieces.len() as f64 / words as f64,
            pieces.iter().map(|p| format!("[{p}]")).collect::<String>()
        );
        all_tokens += pieces.len();
        all_words += words;
    }
    println!(
        "\nall examples: {all_tokens} tokens / {all_words} words = {:.2}; EOS id {EOS_ID}",
        all_tokens as f64 / all_words as f64
    );
    Ok(())
}
