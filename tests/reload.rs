//! Issue 16 item 3: SIGHUP reloads the config file (and the `IMGEDGE_*` overlay) without
//! a restart: live settings swap at once under load with no failed request, a broken
//! config is refused with one error line and the old settings stay, restart-only keys
//! are named in a warning, and SIGHUP no longer kills the process.

use crate::binary::{http, sigterm, spawn};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

const IMAGE: &str = "giunchedi_srgb_icc.jpg";

/// Replaces the config file in one step (a reader never sees half of it).
fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn hangup(child: &Child) {
    let ok = Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
}

/// Log lines up to and including the first that contains `needle` (30 s at most).
fn lines_until(rx: &Receiver<String>, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no log line with {needle:?}; saw {seen:#?}"));
        let done = line.contains(needle);
        seen.push(line);
        if done {
            return seen;
        }
    }
}

fn get(addr: &str, pq: &str) -> String {
    http(addr, &format!("GET {pq} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
}

fn purge(admin: &str, token: &str) -> String {
    let body = r#"{"paths":["/hello.txt"]}"#;
    http(
        admin,
        &format!(
            "POST /purge HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// One request on a kept-alive connection; returns the status line.
fn keep_alive_get(reader: &mut BufReader<TcpStream>, pq: &str) -> String {
    let request = format!("GET {pq} HTTP/1.1\r\nHost: t\r\n\r\n");
    reader.get_mut().write_all(request.as_bytes()).unwrap();
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    status.trim_end().to_owned()
}

fn config_text(generation: usize) -> String {
    let mut styles = String::from("small = \"image/resize,w_16\"\n");
    for g in 1..=generation {
        styles.push_str(&format!("s{g} = \"image/resize,w_{}\"\n", 10 + g));
    }
    format!(
        "purge_token = \"token-{generation}\"\n\
         [cache]\nttl_rules = [{{ kind = \"extension\", value = \"txt\", ttl_secs = {} }}]\n\
         [styles]\n{styles}",
        100 + generation
    )
}

/// (1) Reloads under load: a client sends requests the whole time (a processed image by
/// style and a plain file) while the config changes token, styles and TTL rules and
/// SIGHUP arrives four times. No request fails, a connection opened before the reloads
/// still serves after them, and the last config is in effect.
#[test]
fn reload_under_load_fails_no_request_and_applies_the_new_settings() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imgedge.toml");
    write_config(&cfg, &config_text(0));
    let (mut child, addr, admin, rx) = spawn(&["--config", cfg.to_str().unwrap()], &[]);
    let unknown = get(&addr, &format!("/{IMAGE}?x-oss-process=style/s4"));
    assert!(unknown.starts_with("HTTP/1.1 4"), "a style not yet configured: {unknown}");
    let mut kept = BufReader::new(TcpStream::connect(&addr).unwrap());
    assert_eq!(keep_alive_get(&mut kept, "/hello.txt"), "HTTP/1.1 200 OK");

    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    let client = {
        let (stop, progress, addr) = (Arc::clone(&stop), Arc::clone(&progress), addr.clone());
        std::thread::spawn(move || {
            let (mut sent, mut failed) = (0usize, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && sent < 20_000 && Instant::now() < deadline {
                let pq =
                    if sent % 2 == 0 { format!("/{IMAGE}?x-oss-process=style/small") } else { "/hello.txt".into() };
                let resp = get(&addr, &pq);
                if !resp.starts_with("HTTP/1.1 200") {
                    failed.push(format!("{pq}: {}", resp.lines().next().unwrap_or("(no answer)")));
                }
                sent += 1;
                progress.store(sent, Ordering::Relaxed);
            }
            (sent, failed)
        })
    };
    for generation in 1..=4 {
        // Let the client get well under way between reloads (bounded in time).
        let (before, waited) = (progress.load(Ordering::Relaxed), Instant::now());
        while progress.load(Ordering::Relaxed) < before + 50 && waited.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(5));
        }
        write_config(&cfg, &config_text(generation));
        hangup(&child);
        lines_until(&rx, "configuration reloaded");
    }
    stop.store(true, Ordering::Relaxed);
    let (sent, failed) = client.join().unwrap();
    assert!(sent >= 200, "only {sent} requests");
    assert!(failed.is_empty(), "{} of {sent} requests failed: {failed:?}", failed.len());

    assert_eq!(keep_alive_get(&mut kept, "/hello.txt"), "HTTP/1.1 200 OK");
    assert!(purge(&admin, "token-0").starts_with("HTTP/1.1 401"), "the old token still works");
    assert!(purge(&admin, "token-4").starts_with("HTTP/1.1 200"), "the new token is refused");
    let styled = get(&addr, &format!("/{IMAGE}?x-oss-process=style/s4"));
    assert!(styled.starts_with("HTTP/1.1 200"), "{}", styled.lines().next().unwrap_or(""));
    // The purge emptied the entry; the refill takes the new TTL rule (txt: 104 s).
    let plain = get(&addr, "/hello.txt").to_ascii_lowercase();
    assert!(plain.contains("max-age=104"), "{plain}");
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}

/// (2) A config that does not parse, or does not validate, is refused with one error
/// line naming the problem; the old settings stay and the process serves on. A change
/// to a restart-only key is named in one warning and keeps its old value.
#[test]
fn a_broken_config_is_refused_and_the_old_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imgedge.toml");
    write_config(&cfg, "purge_token = \"good\"\n");
    let (mut child, addr, admin, rx) = spawn(&["--config", cfg.to_str().unwrap()], &[]);

    for (broken, problem) in [
        ("purge_token = [\n", "config file"),
        ("purge_token = \"\"\n", "purge_token must not be empty"),
        ("purge_token = \"x\"\nno_such_key = 1\n", "no_such_key"),
    ] {
        write_config(&cfg, broken);
        hangup(&child);
        let seen = lines_until(&rx, "reload refused");
        let errors: Vec<&String> = seen.iter().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].contains(problem), "{problem:?} not named: {}", errors[0]);
        assert!(get(&addr, "/hello.txt").starts_with("HTTP/1.1 200"));
        assert!(purge(&admin, "good").starts_with("HTTP/1.1 200"), "the old token no longer works");
        assert!(purge(&admin, "x").starts_with("HTTP/1.1 401"));
    }

    write_config(&cfg, "purge_token = \"next\"\n[cache]\nsize = \"600MiB\"\n");
    hangup(&child);
    let seen = lines_until(&rx, "configuration reloaded");
    let warnings: Vec<&String> = seen.iter().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{seen:#?}");
    assert!(warnings[0].contains("cache.size") && warnings[0].contains("restart"), "{}", warnings[0]);
    assert!(purge(&admin, "next").starts_with("HTTP/1.1 200"));
    assert!(child.try_wait().unwrap().is_none());
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}

/// (3) SIGHUP no longer kills the process; a reload can turn the access log off.
#[test]
fn sighup_keeps_the_process_and_switches_the_access_log() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imgedge.toml");
    write_config(&cfg, "access_log = true\n");
    let (mut child, addr, _admin, rx) = spawn(&["--config", cfg.to_str().unwrap()], &[]);
    hangup(&child);
    lines_until(&rx, "configuration reloaded");
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP ended the process");
    assert!(get(&addr, "/logged-before").starts_with("HTTP/1.1 404"));
    lines_until(&rx, "/logged-before");

    write_config(&cfg, "access_log = false\n");
    hangup(&child);
    lines_until(&rx, "configuration reloaded");
    assert!(get(&addr, "/not-logged-after").starts_with("HTTP/1.1 404"));
    // A further reload is a marker: every line the request wrote came before it.
    hangup(&child);
    let seen = lines_until(&rx, "configuration reloaded");
    assert!(!seen.iter().any(|l| l.contains("/not-logged-after")), "{seen:#?}");
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}

/// Sites and their access rules are live too: a deny rule added by a reload refuses the
/// next request, and removing it serves again.
#[test]
fn a_reload_changes_the_access_rules() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imgedge.toml");
    write_config(&cfg, "");
    let (mut child, addr, _admin, rx) = spawn(&["--config", cfg.to_str().unwrap()], &[]);
    assert!(get(&addr, "/hello.txt").starts_with("HTTP/1.1 200"));
    write_config(&cfg, "[[sites]]\nhosts = [\"t\"]\nip = { mode = \"deny\", networks = [\"127.0.0.0/8\"] }\n");
    hangup(&child);
    lines_until(&rx, "configuration reloaded");
    assert!(get(&addr, "/hello.txt").starts_with("HTTP/1.1 403"));
    write_config(&cfg, "");
    hangup(&child);
    lines_until(&rx, "configuration reloaded");
    assert!(get(&addr, "/hello.txt").starts_with("HTTP/1.1 200"));
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}
