//! Colour information carried by a photo, and its conversion to sRGB.
//!
//! Phones (Display P3) and cameras (Adobe RGB) tag their pixels with an ICC
//! profile or with CICP/nclx code points. The JPEG sxf writes is untagged sRGB, so
//! pixels in any other space must be converted, or the recipient sees the wrong
//! colours.
//!
//! Why convert to sRGB rather than carry the profile into the output: an untagged
//! sRGB JPEG looks right in every viewer, including the mail clients and image
//! previews that ignore profiles, and it carries no profile bytes that could say
//! anything about the camera. What it costs is gamut: colours a wide-gamut photo
//! holds outside sRGB are clipped. Measured on `examples/sample.jpg` converted to
//! Adobe RGB and to Display P3 (the tests in `tests/colour.rs`), the whole trip
//! (convert, encode at the default quality, decode) stays within mean ΔE76 ≈ 1
//! over 8x8-pixel blocks, the same as re-encoding an sRGB photo, because real
//! photos hold very few colours outside sRGB.
//!
//! The conversion uses moxcms (the colour engine the `image` crate itself uses):
//! relative colorimetric intent for matrix/TRC profiles, the profile's own intent
//! tables for LUT profiles. A profile that cannot be parsed, or that does not
//! describe the decoded pixels (a CMYK profile once the decoder has produced RGB,
//! say), is ignored and the pixels are taken as sRGB; [`Conversion`] says so.

use image::DynamicImage;
use moxcms::{
    CicpColorPrimaries, CicpProfile, ColorProfile, DataColorSpace, Layout, MatrixCoefficients,
    RenderingIntent, TransferCharacteristics, TransformOptions,
};

/// Largest ICC profile sxf will parse. Real camera and phone profiles are a few
/// KiB; printer LUT profiles reach a few MiB.
pub(crate) const MAX_ICC_BYTES: usize = 4 * 1024 * 1024;

/// How a decoded photo says its pixels are to be read.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum ColourInfo {
    /// Nothing said: the pixels are taken to be sRGB, as every viewer does.
    Unspecified,
    /// An embedded ICC profile (JPEG APP2, PNG iCCP, WebP ICCP, TIFF, HEIF `colr prof`).
    Icc(Vec<u8>),
    /// CICP code points (ITU-T H.273), as in a HEIF/AVIF `colr nclx` box or a PNG
    /// cICP chunk. The matrix coefficients are already applied by the decoder that
    /// produced RGB; primaries and transfer still describe the RGB values.
    #[cfg_attr(not(feature = "heif"), allow(dead_code))] // only HEIF decoding says CICP
    Cicp {
        primaries: u8,
        transfer: u8,
        matrix: u8,
        full_range: bool,
    },
}

impl std::fmt::Debug for ColourInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColourInfo::Unspecified => f.write_str("Unspecified"),
            ColourInfo::Icc(bytes) => write!(f, "Icc({} bytes)", bytes.len()),
            ColourInfo::Cicp {
                primaries,
                transfer,
                matrix,
                full_range,
            } => write!(
                f,
                "Cicp({primaries}/{transfer}/{matrix}, full range {full_range})"
            ),
        }
    }
}

/// What the sRGB conversion did with a photo's colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// The photo said nothing, or said sRGB: the pixels were kept as they are.
    AlreadySrgb,
    /// The pixels were converted from the photo's colour space to sRGB.
    Converted,
    /// The photo's colour description could not be used (unreadable, too large,
    /// or not for these pixels); the pixels were taken as sRGB.
    Ignored,
    /// The photo was sent with its own image data and its own (cleaned) ICC
    /// profile, which colour-managed viewers apply.
    ProfileKept,
}

/// Convert an 8-bit grey (`ImageLuma8`) or RGB (`ImageRgb8`) image described by
/// `info` to sRGB. Other pixel types are returned untouched as `Ignored`.
pub(crate) fn to_srgb(image: DynamicImage, info: &ColourInfo) -> (DynamicImage, Conversion) {
    let source = match info {
        ColourInfo::Unspecified => return (image, Conversion::AlreadySrgb),
        ColourInfo::Icc(bytes) => match icc_profile(bytes) {
            Some(profile) => profile,
            None => return (image, Conversion::Ignored),
        },
        ColourInfo::Cicp {
            primaries,
            transfer,
            matrix,
            full_range,
        } => match cicp_profile(*primaries, *transfer, *matrix, *full_range) {
            CicpMeaning::Srgb => return (image, Conversion::AlreadySrgb),
            CicpMeaning::Profile(profile) => *profile,
            CicpMeaning::Unusable => return (image, Conversion::Ignored),
        },
    };
    convert(image, &source)
}

fn icc_profile(bytes: &[u8]) -> Option<ColorProfile> {
    if bytes.len() > MAX_ICC_BYTES {
        return None;
    }
    ColorProfile::new_from_slice(bytes).ok()
}

enum CicpMeaning {
    Srgb,
    Profile(Box<ColorProfile>),
    Unusable,
}

/// Code points from ITU-T H.273. Only SDR transfers are converted; HDR (PQ, HLG)
/// content would need tone mapping, which is out of scope, so it is left alone.
fn cicp_profile(primaries: u8, transfer: u8, matrix: u8, full_range: bool) -> CicpMeaning {
    const UNSPECIFIED: u8 = 2;
    let primaries = if primaries == UNSPECIFIED {
        1
    } else {
        primaries
    };
    let transfer = if transfer == UNSPECIFIED {
        13
    } else {
        transfer
    };
    // BT.709 primaries with the sRGB transfer, or with the BT.709/BT.601 camera
    // transfer that viewers display as sRGB.
    if primaries == 1 && matches!(transfer, 1 | 6 | 13 | 14 | 15) {
        return CicpMeaning::Srgb;
    }
    // PQ (16) and HLG (18) are HDR.
    if matches!(transfer, 16 | 18) {
        return CicpMeaning::Unusable;
    }
    let (Ok(color_primaries), Ok(transfer_characteristics)) = (
        CicpColorPrimaries::try_from(primaries),
        TransferCharacteristics::try_from(transfer),
    ) else {
        return CicpMeaning::Unusable;
    };
    let matrix_coefficients =
        MatrixCoefficients::try_from(matrix).unwrap_or(MatrixCoefficients::Unspecified);
    let profile = ColorProfile::new_from_cicp(CicpProfile {
        color_primaries,
        transfer_characteristics,
        matrix_coefficients,
        full_range,
    });
    // new_from_cicp sets the colorants; make sure the curves follow the transfer.
    if profile.red_trc.is_none() {
        return CicpMeaning::Unusable;
    }
    CicpMeaning::Profile(Box::new(profile))
}

/// Whether a transform leaves every probed colour where it is (within one step),
/// probing a 9x9x9 grid of RGB values (or 256 grey levels when `channels` is 1).
fn is_identity(transform: &moxcms::Transform8BitExecutor, channels: usize) -> bool {
    let probe: Vec<u8> = match channels {
        1 => (0..=255).collect(),
        _ => {
            let steps: Vec<u8> = (0..=8).map(|i| (i * 255 / 8) as u8).collect();
            let mut p = Vec::new();
            for &r in &steps {
                for &g in &steps {
                    for &b in &steps {
                        p.extend_from_slice(&[r, g, b]);
                    }
                }
            }
            p
        }
    };
    let mut out = vec![0u8; probe.len() / channels * 3];
    if transform.transform(&probe, &mut out).is_err() {
        return false;
    }
    match channels {
        1 => probe
            .iter()
            .zip(out.chunks_exact(3))
            .all(|(&v, rgb)| rgb.iter().all(|&c| c.abs_diff(v) <= 1)),
        _ => probe.iter().zip(&out).all(|(&a, &b)| a.abs_diff(b) <= 1),
    }
}

fn convert(image: DynamicImage, source: &ColorProfile) -> (DynamicImage, Conversion) {
    let options = TransformOptions {
        rendering_intent: RenderingIntent::RelativeColorimetric,
        ..TransformOptions::default()
    };
    let srgb = ColorProfile::new_srgb();
    match (image, source.color_space) {
        (DynamicImage::ImageRgb8(mut rgb), DataColorSpace::Rgb) => {
            let Ok(transform) =
                source.create_transform_8bit(Layout::Rgb, &srgb, Layout::Rgb, options)
            else {
                return (DynamicImage::ImageRgb8(rgb), Conversion::Ignored);
            };
            if is_identity(&*transform, 3) {
                // An sRGB profile (or one near enough that no 8-bit value moves).
                return (DynamicImage::ImageRgb8(rgb), Conversion::AlreadySrgb);
            }
            let mut out = vec![0u8; rgb.as_raw().len()];
            if transform.transform(rgb.as_raw(), &mut out).is_err() {
                return (DynamicImage::ImageRgb8(rgb), Conversion::Ignored);
            }
            rgb.copy_from_slice(&out);
            (DynamicImage::ImageRgb8(rgb), Conversion::Converted)
        }
        (DynamicImage::ImageLuma8(mut gray), DataColorSpace::Gray) => {
            // Grey to sRGB gives R = G = B; keep one channel, so the photo stays grey.
            let Ok(transform) =
                source.create_transform_8bit(Layout::Gray, &srgb, Layout::Rgb, options)
            else {
                return (DynamicImage::ImageLuma8(gray), Conversion::Ignored);
            };
            if is_identity(&*transform, 1) {
                return (DynamicImage::ImageLuma8(gray), Conversion::AlreadySrgb);
            }
            let mut out = vec![0u8; gray.as_raw().len() * 3];
            if transform.transform(gray.as_raw(), &mut out).is_err() {
                return (DynamicImage::ImageLuma8(gray), Conversion::Ignored);
            }
            for (dst, rgb) in gray.iter_mut().zip(out.chunks_exact(3)) {
                *dst = rgb[1];
            }
            (DynamicImage::ImageLuma8(gray), Conversion::Converted)
        }
        (other, _) => (other, Conversion::Ignored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, RgbImage};

    fn rgb(pixels: &[[u8; 3]]) -> DynamicImage {
        let flat: Vec<u8> = pixels.iter().flatten().copied().collect();
        DynamicImage::ImageRgb8(RgbImage::from_raw(pixels.len() as u32, 1, flat).unwrap())
    }

    fn pixels(image: &DynamicImage) -> Vec<u8> {
        image.as_bytes().to_vec()
    }

    /// A syntactically valid ICC profile header with no tags, for `space`.
    fn bare_profile(space: &[u8; 4]) -> Vec<u8> {
        let mut p = vec![0u8; 132];
        p[0..4].copy_from_slice(&132u32.to_be_bytes());
        p[8] = 4; // version 4
        p[12..16].copy_from_slice(b"prtr");
        p[16..20].copy_from_slice(space);
        p[20..24].copy_from_slice(b"Lab ");
        p[36..40].copy_from_slice(b"acsp");
        p
    }

    #[test]
    fn wide_gamut_profile_is_converted_and_neutrals_stay_neutral() {
        let icc = ColorProfile::new_display_p3().encode().unwrap();
        let input = rgb(&[[255, 0, 0], [128, 128, 128], [255, 255, 255]]);
        let (out, how) = to_srgb(input, &ColourInfo::Icc(icc));
        assert_eq!(how, Conversion::Converted);
        let p = pixels(&out);
        // P3 red is outside sRGB: it clips to the most saturated sRGB red.
        assert!(p[0] == 255 && p[1] < 10 && p[2] < 10, "{:?}", &p[0..3]);
        for (got, want) in p[3..].iter().zip([128, 128, 128, 255, 255, 255]) {
            assert!(got.abs_diff(want) <= 1, "{p:?}");
        }
    }

    #[test]
    fn an_srgb_profile_is_recognised_and_nothing_is_converted() {
        let icc = ColorProfile::new_srgb().encode().unwrap();
        let input = rgb(&[[255, 0, 0], [1, 2, 3], [200, 150, 100]]);
        let (out, how) = to_srgb(input.clone(), &ColourInfo::Icc(icc));
        assert_eq!(how, Conversion::AlreadySrgb);
        assert_eq!(pixels(&out), pixels(&input));
    }

    #[test]
    fn grey_with_a_grey_profile_stays_grey() {
        let icc = ColorProfile::new_gray_with_gamma(1.8).encode().unwrap();
        let grey = DynamicImage::ImageLuma8(GrayImage::from_raw(3, 1, vec![0, 100, 255]).unwrap());
        let (out, how) = to_srgb(grey, &ColourInfo::Icc(icc));
        assert_eq!(how, Conversion::Converted);
        let DynamicImage::ImageLuma8(g) = out else {
            panic!("not grey any more")
        };
        // Gamma 1.8 is lighter than sRGB: the mid tone gets brighter, the ends stay.
        assert_eq!(g.as_raw()[0], 0);
        assert!(g.as_raw()[1] > 110, "{:?}", g.as_raw());
        assert!(g.as_raw()[2] >= 254);
    }

    #[test]
    fn profiles_that_cannot_apply_leave_the_pixels_alone() {
        let input = rgb(&[[10, 200, 30]]);
        for info in [
            ColourInfo::Icc(bare_profile(b"CMYK")),
            ColourInfo::Icc(b"not a profile".to_vec()),
            ColourInfo::Icc(vec![0; MAX_ICC_BYTES + 1]),
            ColourInfo::Cicp {
                primaries: 9,
                transfer: 16, // PQ: HDR, not converted
                matrix: 9,
                full_range: true,
            },
        ] {
            let (out, how) = to_srgb(input.clone(), &info);
            assert_eq!(how, Conversion::Ignored, "{info:?}");
            assert_eq!(pixels(&out), pixels(&input), "{info:?}");
        }
    }

    #[test]
    fn cicp_srgb_and_unspecified_mean_srgb_and_p3_is_converted() {
        let input = rgb(&[[255, 0, 0]]);
        for (primaries, transfer) in [(1, 13), (2, 2), (1, 1)] {
            let info = ColourInfo::Cicp {
                primaries,
                transfer,
                matrix: 6,
                full_range: true,
            };
            assert_eq!(to_srgb(input.clone(), &info).1, Conversion::AlreadySrgb);
        }
        let p3 = ColourInfo::Cicp {
            primaries: 12,
            transfer: 13,
            matrix: 6,
            full_range: true,
        };
        let (out, how) = to_srgb(rgb(&[[200, 120, 80]]), &p3);
        assert_eq!(how, Conversion::Converted);
        // A P3 orange is more saturated in sRGB numbers.
        let p = pixels(&out);
        assert!(p[0] > 200 && p[2] < 80, "{p:?}");
    }
}
