//! Issue 19: HTTPS at the edge. The real binary with `--tls-listen`: certificates by
//! SNI (ECDSA and RSA), ALPN h2/http1.1, TLS 1.2 and 1.3 only, the unknown-SNI policy,
//! rotation on SIGHUP under load, ACME against Debian's pebble (a real tls-alpn-01
//! challenge), per-site redirect and HSTS, the scheme in the access log, one cache
//! entry for both schemes, and real clients (curl, Python `ssl`, headless Chromium).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::binary::signal;
use rustls::pki_types::{CertificateDer, ServerName};

/// A test CA and the certificates it signs (ECDSA P-256 unless an RSA key is given).
pub(crate) struct Pki {
    pub dir: tempfile::TempDir,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, "imgedge test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), issuer.pem()).unwrap();
        Pki { dir, issuer }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Writes `<stem>.crt` and `<stem>.key` for `names`; returns their paths.
    pub fn leaf(&self, stem: &str, names: &[&str], rsa: bool) -> (PathBuf, PathBuf) {
        let key = if rsa {
            let pem =
                std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls/rsa.key")).unwrap();
            rcgen::KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap()
        } else {
            rcgen::KeyPair::generate().unwrap()
        };
        let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (self.dir.path().join(format!("{stem}.crt")), self.dir.path().join(format!("{stem}.key")));
        replace(&c, cert.pem().as_bytes());
        replace(&k, key.serialize_pem().as_bytes());
        (c, k)
    }
}

/// Replaces a file in one step.
fn replace(path: &Path, data: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The binary with extra flags; returns the child, the plain, admin and TLS addresses
/// (from the "imgedge serving" line) and the rest of its log.
pub(crate) fn spawn(args: &[&str]) -> (Child, String, String, String, Receiver<String>) {
    let (child, serving, rx) = crate::binary::spawn_serving(crate::binary::imgedge(), args, &[]);
    (child, serving.field("listen"), serving.field("admin"), serving.field("tls"), rx)
}

/// Log lines up to and including the first that contains `needle` (60 s at most).
pub(crate) fn lines_until(rx: &Receiver<String>, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no log line with {needle:?}; saw {seen:#?}"));
        let done = line.contains(needle);
        seen.push(line);
        if done {
            return seen;
        }
    }
}

/// Accepts any server certificate (the test compares the leaf it got instead).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client connection after the handshake.
pub(crate) struct Tls {
    pub stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    /// SHA-256 of the leaf certificate the server sent.
    pub leaf: String,
    pub alpn: Option<String>,
    pub version: Option<rustls::ProtocolVersion>,
}

#[derive(Clone, Copy)]
pub(crate) enum Trust<'a> {
    Ca(&'a Path),
    Any,
}

/// Connects and completes the handshake with SNI `sni`, offering `alpn` and `versions`.
pub(crate) fn connect(
    addr: &str,
    sni: &str,
    trust: Trust<'_>,
    alpn: &[&str],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Tls, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ClientConfig::builder_with_provider(Arc::clone(&provider)).with_protocol_versions(versions).unwrap();
    let mut config = match trust {
        Trust::Ca(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls::pki_types::pem::PemObject::pem_file_iter(ca).unwrap() {
                roots.add(c.unwrap()).unwrap();
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Any => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCert(provider))).with_no_client_auth()
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    let leaf = conn.peer_certificates().and_then(|c| c.first()).map(|c| fingerprint(c.as_ref())).unwrap_or_default();
    let alpn = conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
    let version = conn.protocol_version();
    Ok(Tls { stream: rustls::StreamOwned::new(conn, tcp), leaf, alpn, version })
}

pub(crate) fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(der))
}

/// SHA-256 of the first certificate in a PEM file.
pub(crate) fn pem_fingerprint(path: &Path) -> String {
    let c: CertificateDer<'static> = rustls::pki_types::pem::PemObject::from_pem_file(path).unwrap();
    fingerprint(c.as_ref())
}

impl Tls {
    /// One HTTP/1.1 request on this connection (kept alive): status line, headers
    /// (lower-case names) and body.
    pub fn get(&mut self, host: &str, pq: &str) -> (String, Vec<(String, String)>, Vec<u8>) {
        write!(self.stream, "GET {pq} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
        self.stream.flush().unwrap();
        read_response(&mut self.stream)
    }
}

fn read_response(stream: &mut impl Read) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len = headers.iter().find(|(n, _)| n == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    (status, headers, body)
}

pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn plain_get(addr: &str, host: &str, pq: &str) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {pq} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    read_response(&mut s)
}

const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
const BOTH: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

fn site_config(pki: &Pki, extra: &str) -> PathBuf {
    let (ac, ak) = pki.leaf("a", &["a.test"], false);
    let (rc, rk) = pki.leaf("r", &["rsa.test"], true);
    let text = format!(
        "[[sites]]\nhosts = [\"a.test\"]\ntls_cert = {ac:?}\ntls_key = {ak:?}\n\n\
         [[sites]]\nhosts = [\"rsa.test\"]\ntls_cert = {rc:?}\ntls_key = {rk:?}\n\n{extra}"
    );
    let path = pki.dir.path().join("imgedge.toml");
    replace(&path, text.as_bytes());
    path
}

/// (1) Certificates by SNI (ECDSA and RSA), the default for unknown names, ALPN h2
/// first, TLS 1.2 and 1.3, requests answered over TLS beside the plain listener.
#[test]
fn https_picks_the_certificate_by_sni_and_speaks_h2_and_http1_over_tls12_and_13() {
    let pki = Pki::new();
    let (dc, dk) = pki.leaf("default", &["default.test"], false);
    let extra = "[[sites]]\nhosts = [\"*\"]\n";
    let cfg = site_config(&pki, extra);
    let (mut child, plain, _admin, tls, _rx) = spawn(&[
        "--config",
        cfg.to_str().unwrap(),
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        dc.to_str().unwrap(),
        "--tls-key",
        dk.to_str().unwrap(),
    ]);
    let ca = pki.ca();
    let a = connect(&tls, "a.test", Trust::Ca(&ca), &["h2", "http/1.1"], TLS13).unwrap();
    assert_eq!(a.leaf, pem_fingerprint(&pki.dir.path().join("a.crt")));
    assert_eq!(a.alpn.as_deref(), Some("h2"));
    assert_eq!(a.version, Some(rustls::ProtocolVersion::TLSv1_3));
    drop(a);
    let mut a = connect(&tls, "a.test", Trust::Ca(&ca), &["http/1.1"], TLS12).unwrap();
    assert_eq!(a.alpn.as_deref(), Some("http/1.1"));
    assert_eq!(a.version, Some(rustls::ProtocolVersion::TLSv1_2));
    let (status, _, body) = a.get("a.test", "/hello.txt");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let (status2, _, body2) = a.get("a.test", "/hello.txt");
    assert!(status2.starts_with("HTTP/1.1 200"), "kept alive: {status2}");
    assert_eq!(body, body2);

    let r = connect(&tls, "rsa.test", Trust::Ca(&ca), &["http/1.1"], BOTH).unwrap();
    assert_eq!(r.leaf, pem_fingerprint(&pki.dir.path().join("r.crt")), "the RSA site certificate");
    let r12 = connect(&tls, "rsa.test", Trust::Ca(&ca), &[], TLS12).unwrap();
    assert_eq!(r12.leaf, r.leaf);
    let other = connect(&tls, "unknown.test", Trust::Any, &[], BOTH).unwrap();
    assert_eq!(other.leaf, pem_fingerprint(&dc), "an unknown name gets the default certificate");

    // TLS 1.1 and below are not offered: a raw TLS 1.1 ClientHello gets an alert.
    let mut raw = TcpStream::connect(&tls).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(&tls11_client_hello()).unwrap();
    let mut reply = [0u8; 2];
    raw.read_exact(&mut reply).unwrap();
    assert_eq!(reply[0], 0x15, "an alert record, not a ServerHello");

    let (status, _, plain_body) = plain_get(&plain, "a.test", "/hello.txt");
    assert!(status.starts_with("HTTP/1.1 200"), "the plain listener serves alongside: {status}");
    assert_eq!(plain_body, body);
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
}

/// A minimal TLS 1.1 ClientHello (record 3.2, one cipher suite, no extensions).
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend([7u8; 32]); // random
    body.push(0); // session id
    body.extend([0x00, 0x02, 0x00, 0x2f]); // TLS_RSA_WITH_AES_128_CBC_SHA
    body.extend([0x01, 0x00]); // null compression
    let mut hs = vec![0x01, 0, 0, body.len() as u8];
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x02, 0, hs.len() as u8];
    rec.extend(hs);
    rec
}

/// (1) `unknown_sni = "reject"`: a name without a certificate fails the handshake;
/// `--tls-only` turns the plain listener off.
#[test]
fn unknown_sni_can_be_refused_and_https_can_be_the_only_listener() {
    let pki = Pki::new();
    let (dc, dk) = pki.leaf("default", &["default.test"], false);
    let cfg = site_config(&pki, &format!("[tls]\nunknown_sni = \"reject\"\ncert = {dc:?}\nkey = {dk:?}\n"));
    let (mut child, plain, _admin, tls, _rx) =
        spawn(&["--config", cfg.to_str().unwrap(), "--tls-listen", "127.0.0.1:0", "--tls-only"]);
    assert_eq!(plain, "-", "no plain listener");
    assert!(connect(&tls, "a.test", Trust::Ca(&pki.ca()), &[], BOTH).is_ok());
    let refused = connect(&tls, "unknown.test", Trust::Any, &[], BOTH);
    assert!(refused.is_err(), "an unknown name must fail the handshake");
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
}

/// (2) New certificate files and SIGHUP: new handshakes get the new certificate while
/// a loop of requests on new and kept-alive connections sees no failure, a connection
/// opened before keeps serving; a broken certificate is refused with one line and the
/// running one stays.
#[test]
fn certificates_rotate_on_sighup_under_load_and_a_broken_one_is_refused() {
    let pki = Pki::new();
    let cfg = site_config(&pki, "");
    let (mut child, _plain, _admin, tls, rx) =
        spawn(&["--config", cfg.to_str().unwrap(), "--tls-listen", "127.0.0.1:0"]);
    let ca = pki.ca();
    let first = pem_fingerprint(&pki.dir.path().join("a.crt"));
    let mut kept = connect(&tls, "a.test", Trust::Ca(&ca), &["http/1.1"], BOTH).unwrap();
    assert_eq!(kept.leaf, first);
    assert!(kept.get("a.test", "/hello.txt").0.starts_with("HTTP/1.1 200"));

    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, progress, tls, ca) = (Arc::clone(&stop), Arc::clone(&progress), tls.clone(), ca.clone());
        std::thread::spawn(move || {
            let (mut sent, mut failed, mut seen) = (0usize, Vec::new(), std::collections::HashSet::new());
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut conn: Option<Tls> = None;
            while !stop.load(Ordering::Relaxed) && sent < 5_000 && Instant::now() < deadline {
                // Every fifth request on a new connection (a new handshake), the rest kept alive.
                if sent % 5 == 0 {
                    conn = None;
                }
                let c = match &mut conn {
                    Some(c) => c,
                    None => match connect(&tls, "a.test", Trust::Ca(&ca), &["http/1.1"], BOTH) {
                        Ok(c) => {
                            seen.insert(c.leaf.clone());
                            conn.insert(c)
                        }
                        Err(e) => {
                            failed.push(format!("handshake: {e}"));
                            sent += 1;
                            continue;
                        }
                    },
                };
                let (status, _, _) = c.get("a.test", "/hello.txt");
                if !status.starts_with("HTTP/1.1 200") {
                    failed.push(status);
                }
                sent += 1;
                progress.store(sent, Ordering::Relaxed);
            }
            (sent, failed, seen)
        })
    };
    let wait_progress = |n: usize| {
        let (before, t) = (progress.load(Ordering::Relaxed), Instant::now());
        while progress.load(Ordering::Relaxed) < before + n && t.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_progress(50);
    pki.leaf("a", &["a.test"], false); // new key and certificate, same files
    let second = pem_fingerprint(&pki.dir.path().join("a.crt"));
    assert_ne!(first, second);
    signal(&child, "-HUP");
    lines_until(&rx, "TLS certificates reloaded");
    wait_progress(50);
    stop.store(true, Ordering::Relaxed);
    let (sent, failed, seen) = load.join().unwrap();
    assert!(sent >= 100, "only {sent} requests");
    assert!(failed.is_empty(), "{} of {sent} failed: {failed:?}", failed.len());
    assert!(seen.contains(&first) && seen.contains(&second), "handshakes saw both certificates");
    assert_eq!(connect(&tls, "a.test", Trust::Ca(&ca), &[], BOTH).unwrap().leaf, second);
    assert!(kept.get("a.test", "/hello.txt").0.starts_with("HTTP/1.1 200"), "the open connection is untouched");

    // A broken certificate (truncated PEM) is refused; the running one stays.
    replace(&pki.dir.path().join("a.crt"), b"-----BEGIN CERTIFICATE-----\nMIIB\n");
    signal(&child, "-HUP");
    let lines = lines_until(&rx, "TLS certificates not reloaded");
    let line = lines.last().unwrap();
    assert!(line.contains("a.crt"), "names the file: {line}");
    assert!(!line.contains("PRIVATE KEY"), "{line}");
    assert_eq!(connect(&tls, "a.test", Trust::Ca(&ca), &[], BOTH).unwrap().leaf, second);
    // A key that does not match its certificate is refused too.
    let (_, other_key) = pki.leaf("b", &["a.test"], false);
    pki.leaf("a", &["a.test"], false);
    std::fs::copy(other_key, pki.dir.path().join("a.key")).unwrap();
    signal(&child, "-HUP");
    let lines = lines_until(&rx, "TLS certificates not reloaded");
    assert!(lines.last().unwrap().contains("does not match"), "{lines:?}");
    assert_eq!(connect(&tls, "a.test", Trust::Ca(&ca), &[], BOTH).unwrap().leaf, second);
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
}

/// (4) Per-site force redirect (308 keeps the path and query, names the HTTPS port),
/// HSTS on HTTPS answers only, the scheme in the access log, and one cache entry for
/// both schemes by default.
#[test]
fn redirect_hsts_log_scheme_and_one_cache_entry_for_both_schemes() {
    let pki = Pki::new();
    let (sc, sk) = pki.leaf("s", &["s.test"], false);
    let extra = format!(
        "[[sites]]\nhosts = [\"s.test\"]\ntls_cert = {sc:?}\ntls_key = {sk:?}\nhttps_redirect = 308\n\
         hsts_max_age = 600\nhsts_include_subdomains = true\n"
    );
    let cfg = site_config(&pki, &extra);
    let (mut child, plain, _admin, tls, rx) =
        spawn(&["--config", cfg.to_str().unwrap(), "--tls-listen", "127.0.0.1:0"]);
    let tls_port = tls.rsplit(':').next().unwrap();
    let pq = "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,w_40";
    let (status, headers, _) = plain_get(&plain, "s.test", pq);
    assert!(status.starts_with("HTTP/1.1 308"), "{status}");
    assert_eq!(header(&headers, "location"), Some(format!("https://s.test:{tls_port}{pq}").as_str()));
    assert_eq!(header(&headers, "strict-transport-security"), None);
    let ca = pki.ca();
    let mut s = connect(&tls, "s.test", Trust::Ca(&ca), &["http/1.1"], BOTH).unwrap();
    let (status, headers, _) = s.get("s.test", pq);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(header(&headers, "strict-transport-security"), Some("max-age=600; includeSubDomains"));

    // a.test: no redirect, no HSTS; HTTP then HTTPS share one cache entry.
    let (status, headers, body) = plain_get(&plain, "a.test", pq);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(header(&headers, "x-cache").unwrap_or("").starts_with("MISS"), "{headers:?}");
    let mut a = connect(&tls, "a.test", Trust::Ca(&ca), &["http/1.1"], BOTH).unwrap();
    let (status, headers2, body2) = a.get("a.test", pq);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(header(&headers2, "x-cache").unwrap_or("").starts_with("HIT"), "HTTPS hits HTTP's entry: {headers2:?}");
    assert_eq!(body, body2);
    assert_eq!(header(&headers2, "strict-transport-security"), None);
    let lines = lines_until(&rx, "scheme=https");
    assert!(lines
        .iter()
        .any(|l| l.contains("\"GET /giunchedi") && l.contains("scheme=http") && !l.contains("scheme=https")));
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
}

/// (5) curl with the test CA over HTTP/2 and HTTP/1.1, and Python's `ssl`.
#[test]
fn curl_and_python_ssl_fetch_over_https() {
    let pki = Pki::new();
    let cfg = site_config(&pki, "");
    let (mut child, _plain, _admin, tls, _rx) =
        spawn(&["--config", cfg.to_str().unwrap(), "--tls-listen", "127.0.0.1:0"]);
    let port = tls.rsplit(':').next().unwrap().to_owned();
    let ca = pki.ca();
    for (flag, want) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", flag, "--cacert"])
            .arg(&ca)
            .args(["--resolve", &format!("a.test:{port}:127.0.0.1")])
            .arg(format!("https://a.test:{port}/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,w_50"))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text, format!("200 {want}"), "curl {flag}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let script = r#"
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["http/1.1"])
with socket.create_connection(("127.0.0.1", port)) as raw:
    with ctx.wrap_socket(raw, server_hostname="a.test") as s:
        s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        print(s.version(), s.selected_alpn_protocol(), data.split(b"\r\n")[0].decode())
"#;
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let python = if python.exists() { python } else { PathBuf::from("python3") };
    let out = Command::new(python).arg("-c").arg(script).arg(&port).arg(&ca).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), "TLSv1.3 http/1.1 HTTP/1.1 200 OK", "{}", String::from_utf8_lossy(&out.stderr));
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
}

/// (5) Headless Chromium, the site key pinned, loads the browser page over HTTPS and
/// HTTP/2: every image at its expected size, the page and images over h2.
#[test]
fn chromium_loads_the_browser_page_over_https_and_h2() {
    let pki = Pki::new();
    let cfg = site_config(&pki, "");
    let (mut child, _plain, _admin, tls, _rx) =
        spawn(&["--config", cfg.to_str().unwrap(), "--tls-listen", "127.0.0.1:0"]);
    let port = tls.rsplit(':').next().unwrap().to_owned();
    // The pin: base64 SHA-256 of the leaf's SubjectPublicKeyInfo.
    let cert: CertificateDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_file(pki.dir.path().join("a.crt")).unwrap();
    let key_pem = std::fs::read_to_string(pki.dir.path().join("a.key")).unwrap();
    let spki = rcgen::PublicKeyData::subject_public_key_info(&rcgen::KeyPair::from_pem(&key_pem).unwrap());
    let pin = {
        use base64::Engine as _;
        use sha2::Digest as _;
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&spki))
    };
    let _ = cert;
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("/usr/bin/chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=15000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--host-resolver-rules=MAP a.test 127.0.0.1")
        .arg(format!("--ignore-certificate-errors-spki-list={pin}"))
        .arg(format!("https://a.test:{port}/browser/index.html"))
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout);
    let results = dom
        .split("RESULTS")
        .nth(1)
        .and_then(|r| r.split("END").next())
        .unwrap_or_else(|| panic!("no results in the page: {dom} {}", String::from_utf8_lossy(&out.stderr)));
    let lines: Vec<&str> = results.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 7, "{results}");
    for line in &lines {
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts[1], "complete", "{line}");
        assert_eq!(parts[2], parts[4], "{line}");
        assert!(parts[6].starts_with("https://a.test:"), "{line}");
    }
    let protocols = dom.split("PROTOCOLS ").nth(1).and_then(|p| p.split(" ENDP").next()).unwrap_or("");
    let protocols: Vec<&str> = protocols.split(',').collect();
    assert!(protocols.len() >= 2 && protocols.iter().all(|p| *p == "h2"), "not all over h2: {protocols:?}");
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
}

/// (4) `tls.cache_key_scheme = true`: HTTP and HTTPS get their own entries; a purge of
/// the URL still drops both.
#[test]
fn the_cache_splits_by_scheme_only_when_configured() {
    let pki = Pki::new();
    let cfg = site_config(&pki, "[tls]\ncache_key_scheme = true\n");
    let (mut child, plain, admin, tls, _rx) =
        spawn(&["--config", cfg.to_str().unwrap(), "--tls-listen", "127.0.0.1:0", "--purge-token", "t"]);
    let pq = "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,w_30";
    let x_cache =
        |h: &[(String, String)]| header(h, "x-cache").unwrap_or("").split(' ').next().unwrap_or("").to_owned();
    let (_, h, _) = plain_get(&plain, "a.test", pq);
    assert_eq!(x_cache(&h), "MISS");
    let mut a = connect(&tls, "a.test", Trust::Ca(&pki.ca()), &["http/1.1"], BOTH).unwrap();
    assert_eq!(x_cache(&a.get("a.test", pq).1), "MISS", "HTTPS has its own entry");
    assert_eq!(x_cache(&a.get("a.test", pq).1), "HIT");
    assert_eq!(x_cache(&plain_get(&plain, "a.test", pq).1), "HIT");
    let body = format!("{{\"paths\":[\"http://a.test{pq}\"]}}");
    let mut s = TcpStream::connect(&admin).unwrap();
    write!(
        s,
        "POST /purge HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let (status, _, text) = read_response(&mut s);
    assert!(status.starts_with("HTTP/1.1 200"), "{status} {}", String::from_utf8_lossy(&text));
    assert_eq!(x_cache(&a.get("a.test", pq).1), "MISS", "the purge dropped the HTTPS entry too");
    assert_eq!(x_cache(&plain_get(&plain, "a.test", pq).1), "MISS");
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
}
