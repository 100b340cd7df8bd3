//! The request log's query API against the real binary: every request answered is kept in
//! memory (zero config) and served newest first by `GET /admin/v1/logs` with filters and
//! keyset pagination, one record by `GET /admin/v1/logs/{request_id}`; behind the master key
//! once governance is on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// GET with optional bearer token.
async fn admin_get(gw: &Gateway, path_and_query: &str, bearer: Option<&str>) -> Reply {
    let mut req = client().get(gw.url(path_and_query));
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    send(req).await
}

/// Polls the log until it holds `n` records (the writer stores batches every 50 ms).
async fn wait_records(gw: &Gateway, n: usize, bearer: Option<&str>) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        let r = admin_get(gw, "/admin/v1/logs?limit=1000", bearer).await;
        assert_eq!(r.status, 200, "{}", r.text());
        last = r.json();
        if last["data"].as_array().map_or(0, Vec::len) >= n {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {n} records: {last}");
}

/// The request ids of the page `query` (after `/admin/v1/logs?`) returns.
async fn page_ids(gw: &Gateway, query: &str, bearer: Option<&str>) -> Vec<String> {
    let r = admin_get(gw, &format!("/admin/v1/logs?{query}"), bearer).await;
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    ids(&r.json())
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn requests_are_listed_newest_first_filtered_and_paged() {
    let (up, gw) = setup().await;
    for i in 0..5 {
        if i == 2 {
            up.push(overloaded_503());
        }
        let r = post_with(
            &gw.chat_url(),
            chat_body("gpt-4o-mini", None),
            &[("x-request-id", &format!("log-{i}"))],
        )
        .await;
        assert_eq!(r.status, if i == 2 { 503 } else { 200 }, "{}", r.text());
    }
    let all = wait_records(&gw, 5, None).await;
    assert_eq!(ids(&all), ["log-4", "log-3", "log-2", "log-1", "log-0"]);
    let first = &all["data"][0];
    assert_eq!(first["model"], "gpt-4o-mini");
    assert_eq!(first["target"], "up/upstream-model-x");
    assert_eq!(first["status"], 200);
    assert!(first["prompt_tokens"].as_u64().is_some(), "{first}");

    // Pages of two: no repeats, no gaps, the last one says so.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = admin_get(&gw, &format!("/admin/v1/logs?limit=2{cursor}"), None).await;
        let page = r.json();
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ids(&all));

    let failed = page_ids(&gw, "status=5xx", None).await;
    assert_eq!(failed, ["log-2"]);
    let failed = page_ids(&gw, "error=true", None).await;
    assert_eq!(failed, ["log-2"]);
    let none = page_ids(&gw, "model=gpt-4o", None).await;
    assert!(none.is_empty());

    let one = admin_get(&gw, "/admin/v1/logs/log-3", None).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["request_id"], "log-3");
    let missing = admin_get(&gw, "/admin/v1/logs/nope", None).await;
    assert_eq!(missing.status, 404);
    let bad = admin_get(&gw, "/admin/v1/logs?colour=red", None).await;
    assert_openai_error(&bad, 400);
    assert!(bad.text().contains("colour"), "{}", bad.text());
    let post = send(client().post(gw.url("/admin/v1/logs"))).await;
    assert_eq!(post.status, 405);
}

#[tokio::test]
async fn records_are_kept_with_the_stderr_lines_off() {
    let up = MockUpstream::start().await;
    let yaml = Cfg::new(&up.base_url()).yaml().replacen(
        "drain_timeout_ms: 30000 }",
        "drain_timeout_ms: 30000, request_log: false }",
        1,
    );
    assert!(yaml.contains("request_log: false"));
    let gw = Gateway::start(&yaml).await;
    let r = post_with(
        &gw.chat_url(),
        chat_body("gpt-4o-mini", None),
        &[("x-request-id", "quiet-1")],
    )
    .await;
    assert_eq!(r.status, 200);
    let all = wait_records(&gw, 1, None).await;
    assert_eq!(ids(&all), ["quiet-1"]);
    assert!(
        !gw.stderr_lines().iter().any(|l| l.contains("quiet-1")),
        "a request line on stderr although request_log is off"
    );
}

/// The record of request `id`, once the writer stored it.
async fn record(gw: &Gateway, id: &str, bearer: Option<&str>) -> Value {
    for _ in 0..100 {
        let r = admin_get(gw, &format!("/admin/v1/logs/{id}"), bearer).await;
        if r.status == 200 {
            return r.json();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no record of {id}");
}

#[tokio::test]
async fn records_say_who_asked_how_it_went_and_refusals_are_recorded_too() {
    let (up, gw) = setup_with(|c| {
        c.model(
            "  - name: retried\n    targets: [{ provider: up }]\n    retry: { attempts: 2, backoff_initial_ms: 1, backoff_max_ms: 1 }\n",
        )
    })
    .await;
    let ok = post_with(
        &gw.chat_url(),
        chat_body("gpt-4o-mini", None),
        &[
            ("x-request-id", "who-1"),
            ("user-agent", "OpenAI/Python 1.99.0"),
            ("x-ferrogate-tags", "team=search, env=prod"),
        ],
    )
    .await;
    assert_eq!(ok.status, 200);
    let r = record(&gw, "who-1", None).await;
    assert_eq!(r["user_agent"], "OpenAI/Python 1.99.0");
    assert_eq!(r["client_ip"], "127.0.0.1");
    assert_eq!(
        r["tags"],
        serde_json::json!({"team": "search", "env": "prod"})
    );
    assert!(
        r.get("attempts").is_none(),
        "one attempt is not written: {r}"
    );
    assert!(r.get("error").is_none(), "{r}");

    // A streamed answer is recorded when its stream ends, with the usage it carried.
    up.push(Behavior::sse(fixture(STREAM_TEXT)));
    let streamed = post_with(
        &gw.chat_url(),
        chat_body("gpt-4o-mini", Some(true)),
        &[("x-request-id", "who-s")],
    )
    .await;
    assert_eq!(streamed.status, 200, "{}", streamed.text());
    let r = record(&gw, "who-s", None).await;
    assert_eq!(
        (r["stream"].as_bool(), r["status"].as_u64()),
        (Some(true), Some(200))
    );
    assert_eq!(r["usage"], "reported", "{r}");
    assert!(
        r["completion_tokens"].as_u64().is_some_and(|n| n > 0),
        "{r}"
    );
    // Its upstream's time to the head; a plain pass-through stream's bytes are not read, so
    // it has no time to first token.
    assert!(
        r["ttfb_us"]
            .as_u64()
            .is_some_and(|t| t > 0 && t <= r["duration_us"].as_u64().unwrap()),
        "{r}"
    );
    assert!(r.get("ttft_us").is_none(), "{r}");
    // A translated stream (an Anthropic client, an OpenAI upstream) is read: the client's time
    // to the first token, after the upstream's head, within the whole request.
    up.push(Behavior::sse(fixture(STREAM_TEXT)));
    let translated = post_with(
        &gw.url("/v1/messages"),
        br#"{"model":"gpt-4o-mini","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
        &[("x-request-id", "who-t")],
    )
    .await;
    assert_eq!(translated.status, 200, "{}", translated.text());
    let r = record(&gw, "who-t", None).await;
    let (ttfb, ttft, total) = (
        r["ttfb_us"].as_u64().unwrap(),
        r["ttft_us"].as_u64().unwrap(),
        r["duration_us"].as_u64().unwrap(),
    );
    assert!(0 < ttfb && ttfb <= ttft && ttft <= total, "{r}");
    assert_eq!(r["endpoint"], "messages");

    // A retried request: two attempts.
    up.push(overloaded_503());
    let retried = post_with(
        &gw.chat_url(),
        chat_body("retried", None),
        &[("x-request-id", "who-2")],
    )
    .await;
    assert_eq!(retried.status, 200, "{}", retried.text());
    assert_eq!(record(&gw, "who-2", None).await["attempts"], 2);

    // Refused before routing: unknown model, a body that is not JSON. Each has its record,
    // its status and its error code.
    let unknown = post_with(
        &gw.chat_url(),
        chat_body("no-such-model", None),
        &[("x-request-id", "who-3")],
    )
    .await;
    assert_eq!(unknown.status, 404);
    let r = record(&gw, "who-3", None).await;
    assert_eq!(
        (r["status"].as_u64(), r["error"].as_str()),
        (Some(404), Some("model_not_found"))
    );
    assert_eq!(r["attempts"], 0);
    let broken = post_with(&gw.chat_url(), "{not json", &[("x-request-id", "who-4")]).await;
    assert_eq!(broken.status, 400);
    assert_eq!(record(&gw, "who-4", None).await["error"], "invalid_request");

    // Filters over the new columns.
    let by_tag = page_ids(&gw, "tag=team=search", None).await;
    assert_eq!(by_tag, ["who-1"]);
    let by_code = page_ids(&gw, "error=model_not_found", None).await;
    assert_eq!(by_code, ["who-3"]);
}

const MASTER: &str = "logs-master-key-0123456789";
const KEY: &str = "fg-logs0test0key0000000000000000";

async fn governed(keys: &str) -> (MockUpstream, Gateway) {
    let up = MockUpstream::start().await;
    let yaml = format!(
        "{}governance:\n  master_key: \"{MASTER}\"\n  store: \"sqlite::memory:\"\n  keys:\n{keys}",
        Cfg::new(&up.base_url()).yaml()
    );
    let gw = Gateway::start(&yaml).await;
    (up, gw)
}

#[tokio::test]
async fn governed_records_carry_the_key_and_its_refusals() {
    let (_up, gw) = governed(&format!(
        "    - {{ name: app, value: \"{KEY}\", limits: {{ rpm: 1 }} }}\n"
    ))
    .await;
    let bearer = format!("Bearer {KEY}");
    for (id, status) in [("gk-1", 200), ("gk-2", 429)] {
        let r = post_with(
            &gw.chat_url(),
            chat_body("gpt-4o-mini", None),
            &[("x-request-id", id), ("authorization", &bearer)],
        )
        .await;
        assert_eq!(r.status, status, "{}", r.text());
    }
    let bad = post_with(
        &gw.chat_url(),
        chat_body("gpt-4o-mini", None),
        &[
            ("x-request-id", "gk-3"),
            ("authorization", "Bearer fg-unknown0key000000000000000"),
        ],
    )
    .await;
    assert_eq!(bad.status, 401);
    let served = record(&gw, "gk-1", Some(MASTER)).await;
    let key_id = served["key_id"].as_str().expect("key id").to_owned();
    let limited = record(&gw, "gk-2", Some(MASTER)).await;
    assert_eq!(limited["key_id"], key_id.as_str());
    assert_eq!(limited["error"], "rate_limit_exceeded");
    let unknown = record(&gw, "gk-3", Some(MASTER)).await;
    assert_eq!(unknown["error"], "invalid_api_key");
    assert!(unknown.get("key_id").is_none());
    let mine = page_ids(&gw, &format!("key={key_id}"), Some(MASTER)).await;
    assert_eq!(mine, ["gk-2", "gk-1"]);
    let everything = admin_get(&gw, "/admin/v1/logs", Some(MASTER)).await.text();
    assert!(!everything.contains(KEY) && !everything.contains("fg-unknown"));
}

#[tokio::test]
async fn with_governance_on_the_log_needs_the_master_key() {
    let (_up, gw) = governed(&format!("    - {{ name: app, value: \"{KEY}\" }}\n")).await;
    let r = post_with(
        &gw.chat_url(),
        chat_body("gpt-4o-mini", None),
        &[
            ("x-request-id", "gov-1"),
            ("authorization", &format!("Bearer {KEY}")),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for bearer in [None, Some(KEY), Some("wrong-master-key")] {
        let r = admin_get(&gw, "/admin/v1/logs", bearer).await;
        assert_openai_error(&r, 401);
    }
    let all = wait_records(&gw, 1, Some(MASTER)).await;
    assert_eq!(ids(&all), ["gov-1"]);
    // The virtual key is nowhere in the record.
    assert!(!all.to_string().contains(KEY));
}

/// `logs:` with an SQLite file and a JSON Lines file: records are queried from the file, are
/// all there after a SIGTERM right behind the last answer, and outlive the process.
#[tokio::test]
async fn records_kept_in_sqlite_outlive_a_restart_and_go_to_the_jsonl_file() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("logs.db");
    let jsonl = dir.path().join("requests.jsonl");
    let yaml = format!(
        "{}logs:\n  store: \"sqlite:{}\"\n  retention: 7d\n  file: {{ path: \"{}\" }}\n",
        Cfg::new(&up.base_url()).yaml(),
        db.display(),
        jsonl.display()
    );
    let mut gw = Gateway::start(&yaml).await;
    for i in 0..20 {
        let r = post_with(
            &gw.chat_url(),
            chat_body("gpt-4o-mini", None),
            &[
                ("x-request-id", &format!("db-{i}")),
                ("x-ferrogate-tags", "env=test"),
            ],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // SIGTERM at once: the writer has had no time of its own; the shutdown flush writes them.
    gw.sigterm();
    assert!(gw.wait_exit(Duration::from_secs(15)).await.is_some());
    let lines = std::fs::read_to_string(&jsonl).unwrap();
    let lines: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 20);
    assert_eq!(lines[0]["request_id"], "db-0");
    assert_eq!(lines[0]["tags"]["env"], "test");
    assert_eq!(lines[19]["request_id"], "db-19");

    let gw = Gateway::start(&yaml).await;
    let page = admin_get(&gw, "/admin/v1/logs?limit=5&tag=env=test", None).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let page = page.json();
    assert_eq!(ids(&page), ["db-19", "db-18", "db-17", "db-16", "db-15"]);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let rest = page_ids(&gw, &format!("limit=100&cursor={cursor}"), None).await;
    assert_eq!(rest.len(), 15);
    assert_eq!(rest.last().map(String::as_str), Some("db-0"));
    let one = record(&gw, "db-7", None).await;
    assert_eq!(one["model"], "gpt-4o-mini");
    assert_eq!(one["client_ip"], "127.0.0.1");
    let ready = admin_get(&gw, "/ready", None).await;
    assert_eq!(ready.json()["request_log"]["store"], "sqlite");
    assert!(ready.json()["request_log"].get("last_error").is_none());
    // The stats rollups the writer gathers were written by the shutdown's flush.
    let stats = admin_get(
        &gw,
        "/admin/v1/stats?group_by=model&granularity=minute",
        None,
    )
    .await;
    assert_eq!(stats.status, 200, "{}", stats.text());
    let requests: u64 = stats.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(requests, 20, "{}", stats.text());
}

#[tokio::test]
async fn stats_group_requests_by_model_and_status_per_period() {
    let (up, gw) = setup().await;
    for i in 0..4 {
        if i == 3 {
            up.push(overloaded_503());
        }
        let r = post_with(
            &gw.chat_url(),
            chat_body("gpt-4o-mini", None),
            &[("x-request-id", &format!("st-{i}"))],
        )
        .await;
        assert_eq!(r.status, if i == 3 { 503 } else { 200 });
    }
    wait_records(&gw, 4, None).await;
    let r = admin_get(
        &gw,
        "/admin/v1/stats?group_by=model&granularity=minute",
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["group_by"], "model");
    let rows = v["data"].as_array().unwrap();
    let requests: u64 = rows.iter().map(|r| r["requests"].as_u64().unwrap()).sum();
    let errors: u64 = rows.iter().map(|r| r["errors"].as_u64().unwrap()).sum();
    assert_eq!((requests, errors), (4, 1), "{v}");
    let row = &rows[0];
    assert_eq!(row["group"], "gpt-4o-mini");
    assert!(
        row["p50_ms"].as_f64().is_some() && row["output_tokens"].as_u64() > Some(0),
        "{row}"
    );
    assert_eq!(row["period"].as_u64().unwrap() % 60_000, 0);
    let by_status = admin_get(&gw, "/admin/v1/stats?group_by=status&granularity=day", None).await;
    let groups: Vec<String> = by_status.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["group"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(groups, ["200", "503"]);
    for bad in [
        "group_by=colour",
        "granularity=week",
        "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
        "granularity=minute&from=0",
        "x=1",
    ] {
        let r = admin_get(&gw, &format!("/admin/v1/stats?{bad}"), None).await;
        assert_openai_error(&r, 400);
    }
}

/// The live tail: a record reaches an open stream within a second of its response, filtered
/// as asked; `ferrogate logs tail` prints it, `ferrogate logs show` finds it.
#[tokio::test]
async fn the_live_tail_delivers_records_as_they_are_written() {
    use futures_util::StreamExt;
    let (up, mut gw) = setup().await;
    let resp = client()
        .get(gw.url("/admin/v1/logs/stream?error=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut events = resp.bytes_stream();
    // The CLI tail, from another process, unfiltered.
    let mut tail = std::process::Command::new(common::gateway::BIN)
        .args(["logs", "tail", "--json", "--url", &gw.url("")])
        .env_remove("FERROGATE_MASTER_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Give both tails time to subscribe before the requests.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ok = post_with(
        &gw.chat_url(),
        chat_body("gpt-4o-mini", None),
        &[("x-request-id", "live-ok")],
    )
    .await;
    assert_eq!(ok.status, 200);
    up.push(overloaded_503());
    let failed = post_with(
        &gw.chat_url(),
        chat_body("gpt-4o-mini", None),
        &[("x-request-id", "live-503")],
    )
    .await;
    assert_eq!(failed.status, 503);
    let answered = tokio::time::Instant::now();
    let mut text = String::new();
    while !text.contains("\"live-503\"") {
        let chunk = tokio::time::timeout_at(answered + Duration::from_secs(1), events.next())
            .await
            .expect("a record within 1 s of the response")
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    // Only failures on this tail.
    assert!(text.contains("event: record\ndata: {"), "{text}");
    assert!(!text.contains("live-ok"), "{text}");

    // The CLI's lines: one JSON record each, both requests.
    let stdout = tail.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            lines.push(line);
            if lines.len() == 2 {
                break;
            }
        }
        lines
    });
    let lines = tokio::time::timeout(Duration::from_secs(5), lines)
        .await
        .expect("the CLI tail printed both records")
        .unwrap();
    let _ = tail.kill();
    let _ = tail.wait();
    let ids: Vec<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["request_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, ["live-ok", "live-503"]);

    let shown = run_cli(&["logs", "show", "live-503", "--url", &gw.url("")]).await;
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let v: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(v["status"], 503);
    let missing = run_cli(&["logs", "show", "nope", "--url", &gw.url("")]).await;
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("404"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    // A cursor makes no sense on a tail.
    let bad = admin_get(&gw, "/admin/v1/logs/stream?cursor=1-1", None).await;
    assert_openai_error(&bad, 400);
    // An open tail does not hold up a graceful shutdown (the drain allows 30 s here).
    let stopping = tokio::time::Instant::now();
    gw.sigterm();
    assert!(gw.wait_exit(Duration::from_secs(10)).await.is_some());
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    drop(events);
}
