//! The one error type of imgedge and its mapping to HTTP.
//!
//! Every subsystem returns its own precise error (`ProcessError`, `OriginError`,
//! `ConfigError`) and converts into [`Error`]. Only this module decides the HTTP
//! status, the OSS `Code` string and the public message, and only this module
//! builds the OSS-style XML error body. Internal details never reach the client.

use crate::origin::OriginError;
use crate::process::{ProcessError, ProcessErrorKind};
use http::header::{self, HeaderName, HeaderValue};
use http::StatusCode;

/// Everything that can end a request early, grouped by whom to blame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- client ---
    /// The object key in the path is not acceptable (traversal, NUL, bad encoding).
    #[error("invalid object key: {0}")]
    InvalidKey(&'static str),
    /// A request header or query parameter is malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A `Range` header that cannot be satisfied for this object.
    #[error("range not satisfiable")]
    InvalidRange {
        /// Object length, for the `Content-Range: bytes */len` header.
        len: u64,
    },
    /// Method other than GET/HEAD (or POST on admin endpoints); the text is the
    /// `Allow` header value for the resource.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    /// Admin call without a valid bearer token.
    #[error("unauthorized")]
    Unauthorized,
    /// Access refused by a rule (URL auth, referer, IP).
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// A URL signature check failed; the text is the CDN's `X-Tengine-Error`.
    #[error("{0}")]
    UrlAuth(&'static str),
    /// Unknown admin route.
    #[error("not found")]
    NotFound,
    /// The request body is too large or malformed (admin API).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A purge request that could not be parsed: (OSS/CDN code, message).
    #[error("{0}: {1}")]
    InvalidPurge(&'static str, String),
    /// A CDN API call refused with the API's own status and code (bad signature,
    /// unknown AccessKey, replayed nonce, unknown action, quota).
    #[error("{code}: {message}")]
    Api {
        /// HTTP status the API uses for this code.
        status: StatusCode,
        /// The API's error code, e.g. `SignatureDoesNotMatch`.
        code: &'static str,
        /// Public message (never secrets).
        message: String,
    },
    // --- image processing (parse errors and pixel work) ---
    /// An `x-oss-process` chain was rejected or failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
    // --- origin ---
    /// The origin failed or refused.
    #[error(transparent)]
    Origin(#[from] OriginError),
    // --- overload and deadlines ---
    /// The CPU queue is full; retry later.
    #[error("server overloaded")]
    Overloaded,
    /// The request ran past its deadline.
    #[error("request timed out")]
    Timeout,
    /// A cluster purge could not be made durable in the purge stream (Redis down):
    /// nothing is claimed; retry later.
    #[error("cluster purge stream unavailable: {0}")]
    ClusterUnavailable(String),
    // --- internal ---
    /// The same error as another request's fill this request waited for.
    #[error("{0}")]
    Shared(std::sync::Arc<Error>),
    /// A bug or an unexpected system failure; the text is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The error itself, seen through `Shared` wrappers.
    pub fn root(&self) -> &Error {
        match self {
            Error::Shared(inner) => inner.root(),
            other => other,
        }
    }

    /// HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::InvalidKey(_) | Error::InvalidArgument(_) | Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::InvalidPurge(..) => StatusCode::BAD_REQUEST,
            Error::Api { status, .. } => *status,
            Error::InvalidRange { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::AccessDenied(_) | Error::UrlAuth(_) => StatusCode::FORBIDDEN,
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::Process(e) => process_status(e.kind()),
            Error::Origin(e) => match e {
                OriginError::NotFound => StatusCode::NOT_FOUND,
                OriginError::Denied => StatusCode::FORBIDDEN,
                OriginError::AuthFailed => StatusCode::BAD_GATEWAY,
                OriginError::ArchivedObject => StatusCode::FORBIDDEN,
                OriginError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                OriginError::Timeout => StatusCode::GATEWAY_TIMEOUT,
                OriginError::Busy => StatusCode::SERVICE_UNAVAILABLE,
                OriginError::Upstream(_) | OriginError::Io(_) => StatusCode::BAD_GATEWAY,
                OriginError::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Error::Overloaded | Error::ClusterUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Shared(e) => e.status(),
        }
    }

    /// The OSS `Code` element.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidKey(_) => "InvalidObjectName",
            Error::InvalidArgument(_) => "InvalidArgument",
            Error::BadRequest(_) => "InvalidArgument",
            Error::InvalidPurge(code, _) => code,
            Error::Api { code, .. } => code,
            Error::InvalidRange { .. } => "InvalidRange",
            Error::MethodNotAllowed(_) => "MethodNotAllowed",
            Error::Unauthorized => "Unauthorized",
            Error::AccessDenied(_) | Error::UrlAuth(_) => "AccessDenied",
            Error::NotFound => "NotFound",
            Error::Process(e) => process_code(e.kind()),
            Error::Origin(e) => match e {
                OriginError::NotFound => "NoSuchKey",
                OriginError::Denied => "AccessDenied",
                OriginError::AuthFailed => "OriginAuthFailed",
                OriginError::ArchivedObject => "InvalidObjectState",
                OriginError::TooLarge { .. } => "EntityTooLarge",
                OriginError::Timeout => "OriginTimeout",
                OriginError::Busy => "ServiceUnavailable",
                OriginError::Upstream(_) | OriginError::Io(_) => "OriginError",
                OriginError::Config(_) => "InternalError",
            },
            Error::Overloaded | Error::ClusterUnavailable(_) => "ServiceUnavailable",
            Error::Timeout => "RequestTimeout",
            Error::Internal(_) => "InternalError",
            Error::Shared(e) => e.code(),
        }
    }

    /// The message sent to the client (never internal details). Every 500 says the same
    /// generic sentence: the detail of a bug or system failure goes to the log only.
    pub fn public_message(&self) -> String {
        if self.status() == StatusCode::INTERNAL_SERVER_ERROR {
            return INTERNAL_MESSAGE.into();
        }
        match self {
            Error::InvalidKey(why) => format!("The object key is invalid: {why}."),
            Error::InvalidArgument(m) | Error::BadRequest(m) => m.clone(),
            Error::InvalidPurge(_, m) | Error::Api { message: m, .. } => m.clone(),
            Error::InvalidRange { .. } => "The requested range cannot be satisfied.".into(),
            Error::MethodNotAllowed(_) => "The specified method is not allowed.".into(),
            Error::Unauthorized => "A valid bearer token is required.".into(),
            Error::AccessDenied(m) => m.clone(),
            Error::UrlAuth(_) => "The URL signature is missing, expired or invalid.".into(),
            Error::NotFound => "No such endpoint.".into(),
            Error::Process(e) => e.message(),
            Error::Origin(e) => match e {
                OriginError::NotFound => "The specified key does not exist.".into(),
                OriginError::Denied => "Access to the object was denied by the origin.".into(),
                OriginError::AuthFailed => "The origin rejected the proxy's credentials.".into(),
                OriginError::ArchivedObject => "The object is archived and has not been restored.".into(),
                OriginError::TooLarge { limit } => {
                    format!("The object is larger than the configured limit of {limit} bytes.")
                }
                OriginError::Timeout => "The origin did not answer in time.".into(),
                OriginError::Busy => "The server is busy; retry later.".into(),
                OriginError::Upstream(_) | OriginError::Io(_) => "The origin failed to serve the object.".into(),
                OriginError::Config(_) => INTERNAL_MESSAGE.into(),
            },
            Error::Overloaded => "The server is busy; retry later.".into(),
            Error::ClusterUnavailable(_) => {
                "The purge could not be distributed to the cluster; nothing was purged. Retry later.".into()
            }
            Error::Timeout => "The request took too long.".into(),
            Error::Internal(_) => INTERNAL_MESSAGE.into(),
            Error::Shared(e) => e.public_message(),
        }
    }

    /// The fine-grained OSS `EC` code, when one is known.
    pub fn ec(&self) -> Option<&'static str> {
        match self {
            Error::Process(e) => e.ec(),
            Error::Origin(OriginError::NotFound) => Some("0026-00000001"),
            Error::Origin(OriginError::ArchivedObject) => Some("0016-00000404"),
            Error::Shared(e) => e.ec(),
            _ => None,
        }
    }

    /// True for errors caused by the server or origin (logged at warn with the cause).
    pub fn is_server_side(&self) -> bool {
        self.status().is_server_error()
    }

    /// True for errors worth a warning in the log: server-side failures, and client
    /// errors that hide a bug on our side (a decoder that panicked on bad input).
    pub fn is_alarming(&self) -> bool {
        self.is_server_side()
            || matches!(self.root(), Error::Process(e) if e.detail().is_some_and(|d| d.starts_with(crate::process::DECODER_PANIC)))
    }

    /// The headers that belong to this error, beside the body: `Retry-After` for
    /// overload, `Content-Range` for 416, `Allow` for 405, `WWW-Authenticate` for 401,
    /// the CDN's `X-Tengine-Error` for URL auth, and `x-oss-ec`.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        let mut put = |name: HeaderName, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                out.push((name, v));
            }
        };
        match self.root() {
            Error::Overloaded | Error::Origin(OriginError::Busy) | Error::ClusterUnavailable(_) => {
                put(header::RETRY_AFTER, "1")
            }
            Error::InvalidRange { len } => put(header::CONTENT_RANGE, &format!("bytes */{len}")),
            Error::MethodNotAllowed(allow) => put(header::ALLOW, allow),
            Error::Unauthorized => put(header::WWW_AUTHENTICATE, "Bearer"),
            Error::UrlAuth(why) => put(HeaderName::from_static("x-tengine-error"), why),
            _ => {}
        }
        if let Some(ec) = self.ec() {
            put(HeaderName::from_static("x-oss-ec"), ec);
        }
        out
    }

    /// The OSS-style XML error body.
    pub fn xml_body(&self, request_id: &str, host: &str, key: Option<&str>) -> String {
        let mut xml = String::with_capacity(320);
        xml.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n");
        push_elem(&mut xml, "Code", self.code());
        push_elem(&mut xml, "Message", &self.public_message());
        push_elem(&mut xml, "RequestId", request_id);
        push_elem(&mut xml, "HostId", host);
        if let (Some(key), "NoSuchKey") = (key, self.code()) {
            push_elem(&mut xml, "Key", key);
        }
        if let Some(ec) = self.ec() {
            push_elem(&mut xml, "EC", ec);
            push_elem(&mut xml, "RecommendDoc", &format!("https://api.aliyun.com/troubleshoot?q={ec}"));
        }
        xml.push_str("</Error>\n");
        xml
    }
}

/// The one public message of every 500, as OSS words it.
const INTERNAL_MESSAGE: &str = "We encountered an internal error. Please try again.";

/// HTTP status of a processing error kind (spec §5).
fn process_status(kind: ProcessErrorKind) -> StatusCode {
    match kind {
        ProcessErrorKind::NoSuchStyle => StatusCode::NOT_FOUND,
        ProcessErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        ProcessErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ProcessErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        // nginx's 499 "client closed request": only the access log ever shows it.
        ProcessErrorKind::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        _ => StatusCode::BAD_REQUEST,
    }
}

/// OSS `Code` of a processing error kind (spec §5).
fn process_code(kind: ProcessErrorKind) -> &'static str {
    match kind {
        ProcessErrorKind::InvalidArgument => "InvalidArgument",
        ProcessErrorKind::MissingArgument => "MissingArgument",
        ProcessErrorKind::BadRequest | ProcessErrorKind::Undecodable => "BadRequest",
        ProcessErrorKind::ImageTooLarge => "ImageTooLarge",
        ProcessErrorKind::Watermark => "WatermarkError",
        ProcessErrorKind::NoSuchStyle => "NoSuchStyle",
        ProcessErrorKind::NotImplemented => "NotImplemented",
        ProcessErrorKind::Internal => "InternalError",
        ProcessErrorKind::Timeout => "RequestTimeout",
        ProcessErrorKind::Cancelled => "RequestCancelled",
    }
}

/// Unit tests of `process` read status and code through the one map.
#[cfg(test)]
impl ProcessError {
    pub(crate) fn status(&self) -> u16 {
        process_status(self.kind()).as_u16()
    }
    pub(crate) fn code(&self) -> &'static str {
        process_code(self.kind())
    }
}

fn push_elem(out: &mut String, name: &str, text: &str) {
    out.push_str("  <");
    out.push_str(name);
    out.push('>');
    escape_xml_into(text, out);
    out.push_str("</");
    out.push_str(name);
    out.push_str(">\n");
}

/// Escapes the five XML special characters.
pub fn escape_xml_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_such_key_body_has_code_key_and_ec() {
        let e = Error::Origin(OriginError::NotFound);
        let body = e.xml_body("RID", "host", Some("a<b>.jpg"));
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert!(body.contains("<Code>NoSuchKey</Code>"));
        assert!(body.contains("<Key>a&lt;b&gt;.jpg</Key>"));
        assert!(body.contains("<EC>0026-00000001</EC>"));
        assert!(body.contains("<RequestId>RID</RequestId>"));
    }

    #[test]
    fn internal_details_are_not_public() {
        let e = Error::Internal("secret path /etc/x".into());
        assert!(!e.public_message().contains("secret"));
        assert!(!e.xml_body("r", "h", None).contains("secret"));
    }

    #[test]
    fn process_internal_detail_stays_in_the_log() {
        let e = Error::from(ProcessError::internal("encode: secret encoder state"));
        let body = e.xml_body("RID", "h", None);
        assert_eq!((e.status(), e.code()), (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"));
        assert!(!body.contains("secret"), "{body}");
        assert!(body.contains("<RequestId>RID</RequestId>"));
        assert!(e.to_string().contains("secret encoder state"), "the log line keeps the detail");
        // A shared (coalesced) error is as quiet.
        let shared = Error::Shared(std::sync::Arc::new(e));
        assert!(!shared.xml_body("RID", "h", None).contains("secret"));
    }

    #[test]
    fn decoder_detail_is_not_public() {
        let e = Error::from(ProcessError::undecodable("png: Invalid PLTE length 25 at secret offset"));
        assert_eq!((e.status(), e.code()), (StatusCode::BAD_REQUEST, "BadRequest"));
        assert!(!e.xml_body("r", "h", None).contains("secret"));
    }

    #[test]
    fn every_500_has_the_same_public_message() {
        let errors = [
            Error::Internal("x".into()),
            Error::Origin(OriginError::Config("bucket secret".into())),
            Error::from(ProcessError::internal("y")),
        ];
        for e in errors {
            assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(e.public_message(), INTERNAL_MESSAGE);
        }
    }

    #[test]
    fn per_error_headers_come_from_one_map() {
        let names = |e: Error| {
            e.headers().into_iter().map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or(""))).collect::<Vec<_>>()
        };
        assert_eq!(names(Error::Overloaded), ["retry-after: 1"]);
        assert_eq!(names(Error::InvalidRange { len: 10 }), ["content-range: bytes */10"]);
        assert_eq!(names(Error::MethodNotAllowed("GET, HEAD")), ["allow: GET, HEAD"]);
        assert_eq!(names(Error::Shared(std::sync::Arc::new(Error::Overloaded))), ["retry-after: 1"]);
        assert!(names(Error::Origin(OriginError::NotFound)).contains(&"x-oss-ec: 0026-00000001".to_owned()));
    }
}
