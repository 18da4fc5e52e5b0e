//! Issue 16 item 2: every config key can come from an `IMGEDGE_*` variable, with
//! flags > environment > file > defaults; unknown variables are named in a warning;
//! `--check-config` warns about a private origin without credentials.

use crate::binary::{http, sigterm, spawn};
use std::process::Command;

fn check_config(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imgedge"));
    c.current_dir(env!("CARGO_MANIFEST_DIR")).env("NO_COLOR", "1").args(args).arg("--check-config");
    for name in ["ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "AWS_ACCESS_KEY_ID"] {
        c.env_remove(name);
    }
    c.envs(envs.iter().copied()).output().unwrap()
}

#[test]
fn environment_sets_keys_between_file_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (from_file, from_env) = (dir.path().join("file"), dir.path().join("env"));
    for (d, body) in [(&from_file, "file"), (&from_env, "env")] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("who.txt"), body).unwrap();
    }
    let cfg = dir.path().join("imgedge.toml");
    std::fs::write(&cfg, format!("origin = {:?}\n[cache]\nsize = \"64MiB\"\n", from_file.to_str().unwrap())).unwrap();
    let who = |listen: &str| http(listen, "GET /who.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");

    // The environment beats the file.
    let envs = [("IMGEDGE_ORIGIN", from_env.to_str().unwrap())];
    let (mut child, listen, _, _) = spawn(&["--config", cfg.to_str().unwrap()], &envs);
    let body = who(&listen);
    sigterm(&child);
    let _ = child.wait();
    assert!(body.ends_with("env"), "{body}");

    // A flag beats the environment.
    let (mut child, listen, _, _) =
        spawn(&["--config", cfg.to_str().unwrap(), "--origin", from_file.to_str().unwrap()], &envs);
    let body = who(&listen);
    sigterm(&child);
    let _ = child.wait();
    assert!(body.ends_with("file"), "{body}");
}

#[test]
fn unknown_variables_are_named_and_bad_values_stop_start_up() {
    let out = check_config(&[], &[("IMGEDGE_CACHE_SIZ", "9")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("WARN") && text.contains("IMGEDGE_CACHE_SIZ names no configuration key"), "{text}");

    let out = check_config(&[], &[("IMGEDGE_WORKERS_THREADS", "many")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("IMGEDGE_WORKERS_THREADS") && err.contains("workers.threads"), "{err}");
}

#[test]
fn check_config_warns_about_a_private_origin_without_credentials() {
    let oss = "oss://bucket?endpoint=oss-cn-beijing.aliyuncs.com&region=cn-beijing";
    let out = check_config(&["--origin", oss], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no credentials") && text.contains("ALIBABA_CLOUD_ACCESS_KEY_ID"), "{text}");
    let out = check_config(
        &["--origin", oss],
        &[("ALIBABA_CLOUD_ACCESS_KEY_ID", "id"), ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")],
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("no credentials"));
}
