//! `Gateway`: the real `ferrogate` binary, spawned on 127.0.0.1:0 with a config in a tempdir.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;

use super::metrics::{metric_sum, metric_value};

pub const BIN: &str = env!("CARGO_BIN_EXE_ferrogate");
const LISTEN_PREFIX: &str = "ferrogate listening on http://";
const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Gateway {
    child: Child,
    addr: SocketAddr,
    config_path: PathBuf,
    _dir: TempDir,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    /// Starts `ferrogate serve` with this YAML config; panics if it isn't listening within 10 s.
    pub async fn start(yaml: &str) -> Gateway {
        Self::start_with_env(yaml, &[]).await
    }

    pub async fn start_with_env(yaml: &str, env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("ferrogate.yaml");
        std::fs::write(&config_path, yaml).expect("write config");

        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Outbound proxy settings of the machine running the tests must not reroute the
        // gateway's loopback traffic; tests that want a proxy pass it in `env`.
        for var in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
            "NO_PROXY",
            "no_proxy",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn ferrogate");

        let stdout_lines = Arc::new(Mutex::new(Vec::new()));
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel::<SocketAddr>();

        let out = child.stdout.take().expect("stdout");
        let lines = stdout_lines.clone();
        std::thread::spawn(move || {
            let mut addr_tx = Some(addr_tx);
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                eprintln!("[gateway stdout] {line}");
                if let Some(pos) = line.find(LISTEN_PREFIX) {
                    let rest = line[pos + LISTEN_PREFIX.len()..].trim();
                    let rest = rest.split_whitespace().next().unwrap_or("");
                    if let Ok(addr) = rest.trim_end_matches('/').parse::<SocketAddr>() {
                        if let Some(tx) = addr_tx.take() {
                            let _ = tx.send(addr);
                        }
                    }
                }
                lines.lock().expect("stdout lines").push(line);
            }
        });
        let err = child.stderr.take().expect("stderr");
        let lines = stderr_lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                eprintln!("[gateway stderr] {line}");
                lines.lock().expect("stderr lines").push(line);
            }
        });

        let addr = match tokio::time::timeout(START_TIMEOUT, addr_rx).await {
            Ok(Ok(addr)) => addr,
            other => {
                let _ = child.kill();
                let status = child.wait().ok();
                // Give the reader threads a moment to collect the last lines.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "ferrogate did not print `{LISTEN_PREFIX}ADDR` within {START_TIMEOUT:?} \
                     ({}; exit: {status:?})\nconfig:\n{yaml}\nstdout:\n{}\nstderr:\n{}",
                    if other.is_err() {
                        "timeout"
                    } else {
                        "stdout closed"
                    },
                    stdout_lines.lock().expect("lines").join("\n"),
                    stderr_lines.lock().expect("lines").join("\n"),
                );
            }
        };
        assert!(
            addr.ip().is_loopback(),
            "gateway must listen on 127.0.0.1, got {addr}"
        );

        Gateway {
            child,
            addr,
            config_path,
            _dir: dir,
            stderr: stderr_lines,
            stdout: stdout_lines,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `http://ADDR/v1/chat/completions`
    pub fn chat_url(&self) -> String {
        self.url("/v1/chat/completions")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Rewrites the config file in place (same inode).
    pub fn rewrite_config(&self, yaml: &str) {
        std::fs::write(&self.config_path, yaml).expect("rewrite config");
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(sig)
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} {} failed", self.pid());
    }

    pub fn sighup(&self) {
        self.signal("-HUP");
    }

    pub fn sigterm(&self) {
        self.signal("-TERM");
    }

    /// Exit status if the process has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits (polling) for the process to exit, at most `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_exit() {
                return Some(st);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// All stderr lines so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().expect("stderr lines").clone()
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().expect("stdout lines").clone()
    }

    /// Everything the process wrote (stdout then stderr).
    pub fn all_output(&self) -> String {
        let mut s = self.stdout_lines().join("\n");
        s.push('\n');
        s.push_str(&self.stderr_lines().join("\n"));
        s
    }

    /// `GET /metrics` text.
    pub async fn metrics(&self) -> String {
        let resp = super::http::client()
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(resp.status(), 200, "GET /metrics status");
        resp.text().await.expect("metrics body")
    }

    /// Sum of all samples of `name` whose labels include `labels` (0 if none).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics().await, name, labels).unwrap_or(0.0)
    }

    /// Polls `/metrics` until `name{labels}` >= `at_least` (at most `timeout`); returns the
    /// last value seen.
    pub async fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        at_least: f64,
        timeout: Duration,
    ) -> f64 {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let v = self.metric(name, labels).await;
            if v >= at_least || tokio::time::Instant::now() >= deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `/metrics` until the sum of all `name` samples is <= `at_most` (at most
    /// `timeout`); returns the last value seen.
    pub async fn wait_metric_at_most(&self, name: &str, at_most: f64, timeout: Duration) -> f64 {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let v = self.metric(name, &[]).await;
            if v <= at_most || tokio::time::Instant::now() >= deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// First sample of `name{labels}` if present.
    pub async fn metric_opt(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        metric_value(&self.metrics().await, name, labels)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill(); // SIGKILL
        }
        let _ = self.child.wait();
    }
}

/// Runs the binary with `args` to completion (at most 10 s; killed after that).
pub async fn run_cli(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferrogate");
    let pid = child.id();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`ferrogate {}` (pid {pid}) did not exit within 10 s",
                args.join(" ")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
