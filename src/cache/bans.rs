//! Durable purge bans for the disk tier (Varnish-style bans checked on hit).
//!
//! The disk tier is indexed by key hash only, so a directory or regex purge cannot
//! find its entries there. Instead every purge appends a ban (sequence, target,
//! hard/soft) to a small file in the disk-cache directory and fsyncs it before the
//! purge is applied (and so before the purge API answers). Every disk record carries
//! the ban sequence current when it was written; on a disk hit the bans newer than
//! the record are checked: a hard ban that matches makes it a miss, a soft one makes
//! it stale (revalidated before use), as a soft purge does in memory.
//!
//! Bounds: at most [`MAX_BANS`] bans are kept. When more arrive the older half is
//! dropped and the newest dropped sequence becomes the `horizon`: a record written
//! before the horizon can no longer be checked, so it is a miss (conservative, as
//! the memory purge log's horizon is). The file is rewritten then (temp file, fsync,
//! rename), so it stays within a few MiB.
//!
//! Failure: an unreadable ban line, a missing file next to existing records, or a
//! ban that cannot be written all end with every older record treated as a miss
//! (a missing file starts a new sequence at the current time in microseconds, above
//! any sequence an earlier file handed out; a failed write removes the file). A
//! torn last line (no newline) was never acknowledged and is ignored.

use super::key::CacheKey;
use super::PurgeTarget;
use regex::Regex;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

/// Bans kept before the older half is dropped (each purge URL/target is one ban).
pub const MAX_BANS: usize = 65_536;
const HEADER: &str = "imgedge-bans 1";

/// What the bans say about one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No ban newer than the record covers it.
    Clean,
    /// A soft purge covers it: serve only after revalidation.
    Stale,
    /// A hard purge covers it, or it predates the horizon: a miss.
    Gone,
}

#[derive(Debug)]
struct Ban {
    seq: u64,
    hard: bool,
    target: PurgeTarget,
}

#[derive(Debug, Default)]
struct List {
    horizon: u64,
    bans: Vec<Ban>,
}

/// The ban list and its file.
#[derive(Debug)]
pub struct Bans {
    path: PathBuf,
    file: Mutex<Option<File>>,
    list: RwLock<List>,
    /// The newest ban applied (published after it is in `list`).
    seq: AtomicU64,
    max: usize,
}

fn hex(b: &[u8]) -> String {
    hex::encode(b)
}

fn unhex(s: &str) -> Option<String> {
    String::from_utf8(hex::decode(s).ok()?).ok()
}

fn host_text(h: &Option<String>) -> String {
    h.as_deref().map_or_else(|| "-".to_owned(), |h| hex(h.as_bytes()))
}

fn host_parse(s: &str) -> Option<Option<String>> {
    if s == "-" {
        Some(None)
    } else {
        unhex(s).map(Some)
    }
}

/// One ban as a line: `seq H|S kind host value checksum`.
fn line(seq: u64, hard: bool, target: &PurgeTarget) -> String {
    let body = match target {
        PurgeTarget::Url { host, key } => {
            let (h, p) = key.bounds();
            format!("url {} {}:{h}:{p}", host_text(host), hex(key.url.as_bytes()))
        }
        PurgeTarget::Path { host, path } => format!("path {} {}", host_text(host), hex(path.as_bytes())),
        PurgeTarget::Directory { host, prefix } => format!("dir {} {}", host_text(host), hex(prefix.as_bytes())),
        PurgeTarget::Regex(re) => format!("re - {}", hex(re.as_str().as_bytes())),
    };
    let text = format!("{seq} {} {body}", if hard { "H" } else { "S" });
    let sum = xxhash_rust::xxh3::xxh3_64(text.as_bytes());
    format!("{text} {sum:016x}\n")
}

fn parse_line(l: &str) -> Option<Ban> {
    let (text, sum) = l.rsplit_once(' ')?;
    if format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes())) != sum {
        return None;
    }
    let mut f = text.split(' ');
    let seq = f.next()?.parse().ok()?;
    let hard = match f.next()? {
        "H" => true,
        "S" => false,
        _ => return None,
    };
    let kind = f.next()?;
    let host = host_parse(f.next()?)?;
    let value = f.next()?;
    let target = match kind {
        "url" => {
            let mut p = value.split(':');
            let url = unhex(p.next()?)?;
            let h = p.next()?.parse().ok()?;
            let e = p.next()?.parse().ok()?;
            PurgeTarget::Url { host, key: CacheKey::from_parts(url, h, e)? }
        }
        "path" => PurgeTarget::Path { host, path: unhex(value)? },
        "dir" => PurgeTarget::Directory { host, prefix: unhex(value)? },
        "re" => PurgeTarget::Regex(Regex::new(&unhex(value)?).ok()?),
        _ => return None,
    };
    Some(Ban { seq, hard, target })
}

fn now_micros() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_micros() as u64)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Bans {
    /// Opens (or starts) the ban file `dir/bans`.
    ///
    /// # Errors
    /// The file cannot be read or written.
    pub fn open(dir: &Path) -> std::io::Result<Bans> {
        Bans::open_with(dir, MAX_BANS)
    }

    /// [`Bans::open`] keeping at most `max` bans.
    ///
    /// # Errors
    /// The file cannot be read or written.
    pub fn open_with(dir: &Path, max: usize) -> std::io::Result<Bans> {
        let path = dir.join("bans");
        let mut list = List::default();
        let mut rewrite = false;
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
                let mut lines = complete.lines();
                let mut bad = false;
                match lines.next().and_then(|h| h.strip_prefix(HEADER)).and_then(|r| r.strip_prefix(" horizon ")) {
                    Some(h) => {
                        list.horizon = h.trim().parse().unwrap_or_else(|_| {
                            bad = true;
                            0
                        })
                    }
                    None => bad = true,
                }
                let mut max_seq = list.horizon;
                for l in lines {
                    match parse_line(l) {
                        Some(b) if b.seq > max_seq => {
                            max_seq = b.seq;
                            list.bans.push(b);
                        }
                        _ => bad = true,
                    }
                }
                if bad {
                    // Some ban cannot be read: no record from before can be checked.
                    tracing::warn!(path = %path.display(), "disk cache ban file damaged; older disk entries count as misses");
                    list.horizon = max_seq.max(now_micros()) + 1;
                    list.bans.clear();
                    rewrite = true;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A new sequence above any an earlier file could have handed out.
                list.horizon = now_micros();
                rewrite = true;
            }
            Err(e) => return Err(e),
        }
        let seq = list.bans.last().map_or(list.horizon, |b| b.seq);
        if rewrite {
            write_file(&path, list.horizon, &[])?;
        }
        let file = OpenOptions::new().append(true).open(&path)?;
        Ok(Bans { path, file: Mutex::new(Some(file)), list: RwLock::new(list), seq: AtomicU64::new(seq), max })
    }

    /// The newest ban applied; a record written now carries it.
    pub fn current(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Bans held.
    pub fn len(&self) -> usize {
        self.list.read().unwrap_or_else(|p| p.into_inner()).bans.len()
    }

    /// True when no ban is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a purge: appended to the file and fsynced (`durable`) or only
    /// appended, then applied. Returns false when the file could not be written (the
    /// ban still holds in this process, and the file is removed so that a restart
    /// treats every older record as a miss).
    ///
    /// `then` runs after the ban is in the list and before its sequence is published
    /// (with the file lock held, so bans publish in order): the cache logs the purge
    /// there, so a fill checked against the purge log before the purge was logged
    /// reads an older sequence and is banned on read, and one checked after it is
    /// vetoed. Returns `then`'s result.
    pub fn ban<T>(&self, target: &PurgeTarget, hard: bool, durable: bool, then: impl FnOnce() -> T) -> (bool, T) {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let seq = self.current() + 1;
        let text = line(seq, hard, target);
        let written = match file.as_mut() {
            Some(f) => f.write_all(text.as_bytes()).and_then(|()| if durable { f.sync_data() } else { Ok(()) }),
            None => Err(std::io::Error::other("ban file closed after an earlier failure")),
        };
        let ok = match written {
            Ok(()) => true,
            Err(e) => {
                if file.take().is_some() {
                    tracing::error!(error = %e, path = %self.path.display(),
                        "disk cache ban file cannot be written; it is removed so a restart serves no older disk entry");
                    let _ = std::fs::remove_file(&self.path);
                    if let Some(dir) = self.path.parent() {
                        sync_dir(dir);
                    }
                }
                false
            }
        };
        {
            let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
            list.bans.push(Ban { seq, hard, target: target.clone() });
            if list.bans.len() > self.max {
                let drop = list.bans.len() / 2;
                list.horizon = list.bans[drop - 1].seq;
                list.bans.drain(..drop);
                if file.is_some() {
                    if let Err(e) = write_file(&self.path, list.horizon, &list.bans)
                        .and_then(|()| OpenOptions::new().append(true).open(&self.path))
                        .map(|f| *file = Some(f))
                    {
                        tracing::error!(error = %e, "disk cache ban file cannot be compacted");
                    }
                }
            }
        }
        let out = then();
        self.seq.store(seq, Ordering::Release);
        (ok, out)
    }

    /// What the bans newer than `seq` say about `key`.
    pub fn verdict(&self, key: &CacheKey, seq: u64) -> Verdict {
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        if seq < list.horizon {
            return Verdict::Gone;
        }
        let mut verdict = Verdict::Clean;
        for b in list.bans.iter().rev().take_while(|b| b.seq > seq) {
            if b.target.matches(key) {
                if b.hard {
                    return Verdict::Gone;
                }
                verdict = Verdict::Stale;
            }
        }
        verdict
    }
}

/// Writes the whole file anew: temp file, fsync, rename, fsync of the directory.
fn write_file(path: &Path, horizon: u64, bans: &[Ban]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        let mut text = format!("{HEADER} horizon {horizon}\n");
        for b in bans {
            text.push_str(&line(b.seq, b.hard, &b.target));
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> CacheKey {
        CacheKey::new("h", path, Some("x-oss-process=image/resize,w_1"), None, None, &[])
    }

    #[test]
    fn bans_apply_only_to_older_records_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let bans = Bans::open(dir.path()).unwrap();
        let before = bans.current();
        assert!(bans.ban(&PurgeTarget::Directory { host: None, prefix: "/d/".into() }, true, true, || ()).0);
        assert!(bans.ban(&PurgeTarget::Regex(Regex::new("^h/s/").unwrap()), false, true, || ()).0);
        let k = key("/d/a.jpg");
        assert_eq!(bans.verdict(&k, before), Verdict::Gone);
        assert_eq!(bans.verdict(&k, bans.current()), Verdict::Clean, "written after the ban");
        assert_eq!(bans.verdict(&key("/s/a.jpg"), before), Verdict::Stale);
        assert_eq!(bans.verdict(&key("/x/a.jpg"), before), Verdict::Clean);
        let after = bans.current();
        drop(bans);
        let again = Bans::open(dir.path()).unwrap();
        assert_eq!(again.current(), after);
        assert_eq!(again.verdict(&k, before), Verdict::Gone);
        assert_eq!(again.verdict(&key("/s/a.jpg"), before), Verdict::Stale);
        let url = key("/u.jpg");
        again.ban(&PurgeTarget::Url { host: Some("h".into()), key: url.clone() }, true, true, || ());
        again.ban(&PurgeTarget::Path { host: None, path: "/p.jpg".into() }, true, true, || ());
        drop(again);
        let third = Bans::open(dir.path()).unwrap();
        assert_eq!(third.verdict(&url, after), Verdict::Gone);
        assert_eq!(third.verdict(&key("/p.jpg"), after), Verdict::Gone);
    }

    #[test]
    fn a_damaged_or_missing_file_makes_older_records_misses() {
        let dir = tempfile::tempdir().unwrap();
        let bans = Bans::open(dir.path()).unwrap();
        bans.ban(&PurgeTarget::Path { host: None, path: "/a".into() }, true, true, || ());
        let written = bans.current();
        drop(bans);
        let path = dir.path().join("bans");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text = text.replace(" H ", " S ");
        std::fs::write(&path, &text).unwrap();
        let reopened = Bans::open(dir.path()).unwrap();
        assert_eq!(reopened.verdict(&key("/zzz"), written), Verdict::Gone);
        assert!(reopened.current() > written);
        let fresh = reopened.current();
        drop(reopened);
        std::fs::remove_file(&path).unwrap();
        let missing = Bans::open(dir.path()).unwrap();
        assert_eq!(missing.verdict(&key("/zzz"), fresh), Verdict::Gone);
        assert_eq!(missing.verdict(&key("/zzz"), missing.current()), Verdict::Clean);
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let bans = Bans::open(dir.path()).unwrap();
        let start = bans.current();
        bans.ban(&PurgeTarget::Path { host: None, path: "/a".into() }, true, true, || ());
        drop(bans);
        let mut f = OpenOptions::new().append(true).open(dir.path().join("bans")).unwrap();
        f.write_all(b"99999999999999999 H path - 2f").unwrap();
        drop(f);
        let reopened = Bans::open(dir.path()).unwrap();
        assert_eq!(reopened.current(), start + 1);
        assert_eq!(reopened.verdict(&key("/b"), start), Verdict::Clean);
        assert_eq!(reopened.verdict(&key("/a"), start), Verdict::Gone);
    }

    #[test]
    fn the_list_is_bounded_and_the_horizon_moves() {
        let dir = tempfile::tempdir().unwrap();
        let bans = Bans::open_with(dir.path(), 10).unwrap();
        let start = bans.current();
        for i in 0..25 {
            bans.ban(&PurgeTarget::Path { host: None, path: format!("/p{i}") }, true, true, || ());
        }
        assert!(bans.len() <= 10);
        assert_eq!(bans.verdict(&key("/other"), start), Verdict::Gone, "before the horizon");
        assert_eq!(bans.verdict(&key("/other"), bans.current()), Verdict::Clean);
        let n = bans.len();
        drop(bans);
        assert_eq!(Bans::open_with(dir.path(), 10).unwrap().len(), n);
    }
}
