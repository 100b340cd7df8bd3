//! Outbound HTTP: per-origin keep-alive pools (`pool`), HTTP/1.1 and HTTP/2 (ALPN over TLS), plain
//! HTTP for local servers, `TCP_NODELAY`, connect and idle timeouts, private CAs and `HTTPS_PROXY`.

pub mod pool;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;
use tower_service::Service;

pub use pool::{error_chain, Lease, Pool, SendError, UpstreamBody};

/// Locked only while a snapshot is compiled (reloads), never on the request path.
#[allow(clippy::disallowed_types)]
type CompileLock<T> = std::sync::Mutex<T>;

/// How long an idle upstream connection is kept when the provider does not say (most HTTP
/// clients use the same: hyper-util's legacy pool, Go's `net/http`, reqwest).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    #[error("cannot read CA file {path}: {detail}")]
    CaFile { path: PathBuf, detail: String },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("invalid upstream origin: {0}")]
    Origin(String),
}

/// Everything that makes two providers need different pools.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// `scheme://authority` of the provider's base URL.
    pub origin: String,
    pub ca_file: Option<PathBuf>,
    /// Hash of the CA file's contents, so a rotated CA file gets a new pool on reload.
    pub ca_digest: Option<u64>,
    pub connect_timeout: Duration,
    /// How long a connection may sit idle before the pool closes it.
    pub idle_timeout: Duration,
}

impl PoolKey {
    /// A key for `origin`; reads the CA file (if any) to fingerprint its contents.
    pub fn new(
        origin: String,
        ca_file: Option<PathBuf>,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Result<Self, UpstreamSetupError> {
        let ca_digest = match &ca_file {
            None => None,
            Some(path) => {
                use std::hash::{Hash, Hasher};
                let bytes = std::fs::read(path).map_err(|e| UpstreamSetupError::CaFile {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
                let mut h = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut h);
                Some(h.finish())
            }
        };
        Ok(Self {
            origin,
            ca_file,
            ca_digest,
            connect_timeout,
            idle_timeout,
        })
    }
}

/// The pools that snapshots hold, by key, so a reload that keeps an origin keeps its warm
/// connections. The cache holds them weakly: a pool lives exactly as long as some snapshot (or a
/// request in flight) uses it, so an origin dropped from the config has its pool and idle
/// connections closed once the last snapshot naming it goes. Only touched while compiling a
/// snapshot, never on the request path, so a plain mutex is enough.
#[derive(Default)]
pub struct PoolCache {
    pools: CompileLock<HashMap<PoolKey, Weak<Pool>>>,
}

impl PoolCache {
    /// The live pool for `key`, or a new one. Also forgets the keys of pools that are gone.
    pub fn get(&self, key: &PoolKey) -> Result<Arc<Pool>, UpstreamSetupError> {
        let mut map = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, pool| pool.strong_count() > 0);
        if let Some(p) = map.get(key).and_then(Weak::upgrade) {
            return Ok(p);
        }
        let origin: Uri = key
            .origin
            .parse()
            .map_err(|e: http::uri::InvalidUri| UpstreamSetupError::Origin(e.to_string()))?;
        let (Some(scheme), Some(authority)) =
            (origin.scheme().cloned(), origin.authority().cloned())
        else {
            return Err(UpstreamSetupError::Origin(key.origin.clone()));
        };
        let connector = build_connector(key)?;
        let pool = Pool::new(
            connector,
            key.connect_timeout,
            key.idle_timeout,
            scheme,
            authority,
        )
        .map_err(UpstreamSetupError::Origin)?;
        let pool = Arc::new(pool);
        map.insert(key.clone(), Arc::downgrade(&pool));
        Ok(pool)
    }

    /// Pools still alive (some snapshot or request holds them).
    pub fn live(&self) -> usize {
        let map = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        map.values().filter(|p| p.strong_count() > 0).count()
    }
}

fn build_connector(key: &PoolKey) -> Result<HttpsConnector<ProxyConnector>, UpstreamSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &key.ca_file {
        for cert in read_pem_certs(path)? {
            roots.add(cert).map_err(|e| UpstreamSetupError::CaFile {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        }
    }
    // Explicit provider: other crates in the tree may enable a second rustls backend, which would
    // make the process-wide default ambiguous.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamSetupError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(key.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let connector = ProxyConnector {
        direct: http,
        proxies: Arc::new(Matcher::from_env()),
    };
    Ok(HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(connector))
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, UpstreamSetupError> {
    let err = |detail: String| UpstreamSetupError::CaFile {
        path: path.to_path_buf(),
        detail,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate found".into()));
    }
    Ok(certs)
}

/// A TCP connector that honours `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` by tunnelling (`CONNECT`)
/// through the proxy, and otherwise connects directly.
#[derive(Clone)]
pub struct ProxyConnector {
    direct: HttpConnector,
    proxies: Arc<Matcher>,
}

type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, BoxError>> + Send + 'static>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<Uri> for ProxyConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.direct.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        // Connecting happens once per pooled connection, not per request, so boxing is fine here.
        match self.proxies.intercept(&dst) {
            None => {
                let fut = self.direct.call(dst);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }
            Some(intercept) => {
                let mut tunnel = Tunnel::new(intercept.uri().clone(), self.direct.clone());
                if let Some(auth) = intercept.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Box::pin(async move { tunnel.call(dst).await.map_err(Into::into) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn write_ca(path: &Path) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(path, ck.cert.pem()).unwrap();
    }

    fn plain_key(origin: &str) -> PoolKey {
        PoolKey::new(origin.into(), None, SEC, DEFAULT_IDLE_TIMEOUT).unwrap()
    }

    #[test]
    fn pools_are_shared_by_key_and_renewed_when_the_ca_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        write_ca(&ca);
        let cache = PoolCache::default();
        let key = |ca: &Path| {
            PoolKey::new(
                "https://localhost:8443".into(),
                Some(ca.to_path_buf()),
                SEC,
                DEFAULT_IDLE_TIMEOUT,
            )
            .unwrap()
        };
        let a = cache.get(&key(&ca)).unwrap();
        let b = cache.get(&key(&ca)).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "same origin and CA must share a pool");
        write_ca(&ca); // rotated: a new certificate in the same file
        let c = cache.get(&key(&ca)).unwrap();
        assert!(
            !Arc::ptr_eq(&a, &c),
            "a rotated CA file must get a new pool"
        );
        let missing = PoolKey::new(
            "https://x".into(),
            Some(dir.path().join("nope.pem")),
            SEC,
            DEFAULT_IDLE_TIMEOUT,
        );
        assert!(matches!(missing, Err(UpstreamSetupError::CaFile { .. })));
    }

    #[test]
    fn the_idle_timeout_is_part_of_the_key() {
        let cache = PoolCache::default();
        let short = PoolKey::new("http://127.0.0.1:9".into(), None, SEC, SEC).unwrap();
        let a = cache.get(&short).unwrap();
        let b = cache.get(&plain_key("http://127.0.0.1:9")).unwrap();
        assert!(!Arc::ptr_eq(&a, &b), "different idle timeouts share a pool");
        assert_eq!(a.idle_timeout(), SEC);
        assert_eq!(b.idle_timeout(), DEFAULT_IDLE_TIMEOUT);
    }

    /// A reload compiles the new snapshot while the old one is still live: origins both name
    /// keep their pool, and the pool of an origin only the old one named dies with it.
    #[test]
    fn pools_live_only_as_long_as_a_snapshot_holds_them() {
        let cache = PoolCache::default();
        let (kept, dropped) = (
            plain_key("http://127.0.0.1:1"),
            plain_key("http://127.0.0.1:2"),
        );
        let old_snapshot = vec![cache.get(&kept).unwrap(), cache.get(&dropped).unwrap()];
        let gone = Arc::downgrade(&old_snapshot[1]);

        let new_snapshot = vec![cache.get(&kept).unwrap()];
        assert!(
            Arc::ptr_eq(&old_snapshot[0], &new_snapshot[0]),
            "a reload that keeps an origin must keep its pool (and warm connections)"
        );
        assert_eq!(cache.live(), 2, "the old snapshot still holds both");

        drop(old_snapshot);
        assert!(
            gone.upgrade().is_none(),
            "the cache must not keep a pool alive that no snapshot holds"
        );
        assert_eq!(cache.live(), 1);
        // The next compile forgets the dead key, and the origin, if it comes back, gets a new
        // pool rather than a resurrected one.
        let again = cache.get(&dropped).unwrap();
        assert_eq!(cache.pools.lock().unwrap().len(), 2);
        assert!(Arc::ptr_eq(&cache.get(&kept).unwrap(), &new_snapshot[0]));
        drop((again, new_snapshot));
        let _ = cache.get(&plain_key("http://127.0.0.1:3")).unwrap();
        assert_eq!(
            cache.pools.lock().unwrap().len(),
            1,
            "keys of dead pools must be pruned when a snapshot is compiled"
        );
    }
}
