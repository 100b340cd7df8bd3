//! Tests of the config module, kept apart from the code: whole files (`parse.rs`), one rule at
//! a time (`rules.rs`), and the helpers (`env.rs`, `suggest.rs`, `presets.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod env;
mod logs;
mod parse;
mod presets;
mod rules;
mod suggest;

use super::ConfigError;

/// The problems as `path: message` (without the location prefix), in the order reported.
fn lines(e: &ConfigError) -> Vec<String> {
    e.problems()
        .iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect()
}
