//! The request log: one record per request, pushed onto a bounded lock-free queue by the request
//! path and written by a background task. A full queue drops the record and counts the drop; the
//! request path never blocks, wakes a task or makes a syscall for logging.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use metrics::Counter;

use crate::usage::Usage;

/// What is logged about one request. Never contains credentials or bodies.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub request_id: http::HeaderValue,
    pub endpoint: &'static str,
    pub model: Arc<str>,
    pub target: Arc<str>,
    pub status: u16,
    pub stream: bool,
    pub usage: Option<Usage>,
    pub duration: Duration,
    pub overhead: Duration,
    /// Set when the client went away before the response finished.
    pub client_cancelled: bool,
}

pub struct RequestLog {
    queue: ArrayQueue<RequestRecord>,
    dropped: Counter,
}

impl RequestLog {
    pub fn new(capacity: usize, dropped: Counter) -> Arc<Self> {
        Arc::new(Self {
            queue: ArrayQueue::new(capacity.max(1)),
            dropped,
        })
    }

    pub fn push(&self, record: RequestRecord) {
        if self.queue.push(record).is_err() {
            self.dropped.increment(1);
        }
    }

    /// Drains the queue periodically, writing each record as a structured log line.
    pub fn spawn_writer(self: &Arc<Self>) {
        let log = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                log.drain();
            }
        });
    }

    pub fn drain(&self) {
        while let Some(r) = self.queue.pop() {
            let u = r.usage.unwrap_or_default();
            tracing::info!(
                target: "ferrogate::request",
                request_id = r.request_id.to_str().unwrap_or("-"),
                endpoint = r.endpoint,
                model = %r.model,
                target = %r.target,
                status = r.status,
                stream = r.stream,
                prompt_tokens = u.input,
                completion_tokens = u.output,
                cached_tokens = u.cache_read,
                usage_known = r.usage.is_some(),
                duration_us = r.duration.as_micros() as u64,
                overhead_us = r.overhead.as_micros() as u64,
                client_cancelled = r.client_cancelled,
                "request"
            );
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}
