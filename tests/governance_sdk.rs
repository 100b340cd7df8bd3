//! Governance refusals through the official `openai` and `anthropic` Python SDKs: each raises
//! its own AuthenticationError, PermissionDeniedError, RateLimitError, and an APIStatusError
//! with status 402 for an exhausted budget (anthropic's PaymentRequiredError), with the
//! gateway's message intact.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::python::{python_with, run_script};
use common::*;
use serde_json::{json, Value};

const MASTER: &str = "master-key-for-sdk-tests-0123456789";

async fn create_key(gw: &Gateway, body: Value) -> String {
    let r = send(
        client()
            .post(gw.url("/admin/v1/keys"))
            .header("authorization", format!("Bearer {MASTER}"))
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["key"].as_str().unwrap().to_string()
}

async fn run(job: Value) -> Vec<Value> {
    tokio::task::spawn_blocking(move || {
        let py = python_with(&["openai", "anthropic"]);
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/governance_sdk.py");
        let boot = format!(
            "import runpy, sys\nsys.dont_write_bytecode = True\nrunpy.run_path({}, run_name='__main__')\n",
            json!(script.to_str().unwrap())
        );
        let out = run_script(&py, &boot, job.to_string().as_bytes(), Duration::from_secs(120));
        serde_json::from_str(out.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn each_sdk_raises_its_own_error_for_each_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "providers:\n  fake: {{ kind: mock, mock: {{ chunks: 1, reply_words: 10 }} }}\n\
         models:\n  - name: \"*\"\n    targets: [{{ provider: fake, model: m }}]\n\
         pricing:\n  \"fake/*\": {{ input_per_mtok: 1000, output_per_mtok: 2000 }}\n\
         governance:\n  master_key: \"{MASTER}\"\n  store: \"sqlite:{}\"\n",
        dir.path().join("gov.db").display()
    );
    let gw = Gateway::start(&yaml).await;
    let limited = create_key(&gw, json!({"name": "rl", "limits": {"rpm": 1}})).await;
    let narrow = create_key(&gw, json!({"name": "narrow", "models": ["only-this"]})).await;
    let broke = create_key(
        &gw,
        json!({"name": "broke", "budget": {"usd": 0.0001, "period": "1d"}}),
    )
    .await;
    let unknown = format!("fg-{}", "Z".repeat(43));
    let mut calls = Vec::new();
    for sdk in ["openai", "anthropic"] {
        calls.push(json!({"sdk": sdk, "key": unknown, "model": "any"}));
        calls.push(json!({"sdk": sdk, "key": narrow, "model": "other-model"}));
        calls.push(json!({"sdk": sdk, "key": broke, "model": "any"}));
    }
    // One request per minute: the first call is served, the next refused.
    calls.push(json!({"sdk": "openai", "key": limited, "model": "any"}));
    calls.push(json!({"sdk": "openai", "key": limited, "model": "any"}));
    calls.push(json!({"sdk": "anthropic", "key": limited, "model": "any"}));
    let job = json!({
        "openai_base_url": gw.url("/v1"),
        "anthropic_base_url": gw.url(""),
        "calls": calls,
    });
    let out = run(job).await;
    eprintln!("{out:#?}");
    let expect = |i: usize, module: &str, class: &str, status: u64, text: &str| {
        let r = &out[i];
        assert_eq!(r["error_module"], module, "call {i}: {r}");
        assert_eq!(r["error_class"], class, "call {i}: {r}");
        assert_eq!(r["status"], status, "call {i}: {r}");
        let message = r["message"].as_str().unwrap();
        assert!(
            message.contains(text),
            "call {i}: {message:?} lacks {text:?}"
        );
    };
    for (base, module) in [(0, "openai"), (3, "anthropic")] {
        expect(base, module, "AuthenticationError", 401, "Invalid API key.");
        expect(
            base + 1,
            module,
            "PermissionDeniedError",
            403,
            "Model `other-model` is not allowed for this key.",
        );
        // openai has no class of its own for 402; anthropic's PaymentRequiredError is an
        // APIStatusError (the script catches only those).
        let class = if module == "openai" {
            "APIStatusError"
        } else {
            "PaymentRequiredError"
        };
        expect(base + 2, module, class, 402, "Budget exceeded for this key");
    }
    assert_eq!(out[6], json!({"ok": true}));
    expect(
        7,
        "openai",
        "RateLimitError",
        429,
        "Rate limit reached for this key: 1 requests per minute",
    );
    expect(
        8,
        "anthropic",
        "RateLimitError",
        429,
        "Rate limit reached for this key: 1 requests per minute",
    );
    for (i, r) in out.iter().enumerate() {
        for key in [&limited, &narrow, &broke, &unknown] {
            assert!(
                !r.to_string().contains(key.as_str()),
                "call {i} echoes a key: {r}"
            );
        }
    }
}
