//! A query over the request log — filters, page size, cursor — as the admin API reads it and
//! every store answers it.

use std::time::UNIX_EPOCH;

use crate::telemetry::request_log::{tags, RequestRecord};

/// The most records one page holds, and the default.
pub const MAX_PAGE: usize = 1_000;
pub const DEFAULT_PAGE: usize = 50;

/// Which statuses a query wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Exact(u16),
    /// `4xx`: every status of that hundred.
    Class(u16),
}

impl StatusFilter {
    /// `429` or `5xx`.
    pub fn parse(s: &str) -> Option<Self> {
        if let Some(class) = s.strip_suffix("xx") {
            let c: u16 = class.parse().ok()?;
            return (1..=5).contains(&c).then_some(StatusFilter::Class(c));
        }
        let code: u16 = s.parse().ok()?;
        (100..=599)
            .contains(&code)
            .then_some(StatusFilter::Exact(code))
    }

    fn admits(self, status: u16) -> bool {
        match self {
            StatusFilter::Exact(s) => status == s,
            StatusFilter::Class(c) => status / 100 == c,
        }
    }
}

/// A query over the stored records; every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogQuery {
    /// Finished at or after (Unix milliseconds).
    pub from_ms: Option<u64>,
    /// Finished before (Unix milliseconds).
    pub to_ms: Option<u64>,
    pub model: Option<String>,
    pub target: Option<String>,
    pub status: Option<StatusFilter>,
    /// Only failed requests (status ≥ 400, or the client left).
    pub errors: bool,
    /// Only requests that failed with this error code (`rate_limit_exceeded`, …).
    pub error_code: Option<String>,
    /// The virtual key, team or customer (by id).
    pub key: Option<String>,
    pub team: Option<String>,
    pub customer: Option<String>,
    /// A tag the client sent (`x-ferrogate-tags`): `k`, or `k=v`.
    pub tag: Option<(String, Option<String>)>,
    /// Took at least this long.
    pub min_latency_ms: Option<u64>,
    /// Records older than this cursor (from a previous page).
    pub before: Option<Cursor>,
    /// Page size (1..=MAX_PAGE).
    pub limit: usize,
}

impl LogQuery {
    pub fn admits(&self, r: &RequestRecord) -> bool {
        let at = finished_ms(r);
        self.from_ms.is_none_or(|t| at >= t)
            && self.to_ms.is_none_or(|t| at < t)
            && self.model.as_deref().is_none_or(|m| *r.model == *m)
            && self.target.as_deref().is_none_or(|t| *r.target == *t)
            && self.status.is_none_or(|s| s.admits(r.status))
            && (!self.errors || r.status >= 400 || r.client_cancelled)
            && self
                .error_code
                .as_deref()
                .is_none_or(|c| r.meta.error() == Some(c))
            && same(&self.key, r.meta.key_id())
            && same(&self.team, r.meta.team_id())
            && same(&self.customer, r.meta.customer_id())
            && self.tag.as_ref().is_none_or(|(k, v)| {
                r.meta
                    .client
                    .as_ref()
                    .and_then(|c| c.tags.as_ref())
                    .is_some_and(|t| {
                        // A key given twice counts with its first value (as stored).
                        let text = String::from_utf8_lossy(t.as_bytes());
                        let first = tags(&text).find(|(tk, _)| tk == k);
                        first.is_some_and(|(_, tv)| v.as_deref().is_none_or(|v| v == tv))
                    })
            })
            && self
                .min_latency_ms
                .is_none_or(|ms| r.duration.as_millis() >= u128::from(ms))
    }
}

/// Whether a wanted id (if any) is the record's.
fn same(wanted: &Option<String>, id: Option<&std::sync::Arc<str>>) -> bool {
    wanted
        .as_deref()
        .is_none_or(|w| id.is_some_and(|id| **id == *w))
}

/// When a record's request finished, in Unix milliseconds.
pub fn finished_ms(r: &RequestRecord) -> u64 {
    r.finished_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One page of records, newest first.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<RequestRecord>,
    /// Where the next page starts; `None` when this is the last.
    pub next_cursor: Option<Cursor>,
}

/// A position in the log, newest first: records finished earlier, or at the same millisecond
/// and stored earlier, come after it. Written as `MILLIS-SEQ`; clients pass it back as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub ts_ms: u64,
    pub seq: u64,
}

impl Cursor {
    pub fn parse(s: &str) -> Option<Cursor> {
        let (ts, seq) = s.split_once('-')?;
        Some(Cursor {
            ts_ms: ts.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ts_ms, self.seq)
    }
}
