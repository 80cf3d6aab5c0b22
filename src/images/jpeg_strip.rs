//! Lossless removal of metadata from a JPEG.
//!
//! Re-encoding a photo that is already a small, heavily compressed JPEG makes it
//! bigger and worse. For such a photo sxf sends the original entropy-coded data
//! untouched and rebuilds everything around it from an allowlist:
//!
//! * kept as they are: the coding segments of a Huffman-coded JPEG (SOF0, SOF1,
//!   SOF2, DQT, DHT, DRI, SOS) and the scans;
//! * rebuilt: the ICC profile (reassembled from its APP2 chunks, checked to be a
//!   profile moxcms can read for these pixels, its creation time, device maker and
//!   model fields and profile ID cleared, then split into fresh chunks), the Adobe
//!   segment (APP14, exactly its 12 standard bytes, which say how the components
//!   are to be read), and a minimal EXIF block holding only the Orientation tag,
//!   written only when the photo is not upright as stored;
//! * dropped: every other APPn segment (JFIF and its thumbnail, EXIF with GPS
//!   position, camera serial number and time, XMP, IPTC, MPF, maker segments),
//!   comments, and every byte after the end-of-image marker (phones append depth
//!   maps and other pictures there).
//!
//! Any other marker (arithmetic coding, hierarchical or lossless frames, a
//! reserved or stand-alone marker, a second SOI) makes the walk give up, and the
//! photo is re-encoded instead. What cannot be removed without decoding: bits a
//! writer hid inside the entropy-coded data itself. The caller decodes the result
//! and checks it shows the same picture before using it (see `DecodedPhoto`).

use image::metadata::Orientation;
use moxcms::{ColorProfile, DataColorSpace};

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const APP1: u8 = 0xE1;
const APP2: u8 = 0xE2;
const APP14: u8 = 0xEE;
const ICC_TAG: &[u8] = b"ICC_PROFILE\0";
/// Profile bytes per APP2 chunk: 65535 - 2 (length) - 12 (tag) - 2 (sequence).
const ICC_CHUNK: usize = 65_519;

/// The JPEG with its metadata removed as described in the module documentation,
/// and `orientation` written as a minimal EXIF block unless it is upright. Also
/// says whether a colour profile was kept.
pub(crate) fn strip_metadata(jpeg: &[u8], orientation: Orientation) -> Result<Stripped, String> {
    if jpeg.get(..2) != Some(&[0xFF, SOI][..]) {
        return Err("not a JPEG".into());
    }
    let mut coding = Vec::with_capacity(jpeg.len());
    let mut icc_chunks: Vec<(u8, u8, &[u8])> = Vec::new();
    let mut adobe_transform = None;
    let mut components = None;

    let mut i = 2;
    loop {
        let (marker, start) = next_marker(jpeg, i)?;
        i = start + 2;
        if marker == EOI {
            break;
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
        match marker {
            // Baseline, extended and progressive Huffman frames: the frame header
            // says how many components there are.
            0xC0..=0xC2 => {
                components = body.get(5).copied();
                coding.extend_from_slice(segment);
            }
            0xC4 | 0xDB | 0xDD | SOS => coding.extend_from_slice(segment),
            APP2 if body.starts_with(ICC_TAG) => {
                let (&seq, &count) = (
                    body.get(ICC_TAG.len()).ok_or("short ICC chunk")?,
                    body.get(ICC_TAG.len() + 1).ok_or("short ICC chunk")?,
                );
                icc_chunks.push((seq, count, &body[ICC_TAG.len() + 2..]));
            }
            APP14 if body.starts_with(b"Adobe") => {
                adobe_transform = Some(*body.get(11).ok_or("short Adobe segment")?);
            }
            0xE0..=0xEF | 0xFE => {} // other APPn and COM: dropped
            other => return Err(format!("unexpected JPEG marker FF{other:02X}")),
        }
        i = end;
        if marker == SOS {
            let data_end = entropy_coded_end(jpeg, i);
            coding.extend_from_slice(&jpeg[i..data_end]);
            i = data_end;
        }
    }

    let components = components.ok_or("no frame header")?;
    let icc = match icc_chunks.is_empty() {
        true => None,
        false => Some(clean_profile(&icc_chunks, components)?),
    };
    let mut out = Vec::with_capacity(coding.len() + 64 + icc.as_ref().map_or(0, Vec::len));
    out.extend_from_slice(&[0xFF, SOI]);
    let exif_value = orientation_tag_value(orientation);
    if exif_value != 1 {
        out.extend_from_slice(&minimal_exif(exif_value));
    }
    if let Some(profile) = &icc {
        let count = profile.len().div_ceil(ICC_CHUNK);
        for (n, chunk) in profile.chunks(ICC_CHUNK).enumerate() {
            let mut body = ICC_TAG.to_vec();
            body.extend_from_slice(&[n as u8 + 1, count as u8]);
            body.extend_from_slice(chunk);
            out.extend_from_slice(&segment(APP2, &body));
        }
    }
    if let Some(transform) = adobe_transform {
        // "Adobe", version 100, flags0 0, flags1 0, colour transform.
        out.extend_from_slice(&segment(
            APP14,
            &[b'A', b'd', b'o', b'b', b'e', 0, 100, 0, 0, 0, 0, transform],
        ));
    }
    out.extend_from_slice(&coding);
    out.extend_from_slice(&[0xFF, EOI]);
    Ok(Stripped {
        bytes: out,
        profile_kept: icc.is_some(),
    })
}

/// What [`strip_metadata`] made.
pub(crate) struct Stripped {
    pub bytes: Vec<u8>,
    pub profile_kept: bool,
}

fn segment(marker: u8, body: &[u8]) -> Vec<u8> {
    let mut s = vec![0xFF, marker];
    s.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    s.extend_from_slice(body);
    s
}

/// Reassemble an ICC profile from its APP2 chunks (numbered 1..=count, each once),
/// check it describes pixels of this kind, and clear the fields that say when and
/// on what device it was made.
fn clean_profile(chunks: &[(u8, u8, &[u8])], components: u8) -> Result<Vec<u8>, String> {
    let count = chunks[0].1;
    if count == 0 || chunks.len() != usize::from(count) {
        return Err("the ICC profile's chunks are incomplete".into());
    }
    let mut ordered = vec![None; usize::from(count)];
    for &(seq, n, data) in chunks {
        let slot = usize::from(seq)
            .checked_sub(1)
            .and_then(|k| ordered.get_mut(k))
            .ok_or("an ICC chunk is out of range")?;
        if n != count || slot.is_some() {
            return Err("the ICC profile's chunks disagree".into());
        }
        *slot = Some(data);
    }
    let mut profile: Vec<u8> = ordered.into_iter().flatten().flatten().copied().collect();
    if profile.len() < 128 || profile.len() > super::colour::MAX_ICC_BYTES {
        return Err("the ICC profile has an impossible size".into());
    }
    let parsed =
        ColorProfile::new_from_slice(&profile).map_err(|e| format!("ICC profile: {e:?}"))?;
    let fits = matches!(
        (parsed.color_space, components),
        (DataColorSpace::Rgb, 3) | (DataColorSpace::Gray, 1) | (DataColorSpace::Cmyk, 4)
    );
    if !fits {
        return Err("the ICC profile is not for these pixels".into());
    }
    // Header fields (ICC.1:2022 section 7.2): date and time (24..36), device
    // manufacturer and model (48..56), device attributes (56..64), profile ID
    // (84..100; all zero means "not computed", which is what a changed header needs).
    for range in [24..36, 48..64, 84..100] {
        profile[range].fill(0);
    }
    Ok(profile)
}

/// The position of the next marker at `from` (after fill bytes), as (marker
/// code, index of its first FF). Anything but a marker there is an error.
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
    let mut body = b"Exif\0\0".to_vec();
    body.extend_from_slice(b"MM\x00\x2A"); // big-endian TIFF
    body.extend_from_slice(&8u32.to_be_bytes()); // IFD0 at offset 8
    body.extend_from_slice(&1u16.to_be_bytes()); // one entry
    body.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    body.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    body.extend_from_slice(&1u32.to_be_bytes()); // count 1
    body.extend_from_slice(&value.to_be_bytes());
    body.extend_from_slice(&[0, 0]); // value padded to 4 bytes
    body.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    segment(APP1, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COM: u8 = 0xFE;

    /// A structurally valid one-component JPEG skeleton (not decodable; the walk
    /// doesn't decode), with `extra` segments after the JFIF header.
    fn skeleton(extra: &[Vec<u8>], trailing: &[u8]) -> Vec<u8> {
        let mut j = vec![0xFF, SOI];
        j.extend(segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
        for s in extra {
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

    fn grey_profile() -> Vec<u8> {
        let mut p = ColorProfile::new_gray_with_gamma(2.2).encode().unwrap();
        p[24..36].copy_from_slice(b"\x07\xea\x00\x0b\x00\x1d\x0a\x00\x00\x00\x00\x00"); // 2026-11-29 10:00
        p[48..52].copy_from_slice(b"CANO");
        p[52..56].copy_from_slice(b"EOS5");
        p
    }

    fn icc_chunk(seq: u8, count: u8, data: &[u8]) -> Vec<u8> {
        let mut body = ICC_TAG.to_vec();
        body.extend_from_slice(&[seq, count]);
        body.extend_from_slice(data);
        segment(APP2, &body)
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn metadata_segments_comments_and_trailing_pictures_are_removed() {
        let profile = grey_profile();
        let (first, second) = profile.split_at(100);
        let input = skeleton(
            &[
                segment(APP1, b"Exif\0\0GPS and SERIAL-4242"),
                segment(APP1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>"),
                segment(APP2, b"MPF\0secondary image index"),
                icc_chunk(2, 2, second),
                icc_chunk(1, 2, first),
                segment(APP14, b"Adobe\0\x64\0\0\0\0\x01 and a long tail"),
                segment(COM, b"shot by someone"),
            ],
            b"\xFF\xD8 a whole second picture with its own EXIF",
        );
        let out = strip_metadata(&input, Orientation::NoTransforms).unwrap();
        assert!(out.profile_kept);
        let out = out.bytes;
        for gone in [
            &b"SERIAL"[..],
            b"xmpmeta",
            b"MPF",
            b"shot by",
            b"JFIF",
            b"between",
            b"second",
            b"long tail",
            b"CANO",
            b"EOS5",
        ] {
            assert!(
                !contains(&out, gone),
                "{} survived",
                String::from_utf8_lossy(gone)
            );
        }
        // The profile is back in one chunk, its date and device fields cleared.
        let mut cleaned = profile.clone();
        for range in [24..36, 48..64, 84..100] {
            cleaned[range].fill(0);
        }
        assert!(contains(&out, &icc_chunk(1, 1, &cleaned)), "profile lost");
        assert!(contains(&out, &segment(APP14, b"Adobe\0\x64\0\0\0\0\x01")));
        assert!(out.ends_with(&[0x78, 0xFF, EOI]));
        // The scan data, stuffing and restart markers included, is untouched.
        assert!(contains(&out, &[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56]));
    }

    #[test]
    fn orientation_becomes_a_one_tag_exif_block() {
        let input = skeleton(&[], b"");
        let out = strip_metadata(&input, Orientation::Rotate90).unwrap().bytes;
        let expected = minimal_exif(6);
        assert_eq!(&out[2..2 + expected.len()], &expected[..]);
        assert_eq!(expected.len(), 2 + 2 + 6 + 26);
        let upright = strip_metadata(&input, Orientation::NoTransforms).unwrap();
        assert!(!contains(&upright.bytes, b"Exif"));
        assert!(!upright.profile_kept);
    }

    #[test]
    fn markers_outside_the_allowlist_make_it_give_up() {
        // TEM (stand-alone to the JPEG standard, read with a length by some
        // decoders), a second SOI, reserved and JPG-n markers, arithmetic coding
        // and a lossless frame: each could make two readers see two pictures.
        for marker in [0x01u8, 0x02, 0xD8, 0xF0, 0xC8, 0xCC, 0xC3, 0xD0] {
            let mut input = vec![0xFF, SOI, 0xFF, marker];
            input.extend_from_slice(&skeleton(&[], b"")[2..]);
            assert!(
                strip_metadata(&input, Orientation::NoTransforms).is_err(),
                "FF{marker:02X} accepted"
            );
        }
    }

    #[test]
    fn broken_icc_chunks_make_it_give_up() {
        let profile = grey_profile();
        let cases = [
            vec![icc_chunk(1, 2, &profile)], // one missing
            vec![icc_chunk(1, 1, &profile), icc_chunk(1, 1, &profile)], // twice
            vec![icc_chunk(0, 1, &profile)], // number 0
            vec![icc_chunk(1, 1, b"SERIAL-4242 is not a profile")], // junk
            vec![icc_chunk(1, 1, &ColorProfile::new_srgb().encode().unwrap())], // RGB for grey
        ];
        for extra in cases {
            assert!(strip_metadata(&skeleton(&extra, b""), Orientation::NoTransforms).is_err());
        }
    }

    #[test]
    fn truncated_or_broken_input_is_an_error_not_a_panic() {
        let input = skeleton(&[], b"");
        for cut in 0..input.len() - 1 {
            // Every prefix either fails cleanly or (past the last scan) still ends
            // with an end-of-image marker of its own.
            if let Ok(out) = strip_metadata(&input[..cut], Orientation::NoTransforms) {
                assert!(out.bytes.ends_with(&[0xFF, EOI]));
            }
        }
        assert!(strip_metadata(b"GIF89a", Orientation::NoTransforms).is_err());
        let mut bad_len = input.clone();
        bad_len[4..6].copy_from_slice(&[0, 1]);
        assert!(strip_metadata(&bad_len, Orientation::NoTransforms).is_err());
    }
}
