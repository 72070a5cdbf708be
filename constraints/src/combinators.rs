//! Features built from features: [`Threshold`], [`And`], [`Or`], [`Not`].

use crate::error::{Error, Result};
use crate::feature::{Feature, Sample, bit, score_checked};

/// 1 if the inner feature's value is ≥ `at`, else 0 (a NaN value gives 0). Turns a real feature
/// (sentiment, length, an external classifier's probability) into a binary one.
#[derive(Debug)]
pub struct Threshold {
    name: String,
    inner: Box<dyn Feature>,
    at: f64,
}

impl Threshold {
    /// `inner ≥ at`; `at` must be finite.
    pub fn new(inner: Box<dyn Feature>, at: f64) -> Result<Self> {
        if !at.is_finite() {
            return Err(Error::Parameter { parameter: "at", value: at, reason: "must be finite" });
        }
        Ok(Self { name: format!("({}) >= {at}", inner.name()), inner, at })
    }
}

impl Feature for Threshold {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_binary(&self) -> bool {
        true
    }

    fn score(&self, samples: &[Sample<'_>]) -> Result<Vec<f64>> {
        let values = score_checked(self.inner.as_ref(), samples, false)?;
        Ok(values.into_iter().map(|v| bit(v >= self.at)).collect())
    }
}

/// 1 if every inner (binary) feature is 1.
#[derive(Debug)]
pub struct And {
    name: String,
    features: Vec<Box<dyn Feature>>,
}

/// 1 if any inner (binary) feature is 1.
#[derive(Debug)]
pub struct Or {
    name: String,
    features: Vec<Box<dyn Feature>>,
}

/// 1 - the inner (binary) feature.
#[derive(Debug)]
pub struct Not {
    name: String,
    inner: Box<dyn Feature>,
}

fn check_binary(what: &'static str, features: &[Box<dyn Feature>]) -> Result<()> {
    if features.is_empty() {
        return Err(Error::NoFeatures { what });
    }
    match features.iter().find(|f| !f.is_binary()) {
        Some(f) => Err(Error::NotBinaryFeature { what, feature: f.name().to_owned() }),
        None => Ok(()),
    }
}

fn joined(features: &[Box<dyn Feature>], op: &str) -> String {
    let names: Vec<String> = features.iter().map(|f| format!("({})", f.name())).collect();
    names.join(op)
}

/// Scores every feature on the batch and folds the 0/1 values with `op`.
fn fold(
    features: &[Box<dyn Feature>],
    samples: &[Sample<'_>],
    op: fn(f64, f64) -> f64,
) -> Result<Vec<f64>> {
    let (first, rest) = features.split_first().expect("checked non-empty when built");
    let mut acc = score_checked(first.as_ref(), samples, true)?;
    for f in rest {
        let values = score_checked(f.as_ref(), samples, true)?;
        acc.iter_mut().zip(values).for_each(|(a, v)| *a = op(*a, v));
    }
    Ok(acc)
}

impl And {
    /// The conjunction of `features` (at least one, all binary).
    pub fn new(features: Vec<Box<dyn Feature>>) -> Result<Self> {
        check_binary("and", &features)?;
        Ok(Self { name: joined(&features, " and "), features })
    }
}

impl Or {
    /// The disjunction of `features` (at least one, all binary).
    pub fn new(features: Vec<Box<dyn Feature>>) -> Result<Self> {
        check_binary("or", &features)?;
        Ok(Self { name: joined(&features, " or "), features })
    }
}

impl Not {
    /// The negation of a binary feature.
    pub fn new(inner: Box<dyn Feature>) -> Result<Self> {
        if !inner.is_binary() {
            return Err(Error::NotBinaryFeature { what: "not", feature: inner.name().to_owned() });
        }
        Ok(Self { name: format!("not ({})", inner.name()), inner })
    }
}

impl Feature for And {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_binary(&self) -> bool {
        true
    }

    fn score(&self, samples: &[Sample<'_>]) -> Result<Vec<f64>> {
        fold(&self.features, samples, f64::min)
    }
}

impl Feature for Or {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_binary(&self) -> bool {
        true
    }

    fn score(&self, samples: &[Sample<'_>]) -> Result<Vec<f64>> {
        fold(&self.features, samples, f64::max)
    }
}

impl Feature for Not {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_binary(&self) -> bool {
        true
    }

    fn score(&self, samples: &[Sample<'_>]) -> Result<Vec<f64>> {
        let values = score_checked(self.inner.as_ref(), samples, true)?;
        Ok(values.into_iter().map(|v| 1.0 - v).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Length, Word};

    /// A binary feature answering fixed values, whatever the samples.
    #[derive(Debug)]
    struct Fixed(Vec<f64>, bool);

    impl Feature for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        fn is_binary(&self) -> bool {
            self.1
        }
        fn score(&self, _: &[Sample<'_>]) -> Result<Vec<f64>> {
            Ok(self.0.clone())
        }
    }

    fn bits(v: &[f64]) -> Box<dyn Feature> {
        Box::new(Fixed(v.to_vec(), true))
    }

    fn four() -> Vec<Sample<'static>> {
        vec![Sample::text(""); 4]
    }

    #[test]
    fn truth_tables() {
        let (a, b) = ([0., 0., 1., 1.], [0., 1., 0., 1.]);
        let and = And::new(vec![bits(&a), bits(&b)]).unwrap();
        let or = Or::new(vec![bits(&a), bits(&b)]).unwrap();
        let not = Not::new(bits(&a)).unwrap();
        assert_eq!(and.score(&four()).unwrap(), [0., 0., 0., 1.]);
        assert_eq!(or.score(&four()).unwrap(), [0., 1., 1., 1.]);
        assert_eq!(not.score(&four()).unwrap(), [1., 1., 0., 0.]);
        assert!(and.is_binary() && or.is_binary() && not.is_binary());
    }

    #[test]
    fn three_way_and_or() {
        let (a, b, c) = ([1., 1., 1., 0.], [1., 1., 0., 0.], [1., 0., 0., 0.]);
        let and = And::new(vec![bits(&a), bits(&b), bits(&c)]).unwrap();
        let or = Or::new(vec![bits(&c), bits(&b), bits(&a)]).unwrap();
        assert_eq!(and.score(&four()).unwrap(), [1., 0., 0., 0.]);
        assert_eq!(or.score(&four()).unwrap(), [1., 1., 1., 0.]);
        let single = And::new(vec![bits(&b)]).unwrap();
        assert_eq!(single.score(&four()).unwrap(), b);
    }

    #[test]
    fn on_real_words() {
        let w = |s| -> Box<dyn Feature> { Box::new(Word::new(s, false).unwrap()) };
        let f = And::new(vec![w("amazing"), Box::new(Not::new(w("not")).unwrap())]).unwrap();
        let samples =
            [Sample::text("Amazing!"), Sample::text("not amazing"), Sample::text("nothing")];
        assert_eq!(f.score(&samples).unwrap(), [1., 0., 0.]);
        assert_eq!(f.name(), "(word \"amazing\", any case) and (not (word \"not\", any case))");
    }

    #[test]
    fn threshold_is_inclusive() {
        let t = Threshold::new(Box::new(Length), 3.0).unwrap();
        let toks = [0u32; 5];
        let samples: Vec<Sample<'_>> =
            (0..=5).map(|n| Sample::new("", &toks[..n], false)).collect();
        assert_eq!(t.score(&samples).unwrap(), [0., 0., 0., 1., 1., 1.]);
        assert!(t.is_binary());
        assert_eq!(t.name(), "(length in tokens) >= 3");
    }

    #[test]
    fn threshold_on_fractions_and_nan() {
        let real = Box::new(Fixed(vec![-0.5, 0.05, 0.0499, f64::NAN], false));
        let t = Threshold::new(real, 0.05).unwrap();
        assert_eq!(t.score(&four()).unwrap(), [0., 1., 0., 0.]);
        let err = Threshold::new(Box::new(Length), f64::NAN).unwrap_err();
        assert!(err.to_string().contains("`at`"), "{err}");
    }

    #[test]
    fn rejects_real_and_empty_inputs() {
        let err = And::new(vec![bits(&[1.]), Box::new(Length)]).unwrap_err();
        assert!(err.to_string().contains("length in tokens"), "{err}");
        assert!(matches!(Or::new(vec![]), Err(Error::NoFeatures { what: "or" })));
        assert!(matches!(Not::new(Box::new(Length)), Err(Error::NotBinaryFeature { .. })));
    }

    #[test]
    fn inner_values_are_checked() {
        // A feature that claims to be binary but answers 0.5, or the wrong count.
        let liar = And::new(vec![bits(&[1., 0.5, 0., 1.])]).unwrap();
        assert!(matches!(liar.score(&four()), Err(Error::NotBinaryValue { index: 1, .. })));
        let short = Not::new(bits(&[1.])).unwrap();
        assert!(matches!(short.score(&four()), Err(Error::BatchSize { expected: 4, got: 1, .. })));
    }
}
