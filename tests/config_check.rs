//! `ferrogate check --config FILE` and `ferrogate --version`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::*;

/// Writes `yaml` to a fresh tempdir; returns (dir guard, path).
fn write_config(yaml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ferrogate.yaml");
    std::fs::write(&path, yaml).expect("write config");
    (dir, path)
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn check(yaml: &str) -> (Option<i32>, String) {
    let (_dir, path) = write_config(yaml);
    let path = path.to_str().expect("utf-8 path").to_string();
    let out = run_cli(&["check", "--config", &path]).await;
    (out.status.code(), output_text(&out))
}

#[tokio::test]
async fn check_accepts_a_valid_config() {
    let (code, text) = check(&Cfg::new("http://127.0.0.1:9/v1").yaml()).await;
    assert_eq!(code, Some(0), "valid config rejected:\n{text}");
}

#[tokio::test]
async fn check_accepts_the_documented_example() {
    let yaml = r#"
listen: 127.0.0.1:8080
server: { body_limit_bytes: 33554432, header_read_timeout_ms: 10000, body_read_timeout_ms: 30000, drain_timeout_ms: 30000 }
providers:
  up:
    kind: openai
    base_url: http://127.0.0.1:9/v1
    keys: [{ value: "sk-up-1", weight: 3 }, { value: "sk-up-2", weight: 1 }]
    timeouts: { connect_ms: 2000, first_byte_ms: 30000, total_ms: 600000 }
    headers: { X-Extra: "yes" }
  byok:
    kind: openai
    base_url: http://127.0.0.1:9/v1
    auth: passthrough
  fake: { kind: mock, mock: { chunks: 5, chunk_delay_ms: 0, latency_ms: 0, reply_words: 10 } }
models:
  - name: gpt-4o-mini
    targets: [{ provider: up, model: upstream-model-x, weight: 1 }]
  - name: "claude-*"
    targets: [{ provider: up }]
"#;
    let (code, text) = check(yaml).await;
    assert_eq!(code, Some(0), "documented example rejected:\n{text}");
}

/// The printed problems without their `FILE:LINE:COLUMN: ` prefix (each line must have it).
fn without_locations<'t>(text: &'t str, path: &std::path::Path) -> Vec<&'t str> {
    let file = format!("{}:", path.display());
    text.lines()
        .map(|line| {
            let rest = line
                .strip_prefix(file.as_str())
                .unwrap_or_else(|| panic!("no file in {line:?}"));
            let mut parts = rest.splitn(3, ':');
            let (l, c) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(
                l.parse::<u32>().is_ok() && c.parse::<u32>().is_ok(),
                "no line:column in {line:?}"
            );
            parts.next().unwrap_or("").trim_start()
        })
        .collect()
}

/// Runs `ferrogate check` on `path` with exactly the environment variables `vars` (the test
/// process's own environment may hold real provider keys, which would change the outcome).
fn check_file_with_env(path: &std::path::Path, vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrogate"))
        .args(["check", "--config"])
        .arg(path)
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ferrogate check");
    (out.status.code(), output_text(&out))
}

#[test]
fn check_accepts_every_provider_kind() {
    let yaml = r#"
providers:
  oa: { kind: openai, base_url: "http://127.0.0.1:9/v1" }
  an: { kind: anthropic, anthropic_version: "2023-06-01" }
  ge: { kind: gemini }
  az: { kind: azure, base_url: "https://r.openai.azure.com", api_version: "2024-10-21" }
  br: { kind: bedrock, region: us-east-1 }
  bk: { kind: bedrock, region: us-west-2, keys: ["${BEDROCK_KEY}"] }
  mo: { kind: mock, mock: { dialect: gemini } }
models:
  - name: "claude-*"
    targets: [{ provider: an }]
  - name: gpt-4.1
    targets: [{ provider: az, deployment: prod-gpt-41 }]
  - name: nova
    targets: [{ provider: br, model: "us.amazon.nova-micro-v1:0" }, { provider: bk }]
"#;
    let (_dir, path) = write_config(yaml);
    let vars = [
        ("ANTHROPIC_API_KEY", "sk-ant-dummy"),
        ("GOOGLE_API_KEY", "goog-dummy"),
        ("AZURE_OPENAI_API_KEY", "az-dummy"),
        ("AWS_ACCESS_KEY_ID", "AKIADUMMY"),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret-dummy"),
        ("BEDROCK_KEY", "bedrock-dummy"),
    ];
    let (code, text) = check_file_with_env(&path, &vars);
    assert_eq!(code, Some(0), "rejected:\n{text}");
    assert!(text.contains("ok (7 providers, 3 models)"), "{text}");
}

#[test]
fn check_reports_missing_credentials_of_the_new_kinds_without_secrets() {
    let yaml = r#"
providers:
  an: { kind: anthropic }
  az: { kind: azure, api_version: "2024-10-21" }
  br: { kind: bedrock }
  bx: { kind: bedrock, region: us-east-1, aws_access_key_id: "${AWS_ACCESS_KEY_ID}" }
  oa: { kind: openai, base_url: "http://127.0.0.1:9/v1" }
models:
  - name: m
    targets: [{ provider: oa, deployment: d }]
"#;
    let (_dir, path) = write_config(yaml);
    let (code, text) = check_file_with_env(&path, &[("AWS_ACCESS_KEY_ID", "AKIASECRETVALUE")]);
    assert_eq!(code, Some(1), "output:\n{text}");
    let expected = [
        "providers.an.keys: not given, and environment variable ANTHROPIC_API_KEY (read by kind anthropic) is not set",
        "providers.az.base_url: required for kind azure: the resource endpoint, like https://my-resource.openai.azure.com",
        "providers.az.keys: not given, and environment variable AZURE_OPENAI_API_KEY (read by kind azure) is not set",
        "providers.br.region: required for kind bedrock (like us-east-1), unless base_url is given",
        "providers.br.keys: not given, and environment variable AWS_SECRET_ACCESS_KEY is not set (AWS_ACCESS_KEY_ID is; AWS credentials need both)",
        "providers.bx.aws_secret_access_key: required when aws_access_key_id is given (give both or neither)",
        "models[0].targets[0].deployment: only applies to kind azure (provider \"oa\" is kind openai)",
    ];
    let lines = without_locations(&text, &path);
    assert_eq!(lines, expected, "output:\n{text}");
    assert!(!text.contains("AKIASECRETVALUE"), "secret leaked:\n{text}");
}

#[test]
fn check_accepts_config_example_yaml() {
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.yaml"));
    // The variables the file's header comment lists, with dummy values.
    let vars = [
        "OPENAI_API_KEY",
        "OPENAI_API_KEY_2",
        "OPENROUTER_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "AZURE_OPENAI_API_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "BEDROCK_API_KEY",
    ]
    .map(|name| (name, "dummy"));
    let (code, text) = check_file_with_env(path, &vars);
    assert_eq!(code, Some(0), "config/example.yaml rejected:\n{text}");
    assert!(text.contains("ok (10 providers, 10 models)"), "{text}");
    // Every listed variable is needed: without them each one is reported.
    let (code, text) = check_file_with_env(path, &[]);
    assert_eq!(code, Some(1), "{text}");
    for (name, _) in vars {
        assert!(text.contains(name), "{name} not reported:\n{text}");
    }
}

/// Every resilience setting, each in its documented form.
const RESILIENT: &str = r#"
providers:
  primary:
    kind: openai
    base_url: "http://127.0.0.1:9/v1"
    timeouts: { connect_ms: 1000, first_byte_ms: 20000, first_token_ms: 15000, stall_ms: 10000, total_ms: 120000 }
    breaker: { consecutive_failures: 3, error_rate: 0.25, min_requests: 10, window_ms: 10000, cooldown_ms: 5000 }
  secondary:
    kind: anthropic
    keys: ["${SECONDARY_KEY}"]
    breaker: { cooldown_ms: 60000 }
  fake: { kind: mock, breaker: { consecutive_failures: 1 } }
models:
  - name: chat
    balance: least_in_flight
    targets:
      - { provider: primary, model: gpt-4o, weight: 2, max_concurrency: 16, queue: 4 }
      - { provider: primary, model: gpt-4o-2024-11-20, max_concurrency: 8 }
    retry: { attempts: 4, backoff_initial_ms: 50, backoff_max_ms: 800, retry_after_max_ms: 5000 }
    deadline_ms: 90000
    timeouts: { first_byte_ms: 10000, first_token_ms: 8000, stall_ms: 5000, total_ms: 60000 }
    hedge: { after: p95, min_ms: 300, max_hedges: 2 }
    fallbacks: [bulk, secondary/claude-sonnet-4-5]
    context_window_fallbacks: [long]
    content_policy_fallbacks: [secondary/claude-sonnet-4-5]
  - name: bulk
    balance: usage_aware
    targets:
      - { provider: primary, model: gpt-4o-mini, rpm: 600, tpm: 200000 }
      - { provider: fake, tpm: 1000000 }
    hedge: { after_ms: 1500 }
    fallbacks: [chat]
  - name: long
    balance: lowest_latency
    targets: [{ provider: secondary, model: claude-sonnet-4-5 }]
    retry: { attempts: 1 }
    fallbacks: [fake/echo]
    hedge: { after_ms: 3000, max_hedges: 1 }
"#;

#[test]
fn check_accepts_every_resilience_setting() {
    let (_dir, path) = write_config(RESILIENT);
    let (code, text) = check_file_with_env(&path, &[("SECONDARY_KEY", "sk-dummy")]);
    assert_eq!(code, Some(0), "rejected:\n{text}");
    assert!(text.contains("ok (3 providers, 3 models)"), "{text}");
}

#[test]
fn check_reports_every_resilience_problem_with_its_path() {
    let yaml = RESILIENT
        .replace("first_token_ms: 15000", "first_token_ms: 150000")
        .replace("error_rate: 0.25", "error_rate: 25")
        .replace("cooldown_ms: 60000", "cooldwn_ms: 60000")
        .replace("balance: least_in_flight", "balance: least_inflight")
        .replace("max_concurrency: 8 }", "queue: 8 }")
        .replace("attempts: 4", "attempts: 40")
        .replace("backoff_max_ms: 800", "backoff_max_ms: 20")
        .replace("min_ms: 300, max_hedges: 2", "min_ms: 300, max_hedges: 5")
        .replace("[bulk, secondary/", "[chat, bulkk, secondry/")
        .replace(
            "context_window_fallbacks: [long]",
            "context_window_fallbacks: [\"lon*\"]",
        )
        .replace("{ provider: fake, tpm: 1000000 }", "{ provider: fake }")
        .replace("rpm: 600, tpm: 200000", "weight: 1")
        .replace("fallbacks: [fake/echo]", "fallbacks: []");
    let (_dir, path) = write_config(&yaml);
    let (code, text) = check_file_with_env(&path, &[("SECONDARY_KEY", "sk-dummy")]);
    assert_eq!(code, Some(1), "output:\n{text}");
    let expected = [
        "providers.primary.timeouts.first_token_ms: must not exceed total_ms (120000), got 150000",
        "providers.primary.breaker.error_rate: expected a number greater than 0 and at most 1, got 25 (a fraction: 25% is 0.25)",
        "providers.secondary.breaker.cooldwn_ms: unknown field (did you mean \"cooldown_ms\"?)",
        "models[0].balance: expected weighted, least_in_flight, lowest_latency or usage_aware, got \"least_inflight\" (did you mean \"least_in_flight\"?)",
        "models[0].targets[1].queue: only applies together with max_concurrency (requests wait for a slot only when concurrency is limited)",
        "models[0].retry.attempts: must be at most 10, got 40",
        "models[0].retry.backoff_max_ms: must be at least backoff_initial_ms (50), got 20",
        "models[0].hedge.max_hedges: must be at most 3, got 5",
        "models[0].fallbacks[0]: a model cannot fall back to itself",
        "models[0].fallbacks[1]: unknown model \"bulkk\" (did you mean \"bulk\"?)",
        "models[0].fallbacks[2]: unknown provider \"secondry\" in \"secondry/claude-sonnet-4-5\" (did you mean \"secondary\"?)",
        "models[0].context_window_fallbacks[0]: \"lon*\" is a pattern; fallbacks name exact models, or provider/model",
        "models[1].balance: usage_aware needs rpm or tpm on at least one target, or on a key of a target's provider (the limits it balances against)",
        "models[2].hedge: nothing to hedge to: the model has one target and no fallbacks (add a target or fallbacks, or remove hedge)",
    ];
    // In file order: `balance` is written before `targets`.
    let lines = without_locations(&text, &path);
    assert_eq!(lines, expected, "output:\n{text}");
}

#[tokio::test]
async fn check_reports_unknown_provider_with_path_and_suggestion() {
    let yaml = r#"
providers:
  openai: { kind: openai, base_url: "http://127.0.0.1:9/v1" }
models:
  - name: gpt-4o-mini
    targets: [{ provider: opnai }]
"#;
    let (code, text) = check(yaml).await;
    assert_eq!(code, Some(1), "output:\n{text}");
    assert!(
        text.contains(
            r#"models[0].targets[0].provider: unknown provider "opnai" (did you mean "openai"?)"#
        ),
        "missing path-prefixed problem with suggestion in:\n{text}"
    );
}

#[tokio::test]
async fn check_reports_every_problem_not_just_the_first() {
    let yaml = r#"
providers:
  openai: { kind: openai, base_url: "http://127.0.0.1:9/v1" }
models:
  - name: a
    targets: [{ provider: opnai }]
  - name: b
    targets: [{ provider: openai }, { provider: nowhere-at-all }]
"#;
    let (code, text) = check(yaml).await;
    assert_eq!(code, Some(1), "output:\n{text}");
    assert!(
        text.contains("models[0].targets[0].provider: "),
        "first problem missing:\n{text}"
    );
    assert!(
        text.contains("models[1].targets[1].provider: ") && text.contains("nowhere-at-all"),
        "second problem missing:\n{text}"
    );
    assert!(
        !text.contains("models[1].targets[0]"),
        "valid target reported as a problem:\n{text}"
    );
}

#[test]
fn check_reports_each_problem_at_its_line_and_column() {
    let yaml = r#"
providers:
  openai: { kind: openai, base_url: "http://127.0.0.1:9/v1" }
  local:
    kind: mock
    mock: { chunks: 3, chunk_delai_ms: 5 }
models:
  - name: a
    targets: [{ provider: openai }]
  - name: b
    targets: [{ provider: local }]
  - name: c
    targets:
      - provider: opnai
        weight: 0
    retry: { attempts: 2 }
    fallbacks: [a, "${NOT_SET}"]
"#;
    let (_dir, path) = write_config(yaml);
    let (code, text) = check_file_with_env(&path, &[]);
    assert_eq!(code, Some(1), "output:\n{text}");
    let file = path.display();
    let expected = [
        // An unknown key: at the key.
        format!("{file}:6:24: providers.local.mock.chunk_delai_ms: unknown field (did you mean \"chunk_delay_ms\"?)"),
        // Nested in a list: at the value.
        format!("{file}:14:19: models[2].targets[0].provider: unknown provider \"opnai\" (did you mean \"openai\"?)"),
        format!("{file}:15:17: models[2].targets[0].weight: expected a positive integer, got 0"),
        format!("{file}:17:20: models[2].fallbacks[1]: environment variable NOT_SET is not set"),
    ];
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, expected, "output:\n{text}");

    // A YAML syntax error is located too.
    let (_dir, path) = write_config("providers:\n  a: [\n");
    let (code, text) = check_file_with_env(&path, &[]);
    assert_eq!(code, Some(1), "output:\n{text}");
    let prefix = format!("{}:3:1: <file>: ", path.display());
    assert!(text.starts_with(&prefix), "output:\n{text}");
}

#[tokio::test]
async fn check_rejects_unparsable_yaml() {
    let (code, text) = check("providers: [this is: not: valid\n  - {").await;
    assert_eq!(code, Some(1), "output:\n{text}");
    assert!(!text.trim().is_empty(), "no problem printed");
}

#[tokio::test]
async fn check_fails_for_a_missing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("does-not-exist.yaml");
    let out = run_cli(&["check", "--config", path.to_str().expect("utf-8")]).await;
    assert!(!out.status.success(), "missing file accepted");
    assert!(!output_text(&out).trim().is_empty(), "no message printed");
}

#[tokio::test]
async fn version_flag_prints_the_version() {
    let out = run_cli(&["--version"]).await;
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(env!("CARGO_PKG_VERSION")),
        "--version printed {text:?}"
    );
}

#[tokio::test]
async fn serve_refuses_to_start_with_an_invalid_config() {
    let yaml = "providers: {}\nmodels:\n  - name: x\n    targets: [{ provider: ghost }]\n";
    let (_dir, path) = write_config(yaml);
    let out = run_cli(&[
        "serve",
        "--config",
        path.to_str().expect("utf-8"),
        "--listen",
        "127.0.0.1:0",
    ])
    .await;
    let text = output_text(&out);
    assert!(
        !out.status.success(),
        "serve started with an invalid config:\n{text}"
    );
    assert!(!text.contains("ferrogate listening on"), "{text}");
    assert!(
        text.contains("ghost"),
        "the problem should be reported:\n{text}"
    );
}
