//! Tests of config decoding and validation, kept apart from the code: whole files
//! (`parse.rs`) and one rule at a time (`rules.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod parse;
mod rules;

use super::ConfigError;

/// The problems as `path: message` (without the location prefix), in the order reported.
fn lines(e: &ConfigError) -> Vec<String> {
    e.problems()
        .iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect()
}
