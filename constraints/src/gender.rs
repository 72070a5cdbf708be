//! The paper's gender feature ([`Gender`]), by pronoun counts.

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::feature::{Feature, Sample, bit};

/// Which side of the pronoun count a [`Gender`] feature fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GenderClass {
    /// More female pronouns (she, her, herself) than male ones.
    Female,
    /// More male pronouns (he, him, himself) than female ones.
    Male,
    /// As many of each, including none at all.
    Other,
}

impl GenderClass {
    fn as_str(self) -> &'static str {
        match self {
            Self::Female => "female",
            Self::Male => "male",
            Self::Other => "other",
        }
    }
}

/// The paper's gender feature for biographies: count the male pronouns he/him/himself and the
/// female pronouns she/her/herself as whole words, case-insensitively; the text is *female* iff
/// it has strictly more female pronouns, *male* iff strictly more male ones, and *other* on a tie
/// (including no pronoun at all). The feature is 1 iff the text is of the chosen class.
///
/// This follows naver/gdc's `Scorer` (`scorer_type = "gender"`, classes male/female/other, same
/// pronoun lists and tie rule), with two deliberate differences: gdc counts exact tokens of
/// NLTK's `word_tokenize` without lower-casing, so a sentence-initial "He" or "She" is not
/// counted there but is here; and here word boundaries are Unicode `\b`, so "he's" and "him."
/// count (as NLTK's tokens would). "his" and "hers" are in neither list, as in gdc.
#[derive(Debug, Clone)]
pub struct Gender {
    class: GenderClass,
    name: String,
    male: Regex,
    female: Regex,
}

impl Gender {
    /// The feature that fires on texts of `class`.
    pub fn new(class: GenderClass) -> Self {
        // Fixed, valid patterns: compiling them cannot fail.
        let male = Regex::new(r"(?i)\b(?:he|him|himself)\b").expect("valid pattern");
        let female = Regex::new(r"(?i)\b(?:she|her|herself)\b").expect("valid pattern");
        Self { class, name: format!("gender {}", class.as_str()), male, female }
    }

    /// (male, female) pronoun counts of `text`.
    pub fn counts(&self, text: &str) -> (usize, usize) {
        (self.male.find_iter(text).count(), self.female.find_iter(text).count())
    }

    /// The class of `text`.
    pub fn classify(&self, text: &str) -> GenderClass {
        let (male, female) = self.counts(text);
        match female.cmp(&male) {
            std::cmp::Ordering::Greater => GenderClass::Female,
            std::cmp::Ordering::Less => GenderClass::Male,
            std::cmp::Ordering::Equal => GenderClass::Other,
        }
    }
}

impl Feature for Gender {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_binary(&self) -> bool {
        true
    }

    fn score(&self, samples: &[Sample<'_>]) -> Result<Vec<f64>> {
        Ok(samples.iter().map(|s| bit(self.classify(s.text) == self.class)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXTS: [&str; 8] = [
        "She was born in Paris. Her mother taught her music.", // f 3, m 0
        "He studied law; his father made him a judge.",        // m 2, f 0
        "She met him and he met her.",                         // f 2, m 2: tie
        "The company was founded in 1990.",                    // none: tie
        "SHE said he and HIMSELF, herself, her.",              // f 3, m 2
        "Shelby helped Sherman; thesis, hence, the hero.",     // no whole-word pronoun
        "he's here, isn't he? She's not.",                     // m 2, f 1
        "He, him, himself; she, her.",                         // m 3, f 2
    ];

    fn score(class: GenderClass) -> Vec<f64> {
        let samples: Vec<Sample<'_>> = TEXTS.iter().map(|t| Sample::text(t)).collect();
        Gender::new(class).score(&samples).unwrap()
    }

    #[test]
    fn counts_are_whole_word_and_case_insensitive() {
        let g = Gender::new(GenderClass::Female);
        let counts: Vec<(usize, usize)> = TEXTS.iter().map(|t| g.counts(t)).collect();
        assert_eq!(counts, [(0, 3), (2, 0), (2, 2), (0, 0), (2, 3), (0, 0), (2, 1), (3, 2)]);
    }

    #[test]
    fn female_male_other_with_ties() {
        assert_eq!(score(GenderClass::Female), [1., 0., 0., 0., 1., 0., 0., 0.]);
        assert_eq!(score(GenderClass::Male), [0., 1., 0., 0., 0., 0., 1., 1.]);
        assert_eq!(score(GenderClass::Other), [0., 0., 1., 1., 0., 1., 0., 0.]);
    }

    #[test]
    fn classes_partition_every_text() {
        let sum: Vec<f64> = (0..TEXTS.len())
            .map(|i| {
                [GenderClass::Female, GenderClass::Male, GenderClass::Other]
                    .iter()
                    .map(|&c| score(c)[i])
                    .sum()
            })
            .collect();
        assert_eq!(sum, vec![1.0; TEXTS.len()]);
        assert_eq!(Gender::new(GenderClass::Male).name(), "gender male");
    }
}
