//! Whole files through `parse_str` and `load_file`, and zero-config discovery.

use super::lines;
use crate::config::presets::PRESETS;
use crate::config::*;
fn env(name: &str) -> Option<String> {
    let value = match name {
        "OPENAI_API_KEY" => "sk-openai-secret",
        "GROQ_API_KEY" => "gsk-groq-secret",
        "EMPTY_KEY" => "",
        "T" => "2000",
        "HOST" => "proxy.internal",
        _ => return None,
    };
    Some(value.to_string())
}

fn problems(yaml: &str) -> Vec<String> {
    match parse_str(yaml, &env) {
        Ok(_) => Vec::new(),
        Err(e) => lines(&e),
    }
}

const FULL: &str = r#"
listen: 0.0.0.0:9000
server:
  body_limit_bytes: 1MiB
  header_read_timeout_ms: 5000
  body_read_timeout_ms: 6000
  drain_timeout_ms: 7000
  request_log: off
providers:
  openai:
    kind: openai
    base_url: https://api.openai.com/v1/
    keys:
      - { value: "${OPENAI_API_KEY}", weight: 3 }
      - literal-key
    timeouts: { connect_ms: "${T}", total_ms: 9000 }
    headers: { HTTP-Referer: "https://example.com" }
  groq:
    preset: groq
  byok:
    preset: openrouter
    auth: passthrough
  local:
    kind: mock
    mock: { chunks: 3, chunk_delay_ms: 5, latency_ms: 7, reply_words: 9 }
models:
  - name: gpt-4o-mini
    targets:
      - { provider: openai, model: gpt-4o-mini, weight: 3 }
      - { provider: groq, model: llama-3.1-8b-instant }
  - name: claude-*
    targets: [{ provider: mock }]
"#;

#[test]
fn full_file_decodes() {
    let config = match parse_str(FULL, &env) {
        Ok(config) => config,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(config.listen, "0.0.0.0:9000".parse().ok());
    assert_eq!(
        config.server,
        ServerSettings {
            body_limit_bytes: 1 << 20,
            header_read_timeout_ms: 5000,
            body_read_timeout_ms: 6000,
            drain_timeout_ms: 7000,
            request_log: false,
            write_stall_timeout_ms: 60_000,
        }
    );
    let ids: Vec<&str> = config.providers.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["openai", "groq", "byok", "local"]);

    let openai = &config.providers[0];
    assert_eq!(openai.kind, ProviderKind::OpenAi);
    assert_eq!(
        openai.base_url.as_deref(),
        Some("https://api.openai.com/v1")
    );
    assert_eq!(
        openai.keys,
        [
            KeyConfig {
                value: "sk-openai-secret".into(),
                weight: 3,
                rpm: None,
                tpm: None
            },
            KeyConfig {
                value: "literal-key".into(),
                weight: 1,
                rpm: None,
                tpm: None
            },
        ]
    );
    assert_eq!(openai.auth, AuthMode::Keys);
    assert_eq!(
        openai.timeouts,
        Timeouts {
            connect_ms: 2000,
            idle_ms: 90_000,
            first_byte_ms: 60_000,
            first_token_ms: None,
            stall_ms: None,
            total_ms: 9000
        }
    );
    let headers: Vec<(&str, &str)> = openai
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(headers, [("http-referer", "https://example.com")]);
    assert_eq!(openai.ca_file, None);
    assert_eq!(openai.mock, MockSettings::default());

    let groq = &config.providers[1];
    assert_eq!(groq.kind, ProviderKind::OpenAi);
    assert_eq!(
        groq.base_url.as_deref(),
        Some("https://api.groq.com/openai/v1")
    );
    assert_eq!(
        groq.keys,
        [KeyConfig {
            value: "gsk-groq-secret".into(),
            weight: 1,
            rpm: None,
            tpm: None
        }]
    );

    let byok = &config.providers[2];
    assert_eq!(byok.auth, AuthMode::Passthrough);
    assert!(byok.keys.is_empty());
    assert_eq!(
        byok.base_url.as_deref(),
        Some("https://openrouter.ai/api/v1")
    );

    let local = &config.providers[3];
    assert_eq!(local.kind, ProviderKind::Mock);
    assert_eq!(
        local.mock,
        MockSettings {
            chunks: 3,
            chunk_delay_ms: 5,
            latency_ms: 7,
            reply_words: 9,
            dialect: MockDialect::OpenAi,
        }
    );

    assert_eq!(
        config.models,
        [
            ModelConfig {
                name: "gpt-4o-mini".into(),
                targets: vec![
                    TargetConfig {
                        provider: "openai".into(),
                        model: Some("gpt-4o-mini".into()),
                        weight: 3,
                        deployment: None,
                        ..Default::default()
                    },
                    TargetConfig {
                        provider: "groq".into(),
                        model: Some("llama-3.1-8b-instant".into()),
                        weight: 1,
                        deployment: None,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            ModelConfig {
                name: "claude-*".into(),
                targets: vec![TargetConfig {
                    provider: "mock".into(),
                    model: None,
                    weight: 1,
                    deployment: None,
                    ..Default::default()
                }],
                ..Default::default()
            },
        ]
    );
}

#[test]
fn reports_every_problem_with_its_path() {
    let yaml = r#"
listen: nowhere
providers:
  openai:
    kind: openai
    base_ur: https://api.openai.com/v1
    keys: ["${MISSING_KEY}"]
  bad:
    kind: openai
    base_url: ftp://files.example.com
  claude:
    kind: anthropic
  groq:
    preset: grok
models:
  - name: fast
    targets:
      - { provider: opnai }
      - { provider: openai, weight: heavy }
  - name: fast
    targets: []
"#;
    assert_eq!(
            problems(yaml),
            [
                "listen: expected an IP address and port like 127.0.0.1:8080, got \"nowhere\"",
                "providers.openai.base_url: required for kind openai (or set preset, e.g. preset: openai)",
                "providers.openai.base_ur: unknown field (did you mean \"base_url\"?)",
                "providers.openai.keys[0]: environment variable MISSING_KEY is not set",
                "providers.bad.base_url: expected an absolute http:// or https:// URL without a query, got \"ftp://files.example.com\"",
                "providers.claude.keys: not given, and environment variable ANTHROPIC_API_KEY (read by kind anthropic) is not set",
                "providers.groq.preset: unknown preset \"grok\" (did you mean \"groq\"?)",
                "models[0].targets[0].provider: unknown provider \"opnai\" (did you mean \"openai\"?)",
                "models[0].targets[1].weight: expected a positive integer, got \"heavy\"",
                "models[1].name: duplicate model name \"fast\" (first defined at models[0])",
                "models[1].targets: must list at least one target",
            ]
        );
    let err = parse_str(yaml, &env).err().map(|e| e.to_string());
    assert_eq!(err.map(|s| s.lines().count()), Some(11));
}

#[test]
fn env_expansion_everywhere() {
    let yaml = "providers:\n  p:\n    kind: openai\n    base_url: \"https://${HOST}/v1\"\n    headers: { X-Price: \"$$5 per ${T}\" }\n    keys: [\"${EMPTY_KEY}\"]\n";
    assert_eq!(problems(yaml), ["providers.p.keys[0]: must not be empty"]);
    let config = parse_str(&yaml.replace("${EMPTY_KEY}", "k"), &env);
    let p = config.as_ref().ok().and_then(|c| c.providers.first());
    assert_eq!(
        p.and_then(|p| p.base_url.as_deref()),
        Some("https://proxy.internal/v1")
    );
    assert_eq!(
        p.and_then(|p| p.headers.get("x-price")).map(String::as_str),
        Some("$5 per 2000")
    );
}

#[test]
fn key_values_never_appear_in_messages() {
    let yaml = r#"
providers:
  a:
    kind: openai
    base_url: http://localhost:1
    keys: [{ value: "${OPENAI_API_KEY}", weight: 0 }, { value: [sk-literal-1] }, 12345678]
  b:
    kind: openai
    base_url: http://localhost:2
    keys: sk-literal-2
  c:
    kind: openai
    base_url: http://localhost:3
    auth: passthrough
    keys: [sk-literal-3]
    headers: { X-Token: { nested: sk-literal-4 } }
"#;
    let got = problems(yaml);
    assert_eq!(
            got,
            [
                "providers.a.keys[0].weight: expected a positive integer, got a number",
                "providers.a.keys[1].value: expected a string, got a list",
                "providers.b.keys: expected a list, got a string",
                "providers.c.auth: passthrough forwards the client's own credentials, so it cannot be combined with keys",
                "providers.c.headers.X-Token: expected a string, got a mapping",
            ]
        );
    for secret in ["sk-openai-secret", "sk-literal", "12345678"] {
        assert!(got.iter().all(|m| !m.contains(secret)), "{secret} leaked");
    }
}

#[test]
fn presets_fill_base_url_and_keys() {
    let yaml = "providers:\n  fast: { preset: groq, base_url: 'http://mirror/v1' }\n  local: { preset: ollama }\n  own: { preset: openai, keys: [mine] }\n";
    let config = parse_str(yaml, &env);
    let summary = config.as_ref().ok().map(|c| {
        c.providers
            .iter()
            .map(|p| {
                let keys: Vec<&str> = p.keys.iter().map(|k| k.value.as_str()).collect();
                (p.id.as_str(), p.base_url.as_deref(), keys)
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(
        summary,
        Some(vec![
            ("fast", Some("http://mirror/v1"), vec!["gsk-groq-secret"]),
            ("local", Some("http://127.0.0.1:11434/v1"), vec![]),
            ("own", Some("https://api.openai.com/v1"), vec!["mine"]),
        ])
    );
    assert_eq!(
            problems("providers:\n  x: { preset: mistral }\n  y: { preset: groq, kind: mock }\n"),
            [
                "providers.x.keys: not given, and environment variable MISTRAL_API_KEY (read by preset \"mistral\") is not set",
                "providers.y.preset: only applies to kind openai",
            ]
        );
}

#[test]
fn zero_config_discovers_presets_from_env() {
    let (config, found) = zero_config(&env);
    assert_eq!(found, ["openai (OPENAI_API_KEY)", "groq (GROQ_API_KEY)"]);
    assert_eq!(config.providers.len(), 2);
    assert_eq!(
        config.providers[1],
        crate::config::preset_provider(&PRESETS[1], "gsk-groq-secret".into())
    );
    assert_eq!(
        config.providers[1].base_url.as_deref(),
        Some("https://api.groq.com/openai/v1")
    );
    assert!(config.models.is_empty() && config.listen.is_none());
    assert_eq!(config.server, ServerSettings::default());
    let (empty, none) = zero_config(&|_| None);
    assert!(empty.providers.is_empty() && none.is_empty());
}

#[test]
fn zero_config_discovers_anthropic_and_gemini() {
    let env = |name: &str| {
        let value = match name {
            "OPENAI_API_KEY" => "sk-openai-secret",
            "ANTHROPIC_API_KEY" => "sk-ant-secret",
            "GEMINI_API_KEY" => "gemini-secret",
            "GOOGLE_API_KEY" => "google-secret",
            _ => return None,
        };
        Some(value.to_string())
    };
    let (config, found) = zero_config(&env);
    assert_eq!(
        found,
        [
            "openai (OPENAI_API_KEY)",
            "anthropic (ANTHROPIC_API_KEY)",
            "gemini (GEMINI_API_KEY)",
        ]
    );
    let summary: Vec<_> = config
        .providers
        .iter()
        .map(|p| {
            let keys: Vec<&str> = p.keys.iter().map(|k| k.value.as_str()).collect();
            (
                p.id.as_str(),
                p.kind,
                p.base_url.as_deref(),
                keys,
                p.auth.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "openai",
                ProviderKind::OpenAi,
                Some("https://api.openai.com/v1"),
                vec!["sk-openai-secret"],
                AuthMode::Keys
            ),
            (
                "anthropic",
                ProviderKind::Anthropic,
                Some("https://api.anthropic.com"),
                vec!["sk-ant-secret"],
                AuthMode::Keys
            ),
            (
                "gemini",
                ProviderKind::Gemini,
                Some("https://generativelanguage.googleapis.com"),
                vec!["gemini-secret"],
                AuthMode::Keys
            ),
        ]
    );
    assert!(config.providers[1..]
        .iter()
        .all(|p| p.anthropic_version.is_none() && p.aws_credentials.is_none()));

    // GOOGLE_API_KEY is the fallback; an empty variable counts as unset.
    let google = |name: &str| match name {
        "GEMINI_API_KEY" | "ANTHROPIC_API_KEY" => Some(String::new()),
        "GOOGLE_API_KEY" => Some("google-secret".to_string()),
        _ => None,
    };
    let (config, found) = zero_config(&google);
    assert_eq!(found, ["gemini (GOOGLE_API_KEY)"]);
    assert_eq!(config.providers.len(), 1);
    assert_eq!(config.providers[0].keys[0].value, "google-secret");
}

#[test]
fn keys_carry_their_rate_limits() {
    let c = parse_str(
            "providers: { p: { kind: openai, base_url: 'http://h/v1', keys: [{ value: a, rpm: 100, tpm: 5000 }, b] } }",
            &env,
        )
        .unwrap();
    let keys = &c.providers[0].keys;
    assert_eq!((keys[0].rpm, keys[0].tpm), (Some(100), Some(5000)));
    assert_eq!((keys[1].rpm, keys[1].tpm), (None, None));
    let got = problems(
        "providers: { p: { kind: openai, base_url: 'http://h/v1', keys: [{ value: a, rpm: 0 }] } }",
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("providers.p.keys[0].rpm:"), "{got:?}");
}

#[test]
fn syntax_errors_and_empty_files() {
    let err = parse_str("providers:\n  a: [\n", &env).err();
    let got: Vec<_> = err.iter().flat_map(|e| e.problems()).collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "<file>");
    assert_eq!(
        got[0].location,
        Some(Location { line: 3, column: 1 }),
        "{}",
        got[0]
    );
    let empty = parse_str("", &env).ok();
    assert_eq!(
        empty.map(|c| (c.providers.len(), c.models.len())),
        Some((0, 0))
    );
    assert!(problems("# only a comment\nmodels: []\nproviders: {}\n").is_empty());
}

#[test]
fn builtin_mock_and_user_mock() {
    assert!(problems("models: [{ name: m, targets: [{ provider: mock }] }]").is_empty());
    let config = parse_str(
        "providers: { mock: { kind: mock, mock: { chunks: 2 } } }",
        &env,
    );
    assert_eq!(config.ok().map(|c| c.providers[0].mock.chunks), Some(2));
    assert_eq!(
            problems("providers: { 'a/b': { kind: mock }, '': { kind: mock } }\nmodels: [{ name: m, targets: [{ provider: x }] }]"),
            [
                "providers.a/b: provider id must not contain '/'",
                "providers: provider id must not be empty",
                "models[0].targets[0].provider: unknown provider \"x\" (known: a/b, , mock)",
            ]
        );
}

#[test]
fn ca_file_is_checked_and_resolved_against_the_config_dir() -> Result<(), Box<dyn std::error::Error>>
{
    let dir = tempfile::tempdir()?;
    let pem = "-----BEGIN CERTIFICATE-----\nAAECAwQFBgc=\n-----END CERTIFICATE-----\n";
    std::fs::write(dir.path().join("ca.pem"), pem)?;
    std::fs::write(dir.path().join("empty.pem"), "not pem\n")?;
    let yaml = "providers:\n  p: { kind: openai, base_url: 'https://x', ca_file: ca.pem }\n";
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, yaml)?;
    let config = load_file(&file)?;
    assert_eq!(config.providers[0].ca_file, Some(dir.path().join("ca.pem")));

    std::fs::write(&file, yaml.replace("ca.pem", "empty.pem"))?;
    let err = load_file(&file)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    // Read from a file: the problem names the file, and the line and column of the value.
    let at = format!("{}:2:54: ", file.display());
    assert!(
        err.starts_with(&format!(
            "{at}providers.p.ca_file: no PEM certificate found in"
        )),
        "{err}"
    );
    std::fs::write(&file, yaml.replace("ca.pem", "nope.pem"))?;
    let err = load_file(&file)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.starts_with(&format!("{at}providers.p.ca_file: cannot read")),
        "{err}"
    );

    let missing = load_file(&dir.path().join("absent.yaml"));
    assert!(matches!(missing, Err(ConfigError::Read { .. })));
    Ok(())
}

#[test]
fn suggest_is_reexported() {
    assert_eq!(
        suggest("opnai", ["openrouter", "openai"])
            .first()
            .map(String::as_str),
        Some("openai")
    );
}

const RESILIENT: &str = r#"
providers:
  primary:
    kind: openai
    base_url: https://api.openai.com/v1
    keys: ["${OPENAI_API_KEY}"]
    timeouts: { first_token_ms: 20000, stall_ms: "${T}", total_ms: 300000 }
    breaker: { consecutive_failures: 3, error_rate: 0.3, min_requests: 10, window_ms: 20000, cooldown_ms: 5000 }
  backup:
    preset: groq
  local:
    kind: mock
models:
  - name: chat
    targets:
      - { provider: primary, model: gpt-4o, weight: 3, max_concurrency: 32, queue: 8 }
      - { provider: primary, model: gpt-4o-2024-11-20 }
    retry: &retry { attempts: 3, backoff_initial_ms: 100, backoff_max_ms: 1000 }
    deadline_ms: 60000
    timeouts: { first_token_ms: 8000 }
    hedge: { after: p95, min_ms: 400 }
    fallbacks: [bulk, backup/llama-3.3-70b-versatile]
    context_window_fallbacks: [local/big]
  - name: bulk
    balance: usage_aware
    retry: { <<: *retry, attempts: 2 }
    targets:
      - { provider: backup, model: llama-3.1-8b-instant, rpm: 30, tpm: 6000 }
      - { provider: primary, model: gpt-4o-mini, rpm: 500 }
    fallbacks: [chat]
"#;

#[test]
fn resilience_settings_decode() {
    let config = match parse_str(RESILIENT, &env) {
        Ok(config) => config,
        Err(e) => panic!("{e}"),
    };
    let primary = &config.providers[0];
    assert_eq!(
        primary.timeouts,
        Timeouts {
            connect_ms: 5_000,
            idle_ms: 90_000,
            first_byte_ms: 60_000,
            first_token_ms: Some(20_000),
            stall_ms: Some(2_000),
            total_ms: 300_000,
        }
    );
    assert_eq!(
        primary.breaker,
        BreakerConfig {
            consecutive_failures: 3,
            error_rate: 0.3,
            min_requests: 10,
            window_ms: 20_000,
            cooldown_ms: 5_000,
        }
    );
    assert_eq!(config.providers[1].breaker, BreakerConfig::default());

    let chat = &config.models[0];
    assert_eq!(chat.balance, Balance::Weighted);
    assert_eq!(
        chat.retry,
        RetryConfig {
            attempts: 3,
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
            retry_after_max_ms: 30_000,
        }
    );
    assert_eq!(chat.deadline_ms, Some(60_000));
    assert_eq!(
        chat.timeouts,
        TimeoutOverrides {
            first_token_ms: Some(8_000),
            ..TimeoutOverrides::default()
        }
    );
    assert_eq!(
        chat.hedge,
        Some(HedgeConfig {
            after: HedgeDelay::P95 { min_ms: 400 },
            max_hedges: 1,
        })
    );
    assert_eq!(chat.fallbacks, ["bulk", "backup/llama-3.3-70b-versatile"]);
    assert_eq!(chat.context_window_fallbacks, ["local/big"]);
    assert!(chat.content_policy_fallbacks.is_empty());
    assert_eq!(
        (chat.targets[0].max_concurrency, chat.targets[0].queue),
        (Some(32), 8)
    );
    assert_eq!(chat.targets[1].max_concurrency, None);

    let bulk = &config.models[1];
    assert_eq!(bulk.balance, Balance::UsageAware);
    // `<<: *retry` shares the settings and overrides one of them.
    assert_eq!(
        bulk.retry,
        RetryConfig {
            attempts: 2,
            ..chat.retry
        }
    );
    let limits: Vec<(Option<u32>, Option<u64>)> =
        bulk.targets.iter().map(|t| (t.rpm, t.tpm)).collect();
    assert_eq!(limits, [(Some(30), Some(6_000)), (Some(500), None)]);
    assert_eq!(bulk.fallbacks, ["chat"]);
    assert_eq!(bulk.hedge, None);
}

#[test]
fn resilience_problems_through_parse_str() {
    let yaml = RESILIENT
        .replace("error_rate: 0.3", "error_rate: 30")
        .replace("balance: usage_aware", "balance: usage-aware")
        .replace("[bulk, backup", "[blk, backp")
        .replace("queue: 8", "queue: 8, max_inflight: 2");
    assert_eq!(
            problems(&yaml),
            [
                "providers.primary.breaker.error_rate: expected a number greater than 0 and at most 1, got 30 (a fraction: 30% is 0.3)",
                "models[0].targets[0].max_inflight: unknown field (expected one of: provider, model, weight, deployment, max_concurrency, queue, rpm, tpm)",
                "models[0].fallbacks[0]: unknown model \"blk\" (did you mean \"bulk\"?)",
                "models[0].fallbacks[1]: unknown provider \"backp\" in \"backp/llama-3.3-70b-versatile\" (did you mean \"backup\"?)",
                "models[1].balance: expected weighted, least_in_flight, lowest_latency or usage_aware, got \"usage-aware\" (did you mean \"usage_aware\"?)",
            ]
        );
}
