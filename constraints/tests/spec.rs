//! The TOML constraint spec: parsing, building, and every bad spec naming its field.

use std::path::Path;

use tilt_constraints::{
    ConstraintSpec, ConstraintsSpec, Error, FeatureSpec, GenderClass, Sample, build,
};

fn parse(text: &str) -> Result<ConstraintsSpec, toml::de::Error> {
    toml::from_str(text)
}

/// The error message of parsing and building `text` (which must fail), in `dir`.
fn error_in(dir: &Path, text: &str) -> String {
    match parse(text) {
        Err(e) => e.to_string(),
        Ok(spec) => spec.build(dir).expect_err("the spec should be rejected").to_string(),
    }
}

fn error(text: &str) -> String {
    error_in(Path::new("."), text)
}

/// Asserts that `message` names the constraint and every one of `needles`.
#[track_caller]
fn assert_names(message: &str, constraint: &str, needles: &[&str]) {
    assert!(message.contains(&format!("constraint `{constraint}`")), "no constraint in: {message}");
    for needle in needles {
        assert!(message.contains(needle), "`{needle}` not in: {message}");
    }
}

#[test]
fn parses_every_kind() {
    let spec = parse(
        r#"
        [[constraints]]
        name = "w"
        feature = { kind = "word", word = "WikiLeaks" }
        pointwise = true
        [[constraints]]
        name = "l"
        feature = { kind = "wordlist", words = ["a", "b"], case_sensitive = false }
        moment = 0.5
        [[constraints]]
        name = "r"
        feature = { kind = "regex", pattern = '\d' }
        moment = 0.5
        [[constraints]]
        name = "g"
        feature = { kind = "gender", class = "other" }
        moment = 0.5
        [[constraints]]
        name = "n"
        feature = { kind = "length" }
        moment = 30
        [[constraints]]
        name = "e"
        feature = { kind = "eos" }
        moment = 0.5
        [[constraints]]
        name = "s"
        feature = { kind = "sentiment", score = "negative" }
        moment = 0.1
        [[constraints]]
        name = "t"
        feature = { kind = "threshold", at = 0.5, feature = { kind = "sentiment" } }
        pointwise = true
        [[constraints]]
        name = "a"
        feature = { kind = "and", features = [{ kind = "eos" }, { kind = "not", feature = { kind = "eos" } }] }
        pointwise = true
        [[constraints]]
        name = "o"
        feature = { kind = "or", features = [{ kind = "eos" }] }
        moment = 0.5
        [[constraints]]
        name = "x"
        feature = { kind = "external", command = ["python3", "echo_len.py"], timeout_s = 1.5, binary = true, allow_nan = true }
        moment = 0.5
        "#,
    )
    .unwrap();
    let c = &spec.constraints;
    assert_eq!(c.len(), 11);
    assert_eq!(
        c[0],
        ConstraintSpec {
            name: "w".into(),
            feature: FeatureSpec::Word { word: "WikiLeaks".into(), case_sensitive: true },
            pointwise: true,
            moment: None,
        }
    );
    assert_eq!(c[3].feature, FeatureSpec::Gender { class: GenderClass::Other });
    assert_eq!(c[4].moment, Some(30.0));
    assert_eq!(
        c[10].feature,
        FeatureSpec::External {
            command: vec!["python3".into(), "echo_len.py".into()],
            timeout_s: 1.5,
            binary: true,
            allow_nan: true,
        }
    );
    let plan = spec.build(&crate::scripts()).unwrap();
    let names = |v: Vec<&str>| v.join(",");
    assert_eq!(names(plan.pointwise.iter().map(|c| c.name.as_str()).collect()), "w,t,a");
    assert_eq!(names(plan.moments.iter().map(|c| c.name.as_str()).collect()), "l,r,g,n,e,s,o,x");
    assert_eq!(plan.targets(), [0.5, 0.5, 0.5, 30.0, 0.5, 0.1, 0.5, 0.5]);
}

#[test]
fn defaults() {
    let spec = parse(
        r#"
        [[constraints]]
        name = "x"
        feature = { kind = "external", command = ["python3", "clf.py"] }
        moment = 0.5
        [[constraints]]
        name = "w"
        feature = { kind = "word", word = "amazing" }
        pointwise = true
        "#,
    )
    .unwrap();
    assert_eq!(
        spec.constraints[0].feature,
        FeatureSpec::External {
            command: vec!["python3".into(), "clf.py".into()],
            timeout_s: 60.0,
            binary: false,
            allow_nan: false,
        }
    );
    assert_eq!(
        spec.constraints[1].feature,
        FeatureSpec::Word { word: "amazing".into(), case_sensitive: true }
    );
    assert!(!spec.constraints[0].pointwise);
    assert_eq!(parse("").unwrap(), ConstraintsSpec::default());
}

#[test]
fn round_trips_through_toml() {
    let text = r#"
        [[constraints]]
        name = "pos"
        pointwise = true
        [constraints.feature]
        kind = "threshold"
        at = 0.05
        feature = { kind = "sentiment" }
        [[constraints]]
        name = "w"
        feature = { kind = "wordlist", file = "science.txt" }
        moment = 0.25
    "#;
    let spec = parse(text).unwrap();
    let again: ConstraintsSpec = toml::from_str(&toml::to_string(&spec).unwrap()).unwrap();
    assert_eq!(again, spec);
}

#[test]
fn builds_a_hybrid_plan_that_scores() {
    let plan = parse(
        r#"
        [[constraints]]
        name = "amazing"
        feature = { kind = "word", word = "amazing", case_sensitive = false }
        pointwise = true
        [[constraints]]
        name = "female"
        feature = { kind = "gender", class = "female" }
        moment = 0.5
        [[constraints]]
        name = "long"
        feature = { kind = "length" }
        moment = 3.5
        "#,
    )
    .unwrap()
    .build(Path::new("."))
    .unwrap();
    let samples = [
        Sample::new("She is amazing.", &[1, 2, 3], true),
        Sample::new("He is Amazing!", &[1, 2, 3, 4], false),
        Sample::new("She is amazingly good.", &[1], false),
    ];
    assert_eq!(plan.accepts(&samples).unwrap(), [true, true, false]);
    assert_eq!(plan.log_b(&samples).unwrap(), [0.0, 0.0, f64::NEG_INFINITY]);
    assert_eq!(plan.moment_features(&samples).unwrap(), [vec![1., 0., 1.], vec![3., 4., 1.]]);
    assert_eq!(plan.moment_matrix(&samples).unwrap(), [1., 3., 0., 4., 1., 1.]);
    assert_eq!(plan.moment_names(), ["female", "long"]);
    assert_eq!(plan.targets(), [0.5, 3.5]);
}

#[test]
fn moments_one_and_zero_of_binary_features_become_pointwise() {
    let plan = parse(
        r#"
        [[constraints]]
        name = "all sports"
        feature = { kind = "word", word = "football" }
        moment = 1.0
        [[constraints]]
        name = "no politics"
        feature = { kind = "word", word = "election" }
        moment = 0
        "#,
    )
    .unwrap()
    .build(Path::new("."))
    .unwrap();
    assert!(plan.moments.is_empty());
    assert_eq!(plan.pointwise.len(), 2);
    let samples = [
        Sample::text("football"),
        Sample::text("football election"),
        Sample::text("election"),
        Sample::text("chess"),
    ];
    assert_eq!(plan.accepts(&samples).unwrap(), [true, false, false, false]);
}

#[test]
fn an_empty_plan_accepts_everything() {
    let plan = build(&[], Path::new(".")).unwrap();
    let samples = [Sample::text("x"), Sample::text("y")];
    assert_eq!(plan.accepts(&samples).unwrap(), [true, true]);
    assert!(plan.moment_features(&samples).unwrap().is_empty());
    assert!(plan.moment_matrix(&samples).unwrap().is_empty());
}

#[test]
fn unknown_kind_names_the_constraint() {
    let msg = error(
        r#"
        [[constraints]]
        moment = 0.5
        feature = { kind = "gendr", class = "female" }
        name = "female"
        "#,
    );
    assert_names(&msg, "female", &["field `feature`", "unknown variant `gendr`", "gender"]);
}

#[test]
fn unknown_fields_are_rejected() {
    let msg = error(
        r#"
        [[constraints]]
        name = "amazing"
        feature = { kind = "word", word = "amazing", case_insensitive = true }
        pointwise = true
        "#,
    );
    assert_names(&msg, "amazing", &["field `feature`", "case_insensitive"]);
    let msg = error(
        r#"
        [[constraints]]
        name = "female"
        feature = { kind = "gender", class = "female" }
        moment_target = 0.5
        "#,
    );
    assert_names(&msg, "female", &["moment_target"]);
    let msg = error("[[constraint]]\nname = \"x\"\n");
    assert!(msg.contains("constraint"), "{msg}");
}

#[test]
fn bad_field_values_name_the_field() {
    let msg = error(
        r#"
        [[constraints]]
        name = "g"
        feature = { kind = "gender", class = "woman" }
        moment = 0.5
        "#,
    );
    assert_names(&msg, "g", &["field `feature`", "woman"]);
    let msg = error(
        r#"
        [[constraints]]
        name = "g"
        feature = { kind = "gender", class = "female" }
        moment = "half"
        "#,
    );
    assert_names(&msg, "g", &["field `moment`", "string"]);
    let msg = error(
        r#"
        [[constraints]]
        feature = { kind = "gender", class = "female" }
        moment = 0.5
        "#,
    );
    assert!(msg.contains("field `name`: missing"), "{msg}");
    let msg = error("[[constraints]]\nname = \"f\"\nmoment = 0.5\n");
    assert_names(&msg, "f", &["field `feature`: missing"]);
}

#[test]
fn missing_word_list_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let msg = error_in(
        dir.path(),
        r#"
        [[constraints]]
        name = "science"
        feature = { kind = "wordlist", file = "lists/science.txt" }
        moment = 0.25
        "#,
    );
    assert_names(&msg, "science", &["field `feature.file`", "lists/science.txt"]);
    assert!(msg.contains(&dir.path().display().to_string()), "path not resolved: {msg}");
}

#[test]
fn word_list_file_is_relative_to_the_base_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lists")).unwrap();
    std::fs::write(dir.path().join("lists/science.txt"), "physics\nchemistry\n").unwrap();
    let plan = parse(
        r#"
        [[constraints]]
        name = "science"
        feature = { kind = "wordlist", file = "lists/science.txt" }
        moment = 0.25
        "#,
    )
    .unwrap()
    .build(dir.path())
    .unwrap();
    let samples = [Sample::text("Chemistry"), Sample::text("chemistry!")];
    assert_eq!(plan.moment_features(&samples).unwrap(), [[0.0, 1.0]]);
}

#[test]
fn word_list_needs_words_or_file() {
    let both = r#"
        [[constraints]]
        name = "l"
        feature = { kind = "wordlist", words = ["a"], file = "a.txt" }
        moment = 0.5
    "#;
    assert_names(&error(both), "l", &["field `feature.file`", "not both"]);
    let neither = r#"
        [[constraints]]
        name = "l"
        feature = { kind = "wordlist" }
        moment = 0.5
    "#;
    assert_names(&error(neither), "l", &["field `feature.words`", "missing"]);
    let empty = r#"
        [[constraints]]
        name = "l"
        feature = { kind = "wordlist", words = [] }
        moment = 0.5
    "#;
    assert_names(&error(empty), "l", &["field `feature.words`", "empty"]);
    let blank = r#"
        [[constraints]]
        name = "l"
        feature = { kind = "wordlist", words = ["a", " "] }
        moment = 0.5
    "#;
    assert_names(&error(blank), "l", &["field `feature.words`", "empty word"]);
}

#[test]
fn invalid_regex_names_the_pattern() {
    let msg = error(
        r#"
        [[constraints]]
        name = "year"
        feature = { kind = "regex", pattern = '(19\d\d' }
        moment = 0.3
        "#,
    );
    assert_names(&msg, "year", &["field `feature.pattern`", r"(19\d\d"]);
}

#[test]
fn empty_word_is_rejected() {
    let msg = error(
        r#"
        [[constraints]]
        name = "amazing"
        feature = { kind = "word", word = "" }
        pointwise = true
        "#,
    );
    assert_names(&msg, "amazing", &["field `feature.word`", "empty"]);
}

#[test]
fn binary_moment_outside_unit_interval_is_rejected() {
    for bad in ["1.5", "-0.1", "nan", "inf"] {
        let msg = error(&format!(
            "[[constraints]]\nname = \"female\"\nfeature = {{ kind = \"gender\", class = \"female\" }}\nmoment = {bad}\n"
        ));
        assert_names(&msg, "female", &["field `moment`"]);
    }
    let msg = error("[[constraints]]\nname = \"f\"\nfeature = { kind = \"eos\" }\nmoment = 1.5\n");
    assert_names(&msg, "f", &["field `moment`", "1.5", "[0, 1]"]);
}

#[test]
fn real_moment_outside_the_feature_range_is_rejected() {
    let msg =
        error("[[constraints]]\nname = \"s\"\nfeature = { kind = \"sentiment\" }\nmoment = -1.5\n");
    assert_names(&msg, "s", &["field `moment`", "[-1, 1]"]);
    let msg =
        error("[[constraints]]\nname = \"n\"\nfeature = { kind = \"length\" }\nmoment = -1\n");
    assert_names(&msg, "n", &["field `moment`"]);
    // Unbounded real features accept any finite target.
    let ok = "[[constraints]]\nname = \"x\"\nfeature = { kind = \"external\", command = [\"python3\"] }\nmoment = -7.5\n";
    assert_eq!(parse(ok).unwrap().build(Path::new(".")).unwrap().targets(), [-7.5]);
}

#[test]
fn real_moment_on_a_finite_bound_of_the_range_is_rejected() {
    let spec = |feature: &str, moment: &str| {
        format!("[[constraints]]\nname = \"s\"\nfeature = {{ {feature} }}\nmoment = {moment}\n")
    };
    for (feature, moment) in [
        (r#"kind = "sentiment""#, "1.0"),
        (r#"kind = "sentiment""#, "-1"),
        (r#"kind = "sentiment", score = "positive""#, "0"),
        (r#"kind = "length""#, "0"),
    ] {
        let msg = error(&spec(feature, moment));
        assert_names(&msg, "s", &["field `moment`", "edge", "pointwise"]);
    }
    let inside = parse(&spec(r#"kind = "sentiment""#, "0.99")).unwrap();
    assert_eq!(inside.build(Path::new(".")).unwrap().targets(), [0.99]);
}

#[test]
fn pointwise_or_moment_exactly_once() {
    let neither = "[[constraints]]\nname = \"e\"\nfeature = { kind = \"eos\" }\n";
    assert_names(&error(neither), "e", &["field `moment`", "pointwise = true"]);
    let explicit_false =
        "[[constraints]]\nname = \"e\"\nfeature = { kind = \"eos\" }\npointwise = false\n";
    assert_names(&error(explicit_false), "e", &["field `moment`"]);
    let both = "[[constraints]]\nname = \"e\"\nfeature = { kind = \"eos\" }\npointwise = true\nmoment = 0.5\n";
    assert_names(&error(both), "e", &["field `moment`", "not both"]);
}

#[test]
fn pointwise_needs_a_binary_feature() {
    let msg = error(
        "[[constraints]]\nname = \"happy\"\nfeature = { kind = \"sentiment\" }\npointwise = true\n",
    );
    assert_names(&msg, "happy", &["field `pointwise`", "binary", "threshold"]);
}

#[test]
fn names_are_unique_and_non_empty() {
    let dup = r#"
        [[constraints]]
        name = "a"
        feature = { kind = "eos" }
        moment = 0.5
        [[constraints]]
        name = "a"
        feature = { kind = "length" }
        moment = 3
    "#;
    assert_names(&error(dup), "a", &["field `name`", "same name"]);
    let empty = "[[constraints]]\nname = \" \"\nfeature = { kind = \"eos\" }\nmoment = 0.5\n";
    assert_names(&error(empty), "#0", &["field `name`", "empty"]);
}

#[test]
fn threshold_errors() {
    let missing_feature = r#"
        [[constraints]]
        name = "t"
        feature = { kind = "threshold", at = 0.5 }
        pointwise = true
    "#;
    assert_names(&error(missing_feature), "t", &["field `feature`", "missing field `feature`"]);
    let missing_at = r#"
        [[constraints]]
        name = "t"
        feature = { kind = "threshold", feature = { kind = "length" } }
        pointwise = true
    "#;
    assert_names(&error(missing_at), "t", &["field `feature`", "missing field `at`"]);
    let nan_at = r#"
        [[constraints]]
        name = "t"
        feature = { kind = "threshold", at = nan, feature = { kind = "length" } }
        pointwise = true
    "#;
    assert_names(&error(nan_at), "t", &["field `feature.at`", "finite"]);
    let bad_inner = r#"
        [[constraints]]
        name = "t"
        feature = { kind = "threshold", at = 1, feature = { kind = "regex", pattern = "[" } }
        pointwise = true
    "#;
    assert_names(&error(bad_inner), "t", &["field `feature.feature.pattern`", "`[`"]);
}

#[test]
fn combinator_errors_name_the_nested_field() {
    let real_in_and = r#"
        [[constraints]]
        name = "c"
        feature = { kind = "and", features = [{ kind = "eos" }, { kind = "length" }] }
        pointwise = true
    "#;
    assert_names(&error(real_in_and), "c", &["field `feature.features[1]`", "length in tokens"]);
    let empty_or = r#"
        [[constraints]]
        name = "c"
        feature = { kind = "or", features = [] }
        pointwise = true
    "#;
    assert_names(&error(empty_or), "c", &["field `feature.features`", "at least one"]);
    let real_not = r#"
        [[constraints]]
        name = "c"
        feature = { kind = "not", feature = { kind = "sentiment" } }
        pointwise = true
    "#;
    assert_names(&error(real_not), "c", &["field `feature.feature`", "VADER"]);
    let deep = r#"
        [[constraints]]
        name = "c"
        feature = { kind = "or", features = [{ kind = "not", feature = { kind = "word", word = " " } }] }
        pointwise = true
    "#;
    assert_names(&error(deep), "c", &["field `feature.features[0].feature.word`"]);
}

#[test]
fn external_spec_errors() {
    let missing = r#"
        [[constraints]]
        name = "clf"
        feature = { kind = "external", command = ["no-such-scorer-tilt", "x.py"] }
        moment = 0.5
    "#;
    assert_names(
        &error(missing),
        "clf",
        &["field `feature.command`", "no-such-scorer-tilt", "PATH"],
    );
    let missing_path = r#"
        [[constraints]]
        name = "clf"
        feature = { kind = "external", command = ["./bin/score"] }
        moment = 0.5
    "#;
    assert_names(&error(missing_path), "clf", &["field `feature.command`", "bin/score"]);
    let empty = r#"
        [[constraints]]
        name = "clf"
        feature = { kind = "external", command = [] }
        moment = 0.5
    "#;
    assert_names(&error(empty), "clf", &["field `feature.command`", "empty"]);
    for timeout in ["0", "-1", "nan", "1e300"] {
        let bad = format!(
            "[[constraints]]\nname = \"clf\"\nfeature = {{ kind = \"external\", command = [\"python3\"], timeout_s = {timeout} }}\nmoment = 0.5\n"
        );
        assert_names(&error(&bad), "clf", &["field `feature.timeout_s`"]);
    }
    let real_pointwise = r#"
        [[constraints]]
        name = "clf"
        feature = { kind = "external", command = ["python3"] }
        pointwise = true
    "#;
    assert_names(&error(real_pointwise), "clf", &["field `pointwise`"]);
}

#[test]
fn feature_spec_builds_alone() {
    let spec = FeatureSpec::Regex { pattern: "(".into() };
    let err = spec.build("probe", Path::new(".")).unwrap_err();
    assert!(matches!(&err, Error::Spec { constraint, field, .. }
        if constraint == "probe" && field == "feature.pattern"));
    let f = FeatureSpec::Length {}.build("len", Path::new(".")).unwrap();
    assert_eq!(f.score(&[Sample::new("", &[1, 2], false)]).unwrap(), [2.0]);
}

#[test]
fn json_specs_parse_and_name_errors_too() {
    let ok: ConstraintsSpec = serde_json::from_str(
        r#"{"constraints": [{"name": "f", "moment": 0.5,
            "feature": {"kind": "gender", "class": "female"}}]}"#,
    )
    .unwrap();
    assert_eq!(ok.constraints[0].feature, FeatureSpec::Gender { class: GenderClass::Female });
    let bad = [
        (r#"{"name": "f", "moment": 0.5, "feature": {"kind": "gendr"}}"#, "field `feature`"),
        (r#"{"name": "f", "moment": "half", "feature": {"kind": "eos"}}"#, "field `moment`"),
        (r#"{"feature": {"kind": "eos"}, "name": "f", "extra": 1}"#, "field `extra`"),
    ];
    for (text, field) in bad {
        let msg = serde_json::from_str::<ConstraintSpec>(text).unwrap_err().to_string();
        assert_names(&msg, "f", &[field]);
    }
}

#[test]
fn plans_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<tilt_constraints::Plan>();
    shareable::<Box<dyn tilt_constraints::Feature>>();
}
