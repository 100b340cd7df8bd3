//! Pool tests. Expiry runs on tokio's paused clock over in-memory (`duplex`) connections, so
//! virtual time is exact and no socket can race it; the connect tests use real TLS servers on
//! 127.0.0.1:0 because ALPN only happens there.

use std::convert::Infallible;
use std::sync::atomic::AtomicUsize;

use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::*;
use crate::upstream::{build_connector, PoolCache, PoolKey};

const SEC: Duration = Duration::from_secs(1);

/// A pool for an origin it never connects to (the duplex tests hand it connections).
fn offline_pool(idle_timeout: Duration) -> Arc<Pool> {
    let key = PoolKey::new("http://pool.test".into(), None, SEC, idle_timeout).unwrap();
    let connector = build_connector(&key).unwrap();
    let pool = Pool::new(
        connector,
        SEC,
        idle_timeout,
        Scheme::HTTP,
        Authority::from_static("pool.test"),
    )
    .unwrap();
    Arc::new(pool)
}

fn get() -> Request<UpstreamBody> {
    Request::get("http://pool.test/v1/x")
        .body(UpstreamBody::default())
        .unwrap()
}

fn answer(
    name: &'static str,
) -> impl Fn(Request<Incoming>) -> std::future::Ready<Result<Response<UpstreamBody>, Infallible>> + Clone
{
    move |_req| {
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(
            name.as_bytes(),
        )))))
    }
}

/// An HTTP/1.1 connection to an in-memory server answering `name`; the watch turns true when
/// the server saw the connection close.
async fn duplex_h1(
    name: &'static str,
) -> (http1::SendRequest<UpstreamBody>, watch::Receiver<bool>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (closed_tx, closed) = watch::channel(false);
    tokio::spawn(async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server), service_fn(answer(name)))
            .await;
        let _ = closed_tx.send(true);
    });
    let (sender, conn) = http1::handshake(TokioIo::new(client)).await.unwrap();
    tokio::spawn(conn);
    (sender, closed)
}

/// The same over HTTP/2.
async fn duplex_h2(
    name: &'static str,
) -> (http2::SendRequest<UpstreamBody>, watch::Receiver<bool>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (closed_tx, closed) = watch::channel(false);
    tokio::spawn(async move {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(server), service_fn(answer(name)))
            .await;
        let _ = closed_tx.send(true);
    });
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(client))
        .await
        .unwrap();
    tokio::spawn(conn);
    (sender, closed)
}

/// Returns `sender` to `pool` as a finished request would.
fn release(pool: &Arc<Pool>, sender: http1::SendRequest<UpstreamBody>) {
    Lease {
        h1: Some((sender, Arc::clone(pool))),
        _h2: None,
    }
    .release();
}

/// Whether the server has seen its connection close, given everything that is ready to run
/// the chance to. Only for paused-clock tests: there the 1 ms passes only once nothing else
/// can run, so it is a wait for quiescence, not a race against the machine's load.
async fn closes(closed: &mut watch::Receiver<bool>) -> bool {
    tokio::time::timeout(Duration::from_millis(1), closed.wait_for(|c| *c))
        .await
        .is_ok()
}

async fn body_of(resp: Response<Incoming>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

// ---------------------------------------------------------------- idle expiry

#[tokio::test(start_paused = true)]
async fn checkout_skips_and_closes_expired_idle_connections() {
    // No reaper here: the tick counter is moved by hand, so only checkout can expire anything.
    let pool = offline_pool(8 * SEC);
    let (old, mut old_closed) = duplex_h1("old").await;
    release(&pool, old); // idle since tick 0
    pool.ticks.store(5, Ordering::Relaxed);
    let (young, mut young_closed) = duplex_h1("young").await;
    release(&pool, young); // idle since tick 5
    pool.ticks.store(TICKS_PER_TIMEOUT + 1, Ordering::Relaxed);

    let (resp, lease) = pool.send(get()).await.unwrap();
    assert_eq!(
        body_of(resp).await,
        "young",
        "the expired connection was reused"
    );
    assert!(
        closes(&mut old_closed).await,
        "the expired connection stayed open"
    );
    assert!(!closes(&mut young_closed).await);
    lease.release();
    assert_eq!(
        pool.idle.len(),
        1,
        "the used connection goes back to the pool"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_exactly_one_timeout_old_is_still_used() {
    let pool = offline_pool(8 * SEC);
    let (conn, _closed) = duplex_h1("kept").await;
    release(&pool, conn);
    // Stamped somewhere within tick 0; at tick 8 less than a whole timeout may have passed.
    pool.ticks.store(TICKS_PER_TIMEOUT, Ordering::Relaxed);
    let (resp, _lease) = pool.send(get()).await.unwrap();
    assert_eq!(body_of(resp).await, "kept");
}

#[tokio::test(start_paused = true)]
async fn an_idle_http1_connection_is_closed_after_the_idle_timeout_without_a_request() {
    let pool = offline_pool(8 * SEC); // one tick per second
    pool.start_reaper();
    let (conn, mut closed) = duplex_h1("a").await;
    release(&pool, conn);

    tokio::time::sleep(Duration::from_millis(7_900)).await;
    assert!(!closes(&mut closed).await, "closed before the idle timeout");
    assert_eq!(pool.idle.len(), 1);

    // Closed between 1 and 1.125 timeouts (the expiry's resolution is one tick).
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(
        closes(&mut closed).await,
        "an idle connection outlived 1.125 idle timeouts"
    );
    assert_eq!(pool.idle.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_shared_h2_connection_expires_only_after_its_last_request_finished() {
    let pool = offline_pool(8 * SEC);
    pool.start_reaper();
    let (sender, mut closed) = duplex_h2("h2").await;
    pool.install_h2(sender);
    pool.proto.store(PROTO_H2, Ordering::Relaxed);

    // One request in flight for longer than two idle timeouts: the connection must stay.
    let (resp, lease) = pool.send(get()).await.unwrap();
    tokio::time::sleep(20 * SEC).await;
    assert!(
        !closes(&mut closed).await,
        "closed under a request in flight"
    );
    assert!(
        pool.h2.load().is_some(),
        "forgotten under a request in flight"
    );
    assert_eq!(body_of(resp).await, "h2");
    drop(lease);

    // Idle from here (t = 20 s).
    tokio::time::sleep(Duration::from_millis(7_900)).await;
    assert!(
        pool.h2.load().is_some(),
        "forgotten before the idle timeout"
    );
    assert!(!closes(&mut closed).await);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(
        pool.h2.load().is_none(),
        "an idle h2 connection outlived 1.125 idle timeouts"
    );
    assert!(closes(&mut closed).await, "forgotten but not closed");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_pool_closes_its_idle_connections_and_stops_its_reaper() {
    let pool = offline_pool(8 * SEC);
    pool.start_reaper();
    let reaper = pool.reaper.get().unwrap().clone();
    let (conn, mut closed) = duplex_h1("a").await;
    release(&pool, conn);
    assert!(!closes(&mut closed).await);

    drop(pool);
    assert!(
        closes(&mut closed).await,
        "the idle connection outlived its pool"
    );
    for _ in 0..10 {
        if reaper.is_finished() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(reaper.is_finished(), "the reaper outlived its pool");
}

// ---------------------------------------------------------------- connects over TLS

/// A private CA and a server certificate for `localhost` it signed.
struct Pki {
    ca_pem: String,
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "pool test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert: leaf.der().clone(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()),
    }
}

/// An HTTPS server on 127.0.0.1:0 offering `alpn`; counts accepted TCP connections. Each
/// request first awaits `gate` (to hold requests in flight together), then gets 200 "ok".
struct Upstream {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn upstream(pki: &Pki, alpn: &[&[u8]], gate: Option<Arc<tokio::sync::Barrier>>) -> Upstream {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.cert.clone()],
            PrivateKeyDer::Pkcs8(pki.key.clone_key()),
        )
        .unwrap();
    tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let (acceptor, gate) = (acceptor.clone(), gate.clone());
            conns.spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |_req: Request<Incoming>| {
                    let gate = gate.clone();
                    async move {
                        if let Some(gate) = gate {
                            gate.wait().await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Upstream {
        port,
        accepted,
        task,
    }
}

/// The pool for `https://localhost:port`, trusting `pki`'s CA.
fn tls_pool(
    cache: &PoolCache,
    dir: &std::path::Path,
    pki: &Pki,
    port: u16,
    connect_timeout: Duration,
) -> Arc<Pool> {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let key = PoolKey::new(
        format!("https://localhost:{port}"),
        Some(ca),
        connect_timeout,
        8 * SEC,
    )
    .unwrap();
    cache.get(&key).unwrap()
}

/// Sends `n` requests at once from separate tasks; returns each one's outcome.
async fn send_together(pool: &Arc<Pool>, n: usize, port: u16) -> Vec<Result<Bytes, SendError>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let pool = Arc::clone(pool);
            let req = Request::get(format!("https://localhost:{port}/v1/x"))
                .body(UpstreamBody::default())
                .unwrap();
            tokio::spawn(async move {
                let (resp, lease) = pool.send(req).await?;
                let body = body_of(resp).await;
                lease.release();
                Ok(body)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
const H1_ONLY: &[&[u8]] = &[b"http/1.1"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_to_an_h2_origin_open_one_connection() {
    let (pki, dir) = (pki(), tempfile::tempdir().unwrap());
    let up = upstream(&pki, H2_AND_H1, None).await;
    let cache = PoolCache::default();
    let pool = tls_pool(&cache, dir.path(), &pki, up.port, 5 * SEC);

    let outcomes = tokio::time::timeout(10 * SEC, send_together(&pool, 16, up.port))
        .await
        .expect("requests did not finish");
    for (i, o) in outcomes.iter().enumerate() {
        assert_eq!(o.as_ref().unwrap(), "ok", "request {i}");
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "16 requests arriving together at an h2 origin must share one connection"
    );
    assert_eq!(pool.proto.load(Ordering::Relaxed), PROTO_H2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_to_an_http1_origin_connect_in_parallel() {
    const N: usize = 4;
    let (pki, dir) = (pki(), tempfile::tempdir().unwrap());
    // The server answers only once all N requests are in flight together: one connection each.
    let gate = Arc::new(tokio::sync::Barrier::new(N));
    let up = upstream(&pki, H1_ONLY, Some(gate)).await;
    let cache = PoolCache::default();
    let pool = tls_pool(&cache, dir.path(), &pki, up.port, 5 * SEC);

    let outcomes = tokio::time::timeout(10 * SEC, send_together(&pool, N, up.port))
        .await
        .expect("HTTP/1.1 requests were not in flight together (connects serialised?)");
    for (i, o) in outcomes.iter().enumerate() {
        assert_eq!(o.as_ref().unwrap(), "ok", "request {i}");
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), N);
    assert_eq!(
        pool.idle.len(),
        N,
        "every finished connection is kept for reuse"
    );
    assert_eq!(pool.proto.load(Ordering::Relaxed), PROTO_H1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_waited_on_a_failed_connect_share_its_failure() {
    // Accepts TCP but never answers the TLS handshake: every connect times out.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(tcp);
        }
    });
    let (pki, dir) = (pki(), tempfile::tempdir().unwrap());
    let cache = PoolCache::default();
    let pool = tls_pool(&cache, dir.path(), &pki, port, SEC);

    let started = tokio::time::Instant::now();
    let outcomes = send_together(&pool, 6, port).await;
    let took = started.elapsed();
    silent.abort();
    for (i, o) in outcomes.iter().enumerate() {
        assert!(
            matches!(o, Err(SendError::ConnectTimeout)),
            "request {i}: {:?}",
            o.as_ref().map_err(|e| e.to_string())
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connect for all six"
    );
    assert!(
        took < 3 * SEC,
        "waiters queued their own connects: {took:?}"
    );
}
