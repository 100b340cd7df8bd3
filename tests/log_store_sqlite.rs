//! The request-log store suite (log_store_suite/suite.rs) against an SQLite file, plus what only
//! SQLite has: a size cap on the file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferrogate::config::governance::StoreUrl;

struct Store {
    url: StoreUrl,
    _dir: tempfile::TempDir,
}

async fn new_store() -> Store {
    let dir = tempfile::tempdir().unwrap();
    Store {
        url: StoreUrl::Sqlite(dir.path().join("logs.db")),
        _dir: dir,
    }
}

include!("log_store_suite/suite.rs");

#[tokio::test]
async fn a_size_cap_deletes_the_oldest_until_the_file_fits() {
    let store = new_store().await;
    let db = SqlLog::open(&store.url).await.unwrap();
    let all: Vec<RequestRecord> = (0..20_000).map(record).collect();
    for chunk in all.chunks(5_000) {
        db.insert(chunk).await.unwrap();
    }
    let before = db.file_bytes().await.unwrap().unwrap();
    let cap = before / 4;
    // Nothing has expired: only the cap deletes.
    let pruned = db.prune(0, Some(cap)).await.unwrap();
    assert_eq!(pruned.expired, 0);
    assert!(pruned.over_size > 10_000, "{pruned:?}");
    let after = db.file_bytes().await.unwrap().unwrap();
    assert!(
        after <= cap + cap / 5,
        "file {before} → {after} bytes, cap {cap}"
    );
    // The newest are kept.
    assert!(db.get("req-19999").await.unwrap().is_some());
    assert!(db.get("req-0").await.unwrap().is_none());
}
