//! `ferrogate logs tail` (a live, one-line-per-request view from `/admin/v1/logs/stream`) and
//! `ferrogate logs show REQUEST_ID` (one record, pretty JSON), against a running gateway.
//!
//! The gateway's URL comes from `--url`, else `FERROGATE_URL`, else `http://127.0.0.1:8080`;
//! the master key from `FERROGATE_MASTER_KEY` when set (a gateway without governance answers
//! loopback clients without one). Colours only on a terminal, and never with `NO_COLOR`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::client::{base_url, error_message, GatewayArgs, MASTER_KEY_ENV, URL_ENV};
use crate::sse::{name_and_data, SseSplitter};

/// How long connecting and the answer's head may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// `ferrogate logs …`
#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Follow requests as they finish, one line each.
    Tail(TailArgs),
    /// Print one request's record.
    Show(ShowArgs),
}

#[derive(Debug, Clone, Default, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub gateway: GatewayArgs,
    /// Only requests for this model (as the client named it).
    #[arg(long)]
    pub model: Option<String>,
    /// Only requests served by this target (`provider/model`).
    #[arg(long)]
    pub target: Option<String>,
    /// Only requests with this virtual key (its id).
    #[arg(long)]
    pub key: Option<String>,
    /// Only failed requests (status ≥ 400, or the client left).
    #[arg(long)]
    pub errors: bool,
    /// Print each record as a JSON line instead.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub gateway: GatewayArgs,
    /// The request id (`x-request-id`).
    pub request_id: String,
}

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<bytes::Bytes>,
>;

pub async fn run(cmd: LogsCommand) -> anyhow::Result<()> {
    match cmd {
        LogsCommand::Tail(args) => tail(&args).await,
        LogsCommand::Show(args) => {
            let id = percent_encoding::utf8_percent_encode(
                &args.request_id,
                percent_encoding::NON_ALPHANUMERIC,
            );
            let (status, body) = get(&args.gateway, &format!("/admin/v1/logs/{id}")).await?;
            let body = body
                .collect()
                .await
                .context("reading the gateway's answer")?
                .to_bytes();
            if !status.is_success() {
                bail!("{}", error_message(status, &body));
            }
            let v: Value = serde_json::from_slice(&body).context("the answer is not JSON")?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            Ok(())
        }
    }
}

/// GETs `path` from the gateway; the status and the body still to be read.
async fn get(
    gateway: &GatewayArgs,
    path: &str,
) -> anyhow::Result<(StatusCode, hyper::body::Incoming)> {
    let base = base_url(gateway.url.as_deref(), std::env::var(URL_ENV).ok());
    let uri: http::Uri = format!("{base}{path}")
        .parse()
        .with_context(|| format!("`{base}` is not a valid URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        bail!("`{base}` must start with http:// or https://");
    }
    let mut request = Request::builder()
        .uri(uri)
        .header(ACCEPT, "application/json, text/event-stream");
    if let Ok(master) = std::env::var(MASTER_KEY_ENV) {
        if !master.trim().is_empty() {
            let mut auth = HeaderValue::from_str(&format!("Bearer {}", master.trim()))
                .with_context(|| format!("{MASTER_KEY_ENV} holds characters a header cannot"))?;
            auth.set_sensitive(true);
            request = request.header(AUTHORIZATION, auth);
        }
    }
    let request = request.body(Empty::new())?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .context("setting up TLS")?
        .https_or_http()
        .enable_http1()
        .build();
    let client: HttpsClient = Client::builder(TokioExecutor::new()).build(https);
    let response = tokio::time::timeout(TIMEOUT, client.request(request))
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {base} within {}s", TIMEOUT.as_secs()))?
        .with_context(|| format!("could not reach the gateway at {base}"))?;
    Ok((response.status(), response.into_body()))
}

async fn tail(args: &TailArgs) -> anyhow::Result<()> {
    let mut query = Vec::new();
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    for (name, value) in [
        ("model", &args.model),
        ("target", &args.target),
        ("key", &args.key),
    ] {
        if let Some(v) = value {
            query.push(format!("{name}={}", enc(v)));
        }
    }
    if args.errors {
        query.push("error=true".into());
    }
    let path = if query.is_empty() {
        "/admin/v1/logs/stream".to_string()
    } else {
        format!("/admin/v1/logs/stream?{}", query.join("&"))
    };
    let (status, mut body) = get(&args.gateway, &path).await?;
    if !status.is_success() {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        bail!("{}", error_message(status, &bytes));
    }
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut splitter = SseSplitter::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("the gateway closed the stream")?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let mut lines = Vec::new();
        splitter.push_each(&data, |event| {
            let (name, data) = name_and_data(event.bytes);
            let Some(data) = data else { return };
            match name {
                Some("record") if args.json => {
                    lines.push(String::from_utf8_lossy(&data).into_owned())
                }
                Some("record") => {
                    if let Ok(v) = serde_json::from_slice::<Value>(&data) {
                        lines.push(line(&v, colour));
                    }
                }
                Some("missed") => {
                    let n = serde_json::from_slice::<Value>(&data)
                        .ok()
                        .and_then(|v| v["records"].as_u64())
                        .unwrap_or(0);
                    lines.push(format!(
                        "… {n} records missed (this terminal read too slowly)"
                    ));
                }
                _ => {}
            }
        });
        let mut out = std::io::stdout().lock();
        for l in lines {
            // A closed pipe (`| head`) ends the tail quietly.
            if writeln!(out, "{l}").is_err() {
                return Ok(());
            }
        }
        if out.flush().is_err() {
            return Ok(());
        }
    }
    bail!("the gateway ended the stream (shutting down?)")
}

/// One record as a line: time, status, model → target, duration, tokens, cost, key, id.
pub fn line(v: &Value, colour: bool) -> String {
    let ts = v["ts_ms"].as_u64().unwrap_or(0);
    let secs = ts / 1000;
    let time = format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        ts % 1000
    );
    let status = v["status"].as_u64().unwrap_or(0);
    let paint = |code: &str, s: String| {
        if colour {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s
        }
    };
    let status_text = match status {
        200..=299 => paint("32", status.to_string()),
        400..=499 => paint("33", status.to_string()),
        _ => paint("31", status.to_string()),
    };
    let ms = v["duration_us"].as_u64().unwrap_or(0) as f64 / 1000.0;
    let mut l = format!(
        "{time} {status_text} {} → {} {ms:.1}ms",
        v["model"].as_str().unwrap_or("-"),
        v["target"].as_str().unwrap_or("-"),
    );
    if v["stream"] == true {
        l.push_str(" stream");
    }
    if let (Some(i), Some(o)) = (v["prompt_tokens"].as_u64(), v["completion_tokens"].as_u64()) {
        l.push_str(&format!(" {i}→{o} tok"));
    }
    if let Some(c) = v["cost_usd"].as_f64() {
        l.push_str(&format!(" ${c:.6}"));
    }
    if let Some(e) = v["error"].as_str() {
        l.push_str(&format!(" {}", paint("31", e.to_string())));
    }
    if v["client_cancelled"] == true {
        l.push_str(" cancelled");
    }
    if let Some(k) = v["key_id"].as_str() {
        l.push_str(&format!(" key={k}"));
    }
    l.push_str(&format!(
        " {}",
        paint("2", v["request_id"].as_str().unwrap_or("").to_string())
    ));
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_as_one_line() {
        let v = serde_json::json!({
            "ts_ms": 1_796_671_215_873u64, "request_id": "r-1", "model": "gpt-4o-mini",
            "target": "up/x", "status": 429, "stream": true, "duration_us": 1500,
            "error": "rate_limit_exceeded", "key_id": "key_1",
        });
        assert_eq!(
            line(&v, false),
            "19:20:15.873 429 gpt-4o-mini → up/x 1.5ms stream rate_limit_exceeded key=key_1 r-1"
        );
        assert!(line(&v, true).contains("\x1b[33m429\x1b[0m"));
    }
}
