//! One rule at a time: each decoding check and validation rule, with the exact messages.

use super::lines;
use crate::config::validate::ANTHROPIC_BASE_URL;
use crate::config::*;
fn problems(yaml: &str) -> Vec<String> {
    problems_with(yaml, &[("T", "2000")])
}

#[test]
fn size_strings() {
    assert_eq!(parse_size("33554432"), Some(33_554_432));
    assert_eq!(parse_size("32MiB"), Some(32 << 20));
    assert_eq!(parse_size("512KiB"), Some(512 << 10));
    assert_eq!(parse_size("1MB"), Some(1_000_000));
    assert_eq!(parse_size(" 2 gib "), Some(2 << 30));
    assert_eq!(parse_size("10b"), Some(10));
    for bad in [
        "",
        "0",
        "0MiB",
        "MiB",
        "1.5MiB",
        "32M",
        "-1",
        "99999999999GiB",
        "1 MiB x",
    ] {
        assert_eq!(parse_size(bad), None, "{bad}");
    }
}

#[test]
fn server_settings_accept_sizes_and_numeric_strings() {
    let server = decode_with(
        "server: { body_limit_bytes: 512KiB, drain_timeout_ms: \"${T}\" }",
        &[("T", "2000")],
    )
    .map(|c| c.server);
    assert_eq!(
        server,
        Ok(ServerSettings {
            body_limit_bytes: 512 * 1024,
            drain_timeout_ms: 2000,
            ..ServerSettings::default()
        })
    );
    assert_eq!(
            problems("server: { body_limit_bytes: 32M, header_read_timeout_ms: 0 }"),
            [
                "server.body_limit_bytes: expected a size in bytes greater than 0, like 33554432 or \"32MiB\", got \"32M\"",
                "server.header_read_timeout_ms: expected a positive integer, got 0",
            ]
        );
}

#[test]
fn root_and_type_errors() {
    assert_eq!(problems("- a"), ["<file>: expected a mapping, got a list"]);
    assert_eq!(
        problems("listen: localhost"),
        ["listen: expected an IP address and port like 127.0.0.1:8080, got \"localhost\""]
    );
    assert_eq!(
        problems("providers: { m: { kind: mock, mock: { chunks: 0, reply_words: 5000000000 } } }"),
        [
            "providers.m.mock.chunks: expected a positive integer, got 0",
            "providers.m.mock.reply_words: must be at most 4294967295, got 5000000000",
        ]
    );
}

#[test]
fn headers_are_checked() {
    let got = problems(
            "providers:\n  p:\n    kind: mock\n    headers:\n      Connection: close\n      X-Api-Key: s3cret\n      Host: h\n      \"bad name\": x\n      X-Ok: \"a\\nb\"\n      HTTP-Referer: https://e.com\n      http-referer: again\n",
        );
    assert_eq!(
            got,
            [
                "providers.p.headers.Connection: hop-by-hop header; it cannot be sent upstream",
                "providers.p.headers.X-Api-Key: credentials cannot be set as headers; use keys (or auth: passthrough)",
                "providers.p.headers.Host: set by the gateway for each request; it cannot be overridden",
                "providers.p.headers.bad name: invalid header name",
                "providers.p.headers.X-Ok: invalid header value (control characters are not allowed)",
                "providers.p.headers.http-referer: duplicate header (names are case-insensitive)",
            ]
        );
    assert!(got.iter().all(|m| !m.contains("s3cret")));
}

#[test]
fn kind_messages() {
    assert_eq!(
            problems("providers: { g: { kind: groq }, o: { kind: opnai, base_url: 'http://x' }, c: { kind: claude }, n: { base_url: 'http://x' } }"),
            [
                "providers.g.kind: unknown provider kind \"groq\" (did you mean preset: groq?)",
                "providers.o.kind: unknown provider kind \"opnai\" (did you mean \"openai\"?) (supported: openai, anthropic, gemini, azure, bedrock, mock)",
                "providers.c.kind: unknown provider kind \"claude\" (did you mean \"anthropic\"?) (supported: openai, anthropic, gemini, azure, bedrock, mock)",
                "providers.n.kind: missing required field (supported: openai, anthropic, gemini, azure, bedrock, mock), or set preset",
            ]
        );
    let config = decoded(
            "providers:\n  o: { kind: openai, base_url: 'http://x' }\n  a: { kind: anthropic, keys: [k] }\n  g: { kind: gemini, keys: [k] }\n  z: { kind: azure, base_url: 'https://r.openai.azure.com', keys: [k] }\n  b: { kind: bedrock, region: us-east-1, keys: [k] }\n  m: { kind: mock }\n",
            &[],
        );
    let kinds: Vec<ProviderKind> = config.providers.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [
            ProviderKind::OpenAi,
            ProviderKind::Anthropic,
            ProviderKind::Gemini,
            ProviderKind::Azure,
            ProviderKind::Bedrock,
            ProviderKind::Mock,
        ]
    );
}

/// Decodes with exactly these environment variables; panics with the problems otherwise.
fn decoded(yaml: &str, vars: &[(&str, &str)]) -> Config {
    match decode_with(yaml, vars) {
        Ok(config) => config,
        Err(problems) => panic!("unexpected problems: {problems:#?}"),
    }
}

fn decode_with(yaml: &str, vars: &[(&str, &str)]) -> Result<Config, Vec<String>> {
    let env = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    parse_str(yaml, &env).map_err(|e| lines(&e))
}

fn problems_with(yaml: &str, vars: &[(&str, &str)]) -> Vec<String> {
    decode_with(yaml, vars).err().unwrap_or_default()
}

fn key_values(p: &ProviderConfig) -> Vec<&str> {
    p.keys.iter().map(|k| k.value.as_str()).collect()
}

#[test]
fn native_kinds_get_vendor_base_urls_and_key_variables() {
    let vars = [
        ("ANTHROPIC_API_KEY", "sk-ant-env"),
        ("GEMINI_API_KEY", "gem-env"),
        ("GOOGLE_API_KEY", "goog-env"),
        ("AZURE_OPENAI_API_KEY", "az-env"),
        ("AWS_BEARER_TOKEN_BEDROCK", "bedrock-env"),
    ];
    let config = decoded(
            "providers:\n  a: { kind: anthropic }\n  g: { kind: gemini }\n  z: { kind: azure, base_url: 'https://r.openai.azure.com/' }\n  b: { kind: bedrock, region: eu-west-3 }\n  m: { kind: mock }\n",
            &vars,
        );
    let summary: Vec<_> = config
        .providers
        .iter()
        .map(|p| (p.id.as_str(), p.base_url.as_deref(), key_values(p)))
        .collect();
    assert_eq!(
        summary,
        [
            ("a", Some("https://api.anthropic.com"), vec!["sk-ant-env"]),
            (
                "g",
                Some("https://generativelanguage.googleapis.com"),
                vec!["gem-env"]
            ),
            ("z", Some("https://r.openai.azure.com"), vec!["az-env"]),
            (
                "b",
                Some("https://bedrock-runtime.eu-west-3.amazonaws.com"),
                vec!["bedrock-env"]
            ),
            ("m", None, vec![]),
        ]
    );
    assert_eq!(config.providers[3].region.as_deref(), Some("eu-west-3"));
    assert!(config.providers.iter().all(|p| p.aws_credentials.is_none()
        && p.api_version.is_none()
        && p.anthropic_version.is_none()));

    // GOOGLE_API_KEY when GEMINI_API_KEY is unset or empty; explicit base URLs win.
    let config = decoded(
        "providers:\n  g: { kind: gemini, base_url: 'https://proxy.example/gemini/' }\n",
        &[("GEMINI_API_KEY", ""), ("GOOGLE_API_KEY", "goog-env")],
    );
    assert_eq!(key_values(&config.providers[0]), ["goog-env"]);
    assert_eq!(
        config.providers[0].base_url.as_deref(),
        Some("https://proxy.example/gemini")
    );

    // Given keys and passthrough read no variable.
    let config = decoded(
            "providers:\n  a: { kind: anthropic, keys: [own] }\n  g: { kind: gemini, auth: passthrough }\n",
            &vars,
        );
    assert_eq!(key_values(&config.providers[0]), ["own"]);
    assert!(config.providers[1].keys.is_empty());
    assert_eq!(config.providers[1].auth, AuthMode::Passthrough);
}

#[test]
fn missing_key_variables_and_base_urls_are_reported() {
    assert_eq!(
            problems_with(
                "providers:\n  a: { kind: anthropic }\n  g: { kind: gemini }\n  z: { kind: azure }\n  b: { kind: bedrock }\n",
                &[],
            ),
            [
                "providers.a.keys: not given, and environment variable ANTHROPIC_API_KEY (read by kind anthropic) is not set",
                "providers.g.keys: not given, and none of the environment variables GEMINI_API_KEY, GOOGLE_API_KEY (read by kind gemini) is set",
                "providers.z.base_url: required for kind azure: the resource endpoint, like https://my-resource.openai.azure.com",
                "providers.z.keys: not given, and environment variable AZURE_OPENAI_API_KEY (read by kind azure) is not set",
                "providers.b.region: required for kind bedrock (like us-east-1), unless base_url is given",
                "providers.b.keys: not given, and no credentials found: set AWS_BEARER_TOKEN_BEDROCK (a Bedrock API key), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (signed requests; AWS_SESSION_TOKEN optional), or give keys, or aws_access_key_id and aws_secret_access_key",
            ]
        );
}

#[test]
fn fields_of_another_kind_are_problems() {
    let yaml = r#"
providers:
  o: { kind: openai, base_url: "http://x", api_version: 2024-10-21, mock: { chunks: 2 } }
  a: { kind: anthropic, keys: [k], region: us-east-1, preset: groq }
  g: { kind: gemini, keys: [k], anthropic_version: "2023-06-01" }
  z: { kind: azure, base_url: "https://r.openai.azure.com", keys: [k], aws_access_key_id: AKIDSECRET1, aws_secret_access_key: SECRETSECRET2, aws_session_token: TOKENSECRET3 }
  m: { kind: mock, api_version: x, region: us-east-1, anthropic_version: "2023-06-01" }
"#;
    let got = problems(yaml);
    assert_eq!(
        got,
        [
            "providers.o.api_version: only applies to kind azure",
            "providers.o.mock: only applies to kind mock",
            "providers.a.region: only applies to kind bedrock",
            "providers.a.preset: only applies to kind openai",
            "providers.g.anthropic_version: only applies to kind anthropic",
            "providers.z.aws_access_key_id: only applies to kind bedrock",
            "providers.z.aws_secret_access_key: only applies to kind bedrock",
            "providers.z.aws_session_token: only applies to kind bedrock",
            "providers.m.api_version: only applies to kind azure",
            "providers.m.region: only applies to kind bedrock",
            "providers.m.anthropic_version: only applies to kind anthropic",
        ]
    );
    for secret in ["AKIDSECRET1", "SECRETSECRET2", "TOKENSECRET3"] {
        assert!(got.iter().all(|m| !m.contains(secret)), "{secret} leaked");
    }
    // A preset does not lend its base URL or key variable to another kind.
    let config = decoded(
        "providers:\n  a: { kind: anthropic, keys: [k] }\n",
        &[("GROQ_API_KEY", "gsk")],
    );
    assert_eq!(
        config.providers[0].base_url.as_deref(),
        Some(ANTHROPIC_BASE_URL)
    );
}

#[test]
fn kind_specific_values_are_validated() {
    let yaml = r#"
providers:
  z: { kind: azure, base_url: "https://r.openai.azure.com", keys: [k], api_version: "2024-10-21&x=1" }
  z2: { kind: azure, base_url: "https://r.openai.azure.com", keys: [k], api_version: "" }
  a: { kind: anthropic, keys: [k], anthropic_version: "2023-6-1" }
  b1: { kind: bedrock, keys: [k], region: US-East-1 }
  b2: { kind: bedrock, keys: [k], region: us_east_1 }
  b3: { kind: bedrock, keys: [k], region: "us-east-" }
  b4: { kind: bedrock, keys: [k], region: "1us" }
"#;
    let mut expected = vec![
        "providers.z.api_version: expected an API version like \"2024-10-21\" (letters, digits, '-', '.', '_'), got \"2024-10-21&x=1\"".to_owned(),
        "providers.z2.api_version: expected an API version like \"2024-10-21\" (letters, digits, '-', '.', '_'), got \"\"".to_owned(),
        "providers.a.anthropic_version: expected a version date like \"2023-06-01\", got \"2023-6-1\"".to_owned(),
    ];
    for (name, got) in [
        ("b1", "US-East-1"),
        ("b2", "us_east_1"),
        ("b3", "us-east-"),
        ("b4", "1us"),
    ] {
        expected.push(format!("providers.{name}.region: expected an AWS region like \"us-east-1\" (lowercase letters, digits and dashes), got \"{got}\""));
    }
    assert_eq!(problems(yaml), expected);
    let config = decoded(
            "providers:\n  z: { kind: azure, base_url: 'https://r.openai.azure.com', keys: [k], api_version: 2025-04-01-preview }\n  a: { kind: anthropic, keys: [k], anthropic_version: '${V}' }\n  b: { kind: bedrock, keys: [k], region: '${R}' }\n",
            &[("V", "2023-06-01"), ("R", "ap-southeast-2")],
        );
    assert_eq!(
        config.providers[0].api_version.as_deref(),
        Some("2025-04-01-preview")
    );
    assert_eq!(
        config.providers[1].anthropic_version.as_deref(),
        Some("2023-06-01")
    );
    assert_eq!(
        config.providers[2].base_url.as_deref(),
        Some("https://bedrock-runtime.ap-southeast-2.amazonaws.com")
    );
}

#[test]
fn base_urls_must_not_carry_the_appended_api_path() {
    let yaml = r#"
providers:
  a: { kind: anthropic, keys: [k], base_url: "https://api.anthropic.com/v1/" }
  a2: { kind: anthropic, keys: [k], base_url: "https://api.anthropic.com/v1/messages" }
  g: { kind: gemini, keys: [k], base_url: "https://generativelanguage.googleapis.com/v1beta" }
  g2: { kind: gemini, keys: [k], base_url: "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent" }
  z: { kind: azure, keys: [k], base_url: "https://r.openai.azure.com/openai/v1" }
  z2: { kind: azure, keys: [k], base_url: "https://r.openai.azure.com/openai/deployments/gpt-4o/chat/completions" }
"#;
    assert_eq!(
            problems(yaml),
            [
                "providers.a.base_url: ends with \"/v1\", which the gateway appends itself for kind anthropic; give the base URL only, like https://api.anthropic.com",
                "providers.a2.base_url: contains \"/v1/messages\", which the gateway appends itself for kind anthropic; give the base URL only, like https://api.anthropic.com",
                "providers.g.base_url: ends with \"/v1beta\", which the gateway appends itself for kind gemini; give the base URL only, like https://generativelanguage.googleapis.com",
                "providers.g2.base_url: contains \"/models/\", which the gateway appends itself for kind gemini; give the base URL only, like https://generativelanguage.googleapis.com",
                "providers.z.base_url: ends with \"/openai/v1\", which the gateway appends itself for kind azure; give the base URL only, like https://my-resource.openai.azure.com",
                "providers.z2.base_url: contains \"/openai/deployments/\", which the gateway appends itself for kind azure; give the base URL only, like https://my-resource.openai.azure.com",
            ]
        );
    // A proxy whose own path has a version segment in the middle is fine, and OpenAI keeps
    // its `/v1` (OpenAI base URLs include it).
    let config = decoded(
            "providers:\n  a: { kind: anthropic, keys: [k], base_url: 'https://gateway.ai.cloudflare.com/v1/acct/gw/anthropic' }\n  o: { kind: openai, base_url: 'https://api.openai.com/v1' }\n",
            &[],
        );
    assert_eq!(
        config.providers[0].base_url.as_deref(),
        Some("https://gateway.ai.cloudflare.com/v1/acct/gw/anthropic")
    );
}

#[test]
fn bedrock_credentials_resolution() {
    let yaml = "providers:\n  b: { kind: bedrock, region: us-west-2 }\n";
    // A Bedrock API key in the environment wins over SigV4 variables.
    let config = decoded(
        yaml,
        &[
            ("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key"),
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ],
    );
    assert_eq!(key_values(&config.providers[0]), ["bedrock-api-key"]);
    assert_eq!(config.providers[0].aws_credentials, None);

    // The standard AWS variables, session token included.
    let config = decoded(
        yaml,
        &[
            ("AWS_BEARER_TOKEN_BEDROCK", ""),
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
            ("AWS_SESSION_TOKEN", "env-token"),
        ],
    );
    assert!(config.providers[0].keys.is_empty());
    assert_eq!(
        config.providers[0].aws_credentials,
        Some(AwsCredentialsConfig {
            access_key_id: "AKIAENV".into(),
            secret_access_key: "env-secret".into(),
            session_token: Some("env-token".into()),
        })
    );

    // Credentials written in the file win over everything in the environment, and do not
    // pick up the environment's session token (it belongs to other credentials).
    let config = decoded(
            "providers:\n  b: { kind: bedrock, region: us-west-2, aws_access_key_id: AKIAFILE, aws_secret_access_key: '${S}' }\n",
            &[
                ("S", "file-secret"),
                ("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key"),
                ("AWS_SESSION_TOKEN", "env-token"),
            ],
        );
    assert!(config.providers[0].keys.is_empty());
    assert_eq!(
        config.providers[0].aws_credentials,
        Some(AwsCredentialsConfig {
            access_key_id: "AKIAFILE".into(),
            secret_access_key: "file-secret".into(),
            session_token: None,
        })
    );

    // `keys` are Bedrock API keys.
    let config = decoded(
        "providers:\n  b: { kind: bedrock, region: us-west-2, keys: [abk-1] }\n",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ],
    );
    assert_eq!(key_values(&config.providers[0]), ["abk-1"]);
    assert_eq!(config.providers[0].aws_credentials, None);

    // Passthrough reads nothing.
    let config = decoded(
        "providers:\n  b: { kind: bedrock, region: us-west-2, auth: passthrough }\n",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ],
    );
    assert!(config.providers[0].keys.is_empty());
    assert_eq!(config.providers[0].aws_credentials, None);
}

#[test]
fn bedrock_credential_problems_never_show_secrets() {
    let yaml = r#"
providers:
  only_id: { kind: bedrock, region: us-east-1, aws_access_key_id: AKIASECRETID1 }
  only_secret: { kind: bedrock, region: us-east-1, aws_secret_access_key: SECRETVALUE2 }
  only_token: { kind: bedrock, region: us-east-1, keys: [k], aws_session_token: TOKENVALUE3 }
  both: { kind: bedrock, region: us-east-1, keys: [k], aws_access_key_id: AKIASECRETID4, aws_secret_access_key: SECRETVALUE5 }
  pass: { kind: bedrock, region: us-east-1, auth: passthrough, aws_access_key_id: AKIASECRETID6, aws_secret_access_key: SECRETVALUE7 }
  bad: { kind: bedrock, region: us-east-1, aws_access_key_id: [AKIASECRETID8], aws_secret_access_key: "" }
  num: { kind: bedrock, region: us-east-1, aws_access_key_id: 123456789, aws_secret_access_key: { v: SECRETVALUE9 } }
"#;
    let got = problems_with(yaml, &[("AWS_ACCESS_KEY_ID", "AKIAENVSECRET")]);
    assert_eq!(
            got,
            [
                "providers.only_id.aws_secret_access_key: required when aws_access_key_id is given (give both or neither)",
                "providers.only_secret.aws_access_key_id: required when aws_secret_access_key is given (give both or neither)",
                "providers.only_token.aws_session_token: only used together with aws_access_key_id and aws_secret_access_key",
                "providers.both.keys: Bedrock API keys cannot be combined with aws_access_key_id / aws_secret_access_key; give one or the other",
                "providers.pass.auth: passthrough forwards the client's own credentials, so it cannot be combined with aws_access_key_id / aws_secret_access_key",
                "providers.bad.aws_access_key_id: expected a string, got a list",
                "providers.bad.aws_secret_access_key: must not be empty",
                "providers.num.aws_secret_access_key: expected a string, got a mapping",
            ]
        );
    for secret in [
        "AKIASECRETID",
        "SECRETVALUE",
        "TOKENVALUE",
        "AKIAENVSECRET",
        "123456789",
    ] {
        assert!(got.iter().all(|m| !m.contains(secret)), "{secret} leaked");
    }

    // Half of the AWS variables names the missing one, never a value.
    let got = problems_with(
        "providers:\n  b: { kind: bedrock, region: us-east-1 }\n",
        &[("AWS_SECRET_ACCESS_KEY", "ENVSECRETVALUE")],
    );
    assert_eq!(
            got,
            ["providers.b.keys: not given, and environment variable AWS_ACCESS_KEY_ID is not set (AWS_SECRET_ACCESS_KEY is; AWS credentials need both)"]
        );
    assert!(!got[0].contains("ENVSECRETVALUE"));
}

#[test]
fn bedrock_region_rules() {
    // base_url instead of region is fine with a Bedrock API key...
    let config = decoded(
            "providers:\n  b: { kind: bedrock, base_url: 'https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com', keys: [k] }\n",
            &[],
        );
    assert_eq!(config.providers[0].region, None);
    assert_eq!(
        config.providers[0].base_url.as_deref(),
        Some("https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com")
    );
    // ...but SigV4 needs the region for its signing scope.
    assert_eq!(
            problems_with(
                "providers:\n  b: { kind: bedrock, base_url: 'https://proxy.internal' }\n",
                &[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "s")],
            ),
            ["providers.b.region: required to sign requests with AWS credentials (SigV4), also when base_url is given"]
        );
    // Both given: the base URL wins, the region stays for signing.
    let config = decoded(
            "providers:\n  b: { kind: bedrock, region: eu-central-1, base_url: 'https://proxy.internal/' }\n",
            &[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "s")],
        );
    assert_eq!(
        config.providers[0].base_url.as_deref(),
        Some("https://proxy.internal")
    );
    assert_eq!(config.providers[0].region.as_deref(), Some("eu-central-1"));
}

#[test]
fn mock_dialect() {
    let config = decoded(
            "providers:\n  d: { kind: mock }\n  a: { kind: mock, mock: { dialect: anthropic } }\n  g: { kind: mock, mock: { dialect: gemini, chunks: 3 } }\n  o: { kind: mock, mock: { dialect: openai } }\n",
            &[],
        );
    let dialects: Vec<MockDialect> = config.providers.iter().map(|p| p.mock.dialect).collect();
    assert_eq!(
        dialects,
        [
            MockDialect::OpenAi,
            MockDialect::Anthropic,
            MockDialect::Gemini,
            MockDialect::OpenAi
        ]
    );
    assert_eq!(config.providers[2].mock.chunks, 3);
    assert_eq!(
            problems("providers:\n  b: { kind: mock, mock: { dialect: bedrock } }\n  t: { kind: mock, mock: { dialect: antropic } }\n  n: { kind: mock, mock: { dialect: [openai] } }\n"),
            [
                "providers.b.mock.dialect: bedrock is not a mock dialect (expected openai, anthropic or gemini)",
                "providers.t.mock.dialect: expected openai, anthropic or gemini, got \"antropic\" (did you mean \"anthropic\"?)",
                "providers.n.mock.dialect: expected a string, got a list",
            ]
        );
}

#[test]
fn target_deployment_is_for_azure_only() {
    let providers = "providers:\n  az: { kind: azure, base_url: 'https://r.openai.azure.com', keys: [k] }\n  oa: { kind: openai, base_url: 'http://x' }\n  broken: { kind: nope }\n";
    let config = decoded(
            &format!("{providers}models:\n  - name: gpt-4o\n    targets: [{{ provider: az, deployment: prod-gpt-4o }}, {{ provider: az }}, {{ provider: az, model: gpt-4o, deployment: '${{D}}' }}]\n").replace("  broken: { kind: nope }\n", ""),
            &[("D", "dep.2")],
        );
    let targets: Vec<(&str, Option<&str>, Option<&str>)> = config.models[0]
        .targets
        .iter()
        .map(|t| {
            (
                t.provider.as_str(),
                t.model.as_deref(),
                t.deployment.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        targets,
        [
            ("az", None, Some("prod-gpt-4o")),
            ("az", None, None),
            ("az", Some("gpt-4o"), Some("dep.2")),
        ]
    );
    assert_eq!(
            problems(&format!("{providers}models:\n  - name: m\n    targets:\n      - {{ provider: oa, deployment: d }}\n      - {{ provider: mock, deployment: d }}\n      - {{ provider: broken, deployment: d }}\n      - {{ provider: ghost, deployment: d }}\n      - {{ provider: az, deployment: 'a/b' }}\n      - {{ provider: az, deployment: '' }}\n      - {{ provider: az, deployment: 'has space' }}\n")),
            [
                "providers.broken.kind: unknown provider kind \"nope\" (supported: openai, anthropic, gemini, azure, bedrock, mock)",
                "models[0].targets[0].deployment: only applies to kind azure (provider \"oa\" is kind openai)",
                "models[0].targets[1].deployment: only applies to kind azure (provider \"mock\" is kind mock)",
                "models[0].targets[3].provider: unknown provider \"ghost\" (known: az, oa, broken, mock)",
                "models[0].targets[4].deployment: expected a deployment name (it goes into the request path: no '/', '?', '#', '%', '\\' or spaces), got \"a/b\"",
                "models[0].targets[5].deployment: must not be empty (omit it to use the model name as the deployment)",
                "models[0].targets[6].deployment: expected a deployment name (it goes into the request path: no '/', '?', '#', '%', '\\' or spaces), got \"has space\"",
            ]
        );
    // A file's own `mock` provider of another kind is what `provider: mock` means.
    assert_eq!(
            problems("providers:\n  mock: { kind: azure, base_url: 'https://r.openai.azure.com', keys: [k] }\nmodels: [{ name: m, targets: [{ provider: mock, deployment: d }] }]\n"),
            Vec::<String>::new()
        );
}

// Resilience settings.

/// A mock provider and two models, so resilience snippets have something to refer to.
const TWO_MODELS: &str = "providers:\n  up: { kind: openai, base_url: 'http://x/v1' }\n  alt: { kind: mock }\nmodels:\n  - { name: a, targets: [{ provider: up }, { provider: alt }] }\n  - { name: b, targets: [{ provider: alt }] }\n";

#[test]
fn provider_timeouts_first_token_and_stall() {
    let config = decoded(
            "providers:\n  p: { kind: mock, timeouts: { first_token_ms: 1500, stall_ms: '${S}', total_ms: 9000 } }\n  d: { kind: mock, timeouts: { connect_ms: 100 } }\n",
            &[("S", "4000")],
        );
    assert_eq!(
        config.providers[0].timeouts,
        Timeouts {
            first_token_ms: Some(1500),
            stall_ms: Some(4000),
            total_ms: 9000,
            ..Timeouts::default()
        }
    );
    assert_eq!(config.providers[1].timeouts.first_token_ms, None);
    assert_eq!(config.providers[1].timeouts.stall_ms, None);
    assert_eq!(
            problems(
                r#"
providers:
  zero: { kind: mock, timeouts: { first_token_ms: 0, stall_ms: soon } }
  over: { kind: mock, timeouts: { first_token_ms: 9001, total_ms: 9000 } }
  over_default: { kind: mock, timeouts: { first_token_ms: 600001 } }
  equal: { kind: mock, timeouts: { first_token_ms: 9000, total_ms: 9000 } }
  bad_total: { kind: mock, timeouts: { first_token_ms: 700000, total_ms: -1 } }
  typo: { kind: mock, timeouts: { stall: 5 } }
"#
            ),
            [
                "providers.zero.timeouts.first_token_ms: expected a positive integer, got 0",
                "providers.zero.timeouts.stall_ms: expected a positive integer, got \"soon\"",
                "providers.over.timeouts.first_token_ms: must not exceed total_ms (9000), got 9001",
                "providers.over_default.timeouts.first_token_ms: must not exceed total_ms (600000, the default), got 600001",
                "providers.bad_total.timeouts.total_ms: expected a positive integer, got -1",
                "providers.typo.timeouts.stall: unknown field (did you mean \"stall_ms\"?)",
            ]
        );
}

#[test]
fn provider_breaker() {
    let config = decoded(
            "providers:\n  p: { kind: openai, base_url: 'http://x/v1', breaker: { consecutive_failures: 3, error_rate: 0.25, min_requests: 10, window_ms: 60000, cooldown_ms: '${C}' } }\n  part: { kind: mock, breaker: { error_rate: '${R}' } }\n  none: { kind: mock }\n",
            &[("C", "15000"), ("R", "1")],
        );
    assert_eq!(
        config.providers[0].breaker,
        BreakerConfig {
            consecutive_failures: 3,
            error_rate: 0.25,
            min_requests: 10,
            window_ms: 60_000,
            cooldown_ms: 15_000,
        }
    );
    assert_eq!(
        config.providers[1].breaker,
        BreakerConfig {
            error_rate: 1.0,
            ..BreakerConfig::default()
        }
    );
    assert_eq!(config.providers[2].breaker, BreakerConfig::default());
    assert_eq!(
            problems(
                r#"
providers:
  a: { kind: mock, breaker: { error_rate: 0, consecutive_failures: 0 } }
  b: { kind: mock, breaker: { error_rate: 50, min_requests: 0, window_ms: 0, cooldown_ms: x } }
  c: { kind: mock, breaker: { error_rate: 1.5 } }
  d: { kind: mock, breaker: { error_rate: half } }
  e: { kind: mock, breaker: { error_rate: .nan } }
  f: { kind: mock, breaker: { cooldown: 5 } }
  g: { kind: mock, breaker: 5 }
"#
            ),
            [
                "providers.a.breaker.error_rate: expected a number greater than 0 and at most 1, got 0",
                "providers.a.breaker.consecutive_failures: expected a positive integer, got 0",
                "providers.b.breaker.error_rate: expected a number greater than 0 and at most 1, got 50 (a fraction: 50% is 0.5)",
                "providers.b.breaker.min_requests: expected a positive integer, got 0",
                "providers.b.breaker.window_ms: expected a positive integer, got 0",
                "providers.b.breaker.cooldown_ms: expected a positive integer, got \"x\"",
                "providers.c.breaker.error_rate: expected a number greater than 0 and at most 1, got 1.5",
                "providers.d.breaker.error_rate: expected a number greater than 0 and at most 1, got \"half\"",
                "providers.e.breaker.error_rate: expected a number greater than 0 and at most 1, got .nan",
                "providers.f.breaker.cooldown: unknown field (did you mean \"cooldown_ms\"?)",
                "providers.g.breaker: expected a mapping, got 5",
            ]
        );
}

#[test]
fn model_balance() {
    let yaml = "models:\n  - { name: w, targets: [{ provider: mock }] }\n  - { name: l, balance: least_in_flight, targets: [{ provider: mock }] }\n  - { name: t, balance: lowest_latency, targets: [{ provider: mock }] }\n  - { name: u, balance: usage_aware, targets: [{ provider: mock, tpm: 100000 }, { provider: mock }] }\n  - { name: x, balance: '${B}', targets: [{ provider: mock }] }\n";
    let config = decoded(yaml, &[("B", "weighted")]);
    let modes: Vec<Balance> = config.models.iter().map(|m| m.balance).collect();
    assert_eq!(
        modes,
        [
            Balance::Weighted,
            Balance::LeastInFlight,
            Balance::LowestLatency,
            Balance::UsageAware,
            Balance::Weighted
        ]
    );
    assert_eq!(
            problems(
                r#"
models:
  - { name: a, balance: least-in-flight, targets: [{ provider: mock }] }
  - { name: b, balance: round_robin, targets: [{ provider: mock }] }
  - { name: c, balance: usage_aware, targets: [{ provider: mock }, { provider: mock }] }
  - { name: d, balance: usage_aware, targets: [{ provider: mock, rpm: 0 }] }
  - { name: e, balance: [weighted], targets: [{ provider: mock }] }
"#
            ),
            [
                "models[0].balance: expected weighted, least_in_flight, lowest_latency or usage_aware, got \"least-in-flight\" (did you mean \"least_in_flight\"?)",
                "models[1].balance: expected weighted, least_in_flight, lowest_latency or usage_aware, got \"round_robin\"",
                "models[2].balance: usage_aware needs rpm or tpm on at least one target, or on a key of a target's provider (the limits it balances against)",
                // The invalid rpm is reported; the balance is not blamed for it as well.
                "models[3].targets[0].rpm: expected a positive integer, got 0",
                "models[4].balance: expected a string, got a list",
            ]
        );
}

#[test]
fn model_retry_and_deadline() {
    let config = decoded(
            "models:\n  - name: r\n    targets: [{ provider: mock }]\n    retry: { attempts: 3, backoff_initial_ms: 100, backoff_max_ms: 100, retry_after_max_ms: 0 }\n    deadline_ms: 45000\n  - name: part\n    targets: [{ provider: mock }]\n    retry: { attempts: '${N}' }\n  - { name: none, targets: [{ provider: mock }] }\n",
            &[("N", "10")],
        );
    assert_eq!(
        config.models[0].retry,
        RetryConfig {
            attempts: 3,
            backoff_initial_ms: 100,
            backoff_max_ms: 100,
            retry_after_max_ms: 0,
        }
    );
    assert_eq!(config.models[0].deadline_ms, Some(45_000));
    assert_eq!(
        config.models[1].retry,
        RetryConfig {
            attempts: 10,
            ..RetryConfig::default()
        }
    );
    assert_eq!(config.models[2].retry, RetryConfig::default());
    assert_eq!(config.models[2].deadline_ms, None);
    assert_eq!(
            problems(
                r#"
models:
  - name: a
    targets: [{ provider: mock }]
    retry: { attempts: 0, backoff_initial_ms: 500, backoff_max_ms: 499 }
    deadline_ms: 0
  - name: b
    targets: [{ provider: mock }]
    retry: { attempts: 11, backoff_initial_ms: 6000 }
  - name: c
    targets: [{ provider: mock }]
    retry: { backoff_initial_ms: soon, backoff_max_ms: 1, retry_after_max_ms: -5, attemps: 2 }
"#
            ),
            [
                "models[0].retry.attempts: expected a positive integer, got 0",
                "models[0].retry.backoff_max_ms: must be at least backoff_initial_ms (500), got 499",
                "models[0].deadline_ms: expected a positive integer, got 0",
                "models[1].retry.attempts: must be at most 10, got 11",
                "models[1].retry.backoff_initial_ms: must not exceed backoff_max_ms (5000, the default), got 6000",
                "models[2].retry.backoff_initial_ms: expected a non-negative integer, got \"soon\"",
                "models[2].retry.retry_after_max_ms: expected a non-negative integer, got -5",
                "models[2].retry.attemps: unknown field (did you mean \"attempts\"?)",
            ]
        );
}

#[test]
fn model_timeout_overrides() {
    let config = decoded(
            "models:\n  - name: m\n    targets: [{ provider: mock }]\n    timeouts: { first_byte_ms: 2, first_token_ms: 3, stall_ms: 4, total_ms: 5 }\n  - name: n\n    targets: [{ provider: mock }]\n    timeouts: { stall_ms: 700, first_token_ms: 900000 }\n",
            &[],
        );
    assert_eq!(
        config.models[0].timeouts,
        TimeoutOverrides {
            first_byte_ms: Some(2),
            first_token_ms: Some(3),
            stall_ms: Some(4),
            total_ms: Some(5),
        }
    );
    // Without a total here, the provider's applies, which may differ per target.
    assert_eq!(
        config.models[1].timeouts,
        TimeoutOverrides {
            first_token_ms: Some(900_000),
            stall_ms: Some(700),
            ..TimeoutOverrides::default()
        }
    );
    assert_eq!(
            problems(
                "models:\n  - name: m\n    targets: [{ provider: mock }]\n    timeouts: { first_token_ms: 10, total_ms: 9, stall_ms: 0, firstbyte_ms: 1, connect_ms: 5 }\n"
            ),
            [
                "models[0].timeouts.first_token_ms: must not exceed total_ms (9), got 10",
                "models[0].timeouts.stall_ms: expected a positive integer, got 0",
                "models[0].timeouts.firstbyte_ms: unknown field (did you mean \"first_byte_ms\"?)",
                "models[0].timeouts.connect_ms: is a provider setting (connections are pooled per provider): set it under providers.<id>.timeouts",
            ]
        );
}

#[test]
fn model_hedge() {
    let yaml = "models:\n  - { name: f, targets: [{ provider: mock }, { provider: mock }], hedge: { after_ms: 1500 } }\n  - { name: p, targets: [{ provider: mock }], fallbacks: [f], hedge: { after: p95, min_ms: 300, max_hedges: 3 } }\n  - { name: d, targets: [{ provider: mock }, { provider: mock }], hedge: { after: '${A}' } }\n  - { name: n, targets: [{ provider: mock }], hedge: }\n";
    let config = decoded(yaml, &[("A", "p95")]);
    let hedges: Vec<Option<HedgeConfig>> = config.models.iter().map(|m| m.hedge).collect();
    assert_eq!(
        hedges,
        [
            Some(HedgeConfig {
                after: HedgeDelay::FixedMs(1500),
                max_hedges: 1
            }),
            Some(HedgeConfig {
                after: HedgeDelay::P95 { min_ms: 300 },
                max_hedges: 3
            }),
            Some(HedgeConfig {
                after: HedgeDelay::P95 { min_ms: 200 },
                max_hedges: 1
            }),
            None,
        ]
    );
    let two = "targets: [{ provider: mock }, { provider: mock }]";
    assert_eq!(
            problems(&format!(
                r#"
models:
  - {{ name: a, {two}, hedge: {{ after_ms: 100, after: p95 }} }}
  - {{ name: b, {two}, hedge: {{ max_hedges: 2 }} }}
  - {{ name: c, {two}, hedge: {{ after_ms: 100, min_ms: 50 }} }}
  - {{ name: d, {two}, hedge: {{ after: p99 }} }}
  - {{ name: e, {two}, hedge: {{ after: 500 }} }}
  - {{ name: f, {two}, hedge: {{ after_ms: 0, max_hedges: 0 }} }}
  - {{ name: g, {two}, hedge: {{ after: p95, max_hedges: 4, min_ms: x }} }}
  - {{ name: h, targets: [{{ provider: mock }}], hedge: {{ after_ms: 100 }} }}
  - {{ name: i, targets: [{{ provider: mock }}], fallbacks: [], hedge: {{ after: p95 }} }}
  - {{ name: j, {two}, hedge: {{ after_ms: 100, delay: 1 }} }}
  - {{ name: k, targets: [{{ provider: mock }}], fallbacks: j, hedge: {{ after_ms: 100 }} }}
"#
            )),
            [
                "models[0].hedge: give after_ms (a fixed delay) or after: p95, not both",
                "models[1].hedge: expected after_ms (a fixed delay, like after_ms: 2000) or after: p95 (the target's live p95 time to first token)",
                "models[2].hedge.min_ms: only applies with after: p95 (after_ms is a fixed delay)",
                "models[3].hedge.after: expected p95, got \"p99\" (did you mean \"p95\"?)",
                "models[4].hedge.after: expected p95, got \"500\" (for a fixed delay, use after_ms: 500)",
                "models[5].hedge.after_ms: expected a positive integer, got 0",
                "models[5].hedge.max_hedges: expected a positive integer, got 0",
                "models[6].hedge.max_hedges: must be at most 3, got 4",
                "models[6].hedge.min_ms: expected a non-negative integer, got \"x\"",
                "models[7].hedge: nothing to hedge to: the model has one target and no fallbacks (add a target or fallbacks, or remove hedge)",
                "models[8].hedge: nothing to hedge to: the model has one target and no fallbacks (add a target or fallbacks, or remove hedge)",
                "models[9].hedge.delay: unknown field (expected one of: after_ms, after, min_ms, max_hedges)",
                "models[10].fallbacks: expected a list, got \"j\"",
            ]
        );
}

#[test]
fn model_fallbacks() {
    let yaml = r#"
providers:
  up: { kind: openai, base_url: "http://x/v1" }
models:
  - name: a
    targets: [{ provider: up }]
    fallbacks: [b, up/gpt-4o, mock/any, "${B}"]
    context_window_fallbacks: [c]
    content_policy_fallbacks: [up/safe-model]
  - name: b
    targets: [{ provider: up }]
    fallbacks: [a]
  - name: c
    targets: [{ provider: up }]
    fallbacks: [b, a]
  - name: "claude-*"
    targets: [{ provider: up }]
    fallbacks: [a, org/model-with-slash]
  - name: org/model-with-slash
    targets: [{ provider: up }]
"#;
    let config = decoded(yaml, &[("B", "c")]);
    let a = &config.models[0];
    assert_eq!(a.fallbacks, ["b", "up/gpt-4o", "mock/any", "c"]);
    assert_eq!(a.context_window_fallbacks, ["c"]);
    assert_eq!(a.content_policy_fallbacks, ["up/safe-model"]);
    // Cycles (a -> b -> a, a -> c -> a) are allowed: each model is tried once per request.
    assert_eq!(config.models[1].fallbacks, ["a"]);
    assert_eq!(config.models[2].fallbacks, ["b", "a"]);
    assert_eq!(config.models[3].fallbacks, ["a", "org/model-with-slash"]);
    assert!(config.models[4].fallbacks.is_empty());

    let yaml = r#"
providers:
  openai: { kind: openai, base_url: "http://x/v1" }
models:
  - name: gpt-4o
    targets: [{ provider: openai }]
    fallbacks: [gpt-4o, gpt4o-mini, "claude-*", claude-3-haiku, opnai/gpt-4o, zz/top, "openai/", "", gpt-4o-mini, gpt-4o-mini, [x], nothing-like-it]
  - name: gpt-4o-mini
    targets: [{ provider: openai }]
    context_window_fallbacks: gpt-4o
    content_policy_fallbacks: [org/gpt-4o]
  - name: "claude-*"
    targets: [{ provider: openai }]
    fallbacks: ["claude-*"]
"#;
    assert_eq!(
            problems(yaml),
            [
                "models[0].fallbacks[0]: a model cannot fall back to itself",
                "models[0].fallbacks[1]: unknown model \"gpt4o-mini\" (did you mean \"gpt-4o-mini\"?)",
                "models[0].fallbacks[2]: \"claude-*\" is a pattern; fallbacks name exact models, or provider/model",
                "models[0].fallbacks[3]: unknown model \"claude-3-haiku\" (it matches the pattern \"claude-*\", but fallbacks name exact models, or provider/model)",
                "models[0].fallbacks[4]: unknown provider \"opnai\" in \"opnai/gpt-4o\" (did you mean \"openai\"?)",
                "models[0].fallbacks[5]: unknown provider \"zz\" in \"zz/top\" (known: openai, mock)",
                "models[0].fallbacks[6]: expected provider/model, got \"openai/\" (nothing after the '/')",
                "models[0].fallbacks[7]: must not be empty",
                "models[0].fallbacks[9]: \"gpt-4o-mini\" is already listed at models[0].fallbacks[8]",
                "models[0].fallbacks[10]: expected a string, got a list",
                "models[0].fallbacks[11]: unknown model \"nothing-like-it\" (expected a configured model name, or provider/model with a known provider)",
                "models[1].context_window_fallbacks: expected a list, got \"gpt-4o\"",
                "models[1].content_policy_fallbacks[0]: unknown model \"org/gpt-4o\" (did you mean \"gpt-4o\"?)",
                "models[2].fallbacks[0]: a model cannot fall back to itself",
            ]
        );
    // A model whose own entry has problems is still a known name: no second-hand problem.
    assert_eq!(
            problems("models:\n  - { name: a, targets: [{ provider: ghost }] }\n  - { name: b, targets: [{ provider: mock }], fallbacks: [a] }\n"),
            ["models[0].targets[0].provider: unknown provider \"ghost\" (known: mock)"]
        );
}

#[test]
fn target_rate_limits_need_usage_aware_and_limits_fit_the_total() {
    assert_eq!(
            problems(
                "models:\n  - name: m\n    targets: [{ provider: mock, rpm: 10 }, { provider: mock, tpm: 100 }]\n  - name: n\n    balance: least_in_flight\n    targets: [{ provider: mock, rpm: 5 }]\n    timeouts: { stall_ms: 10, total_ms: 5 }\n"
            ),
            [
                "models[0].targets[0].rpm: only applies with balance: usage_aware (the limits it balances by)",
                "models[0].targets[1].tpm: only applies with balance: usage_aware (the limits it balances by)",
                "models[1].targets[0].rpm: only applies with balance: usage_aware (the limits it balances by)",
                "models[1].timeouts.stall_ms: must not exceed total_ms (5), got 10",
            ]
        );
    assert!(problems(
            "models:\n  - name: m\n    balance: usage_aware\n    targets: [{ provider: mock, rpm: 10 }, { provider: mock }]\n"
        )
        .is_empty());
}

#[test]
fn target_concurrency_and_rate_limits() {
    let config = decoded(
            "models:\n  - name: m\n    balance: usage_aware\n    targets:\n      - { provider: mock, max_concurrency: 8, queue: 16, rpm: 600, tpm: 5000000000 }\n      - { provider: mock, max_concurrency: '${C}' }\n      - { provider: mock }\n",
            &[("C", "1")],
        );
    let t = &config.models[0].targets;
    assert_eq!(
        t[0],
        TargetConfig {
            provider: "mock".into(),
            weight: 1,
            max_concurrency: Some(8),
            queue: 16,
            rpm: Some(600),
            tpm: Some(5_000_000_000),
            ..TargetConfig::default()
        }
    );
    assert_eq!((t[1].max_concurrency, t[1].queue), (Some(1), 0));
    assert_eq!(
        (t[2].max_concurrency, t[2].queue, t[2].rpm, t[2].tpm),
        (None, 0, None, None)
    );
    assert_eq!(
            problems(
                r#"
models:
  - name: m
    targets:
      - { provider: mock, max_concurrency: 0, queue: -1 }
      - { provider: mock, queue: 10 }
      - { provider: mock, rpm: 0, tpm: lots }
      - { provider: mock, max_concurency: 4 }
"#
            ),
            [
                "models[0].targets[0].max_concurrency: expected a positive integer, got 0",
                "models[0].targets[0].queue: expected a non-negative integer, got -1",
                "models[0].targets[1].queue: only applies together with max_concurrency (requests wait for a slot only when concurrency is limited)",
                "models[0].targets[2].rpm: expected a positive integer, got 0",
                "models[0].targets[2].tpm: expected a positive integer, got \"lots\"",
                "models[0].targets[3].max_concurency: unknown field (did you mean \"max_concurrency\"?)",
            ]
        );
}

#[test]
fn model_without_targets_still_has_its_settings_checked() {
    assert_eq!(
            problems(&format!(
                "{TWO_MODELS}  - {{ name: c, retry: {{ attempts: 0 }}, fallbacks: [nowhere] }}\n"
            )),
            [
                "models[2].targets: missing required field (a list of { provider, model, weight })",
                "models[2].retry.attempts: expected a positive integer, got 0",
                "models[2].fallbacks[0]: unknown model \"nowhere\" (expected a configured model name, or provider/model with a known provider)",
            ]
        );
    // The snippet itself is valid, and a model that names no resilience setting gets the
    // defaults.
    let config = decoded(TWO_MODELS, &[]);
    assert_eq!(
        config.models[1],
        ModelConfig {
            name: "b".into(),
            targets: vec![TargetConfig {
                provider: "alt".into(),
                weight: 1,
                ..TargetConfig::default()
            }],
            ..ModelConfig::default()
        }
    );
    assert_eq!(config.models[1].retry, RetryConfig::default());
    assert_eq!(config.models[1].balance, Balance::Weighted);
}

#[test]
fn provider_idle_timeout() {
    let config = decoded(
        "providers:\n  p: { kind: mock, timeouts: { idle_ms: 1500 } }\n  d: { kind: mock }\n",
        &[],
    );
    assert_eq!(config.providers[0].timeouts.idle_ms, 1500);
    assert_eq!(config.providers[1].timeouts.idle_ms, 90_000);
    assert_eq!(
        problems("providers:\n  p: { kind: mock, timeouts: { idle_ms: 0 } }\nmodels: [{ name: m, targets: [{ provider: p }], timeouts: { idle_ms: 5 } }]\n"),
        [
            "providers.p.timeouts.idle_ms: expected a positive integer, got 0",
            "models[0].timeouts.idle_ms: is a provider setting (connections are pooled per provider): set it under providers.<id>.timeouts",
        ]
    );
}

#[test]
fn expanded_values_are_never_echoed() {
    let vars = [("HOST", "secret.internal"), ("N", "many-secret")];
    let got = problems_with(
        "listen: '${HOST}'\nmodels: [{ name: m, balance: '${N}', targets: [{ provider: mock, weight: '${N}' }] }]\n",
        &vars,
    );
    assert_eq!(
        got,
        [
            "listen: expected an IP address and port like 127.0.0.1:8080, got the expansion of \"${HOST}\"",
            "models[0].balance: expected weighted, least_in_flight, lowest_latency or usage_aware, got the expansion of \"${N}\"",
            "models[0].targets[0].weight: expected a positive integer, got the expansion of \"${N}\"",
        ]
    );
    assert!(got.iter().all(|m| !m.contains("secret")), "{got:?}");
}

#[test]
fn anchors_aliases_and_merges_are_located_where_written() {
    let yaml = "defaults: &d { attempts: 0 }\n";
    // `defaults` is not a config key; anchors live inside the config's own values.
    assert_eq!(
        problems(yaml),
        ["defaults: unknown field (expected one of: listen, server, providers, models, pricing, governance, logs)"]
    );
    let yaml = "models:\n  - { name: a, targets: [{ provider: mock }], retry: &r { attempts: 0 } }\n  - { name: b, targets: [{ provider: mock }], retry: { <<: *r, backoff_max_ms: x } }\n";
    let err = parse_str(yaml, &|_| None).err();
    let got: Vec<String> = err
        .iter()
        .flat_map(|e| e.problems())
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        got,
        [
            // The merged value is reported for each model that uses it, at the anchor.
            "2:69: models[0].retry.attempts: expected a positive integer, got 0",
            "2:69: models[1].retry.attempts: expected a positive integer, got 0",
            "3:80: models[1].retry.backoff_max_ms: expected a non-negative integer, got \"x\"",
        ]
    );
}

#[test]
fn pricing_entries_extend_the_builtin_table() {
    let config = decoded(
        r#"
pricing:
  "mock/*": { input_per_mtok: 1000, output_per_mtok: 2000 }
  "openai/gpt-4o": { input_per_mtok: 2.5, output_per_mtok: 10, cache_read_per_mtok: 1.25 }
"#,
        &[],
    );
    assert_eq!(config.pricing.len(), 2);
    assert_eq!(config.pricing[0].key, "mock/*");
    assert_eq!(config.pricing[0].price.input, 1000.0);
    assert_eq!(config.pricing[1].price.cache_read, Some(1.25));
    assert_eq!(config.pricing[1].price.cache_write, None);
}

#[test]
fn pricing_mistakes_are_named() {
    assert_eq!(
        problems(
            r#"
pricing:
  gpt-4o: { input_per_mtok: 1, output_per_mtok: 2 }
  "openai/o3": { input_per_mtok: -1, output_per_mtok: 2 }
  "openai/o4": { input_per_mtok: 1, output_per_mtok: 2, cached_per_mtok: 1 }
  "openai/o5": { input_per_mtok: 1 }
  "openai/o6": { input_per_mtok: cheap, output_per_mtok: 2 }
"#
        ),
        [
            "pricing.gpt-4o: expected `vendor/model` or `provider/model` (a model glob like `openai/gpt-4o*` is fine), got \"gpt-4o\"",
            "pricing.openai/o3.input_per_mtok: expected a price in USD per million tokens (a number ≥ 0), got -1",
            "pricing.openai/o4.cached_per_mtok: unknown field (did you mean \"cache_read_per_mtok\"?)",
            "pricing.openai/o5.output_per_mtok: missing required field",
            "pricing.openai/o6.input_per_mtok: expected a price in USD per million tokens (a number ≥ 0), got \"cheap\"",
        ]
    );
}
