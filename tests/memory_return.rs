#![allow(clippy::unwrap_used)]
//! Freed memory goes back to the kernel once decoding goes quiet, not while decodes
//! keep coming (their next buffers reuse the warm pages). Its own test binary: the RSS
//! it reads must not move with other tests' allocations.

use std::time::{Duration, Instant};

fn rss_mb() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: f64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096.0 / 1e6
}

/// Leaves ~40 MB of freed but resident heap (100 KiB blocks, under glibc's mmap
/// threshold, below a live block so the heap top cannot shrink) and returns the live block.
fn leave_a_freed_hole() -> Vec<u8> {
    let blocks: Vec<Vec<u8>> = (0..400).map(|i| vec![i as u8 | 1; 100 << 10]).collect();
    let live = vec![1u8; 110 << 10]; // from the heap top: no freed block fits it yet
    drop(std::hint::black_box(blocks)); // or the optimiser elides the unused blocks
    std::hint::black_box(live)
}

#[test]
fn freed_decode_memory_is_returned_once_decoding_goes_quiet() {
    imgedge::memory::start_returning();
    let before = rss_mb();
    let live = leave_a_freed_hole();
    let held = rss_mb();
    assert!(held - before > 30.0, "glibc keeps the freed blocks resident: {before:.1} -> {held:.1} MB");

    // Decodes keep coming: nothing is returned.
    let busy_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < busy_until {
        imgedge::memory::note_decode();
        std::thread::sleep(Duration::from_millis(100));
    }
    let while_busy = rss_mb();
    assert!(while_busy - before > 30.0, "returned while decodes were running: {held:.1} -> {while_busy:.1} MB");

    // Quiet: returned within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut now = rss_mb();
    while now - before > 10.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        now = rss_mb();
    }
    assert!(now - before <= 10.0, "still held after decoding stopped: {before:.1} -> {now:.1} MB");
    drop(live);
}
