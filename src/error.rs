//! The one error type of imgedge and its mapping to HTTP.
//!
//! Every subsystem returns its own precise error (`ProcessError`, `OriginError`,
//! `ConfigError`) and converts into [`Error`]. Only this module decides the HTTP
//! status, the OSS `Code` string and the public message, and only this module
//! builds the OSS-style XML error body. Internal details never reach the client.

use crate::origin::OriginError;
use crate::process::ProcessError;
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
    /// Method other than GET/HEAD (or POST on admin endpoints).
    #[error("method not allowed")]
    MethodNotAllowed,
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
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::AccessDenied(_) | Error::UrlAuth(_) => StatusCode::FORBIDDEN,
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::Process(e) => StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            Error::Origin(e) => match e {
                OriginError::NotFound => StatusCode::NOT_FOUND,
                OriginError::Denied => StatusCode::FORBIDDEN,
                OriginError::AuthFailed => StatusCode::BAD_GATEWAY,
                OriginError::ArchivedObject => StatusCode::FORBIDDEN,
                OriginError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                OriginError::Timeout => StatusCode::GATEWAY_TIMEOUT,
                OriginError::Upstream(_) | OriginError::Io(_) => StatusCode::BAD_GATEWAY,
                OriginError::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Error::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
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
            Error::MethodNotAllowed => "MethodNotAllowed",
            Error::Unauthorized => "Unauthorized",
            Error::AccessDenied(_) | Error::UrlAuth(_) => "AccessDenied",
            Error::NotFound => "NotFound",
            Error::Process(e) => e.code(),
            Error::Origin(e) => match e {
                OriginError::NotFound => "NoSuchKey",
                OriginError::Denied => "AccessDenied",
                OriginError::AuthFailed => "OriginAuthFailed",
                OriginError::ArchivedObject => "InvalidObjectState",
                OriginError::TooLarge { .. } => "EntityTooLarge",
                OriginError::Timeout => "OriginTimeout",
                OriginError::Upstream(_) | OriginError::Io(_) => "OriginError",
                OriginError::Config(_) => "InternalError",
            },
            Error::Overloaded => "ServiceUnavailable",
            Error::Timeout => "RequestTimeout",
            Error::Internal(_) => "InternalError",
            Error::Shared(e) => e.code(),
        }
    }

    /// The message sent to the client (never internal details).
    pub fn public_message(&self) -> String {
        match self {
            Error::InvalidKey(why) => format!("The object key is invalid: {why}."),
            Error::InvalidArgument(m) | Error::BadRequest(m) => m.clone(),
            Error::InvalidPurge(_, m) | Error::Api { message: m, .. } => m.clone(),
            Error::InvalidRange { .. } => "The requested range cannot be satisfied.".into(),
            Error::MethodNotAllowed => "The specified method is not allowed.".into(),
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
                OriginError::Upstream(_) | OriginError::Io(_) => "The origin failed to serve the object.".into(),
                OriginError::Config(_) => "Internal error.".into(),
            },
            Error::Overloaded => "The server is busy; retry later.".into(),
            Error::Timeout => "The request took too long.".into(),
            Error::Internal(_) => "Internal error.".into(),
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
}
