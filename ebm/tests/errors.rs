//! Every documented error case, with the context its message must carry.

use tilt_ebm::{Error, LogZ, MomentFit, RowMatrix, estimate_log_z, kl_target_model};

fn binary_column(values: &[f64]) -> RowMatrix<'_> {
    RowMatrix::new(values, values.len(), 1).unwrap()
}

#[test]
fn target_outside_the_sampled_range_names_feature_and_range() {
    let f = [0.5, 1.0, 2.0, 1.5];
    let err = MomentFit::new(vec![2.5])
        .feature_names(vec!["length".into()])
        .fit(&[0.0; 4], &[0.0; 4], binary_column(&f))
        .unwrap_err();
    assert!(matches!(err, Error::TargetOutOfRange { feature: 0, min: 0.5, max: 2.0, .. }));
    let msg = err.to_string();
    assert!(msg.contains("feature 0 (`length`)") && msg.contains("[0.5, 2]"), "{msg}");
}

#[test]
fn range_ignores_samples_with_zero_weight() {
    // The only sample reaching 3.0 has P = 0 (log a = -inf).
    let f = [0.0, 1.0, 3.0];
    let err = MomentFit::new(vec![2.0])
        .fit(&[0.0; 3], &[0.0, 0.0, f64::NEG_INFINITY], binary_column(&f))
        .unwrap_err();
    assert!(matches!(err, Error::TargetOutOfRange { max: 1.0, n_samples: 2, .. }), "{err}");
}

#[test]
fn binary_feature_that_never_fires_or_never_fails() {
    let zeros = [0.0; 5];
    let err = MomentFit::new(vec![0.5])
        .feature_names(vec!["amazing".into()])
        .fit(&[0.0; 5], &[0.0; 5], binary_column(&zeros))
        .unwrap_err();
    assert!(matches!(err, Error::NeverFires { feature: 0, n_samples: 5, .. }));
    assert!(err.to_string().contains("`amazing`) never fires"), "{err}");
    let ones = [1.0; 5];
    let err =
        MomentFit::new(vec![0.5]).fit(&[0.0; 5], &[0.0; 5], binary_column(&ones)).unwrap_err();
    assert!(matches!(err, Error::NeverFails { feature: 0, .. }), "{err}");
}

#[test]
fn target_on_the_edge_asks_for_a_pointwise_constraint() {
    let f = [0.0, 1.0, 0.0];
    let err = MomentFit::new(vec![1.0]).fit(&[0.0; 3], &[0.0; 3], binary_column(&f)).unwrap_err();
    assert!(matches!(err, Error::TargetOnBoundary { feature: 0, .. }));
    assert!(err.to_string().contains("pointwise"));
}

#[test]
fn non_finite_inputs_name_the_sample_and_feature() {
    let f = [0.0, 1.0, 0.0, 1.0, f64::INFINITY, 0.0];
    let m = RowMatrix::new(&f, 3, 2).unwrap();
    let err = MomentFit::new(vec![0.5, 0.5]).fit(&[0.0; 3], &[0.0; 3], m).unwrap_err();
    assert_eq!(
        err,
        Error::NonFinite { what: "features", sample: 2, feature: Some(0), value: f64::INFINITY }
    );
    // A NaN in the last column of a wide row (past the vectorised chunks).
    let mut wide = vec![0.0; 3 * 11];
    wide[11 + 10] = f64::NAN;
    let m = RowMatrix::new(&wide, 3, 11).unwrap();
    let err = MomentFit::new(vec![0.5; 11]).fit(&[0.0; 3], &[0.0; 3], m).unwrap_err();
    assert!(matches!(err, Error::NonFinite { sample: 1, feature: Some(10), .. }), "{err}");
    let ok = [0.0, 1.0, 1.0, 0.0, 1.0, 0.0];
    let m = RowMatrix::new(&ok, 3, 2).unwrap();
    let err = MomentFit::new(vec![0.5, 0.5]).fit(&[0.0, f64::NAN, 0.0], &[0.0; 3], m).unwrap_err();
    assert_eq!(err.to_string(), "log_proposal is NaN at sample 1");
    let err =
        MomentFit::new(vec![0.5, 0.5]).fit(&[0.0; 3], &[0.0, 0.0, f64::INFINITY], m).unwrap_err();
    assert_eq!(err.to_string(), "log_base is inf at sample 2");
    let err = MomentFit::new(vec![0.5, f64::NAN]).fit(&[0.0; 3], &[0.0; 3], m).unwrap_err();
    assert!(matches!(err, Error::NonFinite { what: "targets", sample: 1, .. }));
    let err = estimate_log_z(&[0.0, f64::NAN]).unwrap_err();
    assert!(matches!(err, Error::NonFinite { sample: 1, .. }));
}

#[test]
fn mismatched_dimensions() {
    let f = [0.0, 1.0, 1.0, 0.0];
    let m = RowMatrix::new(&f, 2, 2).unwrap();
    let err = MomentFit::new(vec![0.5]).fit(&[0.0; 2], &[0.0; 2], m).unwrap_err();
    assert!(matches!(err, Error::DimensionMismatch { expected: 1, got: 2, .. }), "{err}");
    let err = MomentFit::new(vec![0.5, 0.5]).fit(&[0.0; 3], &[0.0; 2], m).unwrap_err();
    assert!(matches!(err, Error::DimensionMismatch { what: "log_base", expected: 3, got: 2 }));
    let err = MomentFit::new(vec![0.5, 0.5])
        .feature_names(vec!["only one".into()])
        .fit(&[0.0; 2], &[0.0; 2], m)
        .unwrap_err();
    assert!(matches!(err, Error::DimensionMismatch { what: "feature_names", .. }));
    assert!(RowMatrix::new(&f, 3, 2).is_err());
    let err = kl_target_model(&[0.0; 2], &[0.0; 2], &[0.0; 3], LogZ::SelfNormalized).unwrap_err();
    assert!(matches!(err, Error::DimensionMismatch { what: "log_model", .. }));
}

#[test]
fn no_sample_with_positive_weight() {
    let f = [0.0, 1.0];
    let err = MomentFit::new(vec![0.5])
        .fit(&[0.0; 2], &[f64::NEG_INFINITY; 2], binary_column(&f))
        .unwrap_err();
    assert!(matches!(err, Error::NoSupport { n_samples: 2, .. }));
}
