//! What can end a stream early, and the one table that turns each fault into the error a
//! client sees. Pass-through and translated streams, in every client dialect, answer the same
//! fault with the same error kind, status class and code.

use crate::translate::ir::{ErrorInfo, ErrorKind, StreamEvent};

/// Why a stream ended before its upstream finished it cleanly.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The upstream sent an error event (in its dialect, decoded).
    Upstream(ErrorInfo),
    /// No content within the first-token deadline.
    FirstTokenTimeout,
    /// No content within the stall deadline after earlier content.
    Stall,
    /// The total deadline of the exchange passed.
    TotalTimeout,
    /// The upstream connection broke mid-body.
    Broken(String),
    /// The upstream's framing could not be read (e.g. a bad AWS event-stream frame).
    BadFraming(String),
}

impl Fault {
    /// The error a client gets for this fault (before its dialect frames it).
    pub fn info(&self) -> ErrorInfo {
        let (kind, message, code) = match self {
            Fault::Upstream(info) => return info.clone(),
            Fault::FirstTokenTimeout => (
                ErrorKind::Timeout,
                "The upstream sent no content within the first-token deadline.".to_string(),
                "upstream_first_token_timeout",
            ),
            Fault::Stall => (
                ErrorKind::Timeout,
                "The upstream stream stalled: no content within the stall deadline.".to_string(),
                "upstream_stall",
            ),
            Fault::TotalTimeout => (
                ErrorKind::Timeout,
                "The upstream did not finish the response within the total deadline.".to_string(),
                "upstream_timeout",
            ),
            Fault::Broken(detail) => (
                ErrorKind::Server,
                format!("The upstream connection broke before the response finished: {detail}"),
                "upstream_stream_broken",
            ),
            Fault::BadFraming(detail) => (
                ErrorKind::Server,
                format!("The upstream sent an invalid event stream: {detail}"),
                "upstream_bad_response",
            ),
        };
        ErrorInfo {
            // 504 for deadlines, 502 for a broken upstream: the gateway's own verdicts.
            status: match kind {
                ErrorKind::Timeout => 504,
                _ => 502,
            },
            kind,
            message,
            code: Some(code.to_string()),
            param: None,
        }
    }
}

/// Whether an event carries content: what first-token and stall deadlines wait for and what
/// ends priming. Keep-alives, pings, role-only starts and empty deltas are not content; the
/// answer finishing (even empty) settles the first-token question.
pub fn is_content(ev: &StreamEvent) -> bool {
    match ev {
        StreamEvent::TextDelta(t)
        | StreamEvent::ThinkingDelta(t)
        | StreamEvent::RefusalDelta(t) => !t.is_empty(),
        StreamEvent::ToolCallStart { .. } | StreamEvent::ToolArgsDelta { .. } => true,
        StreamEvent::RedactedThinking(_) | StreamEvent::ThinkingSignature(_) => true,
        StreamEvent::Finish { .. } => true,
        StreamEvent::Start { .. } | StreamEvent::Error(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_timeouts_and_breaks_are_server_errors() {
        for f in [Fault::FirstTokenTimeout, Fault::Stall, Fault::TotalTimeout] {
            let i = f.info();
            assert_eq!((i.kind, i.status), (ErrorKind::Timeout, 504), "{f:?}");
        }
        for f in [Fault::Broken("x".into()), Fault::BadFraming("y".into())] {
            let i = f.info();
            assert_eq!((i.kind, i.status), (ErrorKind::Server, 502), "{f:?}");
        }
    }

    #[test]
    fn empty_deltas_are_not_content() {
        assert!(!is_content(&StreamEvent::TextDelta(String::new())));
        assert!(is_content(&StreamEvent::TextDelta("a".into())));
    }
}
