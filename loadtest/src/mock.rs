//! Mock OpenAI upstream: precomputed, realistic `chat.completion` and
//! `chat.completion.chunk` payloads; each stream chunk is a separate body frame
//! (and, through a capacity-1 channel, a separate write).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::channel::Channel;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};

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
    /// Fixed latency before the response headers, in microseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_us: u64,
}

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

/// Precomputed response bodies.
pub struct Payloads {
    pub completion: Bytes,
    /// Stream frames when the request did not ask for usage.
    pub stream_plain: Arc<[Bytes]>,
    /// Stream frames when the request set `stream_options.include_usage: true`.
    pub stream_usage: Arc<[Bytes]>,
}

fn usage_json(completion_tokens: usize) -> String {
    let prompt = 52;
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
}

fn simple(status: StatusCode, text: &'static str) -> Response<MockBody> {
    let mut resp = Response::new(Either::Left(Full::new(Bytes::from_static(text.as_bytes()))));
    *resp.status_mut() = status;
    resp
}

async fn handle(req: Request<Incoming>, st: Arc<State>) -> Result<Response<MockBody>, Infallible> {
    let path = req.uri().path();
    if req.method() == Method::GET && path == "/health" {
        return Ok(simple(StatusCode::OK, "ok"));
    }
    if req.method() != Method::POST || !path.ends_with("/chat/completions") {
        return Ok(simple(StatusCode::NOT_FOUND, "not found"));
    }
    let body = match req.into_body().collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => return Ok(simple(StatusCode::BAD_REQUEST, "bad body")),
    };
    let stream = json_flag(&body, b"\"stream\"");
    let include_usage = stream && json_flag(&body, b"\"include_usage\"");
    if !st.latency.is_zero() {
        tokio::time::sleep(st.latency).await;
    }
    let mut resp = if stream {
        let frames = if include_usage {
            st.payloads.stream_usage.clone()
        } else {
            st.payloads.stream_plain.clone()
        };
        let (mut tx, rx) = Channel::<Bytes>::new(1);
        let delay = st.chunk_delay;
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
    } else {
        let mut resp = Response::new(Either::Left(Full::new(st.payloads.completion.clone())));
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp
    };
    let h = resp.headers_mut();
    h.insert("x-request-id", HeaderValue::from_static("req_mock_0001"));
    h.insert("openai-processing-ms", HeaderValue::from_static("1"));
    Ok(resp)
}

/// Runs the mock until killed (current-thread runtime, one OS thread).
pub fn serve(args: &MockArgs) -> anyhow::Result<()> {
    let st = Arc::new(State {
        payloads: Payloads::new(args.chunks),
        chunk_delay: Duration::from_micros(args.chunk_delay_us),
        latency: Duration::from_micros(args.latency_us),
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
mod tests {
    use super::*;

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
