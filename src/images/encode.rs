//! The JPEG encoder sxf ships, and why (figures from `examples/photo_bench.rs`).

use image::DynamicImage;

/// Encode an 8-bit grey (`ImageLuma8`) or RGB (`ImageRgb8`) image as a baseline,
/// interleaved JPEG with sxf's settings; other colour types are converted to RGB
/// first. Public so that `examples/photo_bench.rs` measures exactly this.
///
/// Encoder: `jpeg-encoder` (pure Rust, SIMD), the JPEG standard's quantisation
/// tables scaled by `quality` as libjpeg does (so quality 80 means what it means in
/// `cjpeg`), 4:2:0 chroma subsampling below quality 90 (4:4:4 from 90 up) with
/// box-averaged chroma, standard Huffman tables, and no segment besides the JFIF
/// header and the coding tables.
///
/// Why, from `photo_bench` on the 12 photographs of Debian's `mate-backgrounds`
/// (README, "Photo encoder"), bytes at equal SSIMULACRA2 against
/// `cjpeg -optimize`: this encoder 1.044, mozjpeg with libjpeg's tables plus
/// progressive and optimised Huffman coding 1.005, mozjpeg's defaults (trellis)
/// 0.867 at 4.8 times cjpeg's encoding time, jpegli 0.896 (no binding that builds
/// here from Rust), jpeg-encoder's own progressive mode 1.103. None reaches 15%
/// fewer bytes within twice cjpeg's time. The fast mozjpeg setting would save 4%,
/// for C code in the default build (which also stops `cargo check` for other
/// targets without their C toolchain) and a slower pipeline; trellis saves 13% at
/// over four times the time. So the pure-Rust encoder stays: 4% above
/// `cjpeg -optimize`, faster than cjpeg itself.
///
/// # Errors
/// A side longer than 65,535 pixels, or a failure inside the encoder, returned as
/// text (the caller wraps it in its own error).
pub fn encode_jpeg(image: &DynamicImage, quality: u8) -> Result<Vec<u8>, String> {
    let (width, height) = (image.width(), image.height());
    let too_big = || format!("{width}x{height} is beyond what a JPEG can hold");
    let w = u16::try_from(width).map_err(|_| too_big())?;
    let h = u16::try_from(height).map_err(|_| too_big())?;

    let converted;
    let (data, color): (&[u8], jpeg_encoder::ColorType) = match image {
        DynamicImage::ImageLuma8(gray) => (gray.as_raw(), jpeg_encoder::ColorType::Luma),
        DynamicImage::ImageRgb8(rgb) => (rgb.as_raw(), jpeg_encoder::ColorType::Rgb),
        other => {
            converted = other.to_rgb8();
            (converted.as_raw(), jpeg_encoder::ColorType::Rgb)
        }
    };

    // Typical output is well under 1 byte per pixel at photo qualities.
    let mut out = Vec::with_capacity(data.len() / 8 + 1024);
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
    encoder.set_chroma_subsampling_method(jpeg_encoder::ChromaSubsamplingMethod::Average);
    encoder
        .encode(data, w, h, color)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, ImageFormat, Luma, Rgb, RgbImage};

    fn close(a: u8, b: u8, tol: u8) -> bool {
        a.abs_diff(b) <= tol
    }

    fn decode(jpeg: &[u8]) -> DynamicImage {
        image::load_from_memory_with_format(jpeg, ImageFormat::Jpeg).unwrap()
    }

    #[test]
    fn output_is_baseline_jfif() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(40, 30, Rgb([1, 2, 3])));
        let jpeg = encode_jpeg(&img, 80).unwrap();
        assert_eq!(&jpeg[..4], &[0xFF, 0xD8, 0xFF, 0xE0]);
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xFF, 0xD9]);
        // SOF0 (baseline, Huffman), which every decoder reads.
        assert!(jpeg.windows(2).any(|w| w == [0xFF, 0xC0]));
        assert!(!jpeg.windows(2).any(|w| w == [0xFF, 0xC2]));
    }

    #[test]
    fn flat_colour_patches_decode_right_through_image() {
        // Four flat quadrants, at least two 16x16 MCUs across each, at sizes that
        // are and are not multiples of the MCU: each patch's centre must come back
        // as its colour through the `image` crate's decoder (the one the tests and
        // the receiving side use). A wrong decode (green flat areas) is far off.
        let colours = [
            [255u8, 255, 255],
            [128, 128, 128],
            [10, 200, 30],
            [200, 20, 160],
        ];
        for (w, h) in [(64u32, 64u32), (97, 65), (301, 199)] {
            let img = RgbImage::from_fn(w, h, |x, y| {
                Rgb(colours[usize::from(x >= w / 2) + 2 * usize::from(y >= h / 2)])
            });
            for quality in [50, crate::images::DEFAULT_QUALITY, 95] {
                let jpeg = encode_jpeg(&DynamicImage::ImageRgb8(img.clone()), quality).unwrap();
                let back = decode(&jpeg).to_rgb8();
                assert_eq!(back.dimensions(), (w, h));
                for (qx, qy) in [(0u32, 0u32), (1, 0), (0, 1), (1, 1)] {
                    let (x, y) = (w / 4 + qx * (w / 2), h / 4 + qy * (h / 2));
                    let want = colours[(qx + 2 * qy) as usize];
                    let px = back.get_pixel(x, y).0;
                    assert!(
                        px.iter().zip(want).all(|(&a, b)| close(a, b, 6)),
                        "{w}x{h} q{quality}: want {want:?}, got {px:?} at ({x}, {y})"
                    );
                }
            }
        }
    }

    #[test]
    fn one_flat_colour_decodes_right_at_small_sizes() {
        for (w, h) in [(1u32, 1u32), (16, 16), (33, 17)] {
            for colour in [[255u8, 255, 255], [128, 128, 128], [10, 200, 30]] {
                let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(w, h, Rgb(colour)));
                let back = decode(&encode_jpeg(&img, 80).unwrap()).to_rgb8();
                let px = back.get_pixel(w - 1, h - 1).0;
                assert!(
                    px.iter().zip(colour).all(|(&a, b)| close(a, b, 4)),
                    "{w}x{h} {colour:?}: got {px:?}"
                );
            }
        }
    }

    #[test]
    fn grey_stays_single_channel() {
        let img = DynamicImage::ImageLuma8(GrayImage::from_pixel(50, 20, Luma([90])));
        let back = decode(&encode_jpeg(&img, 80).unwrap());
        let DynamicImage::ImageLuma8(g) = back else {
            panic!("expected a grey JPEG");
        };
        assert!(close(g.get_pixel(25, 10)[0], 90, 2));
    }

    #[test]
    fn impossible_sizes_are_errors() {
        let img = DynamicImage::ImageLuma8(GrayImage::new(70_000, 1));
        assert!(encode_jpeg(&img, 80).is_err());
    }
}
