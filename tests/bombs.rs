//! Issue 15 item B6: image bombs within the default pixel limits. A 35-byte GIF and a
//! 60-byte WebP that declare a 15 800² canvas, and a 2 MB 16-bit RGBA PNG of 15 800²
//! (2 GB of pixels), each drove the RSS to 2-3 GB. The real binary runs with a 256 MiB
//! decode budget; the bombs go in concurrently with ordinary images, several rounds;
//! every answer is 200, 4xx or 503 (never 5xx otherwise) and the peak RSS stays under
//! the budget plus a 300 MiB margin (the server's own baseline, sources, responses).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const SIDE: u32 = 15_800;
const BUDGET_MIB: u64 = 256;
const MARGIN_MIB: u64 = 300;

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(&out[start..]);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// An all-zero RGBA PNG at `depth` bits per channel (zlib squeezes 2 GB to ~2 MB).
fn png(w: u32, h: u32, depth: u8) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[depth, 6, 0, 0, 0]);
    let row = vec![0u8; 1 + w as usize * 4 * usize::from(depth / 8)];
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    for _ in 0..h {
        z.write_all(&row).unwrap();
    }
    let idat = z.finish().unwrap();
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A GIF whose logical screen is `SIDE`² and whose one frame is 1x1.
fn gif_bomb() -> Vec<u8> {
    let mut g = b"GIF89a".to_vec();
    let side = u16::try_from(SIDE).unwrap().to_le_bytes();
    g.extend_from_slice(&side);
    g.extend_from_slice(&side);
    g.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 255, 255, 255]); // 2-colour global table
    g.extend_from_slice(&[0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0]); // 1x1 frame at 0,0
    g.extend_from_slice(&[2, 2, 0x44, 0x01, 0, 0x3b]); // LZW: clear, 0, end; trailer
    g
}

/// LSB-first bit writer for the VP8L frame.
struct Bits(Vec<u8>, u32);

impl Bits {
    fn put(&mut self, value: u32, n: u32) {
        for i in 0..n {
            if self.1 % 8 == 0 {
                self.0.push(0);
            }
            if value >> i & 1 != 0 {
                *self.0.last_mut().unwrap() |= 1 << (self.1 % 8);
            }
            self.1 += 1;
        }
    }
}

fn riff_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(kind);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
}

fn u24(v: u32) -> [u8; 3] {
    let b = v.to_le_bytes();
    [b[0], b[1], b[2]]
}

/// An animated WebP with a `SIDE`² canvas and one lossless 1x1 frame.
fn webp_bomb() -> Vec<u8> {
    let mut bits = Bits(Vec::new(), 0);
    bits.put(0x2f, 8); // VP8L signature
    bits.put(0, 14); // width - 1
    bits.put(0, 14); // height - 1
    bits.put(1, 1); // alpha used
    bits.put(0, 3); // version
    bits.put(0, 1); // no transform
    bits.put(0, 1); // no colour cache
    bits.put(0, 1); // no meta prefix codes
    for _ in 0..5 {
        // simple code, one symbol, 1-bit symbol 0: every pixel costs no bits
        bits.put(1, 1);
        bits.put(0, 1);
        bits.put(0, 1);
        bits.put(0, 1);
    }
    let mut frame = Vec::new();
    for v in [0, 0, 0, 0, 100] {
        frame.extend_from_slice(&u24(v)); // x/2, y/2, w-1, h-1, duration
    }
    frame.push(0);
    riff_chunk(&mut frame, b"VP8L", &bits.0);
    let mut vp8x = vec![0x12, 0, 0, 0]; // alpha + animation
    vp8x.extend_from_slice(&u24(SIDE - 1));
    vp8x.extend_from_slice(&u24(SIDE - 1));
    let mut body = b"WEBP".to_vec();
    riff_chunk(&mut body, b"VP8X", &vp8x);
    riff_chunk(&mut body, b"ANIM", &[0, 0, 0, 0, 0, 0]);
    riff_chunk(&mut body, b"ANMF", &frame);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// One GET with `Connection: close`; the status code (0 if the connection failed).
fn status_of(addr: &str, path: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(addr) else { return 0 };
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: bombs.test\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024
}

#[test]
fn image_bombs_stay_within_the_decode_budget() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("origin");
    std::fs::create_dir(&root).unwrap();
    let gif = gif_bomb();
    let webp = webp_bomb();
    let png16 = png(SIDE, SIDE, 16);
    assert!(gif.len() < 64 && webp.len() < 100, "{} {}", gif.len(), webp.len());
    assert!(png16.len() < 4 << 20, "{}", png16.len());
    std::fs::write(root.join("bomb.gif"), &gif).unwrap();
    std::fs::write(root.join("bomb.webp"), &webp).unwrap();
    std::fs::write(root.join("bomb16.png"), &png16).unwrap();
    std::fs::write(root.join("photo.png"), png(3000, 2000, 8)).unwrap();
    let cfg = dir.path().join("imgedge.toml");
    std::fs::write(&cfg, format!("[limits]\ndecode_memory = \"{BUDGET_MIB}MiB\"\n[workers]\nthreads = 2\n")).unwrap();

    let (mut child, addr, _admin, _log) =
        crate::binary::spawn(&["--config", cfg.to_str().unwrap(), "--origin", root.to_str().unwrap()], &[]);
    // The header is read: each bomb really declares its canvas.
    for key in ["bomb.gif", "bomb.webp", "bomb16.png"] {
        assert_eq!(status_of(&addr, &format!("/{key}?x-oss-process=image/info")), 200, "{key}");
    }
    let mut statuses = Vec::new();
    for round in 0..3 {
        let paths: Vec<String> = ["bomb.gif", "bomb.webp", "bomb16.png", "bomb.gif", "photo.png", "photo.png"]
            .iter()
            .enumerate()
            .map(|(i, key)| format!("/{key}?x-oss-process=image/resize,w_{}", 100 + round * 10 + i))
            .collect();
        let threads: Vec<_> = paths
            .into_iter()
            .map(|p| {
                let addr = addr.clone();
                std::thread::spawn(move || (status_of(&addr, &p), p))
            })
            .collect();
        statuses.extend(threads.into_iter().map(|t| t.join().unwrap()));
    }
    let peak = peak_rss_mib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("peak RSS {peak} MiB; answers {statuses:?}");
    for (status, path) in &statuses {
        let ok = *status == 200 || (400..500).contains(status) || *status == 503;
        assert!(ok, "{path}: {status} (all: {statuses:?})");
        if path.contains("bomb") {
            assert_eq!(*status, 400, "{path}: a bomb is ImageTooLarge (all: {statuses:?})");
        }
    }
    assert!(statuses.iter().any(|(s, p)| *s == 200 && p.contains("photo")), "{statuses:?}");
    assert!(peak < BUDGET_MIB + MARGIN_MIB, "peak RSS {peak} MiB with a {BUDGET_MIB} MiB decode budget");
}
