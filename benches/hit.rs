//! The cache-hit path (criterion): a processed JPEG served from the response cache,
//! (1) in process — request parse, cache key, lookup, response headers — and (2) as a
//! whole HTTP/1.1 keep-alive round trip on loopback with hyper on both ends.
//! Run with `cargo bench --bench hit`. The side-by-side figure against nginx is in
//! BENCHMARKS.md (`hot` cell).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, Method, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use imgedge::origin::Origin;
use imgedge::request::ObjectRequest;
use imgedge::{fill, respond, App, Config};

const PQ: &str = "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,m_lfit,w_400,h_400/format,jpg/quality,Q_80";

fn app() -> Arc<App> {
    let fixtures = format!("{}/fixtures", env!("CARGO_MANIFEST_DIR"));
    let config = Config { origin: fixtures.clone(), access_log: false, ..Config::default() };
    Arc::new(App::new(config, Origin::from_spec(&fixtures).unwrap()))
}

fn in_process(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let app = app();
    let uri: Uri = PQ.parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(http::header::HOST, "media.example.com".parse().unwrap());
    let serve = |app: &Arc<App>| {
        let req = ObjectRequest::parse(&Method::GET, &uri, &headers, &app.live().chains).unwrap();
        let served = rt.block_on(fill::serve_object(app, &req)).unwrap();
        respond::respond(app, &req, served, Instant::now()).unwrap()
    };
    let first = serve(&app);
    assert_eq!(first.headers()["x-cache"], "MISS TCP_MISS");
    let mut g = c.benchmark_group("cache_hit");
    g.bench_function("in_process_parse_lookup_respond", |b| {
        b.iter(|| {
            let resp = serve(&app);
            debug_assert_eq!(resp.headers()["x-cache"], "HIT TCP_MEM_HIT");
            resp
        })
    });
    g.finish();
}

fn over_loopback(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let app = app();
    let (public, admin) = rt.block_on(async {
        (
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
    });
    let url: Uri = format!("http://{}{PQ}", public.local_addr().unwrap()).parse().unwrap();
    rt.spawn(imgedge::serve(public, admin, Arc::clone(&app), std::future::pending()));
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let get = || async {
        let resp = client.get(url.clone()).await.unwrap();
        let cache = resp.headers()["x-cache"].clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (cache, body.len())
    };
    rt.block_on(get());
    let mut g = c.benchmark_group("cache_hit");
    g.bench_function("http1_keepalive_round_trip", |b| {
        b.iter(|| {
            let (cache, len) = rt.block_on(get());
            debug_assert_eq!(cache, "HIT TCP_MEM_HIT");
            len
        })
    });
    g.finish();
}

criterion_group!(benches, in_process, over_loopback);
criterion_main!(benches);
