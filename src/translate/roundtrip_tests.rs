//! Translate-and-back across dialects: a conversation or a stream encoded in dialect B and
//! decoded again keeps its meaning (texts, tool calls with their arguments, which call each
//! result answers, stop reason, usage). Ids may be re-synthesized (Gemini has none), so calls
//! are compared by name and arguments, and results by the name of the call they answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::Value;

use super::ir::*;
use super::*;
use crate::usage::Usage;

const NAMES: &[&str] = &["get_weather", "search", "lookup_user"];

fn text(t: &str) -> Part {
    Part::Text(TextBlock {
        text: t.to_string(),
        cache_control: None,
    })
}

/// One assistant turn: some text and some tool calls; the next user turn answers each call.
#[derive(Debug, Clone)]
struct Turn {
    user: String,
    reply: String,
    calls: Vec<(usize, i64)>,
}

fn turn() -> impl Strategy<Value = Turn> {
    (
        "[a-zA-Z][a-zA-Z ,.?]{0,30}",
        "[a-zA-Z ,.]{0,30}",
        proptest::collection::vec((0..NAMES.len(), -1000i64..1000), 0..3),
    )
        .prop_map(|(user, reply, calls)| Turn { user, reply, calls })
}

fn build(system: &str, turns: &[Turn]) -> ChatRequest {
    let mut req = ChatRequest {
        model: "m".into(),
        max_tokens: Some(256),
        ..ChatRequest::default()
    };
    if !system.is_empty() {
        req.system.push(TextBlock {
            text: system.into(),
            cache_control: None,
        });
    }
    let mut n = 0;
    let mut pending: Vec<Part> = Vec::new();
    for t in turns {
        let mut user = std::mem::take(&mut pending);
        user.push(text(&t.user));
        req.messages.push(Message {
            role: Role::User,
            content: user,
        });
        let mut assistant = Vec::new();
        if !t.reply.trim().is_empty() {
            assistant.push(text(&t.reply));
        }
        for (name, arg) in &t.calls {
            n += 1;
            let id = format!("call_{n}");
            assistant.push(Part::ToolCall {
                id: id.clone(),
                name: NAMES[*name].into(),
                arguments: serde_json::json!({"q": arg}).to_string(),
                signature: None,
            });
            pending.push(Part::ToolResult {
                id,
                name: None,
                content: vec![text(&format!("result {arg}"))],
                is_error: false,
            });
        }
        if assistant.is_empty() {
            assistant.push(text("ok"));
        }
        req.messages.push(Message {
            role: Role::Assistant,
            content: assistant,
        });
    }
    let mut last = pending;
    last.push(text("thanks"));
    req.messages.push(Message {
        role: Role::User,
        content: last,
    });
    for name in NAMES {
        req.tools.push(Tool {
            name: (*name).into(),
            description: Some(format!("{name} tool")),
            parameters: serde_json::json!({"type":"object","properties":{"q":{"type":"integer"}}}),
            strict: None,
        });
    }
    req
}

/// The meaning of a conversation: per turn (same-role turns merged) its role, text, calls
/// (name, arguments) and results (answered call's name, text).
type Meaning = Vec<(bool, String, Vec<(String, Value)>, Vec<(String, String)>)>;

fn meaning(req: &ChatRequest) -> (String, Meaning) {
    let system: Vec<&str> = req.system.iter().map(|s| s.text.as_str()).collect();
    let mut names = std::collections::HashMap::new();
    let mut out: Meaning = Vec::new();
    for m in &req.messages {
        let user = m.role == Role::User;
        if out.last().is_none_or(|l| l.0 != user) {
            out.push((user, String::new(), Vec::new(), Vec::new()));
        }
        let Some(entry) = out.last_mut() else {
            continue;
        };
        for p in &m.content {
            match p {
                Part::Text(t) => {
                    if !entry.1.is_empty() {
                        entry.1.push('|');
                    }
                    entry.1.push_str(t.text.trim());
                }
                Part::ToolCall {
                    id,
                    name,
                    arguments,
                    ..
                } => {
                    names.insert(id.clone(), name.clone());
                    entry
                        .2
                        .push((name.clone(), serde_json::from_str(arguments).unwrap()));
                }
                Part::ToolResult {
                    id, name, content, ..
                } => {
                    let call = name
                        .clone()
                        .or_else(|| names.get(id).cloned())
                        .unwrap_or_default();
                    let body: Vec<String> = content
                        .iter()
                        .filter_map(|c| match c {
                            Part::Text(t) => Some(t.text.clone()),
                            _ => None,
                        })
                        .collect();
                    entry.3.push((call, body.join("")));
                }
                _ => {}
            }
        }
    }
    (system.join("\n"), out)
}

fn stream_events(reply: &str, calls: &[(usize, i64)], max_tokens_hit: bool) -> Vec<StreamEvent> {
    let mut ev = vec![StreamEvent::Start {
        id: "msg_1".into(),
        model: "m".into(),
        usage: Usage::default(),
    }];
    for piece in reply.split_inclusive(' ') {
        ev.push(StreamEvent::TextDelta(piece.into()));
    }
    for (i, (name, arg)) in calls.iter().enumerate() {
        ev.push(StreamEvent::ToolCallStart {
            index: i as u32,
            id: format!("call_{i}"),
            name: NAMES[*name].into(),
            signature: None,
        });
        let args = serde_json::json!({"q": arg}).to_string();
        let (a, b) = args.split_at(args.len() / 2);
        for frag in [a, b] {
            ev.push(StreamEvent::ToolArgsDelta {
                index: i as u32,
                fragment: frag.into(),
            });
        }
    }
    let reason = if !calls.is_empty() {
        StopReason::ToolUse
    } else if max_tokens_hit {
        StopReason::MaxTokens
    } else {
        StopReason::EndTurn
    };
    ev.push(StreamEvent::Finish {
        reason,
        stop_sequence: None,
        usage: Usage {
            input: 12,
            output: 34,
            ..Usage::default()
        },
    });
    ev
}

/// Text, calls (name, arguments), stop reason and (input, output) usage of an event sequence.
type StreamMeaning = (String, Vec<(String, Value)>, StopReason, (u64, u64));

fn stream_meaning(events: &[StreamEvent]) -> StreamMeaning {
    let mut text = String::new();
    let mut calls: Vec<(String, String)> = Vec::new();
    let mut by_index = std::collections::HashMap::new();
    let mut stop = StopReason::Other;
    let mut usage = (0, 0);
    for e in events {
        match e {
            StreamEvent::TextDelta(t) => text.push_str(t),
            StreamEvent::ToolCallStart { index, name, .. } => {
                by_index.insert(*index, calls.len());
                calls.push((name.clone(), String::new()));
            }
            StreamEvent::ToolArgsDelta { index, fragment } => {
                let i = by_index[index];
                calls[i].1.push_str(fragment);
            }
            StreamEvent::Finish {
                reason, usage: u, ..
            } => {
                stop = *reason;
                usage = (u.input, u.output);
            }
            _ => {}
        }
    }
    let calls = calls
        .into_iter()
        .map(|(n, a)| (n, serde_json::from_str(&a).unwrap()))
        .collect();
    (text, calls, stop, usage)
}

fn reencode_stream(dialect: Dialect, events: &[StreamEvent]) -> Vec<StreamEvent> {
    let opts = EncodeOptions {
        model: "m".into(),
        stream_usage: true,
        created: 1,
    };
    let mut enc = stream_encoder(dialect, opts);
    let mut bytes = Vec::new();
    for e in events {
        enc.event(e, &mut bytes);
    }
    enc.end(&mut bytes);
    let mut dec = stream_decoder(dialect, "m");
    let mut out = Vec::new();
    let mut splitter = crate::sse::SseSplitter::new();
    let mut raw = Vec::new();
    splitter.push(bytes::Bytes::from(bytes), |e| raw.push(e));
    raw.extend(splitter.finish());
    for e in &raw {
        if let Some(data) = crate::sse::data_payload(e) {
            dec.event(
                RawEvent {
                    name: crate::sse::event_name(e).map(str::as_bytes),
                    data: &data,
                    exception: false,
                },
                &mut out,
            );
        }
    }
    dec.end(&mut out);
    out
}

const CLIENT_DIALECTS: [Dialect; 3] = [Dialect::OpenAi, Dialect::Anthropic, Dialect::Gemini];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A → IR → B → IR keeps the conversation's meaning, for every B.
    #[test]
    fn requests_keep_their_meaning_through_every_dialect(
        system in "[a-zA-Z ]{0,20}",
        turns in proptest::collection::vec(turn(), 1..4),
    ) {
        let req = build(system.trim(), &turns);
        let want = meaning(&req);
        for b in CLIENT_DIALECTS {
            let bytes = encode_request(b, &req, "m").unwrap();
            let back = decode_request(b, &bytes, "m", false).unwrap();
            prop_assert_eq!(&meaning(&back), &want, "through {:?}: {}", b, String::from_utf8_lossy(&bytes));
        }
        // OpenAI → Anthropic → OpenAI, as two hops.
        let openai = encode_request(Dialect::OpenAi, &req, "m").unwrap();
        let ir1 = decode_request(Dialect::OpenAi, &openai, "m", false).unwrap();
        let anthropic = encode_request(Dialect::Anthropic, &ir1, "m").unwrap();
        let ir2 = decode_request(Dialect::Anthropic, &anthropic, "m", false).unwrap();
        prop_assert_eq!(meaning(&ir2), want);
    }

    /// A stream encoded for any client dialect and decoded back keeps text, calls, stop reason
    /// and usage.
    #[test]
    fn streams_keep_their_meaning_through_every_dialect(
        reply in "[a-zA-Z][a-zA-Z ,.]{0,60}",
        calls in proptest::collection::vec((0..NAMES.len(), -1000i64..1000), 0..3),
        max_tokens_hit in proptest::bool::ANY,
    ) {
        let events = stream_events(&reply, &calls, max_tokens_hit);
        let want = stream_meaning(&events);
        for b in CLIENT_DIALECTS {
            let back = reencode_stream(b, &events);
            prop_assert_eq!(&stream_meaning(&back), &want, "through {:?}: {:?}", b, back);
        }
    }
}
