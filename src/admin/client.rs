//! `ferrogate keys`: create, list and revoke virtual keys through a running gateway's admin
//! API (`/admin/v1/keys`, see `docs/admin-api.md`), as a person or a script would with curl.
//!
//! The gateway's URL comes from `--url`, else `FERROGATE_URL`, else `http://127.0.0.1:8080`;
//! the master key only from `FERROGATE_MASTER_KEY` (an argument would show in `ps` and in shell
//! history). Must never: print the master key, or print a new key anywhere but stdout.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Map, Value};

/// Where the master key is read from.
pub const MASTER_KEY_ENV: &str = "FERROGATE_MASTER_KEY";
/// Where the gateway's URL is read from when `--url` is not given.
pub const URL_ENV: &str = "FERROGATE_URL";
/// The gateway's URL when neither `--url` nor `FERROGATE_URL` is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// How long one admin call may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The budget periods the gateway knows (`BudgetPeriod` in `config::governance`).
const PERIODS: [&str; 6] = ["1h", "1d", "7d", "30d", "1mo", "total"];

/// `ferrogate keys …`
// Parsed once per process: boxing `CreateArgs` would save nothing that matters.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a virtual key and print it (it is shown this once).
    Create(CreateArgs),
    /// List the keys, revoked ones included.
    List(ListArgs),
    /// Revoke a key: it stops working on the gateway's next request.
    Revoke(RevokeArgs),
}

/// Which gateway to talk to (every `keys` command takes it).
#[derive(Debug, Clone, Default, Args)]
pub struct GatewayArgs {
    /// The gateway's base URL [default: $FERROGATE_URL, else http://127.0.0.1:8080].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

/// `ferrogate keys create`
#[derive(Debug, Clone, Default, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub gateway: GatewayArgs,
    /// A name for people (who or what uses the key).
    #[arg(long)]
    pub name: String,
    /// A model the key may use (a glob, e.g. `gpt-4o*`); repeat for several. Default: all.
    #[arg(long = "model", value_name = "GLOB")]
    pub models: Vec<String>,
    /// A provider the key may use (an id or glob); repeat for several. Default: all.
    #[arg(long = "provider", value_name = "ID")]
    pub providers: Vec<String>,
    /// The team the key belongs to (`team_…`).
    #[arg(long)]
    pub team_id: Option<String>,
    /// The customer the key belongs to (`cust_…`).
    #[arg(long)]
    pub customer_id: Option<String>,
    /// A spending limit in USD per budget period.
    #[arg(long, value_name = "USD", value_parser = parse_usd)]
    pub budget_usd: Option<f64>,
    /// The budget period.
    #[arg(long, value_name = "PERIOD", default_value = "1d", value_parser = PERIODS)]
    pub budget_period: String,
    /// Budget windows run from the hour the key was created instead of UTC calendar
    /// boundaries (`1mo` is always a calendar month).
    #[arg(long, requires = "budget_usd")]
    pub rolling: bool,
    /// Requests per minute.
    #[arg(long)]
    pub rpm: Option<u64>,
    /// Tokens per minute.
    #[arg(long)]
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub concurrency: Option<u64>,
    /// When the key stops working: RFC 3339 (`2027-01-31T00:00:00Z`) or Unix seconds.
    #[arg(long, value_name = "TIME")]
    pub expires_at: Option<String>,
    /// Print the gateway's whole JSON answer (the key included).
    #[arg(long)]
    pub json: bool,
}

/// `ferrogate keys list`
#[derive(Debug, Clone, Default, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub gateway: GatewayArgs,
    /// Print the gateway's JSON answer.
    #[arg(long)]
    pub json: bool,
}

/// `ferrogate keys revoke ID`
#[derive(Debug, Clone, Default, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub gateway: GatewayArgs,
    /// The key's id (`key_…`), as `keys list` shows it.
    pub id: String,
}

/// Runs one `keys` command against the gateway.
pub async fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create(args) => {
            let api = Api::new(&args.gateway)?;
            let answer = api
                .call(Method::POST, "/admin/v1/keys", Some(create_body(&args)))
                .await?;
            if args.json {
                return emit(&pretty(&answer)?);
            }
            let key = answer
                .get("key")
                .and_then(Value::as_str)
                .context("the gateway's answer holds no `key`")?;
            emit(&format!("{key}\nid: {}\n", text(&answer, "id")))?;
            eprintln!("This key is shown once: the gateway keeps only its digest. Store it now.");
            Ok(())
        }
        KeysCommand::List(args) => {
            let api = Api::new(&args.gateway)?;
            let answer = api.call(Method::GET, "/admin/v1/keys", None).await?;
            if args.json {
                return emit(&pretty(&answer)?);
            }
            let keys = answer
                .get("data")
                .and_then(Value::as_array)
                .context("the gateway's answer holds no `data` list")?;
            emit(&list_lines(keys))
        }
        KeysCommand::Revoke(args) => {
            let api = Api::new(&args.gateway)?;
            let path = format!("/admin/v1/keys/{}", path_segment(&args.id));
            let answer = api.call(Method::DELETE, &path, None).await?;
            emit(&format!("revoked {}\n", text(&answer, "id")))
        }
    }
}

/// The JSON body of `POST /admin/v1/keys` for `args`: only what was given, so the gateway's
/// defaults apply to the rest.
pub fn create_body(args: &CreateArgs) -> Value {
    let mut body = Map::new();
    body.insert("name".into(), json!(args.name));
    if let Some(team) = &args.team_id {
        body.insert("team_id".into(), json!(team));
    }
    if let Some(customer) = &args.customer_id {
        body.insert("customer_id".into(), json!(customer));
    }
    if !args.models.is_empty() {
        body.insert("models".into(), json!(args.models));
    }
    if !args.providers.is_empty() {
        body.insert("providers".into(), json!(args.providers));
    }
    if let Some(usd) = args.budget_usd {
        body.insert(
            "budget".into(),
            json!({
                "usd": usd,
                "period": args.budget_period,
                "calendar_aligned": !args.rolling,
            }),
        );
    }
    let mut limits = Map::new();
    for (field, value) in [
        ("rpm", args.rpm),
        ("tpm", args.tpm),
        ("concurrency", args.concurrency),
    ] {
        if let Some(n) = value {
            limits.insert(field.into(), json!(n));
        }
    }
    if !limits.is_empty() {
        body.insert("limits".into(), Value::Object(limits));
    }
    if let Some(t) = &args.expires_at {
        // Unix seconds go as a number, anything else as the string the gateway parses.
        let value = t
            .trim()
            .parse::<i64>()
            .map_or_else(|_| json!(t), |n| json!(n));
        body.insert("expires_at".into(), value);
    }
    Value::Object(body)
}

/// The gateway's admin API: its base URL, the master key and an HTTP(S) client.
struct Api {
    base: String,
    /// `Bearer <master key>`, marked sensitive.
    auth: HeaderValue,
    client: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        CliBody,
    >,
}

/// The request body type of this client. Deliberately not the gateway's upstream body type
/// (`Full<Bytes>`): with the same connection and body types, hyper's client dispatcher would
/// be one generic instantiation shared with the request path, and LLVM stops inlining it into
/// the upstream connection task there (measured: +3.4k instructions per streamed request).
type CliBody = Full<std::io::Cursor<Vec<u8>>>;

impl Api {
    fn new(gateway: &GatewayArgs) -> anyhow::Result<Api> {
        let base = base_url(gateway.url.as_deref(), std::env::var(URL_ENV).ok());
        let master = match std::env::var(MASTER_KEY_ENV) {
            Ok(k) if !k.trim().is_empty() => k,
            Ok(_) | Err(std::env::VarError::NotPresent) => bail!(
                "{MASTER_KEY_ENV} is not set: set it to the gateway's master key \
                 (governance.master_key in its config)"
            ),
            Err(std::env::VarError::NotUnicode(_)) => {
                bail!("{MASTER_KEY_ENV} is not valid UTF-8")
            }
        };
        // The header value's error does not echo the value.
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", master.trim()))
            .with_context(|| format!("{MASTER_KEY_ENV} holds characters a header cannot"))?;
        auth.set_sensitive(true);
        // Explicit provider, as in `upstream`: another crate may enable a second rustls backend.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .context("setting up TLS")?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(Api { base, auth, client })
    }

    /// One call: `method path` with an optional JSON body; the JSON answer of a 2xx, else the
    /// gateway's error message as the error.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("`{}` is not a valid URL", self.base))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            bail!("`{}` must start with http:// or https://", self.base);
        }
        let bytes = match body {
            Some(v) => serde_json::to_vec(&v)?,
            None => Vec::new(),
        };
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, self.auth.clone())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(std::io::Cursor::new(bytes)))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .with_context(|| format!("could not reach the gateway at {}", self.base))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .context("reading the gateway's answer")?
                .to_bytes();
            anyhow::Ok((status, body))
        };
        let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| {
                anyhow::anyhow!("no answer from {} within {}s", self.base, TIMEOUT.as_secs())
            })??;
        if !status.is_success() {
            bail!("{}", error_message(status, &body));
        }
        serde_json::from_slice(&body).with_context(|| format!("{url} did not answer JSON"))
    }
}

/// `--url`, else `FERROGATE_URL`, else the default; without a trailing `/`.
pub(crate) fn base_url(flag: Option<&str>, env: Option<String>) -> String {
    let url = match (flag, env) {
        (Some(u), _) => u.to_string(),
        (None, Some(u)) if !u.trim().is_empty() => u,
        _ => DEFAULT_URL.to_string(),
    };
    url.trim().trim_end_matches('/').to_string()
}

/// What to say about a non-2xx answer: the status and the gateway's `error.message` (or the
/// start of the body when it is not the gateway's error shape).
pub(crate) fn error_message(status: StatusCode, body: &[u8]) -> String {
    let message = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        v.pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let message = message.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        text.trim().chars().take(300).collect()
    });
    if message.is_empty() {
        format!("the gateway answered {status}")
    } else {
        format!("the gateway answered {status}: {message}")
    }
}

/// One line per key, columns aligned: id, name, key hint, active or revoked, budget.
fn list_lines(keys: &[Value]) -> String {
    let rows: Vec<[String; 5]> = keys
        .iter()
        .map(|k| {
            let state = if k.get("revoked_at").is_some_and(|r| !r.is_null()) {
                "revoked"
            } else {
                "active"
            };
            [
                text(k, "id"),
                text(k, "name"),
                text(k, "key_hint"),
                state.to_string(),
                budget_text(k.get("budget")),
            ]
        })
        .collect();
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', w - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `$10/1d`, `$10/1d rolling`, or `no budget`.
fn budget_text(budget: Option<&Value>) -> String {
    let Some(b) = budget.filter(|b| !b.is_null()) else {
        return "no budget".to_string();
    };
    let usd = b
        .get("usd")
        .and_then(Value::as_f64)
        .map_or_else(|| "?".to_string(), |x| x.to_string());
    let period = b.get("period").and_then(Value::as_str).unwrap_or("?");
    let rolling = b.get("calendar_aligned").and_then(Value::as_bool) == Some(false);
    format!("${usd}/{period}{}", if rolling { " rolling" } else { "" })
}

/// A string field, or `-` when absent or not a string.
fn text(v: &Value, field: &str) -> String {
    v.get(field)
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_string()
}

/// An id as one URL path segment (ids are `key_…` in practice; a config-declared key's
/// `cfg_<name>` may hold any character).
fn path_segment(id: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(id, KEEP).to_string()
}

fn pretty(v: &Value) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(v)? + "\n")
}

/// Writes `text` to stdout in one write, so `| head -1` gets the whole first line and a reader
/// that has gone away is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// A `--budget-usd` value: a finite number ≥ 0.
fn parse_usd(s: &str) -> Result<f64, String> {
    match s.trim().trim_start_matches('$').parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("`{s}` is not an amount in USD (a number ≥ 0)")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        keys: KeysCommand,
    }

    fn create(args: &[&str]) -> CreateArgs {
        let argv = ["ferrogate-keys", "create"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().keys {
            KeysCommand::Create(a) => a,
            _ => panic!("not create"),
        }
    }

    #[test]
    fn a_name_alone_sends_only_the_name() {
        let body = create_body(&create(&["--name", "ci"]));
        assert_eq!(body, json!({"name": "ci"}));
    }

    #[test]
    fn every_flag_lands_in_its_field() {
        let args = create(&[
            "--name",
            "bot",
            "--model",
            "gpt-4o*",
            "--model",
            "claude-*",
            "--provider",
            "openai",
            "--team-id",
            "team_1",
            "--customer-id",
            "cust_1",
            "--budget-usd",
            "12.5",
            "--budget-period",
            "1mo",
            "--rpm",
            "60",
            "--tpm",
            "100000",
            "--concurrency",
            "4",
            "--expires-at",
            "2027-01-31T00:00:00Z",
        ]);
        assert_eq!(
            create_body(&args),
            json!({
                "name": "bot",
                "team_id": "team_1",
                "customer_id": "cust_1",
                "models": ["gpt-4o*", "claude-*"],
                "providers": ["openai"],
                "budget": {"usd": 12.5, "period": "1mo", "calendar_aligned": true},
                "limits": {"rpm": 60, "tpm": 100000, "concurrency": 4},
                "expires_at": "2027-01-31T00:00:00Z",
            })
        );
    }

    #[test]
    fn the_budget_period_defaults_to_a_day_and_rolling_turns_off_calendar_alignment() {
        let body = create_body(&create(&["--name", "a", "--budget-usd", "5", "--rolling"]));
        assert_eq!(
            body["budget"],
            json!({"usd": 5.0, "period": "1d", "calendar_aligned": false})
        );
    }

    #[test]
    fn unix_seconds_are_sent_as_a_number_and_one_limit_alone_as_itself() {
        let body = create_body(&create(&[
            "--name",
            "a",
            "--expires-at",
            "1800000000",
            "--rpm",
            "0",
        ]));
        assert_eq!(body["expires_at"], json!(1_800_000_000));
        assert_eq!(body["limits"], json!({"rpm": 0}));
    }

    #[test]
    fn the_gateway_accepts_every_body_the_cli_builds() {
        for args in [
            create(&["--name", "a"]),
            create(&[
                "--name",
                "b",
                "--model",
                "m",
                "--provider",
                "p",
                "--budget-usd",
                "1",
                "--budget-period",
                "total",
                "--rolling",
                "--rpm",
                "1",
                "--tpm",
                "2",
                "--concurrency",
                "3",
                "--expires-at",
                "1800000000",
            ]),
            create(&["--name", "c", "--expires-at", "2027-01-31T00:00:00Z"]),
        ] {
            let body = create_body(&args);
            let parsed: crate::governance::CreateRequest =
                serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(parsed.name, args.name);
        }
    }

    #[test]
    fn bad_flags_are_refused_before_any_call() {
        let parse =
            |args: &[&str]| Cli::try_parse_from(["k", "create"].iter().chain(args)).map(|_| ());
        assert!(parse(&[]).is_err(), "--name is required");
        assert!(parse(&["--name", "a", "--budget-usd", "-1"]).is_err());
        assert!(parse(&["--name", "a", "--budget-usd", "NaN"]).is_err());
        assert!(parse(&["--name", "a", "--budget-usd", "1", "--budget-period", "2d"]).is_err());
        assert!(
            parse(&["--name", "a", "--rolling"]).is_err(),
            "--rolling needs a budget"
        );
        assert!(parse(&["--name", "a", "--concurrency", "0"]).is_err());
        assert!(parse(&["--name", "a", "--budget-period", "7d"]).is_ok());
    }

    #[test]
    fn list_and_revoke_take_the_url_and_revoke_the_id() {
        let cli = Cli::try_parse_from(["k", "revoke", "key_abc", "--url", "https://gw"]).unwrap();
        let KeysCommand::Revoke(r) = cli.keys else {
            panic!("not revoke")
        };
        assert_eq!(
            (r.id.as_str(), r.gateway.url.as_deref()),
            ("key_abc", Some("https://gw"))
        );
        let cli = Cli::try_parse_from(["k", "list", "--json"]).unwrap();
        let KeysCommand::List(l) = cli.keys else {
            panic!("not list")
        };
        assert!(l.json && l.gateway.url.is_none());
    }

    #[test]
    fn the_url_comes_from_the_flag_then_the_environment_then_the_default() {
        assert_eq!(
            base_url(Some("http://a:1/"), Some("http://b".into())),
            "http://a:1"
        );
        assert_eq!(base_url(None, Some("https://b/gw/".into())), "https://b/gw");
        assert_eq!(base_url(None, Some(" ".into())), DEFAULT_URL);
        assert_eq!(base_url(None, None), DEFAULT_URL);
    }

    #[test]
    fn errors_show_the_status_and_the_gateways_message() {
        let body = br#"{"error":{"message":"invalid master key","type":"authentication_error","code":"invalid_master_key"}}"#;
        assert_eq!(
            error_message(StatusCode::UNAUTHORIZED, body),
            "the gateway answered 401 Unauthorized: invalid master key"
        );
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, b"upstream down\n"),
            "the gateway answered 502 Bad Gateway: upstream down"
        );
        assert_eq!(
            error_message(StatusCode::NOT_FOUND, b""),
            "the gateway answered 404 Not Found"
        );
    }

    #[test]
    fn list_lines_align_columns_and_say_revoked_or_active() {
        let keys = [
            json!({"id": "key_1", "name": "ci", "key_hint": "fg-…abcd", "revoked_at": null,
                   "budget": {"usd": 10.0, "period": "1d", "calendar_aligned": true}}),
            json!({"id": "cfg_batch", "name": "batch jobs", "key_hint": "fg-…wxyz",
                   "revoked_at": "2026-01-01T00:00:00Z",
                   "budget": {"usd": 2.5, "period": "7d", "calendar_aligned": false}}),
            json!({"id": "key_3", "name": "x", "key_hint": "fg-…0000", "revoked_at": null,
                   "budget": null}),
        ];
        assert_eq!(
            list_lines(&keys),
            "key_1      ci          fg-…abcd  active   $10/1d\n\
             cfg_batch  batch jobs  fg-…wxyz  revoked  $2.5/7d rolling\n\
             key_3      x           fg-…0000  active   no budget\n"
        );
    }

    #[test]
    fn ids_are_sent_as_one_path_segment() {
        assert_eq!(path_segment("key_AbC9"), "key_AbC9");
        assert_eq!(path_segment("cfg_a/b c"), "cfg_a%2Fb%20c");
    }
}
