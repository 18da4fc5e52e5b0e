//! Owner routing: a miss on a node that does not own the key is fetched from its
//! owner over HTTP, so the owner fetches, processes and caches once for the cluster.
//!
//! The forward carries `X-Imgedge-Hop: 1` and `X-Imgedge-Cluster-Auth:
//! <unix secs>:<node id>:<hex HMAC-SHA256>` over method, Host, path+query, the time and
//! the node id, with the cluster secret. The owner accepts it within `auth_skew_secs`
//! and then (a) skips the access rules (the receiving node applied them) and (b) never
//! forwards it again, whatever its own ring says: loops stop after one hop.
//!
//! Any failure (owner down, connect or forward timeout, a non-200 answer, a body
//! larger than the cache takes) returns None and the node fills the request itself.

use super::Cluster;
use crate::cache::{CacheKey, Entry};
use crate::config::ClusterConfig;
use crate::request::ObjectRequest;
use crate::App;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{header, HeaderMap, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Marks a forwarded request.
pub const HOP_HEADER: &str = "x-imgedge-hop";
/// Its authentication.
pub const AUTH_HEADER: &str = "x-imgedge-cluster-auth";

/// The pooled HTTP client to peers.
pub type Client = hyper_util::client::legacy::Client<HttpConnector, Empty<Bytes>>;

/// A keep-alive client with the connect timeout.
pub fn client(cfg: &ClusterConfig) -> Client {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(Duration::from_millis(cfg.connect_timeout_ms)));
    http.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(http)
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn mac(secret: &[u8], method: &str, host: &str, uri: &str, ts: u64, node: &str) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    for part in [method, host, uri, &ts.to_string(), node] {
        mac.update(part.as_bytes());
        mac.update(b"\n");
    }
    Some(mac)
}

/// The auth header value for a forward of `GET host uri`.
pub fn sign(secret: &[u8], node: &str, host: &str, uri: &str, ts: u64) -> String {
    let tag =
        mac(secret, "GET", host, uri, ts, node).map(|m| hex::encode(m.finalize().into_bytes())).unwrap_or_default();
    format!("{ts}:{node}:{tag}")
}

/// True when `value` authenticates a forward of `method host uri` at `now` (unix secs).
pub fn verify(secret: &[u8], skew: u64, value: &str, method: &str, host: &str, uri: &str, now: u64) -> bool {
    let mut parts = value.splitn(3, ':');
    let (Some(ts), Some(node), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(ts) = ts.parse::<u64>() else { return false };
    if ts.abs_diff(now) > skew {
        return false;
    }
    let Ok(tag) = hex::decode(tag) else { return false };
    // Constant-time comparison inside `verify_slice`.
    mac(secret, method, host, uri, ts, node).is_some_and(|m| m.verify_slice(&tag).is_ok())
}

/// True when a public request is an authenticated forward from a cluster peer (the
/// hop header plus a valid auth header); a hop header without valid auth is ignored,
/// so the request is treated as any client's.
pub fn is_verified_hop(app: &App, method: &http::Method, host: &str, uri: &http::Uri, headers: &HeaderMap) -> bool {
    let Some(cluster) = app.cluster.as_deref() else { return false };
    if headers.get(HOP_HEADER).is_none() {
        return false;
    }
    let Some(auth) = headers.get(AUTH_HEADER).and_then(|v| v.to_str().ok()) else { return false };
    let pq = uri.path_and_query().map_or_else(|| uri.path(), |pq| pq.as_str());
    let ok = verify(&cluster.secret, cluster.cfg.auth_skew_secs, auth, method.as_str(), host, pq, now_secs());
    if !ok {
        tracing::warn!("a request carried a cluster hop header with a bad or expired signature; treated as a client's");
    }
    ok
}

/// The miss-path hook ([`crate::fill`]): the owner's answer for `req` when another
/// node owns `key` and answered 200 in time, as an entry for this node's hot copy
/// (TTL at most `hot_copy_ttl_secs`). None: fill locally.
pub async fn from_owner(app: &Arc<App>, req: &ObjectRequest, key: &CacheKey, deadline: Instant) -> Option<Entry> {
    let cluster = app.cluster.as_deref()?;
    // Forwards go one hop; ranges are served from the local fill path (they may stream).
    if req.hop || req.range.is_some() {
        return None;
    }
    let owner = cluster.remote_owner(&key.hash)?;
    let bound = deadline.min(Instant::now() + Duration::from_millis(cluster.cfg.forward_timeout_ms));
    let started = Instant::now();
    let got = tokio::time::timeout_at(bound.into(), fetch(app, cluster, &owner.url, req, key)).await;
    match got {
        Ok(Ok(entry)) => {
            tracing::debug!(owner = %owner.id, took = ?started.elapsed(), "miss answered by its owner");
            app.stats.cluster_forward(true);
            Some(entry)
        }
        Ok(Err(why)) => {
            tracing::info!(owner = %owner.id, why, "forward to the owner failed; filling locally");
            app.stats.cluster_forward(false);
            None
        }
        Err(_) => {
            tracing::info!(owner = %owner.id, "owner too slow; filling locally");
            app.stats.cluster_forward(false);
            None
        }
    }
}

async fn fetch(app: &App, cluster: &Cluster, base: &str, req: &ObjectRequest, key: &CacheKey) -> Result<Entry, String> {
    let url = format!("{base}{}", req.uri);
    let auth = sign(&cluster.secret, &cluster.node_id, &req.host, &req.uri, now_secs());
    let mut builder =
        http::Request::get(&url).header(header::HOST, &req.host).header(HOP_HEADER, "1").header(AUTH_HEADER, auth);
    if let Some(accept) = &req.accept {
        builder = builder.header(header::ACCEPT, accept);
    }
    let request = builder.body(Empty::new()).map_err(|e| format!("bad forward request: {e}"))?;
    let response = cluster.client.request(request).await.map_err(|e| format!("{e}"))?;
    if response.status() != StatusCode::OK {
        return Err(format!("owner answered {}", response.status()));
    }
    let (head, body) = response.into_parts();
    let text = |name: header::HeaderName| head.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if head.headers.contains_key(header::CONTENT_ENCODING) {
        return Err("owner sent a coded body".into());
    }
    let limit = usize::try_from(app.config.cache.max_object_size).unwrap_or(usize::MAX);
    let body = Limited::new(body, limit).collect().await.map_err(|e| format!("owner body: {e}"))?.to_bytes();
    let owner_ttl = text(header::HeaderName::from_static("x-swift-cachetime")).and_then(|v| v.parse::<u64>().ok());
    let hot = cluster.cfg.hot_copy_ttl_secs;
    let ttl = Duration::from_secs(owner_ttl.map_or(hot, |t| t.min(hot)));
    let last_modified = text(header::LAST_MODIFIED).and_then(|v| httpdate::parse_http_date(&v).ok());
    Ok(Entry::new(
        key.clone(),
        StatusCode::OK,
        body,
        text(header::CONTENT_TYPE).unwrap_or_else(|| "application/octet-stream".into()),
        text(header::ETAG),
        last_modified,
        None,
        ttl,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_method_host_uri_time_and_node() {
        let s = b"0123456789abcdef";
        let v = sign(s, "n1", "h.example", "/a.jpg?x-oss-process=image/resize,w_10", 1000);
        assert!(verify(s, 30, &v, "GET", "h.example", "/a.jpg?x-oss-process=image/resize,w_10", 1010));
        assert!(!verify(s, 30, &v, "GET", "h.example", "/a.jpg?x-oss-process=image/resize,w_11", 1010));
        assert!(!verify(s, 30, &v, "GET", "other", "/a.jpg?x-oss-process=image/resize,w_10", 1010));
        assert!(!verify(s, 30, &v, "HEAD", "h.example", "/a.jpg?x-oss-process=image/resize,w_10", 1010));
        assert!(!verify(s, 30, &v, "GET", "h.example", "/a.jpg?x-oss-process=image/resize,w_10", 1031), "expired");
        assert!(!verify(
            b"another secret!!",
            30,
            &v,
            "GET",
            "h.example",
            "/a.jpg?x-oss-process=image/resize,w_10",
            1010
        ));
        let forged = v.replacen("n1", "n2", 1);
        assert!(!verify(s, 30, &forged, "GET", "h.example", "/a.jpg?x-oss-process=image/resize,w_10", 1010));
        assert!(!verify(s, 30, "garbage", "GET", "h", "/", 0));
    }
}
