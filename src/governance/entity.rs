//! What the store keeps about a key, team or customer: who it is, where it sits in the
//! hierarchy (customer → team → key) and its access policy. Never a key's value: a key is kept
//! as its digest and a short hint for people (`fg-…wXyz`).

use serde::{Deserialize, Serialize};

use super::keys::KeyDigest;
use crate::config::governance::{format_time, AccessPolicy};

/// A level of the hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Key,
    Team,
    Customer,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Key => "key",
            Level::Team => "team",
            Level::Customer => "customer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "key" => Level::Key,
            "team" => Level::Team,
            "customer" => Level::Customer,
            _ => return None,
        })
    }

    /// The prefix of this level's ids.
    pub fn id_prefix(self) -> &'static str {
        match self {
            Level::Key => "key_",
            Level::Team => "team_",
            Level::Customer => "cust_",
        }
    }
}

/// Where an entity was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `governance.keys` in the config file (changed by editing the file).
    Config,
    /// Created through the admin API (kept in the store).
    Admin,
}

/// A key, team or customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub id: String,
    pub level: Level,
    pub name: String,
    /// Keys only: the digest of the key's value.
    pub digest: Option<KeyDigest>,
    /// Keys only: `fg-…` and the value's last four characters, to tell keys apart.
    pub hint: Option<String>,
    pub team_id: Option<String>,
    pub customer_id: Option<String>,
    pub policy: AccessPolicy,
    /// Free-form JSON object given at creation (owner, purpose, …).
    pub metadata: serde_json::Value,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
    pub revoked_at: Option<i64>,
    pub origin: Origin,
}

/// The hint shown for a key value: its prefix and last four characters.
pub fn hint_of(value: &str) -> String {
    let tail: String = value
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("fg-…{tail}")
}

impl Entity {
    /// The entity as the admin API shows it (never a key's value or digest).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "id": self.id,
            "object": self.level.as_str(),
            "name": self.name,
            "models": self.policy.models,
            "providers": self.policy.providers,
            "budget": self.policy.budget,
            "limits": self.policy.limits,
            "expires_at": self.policy.expires_at.map(format_time),
            "metadata": self.metadata,
            "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at),
            "revoked_at": self.revoked_at.map(format_time),
            "source": match self.origin { Origin::Config => "config", Origin::Admin => "admin" },
        });
        if let Some(obj) = v.as_object_mut() {
            if self.level == Level::Key {
                obj.insert("key_hint".into(), self.hint.clone().into());
                obj.insert("team_id".into(), self.team_id.clone().into());
                obj.insert("customer_id".into(), self.customer_id.clone().into());
            } else if self.level == Level::Team {
                obj.insert("customer_id".into(), self.customer_id.clone().into());
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_shows_only_the_last_four_characters() {
        assert_eq!(hint_of("fg-abcdefghijklmnopqrstuvwxyz"), "fg-…wxyz");
    }

    #[test]
    fn the_json_view_never_holds_the_digest() {
        let e = Entity {
            id: "key_1".into(),
            level: Level::Key,
            name: "a".into(),
            digest: Some(KeyDigest([7; 32])),
            hint: Some("fg-…abcd".into()),
            team_id: None,
            customer_id: None,
            policy: AccessPolicy::default(),
            metadata: serde_json::Value::Null,
            created_at: 0,
            updated_at: 0,
            revoked_at: None,
            origin: Origin::Admin,
        };
        let text = e.to_json().to_string();
        assert!(text.contains("\"key_hint\":\"fg-…abcd\""), "{text}");
        assert!(!text.contains("0707"), "{text}");
        assert!(
            text.contains("\"created_at\":\"1970-01-01T00:00:00Z\""),
            "{text}"
        );
    }
}
