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
//! per-platform optional-dependency package.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use common::metrics::parse;
use common::*;
use serde_json::Value;

const PROMPT: &str = "Reply with the word hello";
/// Words in the upstream mock's answer.
const REPLY_WORDS: usize = 12;
/// One `claude -p` run (start-up, the model exchange(s), exit).
const CLAUDE_TIMEOUT: Duration = Duration::from_secs(120);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// A lock older than this was left by a killed test run.
const STALE_LOCK: Duration = Duration::from_secs(600);
const PACKAGE: &str = "@anthropic-ai/claude-code";

/// The words the built-in mock speaks (src/providers/mock.rs `VOCABULARY`).
const MOCK_VOCABULARY: &[&str] = &[
    "the", "gateway", "answers", "quickly", "with", "tokens", "from", "a", "mock", "model", "that",
    "never", "leaves", "this", "machine", "and", "streams", "every", "word", "as", "soon", "it",
    "is", "ready", "for", "you", "to", "read", "here", "now", "today", "again",
];

// ---------------------------------------------------------------------------------------------
// Installing the CLI.
// ---------------------------------------------------------------------------------------------

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("node")
}

/// The cargo target directory: `CARGO_TARGET_DIR`, else the one this test binary was built into
/// (`<target>/<profile>/deps/<binary>`), else `./target`.
fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let deps = exe.parent()?;
            (deps.file_name()? == "deps").then(|| deps.parent()?.parent().map(Path::to_path_buf))?
        })
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
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

/// The `claude` executable, installed on first use; checked to run and be the pinned version.
fn claude() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(install).clone()
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
    let _lock = Lock::acquire(&target_dir().join("test-node.lock"));
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
        let (status, out) = run_bounded(npm, INSTALL_TIMEOUT, "npm ci (Claude Code)");
        assert!(
            status.is_some_and(|s| s.success()),
            "installing {PACKAGE}@{version} with `npm ci` in {} failed ({status:?}); the test \
             needs npm and the npm registry.\n{out}",
            dir.display()
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
        let (status, out) = run_bounded(cmd, Duration::from_secs(60), "claude --version");
        status.is_some_and(|s| s.success()) && out.contains(version)
    })
}

/// Runs `cmd` in its own process group with piped output, at most `timeout`; on timeout the
/// whole group is killed. Returns the exit status (`None` on timeout) and stdout + stderr.
fn run_bounded(mut cmd: Command, timeout: Duration, what: &str) -> (Option<ExitStatus>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let (out, err) = (drain(&mut child, true), drain(&mut child, false));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(status) => break Some(status),
            None if Instant::now() < deadline => sleep(Duration::from_millis(50)),
            None => {
                // The CLI may have children of its own: end the whole group.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let text = format!(
        "--- stdout\n{}\n--- stderr\n{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    (status, text)
}

fn drain(child: &mut Child, stdout: bool) -> std::thread::JoinHandle<String> {
    let pipe: Option<Box<dyn Read + Send>> = if stdout {
        child.stdout.take().map(|p| Box::new(p) as _)
    } else {
        child.stderr.take().map(|p| Box::new(p) as _)
    };
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// An exclusive lock held while the file exists (`create_new` is atomic across processes).
struct Lock(PathBuf);

impl Lock {
    fn acquire(path: &Path) -> Lock {
        if let Some(dir) = path.parent() {
            let _ = fs::create_dir_all(dir);
        }
        let deadline = Instant::now() + INSTALL_TIMEOUT + Duration::from_secs(60);
        loop {
            match File::create_new(path) {
                Ok(mut f) => {
                    let _ = writeln!(f, "{}", std::process::id());
                    return Lock(path.to_path_buf());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .is_some_and(|age| age > STALE_LOCK);
                    if stale {
                        let _ = fs::remove_file(path);
                        continue;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "waited too long for {} (another test is installing Claude Code; \
                         delete the file if no test is running)",
                        path.display()
                    );
                    sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("creating lock {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
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
        let (status, out) = run_bounded(cmd, CLAUDE_TIMEOUT, "claude -p");
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
        let stdout = out
            .strip_prefix("--- stdout\n")
            .and_then(|s| s.split("\n--- stderr\n").next())
            .unwrap_or_default();
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
            MOCK_VOCABULARY.contains(&w.as_str()),
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

/// A hung CLI must not outlive the test: on timeout its whole process group is killed.
#[cfg(target_os = "linux")]
#[test]
fn timeout_kills_the_whole_process_group() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "sleep 30 & echo $!; wait"]);
    let started = Instant::now();
    let (status, out) = run_bounded(cmd, Duration::from_millis(500), "sh");
    assert_eq!(status, None, "{out}");
    assert!(started.elapsed() < Duration::from_secs(10), "{out}");
    let child_pid = out
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no background pid printed: {out}"));
    // Alive unless gone or a zombie (an orphan waits for init to reap it).
    let alive = || {
        fs::read_to_string(format!("/proc/{child_pid}/stat")).is_ok_and(|stat| {
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
            state != Some(Some('Z'))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive() && Instant::now() < deadline {
        sleep(Duration::from_millis(50));
    }
    assert!(
        !alive(),
        "background child {child_pid} survived the timeout"
    );
}

/// The vocabulary above is the mock's: a plain request's answer uses only these words.
#[tokio::test]
async fn mock_vocabulary_copy_is_current() {
    let upstream = upstream_gateway(Upstream::OpenAi).await;
    for topic in ["alpha", "beta gamma", "delta epsilon zeta", "eta"] {
        let reply = post_with(
            &upstream.url("/v1/chat/completions"),
            serde_json::to_vec(&serde_json::json!({
                "model": "any",
                "messages": [{"role": "user", "content": topic}],
            }))
            .unwrap(),
            &[],
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let v = reply.json();
        let text = v["choices"][0]["message"]["content"]
            .as_str()
            .expect("text");
        assert_eq!(text.split_whitespace().count(), REPLY_WORDS, "{text}");
        for w in text.split_whitespace() {
            assert!(
                MOCK_VOCABULARY.contains(&w),
                "`{w}` is missing from MOCK_VOCABULARY"
            );
        }
    }
}
