//! Governance end to end against the real binary with its embedded SQLite store: virtual keys
//! in every SDK's header, the admin API behind the master key, allowlists (fallbacks
//! included), rate limits with their headers, budgets (402, exact under concurrency), spend and
//! audit, restart persistence, and the key never leaving the gateway. The suite itself is in
//! governance_suite/suite.rs (tests/governance_postgres.rs runs it against PostgreSQL).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

/// A fresh SQLite file in a directory of the test's own.
struct Store {
    url: String,
    extra: String,
    _dir: tempfile::TempDir,
}

async fn new_store() -> Store {
    let dir = tempfile::tempdir().expect("tempdir");
    Store {
        url: format!("sqlite:{}", dir.path().join("gov.db").display()),
        extra: String::new(),
        _dir: dir,
    }
}

include!("governance_suite/suite.rs");

#[tokio::test]
async fn a_governance_section_without_a_master_key_or_with_a_bad_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "governance:\n  store: \"mysql://x\"\n  keys:\n    - { name: a, value: \"sk-123\" }\n    - { name: a, value: \"fg-aaaaaaaaaaaaaaaaaaaaaaaa\", budget: { usd: 1, period: 2d } }\n",
    )
    .unwrap();
    let out = run_cli(&["check", "--config", path.to_str().unwrap()]).await;
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    for needle in [
        "governance.master_key",
        "governance.store",
        "governance.keys[0].value",
        "governance.keys[1].name",
        "governance.keys[1].budget.period",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(!text.contains("sk-123"), "a key value is echoed:\n{text}");
}

/// Runs `ferrogate keys ...` with the master key in its environment (at most 20 s).
// The test's own timeout, on the wall clock (no gateway deadline is decided here).
#[allow(clippy::disallowed_methods)]
fn keys_cli(args: &[&str], master: &str) -> std::process::Output {
    let mut child = std::process::Command::new(common::gateway::BIN)
        .arg("keys")
        .args(args)
        .env("FERROGATE_MASTER_KEY", master)
        .env_remove("FERROGATE_URL")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ferrogate keys");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("`ferrogate keys {}` did not finish", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[tokio::test]
async fn the_keys_command_creates_lists_and_revokes_through_a_running_gateway() {
    let (_up, gw, _store) = start("", "").await;
    let url = gw.url("");
    let out = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            keys_cli(
                &[
                    "create", "--name", "cli-app", "--model", "fake/*", "--rpm", "5", "--url", &url,
                ],
                MASTER,
            )
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = stdout.lines().next().unwrap().trim().to_string();
    assert!(key.starts_with("fg-"), "{stdout}");
    assert_eq!(chat_as(&gw, &key, "fake/m").await.status, 200);
    assert_eq!(chat_as(&gw, &key, "gpt-4o-mini").await.status, 403);
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("an id line")
        .trim()
        .to_string();
    let list = tokio::task::spawn_blocking({
        let url = url.clone();
        move || keys_cli(&["list", "--url", &url], MASTER)
    })
    .await
    .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        listed.contains(&id) && listed.contains("cli-app"),
        "{listed}"
    );
    assert!(!listed.contains(&key), "the list shows the key: {listed}");
    let revoke = tokio::task::spawn_blocking({
        let (url, id) = (url.clone(), id.clone());
        move || keys_cli(&["revoke", &id, "--url", &url], MASTER)
    })
    .await
    .unwrap();
    assert!(revoke.status.success());
    assert_eq!(chat_as(&gw, &key, "fake/m").await.status, 401);
    // A wrong master key fails with the server's message.
    let bad = tokio::task::spawn_blocking(move || keys_cli(&["list", "--url", &url], "wrong"))
        .await
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("master key"));
}
