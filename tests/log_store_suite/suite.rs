// The request-log store suite, included by log_store_sqlite.rs and log_store_postgres.rs, each
// of which defines `async fn new_store() -> Store` (a `url: StoreUrl` to open, and whatever
// keeps its server alive). The memory store answers every query as the reference: a database
// store must find the same records in the same order.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use ferrogate::logs::memory::MemoryLog;
use ferrogate::logs::query::{LogQuery, StatusFilter};
use ferrogate::logs::sql::SqlLog;
use ferrogate::telemetry::request_log::{
    format_line, ClientMeta, Fields, RecordDetail, RecordMeta, RequestRecord,
};
use ferrogate::usage::Usage;

/// Record `i` of a known set: four models, a status every 7th of 429 and every 11th of 502,
/// keys and teams on some, tags on some, latencies growing, one second apart.
fn record(i: u64) -> RequestRecord {
    let model = ["gpt-4o", "claude", "gemini", "mock/x"][(i % 4) as usize];
    let status = if i % 11 == 0 {
        502
    } else if i % 7 == 0 {
        429
    } else {
        200
    };
    let mut meta = RecordMeta::default();
    if i % 3 == 0 {
        let d = meta.detail_mut();
        d.key_id = Some(Arc::from(format!("key_{}", i % 2)));
        d.team_id = Some(Arc::from("team_a"));
        if i % 6 == 0 {
            d.customer_id = Some(Arc::from("cust_1"));
        }
    }
    if status != 200 {
        let d = meta.detail_mut();
        d.error = Some(Cow::Borrowed(if status == 429 {
            "rate_limit_exceeded"
        } else {
            "upstream_error"
        }));
        d.attempts = 2;
    }
    if i % 5 == 0 {
        meta.client = Some(Arc::new(ClientMeta {
            ip: Some(if i % 2 == 0 {
                "10.0.0.7".parse().unwrap()
            } else {
                "2001:db8::7".parse().unwrap()
            }),
            user_agent: Some(http::HeaderValue::from_static("OpenAI/Python 1.2")),
            tags: Some(http::HeaderValue::from_static(if i % 10 == 0 {
                "env=prod, feature=search"
            } else {
                "env=dev"
            })),
        }));
    }
    RequestRecord {
        finished_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i),
        request_id: http::HeaderValue::from_str(&format!("req-{i}")).unwrap(),
        endpoint: ["chat/completions", "messages"][(i % 2) as usize],
        model: Arc::from(model),
        target: Arc::from(format!("up/{model}")),
        status,
        stream: i % 2 == 1,
        usage: (status == 200).then_some(Usage {
            input: 10 + i,
            output: 20 + i,
            cache_read: i % 3,
            cache_write: i % 4,
            reasoning: i % 5,
            estimated: i % 9 == 0,
        }),
        cost_usd: (status == 200 && i % 13 != 0).then_some(0.000_125 * i as f64),
        duration: Duration::from_millis(10 * i),
        overhead: Duration::from_micros(7 + i),
        ttfb_us: if status == 200 { 5_000 + i as u32 * 13 } else { 0 },
        ttft_us: if i % 2 == 1 { 20_000 + i as u32 * 777 } else { 0 },
        client_cancelled: i % 17 == 0,
        meta,
    }
}

const N: u64 = 300;

async fn filled() -> (Store, SqlLog, MemoryLog) {
    let store = new_store().await;
    let db = SqlLog::open(&store.url).await.expect("open the store");
    let all: Vec<RequestRecord> = (0..N).map(record).collect();
    // Two batches, as the writer would send them.
    db.insert(&all[..120]).await.expect("insert");
    db.insert(&all[120..]).await.expect("insert");
    let mem = MemoryLog::new(1_000);
    mem.extend(all);
    (store, db, mem)
}

fn json(r: &RequestRecord) -> serde_json::Value {
    let mut line = Vec::new();
    format_line(&mut line, r, Fields::All);
    serde_json::from_slice(&line).unwrap()
}

fn ids(records: &[RequestRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.request_id.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_filter_finds_what_the_memory_store_finds() {
    let (_store, db, mem) = filled().await;
    let at = |s: u64| (1_700_000_000 + s) * 1000;
    let queries: Vec<(&str, LogQuery)> = vec![
        ("all", LogQuery::default()),
        ("model", LogQuery { model: Some("claude".into()), ..Default::default() }),
        ("target", LogQuery { target: Some("up/gemini".into()), ..Default::default() }),
        ("status", LogQuery { status: StatusFilter::parse("429"), ..Default::default() }),
        ("class", LogQuery { status: StatusFilter::parse("5xx"), ..Default::default() }),
        ("errors", LogQuery { errors: true, ..Default::default() }),
        ("code", LogQuery { error_code: Some("upstream_error".into()), ..Default::default() }),
        ("key", LogQuery { key: Some("key_1".into()), ..Default::default() }),
        ("team", LogQuery { team: Some("team_a".into()), ..Default::default() }),
        ("customer", LogQuery { customer: Some("cust_1".into()), ..Default::default() }),
        ("tag", LogQuery { tag: Some(("env".into(), None)), ..Default::default() }),
        ("tag=v", LogQuery { tag: Some(("env".into(), Some("prod".into()))), ..Default::default() }),
        ("slow", LogQuery { min_latency_ms: Some(2_500), ..Default::default() }),
        ("window", LogQuery { from_ms: Some(at(40)), to_ms: Some(at(90)), ..Default::default() }),
        (
            "deep",
            LogQuery {
                model: Some("gpt-4o".into()),
                to_ms: Some(at(60)),
                errors: false,
                ..Default::default()
            },
        ),
        ("none", LogQuery { model: Some("nope".into()), ..Default::default() }),
    ];
    for (name, mut q) in queries {
        q.limit = 1_000;
        let want = mem.query(&q);
        let got = db.query(&q).await.expect(name);
        assert_eq!(ids(&got.records), ids(&want.records), "{name}");
        assert_eq!(got.next_cursor, None, "{name}");
        if name != "none" {
            assert!(!got.records.is_empty(), "{name} found nothing: a weak test");
        }
    }
}

#[tokio::test]
async fn pages_walk_every_record_once_newest_first() {
    let (_store, db, _mem) = filled().await;
    let mut q = LogQuery {
        limit: 7,
        errors: true,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = db.query(&q).await.unwrap();
        assert!(page.records.len() <= 7);
        seen.extend(ids(&page.records));
        match page.next_cursor {
            Some(c) => q.before = Some(c),
            None => break,
        }
    }
    let want: Vec<String> = (0..N)
        .rev()
        .map(record)
        .filter(|r| r.status >= 400 || r.client_cancelled)
        .map(|r| r.request_id.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, want);
}

#[tokio::test]
async fn a_record_reads_back_as_it_was_written() {
    let (_store, db, _mem) = filled().await;
    for i in [0, 1, 5, 10, 13, 22, 33, 77, 299] {
        let got = db.get(&format!("req-{i}")).await.unwrap().expect("stored");
        assert_eq!(json(&got), json(&record(i)), "req-{i}");
    }
    assert!(db.get("req-missing").await.unwrap().is_none());
    // A stranger sending a keyed request's id does not shadow it.
    let mut stranger = record(1_000);
    stranger.request_id = http::HeaderValue::from_static("req-3");
    stranger.status = 401;
    stranger.meta = RecordMeta {
        client: None,
        detail: Some(Box::new(RecordDetail {
            unauthenticated: true,
            attempts: 0,
            ..RecordDetail::default()
        })),
    };
    db.insert(&[stranger]).await.unwrap();
    assert_eq!(db.get("req-3").await.unwrap().unwrap().status, 200);
}

#[tokio::test]
async fn retention_deletes_old_records_in_batches() {
    let store = new_store().await;
    let db = SqlLog::open(&store.url).await.unwrap();
    // 12,000 old records (more than two delete batches) and 50 new ones.
    let old: Vec<RequestRecord> = (0..12_000).map(record).collect();
    for chunk in old.chunks(3_000) {
        db.insert(chunk).await.unwrap();
    }
    let new: Vec<RequestRecord> = (0..50)
        .map(|i| {
            let mut r = record(i);
            r.finished_at = UNIX_EPOCH + Duration::from_secs(1_800_000_000 + i);
            r
        })
        .collect();
    db.insert(&new).await.unwrap();
    assert_eq!(db.count().await.unwrap(), 12_050);
    let before = db.file_bytes().await.unwrap();
    let pruned = db.prune(1_750_000_000_000, None).await.unwrap();
    assert_eq!(pruned.expired, 12_000);
    assert_eq!(db.count().await.unwrap(), 50);
    if let (Some(before), Some(after)) = (before, db.file_bytes().await.unwrap()) {
        // SQLite gives the freed pages back to the file system.
        assert!(after * 4 < before, "file {before} → {after} bytes");
    }
    // Nothing newer is touched.
    assert_eq!(db.prune(1_750_000_000_000, None).await.unwrap().expired, 0);
}

/// Stats from the rollups are the memory store's stats from the records, for every grouping
/// and granularity; records spread over two days, written in batches as the writer would.
#[tokio::test]
async fn stats_from_rollups_match_stats_from_records() {
    use ferrogate::logs::stats::{from_records, Dimension, Granularity, StatsQuery};
    let store = new_store().await;
    let db = SqlLog::open(&store.url).await.unwrap();
    let all: Vec<RequestRecord> = (0..600)
        .map(|i| {
            let mut r = record(i);
            // Every 5 minutes, so hours and days hold several (and a minute holds one).
            r.finished_at = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i * 300);
            r
        })
        .collect();
    for chunk in all.chunks(37) {
        db.insert(chunk).await.unwrap();
    }
    let from_ms = 1_699_999_200_000; // an hour boundary before the first
    for granularity in [Granularity::Minute, Granularity::Hour, Granularity::Day] {
        for group_by in Dimension::ALL {
            if granularity == Granularity::Minute && !group_by.by_minute() {
                continue;
            }
            let g = match granularity {
                Granularity::Minute => 60_000,
                Granularity::Hour => 3_600_000,
                Granularity::Day => 86_400_000,
            };
            let q = StatsQuery {
                group_by,
                granularity,
                from_ms: from_ms - from_ms % g,
                to_ms: 1_700_200_000_000,
            };
            let want = from_records(&q, all.iter());
            let got = db.stats(&q).await.unwrap();
            assert!(!want.is_empty(), "{q:?}");
            assert_eq!(got.len(), want.len(), "{q:?}");
            for (g, w) in got.iter().zip(&want) {
                assert!((g.usd - w.usd).abs() < 1e-8, "{q:?}: {g:?} vs {w:?}");
                let mut g = g.clone();
                g.usd = w.usd;
                assert_eq!(&g, w, "{q:?}");
            }
        }
    }
    // A window narrower than the data: only its periods.
    let q = StatsQuery {
        group_by: Dimension::Model,
        granularity: Granularity::Hour,
        from_ms: 1_700_006_400_000,
        to_ms: 1_700_013_600_000,
    };
    let got = db.stats(&q).await.unwrap();
    assert!(got
        .iter()
        .all(|r| r.period >= q.from_ms && r.period < q.to_ms));
    assert_eq!(got.iter().map(|r| r.requests).sum::<u64>(), 24);
}
