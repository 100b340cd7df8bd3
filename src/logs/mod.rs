//! Where request records go after the request path queued them: the writer drains the queue
//! in batches into the sinks (stderr lines, a JSON Lines file) and the store the query API
//! reads (memory, SQLite or PostgreSQL), and enforces retention. None of it runs on the
//! request path: a request costs one push onto the lock-free queue.
//!
//! The drain runs on a thread of its own (a slow stderr or disk must never block a runtime
//! thread). A database store is written by a task on the runtime, fed batches through a
//! channel; while the store is down the task retries with backoff, records wait in a bounded
//! backlog, and beyond it they are dropped and counted — the gateway keeps serving.

pub mod file_sink;
pub mod live;
pub mod memory;
pub mod query;
pub mod sql;
pub mod stats;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};

use crate::config::governance::StoreUrl;
use crate::config::logs::{LogStoreUrl, LogsConfig};
use crate::telemetry::metrics::{self as m, RecordMetrics};
use crate::telemetry::request_log::{format_line, write_stderr, Fields, RequestLog, RequestRecord};
use file_sink::FileSink;
use memory::MemoryLog;
use query::{LogQuery, Page};
use sql::{LogStoreError, SqlLog};

/// Held by the writer thread (once per batch), a shutdown flush and status reads only, never
/// on the request path.
#[allow(clippy::disallowed_types)]
type WriterLock<T> = std::sync::Mutex<T>;

/// Records handed to a database store and not yet written, at most; beyond, dropped.
pub const MAX_BACKLOG: usize = 200_000;
/// How often the writer thread drains the queue.
const DRAIN_EVERY: Duration = Duration::from_millis(50);
/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// The most records one database write takes.
const WRITE_BATCH: usize = 5_000;
/// Stats rollups are written with the records at most this often.
const ROLLUP_EVERY: Duration = Duration::from_secs(1);
/// How long a shutdown waits for the store to take what is left.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

pub enum LogStore {
    Memory(MemoryLog),
    Sql(SqlLog),
}

enum Feed {
    Batch(Vec<RequestRecord>),
    /// Answered once everything sent before it is written (or given up).
    Flush(oneshot::Sender<()>),
}

/// What `/ready` and the metrics say about the store.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreStatus {
    pub store: &'static str,
    pub up: bool,
    /// Records waiting to be written.
    pub backlog: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The JSON Lines file and the histograms filled from the records.
struct Drainer {
    file: Option<FileSink>,
    metrics: RecordMetrics,
}

pub struct Logs {
    queue: Arc<RequestLog>,
    store: LogStore,
    kind: &'static str,
    /// What the drainer owns; locked by whoever drains (the writer thread, or a shutdown).
    drain: WriterLock<Drainer>,
    feed: OnceLock<mpsc::UnboundedSender<Feed>>,
    backlog: AtomicUsize,
    /// The most records the backlog holds ([`MAX_BACKLOG`] unless set).
    max_backlog: AtomicUsize,
    up: AtomicBool,
    last_error: WriterLock<Option<String>>,
    retention: Duration,
    max_size: Option<u64>,
    /// A database store's address: the writer opens a pool of its own on its own runtime.
    url: Option<StoreUrl>,
    /// Live tails (`/admin/v1/logs/stream`).
    pub live: live::Live,
}

impl Logs {
    /// Opens the configured store (a database is created and its schema brought up to date).
    /// The writer does not run until [`Logs::start`].
    pub async fn open(
        cfg: &LogsConfig,
        queue: Arc<RequestLog>,
    ) -> Result<Arc<Logs>, LogStoreError> {
        let (store, kind) = match &cfg.store {
            LogStoreUrl::Memory { capacity } => {
                (LogStore::Memory(MemoryLog::new(*capacity)), "memory")
            }
            LogStoreUrl::Db(url) => (
                LogStore::Sql(SqlLog::open(url).await?),
                match url {
                    StoreUrl::Postgres(_) => "postgres",
                    _ => "sqlite",
                },
            ),
        };
        Ok(Logs::with_store(cfg, queue, store, kind))
    }

    /// The memory store (what `open` makes without a database; needs no runtime).
    pub fn memory(cfg: &LogsConfig, queue: Arc<RequestLog>) -> Arc<Logs> {
        let capacity = match cfg.store {
            LogStoreUrl::Memory { capacity } => capacity,
            LogStoreUrl::Db(_) => crate::config::logs::DEFAULT_MEMORY_CAPACITY,
        };
        Logs::with_store(
            cfg,
            queue,
            LogStore::Memory(MemoryLog::new(capacity)),
            "memory",
        )
    }

    fn with_store(
        cfg: &LogsConfig,
        queue: Arc<RequestLog>,
        store: LogStore,
        kind: &'static str,
    ) -> Arc<Logs> {
        // The writer's address, for a database store (`Logs::memory` makes none, whatever the
        // config says).
        let url = match (&cfg.store, &store) {
            (LogStoreUrl::Db(url), LogStore::Sql(_)) => Some(url.clone()),
            _ => None,
        };
        Arc::new(Logs {
            queue,
            store,
            kind,
            drain: WriterLock::new(Drainer {
                file: cfg.file.as_ref().map(FileSink::new),
                metrics: RecordMetrics::default(),
            }),
            feed: OnceLock::new(),
            backlog: AtomicUsize::new(0),
            max_backlog: AtomicUsize::new(MAX_BACKLOG),
            up: AtomicBool::new(true),
            last_error: WriterLock::new(None),
            retention: cfg.retention,
            max_size: cfg.max_size,
            url,
            live: live::Live::default(),
        })
    }

    /// Bounds the records that wait for a database store (tests use a small one).
    pub fn set_max_backlog(&self, records: usize) {
        self.max_backlog.store(records, Ordering::Relaxed);
    }

    pub fn queue(&self) -> &Arc<RequestLog> {
        &self.queue
    }

    pub fn store(&self) -> &LogStore {
        &self.store
    }

    /// Starts the drain thread and, for a database store, its writer and retention tasks on a
    /// runtime of their own (one thread): building statements and binding values costs more
    /// per record than the request itself, and must not run on the threads that serve
    /// requests. Without a writer nothing is queued.
    pub fn start(self: &Arc<Self>) {
        if let (LogStore::Sql(_), Some(url)) = (&self.store, self.url.clone()) {
            let (tx, rx) = mpsc::unbounded_channel();
            if self.feed.set(tx).is_err() {
                // Started already: one writer is enough.
                return;
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("ferrogate-log-store")
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => {
                    // Lives as long as the process (a runtime may not be dropped from within
                    // another's async context, where the last `Logs` may go).
                    let rt: &'static tokio::runtime::Runtime = Box::leak(Box::new(rt));
                    let logs = Arc::clone(self);
                    rt.spawn(async move {
                        let db = logs.open_writer(&url).await;
                        tokio::spawn(Arc::clone(&logs).prune_loop(db.clone()));
                        logs.write_store(db, rx).await;
                    });
                }
                Err(e) => {
                    tracing::error!(error = %e, "request log: cannot start the store writer; records are dropped");
                    self.queue.disable();
                    return;
                }
            }
        }
        let logs = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("ferrogate-request-log".into())
            .spawn(move || loop {
                std::thread::sleep(DRAIN_EVERY);
                logs.drain();
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the request-log writer; request logs are off");
            self.queue.disable();
        }
    }

    /// Takes everything queued so far to the sinks and the store.
    pub fn drain(&self) {
        let mut drainer = self.drain.lock().unwrap_or_else(|e| e.into_inner());
        metrics::gauge!(m::LOG_QUEUE_DEPTH).set(self.queue.queued() as f64);
        let mut batch = Vec::with_capacity(self.queue.queued());
        while let Some(r) = self.queue.pop() {
            batch.push(r);
        }
        if batch.is_empty() {
            return;
        }
        if self.queue.writes_stderr() {
            let mut buf = Vec::with_capacity(batch.len().min(4096) * 320);
            for r in &batch {
                format_line(&mut buf, r, Fields::Line);
                if buf.len() > 1 << 20 {
                    write_stderr(&buf);
                    buf.clear();
                }
            }
            write_stderr(&buf);
        }
        for r in &batch {
            let ttft = (r.ttft_us > 0).then(|| Duration::from_micros(u64::from(r.ttft_us)));
            drainer.metrics.observe(&r.model, ttft, r.meta.attempts());
        }
        drainer.metrics.flush();
        if let Some(sink) = drainer.file.as_mut() {
            let mut buf = Vec::with_capacity(batch.len() * 400);
            for r in &batch {
                format_line(&mut buf, r, Fields::All);
            }
            if let Err(e) = sink.write(&buf) {
                tracing::warn!(error = %e, path = %sink.path().display(), "request log: the JSON Lines file cannot be written");
            }
        }
        // The lock stays held until the batch is handed on: a shutdown's flush (which drains
        // and then asks the store task to confirm) can never overtake a batch popped here.
        self.live.publish(&batch);
        match (&self.store, self.feed.get()) {
            (LogStore::Memory(mem), _) => mem.extend(batch),
            (LogStore::Sql(_), Some(feed)) => {
                let n = batch.len();
                if self.backlog.load(Ordering::Relaxed) + n
                    > self.max_backlog.load(Ordering::Relaxed)
                {
                    self.queue.count_dropped(n);
                    return;
                }
                self.backlog.fetch_add(n, Ordering::Relaxed);
                if feed.send(Feed::Batch(batch)).is_err() {
                    self.backlog.fetch_sub(n, Ordering::Relaxed);
                    self.queue.count_dropped(n);
                }
            }
            // Not started: nothing would write it.
            (LogStore::Sql(_), None) => self.queue.count_dropped(batch.len()),
        }
        drop(drainer);
    }

    /// Drains and waits (bounded) until a database store has taken everything: SIGTERM loses
    /// no record the store can still take.
    pub async fn flush(&self) {
        self.drain();
        let Some(feed) = self.feed.get() else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        if feed.send(Feed::Flush(tx)).is_ok()
            && tokio::time::timeout(FLUSH_TIMEOUT, rx).await.is_err()
        {
            tracing::warn!(
                backlog = self.backlog.load(Ordering::Relaxed),
                "request log: the store did not take the last records in time"
            );
        }
    }

    /// The writer's pool: SQLite's is shared (its connections are threads of their own, not
    /// tied to a runtime, and `:memory:` is one database per pool); PostgreSQL gets a pool of
    /// its own on the writer's runtime (a socket answers to the runtime that opened it),
    /// retried until the server can be reached.
    async fn open_writer(&self, url: &StoreUrl) -> SqlLog {
        if let (LogStore::Sql(db), false) = (&self.store, matches!(url, StoreUrl::Postgres(_))) {
            return db.clone();
        }
        let mut wait = Duration::from_millis(100);
        loop {
            // A fresh pool per try, opened only once the server answers (not a lazy one).
            match SqlLog::open(url).await {
                Ok(db) => {
                    if !self.up.swap(true, Ordering::Relaxed) {
                        tracing::info!("request log: the store is reached");
                    }
                    return db;
                }
                Err(e) => {
                    self.up.store(false, Ordering::Relaxed);
                    tracing::warn!(error = %e, "request log: the writer cannot open the store; retrying");
                    *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(e.to_string());
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The writer task of a database store: batches as they come, each retried with backoff
    /// until the store takes it. Stats rollups are gathered and written with the records at
    /// most once a second (and on a flush).
    async fn write_store(self: Arc<Self>, db: SqlLog, mut rx: mpsc::UnboundedReceiver<Feed>) {
        // Rollups of records already written (theirs are pending), and of the batch being
        // written: a batch that is given up takes only its own rollups with it.
        let mut rollups = stats::Rollups::new();
        let mut batch_rollups = stats::Rollups::new();
        let mut rollups_written = tokio::time::Instant::now();
        let store_up = metrics::gauge!(m::LOG_STORE_UP);
        let written = metrics::counter!(m::LOG_WRITTEN);
        let errors = metrics::counter!(m::LOG_STORE_ERRORS);
        let lag = metrics::histogram!(m::LOG_WRITE_LAG);
        let backlog = metrics::gauge!(m::LOG_BACKLOG);
        store_up.set(1.0);
        let mut flushes = Vec::new();
        loop {
            // Pending rollups are written within a second even when no record follows them.
            let first = if rollups.is_empty() && batch_rollups.is_empty() {
                rx.recv().await
            } else {
                tokio::select! {
                    feed = rx.recv() => feed,
                    _ = tokio::time::sleep_until(rollups_written + ROLLUP_EVERY) => {
                        Some(Feed::Batch(Vec::new()))
                    }
                }
            };
            let Some(first) = first else {
                break;
            };
            let mut batch = Vec::new();
            let mut next = Some(first);
            while let Some(feed) = next.take() {
                match feed {
                    Feed::Batch(b) => {
                        stats::add_rollups(&mut batch_rollups, &b);
                        batch.extend(b);
                    }
                    Feed::Flush(done) => flushes.push(done),
                }
                if batch.len() < WRITE_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            let mut wait = Duration::from_millis(100);
            loop {
                let pending = !rollups.is_empty() || !batch_rollups.is_empty();
                let due =
                    pending && (!flushes.is_empty() || rollups_written.elapsed() >= ROLLUP_EVERY);
                if batch.is_empty() && !due {
                    break;
                }
                let all = due.then(|| {
                    let mut all = rollups.clone();
                    stats::merge_rollups(&mut all, &batch_rollups);
                    all
                });
                match db.insert_with(&batch, all.as_ref()).await {
                    Ok(()) => {
                        if due {
                            rollups.clear();
                            rollups_written = tokio::time::Instant::now();
                        } else {
                            stats::merge_rollups(&mut rollups, &batch_rollups);
                        }
                        batch_rollups.clear();
                        let now = SystemTime::now();
                        if let Some(oldest) = batch.first() {
                            lag.record(
                                now.duration_since(oldest.finished_at)
                                    .unwrap_or_default()
                                    .as_secs_f64(),
                            );
                        }
                        written.increment(batch.len() as u64);
                        self.backlog.fetch_sub(batch.len(), Ordering::Relaxed);
                        if !self.up.swap(true, Ordering::Relaxed) {
                            tracing::info!("request log: the store is back");
                        }
                        store_up.set(1.0);
                        batch.clear();
                    }
                    Err(e) => {
                        errors.increment(1);
                        store_up.set(0.0);
                        if self.up.swap(false, Ordering::Relaxed) {
                            tracing::warn!(error = %e, "request log: the store is down; retrying");
                        }
                        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(e.to_string());
                        // A shutdown does not wait out a store that is down: what it could not
                        // take is lost, and counted.
                        if !flushes.is_empty() {
                            self.backlog.fetch_sub(batch.len(), Ordering::Relaxed);
                            self.queue.count_dropped(batch.len());
                            batch.clear();
                            batch_rollups.clear();
                            if !rollups.is_empty() {
                                tracing::warn!(
                                    rows = rollups.len(),
                                    "request log: stats of the last second's stored records were not written"
                                );
                                rollups.clear();
                            }
                            break;
                        }
                        // Back off, but hear a shutdown's flush (and take newer batches along).
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            feed = rx.recv() => match feed {
                                Some(Feed::Batch(b)) => {
                                    stats::add_rollups(&mut batch_rollups, &b);
                                    batch.extend(b);
                                }
                                Some(Feed::Flush(done)) => flushes.push(done),
                                None => {}
                            },
                        }
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                }
            }
            backlog.set(self.backlog.load(Ordering::Relaxed) as f64);
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
        }
    }

    /// Retention: now, then every minute.
    async fn prune_loop(self: Arc<Self>, db: SqlLog) {
        loop {
            let now_ms = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let before = now_ms.saturating_sub(self.retention.as_millis() as u64);
            match db.prune(before, self.max_size).await {
                Ok(p) if p.expired + p.over_size > 0 => tracing::info!(
                    expired = p.expired,
                    over_size = p.over_size,
                    "request log: old records deleted"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "request log: retention failed; retrying later")
                }
            }
            if let Ok(Some(bytes)) = db.file_bytes().await {
                metrics::gauge!(m::LOG_STORE_BYTES).set(bytes as f64);
            }
            tokio::time::sleep(PRUNE_EVERY).await;
        }
    }

    /// A page of records.
    pub async fn query(&self, q: &LogQuery) -> Result<Page, LogStoreError> {
        match &self.store {
            LogStore::Memory(mem) => Ok(mem.query(q)),
            LogStore::Sql(db) => db.query(q).await,
        }
    }

    /// Usage analytics over the records (or their rollups).
    pub async fn stats(
        &self,
        q: &stats::StatsQuery,
    ) -> Result<Vec<stats::StatsRow>, LogStoreError> {
        match &self.store {
            LogStore::Memory(mem) => Ok(mem.stats(q)),
            LogStore::Sql(db) => db.stats(q).await,
        }
    }

    /// One record by its request id.
    pub async fn get(&self, request_id: &str) -> Result<Option<RequestRecord>, LogStoreError> {
        match &self.store {
            LogStore::Memory(mem) => Ok(mem.get(request_id)),
            LogStore::Sql(db) => db.get(request_id).await,
        }
    }

    /// The store's state for `/ready` (public: no error text, which may name database users
    /// or hosts) — [`Logs::status`] has it, for the authenticated `/admin/health`.
    pub fn public_status(&self) -> StoreStatus {
        StoreStatus {
            last_error: None,
            ..self.status()
        }
    }

    pub fn status(&self) -> StoreStatus {
        StoreStatus {
            store: self.kind,
            up: self.up.load(Ordering::Relaxed),
            backlog: self.backlog.load(Ordering::Relaxed),
            last_error: if self.up.load(Ordering::Relaxed) {
                None
            } else {
                self.last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            },
        }
    }

    /// Ends every live tail (their connections finish, so a graceful shutdown need not wait
    /// for them).
    pub fn end_tails(&self) {
        self.live.close();
    }

    pub async fn close(&self) {
        if let LogStore::Sql(db) = &self.store {
            db.close().await;
        }
    }
}
