//! The preset table.

use crate::config::presets::*;
#[test]
fn find_known_and_unknown() {
    let groq = find("groq").map(|p| (p.base_url, p.key_env));
    assert_eq!(
        groq,
        Some(("https://api.groq.com/openai/v1", "GROQ_API_KEY"))
    );
    assert!(find("Groq").is_none());
    assert!(find("nope").is_none());
    assert_eq!(find("ollama").map(|p| p.key_env), Some(""));
}

#[test]
fn presets_are_well_formed() {
    for (i, p) in PRESETS.iter().enumerate() {
        assert_eq!(p.id, p.id.to_ascii_lowercase());
        assert!(!p.base_url.ends_with('/'), "{}", p.id);
        assert!(
            p.base_url.starts_with("https://") || p.base_url.starts_with("http://127.0.0.1"),
            "{}",
            p.id
        );
        assert!(PRESETS[..i].iter().all(|q| q.id != p.id), "dup {}", p.id);
    }
}
