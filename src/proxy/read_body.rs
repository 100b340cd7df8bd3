//! Reading whole bodies (the client's request, a non-stream upstream response) under a size
//! limit and a deadline, without copying the common single-frame case.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap};
use hyper::body::Incoming;

use crate::error::GatewayError;
use crate::routing::snapshot::Snapshot;

pub(super) enum BodyError {
    TooLarge,
    Read(hyper::Error),
}

/// Reads a whole body of at most `limit` bytes. A body that arrives as one frame (nearly every
/// request and non-stream response) is returned as that frame's `Bytes`, without copying or the
/// buffer list `http_body_util::Collected` would build.
pub(super) async fn collect_body(mut body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    use http_body::Body as _;
    let mut first: Option<Bytes> = None;
    let mut rest: Option<bytes::BytesMut> = None;
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        let data = match frame {
            None => break,
            Some(Err(e)) => return Err(BodyError::Read(e)),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(d) => d,
                Err(_) => continue, // trailers carry nothing we forward
            },
        };
        // `rest`, once started, already holds the first frame.
        let so_far = match &rest {
            Some(r) => r.len(),
            None => first.as_ref().map_or(0, Bytes::len),
        };
        if so_far + data.len() > limit {
            return Err(BodyError::TooLarge);
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let mut buf = bytes::BytesMut::with_capacity((f.len() + data.len()) * 2);
                buf.extend_from_slice(f);
                buf.extend_from_slice(&data);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&data),
        }
    }
    Ok(match (first, rest) {
        (_, Some(buf)) => buf.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

/// Polls a future once; only if it is not ready yet is it raced against a timer. Most request
/// bodies have fully arrived with their head, so the common case registers no timer.
pub(super) async fn ready_or_timeout<F: Future>(fut: F, after: Duration) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(v) => Some(v),
        Poll::Pending => tokio::time::timeout(after, fut).await.ok(),
    }
}

pub(super) async fn read_body(
    incoming: Incoming,
    headers: &HeaderMap,
    snapshot: &Snapshot,
) -> Result<Bytes, GatewayError> {
    let limit = snapshot.settings.body_limit_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    let timeout = Duration::from_millis(snapshot.settings.body_read_timeout_ms);
    match ready_or_timeout(collect_body(incoming, limit), timeout).await {
        None => Err(GatewayError::BodyReadTimeout(timeout)),
        Some(Ok(body)) => Ok(body),
        Some(Err(BodyError::TooLarge)) => Err(GatewayError::PayloadTooLarge { limit }),
        Some(Err(BodyError::Read(e))) => Err(GatewayError::BodyRead(e.to_string())),
    }
}
