//! The request log's record and queue. The request path pushes one record per request onto a
//! bounded lock-free queue; the writer (`logs`) drains it in batches into the stores and sinks.
//! A full queue drops the record and counts the drop; the request path never blocks, wakes a
//! task or makes a syscall for logging.
//!
//! The JSON line (stderr, the JSON Lines file, the query API) is formatted by hand (integers via `itoa`, strings escaped here) because it runs once
//! per request: going through `tracing`'s formatter cost ~29k instructions per request, more
//! than the whole proxying work of a bare proxy.

use std::borrow::Cow;
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_queue::ArrayQueue;
use metrics::Counter;

use crate::usage::Usage;

/// Every endpoint label a record can carry (`proxy::endpoint_label`): a record read back from
/// a store gets its label from here.
pub const ENDPOINTS: &[&str] = &[
    "chat/completions",
    "messages",
    "generate_content",
    "completions",
    "embeddings",
    "responses",
    "count_tokens",
];

/// The label as stored in a record; a label this build does not know (written by a newer one)
/// reads as `other`.
pub fn endpoint_named(name: &str) -> &'static str {
    ENDPOINTS
        .iter()
        .find(|e| **e == name)
        .copied()
        .unwrap_or("other")
}

/// What is logged about one request. Never contains credentials or bodies.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub finished_at: SystemTime,
    pub request_id: http::HeaderValue,
    pub endpoint: &'static str,
    pub model: Arc<str>,
    pub target: Arc<str>,
    pub status: u16,
    pub stream: bool,
    pub usage: Option<Usage>,
    /// What the usage cost at the configured prices; `None` with usage: no known price.
    pub cost_usd: Option<f64>,
    pub duration: Duration,
    pub overhead: Duration,
    /// The upstream's response head after the request went out, in microseconds (0: no
    /// upstream answered).
    pub ttfb_us: u32,
    /// A stream's first content after the request arrived, in microseconds (0: none, or not
    /// a stream).
    pub ttft_us: u32,
    /// Set when the client went away before the response finished.
    pub client_cancelled: bool,
    pub meta: RecordMeta,
}

/// A duration as the record keeps it: whole microseconds, at most `u32::MAX` (71 minutes).
pub fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX).max(1)
}

/// Who sent a request, under which key, and how it went beyond its status.
#[derive(Debug, Clone, Default)]
pub struct RecordMeta {
    /// Shared by every record and settle of the request (one allocation per request; the
    /// request path moves a pointer, not the values).
    pub client: Option<Arc<ClientMeta>>,
    /// What most requests do not have (a key, an error, other than one attempt): boxed, so a
    /// plain request's record carries one null pointer for all of it.
    pub detail: Option<Box<RecordDetail>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordDetail {
    /// The virtual key, its team and customer (with governance on).
    pub key_id: Option<Arc<str>>,
    pub team_id: Option<Arc<str>>,
    pub customer_id: Option<Arc<str>>,
    /// A refused or failed request's error code (`rate_limit_exceeded`, `model_not_found`, …);
    /// owned only in a record read back from a store.
    pub error: Option<Cow<'static, str>>,
    /// Upstream attempts made (0: refused before any).
    pub attempts: u32,
    /// Refused for presenting no known key (governance on): kept apart in the store.
    pub unauthenticated: bool,
}

impl Default for RecordDetail {
    fn default() -> Self {
        RecordDetail {
            key_id: None,
            team_id: None,
            customer_id: None,
            error: None,
            attempts: 1,
            unauthenticated: false,
        }
    }
}

impl RecordMeta {
    /// The detail, made when first written.
    pub fn detail_mut(&mut self) -> &mut RecordDetail {
        self.detail.get_or_insert_with(Box::default)
    }

    pub fn unauthenticated(&self) -> bool {
        self.detail.as_ref().is_some_and(|d| d.unauthenticated)
    }

    pub fn attempts(&self) -> u32 {
        self.detail.as_ref().map_or(1, |d| d.attempts)
    }

    pub fn error(&self) -> Option<&str> {
        self.detail.as_ref().and_then(|d| d.error.as_deref())
    }

    pub fn key_id(&self) -> Option<&Arc<str>> {
        self.detail.as_ref().and_then(|d| d.key_id.as_ref())
    }

    pub fn team_id(&self) -> Option<&Arc<str>> {
        self.detail.as_ref().and_then(|d| d.team_id.as_ref())
    }

    pub fn customer_id(&self) -> Option<&Arc<str>> {
        self.detail.as_ref().and_then(|d| d.customer_id.as_ref())
    }
}

/// What the client told about itself: kept as the header values it sent (a reference count,
/// not a copy), formatted only by the writer.
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<http::HeaderValue>,
    /// `x-ferrogate-tags: k=v,k2=v2`.
    pub tags: Option<http::HeaderValue>,
}

/// Where a client puts its tags.
pub static X_FERROGATE_TAGS: http::HeaderName = http::HeaderName::from_static("x-ferrogate-tags");

impl ClientMeta {
    /// One pass over the request's headers (a handful), comparing names: cheaper than a
    /// hashed lookup of each.
    pub fn of(headers: &http::HeaderMap, ip: Option<IpAddr>) -> Self {
        let mut meta = ClientMeta {
            ip,
            user_agent: None,
            tags: None,
        };
        for (name, value) in headers {
            if *name == http::header::USER_AGENT {
                meta.user_agent.get_or_insert_with(|| value.clone());
            } else if *name == X_FERROGATE_TAGS {
                meta.tags.get_or_insert_with(|| value.clone());
            }
        }
        meta
    }
}

/// The `k=v` pairs of a tags header (a bare `k` has an empty value), blanks trimmed.
pub fn tags(value: &str) -> impl Iterator<Item = (&str, &str)> {
    value
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            let (k, v) = t.split_once('=').unwrap_or((t, ""));
            (k.trim(), v.trim())
        })
}

pub struct RequestLog {
    queue: ArrayQueue<RequestRecord>,
    dropped: Counter,
    /// Whether records are queued at all (off only when the writer could not start).
    enabled: AtomicBool,
    /// Whether the writer prints each record on stderr (`server.request_log`).
    stderr: AtomicBool,
}

/// Capacity of the request-log queue; beyond it records are dropped and counted.
pub const QUEUE_CAPACITY: usize = 8_192;

impl RequestLog {
    /// The gateway's queue: [`QUEUE_CAPACITY`] records, drops counted in
    /// `ferrogate_request_log_dropped_total` (install the metrics recorder first).
    pub fn standard(stderr: bool) -> Arc<Self> {
        RequestLog::new(
            QUEUE_CAPACITY,
            metrics::counter!(super::metrics::LOG_DROPPED),
            stderr,
        )
    }

    pub fn new(capacity: usize, dropped: Counter, stderr: bool) -> Arc<Self> {
        Arc::new(Self {
            queue: ArrayQueue::new(capacity.max(1)),
            dropped,
            enabled: AtomicBool::new(true),
            stderr: AtomicBool::new(stderr),
        })
    }

    /// The stderr lines, turned on or off by the configuration (`server.request_log`), also
    /// on reload. The records are kept for the query API either way.
    pub fn set_stderr(&self, on: bool) {
        self.stderr.store(on, Ordering::Relaxed);
    }

    pub fn writes_stderr(&self) -> bool {
        self.stderr.load(Ordering::Relaxed)
    }

    /// Whether the request path queues records.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Stops queueing (the writer could not start: nothing would ever drain the queue).
    pub fn disable(&self) {
        self.enabled.store(false, Ordering::Relaxed);
    }

    // Inlined into the settle: the record is written straight into the queue's slot.
    #[inline(always)]
    pub fn push(&self, record: RequestRecord) {
        if self.queue.push(record).is_err() {
            self.dropped.increment(1);
        }
    }

    /// The oldest queued record (the writer's side).
    pub fn pop(&self) -> Option<RequestRecord> {
        self.queue.pop()
    }

    /// Records waiting for the writer.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Counts records lost after they left the queue (a store that cannot keep up).
    pub fn count_dropped(&self, n: usize) {
        self.dropped.increment(n as u64);
    }
}

/// Writes the lines on stderr; a closed stderr just loses them (logging must never take the
/// gateway down).
pub fn write_stderr(buf: &[u8]) {
    if buf.is_empty() {
        return;
    }
    let _ = std::io::stderr().lock().write_all(buf);
}

/// Which fields a record is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fields {
    /// The stderr line.
    Line,
    /// The query API: the client's address, user agent and tags too.
    All,
}

/// One JSON object per line, fields in a fixed order.
pub fn format_line(out: &mut Vec<u8>, r: &RequestRecord, fields: Fields) {
    let ts = r
        .finished_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    out.extend_from_slice(b"{\"ts_ms\":");
    int(out, ts);
    out.extend_from_slice(b",\"kind\":\"request\",\"request_id\":");
    string(out, r.request_id.as_bytes());
    out.extend_from_slice(b",\"endpoint\":\"");
    out.extend_from_slice(r.endpoint.as_bytes());
    out.extend_from_slice(b"\",\"model\":");
    string(out, r.model.as_bytes());
    out.extend_from_slice(b",\"target\":");
    string(out, r.target.as_bytes());
    out.extend_from_slice(b",\"status\":");
    int(out, u64::from(r.status));
    out.extend_from_slice(if r.stream {
        b",\"stream\":true"
    } else {
        b",\"stream\":false"
    });
    match &r.usage {
        Some(u) => {
            out.extend_from_slice(b",\"prompt_tokens\":");
            int(out, u.input);
            out.extend_from_slice(b",\"completion_tokens\":");
            int(out, u.output);
            out.extend_from_slice(b",\"cached_tokens\":");
            int(out, u.cache_read);
            out.extend_from_slice(b",\"cache_write_tokens\":");
            int(out, u.cache_write);
            out.extend_from_slice(b",\"reasoning_tokens\":");
            int(out, u.reasoning);
            out.extend_from_slice(if u.estimated {
                b",\"usage\":\"estimated\""
            } else {
                b",\"usage\":\"reported\""
            });
        }
        None => out.extend_from_slice(b",\"usage\":\"none\""),
    }
    if r.usage.is_some() {
        // Unknown price: `null`, never 0. Display writes the shortest decimal that reads back
        // as the same number, never an exponent, so it is valid JSON.
        match r.cost_usd {
            Some(cost) if cost.is_finite() => {
                let _ = write!(out, ",\"cost_usd\":{cost}");
            }
            _ => out.extend_from_slice(b",\"cost_usd\":null"),
        }
    }
    out.extend_from_slice(b",\"duration_us\":");
    int(out, r.duration.as_micros() as u64);
    out.extend_from_slice(b",\"overhead_us\":");
    int(out, r.overhead.as_micros() as u64);
    if r.ttfb_us > 0 {
        out.extend_from_slice(b",\"ttfb_us\":");
        int(out, u64::from(r.ttfb_us));
    }
    if r.ttft_us > 0 {
        out.extend_from_slice(b",\"ttft_us\":");
        int(out, u64::from(r.ttft_us));
    }
    if r.client_cancelled {
        out.extend_from_slice(b",\"client_cancelled\":true");
    }
    if let Some(d) = r.meta.detail.as_deref() {
        if d.attempts != 1 {
            out.extend_from_slice(b",\"attempts\":");
            int(out, u64::from(d.attempts));
        }
        if let Some(e) = &d.error {
            out.extend_from_slice(b",\"error\":");
            string(out, e.as_bytes());
        }
        for (name, id) in [
            (&b",\"key_id\":"[..], &d.key_id),
            (b",\"team_id\":", &d.team_id),
            (b",\"customer_id\":", &d.customer_id),
        ] {
            if let Some(id) = id {
                out.extend_from_slice(name);
                string(out, id.as_bytes());
            }
        }
    }
    // The client's address, user agent and tags: in the query API's records; the stderr
    // line leaves them out (the writer formats a line per request, these cost it more than
    // the rest of the line).
    let client = r.meta.client.as_deref().filter(|_| fields == Fields::All);
    if let Some(ip) = client.and_then(|c| c.ip) {
        out.extend_from_slice(b",\"client_ip\":\"");
        ip_text(out, ip);
        out.push(b'"');
    }
    if let Some(ua) = client.and_then(|c| c.user_agent.as_ref()) {
        out.extend_from_slice(b",\"user_agent\":");
        string(out, ua.as_bytes());
    }
    if let Some(t) = client.and_then(|c| c.tags.as_ref()) {
        out.extend_from_slice(b",\"tags\":{");
        let text = String::from_utf8_lossy(t.as_bytes());
        let pairs: Vec<(&str, &str)> = tags(&text).collect();
        // A key given twice is written once (its first value): parsers disagree on which of
        // two equal keys wins.
        let firsts = pairs
            .iter()
            .enumerate()
            .filter(|(i, (k, _))| !pairs[..*i].iter().any(|(seen, _)| seen == k));
        for (n, (_, (k, v))) in firsts.enumerate() {
            if n > 0 {
                out.push(b',');
            }
            string(out, k.as_bytes());
            out.push(b':');
            string(out, v.as_bytes());
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"}\n");
}

/// An address as text; IPv4 (nearly every client) by hand, as `Display`'s formatting machinery
/// costs the writer several hundred instructions per record.
fn ip_text(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                int(out, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn int(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A JSON string; bytes that are not valid UTF-8 (possible in a client's header) are replaced.
fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    // Fast path: plain printable ASCII (request ids, model names) needs no escaping.
    if s.iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.extend_from_slice(s);
        out.push(b'"');
        return;
    }
    for ch in String::from_utf8_lossy(s).chars() {
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_valid_json_with_escaped_strings() {
        let r = RequestRecord {
            finished_at: UNIX_EPOCH + Duration::from_millis(1234),
            request_id: http::HeaderValue::from_static("id-\"quoted\"\\x"),
            endpoint: "chat/completions",
            model: Arc::from("gpt-4o"),
            target: Arc::from("up/m"),
            status: 200,
            stream: true,
            usage: Some(Usage {
                input: 5,
                output: 7,
                estimated: true,
                ..Usage::default()
            }),
            cost_usd: Some(0.0000015),
            duration: Duration::from_micros(1500),
            overhead: Duration::from_micros(12),
            ttfb_us: 900,
            ttft_us: 1_100,
            client_cancelled: true,
            meta: RecordMeta {
                client: Some(Arc::new(ClientMeta {
                    ip: Some("10.0.0.7".parse().unwrap()),
                    user_agent: Some(http::HeaderValue::from_static("OpenAI/Python 1.2")),
                    tags: Some(http::HeaderValue::from_static(
                        " team=search , env=prod,bare,team=other",
                    )),
                })),
                detail: Some(Box::new(RecordDetail {
                    key_id: Some(Arc::from("key_1")),
                    team_id: None,
                    customer_id: Some(Arc::from("cust_1")),
                    error: Some(Cow::Borrowed("upstream_timeout")),
                    attempts: 3,
                    unauthenticated: false,
                })),
            },
        };
        let mut line = Vec::new();
        format_line(&mut line, &r, Fields::Line);
        let line: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert!(line.get("client_ip").is_none() && line.get("user_agent").is_none());
        assert_eq!(line["key_id"], "key_1");
        let mut out = Vec::new();
        format_line(&mut out, &r, Fields::All);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["request_id"], "id-\"quoted\"\\x");
        assert_eq!(v["ts_ms"], 1234);
        assert_eq!(v["completion_tokens"], 7);
        assert_eq!(v["usage"], "estimated");
        assert_eq!(v["cost_usd"], 0.0000015);
        assert_eq!(v["overhead_us"], 12);
        assert_eq!(
            (v["ttfb_us"].as_u64(), v["ttft_us"].as_u64()),
            (Some(900), Some(1_100))
        );
        assert_eq!(v["client_cancelled"], true);
        assert_eq!(v["attempts"], 3);
        assert_eq!(v["error"], "upstream_timeout");
        assert_eq!(v["key_id"], "key_1");
        assert!(v.get("team_id").is_none());
        assert_eq!(v["customer_id"], "cust_1");
        assert_eq!(v["client_ip"], "10.0.0.7");
        assert_eq!(v["user_agent"], "OpenAI/Python 1.2");
        assert_eq!(
            v["tags"],
            serde_json::json!({"team": "search", "env": "prod", "bare": ""})
        );
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "10.20.0.3",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            ip_text(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
    }

    #[test]
    fn the_client_is_read_from_its_headers() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "user-agent",
            http::HeaderValue::from_static("claude-cli/2.0"),
        );
        h.insert("x-ferrogate-tags", http::HeaderValue::from_static("a=b"));
        h.insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        let c = ClientMeta::of(&h, None);
        assert_eq!(c.user_agent.unwrap(), "claude-cli/2.0");
        assert_eq!(c.tags.unwrap(), "a=b");
        let c = ClientMeta::of(&http::HeaderMap::new(), None);
        assert!(c.user_agent.is_none() && c.tags.is_none());
    }
}
