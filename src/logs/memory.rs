//! The last requests, kept in memory for the query API (`GET /admin/v1/logs`): a ring of the
//! newest records, filled by the request-log writer thread (never by the request path), read
//! newest first with keyset pagination.
//!
//! Each record gets a sequence number when it is stored; a page's cursor is the sequence of
//! its last record, so a page never repeats or skips a record while new ones arrive (new ones
//! only take higher numbers) — only records evicted from the ring in between are gone.

use std::collections::VecDeque;

use super::query::{finished_ms, Cursor, LogQuery, Page, MAX_PAGE};
use crate::telemetry::request_log::RequestRecord;

/// Locked by the request log's writer thread (once per batch) and by admin queries only, never
/// on the request path.
#[allow(clippy::disallowed_types)]
type WriterLock<T> = std::sync::Mutex<T>;

/// Records kept when nothing else is configured.
pub const DEFAULT_CAPACITY: usize = 10_000;
type Records = VecDeque<(u64, RequestRecord)>;

struct Ring {
    records: Records,
    /// Requests refused for presenting no known key: kept apart, in a smaller ring, so that
    /// anyone who can reach the gateway cannot push out (or shadow by request id) the records
    /// of requests that had a key.
    strangers: Records,
    next_seq: u64,
}

/// Refusals of unknown clients kept (beside the main ring).
pub const STRANGERS_CAPACITY: usize = 1_000;

pub struct MemoryLog {
    ring: WriterLock<Ring>,
    capacity: usize,
}

/// Both rings' records, newest (highest sequence) first.
fn newest_first<'a>(
    a: &'a Records,
    b: &'a Records,
) -> impl Iterator<Item = &'a (u64, RequestRecord)> {
    let mut a = a.iter().rev().peekable();
    let mut b = b.iter().rev().peekable();
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x.0 < y.0 => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

impl MemoryLog {
    pub fn new(capacity: usize) -> Self {
        MemoryLog {
            ring: WriterLock::new(Ring {
                records: VecDeque::with_capacity(capacity.clamp(1, DEFAULT_CAPACITY)),
                strangers: VecDeque::new(),
                next_seq: 1,
            }),
            capacity: capacity.max(1),
        }
    }

    /// Stores a batch (the writer's), evicting the oldest beyond the capacity. The lock is
    /// held by the writer thread and the query API only, never by the request path.
    pub fn extend(&self, batch: impl IntoIterator<Item = RequestRecord>) {
        let mut batch = batch.into_iter();
        self.fill(|| batch.next());
    }

    /// Stores records from `next` until it gives none, under one lock.
    pub fn fill(&self, mut next: impl FnMut() -> Option<RequestRecord>) {
        let mut guard = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let ring = &mut *guard;
        while let Some(r) = next() {
            let (records, capacity) = if r.meta.unauthenticated() {
                (&mut ring.strangers, STRANGERS_CAPACITY.min(self.capacity))
            } else {
                (&mut ring.records, self.capacity)
            };
            if records.len() >= capacity {
                records.pop_front();
            }
            records.push_back((ring.next_seq, r));
            ring.next_seq += 1;
        }
    }

    /// The newest records matching `q`, up to `q.limit`, older than its cursor.
    pub fn query(&self, q: &LogQuery) -> Page {
        let limit = q.limit.clamp(1, MAX_PAGE);
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let mut records = Vec::with_capacity(limit.min(ring.records.len()));
        let mut last = None;
        let mut more = false;
        for (seq, r) in newest_first(&ring.records, &ring.strangers) {
            if q.before.is_some_and(|b| *seq >= b.seq) || !q.admits(r) {
                continue;
            }
            if records.len() == limit {
                more = true;
                break;
            }
            records.push(r.clone());
            last = Some(Cursor {
                ts_ms: finished_ms(r),
                seq: *seq,
            });
        }
        Page {
            records,
            next_cursor: if more { last } else { None },
        }
    }

    /// The newest record of this request id (a request with a key first: an unknown client
    /// cannot shadow it by sending the same id).
    pub fn get(&self, request_id: &str) -> Option<RequestRecord> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let find = |records: &Records| {
            records
                .iter()
                .rev()
                .find(|(_, r)| r.request_id.as_bytes() == request_id.as_bytes())
                .map(|(_, r)| r.clone())
        };
        find(&ring.records).or_else(|| find(&ring.strangers))
    }

    /// Stats over the records kept.
    pub fn stats(&self, q: &super::stats::StatsQuery) -> Vec<super::stats::StatsRow> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        super::stats::from_records(
            q,
            ring.records
                .iter()
                .chain(ring.strangers.iter())
                .map(|(_, r)| r),
        )
    }

    pub fn len(&self) -> usize {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.records.len() + ring.strangers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::super::query::StatusFilter;
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    fn record(i: u64, model: &str, status: u16, ms: u64) -> RequestRecord {
        RequestRecord {
            finished_at: UNIX_EPOCH + Duration::from_secs(1_000 + i),
            request_id: http::HeaderValue::from_str(&format!("req-{i}")).unwrap(),
            endpoint: "chat",
            model: Arc::from(model),
            target: Arc::from(format!("up/{model}")),
            status,
            stream: false,
            usage: None,
            cost_usd: None,
            duration: Duration::from_millis(ms),
            overhead: Duration::from_micros(10),
            ttfb_us: 0,
            ttft_us: 0,
            client_cancelled: false,
            meta: Default::default(),
        }
    }

    fn ids(p: &Page) -> Vec<String> {
        p.records
            .iter()
            .map(|r| r.request_id.to_str().unwrap().to_owned())
            .collect()
    }

    /// The ids of the records a query set up by `f` finds (a page of up to 50).
    fn matching(log: &MemoryLog, f: fn(&mut LogQuery)) -> Vec<String> {
        let mut q = LogQuery {
            limit: 50,
            ..LogQuery::default()
        };
        f(&mut q);
        ids(&log.query(&q))
    }

    fn filled() -> MemoryLog {
        let log = MemoryLog::new(100);
        log.extend((0..10).map(|i| {
            let (model, status) = if i % 2 == 0 { ("a", 200) } else { ("b", 429) };
            record(i, model, status, i * 100)
        }));
        log
    }

    #[test]
    fn pages_run_newest_first_without_repeats_while_records_arrive() {
        let log = filled();
        let mut q = LogQuery {
            limit: 4,
            ..LogQuery::default()
        };
        let p1 = log.query(&q);
        assert_eq!(ids(&p1), ["req-9", "req-8", "req-7", "req-6"]);
        // A new record between pages does not shift the next page.
        log.extend([record(10, "a", 200, 1)]);
        q.before = p1.next_cursor;
        let p2 = log.query(&q);
        assert_eq!(ids(&p2), ["req-5", "req-4", "req-3", "req-2"]);
        q.before = p2.next_cursor;
        let p3 = log.query(&q);
        assert_eq!(ids(&p3), ["req-1", "req-0"]);
        assert_eq!(p3.next_cursor, None);
    }

    #[test]
    fn every_filter_applies() {
        let log = filled();
        let q = |f: fn(&mut LogQuery)| matching(&log, f);
        assert_eq!(
            q(|q| q.model = Some("b".into())),
            ["req-9", "req-7", "req-5", "req-3", "req-1"]
        );
        assert_eq!(q(|q| q.target = Some("up/a".into())).len(), 5);
        assert_eq!(q(|q| q.status = StatusFilter::parse("4xx")).len(), 5);
        assert_eq!(q(|q| q.status = StatusFilter::parse("200")).len(), 5);
        assert_eq!(q(|q| q.errors = true).len(), 5);
        assert_eq!(q(|q| q.min_latency_ms = Some(800)), ["req-9", "req-8"]);
        assert_eq!(
            q(|q| {
                q.from_ms = Some(1_003_000);
                q.to_ms = Some(1_005_000);
            }),
            ["req-4", "req-3"]
        );
        assert!(q(|q| q.model = Some("nope".into())).is_empty());
    }

    #[test]
    fn keys_tags_and_error_codes_filter_too() {
        let log = MemoryLog::new(10);
        let mut a = record(1, "m", 200, 1);
        a.meta.detail_mut().key_id = Some(Arc::from("key_a"));
        a.meta.detail_mut().team_id = Some(Arc::from("team_x"));
        a.meta.client = Some(Arc::new(crate::telemetry::request_log::ClientMeta {
            tags: Some(http::HeaderValue::from_static("env=prod, feature=search")),
            ..Default::default()
        }));
        let mut b = record(2, "m", 429, 1);
        b.meta.detail_mut().key_id = Some(Arc::from("key_b"));
        b.meta.detail_mut().error = Some("rate_limit_exceeded".into());
        b.meta.client = Some(Arc::new(crate::telemetry::request_log::ClientMeta {
            tags: Some(http::HeaderValue::from_static("env=dev")),
            ..Default::default()
        }));
        log.extend([a, b, record(3, "m", 200, 1)]);
        let q = |f: fn(&mut LogQuery)| matching(&log, f);
        assert_eq!(q(|q| q.key = Some("key_a".into())), ["req-1"]);
        assert_eq!(q(|q| q.team = Some("team_x".into())), ["req-1"]);
        assert!(q(|q| q.customer = Some("c".into())).is_empty());
        assert_eq!(
            q(|q| q.tag = Some(("env".into(), None))),
            ["req-2", "req-1"]
        );
        assert_eq!(
            q(|q| q.tag = Some(("env".into(), Some("prod".into())))),
            ["req-1"]
        );
        assert_eq!(
            q(|q| q.error_code = Some("rate_limit_exceeded".into())),
            ["req-2"]
        );
    }

    #[test]
    fn the_oldest_records_go_beyond_the_capacity() {
        let log = MemoryLog::new(3);
        log.extend((0..5).map(|i| record(i, "a", 200, 1)));
        assert_eq!(log.len(), 3);
        let all = log.query(&LogQuery {
            limit: 10,
            ..LogQuery::default()
        });
        assert_eq!(ids(&all), ["req-4", "req-3", "req-2"]);
        assert!(log.get("req-0").is_none());
        assert_eq!(log.get("req-3").map(|r| r.status), Some(200));
    }

    #[test]
    fn unknown_clients_cannot_push_out_or_shadow_the_records_of_keyed_requests() {
        let log = MemoryLog::new(5);
        log.extend((0..3).map(|i| record(i, "m", 200, 1)));
        let stranger = |i: u64, id: &str| {
            let mut r = record(i, "-", 401, 1);
            r.request_id = http::HeaderValue::from_str(id).unwrap();
            r.meta.detail_mut().unauthenticated = true;
            r
        };
        log.extend((10..40).map(|i| stranger(i, "req-1")));
        // All three keyed records are still there, the newest strangers beside them.
        assert_eq!(log.len(), 8);
        assert_eq!(log.get("req-1").map(|r| r.status), Some(200));
        let all = log.query(&LogQuery {
            limit: 100,
            ..LogQuery::default()
        });
        let statuses: Vec<u16> = all.records.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [401, 401, 401, 401, 401, 200, 200, 200]);
        // Interleaved in time, they are paged in order across both rings.
        log.extend([record(50, "m", 201, 1)]);
        let page = log.query(&LogQuery {
            limit: 2,
            ..LogQuery::default()
        });
        assert_eq!(
            page.records.iter().map(|r| r.status).collect::<Vec<_>>(),
            [201, 401]
        );
    }

    #[test]
    fn status_filters_parse_codes_and_classes_only() {
        assert_eq!(StatusFilter::parse("5xx"), Some(StatusFilter::Class(5)));
        assert_eq!(StatusFilter::parse("404"), Some(StatusFilter::Exact(404)));
        for bad in ["6xx", "xx", "99", "600", "abc", ""] {
            assert_eq!(StatusFilter::parse(bad), None, "{bad}");
        }
    }
}
