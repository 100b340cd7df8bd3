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

use crate::proxy::event_tap::EventTap;
use crate::proxy::settle::Settle;
use crate::proxy::stream_tap::StreamTap;
use crate::proxy::translate_stream::TranslatingStream;
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
    Frames(PacedFrames),
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
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut self.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers: nothing to forward to an SSE client
                    };
                    // Raw TSC reads (quanta falls back to the OS clock where the TSC is not
                    // invariant), summed and scaled once at the end: a few instructions per
                    // frame instead of two clock_gettime calls, which were a visible share of
                    // a streamed frame's cost.
                    let t = CLOCK.raw();
                    let out = self.tap.on_chunk(data);
                    self.processing_raw += CLOCK.raw().saturating_sub(t);
                    if let Some(out) = out {
                        return Poll::Ready(Some(out));
                    }
                }
                Poll::Ready(None) => {
                    self.done = true;
                    if let Some(lease) = self.lease.take() {
                        lease.release();
                    }
                    let tail = self.tap.finish();
                    self.end(false);
                    return Poll::Ready(tail);
                }
                Poll::Ready(Some(Err(e))) => {
                    self.done = true;
                    tracing::warn!(error = %e, "upstream stream broke mid-response");
                    let event = self.tap.error_event(
                        "The upstream connection broke before the response finished.",
                        "upstream_error",
                        "upstream_stream_broken",
                    );
                    self.end(false);
                    return Poll::Ready(Some(event));
                }
                Poll::Pending => {
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
                        let event = self.tap.error_event(
                            "The upstream did not finish the response within the total deadline.",
                            "upstream_error",
                            "upstream_timeout",
                        );
                        self.end(false);
                        return Poll::Ready(Some(event));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for PassthroughStream {
    fn drop(&mut self) {
        // Dropping `upstream` closes the upstream connection; record what we saw.
        let cancelled = !self.done;
        self.end(cancelled);
    }
}
