//! `${NAME}` expansion.

use std::borrow::Cow;

use crate::config::env::*;
fn env(name: &str) -> Option<String> {
    match name {
        "KEY" => Some("sk-123".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

#[test]
fn expands_vars_and_dollar_escape() {
    assert_eq!(
        expand("Bearer ${KEY}", &env).as_deref(),
        Ok("Bearer sk-123")
    );
    assert_eq!(expand("$${KEY}", &env).as_deref(), Ok("${KEY}"));
    assert_eq!(expand("a$$b$$$", &env).as_deref(), Ok("a$b$$"));
    assert_eq!(expand("${EMPTY}x", &env).as_deref(), Ok("x"));
    assert_eq!(expand("$5 and $HOME", &env).as_deref(), Ok("$5 and $HOME"));
    assert!(matches!(expand("plain", &env), Ok(Cow::Borrowed("plain"))));
}

#[test]
fn reports_every_bad_reference() {
    let errs = expand("${A}-${KEY}-${B}-${1X}-${", &env).err();
    assert_eq!(
        errs,
        Some(vec![
            ExpandError::Missing("A".into()),
            ExpandError::Missing("B".into()),
            ExpandError::BadName("1X".into()),
            ExpandError::Unterminated,
        ])
    );
    assert_eq!(
        ExpandError::Missing("OPENAI_API_KEY".into()).to_string(),
        "environment variable OPENAI_API_KEY is not set"
    );
}
