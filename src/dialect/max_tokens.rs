//! The most output a request allows, read from its body without parsing it: what a budget
//! reservation needs (OpenAI `max_tokens` / `max_completion_tokens`, Responses
//! `max_output_tokens`, Anthropic `max_tokens`, Gemini `generationConfig.maxOutputTokens`).
//!
//! Hand-written because it runs on the request path of every governed request and a serde
//! scan of the whole body costs several thousand instructions; this is three prebuilt
//! `memmem` searches.

use memchr::memmem;

/// What a budget needs to know of a request body's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputAsk {
    /// The largest output limit named (`None`: the body names none).
    pub max_tokens: Option<u64>,
    /// How many answers (at least 1, the largest named, at most 128).
    pub choices: u64,
}

/// The most answers one request is reserved for.
pub const MAX_CHOICES: u64 = 128;

/// Names whose number limits each answer's output (each starts with `max`).
const LIMITS: [&[u8]; 4] = [
    b"max_completion_tokens",
    b"max_tokens",
    b"max_output_tokens",
    b"maxOutputTokens",
];

/// The searches, built once: `"max` (every limit), `"n"` and `"candidateCount"` (answers).
fn finders() -> &'static [memmem::Finder<'static>; 3] {
    static FINDERS: std::sync::OnceLock<[memmem::Finder<'static>; 3]> = std::sync::OnceLock::new();
    FINDERS.get_or_init(|| {
        [
            memmem::Finder::new(b"\"max"),
            memmem::Finder::new(b"\"n\""),
            memmem::Finder::new(b"\"candidateCount\""),
        ]
    })
}

/// Reads `OutputAsk` with three searches over the body. A quoted field name cannot occur
/// inside a JSON string (its quotes would be escaped there), so a quote followed by one of
/// the names and a closing quote is an object key. Every match counts and the largest value
/// wins, so a nested object with one of these names (a tool's schema) can only make the
/// reservation larger, never smaller than the request's own limit.
pub fn output_ask(body: &[u8]) -> OutputAsk {
    let [max, n, candidates] = finders();
    let mut max_tokens: Option<u64> = None;
    for at in max.find_iter(body) {
        let rest = &body[at + 1..];
        let found = LIMITS.iter().find_map(|name| {
            let after = rest.strip_prefix(*name)?.strip_prefix(b"\"")?;
            number_after(after)
        });
        if let Some(v) = found {
            max_tokens = Some(max_tokens.map_or(v, |m| m.max(v)));
        }
    }
    let choices = [(n, 3usize), (candidates, 16)]
        .iter()
        .flat_map(|(f, len)| {
            f.find_iter(body)
                .filter_map(move |at| number_after(&body[at + len..]))
        })
        .max()
        .unwrap_or(1);
    OutputAsk {
        max_tokens,
        choices: choices.clamp(1, MAX_CHOICES),
    }
}

/// `  : 123` → 123.
fn number_after(rest: &[u8]) -> Option<u64> {
    let mut i = 0;
    let skip = |i: &mut usize| {
        while rest
            .get(*i)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            *i += 1;
        }
    };
    skip(&mut i);
    if rest.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    skip(&mut i);
    let start = i;
    while rest.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if i == start || i - start > 12 {
        return None;
    }
    std::str::from_utf8(&rest[start..i]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_output_tokens(body: &[u8]) -> Option<u64> {
        output_ask(body).max_tokens
    }

    fn choices(body: &[u8]) -> u64 {
        output_ask(body).choices
    }

    #[test]
    fn every_dialects_field_is_read() {
        assert_eq!(
            max_output_tokens(br#"{"model":"m","max_tokens":300}"#),
            Some(300)
        );
        assert_eq!(
            max_output_tokens(br#"{"max_completion_tokens" : 70,"max_tokens":9}"#),
            Some(70)
        );
        assert_eq!(max_output_tokens(br#"{"max_output_tokens":5}"#), Some(5));
        assert_eq!(
            max_output_tokens(br#"{"generationConfig":{"maxOutputTokens": 64}}"#),
            Some(64)
        );
    }

    #[test]
    fn several_answers_multiply_the_output() {
        assert_eq!(choices(br#"{"model":"m","n":8}"#), 8);
        assert_eq!(choices(br#"{"generationConfig":{"candidateCount":2}}"#), 2);
        assert_eq!(choices(br#"{"model":"m"}"#), 1);
        assert_eq!(choices(br#"{"n":0}"#), 1);
    }

    #[test]
    fn text_that_mentions_a_field_is_not_read() {
        // Inside a string the quotes are escaped, so the name never matches there.
        let body = br#"{"messages":[{"content":"set \"max_tokens\":5 please"}]}"#;
        assert_eq!(max_output_tokens(body), None);
        // A key whose value is not a number is skipped for the next match.
        let body =
            br#"{"tools":[{"properties":{"max_tokens":{"type":"integer"}}}],"max_tokens":42}"#;
        assert_eq!(max_output_tokens(body), Some(42));
        // A nested smaller limit never lowers the request's own.
        let body = br#"{"tools":[{"input_schema":{"max_tokens":1}}],"max_tokens":64000}"#;
        assert_eq!(max_output_tokens(body), Some(64000));
        assert_eq!(max_output_tokens(br#"{"max_tokens":null}"#), None);
        assert_eq!(max_output_tokens(br#"{"max_tokens":99999999999999}"#), None);
    }
}
