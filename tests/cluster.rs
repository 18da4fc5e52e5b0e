//! Issue 18: several nodes as one CDN tier. Each test starts its own redis-server
//! (Debian's, on a free loopback port, no persistence unless said) and three imgedge
//! nodes in-process on loopback ports, joined through it.

use crate::common::mock_origin::{Fault, FaultOrigin};
use crate::common::server::{fonts, serve_app, TestServer};
use imgedge::cache::CacheKey;
use imgedge::origin::Origin;
use imgedge::{App, Config};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "test-cluster-secret-0123456789";
const HOST: &str = "img.test";

/// A redis-server child on 127.0.0.1:`port`, killed when dropped.
struct Redis {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut r = Redis { port, child: None, dir: tempfile::tempdir().unwrap() };
        r.restart();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (tests/run.sh installs it)");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < until, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        let out =
            Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One node of the test cluster.
async fn node(id: &str, redis: &str, origin: &str, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = Config::default();
    config.origin = origin.to_owned();
    config.access_log = false;
    config.cluster.redis = Some(redis.to_owned());
    config.cluster.node_id = Some(id.to_owned());
    config.cluster.advertise = Some(format!("http://{}", public.local_addr().unwrap()));
    config.cluster.secret = Some(SECRET.into());
    config.cluster.heartbeat_ms = 200;
    config.cluster.member_ttl_ms = 1000;
    tweak(&mut config);
    config.validate().unwrap();
    let origin = Origin::from_spec(&config.origin).unwrap();
    let cluster = imgedge::cluster::Cluster::connect(&config.cluster).await.unwrap();
    let app = Arc::new(App::new(config, origin).with_fonts(fonts()).with_cluster(cluster));
    imgedge::cluster::start(&app).await.unwrap();
    serve_app(public, admin, app)
}

/// A restartable node's app (not serving): id "disk", cursor in `state_dir`.
async fn restartable_app(redis: String, origin: String, state_dir: std::path::PathBuf) -> Arc<App> {
    let mut config = Config::default();
    config.origin = origin;
    config.cluster.redis = Some(redis);
    config.cluster.node_id = Some("disk".into());
    config.cluster.advertise = Some("http://127.0.0.1:9".into());
    config.cluster.secret = Some(SECRET.into());
    config.cluster.state_dir = Some(state_dir);
    let cluster = imgedge::cluster::Cluster::connect(&config.cluster).await.unwrap();
    let origin = Origin::from_spec(&config.origin).unwrap();
    Arc::new(App::new(config, origin).with_cluster(cluster))
}

async fn three(redis: &Redis, origin: &str) -> Vec<TestServer> {
    let mut nodes = Vec::new();
    for id in ["n1", "n2", "n3"] {
        nodes.push(node(id, &redis.url(), origin, |_| {}).await);
    }
    wait_for_members(&nodes, 3).await;
    nodes
}

/// Waits (bounded) until every node's ring has `n` members.
async fn wait_for_members(nodes: &[TestServer], n: usize) {
    let until = Instant::now() + Duration::from_secs(10);
    while !nodes.iter().all(|s| s.app.cluster.as_ref().unwrap().ring().members().len() == n) {
        assert!(Instant::now() < until, "rings did not reach {n} members");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn jpeg() -> Vec<u8> {
    std::fs::read("fixtures/libvips_rotation_6_progressive_icc.jpg").unwrap()
}

fn metric(app: &App, name: &str) -> f64 {
    let text = app.stats.render(app);
    text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

fn encodes(nodes: &[TestServer]) -> f64 {
    nodes.iter().map(|s| metric(&s.app, "imgedge_process_stage_seconds_count{stage=\"encode\"}")).sum()
}

fn plain_key(path: &str) -> CacheKey {
    CacheKey::new(HOST, path, None, None, None, &[])
}

/// A plain-URL cache entry with a text body, kept 10 minutes.
fn text_entry(path: &str, body: &'static [u8]) -> Arc<imgedge::cache::Entry> {
    Arc::new(imgedge::cache::Entry::new(
        plain_key(path),
        http::StatusCode::OK,
        bytes::Bytes::from_static(body),
        "text/plain".into(),
        None,
        None,
        None,
        Duration::from_secs(600),
    ))
}

async fn get(s: &TestServer, pq: &str) -> crate::common::server::TestResponse {
    s.get_with(pq, &[("host", HOST)]).await
}

/// Item 2: 50 concurrent requests for one new rendition spread evenly over 3 nodes
/// cost one origin GET and one encode; all are 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_over_three_nodes_costs_one_origin_get_and_one_encode() {
    let redis = Redis::start();
    // A slow first answer, so the whole burst arrives while the fill runs.
    let origin = FaultOrigin::start(jpeg(), vec![Fault::Delay(Duration::from_millis(400))]).await;
    let nodes = Arc::new(three(&redis, &origin.url()).await);
    let pq = "/burst/a.jpg?x-oss-process=image/resize,w_64/format,png";
    let mut tasks = Vec::new();
    for i in 0..50 {
        let nodes = Arc::clone(&nodes);
        tasks.push(tokio::spawn(async move {
            let r = get(&nodes[i % 3], pq).await;
            (r.status.as_u16(), r.body.len())
        }));
    }
    for t in tasks {
        let (status, len) = t.await.unwrap();
        assert_eq!(status, 200);
        assert!(len > 0);
    }
    assert_eq!(origin.requests(), 1, "one origin GET for the whole cluster");
    assert_eq!(encodes(&nodes), 1.0, "one encode for the whole cluster");
    let forwards: f64 = nodes.iter().map(|s| metric(&s.app, "imgedge_cluster_forwards_total")).sum();
    assert_eq!(forwards, 2.0, "one forward from each non-owner");
    // The non-owners keep a hot copy: a repeat is a hit there, without a hop.
    for s in nodes.iter() {
        assert!(get(s, pq).await.x_cache().starts_with("HIT"));
    }
    assert_eq!(nodes.iter().map(|s| metric(&s.app, "imgedge_cluster_forwards_total")).sum::<f64>(), 2.0);
}

/// Item 2: a forged or missing signature is not a hop (the node forwards it as any
/// request, and its access rules apply); only a signed hop is trusted.
#[test]
fn forward_signatures_are_checked() {
    let v = imgedge::cluster::forward::sign(SECRET.as_bytes(), "n1", HOST, "/a.jpg", 100);
    assert!(imgedge::cluster::forward::verify(SECRET.as_bytes(), 30, &v, "GET", HOST, "/a.jpg", 100));
    assert!(!imgedge::cluster::forward::verify(b"wrong-secret-0123456", 30, &v, "GET", HOST, "/a.jpg", 100));
}

/// Item 3: a purge on any node reaches every node; prints the p99 time until no node
/// holds the purged entry (measured, not asserted: the bound is 50 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purges_sent_to_any_node_reach_every_node() {
    let redis = Redis::start();
    let origin = FaultOrigin::start(&b"hello cluster"[..], vec![]).await;
    let nodes = three(&redis, &origin.url()).await;
    let mut took = Vec::new();
    for i in 0..100 {
        let path = format!("/p/obj{i}.txt");
        for s in &nodes {
            assert_eq!(get(s, &path).await.status, 200);
        }
        let key = plain_key(&path);
        assert!(nodes.iter().all(|s| s.app.cache.get(&key).is_some()), "warmed everywhere");
        let via = &nodes[i % 3];
        let started = Instant::now();
        let r = via.admin_json("/purge", serde_json::json!({"type": "file", "paths": [path]}), None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let until = Instant::now() + Duration::from_secs(5);
        while nodes.iter().any(|s| s.app.cache.get(&key).is_some()) {
            assert!(Instant::now() < until, "purge {i} did not reach every node");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        took.push(started.elapsed());
    }
    took.sort();
    println!("cluster purge, 100 purges over 3 nodes: p50 {:?} p99 {:?} max {:?}", took[49], took[98], took[99]);
    // A CDN-API style purge goes through the stream too (its form is the same record).
    assert!(redis.cli(&["XLEN", "imgedge:purges"]).parse::<u64>().unwrap() >= 100);
}

/// Item 4: Redis killed → nodes serve hits and misses, purges answer 503; Redis
/// back → purges work again and reach the other nodes, without restarting anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_keeps_serving_refuses_purges_and_recovers() {
    let mut redis = Redis::start();
    let origin = FaultOrigin::start(&b"body"[..], vec![]).await;
    let nodes = three(&redis, &origin.url()).await;
    for s in &nodes {
        assert_eq!(get(s, "/r/hit.txt").await.status, 200);
    }
    redis.kill();
    for (i, s) in nodes.iter().enumerate() {
        assert_eq!(get(s, "/r/hit.txt").await.status, 200, "hit with Redis down");
        assert_eq!(get(s, &format!("/r/miss{i}.txt")).await.status, 200, "miss with Redis down");
    }
    let purge = serde_json::json!({"type": "file", "paths": ["/r/hit.txt"]});
    let r = nodes[0].admin_json("/purge", purge.clone(), None).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), "1");
    assert!(nodes[0].app.cache.get(&plain_key("/r/hit.txt")).is_some(), "a refused purge purges nothing");
    redis.restart();
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let r = nodes[0].admin_json("/purge", purge.clone(), None).await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503);
        assert!(Instant::now() < until, "purges did not come back with Redis");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let key = plain_key("/r/hit.txt");
    let until = Instant::now() + Duration::from_secs(15);
    while nodes.iter().any(|s| s.app.cache.get(&key).is_some()) {
        assert!(Instant::now() < until, "the purge did not reach the other nodes after Redis came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Membership came back too.
    wait_for_members(&nodes, 3).await;
}

/// 60 requests for new keys, spread over `nodes`; their statuses.
async fn burst(round: usize, nodes: &[TestServer]) -> Vec<u16> {
    let futs: Vec<_> = (0..60)
        .map(|i| {
            let s = &nodes[i % nodes.len()];
            async move { get(s, &format!("/k/{round}/{i}.txt")).await.status.as_u16() }
        })
        .collect();
    futures_util::future::join_all(futs).await
}

/// Item 4: a node killed mid-burst → its keys move after the member TTL, and no
/// request to the surviving nodes fails meanwhile (forwards fall back to local fills).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_drops_out_and_no_request_fails() {
    let redis = Redis::start();
    let origin = FaultOrigin::start(&b"body"[..], vec![]).await;
    let mut nodes = three(&redis, &origin.url()).await;
    let dead = nodes.remove(1);
    let kill = async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        dead.app.cluster.as_ref().unwrap().stop();
        dead.stop().await;
    };
    // Killed mid-burst: the survivors' requests all succeed.
    let (statuses, ()) = tokio::join!(burst(0, &nodes), kill);
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    // Right after the kill the survivors still route some keys to it, and fall back.
    assert!(burst(1, &nodes).await.iter().all(|&s| s == 200));
    let fallbacks: f64 = nodes.iter().map(|s| metric(&s.app, "imgedge_cluster_forward_fallbacks_total")).sum();
    assert!(fallbacks > 0.0, "some keys were owned by the dead node");
    wait_for_members(&nodes, 2).await;
    assert!(burst(2, &nodes).await.iter().all(|&s| s == 200));
    let after: f64 = nodes.iter().map(|s| metric(&s.app, "imgedge_cluster_forward_fallbacks_total")).sum();
    assert_eq!(after, fallbacks, "once the ring moved, nothing is routed to the dead node");
}

/// Graceful leave: a node shut down with SIGTERM (`Cluster::leave`) leaves every peer's
/// ring at their next heartbeat, long before its membership key would expire (30 s
/// here), and the survivors then route nothing to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_leaves_drops_out_of_every_ring_at_the_next_heartbeat() {
    let redis = Redis::start();
    let origin = FaultOrigin::start(&b"body"[..], vec![]).await;
    let mut nodes = Vec::new();
    for id in ["n1", "n2", "n3"] {
        nodes.push(node(id, &redis.url(), &origin.url(), |c| c.cluster.member_ttl_ms = 30_000).await);
    }
    wait_for_members(&nodes, 3).await;
    let gone = nodes.remove(1);
    gone.app.cluster.as_ref().unwrap().leave().await;
    assert_eq!(redis.cli(&["SMEMBERS", "imgedge:nodes"]).lines().count(), 2, "n2 left the set");
    assert_eq!(redis.cli(&["EXISTS", "imgedge:node:n2"]), "0");
    gone.stop().await;
    // Bounded at 10 s, a third of the membership TTL: only the leave can explain it.
    wait_for_members(&nodes, 2).await;
    assert!(burst(0, &nodes).await.iter().all(|&s| s == 200));
    let fallbacks: f64 = nodes.iter().map(|s| metric(&s.app, "imgedge_cluster_forward_fallbacks_total")).sum();
    assert_eq!(fallbacks, 0.0, "nothing was routed to the node that left");
}

/// The binary wires the leave into its shutdown: after SIGTERM (exit 0) its membership is
/// gone from Redis at once, not when its key's TTL runs out.
#[test]
fn the_binary_leaves_the_cluster_on_sigterm() {
    let redis = Redis::start();
    let origin = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let url = redis.url();
    let args = [
        "--origin",
        origin.path().to_str().unwrap(),
        "--cluster",
        url.as_str(),
        "--node-id",
        "b1",
        "--cluster-advertise",
        "http://127.0.0.1:9",
        "--cluster-state",
        state.path().to_str().unwrap(),
    ];
    let (mut child, _, _, _logs) = crate::binary::spawn(&args, &[("IMGEDGE_CLUSTER_SECRET", SECRET)]);
    let until = Instant::now() + Duration::from_secs(10);
    while redis.cli(&["SMEMBERS", "imgedge:nodes"]) != "b1" {
        assert!(Instant::now() < until, "the node did not join");
        std::thread::sleep(Duration::from_millis(50));
    }
    crate::binary::sigterm(&child);
    assert!(child.wait().unwrap().success());
    assert_eq!(redis.cli(&["SMEMBERS", "imgedge:nodes"]), "");
    assert_eq!(redis.cli(&["EXISTS", "imgedge:node:b1"]), "0", "left, not lapsing by TTL");
}

/// A node is announced only by its heartbeat, which starts once its start-up replay is
/// done: the first ring read does not register it (a peer forwarding to it then would
/// wait on a listener that does not accept yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_announces_itself_only_when_it_starts_serving() {
    use imgedge::cluster::membership::{refresh, Announce};
    let redis = Redis::start();
    let state = tempfile::tempdir().unwrap();
    let app = restartable_app(redis.url(), state.path().display().to_string(), state.path().join("cursor")).await;
    let cluster = app.cluster.clone().unwrap();
    refresh(&cluster, Announce::No).await;
    assert_eq!(redis.cli(&["SMEMBERS", "imgedge:nodes"]), "", "reading the ring registers nothing");
    imgedge::cluster::start(&app).await.unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while redis.cli(&["SMEMBERS", "imgedge:nodes"]) != "disk" {
        assert!(Instant::now() < until, "the heartbeat did not announce the node");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.leave().await;
    assert_eq!(redis.cli(&["SMEMBERS", "imgedge:nodes"]), "");
}

/// Item 4: a slow fill (here: a forward whose owner waits on a slow origin) never
/// stores what a purge issued meanwhile on a third node removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_fill_never_undoes_a_purge_from_another_node() {
    let redis = Redis::start();
    let origin = FaultOrigin::start(&b"old bytes"[..], vec![Fault::Delay(Duration::from_millis(800))]).await;
    let nodes = Arc::new(three(&redis, &origin.url()).await);
    // A path whose owner is not node 0, so node 0 forwards it.
    let (path, owner) = (0..100)
        .find_map(|i| {
            let path = format!("/slow/{i}.txt");
            let owner = nodes[0].app.cluster.as_ref().unwrap().remote_owner(&plain_key(&path).hash)?;
            Some((path, owner.id))
        })
        .unwrap();
    let third = nodes.iter().position(|s| {
        let id = &s.app.cluster.as_ref().unwrap().node_id;
        *id != owner && *id != "n1"
    });
    let third = third.unwrap();
    let fill = {
        let (nodes, path) = (Arc::clone(&nodes), path.clone());
        tokio::spawn(async move { get(&nodes[0], &path).await.status })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = nodes[third].admin_json("/purge", serde_json::json!({"type": "file", "paths": [path]}), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(fill.await.unwrap(), 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let key = plain_key(&path);
    for s in nodes.iter() {
        assert!(
            s.app.cache.get(&key).is_none(),
            "{} stored a fill that started before the purge",
            s.app.cluster.as_ref().unwrap().node_id
        );
    }
}

/// Item 3: a node that was down replays the purges it missed (from the cursor in its
/// state folder) before it serves; one whose cursor the stream was trimmed past
/// treats everything it holds as stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_replays_missed_purges_or_drops_everything_if_trimmed() {
    let redis = Redis::start();
    let origin = FaultOrigin::start(&b"body"[..], vec![]).await;
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_owned();
    let other = node("other", &redis.url(), &origin.url(), |_| {}).await;
    let restarted = |dir: std::path::PathBuf| restartable_app(redis.url(), origin.url(), dir);
    let entry = |path: &str| text_entry(path, b"kept across the restart");
    // First run: writes its cursor.
    let first = restarted(dir.clone()).await;
    imgedge::cluster::start(&first).await.unwrap();
    first.cluster.as_ref().unwrap().stop();
    assert!(dir.join("purge-cursor").exists());
    // While it is down, another node purges.
    let r = other.admin_json("/purge", serde_json::json!({"type": "file", "paths": ["/d/missed.txt"]}), None).await;
    assert_eq!(r.status, 200);
    // Restart with what its disk tier would bring back (stood in for by L1 here).
    let second = restarted(dir.clone()).await;
    second.cache.insert(entry("/d/missed.txt"), 0);
    second.cache.insert(entry("/d/kept.txt"), 0);
    imgedge::cluster::start(&second).await.unwrap();
    assert!(second.cache.get(&plain_key("/d/missed.txt")).is_none(), "the missed purge was replayed before serving");
    assert!(second.cache.get(&plain_key("/d/kept.txt")).is_some(), "nothing else was dropped");
    second.cluster.as_ref().unwrap().stop();
    // Down again; the stream is trimmed past its cursor.
    for i in 0..5 {
        let r =
            other.admin_json("/purge", serde_json::json!({"type": "file", "paths": [format!("/x{i}")]}), None).await;
        assert_eq!(r.status, 200);
    }
    assert!(redis.cli(&["XTRIM", "imgedge:purges", "MAXLEN", "0"]).parse::<u64>().unwrap() > 0);
    let third = restarted(dir.clone()).await;
    third.cache.insert(entry("/d/kept.txt"), 0);
    imgedge::cluster::start(&third).await.unwrap();
    assert!(third.cache.get(&plain_key("/d/kept.txt")).is_none(), "trimmed past the cursor: all stale");
    third.cluster.as_ref().unwrap().stop();
}

/// Item 6: the sample nginx config (`hash $request_uri consistent`) in front of three
/// independent nodes sends each URI to one node: one origin GET per URI, however many
/// times it is asked, and different URIs spread over the nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uri_hash_nginx_sends_each_uri_to_one_node() {
    let origin = FaultOrigin::start(&b"body"[..], vec![]).await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(crate::common::server::start_with(".", |c| c.origin = origin.url()).await);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let sample = std::fs::read_to_string("assets/deploy/nginx-uri-hash.conf").unwrap();
    let mut servers = nodes.iter().map(|s| format!("        server {} max_fails=2 fail_timeout=5s;", s.addr));
    let conf: Vec<String> = sample
        .lines()
        .map(|l| match l.trim_start() {
            t if t.starts_with("server 10.0.0.") => servers.next().unwrap(),
            "listen 80;" => format!("        listen 127.0.0.1:{port};"),
            "http {" => format!(
                "http {{\n    access_log off;\n    client_body_temp_path {0}/b;\n    proxy_temp_path {0}/p;\n    \
                 fastcgi_temp_path {0}/f;\n    uwsgi_temp_path {0}/u;\n    scgi_temp_path {0}/s;",
                dir.path().display()
            ),
            _ => l.to_owned(),
        })
        .collect();
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf.join("\n")).unwrap();
    let pid = dir.path().join("nginx.pid");
    let mut nginx = Command::new("nginx")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf_path)
        .arg("-g")
        .arg(format!("daemon off; pid {}; error_log stderr;", pid.display()))
        .stdout(Stdio::null())
        .spawn()
        .expect("nginx is installed");
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "nginx did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let fetch = |pq: String| {
        let client = client.clone();
        async move {
            let req = http::Request::get(format!("http://127.0.0.1:{port}{pq}"))
                .header("host", HOST)
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            client.request(req).await.unwrap().status().as_u16()
        }
    };
    for i in 0..30 {
        for _ in 0..4 {
            assert_eq!(fetch(format!("/u/{i}.txt?x=1")).await, 200);
        }
    }
    // TERM, not kill(): a SIGKILLed master leaves its workers running (holding the
    // test runner's stdout open, so `cargo test | tail` never ends).
    crate::binary::sigterm(&nginx);
    let _ = nginx.wait();
    assert_eq!(origin.requests(), 30, "each URI was fetched by one node only");
    let busy = nodes.iter().filter(|s| s.app.stats.origin_fetches() > 0).count();
    assert!(busy >= 2, "URIs spread over the nodes ({busy} of 3 used)");
}

/// Items 3 and 4 with the disk tier (issue 17): a node whose disk tier holds entries
/// that were purged while it was down replays the purge into its disk bans before it
/// serves, so the disk never brings the purged body back; trimmed past its cursor,
/// every disk entry it holds is stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_never_serves_from_disk_what_was_purged_while_it_was_down() {
    let redis = Redis::start();
    let origin = FaultOrigin::start(&b"body"[..], vec![]).await;
    let state = tempfile::tempdir().unwrap();
    let other = node("other", &redis.url(), &origin.url(), |_| {}).await;
    let (cursor_dir, disk_dir) = (state.path().join("cluster"), state.path().join("disk"));
    // One run of the node: its disk tier reopened from the same folder, then the
    // cluster's start-up replay, as main.rs orders them.
    let boot = || {
        let (url, o, cursor_dir, disk_dir) = (redis.url(), origin.url(), cursor_dir.clone(), disk_dir.clone());
        async move {
            let app = restartable_app(url, o, cursor_dir).await;
            let disk = imgedge::cache::disk::Disk::open(&disk_dir, 64 << 20).await.unwrap();
            app.cache.attach_disk(Arc::new(disk));
            imgedge::cluster::start(&app).await.unwrap();
            app
        }
    };
    let shut = |app: Arc<App>| async move {
        app.cluster.as_ref().unwrap().stop();
        app.cache.disk().unwrap().close().await;
    };
    let entry = |path: &str| text_entry(path, b"on disk across the restart");
    let on_disk = |app: &Arc<App>, path: &'static str| {
        let app = Arc::clone(app);
        async move { app.cache.get_from_disk(&plain_key(path)).await.is_some() }
    };

    let first = boot().await;
    for path in ["/d/missed.txt", "/d/kept.txt"] {
        assert!(first.cache.insert(entry(path), first.cache.epoch()));
    }
    shut(first).await;
    // While it is down, another node purges one of them.
    let r = other.admin_json("/purge", serde_json::json!({"type": "file", "paths": ["/d/missed.txt"]}), None).await;
    assert_eq!(r.status, 200);

    let second = boot().await;
    assert!(!on_disk(&second, "/d/missed.txt").await, "the missed purge reached the disk tier before serving");
    assert!(on_disk(&second, "/d/kept.txt").await, "the rest of the disk tier survived the restart");
    shut(second).await;

    // Down again; the stream is trimmed past its cursor.
    for i in 0..3 {
        let r =
            other.admin_json("/purge", serde_json::json!({"type": "file", "paths": [format!("/x{i}")]}), None).await;
        assert_eq!(r.status, 200);
    }
    assert!(redis.cli(&["XTRIM", "imgedge:purges", "MAXLEN", "0"]).parse::<u64>().unwrap() > 0);
    let third = boot().await;
    assert!(!on_disk(&third, "/d/kept.txt").await, "trimmed past the cursor: the disk tier is all stale");
    shut(third).await;
}

/// Item 1: a static `peers` list without Redis. Three nodes, each given the same list
/// (its own entry included, as one shared config file would): a burst spread over them
/// costs one origin GET and one encode, the non-owners forward to the owner. Purges
/// stay local without Redis (nothing distributes them): a purge on one node leaves the
/// others' copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn static_peers_route_misses_without_redis() {
    let origin =
        FaultOrigin::start(jpeg(), vec![Fault::Ok, Fault::Ok, Fault::Ok, Fault::Delay(Duration::from_millis(400))])
            .await;
    let mut listeners = Vec::new();
    for _ in 0..3 {
        let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listeners.push((public, admin));
    }
    let ids = ["s1", "s2", "s3"];
    let peers: Vec<String> =
        ids.iter().zip(&listeners).map(|(id, (p, _))| format!("{id}=http://{}", p.local_addr().unwrap())).collect();
    let mut nodes = Vec::new();
    for (id, (public, admin)) in ids.iter().zip(listeners) {
        let mut config = Config::default();
        config.origin = origin.url();
        config.access_log = false;
        config.cluster.node_id = Some((*id).to_owned());
        config.cluster.advertise = Some(format!("http://{}", public.local_addr().unwrap()));
        config.cluster.secret = Some(SECRET.into());
        config.cluster.peers = peers.clone();
        // A loaded 2-core CI box can starve a loopback accept past the 250 ms default,
        // and a forward that falls back fills locally (a second encode): not what this
        // test is about.
        config.cluster.connect_timeout_ms = 5000;
        config.validate().unwrap();
        assert!(config.cluster.redis.is_none());
        let origin = Origin::from_spec(&config.origin).unwrap();
        let cluster = imgedge::cluster::Cluster::connect(&config.cluster).await.unwrap();
        let app = Arc::new(App::new(config, origin).with_fonts(fonts()).with_cluster(cluster));
        imgedge::cluster::start(&app).await.unwrap();
        nodes.push(serve_app(public, admin, app));
    }
    for s in &nodes {
        assert_eq!(s.app.cluster.as_ref().unwrap().ring().members().len(), 3, "static ring of three");
    }
    // One request through every node first (the Redis tests get this settling time from
    // their membership wait).
    for (i, s) in nodes.iter().enumerate() {
        assert_eq!(get(s, &format!("/static/settle{i}.txt")).await.status, 200);
    }
    let forwards_before: f64 = nodes.iter().map(|s| metric(&s.app, "imgedge_cluster_forwards_total")).sum();
    let nodes = Arc::new(nodes);
    let pq = "/static/a.jpg?x-oss-process=image/resize,w_48/format,png";
    let mut tasks = Vec::new();
    for i in 0..30 {
        let nodes = Arc::clone(&nodes);
        tasks.push(tokio::spawn(async move { get(&nodes[i % 3], pq).await.status.as_u16() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let fallbacks: f64 = nodes.iter().map(|s| metric(&s.app, "imgedge_cluster_forward_fallbacks_total")).sum();
    assert_eq!(fallbacks, 0.0, "no forward fell back to a local fill");
    assert_eq!(origin.requests(), 4, "one origin GET for the static cluster (and 3 settling ones)");
    assert_eq!(encodes(&nodes), 1.0, "one encode for the static cluster");
    let forwards: f64 = nodes.iter().map(|s| metric(&s.app, "imgedge_cluster_forwards_total")).sum();
    assert_eq!(forwards - forwards_before, 2.0, "one forward from each non-owner");

    // Purges stay local: the node purged drops its copy, the others keep theirs.
    let path = "/static/p.txt";
    for s in nodes.iter() {
        assert_eq!(get(s, path).await.status, 200);
    }
    let key = plain_key(path);
    assert!(nodes.iter().all(|s| s.app.cache.get(&key).is_some()));
    let r = nodes[0].admin_json("/purge", serde_json::json!({"type": "file", "paths": [path]}), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(nodes[0].app.cache.get(&key).is_none(), "purged where it was sent");
    assert!(nodes[1..].iter().all(|s| s.app.cache.get(&key).is_some()), "without Redis a purge stays local");
}
