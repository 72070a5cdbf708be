//! Word presence ([`Word`]) and word-list presence ([`WordList`]) with word boundaries.

use std::path::{Path, PathBuf};

use regex::{Regex, RegexBuilder};

use crate::error::{Error, Result};

/// The compiled size a word-list regex may reach: large word lists with Unicode word
/// boundaries exceed the `regex` crate's 10 MiB default.
const WORD_LIST_SIZE_LIMIT: usize = 256 << 20;

/// 1 if the text contains `word` as a whole word, else 0 (the paper's "amazing", "WikiLeaks").
///
/// "Whole word" means Unicode word boundaries (`\b`) on each side of the word that begins or
/// ends with a word character (as `\b` defines one: a combining accent is, "²" is not):
/// "amazing" matches "Amazing!" (case-insensitive) and "so amazing." but not "amazingly";
/// "C++" needs a boundary only before the "C", and so does "m²". A word may contain spaces
/// ("New York"); regex metacharacters in it are literal.
#[derive(Debug, Clone)]
pub struct Word {
    name: String,
    regex: Regex,
}

impl Word {
    /// The feature for `word`, matched case-sensitively or not.
    ///
    /// Fails with [`Error::EmptyWord`] if `word` is empty or whitespace.
    pub fn new(word: &str, case_sensitive: bool) -> Result<Self> {
        let word = word.trim();
        if word.is_empty() {
            return Err(Error::EmptyWord { what: "word" });
        }
        let regex = compile(&bounded(word), case_sensitive, word)?;
        let case = if case_sensitive { "" } else { ", any case" };
        Ok(Self { name: format!("word \"{word}\"{case}"), regex })
    }
}

crate::feature::regex_feature!(Word);

/// 1 if the text contains any word of a list as a whole word (see [`Word`]), else 0: the
/// paper's topic word lists ("science", "politics", ...).
#[derive(Debug, Clone)]
pub struct WordList {
    name: String,
    len: usize,
    regex: Regex,
}

impl WordList {
    /// The feature for `words` (each trimmed; none may be empty, and the list must not be).
    pub fn new<S: AsRef<str>>(words: &[S], case_sensitive: bool) -> Result<Self> {
        let words: Vec<&str> = words.iter().map(|w| w.as_ref().trim()).collect();
        if words.is_empty() {
            return Err(Error::EmptyWordList { from: None });
        }
        if words.iter().any(|w| w.is_empty()) {
            return Err(Error::EmptyWord { what: "wordlist" });
        }
        let name = format!("wordlist of {} words", words.len());
        Self::build(&words, case_sensitive, name)
    }

    /// The feature for the words of a UTF-8 file, one per line; surrounding whitespace is
    /// trimmed and blank lines are skipped.
    pub fn from_file(path: &Path, case_sensitive: bool) -> Result<Self> {
        let file_error = |error| Error::WordListFile { path: path.to_owned(), error };
        let text = std::fs::read_to_string(path).map_err(file_error)?;
        let words = parse_word_file(&text);
        if words.is_empty() {
            return Err(Error::EmptyWordList { from: Some(PathBuf::from(path)) });
        }
        let name = format!("wordlist `{}` ({} words)", path.display(), words.len());
        Self::build(&words, case_sensitive, name)
    }

    fn build(words: &[&str], case_sensitive: bool, name: String) -> Result<Self> {
        let alternation: Vec<String> = words.iter().map(|w| bounded(w)).collect();
        let pattern = alternation.join("|");
        let regex = compile(&pattern, case_sensitive, &name)?;
        let case = if case_sensitive { "" } else { ", any case" };
        Ok(Self { name: format!("{name}{case}"), len: words.len(), regex })
    }

    /// The number of words in the list.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: an empty list is rejected when built.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

crate::feature::regex_feature!(WordList);

/// The words of a word-list file: lines trimmed, blank lines skipped, a leading BOM dropped.
fn parse_word_file(text: &str) -> Vec<&str> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
}

/// `word` escaped, with `\b` on each side that is a word character, as `\b` itself defines
/// one (Unicode `\w`: letters, marks, decimal digits, connector punctuation).
fn bounded(word: &str) -> String {
    let is_word = |c: Option<char>| c.is_some_and(regex_syntax::is_word_character);
    let left = if is_word(word.chars().next()) { r"\b" } else { "" };
    let right = if is_word(word.chars().next_back()) { r"\b" } else { "" };
    format!("{left}(?:{}){right}", regex::escape(word))
}

fn compile(pattern: &str, case_sensitive: bool, shown: &str) -> Result<Regex> {
    RegexBuilder::new(pattern)
        .case_insensitive(!case_sensitive)
        .size_limit(WORD_LIST_SIZE_LIMIT)
        .build()
        .map_err(|error| Error::Regex { pattern: shown.to_owned(), error: Box::new(error) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::{Feature, Sample};

    fn score(f: &dyn Feature, texts: &[&str]) -> Vec<f64> {
        let samples: Vec<Sample<'_>> = texts.iter().map(|t| Sample::text(t)).collect();
        f.score(&samples).unwrap()
    }

    #[test]
    fn word_boundaries_and_punctuation() {
        let f = Word::new("amazing", true).unwrap();
        let texts = [
            "amazing",
            "This is amazing.",
            "(amazing)",
            "\"amazing\"!",
            "amazing-looking",
            "amazingly good",
            "unamazing",
            "amazing_grace",
            "amazing2",
            "",
            "Amazing start",
            "AMAZING",
            "it was amazing\nreally",
        ];
        let expected = [1., 1., 1., 1., 1., 0., 0., 0., 0., 0., 0., 0., 1.];
        assert_eq!(score(&f, &texts), expected);
        assert!(f.is_binary());
        assert_eq!(f.bounds(), (0.0, 1.0));
    }

    #[test]
    fn word_case_insensitive() {
        let f = Word::new("amazing", false).unwrap();
        assert_eq!(
            score(&f, &["Amazing start", "AMAZING", "aMaZiNg!", "AMAZINGLY", "amaze"]),
            [1., 1., 1., 0., 0.]
        );
        assert_eq!(f.name(), "word \"amazing\", any case");
    }

    #[test]
    fn word_with_capitals_is_exact_when_case_sensitive() {
        let f = Word::new("WikiLeaks", true).unwrap();
        assert_eq!(
            score(&f, &["WikiLeaks said", "wikileaks said", "WikiLeaks's files", "#WikiLeaks"]),
            [1., 0., 1., 1.]
        );
        assert_eq!(f.name(), "word \"WikiLeaks\"");
    }

    #[test]
    fn word_unicode_boundaries() {
        let f = Word::new("café", false).unwrap();
        // é is a word character, so "cafés" does not match and "CAFÉ" does (Unicode case).
        assert_eq!(score(&f, &["un café noir", "cafés", "CAFÉ!", "écafé"]), [1., 0., 1., 0.]);
        // A boundary between a letter and a non-ASCII letter is no boundary.
        let g = Word::new("na", true).unwrap();
        assert_eq!(score(&g, &["naïve", "na ïve"]), [0., 1.]);
    }

    #[test]
    fn word_boundaries_follow_the_regex_word_characters() {
        // '²' is numeric but not a regex word character (not a decimal digit): "m²" needs a
        // boundary before the "m" only, like "C++".
        let f = Word::new("m²", true).unwrap();
        assert_eq!(score(&f, &["a m² b", "m²", "m²s", "xm²"]), [1., 1., 1., 0.]);
        // A combining accent (a mark) is a word character: "cafe\u{301}s" is another word.
        let g = Word::new("cafe\u{301}", true).unwrap();
        assert_eq!(score(&g, &["un cafe\u{301} noir", "cafe\u{301}s"]), [1., 0.]);
    }

    #[test]
    fn word_metacharacters_are_literal() {
        let f = Word::new("C++", true).unwrap();
        assert_eq!(score(&f, &["I like C++.", "I like C", "AC++", "C+"]), [1., 0., 0., 0.]);
        let g = Word::new("a.b", true).unwrap();
        assert_eq!(score(&g, &["a.b", "axb"]), [1., 0.]);
        let h = Word::new("New York", true).unwrap();
        assert_eq!(score(&h, &["in New York.", "New Yorker", "New  York"]), [1., 0., 0.]);
    }

    #[test]
    fn empty_word_is_rejected() {
        assert!(matches!(Word::new("  ", true), Err(Error::EmptyWord { what: "word" })));
    }

    #[test]
    fn word_list_inline() {
        let f = WordList::new(&["physics", "chemistry", "lab coat"], false).unwrap();
        assert_eq!(
            score(&f, &["Physics is fun", "biochemistry", "a lab coat", "lab", "nothing", ""]),
            [1., 0., 1., 0., 0., 0.]
        );
        assert_eq!(f.len(), 3);
        assert!(!f.is_empty());
        assert!(f.is_binary());
        let cs = WordList::new(&["physics"], true).unwrap();
        assert_eq!(score(&cs, &["Physics", "physics"]), [0., 1.]);
    }

    #[test]
    fn word_list_errors() {
        let none: [&str; 0] = [];
        assert!(matches!(WordList::new(&none, true), Err(Error::EmptyWordList { from: None })));
        assert!(matches!(WordList::new(&["a", " "], true), Err(Error::EmptyWord { .. })));
        let missing = Path::new("/nonexistent/science.txt");
        let err = WordList::from_file(missing, true).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/science.txt"), "{err}");
    }

    #[test]
    fn word_list_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("science.txt");
        std::fs::write(&path, "\u{feff}physics\n\n  chemistry \r\nbiology\n").unwrap();
        let f = WordList::from_file(&path, true).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(score(&f, &["chemistry!", "Biology", "biology", "physicist"]), [1., 0., 1., 0.]);
        std::fs::write(&path, "\n \n").unwrap();
        let err = WordList::from_file(&path, true).unwrap_err();
        assert!(matches!(err, Error::EmptyWordList { from: Some(_) }), "{err}");
        assert!(err.to_string().contains("science.txt"), "{err}");
    }

    #[test]
    fn large_word_list_compiles() {
        let words: Vec<String> = (0..5000).map(|i| format!("wörd{i}")).collect();
        let f = WordList::new(&words, false).unwrap();
        assert_eq!(score(&f, &["WÖRD4999 here", "wörd5000", "wörd49"]), [1., 0., 1.]);
    }
}
