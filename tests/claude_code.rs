//! Claude Code (`claude -p`, the official CLI, pinned in tests/node/package.json) talking to the
//! gateway's Anthropic endpoints, once through an Anthropic-dialect upstream and once through an
//! OpenAI-dialect one (translated both ways, streamed).
//!
//! Topology: `claude` -> front gateway (`claude-*` -> provider `up`) -> upstream gateway whose
//! built-in mock answers in that dialect. The mock's words are deterministic and drawn from a
//! fixed vocabulary, so the answer Claude Code prints can be checked word by word.
//!
//! The CLI is installed on first use from the npm registry into `<target dir>/test-node` (`npm
//! ci` of tests/node/package-lock.json, under a lock file); its native binary comes in a
//! per-platform optional-dependency package. `FERROGATE_TEST_CLAUDE=/path/to/claude` uses that
//! executable as is instead (any version), with no install.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Black-box tests time the gateway from outside with the system clock.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::metrics::parse;
use common::proc::{output_text, run_bounded, target_dir, Lock};
use common::*;
use ferrogate::providers::mock::VOCABULARY;
use serde_json::Value;

const PROMPT: &str = "Reply with the word hello";
/// Words in the upstream mock's answer.
const REPLY_WORDS: usize = 12;
/// One `claude -p` run (start-up, the model exchange(s), exit).
const CLAUDE_TIMEOUT: Duration = Duration::from_secs(120);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
const PACKAGE: &str = "@anthropic-ai/claude-code";

// ---------------------------------------------------------------------------------------------
// Installing the CLI.
// ---------------------------------------------------------------------------------------------

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("node")
}

/// The pinned version (tests/node/package.json).
fn pinned_version() -> String {
    let pkg: Value = serde_json::from_slice(
        &fs::read(node_dir().join("package.json")).expect("tests/node/package.json"),
    )
    .expect("package.json is JSON");
    let v = pkg["dependencies"][PACKAGE]
        .as_str()
        .expect("package.json pins @anthropic-ai/claude-code");
    assert!(
        v.chars().all(|c| c.is_ascii_digit() || c == '.'),
        "pin an exact version of {PACKAGE}, not `{v}`"
    );
    v.to_owned()
}

/// The `claude` executable: `FERROGATE_TEST_CLAUDE` when set (checked to run), else installed on
/// first use and checked to run and be the pinned version.
fn claude() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("FERROGATE_TEST_CLAUDE") {
        Some(bin) => given_binary(PathBuf::from(bin)),
        None => install(),
    })
    .clone()
}

/// `FERROGATE_TEST_CLAUDE`, used as is once `--version` runs.
fn given_binary(bin: PathBuf) -> PathBuf {
    let mut cmd = Command::new(&bin);
    cmd.arg("--version").env("DISABLE_AUTOUPDATER", "1");
    let ran = run_bounded(cmd, Duration::from_secs(60), "claude --version");
    match ran {
        Ok((Some(status), stdout, _)) if status.success() => {
            eprintln!(
                "[FERROGATE_TEST_CLAUDE={}] {}",
                bin.display(),
                stdout.trim()
            );
            bin
        }
        Ok((status, stdout, stderr)) => panic!(
            "FERROGATE_TEST_CLAUDE={}: `--version` failed ({status:?}); point it at a working \
             claude or unset it\n{}",
            bin.display(),
            output_text(&stdout, &stderr)
        ),
        Err(e) => panic!(
            "FERROGATE_TEST_CLAUDE={}: cannot start it ({e}); point it at a claude executable \
             or unset it",
            bin.display()
        ),
    }
}

fn install() -> PathBuf {
    let version = pinned_version();
    let dir = target_dir().join("test-node");
    let lock_src = fs::read(node_dir().join("package-lock.json")).expect("package-lock.json");
    let marker = dir.join(".installed-lock");
    let installed = || fs::read(&marker).is_ok_and(|m| m == lock_src);
    if installed() {
        if let Some(bin) = find_binary(&dir, &version) {
            return bin;
        }
    }
    let _lock = Lock::acquire(
        &target_dir().join("test-node.lock"),
        "installing Claude Code",
    );
    // Another test binary may have installed it while we waited.
    if !installed() || find_binary(&dir, &version).is_none() {
        fs::create_dir_all(&dir).expect("create target/test-node");
        let _ = fs::remove_file(&marker);
        for f in ["package.json", "package-lock.json"] {
            fs::copy(node_dir().join(f), dir.join(f)).expect("copy package files");
        }
        // `npm ci` installs exactly the lock file, including the optional dependency that holds
        // this platform's native binary (never pass --omit=optional or --no-optional).
        let mut npm = Command::new("npm");
        npm.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir);
        let (status, stdout, stderr) = match run_bounded(npm, INSTALL_TIMEOUT, "npm ci") {
            Ok(ran) => ran,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!(
                "npm not found: install Node.js and npm (Debian: apt-get install nodejs npm), or \
                 set FERROGATE_TEST_CLAUDE=/path/to/claude"
            ),
            Err(e) => panic!("npm ci (Claude Code): cannot start npm: {e}"),
        };
        assert!(
            status.is_some_and(|s| s.success()),
            "installing {PACKAGE}@{version} with `npm ci` in {} failed ({status:?}); the test \
             needs npm and the npm registry, or set FERROGATE_TEST_CLAUDE=/path/to/claude.\n{}",
            dir.display(),
            output_text(&stdout, &stderr)
        );
        fs::write(&marker, &lock_src).expect("write install marker");
    }
    find_binary(&dir, &version).unwrap_or_else(|| {
        panic!(
            "{PACKAGE}@{version} installed in {} but no `claude` binary there runs; is this \
             platform's optional package (e.g. claude-code-linux-x64) missing?",
            dir.display()
        )
    })
}

/// The first candidate whose `--version` names the pinned version: the package's bin (the
/// postinstall step links the native binary there), else the platform package's binary
/// directly (when the package manager skipped install scripts).
fn find_binary(dir: &Path, version: &str) -> Option<PathBuf> {
    let scope = dir.join("node_modules").join("@anthropic-ai");
    let mut candidates = vec![dir.join("node_modules").join(".bin").join("claude")];
    for platform in [
        "linux-x64",
        "linux-arm64",
        "linux-x64-musl",
        "linux-arm64-musl",
        "darwin-arm64",
        "darwin-x64",
    ] {
        candidates.push(scope.join(format!("claude-code-{platform}")).join("claude"));
    }
    candidates.into_iter().find(|bin| {
        if !bin.exists() {
            return false;
        }
        let mut cmd = Command::new(bin);
        cmd.arg("--version").env("DISABLE_AUTOUPDATER", "1");
        run_bounded(cmd, Duration::from_secs(60), "claude --version").is_ok_and(
            |(status, stdout, _)| status.is_some_and(|s| s.success()) && stdout.contains(version),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// The run.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Upstream {
    Anthropic,
    OpenAi,
}

/// The upstream gateway: its mock answers every model in `dialect`.
async fn upstream_gateway(dialect: Upstream) -> Gateway {
    let dialect = match dialect {
        Upstream::Anthropic => "anthropic",
        Upstream::OpenAi => "openai",
    };
    Gateway::start(&format!(
        "providers:\n  m: {{ kind: mock, mock: {{ dialect: {dialect}, reply_words: {REPLY_WORDS}, chunks: 4 }} }}\n\
         models:\n  - name: \"*\"\n    targets: [{{ provider: m }}]\n"
    ))
    .await
}

/// The gateway Claude Code talks to: Claude model ids go to the upstream gateway.
async fn front_gateway(dialect: Upstream, upstream: &Gateway) -> Gateway {
    let (kind, base) = match dialect {
        Upstream::Anthropic => ("anthropic", upstream.url("")),
        Upstream::OpenAi => ("openai", upstream.url("/v1")),
    };
    Gateway::start(&format!(
        "providers:\n  up:\n    kind: {kind}\n    base_url: {base}\n    keys: [{{ value: \"sk-front-1\", weight: 1 }}]\n\
         models:\n  - name: \"claude-*\"\n    targets: [{{ provider: up }}]\n"
    ))
    .await
}

/// Runs `claude -p PROMPT --output-format json` against `base_url` with a throwaway HOME and
/// nothing from this environment but PATH; returns its JSON result.
async fn run_claude(base_url: String) -> Value {
    tokio::task::spawn_blocking(move || {
        let bin = claude();
        let home = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(&bin);
        cmd.args(["-p", PROMPT, "--output-format", "json"])
            .current_dir(home.path())
            // No proxy variables, no ANTHROPIC_* or Claude settings of the machine.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("ANTHROPIC_BASE_URL", &base_url)
            .env("ANTHROPIC_API_KEY", "test-key")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1");
        let started = Instant::now();
        let (status, stdout, stderr) = run_bounded(cmd, CLAUDE_TIMEOUT, "claude -p")
            .unwrap_or_else(|e| panic!("claude -p: cannot start {}: {e}", bin.display()));
        let out = output_text(&stdout, &stderr);
        eprintln!(
            "[claude -p -> {base_url}] {status:?} in {:?}\n{out}",
            started.elapsed()
        );
        assert!(
            status.is_some(),
            "claude -p did not finish within {CLAUDE_TIMEOUT:?}\n{out}"
        );
        assert!(
            status.is_some_and(|s| s.success()),
            "claude -p failed ({status:?})\n{out}"
        );
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .unwrap_or_else(|| panic!("no JSON result from claude -p\n{out}"));
        serde_json::from_str(line).unwrap_or_else(|e| panic!("claude -p result ({e}): {line}"))
    })
    .await
    .expect("claude run panicked")
}

/// (requests answered with 200, requests answered otherwise) per `/metrics`.
async fn request_counts(gw: &Gateway) -> (f64, f64) {
    let text = gw.metrics().await;
    let samples = parse(&text);
    let total = |ok: bool| -> f64 {
        samples
            .iter()
            .filter(|s| s.name == "ferrogate_requests_total")
            .filter(|s| (s.label("status") == Some("200")) == ok)
            .map(|s| s.value)
            .sum()
    };
    (total(true), total(false))
}

async fn check_claude_code(dialect: Upstream, path_prefix: &str) {
    let upstream = upstream_gateway(dialect).await;
    let front = front_gateway(dialect, &upstream).await;
    let result = run_claude(front.url(path_prefix)).await;

    assert_eq!(result["is_error"], false, "{result}");
    assert_eq!(result["subtype"], "success", "{result}");
    let answer = result["result"].as_str().expect("result text");
    let words: Vec<String> = answer
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .collect();
    assert_eq!(
        words.len(),
        REPLY_WORDS,
        "the mock's {REPLY_WORDS} words, got {answer:?}"
    );
    for w in &words {
        assert!(
            VOCABULARY.contains(&w.as_str()),
            "`{w}` is not a mock word: {answer:?}"
        );
    }

    // Every request Claude Code sent was routed and answered, and reached the upstream.
    let (front_ok, front_failed) = request_counts(&front).await;
    let (up_ok, up_failed) = request_counts(&upstream).await;
    assert!(front_ok >= 1.0, "front gateway answered nothing with 200");
    assert_eq!(front_failed, 0.0, "front gateway failed requests");
    assert_eq!(up_failed, 0.0, "upstream gateway failed requests");
    assert_eq!(
        up_ok, front_ok,
        "every routed request reached the upstream once"
    );
}

#[tokio::test]
async fn claude_code_through_anthropic_upstream() {
    check_claude_code(Upstream::Anthropic, "").await;
}

#[tokio::test]
async fn claude_code_under_anthropic_prefix_through_anthropic_upstream() {
    check_claude_code(Upstream::Anthropic, "/anthropic").await;
}

#[tokio::test]
async fn claude_code_through_openai_upstream() {
    check_claude_code(Upstream::OpenAi, "").await;
}

#[tokio::test]
async fn claude_code_under_anthropic_prefix_through_openai_upstream() {
    check_claude_code(Upstream::OpenAi, "/anthropic").await;
}
