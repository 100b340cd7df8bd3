//! Process lifecycle: client disconnects, hot reload (file rewrite and SIGHUP), graceful
//! shutdown on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Tests time the real binary from outside with the system clock.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;

/// A stream request that asks for usage itself (so the client sees upstream bytes verbatim).
fn stream_request() -> Vec<u8> {
    let mut body = fixture_request_body(STREAM_TEXT_REQUEST);
    body["model"] = serde_json::json!("gpt-4o-mini");
    serde_json::to_vec(&body).expect("json")
}

/// Polls `model` with a chat request until it returns `status` (at most `timeout`).
async fn wait_status(gw: &Gateway, model: &str, status: u16, timeout: Duration) -> u16 {
    let deadline = Instant::now() + timeout;
    loop {
        let got = post(&gw.chat_url(), chat_body(model, None)).await.status;
        if got == status || Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------- client disconnect

#[tokio::test]
async fn client_disconnect_mid_stream_closes_upstream_promptly() {
    let (up, gw) = setup().await;
    up.push(Behavior::sse_fixture(STREAM_TEXT).stall_after(3));
    let resp = client()
        .post(gw.chat_url())
        .body(stream_request())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    assert!(
        read_until(
            &mut stream,
            &mut buf,
            br#""content":"The""#,
            Duration::from_secs(5)
        )
        .await,
        "first frames not forwarded: {:?}",
        String::from_utf8_lossy(&buf)
    );
    assert_eq!(up.cancels(), 0);
    drop(stream); // client goes away mid-stream

    assert!(
        up.wait_cancels(1, Duration::from_secs(2)).await,
        "upstream not cancelled within 2 s of the client disconnecting"
    );
    let in_flight = gw
        .wait_metric_at_most("ferrogate_requests_in_flight", 0.0, Duration::from_secs(2))
        .await;
    assert_eq!(in_flight, 0.0, "requests_in_flight after the disconnect");
    // The usage produced before the disconnect is still recorded (estimated: the usage chunk
    // never arrived).
    let completion = gw
        .wait_metric(
            "ferrogate_tokens_total",
            &[("model", "gpt-4o-mini"), ("kind", "completion")],
            1.0,
            Duration::from_secs(3),
        )
        .await;
    assert!(
        completion >= 1.0,
        "no completion tokens recorded after the disconnect: {completion}"
    );
}

#[tokio::test]
async fn client_disconnect_before_response_head_cancels_upstream_request() {
    let (up, gw) = setup().await;
    up.push(Behavior::json_fixture(200, CHAT_NONSTREAM).head_delay(Duration::from_secs(8)));
    let url = gw.chat_url();
    let request = tokio::spawn(async move {
        let _ = client()
            .post(url)
            .body(chat_body("gpt-4o-mini", None))
            .send()
            .await;
    });
    assert!(
        up.wait_requests(1, Duration::from_secs(5)).await,
        "request never reached the upstream"
    );
    assert_eq!(up.cancels(), 0);
    request.abort(); // the client gives up while the upstream is still thinking
    assert!(
        up.wait_cancels(1, Duration::from_secs(2)).await,
        "upstream request not cancelled within 2 s of the client disconnecting"
    );
    let closed = gw
        .wait_metric(
            "ferrogate_requests_total",
            &[("model", "gpt-4o-mini"), ("status", "499")],
            1.0,
            Duration::from_secs(3),
        )
        .await;
    assert_eq!(closed, 1.0, "the abandoned request was not recorded as 499");
}

#[tokio::test]
async fn client_disconnect_between_gated_frames_closes_upstream() {
    let (up, gw) = setup().await;
    let (b, gate) = Behavior::sse_fixture(STREAM_TEXT).gated();
    up.push(b);
    gate.release(2);
    let resp = client()
        .post(gw.chat_url())
        .body(stream_request())
        .send()
        .await
        .expect("send");
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    assert!(
        read_until(
            &mut stream,
            &mut buf,
            br#""content":"The""#,
            Duration::from_secs(5)
        )
        .await
    );
    drop(stream);
    assert!(
        up.wait_cancels(1, Duration::from_secs(2)).await,
        "upstream not cancelled within 2 s"
    );
    assert!(gate.sent() < sse_events(&fixture(STREAM_TEXT)).len());
}

// ---------------------------------------------------------------- reload

#[tokio::test]
async fn rewriting_config_file_adds_a_model_without_restart() {
    let up = MockUpstream::start().await;
    let cfg = Cfg::new(&up.base_url());
    let gw = Gateway::start(&cfg.yaml()).await;
    let pid = gw.pid();
    assert_eq!(
        post(&gw.chat_url(), chat_body("brand-new", None))
            .await
            .status,
        404
    );

    gw.rewrite_config(
        &cfg.model("  - name: brand-new\n    targets: [{ provider: up, model: new-upstream }]")
            .yaml(),
    );
    let started = Instant::now();
    let status = wait_status(&gw, "brand-new", 200, Duration::from_secs(5)).await;
    assert_eq!(status, 200, "new model not routable 5 s after the rewrite");
    eprintln!("reload took effect after {:?}", started.elapsed());
    assert_eq!(up.last_request().json()["model"], "new-upstream");
    assert_eq!(gw.pid(), pid);
    let ok = gw
        .wait_metric(
            "ferrogate_config_reloads_total",
            &[("result", "ok")],
            1.0,
            Duration::from_secs(2),
        )
        .await;
    assert!(
        ok >= 1.0,
        "ferrogate_config_reloads_total{{result=\"ok\"}} = {ok}"
    );
    // The old model still works.
    assert_eq!(
        post(&gw.chat_url(), chat_body("gpt-4o-mini", None))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn rewriting_config_file_retargets_an_existing_model() {
    let up = MockUpstream::start().await;
    let cfg = Cfg::new(&up.base_url());
    let gw = Gateway::start(&cfg.yaml()).await;
    let reply = post(&gw.chat_url(), chat_body("gpt-4o-mini", None)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(up.last_request().json()["model"], "upstream-model-x");

    let yaml = cfg
        .yaml()
        .replace("model: upstream-model-x", "model: upstream-model-y");
    gw.rewrite_config(&yaml);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = String::new();
    while Instant::now() < deadline {
        let reply = post(&gw.chat_url(), chat_body("gpt-4o-mini", None)).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        seen = up.last_request().json()["model"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if seen == "upstream-model-y" {
            assert_eq!(
                reply.header("x-ferrogate-target").as_deref(),
                Some("up/upstream-model-y")
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, "upstream-model-y", "target not swapped within 5 s");
}

#[tokio::test]
async fn sighup_reloads_config() {
    let up = MockUpstream::start().await;
    let cfg = Cfg::new(&up.base_url());
    let mut gw = Gateway::start(&cfg.yaml()).await;
    assert_eq!(
        post(&gw.chat_url(), chat_body("hup-model", None))
            .await
            .status,
        404
    );
    gw.rewrite_config(
        &cfg.model("  - name: hup-model\n    targets: [{ provider: up }]")
            .yaml(),
    );
    gw.sighup();
    let status = wait_status(&gw, "hup-model", 200, Duration::from_secs(5)).await;
    assert_eq!(status, 200, "model not routable 5 s after SIGHUP");
    assert!(gw.try_exit().is_none(), "SIGHUP must not stop the process");
}

#[tokio::test]
async fn invalid_config_is_rejected_and_old_config_keeps_serving() {
    let up = MockUpstream::start().await;
    let cfg = Cfg::new(&up.base_url());
    let mut gw = Gateway::start(&cfg.yaml()).await;
    let before = gw
        .metric("ferrogate_config_reloads_total", &[("result", "failed")])
        .await;

    // Semantically invalid: references an unknown provider.
    gw.rewrite_config(
        &cfg.clone()
            .model("  - name: broken-model\n    targets: [{ provider: opnai }]")
            .yaml(),
    );
    let failed = gw
        .wait_metric(
            "ferrogate_config_reloads_total",
            &[("result", "failed")],
            before + 1.0,
            Duration::from_secs(5),
        )
        .await;
    assert!(
        failed >= before + 1.0,
        "ferrogate_config_reloads_total{{result=\"failed\"}} = {failed}\n{}",
        gw.metrics().await
    );
    let reply = post(&gw.chat_url(), chat_body("gpt-4o-mini", None)).await;
    assert_eq!(
        reply.status,
        200,
        "old config must keep serving: {}",
        reply.text()
    );
    assert_eq!(
        post(&gw.chat_url(), chat_body("broken-model", None))
            .await
            .status,
        404
    );
    assert_eq!(get(&gw.url("/ready")).await.status, 200);
    assert!(
        gw.try_exit().is_none(),
        "an invalid reload must not stop the process"
    );
}

#[tokio::test]
async fn unparsable_config_on_sighup_is_rejected() {
    let up = MockUpstream::start().await;
    let cfg = Cfg::new(&up.base_url());
    let gw = Gateway::start(&cfg.yaml()).await;
    let before = gw
        .metric("ferrogate_config_reloads_total", &[("result", "failed")])
        .await;
    gw.rewrite_config("providers: [this is: not: valid yaml\n  - {");
    gw.sighup();
    let failed = gw
        .wait_metric(
            "ferrogate_config_reloads_total",
            &[("result", "failed")],
            before + 1.0,
            Duration::from_secs(5),
        )
        .await;
    assert!(failed >= before + 1.0, "failed reloads: {failed}");
    let reply = post(&gw.chat_url(), chat_body("gpt-4o-mini", None)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(up.last_request().json()["model"], "upstream-model-x");
}

// ---------------------------------------------------------------- shutdown

#[tokio::test]
async fn sigterm_drains_open_stream_refuses_new_connections_and_exits_zero() {
    let (up, mut gw) = setup().await;
    // 12 events, 150 ms apart: the stream stays open ~1.7 s.
    up.push(Behavior::sse_fixture(STREAM_TEXT).frame_delay(Duration::from_millis(150)));
    let resp = client()
        .post(gw.chat_url())
        .body(stream_request())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    assert!(
        read_until(&mut stream, &mut buf, b"\n\n", Duration::from_secs(5)).await,
        "first frame"
    );

    gw.sigterm();
    let addr = gw.addr();
    let reader = tokio::spawn(async move {
        let fut = async {
            while let Some(c) = stream.next().await {
                match c {
                    Ok(c) => buf.extend_from_slice(&c),
                    Err(_) => return (buf, false),
                }
            }
            (buf, true)
        };
        tokio::time::timeout(WAIT, fut)
            .await
            .expect("stream did not finish within 10 s of SIGTERM")
    });

    // New connections are refused while the stream drains.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut refused = false;
    let mut stream_open_when_refused = false;
    while Instant::now() < deadline {
        match tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Err(_)) => {
                refused = true;
                stream_open_when_refused = !reader.is_finished();
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(refused, "new connections still accepted 3 s after SIGTERM");
    assert!(
        stream_open_when_refused,
        "connections were refused only after the open stream had finished"
    );

    let (bytes, clean) = reader.await.expect("join");
    assert!(clean, "stream was cut during shutdown");
    assert_bytes_eq(&bytes, &fixture(STREAM_TEXT), "drained stream");
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("gateway did not exit within 10 s after the stream finished");
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status:?}; output:\n{}",
        gw.all_output()
    );
}

#[tokio::test]
async fn sigterm_when_idle_exits_zero_quickly() {
    let (_up, mut gw) = setup().await;
    assert_eq!(get(&gw.url("/health")).await.status, 200);
    let started = Instant::now();
    gw.sigterm();
    let status = gw
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("idle gateway did not exit within 5 s of SIGTERM");
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status:?} after SIGTERM; output:\n{}",
        gw.all_output()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}
