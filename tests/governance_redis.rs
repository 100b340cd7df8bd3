//! The governance suite (governance_suite/suite.rs) with limits and budgets in Redis and keys,
//! spend and audit in PostgreSQL (a server of each for every test), then what only a shared
//! setup shows: two instances enforcing one budget and one set of limits, keys changed on one
//! taking effect on the other within a second, and the Redis round trips of a request counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::stores::{Postgres, Redis};

struct Store {
    url: String,
    extra: String,
    redis: Redis,
    _pg: Postgres,
}

async fn new_store() -> Store {
    let (pg, redis) = tokio::task::spawn_blocking(|| (Postgres::start(), Redis::start()))
        .await
        .expect("start PostgreSQL and Redis");
    Store {
        url: pg.url(),
        extra: format!("  redis: \"{}\"\n", redis.url()),
        redis,
        _pg: pg,
    }
}

include!("governance_suite/suite.rs");

/// Redis round trips an instance made before upstream calls.
async fn trips(gw: &Gateway) -> f64 {
    gw.metric_opt(
        "ferrogate_governance_redis_round_trips_total",
        &[("phase", "admit")],
    )
    .await
    .unwrap_or(0.0)
}

/// Two gateways on one PostgreSQL and one Redis, with a slow priced mock provider.
async fn two_instances(store: &Store) -> (Gateway, Gateway) {
    let up = MockUpstream::start().await;
    let mut cfg = Cfg::new(&up.base_url());
    cfg.extra_providers =
        "  slow: { kind: mock, mock: { chunks: 1, latency_ms: 200, reply_words: 10 } }\n".into();
    let yaml = format!(
        "{}pricing:\n  \"slow/*\": {{ input_per_mtok: 1000, output_per_mtok: 2000 }}\n{}  flush_interval_ms: 200\n",
        cfg.yaml(),
        governance(store)
    );
    let a = Gateway::start(&yaml).await;
    let b = Gateway::start(&yaml).await;
    (a, b)
}

#[tokio::test]
async fn two_instances_enforce_one_budget_exactly() {
    let store = new_store().await;
    let (a, b) = two_instances(&store).await;
    let (id, key) = create_key(
        &a,
        json!({"name": "shared", "budget": {"usd": 0.22, "period": "1d"}}),
    )
    .await;
    // Instance b sees the key within its sync interval (1 s).
    let body = json!({"model": "slow/m", "max_tokens": 10, "messages": [{"role": "user", "content": "Say hello"}]}).to_string();
    let mut seen = None;
    for _ in 0..30 {
        let r = post_with(
            &b.chat_url(),
            body.clone(),
            &[("authorization", &format!("Bearer {key}"))],
        )
        .await;
        if r.status != 401 {
            seen = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let probe = seen.expect("instance b never saw the key");
    assert_eq!(probe.status, 200, "{}", probe.text());
    let reservation_usd = ((body.len() as f64 / 4.0).ceil() + 10.0) * 2000.0 / 1e6;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let url = if i % 2 == 0 {
            a.chat_url()
        } else {
            b.chat_url()
        };
        let (body, auth) = (body.clone(), format!("Bearer {key}"));
        tasks.push(tokio::spawn(async move {
            send(
                client()
                    .post(&url)
                    .header("authorization", auth)
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await
            .status
        }));
    }
    let mut statuses = std::collections::BTreeMap::new();
    for t in tasks {
        *statuses.entry(t.await.unwrap()).or_insert(0u32) += 1;
    }
    // The probe above was served too (it found the key on b).
    let served = statuses.get(&200).copied().unwrap_or(0) + 1;
    let refused = statuses.get(&402).copied().unwrap_or(0);
    assert_eq!(served - 1 + refused, 200, "{statuses:?}");
    let spent = served as f64 * 0.022;
    assert!(
        spent <= 0.22 + reservation_usd + 1e-9,
        "two instances overspent: {spent} for {served} served"
    );
    assert!(served >= 5, "{statuses:?}");
    // Both instances flush every 200 ms; then the store holds every request exactly.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let report = admin(&a, "GET", "/admin/v1/spend?group_by=key", None)
        .await
        .json();
    let row = report["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == id.as_str())
        .cloned()
        .expect("a spend row");
    assert_eq!(row["requests"], served, "{report} {statuses:?}");
    assert_eq!(
        row["usd"].as_f64().unwrap(),
        (served as u64 * 2_200_000) as f64 / 1e8
    );
    // The budget's window in Redis holds the same, once the corrections are in.
    let v = admin(&b, "GET", &format!("/admin/v1/keys/{id}"), None)
        .await
        .json();
    assert!(
        (v["spend"]["usd"].as_f64().unwrap() - spent).abs() < 1e-9,
        "{v}"
    );
}

#[tokio::test]
async fn limits_and_revocations_are_shared_and_each_request_takes_one_round_trip() {
    let store = new_store().await;
    let (a, b) = two_instances(&store).await;
    let (id, key) = create_key(&a, json!({"name": "rl", "limits": {"rpm": 4}})).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = store.redis.command_calls();
    let (a0, b0) = (trips(&a).await, trips(&b).await);
    let mut codes = Vec::new();
    for gw in [&a, &b, &a, &b, &a, &b] {
        codes.push(chat_as(gw, &key, "fake/m").await.status);
    }
    assert_eq!(codes, [200, 200, 200, 200, 429, 429]);
    // One round trip per request before its upstream call, counted by each instance…
    assert_eq!(trips(&a).await - a0 + trips(&b).await - b0, 6.0);
    // …and by Redis: one admission script call each, plus one settle script call for each of
    // the four admitted (sent after their answers, each deleting its admission's marker once).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = store.redis.command_calls();
    let calls = |name: &str| after.get(name).unwrap_or(&0) - before.get(name).unwrap_or(&0);
    assert_eq!(calls("evalsha"), 6 + 4, "{after:?}");
    assert_eq!(calls("del"), 4, "{after:?}");
    assert_eq!(calls("eval") + calls("script|load"), 0, "{after:?}");
    // Revoked on a, refused on b within a second.
    admin(&a, "DELETE", &format!("/admin/v1/keys/{id}"), None).await;
    let mut refused = false;
    for _ in 0..30 {
        if chat_as(&b, &key, "fake/m").await.status == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "b still serves a revoked key");
}
