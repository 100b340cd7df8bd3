//! The `logs:` section: defaults, each store, and settings that do not apply to the store.

use super::lines;
use crate::config::governance::StoreUrl;
use crate::config::logs::*;
use crate::config::*;

fn parse(yaml: &str) -> Result<Config, Vec<String>> {
    parse_str(yaml, &|_| None).map_err(|e| lines(&e))
}

const GOVERNED: &str = "governance: { master_key: m, store: \"sqlite:gov.db\" }\n";

#[test]
fn without_a_section_records_stay_in_memory_or_go_to_the_governance_store() {
    let c = parse("").unwrap();
    assert_eq!(c.logs, LogsConfig::default());
    assert_eq!(
        c.logs.store,
        LogStoreUrl::Memory {
            capacity: DEFAULT_MEMORY_CAPACITY
        }
    );
    let c = parse(GOVERNED).unwrap();
    assert_eq!(
        c.logs.store,
        LogStoreUrl::Db(StoreUrl::Sqlite("gov.db".into()))
    );
    assert_eq!(c.logs.retention, DEFAULT_RETENTION);
    // A section without a store keeps that default.
    let c = parse(&format!("{GOVERNED}logs: {{ retention: 3d }}\n")).unwrap();
    assert_eq!(
        c.logs.store,
        LogStoreUrl::Db(StoreUrl::Sqlite("gov.db".into()))
    );
    assert_eq!(c.logs.retention.as_secs(), 3 * 86_400);
    // An in-memory governance store: the ring, not an in-memory database that only grows.
    let c = parse("governance: { master_key: m, store: \"sqlite::memory:\" }\n").unwrap();
    assert!(matches!(c.logs.store, LogStoreUrl::Memory { .. }));
}

#[test]
fn each_store_and_the_file_sink_decode() {
    let c = parse(
        "logs:\n  store: sqlite:logs.db\n  retention: 12h\n  max_size: 2GiB\n  file: { path: r.jsonl, max_size: 10MB, keep: 3 }\n",
    )
    .unwrap();
    assert_eq!(
        c.logs.store,
        LogStoreUrl::Db(StoreUrl::Sqlite("logs.db".into()))
    );
    assert_eq!(c.logs.max_size, Some(2 << 30));
    assert_eq!(
        c.logs.file,
        Some(FileSinkConfig {
            path: "r.jsonl".into(),
            max_size: 10_000_000,
            keep: 3
        })
    );
    let c = parse("logs: { store: \"postgres://u@h/db\" }\n").unwrap();
    assert!(matches!(
        c.logs.store,
        LogStoreUrl::Db(StoreUrl::Postgres(_))
    ));
    // `memory` even with governance on.
    let c = parse(&format!(
        "{GOVERNED}logs: {{ store: memory, capacity: 500 }}\n"
    ))
    .unwrap();
    assert_eq!(c.logs.store, LogStoreUrl::Memory { capacity: 500 });
}

#[test]
fn settings_of_another_store_and_bad_values_are_refused() {
    let cases = [
        (
            "logs: { store: memory, retention: 7d }\n",
            "logs.retention: applies to a database store only",
        ),
        (
            "logs: { store: \"sqlite:x.db\", capacity: 5 }\n",
            "logs.capacity: applies to the memory store only",
        ),
        (
            "logs: { store: \"postgres://h/db\", max_size: 1GB }\n",
            "logs.max_size: applies to an SQLite file store only",
        ),
        (
            "logs: { store: \"sqlite:x.db\", retention: 5s }\n",
            "logs.retention: must be at least a minute",
        ),
        (
            "logs: { store: mysql://x }\n",
            "logs.store: expected `sqlite:PATH`",
        ),
        (
            "logs: { file: { keep: 2 } }\n",
            "logs.file.path: is required",
        ),
        ("logs: { content: on }\n", "logs.content: unknown field"),
        (
            "logs: { capacity: 1000000 }\n",
            "logs.capacity: must be at most 100000",
        ),
    ];
    for (yaml, want) in cases {
        let got = parse(yaml).err().unwrap_or_default();
        assert!(
            got.iter().any(|p| p.starts_with(want)),
            "{yaml}: {got:?} (want {want})"
        );
    }
}
