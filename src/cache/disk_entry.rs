//! The on-disk record of one cache entry (the disk tier, [`super::disk`]).
//!
//! A simple length-prefixed binary format, versioned, with an xxh3-64 of the whole
//! record at its end. foyer checksums what it writes too; this second check is ours
//! so that a record is only ever turned back into an [`Entry`] when every byte of it
//! is what we wrote (a torn write, a flipped bit, a truncated file or a record of an
//! older format all decode to an error, which the caller treats as a miss).
//!
//! Layout (little endian):
//! `magic "IEDR" | version u8 | seq u64 | stored_at secs u64, nanos u32 | ttl ms u64 |
//!  status u16 | key: url str, host_end u32, path_end u32 | content_type str |
//!  etag opt-str | last_modified opt (secs u64, nanos u32) | origin_etag opt-str |
//!  body bytes | n u8, n × (coding str, bytes) | xxh3-64 of everything before`
//! where `str`/`bytes` are a u32 length then the bytes and `opt` a 0/1 byte first.
//!
//! The full canonical key URL is stored: a hit is served only when it equals the
//! requested key in full (the store is indexed by a hash, as L1 is).

use super::key::CacheKey;
use super::meta::Entry;
use bytes::{BufMut, Bytes, BytesMut};
use http::StatusCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAGIC: &[u8; 4] = b"IEDR";
/// Bump when the layout changes: older records then decode as misses.
pub const VERSION: u8 = 1;

/// Content codings a record may carry (an entry's copies use these static tokens).
const CODINGS: &[&str] = &["br", "gzip"];

/// Why a record could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than its lengths say, or longer.
    Truncated,
    /// Not our magic or version.
    Format,
    /// The checksum does not match the bytes.
    Checksum,
    /// A field holds a value that cannot be (bad status, bad key bounds, bad UTF-8).
    Field,
}

/// A decoded record: the entry and the ban sequence it was filled under.
#[derive(Debug)]
pub struct Record {
    /// The entry as stored.
    pub entry: Entry,
    /// Ban sequence current when the record was written ([`super::bans`]).
    pub seq: u64,
}

fn put_str(out: &mut BytesMut, s: &[u8]) {
    out.put_u32_le(u32::try_from(s.len()).unwrap_or(u32::MAX));
    out.put_slice(s);
}

fn put_opt_str(out: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            out.put_u8(1);
            put_str(out, s.as_bytes());
        }
        None => out.put_u8(0),
    }
}

fn split_time(t: SystemTime) -> (u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs(), d.subsec_nanos())
}

/// Serialises `entry` filled under ban sequence `seq`. Bodies longer than 4 GiB are
/// never cached (the object size cap is far below), so u32 lengths suffice.
pub fn encode(entry: &Entry, seq: u64) -> Bytes {
    let encodings = entry.encodings();
    let size = 128
        + entry.key.url.len()
        + entry.content_type.len()
        + entry.etag.as_ref().map_or(0, String::len)
        + entry.origin_etag.as_ref().map_or(0, String::len)
        + entry.body.len()
        + encodings.iter().map(|(c, b)| 8 + c.len() + b.len()).sum::<usize>();
    let mut out = BytesMut::with_capacity(size);
    out.put_slice(MAGIC);
    out.put_u8(VERSION);
    out.put_u64_le(seq);
    let (secs, nanos) = split_time(entry.stored_at);
    out.put_u64_le(secs);
    out.put_u32_le(nanos);
    out.put_u64_le(u64::try_from(entry.ttl.as_millis()).unwrap_or(u64::MAX));
    out.put_u16_le(entry.status.as_u16());
    let (host_end, path_end) = entry.key.bounds();
    put_str(&mut out, entry.key.url.as_bytes());
    out.put_u32_le(u32::try_from(host_end).unwrap_or(u32::MAX));
    out.put_u32_le(u32::try_from(path_end).unwrap_or(u32::MAX));
    put_str(&mut out, entry.content_type.as_bytes());
    put_opt_str(&mut out, entry.etag.as_deref());
    match entry.last_modified {
        Some(t) => {
            out.put_u8(1);
            let (s, n) = split_time(t);
            out.put_u64_le(s);
            out.put_u32_le(n);
        }
        None => out.put_u8(0),
    }
    put_opt_str(&mut out, entry.origin_etag.as_deref());
    put_str(&mut out, &entry.body);
    let kept: Vec<_> = encodings.iter().filter(|(c, _)| CODINGS.contains(c)).collect();
    out.put_u8(u8::try_from(kept.len()).unwrap_or(0));
    for (coding, bytes) in kept.iter().take(usize::from(u8::MAX)) {
        put_str(&mut out, coding.as_bytes());
        put_str(&mut out, bytes);
    }
    let sum = xxhash_rust::xxh3::xxh3_64(&out);
    out.put_u64_le(sum);
    out.freeze()
}

/// A cursor over a record; every read is bounds-checked.
struct Reader {
    buf: Bytes,
    at: usize,
}

impl Reader {
    fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let end = self.at.checked_add(n).ok_or(DecodeError::Truncated)?;
        if end > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        let out = self.buf.slice(self.at..end);
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let b = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&b);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Field)
    }

    fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.string().map(Some),
            _ => Err(DecodeError::Field),
        }
    }

    fn time(&mut self) -> Result<SystemTime, DecodeError> {
        let secs = self.u64()?;
        let nanos = self.u32()?;
        if nanos >= 1_000_000_000 {
            return Err(DecodeError::Field);
        }
        UNIX_EPOCH.checked_add(Duration::new(secs, nanos)).ok_or(DecodeError::Field)
    }
}

/// Decodes a record; the body and coded copies share `buf`'s allocation.
///
/// # Errors
/// Any byte out of place: the record is not used.
pub fn decode(buf: Bytes) -> Result<Record, DecodeError> {
    if buf.len() < MAGIC.len() + 1 + 8 {
        return Err(DecodeError::Truncated);
    }
    let (payload, sum) = buf.split_at(buf.len() - 8);
    let mut expect = [0u8; 8];
    expect.copy_from_slice(sum);
    if xxhash_rust::xxh3::xxh3_64(payload) != u64::from_le_bytes(expect) {
        return Err(DecodeError::Checksum);
    }
    let payload_len = payload.len();
    let mut r = Reader { buf: buf.slice(..payload_len), at: 0 };
    if r.array::<4>()? != *MAGIC || r.u8()? != VERSION {
        return Err(DecodeError::Format);
    }
    let seq = r.u64()?;
    let stored_at = r.time()?;
    let ttl = Duration::from_millis(r.u64()?);
    let status = StatusCode::from_u16(r.u16()?).map_err(|_| DecodeError::Field)?;
    let url = r.string()?;
    let host_end = r.u32()? as usize;
    let path_end = r.u32()? as usize;
    let key = CacheKey::from_parts(url, host_end, path_end).ok_or(DecodeError::Field)?;
    let content_type = r.string()?;
    let etag = r.opt_string()?;
    let last_modified = match r.u8()? {
        0 => None,
        1 => Some(r.time()?),
        _ => return Err(DecodeError::Field),
    };
    let origin_etag = r.opt_string()?;
    let body = r.bytes()?;
    let n = r.u8()?;
    let mut encoded = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let coding = r.bytes()?;
        let token = CODINGS.iter().find(|c| c.as_bytes() == coding.as_ref()).ok_or(DecodeError::Field)?;
        encoded.push((*token, r.bytes()?));
    }
    if r.at != payload_len {
        return Err(DecodeError::Truncated);
    }
    let entry = Entry::new(key, status, body, content_type, etag, last_modified, origin_etag, ttl)
        .with_encodings(encoded)
        .with_stored_at(stored_at);
    Ok(Record { entry, seq })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry::new(
            CacheKey::new("h.example", "/d/a b.jpg", Some("x-oss-process=image/resize,w_10&v=1"), None, None, &[]),
            StatusCode::OK,
            Bytes::from_static(b"body bytes"),
            "image/jpeg".into(),
            Some("\"e1\"".into()),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            Some("\"o1\"".into()),
            Duration::from_secs(3600),
        )
        .with_encodings(vec![("br", Bytes::from_static(b"brotli")), ("gzip", Bytes::from_static(b"gz"))])
    }

    #[test]
    fn round_trips_every_field() {
        let e = sample();
        let rec = decode(encode(&e, 42)).unwrap();
        assert_eq!(rec.seq, 42);
        let d = rec.entry;
        assert_eq!(d.key, e.key);
        assert_eq!(d.key.hash, e.key.hash);
        assert_eq!(d.key.path(), e.key.path());
        assert_eq!(d.status, e.status);
        assert_eq!(d.body, e.body);
        assert_eq!(d.content_type, e.content_type);
        assert_eq!(d.etag, e.etag);
        assert_eq!(d.last_modified, e.last_modified);
        assert_eq!(d.origin_etag, e.origin_etag);
        assert_eq!(d.stored_at, e.stored_at);
        assert_eq!(d.ttl, e.ttl);
        assert_eq!(d.encoded("br").unwrap().as_ref(), b"brotli");
        assert_eq!(d.encoded("gzip").unwrap().as_ref(), b"gz");
    }

    /// Every single-byte flip and every truncation is refused, never decoded into
    /// something else (item 3: never serve bad bytes).
    #[test]
    fn any_flip_or_truncation_is_refused() {
        let rec = encode(&sample(), 7);
        for i in 0..rec.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = rec.to_vec();
                bad[i] ^= bit;
                assert!(decode(Bytes::from(bad)).is_err(), "flip at {i}");
            }
            assert!(decode(rec.slice(..i)).is_err(), "truncated to {i}");
        }
        let mut longer = rec.to_vec();
        longer.push(0);
        assert!(decode(Bytes::from(longer)).is_err());
    }

    #[test]
    fn another_version_is_a_format_error() {
        let mut rec = encode(&sample(), 1).to_vec();
        rec[4] = VERSION + 1;
        let n = rec.len() - 8;
        let sum = xxhash_rust::xxh3::xxh3_64(&rec[..n]);
        rec[n..].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(decode(Bytes::from(rec)).unwrap_err(), DecodeError::Format);
    }
}
