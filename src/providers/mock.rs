//! The built-in mock provider: answers in the OpenAI dialect without any network, deterministically
//! from the request. Usage is counted the same way in stream and non-stream answers: prompt tokens
//! are whitespace-separated words across the request's text, completion tokens the reply's words.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::config::MockSettings;
use crate::error::GatewayError;
use crate::providers::Endpoint;
use crate::usage::Usage;

/// A fully rendered mock answer; the proxy paces `frames` by `chunk_delay`.
#[derive(Debug)]
pub struct MockAnswer {
    pub stream: bool,
    pub frames: Vec<Bytes>,
    pub usage: Usage,
    pub latency: Duration,
    pub chunk_delay: Duration,
}

/// Words the mock speaks; chosen by a hash of the request so answers are stable.
pub const VOCABULARY: &[&str] = &[
    "the", "gateway", "answers", "quickly", "with", "tokens", "from", "a", "mock", "model", "that",
    "never", "leaves", "this", "machine", "and", "streams", "every", "word", "as", "soon", "it",
    "is", "ready", "for", "you", "to", "read", "here", "now", "today", "again",
];

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn count_words(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.split_whitespace().count() as u64,
        Value::Array(items) => items.iter().map(count_words).sum(),
        Value::Object(o) => o.get("text").map(count_words).unwrap_or(0),
        _ => 0,
    }
}

fn prompt_words(endpoint: Endpoint, req: &Value) -> u64 {
    match endpoint {
        Endpoint::ChatCompletions => req
            .get("messages")
            .and_then(Value::as_array)
            .map(|msgs| {
                msgs.iter()
                    .map(|m| m.get("content").map(count_words).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0),
        Endpoint::Completions => req.get("prompt").map(count_words).unwrap_or(0),
        Endpoint::Embeddings => req.get("input").map(count_words).unwrap_or(0),
        Endpoint::Responses | Endpoint::CountTokens => 0,
    }
}

/// Builds the mock's answer to `body` (already known to be a JSON object with a string model).
pub fn answer(
    settings: &MockSettings,
    endpoint: Endpoint,
    body: &[u8],
    model: &str,
    stream: bool,
    include_usage: bool,
) -> Result<MockAnswer, GatewayError> {
    let req: Value = serde_json::from_slice(body)
        .map_err(|e| GatewayError::bad_request(format!("invalid JSON body: {e}"), None))?;
    // Seed from what the answer is about, not from framing options such as `stream`, so a
    // streamed and a non-streamed request get the same words.
    let topic = ["messages", "prompt", "input"]
        .iter()
        .find_map(|k| req.get(*k))
        .map(|v| v.to_string())
        .unwrap_or_default();
    let seed = fnv1a(topic.as_bytes()) ^ fnv1a(model.as_bytes());
    let id = format!("chatcmpl-mock-{:016x}", seed);
    let created = 1_700_000_000u64;
    let prompt = prompt_words(endpoint, &req);

    if endpoint == Endpoint::Embeddings {
        return Ok(embeddings(settings, &req, model, seed, prompt));
    }

    let max = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| req.get(*k).and_then(Value::as_u64));
    let wanted = settings.reply_words.max(1) as u64;
    let (n_words, finish) = match max {
        Some(m) if m < wanted => (m, "length"),
        _ => (wanted, "stop"),
    };
    let words: Vec<&str> = (0..n_words)
        .map(|i| VOCABULARY[((seed >> (i % 8)) as usize + i as usize * 7) % VOCABULARY.len()])
        .collect();
    let usage = Usage {
        input: prompt,
        output: n_words,
        ..Usage::default()
    };
    let usage_json = json!({"prompt_tokens": prompt, "completion_tokens": n_words, "total_tokens": prompt + n_words});
    let chat = endpoint == Endpoint::ChatCompletions;

    let frames = if !stream {
        let content = words.join(" ");
        let v = if chat {
            json!({"id": id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null},
                             "logprobs": null, "finish_reason": finish}],
                "usage": usage_json})
        } else {
            json!({"id": id, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": content, "logprobs": null, "finish_reason": finish}],
                "usage": usage_json})
        };
        vec![Bytes::from(v.to_string())]
    } else {
        let parts = split_words(&words, settings.chunks.max(1) as usize);
        let object = if chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        let chunk = |choice: Value| {
            let mut v = json!({"id": id, "object": object, "created": created, "model": model, "choices": [choice]});
            if include_usage {
                v["usage"] = Value::Null;
            }
            event(&v)
        };
        let mut frames = Vec::with_capacity(parts.len() + 4);
        if chat {
            frames.push(chunk(json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null})));
        }
        for (i, part) in parts.iter().enumerate() {
            let text = if i == 0 {
                part.clone()
            } else {
                format!(" {part}")
            };
            frames.push(if chat {
                chunk(json!({"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null}))
            } else {
                chunk(json!({"index": 0, "text": text, "logprobs": null, "finish_reason": null}))
            });
        }
        frames.push(if chat {
            chunk(json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish}))
        } else {
            chunk(json!({"index": 0, "text": "", "logprobs": null, "finish_reason": finish}))
        });
        if include_usage {
            frames.push(event(
                &json!({"id": id, "object": object, "created": created, "model": model,
                "choices": [], "usage": usage_json}),
            ));
        }
        frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
        frames
    };
    Ok(MockAnswer {
        stream,
        frames,
        usage,
        latency: Duration::from_millis(settings.latency_ms),
        chunk_delay: Duration::from_millis(settings.chunk_delay_ms),
    })
}

fn embeddings(
    settings: &MockSettings,
    req: &Value,
    model: &str,
    seed: u64,
    prompt: u64,
) -> MockAnswer {
    let inputs = match req.get("input") {
        Some(Value::Array(a)) if !a.is_empty() && !a[0].is_number() => a.len(),
        _ => 1,
    };
    let data: Vec<Value> = (0..inputs)
        .map(|i| {
            let vector: Vec<f64> = (0..8u64)
                .map(|d| {
                    ((seed.rotate_left((i as u32 * 8 + d as u32) % 64) % 2000) as f64 / 1000.0)
                        - 1.0
                })
                .collect();
            json!({"object": "embedding", "index": i, "embedding": vector})
        })
        .collect();
    let v = json!({"object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt}});
    MockAnswer {
        stream: false,
        frames: vec![Bytes::from(v.to_string())],
        usage: Usage {
            input: prompt,
            ..Usage::default()
        },
        latency: Duration::from_millis(settings.latency_ms),
        chunk_delay: Duration::ZERO,
    }
}

/// Splits words into `chunks` nearly equal parts (fewer when there are fewer words).
fn split_words(words: &[&str], chunks: usize) -> Vec<String> {
    let n = chunks.min(words.len()).max(1);
    let (base, extra) = (words.len() / n, words.len() % n);
    let mut out = Vec::with_capacity(n);
    let mut at = 0;
    for i in 0..n {
        let len = base + usize::from(i < extra);
        out.push(words[at..at + len].join(" "));
        at += len;
    }
    out
}

fn event(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hello there friend"}]}]}"#;

    fn settings() -> MockSettings {
        MockSettings {
            chunks: 4,
            reply_words: 10,
            ..MockSettings::default()
        }
    }

    fn content_of_stream(frames: &[Bytes]) -> String {
        frames
            .iter()
            .filter_map(|f| {
                let s = std::str::from_utf8(f).ok()?.strip_prefix("data: ")?.trim();
                let v: Value = serde_json::from_str(s).ok()?;
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(String::from)
            })
            .collect()
    }

    #[test]
    fn stream_and_non_stream_agree_on_content_and_usage() {
        let s = settings();
        let unary = answer(&s, Endpoint::ChatCompletions, BODY, "m", false, false).unwrap();
        let v: Value = serde_json::from_slice(&unary.frames[0]).unwrap();
        assert_eq!(v["usage"]["prompt_tokens"], 5);
        assert_eq!(v["usage"]["completion_tokens"], 10);
        let content = v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(content.split_whitespace().count(), 10);

        let streamed = answer(&s, Endpoint::ChatCompletions, BODY, "m", true, true).unwrap();
        assert_eq!(content_of_stream(&streamed.frames), content);
        // role + 4 content + finish + usage + [DONE]
        assert_eq!(streamed.frames.len(), 8);
        let usage_frame = &streamed.frames[6];
        let u: Value = serde_json::from_slice(&usage_frame[6..]).unwrap();
        assert_eq!(u["usage"], v["usage"]);
        assert_eq!(streamed.usage, unary.usage);
    }

    #[test]
    fn answers_are_deterministic_and_max_tokens_cuts() {
        let s = settings();
        let a = answer(&s, Endpoint::ChatCompletions, BODY, "m", false, false).unwrap();
        let b = answer(&s, Endpoint::ChatCompletions, BODY, "m", false, false).unwrap();
        assert_eq!(a.frames, b.frames);
        let with_stream_flag = br#"{"stream":false,"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hello there friend"}]}]}"#;
        let c = answer(
            &s,
            Endpoint::ChatCompletions,
            with_stream_flag,
            "m",
            false,
            false,
        )
        .unwrap();
        assert_eq!(a.frames, c.frames);
        let body = br#"{"model":"m","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}"#;
        let d = answer(&s, Endpoint::ChatCompletions, body, "m", false, false).unwrap();
        let v: Value = serde_json::from_slice(&d.frames[0]).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["completion_tokens"], 3);
    }

    #[test]
    fn stream_without_usage_has_no_usage_fields() {
        let a = answer(
            &settings(),
            Endpoint::ChatCompletions,
            BODY,
            "m",
            true,
            false,
        )
        .unwrap();
        assert!(a
            .frames
            .iter()
            .all(|f| !f.windows(7).any(|w| w == b"\"usage\"")));
        assert_eq!(
            a.frames.last().unwrap(),
            &Bytes::from_static(b"data: [DONE]\n\n")
        );
    }
}
