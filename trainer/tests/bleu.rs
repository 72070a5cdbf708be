//! Self-BLEU and Distinct-n against values computed with NLTK 3.9.1
//! (fixtures/make_bleu_fixture.py wrote fixtures/bleu_fixture.json).

use serde_json::Value;
use tilt_trainer::metrics::{SelfBleu, TokenUnit, TokenizedTexts, distinct_n};

const TOLERANCE: f64 = 1e-9;

fn fixture() -> Value {
    let text = include_str!("fixtures/bleu_fixture.json");
    serde_json::from_str(text).expect("fixture parses")
}

fn texts(case: &Value) -> Vec<String> {
    case["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect()
}

fn check_self_bleu(case: &Value, tokenized: &TokenizedTexts) -> usize {
    let name = case["name"].as_str().unwrap();
    let s = SelfBleu::new(tokenized, 5).expect("at least two texts");
    let mut checked = 0;
    for n in [3usize, 4, 5] {
        let expected = case["self_bleu"][n.to_string()].as_f64().unwrap();
        let got = s.score(n);
        assert!(
            (got - expected).abs() < TOLERANCE,
            "{name} Self-BLEU-{n}: {got} vs NLTK {expected}"
        );
        let per_text = case["per_text"][n.to_string()].as_array().unwrap();
        for (i, e) in per_text.iter().enumerate() {
            let (got, expected) = (s.sentence_bleu(i, n), e.as_f64().unwrap());
            assert!(
                (got - expected).abs() < TOLERANCE,
                "{name} text {i} BLEU-{n}: {got} vs {expected}"
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn self_bleu_and_distinct_on_words_match_nltk() {
    let f = fixture();
    assert_eq!(f["nltk_version"], "3.9.1");
    let mut checked = 0;
    for case in f["words"].as_array().unwrap() {
        let tokens: Vec<Vec<String>> =
            texts(case).iter().map(|t| t.split_whitespace().map(str::to_owned).collect()).collect();
        let tokenized = TokenizedTexts::from_tokens(&tokens);
        // The whitespace unit tokenises the same way.
        assert_eq!(tokenized, TokenizedTexts::new(&texts(case), TokenUnit::Whitespace));
        checked += check_self_bleu(case, &tokenized);
        for n in [1usize, 2, 3] {
            let expected = case["distinct"][n.to_string()].as_f64().unwrap();
            let got = distinct_n(&tokenized, n).unwrap();
            assert!(
                (got - expected).abs() < TOLERANCE,
                "{} Distinct-{n}: {got} vs {expected}",
                case["name"]
            );
        }
    }
    assert_eq!(checked, 3 * 98, "per-text values checked");
}

#[test]
fn self_bleu_on_chars_matches_nltk_on_untokenised_strings() {
    let f = fixture();
    for case in f["chars"].as_array().unwrap() {
        let tokenized = TokenizedTexts::new(&texts(case), TokenUnit::Chars);
        check_self_bleu(case, &tokenized);
    }
}

#[test]
fn self_bleu_of_500_texts_runs_from_one_tokenisation() {
    // 500 texts of 40 words from a 300-word vocabulary (a deterministic LCG): the shape of the
    // paper's evaluation. Checks the result is a valid mean and matches the per-text scores.
    let mut state = 12u64;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let texts: Vec<String> = (0..500)
        .map(|_| (0..40).map(|_| format!("w{}", next() % 300)).collect::<Vec<_>>().join(" "))
        .collect();
    let tokenized = TokenizedTexts::new(&texts, TokenUnit::Whitespace);
    let s = SelfBleu::new(&tokenized, 5).unwrap();
    for n in [3, 4, 5] {
        let mean = s.score(n);
        let per: f64 = (0..500).map(|i| s.sentence_bleu(i, n)).sum::<f64>() / 500.0;
        assert!((mean - per).abs() < 1e-12 && (0.0..1.0).contains(&mean), "{n}: {mean}");
    }
    assert!(s.score(3) > s.score(4) && s.score(4) > s.score(5));
}
