//! Issue 16 item 8: the service files work as shipped. The documented install steps
//! (`assets/deploy/install.sh`) run into a scratch root; the unit's ExecStartPre and
//! ExecStart then run as its unprivileged `User=` and `Group=`, in its `WorkingDirectory=`, with its
//! `EnvironmentFile=`, every absolute path moved under the scratch root. The container
//! image's HEALTHCHECK command is checked against a running server too.

use crate::binary::{http, sigterm, spawn_command};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The value of the first `Key=` line of a unit file.
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("unit has no {key}="))
}

/// A unit path under the scratch root.
fn rooted(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// A unit command line with every absolute path moved under the scratch root.
fn rooted_command(root: &Path, line: &str) -> Vec<String> {
    line.split_whitespace()
        .map(|w| if w.starts_with('/') { rooted(root, w).display().to_string() } else { w.to_owned() })
        .collect()
}

#[test]
fn systemd_unit_starts_as_shipped_under_its_own_user() {
    assert!(nix_is_root(), "this test installs a system user and runs the unit as it: run the suite as root (CI does)");
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let status = Command::new("sh")
        .arg("assets/deploy/install.sh")
        .arg(env!("CARGO_BIN_EXE_imgedge"))
        .env("DESTDIR", root)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "install.sh failed");

    let unit = std::fs::read_to_string(root.join("etc/systemd/system/imgedge.service")).unwrap();
    let (user, group) = (unit_value(&unit, "User"), unit_value(&unit, "Group"));
    assert_ne!(user, "root");
    let config = root.join("etc/imgedge/imgedge.toml");
    let meta = std::fs::metadata(&config).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o640, "the config is not world-readable");
    let group_entry = Command::new("getent").args(["group", group]).output().unwrap();
    let gid: u32 = String::from_utf8_lossy(&group_entry.stdout).split(':').nth(2).unwrap().parse().unwrap();
    assert_eq!(meta.gid(), gid, "the service's group can read the config");

    // What an operator puts in /etc/imgedge/env; here: ephemeral ports, and the origin
    // folder and disk cache inside the scratch root (the shipped config names /srv/media
    // and /var/cache/imgedge/disk).
    let media = root.join("srv/media");
    std::fs::write(media.join("hello.txt"), "installed").unwrap();
    std::fs::set_permissions(media.join("hello.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let env_file = rooted(root, unit_value(&unit, "EnvironmentFile").trim_start_matches('-'));
    std::fs::write(
        &env_file,
        format!(
            "IMGEDGE_LISTEN=127.0.0.1:0\nIMGEDGE_ADMIN_LISTEN=127.0.0.1:0\nIMGEDGE_ORIGIN={}\n\
             IMGEDGE_CACHE_DISK_DIR={}\nIMGEDGE_CACHE_DISK_SIZE=64MiB\n",
            media.display(),
            root.join("var/cache/imgedge/disk").display()
        ),
    )
    .unwrap();
    let env: Vec<(String, String)> = std::fs::read_to_string(&env_file)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let workdir = rooted(root, unit_value(&unit, "WorkingDirectory"));
    let as_user = |line: &str| {
        let argv = rooted_command(root, line);
        // setpriv execs in place (runuser forks and dies of the signal it forwards), so the
        // exit status seen is imgedge's own, as systemd would see it.
        let mut c = Command::new("setpriv");
        c.args([&format!("--reuid={user}"), &format!("--regid={group}"), "--init-groups", "--"]);
        c.args(&argv).current_dir(&workdir).env_clear();
        c.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    };

    let pre = as_user(unit_value(&unit, "ExecStartPre")).output().unwrap();
    assert!(pre.status.success(), "ExecStartPre: {}", String::from_utf8_lossy(&pre.stderr));
    let mut start = as_user(unit_value(&unit, "ExecStart"));
    start.env("RUST_LOG", "info").env("NO_COLOR", "1");
    let (mut child, listen, admin, _log) = spawn_command(start, &[], &[]);
    let object = http(&listen, "GET /hello.txt HTTP/1.1\r\nHost: media\r\nConnection: close\r\n\r\n");
    let health = http(&admin, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    sigterm(&child);
    let exit = child.wait().unwrap();
    assert!(object.starts_with("HTTP/1.1 200") && object.ends_with("installed"), "{object}");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(exit.success(), "SIGTERM drains and exits 0: {exit:?}");
}

#[test]
fn health_check_flag_reports_the_admin_listener() {
    let (mut child, _listen, admin, _log) = spawn_command(
        Command::new(env!("CARGO_BIN_EXE_imgedge")),
        &["--origin", crate::common::server::fixtures().as_str()],
        &[],
    );
    let check = |addr: &str| {
        Command::new(env!("CARGO_BIN_EXE_imgedge"))
            .args(["--health-check", "--admin-listen", addr])
            .status()
            .unwrap()
            .success()
    };
    let up = check(&admin);
    sigterm(&child);
    let _ = child.wait();
    assert!(up, "a running server is healthy");
    assert!(!check(&admin), "a stopped one is not");
}

fn nix_is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}
