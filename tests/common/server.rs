//! Starts imgedge in-process on 127.0.0.1:0 and gives a small HTTP client.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use imgedge::origin::Origin;
use imgedge::{App, Config};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A finished response.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn x_cache(&self) -> &str {
        self.header("x-cache")
    }
}

/// A folder origin in a temporary directory holding `files` (`name` may have folders).
pub fn tmp_origin(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    dir
}

/// Path of the repository's fixtures folder.
pub fn fixtures() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures").to_owned()
}

/// The embedded watermark fonts, loaded once per test binary (as main.rs does once per
/// process).
pub fn fonts() -> Arc<imgedge::process::Fonts> {
    static FONTS: std::sync::OnceLock<Arc<imgedge::process::Fonts>> = std::sync::OnceLock::new();
    Arc::clone(FONTS.get_or_init(|| Arc::new(imgedge::process::Fonts::embedded().expect("embedded fonts"))))
}

/// Starts a server on the fixtures folder with default config.
pub async fn start() -> TestServer {
    start_with(fixtures(), |_| {}).await
}

/// Starts a server on `origin` (a folder), after `tweak` edits the config.
pub async fn start_with(origin: impl AsRef<Path>, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = Config::default();
    config.origin = origin.as_ref().display().to_string();
    tweak(&mut config);
    config.validate().expect("test config is valid");
    let origin = Origin::from_spec(&config.origin).expect("origin opens");
    start_app(config, origin).await
}

/// Starts a server with a ready origin.
pub async fn start_app(config: Config, origin: Origin) -> TestServer {
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = Arc::new(App::new(config, origin).with_fonts(fonts()));
    serve_app(public, admin, app)
}

/// Serves a ready app on bound listeners (tests that build the app themselves).
pub fn serve_app(public: tokio::net::TcpListener, admin: tokio::net::TcpListener, app: Arc<App>) -> TestServer {
    let addr = public.local_addr().unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serve_app = Arc::clone(&app);
    let task = tokio::spawn(async move {
        imgedge::serve(public, admin, serve_app, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let client = Client::builder(TokioExecutor::new()).build_http();
    TestServer { addr, admin: admin_addr, app, stop: Some(stop), task: Some(task), client }
}

impl TestServer {
    /// Public URL for a path-and-query.
    pub fn url(&self, pq: &str) -> String {
        format!("http://{}{}", self.addr, pq)
    }

    /// Admin URL.
    pub fn admin_url(&self, pq: &str) -> String {
        format!("http://{}{}", self.admin, pq)
    }

    /// Sends a request and reads the whole body.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> TestResponse {
        let mut b = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = self.client.request(b.body(Full::new(body.into())).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        TestResponse { status, headers, body }
    }

    /// GET on the public listener.
    pub async fn get(&self, pq: &str) -> TestResponse {
        self.send(Method::GET, &self.url(pq), &[], Bytes::new()).await
    }

    /// GET with headers.
    pub async fn get_with(&self, pq: &str, headers: &[(&str, &str)]) -> TestResponse {
        self.send(Method::GET, &self.url(pq), headers, Bytes::new()).await
    }

    /// HEAD on the public listener.
    pub async fn head(&self, pq: &str) -> TestResponse {
        self.send(Method::HEAD, &self.url(pq), &[], Bytes::new()).await
    }

    /// POST JSON to the admin listener.
    pub async fn admin_json(&self, path: &str, json: serde_json::Value, token: Option<&str>) -> TestResponse {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        self.send(Method::POST, &self.admin_url(path), &headers, json.to_string()).await
    }

    /// Sends raw bytes on a fresh TCP connection and returns the status line's code.
    /// Used for paths an HTTP client library would normalise.
    pub async fn raw_status(&self, request_line_path: &str) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let req = format!("GET {request_line_path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out);
        text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
