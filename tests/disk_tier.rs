//! Issue 17 items 1-4: the disk tier (L2) under the memory cache, with the real binary.
//! A disk hit answers `X-Cache: HIT TCP_HIT` and is promoted to memory; entries survive
//! SIGTERM and SIGKILL; damaged disk files and a full disk never serve bad bytes or a
//! 5xx; purges (file, ignore_params, directory, regex, soft) reach the disk and stay
//! applied across SIGKILL and restart.

use crate::binary::{http, sigterm, spawn};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const TOKEN: &str = "disk-tier-token";

struct Node {
    child: Child,
    listen: String,
    admin: String,
    log: Receiver<String>,
}

fn start(origin: &Path, disk: &Path, size: &str) -> Node {
    let (child, listen, admin, log) = spawn(
        &[
            "--origin",
            origin.to_str().unwrap(),
            "--disk-cache",
            disk.to_str().unwrap(),
            "--disk-cache-size",
            size,
            "--ttl-rule",
            "ext:txt,bin:3600",
            "--purge-token",
            TOKEN,
        ],
        &[],
    );
    Node { child, listen, admin, log }
}

impl Node {
    fn get(&self, pq: &str) -> Resp {
        parse(&http(&self.listen, &format!("GET {pq} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")))
    }

    fn admin_get(&self, pq: &str) -> String {
        http(
            &self.admin,
            &format!("GET {pq} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"),
        )
    }

    fn purge(&self, json: &str) {
        let out = http(
            &self.admin,
            &format!(
                "POST /purge HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                json.len()
            ),
        );
        assert!(out.starts_with("HTTP/1.1 200"), "purge {json}: {out}");
    }

    fn metric(&self, name: &str) -> u64 {
        let text = self.admin_get("/metrics");
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    /// Waits until foyer's flushers have written at least `bytes` and the count stands
    /// still (bounded: 20 s).
    fn wait_flushed(&self, bytes: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = 0;
        while Instant::now() < deadline {
            let now = self.metric("imgedge_disk_written_bytes_total");
            if now >= bytes && now == last {
                return;
            }
            last = now;
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("disk writes did not reach {bytes} bytes (at {last})");
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn term(mut self) {
        sigterm(&self.child);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Resp {
    status: u16,
    x_cache: String,
    body: Vec<u8>,
}

fn parse(raw: &str) -> Resp {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let x_cache = head
        .lines()
        .find_map(|l| l.strip_prefix("x-cache: ").or_else(|| l.strip_prefix("X-Cache: ")))
        .unwrap_or("")
        .to_owned();
    Resp { status, x_cache, body: body.as_bytes().to_vec() }
}

fn write(origin: &Path, name: &str, body: &[u8]) {
    let p = origin.join(name.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

/// Text bodies only (the helper reads responses as UTF-8): distinct per URL.
fn body_of(i: usize, len: usize) -> Vec<u8> {
    let mut out = format!("object {i}:").into_bytes();
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(b'a' + (x % 26) as u8);
    }
    out
}

#[test]
fn a_restart_after_sigterm_serves_from_disk_and_memory_hits_stay_mem_hits() {
    let origin = tempfile::tempdir().unwrap();
    let disk = tempfile::tempdir().unwrap();
    for i in 0..20 {
        write(origin.path(), &format!("/o/{i}.txt"), &body_of(i, 3000));
    }
    let node = start(origin.path(), disk.path(), "64MiB");
    for i in 0..20 {
        let r = node.get(&format!("/o/{i}.txt"));
        assert_eq!((r.status, r.x_cache.as_str()), (200, "MISS TCP_MISS"));
        assert_eq!(node.get(&format!("/o/{i}.txt")).x_cache, "HIT TCP_MEM_HIT");
    }
    node.term();
    // The origin no longer has them: only the disk can answer.
    std::fs::remove_dir_all(origin.path().join("o")).unwrap();
    let node = start(origin.path(), disk.path(), "64MiB");
    for i in 0..20 {
        let r = node.get(&format!("/o/{i}.txt"));
        assert_eq!((r.status, r.x_cache.as_str()), (200, "HIT TCP_HIT"), "/o/{i}.txt after restart");
        assert_eq!(r.body, body_of(i, 3000));
        // Promoted: the next hit is from memory.
        assert_eq!(node.get(&format!("/o/{i}.txt")).x_cache, "HIT TCP_MEM_HIT");
    }
    assert!(node.metric("imgedge_disk_hits_total") >= 20);
    let requests = node.admin_get("/metrics");
    assert!(requests.contains("cache=\"disk_hit\""), "hits by tier in imgedge_requests_total");
    node.term();
}

#[test]
fn explain_names_the_tier_that_answers() {
    let origin = tempfile::tempdir().unwrap();
    let disk = tempfile::tempdir().unwrap();
    write(origin.path(), "/e.txt", b"explained");
    let node = start(origin.path(), disk.path(), "64MiB");
    assert_eq!(node.get("/e.txt").status, 200);
    assert!(node.admin_get("/explain?url=http://t/e.txt").contains("\"tier\":\"memory\""));
    node.term();
    let node = start(origin.path(), disk.path(), "64MiB");
    let out = node.admin_get("/explain?url=http://t/e.txt");
    assert!(out.contains("\"tier\":\"disk\""), "{out}");
    node.term();
}

#[test]
fn sigkill_during_a_write_burst_keeps_what_was_written_and_nothing_corrupt() {
    let origin = tempfile::tempdir().unwrap();
    let disk = tempfile::tempdir().unwrap();
    let n_first = 100;
    let n_burst = 400;
    for i in 0..n_first + n_burst {
        write(origin.path(), &format!("/k/{i}.txt"), &body_of(i, 500 + (i * 37) % 6000));
    }
    let node = start(origin.path(), disk.path(), "64MiB");
    for i in 0..n_first {
        assert_eq!(node.get(&format!("/k/{i}.txt")).status, 200);
    }
    node.wait_flushed(n_first as u64 * 4096);
    // A burst from another thread; SIGKILL lands in the middle of it.
    let listen = node.listen.clone();
    let burst = std::thread::spawn(move || {
        for i in n_first..n_first + n_burst {
            let _ = std::panic::catch_unwind(|| {
                http(&listen, &format!("GET /k/{i}.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
            });
        }
    });
    std::thread::sleep(Duration::from_millis(150));
    node.kill();
    let _ = burst.join();
    let node = start(origin.path(), disk.path(), "64MiB");
    let mut from_disk = 0;
    for i in 0..n_first + n_burst {
        let r = node.get(&format!("/k/{i}.txt"));
        assert_eq!(r.status, 200);
        assert_eq!(r.body, body_of(i, 500 + (i * 37) % 6000), "/k/{i}.txt");
        assert!(r.x_cache == "HIT TCP_HIT" || r.x_cache == "MISS TCP_MISS", "{}", r.x_cache);
        if i < n_first {
            assert_eq!(r.x_cache, "HIT TCP_HIT", "/k/{i}.txt was written before the kill");
        }
        from_disk += usize::from(r.x_cache == "HIT TCP_HIT");
    }
    println!("after SIGKILL: {from_disk} of {} URLs from disk ({n_first} written before the burst)", n_first + n_burst);
    node.term();
}

#[test]
fn purges_reach_the_disk_and_survive_sigkill() {
    let origin = tempfile::tempdir().unwrap();
    let disk = tempfile::tempdir().unwrap();
    let urls = [
        "/d/a.txt",     // directory purge (force)
        "/d/sub/b.txt", // directory purge (force)
        "/f/one.txt",   // file purge
        "/q/v.txt?v=1", // ignore_params purge
        "/q/v.txt?v=2", // ignore_params purge
        "/r/x1.txt",    // regex purge (force)
        "/s/soft.txt",  // soft directory purge: revalidated
        "/keep/k.txt",  // not purged: still a disk hit
    ];
    for u in urls {
        write(origin.path(), u.split('?').next().unwrap(), b"old");
    }
    let node = start(origin.path(), disk.path(), "64MiB");
    for u in urls {
        assert_eq!(node.get(u).body, b"old");
    }
    node.wait_flushed(7 * 4096);
    node.term();
    // Restart so the entries are on disk only, then purge and kill at once.
    let node = start(origin.path(), disk.path(), "64MiB");
    node.purge(r#"{"type":"directory","paths":["/d/"],"force":true}"#);
    node.purge(r#"{"type":"file","paths":["/f/one.txt"]}"#);
    node.purge(r#"{"type":"ignore_params","paths":["/q/v.txt"]}"#);
    node.purge(r#"{"type":"regex","paths":["/r/x[0-9]"],"force":true}"#);
    node.purge(r#"{"type":"directory","paths":["/s/"]}"#);
    node.kill();
    for u in urls {
        write(origin.path(), u.split('?').next().unwrap(), b"new");
    }
    let node = start(origin.path(), disk.path(), "64MiB");
    for u in &urls[..7] {
        let r = node.get(u);
        assert_eq!((r.status, std::str::from_utf8(&r.body).unwrap()), (200, "new"), "{u} resurrected ({})", r.x_cache);
    }
    let kept = node.get("/keep/k.txt");
    assert_eq!((kept.x_cache.as_str(), kept.body.as_slice()), ("HIT TCP_HIT", b"old".as_slice()));
    node.term();
}

#[test]
fn a_fill_after_a_purge_is_stored_and_served_from_disk_again() {
    let origin = tempfile::tempdir().unwrap();
    let disk = tempfile::tempdir().unwrap();
    write(origin.path(), "/d/a.txt", b"v1");
    let node = start(origin.path(), disk.path(), "64MiB");
    assert_eq!(node.get("/d/a.txt").body, b"v1");
    node.purge(r#"{"type":"directory","paths":["/d/"],"force":true}"#);
    write(origin.path(), "/d/a.txt", b"v2");
    assert_eq!(node.get("/d/a.txt").body, b"v2");
    node.wait_flushed(2 * 4096);
    node.term();
    let node = start(origin.path(), disk.path(), "64MiB");
    let r = node.get("/d/a.txt");
    assert_eq!((r.x_cache.as_str(), r.body.as_slice()), ("HIT TCP_HIT", b"v2".as_slice()));
    node.term();
}

/// A tiny xorshift: the damage is the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Flips bytes, zeroes ranges ("deletes parts") and truncates the disk tier's block
/// files at `places` random places. Damage lands where data is (the written prefix).
fn damage(dir: &Path, rng: &mut Rng, places: usize) -> [usize; 3] {
    use std::io::{Read, Seek, SeekFrom, Write};
    let files: Vec<_> = files_under(dir).into_iter().filter(|p| p.metadata().unwrap().len() > 0).collect();
    let mut done = [0usize; 3];
    for _ in 0..places {
        let path = &files[rng.below(files.len() as u64) as usize];
        let mut f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
        let len = f.metadata().unwrap().len();
        if len == 0 {
            continue;
        }
        // Most writes are near the start of each block file: aim there mostly.
        let span = if rng.below(4) == 0 { len } else { len.min(1 << 20) };
        let at = rng.below(span);
        match rng.below(10) {
            0..=4 => {
                let mut b = [0u8; 1];
                f.seek(SeekFrom::Start(at)).unwrap();
                let _ = f.read(&mut b).unwrap();
                b[0] ^= 1 << rng.below(8);
                f.seek(SeekFrom::Start(at)).unwrap();
                f.write_all(&b).unwrap();
                done[0] += 1;
            }
            5..=8 => {
                let n = 1 + rng.below(8192);
                f.seek(SeekFrom::Start(at)).unwrap();
                f.write_all(&vec![0u8; n.min(len - at) as usize]).unwrap();
                done[1] += 1;
            }
            _ => {
                f.set_len(at).unwrap();
                done[2] += 1;
            }
        }
    }
    done
}

#[test]
fn damaged_disk_files_never_serve_bad_bytes() {
    let origin = tempfile::tempdir().unwrap();
    let disk = tempfile::tempdir().unwrap();
    let n = 300;
    let len = |i: usize| 200 + (i * 7919) % 30_000;
    for i in 0..n {
        write(origin.path(), &format!("/c/{i}.txt"), &body_of(i, len(i)));
    }
    let mut rng = Rng(0x5EED_D15C_0000_0017);
    let mut totals = [0usize; 3];
    let mut hits_per_round = Vec::new();
    // Four rounds of 250 places: 1,000 in all, each round between two runs.
    for round in 0..5 {
        let node = start(origin.path(), disk.path(), "64MiB");
        let mut hits = 0;
        for i in 0..n {
            let r = node.get(&format!("/c/{i}.txt"));
            assert_eq!(r.status, 200, "round {round} /c/{i}.txt");
            assert!(r.body == body_of(i, len(i)), "round {round}: /c/{i}.txt served wrong bytes ({})", r.x_cache);
            assert!(r.x_cache == "HIT TCP_HIT" || r.x_cache == "MISS TCP_MISS", "{}", r.x_cache);
            hits += usize::from(r.x_cache == "HIT TCP_HIT");
        }
        hits_per_round.push(hits);
        if round > 0 {
            assert!(node.metric("imgedge_disk_lookups_total") >= n as u64);
        }
        // SIGTERM flushes what is queued.
        node.term();
        if round < 4 {
            let d = damage(&disk.path().join("blocks"), &mut rng, 250);
            for k in 0..3 {
                totals[k] += d[k];
            }
        }
    }
    println!(
        "damage: {} flips, {} zeroed ranges, {} truncations; disk hits per round {hits_per_round:?}",
        totals[0], totals[1], totals[2]
    );
    assert_eq!(totals.iter().sum::<usize>(), 1000);
    assert!(hits_per_round[1] > 0, "undamaged records still served from disk");
}

/// Unmounts the tmpfs when the test ends, however it ends.
struct Mount(std::path::PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A tmpfs of `size` mounted on a fresh temporary directory, unmounted when dropped.
fn tmpfs(size: &str) -> (tempfile::TempDir, Mount) {
    let mnt = tempfile::tempdir().unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", mnt.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(ok.success(), "mounting a tmpfs needs root (CI runs the suite as root)");
    let guard = Mount(mnt.path().to_owned());
    (mnt, guard)
}

/// The warning lines the node logged so far that name the disk cache and `word`.
fn warned(node: &Node, word: &str) -> bool {
    let mut saw = false;
    while let Ok(l) = node.log.try_recv() {
        saw |= l.contains("WARN") && l.contains("disk cache") && l.contains(word);
    }
    saw
}

#[test]
fn a_full_disk_degrades_to_memory_and_origin_with_a_log_line_and_a_metric() {
    let origin = tempfile::tempdir().unwrap();
    // Dropped in reverse order: the node is killed before the tmpfs is unmounted.
    let (mnt, _mount) = tmpfs("16m");
    let n = 40;
    let len = 300_000;
    for i in 0..n {
        write(origin.path(), &format!("/big/{i}.bin"), &body_of(i, len));
    }
    // The disk tier is told it has 64 MiB; the file system has 16: 12 MB of distinct
    // bodies fill it past the reserve (4 MiB + one 4 MiB block) long before the tier's
    // own eviction would start.
    let node = start(origin.path(), &mnt.path().join("disk"), "64MiB");
    for round in 0..2 {
        for i in 0..n {
            let r = node.get(&format!("/big/{i}.bin"));
            assert_eq!(r.status, 200, "round {round} /big/{i}.bin: {}", r.x_cache);
            assert!(r.body == body_of(i, len), "round {round} /big/{i}.bin: wrong bytes ({})", r.x_cache);
        }
    }
    let full = node.metric("imgedge_disk_errors_total{kind=\"full\"}");
    let writes = node.metric("imgedge_disk_writes_total");
    println!("full disk: {writes} of {n} bodies queued for disk, {full} writes skipped");
    assert!(full > 0, "skipped writes counted");
    assert!(writes > 0 && writes < n as u64, "{writes} writes: some before the disk filled, not all");
    assert!(warned(&node, "full"), "a warning names the full disk");
    node.term();
}

/// Block files cut short under a running node (its file descriptors stay open, so
/// every read past the new end fails or comes back short): each request is still the
/// correct body, from the origin, with a warning and a counted disk error; never a 5xx.
#[test]
fn io_errors_under_a_running_node_degrade_to_origin_with_a_log_line_and_a_metric() {
    let origin = tempfile::tempdir().unwrap();
    let disk = tempfile::tempdir().unwrap();
    let n = 60;
    let len = |i: usize| 1000 + (i * 4099) % 20_000;
    for i in 0..n {
        write(origin.path(), &format!("/io/{i}.txt"), &body_of(i, len(i)));
    }
    let node = start(origin.path(), disk.path(), "64MiB");
    for i in 0..n {
        assert_eq!(node.get(&format!("/io/{i}.txt")).status, 200);
    }
    node.term();
    // Restarted: memory is empty, the disk holds every body.
    let node = start(origin.path(), disk.path(), "64MiB");
    assert_eq!(node.get("/io/0.txt").x_cache, "HIT TCP_HIT", "the disk answers before the damage");
    let files = files_under(&disk.path().join("blocks"));
    for f in &files {
        std::fs::OpenOptions::new().write(true).open(f).unwrap().set_len(0).unwrap();
    }
    let mut refetched = 0;
    for i in 1..n {
        let r = node.get(&format!("/io/{i}.txt"));
        assert_eq!(r.status, 200, "/io/{i}.txt: {}", r.x_cache);
        assert!(r.body == body_of(i, len(i)), "/io/{i}.txt served wrong bytes ({})", r.x_cache);
        assert_eq!(r.x_cache, "MISS TCP_MISS", "/io/{i}.txt: nothing is left on disk to hit");
        refetched += 1;
    }
    let errors: u64 = ["io", "corrupt", "key_mismatch"]
        .iter()
        .map(|k| node.metric(&format!("imgedge_disk_errors_total{{kind=\"{k}\"}}")))
        .sum();
    println!("I/O errors: {refetched} refetches, {errors} disk errors counted ({} block files cut)", files.len());
    assert!(errors > 0, "the failed reads are counted");
    assert!(warned(&node, "served from memory and origin"), "a warning names the failing disk");
    // Memory still serves what was refetched.
    assert_eq!(node.get("/io/1.txt").x_cache, "HIT TCP_MEM_HIT");
    node.term();
}

/// A second process on the same disk-cache directory refuses to start (exit 2, one
/// line) rather than writing into blocks the first one owns.
#[test]
fn a_second_process_on_the_same_disk_directory_refuses_to_start() {
    let origin = tempfile::tempdir().unwrap();
    let disk = tempfile::tempdir().unwrap();
    let node = start(origin.path(), disk.path(), "64MiB");
    let mut second = Command::new(env!("CARGO_BIN_EXE_imgedge"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--origin"])
        .arg(origin.path())
        .args(["--disk-cache", disk.path().to_str().unwrap(), "--disk-cache-size", "64MiB"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("the second process started on a directory in use");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("in use by another imgedge process"), "{err}");
    // The first node is unharmed.
    write(origin.path(), "/l.txt", b"locked");
    assert_eq!(node.get("/l.txt").body, b"locked");
    node.term();
}

/// Issue 17 item 2, measured (not asserted): restart-to-first-disk-hit with 10k and 100k
/// entries on disk. The disk tier is filled through the library (the same record the
/// binary writes), then the real binary is started on it and asked for one of them
/// until it answers; printed: foyer's open (recovery) time from the log and the time
/// from process spawn to the first `TCP_HIT`.
/// Run: `cargo test --release --test main disk_tier::restart_to_first_disk_hit -- --ignored --nocapture`
#[test]
#[ignore = "measurement; prints numbers"]
fn restart_to_first_disk_hit() {
    use imgedge::cache::disk::Disk;
    use imgedge::cache::{CacheKey, Entry};
    for n in [10_000usize, 100_000] {
        let origin = tempfile::tempdir().unwrap();
        let disk = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let fill_started = Instant::now();
        rt.block_on(async {
            let d = Disk::open(disk.path(), 2 << 30).await.unwrap();
            for i in 0..n {
                let e = Entry::new(
                    CacheKey::new("t", &format!("/m/{i}.txt"), None, None, None, &[]),
                    http::StatusCode::OK,
                    bytes::Bytes::from(format!("small body {i}")),
                    "text/plain".into(),
                    None,
                    None,
                    None,
                    Duration::from_secs(86_400),
                );
                d.put(&e, d.seq());
                if i % 2000 == 1999 {
                    // Let the flushers keep up (foyer drops what overflows its queue).
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            d.close().await;
        });
        let fill = fill_started.elapsed();
        let t0 = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_imgedge"))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--origin"])
            .arg(origin.path())
            .args(["--disk-cache", disk.path().to_str().unwrap(), "--disk-cache-size", "2GiB"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::BufRead;
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut listen = String::new();
        let mut open_ms = String::new();
        for line in stdout.lines().map_while(Result::ok) {
            if let Some(i) = line.find("open_ms=") {
                open_ms = line[i + 8..].split_whitespace().next().unwrap_or("").to_owned();
            }
            if let Some(i) = line.find("listen=") {
                listen = line[i + 7..].split_whitespace().next().unwrap().to_owned();
                break;
            }
        }
        let mut found = 0;
        let mut first = None;
        for i in [n / 2, 0, n - 1, 17, n / 3] {
            let r = parse(&http(&listen, &format!("GET /m/{i}.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")));
            if first.is_none() {
                first = Some(t0.elapsed());
            }
            found += usize::from(r.x_cache == "HIT TCP_HIT" && r.body == format!("small body {i}").as_bytes());
        }
        let first = first.unwrap();
        let files = files_under(disk.path()).iter().map(|p| p.metadata().map_or(0, |m| m.len())).sum::<u64>();
        println!(
            "{n} entries (filled in {fill:?}, {} MB of files): disk open {open_ms} ms, spawn to first disk hit {first:?}, {found}/5 probes TCP_HIT",
            files >> 20
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}
