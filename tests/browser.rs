//! Issue 8 (item 3): a real browser. Headless Chromium (installed by the test
//! command) loads a page served by imgedge whose <img> tags use x-oss-process chains
//! and a srcset; every image must load with the expected natural size. A screenshot
//! goes to target/browser-check.png for a person to look at.

use crate::common::server::start;
use std::path::PathBuf;
use std::process::Command;

fn chromium() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        let p = PathBuf::from(candidate);
        if p.is_file() {
            return p;
        }
    }
    panic!("Chromium not installed: the test command (bash tests/run.sh) installs Debian's chromium");
}

fn run_chromium(extra: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_image_loads_in_chromium_with_the_expected_size() {
    let s = start().await;
    let url = s.url("/browser/index.html");
    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run_chromium(&["--dump-dom"], &url)
    })
    .await
    .unwrap();
    let results = dom
        .split("RESULTS")
        .nth(1)
        .and_then(|r| r.split("END").next())
        .unwrap_or_else(|| panic!("no results in the page: {dom}"));
    let lines: Vec<&str> = results.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 7, "{results}");
    for line in &lines {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (id, complete, natural, want) = (parts[0], parts[1], parts[2], parts[4]);
        assert_eq!(complete, "complete", "{line}");
        assert_eq!(natural, want, "{id}: {line}");
    }
    let srcset = lines.iter().find(|l| l.starts_with("srcset")).unwrap();
    assert!(srcset.contains("w_300/format,webp"), "the 300w candidate at DPR 1: {srcset}");

    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-check.png");
    let _ = std::fs::remove_file(&shot);
    tokio::task::spawn_blocking({
        let shot = shot.clone();
        move || run_chromium(&[&format!("--screenshot={}", shot.display()), "--window-size=1100,700"], &url)
    })
    .await
    .unwrap();
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"));
}
