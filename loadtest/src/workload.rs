//! What the generator sends and how it checks what comes back.
//!
//! Three request shapes, each non-streamed and streamed:
//! - OpenAI pass-through: an OpenAI client → `/v1/chat/completions` → an `openai` provider.
//! - Anthropic pass-through: an Anthropic client → `/v1/messages` → an `anthropic` provider.
//! - Translated: an OpenAI client → `/v1/chat/completions` → a model served by an
//!   `anthropic` provider, so the gateway translates the request and the answer.
//! - Resilience: OpenAI pass-through to a model with retries over two targets, either a
//!   failing one and a slow one (`resilience-*`) or two healthy ones (`resilience-healthy-*`,
//!   the same route settings, measured interleaved with it as the reference).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The model name routed to the OpenAI-kind provider by the generated ferrogate config.
pub const MODEL: &str = "mock-gpt";
/// The model name routed to the Anthropic-kind provider by the generated ferrogate config.
pub const ANTHROPIC_MODEL: &str = "mock-claude";
/// The resilient model whose targets misbehave (one fails some requests, one is slow).
pub const RESILIENT_MODEL: &str = "mock-resilient";
/// The same resilience settings over two healthy targets (the reference).
pub const RESILIENT_HEALTHY_MODEL: &str = "mock-resilient-healthy";
/// The OpenAI chat completions path.
pub const PATH: &str = "/v1/chat/completions";
/// The Anthropic Messages path.
pub const ANTHROPIC_PATH: &str = "/v1/messages";
/// The `anthropic-version` header Anthropic clients send.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Terminal SSE event of an OpenAI stream.
pub const DONE: &[u8] = b"data: [DONE]\n\n";
/// Terminal SSE event of an Anthropic stream (exactly as the mock sends it).
pub const MESSAGE_STOP: &[u8] = b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

const SYSTEM: &str =
    "You are a concise assistant that answers questions about distributed systems.";
const QUESTION: &str = "Explain in two sentences why tail latency matters for an API gateway that sits in front of large language model providers.";

/// The wire protocol a client or an upstream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    NonStream,
    Stream,
    AnthropicNonStream,
    AnthropicStream,
    TranslatedNonStream,
    TranslatedStream,
    ResilienceNonStream,
    ResilienceStream,
    ResilienceHealthyNonStream,
    ResilienceHealthyStream,
}

impl Scenario {
    pub const ALL: [Scenario; 10] = [
        Scenario::NonStream,
        Scenario::Stream,
        Scenario::AnthropicNonStream,
        Scenario::AnthropicStream,
        Scenario::TranslatedNonStream,
        Scenario::TranslatedStream,
        Scenario::ResilienceNonStream,
        Scenario::ResilienceStream,
        Scenario::ResilienceHealthyNonStream,
        Scenario::ResilienceHealthyStream,
    ];

    /// What `resilience` on the command line stands for: each misbehaving scenario after
    /// its healthy reference (they are measured interleaved, see `healthy_reference`).
    pub const RESILIENCE: [Scenario; 4] = [
        Scenario::ResilienceHealthyNonStream,
        Scenario::ResilienceNonStream,
        Scenario::ResilienceHealthyStream,
        Scenario::ResilienceStream,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::NonStream => "non-stream",
            Scenario::Stream => "stream",
            Scenario::AnthropicNonStream => "anthropic-non-stream",
            Scenario::AnthropicStream => "anthropic-stream",
            Scenario::TranslatedNonStream => "translated-non-stream",
            Scenario::TranslatedStream => "translated-stream",
            Scenario::ResilienceNonStream => "resilience-non-stream",
            Scenario::ResilienceStream => "resilience-stream",
            Scenario::ResilienceHealthyNonStream => "resilience-healthy-non-stream",
            Scenario::ResilienceHealthyStream => "resilience-healthy-stream",
        }
    }

    /// Parses a scenario name (`nonstream` is accepted for `non-stream`, as before).
    pub fn parse(s: &str) -> Option<Scenario> {
        let s = s.trim();
        if s == "nonstream" {
            return Some(Scenario::NonStream);
        }
        Scenario::ALL.into_iter().find(|sc| sc.name() == s)
    }

    pub fn is_stream(self) -> bool {
        matches!(
            self,
            Scenario::Stream
                | Scenario::AnthropicStream
                | Scenario::TranslatedStream
                | Scenario::ResilienceStream
                | Scenario::ResilienceHealthyStream
        )
    }

    /// Goes to a model with resilience settings (retries over two targets).
    pub fn is_resilience(self) -> bool {
        matches!(
            self,
            Scenario::ResilienceNonStream
                | Scenario::ResilienceStream
                | Scenario::ResilienceHealthyNonStream
                | Scenario::ResilienceHealthyStream
        )
    }

    /// Needs the misbehaving upstreams (a failing and a slow mock).
    pub fn needs_faulty_upstreams(self) -> bool {
        matches!(
            self,
            Scenario::ResilienceNonStream | Scenario::ResilienceStream
        )
    }

    /// The healthy scenario a misbehaving one is compared with (same route settings,
    /// healthy targets), measured interleaved with it.
    pub fn healthy_reference(self) -> Option<Scenario> {
        match self {
            Scenario::ResilienceNonStream => Some(Scenario::ResilienceHealthyNonStream),
            Scenario::ResilienceStream => Some(Scenario::ResilienceHealthyStream),
            _ => None,
        }
    }

    /// The dialect the client speaks (and the gateway answers in).
    pub fn client_dialect(self) -> Dialect {
        match self {
            Scenario::AnthropicNonStream | Scenario::AnthropicStream => Dialect::Anthropic,
            _ => Dialect::OpenAi,
        }
    }

    /// The dialect the upstream (the mock) answers in.
    pub fn upstream_dialect(self) -> Dialect {
        match self {
            Scenario::AnthropicNonStream
            | Scenario::AnthropicStream
            | Scenario::TranslatedNonStream
            | Scenario::TranslatedStream => Dialect::Anthropic,
            _ => Dialect::OpenAi,
        }
    }

    /// The gateway translates between dialects (no same-dialect baseline exists).
    pub fn is_translated(self) -> bool {
        self.client_dialect() != self.upstream_dialect()
    }

    /// Whether a subject that only forwards bytes (direct to the mock, the bare proxy)
    /// can serve this scenario: not when the gateway must translate, nor when it must
    /// retry across targets.
    pub fn forwardable(self) -> bool {
        !self.is_translated() && !self.is_resilience()
    }

    /// The same-dialect pass-through scenarios this one is compared with (translated
    /// scenarios: the pass-through of the client's and of the upstream's dialect).
    pub fn passthrough_baselines(self) -> &'static [Scenario] {
        match self {
            Scenario::TranslatedStream => &[Scenario::Stream, Scenario::AnthropicStream],
            Scenario::TranslatedNonStream => &[Scenario::NonStream, Scenario::AnthropicNonStream],
            _ => &[],
        }
    }

    /// The model name in the request (routes to the provider of the upstream dialect).
    pub fn model(self) -> &'static str {
        match self {
            Scenario::ResilienceNonStream | Scenario::ResilienceStream => RESILIENT_MODEL,
            Scenario::ResilienceHealthyNonStream | Scenario::ResilienceHealthyStream => {
                RESILIENT_HEALTHY_MODEL
            }
            _ => match self.upstream_dialect() {
                Dialect::OpenAi => MODEL,
                Dialect::Anthropic => ANTHROPIC_MODEL,
            },
        }
    }

    pub fn path(self) -> &'static str {
        match self.client_dialect() {
            Dialect::OpenAi => PATH,
            Dialect::Anthropic => ANTHROPIC_PATH,
        }
    }

    /// A realistic chat request (~400 bytes), in the client's dialect. OpenAI streams do
    /// not ask for usage; the gateway is expected to inject `stream_options.include_usage`
    /// itself (or, translated, to ask for it in the client's dialect).
    pub fn body(self) -> Bytes {
        let stream = if self.is_stream() {
            ",\"stream\":true"
        } else {
            ""
        };
        let model = self.model();
        let body = match self.client_dialect() {
            Dialect::OpenAi => format!(
                concat!(
                    "{{\"model\":\"{model}\",\"messages\":[",
                    "{{\"role\":\"system\",\"content\":\"{system}\"}},",
                    "{{\"role\":\"user\",\"content\":\"{question}\"}}],",
                    "\"temperature\":0.7,\"max_tokens\":128{stream}}}"
                ),
                model = model,
                system = SYSTEM,
                question = QUESTION,
                stream = stream
            ),
            Dialect::Anthropic => format!(
                concat!(
                    "{{\"model\":\"{model}\",\"max_tokens\":128,\"system\":\"{system}\",",
                    "\"messages\":[{{\"role\":\"user\",\"content\":\"{question}\"}}],",
                    "\"temperature\":0.7{stream}}}"
                ),
                model = model,
                system = SYSTEM,
                question = QUESTION,
                stream = stream
            ),
        };
        Bytes::from(body)
    }
}

/// Remembers the last few body bytes so a stream can be checked for its terminal event
/// without buffering the body.
#[derive(Default)]
pub struct Tail {
    buf: Vec<u8>,
}

impl Tail {
    const KEEP: usize = 64;

    pub fn push(&mut self, data: &[u8]) {
        if data.len() >= Self::KEEP {
            self.buf.clear();
            self.buf.extend_from_slice(&data[data.len() - Self::KEEP..]);
        } else {
            self.buf.extend_from_slice(data);
            if self.buf.len() > Self::KEEP {
                let cut = self.buf.len() - Self::KEEP;
                self.buf.drain(..cut);
            }
        }
    }

    /// Whether a 200 response body looks complete for this scenario: a JSON object for
    /// non-streams; for streams the client dialect's terminal event (`[DONE]` for OpenAI,
    /// also when translated; `message_stop` for Anthropic).
    pub fn complete(&self, scenario: Scenario, total_bytes: usize) -> bool {
        if !scenario.is_stream() {
            return total_bytes > 0
                && self.buf.iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
        }
        match scenario.client_dialect() {
            Dialect::OpenAi => self.buf.ends_with(DONE),
            Dialect::Anthropic => self.buf.ends_with(MESSAGE_STOP),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json() {
        for s in Scenario::ALL {
            let v: serde_json::Value = serde_json::from_slice(&s.body()).unwrap_or_default();
            assert_eq!(v["model"], s.model(), "{}", s.name());
            assert_eq!(
                v["stream"].as_bool().unwrap_or(false),
                s.is_stream(),
                "{}",
                s.name()
            );
            assert_eq!(v["max_tokens"], 128);
            match s.client_dialect() {
                Dialect::OpenAi => {
                    assert_eq!(v["messages"][0]["role"], "system");
                    assert_eq!(v["messages"][1]["role"], "user");
                    assert!(v.get("system").is_none());
                }
                // Anthropic has a top-level system and no system role in messages.
                Dialect::Anthropic => {
                    assert_eq!(v["system"], SYSTEM);
                    assert_eq!(v["messages"].as_array().map(Vec::len), Some(1));
                    assert_eq!(v["messages"][0]["role"], "user");
                }
            }
        }
    }

    #[test]
    fn routing_and_paths() {
        assert_eq!(Scenario::Stream.path(), PATH);
        assert_eq!(Scenario::Stream.model(), MODEL);
        assert_eq!(Scenario::AnthropicStream.path(), ANTHROPIC_PATH);
        assert_eq!(Scenario::AnthropicStream.model(), ANTHROPIC_MODEL);
        // Translated: OpenAI path, model of the Anthropic provider.
        assert_eq!(Scenario::TranslatedStream.path(), PATH);
        assert_eq!(Scenario::TranslatedStream.model(), ANTHROPIC_MODEL);
        assert!(Scenario::TranslatedStream.is_translated());
        assert!(Scenario::TranslatedNonStream.is_translated());
        assert!(!Scenario::AnthropicStream.is_translated());
        assert!(!Scenario::Stream.is_translated());
        assert!(!Scenario::TranslatedStream.forwardable());
        assert!(Scenario::AnthropicStream.forwardable());
        assert_eq!(
            Scenario::TranslatedStream.passthrough_baselines(),
            &[Scenario::Stream, Scenario::AnthropicStream]
        );
        assert!(Scenario::Stream.passthrough_baselines().is_empty());
    }

    #[test]
    fn resilience_scenarios() {
        for sc in Scenario::RESILIENCE {
            assert!(sc.is_resilience(), "{}", sc.name());
            // OpenAI on both sides, gateway only (direct and bare cannot retry).
            assert_eq!(sc.path(), PATH);
            assert_eq!(sc.client_dialect(), Dialect::OpenAi);
            assert_eq!(sc.upstream_dialect(), Dialect::OpenAi);
            assert!(!sc.is_translated());
            assert!(!sc.forwardable(), "{}", sc.name());
            assert!(sc.passthrough_baselines().is_empty());
        }
        assert_eq!(Scenario::ResilienceStream.model(), RESILIENT_MODEL);
        assert_eq!(
            Scenario::ResilienceHealthyNonStream.model(),
            RESILIENT_HEALTHY_MODEL
        );
        assert!(Scenario::ResilienceStream.is_stream());
        assert!(!Scenario::ResilienceHealthyNonStream.is_stream());
        assert_eq!(
            Scenario::ResilienceStream.healthy_reference(),
            Some(Scenario::ResilienceHealthyStream)
        );
        assert_eq!(
            Scenario::ResilienceNonStream.healthy_reference(),
            Some(Scenario::ResilienceHealthyNonStream)
        );
        assert_eq!(Scenario::ResilienceHealthyStream.healthy_reference(), None);
        assert!(Scenario::ResilienceNonStream.needs_faulty_upstreams());
        assert!(!Scenario::ResilienceHealthyStream.needs_faulty_upstreams());
        assert!(!Scenario::Stream.is_resilience());
        assert!(Scenario::Stream.forwardable());
        // The stream ends like any OpenAI stream.
        let mut t = Tail::default();
        t.push(DONE);
        assert!(t.complete(Scenario::ResilienceStream, DONE.len()));
    }

    #[test]
    fn names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::parse(s.name()), Some(s));
            // The serde name (JSON reports) is the CLI name.
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::Value::from(s.name()))
            );
        }
        assert_eq!(Scenario::parse(" nonstream "), Some(Scenario::NonStream));
        assert_eq!(Scenario::parse("anthropic"), None);
        assert_eq!(
            Scenario::ALL.iter().filter(|s| s.is_stream()).count(),
            5,
            "one stream per shape"
        );
    }

    #[test]
    fn tail_detects_done() {
        let mut t = Tail::default();
        t.push(b"data: {\"a\":1}\n\ndata: [DO");
        t.push(b"NE]\n\n");
        assert!(t.complete(Scenario::Stream, 10));
        assert!(t.complete(Scenario::TranslatedStream, 10));
        assert!(!t.complete(Scenario::AnthropicStream, 10));
        let mut t = Tail::default();
        t.push(b"{\"id\":1}\n");
        assert!(t.complete(Scenario::NonStream, 9));
        assert!(t.complete(Scenario::AnthropicNonStream, 9));
        assert!(!t.complete(Scenario::Stream, 9));
    }

    #[test]
    fn tail_detects_message_stop_split() {
        let mut t = Tail::default();
        t.push(b"event: message_delta\ndata: {\"type\":\"message_delta\"}\n\nevent: message_st");
        assert!(!t.complete(Scenario::AnthropicStream, 70));
        t.push(b"op\ndata: {\"type\":\"message_stop\"}\n\n");
        assert!(t.complete(Scenario::AnthropicStream, 100));
        assert!(!t.complete(Scenario::TranslatedStream, 100));
        // A stream cut before its end is not complete.
        let mut t = Tail::default();
        t.push(
            b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        );
        assert!(!t.complete(Scenario::AnthropicStream, 80));
    }
}
