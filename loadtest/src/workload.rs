//! What the generator sends and how it checks what comes back.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The model name routed by the generated ferrogate config.
pub const MODEL: &str = "mock-gpt";
/// The OpenAI chat completions path.
pub const PATH: &str = "/v1/chat/completions";
/// Terminal SSE event of an OpenAI stream.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    NonStream,
    Stream,
}

impl Scenario {
    pub const ALL: [Scenario; 2] = [Scenario::NonStream, Scenario::Stream];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::NonStream => "non-stream",
            Scenario::Stream => "stream",
        }
    }

    pub fn is_stream(self) -> bool {
        self == Scenario::Stream
    }

    /// A realistic chat request (~400 bytes). Streams do not ask for usage;
    /// the gateway is expected to inject `stream_options.include_usage` itself.
    pub fn body(self) -> Bytes {
        let stream = if self.is_stream() {
            ",\"stream\":true"
        } else {
            ""
        };
        Bytes::from(format!(
            concat!(
                "{{\"model\":\"{model}\",\"messages\":[",
                "{{\"role\":\"system\",\"content\":\"You are a concise assistant that answers questions about distributed systems.\"}},",
                "{{\"role\":\"user\",\"content\":\"Explain in two sentences why tail latency matters for an API gateway that sits in front of large language model providers.\"}}],",
                "\"temperature\":0.7,\"max_tokens\":128{stream}}}"
            ),
            model = MODEL,
            stream = stream
        ))
    }
}

/// Remembers the last few body bytes so a stream can be checked for `[DONE]`
/// without buffering the body.
#[derive(Default)]
pub struct Tail {
    buf: Vec<u8>,
}

impl Tail {
    const KEEP: usize = 32;

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

    /// Whether a 200 response body looks complete for this scenario.
    pub fn complete(&self, scenario: Scenario, total_bytes: usize) -> bool {
        match scenario {
            Scenario::NonStream => {
                total_bytes > 0
                    && self.buf.iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'}')
            }
            Scenario::Stream => self.buf.ends_with(DONE),
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
            assert_eq!(v["model"], MODEL);
            assert_eq!(v["stream"].as_bool().unwrap_or(false), s.is_stream());
        }
    }

    #[test]
    fn tail_detects_done() {
        let mut t = Tail::default();
        t.push(b"data: {\"a\":1}\n\ndata: [DO");
        t.push(b"NE]\n\n");
        assert!(t.complete(Scenario::Stream, 10));
        let mut t = Tail::default();
        t.push(b"{\"id\":1}\n");
        assert!(t.complete(Scenario::NonStream, 9));
        assert!(!t.complete(Scenario::Stream, 9));
    }
}
