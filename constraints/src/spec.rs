//! The serde constraint spec ([`ConstraintsSpec`], [`ConstraintSpec`], [`FeatureSpec`]).

use std::path::PathBuf;

use serde::de::{Error as _, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::gender::GenderClass;
use crate::sentiment::SentimentScore;

/// A list of constraints, as in a TOML file of `[[constraints]]` tables (see the crate doc).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstraintsSpec {
    /// The constraints, in order.
    #[serde(default)]
    pub constraints: Vec<ConstraintSpec>,
}

/// One constraint: a named feature and either `pointwise = true` (b(x) = φ(x) ∈ {0, 1}, the
/// target is P = a·b) or `moment = μ̄` (the target is P = a·exp(λφ) with E_p\[φ\] = μ̄).
///
/// Exactly one of the two must be given; [`build`](crate::build) checks it. Deserialising is
/// strict (unknown fields are errors) and every error names the constraint and the field:
/// ``constraint `female`, field `feature`: unknown variant `gendr`, expected one of ...``.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConstraintSpec {
    /// A unique, non-empty name, used for logs and moments.
    pub name: String,
    /// The feature φ.
    pub feature: FeatureSpec,
    /// `true` for a pointwise constraint b(x) = φ(x) (φ must be binary).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pointwise: bool,
    /// The target moment μ̄ = E_p[φ(x)] for a distributional constraint. For a binary feature it
    /// must lie in [0, 1]; 1 and 0 are turned into the pointwise constraints φ and not φ. For a
    /// real-valued feature it must lie strictly inside the feature's range where that range is
    /// bounded (e.g. in (-1, 1) for VADER's compound score).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moment: Option<f64>,
}

const FIELDS: &[&str] = &["name", "feature", "pointwise", "moment"];

impl<'de> Deserialize<'de> for ConstraintSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct("ConstraintSpec", FIELDS, ConstraintVisitor)
    }
}

/// Reads a constraint table strictly (like `deny_unknown_fields`), holding each field's error
/// until the table is read, so that every message can name the constraint wherever `name` is.
struct ConstraintVisitor;

impl<'de> Visitor<'de> for ConstraintVisitor {
    type Value = ConstraintSpec;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a constraint table with `name`, `feature`, and `pointwise` or `moment`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ConstraintSpec, A::Error> {
        let mut name: Option<Caught<String>> = None;
        let mut feature: Option<Caught<FeatureSpec>> = None;
        let mut pointwise: Option<Caught<bool>> = None;
        let mut moment: Option<Caught<f64>> = None;
        let mut unknown: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "name" => name = Some(map.next_value()?),
                "feature" => feature = Some(map.next_value()?),
                "pointwise" => pointwise = Some(map.next_value()?),
                "moment" => moment = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    unknown.get_or_insert(key);
                }
            }
        }
        let shown = match &name {
            Some(Caught(Ok(name))) => format!("`{name}`"),
            _ => "(without a name)".to_owned(),
        };
        let fail = |field: &str, message: String| {
            A::Error::custom(format!("constraint {shown}, field `{field}`: {message}"))
        };
        if let Some(key) = unknown {
            let expected = "expected `name`, `feature`, `pointwise` or `moment`";
            return Err(fail(&key, format!("unknown field `{key}`, {expected}")));
        }
        let name = match name {
            Some(Caught(value)) => value.map_err(|e| fail("name", e))?,
            None => return Err(fail("name", "missing".into())),
        };
        let feature = match feature {
            Some(Caught(value)) => value.map_err(|e| fail("feature", e))?,
            None => return Err(fail("feature", "missing".into())),
        };
        let pointwise = match pointwise {
            Some(Caught(value)) => value.map_err(|e| fail("pointwise", e))?,
            None => false,
        };
        let moment = match moment {
            Some(Caught(value)) => Some(value.map_err(|e| fail("moment", e))?),
            None => None,
        };
        Ok(ConstraintSpec { name, feature, pointwise, moment })
    }
}

/// A value whose deserialisation error is kept as a message instead of returned. Sound for the
/// tree-shaped deserialisers configs come from (TOML, `serde_json::Value`): the failed value has
/// been consumed whole.
struct Caught<T>(Result<T, String>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Caught<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Caught(T::deserialize(deserializer).map_err(|e| e.to_string())))
    }
}

fn yes() -> bool {
    true
}

fn default_timeout_s() -> f64 {
    crate::external::DEFAULT_TIMEOUT.as_secs_f64()
}

/// Which feature φ, tagged by `kind`. Paths are relative to the directory the plan is built
/// with (that of the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeatureSpec {
    /// `kind = "word"`: 1 if `word` occurs as a whole word ([`Word`](crate::Word)).
    Word {
        /// The word (or phrase).
        word: String,
        /// Match case exactly (default `true`).
        #[serde(default = "yes")]
        case_sensitive: bool,
    },
    /// `kind = "wordlist"`: 1 if any word of the list occurs ([`WordList`](crate::WordList)).
    /// Give `words` or `file`, not both.
    Wordlist {
        /// The words inline.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        words: Option<Vec<String>>,
        /// A UTF-8 file with one word per line.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<PathBuf>,
        /// Match case exactly (default `true`).
        #[serde(default = "yes")]
        case_sensitive: bool,
    },
    /// `kind = "regex"`: 1 if `pattern` matches ([`Pattern`](crate::Pattern)).
    Regex {
        /// The regular expression (`regex` crate syntax).
        pattern: String,
    },
    /// `kind = "gender"`: the paper's pronoun-count feature ([`Gender`](crate::Gender)).
    Gender {
        /// `"female"`, `"male"` or `"other"` (a tie).
        class: GenderClass,
    },
    /// `kind = "length"`: the number of generated tokens ([`Length`](crate::Length)).
    Length {},
    /// `kind = "eos"`: 1 if generation ended with EOS ([`EndsWithEos`](crate::EndsWithEos)).
    Eos {},
    /// `kind = "sentiment"`: VADER ([`Sentiment`](crate::Sentiment)).
    Sentiment {
        /// `"compound"` (default, in [-1, 1]), `"positive"`, `"negative"` or `"neutral"`.
        #[serde(default)]
        score: SentimentScore,
    },
    /// `kind = "threshold"`: 1 if `feature` ≥ `at` ([`Threshold`](crate::Threshold)).
    Threshold {
        /// The (real) feature.
        feature: Box<FeatureSpec>,
        /// The threshold, inclusive.
        at: f64,
    },
    /// `kind = "and"`: 1 if all binary `features` are 1 ([`And`](crate::And)).
    And {
        /// At least one binary feature.
        features: Vec<FeatureSpec>,
    },
    /// `kind = "or"`: 1 if any binary feature is 1 ([`Or`](crate::Or)).
    Or {
        /// At least one binary feature.
        features: Vec<FeatureSpec>,
    },
    /// `kind = "not"`: 1 - a binary feature ([`Not`](crate::Not)).
    Not {
        /// The binary feature.
        feature: Box<FeatureSpec>,
    },
    /// `kind = "external"`: a user's program ([`External`](crate::External)), started in the
    /// config file's directory.
    External {
        /// argv, e.g. `["python3", "classifier.py"]`.
        command: Vec<String>,
        /// Seconds the program has per batch (default 60).
        #[serde(default = "default_timeout_s")]
        timeout_s: f64,
        /// Its answers are 0 or 1 (checked), so it can be pointwise (default `false`).
        #[serde(default)]
        binary: bool,
        /// Accept NaN answers (default `false`).
        #[serde(default)]
        allow_nan: bool,
    },
}
