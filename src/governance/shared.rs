//! Limits and budgets shared by several instances, in Redis: one Lua script checks every level
//! of a request (key, team, customer: requests and tokens per minute, requests in flight, the
//! budget's window) and, only if all admit it, takes them all — atomically, in one round trip
//! before the upstream call. What a request really used is settled afterwards by a background
//! task that sends the corrections in pipelines, so the response path never waits on Redis.
//!
//! Keys: `fg:{id}:rpm:{minute}`, `fg:{id}:tpm:{minute}` (expire after two minutes),
//! `fg:{id}:inflight` (a sorted set of request ids scored by when their slot lapses, so an
//! instance that dies cannot hold slots for ever), `fg:{id}:usd:{period}:{window}` (10⁻⁸ USD,
//! expires a minute after its window ends; started from the store's spend of the window when
//! Redis has none yet).

use std::sync::Arc;
use std::time::Duration;

use crossbeam_queue::SegQueue;
use redis::aio::ConnectionManager;

use super::budget::{Period, Window};
use super::table::Principal;

/// Round trips to Redis, by `phase`: one per request before its upstream call (`admit`), and
/// the settle task's pipelines (`settle`).
const ROUND_TRIPS: &str = "ferrogate_governance_redis_round_trips_total";

/// A slot in flight lapses after this long even if its release never arrives (a killed
/// instance): the longest a request may hold one.
pub const SLOT_LEASE_SECS: i64 = 600;

const ADMIT: &str = r#"
local now = tonumber(ARGV[1])
local member = ARGV[2]
local lease = tonumber(ARGV[3])
local n = #KEYS / 4
local function num(k) return tonumber(redis.call('GET', k) or '0') end
local function want(tokens, tpm) return math.max(1, math.min(tokens, math.max(tpm, 1))) end
-- Level i's eight numbers: rpm, tpm, tokens, concurrency, budget limit, units, budget start,
-- budget key expiry (-1: no such limit).
local function level(i)
  local a = 4 + i * 8
  local v = {}
  for j = 0, 7 do v[j + 1] = tonumber(ARGV[a + j]) end
  return unpack(v)
end
for i = 0, n - 1 do
  local k = i * 4
  local rpm, tpm, tokens, conc, blim, units, binit = level(i)
  if conc >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[k+3], '-inf', now)
    if redis.call('ZCARD', KEYS[k+3]) >= conc then return {i, 3, 0} end
  end
  if rpm >= 0 and num(KEYS[k+1]) + 1 > rpm then return {i, 1, 0} end
  if tpm >= 0 and num(KEYS[k+2]) + want(tokens, tpm) > tpm then return {i, 2, 0} end
  if blim >= 0 then
    local v = redis.call('GET', KEYS[k+4])
    local used = v and tonumber(v) or binit
    if used + units > blim then return {i, 4, blim - used} end
  end
end
local out = {-1, 0, 0}
-- What this request took can be settled once: the settle script deletes the marker first.
redis.call('SET', 'fg:adm:' .. member, 1, 'EX', 86400)
for i = 0, n - 1 do
  local k = i * 4
  local rpm, tpm, tokens, conc, blim, units, binit, bttl = level(i)
  if rpm >= 0 then
    local v = redis.call('INCR', KEYS[k+1])
    redis.call('EXPIRE', KEYS[k+1], 120)
    table.insert(out, rpm) table.insert(out, rpm - v)
  else
    table.insert(out, -1) table.insert(out, -1)
  end
  if tpm >= 0 then
    local v = redis.call('INCRBY', KEYS[k+2], want(tokens, tpm))
    redis.call('EXPIRE', KEYS[k+2], 120)
    table.insert(out, tpm) table.insert(out, tpm - v)
  else
    table.insert(out, -1) table.insert(out, -1)
  end
  if conc >= 0 then
    redis.call('ZADD', KEYS[k+3], now + lease, member)
    redis.call('EXPIRE', KEYS[k+3], lease)
  end
  if blim >= 0 then
    redis.call('SET', KEYS[k+4], binit, 'NX')
    redis.call('INCRBY', KEYS[k+4], units)
    if bttl > 0 then redis.call('EXPIRE', KEYS[k+4], bttl) end
  end
end
return out
"#;

/// Settles one admitted request, at most once: the admission left a marker
/// (`fg:adm:{member}`) and only the call that deletes it applies the corrections, so a
/// correction sent twice (a retry after a lost reply) or for an admission that never happened
/// (a refused or cancelled one) changes nothing. A window key that expired meanwhile is left
/// alone rather than recreated without an expiry.
const SETTLE: &str = r#"
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
local ni = tonumber(ARGV[1])
for i = 1, ni do
  if redis.call('EXISTS', KEYS[1 + i]) == 1 then redis.call('INCRBY', KEYS[1 + i], ARGV[2 + i]) end
end
for i = ni + 2, #KEYS do redis.call('ZREM', KEYS[i], ARGV[2]) end
return 1
"#;

/// The corrections of one request, sent after it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleOp {
    /// The request's admission id.
    pub member: String,
    /// Amounts to add (or take back): reservations replaced by what was really used.
    pub incr: Vec<(String, i64)>,
    /// In-flight sets to release the request's slot from.
    pub slots: Vec<String>,
}

/// The Redis side of governance.
pub struct Shared {
    conn: ConnectionManager,
    admit: redis::Script,
    settle_script: redis::Script,
    pending: SegQueue<SettleOp>,
    wake: tokio::sync::Notify,
}

/// What one level of an admitted request holds in Redis.
#[derive(Debug)]
pub struct SharedLevel {
    /// The tokens-per-minute key and what was reserved there.
    pub tokens: Option<(String, u64)>,
    /// The in-flight set and this request's member.
    pub slot: Option<(String, String)>,
    /// The budget key and the units reserved.
    pub budget: Option<(String, u64)>,
}

/// Why a request was refused, by level index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedRefusal {
    Requests(usize),
    Tokens(usize),
    Concurrency(usize),
    Budget(usize),
}

/// An admitted request: what it holds, and the tightest limits left per level
/// (`[(rpm limit, left), (tpm limit, left)]`, `-1` where none applies).
pub type Admitted = (String, Vec<SharedLevel>, Vec<[(i64, i64); 2]>);

/// Gives back an admission whose answer never arrived (the request was cancelled during the
/// round trip, or the reply was lost): settling is idempotent and a no-op for an admission
/// that did not happen, so releasing blindly is safe.
struct Unanswered<'a> {
    shared: &'a Shared,
    release: Option<SettleOp>,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if let Some(op) = self.release.take() {
            self.shared.settle([op]);
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the shared governance counters (Redis): {0}")]
pub struct SharedError(#[from] redis::RedisError);

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One settle script call in `pipe`.
fn add_op(pipe: &mut redis::Pipeline, sha: &str, op: &SettleOp) {
    let keys = 1 + op.incr.len() + op.slots.len();
    pipe.cmd("EVALSHA")
        .arg(sha)
        .arg(keys)
        .arg(format!("fg:adm:{}", op.member))
        .arg(op.incr.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
        .arg(&op.slots)
        .arg(op.incr.len())
        .arg(&op.member)
        .arg(op.incr.iter().map(|(_, d)| *d).collect::<Vec<_>>())
        .ignore();
}

fn window_tag(w: &Window) -> &'static str {
    match w.period {
        Period::Minute => "1m",
        Period::Hour => "1h",
        Period::Day => "1d",
        Period::Week => "7d",
        Period::Days30 => "30d",
        Period::Month => "1mo",
        Period::Total => "total",
    }
}

impl Shared {
    pub async fn connect(url: &str) -> Result<Arc<Shared>, SharedError> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new(client).await?;
        let shared = Arc::new(Shared {
            conn,
            admit: redis::Script::new(ADMIT),
            settle_script: redis::Script::new(SETTLE),
            pending: SegQueue::new(),
            wake: tokio::sync::Notify::new(),
        });
        // Load the scripts now, so the first request's EVALSHA finds them.
        shared.load_scripts().await?;
        Ok(shared)
    }

    /// Takes every level's limits and budget for a request expected to use `tokens` tokens
    /// and cost at most `units`: one round trip, which also carries the corrections queued
    /// since the settle task last ran (so a request never finds a budget still holding the
    /// reservation of one that already ended).
    pub async fn admit(
        &self,
        p: &Principal,
        tokens: u64,
        units: u64,
        now: i64,
    ) -> Result<Result<Admitted, SharedRefusal>, SharedError> {
        let member = format!("{:016x}", fastrand::u64(..));
        let minute = now.div_euclid(60);
        let mut keys: Vec<String> = Vec::with_capacity(12);
        let mut argv: Vec<i64> = Vec::with_capacity(24);
        let mut levels = Vec::with_capacity(3);
        for node in p.levels() {
            let c = &node.counters;
            let l = c.limit_config();
            let id = &node.id;
            let budget = c.budget.as_ref().map(|ledger| {
                let w = ledger.window();
                let (index, end) = w.at(now);
                let key = format!("fg:{id}:usd:{}:{index}", window_tag(w));
                // What the store says this window spent, when Redis does not know yet.
                let initial = ledger.used(now);
                let ttl = end.map_or(0, |e| (e - now).max(0) + 60);
                (key, ledger.limit(), initial, ttl)
            });
            let tpm_key = format!("fg:{id}:tpm:{minute}");
            let slot_key = format!("fg:{id}:inflight");
            keys.push(format!("fg:{id}:rpm:{minute}"));
            keys.push(tpm_key.clone());
            keys.push(slot_key.clone());
            keys.push(
                budget
                    .as_ref()
                    .map_or_else(|| "fg:-".to_string(), |b| b.0.clone()),
            );
            let opt = |v: Option<u64>| v.map_or(-1, clamp);
            argv.extend([
                opt(l.rpm),
                opt(l.tpm),
                clamp(tokens),
                opt(l.concurrency),
                opt(budget.as_ref().map(|b| b.1)),
                clamp(units),
                budget.as_ref().map_or(0, |b| clamp(b.2)),
                budget.as_ref().map_or(0, |b| b.3),
            ]);
            levels.push(SharedLevel {
                tokens: l.tpm.map(|tpm| (tpm_key, tokens.clamp(1, tpm.max(1)))),
                slot: l.concurrency.map(|_| (slot_key, member.clone())),
                budget: budget.map(|b| (b.0, units)),
            });
        }
        let script = |cmd: &str, first: &str| {
            let mut c = redis::cmd(cmd);
            c.arg(first)
                .arg(keys.len())
                .arg(&keys)
                .arg(now)
                .arg(&member)
                .arg(SLOT_LEASE_SECS)
                .arg(&argv);
            c
        };
        let mut release = SettleOp {
            member: member.clone(),
            incr: Vec::new(),
            slots: Vec::new(),
        };
        for l in &levels {
            release
                .incr
                .extend(l.budget.iter().map(|(k, u)| (k.clone(), -clamp(*u))));
            release
                .incr
                .extend(l.tokens.iter().map(|(k, t)| (k.clone(), -clamp(*t))));
            release.slots.extend(l.slot.iter().map(|(k, _)| k.clone()));
        }
        let mut guard = Unanswered {
            shared: self,
            release: Some(release),
        };
        let mut pipe = redis::pipe();
        let mut carried = Vec::new();
        let sha = self.settle_script.get_hash();
        while let Some(op) = self.pending.pop() {
            add_op(&mut pipe, sha, &op);
            carried.push(op);
        }
        pipe.add_command(script("EVALSHA", self.admit.get_hash()));
        let mut conn = self.conn.clone();
        // Looked up per use: this is made before the metrics recorder is installed.
        metrics::counter!(ROUND_TRIPS, "phase" => "admit").increment(1);
        let out: Vec<i64> = match pipe.query_async::<(Vec<i64>,)>(&mut conn).await {
            Ok((out,)) => out,
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // Redis restarted and lost the scripts: load them, send the corrections again
                // (settling is idempotent) and admit.
                self.load_scripts().await?;
                self.settle(carried);
                script("EVALSHA", self.admit.get_hash())
                    .query_async(&mut conn)
                    .await?
            }
            Err(e) => {
                // The corrections may or may not have been applied: settling is idempotent,
                // so the settle task sends them again.
                self.settle(carried);
                return Err(e.into());
            }
        };
        let level = |i: i64| usize::try_from(i).unwrap_or(0);
        if out.len() >= 3 {
            // Answered: admitted (the ticket settles it) or refused (nothing was taken).
            guard.release = None;
        }
        match out.as_slice() {
            [-1, _, _, rest @ ..] => {
                let left = rest
                    .chunks_exact(4)
                    .map(|c| [(c[0], c[1]), (c[2], c[3])])
                    .collect();
                Ok(Ok((member, levels, left)))
            }
            [i, 1, ..] => Ok(Err(SharedRefusal::Requests(level(*i)))),
            [i, 2, ..] => Ok(Err(SharedRefusal::Tokens(level(*i)))),
            [i, 3, ..] => Ok(Err(SharedRefusal::Concurrency(level(*i)))),
            [i, _, ..] => Ok(Err(SharedRefusal::Budget(level(*i)))),
            _ => Err(SharedError(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "a short answer from the admission script",
            )))),
        }
    }

    async fn load_scripts(&self) -> Result<(), SharedError> {
        let mut c = self.conn.clone();
        self.admit.prepare_invoke().load_async(&mut c).await?;
        self.settle_script
            .prepare_invoke()
            .load_async(&mut c)
            .await?;
        Ok(())
    }

    /// Queues corrections for the settle task (never waits).
    pub fn settle(&self, ops: impl IntoIterator<Item = SettleOp>) {
        for op in ops {
            self.pending.push(op);
        }
        self.wake.notify_one();
    }

    /// The current window's spend of a budget (admin API).
    pub async fn budget_used(
        &self,
        id: &str,
        w: &Window,
        now: i64,
    ) -> Result<Option<u64>, SharedError> {
        let (index, _) = w.at(now);
        let mut conn = self.conn.clone();
        let v: Option<u64> = redis::cmd("GET")
            .arg(format!("fg:{id}:usd:{}:{index}", window_tag(w)))
            .query_async(&mut conn)
            .await?;
        Ok(v)
    }

    /// Sends queued corrections in pipelines until the process ends; on an error, waits and
    /// tries the same batch again (a correction lost would hold budget until its window ends).
    pub fn spawn_settler(self: &Arc<Self>) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if me.pending.is_empty() {
                    me.wake.notified().await;
                }
                let mut batch = Vec::new();
                while let Some(op) = me.pending.pop() {
                    batch.push(op);
                    if batch.len() == 512 {
                        break;
                    }
                }
                while let Err(e) = me.send(&batch).await {
                    tracing::warn!(error = %e, "governance: settling in Redis failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    // A restarted Redis lost the scripts (settling twice is harmless).
                    let _ = me.load_scripts().await;
                }
            }
        });
    }

    async fn send(&self, batch: &[SettleOp]) -> Result<(), SharedError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for op in batch {
            add_op(&mut pipe, self.settle_script.get_hash(), op);
        }
        let mut conn = self.conn.clone();
        metrics::counter!(ROUND_TRIPS, "phase" => "settle").increment(1);
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Waits until every queued correction is sent (shutdown), at most `limit`.
    pub async fn drain(&self, limit: Duration) {
        let until = tokio::time::Instant::now() + limit;
        while !self.pending.is_empty() && tokio::time::Instant::now() < until {
            self.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
