//! Progressive JPEG scan selection for heavily downscaled outputs.
//!
//! A progressive JPEG written by libjpeg's default script (cjpeg, jpegtran, most
//! encoders with `-progressive`) sends the AC coefficients' least significant bit last,
//! in successive-approximation refinement scans (Ss > 0, Ah > 0, Al = 0). Those scans
//! hold about half the file, and decoding them (`decode_mcu_AC_refine`) is half of the
//! whole decode. Without them every AC coefficient is known to within one quantisation
//! step, and libjpeg's inter-block smoothing fills in what it can; once the output is
//! many times smaller than the source, the difference averages out below what DSSIM
//! and SSIMULACRA2 can see (measured figures: `codec::COARSE_AC_MIN_REDUCTION`).

/// The stream with every final AC refinement scan removed (marker segments kept, so
/// the Huffman tables later scans use are all still defined). `None` when there is
/// nothing to drop or the stream is not one we can walk safely to its EOI (truncated,
/// malformed): the caller then decodes the original bytes and reports what the decoder
/// says about them.
pub(crate) fn without_ac_lsb_refinement(src: &[u8]) -> Option<Vec<u8>> {
    if !src.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut out = Vec::with_capacity(src.len());
    out.extend_from_slice(&src[..2]);
    let mut dropped = false;
    let mut i = 2usize;
    loop {
        // Fill bytes (0xFF runs) may precede any marker.
        while src.get(i) == Some(&0xFF) && src.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if *src.get(i)? != 0xFF {
            return None;
        }
        let marker = *src.get(i + 1)?;
        match marker {
            0xD9 => {
                out.extend_from_slice(&src[i..i + 2]);
                return dropped.then_some(out);
            }
            0x01 | 0xD0..=0xD7 => {
                out.extend_from_slice(&src[i..i + 2]);
                i += 2;
            }
            _ => {
                let len = usize::from(u16::from_be_bytes([*src.get(i + 2)?, *src.get(i + 3)?]));
                let header_end = i.checked_add(2 + len).filter(|&e| len >= 2 && e <= src.len())?;
                let end = if marker == 0xDA { entropy_end(src, header_end)? } else { header_end };
                if marker == 0xDA && is_ac_lsb_refinement(&src[i + 4..header_end]) {
                    dropped = true;
                } else {
                    out.extend_from_slice(&src[i..end]);
                }
                i = end;
            }
        }
    }
}

/// A scan header (after the length) that refines AC coefficients down to bit 0.
fn is_ac_lsb_refinement(sos: &[u8]) -> bool {
    let Some(&components) = sos.first() else { return false };
    let at = 1 + 2 * usize::from(components);
    match sos.get(at..at + 3) {
        Some(&[ss, _se, ahal]) => ss > 0 && ahal >> 4 > 0 && ahal & 0x0F == 0,
        _ => false,
    }
}

/// Where a scan's entropy-coded data ends: the next marker that is not a stuffed zero
/// or a restart marker. `None` if the data runs off the end (a truncated file).
fn entropy_end(src: &[u8], from: usize) -> Option<usize> {
    let mut j = from;
    loop {
        j += src.get(j..)?.iter().position(|&b| b == 0xFF)?;
        match *src.get(j + 1)? {
            0x00 | 0xD0..=0xD7 => j += 2,
            0xFF => j += 1,
            _ => return Some(j),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROGRESSIVE: &[u8] = include_bytes!("../../fixtures/libvips_rotation_6_progressive_icc.jpg");
    const BASELINE: &[u8] = include_bytes!("../../fixtures/giunchedi_srgb_icc.jpg");

    /// (Ss, Ah, Al) of every scan, in order.
    fn scans(jpeg: &[u8]) -> Vec<(u8, u8, u8)> {
        let mut out = Vec::new();
        let mut i = 2;
        while i + 4 <= jpeg.len() && jpeg[i + 1] != 0xD9 {
            let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
            if jpeg[i + 1] == 0xDA {
                let at = i + 5 + 2 * usize::from(jpeg[i + 4]);
                out.push((jpeg[at], jpeg[at + 2] >> 4, jpeg[at + 2] & 0x0F));
                i = entropy_end(jpeg, i + 2 + len).unwrap();
            } else {
                i += 2 + len;
            }
        }
        out
    }

    #[test]
    fn drops_only_the_final_ac_refinement_scans() {
        let before = scans(PROGRESSIVE);
        assert_eq!(before.len(), 10, "libjpeg's default progression");
        let filtered = without_ac_lsb_refinement(PROGRESSIVE).unwrap();
        let after = scans(&filtered);
        let kept: Vec<_> = before.iter().copied().filter(|&(ss, ah, al)| !(ss > 0 && ah > 0 && al == 0)).collect();
        assert_eq!(after, kept);
        assert_eq!(after.len(), 7, "three AC LSB scans (one per component) go");
        assert!(after.contains(&(0, 1, 0)), "the DC refinement stays");
        assert!(filtered.ends_with(&[0xFF, 0xD9]));
        assert!(filtered.len() < PROGRESSIVE.len() * 3 / 4, "{} of {}", filtered.len(), PROGRESSIVE.len());
    }

    #[test]
    fn leaves_baseline_and_damaged_streams_alone() {
        assert!(without_ac_lsb_refinement(BASELINE).is_none(), "one scan, nothing to drop");
        assert!(without_ac_lsb_refinement(b"not a jpeg").is_none());
        // Cut inside the last scan: no EOI, so the decoder must see the original.
        assert!(without_ac_lsb_refinement(&PROGRESSIVE[..PROGRESSIVE.len() - 100]).is_none());
    }

    #[test]
    fn any_prefix_or_bit_flip_is_handled_without_panic() {
        let well_formed =
            |out: Option<Vec<u8>>| out.is_none_or(|f| f.starts_with(&[0xFF, 0xD8]) && f.ends_with(&[0xFF, 0xD9]));
        for cut in (0..PROGRESSIVE.len()).step_by(97) {
            assert!(without_ac_lsb_refinement(&PROGRESSIVE[..cut]).is_none(), "cut at {cut}: no EOI");
        }
        let mut damaged = PROGRESSIVE.to_vec();
        for at in (2..damaged.len()).step_by(131) {
            damaged[at] ^= 0xFF;
            assert!(well_formed(without_ac_lsb_refinement(&damaged)), "flip at {at}");
        }
    }
}
