//! TLS upstreams for the outbound-pool tests: a throwaway PKI made with rcgen (a private CA and a
//! server certificate for `localhost`/`127.0.0.1`, or a lone self-signed certificate) and
//! `TlsUpstream`, an HTTPS server (tokio-rustls + hyper-util's auto builder, so HTTP/1.1 and
//! HTTP/2 as ALPN decides) on 127.0.0.1:0 that records each request's HTTP version and counts the
//! TCP connections it accepted.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use super::fixtures::sse_events;

/// Server identity for a `TlsUpstream`, plus the PEM of the certificate a client should trust.
pub struct Pki {
    /// PEM of the trust anchor: the CA (or the self-signed certificate itself).
    pub ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Pki {
    /// A private CA and a server certificate it signed, valid for `localhost` and `127.0.0.1`.
    pub fn private_ca() -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ferrogate test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_cert = params
            .signed_by(&server_key, &issuer)
            .expect("sign server cert");
        Pki {
            ca_pem: ca_cert.pem(),
            chain: vec![server_cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(server_key.serialize_der()),
        }
    }

    /// A self-signed certificate for `localhost` and `127.0.0.1` (no CA anywhere).
    pub fn self_signed() -> Pki {
        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .expect("self-signed cert");
        Pki {
            ca_pem: ck.cert.pem(),
            chain: vec![ck.cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()),
        }
    }

    /// Writes `ca_pem` to `dir/ca.pem` and returns the path.
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.ca_pem).expect("write ca.pem");
        path
    }

    fn server_config(&self, alpn: &[&[u8]]) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                self.chain.clone(),
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .expect("server certificate");
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        cfg
    }
}

/// What a `TlsUpstream` answers to every request.
#[derive(Clone)]
pub enum Answer {
    /// 200 `application/json` with these bytes.
    Json(Bytes),
    /// 200 `text/event-stream`, one DATA frame / chunk per SSE event.
    Sse(Bytes),
}

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub version: Version,
    pub path: String,
    pub body: Bytes,
}

type Body = BoxBody<Bytes, Infallible>;

/// An HTTPS upstream on 127.0.0.1:0. Dropping it stops the server and all its connections.
pub struct TlsUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    accept_task: tokio::task::AbortHandle,
}

impl TlsUpstream {
    /// Serves `answer` over TLS with `pki`'s certificate, offering the `alpn` protocols (in
    /// preference order, e.g. `[b"h2", b"http/1.1"]`).
    pub async fn start(pki: &Pki, alpn: &[&[u8]], answer: Answer) -> TlsUpstream {
        let acceptor = TlsAcceptor::from(Arc::new(pki.server_config(alpn)));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));

        let (conns, log) = (connections.clone(), seen.clone());
        let accept_task = tokio::spawn(async move {
            // Owned by this task: aborting it drops the set, which aborts every connection.
            let mut tasks = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    break;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let (acceptor, log, answer) = (acceptor.clone(), log.clone(), answer.clone());
                tasks.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return; // e.g. the client rejected our certificate
                    };
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (log, answer) = (log.clone(), answer.clone());
                        async move { Ok::<_, Infallible>(respond(req, &log, &answer).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
                // Reap finished connections so the set doesn't grow.
                while tasks.try_join_next().is_some() {}
            }
        })
        .abort_handle();

        TlsUpstream {
            addr,
            connections,
            seen,
            accept_task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// TCP connections accepted so far (whether or not the TLS handshake succeeded).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn respond(
    req: Request<Incoming>,
    log: &Mutex<Vec<Seen>>,
    answer: &Answer,
) -> Response<Body> {
    let version = req.version();
    let path = req.uri().path().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    log.lock().expect("seen").push(Seen {
        version,
        path,
        body,
    });
    match answer {
        Answer::Json(bytes) => Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Full::new(bytes.clone()).boxed())
            .expect("response"),
        Answer::Sse(bytes) => {
            let frames = sse_events(bytes)
                .into_iter()
                .map(|ev| Ok::<_, Infallible>(Frame::data(Bytes::from(ev))));
            let stream = futures_util::stream::iter(frames);
            Response::builder()
                .status(200)
                .header("content-type", "text/event-stream")
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .expect("response")
        }
    }
}
