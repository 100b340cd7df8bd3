//! The metrics `/metrics` exposes after a known set of requests — names, types and label keys —
//! kept stable by a snapshot (a rename or a new label is a deliberate change of the snapshot),
//! and the shipped Grafana dashboard queries only metrics that exist and are documented.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

/// `name type {label keys}` for every ferrogate_* metric in a Prometheus text exposition;
/// histograms once, by their base name.
fn catalog(text: &str) -> BTreeSet<String> {
    let mut types = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                types.insert(name.to_string(), kind.to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("ferrogate_")) {
        let (series, _) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|b| types.get(*b).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        let mut keys: Vec<&str> = labels
            .split(',')
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
            .filter(|k| *k != "le")
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let kind = types.get(base).map_or("untyped", String::as_str);
        out.insert(format!("{base} {kind} {{{}}}", keys.join(",")));
    }
    out
}

/// A gateway with an SQLite request-log store, after a whole answer, a stream and a failure.
async fn exercised() -> (MockUpstream, Gateway, tempfile::TempDir) {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}logs:\n  store: \"sqlite:{}\"\n",
        Cfg::new(&up.base_url()).yaml(),
        dir.path().join("logs.db").display()
    );
    let gw = Gateway::start(&yaml).await;
    let r = post(&gw.chat_url(), chat_body("gpt-4o-mini", None)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(&gw.chat_url(), chat_body("gpt-4o-mini", Some(true))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    up.push(overloaded_503());
    let r = post(&gw.chat_url(), chat_body("gpt-4o-mini", None)).await;
    assert_eq!(r.status, 503);
    // The records (and the metrics filled from them) are written off the request path.
    gw.wait_metric(
        "ferrogate_request_log_written_total",
        &[],
        3.0,
        Duration::from_secs(10),
    )
    .await;
    (up, gw, dir)
}

#[tokio::test]
async fn metric_names_types_and_labels_are_stable() {
    let (_up, gw, _dir) = exercised().await;
    let text = gw.metrics().await;
    let names: Vec<String> = catalog(&text).into_iter().collect();
    insta::assert_snapshot!(names.join("\n"));
}

#[tokio::test]
async fn the_grafana_dashboard_queries_only_metrics_that_exist_and_are_documented() {
    let (_up, gw, _dir) = exercised().await;
    let text = gw.metrics().await;
    let exposed: BTreeSet<String> = catalog(&text)
        .into_iter()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("config/grafana/ferrogate.json")).unwrap(),
    )
    .unwrap();
    let docs = std::fs::read_to_string(root.join("docs/api.md")).unwrap();
    let mut queried = BTreeSet::new();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    for t in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = t["definition"].as_str() {
            exprs.push(q.to_string());
        }
    }
    assert!(exprs.len() > 15, "{exprs:?}");
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("ferrogate_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| exposed.contains(*b)))
                .map_or(name.clone(), str::to_string);
            queried.insert(base);
        }
    }
    for name in &queried {
        assert!(
            exposed.contains(name),
            "the dashboard queries {name}, which /metrics lacks"
        );
        assert!(
            docs.contains(&format!("`{name}`")),
            "the dashboard queries {name}, which docs/api.md does not document"
        );
    }
    assert!(queried.len() >= 12, "{queried:?}");
}
