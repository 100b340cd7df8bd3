//! The governance suite (governance_suite/suite.rs) against PostgreSQL: each test starts a
//! PostgreSQL server of its own (Debian's `postgresql`; scripts/test installs it) on a free
//! loopback port and stops it when done.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

struct Store {
    url: String,
    extra: String,
    _server: common::stores::Postgres,
}

async fn new_store() -> Store {
    let server = tokio::task::spawn_blocking(common::stores::Postgres::start)
        .await
        .expect("start PostgreSQL");
    Store {
        url: server.url(),
        extra: String::new(),
        _server: server,
    }
}

include!("governance_suite/suite.rs");
