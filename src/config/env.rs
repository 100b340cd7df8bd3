//! `${NAME}` expansion in config string values.
//!
//! Only `${NAME}` and `$$` are special; any other `$` is kept as written, so values such as
//! regexes or prices need no escaping unless they contain `${` or `$$`.

use std::borrow::Cow;

/// Why a string could not be expanded. Messages name the variable, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("environment variable {0} is not set")]
    Missing(String),
    #[error("invalid environment variable name {0:?} in \"${{...}}\" (use letters, digits and _, not starting with a digit)")]
    BadName(String),
    #[error("unterminated \"${{\" (write $$ for a literal $)")]
    Unterminated,
}

/// Reads the process environment; the `env` argument `load_file` uses.
///
/// A variable that is not valid Unicode counts as unset, since it cannot go into a YAML string.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Expands `${NAME}` and `$$` in `text`, reporting every bad reference, not just the first.
///
/// Borrows when there is nothing to expand, which is the common case.
pub fn expand<'t>(
    text: &'t str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Cow<'t, str>, Vec<ExpandError>> {
    if !text.contains('$') {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let Some(end) = inner.find('}') else {
                errors.push(ExpandError::Unterminated);
                rest = "";
                break;
            };
            let name = &inner[..end];
            if !valid_name(name) {
                errors.push(ExpandError::BadName(name.to_string()));
            } else if let Some(value) = env(name) {
                out.push_str(&value);
            } else {
                errors.push(ExpandError::Missing(name.to_string()));
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(Cow::Owned(out))
    } else {
        Err(errors)
    }
}

/// POSIX-style names only, so a typo like `${OPENAI API KEY}` is reported rather than looked up.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
