//! The request-log store on a million records: how fast the writer inserts them (records and
//! their stats rollups, in the writer's batches), the file size, and the latency of the
//! queries the admin API and the UI make (p50/p99 over repeated runs).
//!
//! `cargo bench --bench log_store` (SQLite in a temporary directory);
//! `FERROGATE_BENCH_RECORDS=N` changes the count (default 1,000,000);
//! `FERROGATE_BENCH_PG=postgres://…` runs the same against PostgreSQL too (an empty database).
//! Not a timed test: it prints numbers (and `--json PATH` writes them).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A benchmark measures wall time with the OS clock; no deadline is decided here.
#![allow(clippy::disallowed_methods)]

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use ferrogate::config::governance::StoreUrl;
use ferrogate::logs::query::{LogQuery, StatusFilter};
use ferrogate::logs::sql::SqlLog;
use ferrogate::logs::stats::{Dimension, Granularity, StatsQuery};
use ferrogate::telemetry::request_log::{ClientMeta, RecordMeta, RequestRecord};
use ferrogate::usage::Usage;

const DAY_MS: u64 = 86_400_000;
/// The records span this many days, ending now.
const SPAN_DAYS: u64 = 30;
const BATCH: usize = 5_000;
const RUNS: usize = 200;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Record `i` of `n`, evenly spread over the last `SPAN_DAYS` days: 8 models, 50 keys in 5
/// teams, 3% errors, tags on a tenth.
fn record(i: u64, n: u64, end_ms: u64) -> RequestRecord {
    let span = SPAN_DAYS * DAY_MS;
    let at = end_ms - span + span * i / n;
    let model = [
        "gpt-4o",
        "gpt-4o-mini",
        "claude-sonnet",
        "claude-haiku",
        "gemini-pro",
        "gemini-flash",
        "llama-70b",
        "mistral-large",
    ][(i % 8) as usize];
    let status = match i % 100 {
        0 => 429,
        1 => 502,
        2 => 400,
        _ => 200,
    };
    let mut meta = RecordMeta::default();
    let d = meta.detail_mut();
    d.key_id = Some(Arc::from(format!("key_{:02}", i % 50)));
    d.team_id = Some(Arc::from(format!("team_{}", i % 5)));
    if status != 200 {
        d.error = Some(Cow::Borrowed("upstream_error"));
    }
    let tags = (i % 10 == 0).then(|| http::HeaderValue::from_static("env=prod,feature=search"));
    meta.client = Some(Arc::new(ClientMeta {
        ip: Some("10.1.2.3".parse().unwrap()),
        user_agent: Some(http::HeaderValue::from_static("OpenAI/Python 1.99.0")),
        tags,
    }));
    RequestRecord {
        finished_at: UNIX_EPOCH + Duration::from_millis(at),
        request_id: http::HeaderValue::from_str(&format!("req-{i:08}")).unwrap(),
        endpoint: "chat/completions",
        model: Arc::from(model),
        target: Arc::from(format!("up/{model}")),
        status,
        stream: i % 2 == 0,
        usage: (status == 200).then_some(Usage {
            input: 200 + i % 1000,
            output: 50 + i % 400,
            ..Usage::default()
        }),
        cost_usd: (status == 200).then_some(0.0001 + (i % 7) as f64 * 0.00003),
        duration: Duration::from_millis(100 + (i * 7919) % 5000),
        overhead: Duration::from_micros(20 + i % 30),
        ttfb_us: (80_000 + (i * 31) % 900_000) as u32,
        ttft_us: if i % 2 == 0 {
            (120_000 + (i * 17) % 1_500_000) as u32
        } else {
            0
        },
        client_cancelled: false,
        meta,
    }
}

struct Timing {
    name: &'static str,
    p50_ms: f64,
    p99_ms: f64,
    rows: usize,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn time<F, Fut>(name: &'static str, mut f: F) -> Timing
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let rows = f().await; // warm
    let mut ms = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        std::hint::black_box(f().await);
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Timing {
        name,
        p50_ms: percentile(&ms, 0.5),
        p99_ms: percentile(&ms, 0.99),
        rows,
    }
}

async fn bench(
    label: &str,
    url: StoreUrl,
    n: u64,
    file: Option<&std::path::Path>,
) -> serde_json::Value {
    let db = SqlLog::open(&url).await.expect("open the store");
    let end = now_ms();
    let t = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..n {
        batch.push(record(i, n, end));
        if batch.len() == BATCH || i + 1 == n {
            db.insert(&batch).await.expect("insert");
            batch.clear();
        }
    }
    let insert_s = t.elapsed().as_secs_f64();
    let rate = n as f64 / insert_s;
    let bytes = match file {
        Some(path) => {
            // What the file holds once the WAL is folded back in.
            db.prune(0, None).await.expect("checkpoint");
            std::fs::metadata(path).map(|m| m.len()).ok()
        }
        None => None,
    };
    println!(
        "{label}: {n} records inserted in {insert_s:.1} s = {rate:.0} records/s (batches of {BATCH}, with rollups){}",
        bytes.map_or(String::new(), |b| format!(
            "; file {:.0} MB = {:.0} MB per million",
            b as f64 / 1e6,
            b as f64 / 1e6 * 1e6 / n as f64
        ))
    );
    let deep = end - 20 * DAY_MS;
    let week = StatsQuery {
        group_by: Dimension::Model,
        granularity: Granularity::Day,
        from_ms: (end - 7 * DAY_MS) - (end - 7 * DAY_MS) % DAY_MS,
        to_ms: end.div_ceil(DAY_MS) * DAY_MS,
    };
    let week_hourly = StatsQuery {
        granularity: Granularity::Hour,
        from_ms: (end - 7 * DAY_MS) - (end - 7 * DAY_MS) % 3_600_000,
        to_ms: end.div_ceil(3_600_000) * 3_600_000,
        ..week.clone()
    };
    let week_by_key = StatsQuery {
        group_by: Dimension::Key,
        ..week.clone()
    };
    let page = |q: LogQuery| {
        let db = db.clone();
        move || {
            let db = db.clone();
            let q = q.clone();
            async move { db.query(&q).await.expect("query").records.len() }
        }
    };
    let stats = |q: StatsQuery| {
        let db = db.clone();
        move || {
            let db = db.clone();
            let q = q.clone();
            async move { db.stats(&q).await.expect("stats").len() }
        }
    };
    let timings = vec![
        time(
            "newest page (50)",
            page(LogQuery {
                limit: 50,
                ..Default::default()
            }),
        )
        .await,
        time(
            "model page 20 days back",
            page(LogQuery {
                limit: 50,
                model: Some("claude-haiku".into()),
                to_ms: Some(deep),
                ..Default::default()
            }),
        )
        .await,
        time(
            "key + errors 20 days back",
            page(LogQuery {
                limit: 50,
                key: Some("key_01".into()),
                errors: true,
                to_ms: Some(deep),
                ..Default::default()
            }),
        )
        .await,
        time(
            "4xx, tag, 20 days back",
            page(LogQuery {
                limit: 50,
                status: StatusFilter::parse("4xx"),
                tag: Some(("env".into(), Some("prod".into()))),
                to_ms: Some(deep),
                ..Default::default()
            }),
        )
        .await,
        time("one record by id", {
            let db = db.clone();
            let id = format!("req-{:08}", n / 2);
            move || {
                let db = db.clone();
                let id = id.clone();
                async move { usize::from(db.get(&id).await.expect("get").is_some()) }
            }
        })
        .await,
        time("stats 7 days by model, daily", stats(week)).await,
        time("stats 7 days by model, hourly", stats(week_hourly)).await,
        time("stats 7 days by key, daily", stats(week_by_key)).await,
    ];
    println!(
        "{:<32} {:>9} {:>9} {:>6}",
        "query", "p50 ms", "p99 ms", "rows"
    );
    for t in &timings {
        println!(
            "{:<32} {:>9.2} {:>9.2} {:>6}",
            t.name, t.p50_ms, t.p99_ms, t.rows
        );
    }
    db.close().await;
    serde_json::json!({
        "store": label,
        "records": n,
        "insert_records_per_s": rate.round(),
        "file_bytes": bytes,
        "queries": timings.iter().map(|t| serde_json::json!({
            "query": t.name, "p50_ms": t.p50_ms, "p99_ms": t.p99_ms, "rows": t.rows,
        })).collect::<Vec<_>>(),
    })
}

fn main() {
    let n: u64 = std::env::var("FERROGATE_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let args: Vec<String> = std::env::args().collect();
    let json_out = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1).cloned());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.db");
        let mut results =
            vec![bench("sqlite", StoreUrl::Sqlite(path.clone()), n, Some(&path)).await];
        if let Ok(pg) = std::env::var("FERROGATE_BENCH_PG") {
            results.push(bench("postgres", StoreUrl::Postgres(pg), n, None).await);
        }
        if let Some(out) = json_out {
            std::fs::write(&out, serde_json::to_string_pretty(&results).unwrap()).unwrap();
        }
    });
}
