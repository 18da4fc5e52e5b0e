//! `info` (spec §4.16): JSON `{"Field": {"value": "<string>"}, ...}` with keys sorted:
//! FileSize, Format, FrameCount, ImageHeight, ImageWidth (stored size, not
//! orientation-corrected), resolution fields when present (EXIF, else JFIF density) and
//! the EXIF tags (named as in EXIF 2.31; the IFD pointer tags are not reported because
//! the EXIF reader hides them). PNG never yields EXIF.

use std::collections::BTreeMap;

use crate::process::codec::Probe;
use crate::process::ops::format::Format;

fn exif_value(f: &exif::Field) -> String {
    use exif::Value;
    let join = |v: Vec<String>| v.join(" ");
    match &f.value {
        Value::Ascii(v) => join(
            v.iter()
                .map(|s| String::from_utf8_lossy(s).trim_end_matches(['\0', ' ']).to_string())
                .collect(),
        ),
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
                    fields.entry(name).or_insert_with(|| exif_value(f));
                }
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
    let obj: serde_json::Map<String, serde_json::Value> = fields
        .into_iter()
        .map(|(k, v)| (k, serde_json::json!({ "value": v })))
        .collect();
    serde_json::to_vec(&serde_json::Value::Object(obj)).unwrap_or_else(|_| b"{}".to_vec())
}
