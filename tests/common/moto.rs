//! A real S3-compatible server for tests: moto's `moto_server` (PyPI `moto[server]`),
//! started by the test itself on `127.0.0.1:0` with SigV4 verification switched on.
//!
//! Found as `$MOTO_SERVER`, else `<crate>/.venv/bin/moto_server`, else `moto_server`
//! on PATH. When it is missing the test is skipped locally, but under `CI=true` it
//! fails: CI must install it (`python3 -m venv .venv && .venv/bin/pip install
//! 'moto[server]==5.2.1'`).
//!
//! Authentication: moto checks signatures only for keys of IAM users it knows, after
//! `INITIAL_NO_AUTH_ACTION_COUNT` unauthenticated calls. We spend exactly those calls on
//! CreateUser, CreateAccessKey and PutUserPolicy; every request after that must carry
//! a valid SigV4 signature.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use imgedge::origin::sign::{self, Credentials, S3Target, SignInput};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

/// A running moto server, killed on drop.
pub struct Moto {
    child: Child,
    /// `127.0.0.1:port`.
    pub host: String,
    /// Credentials of the IAM user created for the test (full S3 access).
    pub creds: Credentials,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Path of `moto_server`, if installed.
pub fn find_moto_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("moto_server")).find(|p| p.is_file())
}

impl Moto {
    /// Starts moto, or returns None (skip) when it is not installed outside CI.
    ///
    /// # Panics
    /// When moto is missing under `CI=true`, or does not start.
    pub async fn start() -> Option<Moto> {
        let Some(bin) = find_moto_server() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "moto_server not found under CI=true: install it with \
                 `python3 -m venv .venv && .venv/bin/pip install 'moto[server]==5.2.1'`"
            );
            eprintln!("SKIP: moto_server not installed (python3 -m venv .venv && .venv/bin/pip install 'moto[server]==5.2.1')");
            return None;
        };
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Werkzeug prints the bound address and then one access-log line per request
        // on stderr: keep draining it so the pipe never fills.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("Running on http://").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(rest.trim().to_owned());
                    }
                }
            }
        });
        let host = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(h) => h,
            Err(_) => {
                let _ = child.kill();
                panic!("moto_server did not start within 60 s");
            }
        };
        let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let mut moto = Moto { child, host, creds: Credentials::new("", ""), client };
        moto.create_iam_user().await;
        Some(moto)
    }

    async fn iam(&self, form: &str) -> String {
        // moto routes by the credential scope's service; the signature of these first
        // calls is not checked (INITIAL_NO_AUTH_ACTION_COUNT).
        let req = http::Request::post(format!("http://{}/", self.host))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=00",
            )
            .body(Full::new(Bytes::from(format!("{form}&Version=2010-05-08"))))
            .unwrap();
        let (status, body) = self.send(req).await;
        assert_eq!(status, 200, "IAM {form}: {body}");
        body
    }

    async fn create_iam_user(&mut self) {
        self.iam("Action=CreateUser&UserName=imgedge").await;
        let keys = self.iam("Action=CreateAccessKey&UserName=imgedge").await;
        let id = imgedge::origin::http::xml_element(&keys, "AccessKeyId").unwrap().to_owned();
        let secret = imgedge::origin::http::xml_element(&keys, "SecretAccessKey").unwrap().to_owned();
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        let encoded = sign::uri_encode(policy, false);
        self.iam(&format!("Action=PutUserPolicy&UserName=imgedge&PolicyName=all&PolicyDocument={encoded}")).await;
        self.creds = Credentials::new(id, secret);
    }

    async fn send(&self, req: http::Request<Full<Bytes>>) -> (u16, String) {
        let resp = self.client.request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// A SigV4-signed path-style PUT (bucket when `key` is None, else object).
    pub async fn put(&self, bucket: &str, key: Option<&str>, body: &[u8], content_type: &str) -> (u16, String) {
        let path = match key {
            Some(k) => sign::s3_path(Some(bucket), k),
            None => format!("/{bucket}"),
        };
        let headers = if key.is_some() { vec![("content-type".to_owned(), content_type.to_owned())] } else { vec![] };
        let input = SignInput { method: "PUT", bucket, key: key.unwrap_or(""), query: &[], headers: &headers };
        let target = S3Target { host: &self.host, path: &path };
        let hash = hex::encode(Sha256::digest(body));
        let signed = sign::aws_v4_header(&input, &target, &self.creds, "us-east-1", SystemTime::now(), &hash);
        let mut b = http::Request::put(format!("http://{}{path}", self.host)).header("host", &self.host);
        for (n, v) in headers.iter().chain(&signed.headers) {
            b = b.header(n.as_str(), v.as_str());
        }
        self.send(b.body(Full::new(Bytes::copy_from_slice(body))).unwrap()).await
    }
}
