//! Issue 2: the `imgedge` binary itself: flags, config errors, the access log and
//! graceful shutdown on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn imgedge() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imgedge"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// Starts the binary on port 0 and reads the bound addresses from its log.
pub(crate) fn spawn(
    args: &[&str],
    envs: &[(&str, &str)],
) -> (Child, String, String, std::sync::mpsc::Receiver<String>) {
    spawn_command(imgedge(), args, envs)
}

/// [`spawn`] for a given command (another executable path or working directory).
pub(crate) fn spawn_command(
    command: Command,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (Child, String, String, std::sync::mpsc::Receiver<String>) {
    let (child, serving, rx) = spawn_serving(command, args, envs);
    (child, serving.field("listen"), serving.field("admin"), rx)
}

/// The binary's "imgedge serving" log line, which names the bound addresses.
pub(crate) struct Serving(String);

impl Serving {
    /// A `name=value` field of the line ("listen", "admin", "tls").
    pub(crate) fn field(&self, name: &str) -> String {
        let start = self.0.find(&format!(" {name}=")).unwrap() + name.len() + 2;
        self.0[start..].split_whitespace().next().unwrap().to_owned()
    }
}

/// Starts `command` with extra flags on port 0 and waits (30 s at most) for its
/// "imgedge serving" line; returns the child, that line and the rest of its log. A
/// server that does not start is killed and its stderr is the panic message.
pub(crate) fn spawn_serving(
    mut command: Command,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (Child, Serving, std::sync::mpsc::Receiver<String>) {
    let mut child = command
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(args)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let mut err = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("server did not start: {err}");
            }
        };
        if line.contains("imgedge serving") {
            return (child, Serving(line), rx);
        }
    }
}

pub(crate) fn http(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn sigterm(child: &Child) {
    signal(child, "-TERM");
}

/// Sends `sig` (as `kill` spells it: "-TERM", "-HUP", "-QUIT") to the child.
pub(crate) fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success());
}

#[test]
fn help_documents_every_flag() {
    let out = imgedge().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--admin-listen",
        "--origin",
        "--cache-size",
        "--purge-token",
        "--config",
        "--ttl-rule",
        "--max-cacheable-size",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn bad_flags_and_config_keys_fail_naming_them() {
    let out = imgedge().arg("--cache-sise").arg("1").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cache-sise"));

    let out = imgedge().args(["--cache-size", "12XB"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("12XB"));

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imgedge.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\n[cache]\nszie = \"1MiB\"\n").unwrap();
    let out = imgedge().arg("--config").arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("szie"), "{}", String::from_utf8_lossy(&out.stderr));

    let out = imgedge().args(["--origin", "/definitely/not/here"]).output().unwrap();
    assert!(!out.status.success());

    // Issue 7: an admin listener off loopback without a token refuses to start.
    let out = imgedge().args(["--admin-listen", "0.0.0.0:0"]).env_remove("IMGEDGE_PURGE_TOKEN").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("purge_token"));
}

#[test]
fn config_file_is_read_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imgedge.toml");
    std::fs::write(&cfg, "origin = \"/definitely/not/here\"\n[cache]\nsize = \"64MiB\"\n").unwrap();
    // The file's origin is bad, the flag's is good: the flag wins and it starts.
    let (mut child, addr, _admin, _rx) = spawn(&["--config", cfg.to_str().unwrap(), "--origin", "fixtures"], &[]);
    let resp = http(&addr, "GET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}

#[test]
fn access_log_has_one_line_per_request_and_no_secrets() {
    let token = "tok-7f3a9c-very-secret";
    let (mut child, addr, admin, rx) = spawn(&[], &[("IMGEDGE_PURGE_TOKEN", token)]);
    let resp = http(
        &addr,
        "GET /hello.txt?auth_key=1700000000-0-0-deadbeefsig HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"));
    let body = r#"{"paths":["/hello.txt"]}"#;
    let purge = format!(
        "POST /purge HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert!(http(&admin, &purge).starts_with("HTTP/1.1 200"));
    sigterm(&child);
    assert!(child.wait().unwrap().success());
    let lines: Vec<String> = rx.iter().collect();
    // Lines are bare combined-format lines (issue 16 item 4); the query is logged with
    // the auth parameter's value redacted (tests/access_log.rs has every field).
    let access: Vec<&String> = lines.iter().filter(|l| l.contains(" request_id=")).collect();
    assert_eq!(access.len(), 2, "{lines:#?}");
    let get = access[0];
    for part in ["\"GET /hello.txt?auth_key=REDACTED HTTP/1.1\" 200 ", "cache=\"MISS TCP_MISS\"", "request_time="] {
        assert!(get.contains(part), "{part} missing in {get}");
    }
    for line in &lines {
        assert!(!line.contains(token), "token logged: {line}");
        assert!(!line.contains("deadbeefsig"), "signature logged: {line}");
    }
}

/// A stop signal that arrives right after the "imgedge serving" line drains the node and
/// exits 0. The handlers used to be installed only when the accept loop first polled its
/// shutdown future; a SIGTERM before that met the default action (exit by signal 15, seen
/// once in a loaded CI run of the disk-tier tests, where the loop's thread was descheduled
/// while another worker answered the test's request). That needs preemption at the right
/// moment, so this test cannot force it; it repeats the stop-at-once case as a guard.
#[test]
fn sigterm_right_after_the_serving_line_is_a_graceful_stop() {
    let origin = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
    for round in 0..10 {
        let (mut child, _addr, _admin, _rx) = spawn(&["--origin", origin], &[]);
        sigterm(&child);
        let status = child.wait().unwrap();
        assert!(status.success(), "round {round}: {status:?}");
    }
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let size: u64 = 64 << 20;
    std::fs::File::create(dir.path().join("big.bin")).unwrap().set_len(size).unwrap();
    let (mut child, addr, _admin, _rx) =
        spawn(&["--origin", dir.path().to_str().unwrap(), "--max-cacheable-size", "1MiB"], &[]);
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let mut first = [0u8; 4096];
    let n = s.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    sigterm(&child);
    std::thread::sleep(Duration::from_millis(200));
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let header_end = first[..n].windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!((n - header_end + rest.len()) as u64, size, "in-flight body completed");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn sample_config_passes_check_config_and_bad_ones_fail() {
    // The sample names /srv/media (the service layout); the flag points it at the fixtures.
    let out = imgedge()
        .args(["--config", "assets/deploy/imgedge.toml", "--origin", "fixtures", "--check-config"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));
    let out = imgedge().args(["--check-config", "--origin", "ftp://nowhere"]).output().unwrap();
    assert!(!out.status.success());
}

pub(crate) fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Issue 7 (item 3): a bounded burst of 4x more misses than workers and queue hold
/// keeps the real server's peak memory under a budget, and it recovers afterwards.
#[test]
fn overload_burst_stays_under_the_memory_budget_and_recovers() {
    let photos = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus/photos");
    let (mut child, addr, _admin, _rx) = spawn(&["--origin", photos, "--workers", "2", "--cache-size", "64MiB"], &[]);
    let big = "/seeding_by_Clements_Engelhardt_16mp_progressive.jpg";
    let threads: Vec<_> = (0..48)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let req = format!(
                    "GET {big}?x-oss-process=image/resize,w_{} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                    300 + i
                );
                http(&addr, &req)
            })
        })
        .collect();
    let statuses: Vec<String> =
        threads.into_iter().map(|t| t.join().unwrap().split_whitespace().nth(1).unwrap_or("").to_owned()).collect();
    assert!(statuses.iter().all(|s| s == "200" || s == "503"), "{statuses:?}");
    assert!(statuses.iter().any(|s| s == "200"));
    // Budget: 64 MiB cache + 2 workers' decoded sources + runtime overhead.
    let peak_mib = vm_hwm_kib(child.id()) / 1024;
    assert!(peak_mib < 400, "peak RSS {peak_mib} MiB");
    let after = http(
        &addr,
        &format!("GET {big}?x-oss-process=image/resize,w_99 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    );
    assert!(after.starts_with("HTTP/1.1 200"), "recovers");
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}
