//! Installs the peer gateways under `loadtest/.peers/` when they are missing:
//! LiteLLM into a virtualenv, Portkey's gateway with npm. Versions are pinned
//! to the newest that install from this machine's package mirrors.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;

use crate::procs::run_bounded;

/// Newer LiteLLM releases need a `certifi` the reachable index lacks.
pub const LITELLM_VERSION: &str = "1.106.2";
pub const PORTKEY_VERSION: &str = "1.15.2";
/// Newer `@hono/node-server` releases break Portkey's streaming
/// (`TypeError: immutable` in `updateHeaders`); 1.14.1 works.
pub const HONO_NODE_SERVER_VERSION: &str = "1.14.1";

/// Where the peers live (default `loadtest/.peers`).
#[derive(Clone, Debug)]
pub struct PeersDir(pub PathBuf);

impl PeersDir {
    pub fn litellm_venv(&self) -> PathBuf {
        self.0.join("litellm-venv")
    }
    pub fn litellm_bin(&self) -> PathBuf {
        self.litellm_venv().join("bin").join("litellm")
    }
    pub fn portkey(&self) -> PathBuf {
        self.0.join("portkey")
    }
    pub fn portkey_entry(&self) -> PathBuf {
        self.portkey()
            .join("node_modules/@portkey-ai/gateway/build/start-server.js")
    }
    pub fn loopback_preload(&self) -> PathBuf {
        self.portkey().join("loopback-only.cjs")
    }
}

/// The package.json the harness writes for Portkey.
pub fn portkey_package_json() -> String {
    serde_json::json!({
        "name": "ferrogate-loadtest-portkey",
        "private": true,
        "description": "Written by `loadtest peers`; pins the Portkey gateway for the comparison.",
        "dependencies": { "@portkey-ai/gateway": PORTKEY_VERSION },
        "overrides": { "@hono/node-server": HONO_NODE_SERVER_VERSION }
    })
    .to_string()
}

/// A `node --require` preload: Portkey calls `serve({fetch, port})` without a
/// host, which listens on every interface; this puts any TCP listener of the
/// process on 127.0.0.1 instead.
pub const LOOPBACK_PRELOAD: &str = r#"'use strict';
// Written by ferrogate's `loadtest peers`. Forces TCP listeners onto loopback.
const net = require('net');
const LOOPBACK = '127.0.0.1';
const originalListen = net.Server.prototype.listen;
net.Server.prototype.listen = function listenOnLoopback(...args) {
  const first = args[0];
  if (first !== null && typeof first === 'object' && !Array.isArray(first)) {
    if (first.path === undefined && first.fd === undefined) {
      args[0] = Object.assign({}, first, { host: LOOPBACK });
    }
  } else if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    if (typeof args[1] === 'string' || args[1] === undefined || args[1] === null) {
      args[1] = LOOPBACK;
    } else {
      args.splice(1, 0, LOOPBACK);
    }
  }
  return originalListen.apply(this, args);
};
"#;

fn installed_litellm_version(dir: &PeersDir) -> Option<String> {
    if !dir.litellm_bin().exists() {
        return None;
    }
    let out = Command::new(dir.litellm_venv().join("bin").join("python"))
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `.pth` files run code at every interpreter start; the compromised LiteLLM
/// releases of March 2026 shipped one. Only setuptools' own is expected.
fn check_pth_files(venv: &Path) -> anyhow::Result<()> {
    let lib = venv.join("lib");
    for py in std::fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))? {
        let site = py?.path().join("site-packages");
        let Ok(entries) = std::fs::read_dir(&site) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.ends_with(".pth") && name != "distutils-precedence.pth" {
                anyhow::bail!(
                    "unexpected {} in the LiteLLM virtualenv: it would run code at every start; inspect it",
                    site.join(name).display()
                );
            }
        }
    }
    Ok(())
}

/// Installs `litellm[proxy]==LITELLM_VERSION` unless that version is there.
/// Returns the installed version.
pub fn ensure_litellm(dir: &PeersDir, python: &str, limit: Duration) -> anyhow::Result<String> {
    let venv = dir.litellm_venv();
    if installed_litellm_version(dir).as_deref() != Some(LITELLM_VERSION) {
        std::fs::create_dir_all(&dir.0)?;
        let log = dir.0.join("litellm-install.log");
        println!(
            "installing litellm[proxy]=={LITELLM_VERSION} into {} (log: {})",
            venv.display(),
            log.display()
        );
        if !venv.join("bin").join("pip").exists() {
            run_bounded(
                Command::new(python).args(["-m", "venv"]).arg(&venv),
                &log,
                limit,
            )?;
        }
        let pip = venv.join("bin").join("pip");
        run_bounded(
            Command::new(&pip).args(["install", "--upgrade", "pip"]),
            &log,
            limit,
        )?;
        run_bounded(
            Command::new(&pip)
                .arg("install")
                .arg(format!("litellm[proxy]=={LITELLM_VERSION}")),
            &log,
            limit,
        )?;
    }
    check_pth_files(&venv)?;
    installed_litellm_version(dir)
        .filter(|v| v == LITELLM_VERSION)
        .with_context(|| {
            format!(
                "litellm {LITELLM_VERSION} is not importable from {}",
                venv.display()
            )
        })
}

fn package_version(package_json: &Path) -> Option<String> {
    let text = std::fs::read_to_string(package_json).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("version")?.as_str().map(str::to_string)
}

fn portkey_versions(dir: &PeersDir) -> (Option<String>, Option<String>) {
    let nm = dir.portkey().join("node_modules");
    (
        package_version(&nm.join("@portkey-ai/gateway/package.json")),
        package_version(&nm.join("@hono/node-server/package.json")),
    )
}

/// Installs `@portkey-ai/gateway@PORTKEY_VERSION` (with the `@hono/node-server`
/// override) unless it is there, and writes the loopback preload. Returns the
/// installed gateway version.
pub fn ensure_portkey(dir: &PeersDir, limit: Duration) -> anyhow::Result<String> {
    let pk = dir.portkey();
    std::fs::create_dir_all(&pk)?;
    std::fs::write(pk.join("package.json"), portkey_package_json())?;
    std::fs::write(dir.loopback_preload(), LOOPBACK_PRELOAD)?;
    let want = (
        Some(PORTKEY_VERSION.to_string()),
        Some(HONO_NODE_SERVER_VERSION.to_string()),
    );
    if portkey_versions(dir) != want || !dir.portkey_entry().exists() {
        let log = dir.0.join("portkey-install.log");
        println!(
            "installing @portkey-ai/gateway@{PORTKEY_VERSION} into {} (log: {})",
            pk.display(),
            log.display()
        );
        run_bounded(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--omit=dev"])
                .current_dir(&pk),
            &log,
            limit,
        )?;
    }
    match portkey_versions(dir) {
        v if v == want => Ok(PORTKEY_VERSION.to_string()),
        (gw, hono) => anyhow::bail!(
            "after npm install: @portkey-ai/gateway {gw:?}, @hono/node-server {hono:?}; expected {PORTKEY_VERSION} and {HONO_NODE_SERVER_VERSION}"
        ),
    }
}

/// `program --version`-style output, first line, or "unknown".
pub fn version_of(program: &Path, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_json_pins_gateway_and_override() {
        let v: serde_json::Value =
            serde_json::from_str(&portkey_package_json()).unwrap_or_default();
        assert_eq!(v["dependencies"]["@portkey-ai/gateway"], PORTKEY_VERSION);
        assert_eq!(
            v["overrides"]["@hono/node-server"],
            HONO_NODE_SERVER_VERSION
        );
    }

    #[test]
    fn reads_package_versions() {
        let dir = tempfile::tempdir().ok();
        let dir = dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default();
        let f = dir.join("package.json");
        let _ = std::fs::write(&f, r#"{"name":"x","version":"1.2.3"}"#);
        assert_eq!(package_version(&f).as_deref(), Some("1.2.3"));
        assert_eq!(package_version(&dir.join("missing.json")), None);
    }
}
