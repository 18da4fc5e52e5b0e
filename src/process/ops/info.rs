//! `info` (spec §4.16): JSON `{"Field": {"value": "<string>"}, ...}` with keys sorted:
//! FileSize, Format, FrameCount, ImageHeight, ImageWidth (stored size, not
//! orientation-corrected), resolution fields when present (EXIF, else JFIF density) and
//! the EXIF tags, named as in EXIF 2.31 (`ExifTag`/`GPSTag` pointers included). Values:
//! integers as decimal, rationals as `n/d`, several values space-separated, GPS refs
//! spelled out (`North`, `East`). PNG never yields EXIF.

use std::collections::BTreeMap;

use crate::process::codec::Probe;
use crate::process::ops::format::Format;

fn exif_value(f: &exif::Field) -> String {
    use exif::Value;
    let join = |v: Vec<String>| v.join(" ");
    match &f.value {
        Value::Ascii(v) => {
            join(v.iter().map(|s| String::from_utf8_lossy(s).trim_end_matches(['\0', ' ']).to_string()).collect())
        }
        Value::Byte(v) => join(v.iter().map(|x| x.to_string()).collect()),
        Value::Short(v) => join(v.iter().map(|x| x.to_string()).collect()),
        Value::Long(v) => join(v.iter().map(|x| x.to_string()).collect()),
        Value::SShort(v) => join(v.iter().map(|x| x.to_string()).collect()),
        Value::SLong(v) => join(v.iter().map(|x| x.to_string()).collect()),
        Value::Rational(v) => join(v.iter().map(|r| format!("{}/{}", r.num, r.denom)).collect()),
        Value::SRational(v) => join(v.iter().map(|r| format!("{}/{}", r.num, r.denom)).collect()),
        _ => f.display_value().to_string(),
    }
}

/// Reads the IFD0 pointer tags (`ExifTag` 0x8769, `GPSTag` 0x8825) that the EXIF reader
/// hides, from raw TIFF-structured EXIF bytes.
fn ifd0_pointers(tiff: &[u8]) -> Vec<(&'static str, u32)> {
    let le = match tiff.get(..2) {
        Some(b"II") => true,
        Some(b"MM") => false,
        _ => return Vec::new(),
    };
    let u16_at = |i: usize| -> Option<u16> {
        let b = tiff.get(i..i + 2)?;
        Some(if le { u16::from_le_bytes([b[0], b[1]]) } else { u16::from_be_bytes([b[0], b[1]]) })
    };
    let u32_at = |i: usize| -> Option<u32> {
        let b = tiff.get(i..i + 4)?;
        let a = [b[0], b[1], b[2], b[3]];
        Some(if le { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) })
    };
    let mut out = Vec::new();
    let Some(ifd) = u32_at(4).map(|v| v as usize) else { return out };
    let Some(n) = u16_at(ifd) else { return out };
    for k in 0..usize::from(n) {
        let e = ifd + 2 + 12 * k;
        let (Some(tag), Some(val)) = (u16_at(e), u32_at(e + 8)) else { break };
        match tag {
            0x8769 => out.push(("ExifTag", val)),
            0x8825 => out.push(("GPSTag", val)),
            _ => {}
        }
    }
    out
}

/// Spells GPS reference letters the way the OSS examples show them.
fn gps_ref(name: &str, v: String) -> String {
    match (name, v.as_str()) {
        ("GPSLatitudeRef", "N") => "North".into(),
        ("GPSLatitudeRef", "S") => "South".into(),
        ("GPSLongitudeRef", "E") => "East".into(),
        ("GPSLongitudeRef", "W") => "West".into(),
        _ => v,
    }
}

/// Builds the `info` JSON for encoded bytes and their probe.
pub(crate) fn describe(src: &[u8], probe: &Probe) -> Vec<u8> {
    let m = &probe.meta;
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    if probe.format != Format::Png {
        if let Some(raw) = &m.exif {
            if let Ok(ex) = exif::Reader::new().read_raw(raw.clone()) {
                for f in ex.fields() {
                    let name = f.tag.to_string();
                    // Skip unnamed tags and the huge binary ones.
                    if name.starts_with("Tag(") || name == "MakerNote" || name == "UserComment" {
                        continue;
                    }
                    // The primary IFD comes first; the thumbnail IFD must not override it.
                    let v = gps_ref(&name, exif_value(f));
                    fields.entry(name).or_insert(v);
                }
            }
            for (name, v) in ifd0_pointers(raw) {
                fields.entry(name.into()).or_insert_with(|| v.to_string());
            }
        }
    }
    if !fields.contains_key("XResolution") {
        if let Some((unit, x, y)) = m.jfif_density {
            // JFIF units 0/1/2 (none/dpi/dpcm) are EXIF ResolutionUnit 1/2/3.
            fields.insert("ResolutionUnit".into(), (u16::from(unit) + 1).min(3).to_string());
            fields.insert("XResolution".into(), format!("{x}/1"));
            fields.insert("YResolution".into(), format!("{y}/1"));
        }
    }
    fields.insert("FileSize".into(), src.len().to_string());
    fields.insert("Format".into(), probe.format.as_str().into());
    fields.insert("FrameCount".into(), m.frames.max(1).to_string());
    fields.insert("ImageHeight".into(), m.height.to_string());
    fields.insert("ImageWidth".into(), m.width.to_string());
    let obj: serde_json::Map<String, serde_json::Value> =
        fields.into_iter().map(|(k, v)| (k, serde_json::json!({ "value": v }))).collect();
    serde_json::to_vec(&serde_json::Value::Object(obj)).unwrap_or_else(|_| b"{}".to_vec())
}
