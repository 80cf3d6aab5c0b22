//! HEIF photos: HEIC (HEVC-coded, what iPhones write), AVIF (AV1-coded) and other
//! HEIF files.
//!
//! Always compiled: recognising these files from their `ftyp` box ([`detect`]) and
//! reading the primary image's stored size from its `ispe` property
//! ([`stored_dimensions`]), both in safe Rust and bounded by the input. That is
//! enough for `--keep-original`, which passes the bytes through unchanged, and for
//! a clear refusal in a build without the `heif` feature.
//!
//! With the `heif` feature, [`decode`] decodes the primary image with libheif:
//!
//! * The declared size (the stored `ispe` size and the displayed size) is checked
//!   against [`MAX_SIDE`], [`MAX_PIXELS`] and
//!   [`MAX_DECODE_ALLOC`](super::MAX_DECODE_ALLOC) before any pixel is decoded,
//!   and libheif's own security limits are tightened to [`MAX_PIXELS`] pixels and
//!   `LIBHEIF_MAX_TOTAL_MEMORY` (2 GiB) in all.
//! * libheif applies HEIF's own transformations (clean aperture `clap`, rotation
//!   `irot`, mirroring `imir`), which are the orientation of a HEIF photo; any EXIF
//!   orientation tag inside is not applied on top (HEIF writers are required to
//!   leave it at 1, or ignored).
//! * 8-bit files come out as 8-bit RGB(A). Files of more than 8 bits a sample
//!   (10-bit iPhone HEICs, 10/12-bit AVIFs) are decoded as 16-bit little-endian RGB(A)
//!   and each sample is scaled to the full 16-bit range (`v * 65535 / max`, rounded),
//!   so the colour conversion that follows keeps their precision; the pipeline
//!   reduces to 8 bits only at the end.
//! * The colour description is returned as [`ColourInfo`]: the ICC profile
//!   (`colr prof` / `rICC`) if there is one, else the nclx code points (from the
//!   `colr nclx` box, or, failing that, what libheif reports from the coded
//!   bitstream), else unspecified.

use std::fmt;
use std::path::Path;

#[cfg(feature = "heif")]
use super::MAX_DECODE_ALLOC;
use super::{ColourInfo, ImageError, check_size};

/// Which kind of HEIF file, from its brands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeifKind {
    /// HEVC-coded HEIF (brands heic, heix, heim, heis, hevc, hevx).
    Heic,
    /// AV1-coded HEIF (brands avif, avis).
    Avif,
    /// Only the generic HEIF brands (mif1, msf1).
    Heif,
}

impl HeifKind {
    /// The name used in messages: "HEIC", "AVIF" or "HEIF".
    pub(crate) fn name(self) -> &'static str {
        match self {
            HeifKind::Heic => "HEIC",
            HeifKind::Avif => "AVIF",
            HeifKind::Heif => "HEIF",
        }
    }

    /// The media type recorded when the file is kept as it is.
    pub(crate) fn media_type(self) -> &'static str {
        match self {
            HeifKind::Heic => "image/heic",
            HeifKind::Avif => "image/avif",
            HeifKind::Heif => "image/heif",
        }
    }

    /// File name extension, for a kept file whose path has no file name.
    pub(crate) fn extension(self) -> &'static str {
        match self {
            HeifKind::Heic => "heic",
            HeifKind::Avif => "avif",
            HeifKind::Heif => "heif",
        }
    }
}

impl fmt::Display for HeifKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Recognise a HEIF file from its leading `ftyp` box: the major brand and the
/// compatible brands. HEVC brands make it HEIC, AV1 brands AVIF, and the generic
/// `mif1`/`msf1` alone HEIF. An HEVC or AV1 major brand wins over the compatible
/// list.
pub(crate) fn detect(bytes: &[u8]) -> Option<HeifKind> {
    if bytes.get(4..8)? != b"ftyp" {
        return None;
    }
    let (size, header) = box_size(bytes, 0, bytes.len())?;
    // The box must at least hold the major brand and the minor version.
    if size < header + 8 {
        return None;
    }
    let body = bytes.get(header..size)?;
    let major = kind_of_brand(&body[0..4]);
    if let Some(kind @ (HeifKind::Heic | HeifKind::Avif)) = major {
        return Some(kind);
    }
    let found = |kind| {
        body[8..]
            .chunks_exact(4)
            .any(|brand| kind_of_brand(brand) == Some(kind))
    };
    [HeifKind::Heic, HeifKind::Avif]
        .into_iter()
        .find(|&kind| found(kind))
        .or_else(|| (major.is_some() || found(HeifKind::Heif)).then_some(HeifKind::Heif))
}

fn kind_of_brand(brand: &[u8]) -> Option<HeifKind> {
    match brand {
        b"heic" | b"heix" | b"heim" | b"heis" | b"hevc" | b"hevx" => Some(HeifKind::Heic),
        b"avif" | b"avis" => Some(HeifKind::Avif),
        b"mif1" | b"msf1" => Some(HeifKind::Heif),
        _ => None,
    }
}

/// Size and header length of the box starting at `at`, which must end by `end`.
/// `None` when the header is cut off, malformed, or the box overruns `end`.
fn box_size(bytes: &[u8], at: usize, end: usize) -> Option<(usize, usize)> {
    let head = bytes.get(at..at.checked_add(8)?)?;
    let size32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let (size, header) = match size32 {
        0 => (end.checked_sub(at)?, 8), // to the end of the enclosing space
        1 => {
            let large = bytes.get(at + 8..at.checked_add(16)?)?;
            let large = u64::from_be_bytes(large.try_into().ok()?);
            (usize::try_from(large).ok()?, 16)
        }
        n => (usize::try_from(n).ok()?, 8),
    };
    if size < header || at.checked_add(size)? > end {
        return None;
    }
    Some((size, header))
}

/// The children of the box space `bytes[start..end]`, as (type, payload start, end).
/// Stops at the first malformed box. At most `MAX_CHILDREN` are returned, which
/// bounds the work on hostile input (a real file has a handful).
fn children(
    bytes: &[u8],
    start: usize,
    end: usize,
) -> impl Iterator<Item = ([u8; 4], usize, usize)> {
    const MAX_CHILDREN: usize = 10_000;
    let mut at = start;
    std::iter::from_fn(move || {
        let (size, header) = box_size(bytes, at, end)?;
        let kind: [u8; 4] = bytes.get(at + 4..at + 8)?.try_into().ok()?;
        let item = (kind, at + header, at + size);
        at += size;
        Some(item)
    })
    .take(MAX_CHILDREN)
}

fn child(bytes: &[u8], start: usize, end: usize, kind: &[u8; 4]) -> Option<(usize, usize)> {
    children(bytes, start, end)
        .find(|(k, _, _)| k == kind)
        .map(|(_, s, e)| (s, e))
}

/// A bounds-checked big-endian reader over one box payload.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn uint(&mut self, len: usize) -> Option<u64> {
        let field = self.bytes.get(self.at..self.at.checked_add(len)?)?;
        self.at += len;
        Some(field.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }
}

/// The stored (pre-transformation) width and height of the primary image, from
/// the `ispe` property associated with the `pitm` item. Pure Rust, bounded: every
/// read is checked, and loops run over at most the entries the input holds.
/// `None` when the structure is missing or malformed. (With the `heif` feature
/// libheif reads the header, and this only words its refusals.)
pub(crate) fn stored_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let (meta_start, meta_end) = child(bytes, 0, bytes.len(), b"meta")?;
    let meta_start = meta_start.checked_add(4)?; // meta is a FullBox
    if meta_start > meta_end {
        return None;
    }

    let (pitm_start, pitm_end) = child(bytes, meta_start, meta_end, b"pitm")?;
    let mut r = Reader {
        bytes: bytes.get(pitm_start..pitm_end)?,
        at: 0,
    };
    let version = r.uint(1)?;
    r.uint(3)?;
    let primary = r.uint(if version == 0 { 2 } else { 4 })?;

    let (iprp_start, iprp_end) = child(bytes, meta_start, meta_end, b"iprp")?;
    let (ipco_start, ipco_end) = child(bytes, iprp_start, iprp_end, b"ipco")?;
    // Bounded by `children`; looked up by index for every association.
    let properties: Vec<_> = children(bytes, ipco_start, ipco_end).collect();

    // Property indices (1-based) associated with the primary item, from every ipma.
    for (kind, start, end) in children(bytes, iprp_start, iprp_end) {
        if &kind != b"ipma" {
            continue;
        }
        let mut r = Reader {
            bytes: bytes.get(start..end)?,
            at: 0,
        };
        let version = r.uint(1)?;
        let flags = r.uint(3)?;
        let entries = r.uint(4)?;
        for _ in 0..entries {
            let item = r.uint(if version < 1 { 2 } else { 4 })?;
            let count = r.uint(1)?;
            for _ in 0..count {
                let index = if flags & 1 == 1 {
                    r.uint(2)? & 0x7FFF
                } else {
                    r.uint(1)? & 0x7F
                };
                if item != primary || index == 0 {
                    continue;
                }
                let index = usize::try_from(index - 1).ok()?;
                let Some(&(kind, start, end)) = properties.get(index) else {
                    continue;
                };
                if &kind == b"ispe" {
                    let mut r = Reader {
                        bytes: bytes.get(start..end)?,
                        at: 4, // version and flags
                    };
                    let width = u32::try_from(r.uint(4)?).ok()?;
                    let height = u32::try_from(r.uint(4)?).ok()?;
                    return Some((width, height));
                }
            }
        }
    }
    None
}

/// The stored width and height of a HEIF file kept as it is (`--keep-original`),
/// checked against the size limits; no pixel is decoded. With the `heif` feature
/// libheif reads the header, so a file it cannot parse is refused; without it, the
/// primary item's `ispe` property is read in safe Rust.
pub(crate) fn header_dimensions(
    path: &Path,
    bytes: &[u8],
    kind: HeifKind,
) -> Result<(u32, u32), ImageError> {
    #[cfg(feature = "heif")]
    let (width, height) = {
        let _ = kind;
        let ctx = libheif::open(path, bytes)?;
        let handle = ctx
            .primary_image_handle()
            .map_err(|e| libheif::error(path, e))?;
        libheif::stored_size(path, &handle)?
    };
    #[cfg(not(feature = "heif"))]
    let (width, height) = stored_dimensions(bytes).ok_or_else(|| ImageError::Damaged {
        path: path.to_path_buf(),
        reason: format!("its {kind} structure has no readable primary image size"),
    })?;
    check_size(path, width, height)?;
    Ok((width, height))
}

/// A decoded HEIF photo.
#[cfg_attr(not(feature = "heif"), allow(dead_code))] // only the heif feature makes one
pub(crate) struct Decoded {
    /// The picture as displayed (HEIF transformations applied): `ImageRgb8`,
    /// `ImageRgba8`, `ImageRgb16` or `ImageRgba16`.
    pub image: image::DynamicImage,
    /// How its RGB values are to be read.
    pub colour: ColourInfo,
    /// Width as stored in the file (the `ispe` property, before transformations).
    pub stored_width: u32,
    /// Height as stored in the file.
    pub stored_height: u32,
}

/// Decode the primary image of a HEIF file (see the module documentation).
#[cfg(feature = "heif")]
pub(crate) fn decode(path: &Path, bytes: &[u8], _kind: HeifKind) -> Result<Decoded, ImageError> {
    libheif::decode(path, bytes)
}

/// Without the `heif` feature, every HEIF photo is refused with a sentence that
/// says how to get a build that reads it.
#[cfg(not(feature = "heif"))]
pub(crate) fn decode(path: &Path, _bytes: &[u8], kind: HeifKind) -> Result<Decoded, ImageError> {
    Err(ImageError::NoHeifSupport {
        path: path.to_path_buf(),
        kind: kind.name(),
    })
}

/// Bytes that libheif may hold at once while decoding (its compressed, YCbCr and
/// RGB buffers together): twice [`MAX_DECODE_ALLOC`].
#[cfg(feature = "heif")]
pub(crate) const LIBHEIF_MAX_TOTAL_MEMORY: u64 = 2 * MAX_DECODE_ALLOC;

#[cfg(feature = "heif")]
mod libheif {
    use std::path::Path;

    use image::{DynamicImage, ImageBuffer};
    use libheif_rs::{
        ColorProfile, ColorSpace, DecodingOptions, HeifContext, HeifError, HeifErrorCode,
        HeifErrorSubCode, ImageHandle, LibHeif, RgbChroma, color_profile_types,
    };

    use super::{Decoded, LIBHEIF_MAX_TOTAL_MEMORY, check_size, stored_dimensions};
    use crate::images::{ColourInfo, ImageError, MAX_DECODE_ALLOC, MAX_PIXELS, limits_text};

    /// Map a libheif error to ours, naming the file.
    pub(super) fn error(path: &Path, err: HeifError) -> ImageError {
        let path = path.to_path_buf();
        let message = err.message.trim();
        let reason = if message.is_empty() {
            format!("{:?}", err.code)
        } else {
            message.to_string()
        };
        match (err.code, err.sub_code) {
            (_, HeifErrorSubCode::SecurityLimitExceeded)
            | (HeifErrorCode::MemoryAllocationError, _) => ImageError::TooLarge {
                path,
                detail: format!("{reason}; {}", limits_text()),
            },
            (HeifErrorCode::UnsupportedFeature | HeifErrorCode::UnsupportedFileType, _) => {
                ImageError::NotAnImage { path, reason }
            }
            _ => ImageError::Damaged { path, reason },
        }
    }

    /// A libheif context over `bytes`, with its security limits tightened to ours.
    pub(super) fn open<'a>(path: &Path, bytes: &'a [u8]) -> Result<HeifContext<'a>, ImageError> {
        let mut ctx: HeifContext<'a> = HeifContext::new().map_err(|e| error(path, e))?;
        let mut limits = ctx.security_limits();
        limits.set_max_image_size_pixels(MAX_PIXELS);
        if limits.max_total_memory() == 0 || limits.max_total_memory() > LIBHEIF_MAX_TOTAL_MEMORY {
            limits.set_max_total_memory(LIBHEIF_MAX_TOTAL_MEMORY);
        }
        ctx.set_security_limits(&limits)
            .map_err(|e| error(path, e))?;
        ctx.read_bytes(bytes).map_err(|e| match error(path, e) {
            // libheif refuses an over-large item while reading the structure, in
            // words of its own: say the declared size, as for every other format.
            ImageError::TooLarge { path, detail } => ImageError::TooLarge {
                path,
                detail: match stored_dimensions(bytes) {
                    Some((w, h)) => format!("{w}x{h} pixels; {}", limits_text()),
                    None => detail,
                },
            },
            other => other,
        })?;
        Ok(ctx)
    }

    /// The stored (`ispe`) size of an image item, checked against the limits.
    pub(super) fn stored_size(path: &Path, handle: &ImageHandle) -> Result<(u32, u32), ImageError> {
        let (w, h) = (handle.ispe_width(), handle.ispe_height());
        let (Ok(width), Ok(height)) = (u32::try_from(w), u32::try_from(h)) else {
            return Err(ImageError::Damaged {
                path: path.to_path_buf(),
                reason: format!("it declares an impossible {w}x{h} picture"),
            });
        };
        check_size(path, width, height)?;
        Ok((width, height))
    }

    pub(super) fn decode(path: &Path, bytes: &[u8]) -> Result<Decoded, ImageError> {
        let ctx = open(path, bytes)?;
        let handle = ctx.primary_image_handle().map_err(|e| error(path, e))?;

        // Sizes first: the stored one and the displayed one (after clap/irot).
        let (stored_width, stored_height) = stored_size(path, &handle)?;
        let (width, height) = (handle.width(), handle.height());
        check_size(path, width, height)?;
        let deep = handle.luma_bits_per_pixel() > 8;
        let alpha = handle.has_alpha_channel();
        let channels: u64 = if alpha { 4 } else { 3 };
        let sample_bytes: u64 = if deep { 2 } else { 1 };
        let need = u64::from(width) * u64::from(height) * channels * sample_bytes;
        if need > MAX_DECODE_ALLOC {
            return Err(ImageError::TooLarge {
                path: path.to_path_buf(),
                detail: format!(
                    "{width}x{height} pixels need {need} bytes; the limit is {MAX_DECODE_ALLOC} bytes"
                ),
            });
        }

        let colour = colour_of(&handle);
        let chroma = match (deep, alpha) {
            (false, false) => RgbChroma::Rgb,
            (false, true) => RgbChroma::Rgba,
            (true, false) => RgbChroma::HdrRgbLe,
            (true, true) => RgbChroma::HdrRgbaLe,
        };
        let mut options = DecodingOptions::new();
        if let Some(options) = options.as_mut() {
            options.set_ignore_transformations(false);
            options.set_convert_hdr_to_8bit(false);
        }
        let lib = LibHeif::new_checked().map_err(|e| error(path, e))?;
        let decoded = lib
            .decode(&handle, ColorSpace::Rgb(chroma), options)
            .map_err(|e| error(path, e))?;

        // What the bitstream said, if the file had no colr box.
        let colour = match colour {
            ColourInfo::Unspecified => decoded
                .color_profile_nclx()
                .map(|nclx| cicp(&nclx))
                .unwrap_or(ColourInfo::Unspecified),
            known => known,
        };

        let damaged = |reason: &str| ImageError::Damaged {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let planes = decoded.planes();
        let plane = planes
            .interleaved
            .ok_or_else(|| damaged("libheif returned no interleaved RGB plane"))?;
        let (w, h) = (plane.width, plane.height);
        check_size(path, w, h)?;
        let row_samples = usize::try_from(u64::from(w) * channels)
            .map_err(|_| damaged("the picture is too wide"))?;
        let row_bytes = row_samples * sample_bytes as usize;
        let rows = (0..h as usize).map(|y| {
            let start = y.checked_mul(plane.stride)?;
            plane.data.get(start..start.checked_add(row_bytes)?)
        });

        let image = if deep {
            let bits = plane.bits_per_pixel.clamp(9, 16);
            let max = (1u32 << bits) - 1;
            let mut data = Vec::with_capacity(row_samples * h as usize);
            for row in rows {
                let row = row.ok_or_else(|| damaged("libheif returned a short pixel plane"))?;
                data.extend(row.chunks_exact(2).map(|s| {
                    let v = u32::from(u16::from_le_bytes([s[0], s[1]])).min(max);
                    // Scale to the full 16-bit range, rounding to nearest.
                    ((v * 65_535 + max / 2) / max) as u16
                }));
            }
            if alpha {
                ImageBuffer::from_raw(w, h, data).map(DynamicImage::ImageRgba16)
            } else {
                ImageBuffer::from_raw(w, h, data).map(DynamicImage::ImageRgb16)
            }
        } else {
            let mut data = Vec::with_capacity(row_bytes * h as usize);
            for row in rows {
                data.extend_from_slice(
                    row.ok_or_else(|| damaged("libheif returned a short pixel plane"))?,
                );
            }
            if alpha {
                ImageBuffer::from_raw(w, h, data).map(DynamicImage::ImageRgba8)
            } else {
                ImageBuffer::from_raw(w, h, data).map(DynamicImage::ImageRgb8)
            }
        }
        .ok_or_else(|| damaged("libheif returned a pixel plane of the wrong size"))?;

        Ok(Decoded {
            image,
            colour,
            stored_width,
            stored_height,
        })
    }

    /// The ICC profile if the item has one, else its `colr nclx` code points.
    pub(super) fn colour_of(handle: &ImageHandle) -> ColourInfo {
        if let Some(raw) = handle.color_profile_raw() {
            let typ = raw.profile_type();
            if (typ == color_profile_types::PROF || typ == color_profile_types::R_ICC)
                && !raw.data.is_empty()
            {
                return ColourInfo::Icc(raw.data);
            }
        }
        match handle.color_profile_nclx() {
            Some(nclx) => cicp(&nclx),
            None => ColourInfo::Unspecified,
        }
    }

    fn cicp(nclx: &libheif_rs::ColorProfileNCLX) -> ColourInfo {
        use libheif_rs::{
            ColorPrimaries as P, MatrixCoefficients as M, TransferCharacteristics as T,
        };
        // Values libheif does not know come back as `Unknown`: H.273's 2,
        // "unspecified", says the same.
        let primaries = match nclx.color_primaries() {
            P::Unknown => 2,
            p => u8::try_from(p as u32).unwrap_or(2),
        };
        let transfer = match nclx.transfer_characteristics() {
            T::Unknown => 2,
            t => u8::try_from(t as u32).unwrap_or(2),
        };
        let matrix = match nclx.matrix_coefficients() {
            M::Unknown => 2,
            m => u8::try_from(m as u32).unwrap_or(2),
        };
        ColourInfo::Cicp {
            primaries,
            transfer,
            matrix,
            full_range: nclx.full_range_flag() != 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/heif")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let mut b = Vec::new();
        let size = 16 + 4 * compatible.len() as u32;
        b.extend_from_slice(&size.to_be_bytes());
        b.extend_from_slice(b"ftyp");
        b.extend_from_slice(major);
        b.extend_from_slice(&[0; 4]);
        for c in compatible {
            b.extend_from_slice(*c);
        }
        b.extend_from_slice(b"\0\0\0\x08free");
        b
    }

    #[test]
    fn brands_decide_the_kind() {
        assert_eq!(detect(&ftyp(b"heic", &[b"mif1"])), Some(HeifKind::Heic));
        assert_eq!(
            detect(&ftyp(b"mif1", &[b"miaf", b"heix"])),
            Some(HeifKind::Heic)
        );
        assert_eq!(detect(&ftyp(b"avif", &[b"mif1"])), Some(HeifKind::Avif));
        assert_eq!(detect(&ftyp(b"mif1", &[b"avis"])), Some(HeifKind::Avif));
        assert_eq!(detect(&ftyp(b"msf1", &[b"iso8"])), Some(HeifKind::Heif));
        assert_eq!(detect(&ftyp(b"mif1", &[])), Some(HeifKind::Heif));
        // An HEVC or AV1 major brand wins; a generic one does not.
        assert_eq!(detect(&ftyp(b"avif", &[b"heic"])), Some(HeifKind::Avif));
        assert_eq!(detect(&ftyp(b"mif1", &[b"avif"])), Some(HeifKind::Avif));
        // MP4 videos and QuickTime are not HEIF.
        assert_eq!(detect(&ftyp(b"isom", &[b"iso2", b"mp41"])), None);
        assert_eq!(detect(&ftyp(b"qt  ", &[])), None);
        assert_eq!(HeifKind::Heic.to_string(), "HEIC");
        assert_eq!(HeifKind::Avif.media_type(), "image/avif");
    }

    #[test]
    fn detect_never_panics_on_cut_or_lying_headers() {
        let good = ftyp(b"mif1", &[b"heic"]);
        for cut in 0..good.len() {
            let _ = detect(&good[..cut]);
        }
        // The whole ftyp box is enough.
        assert_eq!(detect(&good[..20]), Some(HeifKind::Heic));
        assert_eq!(detect(&good[..19]), None);
        // Sizes that lie: too small, beyond the data, 64-bit, to-end-of-file.
        for size in [0u32, 1, 8, 15, 16, 17, 1000, u32::MAX] {
            let mut b = good.clone();
            b[..4].copy_from_slice(&size.to_be_bytes());
            let _ = detect(&b);
        }
        let mut large = vec![0, 0, 0, 1];
        large.extend_from_slice(b"ftyp");
        large.extend_from_slice(&u64::MAX.to_be_bytes());
        large.extend_from_slice(b"heic\0\0\0\0");
        assert_eq!(detect(&large), None);
        assert_eq!(detect(b""), None);
    }

    #[test]
    fn fixtures_are_detected_and_their_stored_size_read() {
        assert_eq!(detect(&fixture("orient-1.heic")), Some(HeifKind::Heic));
        assert_eq!(detect(&fixture("plain.avif")), Some(HeifKind::Avif));
        assert_eq!(stored_dimensions(&fixture("orient-1.heic")), Some((64, 48)));
        // Rotated a quarter turn: stored upright as 48x64.
        assert_eq!(stored_dimensions(&fixture("orient-6.heic")), Some((48, 64)));
        assert_eq!(stored_dimensions(&fixture("plain.avif")), Some((64, 48)));
    }

    #[test]
    fn stored_dimensions_never_panics_on_damaged_files() {
        let data = fixture("orient-5.heic");
        for cut in 0..data.len() {
            let _ = stored_dimensions(&data[..cut]);
        }
        // Flip every byte of the header area in turn.
        for i in 0..data.len().min(600) {
            let mut d = data.clone();
            d[i] ^= 0xFF;
            let _ = stored_dimensions(&d);
        }
    }

    #[cfg(feature = "heif")]
    #[test]
    fn colour_information_is_extracted() {
        let load = |name: &str| {
            let bytes = fixture(name);
            decode(Path::new(name), &bytes, HeifKind::Heic).unwrap()
        };
        let p3 = load("p3-nclx.heic");
        assert_eq!(
            p3.colour,
            ColourInfo::Cicp {
                primaries: 12,
                transfer: 13,
                matrix: 6,
                full_range: true
            }
        );
        let icc = load("adobe-icc.heic");
        match &icc.colour {
            ColourInfo::Icc(profile) => {
                assert_eq!(profile.len(), 580);
                assert_eq!(&profile[36..40], b"acsp", "an ICC header");
            }
            other => panic!("{other:?}"),
        }
        let ten = load("10bit.heic");
        assert!(
            matches!(ten.image, image::DynamicImage::ImageRgb16(_)),
            "{:?}",
            ten.image.color()
        );
        // Red in the top-left quadrant, at full 16-bit scale.
        let px = ten.image.to_rgb16().get_pixel(16, 12).0;
        assert!(px[0] > 200 * 257 && px[1] < 60 * 257, "{px:?}");
        assert_eq!((ten.stored_width, ten.stored_height), (64, 48));
    }

    #[cfg(feature = "heif")]
    #[test]
    fn alpha_comes_out_as_rgba_with_its_transparency() {
        let bytes = fixture("alpha.avif");
        let decoded = decode(Path::new("alpha.avif"), &bytes, HeifKind::Avif).unwrap();
        let image::DynamicImage::ImageRgba8(rgba) = &decoded.image else {
            panic!("{:?}", decoded.image.color());
        };
        assert!(rgba.get_pixel(16, 12).0[3] > 250, "left half opaque");
        assert!(rgba.get_pixel(48, 36).0[3] < 5, "right half transparent");
    }

    #[cfg(feature = "heif")]
    #[test]
    fn header_and_safe_rust_agree_on_the_stored_size() {
        for name in [
            "orient-1.heic",
            "orient-6.heic",
            "orient-7.heic",
            "plain.avif",
        ] {
            let bytes = fixture(name);
            let kind = detect(&bytes).unwrap();
            assert_eq!(
                header_dimensions(Path::new(name), &bytes, kind).ok(),
                stored_dimensions(&bytes),
                "{name}"
            );
        }
    }
}
