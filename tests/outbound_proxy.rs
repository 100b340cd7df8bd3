//! Outbound proxy support: with `HTTP_PROXY`/`HTTPS_PROXY` set, the gateway reaches providers
//! through the proxy (CONNECT tunnel); hosts in `NO_PROXY` are reached directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A minimal CONNECT proxy on 127.0.0.1 that counts the tunnels it opened.
struct ConnectProxy {
    port: u16,
    tunnels: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ConnectProxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tunnels = Arc::new(AtomicUsize::new(0));
        let count = tunnels.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let _ = tunnel(client, count).await;
                });
            }
        });
        ConnectProxy {
            port,
            tunnels,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tunnel(mut client: TcpStream, count: Arc<AtomicUsize>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).await? == 0 || head.len() > 8192 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let Some(target) = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("CONNECT "))
        .and_then(|l| l.split(' ').next())
    else {
        client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    // Only loopback targets: this proxy exists for tests on this machine.
    if !target.starts_with("127.0.0.1:") && !target.starts_with("localhost:") {
        client.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await?;
        return Ok(());
    }
    let mut upstream = TcpStream::connect(target).await?;
    count.fetch_add(1, Ordering::SeqCst);
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

#[tokio::test]
async fn requests_go_through_the_configured_proxy() {
    let proxy = ConnectProxy::start().await;
    let up = MockUpstream::start().await;
    let yaml = Cfg::new(&up.base_url()).yaml();
    let gw = Gateway::start_with_env(
        &yaml,
        &[("HTTP_PROXY", &proxy.url()), ("HTTPS_PROXY", &proxy.url())],
    )
    .await;
    up.push(Behavior::json_fixture(200, CHAT_NONSTREAM));
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        post(
            &gw.url("/v1/chat/completions"),
            chat_body("gpt-4o-mini", None),
        ),
    )
    .await
    .expect("request finished");
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.body, fixture(CHAT_NONSTREAM));
    assert_eq!(
        proxy.tunnels(),
        1,
        "the upstream was not reached through the proxy"
    );
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn no_proxy_hosts_are_reached_directly() {
    let proxy = ConnectProxy::start().await;
    let up = MockUpstream::start().await;
    let yaml = Cfg::new(&up.base_url()).yaml();
    let gw = Gateway::start_with_env(
        &yaml,
        &[("HTTP_PROXY", &proxy.url()), ("NO_PROXY", "127.0.0.1")],
    )
    .await;
    up.push(Behavior::json_fixture(200, CHAT_NONSTREAM));
    let reply = post(
        &gw.url("/v1/chat/completions"),
        chat_body("gpt-4o-mini", None),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(proxy.tunnels(), 0, "NO_PROXY host went through the proxy");
    assert_eq!(up.request_count(), 1);
}
