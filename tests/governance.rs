//! Governance end to end against the real binary with its embedded SQLite store: virtual keys
//! in every SDK's header, the admin API behind the master key, allowlists (fallbacks
//! included), rate limits with their headers, budgets (402, exact under concurrency), spend and
//! audit, restart persistence, and the key never leaving the gateway. The suite itself is in
//! governance_suite/suite.rs (tests/governance_postgres.rs runs it against PostgreSQL).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

/// A fresh SQLite file in a directory of the test's own.
struct Store {
    url: String,
    extra: String,
    _dir: tempfile::TempDir,
}

async fn new_store() -> Store {
    let dir = tempfile::tempdir().expect("tempdir");
    Store {
        url: format!("sqlite:{}", dir.path().join("gov.db").display()),
        extra: String::new(),
        _dir: dir,
    }
}

include!("governance_suite/suite.rs");

#[tokio::test]
async fn a_governance_section_without_a_master_key_or_with_a_bad_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "governance:\n  store: \"mysql://x\"\n  keys:\n    - { name: a, value: \"sk-123\" }\n    - { name: a, value: \"fg-aaaaaaaaaaaaaaaaaaaaaaaa\", budget: { usd: 1, period: 2d } }\n",
    )
    .unwrap();
    let out = run_cli(&["check", "--config", path.to_str().unwrap()]).await;
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    for needle in [
        "governance.master_key",
        "governance.store",
        "governance.keys[0].value",
        "governance.keys[1].name",
        "governance.keys[1].budget.period",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(!text.contains("sk-123"), "a key value is echoed:\n{text}");
}
