//! The immutable lookup the request path reads: key digest → the key with its team and
//! customer, each with its rules and live counters. Rebuilt whole (off the request path) when
//! keys change and swapped in with `arc-swap`; the counters outlive rebuilds, kept by entity id.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use super::budget::{Ledger, Period, Window};
use super::entity::{Entity, Level};
use super::keys::KeyDigest;
use super::rate::{LimitSettings, Limits};
use crate::config::governance::{AccessPolicy, BudgetConfig, BudgetPeriod, LimitConfig};
use crate::glob;

/// Live budget and limits of one entity.
#[derive(Debug)]
pub struct Counters {
    pub budget: Option<Ledger>,
    pub limits: Limits,
    /// What these counters were made for: a change of any of it makes new counters.
    made_for: (Option<BudgetConfig>, LimitConfig, Option<i64>),
}

impl Counters {
    pub fn has_limits(&self) -> bool {
        !self.made_for.1.is_empty()
    }

    /// The rate limits these counters were made for.
    pub fn limit_config(&self) -> &LimitConfig {
        &self.made_for.1
    }
}

/// The window a budget counts in. Rolling windows run from the hour the entity was created
/// (so the hourly spend rows add up to exactly one window).
pub fn window_of(b: &BudgetConfig, created_at: i64) -> Window {
    let period = match b.period {
        BudgetPeriod::Hour => Period::Hour,
        BudgetPeriod::Day => Period::Day,
        BudgetPeriod::Week => Period::Week,
        BudgetPeriod::Days30 => Period::Days30,
        BudgetPeriod::Month => Period::Month,
        BudgetPeriod::Total => Period::Total,
    };
    let rolling =
        !b.calendar_aligned && !matches!(b.period, BudgetPeriod::Month | BudgetPeriod::Total);
    Window {
        period,
        anchor: rolling.then(|| created_at.div_euclid(3600) * 3600),
    }
}

/// When the window `now` falls in started (Unix seconds).
pub fn window_start(w: &Window, now: i64) -> i64 {
    match (w.period, w.at(now)) {
        (Period::Total, _) => 0,
        (Period::Month, (index, _)) => {
            let (y, m) = (index.div_euclid(12), index.rem_euclid(12) + 1);
            super::budget::month_start(y, m as u32)
        }
        (_, (_, Some(end))) => end - w.period_seconds().unwrap_or(0),
        (_, (_, None)) => 0,
    }
}

/// One key, team or customer as the request path sees it.
#[derive(Debug)]
pub struct Node {
    pub id: Arc<str>,
    pub level: Level,
    pub name: Arc<str>,
    pub models: Option<Box<[String]>>,
    pub providers: Option<Box<[String]>>,
    pub expires_at: Option<i64>,
    pub revoked: bool,
    pub counters: Arc<Counters>,
}

impl Node {
    /// Whether this level admits `model` (the client's name) served by `provider` as `served`.
    /// A pattern matches the client's model name or `provider/served-model`.
    pub fn admits_model(&self, model: &str, provider: &str, served: &str) -> bool {
        let Some(patterns) = &self.models else {
            return true;
        };
        patterns.iter().any(|p| {
            glob::matches(p, model)
                || p.strip_prefix(provider)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .is_some_and(|rest| glob::matches(rest, served))
        })
    }

    pub fn admits_provider(&self, provider: &str) -> bool {
        self.providers
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| glob::matches(p, provider)))
    }
}

/// A key with the team and customer above it (each level applies).
#[derive(Debug)]
pub struct Principal {
    pub key: Arc<Node>,
    pub team: Option<Arc<Node>>,
    pub customer: Option<Arc<Node>>,
    /// A team or customer the key names that does not exist (deleted): the key is unusable.
    pub missing_parent: Option<Level>,
    /// No level restricts models or providers: every target is allowed without checking.
    pub unrestricted: bool,
}

impl Principal {
    /// Key, team, customer: the levels that exist.
    pub fn levels(&self) -> impl Iterator<Item = &Arc<Node>> {
        std::iter::once(&self.key)
            .chain(self.team.as_ref())
            .chain(self.customer.as_ref())
    }

    pub fn has_budget(&self) -> bool {
        self.levels().any(|n| n.counters.budget.is_some())
    }
}

/// Hashes a digest by its first eight bytes: a SHA-256 digest is already uniform, so hashing it
/// again (SipHash) would only spend instructions on the request path.
#[derive(Default, Clone, Copy)]
pub struct DigestHash;

pub struct DigestHasher(u64);

impl BuildHasher for DigestHash {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(word);
    }
}

/// Everything governance knows, as of one rebuild.
/// A key's value as the in-memory cache holds it. Never printed.
#[derive(Clone, Eq)]
struct SeenKey(Box<[u8]>);

impl std::fmt::Debug for SeenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeenKey(<redacted>)")
    }
}

impl std::hash::Hash for SeenKey {
    /// As `[u8]` hashes, so a lookup by `&[u8]` finds it.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialEq for SeenKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && std::hint::black_box(
                self.0
                    .iter()
                    .zip(other.0.iter())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b)),
            ) == 0
    }
}

impl std::borrow::Borrow<[u8]> for SeenKey {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

/// Most keys the cache of this table holds (beyond it, keys are found by digest each time).
const SEEN_MAX: usize = 100_000;

#[derive(Debug, Default)]
pub struct Table {
    keys: HashMap<KeyDigest, Arc<Principal>, DigestHash>,
    /// Keys found by digest since this table was built, by value. SHA-256 in software is
    /// ~3,400 instructions, most of governance's cost per request; a hit here is a foldhash of
    /// the value (seeded per process, but not a keyed cryptographic hash: only keys that were
    /// found are ever inserted, so no client can fill the map or choose its collisions) and
    /// one shard's read lock. A lookup compares bytes only with entries whose hash matches,
    /// with the slice's ordinary (not constant-time) equality; the digest path behind it
    /// compares in constant time. The values stay in process memory only (like the
    /// provider keys; never printed); the table, and with it the cache, is replaced on every
    /// key change.
    seen: dashmap::DashMap<SeenKey, Arc<Principal>, foldhash::fast::RandomState>,
    /// Every entity by id (the admin API's view).
    pub entities: HashMap<String, Entity>,
    /// Every entity's node by id.
    pub nodes: HashMap<String, Arc<Node>>,
}

impl Table {
    /// The key with this digest (compared in constant time once found).
    pub fn find(&self, digest: &KeyDigest) -> Option<&Arc<Principal>> {
        self.keys
            .get_key_value(digest)
            .filter(|(k, _)| k.ct_eq(digest))
            .map(|(_, p)| p)
    }

    /// The key with this value: from the cache, or by its digest (then cached).
    pub fn find_value(&self, value: &[u8]) -> Option<Arc<Principal>> {
        if let Some(p) = self.seen.get(value) {
            return Some(Arc::clone(&p));
        }
        let found = Arc::clone(self.find(&KeyDigest::of_bytes(value))?);
        if self.seen.len() < SEEN_MAX {
            self.seen.insert(SeenKey(value.into()), Arc::clone(&found));
        }
        Some(found)
    }

    /// Builds the table from every entity. `counters` keeps counters across rebuilds (by id);
    /// `spent` gives the spend of a budget's current window for an entity seen for the first
    /// time (from the store), so a restart does not forget what was spent.
    pub fn build(
        entities: Vec<Entity>,
        counters: &dashmap::DashMap<String, Arc<Counters>>,
        spent: &HashMap<String, u64>,
        now: i64,
    ) -> Table {
        let mut nodes = HashMap::with_capacity(entities.len());
        for e in &entities {
            let c = counters_for(e, counters, spent, now);
            nodes.insert(
                e.id.clone(),
                Arc::new(Node {
                    id: Arc::from(e.id.as_str()),
                    level: e.level,
                    name: Arc::from(e.name.as_str()),
                    models: e.policy.models.clone().map(Vec::into_boxed_slice),
                    providers: e.policy.providers.clone().map(Vec::into_boxed_slice),
                    expires_at: e.policy.expires_at,
                    revoked: e.revoked_at.is_some(),
                    counters: c,
                }),
            );
        }
        // Counters of entities that are gone are dropped.
        counters.retain(|id, _| nodes.contains_key(id));
        let mut keys = HashMap::with_hasher(DigestHash);
        for e in entities.iter().filter(|e| e.level == Level::Key) {
            let (Some(digest), Some(key)) = (e.digest, nodes.get(&e.id)) else {
                continue;
            };
            let mut missing_parent = None;
            let team = e.team_id.as_ref().and_then(|id| {
                let t = nodes.get(id).filter(|n| n.level == Level::Team).cloned();
                if t.is_none() {
                    missing_parent = Some(Level::Team);
                }
                t
            });
            let customer_id = e.customer_id.as_ref().or_else(|| {
                e.team_id
                    .as_ref()
                    .and_then(|t| entities.iter().find(|x| &x.id == t))
                    .and_then(|t| t.customer_id.as_ref())
            });
            let customer = customer_id.and_then(|id| {
                let c = nodes
                    .get(id)
                    .filter(|n| n.level == Level::Customer)
                    .cloned();
                if c.is_none() {
                    missing_parent = Some(Level::Customer);
                }
                c
            });
            let unrestricted = [Some(key), team.as_ref(), customer.as_ref()]
                .into_iter()
                .flatten()
                .all(|n| n.models.is_none() && n.providers.is_none());
            keys.insert(
                digest,
                Arc::new(Principal {
                    key: Arc::clone(key),
                    team,
                    customer,
                    missing_parent,
                    unrestricted,
                }),
            );
        }
        Table {
            keys,
            seen: dashmap::DashMap::default(),
            entities: entities.into_iter().map(|e| (e.id.clone(), e)).collect(),
            nodes,
        }
    }
}

/// The entity's counters: the existing ones if made for the same settings; new ones otherwise,
/// carrying over the current window's spend when only the amount of the budget changed.
fn counters_for(
    e: &Entity,
    registry: &dashmap::DashMap<String, Arc<Counters>>,
    spent: &HashMap<String, u64>,
    now: i64,
) -> Arc<Counters> {
    let p: &AccessPolicy = &e.policy;
    let made_for = (p.budget, p.limits, Some(e.created_at));
    if let Some(existing) = registry.get(&e.id) {
        if existing.made_for == made_for {
            return Arc::clone(&existing);
        }
    }
    let budget = p.budget.map(|b| {
        let window = window_of(&b, e.created_at);
        let ledger = Ledger::new(b.usd, window);
        let carried = registry
            .get(&e.id)
            .and_then(|old| {
                let same_window = old
                    .made_for
                    .0
                    .is_some_and(|ob| window_of(&ob, e.created_at) == window);
                same_window.then(|| old.budget.as_ref().map(|l| l.used(now)))
            })
            .flatten()
            .or_else(|| spent.get(&e.id).copied())
            .unwrap_or(0);
        ledger.preload(now, carried);
        ledger
    });
    let c = Arc::new(Counters {
        budget,
        limits: Limits::new(LimitSettings {
            rpm: p.limits.rpm,
            tpm: p.limits.tpm,
            concurrency: p.limits.concurrency,
        }),
        made_for,
    });
    registry.insert(e.id.clone(), Arc::clone(&c));
    c
}
