//! Regular-expression presence ([`Pattern`]).

use regex::Regex;

use crate::error::{Error, Result};

/// 1 if the regular expression matches anywhere in the text, else 0.
///
/// The syntax is the `regex` crate's (Unicode-aware; `(?i)` for case-insensitive matching,
/// `\b` for word boundaries, `^`/`$` anchor the whole text unless `(?m)` is given).
#[derive(Debug, Clone)]
pub struct Pattern {
    name: String,
    regex: Regex,
}

impl Pattern {
    /// Compiles `pattern`; an invalid one gives [`Error::Regex`] naming it.
    pub fn new(pattern: &str) -> Result<Self> {
        let regex = Regex::new(pattern).map_err(|error| Error::Regex {
            pattern: pattern.to_owned(),
            error: Box::new(error),
        })?;
        Ok(Self { name: format!("regex `{pattern}`"), regex })
    }
}

crate::feature::regex_feature!(Pattern);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::{Feature, Sample};

    #[test]
    fn matches_anywhere() {
        let f = Pattern::new(r"\d{4}").unwrap();
        let samples = [Sample::text("born in 1956"), Sample::text("born in 56"), Sample::text("")];
        assert_eq!(f.score(&samples).unwrap(), [1., 0., 0.]);
        assert!(f.is_binary());
        assert_eq!(f.name(), r"regex `\d{4}`");
    }

    #[test]
    fn anchors_and_flags() {
        let f = Pattern::new(r"(?i)^the\b").unwrap();
        let samples =
            [Sample::text("The end"), Sample::text("theory"), Sample::text("see the end")];
        assert_eq!(f.score(&samples).unwrap(), [1., 0., 0.]);
    }

    #[test]
    fn invalid_pattern_is_named() {
        let err = Pattern::new("a(b").unwrap_err();
        assert!(matches!(err, Error::Regex { ref pattern, .. } if pattern == "a(b"));
        assert!(err.to_string().starts_with("invalid regex `a(b`"), "{err}");
    }
}
