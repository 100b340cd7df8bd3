//! `GET /admin/v1/logs` (a page of request records, newest first) and
//! `GET /admin/v1/logs/{request_id}` (one record), over the configured store (memory, SQLite,
//! PostgreSQL). Records are written as the request log's JSON lines are (one formatter, one
//! set of field names).

use std::net::IpAddr;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, StatusCode};

use super::{error, params, reply, Reply};
use crate::config::governance::parse_time;
use crate::governance::Governor;
use crate::logs::query::{Cursor, LogQuery, StatusFilter, DEFAULT_PAGE, MAX_PAGE};
use crate::logs::sql::LogStoreError;
use crate::logs::stats::{Dimension, Granularity, StatsQuery, MAX_PERIODS};
use crate::logs::Logs;
use crate::telemetry::request_log::{format_line, Fields, RequestRecord};

/// Who may read the request log: with governance on, the master key; without it (there is
/// no master key then), loopback clients only.
pub fn access(g: Option<&Governor>, headers: &HeaderMap, peer: IpAddr) -> Result<(), Reply> {
    match g {
        Some(g) => super::authorize(g, headers).map(|_| ()),
        None if peer.is_loopback() => Ok(()),
        None => Err(Reply::forbidden(
            "The request log is served to loopback clients only while governance is off \
             (turn governance on to reach it with the master key).",
        )),
    }
}

/// Answers a logs route; `rest` is the path after `/admin/v1/logs`.
pub async fn handle(store: &Logs, rest: &str, query: Option<&str>) -> Reply {
    match rest.strip_prefix('/').filter(|id| !id.is_empty()) {
        None if rest.is_empty() || rest == "/" => list(store, query).await,
        Some(id) if !id.contains('/') => match query.filter(|q| !q.is_empty()) {
            Some(_) => bad_request("a single record takes no query parameters"),
            None => one(store, id).await,
        },
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "not_found",
            "no such logs route",
        ),
    }
}

pub fn bad_request(message: &str) -> Reply {
    super::bad_request(message)
}

/// Too many live tails open (429).
pub fn too_many(message: &str) -> Reply {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_error",
        "too_many_tails",
        message,
    )
}

/// `GET /admin/v1/stats`: rows per group and period.
pub async fn stats(store: &Logs, query: Option<&str>, now_ms: u64) -> Reply {
    let q = match parse_stats(query, now_ms) {
        Ok(q) => q,
        Err(message) => return bad_request(&message),
    };
    match store.stats(&q).await {
        Ok(rows) => reply(
            StatusCode::OK,
            &serde_json::json!({
                "object": "list",
                "group_by": q.group_by.as_str(),
                "granularity": match q.granularity {
                    Granularity::Minute => "minute",
                    Granularity::Hour => "hour",
                    Granularity::Day => "day",
                },
                "from": q.from_ms / 1000,
                "to": q.to_ms / 1000,
                "data": rows,
            }),
        ),
        Err(e) => unavailable(&e),
    }
}

/// The stats parameters: `group_by` (default `model`), `granularity` (default `hour`), `from`
/// and `to` (default: the last 24 hours), aligned to whole periods.
fn parse_stats(query: Option<&str>, now_ms: u64) -> Result<StatsQuery, String> {
    let mut group_by = Dimension::Model;
    let mut granularity = Granularity::Hour;
    let (mut from, mut to) = (None, None);
    for (k, v) in params(query) {
        match k.as_str() {
            "group_by" => {
                group_by = Dimension::parse(&v)
                    .ok_or("`group_by` must be model, target, key, team, customer or status")?
            }
            "granularity" => {
                granularity =
                    Granularity::parse(&v).ok_or("`granularity` must be minute, hour or day")?
            }
            "from" => from = Some(ms(&k, &v)?),
            "to" => to = Some(ms(&k, &v)?),
            _ => return Err(format!("unknown parameter `{k}`")),
        }
    }
    if granularity == Granularity::Minute && !group_by.by_minute() {
        return Err(format!(
            "`granularity=minute` is kept for model, target and status; group by {} per hour or day",
            group_by.as_str()
        ));
    }
    let g = granularity.millis();
    let to = to.unwrap_or(now_ms);
    let from = from.unwrap_or(to.saturating_sub(24 * 3_600_000));
    if from >= to {
        return Err("`from` must be before `to`".into());
    }
    let (from, to) = (from - from % g, to.div_ceil(g).saturating_mul(g));
    if (to - from) / g > MAX_PERIODS {
        return Err(format!(
            "more than {MAX_PERIODS} periods: narrow `from`/`to` or use a coarser `granularity`"
        ));
    }
    Ok(StatsQuery {
        group_by,
        granularity,
        from_ms: from,
        to_ms: to,
    })
}

/// A time parameter in Unix milliseconds (RFC 3339 or Unix seconds as written).
fn ms(k: &str, v: &str) -> Result<u64, String> {
    parse_time(v)
        .and_then(|secs| u64::try_from(secs).ok())
        .map(|secs| secs.saturating_mul(1000))
        .ok_or_else(|| format!("`{k}` must be an RFC 3339 time or Unix seconds"))
}

/// The store could not answer (a database that is down): 503, with the reason.
fn unavailable(e: &LogStoreError) -> Reply {
    if let LogStoreError::TooManyRows(_) = e {
        return bad_request(&e.to_string());
    }
    tracing::warn!(error = %e, "request log: a query failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "api_error",
        "log_store_unavailable",
        &format!("the request-log store cannot answer now: {e}"),
    )
}

async fn list(store: &Logs, query: Option<&str>) -> Reply {
    let q = match parse_query(query) {
        Ok(q) => q,
        Err(message) => return bad_request(&message),
    };
    let page = match store.query(&q).await {
        Ok(p) => p,
        Err(e) => return unavailable(&e),
    };
    let mut body = BytesMut::with_capacity(64 + page.records.len() * 400);
    body.put_slice(b"{\"object\":\"list\",\"data\":[");
    for (i, r) in page.records.iter().enumerate() {
        if i > 0 {
            body.put_u8(b',');
        }
        body.put_slice(&record_json(r));
    }
    body.put_slice(b"],\"next_cursor\":");
    match page.next_cursor {
        // A string: clients pass it back as it is, without reading anything into it.
        Some(c) => body.put_slice(format!("\"{c}\"").as_bytes()),
        None => body.put_slice(b"null"),
    }
    body.put_u8(b'}');
    Reply {
        status: StatusCode::OK,
        body: body.freeze(),
    }
}

/// A record as one JSON object: the request log's line with every field, without its newline.
fn record_json(r: &RequestRecord) -> Vec<u8> {
    let mut line = Vec::with_capacity(512);
    format_line(&mut line, r, Fields::All);
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    line
}

async fn one(store: &Logs, id: &str) -> Reply {
    let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
    match store.get(&id).await {
        Err(e) => unavailable(&e),
        Ok(Some(r)) => Reply {
            status: StatusCode::OK,
            body: Bytes::from(record_json(&r)),
        },
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "not_found",
            "no record of this request id (the memory store keeps only the newest records; \
             a database store keeps them for its retention)",
        ),
    }
}

/// The query parameters; an unknown one, or a bad value, is an error (never ignored).
pub fn parse_query(query: Option<&str>) -> Result<LogQuery, String> {
    let mut q = LogQuery {
        limit: DEFAULT_PAGE,
        ..LogQuery::default()
    };
    for (k, v) in params(query) {
        match k.as_str() {
            "from" => q.from_ms = Some(ms(&k, &v)?),
            "to" => q.to_ms = Some(ms(&k, &v)?),
            "model" => q.model = Some(v),
            "target" => q.target = Some(v),
            "status" => {
                q.status = Some(StatusFilter::parse(&v).ok_or_else(|| {
                    "`status` must be a status code (429) or a class (5xx)".to_string()
                })?)
            }
            // `true` / `false`, or an error code (`rate_limit_exceeded`, `model_not_found`, …).
            "error" => match v.as_str() {
                "true" | "1" | "" => q.errors = true,
                "false" | "0" => q.errors = false,
                code => q.error_code = Some(code.to_owned()),
            },
            "key" => q.key = Some(v),
            "team" => q.team = Some(v),
            "customer" => q.customer = Some(v),
            "tag" if v.contains(',') => {
                return Err("`tag` is one tag, `k` or `k=v` (no `,`)".into())
            }
            "tag" => {
                q.tag = Some(match v.split_once('=') {
                    Some((k, val)) => (k.trim().to_owned(), Some(val.trim().to_owned())),
                    None => (v.trim().to_owned(), None),
                })
            }
            "min_latency_ms" => {
                q.min_latency_ms = Some(
                    v.parse()
                        .map_err(|_| "`min_latency_ms` must be a whole number".to_string())?,
                )
            }
            "limit" => {
                q.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| format!("`limit` must be 1 to {MAX_PAGE}"))?
            }
            "cursor" => {
                q.before = Some(
                    Cursor::parse(&v)
                        .ok_or("`cursor` must be a `next_cursor` of an earlier page")?,
                )
            }
            _ => return Err(format!("unknown parameter `{k}`")),
        }
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    fn store() -> Arc<Logs> {
        use crate::config::logs::LogsConfig;
        use crate::telemetry::request_log::RequestLog;
        let queue = RequestLog::new(16, metrics::Counter::noop(), false);
        let logs = Logs::memory(&LogsConfig::default(), Arc::clone(&queue));
        for r in (0..5u64).map(|i| RequestRecord {
            finished_at: UNIX_EPOCH + Duration::from_secs(1_000 + i),
            request_id: http::HeaderValue::from_str(&format!("req {i}")).unwrap(),
            endpoint: "chat/completions",
            model: Arc::from("m"),
            target: Arc::from("up/m"),
            status: if i == 3 { 502 } else { 200 },
            stream: false,
            usage: None,
            cost_usd: None,
            duration: Duration::from_millis(5),
            overhead: Duration::from_micros(9),
            ttfb_us: 0,
            ttft_us: 0,
            client_cancelled: false,
            meta: Default::default(),
        }) {
            queue.push(r);
        }
        logs.drain();
        logs
    }

    fn json(r: &Reply) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[tokio::test]
    async fn a_page_is_a_json_list_with_a_cursor_to_the_next() {
        let s = store();
        let r = handle(&s, "", Some("limit=2")).await;
        assert_eq!(r.status, StatusCode::OK);
        let v = json(&r);
        assert_eq!(v["data"][0]["request_id"], "req 4");
        assert_eq!(v["data"][1]["request_id"], "req 3");
        let cursor = v["next_cursor"].as_str().unwrap().to_owned();
        let v = json(&handle(&s, "", Some(&format!("limit=10&cursor={cursor}"))).await);
        let ids: Vec<_> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["request_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, ["req 2", "req 1", "req 0"]);
        assert_eq!(v["next_cursor"], serde_json::Value::Null);
        let v = json(&handle(&s, "", Some("status=5xx")).await);
        assert_eq!(v["data"].as_array().unwrap().len(), 1);
        assert_eq!(v["data"][0]["status"], 502);
    }

    #[test]
    fn without_governance_only_loopback_clients_may_read() {
        let h = HeaderMap::new();
        assert!(access(None, &h, "127.0.0.1".parse().unwrap()).is_ok());
        assert!(access(None, &h, "::1".parse().unwrap()).is_ok());
        // What the server passes for an IPv4 client of a dual-stack listener.
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(access(None, &h, mapped.to_canonical()).is_ok());
        let refused = access(None, &h, "10.1.2.3".parse().unwrap()).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(json(&refused)["error"]["type"], "permission_error");
    }

    #[tokio::test]
    async fn one_record_by_its_id_and_clear_errors_otherwise() {
        let s = store();
        let r = handle(&s, "/req%202", None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(json(&r)["request_id"], "req 2");
        assert_eq!(
            handle(&s, "/nope", None).await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            handle(&s, "/req%202", Some("limit=1")).await.status,
            StatusCode::BAD_REQUEST
        );
        for bad in [
            "limit=0",
            "limit=5000",
            "status=abc",
            "from=yesterday",
            "cursor=x",
            "colour=red",
            "tag=a=b,c=d",
        ] {
            let r = handle(&s, "", Some(bad)).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(json(&r)["error"]["message"].is_string(), "{bad}");
        }
    }
}
