//! The `logs:` section: where request records are kept and for how long, and the JSON Lines
//! file they are also written to. Absent, the newest records are kept in memory (or, with
//! governance on, in the governance store).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::governance::StoreUrl;
use super::values as v;

/// Records kept in memory when nothing else is configured.
pub const DEFAULT_MEMORY_CAPACITY: usize = 10_000;
/// The most the memory store may keep (queries scan it under a lock).
pub const MAX_MEMORY_CAPACITY: usize = 100_000;
/// How long a database store keeps records by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// A JSON Lines file is rotated at this size by default.
pub const DEFAULT_FILE_MAX_SIZE: u64 = 100 << 20;
/// Rotated files kept beside the current one by default.
pub const DEFAULT_FILE_KEEP: u32 = 5;

/// The section as written.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct LogsFile {
    /// `memory`, `sqlite:PATH` or `postgres://…`.
    pub store: Option<String>,
    /// `30d`, `12h`, …: records older than this are deleted (database stores).
    pub retention: Option<String>,
    /// SQLite only: the oldest records are deleted while the file is larger.
    #[serde(deserialize_with = "v::opt_size")]
    pub max_size: Option<u64>,
    /// The memory store: how many records it keeps.
    #[serde(deserialize_with = "v::opt_positive")]
    pub capacity: Option<u64>,
    pub file: Option<FileSinkFile>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileSinkFile {
    pub path: Option<String>,
    #[serde(deserialize_with = "v::opt_size")]
    pub max_size: Option<u64>,
    pub keep: Option<u32>,
}

/// Where records are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogStoreUrl {
    /// The newest `capacity` records, in memory.
    Memory { capacity: usize },
    /// An SQLite file or a PostgreSQL database.
    Db(StoreUrl),
}

/// The section as validated (with defaults applied when it is absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsConfig {
    pub store: LogStoreUrl,
    /// Records older than this are deleted (database stores).
    pub retention: Duration,
    /// SQLite only: a size cap on the file.
    pub max_size: Option<u64>,
    pub file: Option<FileSinkConfig>,
}

/// A JSON Lines file of every record, rotated by size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSinkConfig {
    pub path: PathBuf,
    pub max_size: u64,
    /// Rotated files kept (`PATH.1` newest … `PATH.keep` oldest).
    pub keep: u32,
}

impl LogsConfig {
    /// No `logs:` section: memory, or the governance store when governance is on.
    pub fn default_for(governance: Option<&StoreUrl>) -> Self {
        LogsConfig {
            store: match governance {
                // An in-memory governance store keeps nothing across restarts anyway; an
                // in-memory database would only grow for the retention: the ring instead.
                Some(StoreUrl::SqliteMemory) | None => LogStoreUrl::Memory {
                    capacity: DEFAULT_MEMORY_CAPACITY,
                },
                Some(url) => LogStoreUrl::Db(url.clone()),
            },
            retention: DEFAULT_RETENTION,
            max_size: None,
            file: None,
        }
    }
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig::default_for(None)
    }
}

/// `30d`, `12h`, `90m`, `1w`: a retention of at least a minute.
pub fn parse_retention(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|_| format!("expected a duration such as `30d` or `12h`, got {text:?}"))?;
    if d < Duration::from_secs(60) {
        return Err("must be at least a minute".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retentions_read_as_durations_of_a_minute_or_more() {
        assert_eq!(
            parse_retention("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(
            parse_retention(" 12h").unwrap(),
            Duration::from_secs(43_200)
        );
        assert!(parse_retention("10s").is_err());
        assert!(parse_retention("forever").is_err());
    }
}
