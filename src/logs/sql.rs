//! Request records in SQLite (a file of its own or the governance store's; WAL, incremental
//! auto-vacuum) or PostgreSQL, through sqlx's `Any` driver: one set of queries for both.
//!
//! One row per request in compact columns (no JSON blob): counts as integers, the client's
//! tags as one `,k=v,` string. Pages are read newest first by `(ts_ms, seq)` with keyset
//! pagination, each filter backed by an index that starts with its column and ends with the
//! time, so a filtered page deep in time is an index range scan, not a walk from the newest.
//! Retention deletes in bounded batches (no long lock, no unbounded memory) and, on SQLite,
//! hands the freed pages back to the file system.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Row};

use super::query::{finished_ms, Cursor, LogQuery, Page, StatusFilter, MAX_PAGE};
use super::stats::{
    self, Agg, StatsQuery, StatsRow, BUCKETS, HOUR, MINUTE, MINUTE_ROLLUP_RETENTION,
};
use crate::config::governance::StoreUrl;
use crate::telemetry::request_log::{
    endpoint_named, tags, ClientMeta, RecordDetail, RecordMeta, RequestRecord,
};
use crate::usage::Usage;

#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error("the request-log store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("a stored request record is damaged: {0}")]
    Corrupt(String),
    #[error("the answer would have more than {0} rows: narrow `from`/`to` or use a coarser `granularity`")]
    TooManyRows(usize),
}

/// The most rows a stats answer holds.
pub const MAX_STATS_ROWS: usize = 100_000;

/// Rows deleted per statement by retention: small enough that a write lock is held for
/// milliseconds, large enough that a day of records goes in a few hundred statements.
const PRUNE_BATCH: i64 = 5_000;
/// Rows per INSERT statement (28 values each: under SQLite's and PostgreSQL's bind limits).
const INSERT_ROWS: usize = 400;

const COLUMNS: &str = "seq, ts_ms, request_id, endpoint, model, target, status, stream, \
    usage_kind, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, \
    reasoning_tokens, cost_usd, duration_us, overhead_us, ttfb_us, ttft_us, cancelled, attempts, \
    error, key_id, team_id, customer_id, client_ip, user_agent, tags, unauthenticated";
/// The columns an INSERT writes (all but `seq`).
const INSERT_COLUMNS: usize = 28;

/// The schema, written so it reads the same to SQLite and PostgreSQL (bar the key column).
fn schema(sqlite: bool) -> Vec<String> {
    let seq = if sqlite {
        "seq INTEGER PRIMARY KEY"
    } else {
        "seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    };
    let real = if sqlite { "REAL" } else { "DOUBLE PRECISION" };
    let mut ddl = vec![format!(
        "CREATE TABLE IF NOT EXISTS request_log ({seq}, ts_ms BIGINT NOT NULL, \
         request_id TEXT NOT NULL, endpoint TEXT NOT NULL, model TEXT NOT NULL, \
         target TEXT NOT NULL, status BIGINT NOT NULL, stream BIGINT NOT NULL, \
         usage_kind BIGINT NOT NULL, input_tokens BIGINT NOT NULL, \
         output_tokens BIGINT NOT NULL, cache_read_tokens BIGINT NOT NULL, \
         cache_write_tokens BIGINT NOT NULL, reasoning_tokens BIGINT NOT NULL, \
         cost_usd {real}, duration_us BIGINT NOT NULL, overhead_us BIGINT NOT NULL, \
         ttfb_us BIGINT NOT NULL, ttft_us BIGINT NOT NULL, cancelled BIGINT NOT NULL, attempts BIGINT NOT NULL, error TEXT, key_id TEXT, \
         team_id TEXT, customer_id TEXT, client_ip TEXT, user_agent TEXT, tags TEXT, \
         unauthenticated BIGINT NOT NULL)"
    )];
    for (name, columns, filter) in [
        ("request_log_time", "ts_ms, seq", ""),
        ("request_log_model", "model, ts_ms, seq", ""),
        ("request_log_target", "target, ts_ms, seq", ""),
        ("request_log_status", "status, ts_ms, seq", ""),
        (
            "request_log_key",
            "key_id, ts_ms, seq",
            " WHERE key_id IS NOT NULL",
        ),
        (
            "request_log_team",
            "team_id, ts_ms, seq",
            " WHERE team_id IS NOT NULL",
        ),
        (
            "request_log_customer",
            "customer_id, ts_ms, seq",
            " WHERE customer_id IS NOT NULL",
        ),
        ("request_log_request_id", "request_id", ""),
    ] {
        ddl.push(format!(
            "CREATE INDEX IF NOT EXISTS {name} ON request_log ({columns}){filter}"
        ));
    }
    // The stats rollups: one row per span, dimension, period and group, clustered by its key
    // (a week by model is one range of it).
    let mut hist = String::new();
    for prefix in ["l", "t"] {
        for i in 0..BUCKETS {
            hist.push_str(&format!(", {prefix}{i} BIGINT NOT NULL DEFAULT 0"));
        }
    }
    ddl.push(format!(
        "CREATE TABLE IF NOT EXISTS request_stats (span BIGINT NOT NULL, \
         dimension TEXT NOT NULL, period BIGINT NOT NULL, grp TEXT NOT NULL, \
         requests BIGINT NOT NULL, errors BIGINT NOT NULL, input_tokens BIGINT NOT NULL, \
         output_tokens BIGINT NOT NULL, usd {real} NOT NULL{hist}, \
         PRIMARY KEY (span, dimension, period, grp)){}",
        if sqlite { " WITHOUT ROWID" } else { "" }
    ));
    ddl
}

/// The rollup columns after the key, in order.
fn stats_columns() -> Vec<String> {
    let mut c: Vec<String> = ["requests", "errors", "input_tokens", "output_tokens", "usd"]
        .into_iter()
        .map(String::from)
        .collect();
    for prefix in ["l", "t"] {
        c.extend((0..BUCKETS).map(|i| format!("{prefix}{i}")));
    }
    c
}

/// Rollup rows per upsert statement (129 values each: under both backends' bind limits).
const UPSERT_ROWS: usize = 200;

/// What one retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Records older than the retention.
    pub expired: u64,
    /// Records deleted to bring the file under its size cap.
    pub over_size: u64,
    /// Stats rollup rows past their keeping.
    pub rollups: u64,
}

#[derive(Debug, Clone)]
pub struct SqlLog {
    pool: AnyPool,
    sqlite: bool,
}

impl SqlLog {
    /// Opens (creating an SQLite file if missing) and creates the table and its indexes; an
    /// error when the store cannot be reached now. (A lazy pool for a PostgreSQL server that
    /// was down at start was tried, and left queries timing out after the server came up in
    /// about half the runs: a store unreachable at start stops the start, as the governance
    /// store's does; once running, a store that goes down is retried.)
    pub async fn open(url: &StoreUrl) -> Result<SqlLog, LogStoreError> {
        SqlLog::connect(url).await
    }

    async fn connect(url: &StoreUrl) -> Result<SqlLog, LogStoreError> {
        sqlx::any::install_default_drivers();
        let (text, sqlite, max) = match url {
            StoreUrl::Sqlite(path) => (format!("sqlite://{}?mode=rwc", path.display()), true, 4),
            // One connection: each connection to `:memory:` is a database of its own.
            StoreUrl::SqliteMemory => ("sqlite::memory:".to_string(), true, 1),
            StoreUrl::Postgres(u) => (u.clone(), false, 4),
        };
        let memory = matches!(url, StoreUrl::SqliteMemory);
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .min_connections(u32::from(memory))
            .acquire_timeout(Duration::from_secs(5))
            .idle_timeout((!memory).then(|| Duration::from_secs(600)))
            .max_lifetime((!memory).then(|| Duration::from_secs(1800)))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // Incremental auto-vacuum takes effect only in a new file (before its
                        // first table); an older file is converted once in `open`.
                        for pragma in [
                            "PRAGMA auto_vacuum = INCREMENTAL",
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = NORMAL",
                            "PRAGMA busy_timeout = 5000",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            });
        let pool = pool.connect(&text).await?;
        let log = SqlLog { pool, sqlite };
        log.create().await?;
        Ok(log)
    }

    async fn create(&self) -> Result<(), LogStoreError> {
        if self.sqlite {
            let exists: i64 = sqlx::query(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'request_log'",
            )
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
            let mode: i64 = sqlx::query("PRAGMA auto_vacuum")
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?;
            // A file made without it (the governance store of an older version): converted
            // once, while it holds no records yet, so retention can give space back.
            if exists == 0 && mode != 2 {
                let mut conn = self.pool.acquire().await?;
                sqlx::query("PRAGMA auto_vacuum = INCREMENTAL")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("VACUUM").execute(&mut *conn).await?;
            }
        }
        if self.sqlite {
            for ddl in schema(true) {
                sqlx::query(&ddl).execute(&self.pool).await?;
            }
        } else {
            // Two instances starting on an empty database would race `CREATE … IF NOT
            // EXISTS` (PostgreSQL can fail one with a duplicate type): one at a time.
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(7270117001)")
                .execute(&mut *tx)
                .await?;
            for ddl in schema(false) {
                sqlx::query(&ddl).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// `$1`-style placeholders as the backend spells them (`?1` for SQLite).
    fn sql<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.sqlite {
            Cow::Owned(text.replace('$', "?"))
        } else {
            Cow::Borrowed(text)
        }
    }

    /// Stores a batch in one transaction.
    pub async fn insert(&self, batch: &[RequestRecord]) -> Result<(), LogStoreError> {
        self.insert_with(batch, Some(&stats::rollups(batch))).await
    }

    /// Stores a batch and, when given, stats rollups (the writer gathers a second's worth
    /// before writing them: fewer upserts when batches are small), in one transaction.
    pub async fn insert_with(
        &self,
        batch: &[RequestRecord],
        rollups: Option<&stats::Rollups>,
    ) -> Result<(), LogStoreError> {
        if batch.is_empty() && rollups.is_none_or(|r| r.is_empty()) {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for chunk in batch.chunks(INSERT_ROWS) {
            let mut text = String::with_capacity(200 + chunk.len() * INSERT_COLUMNS * 5);
            text.push_str(
                "INSERT INTO request_log (ts_ms, request_id, endpoint, model, target, status, \
                 stream, usage_kind, input_tokens, output_tokens, cache_read_tokens, \
                 cache_write_tokens, reasoning_tokens, cost_usd, duration_us, overhead_us, \
                 ttfb_us, ttft_us, cancelled, attempts, error, key_id, team_id, customer_id, client_ip, \
                 user_agent, tags, unauthenticated) VALUES ",
            );
            values(&mut text, chunk.len(), INSERT_COLUMNS, self.sqlite);
            let mut q = sqlx::query(&text);
            for r in chunk {
                q = bind_record(q, r);
            }
            q.execute(&mut *tx).await?;
        }
        let rollups: Vec<_> = rollups.into_iter().flatten().collect();
        let columns = stats_columns();
        for chunk in rollups.chunks(UPSERT_ROWS) {
            let per_row = 4 + columns.len();
            let mut text = format!(
                "INSERT INTO request_stats (span, dimension, period, grp, {}) VALUES ",
                columns.join(", ")
            );
            values(&mut text, chunk.len(), per_row, self.sqlite);
            text.push_str(" ON CONFLICT (span, dimension, period, grp) DO UPDATE SET ");
            for (i, c) in columns.iter().enumerate() {
                if i > 0 {
                    text.push_str(", ");
                }
                text.push_str(&format!("{c} = request_stats.{c} + excluded.{c}"));
            }
            let mut q = sqlx::query(&text);
            for ((span, period, dimension, group), a) in chunk {
                q = q
                    .bind(to_i64(*span))
                    .bind(dimension.as_str())
                    .bind(to_i64(*period))
                    .bind(group.clone())
                    .bind(to_i64(a.requests))
                    .bind(to_i64(a.errors))
                    .bind(to_i64(a.input_tokens))
                    .bind(to_i64(a.output_tokens))
                    .bind(a.usd);
                for v in a.latency.iter().chain(a.ttft.iter()) {
                    q = q.bind(to_i64(*v));
                }
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stats rows for `q` from the rollups, oldest period first, then group.
    pub async fn stats(&self, q: &StatsQuery) -> Result<Vec<StatsRow>, LogStoreError> {
        let g = q.granularity.millis();
        let mut sums = String::new();
        for c in stats_columns() {
            if c == "usd" {
                sums.push_str(", SUM(usd)");
            } else {
                sums.push_str(&format!(", CAST(SUM({c}) AS BIGINT)"));
            }
        }
        let text = self
            .sql(&format!(
                "SELECT grp, period - period % {g} AS p{sums} FROM request_stats \
             WHERE span = $1 AND dimension = $2 AND period >= $3 AND period < $4 \
             GROUP BY grp, p ORDER BY p, grp LIMIT {}",
                MAX_STATS_ROWS + 1
            ))
            .into_owned();
        let rows = sqlx::query(&text)
            .bind(to_i64(q.granularity.span()))
            .bind(q.group_by.as_str())
            .bind(to_i64(q.from_ms))
            .bind(to_i64(q.to_ms))
            .fetch_all(&self.pool)
            .await?;
        if rows.len() > MAX_STATS_ROWS {
            return Err(LogStoreError::TooManyRows(MAX_STATS_ROWS));
        }
        rows.iter()
            .map(|row| {
                let int = |i: usize| -> Result<u64, LogStoreError> {
                    Ok(row.try_get::<i64, _>(i)?.max(0) as u64)
                };
                let mut a = Agg {
                    requests: int(2)?,
                    errors: int(3)?,
                    input_tokens: int(4)?,
                    output_tokens: int(5)?,
                    usd: row.try_get(6)?,
                    ..Agg::default()
                };
                for i in 0..BUCKETS {
                    a.latency[i] = int(7 + i)?;
                    a.ttft[i] = int(7 + BUCKETS + i)?;
                }
                Ok(StatsRow::of(row.try_get(0)?, int(1)?, &a))
            })
            .collect()
    }

    /// The newest records matching `q`, up to `q.limit`, older than its cursor.
    pub async fn query(&self, q: &LogQuery) -> Result<Page, LogStoreError> {
        let limit = q.limit.clamp(1, MAX_PAGE);
        let mut w = Where::default();
        if let Some(c) = q.before {
            let (a, b) = (w.arg(to_i64(c.ts_ms)), w.arg(to_i64(c.seq)));
            w.and(format!("(ts_ms, seq) < (${a}, ${b})"));
        }
        if let Some(t) = q.from_ms {
            let a = w.arg(to_i64(t));
            w.and(format!("ts_ms >= ${a}"));
        }
        if let Some(t) = q.to_ms {
            let a = w.arg(to_i64(t));
            w.and(format!("ts_ms < ${a}"));
        }
        for (column, wanted) in [
            ("model", &q.model),
            ("target", &q.target),
            ("error", &q.error_code),
            ("key_id", &q.key),
            ("team_id", &q.team),
            ("customer_id", &q.customer),
        ] {
            if let Some(v) = wanted {
                let a = w.arg(v.clone());
                w.and(format!("{column} = ${a}"));
            }
        }
        match q.status {
            Some(StatusFilter::Exact(s)) => {
                let a = w.arg(i64::from(s));
                w.and(format!("status = ${a}"));
            }
            Some(StatusFilter::Class(c)) => {
                let (a, b) = (w.arg(i64::from(c) * 100), w.arg(i64::from(c) * 100 + 100));
                w.and(format!("status >= ${a} AND status < ${b}"));
            }
            None => {}
        }
        if q.errors {
            w.and("(status >= 400 OR cancelled = 1)".into());
        }
        if let Some((k, v)) = &q.tag {
            let needle = match v {
                Some(v) => format!(",{k}={v},"),
                None => format!(",{k}="),
            };
            let a = w.arg(needle);
            let find = if self.sqlite { "instr" } else { "strpos" };
            w.and(format!("{find}(tags, ${a}) > 0"));
        }
        if let Some(ms) = q.min_latency_ms {
            let a = w.arg(to_i64(ms.saturating_mul(1000)));
            w.and(format!("duration_us >= ${a}"));
        }
        let text = format!(
            "SELECT {COLUMNS} FROM request_log{} ORDER BY ts_ms DESC, seq DESC LIMIT {}",
            w.clause(),
            limit + 1
        );
        let text = self.sql(&text);
        let mut query = sqlx::query(&text);
        for a in w.args {
            query = match a {
                Arg::Int(i) => query.bind(i),
                Arg::Text(s) => query.bind(s),
            };
        }
        let rows = query.fetch_all(&self.pool).await?;
        let more = rows.len() > limit;
        let mut records = Vec::with_capacity(limit.min(rows.len()));
        let mut last = None;
        for row in rows.iter().take(limit) {
            let seq: i64 = row.try_get("seq")?;
            let r = record_of(row)?;
            last = Some(Cursor {
                ts_ms: finished_ms(&r),
                seq: seq.max(0) as u64,
            });
            records.push(r);
        }
        Ok(Page {
            records,
            next_cursor: if more { last } else { None },
        })
    }

    /// The newest record of this request id (a request with a key first: an unknown client
    /// cannot shadow it by sending the same id).
    pub async fn get(&self, request_id: &str) -> Result<Option<RequestRecord>, LogStoreError> {
        let text = self
            .sql(&format!(
                "SELECT {COLUMNS} FROM request_log WHERE request_id = $1 \
             ORDER BY unauthenticated, ts_ms DESC, seq DESC LIMIT 1"
            ))
            .into_owned();
        let row = sqlx::query(&text)
            .bind(request_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(record_of).transpose()
    }

    /// Deletes records finished before `before_ms` and, on SQLite with a cap, the oldest
    /// beyond `max_size` bytes; in batches, yielding between them. SQLite's freed pages go
    /// back to the file system (incremental vacuum, then a WAL checkpoint).
    pub async fn prune(
        &self,
        before_ms: u64,
        max_size: Option<u64>,
    ) -> Result<Pruned, LogStoreError> {
        let mut pruned = Pruned::default();
        let expired = self.sql(
            "DELETE FROM request_log WHERE seq IN (SELECT seq FROM request_log \
             WHERE ts_ms < $1 ORDER BY ts_ms LIMIT $2)",
        );
        loop {
            let n = sqlx::query(&expired)
                .bind(to_i64(before_ms))
                .bind(PRUNE_BATCH)
                .execute(&self.pool)
                .await?
                .rows_affected();
            pruned.expired += n;
            if n < PRUNE_BATCH as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }
        // Rollups: minutes for two days, hours as long as the records.
        let rollups = self.sql("DELETE FROM request_stats WHERE span = $1 AND period < $2");
        for (span, before) in [
            (
                MINUTE,
                before_ms.max(now_ms().saturating_sub(MINUTE_ROLLUP_RETENTION)),
            ),
            (HOUR, before_ms.saturating_sub(before_ms % HOUR)),
        ] {
            pruned.rollups += sqlx::query(&rollups)
                .bind(to_i64(span))
                .bind(to_i64(before))
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        if let (true, Some(cap)) = (self.sqlite, max_size) {
            let oldest = self.sql(
                "DELETE FROM request_log WHERE seq IN (SELECT seq FROM request_log \
                 ORDER BY ts_ms, seq LIMIT $1)",
            );
            while self.used_bytes().await? > cap {
                let n = sqlx::query(&oldest)
                    .bind(PRUNE_BATCH / 5)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                pruned.over_size += n;
                if n == 0 {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        if self.sqlite && pruned != Pruned::default() {
            self.give_back_space().await?;
        }
        Ok(pruned)
    }

    /// SQLite: the bytes in use (pages not on the free list).
    async fn used_bytes(&self) -> Result<u64, LogStoreError> {
        let pages = self.pragma("page_count").await?;
        let free = self.pragma("freelist_count").await?;
        let size = self.pragma("page_size").await?;
        Ok(pages.saturating_sub(free).saturating_mul(size))
    }

    /// SQLite: the file's size in bytes (the main file, without its WAL); `None` elsewhere.
    pub async fn file_bytes(&self) -> Result<Option<u64>, LogStoreError> {
        if !self.sqlite {
            return Ok(None);
        }
        Ok(Some(
            self.pragma("page_count")
                .await?
                .saturating_mul(self.pragma("page_size").await?),
        ))
    }

    async fn pragma(&self, name: &str) -> Result<u64, LogStoreError> {
        let v: i64 = sqlx::query(&format!("PRAGMA {name}"))
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(v.max(0) as u64)
    }

    /// Releases free pages a thousand at a time (each step holds the write lock briefly),
    /// then truncates the WAL.
    async fn give_back_space(&self) -> Result<(), LogStoreError> {
        while self.pragma("freelist_count").await? > 0 {
            let before = self.pragma("page_count").await?;
            sqlx::query("PRAGMA incremental_vacuum(1000)")
                .fetch_all(&self.pool)
                .await?;
            if self.pragma("page_count").await? >= before {
                // Not an incremental auto-vacuum file: the pages are reused, not released.
                break;
            }
            tokio::task::yield_now().await;
        }
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_all(&self.pool)
            .await?;
        Ok(())
    }

    /// Records stored.
    pub async fn count(&self) -> Result<u64, LogStoreError> {
        let n: i64 = sqlx::query("SELECT count(*) FROM request_log")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(n.max(0) as u64)
    }
}

/// `rows` groups of `columns` placeholders: `(?,?),(?,?)`. SQLite gets bare `?` (values bind
/// in order): sqlx looks up every parameter's name, and SQLite finds a name by a walk over all
/// of them, so numbered placeholders made a 20,000-value statement take a second.
fn values(text: &mut String, rows: usize, columns: usize, sqlite: bool) {
    let mut n = 0;
    for row in 0..rows {
        text.push_str(if row == 0 { "(" } else { ",(" });
        for c in 0..columns {
            n += 1;
            if c > 0 {
                text.push(',');
            }
            if sqlite {
                text.push('?');
            } else {
                text.push('$');
                text.push_str(itoa::Buffer::new().format(n));
            }
        }
        text.push(')');
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

enum Arg {
    Int(i64),
    Text(String),
}

impl From<i64> for Arg {
    fn from(i: i64) -> Self {
        Arg::Int(i)
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Self {
        Arg::Text(s)
    }
}

/// A WHERE clause built condition by condition, with its bound values in order.
#[derive(Default)]
struct Where {
    conditions: Vec<String>,
    args: Vec<Arg>,
}

impl Where {
    /// Binds a value; returns its placeholder's number.
    fn arg(&mut self, a: impl Into<Arg>) -> usize {
        self.args.push(a.into());
        self.args.len()
    }

    fn and(&mut self, condition: String) {
        self.conditions.push(condition);
    }

    fn clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        }
    }
}

/// The tags as stored: `,k=v,k2=v2,` (each key once, its first value), so that `,k=v,` and
/// `,k=` find a tag by a substring search.
fn stored_tags(header: &http::HeaderValue) -> String {
    let text = String::from_utf8_lossy(header.as_bytes());
    let mut out = String::from(",");
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in tags(&text) {
        if seen.contains(&k) || k.is_empty() {
            continue;
        }
        seen.push(k);
        out.push_str(k);
        out.push('=');
        out.push_str(v);
        out.push(',');
    }
    out
}

fn bind_record<'q>(
    q: Query<'q, Any, AnyArguments<'q>>,
    r: &RequestRecord,
) -> Query<'q, Any, AnyArguments<'q>> {
    let u = r.usage.unwrap_or_default();
    let usage_kind: i64 = match &r.usage {
        None => 0,
        Some(u) if u.estimated => 2,
        Some(_) => 1,
    };
    let d = r.meta.detail.as_deref();
    let c = r.meta.client.as_deref();
    let text = |v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    q.bind(to_i64(finished_ms(r)))
        .bind(text(&r.request_id))
        .bind(r.endpoint)
        .bind(r.model.to_string())
        .bind(r.target.to_string())
        .bind(i64::from(r.status))
        .bind(i64::from(r.stream))
        .bind(usage_kind)
        .bind(to_i64(u.input))
        .bind(to_i64(u.output))
        .bind(to_i64(u.cache_read))
        .bind(to_i64(u.cache_write))
        .bind(to_i64(u.reasoning))
        .bind(CostBind(
            r.cost_usd.filter(|c| c.is_finite() && r.usage.is_some()),
        ))
        .bind(to_i64(r.duration.as_micros() as u64))
        .bind(to_i64(r.overhead.as_micros() as u64))
        .bind(i64::from(r.ttfb_us))
        .bind(i64::from(r.ttft_us))
        .bind(i64::from(r.client_cancelled))
        .bind(i64::from(r.meta.attempts()))
        .bind(d.and_then(|d| d.error.as_deref().map(str::to_owned)))
        .bind(d.and_then(|d| d.key_id.as_deref().map(str::to_owned)))
        .bind(d.and_then(|d| d.team_id.as_deref().map(str::to_owned)))
        .bind(d.and_then(|d| d.customer_id.as_deref().map(str::to_owned)))
        .bind(c.and_then(|c| c.ip).map(|ip| ip.to_string()))
        .bind(c.and_then(|c| c.user_agent.as_ref()).map(text))
        .bind(c.and_then(|c| c.tags.as_ref()).map(stored_tags))
        .bind(i64::from(r.meta.unauthenticated()))
}

/// A cost: a double, or NULL typed as one. sqlx 0.8's `Any` driver sends a `None::<f64>` to
/// PostgreSQL as a NULL `real` (its `Real`/`Double` nulls are swapped), which fixes the
/// cached statement's parameter to `real` and breaks the next row that has a cost; a
/// `None::<f32>` goes out as a NULL `double precision`.
struct CostBind(Option<f64>);

impl<'q> sqlx::Encode<'q, Any> for CostBind {
    fn encode_by_ref(
        &self,
        buf: &mut <Any as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        match self.0 {
            Some(c) => <f64 as sqlx::Encode<'q, Any>>::encode_by_ref(&c, buf),
            None => <Option<f32> as sqlx::Encode<'q, Any>>::encode_by_ref(&None, buf),
        }
    }
}

impl sqlx::Type<Any> for CostBind {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <f64 as sqlx::Type<Any>>::type_info()
    }
}

/// A row read back as the record it was written from.
fn record_of(row: &AnyRow) -> Result<RequestRecord, LogStoreError> {
    let int = |name: &str| -> Result<u64, LogStoreError> {
        let v: i64 = row.try_get(name)?;
        Ok(v.max(0) as u64)
    };
    let text = |name: &str| -> Result<Option<String>, LogStoreError> { Ok(row.try_get(name)?) };
    let header = |s: String| {
        http::HeaderValue::from_str(&s)
            .map_err(|_| LogStoreError::Corrupt(format!("a header value that is not one: {s:?}")))
    };
    let usage = match int("usage_kind")? {
        0 => None,
        kind => Some(Usage {
            input: int("input_tokens")?,
            output: int("output_tokens")?,
            cache_read: int("cache_read_tokens")?,
            cache_write: int("cache_write_tokens")?,
            reasoning: int("reasoning_tokens")?,
            estimated: kind == 2,
        }),
    };
    let ip: Option<IpAddr> = text("client_ip")?.and_then(|s| s.parse().ok());
    let user_agent = text("user_agent")?.map(header).transpose()?;
    let tags = text("tags")?
        .map(|t| header(t.trim_matches(',').to_string()))
        .transpose()?;
    let client = (ip.is_some() || user_agent.is_some() || tags.is_some()).then(|| {
        Arc::new(ClientMeta {
            ip,
            user_agent,
            tags,
        })
    });
    let detail = RecordDetail {
        key_id: text("key_id")?.map(Arc::from),
        team_id: text("team_id")?.map(Arc::from),
        customer_id: text("customer_id")?.map(Arc::from),
        error: text("error")?.map(Cow::Owned),
        attempts: u32::try_from(int("attempts")?).unwrap_or(u32::MAX),
        unauthenticated: int("unauthenticated")? != 0,
    };
    let endpoint: String = row.try_get("endpoint")?;
    Ok(RequestRecord {
        finished_at: UNIX_EPOCH + Duration::from_millis(int("ts_ms")?),
        request_id: header(row.try_get("request_id")?)?,
        endpoint: endpoint_named(&endpoint),
        model: Arc::from(row.try_get::<String, _>("model")?),
        target: Arc::from(row.try_get::<String, _>("target")?),
        status: u16::try_from(int("status")?).unwrap_or(0),
        stream: int("stream")? != 0,
        usage,
        cost_usd: row.try_get("cost_usd")?,
        duration: Duration::from_micros(int("duration_us")?),
        overhead: Duration::from_micros(int("overhead_us")?),
        ttfb_us: u32::try_from(int("ttfb_us")?).unwrap_or(u32::MAX),
        ttft_us: u32::try_from(int("ttft_us")?).unwrap_or(u32::MAX),
        client_cancelled: int("cancelled")? != 0,
        meta: RecordMeta {
            client,
            detail: (detail != RecordDetail::default()).then(|| Box::new(detail)),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_stored_for_a_substring_search() {
        let h = http::HeaderValue::from_static(" team=search , env=prod,bare,team=other");
        assert_eq!(stored_tags(&h), ",team=search,env=prod,bare=,");
    }
}
