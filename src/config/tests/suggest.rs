//! "Did you mean" suggestions.

use crate::config::suggest::*;
#[test]
fn ranks_typo_first() {
    let got = suggest("opnai", ["mock", "openrouter", "openai", "groq"]);
    assert_eq!(got.first().map(String::as_str), Some("openai"));
}

#[test]
fn case_insensitive_and_exact_first() {
    assert_eq!(
        suggest("GPT-4O", ["gpt-4o-mini", "gpt-4o"]),
        ["gpt-4o", "gpt-4o-mini"]
    );
}

#[test]
fn substring_and_prefix() {
    assert_eq!(
        suggest("gpt-4o", ["claude-3", "gpt-4o-mini-2024-07-18"]),
        ["gpt-4o-mini-2024-07-18"]
    );
    assert_eq!(suggest("base_ur", ["kind", "base_url"]), ["base_url"]);
}

#[test]
fn nothing_close_and_limits() {
    assert!(suggest("zzz", ["openai", "mock"]).is_empty());
    assert!(suggest("", ["openai"]).is_empty());
    let many = suggest("model", ["model1", "model2", "model3", "model4", "model1"]);
    assert_eq!(many, ["model1", "model2", "model3"]);
}

#[test]
fn did_you_mean_formats() {
    assert_eq!(
        did_you_mean("kidn", ["kind", "keys"]),
        " (did you mean \"kind\"?)"
    );
    assert_eq!(did_you_mean("xyzzy", ["kind"]), "");
}

#[test]
fn edit_distance_basics() {
    let d = |a: &str, b: &str| {
        let a: Vec<char> = a.chars().collect();
        let b: Vec<char> = b.chars().collect();
        edit_distance(&a, &b, &mut Default::default())
    };
    assert_eq!(d("kitten", "sitting"), 3);
    assert_eq!(d("", "abc"), 3);
    assert_eq!(d("abc", ""), 3);
    assert_eq!(d("same", "same"), 0);
    assert_eq!(d("kidn", "kind"), 1);
    assert_eq!(d("ab", "ba"), 1);
}
