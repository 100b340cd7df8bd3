//! Response bodies the gateway sends: a full buffer, a paced list of frames (the mock), or an
//! upstream stream (passed through or translated). One enum, so hyper sees a single concrete
//! type.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::proxy::settle::Settle;
use crate::proxy::stream_body::UpstreamStream;
use crate::usage::Usage;

pub enum GatewayBody {
    Full(Option<Bytes>),
    Frames(Box<PacedFrames>),
    Stream(Box<UpstreamStream>),
    /// Chunks from a channel as they come (the request log's live tail).
    Channel(Box<ChannelBody>),
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
            GatewayBody::Stream(s) => Pin::new(s.as_mut()).poll_frame(cx),
            GatewayBody::Channel(c) => c.poll_next(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
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

/// Chunks of a long-lived Server-Sent Events answer, sent as a channel delivers them, with a
/// comment every `keep_alive` while it is quiet (so proxies and clients see the connection is
/// alive); ends when the sender goes away.
pub struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    keep_alive: Duration,
    quiet: Pin<Box<Sleep>>,
}

impl ChannelBody {
    pub fn new(rx: tokio::sync::mpsc::Receiver<Bytes>, keep_alive: Duration) -> Self {
        ChannelBody {
            rx,
            keep_alive,
            quiet: Box::pin(tokio::time::sleep(keep_alive)),
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(b)) => {
                let next = tokio::time::Instant::now() + self.keep_alive;
                self.quiet.as_mut().reset(next);
                Poll::Ready(Some(b))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.quiet.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let next = tokio::time::Instant::now() + self.keep_alive;
                    self.quiet.as_mut().reset(next);
                    Poll::Ready(Some(Bytes::from_static(b": keep-alive\n\n")))
                }
                Poll::Pending => Poll::Pending,
            },
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
