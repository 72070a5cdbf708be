//! Tokenising texts once for the diversity metrics.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// How a text is cut into the tokens whose n-grams the diversity metrics count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenUnit {
    /// Words: maximal runs of alphanumeric characters (with inner apostrophes, as in "don't"),
    /// and every other non-space character as a token of its own. This approximates NLTK's
    /// `word_tokenize`, which naver/gdc uses for Distinct-n, without its Punkt model.
    Words,
    /// Whitespace-separated chunks, exactly Python's `str.split()` on ASCII text.
    Whitespace,
    /// Unicode scalar values. naver/gdc's Self-BLEU passes decoded strings to NLTK untokenised,
    /// so NLTK counts character n-grams: this unit reproduces its numbers.
    Chars,
}

/// Texts as sequences of interned token ids (`u32`), tokenised once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenizedTexts {
    texts: Vec<Vec<u32>>,
}

impl TokenizedTexts {
    /// Tokenises every text with `unit` and interns the tokens.
    pub fn new<S: AsRef<str>>(texts: &[S], unit: TokenUnit) -> Self {
        let mut interner = Interner::default();
        let texts = texts
            .iter()
            .map(|t| {
                let t = t.as_ref();
                match unit {
                    TokenUnit::Words => words(t).map(|w| interner.id(w)).collect(),
                    TokenUnit::Whitespace => t.split_whitespace().map(|w| interner.id(w)).collect(),
                    TokenUnit::Chars => t.chars().map(u32::from).collect(),
                }
            })
            .collect();
        Self { texts }
    }

    /// Texts that are already token sequences (for example the words of a reference
    /// implementation's tokeniser).
    pub fn from_tokens<T, S>(texts: &[T]) -> Self
    where
        T: AsRef<[S]>,
        S: AsRef<str>,
    {
        let mut interner = Interner::default();
        let texts = texts
            .iter()
            .map(|t| t.as_ref().iter().map(|w| interner.id(w.as_ref())).collect())
            .collect();
        Self { texts }
    }

    /// Texts given as token ids (for example a language model's token ids).
    pub fn from_ids(texts: Vec<Vec<u32>>) -> Self {
        Self { texts }
    }

    /// The first `n` texts (all of them when there are fewer).
    pub fn head(&self, n: usize) -> Self {
        Self { texts: self.texts.iter().take(n).cloned().collect() }
    }

    /// The number of texts.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether there are no texts.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// The token ids of each text.
    pub fn texts(&self) -> &[Vec<u32>] {
        &self.texts
    }
}

#[derive(Default)]
struct Interner<'a> {
    ids: HashMap<&'a str, u32>,
}

impl<'a> Interner<'a> {
    fn id(&mut self, token: &'a str) -> u32 {
        let next = u32::try_from(self.ids.len()).expect("fewer than 2^32 distinct tokens");
        *self.ids.entry(token).or_insert(next)
    }
}

/// Word tokens of [`TokenUnit::Words`].
fn words(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        rest = rest.trim_start();
        let mut chars = rest.char_indices().peekable();
        let (_, first) = chars.next()?;
        let end = if first.is_alphanumeric() {
            let mut end = rest.len();
            let mut prev_apostrophe = false;
            while let Some((i, c)) = chars.next() {
                let inner_apostrophe = (c == '\'' || c == '’')
                    && chars.peek().is_some_and(|(_, n)| n.is_alphanumeric());
                if c.is_alphanumeric() || (inner_apostrophe && !prev_apostrophe) {
                    prev_apostrophe = inner_apostrophe;
                } else {
                    end = i;
                    break;
                }
            }
            end
        } else {
            first.len_utf8()
        };
        let (token, tail) = rest.split_at(end);
        rest = tail;
        Some(token)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<&str> {
        words(text).collect()
    }

    #[test]
    fn words_split_punctuation_and_keep_contractions() {
        assert_eq!(toks("Hello, world!"), ["Hello", ",", "world", "!"]);
        assert_eq!(toks("  don't stop...  "), ["don't", "stop", ".", ".", "."]);
        assert_eq!(toks("it's 3.5'"), ["it's", "3", ".", "5", "'"]);
        assert_eq!(toks("café au lait"), ["café", "au", "lait"]);
        assert!(toks("   ").is_empty());
    }

    #[test]
    fn interning_gives_equal_ids_to_equal_tokens() {
        let t = TokenizedTexts::new(&["a b a", "b c"], TokenUnit::Whitespace);
        assert_eq!(t.texts(), &[vec![0, 1, 0], vec![1, 2]]);
        let c = TokenizedTexts::new(&["ab"], TokenUnit::Chars);
        assert_eq!(c.texts(), &[vec![97, 98]]);
        assert_eq!(t.head(1).len(), 1);
        assert_eq!(t.head(5).len(), 2);
    }
}
