//! Alibaba Cloud OSS origin: bucket addressing, object-key encoding and per-request
//! signing (V4 by default, V1 on request) through [`super::sign`].
//!
//! Addressing (spec d): `virtual` sends `Host: <bucket>.<endpoint>` and path `/<key>`
//! (the only style real OSS accepts); `cname` sends the endpoint (a custom domain bound
//! to the bucket) as Host and path `/<key>`; `path` sends `/<bucket>/<key>` to the
//! endpoint (for OSS-compatible test servers). Whatever the addressing, the signed
//! resource / canonical URI is `/<bucket>/<key>`.
//!
//! Every request carries `x-oss-range-behavior: standard` (RFC range semantics); Range,
//! validators and Host stay unsigned (recommended origin-signing profile). Without
//! credentials requests go out unsigned (public-read buckets).

use super::http::{signed_request, HttpClient, LocalStringToSign};
use super::sign::{self, Credentials, SignInput};
use super::{Addressing, Endpoint, FetchRequest, Fetched, OriginError};
use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use std::time::SystemTime;

/// Which OSS signature to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureVersion {
    /// HMAC-SHA1, `Authorization: OSS id:sig` (older setups).
    V1,
    /// OSS4-HMAC-SHA256 (default).
    V4,
}

/// An OSS bucket as origin.
#[derive(Debug)]
pub struct OssOrigin {
    bucket: String,
    endpoint: Endpoint,
    region: String,
    version: SignatureVersion,
    addressing: Addressing,
    credentials: Option<Credentials>,
    client: HttpClient,
}

impl OssOrigin {
    /// Creates the origin. `region` is the id without `oss-` (e.g. `cn-beijing`).
    ///
    /// # Errors
    /// `OriginError::Config` for an invalid bucket name or empty region.
    pub fn new(
        bucket: &str,
        endpoint: Endpoint,
        region: &str,
        version: SignatureVersion,
        addressing: Addressing,
        credentials: Option<Credentials>,
        client: HttpClient,
    ) -> Result<Self, OriginError> {
        super::check_bucket(bucket, false)?;
        if region.is_empty() && version == SignatureVersion::V4 {
            return Err(OriginError::Config("OSS V4 signing needs region=".into()));
        }
        let region = region.strip_prefix("oss-").unwrap_or(region).to_owned();
        Ok(OssOrigin { bucket: bucket.to_owned(), endpoint, region, version, addressing, credentials, client })
    }

    /// Credential-free description for logs.
    pub fn describe(&self) -> String {
        format!(
            "oss bucket {} at {} (region {}, {:?}, {}, {})",
            self.bucket,
            self.endpoint,
            self.region,
            self.version,
            self.addressing.as_str(),
            if self.credentials.is_some() { "signed" } else { "anonymous" }
        )
    }

    /// Host header and wire path for a key.
    pub fn target(&self, key: &str) -> (String, String) {
        let encoded = sign::uri_encode(key, true);
        match self.addressing {
            Addressing::Virtual => (format!("{}.{}", self.bucket, self.endpoint.host), format!("/{encoded}")),
            Addressing::Cname => (self.endpoint.host.clone(), format!("/{encoded}")),
            Addressing::Path => (self.endpoint.host.clone(), format!("/{}/{encoded}", self.bucket)),
        }
    }

    /// Builds one signed request. `query` is stripped of URL-signature parameters
    /// first: OSS refuses a request signed both ways.
    ///
    /// # Errors
    /// `OriginError::Config` when a header value cannot be encoded.
    pub fn build_request(
        &self,
        method: &str,
        key: &str,
        query: &[(String, String)],
        extra: &[(String, String)],
        now: SystemTime,
    ) -> Result<Request<Empty<Bytes>>, OriginError> {
        let query = sign::strip_signature_params(query);
        let (host, path) = self.target(key);
        let mut headers: Vec<(String, String)> = vec![("x-oss-range-behavior".into(), "standard".into())];
        let mut local = None;
        headers.extend(extra.iter().cloned());
        if let Some(creds) = &self.credentials {
            let input = SignInput { method, bucket: &self.bucket, key, query: &query, headers: &headers };
            let signed = match self.version {
                SignatureVersion::V1 => sign::oss_v1_header(&input, creds, now),
                SignatureVersion::V4 => sign::oss_v4_header(&input, creds, &self.region, now, &[]),
            };
            headers.extend(signed.headers);
            local = Some(LocalStringToSign(signed.string_to_sign));
        }
        let url = format!("{}://{}{}{}", self.endpoint.scheme, host, path, super::encode_query(&query));
        signed_request(method, &url, &host, &headers, local)
    }

    /// Fetches one object (GET or HEAD), signing every attempt afresh.
    ///
    /// # Errors
    /// See [`OriginError`].
    pub async fn fetch(&self, req: &FetchRequest<'_>) -> Result<Fetched, OriginError> {
        let method = if req.head_only { "HEAD" } else { "GET" };
        self.client.fetch(req, |extra| self.build_request(method, req.key, &[], extra, SystemTime::now())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::OriginConfig;

    fn origin(addressing: Addressing, version: SignatureVersion) -> OssOrigin {
        let ep = Endpoint::parse("oss-cn-hangzhou.aliyuncs.com").unwrap();
        let creds = Credentials::new("LTAI5tExampleAccessKeyID", "ExampleAccessKeySecret0123456789Abcd");
        let client = HttpClient::new(&OriginConfig::default()).unwrap();
        OssOrigin::new("examplebucket", ep, "cn-hangzhou", version, addressing, Some(creds), client).unwrap()
    }

    #[test]
    fn addressing_styles() {
        let key = "uploads/u1/my photo+1.jpg";
        assert_eq!(
            origin(Addressing::Virtual, SignatureVersion::V4).target(key),
            ("examplebucket.oss-cn-hangzhou.aliyuncs.com".into(), "/uploads/u1/my%20photo%2B1.jpg".into())
        );
        assert_eq!(
            origin(Addressing::Path, SignatureVersion::V4).target(key),
            ("oss-cn-hangzhou.aliyuncs.com".into(), "/examplebucket/uploads/u1/my%20photo%2B1.jpg".into())
        );
        assert_eq!(origin(Addressing::Cname, SignatureVersion::V4).target("a").0, "oss-cn-hangzhou.aliyuncs.com");
    }

    #[tokio::test]
    async fn requests_match_the_vectors_signatures() {
        // oss-v4-header-01 and oss-v1-header-01 plus the range-behavior header: the
        // signed resource does not depend on addressing.
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_714_979_289);
        for addressing in [Addressing::Virtual, Addressing::Cname, Addressing::Path] {
            let r =
                origin(addressing, SignatureVersion::V4).build_request("GET", "photos/cat.jpg", &[], &[], now).unwrap();
            let auth = r.headers()["authorization"].to_str().unwrap();
            assert!(auth.starts_with("OSS4-HMAC-SHA256 Credential=LTAI5tExampleAccessKeyID/20240506/cn-hangzhou/oss/aliyun_v4_request,Signature="), "{auth}");
            assert_eq!(r.headers()["x-oss-range-behavior"], "standard");
            assert_eq!(r.headers()["x-oss-content-sha256"], "UNSIGNED-PAYLOAD");
        }
        let r = origin(Addressing::Virtual, SignatureVersion::V1)
            .build_request("GET", "photos/cat.jpg", &[], &[], now)
            .unwrap();
        assert!(r.headers()["authorization"].to_str().unwrap().starts_with("OSS LTAI5tExampleAccessKeyID:"));
        assert_eq!(r.uri().to_string(), "https://examplebucket.oss-cn-hangzhou.aliyuncs.com/photos/cat.jpg");
    }

    #[tokio::test]
    async fn client_signature_params_are_not_forwarded() {
        let q = vec![("Signature".to_owned(), "x".to_owned()), ("versionId".to_owned(), "v 1".to_owned())];
        let r = origin(Addressing::Virtual, SignatureVersion::V4)
            .build_request("GET", "k", &q, &[], SystemTime::now())
            .unwrap();
        assert_eq!(r.uri().query(), Some("versionId=v%201"));
    }
}
