//! Golden tests against the recorded Bedrock fixtures, encode-shape tests, stream sequences and
//! pitfall regressions (protocols.md §9).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};

use super::*;
use crate::translate::eventstream::{event_frame, exception_frame, EventStreamDecoder};
use crate::translate::ir::*;
use crate::usage::Usage;

const CONVERSE: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/bedrock-converse.json"
));
const CONVERSE_REQUEST: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/bedrock-converse.request.json"
));
const STREAM: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/bedrock-converse-stream.eventstream.bin"
));

fn text(t: &str) -> Part {
    Part::Text(TextBlock {
        text: t.into(),
        cache_control: None,
    })
}

fn user(parts: Vec<Part>) -> Message {
    Message {
        role: Role::User,
        content: parts,
    }
}

fn assistant(parts: Vec<Part>) -> Message {
    Message {
        role: Role::Assistant,
        content: parts,
    }
}

fn call(id: &str, name: &str, args: &str) -> Part {
    Part::ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: args.into(),
        signature: None,
    }
}

fn result(id: &str, t: &str) -> Part {
    Part::ToolResult {
        id: id.into(),
        name: None,
        content: vec![text(t)],
        is_error: false,
    }
}

fn weather_tool() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: Some("Weather for a city".into()),
        parameters: json!({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}),
        strict: None,
    }
}

fn encode(req: &ChatRequest) -> Value {
    serde_json::from_slice(&encode_request(req).unwrap()).unwrap()
}

fn hello() -> ChatRequest {
    ChatRequest {
        model: "us.amazon.nova-micro-v1:0".into(),
        system: vec![TextBlock {
            text: "You are a chatbot.".into(),
            cache_control: None,
        }],
        messages: vec![user(vec![text("Hello!")])],
        ..ChatRequest::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Request

#[test]
fn encodes_the_fixture_request() {
    let fixture: Value = serde_json::from_str(CONVERSE_REQUEST).unwrap();
    let want = &fixture["body"];
    let got = encode(&hello());
    assert_eq!(got["messages"], want["messages"]);
    assert_eq!(got["system"], want["system"]);
    // The recorded client sent `inferenceConfig: {}`; the gateway always sets maxTokens (the
    // only difference), so answers don't depend on per-model defaults.
    assert_eq!(
        got["inferenceConfig"],
        json!({"maxTokens": DEFAULT_MAX_TOKENS})
    );
    assert!(got.get("toolConfig").is_none());
    assert!(got.get("additionalModelRequestFields").is_none());
    assert!(got.get("model").is_none(), "the model id goes in the URL");
}

#[test]
fn encodes_inference_config() {
    let got = encode(&ChatRequest {
        max_tokens: Some(300),
        temperature: Some(1.4),
        top_p: Some(0.9),
        top_k: Some(40),
        stop: vec![
            "END".into(),
            " ".into(),
            "".into(),
            "\n".into(),
            "STOP".into(),
        ],
        ..hello()
    });
    assert_eq!(
        got["inferenceConfig"],
        json!({"maxTokens": 300, "temperature": 0.7, "topP": 0.9, "stopSequences": ["END", "STOP"]})
    );
    assert_eq!(got["additionalModelRequestFields"], json!({"top_k": 40}));
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
fn encodes_tools_and_every_tool_choice() {
    let base = ChatRequest {
        tools: vec![
            weather_tool(),
            Tool {
                name: "noargs".into(),
                description: None,
                parameters: Value::Null,
                strict: None,
            },
        ],
        ..hello()
    };
    let got = encode(&base);
    assert_eq!(
        got["toolConfig"],
        json!({"tools": [
            {"toolSpec": {"name": "get_weather", "description": "Weather for a city",
              "inputSchema": {"json": {"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}},
            {"toolSpec": {"name": "noargs", "inputSchema": {"json": {"type":"object","properties":{}}}}}
        ]})
    );
    let choice = |c: ToolChoice| {
        encode(&ChatRequest {
            tool_choice: Some(c),
            ..base.clone()
        })["toolConfig"]
            .get("toolChoice")
            .cloned()
    };
    assert_eq!(choice(ToolChoice::Auto), Some(json!({"auto": {}})));
    assert_eq!(choice(ToolChoice::Required), Some(json!({"any": {}})));
    assert_eq!(
        choice(ToolChoice::Tool("get_weather".into())),
        Some(json!({"tool": {"name": "get_weather"}}))
    );
    // Converse has no "none": the tools are left out.
    let none = encode(&ChatRequest {
        tool_choice: Some(ToolChoice::None),
        ..base.clone()
    });
    assert!(none.get("toolConfig").is_none());
}

#[test]
fn tool_choice_none_with_tool_history_keeps_tools_without_a_choice() {
    let got = encode(&ChatRequest {
        tools: vec![weather_tool()],
        tool_choice: Some(ToolChoice::None),
        messages: vec![
            user(vec![text("weather?")]),
            assistant(vec![call("t1", "get_weather", r#"{"city":"Paris"}"#)]),
            user(vec![result("t1", "sunny")]),
        ],
        ..hello()
    });
    // Bedrock rejects toolUse/toolResult blocks without a toolConfig.
    assert_eq!(
        got["toolConfig"]["tools"][0]["toolSpec"]["name"],
        "get_weather"
    );
    assert!(got["toolConfig"].get("toolChoice").is_none());
}

#[test]
fn tool_history_without_declared_tools_synthesises_specs() {
    let got = encode(&ChatRequest {
        messages: vec![
            user(vec![text("weather?")]),
            assistant(vec![
                call("t1", "get_weather", r#"{"city":"Paris"}"#),
                call("t2", "get_weather", r#"{"city":"Rome"}"#),
                call("t3", "get_time", "{}"),
            ]),
            user(vec![
                result("t1", "sunny"),
                result("t2", "rain"),
                result("t3", "noon"),
            ]),
        ],
        ..hello()
    });
    let names: Vec<&str> = got["toolConfig"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["toolSpec"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["get_weather", "get_time"]);
}

#[test]
fn encodes_tool_calls_and_results() {
    let got = encode(&ChatRequest {
        tools: vec![weather_tool()],
        messages: vec![
            user(vec![text("weather?")]),
            assistant(vec![
                text("Let me check."),
                call("t1", "get_weather", r#"{"city": "Paris"}"#),
                call("t2", "get_weather", ""),
            ]),
            user(vec![
                result("t1", "sunny"),
                Part::ToolResult {
                    id: "t2".into(),
                    name: Some("get_weather".into()),
                    content: vec![text("unknown city")],
                    is_error: true,
                },
            ]),
        ],
        ..hello()
    });
    assert_eq!(
        got["messages"][1],
        json!({"role": "assistant", "content": [
            {"text": "Let me check."},
            {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}}},
            {"toolUse": {"toolUseId": "t2", "name": "get_weather", "input": {}}}
        ]})
    );
    assert_eq!(
        got["messages"][2],
        json!({"role": "user", "content": [
            {"toolResult": {"toolUseId": "t1", "content": [{"text": "sunny"}]}},
            {"toolResult": {"toolUseId": "t2", "content": [{"text": "unknown city"}], "status": "error"}}
        ]})
    );
}

#[test]
fn pitfall_7_parallel_tool_results_are_one_user_message_results_first() {
    // As an OpenAI client sends them: one `tool` message per result, then user text.
    let got = encode(&ChatRequest {
        tools: vec![weather_tool()],
        messages: vec![
            user(vec![text("weather in Paris and Rome?")]),
            assistant(vec![
                call("t1", "get_weather", r#"{"city":"Paris"}"#),
                call("t2", "get_weather", r#"{"city":"Rome"}"#),
            ]),
            user(vec![result("t1", "sunny")]),
            user(vec![text("and be brief"), result("t2", "rain")]),
        ],
        ..hello()
    });
    let msgs = got["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    let kinds: Vec<&str> = msgs[2]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_object().unwrap().keys().next().unwrap().as_str())
        .collect();
    assert_eq!(kinds, ["toolResult", "toolResult", "text"]);
    assert_eq!(msgs[2]["content"][1]["toolResult"]["toolUseId"], "t2");
}

#[test]
fn pitfall_6_blank_text_and_empty_turns_are_dropped_and_neighbours_merged() {
    let got = encode(&ChatRequest {
        messages: vec![
            user(vec![text("one")]),
            assistant(vec![text(""), text("  ")]),
            user(vec![text(""), text("two")]),
            assistant(vec![text("answer")]),
        ],
        ..hello()
    });
    assert_eq!(
        got["messages"],
        json!([
            {"role": "user", "content": [{"text": "one"}, {"text": "two"}]},
            {"role": "assistant", "content": [{"text": "answer"}]}
        ])
    );
}

#[test]
fn pitfall_6_blank_cached_text_leaves_no_lonely_cache_point() {
    let got = encode(&ChatRequest {
        messages: vec![
            user(vec![text("hi")]),
            assistant(vec![Part::Text(TextBlock {
                text: " ".into(),
                cache_control: Some(json!({"type": "ephemeral"})),
            })]),
        ],
        ..hello()
    });
    assert_eq!(
        got["messages"],
        json!([{"role": "user", "content": [{"text": "hi"}]}])
    );
}

#[test]
fn pitfall_6_empty_tool_result_still_has_content() {
    let got = encode(&ChatRequest {
        tools: vec![weather_tool()],
        messages: vec![
            user(vec![text("go")]),
            assistant(vec![call("t1", "get_weather", "{}")]),
            user(vec![Part::ToolResult {
                id: "t1".into(),
                name: None,
                content: vec![text("")],
                is_error: false,
            }]),
        ],
        ..hello()
    });
    assert_eq!(
        got["messages"][2]["content"][0]["toolResult"]["content"],
        json!([{"json": {}}])
    );
}

#[test]
fn pitfall_9_whitespace_only_stop_sequences_are_dropped() {
    let got = encode(&ChatRequest {
        stop: vec![" ".into(), "\n\n".into()],
        ..hello()
    });
    assert!(got["inferenceConfig"].get("stopSequences").is_none());
}

#[test]
fn pitfall_10_signed_thinking_is_replayed_first_unsigned_is_dropped() {
    let got = encode(&ChatRequest {
        tools: vec![weather_tool()],
        messages: vec![
            user(vec![text("weather?")]),
            assistant(vec![
                Part::Thinking {
                    text: "I should call the tool.".into(),
                    signature: Some("sig-abc".into()),
                },
                Part::RedactedThinking {
                    data: "ZW5jcnlwdGVk".into(),
                },
                Part::Thinking {
                    text: "from another provider".into(),
                    signature: None,
                },
                call("t1", "get_weather", r#"{"city":"Paris"}"#),
            ]),
            user(vec![result("t1", "sunny")]),
        ],
        ..hello()
    });
    let content = &got["messages"][1]["content"];
    assert_eq!(
        content[0],
        json!({"reasoningContent": {"reasoningText": {"text": "I should call the tool.", "signature": "sig-abc"}}})
    );
    assert_eq!(
        content[1],
        json!({"reasoningContent": {"redactedContent": "ZW5jcnlwdGVk"}})
    );
    assert!(content[2].get("toolUse").is_some());
    assert_eq!(content.as_array().unwrap().len(), 3);
}

#[test]
fn encodes_images_documents_and_cache_points() {
    let got = encode(&ChatRequest {
        system: vec![
            TextBlock {
                text: "long cached instructions".into(),
                cache_control: Some(json!({"type": "ephemeral"})),
            },
            TextBlock {
                text: "more".into(),
                cache_control: None,
            },
        ],
        messages: vec![user(vec![
            Part::Image(ImageSource::Base64 {
                media_type: "image/jpeg".into(),
                data: "/9j/4AAQ".into(),
            }),
            Part::Image(ImageSource::Url {
                url: "s3://bucket/cat.PNG".into(),
            }),
            Part::Document {
                source: ImageSource::Base64 {
                    media_type: "application/pdf".into(),
                    data: "JVBERi0x".into(),
                },
                title: Some("Q3 report.pdf  (final)".into()),
            },
            Part::Document {
                source: ImageSource::Base64 {
                    media_type: "text/plain".into(),
                    data: "aGk=".into(),
                },
                title: None,
            },
            Part::Text(TextBlock {
                text: "describe".into(),
                cache_control: Some(json!({"type": "ephemeral"})),
            }),
        ])],
        ..hello()
    });
    assert_eq!(
        got["system"],
        json!([{"text": "long cached instructions"}, {"cachePoint": {"type": "default"}}, {"text": "more"}])
    );
    assert_eq!(
        got["messages"][0]["content"],
        json!([
            {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}},
            {"image": {"format": "png", "source": {"s3Location": {"uri": "s3://bucket/cat.PNG"}}}},
            {"document": {"format": "pdf", "name": "Q3 report-pdf (final)", "source": {"bytes": "JVBERi0x"}}},
            {"document": {"format": "txt", "name": "document-2", "source": {"bytes": "aGk="}}},
            {"text": "describe"},
            {"cachePoint": {"type": "default"}}
        ])
    );
}

#[test]
fn image_urls_are_unsupported_with_a_clear_message() {
    let err = encode_request(&ChatRequest {
        messages: vec![user(vec![Part::Image(ImageSource::Url {
            url: "https://example.com/cat.png".into(),
        })])],
        ..hello()
    })
    .unwrap_err();
    match err {
        TranslateError::Unsupported { message, param } => {
            assert!(message.contains("Bedrock needs image bytes"), "{message}");
            assert_eq!(param.as_deref(), Some("messages"));
        }
        other => panic!("{other:?}"),
    }
    let err = encode_request(&ChatRequest {
        messages: vec![user(vec![Part::Image(ImageSource::Base64 {
            media_type: "image/tiff".into(),
            data: "AAAA".into(),
        })])],
        ..hello()
    })
    .unwrap_err();
    assert!(matches!(err, TranslateError::Unsupported { .. }));
}

#[test]
fn invalid_tool_arguments_n_and_json_mode_are_refused() {
    let bad_args = encode_request(&ChatRequest {
        messages: vec![
            user(vec![text("go")]),
            assistant(vec![call("t1", "f", r#"{"city": "Par"#)]),
        ],
        ..hello()
    });
    assert!(
        matches!(bad_args, Err(TranslateError::Unsupported { ref message, .. }) if message.contains("t1"))
    );
    let n = encode_request(&ChatRequest {
        n: Some(2),
        ..hello()
    });
    assert!(matches!(n, Err(TranslateError::Unsupported { param: Some(ref p), .. }) if p == "n"));
    assert!(encode_request(&ChatRequest {
        n: Some(1),
        response_format: Some(ResponseFormat::Text),
        ..hello()
    })
    .is_ok());
    let json_mode = encode_request(&ChatRequest {
        response_format: Some(ResponseFormat::JsonObject),
        ..hello()
    });
    assert!(matches!(
        json_mode,
        Err(TranslateError::Unsupported { param: Some(ref p), .. }) if p == "response_format"
    ));
}

#[test]
fn reasoning_becomes_anthropic_thinking_with_room_for_output() {
    let with = |reasoning: Reasoning, max: Option<u32>| {
        encode(&ChatRequest {
            reasoning: Some(reasoning),
            max_tokens: max,
            ..hello()
        })
    };
    let got = with(
        Reasoning {
            effort: None,
            budget_tokens: Some(8000),
            enabled: true,
        },
        None,
    );
    assert_eq!(
        got["additionalModelRequestFields"]["thinking"],
        json!({"type": "enabled", "budget_tokens": 8000})
    );
    assert_eq!(
        got["inferenceConfig"]["maxTokens"],
        8000 + DEFAULT_MAX_TOKENS
    );
    // Client limit below the budget: the budget is added on top (Claude needs max > budget).
    // Efforts map to the Anthropic encoder's budgets (high: 16384), the same Claude models.
    let got = with(
        Reasoning {
            effort: Some("high".into()),
            budget_tokens: None,
            enabled: true,
        },
        Some(1000),
    );
    assert_eq!(
        got["additionalModelRequestFields"]["thinking"]["budget_tokens"],
        16384
    );
    assert_eq!(got["inferenceConfig"]["maxTokens"], 17384);
    // Claude rejects a non-default temperature and top_k while thinking: both left out.
    let got = encode(&ChatRequest {
        reasoning: Some(Reasoning {
            effort: Some("medium".into()),
            budget_tokens: None,
            enabled: true,
        }),
        temperature: Some(0.7),
        top_k: Some(5),
        ..hello()
    });
    assert_eq!(
        got["additionalModelRequestFields"],
        json!({"thinking": {"type": "enabled", "budget_tokens": 4096}})
    );
    assert!(got["inferenceConfig"].get("temperature").is_none(), "{got}");
    // Client limit above the budget: kept.
    let got = with(
        Reasoning {
            effort: Some("low".into()),
            budget_tokens: None,
            enabled: true,
        },
        Some(20000),
    );
    assert_eq!(
        got["additionalModelRequestFields"]["thinking"]["budget_tokens"],
        1024
    );
    assert_eq!(got["inferenceConfig"]["maxTokens"], 20000);
    // Tiny budgets are raised to Claude's minimum.
    let got = with(
        Reasoning {
            effort: None,
            budget_tokens: Some(10),
            enabled: true,
        },
        Some(5000),
    );
    assert_eq!(
        got["additionalModelRequestFields"]["thinking"]["budget_tokens"],
        1024
    );
    let off = with(
        Reasoning {
            effort: Some("high".into()),
            budget_tokens: None,
            enabled: false,
        },
        None,
    );
    assert!(off.get("additionalModelRequestFields").is_none());
    assert_eq!(off["inferenceConfig"]["maxTokens"], DEFAULT_MAX_TOKENS);
}

// ---------------------------------------------------------------------------------------------
// Non-stream response

#[test]
fn decodes_the_fixture_response() {
    let r = decode_response(CONVERSE).unwrap();
    assert_eq!(
        r.content,
        vec![text("Hello! How can I assist you today? Whether you have questions, need information, or just want to chat, I'm here to help.")]
    );
    assert_eq!(r.stop_reason, StopReason::EndTurn);
    assert_eq!(r.stop_sequence, None);
    assert_eq!(
        r.usage,
        Usage {
            input: 7,
            output: 30,
            ..Usage::default()
        }
    );
    assert!(r.id.starts_with("msg_bdrk_"));
    assert_eq!(r.model, "");
}

/// Built from the documented Converse shapes (no recording with tools, reasoning and cache is
/// available): the fixture's envelope with other content blocks and cache usage.
fn tool_response_body() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "metrics": {"latencyMs": 900},
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "Need the weather.", "signature": "sig-1"}}},
            {"text": "Checking."},
            {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris", "days": 2}}},
            {"toolUse": {"toolUseId": "tooluse_2", "name": "get_time"}},
            {"someFutureBlock": {"x": 1}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 10, "outputTokens": 50, "totalTokens": 560,
                  "cacheReadInputTokens": 400, "cacheWriteInputTokens": 100},
        "trace": {"unknown": true}
    }))
    .unwrap()
}

#[test]
fn decodes_tool_calls_reasoning_and_cache_usage() {
    let r = decode_response(&tool_response_body()).unwrap();
    assert_eq!(
        r.content,
        vec![
            Part::Thinking {
                text: "Need the weather.".into(),
                signature: Some("sig-1".into())
            },
            text("Checking."),
            call("tooluse_1", "get_weather", r#"{"city":"Paris","days":2}"#),
            call("tooluse_2", "get_time", "{}"),
        ]
    );
    assert_eq!(r.stop_reason, StopReason::ToolUse);
    // pitfall 4: input counts every prompt token; cache counts are subsets.
    assert_eq!(
        r.usage,
        Usage {
            input: 510,
            output: 50,
            cache_read: 400,
            cache_write: 100,
            reasoning: 0,
            estimated: false
        }
    );
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

#[test]
fn stop_sequence_and_tool_use_derivation() {
    let body = json!({
        "output": {"message": {"role": "assistant", "content": [{"text": "a"}]}},
        "stopReason": "stop_sequence",
        "additionalModelResponseFields": {"stop_sequence": "END"},
        "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}
    });
    let r = decode_response(&serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(r.stop_reason, StopReason::StopSequence);
    assert_eq!(r.stop_sequence.as_deref(), Some("END"));
    // A turn with tool calls ends for them even when the model says end_turn.
    let body = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}
        ]}},
        "stopReason": "end_turn"
    });
    let r = decode_response(&serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(r.stop_reason, StopReason::ToolUse);
    assert_eq!(r.usage, Usage::default());
}

#[test]
fn malformed_responses_are_typed_errors() {
    assert!(matches!(
        decode_response(b"not json"),
        Err(TranslateError::Json(_))
    ));
    assert!(matches!(
        decode_response(br#"{"stopReason":"end_turn"}"#),
        Err(TranslateError::Protocol(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Stream

/// Runs an event-stream body through the framing decoder and the stream decoder, then `end()`.
fn decode_stream(body: &[u8]) -> Vec<StreamEvent> {
    let mut frames = EventStreamDecoder::new();
    frames.push(body);
    let mut dec = StreamDecoder::new("us.amazon.nova-micro-v1:0");
    let mut out = Vec::new();
    while let Some(msg) = frames.next_message().unwrap() {
        dec.message(&msg, &mut out);
    }
    dec.end(&mut out);
    out
}

fn frames(events: &[(&str, Value)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, payload) in events {
        body.extend(event_frame(name, &payload.to_string()));
    }
    body
}

const FIXTURE_TEXT: &str = "The capital of France is Paris. Paris is not only the capital city but also the most populous city in France, and it is a major center for culture, commerce, fashion, and international diplomacy. Known for its historical landmarks, such as the Eiffel Tower, the Louvre Museum, and Notre-Dame Cathedral, Paris is often referred to as \"The City of Light\" or \"The City of Love.\"";

#[test]
fn decodes_the_fixture_stream() {
    let events = decode_stream(STREAM);
    match &events[0] {
        StreamEvent::Start { id, model, usage } => {
            assert!(id.starts_with("msg_bdrk_"));
            assert_eq!(model, "us.amazon.nova-micro-v1:0");
            assert_eq!(*usage, Usage::default());
        }
        other => panic!("first event {other:?}"),
    }
    let deltas: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        deltas.len(),
        29,
        "one TextDelta per contentBlockDelta, none held back"
    );
    assert_eq!(deltas[0], "The");
    assert_eq!(deltas.concat(), FIXTURE_TEXT);
    assert_eq!(events.len(), 31, "Start + 29 deltas + Finish: {events:?}");
    assert_eq!(
        events.last(),
        Some(&StreamEvent::Finish {
            reason: StopReason::EndTurn,
            stop_sequence: None,
            usage: Usage {
                input: 13,
                output: 82,
                ..Usage::default()
            }
        })
    );
}

#[test]
fn decodes_the_fixture_stream_through_raw_events() {
    // The `RawEvent` path (name = `:event-type`) gives the same sequence as `message`.
    let mut frames = EventStreamDecoder::new();
    frames.push(STREAM);
    let mut dec = StreamDecoder::new("m");
    let mut out = Vec::new();
    while let Some(msg) = frames.next_message().unwrap() {
        dec.event(
            RawEvent {
                name: msg.event_type.as_deref(),
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
    assert!(matches!(out[0], StreamEvent::Start { .. }));
    assert!(matches!(out.last(), Some(StreamEvent::Finish { .. })));
    assert_eq!(
        out.iter()
            .filter(|e| matches!(e, StreamEvent::Start { .. } | StreamEvent::Finish { .. }))
            .count(),
        2
    );
}

#[test]
fn pitfall_1_tool_indices_count_tool_calls_not_blocks() {
    let body = frames(&[
        ("messageStart", json!({"role": "assistant"})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Think"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig-9"}}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 0})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"text": "Sure."}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 1})),
        (
            "contentBlockStart",
            json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_a", "name": "get_weather"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"city\":"}}}),
        ),
        (
            "contentBlockStart",
            json!({"contentBlockIndex": 3, "start": {"toolUse": {"toolUseId": "tooluse_b", "name": "get_time"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "\"Paris\"}"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 3, "delta": {"toolUse": {"input": "{}"}}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 2})),
        ("contentBlockStop", json!({"contentBlockIndex": 3})),
        ("messageStop", json!({"stopReason": "tool_use"})),
        (
            "metadata",
            json!({"usage": {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12}, "metrics": {"latencyMs": 1}}),
        ),
    ]);
    let events = decode_stream(&body);
    assert_eq!(
        events[1..],
        [
            StreamEvent::ThinkingDelta("Think".into()),
            StreamEvent::ThinkingSignature("sig-9".into()),
            StreamEvent::TextDelta("Sure.".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "tooluse_a".into(),
                name: "get_weather".into(),
                signature: None
            },
            StreamEvent::ToolArgsDelta {
                index: 0,
                fragment: "{\"city\":".into()
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "tooluse_b".into(),
                name: "get_time".into(),
                signature: None
            },
            StreamEvent::ToolArgsDelta {
                index: 0,
                fragment: "\"Paris\"}".into()
            },
            StreamEvent::ToolArgsDelta {
                index: 1,
                fragment: "{}".into()
            },
            StreamEvent::Finish {
                reason: StopReason::ToolUse,
                stop_sequence: None,
                usage: Usage {
                    input: 5,
                    output: 7,
                    ..Usage::default()
                }
            },
        ]
    );
}

#[test]
fn pitfall_2_stream_usage_includes_cache_tokens() {
    let body = frames(&[
        ("messageStart", json!({"role": "assistant"})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "hi"}}),
        ),
        ("messageStop", json!({"stopReason": "max_tokens"})),
        (
            "metadata",
            json!({"usage": {"inputTokens": 3, "outputTokens": 9, "totalTokens": 1012,
                                       "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 0}}),
        ),
    ]);
    let events = decode_stream(&body);
    assert_eq!(
        events.last(),
        Some(&StreamEvent::Finish {
            reason: StopReason::MaxTokens,
            stop_sequence: None,
            usage: Usage {
                input: 1003,
                output: 9,
                cache_read: 1000,
                ..Usage::default()
            }
        })
    );
}

#[test]
fn pitfall_5_exception_mid_stream_is_one_error_and_nothing_after() {
    let mut body = frames(&[
        ("messageStart", json!({"role": "assistant"})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "par"}}),
        ),
    ]);
    body.extend(exception_frame(
        "throttlingException",
        r#"{"message":"Too many requests, please wait before trying again."}"#,
    ));
    body.extend(frames(&[(
        "messageStop",
        json!({"stopReason": "end_turn"}),
    )]));
    let events = decode_stream(&body);
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(
        events[2],
        StreamEvent::Error(ErrorInfo {
            status: 429,
            kind: ErrorKind::RateLimit,
            message: "Too many requests, please wait before trying again.".into(),
            code: Some("throttlingException".into()),
            param: None,
        })
    );
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
                name: Some(name),
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

#[test]
fn end_after_message_stop_without_metadata_finishes_with_estimated_usage() {
    let body = frames(&[
        ("messageStart", json!({"role": "assistant"})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "hi"}}),
        ),
        ("messageStop", json!({"stopReason": "end_turn"})),
    ]);
    let events = decode_stream(&body);
    assert_eq!(
        events.last(),
        Some(&StreamEvent::Finish {
            reason: StopReason::EndTurn,
            stop_sequence: None,
            usage: Usage {
                estimated: true,
                ..Usage::default()
            }
        })
    );
}

#[test]
fn end_before_message_stop_is_an_error() {
    let body = frames(&[
        ("messageStart", json!({"role": "assistant"})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "hi"}}),
        ),
    ]);
    let events = decode_stream(&body);
    assert_eq!(events.len(), 3);
    assert!(matches!(
        &events[2],
        StreamEvent::Error(ErrorInfo {
            status: 502,
            kind: ErrorKind::Server,
            ..
        })
    ));
}

#[test]
fn unknown_events_are_ignored_and_bad_payloads_fail_once() {
    let body = frames(&[
        ("messageStart", json!({"role": "assistant"})),
        ("someNewEvent", json!({"anything": [1, 2]})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"citation": {"x": 1}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "ok"}}),
        ),
    ]);
    let mut with_bad = body.clone();
    with_bad.extend(event_frame("contentBlockDelta", "{not json"));
    let events = decode_stream(&body);
    assert_eq!(events[1], StreamEvent::TextDelta("ok".into()));
    let events = decode_stream(&with_bad);
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(matches!(&events[2], StreamEvent::Error(e) if e.status == 502));
}

#[test]
fn tool_input_without_a_started_tool_call_is_an_error() {
    let body = frames(&[
        ("messageStart", json!({"role": "assistant"})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{}"}}}),
        ),
    ]);
    let events = decode_stream(&body);
    assert!(matches!(&events[1], StreamEvent::Error(e) if e.message.contains("tool")));
    assert_eq!(events.len(), 2);
}

#[test]
fn stream_derives_tool_use_and_reads_stop_sequence() {
    let body = frames(&[
        ("messageStart", json!({"role": "assistant"})),
        (
            "contentBlockStart",
            json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t", "name": "f"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{}"}}}),
        ),
        ("messageStop", json!({"stopReason": "end_turn"})),
        (
            "metadata",
            json!({"usage": {"inputTokens": 1, "outputTokens": 1}}),
        ),
    ]);
    assert!(matches!(
        decode_stream(&body).last(),
        Some(StreamEvent::Finish {
            reason: StopReason::ToolUse,
            ..
        })
    ));
    let body = frames(&[
        ("messageStart", json!({"role": "assistant"})),
        (
            "messageStop",
            json!({"stopReason": "stop_sequence", "additionalModelResponseFields": {"stop_sequence": "###"}}),
        ),
        (
            "metadata",
            json!({"usage": {"inputTokens": 1, "outputTokens": 1}}),
        ),
    ]);
    assert!(matches!(
        decode_stream(&body).last(),
        Some(StreamEvent::Finish { reason: StopReason::StopSequence, stop_sequence: Some(s), .. }) if s == "###"
    ));
}

#[test]
fn redacted_reasoning_streams_through() {
    let body = frames(&[
        ("messageStart", json!({"role": "assistant"})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"redactedContent": "b3BhcXVl"}}}),
        ),
        ("messageStop", json!({"stopReason": "end_turn"})),
        (
            "metadata",
            json!({"usage": {"inputTokens": 1, "outputTokens": 1}}),
        ),
    ]);
    assert_eq!(
        decode_stream(&body)[1],
        StreamEvent::RedactedThinking("b3BhcXVl".into())
    );
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn decodes_http_errors_by_header_type_then_status() {
    let e = decode_error(
        429,
        Some("ModelNotReadyException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
        br#"{"message":"Model is not ready for inference."}"#,
    );
    assert_eq!(
        e,
        ErrorInfo {
            status: 429,
            kind: ErrorKind::Overloaded,
            message: "Model is not ready for inference.".into(),
            code: Some("ModelNotReadyException".into()),
            param: None,
        }
    );
    let e = decode_error(
        429,
        Some("ThrottlingException"),
        br#"{"message":"Too many tokens"}"#,
    );
    assert_eq!(e.kind, ErrorKind::RateLimit);
    let e = decode_error(
        400,
        None,
        br#"{"message":"The provided model identifier is invalid."}"#,
    );
    assert_eq!((e.kind, e.code), (ErrorKind::InvalidRequest, None));
    let e = decode_error(
        403,
        None,
        br#"{"__type":"com.amazon.coral.service#UnrecognizedClientException","Message":"The security token included in the request is invalid."}"#,
    );
    assert_eq!(e.kind, ErrorKind::Authentication);
    assert_eq!(e.code.as_deref(), Some("UnrecognizedClientException"));
    assert_eq!(
        e.message,
        "The security token included in the request is invalid."
    );
    let e = decode_error(503, None, b"<html>bad gateway</html>");
    assert_eq!(e.kind, ErrorKind::Overloaded);
    assert_eq!(e.message, "Bedrock returned HTTP 503");
    assert_eq!(e.status, 503);
}
