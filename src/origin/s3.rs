//! S3-compatible origin (AWS S3, MinIO, OSS's S3 API, moto): addressing and AWS
//! SigV4 signing through [`super::sign`].
//!
//! Unlike OSS, the SigV4 canonical URI is the path *as sent*: `/<key>` for
//! virtual-hosted requests, `/<bucket>/<key>` for path style. `host` is always signed,
//! so the Host header is set explicitly to exactly the signed value. Like botocore,
//! Range and the validators are signed too (they are `SignedHeaders` entries, which
//! S3 requires to be present, so nothing can strip them in between). Without
//! credentials requests go out unsigned (public buckets).

use super::http::{signed_request, HttpClient, LocalStringToSign};
use super::sign::{self, Credentials, S3Target, SignInput};
use super::{Addressing, Endpoint, FetchRequest, Fetched, OriginError};
use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use std::time::SystemTime;

/// An S3 bucket as origin.
#[derive(Debug)]
pub struct S3Origin {
    bucket: String,
    endpoint: Endpoint,
    region: String,
    addressing: Addressing,
    credentials: Option<Credentials>,
    client: HttpClient,
}

impl S3Origin {
    /// Creates the origin.
    ///
    /// # Errors
    /// `OriginError::Config` for an invalid bucket, `cname` addressing or no region.
    pub fn new(
        bucket: &str,
        endpoint: Endpoint,
        region: &str,
        addressing: Addressing,
        credentials: Option<Credentials>,
        client: HttpClient,
    ) -> Result<Self, OriginError> {
        super::check_bucket(bucket, true)?;
        if addressing == Addressing::Cname {
            return Err(OriginError::Config("s3 origins support addressing=virtual or path".into()));
        }
        if region.is_empty() {
            return Err(OriginError::Config("s3 origins need region=".into()));
        }
        Ok(S3Origin { bucket: bucket.to_owned(), endpoint, region: region.to_owned(), addressing, credentials, client })
    }

    /// Credential-free description for logs.
    pub fn describe(&self) -> String {
        format!(
            "s3 bucket {} at {} (region {}, {}, {})",
            self.bucket,
            self.endpoint,
            self.region,
            self.addressing.as_str(),
            if self.credentials.is_some() { "signed" } else { "anonymous" }
        )
    }

    /// Host header and wire path for a key.
    pub fn target(&self, key: &str) -> (String, String) {
        match self.addressing {
            Addressing::Path => (self.endpoint.host.clone(), sign::s3_path(Some(&self.bucket), key)),
            Addressing::Virtual | Addressing::Cname => {
                (format!("{}.{}", self.bucket, self.endpoint.host), sign::s3_path(None, key))
            }
        }
    }

    /// Builds one signed request.
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
        let mut headers: Vec<(String, String)> = extra.to_vec();
        let mut local = None;
        if let Some(creds) = &self.credentials {
            let input = SignInput { method, bucket: &self.bucket, key, query: &query, headers: &headers };
            let target = S3Target { host: &host, path: &path };
            let signed = sign::aws_v4_header(&input, &target, creds, &self.region, now, sign::EMPTY_SHA256);
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

    #[test]
    fn path_style_request_matches_vector_aws_sigv4_header_04() {
        let client = HttpClient::new(&OriginConfig::default()).unwrap();
        let creds = Credentials::new("LTAI5tExampleAccessKeyID", "ExampleAccessKeySecret0123456789Abcd");
        let ep = Endpoint::parse("http://127.0.0.1:9000").unwrap();
        let o = S3Origin::new("media", ep, "us-east-1", Addressing::Path, Some(creds), client).unwrap();
        let extra = vec![("if-none-match".to_owned(), "\"d41d8cd98f00b204e9800998ecf8427e\"".to_owned())];
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_714_979_289);
        let r = o.build_request("GET", "uploads/u1/a b.jpg", &[], &extra, now).unwrap();
        assert_eq!(r.uri().to_string(), "http://127.0.0.1:9000/media/uploads/u1/a%20b.jpg");
        assert_eq!(r.headers()["host"], "127.0.0.1:9000");
        assert_eq!(
            r.headers()["authorization"],
            "AWS4-HMAC-SHA256 Credential=LTAI5tExampleAccessKeyID/20240506/us-east-1/s3/aws4_request, SignedHeaders=host;if-none-match;x-amz-content-sha256;x-amz-date, Signature=f927de3f97587541d04545bbf258a11ea0b8724588603002982848b537df898a"
        );
    }
}
