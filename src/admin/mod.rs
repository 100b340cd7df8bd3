//! The admin API under `/admin/v1/` (keys, teams, customers, spend, audit) over the governor,
//! the request log's query routes (`logs`), and the `ferrogate keys` client of it (`client`). The server reads the request and writes
//! the answer; this module only decides it, so it holds no HTTP server types.
//!
//! Every route needs `Authorization: Bearer <master key>`, compared as SHA-256 digests in
//! constant time. Errors are OpenAI-shaped error objects. Documented in docs/admin-api.md
//! (and docs/openapi/admin-api.yaml).

pub mod client;
pub mod logs;
pub mod logs_client;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use crate::config::governance::{format_time, parse_time};
use crate::governance::entity::Level;
use crate::governance::keys::KeyDigest;
use crate::governance::{AdminError, CreateRequest, Governor, PatchRequest};

/// Largest admin request body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// An answer: status and JSON body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Reply {
    /// 403 with an OpenAI-shaped error.
    pub fn forbidden(message: &str) -> Reply {
        error(
            StatusCode::FORBIDDEN,
            "permission_error",
            "forbidden",
            message,
        )
    }

    /// 405 for a method a route does not take.
    pub fn method_not_allowed(method: &Method, path: &str) -> Reply {
        error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            &format!("{method} is not allowed on {path}"),
        )
    }
}

fn reply(status: StatusCode, v: &Value) -> Reply {
    Reply {
        status,
        body: Bytes::from(v.to_string()),
    }
}

fn error(status: StatusCode, kind: &str, code: &str, message: &str) -> Reply {
    reply(
        status,
        &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    )
}

fn bad_request(message: &str) -> Reply {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "invalid_request",
        message,
    )
}

/// The master key check every admin route makes: `Err` is the 401 to send.
pub fn authorize(g: &Governor, headers: &HeaderMap) -> Result<String, Reply> {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.get(..7)
                .filter(|s| s.eq_ignore_ascii_case("bearer "))
                .map(|_| v[7..].trim())
        });
    match presented {
        Some(k) if g.is_master(k) => Ok(actor(k)),
        _ => Err(error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_master_key",
            "The admin API needs `Authorization: Bearer <master key>` (governance.master_key).",
        )),
    }
}

/// Which admin credential acted, for the audit log: a digest prefix, never the key.
fn actor(master: &str) -> String {
    let d = KeyDigest::of(master);
    let hex: String = d.0[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("master:{hex}")
}

/// Answers one `/admin/v1/…` request (the caller checked the path prefix).
pub async fn handle(
    g: &Governor,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    let actor = match authorize(g, headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let rest = path.strip_prefix("/admin/v1/").unwrap_or("");
    let mut parts = rest.splitn(2, '/');
    let collection = parts.next().unwrap_or("");
    let id = parts.next().filter(|s| !s.is_empty());
    let level = match collection {
        "keys" => Some(Level::Key),
        "teams" => Some(Level::Team),
        "customers" => Some(Level::Customer),
        _ => None,
    };
    let not_allowed = || Reply::method_not_allowed(method, path);
    let result = match (level, id) {
        (Some(l), None) => match *method {
            Method::POST => create(g, l, body, &actor).await,
            Method::GET => Ok(list(g, l)),
            _ => return not_allowed(),
        },
        (Some(l), Some(id)) => match *method {
            Method::GET => get(g, l, id).await,
            Method::PATCH => patch(g, l, id, body, &actor).await,
            Method::DELETE => g
                .revoke(l, id, &actor)
                .await
                .map(|e| reply(StatusCode::OK, &e.to_json())),
            _ => return not_allowed(),
        },
        (None, None) if matches!(collection, "spend" | "audit") => {
            return match (*method == Method::GET, collection) {
                (false, _) => not_allowed(),
                (true, "spend") => spend(g, query).await,
                (true, _) => audit(g, query).await,
            };
        }
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found_error",
                "not_found",
                &format!("no admin route {method} {path}"),
            )
        }
    };
    match result {
        Ok(r) => r,
        Err(e) => admin_error(&e),
    }
}

fn admin_error(e: &AdminError) -> Reply {
    match e {
        AdminError::NotFound(m) => error(StatusCode::NOT_FOUND, "not_found_error", "not_found", m),
        AdminError::Invalid(m) => bad_request(m),
        AdminError::Conflict(m) => {
            error(StatusCode::CONFLICT, "invalid_request_error", "conflict", m)
        }
        AdminError::Shared(e) => {
            tracing::error!(error = %e, "admin: Redis failure");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "counters_unavailable",
                "The shared counters (Redis) cannot be reached.",
            )
        }
        AdminError::Store(e) => {
            tracing::error!(error = %e, "admin: store failure");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "store_unavailable",
                "The governance store failed; the change was not made.",
            )
        }
        AdminError::Random(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "random_source",
            &e.to_string(),
        ),
    }
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body).map_err(|e| AdminError::Invalid(format!("the JSON body: {e}")))
}

async fn create(g: &Governor, level: Level, body: &[u8], actor: &str) -> Result<Reply, AdminError> {
    let req: CreateRequest = json_body(body)?;
    let (e, key) = g.create(level, req, actor).await?;
    let mut v = e.to_json();
    if let (Some(key), Some(obj)) = (key, v.as_object_mut()) {
        obj.insert("key".into(), key.into());
    }
    Ok(reply(StatusCode::CREATED, &v))
}

fn list(g: &Governor, level: Level) -> Reply {
    let data: Vec<Value> = g.list(level).iter().map(|e| e.to_json()).collect();
    reply(StatusCode::OK, &json!({"object": "list", "data": data}))
}

async fn get(g: &Governor, level: Level, id: &str) -> Result<Reply, AdminError> {
    let e = g.get(level, id)?;
    let mut v = e.to_json();
    let spend = g
        .period_spend(id)
        .await?
        .map(|(usd, start)| json!({"usd": usd, "period_start": format_time(start)}));
    if let Some(obj) = v.as_object_mut() {
        obj.insert("spend".into(), spend.unwrap_or(Value::Null));
    }
    Ok(reply(StatusCode::OK, &v))
}

async fn patch(
    g: &Governor,
    level: Level,
    id: &str,
    body: &[u8],
    actor: &str,
) -> Result<Reply, AdminError> {
    let req: PatchRequest = json_body(body)?;
    let e = g.update(level, id, req, actor).await?;
    Ok(reply(StatusCode::OK, &e.to_json()))
}

/// `name=value` pairs of a query (values percent-decoded).
fn params(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

async fn spend(g: &Governor, query: Option<&str>) -> Reply {
    let now = crate::governance::gate::now_unix();
    let mut group = ("key", Level::Key, None);
    let (mut from, mut to, mut day) = (now - 30 * 86_400, now + 1, true);
    for (k, v) in params(query) {
        match k.as_str() {
            "group_by" => {
                group = match v.as_str() {
                    "key" => ("key", Level::Key, None),
                    "team" => ("team", Level::Team, None),
                    "customer" => ("customer", Level::Customer, None),
                    "model" => ("model", Level::Key, Some("model")),
                    "provider" => ("provider", Level::Key, Some("provider")),
                    _ => {
                        return bad_request(
                            "`group_by` must be one of key, team, customer, model, provider",
                        )
                    }
                }
            }
            "from" | "to" => match parse_time(&v) {
                Some(t) if k == "from" => from = t,
                Some(t) => to = t,
                None => {
                    return bad_request(&format!("`{k}` must be an RFC 3339 time or Unix seconds"))
                }
            },
            "granularity" => {
                day = match v.as_str() {
                    "day" => true,
                    "hour" => false,
                    _ => return bad_request("`granularity` must be hour or day"),
                }
            }
            _ => return bad_request(&format!("unknown parameter `{k}`")),
        }
    }
    // Hours are whole: `from` rounds down to its hour so the hour it falls in counts.
    let from_hour = from.div_euclid(3600) * 3600;
    match g.report(group.1, group.2, from_hour, to, day).await {
        Ok(rows) => {
            let data: Vec<Value> = rows
                .iter()
                .map(|r| {
                    json!({
                        "group": r.group,
                        "period": format_time(r.period),
                        "requests": r.requests,
                        "input_tokens": r.input_tokens,
                        "output_tokens": r.output_tokens,
                        "cached_tokens": r.cached_tokens,
                        "usd": r.units as f64 / crate::governance::budget::UNITS_PER_USD,
                        "unpriced_requests": r.unpriced,
                    })
                })
                .collect();
            reply(
                StatusCode::OK,
                &json!({"object": "list", "group_by": group.0, "data": data}),
            )
        }
        Err(e) => admin_error(&AdminError::Store(e)),
    }
}

async fn audit(g: &Governor, query: Option<&str>) -> Reply {
    let (mut after, mut limit) = (i64::MIN, 100);
    for (k, v) in params(query) {
        match (k.as_str(), v.parse::<i64>()) {
            ("after", Ok(n)) => after = n,
            ("limit", Ok(n)) if (1..=1000).contains(&n) => limit = n,
            ("after" | "limit", _) => {
                return bad_request("`after` is Unix microseconds; `limit` is 1 to 1000")
            }
            _ => return bad_request(&format!("unknown parameter `{k}`")),
        }
    }
    match g.audit(after, limit).await {
        Ok(entries) => {
            let data: Vec<Value> = entries
                .iter()
                .map(|a| {
                    json!({
                        "id": a.id,
                        "at": format_time(a.at.div_euclid(1_000_000)),
                        "at_us": a.at,
                        "actor": a.actor,
                        "action": a.action,
                        "object": a.object,
                        "object_id": a.object_id,
                        "detail": a.detail,
                    })
                })
                .collect();
            reply(StatusCode::OK, &json!({"object": "list", "data": data}))
        }
        Err(e) => admin_error(&AdminError::Store(e)),
    }
}
