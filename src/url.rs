//! URL vocabulary shared by the request parser, the cache key, purge and the
//! processing memo: query splitting and decoding, Host validation, object-path
//! normalisation and the escaping that keeps a canonical URL unambiguous.
//!
//! A leaf module: it depends on no other module of imgedge (only on
//! `percent_encoding` and std), so request, cache, process and purge can all use it
//! without forming a cycle. Errors are short static reasons; callers map them to
//! their own error type.

use percent_encoding::{percent_decode, percent_decode_str, percent_encode, AsciiSet, CONTROLS, NON_ALPHANUMERIC};
use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::Ipv6Addr;

/// The processing parameter.
pub const PROCESS_PARAM: &str = "x-oss-process";

/// Longest Host accepted: a DNS name is at most 253 bytes, plus `:65535` and slack
/// for an IPv6 literal. Anything longer is refused before it reaches a key.
pub const MAX_HOST_LEN: usize = 300;

/// Characters escaped in canonical query names and values: everything but
/// unreserved characters and `/` `,` (which `x-oss-process` values use and which
/// mean nothing inside one query component).
pub const QUERY_ESCAPE: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/').remove(b',');

// ---------------------------------------------------------------- query

/// Splits a raw query into percent-decoded (name, value) pairs; empty tokens are skipped.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query_tokens(query).map(|(name, value)| (name, decode_component(value)))
}

/// [`query_pairs`] with the values left raw, for callers that skip most values
/// (decoding a long `x-oss-process` value on every request only to drop it costs).
pub fn query_tokens(query: &str) -> impl Iterator<Item = (Cow<'_, str>, &str)> {
    query.split('&').filter(|t| !t.is_empty()).map(|token| {
        let (n, v) = token.split_once('=').unwrap_or((token, ""));
        (decode_component(n), v)
    })
}

/// One percent-encoded query component, `+` read as a space. Invalid UTF-8 is
/// replaced (U+FFFD): for display and matching, never for cache keys (see
/// [`decode_component_bytes`]).
pub fn decode_component(s: &str) -> Cow<'_, str> {
    if !s.as_bytes().iter().any(|&b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    if s.contains('+') {
        let spaced = s.replace('+', " ");
        return Cow::Owned(percent_decode_str(&spaced).decode_utf8_lossy().into_owned());
    }
    percent_decode_str(s).decode_utf8_lossy()
}

/// [`decode_component`] to exact bytes: nothing is replaced, so two components
/// that decode differently never compare equal (`%FF` and `%FE` stay apart).
/// A `%` not followed by two hex digits stays a literal `%`.
pub fn decode_component_bytes(s: &str) -> Cow<'_, [u8]> {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b == b'%' || b == b'+') {
        return Cow::Borrowed(bytes);
    }
    if bytes.contains(&b'+') {
        let spaced: Vec<u8> = bytes.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
        return Cow::Owned(percent_decode(&spaced).collect());
    }
    percent_decode(bytes).into()
}

/// Appends a decoded query component with [`QUERY_ESCAPE`] applied. Most need no
/// escaping (a canonical `x-oss-process` value never does), so check before encoding.
pub fn push_query_escaped(out: &mut String, component: &[u8]) {
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"-_.~/,".contains(b);
    match std::str::from_utf8(component) {
        Ok(s) if component.iter().all(plain) => out.push_str(s),
        _ => out.extend(percent_encode(component, QUERY_ESCAPE)),
    }
}

// ---------------------------------------------------------------- host

/// Validates a Host header (or URI authority) as an RFC 3986 `host [":" port]`
/// and returns its canonical form: lower case, default port 80 and an empty port
/// dropped, one trailing dot of a name dropped (as nginx does), an IPv6 literal
/// in its RFC 5952 spelling, the port without leading zeros.
///
/// Refused: an empty host, userinfo (`@`), a path, query or fragment (`/`, `?`,
/// `#`), spaces, non-ASCII, a port that is not a number up to 65535, IP literals
/// other than IPv6, and anything longer than [`MAX_HOST_LEN`]. Nothing is ever
/// folded into a default host.
///
/// # Errors
/// A short reason naming what is wrong.
pub fn parse_host(raw: &str) -> Result<String, &'static str> {
    if raw.is_empty() {
        return Err("empty Host");
    }
    if raw.len() > MAX_HOST_LEN {
        return Err("Host too long");
    }
    let (name, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (literal, after) = rest.split_once(']').ok_or("unclosed IP literal in Host")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after IP literal in Host")?),
        };
        // IPvFuture and zone identifiers are refused: nothing serves them.
        let addr: Ipv6Addr = literal.parse().map_err(|_| "invalid IPv6 literal in Host")?;
        (HostName::V6(addr), port)
    } else {
        let (name, port) = match raw.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (raw, None),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() {
            return Err("empty host name");
        }
        check_reg_name(name)?;
        (HostName::Name(name), port)
    };
    let port = match port {
        None | Some("") => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => match p.parse::<u32>() {
            Ok(80) => None,
            Ok(n) if n <= 65535 => Some(n),
            _ => return Err("port out of range in Host"),
        },
        Some(_) => return Err("invalid port in Host"),
    };
    // One allocation: the host is built on every request.
    let mut out = String::with_capacity(raw.len() + 2);
    match name {
        HostName::Name(n) => out.extend(n.chars().map(|c| c.to_ascii_lowercase())),
        HostName::V6(a) => {
            let _ = write!(out, "[{a}]");
        }
    }
    if let Some(p) = port {
        let _ = write!(out, ":{p}");
    }
    Ok(out)
}

enum HostName<'a> {
    Name(&'a str),
    V6(Ipv6Addr),
}

/// RFC 3986 `reg-name = *( unreserved / pct-encoded / sub-delims )`; an IPv4
/// address is a reg-name syntactically.
fn check_reg_name(name: &str) -> Result<(), &'static str> {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or("bad escape in Host")?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err("bad escape in Host");
                }
                i += 3;
                continue;
            }
            c if c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&c) => {}
            c if !c.is_ascii() => return Err("non-ASCII Host"),
            _ => return Err("invalid character in Host"),
        }
        i += 1;
    }
    Ok(())
}

// ---------------------------------------------------------------- path

/// Validates and decodes an object path. `%2F` decodes to `/` *before* the checks,
/// as OSS does (the oss2 SDK escapes every `/` of a key), so `a%2Fb` is the object
/// `a/b`, and `%2F..%2F` is a dot segment like `/../`. Refused: backslashes (also
/// `%5C`), NUL, `.`/`..` segments (also percent-encoded), empty segments, an empty
/// key and invalid UTF-8.
///
/// # Errors
/// A short reason naming the problem.
pub fn normalize_path(raw: &str) -> Result<String, &'static str> {
    if !raw.starts_with('/') {
        return Err("path must start with '/'");
    }
    // Most paths carry no escapes: validate them as they stand.
    let decoded = if raw.contains('%') {
        percent_decode_str(raw).decode_utf8().map_err(|_| "not UTF-8")?
    } else {
        Cow::Borrowed(raw)
    };
    if decoded.contains('\0') {
        return Err("NUL byte");
    }
    if decoded.contains('\\') {
        return Err("backslash");
    }
    let body = &decoded[1..];
    if body.is_empty() {
        return Err("empty key");
    }
    for segment in body.split('/') {
        match segment {
            "" => return Err("empty path segment"),
            "." | ".." => return Err("dot segment"),
            _ => {}
        }
    }
    Ok(decoded.into_owned())
}

/// True for the bytes a decoded object path must carry escaped in a canonical URL:
/// `%` (so the escaping can be undone), `?` and `#` (they would end the path) and
/// ASCII controls. Everything else, non-ASCII included, stays readable for regex
/// purges.
fn path_byte_needs_escape(b: u8) -> bool {
    b == b'%' || b == b'?' || b == b'#' || b < 0x20 || b == 0x7f
}

/// Appends a decoded object path in its canonical, unambiguous spelling: a literal
/// `?` in a key is `%3F`, a literal `%` is `%25`. Injective: two different paths
/// never give the same text.
pub fn push_escaped_path(out: &mut String, path: &str) {
    let bytes = path.as_bytes();
    if !bytes.iter().any(|&b| path_byte_needs_escape(b)) {
        out.push_str(path);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if path_byte_needs_escape(b) {
            // Escaped bytes are ASCII, so `i` is a char boundary.
            out.push_str(&path[start..i]);
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
            start = i + 1;
        }
    }
    out.push_str(&path[start..]);
}

/// [`push_escaped_path`] into a new string.
pub fn escape_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    push_escaped_path(&mut out, path);
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Bytes a path must escape to stand in a request URI: controls, space, `"`, `#`, `%`,
/// `<`, `>`, `?`, `` ` ``, `{`, `}` and non-ASCII (RFC 3986 path characters stay).
const URI_PATH_ESCAPE: &AsciiSet =
    &CONTROLS.add(b' ').add(b'"').add(b'#').add(b'%').add(b'<').add(b'>').add(b'?').add(b'`').add(b'{').add(b'}');

/// A decoded object path as it stands in a request URI (parsing it gives the path back).
pub fn uri_path(path: &str) -> String {
    percent_encoding::utf8_percent_encode(path, URI_PATH_ESCAPE).to_string()
}

/// The raw query without its `x-oss-process` parameters (the other tokens kept as
/// they stand, in order): the query of the plain object a rendition is made from.
pub fn query_without_process(query: &str) -> String {
    query
        .split('&')
        .filter(|t| !t.is_empty() && decode_component(t.split('=').next().unwrap_or(t)) != PROCESS_PARAM)
        .collect::<Vec<_>>()
        .join("&")
}

/// The `x-oss-process` value as it stands in the query (still percent-encoded); the
/// last one wins, as in the request parser and URL auth alike.
pub fn encoded_process_param(query: Option<&str>) -> Option<&str> {
    query_tokens(query?).filter(|(name, _)| name == PROCESS_PARAM).last().map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use percent_encoding::utf8_percent_encode;

    #[test]
    fn the_plain_query_drops_only_the_process_parameter() {
        assert_eq!(query_without_process("x-oss-process=image/resize,w_10"), "");
        assert_eq!(query_without_process("a=1&x-oss-process=image/resize,w_10&b=%2F"), "a=1&b=%2F");
        assert_eq!(query_without_process("x%2Doss%2Dprocess=image/info&v=2"), "v=2");
        assert_eq!(query_without_process("v=2&&w"), "v=2&w");
    }

    #[test]
    fn the_unescaped_shortcut_matches_the_encoder() {
        for component in ["image/resize,w_400/quality,q_80", "a b", "é", "a&b=c", "x%2Fy", "~-_.", "a+b", ""] {
            let mut url = String::new();
            push_query_escaped(&mut url, component.as_bytes());
            assert_eq!(url, utf8_percent_encode(component, QUERY_ESCAPE).to_string(), "{component}");
        }
        assert_eq!(decode_component("plain,value/x_1"), Cow::Borrowed("plain,value/x_1"));
        assert_eq!(decode_component("a%20b+c"), "a b c");
    }

    #[test]
    fn byte_decoding_is_exact() {
        assert_ne!(decode_component_bytes("%FF"), decode_component_bytes("%FE"));
        assert_eq!(&*decode_component_bytes("a%20b+c"), b"a b c");
        assert_eq!(&*decode_component_bytes("%zz"), b"%zz");
        let mut out = String::new();
        push_query_escaped(&mut out, b"\xff");
        assert_eq!(out, "%FF");
    }

    #[test]
    fn hosts_are_validated_and_canonical() {
        for (raw, want) in [
            ("Example.COM", "example.com"),
            ("example.com:80", "example.com"),
            ("example.com:", "example.com"),
            ("example.com.", "example.com"),
            ("example.com:08080", "example.com:8080"),
            ("127.0.0.1:9000", "127.0.0.1:9000"),
            ("[::1]:8080", "[::1]:8080"),
            ("[0:0::1]", "[::1]"),
            ("[2001:DB8::1]", "[2001:db8::1]"),
            ("a-b_c~d.example", "a-b_c~d.example"),
        ] {
            assert_eq!(parse_host(raw).as_deref(), Ok(want), "{raw}");
        }
        for raw in [
            "",
            "example.com/sub",
            "example.com?x",
            "example.com#x",
            "user@example.com",
            "exa mple.com",
            "bücher.de",
            "example.com:http",
            "example.com:65536",
            "example.com:80:80",
            ":80",
            ".",
            "[::1",
            "[::1]x",
            "[v1.x]",
            "[fe80::1%25eth0]",
            "a%zz",
            "a\\b",
            "a\"b",
        ] {
            assert!(parse_host(raw).is_err(), "{raw:?} accepted");
        }
        assert!(parse_host(&"a".repeat(MAX_HOST_LEN + 1)).is_err());
    }

    #[test]
    fn unsafe_paths_are_rejected() {
        for p in [
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/secret",
            "/a%2F..%2Fb",
            "/a%2f%2fb",
            "/a%5Cb",
            "/a%00b",
            "/a//b",
            "/./a",
            "/",
            "/%2F",
            "relative",
            "/%ff",
        ] {
            assert!(normalize_path(p).is_err(), "{p}");
        }
        assert_eq!(normalize_path("/dir/a%20b.jpg").unwrap(), "/dir/a b.jpg");
        assert_eq!(normalize_path("/图片.jpg").unwrap(), "/图片.jpg");
    }

    #[test]
    fn encoded_slash_is_a_slash_as_in_oss() {
        assert_eq!(normalize_path("/dir%2Fsub%2Fx.jpg").unwrap(), "/dir/sub/x.jpg");
        assert_eq!(normalize_path("/dir%2fsub/x.jpg").unwrap(), "/dir/sub/x.jpg");
        // Double-escaped stays a literal `%2F` in the key.
        assert_eq!(normalize_path("/a%252Fb").unwrap(), "/a%2Fb");
    }

    #[test]
    fn escaped_paths_are_unambiguous() {
        assert_eq!(escape_path("/a?q=1"), "/a%3Fq=1");
        assert_eq!(escape_path("/a#b"), "/a%23b");
        assert_eq!(escape_path("/100%"), "/100%25");
        assert_eq!(escape_path("/图 片&x=y.jpg"), "/图 片&x=y.jpg");
        assert_eq!(escape_path("/a\u{7f}\n"), "/a%7F%0A");
        assert_ne!(escape_path("/a%3F"), escape_path("/a?"));
    }
}
