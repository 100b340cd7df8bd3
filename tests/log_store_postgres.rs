//! The request-log store suite (log_store_suite/suite.rs) against PostgreSQL: each test starts a
//! server of its own (Debian's `postgresql`) on a free loopback port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use ferrogate::config::governance::StoreUrl;

struct Store {
    url: StoreUrl,
    _server: common::stores::Postgres,
}

async fn new_store() -> Store {
    let server = tokio::task::spawn_blocking(common::stores::Postgres::start)
        .await
        .expect("start PostgreSQL");
    Store {
        url: StoreUrl::Postgres(server.url()),
        _server: server,
    }
}

include!("log_store_suite/suite.rs");

/// The writer against a server that stops and comes back: requests' records wait (bounded,
/// the rest dropped and counted), `status` says the store is down, and once it is back every
/// waiting record is written. Deadlines are generous: CI starts a PostgreSQL server per test,
/// all at once, and a connection can then take seconds (a 10 s bound failed once so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_goes_down_is_retried_and_what_overflows_is_counted() {
    use ferrogate::config::logs::{LogStoreUrl, LogsConfig};
    use ferrogate::logs::Logs;
    use ferrogate::telemetry::request_log::RequestLog;
    use std::sync::atomic::{AtomicU64, Ordering};

    let store = new_store().await;
    let dropped = Arc::new(AtomicU64::new(0));
    let queue = RequestLog::new(
        1_024,
        metrics::Counter::from_arc(Arc::clone(&dropped)),
        false,
    );
    let cfg = LogsConfig {
        store: LogStoreUrl::Db(store.url.clone()),
        ..LogsConfig::default()
    };
    let logs = Logs::open(&cfg, Arc::clone(&queue)).await.unwrap();
    logs.set_max_backlog(30);
    logs.start();
    let count = |logs: Arc<Logs>| async move {
        let q = LogQuery {
            limit: 1_000,
            ..Default::default()
        };
        logs.query(&q).await.map(|p| p.records.len())
    };
    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for i in 0..10 {
        queue.push(record(i));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while count(Arc::clone(&logs)).await.unwrap() < 10 {
        assert!(tokio::time::Instant::now() < deadline, "the first records");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    store._server.pause();
    for i in 10..30 {
        queue.push(record(i));
    }
    until("the store seen down", || !logs.status().up).await;
    let status = logs.status();
    assert_eq!(status.backlog, 20, "{status:?}");
    assert!(status.last_error.is_some());
    // Past the backlog's bound: dropped and counted, never blocking.
    for i in 30..45 {
        queue.push(record(i));
    }
    until("the overflow counted", || {
        dropped.load(Ordering::Relaxed) == 15
    })
    .await;

    store._server.resume();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(30) = count(Arc::clone(&logs)).await {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "records after recovery"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = logs.status();
    assert!(status.up && status.backlog == 0, "{status:?}");
    assert_eq!(dropped.load(Ordering::Relaxed), 15);
}

/// A server that is down when the gateway starts: opening the store fails with an error that
/// names it (the start stops, as with the governance store), and once it answers it opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_down_at_start_is_a_clear_error() {
    use ferrogate::config::logs::{LogStoreUrl, LogsConfig};
    use ferrogate::logs::Logs;
    use ferrogate::telemetry::request_log::RequestLog;

    let store = new_store().await;
    store._server.pause();
    let queue = RequestLog::new(1_024, metrics::Counter::noop(), false);
    let cfg = LogsConfig {
        store: LogStoreUrl::Db(store.url.clone()),
        ..LogsConfig::default()
    };
    let err = Logs::open(&cfg, Arc::clone(&queue))
        .await
        .err()
        .expect("the store is down");
    assert!(err.to_string().contains("request-log store"), "{err}");
    store._server.resume();
    let logs = Logs::open(&cfg, queue).await.expect("the store is up");
    assert!(logs.status().up);
}
