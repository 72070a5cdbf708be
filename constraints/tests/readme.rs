//! The README's example config parses and builds.

use tilt_constraints::{ConstraintsSpec, Sample};

/// The first ```toml block of the README.
fn readme_toml() -> String {
    let readme = include_str!("../README.md");
    let start = readme.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let len = readme[start..].find("```").expect("the block's end");
    readme[start..start + len].to_owned()
}

#[test]
fn readme_example_parses_and_builds() {
    let spec: ConstraintsSpec = toml::from_str(&readme_toml()).unwrap();
    assert_eq!(spec.constraints.len(), 8);
    // The example's word list and scorer, in a config directory of their own.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("wordlists")).unwrap();
    std::fs::write(dir.path().join("wordlists/science.txt"), "physics\nchemistry\nbiology\n")
        .unwrap();
    let plan = spec.build(dir.path()).unwrap();
    let pointwise: Vec<&str> = plan.pointwise.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(pointwise, ["amazing", "positive and short"]);
    assert_eq!(plan.targets(), [0.5, 0.25, 0.3, 0.2, 0.9, 0.01]);

    // The pointwise part, without the external scorer.
    let tokens: Vec<u32> = (0..40).collect();
    let samples = [
        Sample::new("What an amazing, lovely day.", &tokens[..10], true),
        Sample::new("What an amazing, lovely day.", &tokens[..30], true),
        Sample::new("An amazing disaster, terrible.", &tokens[..10], true),
        Sample::new("A lovely day.", &tokens[..10], true),
    ];
    assert_eq!(plan.accepts(&samples).unwrap(), [true, false, false, false]);
    let science = &plan.moments[1];
    assert_eq!(science.name, "science");
    let texts = [Sample::text("Biology class"), Sample::text("biology class")];
    assert_eq!(science.feature.score(&texts).unwrap(), [0.0, 1.0]);
    let year = &plan.moments[2];
    let texts = [Sample::text("born in 1956"), Sample::text("in 2150"), Sample::text("in 1856")];
    assert_eq!(year.feature.score(&texts).unwrap(), [1.0, 0.0, 1.0]);
}
