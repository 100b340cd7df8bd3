//! The body of every streamed upstream answer, passed through or translated: it reads the
//! upstream, runs each frame through the stream pipeline (`crate::stream`), and owns what takes
//! IO and time — the total, first-token and stall deadlines, priming (holding the response head
//! until the first content so a failure before it can still be an HTTP error or fail over), the
//! client leaving, returning the connection to its pool, and settling the request once.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Body;
use hyper::body::Incoming;
use tokio::time::Sleep;

use crate::proxy::content_clock::{ContentClock, Expired};
use crate::proxy::settle::Settle;
use crate::stream::{Fault, Pipeline};
use crate::telemetry::clock::CLOCK;
use crate::upstream::Lease;

pub struct UpstreamStream {
    upstream: Incoming,
    /// The upstream connection, returned to its pool when the body ends cleanly.
    lease: Option<Lease>,
    pipeline: Pipeline,
    /// Total deadline of the exchange; its timer is armed the first time upstream is not ready.
    deadline: tokio::time::Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    clock: Option<ContentClock>,
    settle: Option<Settle>,
    /// The upstream is finished with (ended, failed or timed out); only `held` remains.
    done: bool,
    /// Gateway time spent processing frames, in raw clock units (added to the head overhead
    /// for the histogram when the stream ends).
    processing_raw: u64,
    /// Output kept while priming (the response head has not been sent yet).
    held: VecDeque<Bytes>,
}

impl UpstreamStream {
    pub fn new(
        upstream: Incoming,
        lease: Lease,
        pipeline: Pipeline,
        deadline: tokio::time::Instant,
        clock: Option<ContentClock>,
        settle: Settle,
    ) -> Self {
        Self {
            upstream,
            lease: Some(lease),
            pipeline,
            deadline,
            sleep: None,
            clock,
            settle: Some(settle),
            done: false,
            processing_raw: 0,
            held: VecDeque::new(),
        }
    }

    pub fn settle_mut(&mut self) -> Option<&mut Settle> {
        self.settle.as_mut()
    }

    /// Reads upstream until the first content event, holding the output. `Err` when the stream
    /// failed before any content: the caller answers with an error (or tries elsewhere), and
    /// the returned `Settle` is the caller's (nothing was recorded).
    pub async fn prime(&mut self) -> Result<(), (Fault, Option<Settle>)> {
        std::future::poll_fn(|cx| self.poll_prime(cx)).await;
        if let Some(fault) = self.pipeline.take_early_fault() {
            self.done = true;
            self.held.clear();
            return Err((fault, self.settle.take()));
        }
        // Without a stall deadline nothing needs content detection any more: the rest of a
        // pass-through stream is forwarded at pass-through cost (no decoding on the side).
        if !self.clock.as_ref().is_some_and(ContentClock::has_stall) {
            self.pipeline.stop_watching();
        }
        Ok(())
    }

    fn poll_prime(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while !self.pipeline.primed() && !self.done {
            match self.step(cx) {
                Poll::Ready(Some(b)) => self.hold(b),
                Poll::Ready(None) => {}
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(())
    }

    /// Keeps output while priming. A pass-through stream keeps the upstream's frames; a
    /// translated one is sent as one frame once primed (its frames are the gateway's own, and
    /// each frame costs the client connection a write).
    fn hold(&mut self, b: Bytes) {
        if self.pipeline.translates() {
            if let Some(last) = self.held.back_mut() {
                let mut joined = Vec::with_capacity(last.len() + b.len());
                joined.extend_from_slice(last);
                joined.extend_from_slice(&b);
                *last = Bytes::from(joined);
                return;
            }
        }
        self.held.push_back(b);
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            if let Some(b) = self.held.pop_front() {
                return Poll::Ready(Some(b));
            }
            if self.done {
                self.end(false);
                return Poll::Ready(None);
            }
            match self.step(cx) {
                Poll::Ready(Some(b)) => return Poll::Ready(Some(b)),
                Poll::Ready(None) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// One step of upstream progress: a frame through the pipeline, the end, a broken
    /// connection or a deadline. `Ready(Some)` is output for the client; `Ready(None)` means
    /// progress without output (or the end, with `done` set).
    fn step(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        match Pin::new(&mut self.upstream).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    return Poll::Ready(None); // trailers: nothing to forward to an SSE client
                };
                // Raw TSC reads (quanta falls back to the OS clock where the TSC is not
                // invariant), summed and scaled once at the end: a few instructions per frame
                // instead of two clock_gettime calls.
                let t = CLOCK.raw();
                let content = self.pipeline.content();
                let out = self.pipeline.push(data);
                if self.pipeline.content() != content {
                    if let Some(clock) = &mut self.clock {
                        clock.on_content();
                    }
                    if content == 0 {
                        // The first content: the client's time to first token.
                        if let Some(s) = &mut self.settle {
                            s.ttft_us = crate::telemetry::request_log::micros(s.started.elapsed());
                        }
                    }
                }
                if self.pipeline.ended() {
                    // An error event ended a translated stream: nothing more will be read.
                    self.done = true;
                }
                self.processing_raw += CLOCK.raw().saturating_sub(t);
                Poll::Ready(out)
            }
            Poll::Ready(None) => {
                self.done = true;
                if let Some(lease) = self.lease.take() {
                    lease.release();
                }
                Poll::Ready(self.pipeline.finish())
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::warn!(error = %e, "upstream stream broke mid-response");
                Poll::Ready(self.fail(Fault::Broken(e.to_string())))
            }
            Poll::Pending => {
                if let Some(expired) = self.clock.as_mut().and_then(|c| c.poll_expired(cx)) {
                    return Poll::Ready(self.fail(match expired {
                        Expired::FirstToken => Fault::FirstTokenTimeout,
                        Expired::Stall => Fault::Stall,
                    }));
                }
                // Poll the deadline only once, to register this task's waker with the timer;
                // afterwards checking `is_elapsed` suffices (the connection task that polls
                // this body never changes) and costs a load instead of a timer-entry poll on
                // every wait between frames.
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
                    return Poll::Ready(self.fail(Fault::TotalTimeout));
                }
                Poll::Pending
            }
        }
    }

    fn fail(&mut self, fault: Fault) -> Option<Bytes> {
        self.done = true;
        self.pipeline.fault(fault)
    }

    fn end(&mut self, cancelled: bool) {
        if let Some(mut settle) = self.settle.take() {
            settle.overhead += CLOCK.delta(0, self.processing_raw);
            settle.finish(200, self.pipeline.usage(), cancelled);
        }
    }
}

impl Body for UpstreamStream {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.get_mut()
            .poll_next(cx)
            .map(|o| o.map(|b| Ok(http_body::Frame::data(b))))
    }
}

impl Drop for UpstreamStream {
    fn drop(&mut self) {
        // Dropping `upstream` closes the upstream connection; record what we saw.
        let cancelled = !self.done;
        self.end(cancelled);
    }
}
