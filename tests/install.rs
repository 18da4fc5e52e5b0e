//! Issue 16 item 1: an installed binary works with nothing else on disk. `cargo install`
//! copies the executable into a `bin/` folder; this test does the same, runs the copy from
//! an unrelated working directory and draws a text watermark (fonts are embedded).

use crate::binary::{http, sigterm, spawn_command};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `exec` of a file just written fails with ETXTBSY while any process holds it open for
/// writing, and a child that another test thread forks during the copy inherits that
/// descriptor until its own exec (seen once in CI). Waits, bounded, until the copy runs.
fn wait_until_executable(exe: &Path) {
    for _ in 0..250 {
        match Command::new(exe).arg("--version").output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => return,
        }
    }
    panic!("{} stayed busy for 5 s", exe.display());
}

#[test]
fn installed_binary_runs_from_anywhere_and_draws_text_watermarks() {
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("bin");
    let media = root.path().join("media");
    let cwd = root.path().join("elsewhere");
    for dir in [&bin, &media, &cwd] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let exe = bin.join("imgedge");
    std::fs::copy(env!("CARGO_BIN_EXE_imgedge"), &exe).unwrap();
    wait_until_executable(&exe);
    let photo = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/giunchedi_srgb_icc.jpg");
    std::fs::copy(photo, media.join("a.jpg")).unwrap();

    let mut command = Command::new(&exe);
    command.current_dir(&cwd).env_remove("CARGO_MANIFEST_DIR");
    let (mut child, listen, _admin, _log) = spawn_command(command, &["--origin", media.to_str().unwrap()], &[]);
    // "imgedge 图片" in URL-safe base64: Latin and CJK glyphs both come from embedded faces.
    let chain = "image/resize,w_200/watermark,text_aW1nZWRnZSDlm77niYc,size_30,color_FF0000,g_center";
    let plain =
        http(&listen, "GET /a.jpg?x-oss-process=image/resize,w_200 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let marked =
        http(&listen, &format!("GET /a.jpg?x-oss-process={chain} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    sigterm(&child);
    let _ = child.wait();
    for response in [&plain, &marked] {
        assert!(response.starts_with("HTTP/1.1 200"), "{}", &response[..response.len().min(300)]);
        assert!(response.to_ascii_lowercase().contains("content-type: image/jpeg"));
    }
    let body = |r: &str| r.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    assert_ne!(body(&plain), body(&marked), "the watermark changed the pixels");
}
