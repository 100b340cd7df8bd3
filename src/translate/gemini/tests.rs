//! Gemini codec tests: golden decodes of the recorded fixtures, wire-shape checks of every
//! encoder, exact stream sequences, round trips, and regressions for protocols.md §9 pitfalls
//! 1, 2, 5, 6, 8, 11, 12 and 13.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::sse::{data_payload, is_comment_only, SseSplitter};
use crate::translate::ir::{
    ChatRequest, ChatResponse, EncodeOptions, ErrorInfo, ErrorKind, ImageSource, Message, Part,
    RawEvent, Reasoning, ResponseFormat, Role, StopReason, StreamDecode, StreamEncode, StreamEvent,
    TextBlock, Tool, ToolChoice, TranslateError,
};
use crate::usage::Usage;

const STREAM_TEXT: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/gemini-stream-text.sse"
));
const STREAM_TEXT_REQ: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/gemini-stream-text.request.json"
));
const STREAM_CALL: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/gemini-stream-function-call.sse"
));
const STREAM_CALL_REQ: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/gemini-stream-function-call.request.json"
));
const NONSTREAM_CALL: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/gemini-generatecontent-function-call.json"
));
const ERROR_429: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/gemini-error-429.json"
));

// ---------------------------------------------------------------------------------------------
// helpers

fn text(s: &str) -> Part {
    Part::Text(TextBlock {
        text: s.to_owned(),
        cache_control: None,
    })
}

fn msg(role: Role, content: Vec<Part>) -> Message {
    Message { role, content }
}

/// `{method, url, body}` fixture → (model from the URL path, stream flag, body bytes).
fn request_fixture(fixture: &str) -> (String, bool, Vec<u8>) {
    let v: Value = serde_json::from_str(fixture).unwrap();
    let url = v["url"].as_str().unwrap();
    let tail = url.rsplit("/models/").next().unwrap();
    let (model, method) = tail.split_once(':').unwrap();
    let stream = method.starts_with("streamGenerateContent");
    (
        model.to_owned(),
        stream,
        serde_json::to_vec(&v["body"]).unwrap(),
    )
}

/// SSE bytes → data payloads, split by the gateway's own splitter in `step`-byte chunks.
fn payloads(bytes: &[u8], step: usize) -> Vec<Vec<u8>> {
    let mut splitter = SseSplitter::new();
    let mut events = Vec::new();
    for chunk in bytes.chunks(step.max(1)) {
        splitter.push(Bytes::copy_from_slice(chunk), |e| events.push(e));
    }
    events.extend(splitter.finish());
    events
        .iter()
        .filter(|e| !is_comment_only(e))
        .filter_map(|e| data_payload(e).map(|d| d.into_owned()))
        .collect()
}

fn decode_payloads(payloads: &[Vec<u8>]) -> Vec<StreamEvent> {
    let mut dec = StreamDecoder::new();
    let mut out = Vec::new();
    for data in payloads {
        dec.event(
            RawEvent {
                name: None,
                data,
                exception: false,
            },
            &mut out,
        );
    }
    dec.end(&mut out);
    out
}

fn decode_stream(bytes: &[u8]) -> Vec<StreamEvent> {
    decode_payloads(&payloads(bytes, bytes.len()))
}

fn encode_stream(events: &[StreamEvent], model: &str) -> Vec<u8> {
    let mut enc = StreamEncoder::new(&EncodeOptions {
        model: model.to_owned(),
        ..EncodeOptions::default()
    });
    let mut out = Vec::new();
    for ev in events {
        enc.event(ev, &mut out);
    }
    enc.end(&mut out);
    out
}

/// Encoder output → its events as JSON, checking the `data: ...\r\n\r\n` framing.
fn sse_json(bytes: &[u8]) -> Vec<Value> {
    let s = std::str::from_utf8(bytes).unwrap();
    assert!(
        s.is_empty() || s.ends_with("\r\n\r\n"),
        "CRLF framing: {s:?}"
    );
    s.split("\r\n\r\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let data = e.strip_prefix("data: ").expect("data-only events");
            assert!(!data.contains('\n'), "one line per event");
            serde_json::from_str(data).unwrap()
        })
        .collect()
}

fn all_text(events: &[StreamEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

fn body_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

// ---------------------------------------------------------------------------------------------
// requests: decode

#[test]
fn decodes_the_stream_text_request_fixture() {
    let (model, stream, body) = request_fixture(STREAM_TEXT_REQ);
    let req = decode_request(&body, &model, stream).unwrap();
    assert_eq!(req.model, "gemini-2.5-flash");
    assert!(req.stream && req.stream_usage);
    assert_eq!(
        req.messages,
        vec![msg(
            Role::User,
            vec![text(
                "Count from 1 to 30, one number per line, digits only."
            )]
        )]
    );
    // responseModalities has no IR counterpart and must not turn into a response format.
    assert_eq!(req.response_format, None);
    assert!(req.tools.is_empty() && req.system.is_empty());
}

#[test]
fn decodes_the_function_call_request_fixture_with_snake_case_schema() {
    let (model, stream, body) = request_fixture(STREAM_CALL_REQ);
    let req = decode_request(&body, &model, stream).unwrap();
    assert_eq!(req.model, "gemini-3-pro-preview");
    assert_eq!(req.tools.len(), 1);
    let tool = &req.tools[0];
    assert_eq!(tool.name, "get_country");
    assert_eq!(tool.description, None, "empty description dropped");
    assert_eq!(
        tool.parameters,
        json!({"additionalProperties": false, "properties": {}, "type": "object"})
    );
}

#[test]
fn decodes_snake_case_field_names() {
    let body = json!({
        "system_instruction": {"parts": [{"text": "be brief"}, {"text": "be kind"}]},
        "contents": [{"role": "user", "parts": [
            {"text": "hi"},
            {"inline_data": {"mime_type": "image/png", "data": "iVBO"}},
            {"file_data": {"mime_type": "application/pdf", "file_uri": "gs://b/doc"}}
        ]}],
        "tools": [{"function_declarations": [{"name": "f", "parameters": {"type": "OBJECT"}}]}],
        "tool_config": {"function_calling_config": {"mode": "ANY", "allowed_function_names": ["f"]}},
        "generation_config": {
            "max_output_tokens": 100, "top_k": 40.0, "top_p": 0.5, "stop_sequences": ["END"],
            "candidate_count": 1, "presence_penalty": 0.1, "frequency_penalty": 0.2, "seed": "7",
            "response_mime_type": "application/json",
            "response_json_schema": {"type": "object"},
            "thinking_config": {"thinking_budget": 2048, "include_thoughts": true}
        }
    });
    let req = decode_request(&serde_json::to_vec(&body).unwrap(), "m", false).unwrap();
    assert_eq!(req.system.len(), 2);
    assert_eq!(req.system[1].text, "be kind");
    assert_eq!(
        req.messages[0].content,
        vec![
            text("hi"),
            Part::Image(ImageSource::Base64 {
                media_type: "image/png".into(),
                data: "iVBO".into()
            }),
            Part::Document {
                source: ImageSource::Url {
                    url: "gs://b/doc".into()
                },
                title: None
            },
        ]
    );
    assert_eq!(req.tools[0].parameters, json!({"type": "object"}));
    assert_eq!(req.tool_choice, Some(ToolChoice::Tool("f".into())));
    assert_eq!(req.max_tokens, Some(100));
    assert_eq!(req.top_k, Some(40), "integral float accepted");
    assert_eq!(req.top_p, Some(0.5));
    assert_eq!(req.stop, vec!["END".to_owned()]);
    assert_eq!(req.n, Some(1));
    assert_eq!(req.seed, Some(7), "string integer accepted (proto3 JSON)");
    assert_eq!(req.presence_penalty, Some(0.1));
    assert_eq!(req.frequency_penalty, Some(0.2));
    assert_eq!(
        req.response_format,
        Some(ResponseFormat::JsonSchema {
            name: "response".into(),
            schema: json!({"type": "object"}),
            strict: None
        })
    );
    assert_eq!(
        req.reasoning,
        Some(Reasoning {
            effort: None,
            budget_tokens: Some(2048),
            enabled: true
        })
    );
}

#[test]
fn decodes_history_with_calls_results_thoughts_and_signatures() {
    let body = json!({
        "contents": [
            {"role": "user", "parts": [{"text": "weather in Paris and Rome?"}]},
            {"role": "model", "parts": [
                {"text": "planning", "thought": true, "thoughtSignature": "sigT"},
                {"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "sig1"},
                {"functionCall": {"name": "weather", "args": {"city": "Rome"}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "weather", "response": {"result": "sunny"}}},
                {"functionResponse": {"name": "weather", "response": {"temp": 20, "sky": "clear"}}}
            ]},
            {"role": "model", "parts": [{"text": "Both fine.", "thoughtSignature": "sigX"}]}
        ],
        "unknownTopLevel": {"ignored": true}
    });
    let req = decode_request(&serde_json::to_vec(&body).unwrap(), "m", true).unwrap();
    assert_eq!(req.messages.len(), 4);
    let model_turn = &req.messages[1];
    assert_eq!(model_turn.role, Role::Assistant);
    assert_eq!(
        model_turn.content[0],
        Part::Thinking {
            text: "planning".into(),
            signature: Some("sigT".into())
        }
    );
    let Part::ToolCall {
        id: id1,
        name,
        arguments,
        signature,
    } = &model_turn.content[1]
    else {
        panic!("call expected: {:?}", model_turn.content[1]);
    };
    assert_eq!(name, "weather");
    assert_eq!(arguments, r#"{"city":"Paris"}"#);
    assert_eq!(signature.as_deref(), Some("sig1"));
    let Part::ToolCall { id: id2, .. } = &model_turn.content[2] else {
        panic!()
    };
    assert!(id1.starts_with("call_") && id2.starts_with("call_") && id1 != id2);

    let results = &req.messages[2].content;
    assert_eq!(
        results[0],
        Part::ToolResult {
            id: id1.clone(),
            name: Some("weather".into()),
            content: vec![text("sunny")],
            is_error: false
        }
    );
    assert_eq!(
        results[1],
        Part::ToolResult {
            id: id2.clone(),
            name: Some("weather".into()),
            content: vec![text(r#"{"temp":20,"sky":"clear"}"#)],
            is_error: false
        }
    );
    // A signed plain text part keeps its signature on an empty thinking part before it.
    assert_eq!(
        req.messages[3].content,
        vec![
            Part::Thinking {
                text: String::new(),
                signature: Some("sigX".into())
            },
            text("Both fine.")
        ]
    );
}

/// Pitfall 12: ids are synthesised deterministically and each functionResponse resolves to the
/// call with its name, in order — also when results come in another order than the calls.
#[test]
fn pitfall12_ids_are_deterministic_and_results_resolve_by_name() {
    let body = serde_json::to_vec(&json!({"contents": [
        {"role": "model", "parts": [
            {"functionCall": {"name": "a", "args": {}}},
            {"functionCall": {"name": "b", "args": {}}},
        ]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "b", "response": {"result": "B"}}},
            {"functionResponse": {"name": "a", "response": {"error": "A failed"}}},
        ]},
        {"role": "model", "parts": [{"functionCall": {"name": "a", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "a", "response": {}}}]},
    ]}))
    .unwrap();
    let first = decode_request(&body, "m", false).unwrap();
    let second = decode_request(&body, "m", false).unwrap();
    assert_eq!(first, second, "same request, same ids");

    let call_ids: Vec<&str> = first
        .messages
        .iter()
        .flat_map(|m| &m.content)
        .filter_map(|p| match p {
            Part::ToolCall { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(call_ids.len(), 3);
    assert!(call_ids[0] != call_ids[1] && call_ids[0] != call_ids[2]);
    let result = |m: usize, p: usize| match &first.messages[m].content[p] {
        Part::ToolResult {
            id, name, is_error, ..
        } => (id.clone(), name.clone(), *is_error),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        result(1, 0),
        (call_ids[1].to_owned(), Some("b".into()), false)
    );
    assert_eq!(
        result(1, 1),
        (call_ids[0].to_owned(), Some("a".into()), true)
    );
    // The later call of `a` is answered by the later response, not the first call again.
    assert_eq!(result(3, 0).0, call_ids[2]);
    // Client-given ids (Gemini echoes them when set) are kept.
    let with_ids = serde_json::to_vec(&json!({"contents": [
        {"role": "model", "parts": [{"functionCall": {"id": "c1", "name": "a"}}]},
        {"role": "user", "parts": [{"functionResponse": {"id": "c1", "name": "a", "response": {}}}]},
    ]}))
    .unwrap();
    let req = decode_request(&with_ids, "m", false).unwrap();
    assert!(
        matches!(&req.messages[0].content[0], Part::ToolCall { id, arguments, .. } if id == "c1" && arguments == "{}")
    );
    assert!(matches!(&req.messages[1].content[0], Part::ToolResult { id, .. } if id == "c1"));
}

#[test]
fn openapi_schemas_are_normalised_to_json_schema() {
    let body = json!({"contents": [], "tools": [{"functionDeclarations": [{
        "name": "f",
        "parameters": {
            "type": "OBJECT",
            "propertyOrdering": ["type", "tags"],
            "properties": {
                "type": {"type": "STRING", "enum": ["OBJECT", "ARRAY"]},
                "tags": {"type": "ARRAY", "items": {"type": "STRING", "nullable": true}},
                "n": {"anyOf": [{"type": "INTEGER"}, {"type": "NUMBER"}]}
            },
            "required": ["type"]
        }
    }]}]});
    let req = decode_request(&serde_json::to_vec(&body).unwrap(), "m", false).unwrap();
    assert_eq!(
        req.tools[0].parameters,
        json!({
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": ["OBJECT", "ARRAY"]},
                "tags": {"type": "array", "items": {"type": ["string", "null"]}},
                "n": {"anyOf": [{"type": "integer"}, {"type": "number"}]}
            },
            "required": ["type"]
        })
    );
    // No parameters at all: still an object schema.
    let body = json!({"tools": [{"functionDeclarations": [{"name": "g"}]}]});
    let req = decode_request(&serde_json::to_vec(&body).unwrap(), "m", false).unwrap();
    assert_eq!(req.tools[0].parameters["type"], "object");
}

#[test]
fn decodes_function_calling_modes() {
    let decode = |fcc: Value| {
        let body = json!({
            "tools": [{"functionDeclarations": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}],
            "toolConfig": {"functionCallingConfig": fcc}
        });
        decode_request(&serde_json::to_vec(&body).unwrap(), "m", false).unwrap()
    };
    assert_eq!(
        decode(json!({"mode": "AUTO"})).tool_choice,
        Some(ToolChoice::Auto)
    );
    assert_eq!(
        decode(json!({"mode": "NONE"})).tool_choice,
        Some(ToolChoice::None)
    );
    assert_eq!(
        decode(json!({"mode": "ANY"})).tool_choice,
        Some(ToolChoice::Required)
    );
    assert_eq!(
        decode(json!({"mode": "MODE_UNSPECIFIED"})).tool_choice,
        None
    );
    let one = decode(json!({"mode": "ANY", "allowedFunctionNames": ["b"]}));
    assert_eq!(one.tool_choice, Some(ToolChoice::Tool("b".into())));
    assert_eq!(one.tools.len(), 3);
    let two = decode(json!({"mode": "ANY", "allowedFunctionNames": ["a", "c"]}));
    assert_eq!(two.tool_choice, Some(ToolChoice::Required));
    let names: Vec<_> = two.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "c"], "only the allowed tools stay callable");
}

#[test]
fn decodes_response_formats_and_thinking_configs() {
    let decode = |gc: Value| {
        let body = json!({"generationConfig": gc});
        decode_request(&serde_json::to_vec(&body).unwrap(), "m", false)
    };
    assert_eq!(
        decode(json!({"responseMimeType": "application/json"}))
            .unwrap()
            .response_format,
        Some(ResponseFormat::JsonObject)
    );
    let schema = decode(json!({"responseMimeType": "application/json",
        "responseSchema": {"type": "ARRAY", "items": {"type": "STRING"}}}))
    .unwrap();
    assert!(matches!(schema.response_format,
        Some(ResponseFormat::JsonSchema { ref schema, .. }) if *schema == json!({"type": "array", "items": {"type": "string"}})));
    let err = decode(json!({"responseMimeType": "text/x.enum"})).unwrap_err();
    assert!(
        matches!(err, TranslateError::Unsupported { param: Some(ref p), .. } if p == "generationConfig.responseMimeType")
    );

    let reasoning = |tc: Value| decode(json!({"thinkingConfig": tc})).unwrap().reasoning;
    assert_eq!(
        reasoning(json!({"thinkingBudget": 0})),
        Some(Reasoning {
            effort: None,
            budget_tokens: None,
            enabled: false
        })
    );
    assert_eq!(
        reasoning(json!({"thinkingBudget": -1, "includeThoughts": true})),
        Some(Reasoning {
            effort: None,
            budget_tokens: None,
            enabled: true
        })
    );
    assert_eq!(
        reasoning(json!({"thinkingLevel": "HIGH"})),
        Some(Reasoning {
            effort: Some("high".into()),
            budget_tokens: None,
            enabled: true
        })
    );
    assert_eq!(reasoning(json!({"includeThoughts": false})), None);
    assert_eq!(
        decode(json!({"temperature": 1.7})).unwrap().temperature,
        Some(1.7)
    );
}

#[test]
fn rejects_what_cannot_be_translated_with_typed_errors() {
    let err = decode_request(br#"{"tools":[{"googleSearch":{}}]}"#, "m", false).unwrap_err();
    assert!(
        matches!(err, TranslateError::Unsupported { param: Some(ref p), .. } if p == "tools[0].googleSearch")
    );
    let err = decode_request(
        br#"{"generationConfig":{"maxOutputTokens":-5}}"#,
        "m",
        false,
    )
    .unwrap_err();
    assert!(
        matches!(err, TranslateError::Unsupported { param: Some(ref p), .. } if p == "generationConfig.maxOutputTokens")
    );
    assert!(matches!(
        decode_request(b"{not json", "m", false),
        Err(TranslateError::Json(_))
    ));
    assert!(matches!(
        decode_request(br#"{"contents":"nope"}"#, "m", false),
        Err(TranslateError::Json(_))
    ));
    // Nulls and unknown part kinds are tolerated.
    let req = decode_request(
        br#"{"contents":[{"role":"user","parts":[{"executableCode":{"code":"1"}},{"text":"x"}]}],"tools":null}"#,
        "m",
        false,
    )
    .unwrap();
    assert_eq!(req.messages[0].content, vec![text("x")]);
}

// ---------------------------------------------------------------------------------------------
// requests: encode

fn tool(name: &str) -> Tool {
    Tool {
        name: name.into(),
        description: Some(format!("{name} tool")),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        strict: Some(true),
    }
}

fn sample_request() -> ChatRequest {
    ChatRequest {
        model: "gemini-2.5-pro".into(),
        system: vec![TextBlock {
            text: "be brief".into(),
            cache_control: None,
        }],
        messages: vec![
            msg(Role::User, vec![text("weather?")]),
            msg(Role::User, vec![text("in Paris")]),
            msg(
                Role::Assistant,
                vec![
                    Part::Thinking {
                        text: "unsigned, dropped".into(),
                        signature: None,
                    },
                    Part::Thinking {
                        text: "signed".into(),
                        signature: Some("tsig".into()),
                    },
                    text(""),
                    Part::ToolCall {
                        id: "toolu_1".into(),
                        name: "weather".into(),
                        arguments: r#"{"city":"Paris"}"#.into(),
                        signature: Some("sig1".into()),
                    },
                    Part::ToolCall {
                        id: "toolu_2".into(),
                        name: "time".into(),
                        arguments: String::new(),
                        signature: None,
                    },
                ],
            ),
            msg(
                Role::User,
                vec![
                    Part::ToolResult {
                        id: "toolu_1".into(),
                        name: None,
                        content: vec![text("sunny")],
                        is_error: false,
                    },
                    Part::ToolResult {
                        id: "toolu_2".into(),
                        name: None,
                        content: vec![text(r#"{"hour":12}"#)],
                        is_error: false,
                    },
                ],
            ),
        ],
        tools: vec![tool("weather"), tool("time")],
        tool_choice: Some(ToolChoice::Tool("weather".into())),
        max_tokens: Some(256),
        temperature: Some(0.7),
        top_p: Some(0.9),
        top_k: Some(20),
        stop: vec!["STOP".into(), String::new()],
        stream: true,
        response_format: Some(ResponseFormat::JsonSchema {
            name: "answer".into(),
            schema: json!({"type": "object"}),
            strict: Some(true),
        }),
        reasoning: Some(Reasoning {
            effort: Some("medium".into()),
            budget_tokens: None,
            enabled: true,
        }),
        seed: Some(42),
        n: Some(1),
        ..ChatRequest::default()
    }
}

#[test]
fn encodes_the_request_shape_gemini_requires() {
    let body = body_json(&encode_request(&sample_request()).unwrap());
    assert_eq!(
        body,
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "weather?"}, {"text": "in Paris"}]},
                {"role": "model", "parts": [
                    {"text": "signed", "thought": true, "thoughtSignature": "tsig"},
                    {"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "sig1"},
                    {"functionCall": {"name": "time", "args": {}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "weather", "response": {"result": "sunny"}}},
                    {"functionResponse": {"name": "time", "response": {"hour": 12}}}
                ]}
            ],
            "systemInstruction": {"parts": [{"text": "be brief"}]},
            "tools": [{"functionDeclarations": [
                {"name": "weather", "description": "weather tool", "parametersJsonSchema":
                    {"type": "object", "properties": {"city": {"type": "string"}}}},
                {"name": "time", "description": "time tool", "parametersJsonSchema":
                    {"type": "object", "properties": {"city": {"type": "string"}}}}
            ]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}},
            "generationConfig": {
                "temperature": 0.7, "topP": 0.9, "topK": 20, "candidateCount": 1,
                "maxOutputTokens": 256, "stopSequences": ["STOP"],
                "responseMimeType": "application/json", "responseJsonSchema": {"type": "object"},
                "seed": 42,
                "thinkingConfig": {"thinkingBudget": 8192, "includeThoughts": true}
            }
        })
    );
}

/// Pitfall 12: functionResponse.name is never empty — looked up from the call, or an error.
#[test]
fn pitfall12_function_response_name_is_resolved_or_rejected() {
    let mut req = ChatRequest {
        messages: vec![
            msg(
                Role::Assistant,
                vec![Part::ToolCall {
                    id: "call_abc".into(),
                    name: "lookup".into(),
                    arguments: "{}".into(),
                    signature: None,
                }],
            ),
            msg(
                Role::User,
                vec![Part::ToolResult {
                    id: "call_abc".into(),
                    name: Some(String::new()),
                    content: vec![text("oops")],
                    is_error: true,
                }],
            ),
        ],
        ..ChatRequest::default()
    };
    let body = body_json(&encode_request(&req).unwrap());
    assert_eq!(
        body["contents"][1]["parts"][0]["functionResponse"],
        json!({"name": "lookup", "response": {"error": "oops"}})
    );
    req.messages.remove(0);
    let err = encode_request(&req).unwrap_err();
    assert!(
        matches!(err, TranslateError::Unsupported { param: Some(ref p), .. } if p == "messages[0].content[0]")
    );
}

#[test]
fn encodes_images_documents_and_tool_result_images() {
    let req = ChatRequest {
        messages: vec![
            msg(
                Role::User,
                vec![
                    Part::Image(ImageSource::Base64 {
                        media_type: "image/png".into(),
                        data: "AAA".into(),
                    }),
                    Part::Image(ImageSource::Url {
                        url: "https://x.test/cat.PNG?size=2".into(),
                    }),
                    Part::Image(ImageSource::Url {
                        url: "gs://bucket/object".into(),
                    }),
                    Part::Image(ImageSource::Url {
                        url: "data:image/webp;base64,UklG".into(),
                    }),
                    Part::Document {
                        source: ImageSource::Url {
                            url: "https://x.test/paper".into(),
                        },
                        title: Some("t".into()),
                    },
                ],
            ),
            msg(
                Role::Assistant,
                vec![Part::ToolCall {
                    id: "1".into(),
                    name: "shot".into(),
                    arguments: "{}".into(),
                    signature: None,
                }],
            ),
            msg(
                Role::User,
                vec![Part::ToolResult {
                    id: "1".into(),
                    name: Some("shot".into()),
                    content: vec![Part::Image(ImageSource::Base64 {
                        media_type: "image/jpeg".into(),
                        data: "BBB".into(),
                    })],
                    is_error: false,
                }],
            ),
        ],
        ..ChatRequest::default()
    };
    let body = body_json(&encode_request(&req).unwrap());
    assert_eq!(
        body["contents"][0]["parts"],
        json!([
            {"inlineData": {"mimeType": "image/png", "data": "AAA"}},
            {"fileData": {"mimeType": "image/png", "fileUri": "https://x.test/cat.PNG?size=2"}},
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://bucket/object"}},
            {"inlineData": {"mimeType": "image/webp", "data": "UklG"}},
            {"fileData": {"mimeType": "application/pdf", "fileUri": "https://x.test/paper"}}
        ])
    );
    assert_eq!(
        body["contents"][2]["parts"],
        json!([
            {"functionResponse": {"name": "shot", "response": {"result": ""}}},
            {"inlineData": {"mimeType": "image/jpeg", "data": "BBB"}}
        ])
    );
}

#[test]
fn encodes_reasoning_as_thinking_config() {
    let encode = |r: Reasoning| {
        let req = ChatRequest {
            reasoning: Some(r),
            ..ChatRequest::default()
        };
        body_json(&encode_request(&req).unwrap())["generationConfig"]["thinkingConfig"].clone()
    };
    let effort = |e: &str| Reasoning {
        effort: Some(e.into()),
        budget_tokens: None,
        enabled: true,
    };
    assert_eq!(encode(effort("low"))["thinkingBudget"], 1024);
    assert_eq!(encode(effort("medium"))["thinkingBudget"], 8192);
    assert_eq!(encode(effort("high"))["thinkingBudget"], 24576);
    assert_eq!(
        encode(Reasoning {
            effort: Some("low".into()),
            budget_tokens: Some(3000),
            enabled: true
        }),
        json!({"thinkingBudget": 3000, "includeThoughts": true})
    );
    assert_eq!(
        encode(Reasoning {
            effort: None,
            budget_tokens: None,
            enabled: false
        }),
        json!({"thinkingBudget": 0})
    );
    assert_eq!(
        encode(Reasoning {
            effort: None,
            budget_tokens: None,
            enabled: true
        }),
        json!({"thinkingBudget": -1, "includeThoughts": true})
    );
}

#[test]
fn encodes_sampling_limits_and_rejects_n_above_one() {
    let req = ChatRequest {
        temperature: Some(3.5),
        // Pitfall 8: parallel_tool_calls alone must not force tool use.
        parallel_tool_calls: Some(false),
        tools: vec![tool("t")],
        messages: vec![msg(Role::User, vec![text("")])],
        ..ChatRequest::default()
    };
    let body = body_json(&encode_request(&req).unwrap());
    assert_eq!(body["generationConfig"], json!({"temperature": 2.0}));
    assert!(body.get("toolConfig").is_none());
    // Pitfall 6: an empty text part is not sent, and a turn left empty is dropped.
    assert_eq!(body["contents"], json!([]));
    assert!(body.get("model").is_none() && body.get("stream").is_none());

    let err = encode_request(&ChatRequest {
        n: Some(2),
        ..ChatRequest::default()
    })
    .unwrap_err();
    assert!(matches!(err, TranslateError::Unsupported { param: Some(ref p), .. } if p == "n"));
    // tool_choice without tools: no functionCallingConfig (Gemini rejects it).
    let body = body_json(
        &encode_request(&ChatRequest {
            tool_choice: Some(ToolChoice::None),
            ..ChatRequest::default()
        })
        .unwrap(),
    );
    assert_eq!(body, json!({"contents": []}));
}

#[test]
fn rejects_tool_arguments_that_are_not_an_object() {
    let req = ChatRequest {
        messages: vec![msg(
            Role::Assistant,
            vec![Part::ToolCall {
                id: "1".into(),
                name: "f".into(),
                arguments: "[1,2".into(),
                signature: None,
            }],
        )],
        ..ChatRequest::default()
    };
    let err = encode_request(&req).unwrap_err();
    assert!(
        matches!(err, TranslateError::Unsupported { param: Some(ref p), .. } if p == "messages[0].content[0].arguments")
    );
}

// ---------------------------------------------------------------------------------------------
// responses

#[test]
fn decodes_the_nonstream_function_call_fixture() {
    let resp = decode_response(NONSTREAM_CALL).unwrap();
    assert_eq!(resp.id, "m36LaZGyCLz1xs0PtNSB-QU");
    assert_eq!(resp.model, "gemini-3-pro-preview");
    assert_eq!(resp.content.len(), 1);
    let Part::ToolCall {
        id,
        name,
        arguments,
        signature,
    } = &resp.content[0]
    else {
        panic!("{:?}", resp.content);
    };
    assert_eq!(name, "weather");
    assert_eq!(
        serde_json::from_str::<Value>(arguments).unwrap(),
        json!({"location": "San Francisco"})
    );
    assert!(signature.as_deref().unwrap().starts_with("EskgCsYgAb4"));
    assert!(id.starts_with("call_") && id.len() == 21);
    assert_eq!(
        *id,
        decode_response(NONSTREAM_CALL)
            .unwrap_or_else(|e| panic!("{e}"))
            .content[0]
            .clone()
            .tool_call_id()
    );
    // Pitfall 11 / §8.3: Gemini says STOP for calls; the IR says ToolUse.
    assert_eq!(resp.stop_reason, StopReason::ToolUse);
    assert_eq!(
        resp.usage,
        Usage {
            input: 29,
            output: 15 + 893,
            reasoning: 893,
            ..Usage::default()
        }
    );
}

impl Part {
    fn tool_call_id(self) -> String {
        match self {
            Part::ToolCall { id, .. } => id,
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn maps_finish_reasons_block_reasons_and_usage() {
    let decode = |v: Value| decode_response(&serde_json::to_vec(&v).unwrap()).unwrap();
    let with = |finish: &str| {
        decode(
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "x"}]},
            "finishReason": finish}]}),
        )
        .stop_reason
    };
    assert_eq!(with("STOP"), StopReason::EndTurn);
    assert_eq!(with("MAX_TOKENS"), StopReason::MaxTokens);
    for f in [
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
    ] {
        assert_eq!(with(f), StopReason::ContentFilter, "{f}");
    }
    for f in [
        "OTHER",
        "MALFORMED_FUNCTION_CALL",
        "LANGUAGE",
        "SOMETHING_NEW",
    ] {
        assert_eq!(with(f), StopReason::Other, "{f}");
    }
    let blocked = decode(json!({"promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}}));
    assert_eq!(blocked.stop_reason, StopReason::ContentFilter);
    assert!(blocked.content.is_empty());
    assert_eq!(blocked.usage.input, 7);

    let cached = decode(json!({
        "candidates": [{"content": {"parts": [
            {"text": "thinking...", "thought": true},
            {"text": "answer"}
        ]}, "finishReason": "STOP", "index": 0},
        {"content": {"parts": [{"text": "second candidate"}]}, "index": 1}],
        "usageMetadata": {"promptTokenCount": 100, "cachedContentTokenCount": 60,
            "toolUsePromptTokenCount": 5, "candidatesTokenCount": 10, "thoughtsTokenCount": 4}
    }));
    assert_eq!(
        cached.content,
        vec![
            Part::Thinking {
                text: "thinking...".into(),
                signature: None
            },
            text("answer")
        ]
    );
    assert_eq!(
        cached.usage,
        Usage {
            input: 105,
            output: 14,
            cache_read: 60,
            reasoning: 4,
            ..Usage::default()
        }
    );
}

#[test]
fn encodes_the_response_shape_gemini_clients_read() {
    let resp = ChatResponse {
        id: "resp-1".into(),
        model: "claude-x".into(),
        content: vec![
            Part::Thinking {
                text: "hmm".into(),
                signature: Some("s".into()),
            },
            text("Let me check."),
            Part::ToolCall {
                id: "toolu_9".into(),
                name: "weather".into(),
                arguments: r#"{"city":"Oslo"}"#.into(),
                signature: None,
            },
        ],
        stop_reason: StopReason::ToolUse,
        stop_sequence: None,
        usage: Usage {
            input: 50,
            output: 30,
            cache_read: 20,
            reasoning: 12,
            ..Usage::default()
        },
    };
    let opts = EncodeOptions {
        model: "gemini-2.5-pro".into(),
        ..EncodeOptions::default()
    };
    assert_eq!(
        body_json(&encode_response(&resp, &opts)),
        json!({
            "candidates": [{
                "content": {"role": "model", "parts": [
                    {"text": "hmm", "thought": true, "thoughtSignature": "s"},
                    {"text": "Let me check."},
                    {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}}
                ]},
                "finishReason": "STOP",
                "index": 0
            }],
            "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 18,
                "thoughtsTokenCount": 12, "totalTokenCount": 80, "cachedContentTokenCount": 20},
            "modelVersion": "gemini-2.5-pro",
            "responseId": "resp-1"
        })
    );
    // Zero reasoning / cache: those counts are left out; other reasons map back.
    let plain = ChatResponse {
        stop_reason: StopReason::MaxTokens,
        usage: Usage {
            input: 1,
            output: 2,
            ..Usage::default()
        },
        content: vec![Part::ToolCall {
            id: "x".into(),
            name: "f".into(),
            arguments: "not json".into(),
            signature: None,
        }],
        ..resp
    };
    let v = body_json(&encode_response(&plain, &opts));
    assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(
        v["usageMetadata"],
        json!({"promptTokenCount": 1, "candidatesTokenCount": 2, "totalTokenCount": 3})
    );
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["functionCall"]["args"],
        json!({"_raw": "not json"}),
        "broken arguments are kept, args stays an object"
    );
}

#[test]
fn response_round_trip_keeps_the_meaning() {
    let original = decode_response(NONSTREAM_CALL).unwrap();
    let opts = EncodeOptions {
        model: original.model.clone(),
        ..EncodeOptions::default()
    };
    let again = decode_response(&encode_response(&original, &opts)).unwrap();
    assert_eq!(again, original);
}

// ---------------------------------------------------------------------------------------------
// streams: decode

#[test]
fn decodes_the_stream_text_fixture() {
    let events = decode_stream(STREAM_TEXT);
    assert_eq!(
        events[0],
        StreamEvent::Start {
            id: "ru1garvBEoOiqtsP2fznmQw".into(),
            model: "gemini-2.5-flash".into(),
            usage: Usage {
                input: 18,
                ..Usage::default()
            }
        }
    );
    let expected: String = (1..=30)
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(all_text(&events), expected);
    assert_eq!(events.len(), 1 + 3 + 1, "start, three text deltas, finish");
    // Pitfall 2: usage is cumulative per event — the last one counts, never the sum.
    assert_eq!(
        events.last(),
        Some(&StreamEvent::Finish {
            reason: StopReason::EndTurn,
            stop_sequence: None,
            usage: Usage {
                input: 18,
                output: 80 + 35,
                reasoning: 35,
                ..Usage::default()
            }
        })
    );
}

#[test]
fn decodes_the_stream_function_call_fixture() {
    let events = decode_stream(STREAM_CALL);
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(matches!(&events[0], StreamEvent::Start { id, model, .. }
        if id == "QUVVadTSNJ6_qtsPvN7J8Q0" && model == "gemini-3-pro-preview"));
    let StreamEvent::ToolCallStart {
        index,
        id,
        name,
        signature,
    } = &events[1]
    else {
        panic!("{:?}", events[1]);
    };
    assert_eq!((*index, name.as_str()), (0, "get_country"));
    assert!(id.starts_with("call_"));
    let sig = signature.as_deref().unwrap();
    assert!(sig.starts_with("EpwICpkI") && sig.ends_with("Ok15QuFyU=") && sig.len() == 1408);
    assert_eq!(
        events[2],
        StreamEvent::ToolArgsDelta {
            index: 0,
            fragment: "{}".into()
        }
    );
    // The trailing empty text part yields no delta; STOP with a call is tool use.
    assert_eq!(
        events[3],
        StreamEvent::Finish {
            reason: StopReason::ToolUse,
            stop_sequence: None,
            usage: Usage {
                input: 29,
                output: 10 + 202,
                reasoning: 202,
                ..Usage::default()
            }
        }
    );
}

/// Pitfall 13: CRLF-delimited events decode the same however the bytes are chunked.
#[test]
fn pitfall13_crlf_stream_decodes_the_same_at_every_chunk_size() {
    for fixture in [STREAM_TEXT, STREAM_CALL] {
        let whole = decode_stream(fixture);
        for step in [1, 2, 3, 7, 64, 500] {
            assert_eq!(
                decode_payloads(&payloads(fixture, step)),
                whole,
                "step {step}"
            );
        }
    }
}

/// Pitfall 1 and 11: tool-call indices count calls (0, 1 ...) after text, ids differ, and a
/// mixed text + tool turn finishes as tool use.
#[test]
fn pitfall1_call_indices_count_calls_and_mixed_turns_end_in_tool_use() {
    let events = [
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Checking."}]}}],
            "responseId": "r1", "modelVersion": "g"}),
        json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "w", "args": {"c": "A"}}},
            {"functionCall": {"name": "w", "args": {"c": "B"}}}
        ]}, "finishReason": "STOP"}], "responseId": "r1"}),
    ];
    let payloads: Vec<Vec<u8>> = events
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap())
        .collect();
    let out = decode_payloads(&payloads);
    let starts: Vec<(u32, String)> = out
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallStart { index, id, .. } => Some((*index, id.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 2);
    assert_eq!((starts[0].0, starts[1].0), (0, 1));
    assert_ne!(starts[0].1, starts[1].1);
    assert!(out.contains(&StreamEvent::ToolArgsDelta {
        index: 1,
        fragment: r#"{"c":"B"}"#.into()
    }));
    assert!(matches!(
        out.last(),
        Some(StreamEvent::Finish {
            reason: StopReason::ToolUse,
            ..
        })
    ));
    // The stream and the non-stream decoder synthesise the same id for the same call.
    let whole = json!({"candidates": [{"content": {"parts": [
        {"text": "Checking."},
        {"functionCall": {"name": "w", "args": {"c": "A"}}},
        {"functionCall": {"name": "w", "args": {"c": "B"}}}
    ]}, "finishReason": "STOP"}], "responseId": "r1"});
    let resp = decode_response(&serde_json::to_vec(&whole).unwrap()).unwrap();
    assert_eq!(resp.content[2].clone().tool_call_id(), starts[1].1);
}

#[test]
fn decodes_thoughts_and_signatures_in_streams() {
    let payloads = vec![
        serde_json::to_vec(&json!({"candidates": [{"content": {"parts": [
            {"text": "pondering", "thought": true, "thoughtSignature": "ts"},
            {"text": "Answer"}
        ]}, "finishReason": "STOP"}]}))
        .unwrap(),
    ];
    let out = decode_payloads(&payloads);
    assert_eq!(
        &out[1..4],
        &[
            StreamEvent::ThinkingDelta("pondering".into()),
            StreamEvent::ThinkingSignature("ts".into()),
            StreamEvent::TextDelta("Answer".into()),
        ]
    );
}

/// Pitfall 5: a failure after the HTTP 200 and a stream cut before its finish both surface as
/// one Error, and nothing follows it.
#[test]
fn pitfall5_stream_errors_and_early_ends_become_one_error() {
    // Cut: the text fixture without its last (finishing) event.
    let mut cut = payloads(STREAM_TEXT, STREAM_TEXT.len());
    cut.pop();
    let out = decode_payloads(&cut);
    assert!(matches!(out.first(), Some(StreamEvent::Start { .. })));
    assert!(matches!(out.last(), Some(StreamEvent::Error(e)) if e.status == 502));
    assert!(!out.iter().any(|e| matches!(e, StreamEvent::Finish { .. })));

    let mut with_error = payloads(STREAM_TEXT, STREAM_TEXT.len());
    with_error.insert(
        1,
        br#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#
            .to_vec(),
    );
    let out = decode_payloads(&with_error);
    let errors: Vec<&ErrorInfo> = out
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Error(i) => Some(i),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].kind, ErrorKind::Overloaded);
    assert_eq!(errors[0].status, 503);
    assert_eq!(errors[0].code.as_deref(), Some("UNAVAILABLE"));
    assert!(
        matches!(out.last(), Some(StreamEvent::Error(_))),
        "nothing after the error"
    );
    assert_eq!(out.len(), 3, "start, first text, error: {out:?}");

    let out = decode_payloads(&[b"{truncated".to_vec()]);
    assert!(matches!(out.as_slice(), [StreamEvent::Error(e)] if e.kind == ErrorKind::Server));
    assert!(matches!(
        decode_payloads(&[]).as_slice(),
        [StreamEvent::Error(_)]
    ));
}

// ---------------------------------------------------------------------------------------------
// streams: encode

#[test]
fn stream_encoder_emits_the_exact_event_sequence() {
    let mut enc = StreamEncoder::new(&EncodeOptions {
        model: "gemini-2.5-flash".into(),
        ..EncodeOptions::default()
    });
    let mut out = Vec::new();
    let mut step = |ev: StreamEvent, out: &mut Vec<u8>| {
        let before = out.len();
        enc.event(&ev, out);
        out.len() > before
    };
    let start = StreamEvent::Start {
        id: "msg_1".into(),
        model: "claude".into(),
        usage: Usage::default(),
    };
    assert!(!step(start, &mut out), "Gemini has no start event");
    assert!(step(StreamEvent::ThinkingDelta("hm".into()), &mut out));
    assert!(
        step(StreamEvent::TextDelta("Hel".into()), &mut out),
        "text is sent at once"
    );
    assert!(step(StreamEvent::TextDelta("lo".into()), &mut out));
    let call0 = StreamEvent::ToolCallStart {
        index: 0,
        id: "toolu_a".into(),
        name: "f".into(),
        signature: Some("sig".into()),
    };
    assert!(!step(call0, &mut out));
    for frag in [r#"{"a""#, r#":1}"#] {
        let delta = StreamEvent::ToolArgsDelta {
            index: 0,
            fragment: frag.into(),
        };
        assert!(!step(delta, &mut out), "a call is sent whole");
    }
    let call1 = StreamEvent::ToolCallStart {
        index: 1,
        id: "toolu_b".into(),
        name: "g".into(),
        signature: None,
    };
    assert!(
        step(call1, &mut out),
        "the next call completes the previous one"
    );
    let finish = StreamEvent::Finish {
        reason: StopReason::ToolUse,
        stop_sequence: None,
        usage: Usage {
            input: 10,
            output: 7,
            reasoning: 2,
            ..Usage::default()
        },
    };
    assert!(step(finish, &mut out));
    enc.end(&mut out);

    let events = sse_json(&out);
    let parts: Vec<Value> = events
        .iter()
        .map(|e| e["candidates"][0]["content"]["parts"].clone())
        .collect();
    assert_eq!(
        parts,
        vec![
            json!([{"text": "hm", "thought": true}]),
            json!([{"text": "Hel"}]),
            json!([{"text": "lo"}]),
            json!([{"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "sig"}]),
            json!([{"functionCall": {"name": "g", "args": {}}}]),
            json!([{"text": ""}]),
        ]
    );
    for e in &events {
        assert_eq!(e["candidates"][0]["content"]["role"], "model");
        assert_eq!(e["candidates"][0]["index"], 0);
        assert_eq!(e["modelVersion"], "gemini-2.5-flash");
        assert_eq!(e["responseId"], "msg_1");
    }
    let finishes: Vec<&Value> = events
        .iter()
        .filter_map(|e| e["candidates"][0].get("finishReason"))
        .collect();
    assert_eq!(finishes, [&json!("STOP")], "exactly one finish, last");
    assert_eq!(
        events[5]["usageMetadata"],
        json!({"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 2,
            "totalTokenCount": 17})
    );
    assert!(events[..5].iter().all(|e| e.get("usageMetadata").is_none()));
}

#[test]
fn stream_encoder_error_is_one_event_and_ends_the_stream() {
    let events = [
        StreamEvent::Start {
            id: "r".into(),
            model: "m".into(),
            usage: Usage::default(),
        },
        StreamEvent::TextDelta("partial".into()),
        StreamEvent::ToolCallStart {
            index: 0,
            id: "c".into(),
            name: "f".into(),
            signature: None,
        },
        StreamEvent::ToolArgsDelta {
            index: 0,
            fragment: "{\"half".into(),
        },
        StreamEvent::Error(ErrorInfo {
            status: 529,
            kind: ErrorKind::Overloaded,
            message: "Overloaded".into(),
            code: Some("overloaded_error".into()),
            param: None,
        }),
        StreamEvent::TextDelta("after".into()),
        StreamEvent::Finish {
            reason: StopReason::EndTurn,
            stop_sequence: None,
            usage: Usage::default(),
        },
    ];
    let json = sse_json(&encode_stream(&events, "m"));
    assert_eq!(json.len(), 2, "{json:?}");
    assert_eq!(
        json[0]["candidates"][0]["content"]["parts"][0]["text"],
        "partial"
    );
    assert_eq!(
        json[1],
        json!({"error": {"code": 529, "message": "Overloaded", "status": "UNAVAILABLE"}}),
        "the half-received call is dropped, the error stands alone"
    );
}

#[test]
fn stream_encoder_end_flushes_a_pending_call() {
    let events = [StreamEvent::ToolCallStart {
        index: 0,
        id: "c".into(),
        name: "f".into(),
        signature: None,
    }];
    let json = sse_json(&encode_stream(&events, "m"));
    assert_eq!(json.len(), 1);
    assert_eq!(
        json[0]["candidates"][0]["content"]["parts"][0]["functionCall"]["name"],
        "f"
    );
}

/// Fixture stream → IR → Gemini SSE → IR: the same meaning (ids are re-synthesised from the
/// same responseId, so they match too).
#[test]
fn stream_round_trip_keeps_the_meaning() {
    for fixture in [STREAM_TEXT, STREAM_CALL] {
        let first = decode_stream(fixture);
        let StreamEvent::Start { model, .. } = &first[0] else {
            panic!()
        };
        let encoded = encode_stream(&first, model);
        let again = decode_stream(&encoded);
        assert_eq!(all_text(&again), all_text(&first));
        let calls = |evs: &[StreamEvent]| -> Vec<StreamEvent> {
            evs.iter()
                .filter(|e| {
                    matches!(
                        e,
                        StreamEvent::ToolCallStart { .. } | StreamEvent::ToolArgsDelta { .. }
                    )
                })
                .cloned()
                .collect()
        };
        assert_eq!(calls(&again), calls(&first));
        assert_eq!(again.first(), first.first(), "start: id and model");
        let finish = |evs: &[StreamEvent]| evs.last().cloned();
        // Finish: reason and final usage survive.
        assert_eq!(finish(&again), finish(&first));
    }
}

// ---------------------------------------------------------------------------------------------
// errors

#[test]
fn decodes_the_429_fixture() {
    let info = decode_error(429, ERROR_429);
    assert_eq!(
        info,
        ErrorInfo {
            status: 429,
            kind: ErrorKind::RateLimit,
            message: "You exceeded your current quota, please check your plan.".into(),
            code: Some("RESOURCE_EXHAUSTED".into()),
            param: None,
        }
    );
}

#[test]
fn decodes_status_names_and_tolerates_other_bodies() {
    let kind = |status: u16, name: &str| {
        let body = json!({"error": {"code": status, "message": "m", "status": name}});
        decode_error(status, &serde_json::to_vec(&body).unwrap()).kind
    };
    assert_eq!(kind(400, "INVALID_ARGUMENT"), ErrorKind::InvalidRequest);
    assert_eq!(kind(400, "FAILED_PRECONDITION"), ErrorKind::InvalidRequest);
    assert_eq!(kind(403, "PERMISSION_DENIED"), ErrorKind::Permission);
    assert_eq!(kind(401, "UNAUTHENTICATED"), ErrorKind::Authentication);
    assert_eq!(kind(404, "NOT_FOUND"), ErrorKind::NotFound);
    assert_eq!(kind(503, "UNAVAILABLE"), ErrorKind::Overloaded);
    assert_eq!(kind(504, "DEADLINE_EXCEEDED"), ErrorKind::Timeout);
    assert_eq!(kind(500, "INTERNAL"), ErrorKind::Server);
    assert_eq!(
        kind(429, "SOMETHING_NEW"),
        ErrorKind::RateLimit,
        "falls back to HTTP"
    );

    let html = decode_error(502, b"<html>Bad Gateway</html>");
    assert_eq!(html.kind, ErrorKind::Server);
    assert_eq!(html.message, "<html>Bad Gateway</html>");
    assert_eq!(html.code, None);
    assert_eq!(decode_error(503, b"").message, "upstream answered HTTP 503");

    // A bad key is a 400 INVALID_ARGUMENT whose detail says API_KEY_INVALID.
    let bad_key = json!({"error": {"code": 400, "message": "API key not valid.",
        "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}});
    let info = decode_error(400, &serde_json::to_vec(&bad_key).unwrap());
    assert_eq!((info.kind, info.status), (ErrorKind::Authentication, 400));

    // Array-wrapped (streamGenerateContent without alt=sse) with a field violation.
    let arr = json!([{"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": "contents[0].parts", "description": "empty"}]}]}}]);
    let info = decode_error(400, &serde_json::to_vec(&arr).unwrap());
    assert_eq!(info.kind, ErrorKind::InvalidRequest);
    assert_eq!(info.param.as_deref(), Some("contents[0].parts"));
}

#[test]
fn encodes_errors_as_google_rpc_status() {
    let err = ErrorInfo {
        status: 429,
        kind: ErrorKind::RateLimit,
        message: "slow down".into(),
        code: Some("rate_limit_exceeded".into()),
        param: None,
    };
    assert_eq!(
        body_json(&encode_error(&err)),
        json!({"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}})
    );
    for kind in [
        ErrorKind::InvalidRequest,
        ErrorKind::Authentication,
        ErrorKind::Permission,
        ErrorKind::NotFound,
        ErrorKind::RateLimit,
        ErrorKind::Overloaded,
        ErrorKind::Timeout,
        ErrorKind::Server,
    ] {
        let err = ErrorInfo {
            status: kind.status(),
            kind,
            message: "x".into(),
            code: None,
            param: None,
        };
        assert_eq!(decode_error(err.status, &encode_error(&err)).kind, kind);
    }
}

// ---------------------------------------------------------------------------------------------
// property: request decode(encode(x)) keeps the meaning

/// What a request means, independent of ids (compared by which call a result answers) and of
/// how same-role turns are split.
#[derive(Debug, PartialEq)]
enum Meaning {
    Text(String),
    Call {
        ordinal: usize,
        name: String,
        args: Value,
    },
    Result {
        call: Option<usize>,
        name: String,
        text: String,
        is_error: bool,
    },
}

fn meaning(req: &ChatRequest) -> Vec<(Role, Vec<Meaning>)> {
    let mut ordinals = std::collections::HashMap::new();
    let mut names = std::collections::HashMap::new();
    let mut turns: Vec<(Role, Vec<Meaning>)> = Vec::new();
    for m in &req.messages {
        let mut items = Vec::new();
        for p in &m.content {
            match p {
                Part::Text(b) => items.push(Meaning::Text(b.text.clone())),
                Part::ToolCall {
                    id,
                    name,
                    arguments,
                    ..
                } => {
                    let ordinal = ordinals.len();
                    ordinals.insert(id.clone(), ordinal);
                    names.insert(id.clone(), name.clone());
                    items.push(Meaning::Call {
                        ordinal,
                        name: name.clone(),
                        args: serde_json::from_str(arguments).unwrap(),
                    });
                }
                Part::ToolResult {
                    id,
                    name,
                    content,
                    is_error,
                } => items.push(Meaning::Result {
                    call: ordinals.get(id).copied(),
                    name: name.clone().or_else(|| names.get(id).cloned()).unwrap(),
                    text: content
                        .iter()
                        .filter_map(|p| match p {
                            Part::Text(b) => Some(b.text.clone()),
                            _ => None,
                        })
                        .collect(),
                    is_error: *is_error,
                }),
                other => panic!("not generated: {other:?}"),
            }
        }
        if items.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((role, prev)) if *role == m.role => prev.extend(items),
            _ => turns.push((m.role, items)),
        }
    }
    turns
}

#[derive(Debug, Clone)]
enum Step {
    UserText(String),
    AssistantText(String),
    /// Calls (name, args) and whether each result names its function.
    Calls(Vec<(String, Value, bool, String, bool)>),
}

fn arb_step() -> impl Strategy<Value = Step> {
    let word = "[a-zA-Z0-9 ,.]{1,16}";
    let args = prop::collection::btree_map("[a-z]{1,4}", any::<i32>(), 0..3)
        .prop_map(|m| serde_json::to_value(m).unwrap());
    let call = (
        prop::sample::select(vec!["get_weather", "lookup", "sum"]),
        args,
        any::<bool>(),
        "[a-z ]{0,12}",
        any::<bool>(),
    )
        .prop_map(|(n, a, named, r, err)| (n.to_owned(), a, named, r, err));
    prop_oneof![
        word.prop_map(Step::UserText),
        word.prop_map(Step::AssistantText),
        prop::collection::vec(call, 1..4).prop_map(Step::Calls),
    ]
}

fn build_request(
    steps: Vec<Step>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
) -> ChatRequest {
    let mut messages = Vec::new();
    let mut next_id = 0;
    for step in steps {
        match step {
            Step::UserText(t) => messages.push(msg(Role::User, vec![text(&t)])),
            Step::AssistantText(t) => messages.push(msg(Role::Assistant, vec![text(&t)])),
            Step::Calls(calls) => {
                let mut call_parts = Vec::new();
                let mut result_parts = Vec::new();
                for (name, args, named, result, is_error) in calls {
                    let id = format!("id_{next_id}");
                    next_id += 1;
                    call_parts.push(Part::ToolCall {
                        id: id.clone(),
                        name: name.clone(),
                        arguments: args.to_string(),
                        signature: None,
                    });
                    result_parts.push(Part::ToolResult {
                        id,
                        name: named.then_some(name),
                        content: vec![text(&result)],
                        is_error,
                    });
                }
                messages.push(msg(Role::Assistant, call_parts));
                messages.push(msg(Role::User, result_parts));
            }
        }
    }
    ChatRequest {
        model: "gemini-x".into(),
        messages,
        tools: vec![tool("get_weather"), tool("lookup"), tool("sum")],
        tool_choice: Some(ToolChoice::Auto),
        temperature,
        max_tokens,
        stream: true,
        stream_usage: true,
        ..ChatRequest::default()
    }
}

proptest! {
    #[test]
    fn request_decode_of_encode_keeps_the_meaning(
        steps in prop::collection::vec(arb_step(), 1..8),
        temperature in prop::option::of(0.0f64..2.0),
        max_tokens in prop::option::of(1u32..100_000),
    ) {
        let original = build_request(steps, temperature, max_tokens);
        let body = encode_request(&original).unwrap();
        let decoded = decode_request(&body, "gemini-x", true).unwrap();
        prop_assert_eq!(meaning(&decoded), meaning(&original));
        prop_assert_eq!(&decoded.tools, &original.tools.iter().map(|t| Tool { strict: None, ..t.clone() }).collect::<Vec<_>>());
        prop_assert_eq!(&decoded.tool_choice, &original.tool_choice);
        // serde_json's default float parser may be off by one ulp.
        prop_assert_eq!(decoded.temperature.is_some(), original.temperature.is_some());
        if let (Some(a), Some(b)) = (decoded.temperature, original.temperature) {
            prop_assert!((a - b).abs() < 1e-12);
        }
        prop_assert_eq!(decoded.max_tokens, original.max_tokens);
        prop_assert_eq!(decoded.model, original.model);
    }
}
