//! Bedrock codec tests. Input → output cases are golden files under
//! `src/translate/testdata/bedrock/` (see `translate::golden`), the recorded fixtures among
//! them; what stays here are tables over public functions, the two stream entry points agreeing,
//! and the recorded request. Regressions for protocols.md §9 pitfalls are named in the case
//! files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};

use super::*;
use crate::translate::eventstream::{event_frame, exception_frame, EventStreamDecoder};
use crate::translate::golden::{self, ir_json, Input};
use crate::translate::ir::*;

const CONVERSE_REQUEST: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/bedrock-converse.request.json"
));
const STREAM: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/bedrock-converse-stream.eventstream.bin"
));
/// The model the stream decoder is given (Converse streams don't name it).
const MODEL: &str = "us.amazon.nova-micro-v1:0";

/// Bedrock answers carry no id, so the decoder makes a random `msg_bdrk_` + 24 hex digits; the
/// snapshot keeps the prefix and the length, not the digits.
fn redact(text: String) -> String {
    const PREFIX: &str = "msg_bdrk_";
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find(PREFIX) {
        let after = &rest[at + PREFIX.len()..];
        let hex = after.len() >= 24 && after[..24].bytes().all(|b| b.is_ascii_hexdigit());
        out.push_str(&rest[..at + PREFIX.len()]);
        if hex {
            out.push_str("[24 hex]");
            rest = &after[24..];
        } else {
            rest = after;
        }
    }
    out + rest
}

/// Event-stream body → frames → the stream decoder (`message`), then `end()`.
fn decode_stream(body: &[u8]) -> Vec<StreamEvent> {
    let mut frames = EventStreamDecoder::new();
    frames.push(body);
    let mut dec = StreamDecoder::new(MODEL);
    let mut out = Vec::new();
    while let Some(msg) = frames.next_message().unwrap() {
        dec.message(&msg, &mut out);
    }
    dec.end(&mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// golden files: testdata/bedrock/<kind>/

/// IR request → Converse body. Every case is `hello.json` with the top-level fields it names
/// replaced (as `..hello()` would); a table's lines are such cases, one body per line.
#[test]
fn golden_request_encode() {
    let base = golden::input_json("bedrock/request_encode/hello.json");
    let encode = |patch: Value| {
        let mut req = base.clone();
        for (k, v) in patch.as_object().expect("a case is an object") {
            req[k] = v.clone();
        }
        golden::encoded(encode_request(&golden::ir_request(req)))
    };
    golden::check("bedrock/request_encode", &[], |input: &Input| {
        golden::json_cases(input, encode)
    });
}

/// Converse response body → IR response (a table: one body per line).
#[test]
fn golden_response_decode() {
    let decode = |body: &[u8]| golden::decoded_response(decode_response(body));
    golden::check(
        "bedrock/response_decode",
        &["bedrock-converse.json"],
        |input: &Input| redact(golden::body_cases(input, decode)),
    );
}

/// The recorded event stream, or one frame per line (`{"event"|"exception": NAME, "payload":
/// JSON, or a string sent as is}`) → IR events, one a line.
#[test]
fn golden_stream_decode() {
    golden::check(
        "bedrock/stream_decode",
        &["bedrock-converse-stream.eventstream.bin"],
        |input: &Input| {
            if input.ext == "bin" {
                return redact(golden::events(&decode_stream(&input.bytes)));
            }
            let mut body = Vec::new();
            for l in input.lines() {
                let frame: Value = serde_json::from_slice(l).unwrap();
                let payload = String::from_utf8(golden::body_bytes(&frame["payload"])).unwrap();
                body.extend(match (frame.get("event"), frame.get("exception")) {
                    (Some(name), None) => event_frame(name.as_str().unwrap(), &payload),
                    (None, Some(name)) => exception_frame(name.as_str().unwrap(), &payload),
                    _ => panic!("a frame is an event or an exception: {frame}"),
                });
            }
            redact(golden::events(&decode_stream(&body)))
        },
    );
}

/// `{status, error_type (the x-amzn-errortype header), body}` → IR error, one per line.
#[test]
fn golden_error_decode() {
    golden::check("bedrock/error_decode", &[], |input: &Input| {
        golden::table(input, |l| {
            let v: Value = serde_json::from_slice(l).unwrap();
            let status = v["status"].as_u64().unwrap() as u16;
            let error_type = v.get("error_type").map(|t| t.as_str().unwrap());
            let info = decode_error(status, error_type, &golden::body_bytes(&v["body"]));
            serde_json::to_value(ir_json::ErrorInfo::from(&info)).unwrap()
        })
    });
}

// ---------------------------------------------------------------------------------------------
// properties and tables

/// The recorded client request, rebuilt from the IR, is what that client sent, except that the
/// gateway always sets maxTokens (the recorded client sent `inferenceConfig: {}`), so answers
/// don't depend on per-model defaults.
#[test]
fn encodes_the_fixture_request() {
    let fixture: Value = serde_json::from_str(CONVERSE_REQUEST).unwrap();
    let req: ir_json::ChatRequest =
        serde_json::from_value(golden::input_json("bedrock/request_encode/hello.json")).unwrap();
    let got: Value = serde_json::from_slice(&encode_request(&req.into()).unwrap()).unwrap();
    let mut want = fixture["body"].clone();
    want["inferenceConfig"] = json!({"maxTokens": DEFAULT_MAX_TOKENS});
    assert_eq!(got, want);
}

#[test]
fn temperature_maps_the_ir_scale_onto_bedrocks() {
    assert_eq!(to_bedrock_temperature(0.0), 0.0);
    assert_eq!(to_bedrock_temperature(1.0), 0.5);
    assert_eq!(to_bedrock_temperature(2.0), 1.0);
    assert_eq!(to_bedrock_temperature(3.0), 1.0);
    assert_eq!(to_bedrock_temperature(-1.0), 0.0);
}

#[test]
fn maps_every_stop_reason() {
    for (wire, want) in [
        ("end_turn", StopReason::EndTurn),
        ("tool_use", StopReason::ToolUse),
        ("max_tokens", StopReason::MaxTokens),
        ("stop_sequence", StopReason::StopSequence),
        ("guardrail_intervened", StopReason::ContentFilter),
        ("content_filtered", StopReason::ContentFilter),
        ("model_context_window_exceeded", StopReason::MaxTokens),
        ("something_new", StopReason::Other),
    ] {
        assert_eq!(map_stop_reason(wire), want, "{wire}");
    }
}

/// The `RawEvent` path (name = `:event-type`) gives the same sequence as `message`, and nothing
/// is owed at the end after the metadata event.
#[test]
fn decodes_the_fixture_stream_through_raw_events() {
    let mut frames = EventStreamDecoder::new();
    frames.push(STREAM);
    let mut dec = StreamDecoder::new(MODEL);
    let mut out = Vec::new();
    while let Some(msg) = frames.next_message().unwrap() {
        dec.event(
            RawEvent {
                name: msg.event_type.as_deref().map(str::as_bytes),
                data: &msg.payload,
                exception: false,
            },
            &mut out,
        );
    }
    let finished_before_end = out.len();
    dec.end(&mut out);
    assert_eq!(
        out.len(),
        finished_before_end,
        "nothing owed after metadata"
    );
    let via_message = decode_stream(STREAM);
    // The start's id is random per decoder; everything else must agree.
    assert!(matches!(&out[0], StreamEvent::Start { model, .. } if model == MODEL));
    assert_eq!(out[1..], via_message[1..]);
}

#[test]
fn stream_exceptions_map_to_kinds() {
    for (name, kind) in [
        ("throttlingException", ErrorKind::RateLimit),
        ("modelStreamErrorException", ErrorKind::Server),
        ("validationException", ErrorKind::InvalidRequest),
        ("serviceUnavailableException", ErrorKind::Overloaded),
        ("internalServerException", ErrorKind::Server),
        ("modelTimeoutException", ErrorKind::Timeout),
        ("brandNewException", ErrorKind::Server),
    ] {
        let mut dec = StreamDecoder::new("m");
        let mut out = Vec::new();
        dec.event(
            RawEvent {
                name: Some(name.as_bytes()),
                data: br#"{"message":"x"}"#,
                exception: true,
            },
            &mut out,
        );
        match &out[..] {
            [StreamEvent::Error(e)] => {
                assert_eq!(e.kind, kind, "{name}");
                assert_eq!(e.status, kind.status());
                assert_eq!(e.code.as_deref(), Some(name));
            }
            other => panic!("{name}: {other:?}"),
        }
        dec.end(&mut out);
        assert_eq!(out.len(), 1, "nothing after an error");
    }
}

#[test]
fn protocol_error_messages_become_errors() {
    let mut dec = StreamDecoder::new("m");
    let mut out = Vec::new();
    let msg = crate::translate::eventstream::Message {
        message_type: Some("error".into()),
        error_code: Some("InternalFailure".into()),
        error_message: Some("boom".into()),
        ..Default::default()
    };
    dec.message(&msg, &mut out);
    assert!(matches!(
        &out[..],
        [StreamEvent::Error(ErrorInfo { kind: ErrorKind::Server, message, code: Some(code), .. })]
            if message == "boom" && code == "InternalFailure"
    ));
}
