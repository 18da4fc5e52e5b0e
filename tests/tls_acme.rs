//! Issue 19 item 3: ACME against Debian's pebble on loopback, with a real tls-alpn-01
//! challenge answered by imgedge's HTTPS listener (pebble-challtestsrv resolves every
//! name to 127.0.0.1). imgedge starts before the CA is up (its first orders fail and are
//! retried), obtains a certificate, stores it 0600 in a 0700 state directory, serves it
//! by SNI, renews it before expiry (pebble is told to issue 20-second certificates),
//! keeps serving it once the CA is gone, and loads it from the state directory after a
//! restart.

use crate::tls::{connect, lines_until, pem_fingerprint, spawn, Pki, Trust};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const DOMAIN: &str = "acme.test";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills the child when dropped (a failing assertion must not leave pebble running).
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find_cert(state: &Path) -> std::path::PathBuf {
    std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "crt"))
        .expect("a certificate in the state directory")
}

/// Waits (bounded) until pebble's directory answers.
fn wait_for(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("port {port} never opened");
}

#[test]
fn acme_issues_by_tls_alpn_01_renews_and_keeps_serving_when_the_ca_is_gone() {
    let pki = Pki::new();
    let (pc, pk) = pki.leaf("pebble", &["localhost", "127.0.0.1"], false);
    let state = pki.dir.path().join("acme-state");
    let (dir_port, mgmt_port, dns_port, chall_mgmt) = (free_port(), free_port(), free_port(), free_port());
    let directory = format!("https://127.0.0.1:{dir_port}/dir");
    let cfg = pki.dir.path().join("imgedge.toml");
    std::fs::write(&cfg, "[tls.acme]\nretry_secs = 1\nrenew_fraction = 0.5\n").unwrap();
    let args = |directory: &str| -> Vec<String> {
        vec![
            "--config".into(),
            cfg.display().to_string(),
            "--tls-listen".into(),
            "127.0.0.1:0".into(),
            "--acme-domain".into(),
            DOMAIN.into(),
            "--acme-email".into(),
            "ops@example.com".into(),
            "--acme-directory".into(),
            directory.into(),
            "--acme-state".into(),
            state.display().to_string(),
            "--acme-ca-root".into(),
            pki.ca().display().to_string(),
        ]
    };
    let a = args(&directory);
    let (mut child, _plain, _admin, tls, rx) = spawn(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let tls_port: u16 = tls.rsplit(':').next().unwrap().parse().unwrap();
    // The CA is not up yet: the first order fails and is retried.
    lines_until(&rx, "ACME order failed (no certificate yet)");

    let _dns = Reaper(
        Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{chall_mgmt}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv runs"),
    );
    let pebble_cfg = pki.dir.path().join("pebble.json");
    let json = serde_json::json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{dir_port}"),
        "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
        "certificate": pc, "privateKey": pk,
        "httpPort": free_port(), "tlsPort": tls_port,
        "ocspResponderURL": "", "externalAccountBindingRequired": false,
        "certificateValidityPeriod": 20,
    }});
    std::fs::write(&pebble_cfg, json.to_string()).unwrap();
    let pebble = Command::new("pebble")
        .arg("-config")
        .arg(&pebble_cfg)
        .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pebble runs");
    let mut pebble = Reaper(pebble);
    wait_for(dir_port);

    lines_until(&rx, "ACME certificate issued");
    // Pebble's issuing root, from its management interface (HTTPS with our test CA).
    let root = pki.dir.path().join("pebble-root.pem");
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(pki.ca())
        .arg(format!("https://127.0.0.1:{mgmt_port}/roots/0"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&root, &out.stdout).unwrap();
    let first = connect(&tls, DOMAIN, Trust::Ca(&root), &["http/1.1"], &[&rustls::version::TLS13]).unwrap();
    let stored = find_cert(&state);
    assert_eq!(first.leaf, pem_fingerprint(&stored), "serves the stored certificate, valid under pebble's root");
    assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o700);
    for entry in std::fs::read_dir(&state).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600, "{}", p.display());
    }
    assert!(state.join("account.json").exists());

    // Renewal at half of the 20 s lifetime: a new certificate, served to new handshakes.
    lines_until(&rx, "ACME certificate issued");
    let second = connect(&tls, DOMAIN, Trust::Ca(&root), &[], &[&rustls::version::TLS13]).unwrap();
    assert_ne!(second.leaf, first.leaf, "renewed");
    assert_eq!(second.leaf, pem_fingerprint(&find_cert(&state)));

    // The CA goes away: the next renewal fails and the current certificate stays.
    let _ = pebble.0.kill();
    let _ = pebble.0.wait();
    let failed = lines_until(&rx, "ACME order failed (the current certificate stays)");
    assert!(!failed.last().unwrap().contains("PRIVATE"), "{failed:?}");
    let after = connect(&tls, DOMAIN, Trust::Any, &[], &[&rustls::version::TLS13]).unwrap();
    assert_eq!(after.leaf, second.leaf);
    crate::binary::sigterm(&child);
    assert!(child.wait().unwrap().success());

    // A restart serves the stored certificate at once (the directory is dead now).
    let b = args(&format!("https://127.0.0.1:{}/dir", free_port()));
    let (mut child, _plain, _admin, tls, rx) = spawn(&b.iter().map(String::as_str).collect::<Vec<_>>());
    lines_until(&rx, "ACME certificate loaded from the state directory");
    let restarted = connect(&tls, DOMAIN, Trust::Any, &[], &[&rustls::version::TLS13]).unwrap();
    assert_eq!(restarted.leaf, second.leaf);
    crate::binary::sigterm(&child);
    assert!(child.wait().unwrap().success());
}
