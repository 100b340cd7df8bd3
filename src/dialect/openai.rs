//! The OpenAI dialect: reading routing fields from a request body without building a DOM, splicing
//! the few edits the gateway makes, and the error object.
//!
//! Must never re-serialise a body: edits are byte splices of the original, so unknown fields,
//! key order and whitespace survive untouched.

use std::borrow::Cow;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::max_tokens::{OutputAsk, MAX_CHOICES};
use crate::error::GatewayError;

/// What routing needs from a request body, with the byte spans needed to edit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFields<'a> {
    pub model: Cow<'a, str>,
    pub model_span: Range<usize>,
    pub stream: bool,
    /// `Some(true)` only when the client set `stream_options.include_usage: true`.
    pub include_usage: bool,
    /// Span of the `stream_options` value, when present.
    pub stream_options_span: Option<Range<usize>>,
    /// The values of `max_tokens`, `max_completion_tokens`, `max_output_tokens` and `n`,
    /// found in the same pass (top level only) and read as numbers only when a budget asks
    /// ([`RequestFields::output`]).
    output_values: [Option<&'a str>; 4],
}

impl RequestFields<'_> {
    /// The output the request may ask for, for budget reservations.
    pub fn output(&self) -> OutputAsk {
        let [max_tokens, max_completion_tokens, max_output_tokens, n] = self.output_values;
        OutputAsk {
            max_tokens: [max_tokens, max_completion_tokens, max_output_tokens]
                .into_iter()
                .filter_map(count)
                .max(),
            choices: count(n).unwrap_or(1).clamp(1, MAX_CHOICES),
        }
    }
}

/// Borrowed view of the top-level keys we care about. serde_json skips every other value without
/// allocating (`IgnoredAny`), and nested look-alike keys are never confused with top-level ones
/// because they live inside values we skip.
#[derive(Deserialize)]
struct TopLevel<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    stream: Option<&'a RawValue>,
    /// Kept even when `null` (serde's `Option` would turn `null` into `None`, and the gateway
    /// would then add a second `stream_options` key instead of replacing this one).
    #[serde(borrow, default, deserialize_with = "raw_keep_null")]
    stream_options: Option<&'a RawValue>,
    // Output limits (Chat Completions, Messages, Responses) and answers per request (`n`).
    #[serde(borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_output_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    n: Option<&'a RawValue>,
}

/// A non-negative number, rounded up (`300.0` and `1e4` count; anything else reads as absent:
/// the provider judges it).
fn count(raw: Option<&str>) -> Option<u64> {
    let text = raw?;
    text.parse().ok().or_else(|| {
        let f: f64 = text.parse().ok()?;
        // Saturates at u64::MAX; NaN and infinities do not parse from JSON numbers.
        (f >= 0.0).then(|| f.ceil() as u64)
    })
}

fn raw_keep_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue as Deserialize>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

fn span_of(body: &[u8], raw: &RawValue) -> Range<usize> {
    // `raw` borrows from `body` (serde_json guarantees this for `from_slice` with borrowed
    // RawValue), so its offset is a pointer difference.
    let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
    start..start + raw.get().len()
}

/// Reads `model`, `stream` and `stream_options` from the top level of a JSON request body.
pub fn read_request_fields(body: &[u8]) -> Result<RequestFields<'_>, GatewayError> {
    let top: TopLevel<'_> = serde_json::from_slice(body).map_err(|e| {
        GatewayError::bad_request(
            format!("We could not parse the JSON body of your request: {e}"),
            None,
        )
    })?;
    let raw_model = top.model.ok_or_else(|| {
        GatewayError::bad_request("you must provide a model parameter", Some("model"))
    })?;
    let model: Cow<'_, str> = serde_json::from_str(raw_model.get()).map_err(|_| {
        GatewayError::bad_request("`model` must be a non-empty string", Some("model"))
    })?;
    if model.is_empty() {
        return Err(GatewayError::bad_request(
            "`model` must be a non-empty string",
            Some("model"),
        ));
    }
    let stream = match top.stream.map(RawValue::get) {
        None | Some("null") | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(GatewayError::bad_request(
                "`stream` must be a boolean",
                Some("stream"),
            ))
        }
    };
    let mut include_usage = false;
    let mut stream_options_span = None;
    if let Some(raw) = top.stream_options {
        if raw.get() != "null" {
            let opts: StreamOptions = serde_json::from_str(raw.get()).map_err(|_| {
                GatewayError::bad_request(
                    "`stream_options` must be an object",
                    Some("stream_options"),
                )
            })?;
            include_usage = opts.include_usage == Some(true);
        }
        stream_options_span = Some(span_of(body, raw));
    }
    Ok(RequestFields {
        output_values: [
            top.max_tokens,
            top.max_completion_tokens,
            top.max_output_tokens,
            top.n,
        ]
        .map(|v| v.map(RawValue::get)),
        model_span: span_of(body, raw_model),
        model,
        stream,
        include_usage,
        stream_options_span,
    })
}

/// The edits the gateway may make to an OpenAI request body.
#[derive(Debug, Default, Clone, Copy)]
pub struct BodyEdits<'m> {
    /// Replace the top-level `model` value with this name.
    pub model: Option<&'m str>,
    /// Make sure `stream_options.include_usage` is true (for metering).
    pub inject_include_usage: bool,
}

impl BodyEdits<'_> {
    pub fn is_empty(&self) -> bool {
        self.model.is_none() && !self.inject_include_usage
    }
}

const INJECTED_STREAM_OPTIONS: &[u8] = br#""stream_options":{"include_usage":true}"#;

/// Applies `edits` to `body` as byte splices; returns the body unchanged (no copy) when there is
/// nothing to do.
pub fn apply_edits(
    body: &Bytes,
    fields: &RequestFields<'_>,
    edits: BodyEdits<'_>,
) -> Result<Bytes, GatewayError> {
    if edits.is_empty() {
        return Ok(body.clone());
    }
    // Splices as (span to replace, replacement), applied in offset order.
    let mut splices: Vec<(Range<usize>, Vec<u8>)> = Vec::with_capacity(2);
    if let Some(model) = edits.model {
        let encoded = serde_json::to_vec(model)
            .map_err(|e| GatewayError::Internal(format!("encoding model name: {e}")))?;
        splices.push((fields.model_span.clone(), encoded));
    }
    if edits.inject_include_usage && !fields.include_usage {
        match &fields.stream_options_span {
            Some(span) => {
                let raw = &body[span.clone()];
                let mut map: serde_json::Map<String, serde_json::Value> = if raw == b"null" {
                    serde_json::Map::new()
                } else {
                    serde_json::from_slice(raw).map_err(|_| {
                        GatewayError::bad_request(
                            "`stream_options` must be an object",
                            Some("stream_options"),
                        )
                    })?
                };
                map.insert("include_usage".into(), serde_json::Value::Bool(true));
                let encoded = serde_json::to_vec(&map)
                    .map_err(|e| GatewayError::Internal(format!("encoding stream_options: {e}")))?;
                splices.push((span.clone(), encoded));
            }
            None => {
                // Insert as the first member, right after the opening brace; the body was
                // already parsed as an object with at least `model`, so a comma is always right.
                let open = body
                    .iter()
                    .position(|&b| b == b'{')
                    .ok_or_else(|| GatewayError::bad_request("body must be a JSON object", None))?;
                let mut ins = INJECTED_STREAM_OPTIONS.to_vec();
                ins.push(b',');
                splices.push((open + 1..open + 1, ins));
            }
        }
    }
    splices.sort_by_key(|(span, _)| span.start);
    let extra: usize = splices.iter().map(|(_, r)| r.len()).sum();
    let mut out = BytesMut::with_capacity(body.len() + extra);
    let mut at = 0;
    for (span, replacement) in &splices {
        out.put_slice(&body[at..span.start]);
        out.put_slice(replacement);
        at = span.end;
    }
    out.put_slice(&body[at..]);
    Ok(out.freeze())
}

/// Renders an OpenAI error object: `{"error":{"message","type","param","code"}}`.
pub fn error_body(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Bytes {
    let v = serde_json::json!({
        "error": { "message": message, "type": kind, "param": param, "code": code }
    });
    Bytes::from(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(body: &str) -> RequestFields<'_> {
        read_request_fields(body.as_bytes()).unwrap()
    }

    #[test]
    fn reads_top_level_fields_in_any_order() {
        let f = fields(r#"{"stream":true,"messages":[],"model":"gpt-4o"}"#);
        assert_eq!(f.model, "gpt-4o");
        assert!(f.stream);
        assert!(!f.include_usage);
    }

    #[test]
    fn nested_look_alikes_do_not_confuse_the_scan() {
        let body = r#"{"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"model":{"type":"string"},"stream":{"type":"boolean"}}}}}],
            "messages":[{"role":"user","content":"{\"model\":\"evil\",\"stream\":true}"},{"role":"user","content":"x","stream":true,"model":"nested"}],
            "model":"real-model"}"#;
        let f = fields(body);
        assert_eq!(f.model, "real-model");
        assert!(!f.stream);
        assert_eq!(&body[f.model_span.clone()], r#""real-model""#);
    }

    #[test]
    fn output_limits_and_answers_are_read_at_the_top_level_only() {
        let f = fields(
            r#"{"model":"m","tools":[{"input_schema":{"max_tokens":1,"n":9}}],"max_tokens":300,"max_completion_tokens":700,"n":3}"#,
        );
        assert_eq!(f.output().max_tokens, Some(700));
        assert_eq!(f.output().choices, 3);
        let f = fields(r#"{"model":"m","max_output_tokens":64}"#);
        assert_eq!((f.output().max_tokens, f.output().choices), (Some(64), 1));
        // Absent, null, or not a non-negative integer: the provider judges it.
        for body in [
            r#"{"model":"m"}"#,
            r#"{"model":"m","max_tokens":null,"n":null}"#,
            r#"{"model":"m","max_tokens":"lots","n":-2}"#,
        ] {
            let f = fields(body);
            assert_eq!(
                (f.output().max_tokens, f.output().choices),
                (None, 1),
                "{body}"
            );
        }
        // Numbers in other notations count too (rounded up).
        let f = fields(r#"{"model":"m","max_tokens":1e4,"n":2.0}"#);
        assert_eq!(
            (f.output().max_tokens, f.output().choices),
            (Some(10_000), 2)
        );
        assert_eq!(
            fields(r#"{"model":"m","max_tokens":1.5}"#)
                .output()
                .max_tokens,
            Some(2)
        );
        assert_eq!(fields(r#"{"model":"m","n":0}"#).output().choices, 1);
        assert_eq!(fields(r#"{"model":"m","n":100000}"#).output().choices, 128);
    }

    #[test]
    fn include_usage_is_read_from_stream_options() {
        let f = fields(r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#);
        assert!(f.include_usage);
        let f = fields(r#"{"model":"m","stream":true,"stream_options":{"include_usage":false}}"#);
        assert!(!f.include_usage);
    }

    #[test]
    fn rejects_bad_model_and_stream() {
        for body in [
            r#"{"messages":[]}"#,
            r#"{"model":7}"#,
            r#"{"model":""}"#,
            r#"{"model":"m","stream":"yes"}"#,
            r#"{"model":"m""#,
            r#"[1,2]"#,
        ] {
            let err = read_request_fields(body.as_bytes()).unwrap_err();
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST, "{body}");
        }
    }

    #[test]
    fn escaped_model_names_are_unescaped() {
        let f = fields(r#"{"model":"a\/b"}"#);
        assert_eq!(f.model, "a/b");
    }

    #[test]
    fn no_edits_returns_the_same_buffer() {
        let body = Bytes::from_static(br#"{"model":"m"}"#);
        let f = read_request_fields(&body).unwrap();
        let out = apply_edits(&body, &f, BodyEdits::default()).unwrap();
        assert_eq!(out.as_ptr(), body.as_ptr());
    }

    #[test]
    fn model_rewrite_keeps_every_other_byte() {
        let body = Bytes::from_static(
            b"{ \"temperature\" : 0.5,\n \"model\" : \"alias\", \"x\":{\"model\":\"keep\"} }",
        );
        let f = read_request_fields(&body).unwrap();
        let out = apply_edits(
            &body,
            &f,
            BodyEdits {
                model: Some("real\"name"),
                inject_include_usage: false,
            },
        )
        .unwrap();
        assert_eq!(
            &out[..],
            &b"{ \"temperature\" : 0.5,\n \"model\" : \"real\\\"name\", \"x\":{\"model\":\"keep\"} }"[..]
        );
    }

    #[test]
    fn injects_stream_options_when_absent() {
        let body = Bytes::from_static(br#"{"model":"m","stream":true}"#);
        let f = read_request_fields(&body).unwrap();
        let out = apply_edits(
            &body,
            &f,
            BodyEdits {
                model: Some("up"),
                inject_include_usage: true,
            },
        )
        .unwrap();
        assert_eq!(
            &out[..],
            br#"{"stream_options":{"include_usage":true},"model":"up","stream":true}"#
        );
        let again = read_request_fields(&out).unwrap();
        assert!(again.include_usage);
    }

    #[test]
    fn null_stream_options_is_replaced_not_duplicated() {
        let body = Bytes::from_static(br#"{"model":"m","stream":true,"stream_options":null}"#);
        let f = read_request_fields(&body).unwrap();
        assert!(f.stream_options_span.is_some());
        let out = apply_edits(
            &body,
            &f,
            BodyEdits {
                model: None,
                inject_include_usage: true,
            },
        )
        .unwrap();
        assert_eq!(
            &out[..],
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#
        );
    }

    #[test]
    fn extends_existing_stream_options() {
        let body = Bytes::from_static(
            br#"{"model":"m","stream":true,"stream_options":{"include_obfuscation":false}}"#,
        );
        let f = read_request_fields(&body).unwrap();
        let out = apply_edits(
            &body,
            &f,
            BodyEdits {
                model: None,
                inject_include_usage: true,
            },
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["include_obfuscation"], false);
        assert!(out.starts_with(br#"{"model":"m","stream":true,"stream_options":"#));
    }

    #[test]
    fn error_body_has_the_openai_shape() {
        let b = error_body("bad", "invalid_request_error", Some("model"), None);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"]["message"], "bad");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["code"].is_null());
    }
}
