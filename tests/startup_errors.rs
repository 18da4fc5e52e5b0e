//! Issue 16 item 9: start-up errors are one or two lines for a person: what is wrong,
//! where the value came from, what to change; no error chain, no backtrace.

use std::process::Command;

/// The binary run from an empty temporary directory, with no `IMGEDGE_*` variables and
/// `RUST_BACKTRACE=1` (a backtrace, if any were printed, would show).
fn imgedge(cwd: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imgedge"));
    c.current_dir(cwd).env("RUST_BACKTRACE", "1");
    for (name, _) in std::env::vars() {
        if name.starts_with("IMGEDGE_") {
            c.env_remove(name);
        }
    }
    c
}

/// Runs to exit; returns (exit code, stderr), checking the shape every error shares.
fn fails(c: &mut Command) -> (i32, String) {
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.lines().count() <= 2, "at most two lines: {stderr}");
    assert!(stderr.starts_with("imgedge: "), "{stderr}");
    for noise in ["Caused by", "backtrace", "Backtrace", "Error: "] {
        assert!(!stderr.contains(noise), "{noise:?} in {stderr}");
    }
    (out.status.code().unwrap(), stderr)
}

#[test]
fn the_default_origin_missing_names_the_default_and_the_ways_to_set_it() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = fails(imgedge(dir.path()).arg("--check-config"));
    assert_eq!(code, 2);
    assert!(err.contains(r#"origin folder "fixtures" (the default; set --origin, IMGEDGE_ORIGIN or origin in the config file) does not exist"#), "{err}");
    assert!(!err.contains("Error: --origin"), "{err}");
}

#[test]
fn a_bad_origin_names_where_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = fails(imgedge(dir.path()).args(["--origin", "nowhere", "--check-config"]));
    assert_eq!(code, 2);
    assert!(err.contains(r#"origin folder "nowhere" (--origin) does not exist"#), "{err}");
    let (_, err) = fails(imgedge(dir.path()).env("IMGEDGE_ORIGIN", "ftp://x/y").arg("--check-config"));
    assert!(err.contains(r#"origin "ftp://x/y" (from IMGEDGE_ORIGIN) cannot be used"#), "{err}");
    assert!(err.contains("oss://BUCKET?endpoint="), "names the forms that work: {err}");
    let (_, err) = fails(imgedge(dir.path()).args(["--origin", "oss://bucket?region=x", "--check-config"]));
    assert!(err.contains("endpoint"), "{err}");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "origin = \"missing-dir\"\n").unwrap();
    let (_, err) = fails(imgedge(dir.path()).args(["--config", cfg.to_str().unwrap(), "--check-config"]));
    assert!(err.contains("(origin in the config file"), "{err}");
}

#[test]
fn config_file_errors_say_which_line() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = fails(imgedge(dir.path()).args(["--config", "absent.toml", "--check-config"]));
    assert_eq!(code, 2);
    assert!(err.contains("config file absent.toml (--config) cannot be read"), "{err}");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:1\"\norigin = = 3\n").unwrap();
    let (_, err) = fails(imgedge(dir.path()).args(["--config", cfg.to_str().unwrap(), "--check-config"]));
    assert!(err.contains("is not valid TOML") && err.contains("line 2"), "{err}");
    std::fs::write(&cfg, "cache_sise = 3\n").unwrap();
    let (_, err) = fails(imgedge(dir.path()).args(["--config", cfg.to_str().unwrap(), "--check-config"]));
    assert!(err.contains("cache_sise") && err.contains("line 1"), "{err}");
}

#[test]
fn invalid_values_say_what_to_change() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().to_str().unwrap();
    let (code, err) = fails(imgedge(dir.path()).args(["--origin", origin, "--cache-size", "0", "--check-config"]));
    assert_eq!(code, 2);
    assert!(err.contains("invalid configuration: cache.size must be greater than 0. Change it"), "{err}");
    let (_, err) =
        fails(imgedge(dir.path()).args(["--origin", origin, "--check-config"]).env("IMGEDGE_STYLE_DELIMITERS", "?"));
    assert!(err.contains("style_delimiters"), "{err}");
}

#[test]
fn a_port_in_use_says_to_stop_the_other_server_or_choose_another() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let origin = dir.path().to_str().unwrap();
    let (code, err) =
        fails(imgedge(dir.path()).args(["--origin", origin, "--listen", &addr, "--admin-listen", "127.0.0.1:0"]));
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "binding --listen {addr}: address in use; stop the other server or choose another --listen"
        )),
        "{err}"
    );
}
