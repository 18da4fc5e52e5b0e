//! Issue 15 A: the cache key nobody can poison. A bad Host is a 400 and never keys
//! an entry; an escaped `?` in an object name is not a query; `%2F` is `/` as in OSS
//! (driven with the real oss2 SDK).

use crate::common::server::{start_with, tmp_origin, TestServer};
use http::StatusCode;
use std::path::{Path, PathBuf};

/// Sends raw request bytes on a fresh connection; returns (status, whole response text).
async fn raw(s: &TestServer, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "server did not close the connection");
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text)
}

fn get_with_host(path: &str, host: &[u8]) -> Vec<u8> {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: ").into_bytes();
    r.extend_from_slice(host);
    r.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    r
}

/// A1: `Host: example.com/sub` is refused and keys nothing, so it cannot poison
/// `example.com/sub/hello.txt`; every malformed Host is a 400, never `localhost`.
#[tokio::test]
async fn a_host_with_a_path_is_refused_and_poisons_nothing() {
    let root = tmp_origin(&[("hello.txt", b"ROOT"), ("sub/hello.txt", b"SUB")]);
    let s = start_with(root.path(), |_| {}).await;
    let (code, text) = raw(&s, &get_with_host("/hello.txt", b"example.com/sub")).await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("<Code>InvalidArgument</Code>"), "{text}");
    assert!(!text.contains("ROOT"));
    let r = s.get_with("/sub/hello.txt", &[("host", "example.com")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], b"SUB");
    assert!(r.x_cache().starts_with("MISS"), "{}", r.x_cache());
    // The other order: the real entry is not served for the bad Host either.
    let (code, text) = raw(&s, &get_with_host("/hello.txt", b"example.com/sub")).await;
    assert_eq!(code, 400, "{text}");
    assert!(!text.contains("SUB"), "{text}");
    let r = s.get_with("/hello.txt", &[("host", "example.com")]).await;
    assert_eq!(&r.body[..], b"ROOT");

    for bad in [
        &b"exa mple.com"[..],
        b"user@example.com",
        b"b\xc3\xbccher.de",
        b"",
        b"example.com?x=1",
        b"example.com:port",
        b"[::1",
    ] {
        let (code, text) = raw(&s, &get_with_host("/hello.txt", bad)).await;
        assert_eq!(code, 400, "Host {:?}: {text}", String::from_utf8_lossy(bad));
    }
    let (code, text) = raw(&s, b"GET /hello.txt HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(code, 400, "HTTP/1.1 without Host: {text}");
    let two = b"GET /hello.txt HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(&s, two).await.0, 400, "two Host headers");
    // HTTP/1.0 had no Host: it is served under the listener's address.
    let (code, text) = raw(&s, b"GET /hello.txt HTTP/1.0\r\n\r\n").await;
    assert_eq!(code, 200, "{text}");
    assert!(text.ends_with("ROOT"), "{text}");
    // Good hosts: case, port 80, IPv6 literal.
    for good in [&b"EXAMPLE.com:80"[..], b"[::1]:8080", b"127.0.0.1"] {
        let (code, text) = raw(&s, &get_with_host("/hello.txt", good)).await;
        assert_eq!(code, 200, "Host {:?}: {text}", String::from_utf8_lossy(good));
    }
}

/// A2: an object whose name holds an escaped `?` (or `&`, `=`, `%`) is its own
/// entry, not the shorter object with a query.
#[tokio::test]
async fn escaped_delimiters_name_objects_not_queries() {
    let root = tmp_origin(&[
        ("a", b"PLAIN"),
        ("a?q=1", b"LITERAL"),
        ("p", b"P"),
        ("p?x=1&y=2", b"P-LITERAL"),
        ("100%", b"PCT"),
        ("100%25", b"PCT25"),
    ]);
    let s = start_with(root.path(), |_| {}).await;
    let r = s.get("/a?q=1").await;
    assert_eq!(&r.body[..], b"PLAIN");
    let r = s.get("/a%3Fq=1").await;
    assert_eq!(&r.body[..], b"LITERAL", "X-Cache {}", r.x_cache());
    assert!(r.x_cache().starts_with("MISS"), "{}", r.x_cache());
    let r = s.get("/a?q=1").await;
    assert_eq!((&r.body[..], r.x_cache().starts_with("HIT")), (&b"PLAIN"[..], true));

    let r = s.get("/p%3Fx%3D1%26y%3D2").await;
    assert_eq!(&r.body[..], b"P-LITERAL");
    let r = s.get("/p?x=1&y=2").await;
    assert_eq!(&r.body[..], b"P", "X-Cache {}", r.x_cache());

    let r = s.get("/100%25").await;
    assert_eq!(&r.body[..], b"PCT");
    let r = s.get("/100%2525").await;
    assert_eq!(&r.body[..], b"PCT25", "X-Cache {}", r.x_cache());
}

/// A5: `%2F` is `/` before the traversal checks, as in OSS: the escaped and the
/// plain spelling are one object and one cache entry; `%2F..%2F` stays refused.
#[tokio::test]
async fn encoded_slash_is_the_same_object_and_entry() {
    // The origin is a subfolder; a sibling file holds a secret.
    let root = tmp_origin(&[("public/sub/hello.txt", b"SUB"), ("secret.txt", b"SECRET")]);
    let s = start_with(root.path().join("public"), |_| {}).await;
    let r = s.get("/sub%2Fhello.txt").await;
    assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"SUB"[..]));
    let r = s.get("/sub/hello.txt").await;
    assert!(r.x_cache().starts_with("HIT"), "{}", r.x_cache());
    for path in ["/sub%2F..%2F..%2Fsecret.txt", "/%2F..%2Fsecret.txt", "/..%2Fsecret.txt", "/sub%2F%2Fhello.txt"] {
        let (code, text) = raw(&s, &get_with_host(path, b"t")).await;
        assert_eq!(code, 400, "{path}: {text}");
        assert!(!text.contains("SECRET"));
    }
}

/// The venv's python with oss2, or None when the test may skip.
fn oss2_python() -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let has_oss2 = python.is_file()
        && std::process::Command::new(&python).args(["-c", "import oss2"]).status().is_ok_and(|s| s.success());
    if has_oss2 {
        return Some(python);
    }
    let hint = "python3 -m venv .venv && .venv/bin/pip install -r tests/requirements.txt";
    if std::env::var("IMGEDGE_ALLOW_SKIP").is_ok_and(|v| v == "1") {
        eprintln!("SKIP: oss2 not installed in .venv ({hint})");
        return None;
    }
    panic!("oss2 is not installed in <crate>/.venv: {hint} (or set IMGEDGE_ALLOW_SKIP=1 to skip)");
}

/// A5 with the real SDK: oss2 escapes every `/` of `dir/sub/x.jpg` as `%2F`; the
/// original and a processed rendition come back right, and the plain spelling of
/// the same URLs is a cache hit of the entries oss2 filled.
#[tokio::test]
async fn oss2_sdk_gets_nested_keys_original_and_processed() {
    let Some(python) = oss2_python() else { return };
    let source = std::fs::read(format!("{}/giunchedi_srgb_icc.jpg", crate::common::server::fixtures())).unwrap();
    let root = tmp_origin(&[("dir/sub/x.jpg", &source)]);
    let s = start_with(root.path(), |_| {}).await;
    let out = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oss2_get.py");
    let proxy = format!("http://{}", s.addr);
    let mut child = std::process::Command::new(&python)
        .arg(&script)
        .args([proxy.as_str(), "http://imgedge.test", "dir/sub/x.jpg"])
        .arg(out.path())
        .env("NO_PROXY", "")
        .env("no_proxy", "")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: poll for at most two minutes, then kill.
    let mut status = None;
    for _ in 0..1200 {
        if let Some(st) = child.try_wait().unwrap() {
            status = Some(st);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("oss2 script did not finish in 120 s");
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert!(status.success(), "oss2 script failed: {stderr}");
    let plain = std::fs::read(out.path().join("plain")).unwrap();
    assert!(plain == source, "oss2 got {} bytes, not the original", plain.len());
    let processed = std::fs::read(out.path().join("processed")).unwrap();
    let img = image::load_from_memory(&processed).expect("processed is an image");
    assert_eq!(img.width(), 50);

    let host = [("host", "imgedge.test")];
    let r = s.get_with("/dir/sub/x.jpg", &host).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.x_cache().starts_with("HIT"), "plain GET after oss2: {}", r.x_cache());
    assert!(r.body[..] == source[..]);
    let r = s.get_with("/dir/sub/x.jpg?x-oss-process=image/resize,w_50", &host).await;
    assert!(r.x_cache().starts_with("HIT"), "processed GET after oss2: {}", r.x_cache());
    assert!(r.body[..] == processed[..]);
}

// ---------------------------------------------------------------- A4: property

/// splitmix64: a fixed-seed generator, so every run checks the same cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
    fn upto(&mut self, n: u64) -> u64 {
        self.next() % (n + 1)
    }
}

const HOSTS: &[&str] = &["a.test", "A.Test", "a.test:80", "a.test.", "a.test:8080", "b.test", "[::1]", "[0::1]:80"];
/// Path pieces: delimiters raw and escaped, escapes of unreserved letters, a
/// literal `%`, non-ASCII.
const PATH_PIECES: &[&str] = &[
    "a", "b", "/", "%2F", "%2f", "%3F", "%23", "%26", "%3D", "%25", "%2525", "%253F", "%61", "&", "=", "+", "%20",
    "%C3%A9", "~", "%7E",
];
const NAMES: &[&str] =
    &["q", "%71", "r", "q%3D1", "q%26r", "auth_key", "Expires", "utm", "x-oss-process", "%FF", "%FE", ""];
const VALUES: &[&str] = &[
    "1",
    "2",
    "%26",
    "%3D",
    "%25",
    "%2525",
    "+",
    "%20",
    "%2B",
    "%3F",
    "a",
    "%61",
    "%FF",
    "%FE",
    "image/resize,w_10",
    "image%2Fresize%2Cw_10",
    "image/resize,w_11",
];

/// One random request line target: raw path and optional raw query.
fn random_target(rng: &mut Rng) -> String {
    let mut target = String::from("/");
    for _ in 0..=rng.upto(4) {
        target.push_str(rng.pick(PATH_PIECES));
    }
    if rng.upto(2) > 0 {
        target.push('?');
        for i in 0..=rng.upto(2) {
            if i > 0 {
                target.push('&');
            }
            target.push_str(rng.pick(NAMES));
            if rng.upto(3) > 0 {
                target.push('=');
                for _ in 0..=rng.upto(1) {
                    target.push_str(rng.pick(VALUES));
                }
            }
        }
    }
    target
}

/// Percent-decoding written independently of the crate: `%XX` is a byte, anything
/// else (a lone `%` too) is itself; in queries `+` is a space.
fn decode(raw: &str, plus_is_space: bool) -> Vec<u8> {
    let b = raw.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).and_then(|&c| hex(c)), b.get(i + 2).and_then(|&c| hex(c))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
            (b'+', _, _) if plus_is_space => out.push(b' '),
            (c, _, _) => out.push(c),
        }
        i += 1;
    }
    out
}

/// What a request means for the cache, by the documented equivalences only: the
/// host (case, port 80, trailing dot and IPv6 spelling aside), the decoded object
/// path (`%2F` is `/`), the multiset of decoded query pairs without URL-auth and
/// ignored parameters, and the canonical processing chain.
type Meaning = (String, Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>, Option<String>);

fn meaning(host: &str, target: &str, chain: Option<&str>, ignore: &[String]) -> Meaning {
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix(":80").unwrap_or(&host);
    let host = host.strip_suffix('.').unwrap_or(host);
    let host = if host == "[0::1]" { "[::1]" } else { host };
    let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = query
        .unwrap_or("")
        .split('&')
        .filter(|t| !t.is_empty())
        .map(|t| t.split_once('=').unwrap_or((t, "")))
        .map(|(n, v)| (decode(n, true), decode(v, true)))
        .filter(|(n, _)| {
            let n = String::from_utf8_lossy(n);
            !(n == "x-oss-process" || imgedge::cache::key::is_auth_param(&n) || ignore.iter().any(|i| *i == n))
        })
        .collect();
    pairs.sort();
    (host.to_owned(), decode(path, false), pairs, chain.map(str::to_owned))
}

/// A4: two requests share a key exactly when they mean the same by the documented
/// equivalences. Driven through the real parser (`ObjectRequest::parse` on a `Uri`
/// and a Host header) and the real key constructor, over requests built from the
/// delimiters and escapes that matter; a fixed seed, so every run checks the same.
#[test]
fn requests_share_a_key_only_when_equivalent() {
    use imgedge::cache::CacheKey;
    use imgedge::request::ObjectRequest;
    use std::collections::HashMap;
    let config = imgedge::Config::default();
    let chains = imgedge::process::ChainMemo::new(config.styles.clone(), config.limits.to_limits(), 1000);
    let ignore = vec!["utm".to_owned()];
    let mut by_key: HashMap<(String, [u8; 16]), (Meaning, String)> = HashMap::new();
    let mut by_meaning: HashMap<Meaning, (CacheKey, String)> = HashMap::new();
    let mut by_hash: HashMap<[u8; 16], CacheKey> = HashMap::new();
    let (mut parsed, mut shared) = (0, 0);
    let mut rng = Rng(15);
    for _ in 0..40_000 {
        let host = rng.pick(HOSTS);
        let target = random_target(&mut rng);
        let Ok(uri) = target.parse::<http::Uri>() else { continue };
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, host.parse().unwrap());
        let Ok(req) = ObjectRequest::parse(&http::Method::GET, &uri, &headers, &chains) else { continue };
        parsed += 1;
        let key = CacheKey::new(&req.host, &req.path, req.query.as_deref(), req.canonical_chain(), None, &ignore);
        let m = meaning(host, &target, req.canonical_chain(), &ignore);
        let label = format!("{host} {target}");
        if let Some((other, other_label)) = by_key.get(&(key.url.clone(), key.hash)) {
            assert_eq!(*other, m, "one key {:?} for {other_label} and {label}", key.url);
            shared += 1;
        }
        if let Some((other, other_label)) = by_meaning.get(&m) {
            assert_eq!(*other, key, "equivalent {other_label} and {label} have different keys");
        }
        if let Some(other) = by_hash.get(&key.hash) {
            assert_eq!(*other, key, "hash collision");
        }
        by_key.insert((key.url.clone(), key.hash), (m.clone(), label.clone()));
        by_meaning.insert(m, (key.clone(), label));
        by_hash.insert(key.hash, key);
    }
    // The generator must reach both sides of the property.
    assert!(parsed > 10_000, "only {parsed} requests parsed");
    assert!(shared > 1_000, "only {shared} requests shared a key");
    assert!(by_key.len() > 5_000, "only {} distinct keys", by_key.len());
}
