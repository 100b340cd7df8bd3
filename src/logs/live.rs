//! The live tail (`GET /admin/v1/logs/stream`): each subscriber's filter is applied by the
//! drain thread as records are stored, and what matches goes to the subscriber as Server-Sent
//! Events through a bounded channel. A subscriber that reads too slowly misses batches (it is
//! told how many records it missed); it never holds up the drain or other subscribers. With
//! no subscriber the drain pays one atomic load per batch.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::query::LogQuery;
use crate::telemetry::request_log::{format_line, Fields, RequestRecord};

/// Taken by the drain thread once per batch (when there are subscribers) and by a new
/// subscriber; never on the request path.
#[allow(clippy::disallowed_types)]
type WriterLock<T> = std::sync::Mutex<T>;

/// Tails open at once, at most.
pub const MAX_SUBSCRIBERS: usize = 64;
/// Chunks a subscriber may have unread before it misses some,
const BUFFER: usize = 16;
/// and the most bytes one chunk holds (the rest of a large batch is missed, and counted): a
/// reader that stalls holds at most 16 × 256 KiB.
const MAX_CHUNK: usize = 256 << 10;

struct Subscriber {
    filter: LogQuery,
    tx: mpsc::Sender<Bytes>,
    /// Records it missed and has not been told about.
    missed: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("{MAX_SUBSCRIBERS} live tails are open already")]
pub struct TooManyTails;

#[derive(Default)]
pub struct Live {
    subscribers: WriterLock<Vec<Subscriber>>,
    count: AtomicUsize,
}

impl Live {
    /// A new tail of the records `filter` admits (its cursor and limit are ignored).
    pub fn subscribe(&self, filter: LogQuery) -> Result<mpsc::Receiver<Bytes>, TooManyTails> {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| !s.tx.is_closed());
        if subs.len() >= MAX_SUBSCRIBERS {
            return Err(TooManyTails);
        }
        let (tx, rx) = mpsc::channel(BUFFER);
        subs.push(Subscriber {
            filter,
            tx,
            missed: 0,
        });
        self.count.store(subs.len(), Ordering::Relaxed);
        Ok(rx)
    }

    /// Lets every tail go: their bodies end once they have sent what is queued.
    pub fn close(&self) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.clear();
        self.count.store(0, Ordering::Relaxed);
    }

    /// Tails open now.
    pub fn subscribers(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Sends each subscriber what it wants of a batch: one `record` event per record (its
    /// JSON as `/admin/v1/logs` shows it), after a `missed` event when it lost some.
    pub fn publish(&self, batch: &[RequestRecord]) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain_mut(|s| {
            let matching: Vec<&RequestRecord> =
                batch.iter().filter(|r| s.filter.admits(r)).collect();
            if matching.is_empty() {
                return !s.tx.is_closed();
            }
            let mut out = Vec::with_capacity(64 + matching.len() * 480);
            if s.missed > 0 {
                out.extend_from_slice(b"event: missed\ndata: {\"records\":");
                out.extend_from_slice(itoa::Buffer::new().format(s.missed).as_bytes());
                out.extend_from_slice(b"}\n\n");
            }
            let mut cut = 0;
            for (i, r) in matching.iter().enumerate() {
                if out.len() >= MAX_CHUNK {
                    cut = (matching.len() - i) as u64;
                    break;
                }
                out.extend_from_slice(b"event: record\ndata: ");
                format_line(&mut out, r, Fields::All);
                out.push(b'\n');
            }
            match s.tx.try_send(Bytes::from(out)) {
                Ok(()) => {
                    s.missed = cut;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.missed += matching.len() as u64;
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        self.count.store(subs.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    fn record(id: &'static str, status: u16) -> RequestRecord {
        RequestRecord {
            finished_at: UNIX_EPOCH + Duration::from_secs(1),
            request_id: http::HeaderValue::from_static(id),
            endpoint: "chat/completions",
            model: Arc::from("m"),
            target: Arc::from("up/m"),
            status,
            stream: false,
            usage: None,
            cost_usd: None,
            duration: Duration::from_millis(3),
            overhead: Duration::from_micros(5),
            ttfb_us: 0,
            ttft_us: 0,
            client_cancelled: false,
            meta: Default::default(),
        }
    }

    #[test]
    fn subscribers_get_what_their_filter_admits_and_hear_of_what_they_missed() {
        let live = Live::default();
        live.publish(&[record("nobody", 200)]);
        let mut errors = live
            .subscribe(LogQuery {
                errors: true,
                ..LogQuery::default()
            })
            .unwrap();
        let mut all = live.subscribe(LogQuery::default()).unwrap();
        assert_eq!(live.subscribers(), 2);
        live.publish(&[record("a", 200), record("b", 502)]);
        let got = all.try_recv().unwrap();
        let text = std::str::from_utf8(&got).unwrap();
        assert_eq!(text.matches("event: record\n").count(), 2, "{text}");
        assert!(text.ends_with("}\n\n"), "{text}");
        let got = errors.try_recv().unwrap();
        let text = std::str::from_utf8(&got).unwrap();
        assert!(text.contains("\"request_id\":\"b\"") && !text.contains("\"a\""));
        // `all` stops reading: once its buffer is full it misses batches, then is told.
        for _ in 0..BUFFER + 3 {
            live.publish(&[record("c", 200)]);
        }
        for _ in 0..BUFFER {
            all.try_recv().unwrap();
        }
        live.publish(&[record("d", 200)]);
        let got = all.try_recv().unwrap();
        let text = std::str::from_utf8(&got).unwrap();
        assert!(
            text.starts_with("event: missed\ndata: {\"records\":3}\n\n"),
            "{text}"
        );
        // A closed tail is let go.
        drop(errors);
        live.publish(&[record("e", 500)]);
        assert_eq!(live.subscribers(), 1);
    }

    #[tokio::test]
    async fn closing_ends_every_tail_after_what_it_had() {
        let live = Live::default();
        let mut tail = live.subscribe(LogQuery::default()).unwrap();
        live.publish(&[record("a", 200)]);
        live.close();
        assert_eq!(live.subscribers(), 0);
        assert!(tail.recv().await.is_some());
        assert!(tail.recv().await.is_none(), "the tail ends");
    }

    #[test]
    fn large_batches_are_cut_and_the_rest_counted_as_missed() {
        let live = Live::default();
        let mut tail = live.subscribe(LogQuery::default()).unwrap();
        let batch: Vec<RequestRecord> = (0..2_000).map(|_| record("r", 200)).collect();
        live.publish(&batch);
        let first = tail.try_recv().unwrap();
        assert!(first.len() < MAX_CHUNK + 1_000, "{}", first.len());
        let sent = std::str::from_utf8(&first)
            .unwrap()
            .matches("event: record")
            .count();
        assert!(sent < 2_000);
        live.publish(&[record("next", 200)]);
        let next = tail.try_recv().unwrap();
        let text = std::str::from_utf8(&next).unwrap();
        assert!(
            text.starts_with(&format!(
                "event: missed\ndata: {{\"records\":{}}}",
                2_000 - sent
            )),
            "{text}"
        );
    }

    #[test]
    fn tails_are_bounded() {
        let live = Live::default();
        let tails: Vec<_> = (0..MAX_SUBSCRIBERS)
            .map(|_| live.subscribe(LogQuery::default()).unwrap())
            .collect();
        assert!(live.subscribe(LogQuery::default()).is_err());
        drop(tails);
        assert!(live.subscribe(LogQuery::default()).is_ok());
    }
}
