//! Mock origins on `127.0.0.1:0` for integration tests.
//!
//! * [`MockOss`]: an OSS-like bucket served from an in-memory map. It verifies OSS V1
//!   and V4 `Authorization` headers as OSS does (403 `SignatureDoesNotMatch` /
//!   `InvalidAccessKeyId` / `RequestTimeTooSkewed` XML bodies, `AccessDenied` without a
//!   signature on a private bucket), answers conditional GETs, single ranges (with
//!   `x-oss-range-behavior: standard` semantics) and HEAD, and counts requests.
//!   Verification recomputes the signature from what arrived on the wire (Host, raw
//!   path, headers) with the crate's pure signers, which the vectors pin down; so it
//!   checks that the origin client put the right parts on the wire.
//! * [`FaultOrigin`]: a raw HTTP/1.1 server that plays a script of faults, one per
//!   request (delay, status, connection reset, slow body), then serves the object.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use imgedge::origin::sign::{self, Credentials, SignInput};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One stored object.
#[derive(Clone, Debug)]
pub struct MockObject {
    /// The bytes.
    pub body: Bytes,
    /// Quoted ETag.
    pub etag: String,
    /// Content-Type.
    pub content_type: String,
    /// Last-Modified.
    pub last_modified: SystemTime,
    /// Archived and not restored: GET gives 403 InvalidObjectState.
    pub archived: bool,
    /// `Cache-Control` the origin sends, if any.
    pub cache_control: Option<String>,
}

impl MockObject {
    /// An object with an ETag derived from its content.
    pub fn new(body: impl Into<Bytes>, content_type: &str) -> Self {
        let body = body.into();
        let etag = format!("\"{:016X}\"", xxhash(&body));
        MockObject {
            body,
            etag,
            content_type: content_type.to_owned(),
            last_modified: UNIX_EPOCH + Duration::from_secs(1_714_979_289),
            archived: false,
            cache_control: None,
        }
    }
}

fn xxhash(b: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// What the mock saw of one request.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    /// Method.
    pub method: String,
    /// Raw path and query.
    pub uri: String,
    /// Lower-case header names and values.
    pub headers: Vec<(String, String)>,
}

impl SeenRequest {
    /// A header value by (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

struct OssState {
    bucket: String,
    region: String,
    keys: Vec<Credentials>,
    public: bool,
    objects: Mutex<HashMap<String, MockObject>>,
    requests: AtomicUsize,
    seen: Mutex<Vec<SeenRequest>>,
}

/// An OSS-like mock bucket.
#[derive(Clone)]
pub struct MockOss {
    state: Arc<OssState>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl MockOss {
    /// Starts a private bucket that accepts the given keys (an STS key's token must
    /// be sent and is signed).
    pub async fn start(bucket: &str, region: &str, keys: Vec<Credentials>) -> MockOss {
        Self::start_with(bucket, region, keys, false).await
    }

    /// Like [`MockOss::start`]; `public` also admits unsigned requests.
    pub async fn start_with(bucket: &str, region: &str, keys: Vec<Credentials>, public: bool) -> MockOss {
        let state = Arc::new(OssState {
            bucket: bucket.to_owned(),
            region: region.to_owned(),
            keys,
            public,
            objects: Mutex::new(HashMap::new()),
            requests: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle_oss(&st, req)) }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        MockOss { state, addr }
    }

    /// Stores an object.
    pub fn put(&self, key: &str, obj: MockObject) {
        self.state.objects.lock().unwrap().insert(key.to_owned(), obj);
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The requests seen so far.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.state.seen.lock().unwrap().clone()
    }

    /// `http://127.0.0.1:port`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn xml_error(status: StatusCode, code: &str, extra: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n  <Code>{code}</Code>\n  <Message>mock says {code}</Message>\n  <RequestId>MOCKREQUESTID</RequestId>\n  <HostId>mock</HostId>{extra}\n</Error>\n"
    );
    use base64::Engine as _;
    // HEAD answers lose the body; OSS repeats the XML, base64, in `x-oss-err`.
    let err_header = base64::engine::general_purpose::STANDARD.encode(&body);
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .header("x-oss-request-id", "MOCKREQUESTID")
        .header("x-oss-err", err_header)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn handle_oss(st: &OssState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    st.requests.fetch_add(1, Ordering::SeqCst);
    let headers: Vec<(String, String)> =
        req.headers().iter().map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect();
    let seen = SeenRequest { method: req.method().to_string(), uri: req.uri().to_string(), headers };
    st.seen.lock().unwrap().push(seen.clone());

    // Addressing: virtual (<bucket>.host), path (/<bucket>/key) or cname (/key).
    let host = seen.header("host").unwrap_or("").to_owned();
    let raw_path = req.uri().path();
    let vhost = host.starts_with(&format!("{}.", st.bucket));
    let raw_key = match raw_path.strip_prefix(&format!("/{}/", st.bucket)) {
        Some(k) if !vhost => k,
        _ => raw_path.trim_start_matches('/'),
    };
    let Ok(key) = percent_encoding::percent_decode_str(raw_key).decode_utf8() else {
        return xml_error(StatusCode::BAD_REQUEST, "InvalidObjectName", "");
    };
    let key = key.into_owned();
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
            (dec(k), dec(v))
        })
        .collect();

    if let Err(resp) = verify(st, &seen, &key, &query) {
        return resp;
    }
    let Some(obj) = st.objects.lock().unwrap().get(&key).cloned() else {
        return xml_error(StatusCode::NOT_FOUND, "NoSuchKey", "");
    };
    if obj.archived {
        return xml_error(StatusCode::FORBIDDEN, "InvalidObjectState", "");
    }
    let base = |status: StatusCode| {
        let b = Response::builder()
            .status(status)
            .header("etag", &obj.etag)
            .header("last-modified", httpdate::fmt_http_date(obj.last_modified))
            .header("x-oss-request-id", "MOCKREQUESTID")
            .header("accept-ranges", "bytes");
        match &obj.cache_control {
            Some(cc) => b.header("cache-control", cc),
            None => b,
        }
    };
    if let Some(inm) = seen.header("if-none-match") {
        if inm.split(',').any(|t| t.trim() == obj.etag) {
            return base(StatusCode::NOT_MODIFIED).body(Full::new(Bytes::new())).unwrap();
        }
    } else if let Some(ims) = seen.header("if-modified-since").and_then(|v| httpdate::parse_http_date(v).ok()) {
        if obj.last_modified <= ims {
            return base(StatusCode::NOT_MODIFIED).body(Full::new(Bytes::new())).unwrap();
        }
    }
    if let Some(im) = seen.header("if-match") {
        if im.trim() != obj.etag {
            return xml_error(StatusCode::PRECONDITION_FAILED, "PreconditionFailed", "");
        }
    }
    let len = obj.body.len() as u64;
    let head = seen.method == "HEAD";
    if let Some(range) = seen.header("range").and_then(|r| r.strip_prefix("bytes=")) {
        let standard = seen.header("x-oss-range-behavior") == Some("standard");
        let (a, b) = range.split_once('-').unwrap_or(("", ""));
        let span = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
            (Some(a), Some(b)) if a <= b => Some((a, b.min(len.saturating_sub(1)))),
            (Some(a), None) => Some((a, len.saturating_sub(1))),
            (None, Some(n)) if n > 0 => Some((len.saturating_sub(n), len.saturating_sub(1))),
            _ => None,
        };
        match span {
            Some((a, b)) if a < len => {
                let body = if head { Bytes::new() } else { obj.body.slice(a as usize..=b as usize) };
                return base(StatusCode::PARTIAL_CONTENT)
                    .header("content-type", &obj.content_type)
                    .header("content-range", format!("bytes {a}-{b}/{len}"))
                    .header("content-length", b - a + 1)
                    .body(Full::new(body))
                    .unwrap();
            }
            _ if standard => return xml_error(StatusCode::RANGE_NOT_SATISFIABLE, "InvalidRange", ""),
            _ => {} // legacy behaviour: ignore the range
        }
    }
    let body = if head { Bytes::new() } else { obj.body.clone() };
    base(StatusCode::OK)
        .header("content-type", &obj.content_type)
        .header("content-length", len)
        .body(Full::new(body))
        .unwrap()
}

/// Checks the request's signature like OSS; Err is the 403 to send.
fn verify(
    st: &OssState,
    seen: &SeenRequest,
    key: &str,
    query: &[(String, String)],
) -> Result<(), Response<Full<Bytes>>> {
    let Some(auth) = seen.header("authorization") else {
        return if st.public { Ok(()) } else { Err(xml_error(StatusCode::FORBIDDEN, "AccessDenied", "")) };
    };
    // Headers as the client set them, minus what the signer adds itself.
    let signer_added = ["authorization", "date", "x-oss-date", "x-oss-content-sha256", "x-oss-security-token"];
    let caller: Vec<(String, String)> =
        seen.headers.iter().filter(|(n, _)| !signer_added.contains(&n.as_str())).cloned().collect();
    let input = SignInput { method: &seen.method, bucket: &st.bucket, key, query, headers: &caller };
    let lookup = |id: &str| st.keys.iter().find(|k| k.access_key_id == id);
    let skewed = |t: SystemTime| {
        let now = SystemTime::now();
        let d = now.duration_since(t).unwrap_or_else(|e| e.duration());
        d > Duration::from_secs(15 * 60)
    };
    let (expected, provided) = if let Some(rest) = auth.strip_prefix("OSS ") {
        let (id, _) = rest.split_once(':').unwrap_or((rest, ""));
        let Some(creds) = lookup(id) else {
            return Err(xml_error(StatusCode::FORBIDDEN, "InvalidAccessKeyId", ""));
        };
        let Some(date) = seen.header("date").and_then(|d| httpdate::parse_http_date(d).ok()) else {
            return Err(xml_error(StatusCode::FORBIDDEN, "AccessDenied", ""));
        };
        if skewed(date) {
            return Err(xml_error(StatusCode::FORBIDDEN, "RequestTimeTooSkewed", ""));
        }
        (sign::oss_v1_header(&input, creds, date), auth)
    } else if let Some(rest) = auth.strip_prefix("OSS4-HMAC-SHA256 ") {
        let field = |name: &str| {
            rest.split(',').map(str::trim).find_map(|f| f.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        };
        let credential = field("Credential").unwrap_or("");
        let mut parts = credential.split('/');
        let id = parts.next().unwrap_or("");
        let region = parts.nth(1).unwrap_or("");
        let Some(creds) = lookup(id) else {
            return Err(xml_error(StatusCode::FORBIDDEN, "InvalidAccessKeyId", ""));
        };
        if region != st.region {
            return Err(xml_error(StatusCode::FORBIDDEN, "SignatureDoesNotMatch", "<Reason>region</Reason>"));
        }
        let Some(date) = seen.header("x-oss-date").and_then(parse_iso_basic) else {
            return Err(xml_error(StatusCode::FORBIDDEN, "AccessDenied", ""));
        };
        if skewed(date) {
            return Err(xml_error(StatusCode::FORBIDDEN, "RequestTimeTooSkewed", ""));
        }
        let additional: Vec<&str> = field("AdditionalHeaders").map(|v| v.split(';').collect()).unwrap_or_default();
        // The token the client sent must be the one issued with this key.
        if seen.header("x-oss-security-token") != creds.security_token.as_deref() {
            return Err(xml_error(StatusCode::FORBIDDEN, "InvalidSecurityToken", ""));
        }
        (sign::oss_v4_header(&input, creds, &st.region, date, &additional), auth)
    } else {
        return Err(xml_error(StatusCode::BAD_REQUEST, "InvalidArgument", ""));
    };
    if expected.authorization == provided {
        Ok(())
    } else {
        // Like OSS, include the server's StringToSign (something the client must
        // never leak to its own clients).
        let extra = format!("\n  <StringToSign>{}</StringToSign>", expected.string_to_sign);
        Err(xml_error(StatusCode::FORBIDDEN, "SignatureDoesNotMatch", &extra))
    }
}

/// `20240506T070809Z` → time.
pub fn parse_iso_basic(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(9..11)?, n(11..13)?, n(13..15)?);
    // Days from civil (H. Hinnant).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

// ---------------------------------------------------------------------------
// Fault-injecting origin
// ---------------------------------------------------------------------------

/// What to do with one request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Serve the object normally.
    Ok,
    /// Wait this long before answering (then serve normally).
    Delay(Duration),
    /// Answer with this status and a short body.
    Status(u16),
    /// Read the request, then reset the connection without answering.
    Reset,
    /// Serve normally with these extra header lines (each ending in `\r\n`).
    Headers(&'static str),
    /// Write this raw HTTP response instead of the object.
    Raw(String),
    /// Wait this long, then write this raw HTTP response (a slow 304, say).
    SlowRaw(Duration, String),
    /// Send the headers, then the body in `chunks` pieces with `pause` between them.
    SlowBody {
        /// Pause between pieces.
        pause: Duration,
        /// Number of pieces.
        chunks: usize,
    },
    /// Send a chunked body (no Content-Length) of `total` bytes, generated lazily in
    /// 64 KiB chunks, counting in `sent` the bytes the socket accepted; stops when the
    /// peer goes away.
    Chunked {
        /// Body length.
        total: u64,
        /// Bytes written so far.
        sent: Arc<AtomicU64>,
    },
}

/// A raw HTTP/1.1 origin that plays `script` (one fault per request, then `Ok`).
#[derive(Clone)]
pub struct FaultOrigin {
    script: Arc<Mutex<VecDeque<Fault>>>,
    requests: Arc<AtomicUsize>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl FaultOrigin {
    /// Starts the origin; every path serves `body` (with ETag `"fault-etag"`).
    pub async fn start(body: impl Into<Bytes>, script: Vec<Fault>) -> FaultOrigin {
        let body: Bytes = body.into();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let requests = Arc::new(AtomicUsize::new(0));
        let (sc, rq) = (script.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { continue };
                let (sc, rq, body) = (sc.clone(), rq.clone(), body.clone());
                tokio::spawn(async move {
                    // One request per connection (answers carry Connection: close).
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    rq.fetch_add(1, Ordering::SeqCst);
                    let head_only = buf.starts_with(b"HEAD ");
                    let fault = sc.lock().unwrap().pop_front().unwrap_or(Fault::Ok);
                    let ok_head = |len: usize| {
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {len}\r\netag: \"fault-etag\"\r\nconnection: close\r\n\r\n"
                        )
                    };
                    match fault {
                        Fault::Reset => {
                            // SO_LINGER 0: close() sends RST instead of FIN.
                            #[allow(deprecated)]
                            let _ = stream.set_linger(Some(Duration::ZERO));
                            drop(stream);
                            return;
                        }
                        Fault::Status(code) => {
                            let msg = format!(
                                "HTTP/1.1 {code} Injected\r\ncontent-length: 8\r\nconnection: close\r\n\r\ninjected"
                            );
                            let _ = stream.write_all(msg.as_bytes()).await;
                        }
                        Fault::Delay(d) => {
                            tokio::time::sleep(d).await;
                            let _ = stream.write_all(ok_head(body.len()).as_bytes()).await;
                            if !head_only {
                                let _ = stream.write_all(&body).await;
                            }
                        }
                        Fault::SlowBody { pause, chunks } => {
                            let _ = stream.write_all(ok_head(body.len()).as_bytes()).await;
                            let step = body.len().div_ceil(chunks.max(1)).max(1);
                            for piece in body.chunks(step) {
                                tokio::time::sleep(pause).await;
                                if stream.write_all(piece).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Fault::Chunked { total, sent } => {
                            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
                            if stream.write_all(head.as_bytes()).await.is_err() {
                                return;
                            }
                            let piece = vec![0x5au8; 64 * 1024];
                            let mut framed = format!("{:x}\r\n", piece.len()).into_bytes();
                            framed.extend_from_slice(&piece);
                            framed.extend_from_slice(b"\r\n");
                            let mut left = total;
                            while left >= piece.len() as u64 {
                                if stream.write_all(&framed).await.is_err() {
                                    return;
                                }
                                sent.fetch_add(piece.len() as u64, Ordering::SeqCst);
                                left -= piece.len() as u64;
                            }
                            let _ = stream.write_all(b"0\r\n\r\n").await;
                        }
                        Fault::Raw(text) => {
                            let _ = stream.write_all(text.as_bytes()).await;
                        }
                        Fault::SlowRaw(pause, text) => {
                            tokio::time::sleep(pause).await;
                            let _ = stream.write_all(text.as_bytes()).await;
                        }
                        Fault::Headers(extra) => {
                            let head = ok_head(body.len())
                                .replace("connection: close\r\n", &format!("{extra}connection: close\r\n"));
                            let _ = stream.write_all(head.as_bytes()).await;
                            if !head_only {
                                let _ = stream.write_all(&body).await;
                            }
                        }
                        Fault::Ok => {
                            let _ = stream.write_all(ok_head(body.len()).as_bytes()).await;
                            if !head_only {
                                let _ = stream.write_all(&body).await;
                            }
                        }
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        FaultOrigin { script, requests, addr }
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Faults not yet played.
    pub fn remaining(&self) -> usize {
        self.script.lock().unwrap().len()
    }
}
