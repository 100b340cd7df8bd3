//! Mock upstream: precomputed, realistic payloads in two dialects, each stream event a
//! separate body frame (and, through a capacity-1 channel, a separate write).
//! - OpenAI (`POST …/chat/completions`): `chat.completion` and `chat.completion.chunk`.
//! - Anthropic (`POST /v1/messages`): a `message`, and the event stream real Anthropic
//!   streams have (`message_start` … `message_stop`, `event:` + `data:` lines).
//!
//! On demand it misbehaves, cheaply and reproducibly: `--fail-ratio` answers that share of
//! API requests with a 503 and a small error body in the request's dialect (spread evenly
//! by a request counter: 0.2 fails every 5th), and `--latency-us` holds the response head.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::channel::Channel;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};

use crate::workload::Dialect;

#[derive(clap::Args, Clone, Debug)]
pub struct MockArgs {
    /// Address to listen on (port 0 = pick a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Content chunks per stream (plus role chunk, finish chunk, optional usage chunk, [DONE]).
    #[arg(long, default_value_t = 20)]
    pub chunks: usize,
    /// Delay before each stream chunk, in microseconds (tokio timer: ~1 ms granularity).
    #[arg(long, default_value_t = 0)]
    pub chunk_delay_us: u64,
    /// Fixed latency before the response headers, in microseconds (a slow target).
    #[arg(long, default_value_t = 0)]
    pub latency_us: u64,
    /// Share of API requests (0 to 1) answered with HTTP 503 and an error body, spread
    /// evenly by a request counter (0.2: every 5th), so runs are reproducible.
    #[arg(long, default_value_t = 0.0, value_parser = parse_ratio)]
    pub fail_ratio: f64,
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("expected a number from 0 to 1, got `{s}`")),
    }
}

/// Deterministic failure schedule: request `k` (0-based, counted per mock) fails when the
/// running count of failures `floor(k × ratio)` steps up — evenly spread, no randomness.
pub struct FailEvery {
    /// The ratio in parts per million (integer arithmetic: exact and cheap).
    ppm: u64,
    served: AtomicU64,
}

impl FailEvery {
    const MILLION: u64 = 1_000_000;

    pub fn new(ratio: f64) -> Option<Self> {
        let ppm = (ratio.clamp(0.0, 1.0) * Self::MILLION as f64).round() as u64;
        (ppm > 0).then(|| Self {
            ppm,
            served: AtomicU64::new(0),
        })
    }

    /// Counts one request and says whether it fails.
    pub fn next(&self) -> bool {
        let k = self.served.fetch_add(1, Ordering::Relaxed);
        Self::fails(k, self.ppm)
    }

    fn fails(k: u64, ppm: u64) -> bool {
        (k + 1).saturating_mul(ppm) / Self::MILLION > k.saturating_mul(ppm) / Self::MILLION
    }
}

/// What an overloaded OpenAI answers (the shape of tests/fixtures/openai-error-*.json).
const OPENAI_503: &str = "{\"error\":{\"message\":\"The server is overloaded or not ready yet.\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
/// Anthropic's error envelope (tests/fixtures/anthropic-error-*.json) for the same failure.
const ANTHROPIC_503: &str =
    "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Service unavailable\"}}";

const ID: &str = "chatcmpl-BQf7sLoadTestMockUpstream0001";
const CREATED: u64 = 1_745_000_000;
const UPSTREAM_MODEL: &str = "gpt-4o-mini-2024-07-18";
const FINGERPRINT: &str = "fp_0392822090";
const WORDS: [&str; 20] = [
    "Tail",
    " latency",
    " dominates",
    " user",
    "-visible",
    " delay",
    " because",
    " every",
    " request",
    " waits",
    " for",
    " its",
    " slowest",
    " hop",
    ",",
    " so",
    " a",
    " gateway",
    " must",
    " stay",
];

const ANTHROPIC_ID: &str = "msg_01LoadTestMockUpstream00001";
const ANTHROPIC_MODEL: &str = "claude-sonnet-4-5-20250929";
/// Prompt tokens both dialects report for the generator's request.
const PROMPT_TOKENS: usize = 52;

/// Precomputed response bodies.
pub struct Payloads {
    pub completion: Bytes,
    /// Stream frames when the request did not ask for usage.
    pub stream_plain: Arc<[Bytes]>,
    /// Stream frames when the request set `stream_options.include_usage: true`.
    pub stream_usage: Arc<[Bytes]>,
    /// Anthropic `message` (non-stream answer of `/v1/messages`).
    pub message: Bytes,
    /// Anthropic stream events (Anthropic always reports usage in streams).
    pub message_stream: Arc<[Bytes]>,
}

fn usage_json(completion_tokens: usize) -> String {
    let prompt = PROMPT_TOKENS;
    format!(
        concat!(
            "{{\"prompt_tokens\":{p},\"completion_tokens\":{c},\"total_tokens\":{t},",
            "\"prompt_tokens_details\":{{\"cached_tokens\":0,\"audio_tokens\":0}},",
            "\"completion_tokens_details\":{{\"reasoning_tokens\":0,\"audio_tokens\":0,",
            "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}}"
        ),
        p = prompt,
        c = completion_tokens,
        t = prompt + completion_tokens
    )
}

fn chunk(choices: &str, usage: Option<&str>) -> Bytes {
    let usage = match usage {
        Some(u) => format!(",\"usage\":{u}"),
        None => String::new(),
    };
    Bytes::from(format!(
        "data: {{\"id\":\"{ID}\",\"object\":\"chat.completion.chunk\",\"created\":{CREATED},\"model\":\"{UPSTREAM_MODEL}\",\"service_tier\":\"default\",\"system_fingerprint\":\"{FINGERPRINT}\",\"choices\":{choices}{usage}}}\n\n"
    ))
}

fn stream_frames(chunks: usize, include_usage: bool) -> Vec<Bytes> {
    let null = include_usage.then_some("null");
    let mut frames = Vec::with_capacity(chunks + 4);
    frames.push(chunk(
        "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]",
        null,
    ));
    for k in 0..chunks {
        let word = WORDS[k % WORDS.len()];
        frames.push(chunk(
            &format!("[{{\"index\":0,\"delta\":{{\"content\":\"{word}\"}},\"logprobs\":null,\"finish_reason\":null}}]"),
            null,
        ));
    }
    frames.push(chunk(
        "[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]",
        null,
    ));
    if include_usage {
        frames.push(chunk("[]", Some(&usage_json(chunks))));
    }
    frames.push(Bytes::from_static(crate::workload::DONE));
    frames
}

/// One Anthropic SSE event: `event: NAME` and `data: JSON`, as Anthropic frames them.
fn anthropic_event(name: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// Anthropic usage: `input_tokens` excludes cache reads/writes, reported beside it.
fn anthropic_usage(output_tokens: usize, with_breakdown: bool) -> String {
    let breakdown = if with_breakdown {
        ",\"cache_creation\":{\"ephemeral_5m_input_tokens\":0,\"ephemeral_1h_input_tokens\":0}"
    } else {
        ""
    };
    let tier = if with_breakdown {
        ",\"service_tier\":\"standard\""
    } else {
        ""
    };
    format!(
        "{{\"input_tokens\":{PROMPT_TOKENS},\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0{breakdown},\"output_tokens\":{output_tokens}{tier}}}"
    )
}

/// The shape of a real Anthropic text stream (tests/fixtures/anthropic-stream-text.*):
/// message_start (with usage), content_block_start, ping, `chunks` text deltas,
/// content_block_stop, message_delta (stop_reason, usage), message_stop.
fn anthropic_stream_frames(chunks: usize) -> Vec<Bytes> {
    let mut frames = Vec::with_capacity(chunks + 6);
    frames.push(anthropic_event(
        "message_start",
        &format!(
            concat!(
                "{{\"type\":\"message_start\",\"message\":{{\"model\":\"{model}\",\"id\":\"{id}\",",
                "\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"stop_reason\":null,",
                "\"stop_sequence\":null,\"usage\":{usage}}}}}"
            ),
            model = ANTHROPIC_MODEL,
            id = ANTHROPIC_ID,
            usage = anthropic_usage(1, true)
        ),
    ));
    frames.push(anthropic_event(
        "content_block_start",
        "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}",
    ));
    frames.push(anthropic_event("ping", "{\"type\": \"ping\"}"));
    for k in 0..chunks {
        let word = WORDS[k % WORDS.len()];
        frames.push(anthropic_event(
            "content_block_delta",
            &format!("{{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{word}\"}}}}"),
        ));
    }
    frames.push(anthropic_event(
        "content_block_stop",
        "{\"type\":\"content_block_stop\",\"index\":0}",
    ));
    frames.push(anthropic_event(
        "message_delta",
        &format!(
            "{{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{}}}",
            anthropic_usage(chunks, false)
        ),
    ));
    frames.push(Bytes::from_static(crate::workload::MESSAGE_STOP));
    frames
}

fn anthropic_message(content: &str, output_tokens: usize) -> Bytes {
    Bytes::from(format!(
        concat!(
            "{{\"model\":\"{model}\",\"id\":\"{id}\",\"type\":\"message\",\"role\":\"assistant\",",
            "\"content\":[{{\"type\":\"text\",\"text\":\"{content}\"}}],",
            "\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":{usage}}}"
        ),
        model = ANTHROPIC_MODEL,
        id = ANTHROPIC_ID,
        content = content,
        usage = anthropic_usage(output_tokens, true)
    ))
}

impl Payloads {
    pub fn new(chunks: usize) -> Self {
        let content: String = WORDS.concat();
        let completion = format!(
            concat!(
                "{{\"id\":\"{id}\",\"object\":\"chat.completion\",\"created\":{created},\"model\":\"{model}\",",
                "\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"{content} under a few microseconds.\",",
                "\"refusal\":null,\"annotations\":[]}},\"logprobs\":null,\"finish_reason\":\"stop\"}}],",
                "\"usage\":{usage},\"service_tier\":\"default\",\"system_fingerprint\":\"{fp}\"}}"
            ),
            id = ID,
            created = CREATED,
            model = UPSTREAM_MODEL,
            content = content,
            usage = usage_json(26),
            fp = FINGERPRINT
        );
        Self {
            completion: Bytes::from(completion),
            stream_plain: stream_frames(chunks, false).into(),
            stream_usage: stream_frames(chunks, true).into(),
            message: anthropic_message(&format!("{content} under a few microseconds."), 26),
            message_stream: anthropic_stream_frames(chunks).into(),
        }
    }
}

/// True when `"key"` is followed by `: true` somewhere in the JSON text.
/// (A byte scan: the mock must cost as little as possible per request.)
pub fn json_flag(body: &[u8], key: &[u8]) -> bool {
    let mut from = 0;
    while let Some(pos) = find(&body[from..], key) {
        let mut i = from + pos + key.len();
        while i < body.len() && body[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < body.len() && body[i] == b':' {
            i += 1;
            while i < body.len() && body[i].is_ascii_whitespace() {
                i += 1;
            }
            if body[i..].starts_with(b"true") {
                return true;
            }
        }
        from += pos + key.len();
    }
    false
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

type MockBody = Either<Full<Bytes>, Channel<Bytes>>;

struct State {
    payloads: Payloads,
    chunk_delay: Duration,
    latency: Duration,
    fail: Option<FailEvery>,
}

fn simple(status: StatusCode, text: &'static str) -> Response<MockBody> {
    let mut resp = Response::new(Either::Left(Full::new(Bytes::from_static(text.as_bytes()))));
    *resp.status_mut() = status;
    resp
}

/// Sends `frames` one body frame each (capacity-1 channel: one write per frame).
fn stream_response(frames: Arc<[Bytes]>, delay: Duration) -> Response<MockBody> {
    let (mut tx, rx) = Channel::<Bytes>::new(1);
    tokio::spawn(async move {
        for frame in frames.iter() {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send_data(frame.clone()).await.is_err() {
                break;
            }
        }
    });
    let mut resp = Response::new(Either::Right(rx));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    resp
}

fn json_response(body: Bytes) -> Response<MockBody> {
    let mut resp = Response::new(Either::Left(Full::new(body)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Which API a POST path belongs to.
fn api_of(path: &str) -> Option<Dialect> {
    if path.ends_with("/chat/completions") {
        Some(Dialect::OpenAi)
    } else if path == "/v1/messages" {
        Some(Dialect::Anthropic)
    } else {
        None
    }
}

async fn handle(req: Request<Incoming>, st: Arc<State>) -> Result<Response<MockBody>, Infallible> {
    let path = req.uri().path();
    if req.method() == Method::GET && path == "/health" {
        return Ok(simple(StatusCode::OK, "ok"));
    }
    let api = match api_of(path) {
        Some(api) if req.method() == Method::POST => api,
        _ => return Ok(simple(StatusCode::NOT_FOUND, "not found")),
    };
    let body = match req.into_body().collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => return Ok(simple(StatusCode::BAD_REQUEST, "bad body")),
    };
    // An overloaded upstream answers at once: the failure comes before the head delay.
    if st.fail.as_ref().is_some_and(FailEvery::next) {
        let body = match api {
            Dialect::OpenAi => OPENAI_503,
            Dialect::Anthropic => ANTHROPIC_503,
        };
        let mut resp = json_response(Bytes::from_static(body.as_bytes()));
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return Ok(resp);
    }
    let stream = json_flag(&body, b"\"stream\"");
    if !st.latency.is_zero() {
        tokio::time::sleep(st.latency).await;
    }
    let p = &st.payloads;
    let mut resp = match (api, stream) {
        (Dialect::OpenAi, true) => {
            let frames = if json_flag(&body, b"\"include_usage\"") {
                p.stream_usage.clone()
            } else {
                p.stream_plain.clone()
            };
            stream_response(frames, st.chunk_delay)
        }
        (Dialect::OpenAi, false) => json_response(p.completion.clone()),
        (Dialect::Anthropic, true) => stream_response(p.message_stream.clone(), st.chunk_delay),
        (Dialect::Anthropic, false) => json_response(p.message.clone()),
    };
    let h = resp.headers_mut();
    match api {
        Dialect::OpenAi => {
            h.insert("x-request-id", HeaderValue::from_static("req_mock_0001"));
            h.insert("openai-processing-ms", HeaderValue::from_static("1"));
        }
        Dialect::Anthropic => {
            h.insert(
                "request-id",
                HeaderValue::from_static("req_011CMockLoadTest0001"),
            );
        }
    }
    Ok(resp)
}

/// Runs the mock until killed (current-thread runtime, one OS thread).
pub fn serve(args: &MockArgs) -> anyhow::Result<()> {
    let st = Arc::new(State {
        payloads: Payloads::new(args.chunks),
        chunk_delay: Duration::from_micros(args.chunk_delay_us),
        latency: Duration::from_micros(args.latency_us),
        fail: FailEvery::new(args.fail_ratio),
    });
    let rt = crate::util::current_thread_runtime()?;
    rt.block_on(async move {
        let listener = crate::server::bind("mock", args.listen).await?;
        crate::server::accept_loop(listener, move || {
            let st = st.clone();
            service_fn(move |req| handle(req, st.clone()))
        })
        .await
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::client::{execute, Conn, Target};
    use crate::workload::Scenario;
    use serde_json::Value;

    /// Splits one Anthropic frame into (event name, data JSON); panics on any other shape.
    fn parse_event(frame: &[u8]) -> (String, Value) {
        let s = std::str::from_utf8(frame).unwrap();
        let body = s
            .strip_suffix("\n\n")
            .expect("frame ends with a blank line");
        let (event, data) = body.split_once('\n').expect("event and data lines");
        let name = event.strip_prefix("event: ").expect("event: line");
        let json = data.strip_prefix("data: ").expect("data: line");
        assert!(!json.contains('\n'), "one data line");
        (name.to_string(), serde_json::from_str(json).unwrap())
    }

    fn fixture_events() -> Vec<Value> {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/anthropic-stream-text.chunks.jsonl"
        ))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
    }

    /// Event types in order, runs of the same type collapsed.
    fn shape(types: impl Iterator<Item = String>) -> Vec<String> {
        let mut v: Vec<String> = types.collect();
        v.dedup();
        v
    }

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    #[test]
    fn anthropic_stream_frames_are_valid_events() {
        let p = Payloads::new(20);
        let events: Vec<(String, Value)> =
            p.message_stream.iter().map(|f| parse_event(f)).collect();
        // 20 text deltas plus start, block start, ping, block stop, delta, stop.
        assert_eq!(events.len(), 20 + 6);
        for (name, data) in &events {
            assert_eq!(data["type"], name.as_str(), "event name = data type");
        }
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[0], "message_start");
        assert_eq!(names[1], "content_block_start");
        assert_eq!(names[2], "ping");
        assert!(names[3..23].iter().all(|n| *n == "content_block_delta"));
        assert_eq!(
            &names[23..],
            ["content_block_stop", "message_delta", "message_stop"]
        );

        let start = &events[0].1["message"];
        assert_eq!(start["role"], "assistant");
        assert_eq!(start["content"], Value::Array(vec![]));
        assert_eq!(start["stop_reason"], Value::Null);
        assert_eq!(start["usage"]["input_tokens"], 52);
        assert_eq!(start["usage"]["output_tokens"], 1);
        assert_eq!(events[1].1["content_block"]["type"], "text");

        let text: String = events[3..23]
            .iter()
            .map(|(_, d)| {
                assert_eq!(d["index"], 0);
                assert_eq!(d["delta"]["type"], "text_delta");
                d["delta"]["text"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(text, WORDS.concat());
        assert_eq!(events[23].1["index"], 0);
        let delta = &events[24].1;
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert_eq!(delta["usage"]["output_tokens"], 20);
        assert_eq!(delta["usage"]["input_tokens"], 52);
        assert_eq!(
            p.message_stream.last().map(|b| &b[..]),
            Some(crate::workload::MESSAGE_STOP)
        );
    }

    #[test]
    fn anthropic_stream_has_the_recorded_shape() {
        let recorded = fixture_events();
        let p = Payloads::new(20);
        let ours: Vec<Value> = p.message_stream.iter().map(|f| parse_event(f).1).collect();
        let ty = |v: &Value| v["type"].as_str().unwrap().to_string();
        assert_eq!(
            shape(ours.iter().map(ty)),
            shape(recorded.iter().map(ty)),
            "same event sequence as the real recording"
        );
        // Same fields per event type as the recording (values differ; ping has only `type`).
        for t in [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ] {
            let a = ours.iter().find(|v| v["type"] == t).unwrap();
            let b = recorded.iter().find(|v| v["type"] == t).unwrap();
            assert_eq!(keys(a), keys(b), "{t}");
        }
        let msg = |v: &Vec<Value>| v[0]["message"].clone();
        let mut expected = keys(&msg(&recorded)["usage"]);
        // The recording has a field newer than most SDKs know; the mock leaves it out.
        expected.retain(|k| k != "inference_geo");
        assert_eq!(keys(&msg(&ours)["usage"]), expected);
        assert_eq!(keys(&msg(&ours)), keys(&msg(&recorded)));
    }

    #[test]
    fn anthropic_message_matches_the_recording() {
        let p = Payloads::new(20);
        let v: Value = serde_json::from_slice(&p.message).unwrap();
        let recorded: Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/anthropic-messages-nonstream.json"
        )))
        .unwrap();
        assert_eq!(keys(&v), keys(&recorded));
        assert_eq!(v["type"], "message");
        assert_eq!(v["stop_reason"], "end_turn");
        assert_eq!(v["content"][0]["type"], "text");
        assert!(v["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Tail latency dominates"));
        assert_eq!(v["usage"]["input_tokens"], 52);
        assert_eq!(v["usage"]["output_tokens"], 26);
        // Comparable in size with the OpenAI completion.
        assert!((400..800).contains(&p.message.len()), "{}", p.message.len());
    }

    #[test]
    fn routes_by_path() {
        assert_eq!(api_of("/v1/chat/completions"), Some(Dialect::OpenAi));
        assert_eq!(api_of("/openai/v1/chat/completions"), Some(Dialect::OpenAi));
        assert_eq!(api_of("/v1/messages"), Some(Dialect::Anthropic));
        assert_eq!(api_of("/v1/messages/count_tokens"), None);
        assert_eq!(api_of("/v1/embeddings"), None);
    }

    /// Starts a mock on the current runtime; returns its address.
    async fn start(latency: Duration, fail_ratio: f64) -> SocketAddr {
        let st = Arc::new(State {
            payloads: Payloads::new(20),
            chunk_delay: Duration::ZERO,
            latency,
            fail: FailEvery::new(fail_ratio),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(crate::server::accept_loop(listener, move || {
            let st = st.clone();
            service_fn(move |req| handle(req, st.clone()))
        }));
        addr
    }

    #[test]
    fn fail_schedule_is_even_and_exact() {
        let pattern = |ratio: f64, n: u64| -> Vec<bool> {
            match FailEvery::new(ratio) {
                Some(f) => (0..n).map(|_| f.next()).collect(),
                None => vec![false; n as usize],
            }
        };
        // 0.2: exactly every 5th request, starting with the 5th.
        let p = pattern(0.2, 20);
        let failed: Vec<usize> = (0..20).filter(|&i| p[i]).collect();
        assert_eq!(failed, [4, 9, 14, 19]);
        // Other ratios: the exact share, never two in a row below 0.5.
        for (ratio, n, want) in [(0.1, 1000, 100), (0.33, 300, 99), (0.5, 10, 5)] {
            let p = pattern(ratio, n);
            assert_eq!(p.iter().filter(|&&f| f).count(), want, "{ratio}");
            if ratio < 0.5 {
                assert!(!p.windows(2).any(|w| w[0] && w[1]), "{ratio}");
            }
        }
        assert!(FailEvery::new(0.0).is_none(), "0 never fails");
        assert!(pattern(1.0, 7).iter().all(|&f| f), "1 always fails");
        assert!(parse_ratio("0.2").is_ok());
        assert!(parse_ratio("1").is_ok());
        assert!(parse_ratio("1.5").is_err());
        assert!(parse_ratio("-0.1").is_err());
        assert!(parse_ratio("x").is_err());
    }

    /// `--fail-ratio 0.2`: every 5th API request is a 503 with an error body in the request's
    /// dialect, the others are normal answers; health checks are not counted.
    #[test]
    fn fails_every_fifth_request_in_its_dialect() {
        let rt = crate::util::current_thread_runtime().unwrap();
        rt.block_on(async {
            let addr = start(Duration::ZERO, 0.2).await;
            let mut conn = Conn::connect(addr).await.unwrap();
            let mut statuses = Vec::new();
            for i in 0..10 {
                let sc = if i % 2 == 0 {
                    Scenario::NonStream
                } else {
                    Scenario::Stream
                };
                let o = execute(&mut conn, &Target::new(addr, sc).unwrap())
                    .await
                    .unwrap();
                statuses.push(o.status);
                if o.status == 503 {
                    assert_eq!(o.bytes, OPENAI_503.len() as u64);
                }
            }
            assert_eq!(statuses, [200, 200, 200, 200, 503, 200, 200, 200, 200, 503]);
            // Anthropic requests share the counter and fail in Anthropic's envelope.
            let mut anthropic = Vec::new();
            for _ in 0..5 {
                let o = execute(
                    &mut conn,
                    &Target::new(addr, Scenario::AnthropicNonStream).unwrap(),
                )
                .await
                .unwrap();
                anthropic.push((o.status, o.bytes));
            }
            assert_eq!(anthropic[4], (503, ANTHROPIC_503.len() as u64));
            assert!(anthropic[..4].iter().all(|(s, _)| *s == 200));
        });
        for body in [OPENAI_503, ANTHROPIC_503] {
            let v: Value = serde_json::from_str(body).unwrap();
            assert!(v["error"]["message"].is_string(), "{body}");
            assert!(v["error"]["type"].is_string(), "{body}");
        }
    }

    /// `--latency-us` holds the response head (the slow target of the resilience scenario).
    #[test]
    fn latency_delays_the_head() {
        let rt = crate::util::current_thread_runtime().unwrap();
        rt.block_on(async {
            let addr = start(Duration::from_millis(20), 0.0).await;
            let mut conn = Conn::connect(addr).await.unwrap();
            let t0 = std::time::Instant::now();
            let o = execute(&mut conn, &Target::new(addr, Scenario::Stream).unwrap())
                .await
                .unwrap();
            assert!(o.ok());
            assert!(
                t0.elapsed() >= Duration::from_millis(20),
                "{:?}",
                t0.elapsed()
            );
        });
    }

    /// The generator against the mock itself, in every scenario a forwarder can serve.
    #[test]
    fn serves_every_forwardable_scenario() {
        let rt = crate::util::current_thread_runtime().unwrap();
        rt.block_on(async {
            let addr = start(Duration::ZERO, 0.0).await;
            let mut conn = Conn::connect(addr).await.unwrap();
            for sc in Scenario::ALL.into_iter().filter(|s| s.forwardable()) {
                let o = execute(&mut conn, &Target::new(addr, sc).unwrap())
                    .await
                    .unwrap();
                assert_eq!(o.status, 200, "{}", sc.name());
                assert!(o.complete, "{}", sc.name());
            }
            // Streams are the precomputed frames, byte for byte.
            let p = Payloads::new(20);
            let total = |f: &[Bytes]| f.iter().map(|b| b.len() as u64).sum::<u64>();
            let o = execute(
                &mut conn,
                &Target::new(addr, Scenario::AnthropicStream).unwrap(),
            )
            .await
            .unwrap();
            assert_eq!(o.bytes, total(&p.message_stream));
            let o = execute(&mut conn, &Target::new(addr, Scenario::Stream).unwrap())
                .await
                .unwrap();
            assert_eq!(o.bytes, total(&p.stream_plain));
            let o = execute(
                &mut conn,
                &Target::new(addr, Scenario::AnthropicNonStream).unwrap(),
            )
            .await
            .unwrap();
            assert_eq!(o.bytes, p.message.len() as u64);
        });
    }

    #[test]
    fn flags() {
        assert!(json_flag(br#"{"stream":true}"#, b"\"stream\""));
        assert!(json_flag(br#"{"stream" :  true}"#, b"\"stream\""));
        assert!(!json_flag(br#"{"stream":false}"#, b"\"stream\""));
        assert!(!json_flag(
            br#"{"stream_options":{"include_usage":true}}"#,
            b"\"stream\""
        ));
        assert!(json_flag(
            br#"{"stream":true,"stream_options":{"include_usage":true}}"#,
            b"\"include_usage\""
        ));
    }

    #[test]
    fn payloads_are_valid() {
        let p = Payloads::new(20);
        let v: serde_json::Value = serde_json::from_slice(&p.completion).unwrap_or_default();
        assert_eq!(v["object"], "chat.completion");
        assert!(
            (550..800).contains(&p.completion.len()),
            "{}",
            p.completion.len()
        );
        assert_eq!(p.stream_plain.len(), 20 + 3);
        assert_eq!(p.stream_usage.len(), 20 + 4);
        for (frames, usage) in [(&p.stream_plain, false), (&p.stream_usage, true)] {
            for f in frames.iter().take(frames.len() - 1) {
                let s = std::str::from_utf8(f).unwrap_or_default();
                let json = s
                    .strip_prefix("data: ")
                    .and_then(|s| s.strip_suffix("\n\n"));
                let v: serde_json::Value =
                    serde_json::from_str(json.unwrap_or_default()).unwrap_or_default();
                assert_eq!(v["object"], "chat.completion.chunk");
                assert_eq!(v.get("usage").is_some(), usage);
            }
            assert_eq!(&frames[frames.len() - 1][..], crate::workload::DONE);
        }
        let last = &p.stream_usage[p.stream_usage.len() - 2];
        assert!(std::str::from_utf8(last)
            .unwrap_or_default()
            .contains("\"choices\":[]"));
    }
}
