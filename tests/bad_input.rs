//! Issue 7 (item 1): the bad-input table. Every malformed corpus file and a set of
//! generated hostile inputs go through every output format and the main operations
//! on the real server binary: each answer is a 4xx with an OSS error code or a real
//! image, never a 5xx, a panic (the server keeps answering) or a hang; the server's
//! peak memory is recorded and bounded.

use crate::binary::{http, sigterm, spawn, vm_hwm_kib};
use std::io::Write;
use std::time::{Duration, Instant};

const CHAINS: &[&str] = &[
    "image/resize,w_100",
    "image/resize,m_fill,w_64,h_64/format,png",
    "image/resize,w_80/format,webp",
    "image/resize,w_80/format,bmp",
    "image/resize,w_80/format,gif",
    "image/resize,w_80/format,tiff",
    "image/crop,w_50,h_50,g_center",
    "image/rotate,90",
    "image/blur,r_3,s_2",
    "image/info",
];

fn generated(dir: &std::path::Path) -> Vec<String> {
    let photo = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/giunchedi_srgb_icc.jpg")).unwrap();
    let png = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/dice_palette_trns.png")).unwrap();
    let mut names = Vec::new();
    let mut put = |name: String, bytes: &[u8]| {
        std::fs::write(dir.join(&name), bytes).unwrap();
        names.push(name);
    };
    for cut in [0usize, 1, 2, 3, 20, 200, 2_000, 20_000, 100_000, photo.len() - 1] {
        put(format!("truncated_{cut}.jpg"), &photo[..cut]);
    }
    for cut in [8usize, 33, 100, 5_000, png.len() - 12] {
        put(format!("truncated_{cut}.png"), &png[..cut]);
    }
    // Deterministic bit flips across the file.
    let mut state = 0x2545F491u32;
    for i in 0..8 {
        let mut flipped = photo.clone();
        for _ in 0..16 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let at = (state as usize) % flipped.len();
            flipped[at] ^= 1 << (state % 8);
        }
        put(format!("bitflip_{i}.jpg"), &flipped);
    }
    // Huge declared PNG dimensions with a valid IHDR CRC.
    let mut huge = png.clone();
    huge[16..20].copy_from_slice(&200_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&200_000u32.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&huge[12..29]);
    huge[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    put("huge_dims.png".into(), &huge);
    // A GIF with thousands of frames.
    let mut gif = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut gif);
        let frames = (0..3000u32).map(|i| {
            let px = image::Rgba([(i % 255) as u8, 0, 0, 255]);
            image::Frame::new(image::RgbaImage::from_pixel(2, 2, px))
        });
        enc.encode_frames(frames).unwrap();
    }
    put("thousands_of_frames.gif".into(), &gif);
    put("empty.jpg".into(), b"");
    put("text_as_image.jpg".into(), b"hello, this is not an image\n");
    put("png_named_jpg.jpg".into(), &png);
    put("jpg_named_webp.webp".into(), &photo);
    let mut zipped = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    zipped.write_all(&vec![0u8; 10 << 20]).unwrap();
    put("gzip_bomb.png".into(), &zipped.finish().unwrap());
    names
}

#[test]
fn every_hostile_input_gets_a_4xx_or_an_image_never_a_5xx_or_hang() {
    let dir = tempfile::tempdir().unwrap();
    let malformed = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus/malformed"));
    let mut names = Vec::new();
    for entry in std::fs::read_dir(malformed).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        std::fs::copy(entry.path(), dir.path().join(&name)).unwrap();
        names.push(name);
    }
    assert!(names.len() >= 19);
    names.extend(generated(dir.path()));

    let (mut child, addr, _admin, _rx) =
        spawn(&["--origin", dir.path().to_str().unwrap(), "--cache-size", "64MiB"], &[]);
    let mut table = Vec::new();
    for name in &names {
        for chain in CHAINS {
            let started = Instant::now();
            let resp = http(
                &addr,
                &format!("GET /{name}?x-oss-process={chain} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
            );
            let took = started.elapsed();
            let status: u16 = resp.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            assert!(took < Duration::from_secs(30), "{name} {chain}: hung for {took:?}");
            match status {
                200 => {
                    let ct = resp.lines().find(|l| l.to_ascii_lowercase().starts_with("content-type:")).unwrap_or("");
                    assert!(ct.contains("image/") || ct.contains("json"), "{name} {chain}: 200 with {ct}");
                }
                400..=499 => assert!(resp.contains("<Code>"), "{name} {chain}: 4xx without an OSS code"),
                other => panic!("{name} {chain}: status {other}\n{}", &resp[..resp.len().min(600)]),
            }
            table.push((name.clone(), *chain, status));
        }
    }
    let peak_mib = vm_hwm_kib(child.id()) / 1024;
    let rejected = table.iter().filter(|(_, _, s)| *s >= 400).count();
    eprintln!(
        "bad-input table: {} requests, {rejected} rejected with 4xx, server peak RSS {peak_mib} MiB",
        table.len()
    );
    assert!(peak_mib < 512, "peak RSS {peak_mib} MiB");
    // Still healthy afterwards.
    assert!(http(&addr, "GET /empty.jpg HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 200"));
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}
