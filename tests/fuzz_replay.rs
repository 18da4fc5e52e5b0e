//! Replays the fuzz seed corpus and every saved fuzz finding (tests/fuzz/regressions)
//! through the same property checks the cargo-fuzz targets run, so a crash found once
//! stays fixed without needing the fuzzer.

#[path = "fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut replayed = 0;
    for dir in [root.join("corpus").join(target), root.join("regressions").join(target)] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{target}: {} fails its fuzz property", path.display());
            replayed += 1;
        }
    }
    assert!(replayed >= 5, "{target}: only {replayed} inputs found; the seed corpus is missing");
}

#[test]
fn oss_process_parser_corpus() {
    replay("oss_process_parser", checks::oss_process_parser);
}

#[test]
fn purge_request_corpus() {
    replay("purge_request", checks::purge_request);
}

#[test]
fn decode_process_corpus() {
    replay("decode_process", checks::decode_process);
}
