//! Lossless removal of metadata from a JPEG.
//!
//! Re-encoding a photo that is already a small, heavily compressed JPEG makes it
//! bigger and worse. For such a photo sxf sends the original entropy-coded data
//! untouched and removes, losslessly, everything that is not needed to show it:
//!
//! * kept: the coding segments (SOF, DQT, DHT, DRI, DAC, SOS, DNL and the scans),
//!   the ICC profile (APP2 `ICC_PROFILE`, so colours stay right) and the Adobe
//!   segment (APP14, which says how the components of a CMYK or RGB JPEG are to be
//!   read);
//! * replaced: EXIF (APP1) by a minimal EXIF block holding only the Orientation
//!   tag, and only when the photo is not upright as stored;
//! * dropped: every other APPn segment (JFIF and its thumbnail, the rest of EXIF
//!   with GPS position, camera serial number and time, XMP, IPTC, MPF, maker
//!   segments), every comment (COM), and every byte after the end-of-image marker
//!   (phones append depth maps and other pictures there).
//!
//! The input has already been decoded in full by the pipeline, so it is known to be
//! a readable JPEG; this walk still checks every length and fails cleanly on
//! anything it cannot follow, in which case the pipeline re-encodes instead.

use image::metadata::Orientation;

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const APP1: u8 = 0xE1;
const APP2: u8 = 0xE2;
const APP14: u8 = 0xEE;
const COM: u8 = 0xFE;

/// The JPEG with its metadata removed as described in the module documentation,
/// and `orientation` written as a minimal EXIF block unless it is upright.
pub(crate) fn strip_metadata(jpeg: &[u8], orientation: Orientation) -> Result<Vec<u8>, String> {
    if jpeg.get(..2) != Some(&[0xFF, SOI][..]) {
        return Err("not a JPEG".into());
    }
    let mut out = Vec::with_capacity(jpeg.len());
    out.extend_from_slice(&[0xFF, SOI]);
    let exif_value = orientation_tag_value(orientation);
    if exif_value != 1 {
        out.extend_from_slice(&minimal_exif(exif_value));
    }

    let mut i = 2;
    loop {
        let (marker, start) = next_marker(jpeg, i)?;
        i = start + 2;
        match marker {
            EOI => {
                out.extend_from_slice(&[0xFF, EOI]);
                return Ok(out);
            }
            // TEM and a stray RSTn stand alone, without a length.
            0x01 | 0xD0..=0xD7 => {
                out.extend_from_slice(&[0xFF, marker]);
                continue;
            }
            _ => {}
        }
        let len = jpeg
            .get(i..i + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or("the JPEG ends inside a segment header")?;
        if len < 2 {
            return Err("a JPEG segment has an impossible length".into());
        }
        let end = i + len;
        let segment = jpeg
            .get(start..end)
            .ok_or("the JPEG ends inside a segment")?;
        let body = &segment[4..];
        if keep_segment(marker, body) {
            out.extend_from_slice(segment);
        }
        i = end;
        if marker == SOS {
            let data_end = entropy_coded_end(jpeg, i);
            out.extend_from_slice(&jpeg[i..data_end]);
            i = data_end;
        }
    }
}

/// Whether a segment before, between or after the scans is kept.
fn keep_segment(marker: u8, body: &[u8]) -> bool {
    match marker {
        APP2 => body.starts_with(b"ICC_PROFILE\0"),
        APP14 => body.starts_with(b"Adobe"),
        0xE0..=0xEF | COM => false,
        _ => true,
    }
}

/// The position of the next marker at or after `from` (skipping fill bytes), as
/// (marker code, index of its first FF).
fn next_marker(jpeg: &[u8], from: usize) -> Result<(u8, usize), String> {
    if jpeg.get(from) != Some(&0xFF) {
        return Err("a JPEG marker was expected".into());
    }
    let mut i = from;
    while jpeg.get(i + 1) == Some(&0xFF) {
        i += 1; // fill bytes
    }
    match jpeg.get(i + 1) {
        Some(&0x00) | None => Err("the JPEG ends without an end-of-image marker".into()),
        Some(&marker) => Ok((marker, i)),
    }
}

/// End of the entropy-coded data that starts at `from`: the first marker other
/// than a stuffed zero (FF 00) or a restart marker (FF D0..D7).
fn entropy_coded_end(jpeg: &[u8], from: usize) -> usize {
    let mut i = from;
    while i + 1 < jpeg.len() {
        if jpeg[i] == 0xFF {
            match jpeg[i + 1] {
                0x00 | 0xD0..=0xD7 => i += 2,
                // Fill bytes before a marker belong to the marker.
                0xFF => i += 1,
                _ => return i,
            }
        } else {
            i += 1;
        }
    }
    jpeg.len()
}

/// EXIF's Orientation tag value (1..=8) for an orientation.
fn orientation_tag_value(orientation: Orientation) -> u16 {
    match orientation {
        Orientation::NoTransforms => 1,
        Orientation::FlipHorizontal => 2,
        Orientation::Rotate180 => 3,
        Orientation::FlipVertical => 4,
        Orientation::Rotate90FlipH => 5,
        Orientation::Rotate90 => 6,
        Orientation::Rotate270FlipH => 7,
        Orientation::Rotate270 => 8,
    }
}

/// An APP1 segment holding an EXIF block with one IFD of one entry: Orientation.
fn minimal_exif(value: u16) -> Vec<u8> {
    let mut tiff = Vec::with_capacity(26);
    tiff.extend_from_slice(b"MM\x00\x2A"); // big-endian TIFF
    tiff.extend_from_slice(&8u32.to_be_bytes()); // IFD0 at offset 8
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count 1
    tiff.extend_from_slice(&value.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padded to 4 bytes
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD

    let mut segment = vec![0xFF, APP1];
    segment.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
    segment.extend_from_slice(b"Exif\0\0");
    segment.extend_from_slice(&tiff);
    segment
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(marker: u8, body: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(body);
        s
    }

    /// A structurally valid JPEG skeleton (not decodable; the walk doesn't decode).
    fn skeleton(extra_before: &[Vec<u8>], trailing: &[u8]) -> Vec<u8> {
        let mut j = vec![0xFF, SOI];
        j.extend(segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
        for s in extra_before {
            j.extend(s);
        }
        j.extend(segment(0xDB, &[0; 65]));
        j.extend(segment(0xC0, &[8, 0, 8, 0, 8, 1, 1, 0x11, 0]));
        j.extend(segment(0xC4, &[0; 17]));
        j.extend(segment(SOS, &[1, 1, 0, 0, 63, 0]));
        j.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56]);
        j.extend(segment(COM, b"between scans"));
        j.extend(segment(SOS, &[1, 1, 0, 0, 63, 0]));
        j.extend_from_slice(&[0x78]);
        j.extend_from_slice(&[0xFF, EOI]);
        j.extend_from_slice(trailing);
        j
    }

    #[test]
    fn metadata_segments_comments_and_trailing_pictures_are_removed() {
        let exif = segment(APP1, b"Exif\0\0GPS and SERIAL-4242");
        let xmp = segment(APP1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>");
        let mpf = segment(APP2, b"MPF\0secondary image index");
        let icc = segment(APP2, b"ICC_PROFILE\0\x01\x01profile bytes");
        let adobe = segment(APP14, b"Adobe\0\x64\0\0\0\0\x01");
        let com = segment(COM, b"shot by someone");
        let input = skeleton(
            &[exif, xmp, mpf, icc.clone(), adobe.clone(), com],
            b"\xFF\xD8 a whole second picture with its own EXIF",
        );
        let out = strip_metadata(&input, Orientation::NoTransforms).unwrap();
        let text = String::from_utf8_lossy(&out);
        for gone in [
            "SERIAL", "xmpmeta", "MPF", "shot by", "JFIF", "between", "second",
        ] {
            assert!(!text.contains(gone), "{gone} survived");
        }
        assert!(out.windows(icc.len()).any(|w| w == icc), "ICC profile lost");
        assert!(
            out.windows(adobe.len()).any(|w| w == adobe),
            "Adobe segment lost"
        );
        assert!(out.ends_with(&[0x78, 0xFF, EOI]));
        // The scan data, stuffing and restart markers included, is untouched.
        assert!(
            out.windows(7)
                .any(|w| w == [0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56])
        );
    }

    #[test]
    fn orientation_becomes_a_one_tag_exif_block() {
        let input = skeleton(&[], b"");
        let out = strip_metadata(&input, Orientation::Rotate90).unwrap();
        let expected = minimal_exif(6);
        assert_eq!(&out[2..2 + expected.len()], &expected[..]);
        assert_eq!(expected.len(), 2 + 2 + 6 + 26);
        let upright = strip_metadata(&input, Orientation::NoTransforms).unwrap();
        assert!(!upright.windows(4).any(|w| w == b"Exif"));
    }

    #[test]
    fn truncated_or_broken_input_is_an_error_not_a_panic() {
        let input = skeleton(&[], b"");
        for cut in 0..input.len() - 1 {
            // Every prefix either fails cleanly or (past the last scan) still ends
            // with an end-of-image marker of its own.
            if let Ok(out) = strip_metadata(&input[..cut], Orientation::NoTransforms) {
                assert!(out.ends_with(&[0xFF, EOI]));
            }
        }
        assert!(strip_metadata(b"GIF89a", Orientation::NoTransforms).is_err());
        let mut bad_len = input.clone();
        bad_len[4..6].copy_from_slice(&[0, 1]);
        assert!(strip_metadata(&bad_len, Orientation::NoTransforms).is_err());
    }
}
