//! Governance: virtual keys, a customer → team → key hierarchy, model and provider allowlists,
//! rate limits, USD budgets and the spend they are charged from. On when the config has a
//! `governance:` section; off (and free) otherwise.
//!
//! - `keys`: making, storing (as SHA-256 digests) and recognising virtual keys.
//! - `budget`, `rate`: one-word atomic ledgers: budgets reserved before a call and settled
//!   after; requests and tokens per minute; requests in flight.
//! - `table`: the immutable digest → key/team/customer lookup the request path reads, rebuilt
//!   off the request path and swapped whole; counters live across rebuilds.
//! - `gate`: the request path: identify, check a target, admit (limits + reservations), and
//!   the `Ticket` that charges real usage and releases the rest.
//! - `spend`: the queue the request path pushes spend rows onto; `store`: SQLite/PostgreSQL
//!   (keys, spend, audit); `entity`: what the store keeps.
//! - `Governor` (here): the pieces together, the spend writer and the key sync tasks, and the
//!   operations the admin API calls.
//!
//! Must never: take a lock or wait on a store on the request path, keep or print a key's value
//! (only its digest and a four-character hint).

pub mod budget;
pub mod entity;
pub mod gate;
pub mod keys;
pub mod rate;
pub mod shared;
pub mod spend;
pub mod store;
pub mod table;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;

use crate::config::governance::{AccessPolicy, GovernanceConfig, StoreUrl};
use entity::{Entity, Level, Origin};
use keys::KeyDigest;
use spend::SpendQueue;
use store::Store;
pub use store::StoreError;
use table::{Counters, Table};

/// What the config file says that can change on reload.
struct Declared {
    master: KeyDigest,
    keys: Vec<Entity>,
    default_output_tokens: u64,
}

/// Governance of one gateway process.
pub struct Governor {
    table: ArcSwap<Table>,
    counters: DashMap<String, Arc<Counters>>,
    pub spend: Arc<SpendQueue>,
    store: Store,
    store_url: StoreUrl,
    redis_url: Option<String>,
    declared: ArcSwap<Declared>,
    flush_interval: Duration,
    sync_interval: Duration,
    /// The store's revision the table was built from.
    revision: AtomicI64,
    /// One rebuild at a time (admin changes, sync, reload); never taken by a request.
    rebuild: tokio::sync::Mutex<()>,
    /// Limits and budgets in Redis, shared with other instances; `None`: in this process.
    pub shared: Option<Arc<shared::Shared>>,
    /// Set on shutdown: the spend writer finishes its write and stops, then the rest is
    /// flushed once (no write is cut off halfway, nothing is written after the store closes).
    closing: tokio::sync::Notify,
    writer: std::sync::OnceLock<tokio::task::JoinHandle<()>>,
}

/// Why an admin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Random(#[from] keys::RandomError),
    #[error(transparent)]
    Shared(#[from] shared::SharedError),
}

/// Why governance could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Shared(#[from] shared::SharedError),
}

/// A create request for a key, team or customer (admin API and CLI).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub name: String,
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub providers: Option<Vec<String>>,
    #[serde(default)]
    pub budget: Option<crate::config::governance::BudgetConfig>,
    #[serde(default)]
    pub limits: crate::config::governance::LimitConfig,
    #[serde(default, deserialize_with = "crate::config::governance::timestamp")]
    pub expires_at: Option<i64>,
}

/// A change: absent fields stay; `null` clears an optional one.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchRequest {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "some")]
    pub team_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "some")]
    pub customer_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "some")]
    pub metadata: Option<Option<serde_json::Value>>,
    #[serde(default, deserialize_with = "some")]
    pub models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "some")]
    pub providers: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "some")]
    pub budget: Option<Option<crate::config::governance::BudgetConfig>>,
    #[serde(default, deserialize_with = "some")]
    pub limits: Option<Option<crate::config::governance::LimitConfig>>,
    #[serde(default, deserialize_with = "some_time")]
    pub expires_at: Option<Option<i64>>,
}

/// A present field (`null` included) is `Some`.
fn some<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

fn some_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    crate::config::governance::timestamp(d).map(Some)
}

impl Governor {
    /// Opens the store, loads the keys and builds the first table.
    pub async fn start(cfg: &GovernanceConfig) -> Result<Arc<Governor>, StartError> {
        let store = Store::open(&cfg.store).await?;
        let shared = match &cfg.redis {
            Some(url) => Some(shared::Shared::connect(url).await?),
            None => None,
        };
        let g = Arc::new(Governor {
            table: ArcSwap::from_pointee(Table::default()),
            counters: DashMap::new(),
            spend: Arc::new(SpendQueue::default()),
            store,
            store_url: cfg.store.clone(),
            redis_url: cfg.redis.clone(),
            declared: ArcSwap::from_pointee(declared(cfg)),
            flush_interval: cfg.flush_interval,
            sync_interval: cfg.sync_interval,
            revision: AtomicI64::new(-1),
            rebuild: tokio::sync::Mutex::new(()),
            shared,
            closing: tokio::sync::Notify::new(),
            writer: std::sync::OnceLock::new(),
        });
        g.rebuild().await?;
        Ok(g)
    }

    pub fn store_url(&self) -> &StoreUrl {
        &self.store_url
    }

    pub fn redis_url(&self) -> Option<&str> {
        self.redis_url.as_deref()
    }

    /// The settings fixed at start (a reload that changes them is refused).
    pub fn fixed_intervals(&self) -> (Duration, Duration) {
        (self.flush_interval, self.sync_interval)
    }

    /// The current table (the request path's view).
    pub fn table(&self) -> arc_swap::Guard<Arc<Table>> {
        self.table.load()
    }

    pub fn default_output_tokens(&self) -> u64 {
        self.declared.load().default_output_tokens
    }

    /// Whether `presented` is the master key (compared as digests, in constant time).
    pub fn is_master(&self, presented: &str) -> bool {
        KeyDigest::of(presented).ct_eq(&self.declared.load().master)
    }

    /// A reload changed the file: new declared keys and master key, then a rebuild.
    pub async fn apply(&self, cfg: &GovernanceConfig) -> Result<(), StoreError> {
        self.declared.store(Arc::new(declared(cfg)));
        self.rebuild().await
    }

    /// Reloads every entity from the store, restores budget spend for entities seen for the
    /// first time, and swaps in a new table.
    pub async fn rebuild(&self) -> Result<(), StoreError> {
        let _one = self.rebuild.lock().await;
        // Spend still queued counts for the windows read below.
        self.flush().await?;
        let revision = self.store.revision().await?;
        let mut entities = self.store.entities().await?;
        entities.extend(self.declared.load().keys.iter().cloned());
        let now = gate::now_unix();
        let mut spent = HashMap::new();
        for e in &entities {
            let Some(b) = &e.policy.budget else { continue };
            let w = table::window_of(b, e.created_at);
            // Counters that already count this window carry their amount over; a new entity,
            // or a budget whose period changed, starts from what the store has for the window.
            let counted = self
                .counters
                .get(&e.id)
                .is_some_and(|c| c.budget.as_ref().is_some_and(|l| *l.window() == w));
            if counted {
                continue;
            }
            let since = table::window_start(&w, now);
            spent.insert(
                e.id.clone(),
                self.store.spent_since(e.level, &e.id, since).await?,
            );
        }
        let table = Table::build(entities, &self.counters, &spent, now);
        self.table.store(Arc::new(table));
        self.revision.store(revision, Ordering::Release);
        Ok(())
    }

    /// Writes queued spend to the store (what SIGTERM and the writer task call).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let rows = self.spend.drain();
        if rows.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.store.write_spend(&rows).await {
            self.spend.requeue(rows);
            return Err(e);
        }
        Ok(())
    }

    /// Flushes and closes the store (on shutdown, after the last request settled).
    pub async fn shutdown(&self) {
        if let Some(s) = &self.shared {
            s.drain(Duration::from_secs(5)).await;
        }
        if let Some(writer) = self.writer.get() {
            self.closing.notify_one();
            while !writer.is_finished() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        // No rebuild (which flushes too) may take rows and then find the store closed.
        let _no_rebuild = self.rebuild.lock().await;
        if let Err(e) = self.flush().await {
            tracing::error!(error = %e, "governance: the last spend could not be written");
        }
        self.store.close().await;
    }

    /// Starts the spend writer and the key sync.
    pub fn spawn_tasks(self: &Arc<Self>) {
        if let Some(s) = &self.shared {
            s.spawn_settler();
        }
        let g = Arc::clone(self);
        let writer = tokio::spawn(async move {
            let mut tick = tokio::time::interval(g.flush_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let closing = tokio::select! {
                    _ = tick.tick() => false,
                    _ = g.closing.notified() => true,
                };
                if closing {
                    return;
                }
                if let Err(e) = g.flush().await {
                    tracing::warn!(error = %e, "governance: writing spend failed; retrying");
                }
            }
        });
        let _ = self.writer.set(writer);
        let g = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(g.sync_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match g.store.revision().await {
                    Ok(r) if r != g.revision.load(Ordering::Acquire) => {
                        if let Err(e) = g.rebuild().await {
                            tracing::warn!(error = %e, "governance: reloading keys failed");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "governance: checking for key changes failed")
                    }
                }
            }
        });
    }

    // ---- admin operations ----

    /// Every entity of `level` (revoked ones included).
    pub fn list(&self, level: Level) -> Vec<Entity> {
        let mut v: Vec<Entity> = self
            .table
            .load()
            .entities
            .values()
            .filter(|e| e.level == level)
            .cloned()
            .collect();
        v.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        v
    }

    pub fn get(&self, level: Level, id: &str) -> Result<Entity, AdminError> {
        self.table
            .load()
            .entities
            .get(id)
            .filter(|e| e.level == level)
            .cloned()
            .ok_or_else(|| AdminError::NotFound(format!("no {} `{id}`", level.as_str())))
    }

    /// The current period's spend (spent and held by requests in flight) and when the period
    /// began: `None` when the entity has no budget.
    pub async fn period_spend(&self, id: &str) -> Result<Option<(f64, i64)>, AdminError> {
        let (used, start) = {
            let table = self.table.load();
            let found = table.entities.get(id).and_then(|e| {
                let b = e.policy.budget?;
                let ledger = table.nodes.get(id)?.counters.budget.as_ref()?;
                let now = gate::now_unix();
                let w = table::window_of(&b, e.created_at);
                Some((ledger.used(now), w, now))
            });
            let Some((local, w, now)) = found else {
                return Ok(None);
            };
            let used = match &self.shared {
                // Redis holds the window once any instance used it; before that, the store's.
                Some(s) => s.budget_used(id, &w, now).await?.unwrap_or(local),
                None => local,
            };
            (used, table::window_start(&w, now))
        };
        Ok(Some((used as f64 / budget::UNITS_PER_USD, start)))
    }

    /// Creates a key, team or customer; for a key, returns its value (shown this once).
    pub async fn create(
        &self,
        level: Level,
        req: CreateRequest,
        actor: &str,
    ) -> Result<(Entity, Option<String>), AdminError> {
        if req.name.trim().is_empty() {
            return Err(AdminError::Invalid("`name` is required".into()));
        }
        let policy = AccessPolicy {
            models: req.models,
            providers: req.providers,
            budget: req.budget,
            limits: req.limits,
            expires_at: req.expires_at,
        };
        check_policy(&policy)?;
        let (team_id, customer_id) = match level {
            Level::Key => (req.team_id, req.customer_id),
            Level::Team => {
                no_field(req.team_id.is_some(), "team_id", level)?;
                (None, req.customer_id)
            }
            Level::Customer => {
                no_field(req.team_id.is_some(), "team_id", level)?;
                no_field(req.customer_id.is_some(), "customer_id", level)?;
                (None, None)
            }
        };
        self.check_parents(team_id.as_deref(), customer_id.as_deref())?;
        let metadata = metadata(req.metadata)?;
        let (value, digest) = match level {
            Level::Key => {
                let (v, d) = keys::generate()?;
                (Some(v), Some(d))
            }
            _ => (None, None),
        };
        let now = gate::now_unix();
        let e = Entity {
            id: new_id(level)?,
            level,
            name: req.name,
            digest,
            hint: value.as_deref().map(entity::hint_of),
            team_id,
            customer_id,
            policy,
            metadata,
            created_at: now,
            updated_at: now,
            revoked_at: None,
            origin: Origin::Admin,
        };
        self.store.insert(&e, actor).await?;
        self.rebuild().await?;
        Ok((e, value))
    }

    pub async fn update(
        &self,
        level: Level,
        id: &str,
        patch: PatchRequest,
        actor: &str,
    ) -> Result<Entity, AdminError> {
        let mut e = self.get(level, id)?;
        if e.origin == Origin::Config {
            return Err(AdminError::Conflict(format!(
                "`{id}` is declared in the config file: change it there"
            )));
        }
        if let Some(name) = patch.name {
            if name.trim().is_empty() {
                return Err(AdminError::Invalid("`name` must not be empty".into()));
            }
            e.name = name;
        }
        if let Some(t) = patch.team_id {
            no_field(level != Level::Key && t.is_some(), "team_id", level)?;
            e.team_id = t;
        }
        if let Some(c) = patch.customer_id {
            no_field(
                level == Level::Customer && c.is_some(),
                "customer_id",
                level,
            )?;
            e.customer_id = c;
        }
        if let Some(m) = patch.metadata {
            e.metadata = metadata(m)?;
        }
        if let Some(m) = patch.models {
            e.policy.models = m;
        }
        if let Some(p) = patch.providers {
            e.policy.providers = p;
        }
        if let Some(b) = patch.budget {
            e.policy.budget = b;
        }
        if let Some(l) = patch.limits {
            e.policy.limits = l.unwrap_or_default();
        }
        if let Some(x) = patch.expires_at {
            e.policy.expires_at = x;
        }
        check_policy(&e.policy)?;
        self.check_parents(e.team_id.as_deref(), e.customer_id.as_deref())?;
        e.updated_at = gate::now_unix();
        self.store.update(&e, actor, "update").await?;
        self.rebuild().await?;
        Ok(e)
    }

    /// Revokes (keys stop working on the next request; a revoked team or customer stops its
    /// keys). Revoking twice is not an error.
    pub async fn revoke(&self, level: Level, id: &str, actor: &str) -> Result<Entity, AdminError> {
        let mut e = self.get(level, id)?;
        if e.origin == Origin::Config {
            return Err(AdminError::Conflict(format!(
                "`{id}` is declared in the config file: remove it there"
            )));
        }
        if e.revoked_at.is_none() {
            let now = gate::now_unix();
            e.revoked_at = Some(now);
            e.updated_at = now;
            self.store.update(&e, actor, "revoke").await?;
            self.rebuild().await?;
        }
        Ok(e)
    }

    pub async fn report(
        &self,
        group: Level,
        by_model_or_provider: Option<&'static str>,
        from: i64,
        to: i64,
        day: bool,
    ) -> Result<Vec<store::ReportRow>, StoreError> {
        // What is queued is written first, so a report sees every settled request.
        self.flush().await?;
        let column = by_model_or_provider.unwrap_or_else(|| store::group_column(group));
        self.store.report(column, from, to, day).await
    }

    pub async fn audit(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<store::AuditEntry>, StoreError> {
        self.store.audit(after, limit).await
    }

    fn check_parents(&self, team: Option<&str>, customer: Option<&str>) -> Result<(), AdminError> {
        let table = self.table.load();
        for (id, level) in [(team, Level::Team), (customer, Level::Customer)] {
            let Some(id) = id else { continue };
            if !table.entities.get(id).is_some_and(|e| e.level == level) {
                return Err(AdminError::Invalid(format!("no {} `{id}`", level.as_str())));
            }
        }
        // A key in a team belongs to the team's customer: naming another would take it out
        // of that customer's budget and limits.
        let team_customer = team
            .and_then(|t| table.entities.get(t))
            .and_then(|t| t.customer_id.as_deref());
        if let (Some(tc), Some(c)) = (team_customer, customer) {
            if tc != c {
                return Err(AdminError::Invalid(format!(
                    "the team belongs to customer `{tc}`; a key in it cannot name `{c}`"
                )));
            }
        }
        Ok(())
    }
}

fn no_field(given: bool, field: &str, level: Level) -> Result<(), AdminError> {
    if given {
        return Err(AdminError::Invalid(format!(
            "a {} has no `{field}`",
            level.as_str()
        )));
    }
    Ok(())
}

fn check_policy(p: &AccessPolicy) -> Result<(), AdminError> {
    match p.problems().first() {
        Some((field, message)) => Err(AdminError::Invalid(format!("`{field}`: {message}"))),
        None => Ok(()),
    }
}

fn metadata(m: Option<serde_json::Value>) -> Result<serde_json::Value, AdminError> {
    match m {
        None | Some(serde_json::Value::Null) => Ok(serde_json::Value::Object(Default::default())),
        Some(v @ serde_json::Value::Object(_)) => Ok(v),
        Some(_) => Err(AdminError::Invalid(
            "`metadata` must be a JSON object".into(),
        )),
    }
}

/// `key_`, `team_` or `cust_` and 16 random base62 characters.
fn new_id(level: Level) -> Result<String, keys::RandomError> {
    let (key, _) = keys::generate()?;
    Ok(format!(
        "{}{}",
        level.id_prefix(),
        &key[keys::PREFIX.len()..][..16]
    ))
}

fn declared(cfg: &GovernanceConfig) -> Declared {
    Declared {
        master: KeyDigest::of(&cfg.master_key),
        keys: cfg
            .keys
            .iter()
            .map(|k| Entity {
                id: format!("cfg_{}", k.name),
                level: Level::Key,
                name: k.name.clone(),
                digest: Some(KeyDigest::of(&k.value)),
                hint: Some(entity::hint_of(&k.value)),
                team_id: None,
                customer_id: None,
                policy: k.policy.clone(),
                metadata: serde_json::Value::Object(Default::default()),
                created_at: 0,
                updated_at: 0,
                revoked_at: None,
                origin: Origin::Config,
            })
            .collect(),
        default_output_tokens: cfg.default_output_tokens,
    }
}
