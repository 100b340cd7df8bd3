//! Response bodies the gateway sends: a full buffer, a paced list of frames (the mock), or a
//! pass-through stream tapped for usage. One enum, so hyper sees a single concrete type.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use std::collections::VecDeque;

use crate::proxy::content_clock::{self, ContentClock, Expired};
use crate::proxy::event_tap::EventTap;
use crate::proxy::settle::Settle;
use crate::proxy::stream_tap::StreamTap;
use crate::proxy::translate_stream::TranslatingStream;
use crate::sse::SseSplitter;
use crate::translate::ir::{ErrorInfo, RawEvent, StreamDecode, StreamEvent};
use crate::upstream::Lease;
use crate::usage::Usage;

/// The clock for per-frame timing, calibrated once per process.
static CLOCK: std::sync::LazyLock<quanta::Clock> = std::sync::LazyLock::new(quanta::Clock::new);

/// Calibrates the frame clock now (it takes a few milliseconds) rather than on the first stream.
pub fn init_clock() {
    std::sync::LazyLock::force(&CLOCK);
}

pub enum GatewayBody {
    Full(Option<Bytes>),
    Frames(Box<PacedFrames>),
    Stream(Box<PassthroughStream>),
    Translated(Box<TranslatingStream>),
}

impl GatewayBody {
    pub fn full(b: impl Into<Bytes>) -> Self {
        GatewayBody::Full(Some(b.into()))
    }

    pub fn empty() -> Self {
        GatewayBody::Full(None)
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            GatewayBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            GatewayBody::Frames(f) => f.poll_next(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
            GatewayBody::Stream(s) => s.poll_next(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
            GatewayBody::Translated(s) => s.poll_next(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GatewayBody::Full(b) => b.is_none(),
            _ => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GatewayBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            GatewayBody::Full(None) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// Pre-rendered frames sent with a fixed delay between them; settles when the last one is out
/// (or when dropped early, as cancelled).
pub struct PacedFrames {
    frames: std::vec::IntoIter<Bytes>,
    delay: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    sent_any: bool,
    settle: Option<(Settle, Usage)>,
}

impl PacedFrames {
    pub fn new(frames: Vec<Bytes>, delay: Duration, settle: Settle, usage: Usage) -> Self {
        Self {
            frames: frames.into_iter(),
            delay,
            sleep: None,
            sent_any: false,
            settle: Some((settle, usage)),
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.sent_any && !self.delay.is_zero() {
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(self.delay)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let next = tokio::time::Instant::now() + self.delay;
            sleep.as_mut().reset(next);
        }
        match self.frames.next() {
            Some(b) => {
                self.sent_any = true;
                Poll::Ready(Some(b))
            }
            None => {
                if let Some((settle, usage)) = self.settle.take() {
                    settle.finish(200, Some(usage), false);
                }
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for PacedFrames {
    fn drop(&mut self) {
        if let Some((settle, usage)) = self.settle.take() {
            // The client left before the end; the mock's usage is still what it "produced".
            settle.finish(200, Some(usage), true);
        }
    }
}

/// The usage tap of a pass-through stream, by dialect.
pub enum Tap {
    /// OpenAI chat/completions: the tuned tap, with the strip of injected usage.
    OpenAi(StreamTap),
    /// Anthropic, Gemini, Responses API: bytes untouched, usage read from a few events.
    Events(EventTap),
}

impl Tap {
    #[inline]
    fn on_chunk(&mut self, data: Bytes) -> Option<Bytes> {
        match self {
            Tap::OpenAi(t) => t.on_chunk(data),
            Tap::Events(t) => Some(t.on_chunk(data)),
        }
    }

    fn finish(&mut self) -> Option<Bytes> {
        match self {
            Tap::OpenAi(t) => t.finish(),
            Tap::Events(t) => {
                t.finish();
                None
            }
        }
    }

    fn error_event(&mut self, message: &str, kind: &str, code: &str) -> Bytes {
        match self {
            Tap::OpenAi(t) => t.error_event(message, kind, code),
            Tap::Events(t) => t.error_event(message, code),
        }
    }

    fn usage(&self) -> Option<Usage> {
        match self {
            Tap::OpenAi(t) => t.usage(),
            Tap::Events(t) => t.usage(),
        }
    }
}

/// Content detection on a pass-through stream, present only when a first-token or stall
/// deadline is configured or the response head is held until the first content (so a failure
/// before it can fail over invisibly). The upstream bytes are still forwarded untouched; a copy
/// of the event boundaries is decoded by the provider dialect's stream decoder.
pub struct Watch {
    splitter: SseSplitter,
    decoder: Box<dyn StreamDecode>,
    events: Vec<StreamEvent>,
    clock: Option<ContentClock>,
    content_seen: bool,
    /// What ended the stream before any content (an error event, a broken connection, a
    /// deadline), if something did.
    early: Option<PrimeFailure>,
}

impl Watch {
    pub fn new(decoder: Box<dyn StreamDecode>, clock: Option<ContentClock>) -> Self {
        Self {
            splitter: SseSplitter::new(),
            decoder,
            events: Vec::new(),
            clock,
            content_seen: false,
            early: None,
        }
    }

    fn observe(&mut self, data: &Bytes) {
        let decoder = &mut self.decoder;
        let events = &mut self.events;
        self.splitter.push(data.clone(), |event| {
            feed_event(decoder.as_mut(), &event, events);
        });
        self.drain();
    }

    fn end(&mut self) {
        if let Some(rest) = self.splitter.finish() {
            feed_event(self.decoder.as_mut(), &rest, &mut self.events);
        }
        self.decoder.end(&mut self.events);
        self.drain();
    }

    fn drain(&mut self) {
        for ev in self.events.drain(..) {
            if let Some(clock) = &mut self.clock {
                clock.observe(&ev);
            }
            match &ev {
                StreamEvent::Error(info) if !self.content_seen && self.early.is_none() => {
                    self.early = Some(PrimeFailure::Error(info.clone()));
                }
                e if content_clock::is_content(e) => self.content_seen = true,
                _ => {}
            }
        }
    }
}

/// Why a stream could not be primed: it failed before its first content.
#[derive(Debug, Clone, PartialEq)]
pub enum PrimeFailure {
    /// The upstream sent an error event (in its dialect, decoded).
    Error(ErrorInfo),
    /// No content within the first-token deadline.
    FirstTokenTimeout,
    /// The connection broke or the stream ended without content or a finish.
    Broken(String),
    /// The total deadline passed.
    TotalTimeout,
}

impl PrimeFailure {
    /// The failure as an error to answer with.
    pub fn info(&self) -> ErrorInfo {
        use crate::translate::ir::ErrorKind;
        let (kind, status, message, code) = match self {
            PrimeFailure::Error(info) => return info.clone(),
            PrimeFailure::FirstTokenTimeout => (
                ErrorKind::Timeout,
                504,
                "The upstream sent no content within the first-token deadline.".to_string(),
                "upstream_first_token_timeout",
            ),
            PrimeFailure::TotalTimeout => (
                ErrorKind::Timeout,
                504,
                "The upstream did not finish the response within the total deadline.".to_string(),
                "upstream_timeout",
            ),
            PrimeFailure::Broken(detail) => (
                ErrorKind::Server,
                502,
                format!("The upstream stream ended before any content: {detail}"),
                "upstream_stream_broken",
            ),
        };
        ErrorInfo {
            status,
            kind,
            message,
            code: Some(code.to_string()),
            param: None,
        }
    }
}

fn feed_event(decoder: &mut dyn StreamDecode, event: &[u8], out: &mut Vec<StreamEvent>) {
    if crate::sse::is_comment_only(event) {
        return;
    }
    let Some(data) = crate::sse::data_payload(event) else {
        return;
    };
    decoder.event(
        RawEvent {
            name: crate::sse::event_name(event),
            data: &data,
            exception: false,
        },
        out,
    );
}

/// An upstream SSE stream forwarded frame by frame, with the usage tap (and, when the gateway
/// injected `include_usage`, the strip of what the client didn't ask for) applied on the way.
pub struct PassthroughStream {
    upstream: Incoming,
    /// The upstream connection, returned to its pool when the body ends cleanly.
    lease: Option<Lease>,
    tap: Tap,
    /// Total deadline of the exchange; armed lazily the first time the upstream is not ready.
    deadline: tokio::time::Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    settle: Option<Settle>,
    done: bool,
    /// Gateway time spent processing frames, in raw clock units (added to the head overhead
    /// for the histogram when the stream ends).
    processing_raw: u64,
    watch: Option<Box<Watch>>,
    /// Output held while priming (the response head has not been sent yet).
    held: VecDeque<Bytes>,
}

/// One step of upstream progress.
enum Step {
    /// Bytes for the client (possibly none yet).
    Data(Option<Bytes>),
    /// The stream is over; a last piece for the client, if any.
    End(Option<Bytes>),
    Pending,
}

impl PassthroughStream {
    pub fn new(
        upstream: Incoming,
        lease: Lease,
        tap: Tap,
        deadline: tokio::time::Instant,
        settle: Settle,
    ) -> Self {
        Self {
            upstream,
            lease: Some(lease),
            tap,
            deadline,
            sleep: None,
            settle: Some(settle),
            done: false,
            processing_raw: 0,
            watch: None,
            held: VecDeque::new(),
        }
    }

    pub fn settle_mut(&mut self) -> Option<&mut Settle> {
        self.settle.as_mut()
    }

    /// Watches the stream's content (first-token and stall deadlines, priming).
    pub fn with_watch(mut self, watch: Watch) -> Self {
        self.watch = Some(Box::new(watch));
        self
    }

    /// Reads upstream until the first content event, holding the output. `Err` when the stream
    /// failed before any content: the caller may try elsewhere; the returned `Settle` is
    /// theirs (nothing was recorded).
    pub async fn prime(&mut self) -> Result<(), (PrimeFailure, Option<Settle>)> {
        std::future::poll_fn(|cx| self.poll_prime(cx)).await;
        let Some(w) = self.watch.as_mut() else {
            return Ok(());
        };
        match w.early.take() {
            Some(f) if !w.content_seen => {
                self.done = true;
                self.held.clear();
                Err((f, self.settle.take()))
            }
            _ => {
                // Without a stall deadline nothing needs watching any more: the rest of the
                // stream is forwarded at pass-through cost (no splitting, no decoding).
                if !w.has_stall() {
                    self.watch = None;
                }
                Ok(())
            }
        }
    }

    fn poll_prime(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let Some(w) = self.watch.as_ref() else {
                return Poll::Ready(());
            };
            if w.content_seen || w.early.is_some() || self.done {
                return Poll::Ready(());
            }
            match self.step(cx) {
                Step::Data(Some(b)) | Step::End(Some(b)) => self.held.push_back(b),
                Step::Data(None) | Step::End(None) => {}
                Step::Pending => return Poll::Pending,
            }
        }
    }

    fn end(&mut self, cancelled: bool) {
        if let Some(mut settle) = self.settle.take() {
            settle.overhead += CLOCK.delta(0, self.processing_raw);
            let usage = self.tap.usage();
            settle.finish(200, usage, cancelled);
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if let Some(b) = self.held.pop_front() {
            return Poll::Ready(Some(b));
        }
        if self.done {
            self.end(false);
            return Poll::Ready(None);
        }
        loop {
            match self.step(cx) {
                Step::Data(Some(b)) => return Poll::Ready(Some(b)),
                Step::Data(None) => continue,
                Step::End(tail) => {
                    self.end(false);
                    return Poll::Ready(tail);
                }
                Step::Pending => return Poll::Pending,
            }
        }
    }

    fn step(&mut self, cx: &mut Context<'_>) -> Step {
        match Pin::new(&mut self.upstream).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    return Step::Data(None); // trailers: nothing to forward to an SSE client
                };
                // Raw TSC reads (quanta falls back to the OS clock where the TSC is not
                // invariant), summed and scaled once at the end: a few instructions per
                // frame instead of two clock_gettime calls, which were a visible share of
                // a streamed frame's cost.
                let t = CLOCK.raw();
                if let Some(w) = self.watch.as_mut() {
                    w.observe(&data);
                }
                let out = self.tap.on_chunk(data);
                self.processing_raw += CLOCK.raw().saturating_sub(t);
                Step::Data(out)
            }
            Poll::Ready(None) => {
                self.done = true;
                if let Some(lease) = self.lease.take() {
                    lease.release();
                }
                if let Some(w) = self.watch.as_mut() {
                    w.end();
                }
                Step::End(self.tap.finish())
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                tracing::warn!(error = %e, "upstream stream broke mid-response");
                let message = "The upstream connection broke before the response finished.";
                if let Some(w) = self.watch.as_mut() {
                    if w.early.is_none() && !w.content_seen {
                        w.early = Some(PrimeFailure::Broken(e.to_string()));
                    }
                }
                Step::End(Some(self.tap.error_event(
                    message,
                    "upstream_error",
                    "upstream_stream_broken",
                )))
            }
            Poll::Pending => {
                if let Some(w) = self.watch.as_mut() {
                    if let Some(expired) = w.clock.as_mut().and_then(|c| c.poll_expired(cx)) {
                        self.done = true;
                        let (message, code) = match expired {
                            Expired::FirstToken => {
                                if !w.content_seen && w.early.is_none() {
                                    w.early = Some(PrimeFailure::FirstTokenTimeout);
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
                        return Step::End(Some(self.tap.error_event(
                            message,
                            "upstream_error",
                            code,
                        )));
                    }
                }
                // Poll the deadline only once, to register this task's waker with the
                // timer; afterwards checking `is_elapsed` suffices (the connection task
                // that polls this body never changes) and costs a load instead of a
                // timer-entry poll on every wait between frames.
                let fired = match &mut self.sleep {
                    Some(sleep) => sleep.is_elapsed(),
                    None => {
                        let mut sleep = Box::pin(tokio::time::sleep_until(self.deadline));
                        let ready = sleep.as_mut().poll(cx).is_ready();
                        self.sleep = Some(sleep);
                        ready
                    }
                };
                if fired {
                    self.done = true;
                    if let Some(w) = self.watch.as_mut() {
                        if !w.content_seen && w.early.is_none() {
                            w.early = Some(PrimeFailure::TotalTimeout);
                        }
                    }
                    return Step::End(Some(self.tap.error_event(
                        "The upstream did not finish the response within the total deadline.",
                        "upstream_error",
                        "upstream_timeout",
                    )));
                }
                Step::Pending
            }
        }
    }
}

impl Watch {
    fn has_stall(&self) -> bool {
        self.clock.as_ref().is_some_and(|c| c.has_stall())
    }
}

impl Drop for PassthroughStream {
    fn drop(&mut self) {
        // Dropping `upstream` closes the upstream connection; record what we saw.
        let cancelled = !self.done;
        self.end(cancelled);
    }
}
