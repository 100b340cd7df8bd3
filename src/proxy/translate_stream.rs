//! A streamed answer translated between dialects: upstream frames are split into events (SSE,
//! or AWS event-stream for Bedrock), decoded into `ir::StreamEvent`s by the provider dialect's
//! decoder, and each event encoded at once by the client dialect's encoder. Nothing is held
//! back except while *priming*: before the response head is sent, output is kept until the
//! first content event, so an upstream error that comes before any content can still be
//! answered as a proper HTTP error in the client's dialect.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Body;
use hyper::body::Incoming;
use tokio::time::Sleep;

use crate::proxy::body::PrimeFailure;
use crate::proxy::content_clock::{ContentClock, Expired};
use crate::proxy::settle::Settle;
use crate::sse::{name_and_data, SseSplitter};
use crate::translate::eventstream::EventStreamDecoder;
use crate::translate::ir::{
    ErrorInfo, ErrorKind, RawEvent, StreamDecode, StreamEncode, StreamEvent,
};
use crate::upstream::Lease;
use crate::usage::Usage;

/// How upstream bytes are cut into events.
pub enum Framer {
    Sse(SseSplitter),
    /// Bedrock ConverseStream's binary `application/vnd.amazon.eventstream`.
    EventStream(Box<EventStreamDecoder>),
}

pub struct TranslatingStream {
    upstream: Incoming,
    lease: Option<Lease>,
    framer: Framer,
    decoder: Box<dyn StreamDecode>,
    encoder: Box<dyn StreamEncode>,
    events: Vec<StreamEvent>,
    out: Vec<u8>,
    usage: Option<Usage>,
    /// A content event (text, thinking, refusal, tool call) or the finish has been seen.
    content_seen: bool,
    /// The error that ended the stream before any content, if one did.
    early_error: Option<ErrorInfo>,
    /// While priming, output is kept in `out` instead of being returned.
    priming: bool,
    deadline: tokio::time::Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    settle: Option<Settle>,
    /// The upstream is finished (ended, failed or timed out); only `out` remains.
    done: bool,
    estimated_input: u64,
    deltas: u64,
    clock: Option<ContentClock>,
    /// What failed before content, for the caller's failover decision.
    early_failure: Option<PrimeFailure>,
}

impl TranslatingStream {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        upstream: Incoming,
        lease: Lease,
        framer: Framer,
        decoder: Box<dyn StreamDecode>,
        encoder: Box<dyn StreamEncode>,
        deadline: tokio::time::Instant,
        settle: Settle,
        request_len: usize,
    ) -> Self {
        Self {
            upstream,
            lease: Some(lease),
            framer,
            decoder,
            encoder,
            events: Vec::new(),
            out: Vec::new(),
            usage: None,
            content_seen: false,
            early_error: None,
            priming: true,
            deadline,
            sleep: None,
            settle: Some(settle),
            done: false,
            estimated_input: (request_len / 4) as u64,
            deltas: 0,
            clock: None,
            early_failure: None,
        }
    }

    /// First-token and stall deadlines.
    pub fn with_clock(mut self, clock: Option<ContentClock>) -> Self {
        self.clock = clock;
        self
    }

    /// Reads upstream until the first content event (or the end). `Err` when the stream
    /// failed before any content: the caller answers with an HTTP error instead, and the
    /// returned `Settle` is the caller's to finish.
    pub async fn prime(mut self: Pin<&mut Self>) -> Result<(), (PrimeFailure, Option<Settle>)> {
        // (The stream is `Unpin`; the pin only documents that it is polled in place.)
        std::future::poll_fn(|cx| self.as_mut().get_mut().poll_prime(cx)).await;
        let this = self.get_mut();
        this.priming = false;
        let failure = match (this.early_failure.take(), this.early_error.take()) {
            (Some(f), _) => Some(f),
            (None, Some(info)) => Some(PrimeFailure::Error(info)),
            (None, None) => None,
        };
        match failure {
            Some(f) if !this.content_seen => {
                this.done = true;
                this.out.clear();
                Err((f, this.settle.take()))
            }
            _ => Ok(()),
        }
    }

    fn poll_prime(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while !self.content_seen && !self.done {
            match self.poll_upstream(cx) {
                Poll::Ready(()) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(())
    }

    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            if !self.out.is_empty() && !self.priming {
                return Poll::Ready(Some(Bytes::from(std::mem::take(&mut self.out))));
            }
            if self.done {
                self.end(false);
                return Poll::Ready(None);
            }
            if self.poll_upstream(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// One step of upstream progress: a frame decoded, the end, a failure or the deadline.
    fn poll_upstream(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match Pin::new(&mut self.upstream).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    self.feed(data);
                }
                Poll::Ready(())
            }
            Poll::Ready(None) => {
                self.done = true;
                if let Some(lease) = self.lease.take() {
                    lease.release();
                }
                self.flush_framer();
                self.decoder.end(&mut self.events);
                self.drain_events();
                self.encoder.end(&mut self.out);
                Poll::Ready(())
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::warn!(error = %e, "upstream stream broke mid-response");
                if !self.content_seen && self.early_failure.is_none() {
                    self.early_failure = Some(PrimeFailure::Broken(e.to_string()));
                }
                self.fail(
                    ErrorKind::Server,
                    "The upstream connection broke before the response finished.",
                    "upstream_stream_broken",
                );
                Poll::Ready(())
            }
            Poll::Pending => {
                if let Some(expired) = self.clock.as_mut().and_then(|c| c.poll_expired(cx)) {
                    let (message, code) = match expired {
                        Expired::FirstToken => {
                            if !self.content_seen && self.early_failure.is_none() {
                                self.early_failure = Some(PrimeFailure::FirstTokenTimeout);
                            }
                            (
                                "The upstream sent no content within the first-token deadline.",
                                "upstream_first_token_timeout",
                            )
                        }
                        Expired::Stall => (
                            "The upstream stream stalled: no content within the stall deadline.",
                            "upstream_stall",
                        ),
                    };
                    self.fail(ErrorKind::Timeout, message, code);
                    return Poll::Ready(());
                }
                let fired = match &mut self.sleep {
                    Some(sleep) => sleep.as_mut().poll(cx).is_ready(),
                    None => {
                        let mut sleep = Box::pin(tokio::time::sleep_until(self.deadline));
                        let ready = sleep.as_mut().poll(cx).is_ready();
                        self.sleep = Some(sleep);
                        ready
                    }
                };
                if fired {
                    if !self.content_seen && self.early_failure.is_none() {
                        self.early_failure = Some(PrimeFailure::TotalTimeout);
                    }
                    self.fail(
                        ErrorKind::Timeout,
                        "The upstream did not finish the response within the total deadline.",
                        "upstream_timeout",
                    );
                    return Poll::Ready(());
                }
                Poll::Pending
            }
        }
    }

    /// Ends the stream with an error event (unless it already finished or failed).
    fn fail(&mut self, kind: ErrorKind, message: &str, code: &str) {
        self.done = true;
        let info = ErrorInfo {
            status: kind.status(),
            kind,
            message: message.to_string(),
            code: Some(code.to_string()),
            param: None,
        };
        self.events.push(StreamEvent::Error(info));
        self.drain_events();
    }

    fn feed(&mut self, data: Bytes) {
        let decoder = &mut self.decoder;
        let events = &mut self.events;
        match &mut self.framer {
            Framer::Sse(splitter) => splitter.push(data, |event| {
                feed_sse_event(decoder.as_mut(), &event, events);
            }),
            Framer::EventStream(es) => {
                es.push(&data);
                loop {
                    match es.next_message() {
                        Ok(Some(msg)) => {
                            crate::translate::bedrock::feed_message(decoder.as_mut(), &msg, events);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            events.push(StreamEvent::Error(ErrorInfo {
                                status: 502,
                                kind: ErrorKind::Server,
                                message: format!("The upstream sent an invalid event stream: {e}"),
                                code: Some("upstream_bad_response".into()),
                                param: None,
                            }));
                            self.done = true;
                            break;
                        }
                    }
                }
            }
        }
        self.drain_events();
    }

    fn flush_framer(&mut self) {
        if let Framer::Sse(splitter) = &mut self.framer {
            if let Some(rest) = splitter.finish() {
                feed_sse_event(self.decoder.as_mut(), &rest, &mut self.events);
            }
        }
    }

    /// Encodes what the decoder produced, noting usage and content on the way.
    fn drain_events(&mut self) {
        for ev in self.events.drain(..) {
            if let Some(clock) = &mut self.clock {
                clock.observe(&ev);
            }
            match &ev {
                StreamEvent::Start { usage, .. } => {
                    if *usage != Usage::default() {
                        self.usage = Some(*usage);
                    }
                }
                StreamEvent::Finish { usage, .. } => {
                    self.usage = Some(*usage);
                    self.content_seen = true;
                }
                StreamEvent::Error(info) => {
                    self.done = true;
                    if !self.content_seen && self.early_error.is_none() {
                        self.early_error = Some(info.clone());
                    }
                }
                StreamEvent::TextDelta(_)
                | StreamEvent::ThinkingDelta(_)
                | StreamEvent::RefusalDelta(_)
                | StreamEvent::ToolArgsDelta { .. } => {
                    self.deltas += 1;
                    self.content_seen = true;
                }
                StreamEvent::ToolCallStart { .. }
                | StreamEvent::ThinkingSignature(_)
                | StreamEvent::RedactedThinking(_) => self.content_seen = true,
            }
            self.encoder.event(&ev, &mut self.out);
        }
    }

    /// Gateway time spent before the response head (added to per-frame time at the end).
    pub fn set_overhead(&mut self, overhead: std::time::Duration) {
        if let Some(s) = self.settle.as_mut() {
            s.overhead = overhead;
        }
    }

    fn end(&mut self, cancelled: bool) {
        if let Some(settle) = self.settle.take() {
            let usage = self
                .usage
                .filter(|u| u.output > 0 || u.input > 0)
                .or_else(|| {
                    (self.deltas > 0 || self.usage.is_some()).then(|| Usage {
                        input: self
                            .usage
                            .map(|u| u.input)
                            .filter(|&i| i > 0)
                            .unwrap_or(self.estimated_input),
                        output: self.deltas,
                        estimated: true,
                        ..Usage::default()
                    })
                });
            settle.finish(200, usage, cancelled);
        }
    }
}

fn feed_sse_event(decoder: &mut dyn StreamDecode, event: &[u8], out: &mut Vec<StreamEvent>) {
    // Comment-only events (keep-alives) have no data either.
    let (name, Some(data)) = name_and_data(event) else {
        return;
    };
    decoder.event(
        RawEvent {
            name,
            data: &data,
            exception: false,
        },
        out,
    );
}

impl Drop for TranslatingStream {
    fn drop(&mut self) {
        let cancelled = !self.done;
        self.end(cancelled);
    }
}
