//! Where keys, spend and the audit log live: an SQLite file (WAL; the embedded default) or
//! PostgreSQL, through sqlx's `Any` driver so one set of queries serves both. Never on the
//! request path: the admin API, the spend writer and the key sync use it.

use std::borrow::Cow;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row};

use super::entity::{Entity, Level, Origin};
use super::keys::KeyDigest;
use super::spend::SpendRow;
use crate::config::governance::{AccessPolicy, StoreUrl};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the governance store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the governance store's schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("a stored record is damaged: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Conflict(String),
}

const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "governance",
    include_str!("migrations/0001_governance.sql"),
)];

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    sqlite: bool,
}

/// One row of a spend report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReportRow {
    pub group: String,
    /// Start of the hour or day (Unix seconds).
    pub period: i64,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    pub units: i64,
    pub unpriced: i64,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: String,
    /// Unix microseconds.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub object_id: String,
    pub detail: serde_json::Value,
}

impl Store {
    /// Opens (creating an SQLite file if missing) and brings the schema up to date.
    pub async fn open(url: &StoreUrl) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (text, sqlite, max) = match url {
            StoreUrl::Sqlite(path) => (format!("sqlite://{}?mode=rwc", path.display()), true, 4),
            // One connection: each connection to `:memory:` is a database of its own.
            StoreUrl::SqliteMemory => ("sqlite::memory:".to_string(), true, 1),
            StoreUrl::Postgres(u) => (u.clone(), false, 8),
        };
        let memory = matches!(url, StoreUrl::SqliteMemory);
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .min_connections(u32::from(memory))
            .idle_timeout((!memory).then(|| std::time::Duration::from_secs(600)))
            .max_lifetime((!memory).then(|| std::time::Duration::from_secs(1800)))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // WAL: readers never wait on the writer; a busy writer is waited for.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&text)
            .await?;
        let migrator = Migrator {
            migrations: Cow::Owned(
                MIGRATIONS
                    .iter()
                    .map(|(v, d, sql)| {
                        Migration::new(
                            *v,
                            Cow::Borrowed(*d),
                            MigrationType::Simple,
                            Cow::Borrowed(*sql),
                            false,
                        )
                    })
                    .collect(),
            ),
            ..Migrator::DEFAULT
        };
        migrator.run(&pool).await?;
        Ok(Store { pool, sqlite })
    }

    /// `$1`-style placeholders as the backend spells them (`?1` for SQLite).
    fn sql<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.sqlite {
            Cow::Owned(text.replace('$', "?"))
        } else {
            Cow::Borrowed(text)
        }
    }

    /// Every key, team and customer created through the admin API (revoked ones included).
    pub async fn entities(&self) -> Result<Vec<Entity>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, level, name, key_hash, key_hint, team_id, customer_id, policy, metadata, \
             created_at, updated_at, revoked_at FROM entities",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entity_of).collect()
    }

    pub async fn insert(&self, e: &Entity, actor: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let q = self.sql(
            "INSERT INTO entities (id, level, name, key_hash, key_hint, team_id, customer_id, \
             policy, metadata, created_at, updated_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        );
        sqlx::query(&q)
            .bind(e.id.clone())
            .bind(e.level.as_str())
            .bind(e.name.clone())
            .bind(e.digest.map(|d| hex(&d.0)))
            .bind(e.hint.clone())
            .bind(e.team_id.clone())
            .bind(e.customer_id.clone())
            .bind(policy_text(&e.policy)?)
            .bind(e.metadata.to_string())
            .bind(e.created_at)
            .bind(e.updated_at)
            .bind(e.revoked_at)
            .execute(&mut *tx)
            .await?;
        self.audit_in(&mut tx, actor, "create", e).await?;
        self.bump(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes an entity's changed fields (`action`: "update" or "revoke").
    pub async fn update(&self, e: &Entity, actor: &str, action: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let q = self.sql(
            "UPDATE entities SET name = $1, team_id = $2, customer_id = $3, policy = $4, \
             metadata = $5, updated_at = $6, revoked_at = $7 WHERE id = $8",
        );
        let done = sqlx::query(&q)
            .bind(e.name.clone())
            .bind(e.team_id.clone())
            .bind(e.customer_id.clone())
            .bind(policy_text(&e.policy)?)
            .bind(e.metadata.to_string())
            .bind(e.updated_at)
            .bind(e.revoked_at)
            .bind(e.id.clone())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "no {} {}",
                e.level.as_str(),
                e.id
            )));
        }
        self.audit_in(&mut tx, actor, action, e).await?;
        self.bump(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        actor: &str,
        action: &str,
        e: &Entity,
    ) -> Result<(), StoreError> {
        let at = now_micros();
        let q = self.sql(
            "INSERT INTO audit (id, at, actor, action, object, object_id, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        );
        sqlx::query(&q)
            .bind(format!("aud_{at}_{}", fastrand::u32(..)))
            .bind(at)
            .bind(actor.to_string())
            .bind(action.to_string())
            .bind(e.level.as_str())
            .bind(e.id.clone())
            .bind(e.to_json().to_string())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn bump(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<(), StoreError> {
        sqlx::query("UPDATE meta SET value = value + 1 WHERE name = 'revision'")
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Grows with every admin change: an instance that sees it move reloads the keys.
    pub async fn revision(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT value FROM meta WHERE name = 'revision'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Adds a batch of spend rows (one transaction).
    pub async fn write_spend(&self, rows: &[SpendRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let q = self.sql(
            "INSERT INTO spend (hour, key_id, team_id, customer_id, model, provider, requests, \
             input_tokens, output_tokens, cached_tokens, units, unpriced) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (hour, key_id, team_id, customer_id, model, provider) DO UPDATE SET \
             requests = spend.requests + excluded.requests, \
             input_tokens = spend.input_tokens + excluded.input_tokens, \
             output_tokens = spend.output_tokens + excluded.output_tokens, \
             cached_tokens = spend.cached_tokens + excluded.cached_tokens, \
             units = spend.units + excluded.units, \
             unpriced = spend.unpriced + excluded.unpriced",
        );
        let mut tx = self.pool.begin().await?;
        for r in rows {
            sqlx::query(&q)
                .bind(r.hour)
                .bind(r.key_id.to_string())
                .bind(r.team_id.as_deref().unwrap_or("").to_string())
                .bind(r.customer_id.as_deref().unwrap_or("").to_string())
                .bind(r.model.to_string())
                .bind(r.provider().to_string())
                .bind(as_i64(r.requests))
                .bind(as_i64(r.input_tokens))
                .bind(as_i64(r.output_tokens))
                .bind(as_i64(r.cached_tokens))
                .bind(as_i64(r.units))
                .bind(as_i64(r.unpriced))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Spend (10⁻⁸ USD) of a key, team or customer since `since` (Unix seconds, a whole hour).
    pub async fn spent_since(&self, level: Level, id: &str, since: i64) -> Result<u64, StoreError> {
        let column = group_column(level);
        let text = format!(
            "SELECT CAST(COALESCE(SUM(units), 0) AS BIGINT) FROM spend WHERE {column} = $1 AND hour >= $2"
        );
        let q = self.sql(&text);
        let row = sqlx::query(&q)
            .bind(id.to_string())
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0))
    }

    /// Spend grouped by `group` (a column), per hour or day, for hours in `[from, to)`.
    pub async fn report(
        &self,
        group: &str,
        from: i64,
        to: i64,
        day: bool,
    ) -> Result<Vec<ReportRow>, StoreError> {
        let period = if day {
            "(hour / 86400) * 86400"
        } else {
            "hour"
        };
        let text = format!(
            "SELECT {group} AS g, {period} AS p, \
             CAST(SUM(requests) AS BIGINT), CAST(SUM(input_tokens) AS BIGINT), \
             CAST(SUM(output_tokens) AS BIGINT), CAST(SUM(cached_tokens) AS BIGINT), \
             CAST(SUM(units) AS BIGINT), CAST(SUM(unpriced) AS BIGINT) \
             FROM spend WHERE hour >= $1 AND hour < $2 GROUP BY {group}, {period} ORDER BY 2, 1"
        );
        let q = self.sql(&text);
        let rows = sqlx::query(&q)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ReportRow {
                    group: r.try_get(0)?,
                    period: r.try_get(1)?,
                    requests: r.try_get(2)?,
                    input_tokens: r.try_get(3)?,
                    output_tokens: r.try_get(4)?,
                    cached_tokens: r.try_get(5)?,
                    units: r.try_get(6)?,
                    unpriced: r.try_get(7)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Audit entries after `after` (Unix microseconds), oldest first, at most `limit`.
    pub async fn audit(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let q = self.sql(
            "SELECT id, at, actor, action, object, object_id, detail FROM audit \
             WHERE at > $1 ORDER BY at, id LIMIT $2",
        );
        let rows = sqlx::query(&q)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let detail: String = r.try_get(6)?;
                Ok(AuditEntry {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    action: r.try_get(3)?,
                    object: r.try_get(4)?,
                    object_id: r.try_get(5)?,
                    detail: serde_json::from_str(&detail)
                        .map_err(|e| StoreError::Corrupt(format!("audit detail: {e}")))?,
                })
            })
            .collect()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The spend column that holds a level's id.
pub fn group_column(level: Level) -> &'static str {
    match level {
        Level::Key => "key_id",
        Level::Team => "team_id",
        Level::Customer => "customer_id",
    }
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn policy_text(p: &AccessPolicy) -> Result<String, StoreError> {
    serde_json::to_string(p).map_err(|e| StoreError::Corrupt(format!("policy: {e}")))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn entity_of(r: &AnyRow) -> Result<Entity, StoreError> {
    let level: String = r.try_get("level")?;
    let id: String = r.try_get("id")?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("{what} of {id}"));
    let level = Level::parse(&level).ok_or_else(|| corrupt("level"))?;
    let digest = match r.try_get::<Option<String>, _>("key_hash")? {
        Some(h) => Some(KeyDigest(unhex(&h).ok_or_else(|| corrupt("key hash"))?)),
        None => None,
    };
    let policy: String = r.try_get("policy")?;
    let metadata: String = r.try_get("metadata")?;
    Ok(Entity {
        level,
        name: r.try_get("name")?,
        digest,
        hint: r.try_get("key_hint")?,
        team_id: r.try_get("team_id")?,
        customer_id: r.try_get("customer_id")?,
        policy: serde_json::from_str(&policy).map_err(|_| corrupt("policy"))?,
        metadata: serde_json::from_str(&metadata).map_err(|_| corrupt("metadata"))?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        revoked_at: r.try_get("revoked_at")?,
        origin: Origin::Admin,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip_through_hex() {
        let d = [0xab; 32];
        assert_eq!(unhex(&hex(&d)), Some(d));
        assert_eq!(unhex("zz"), None);
    }
}
