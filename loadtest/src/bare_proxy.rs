//! The baseline: a bare hyper 1.x reverse proxy. http1 server with keep-alive,
//! hyper-util legacy pooled client, TCP_NODELAY both ways, hop-by-hop headers
//! and Host stripped, request and response bodies streamed through frame by
//! frame. One thread, no extra work: this is the floor ferrogate is held to.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, CONNECTION, HOST};
use hyper::http::uri::{Authority, Scheme};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

#[derive(clap::Args, Clone, Debug)]
pub struct BareProxyArgs {
    /// Address to listen on (port 0 = pick a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Upstream origin, e.g. http://127.0.0.1:9000 (the request path is kept).
    #[arg(long)]
    pub upstream: Uri,
    /// Cap on idle pooled upstream connections.
    #[arg(long, default_value_t = 64)]
    pub pool_max_idle: usize,
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including any named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove("upgrade");
}

type ProxyBody = Either<Incoming, Full<Bytes>>;
type PoolClient = Client<HttpConnector, Incoming>;

fn bad_gateway() -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(b"bad gateway"))));
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}

async fn proxy(
    req: Request<Incoming>,
    client: PoolClient,
    authority: Authority,
) -> Result<Response<ProxyBody>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let mut uri = Uri::builder().scheme(Scheme::HTTP).authority(authority);
    if let Some(pq) = parts.uri.path_and_query() {
        uri = uri.path_and_query(pq.clone());
    }
    parts.uri = match uri.build() {
        Ok(u) => u,
        Err(_) => return Ok(bad_gateway()),
    };
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(HOST);
    match client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(parts, Either::Left(body)))
        }
        Err(e) => {
            eprintln!("upstream error: {e}");
            Ok(bad_gateway())
        }
    }
}

/// Runs the proxy until killed (current-thread runtime, one OS thread).
pub fn serve(args: &BareProxyArgs) -> anyhow::Result<()> {
    let authority = args
        .upstream
        .authority()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("--upstream needs host:port, got {}", args.upstream))?;
    if args.upstream.scheme() != Some(&Scheme::HTTP) {
        anyhow::bail!("--upstream must be http://, got {}", args.upstream);
    }
    let rt = crate::util::current_thread_runtime()?;
    rt.block_on(async move {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: PoolClient = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(args.pool_max_idle)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .build(connector);
        let listener = crate::server::bind("bare-proxy", args.listen).await?;
        crate::server::accept_loop(listener, move || {
            let client = client.clone();
            let authority = authority.clone();
            service_fn(move |req| proxy(req, client.clone(), authority.clone()))
        })
        .await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn strips_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));
    }
}
