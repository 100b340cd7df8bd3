//! The most output a request allows, read from its body without parsing it: what a budget
//! reservation needs (OpenAI `max_tokens` / `max_completion_tokens`, Responses
//! `max_output_tokens`, Anthropic `max_tokens`, Gemini `generationConfig.maxOutputTokens`).
//!
//! Hand-written because it runs on the request path of every governed request and a serde
//! scan of the whole body costs several thousand instructions; this is a few `memmem`
//! searches. A quoted field name cannot occur inside a JSON string (its quotes would be
//! escaped there), so a match is a real object key; the first one whose value is a plain
//! number is taken (a nested object with the same key and a number value could mislead it:
//! the reservation is an estimate, and the real cost is what gets charged).

use memchr::memmem;

const FIELDS: [&[u8]; 4] = [
    b"\"max_completion_tokens\"",
    b"\"max_tokens\"",
    b"\"max_output_tokens\"",
    b"\"maxOutputTokens\"",
];

/// The output-token limit the body asks for, if it names one. Every match counts and the
/// largest wins: a nested object with one of these names (a tool's schema) can only make the
/// reservation larger, never smaller than the request's own limit.
pub fn max_output_tokens(body: &[u8]) -> Option<u64> {
    FIELDS
        .iter()
        .flat_map(|f| {
            memmem::find_iter(body, f).filter_map(|at| number_after(&body[at + f.len()..]))
        })
        .max()
}

/// How many answers the request asks for (OpenAI `n`, Gemini `candidateCount`; at least 1,
/// the largest if several match, at most 128).
pub fn choices(body: &[u8]) -> u64 {
    [&b"\"n\""[..], b"\"candidateCount\""]
        .iter()
        .flat_map(|f| {
            memmem::find_iter(body, f).filter_map(|at| number_after(&body[at + f.len()..]))
        })
        .max()
        .unwrap_or(1)
        .clamp(1, 128)
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
