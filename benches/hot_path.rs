//! Micro-benchmarks of the request path's pure pieces: reading routing fields from a body,
//! tapping an SSE stream, resolving a route. Run: `cargo bench --bench hot_path`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use ferrogate::config::{
    AuthMode, Config, MockSettings, ModelConfig, ProviderConfig, ProviderKind, ServerSettings,
    TargetConfig, Timeouts,
};
use ferrogate::dialect::openai::read_request_fields;
use ferrogate::routing::health::HealthRegistry;
use ferrogate::routing::{compile, Resolved};
use ferrogate::stream::{Pipeline, Tap};
use ferrogate::upstream::PoolCache;

const SMALL: &[u8] =
    br#"{"model":"mock-gpt","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}"#;

/// A ~100 KB body whose routing keys come last, after a long conversation and a tool schema
/// that itself has `model` and `stream` properties.
fn large_body() -> Vec<u8> {
    let mut messages = Vec::new();
    while serde_json::to_vec(&messages).map(|v| v.len()).unwrap_or(0) < 100_000 {
        messages.push(serde_json::json!({"role": "user", "content": "lorem ipsum dolor sit amet, \"stream\": true, consectetur adipiscing elit ".repeat(8)}));
    }
    let body = serde_json::json!({
        "messages": messages,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
            "properties": {"model": {"type": "string"}, "stream": {"type": "boolean"}}}}}],
        "stream": true,
        "model": "gpt-4o-mini",
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A 50-chunk OpenAI stream with the usage the gateway injects, as one SSE byte string.
fn stream_50() -> Vec<Bytes> {
    let mut frames = Vec::new();
    for i in 0..50 {
        frames.push(Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
        )));
    }
    frames.push(Bytes::from_static(b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":50,\"total_tokens\":59}}\n\n"));
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    frames
}

fn fields(c: &mut Criterion) {
    let mut g = c.benchmark_group("read_request_fields");
    g.throughput(Throughput::Bytes(SMALL.len() as u64));
    g.bench_function("small_89B", |b| {
        b.iter(|| read_request_fields(black_box(SMALL)).map(|f| f.stream))
    });
    let large = large_body();
    g.throughput(Throughput::Bytes(large.len() as u64));
    g.bench_function("large_100KB", |b| {
        b.iter(|| read_request_fields(black_box(&large)).map(|f| f.stream))
    });
    g.finish();
}

fn sse_tap(c: &mut Criterion) {
    let frames = stream_50();
    let total: usize = frames.iter().map(Bytes::len).sum();
    let mut g = c.benchmark_group("stream_pipeline_50_chunks");
    g.throughput(Throughput::Bytes(total as u64));
    for (name, strip) in [("pass_through", false), ("strip_injected_usage", true)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut pipeline = Pipeline::forward(Tap::openai(strip, 200), None);
                let mut n = 0;
                for f in &frames {
                    n += pipeline.push(f.clone()).map_or(0, |o| o.len());
                }
                (n, pipeline.usage())
            })
        });
    }
    g.finish();
}

fn route_pick(c: &mut Criterion) {
    let provider = ProviderConfig {
        id: "up".into(),
        kind: ProviderKind::OpenAi,
        base_url: Some("http://127.0.0.1:9/v1".into()),
        keys: Vec::new(),
        auth: AuthMode::Keys,
        timeouts: Timeouts::default(),
        headers: Default::default(),
        ca_file: None,
        mock: MockSettings::default(),
        api_version: None,
        region: None,
        aws_credentials: None,
        anthropic_version: None,
        breaker: Default::default(),
    };
    let mut models: Vec<ModelConfig> = (0..200)
        .map(|i| ModelConfig {
            name: format!("model-{i}"),
            targets: vec![
                TargetConfig {
                    provider: "up".into(),
                    model: Some(format!("m{i}")),
                    weight: 3,
                    deployment: None,
                    ..Default::default()
                },
                TargetConfig {
                    provider: "up".into(),
                    model: None,
                    weight: 1,
                    deployment: None,
                    ..Default::default()
                },
            ],
            ..Default::default()
        })
        .collect();
    models.push(ModelConfig {
        name: "claude-*".into(),
        targets: vec![TargetConfig {
            provider: "up".into(),
            model: None,
            weight: 1,
            deployment: None,
            ..Default::default()
        }],
        ..Default::default()
    });
    let config = Config {
        listen: None,
        server: ServerSettings::default(),
        providers: vec![provider],
        models,
        pricing: Vec::new(),
        governance: None,
        logs: Default::default(),
    };
    // A config that stops compiling must fail the bench, not silently drop this group.
    let snapshot = match compile(&config, &PoolCache::default(), &HealthRegistry::default()) {
        Ok(s) => s,
        Err(e) => panic!("bench config does not compile: {e}"),
    };
    let pick = |model: &str| match snapshot.resolve(model) {
        Some(Resolved::Route(r)) => r.pick().map(|t| t.weight),
        Some(Resolved::Direct { .. }) => Some(0),
        None => None,
    };
    let mut g = c.benchmark_group("route_pick");
    g.bench_function("exact_weighted", |b| {
        b.iter(|| pick(black_box("model-117")))
    });
    g.bench_function("glob", |b| b.iter(|| pick(black_box("claude-sonnet-4-5"))));
    g.bench_function("provider_slash_model", |b| {
        b.iter(|| pick(black_box("up/llama-3")))
    });
    g.finish();
}

criterion_group!(benches, fields, sse_tap, route_pick);
criterion_main!(benches);
