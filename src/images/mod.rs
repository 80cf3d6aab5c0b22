//! The photo pipeline used at seal time.
//!
//! Why this exists:
//!
//! * **Size.** Photos straight off a phone are several megabytes each. Every byte
//!   sealed into an `.sxf` file is encrypted, authenticated and carried around, so
//!   photos are re-encoded as JPEG at [`DEFAULT_QUALITY`] (encoder and quality
//!   chosen by measurement with `examples/photo_bench.rs`), optionally downscaled with
//!   [`ImageOptions::max_dim`].
//! * **Privacy.** The output JPEG is encoded from pixels only: EXIF (GPS position,
//!   camera serial numbers, timestamps), XMP, IPTC, ICC profiles and comments of the
//!   input are all dropped. The EXIF orientation is applied to the pixels first, so
//!   the photo still shows the right way up without it.
//! * **True colours.** A photo tagged with an ICC profile (Display P3 from phones,
//!   Adobe RGB from cameras) is converted to sRGB before encoding (see `colour.rs`
//!   for why sRGB rather than carrying the profile), so the recipient sees the
//!   colours the sender saw.
//! * **Never worse than the original.** For a JPEG, when re-encoding at the asked
//!   quality would not make it smaller, the original image data is sent with its
//!   metadata removed losslessly instead (see `jpeg_strip.rs`): a cleaned profile
//!   and the orientation stay, GPS, serial numbers and times go.
//! * **Hostile input.** A file handed to `sxf seal` may come from anyone. The format
//!   is detected from the content (never from the extension), the file must be at
//!   most [`MAX_FILE_BYTES`], and decoding runs under explicit [`image::Limits`]:
//!   at most [`MAX_SIDE`] pixels a side (16384), at most [`MAX_PIXELS`] pixels in
//!   total (120 megapixels: admits 108 MP phone and 100 MP medium-format photos,
//!   rejects 200 MP full-resolution phone shots), and at most [`MAX_DECODE_ALLOC`]
//!   bytes (1 GiB) allocated by the decoder. The declared size is checked from the
//!   header before any pixel buffer is allocated, so a decompression bomb (a tiny
//!   file declaring, say, 50000x50000 pixels) fails at once with a clear error. A
//!   truncated JPEG (one whose entropy-coded data has no end-of-image marker) is
//!   rejected rather than silently padded with grey, which is what the lenient JPEG
//!   decoder would otherwise do.
//!
//! Pipeline of [`process_image`]: read the file, detect the format, check the
//! declared dimensions, decode, flatten alpha onto white, convert to 8 bits per
//! sample (grey images stay grey and are encoded as single-channel JPEGs), convert
//! to sRGB, downscale
//! so the longer side is at most `max_dim` (never upscaling), apply the EXIF
//! orientation, encode as a progressive JPEG with mozjpeg ([`encode_jpeg`]). Downscaling
//! happens before the rotation only because it is cheaper that way; the long side
//! does not depend on orientation, so the result is the same. Of an animated GIF or
//! WebP, or a multi-page TIFF, only the first frame or page is kept. For a JPEG
//! that was not downscaled, the smaller of the re-encoded and the stripped original
//! is kept. [`batch`] runs this over several photos in parallel and searches the
//! settings for `sxf seal --fit`.
//!
//! HEIF photos (HEIC, AVIF) are recognised from their `ftyp` box before anything
//! else and handled by `heif.rs`: decoded with libheif in a build with the `heif`
//! feature (their own `irot`/`imir` transformations are their orientation, EXIF's
//! is not applied), refused with a clear sentence without it.
//!
//! With [`ImageOptions::keep_original`] the file's bytes are stored unchanged
//! (metadata included). It is still checked to be an image sxf can read: the format
//! is detected, the header is read under the same limits, and a JPEG must have its
//! end-of-image marker; the pixels are not decoded.

pub mod batch;
mod colour;
mod encode;
mod heif;
mod jpeg_strip;

pub(crate) use colour::ColourInfo;
pub use colour::Conversion;
pub use encode::encode_jpeg;

use std::fs::File;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

/// Default JPEG quality (1..=100) for re-encoded photos, chosen with
/// `examples/jpeg_bench.rs` (now `examples/photo_bench.rs`; the mozjpeg encoder
/// uses the same quantisation tables, so quality 80 means what it meant). Against the old prototype's Pillow quality 50 (same
/// libjpeg defaults as `cjpeg -quality 50`) on the same pictures, quality 80 gives
/// +3.3 dB PSNR on the 600x400 sample photo (34.45 dB vs 31.11) and +3.8 dB on a
/// 12 MP input (41.37 vs 37.54) for about 1.65x the bytes, and is still about half
/// the size of a quality-92 camera JPEG. Quality 85 would cost +41% bytes on the
/// sample photo for +1.1 dB more.
pub const DEFAULT_QUALITY: u8 = 80;

/// Largest accepted width or height, in pixels.
pub const MAX_SIDE: u32 = 16_384;

/// Largest accepted pixel count (width x height): 120 megapixels.
pub const MAX_PIXELS: u64 = 120_000_000;

/// Most bytes the decoder may allocate at one time (`image::Limits::max_alloc`),
/// including the decoded pixel buffer: 1 GiB. A 120 MP 8-bit RGB image needs
/// 360 MB; a 120 MP 16-bit RGBA one 960 MB.
pub const MAX_DECODE_ALLOC: u64 = 1024 * 1024 * 1024;

/// Most bytes a PNG's colour profile may inflate to (`iCCP` is
/// zlib-compressed: a 1 MB file can declare a 1 GiB profile). Real profiles
/// are a few KiB to a few hundred KiB. (Other formats store their profile
/// uncompressed, so the file size bounds it.)
pub const MAX_PNG_PROFILE: usize = 4 * 1024 * 1024;

/// Largest accepted input file: 256 MiB.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

// A largest-allowed 16-bit RGBA image (8 bytes a pixel) fits the allocation limit,
// and JPEG (at most 65535 a side) can hold any accepted image.
const _: () = assert!(MAX_PIXELS * 8 <= MAX_DECODE_ALLOC);
const _: () = assert!(MAX_SIDE <= u16::MAX as u32);

/// Resampling filter used when downscaling to [`ImageOptions::max_dim`]: Lanczos3
/// convolution with `fast_image_resize`, whose SIMD code downscales a 12 MP photo
/// to 2048 px about eight times faster than the `image` crate's CatmullRom, with
/// the same SSIMULACRA2 within a few tenths against a floating-point reference
/// (`examples/photo_bench.rs`).
const DOWNSCALE_FILTER: fast_image_resize::FilterType = fast_image_resize::FilterType::Lanczos3;

/// How a photo is turned into the bytes that get sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOptions {
    /// JPEG quality, 1..=100 (higher is larger and closer to the original).
    pub quality: u8,
    /// Downscale so that the longer side is at most this many pixels. Never upscales.
    pub max_dim: Option<u32>,
    /// Store the file's bytes unchanged (metadata included) instead of re-encoding.
    /// The file must still be an image of a format sxf can read.
    pub keep_original: bool,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            quality: DEFAULT_QUALITY,
            max_dim: None,
            keep_original: false,
        }
    }
}

/// The result of [`process_image`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedImage {
    /// Suggested plain file name (no directories): the input's stem + ".jpg", or the
    /// input's own file name when `keep_original` is set.
    pub file_name: String,
    /// "image/jpeg", or the detected format's media type when `keep_original` is set.
    pub media_type: String,
    /// The encoded output (the untouched input when `keep_original` is set).
    pub bytes: Vec<u8>,
    /// Size of the input file in bytes.
    pub original_len: u64,
    /// Width of the input as stored in the file (before orientation).
    pub original_width: u32,
    /// Height of the input as stored in the file (before orientation).
    pub original_height: u32,
    /// Width of the output (after orientation and downscaling). With
    /// `keep_original` the output is the input, so this is the stored width.
    pub width: u32,
    /// Height of the output (after orientation and downscaling). With
    /// `keep_original` the output is the input, so this is the stored height.
    pub height: u32,
    /// How the output was made from the input.
    pub method: Method,
    /// What was done to the photo's colours.
    pub colour: Conversion,
}

/// How a photo's output was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Decoded and encoded again as a JPEG at this quality.
    Reencoded { quality: u8 },
    /// A JPEG sent with its own image data, metadata removed losslessly, because
    /// re-encoding it would not have made it smaller.
    Lossless,
    /// The file's own bytes (`keep_original`).
    Original,
}

/// Why a photo could not be processed. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be opened or read.
    #[error("could not read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is bigger than [`MAX_FILE_BYTES`].
    #[error(
        "{} is too large to read ({len} bytes; the limit is {} bytes)",
        path.display(),
        MAX_FILE_BYTES
    )]
    FileTooLarge { path: PathBuf, len: u64 },
    /// The content is not an image in a format sxf can decode.
    #[error("{} is not an image sxf can read ({reason})", path.display())]
    NotAnImage { path: PathBuf, reason: String },
    /// The image declares dimensions beyond the decoding limits.
    #[error("{} is too large to decode safely ({detail})", path.display())]
    TooLarge { path: PathBuf, detail: String },
    /// The image is damaged or truncated.
    #[error("{} is damaged or truncated: {reason}", path.display())]
    Damaged { path: PathBuf, reason: String },
    /// The options make no sense (quality out of range, `max_dim` of 0).
    #[error("cannot process {}: {reason}", path.display())]
    InvalidOptions { path: PathBuf, reason: String },
    /// A HEIF/HEIC/AVIF photo, in a build without the `heif` feature.
    #[error(
        "{} is a {kind} photo, and this build of sxf has no HEIF support; build one with \
         the heif feature (see the README: install libde265-dev libdav1d-dev cmake, then \
         cargo install --path . --features heif)",
        path.display()
    )]
    NoHeifSupport { path: PathBuf, kind: &'static str },
    /// Downscaling failed (should not happen for a decoded image).
    #[error("could not downscale {}: {reason}", path.display())]
    Resize { path: PathBuf, reason: String },
    /// The JPEG encoder failed (should not happen for a decoded image).
    #[error("could not encode {} as JPEG: {reason}", path.display())]
    Encode { path: PathBuf, reason: String },
}

/// Formats sxf can decode (the `image` features enabled in Cargo.toml).
const SUPPORTED_FORMATS: [ImageFormat; 6] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::Gif,
    ImageFormat::Bmp,
    ImageFormat::Tiff,
    ImageFormat::WebP,
];

/// Read, check, and (unless `opts.keep_original`) re-encode one photo.
///
/// See the module documentation for what happens to it.
pub fn process_image(path: &Path, opts: &ImageOptions) -> Result<ProcessedImage, ImageError> {
    check_options(path, opts)?;
    let bytes = read_input(path)?;
    if opts.keep_original {
        return keep_original(path, bytes);
    }
    let photo = DecodedPhoto::decode(path, bytes)?;
    let rendered = photo.render(opts.max_dim)?;
    photo.encode(&rendered, opts.quality)
}

/// The photo's own bytes, checked to be an image sxf recognises.
fn keep_original(path: &Path, bytes: Vec<u8>) -> Result<ProcessedImage, ImageError> {
    let Header {
        extension,
        media_type,
        stored: (width, height),
    } = read_header(path, &bytes)?;
    Ok(ProcessedImage {
        file_name: kept_file_name(path, extension),
        media_type: media_type.to_string(),
        original_len: bytes.len() as u64,
        bytes,
        original_width: width,
        original_height: height,
        width,
        height,
        method: Method::Original,
        colour: Conversion::AlreadySrgb,
    })
}

/// What a photo's header says, read under the size limits without decoding.
pub(crate) struct Header {
    pub extension: &'static str,
    pub media_type: &'static str,
    /// Width and height as stored, before orientation.
    pub stored: (u32, u32),
}

/// Recognise a photo from its content (HEIF first, then the `image` crate's
/// formats) and read its header under the size limits.
pub(crate) fn read_header(path: &Path, bytes: &[u8]) -> Result<Header, ImageError> {
    Ok(match heif::detect(bytes) {
        Some(kind) => Header {
            extension: kind.extension(),
            media_type: kind.media_type(),
            stored: heif::header_dimensions(path, bytes, kind)?,
        },
        None => {
            let header = inspect(path, bytes, false)?;
            Header {
                extension: header.format.extensions_str()[0],
                media_type: header.format.to_mime_type(),
                stored: (header.width, header.height),
            }
        }
    })
}

/// The file name of a photo kept as it is: the input's own, or "image.EXT".
fn kept_file_name(path: &Path, extension: &str) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("image.{extension}"))
}

/// A photo decoded once, so that it can be rendered and encoded at several sizes
/// and qualities (`--fit` searches them) without decoding it again.
pub(crate) struct DecodedPhoto {
    path: PathBuf,
    original_len: u64,
    /// Width and height as stored in the file, before orientation.
    stored: (u32, u32),
    /// 8-bit grey or RGB, alpha flattened onto white, converted to sRGB; as stored
    /// (orientation not yet applied).
    pixels: DynamicImage,
    orientation: Orientation,
    colour: Conversion,
    /// For a JPEG: the same file with its metadata removed losslessly.
    lossless: Option<jpeg_strip::Stripped>,
    /// Whether `lossless`, decoded the same way, gives exactly `pixels` and the
    /// same orientation: checked once, the first time it would be sent.
    lossless_checked: std::sync::OnceLock<bool>,
}

/// The pixels that get encoded: downscaled and turned upright.
pub(crate) struct Rendered {
    image: DynamicImage,
    downscaled: bool,
}

impl DecodedPhoto {
    pub(crate) fn decode(path: &Path, bytes: Vec<u8>) -> Result<Self, ImageError> {
        let (format, stored, pixels, orientation, colour) = Self::decode_pixels(path, &bytes)?;
        // A file the walk cannot follow is simply re-encoded.
        let lossless = (format == Some(ImageFormat::Jpeg))
            .then(|| jpeg_strip::strip_metadata(&bytes, orientation).ok())
            .flatten();
        Ok(DecodedPhoto {
            path: path.to_path_buf(),
            original_len: bytes.len() as u64,
            stored,
            pixels,
            orientation,
            colour,
            lossless,
            lossless_checked: std::sync::OnceLock::new(),
        })
    }

    /// Decode, flatten and convert to sRGB: (format unless HEIF, stored size,
    /// pixels, orientation, what the colour conversion did).
    #[allow(clippy::type_complexity)]
    fn decode_pixels(
        path: &Path,
        bytes: &[u8],
    ) -> Result<
        (
            Option<ImageFormat>,
            (u32, u32),
            DynamicImage,
            Orientation,
            Conversion,
        ),
        ImageError,
    > {
        // HEIF (HEIC, AVIF) is recognised from its ftyp box before the `image`
        // crate guesses, and goes through libheif (or is refused without the
        // `heif` feature). Its own transformations (irot, imir, clap) are its
        // orientation and are applied by libheif; EXIF's is not applied on top.
        let (format, stored, decoded) = match heif::detect(bytes) {
            Some(kind) => {
                let heif = heif::decode(path, bytes, kind)?;
                let decoded = Decoded {
                    image: heif.image,
                    orientation: Orientation::NoTransforms,
                    colour: heif.colour,
                };
                (None, (heif.stored_width, heif.stored_height), decoded)
            }
            None => {
                let inspected = inspect(path, bytes, true)?;
                let decoded = inspected.decoded.expect("inspect decodes when asked to");
                (
                    Some(inspected.format),
                    (inspected.width, inspected.height),
                    decoded,
                )
            }
        };
        let Decoded {
            image,
            orientation,
            colour,
        } = decoded;
        let (pixels, conversion) = colour::to_srgb(flatten_to_8bit(image), &colour);
        Ok((format, stored, pixels, orientation, conversion))
    }

    /// The stripped original, if there is one and it shows exactly the picture
    /// that was checked: decoded again through the same pipeline, it must give the
    /// same size, orientation and pixels. Anything a decoder could read
    /// differently in the original's structure fails here and falls back to
    /// re-encoding.
    fn verified_lossless(&self) -> Option<&jpeg_strip::Stripped> {
        let stripped = self.lossless.as_ref()?;
        let same = *self.lossless_checked.get_or_init(|| {
            match Self::decode_pixels(&self.path, &stripped.bytes) {
                Ok((_, stored, pixels, orientation, _)) => {
                    stored == self.stored
                        && orientation == self.orientation
                        && pixels == self.pixels
                }
                Err(_) => false,
            }
        });
        same.then_some(stripped)
    }

    /// Downscale so the long side is at most `max_dim` (never upscaling), then
    /// apply the orientation. Downscaling first is cheaper; the long side does not
    /// depend on orientation, so the result is the same.
    pub(crate) fn render(&self, max_dim: Option<u32>) -> Result<Rendered, ImageError> {
        let target = max_dim.and_then(|max_dim| {
            downscaled_size(self.pixels.width(), self.pixels.height(), max_dim)
        });
        let mut image = match target {
            Some((w, h)) => downscale(&self.pixels, w, h).map_err(|reason| ImageError::Resize {
                path: self.path.clone(),
                reason,
            })?,
            None => self.pixels.clone(),
        };
        image.apply_orientation(self.orientation);
        Ok(Rendered {
            image,
            downscaled: target.is_some(),
        })
    }

    /// Encode the rendered pixels at `quality`; for a JPEG that was not
    /// downscaled, send the losslessly stripped original instead when it is no
    /// larger (re-encoding it would only make it bigger and worse).
    pub(crate) fn encode(
        &self,
        rendered: &Rendered,
        quality: u8,
    ) -> Result<ProcessedImage, ImageError> {
        let encoded =
            encode_jpeg(&rendered.image, quality).map_err(|reason| ImageError::Encode {
                path: self.path.clone(),
                reason,
            })?;
        let smaller = |s: &&jpeg_strip::Stripped| s.bytes.len() <= encoded.len();
        let lossless = match rendered.downscaled {
            false => self
                .lossless
                .as_ref()
                .filter(smaller)
                .and_then(|_| self.verified_lossless()),
            true => None,
        };
        let (bytes, method, (width, height), colour) = match lossless {
            Some(stripped) => {
                let upright = match self.orientation_swaps_sides() {
                    true => (self.stored.1, self.stored.0),
                    false => self.stored,
                };
                let colour = match stripped.profile_kept {
                    true => Conversion::ProfileKept,
                    false => self.colour,
                };
                (stripped.bytes.clone(), Method::Lossless, upright, colour)
            }
            None => (
                encoded,
                Method::Reencoded { quality },
                (rendered.image.width(), rendered.image.height()),
                self.colour,
            ),
        };
        Ok(ProcessedImage {
            file_name: jpeg_file_name(&self.path),
            media_type: "image/jpeg".to_string(),
            bytes,
            original_len: self.original_len,
            original_width: self.stored.0,
            original_height: self.stored.1,
            width,
            height,
            method,
            colour,
        })
    }

    fn orientation_swaps_sides(&self) -> bool {
        matches!(
            self.orientation,
            Orientation::Rotate90
                | Orientation::Rotate270
                | Orientation::Rotate90FlipH
                | Orientation::Rotate270FlipH
        )
    }
}

/// Resize an 8-bit grey or RGB image (what [`flatten_to_8bit`] returns) to `w`x`h`.
fn downscale(image: &DynamicImage, w: u32, h: u32) -> Result<DynamicImage, String> {
    use fast_image_resize::images::{Image, ImageRef};
    use fast_image_resize::{PixelType, ResizeAlg, ResizeOptions, Resizer};
    let (pixel_type, data) = match image {
        DynamicImage::ImageLuma8(g) => (PixelType::U8, g.as_raw()),
        DynamicImage::ImageRgb8(rgb) => (PixelType::U8x3, rgb.as_raw()),
        other => return downscale(&DynamicImage::ImageRgb8(other.to_rgb8()), w, h),
    };
    let src = ImageRef::new(image.width(), image.height(), data, pixel_type)
        .map_err(|e| e.to_string())?;
    let mut dst = Image::new(w, h, pixel_type);
    let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(DOWNSCALE_FILTER));
    Resizer::new()
        .resize(&src, &mut dst, &opts)
        .map_err(|e| e.to_string())?;
    let out = dst.into_vec();
    let resized = match pixel_type {
        PixelType::U8 => GrayImage::from_raw(w, h, out).map(DynamicImage::ImageLuma8),
        _ => RgbImage::from_raw(w, h, out).map(DynamicImage::ImageRgb8),
    };
    resized.ok_or_else(|| "resized buffer has the wrong size".to_string())
}

fn check_options(path: &Path, opts: &ImageOptions) -> Result<(), ImageError> {
    let invalid = |reason: String| ImageError::InvalidOptions {
        path: path.to_path_buf(),
        reason,
    };
    if !(1..=100).contains(&opts.quality) {
        return Err(invalid(format!(
            "JPEG quality {} is out of range (it must be 1 to 100)",
            opts.quality
        )));
    }
    if opts.max_dim == Some(0) {
        return Err(invalid(
            "the maximum dimension must be at least 1 pixel".into(),
        ));
    }
    Ok(())
}

fn read_input(path: &Path) -> Result<Vec<u8>, ImageError> {
    let read_err = |source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if meta.is_dir() {
        return Err(read_err(std::io::Error::other("it is a directory")));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(ImageError::FileTooLarge {
            path: path.to_path_buf(),
            len: meta.len(),
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // `take` guards against a file that grows while it is read.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ImageError::FileTooLarge {
            path: path.to_path_buf(),
            len: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

struct Inspected {
    format: ImageFormat,
    width: u32,
    height: u32,
    decoded: Option<Decoded>,
}

/// What decoding yields besides the size.
struct Decoded {
    image: DynamicImage,
    orientation: Orientation,
    colour: ColourInfo,
}

fn decode_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    limits
}

fn limits_text() -> String {
    format!(
        "the limit is {MAX_SIDE} pixels a side and {} megapixels in all",
        MAX_PIXELS / 1_000_000
    )
}

/// Detect the format from the content, read the header under limits, check the
/// declared size and, when `decode` is set, decode the pixels and the orientation.
fn inspect(path: &Path, bytes: &[u8], decode: bool) -> Result<Inspected, ImageError> {
    let not_an_image = |reason: String| ImageError::NotAnImage {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.is_empty() {
        return Err(not_an_image("the file is empty".into()));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| image_error(path, image::ImageError::IoError(e)))?;
    let format = match reader.format() {
        Some(f) if SUPPORTED_FORMATS.contains(&f) => f,
        Some(f) => {
            return Err(not_an_image(format!(
                "{} images are not supported; use JPEG, PNG, GIF, BMP, TIFF or WebP",
                format!("{f:?}").to_uppercase()
            )));
        }
        None => return Err(not_an_image("unknown format".into())),
    };

    if format == ImageFormat::Jpeg {
        jpeg_structure_check(bytes).map_err(|reason| ImageError::Damaged {
            path: path.to_path_buf(),
            reason,
        })?;
    }

    if format == ImageFormat::Png {
        png_metadata_check(path, bytes)?;
    }

    let mut reader = reader;
    reader.limits(decode_limits());
    let mut decoder = match reader.into_decoder() {
        Ok(d) => d,
        Err(image::ImageError::Limits(_)) => {
            return Err(ImageError::TooLarge {
                path: path.to_path_buf(),
                detail: match declared_dimensions(bytes, format) {
                    Some((w, h)) => format!("{w}x{h} pixels; {}", limits_text()),
                    None => format!("its declared size exceeds the limits; {}", limits_text()),
                },
            });
        }
        Err(e) => return Err(image_error(path, e)),
    };

    let (width, height) = decoder.dimensions();
    check_size(path, width, height)?;
    if decoder.total_bytes() > MAX_DECODE_ALLOC {
        return Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            detail: format!(
                "{width}x{height} pixels of {:?} need {} bytes; the limit is {MAX_DECODE_ALLOC} bytes",
                decoder.color_type(),
                decoder.total_bytes()
            ),
        });
    }

    let decoded = if decode {
        // A broken or absent EXIF block is no reason to refuse the photo.
        let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
        // Likewise an unreadable profile: the pixels are then taken as sRGB.
        let colour = match decoder.icc_profile() {
            Ok(Some(icc)) => ColourInfo::Icc(icc),
            _ => ColourInfo::Unspecified,
        };
        let image = DynamicImage::from_decoder(decoder).map_err(|e| image_error(path, e))?;
        Some(Decoded {
            image,
            orientation,
            colour,
        })
    } else {
        None
    };
    Ok(Inspected {
        format,
        width,
        height,
        decoded,
    })
}

/// Walks a PNG's chunks up to its pixels and inflates its colour profile
/// (`iCCP`), if any, under [`MAX_PNG_PROFILE`]: one that would inflate past
/// it is refused before it is inflated, where the image crate's decoder
/// (under the 1 GiB pixel budget) would inflate it whole. The png crate offers
/// no such cap (it drops a profile over its budget silently, and its budget
/// covers the pixels too), so the walk is here; it reads only chunk lengths
/// and types (PNG: 4-byte length, 4-byte type, data, 4-byte CRC). Anything
/// malformed is left to the decoder, which reports it as it always has.
fn png_metadata_check(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    const SIGNATURE_LEN: usize = 8;
    let mut rest = bytes.get(SIGNATURE_LEN..).unwrap_or_default();
    while let (Some(len), Some(kind)) = (rest.get(..4), rest.get(4..8)) {
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        if kind == b"IDAT" {
            break;
        }
        let Some(data) = rest.get(8..).and_then(|d| d.get(..len)) else {
            break;
        };
        if kind == b"iCCP"
            && let Some(nul) = data.iter().take(80).position(|&b| b == 0)
        {
            // The profile's name, NUL, the compression method, a zlib stream.
            let stream = data.get(nul + 2..).unwrap_or_default();
            if let Err(fdeflate::BoundedDecompressionError::OutputTooLarge { .. }) =
                fdeflate::decompress_to_vec_bounded(stream, MAX_PNG_PROFILE)
            {
                return Err(ImageError::TooLarge {
                    path: path.to_path_buf(),
                    detail: format!(
                        "its colour profile inflates to more than {}",
                        indicatif::HumanBytes(MAX_PNG_PROFILE as u64)
                    ),
                });
            }
        }
        rest = rest.get(len.saturating_add(12)..).unwrap_or_default();
    }
    Ok(())
}

/// The check every format goes through: no empty picture, at most [`MAX_SIDE`] a
/// side and [`MAX_PIXELS`] in all.
fn check_size(path: &Path, width: u32, height: u32) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::Damaged {
            path: path.to_path_buf(),
            reason: format!("it declares an empty {width}x{height} picture"),
        });
    }
    let pixels = u64::from(width) * u64::from(height);
    if width > MAX_SIDE || height > MAX_SIDE || pixels > MAX_PIXELS {
        return Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            detail: format!("{width}x{height} pixels; {}", limits_text()),
        });
    }
    Ok(())
}

/// Dimensions from the header with the size limits lifted (the allocation limit
/// stays), only to word the error message for an over-large image.
fn declared_dimensions(bytes: &[u8], format: ImageFormat) -> Option<(u32, u32)> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    reader.into_dimensions().ok()
}

/// Map a decoder error to ours, naming the file.
fn image_error(path: &Path, err: image::ImageError) -> ImageError {
    let path = path.to_path_buf();
    match err {
        image::ImageError::Limits(e) => ImageError::TooLarge {
            path,
            detail: format!("{e}; {}", limits_text()),
        },
        image::ImageError::Unsupported(e) => ImageError::NotAnImage {
            path,
            reason: e.to_string(),
        },
        image::ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            ImageError::Damaged {
                path,
                reason: "the data ends too early".into(),
            }
        }
        other => ImageError::Damaged {
            path,
            reason: other.to_string(),
        },
    }
}

/// Walk the JPEG marker segments up to the first scan and check that a scan and an
/// end-of-image marker follow. The JPEG decoder is lenient and fills missing data
/// with grey, so without this a cut-off photo would be sealed as if it were whole.
/// Unusual but parseable layouts are left for the decoder to judge.
fn jpeg_structure_check(bytes: &[u8]) -> Result<(), String> {
    const TRUNCATED_HEADER: &str = "the file ends inside its JPEG headers";
    let mut i = 2; // after SOI (FF D8), which format detection has seen
    loop {
        if i >= bytes.len() {
            return Err(TRUNCATED_HEADER.into());
        }
        if bytes[i] != 0xFF {
            // Not where a marker should be: let the decoder give its verdict.
            return Ok(());
        }
        while i < bytes.len() && bytes[i] == 0xFF {
            i += 1; // fill bytes
        }
        let Some(&marker) = bytes.get(i) else {
            return Err(TRUNCATED_HEADER.into());
        };
        i += 1;
        match marker {
            // TEM and RSTn stand alone, without a length.
            0x01 | 0xD0..=0xD7 => continue,
            0xD9 => return Err("the JPEG ends before any image data".into()),
            _ => {}
        }
        let Some(len) = bytes.get(i..i + 2) else {
            return Err(TRUNCATED_HEADER.into());
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if len < 2 || i + len > bytes.len() {
            return Err(TRUNCATED_HEADER.into());
        }
        i += len;
        if marker == 0xDA {
            // Start of scan: entropy-coded data can't contain FF D9 (a literal FF is
            // stuffed as FF 00), so any FF D9 after here is an end-of-image marker.
            return if bytes[i..].windows(2).any(|w| w == [0xFF, 0xD9]) {
                Ok(())
            } else {
                Err("the JPEG image data is cut off (no end-of-image marker)".into())
            };
        }
    }
}

/// Convert any decoded image to 8-bit grey (`ImageLuma8`) or 8-bit RGB
/// (`ImageRgb8`), compositing any alpha channel onto white.
fn flatten_to_8bit(image: DynamicImage) -> DynamicImage {
    use image::ColorType as C;
    let color = image.color();
    let gray = matches!(color, C::L8 | C::La8 | C::L16 | C::La16);
    match (gray, color.has_alpha()) {
        (true, false) => match image {
            DynamicImage::ImageLuma8(_) => image,
            other => DynamicImage::ImageLuma8(other.to_luma8()),
        },
        (true, true) => {
            let la = image.to_luma_alpha8();
            drop(image);
            let (w, h) = la.dimensions();
            let data = la
                .as_raw()
                .chunks_exact(2)
                .map(|p| over_white(p[0], p[1]))
                .collect();
            DynamicImage::ImageLuma8(GrayImage::from_raw(w, h, data).expect("size matches"))
        }
        (false, false) => match image {
            DynamicImage::ImageRgb8(_) => image,
            other => DynamicImage::ImageRgb8(other.to_rgb8()),
        },
        (false, true) => {
            let rgba = image.to_rgba8();
            drop(image);
            let (w, h) = rgba.dimensions();
            let mut data = Vec::with_capacity(rgba.as_raw().len() / 4 * 3);
            for p in rgba.as_raw().chunks_exact(4) {
                let a = p[3];
                data.extend_from_slice(&[
                    over_white(p[0], a),
                    over_white(p[1], a),
                    over_white(p[2], a),
                ]);
            }
            DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, data).expect("size matches"))
        }
    }
}

/// Composite one straight-alpha sample onto white, rounding to nearest.
fn over_white(value: u8, alpha: u8) -> u8 {
    let (v, a) = (u32::from(value), u32::from(alpha));
    ((v * a + 255 * (255 - a) + 127) / 255) as u8
}

/// New size when the longer side exceeds `max_dim`, keeping the aspect ratio;
/// `None` when no downscale is needed (we never upscale).
pub fn downscaled_size(width: u32, height: u32, max_dim: u32) -> Option<(u32, u32)> {
    let long = width.max(height);
    if max_dim == 0 || long <= max_dim {
        return None;
    }
    let scale = |side: u32| -> u32 {
        let scaled = (u64::from(side) * u64::from(max_dim) + u64::from(long) / 2) / u64::from(long);
        (scaled as u32).clamp(1, max_dim)
    };
    if width >= height {
        Some((max_dim, scale(height)))
    } else {
        Some((scale(width), max_dim))
    }
}

/// Plain file name for the re-encoded photo: the input's stem + ".jpg".
pub(crate) fn jpeg_file_name(path: &Path) -> String {
    match path.file_stem() {
        Some(stem) if !stem.is_empty() => format!("{}.jpg", stem.to_string_lossy()),
        _ => "image.jpg".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GenericImageView, ImageBuffer, Luma, LumaA, Rgb, Rgba};
    use std::time::{Duration, Instant};
    use tempfile::TempDir;

    // ---------- helpers that build inputs ----------

    fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn encode_with(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    /// A w x h RGB picture: left half red, right half blue.
    fn red_blue(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, _| {
            if x < w / 2 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        })
    }

    /// A small textured RGB picture (gradients), so JPEGs of it are not trivial.
    fn textured(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([
                (x * 255 / w.max(1)) as u8,
                (y * 255 / h.max(1)) as u8,
                ((x + y) % 256) as u8,
            ])
        })
    }

    fn jpeg_of(img: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, 90)
            .encode(
                img.as_raw(),
                img.width() as u16,
                img.height() as u16,
                jpeg_encoder::ColorType::Rgb,
            )
            .unwrap();
        out
    }

    /// EXIF (big-endian TIFF) with Orientation, an ImageDescription holding a fake
    /// camera serial, and a GPS IFD with a latitude reference.
    fn exif_app1(orientation: u16) -> Vec<u8> {
        let serial = b"SERIAL-SXF-4242\0"; // 16 bytes, stored out of line
        let mut tiff = Vec::new();
        tiff.extend_from_slice(b"MM\0\x2A\0\0\0\x08"); // header, IFD0 at 8
        // IFD0: 3 entries -> 2 + 3*12 + 4 = 42 bytes, so data starts at 8 + 42 = 50.
        let serial_at: u32 = 50;
        let gps_at: u32 = serial_at + serial.len() as u32;
        tiff.extend_from_slice(&3u16.to_be_bytes());
        // 0x010E ImageDescription, ASCII, count 16, offset
        tiff.extend_from_slice(&0x010Eu16.to_be_bytes());
        tiff.extend_from_slice(&2u16.to_be_bytes());
        tiff.extend_from_slice(&(serial.len() as u32).to_be_bytes());
        tiff.extend_from_slice(&serial_at.to_be_bytes());
        // 0x0112 Orientation, SHORT, count 1, value
        tiff.extend_from_slice(&0x0112u16.to_be_bytes());
        tiff.extend_from_slice(&3u16.to_be_bytes());
        tiff.extend_from_slice(&1u32.to_be_bytes());
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0]);
        // 0x8825 GPS IFD pointer, LONG
        tiff.extend_from_slice(&0x8825u16.to_be_bytes());
        tiff.extend_from_slice(&4u16.to_be_bytes());
        tiff.extend_from_slice(&1u32.to_be_bytes());
        tiff.extend_from_slice(&gps_at.to_be_bytes());
        tiff.extend_from_slice(&0u32.to_be_bytes()); // no IFD1
        assert_eq!(tiff.len() as u32, serial_at);
        tiff.extend_from_slice(serial);
        // GPS IFD: 1 entry, GPSLatitudeRef = "N"
        tiff.extend_from_slice(&1u16.to_be_bytes());
        tiff.extend_from_slice(&0x0001u16.to_be_bytes());
        tiff.extend_from_slice(&2u16.to_be_bytes());
        tiff.extend_from_slice(&2u32.to_be_bytes());
        tiff.extend_from_slice(b"N\0\0\0");
        tiff.extend_from_slice(&0u32.to_be_bytes());

        let mut payload = b"Exif\0\0".to_vec();
        payload.extend_from_slice(&tiff);
        let mut seg = vec![0xFF, 0xE1];
        seg.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        seg.extend_from_slice(&payload);
        seg
    }

    /// Insert a marker segment right after SOI.
    fn insert_after_soi(jpeg: &[u8], segment: &[u8]) -> Vec<u8> {
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(segment);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    /// Marker bytes of all segments before the first SOS.
    fn header_markers(jpeg: &[u8]) -> Vec<u8> {
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "output is not a JPEG");
        let mut markers = Vec::new();
        let mut i = 2;
        while i + 4 <= jpeg.len() {
            assert_eq!(jpeg[i], 0xFF, "bad marker layout at {i}");
            let marker = jpeg[i + 1];
            markers.push(marker);
            if marker == 0xDA {
                break;
            }
            let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
            i += 2 + len;
        }
        markers
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        out.extend_from_slice(&crc_input);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    }

    /// zlib stream made of stored (uncompressed) deflate blocks.
    fn zlib_stored(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x78, 0x01];
        let chunks: Vec<&[u8]> = if data.is_empty() {
            vec![&[][..]]
        } else {
            data.chunks(65_535).collect()
        };
        for (i, chunk) in chunks.iter().enumerate() {
            out.push(u8::from(i + 1 == chunks.len()));
            let len = chunk.len() as u16;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in data {
            a = (a + u32::from(byte)) % 65_521;
            b = (b + a) % 65_521;
        }
        out.extend_from_slice(&((b << 16) | a).to_be_bytes());
        out
    }

    /// A PNG built by hand: IHDR, the extra chunks, one IDAT of `raw`, IEND.
    fn handmade_png(
        w: u32,
        h: u32,
        bit_depth: u8,
        color_type: u8,
        extra: &[(&[u8; 4], Vec<u8>)],
        raw: &[u8],
    ) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[bit_depth, color_type, 0, 0, 0]);
        png_chunk(&mut out, b"IHDR", &ihdr);
        for (kind, data) in extra {
            png_chunk(&mut out, kind, data);
        }
        png_chunk(&mut out, b"IDAT", &zlib_stored(raw));
        png_chunk(&mut out, b"IEND", &[]);
        out
    }

    fn decode_output(p: &ProcessedImage) -> DynamicImage {
        image::load_from_memory_with_format(&p.bytes, ImageFormat::Jpeg).unwrap()
    }

    fn close(a: u8, b: u8, tol: u8) -> bool {
        a.abs_diff(b) <= tol
    }

    fn process(path: &Path) -> ProcessedImage {
        process_image(path, &ImageOptions::default()).unwrap()
    }

    // ---------- orientation and metadata ----------

    #[test]
    fn exif_orientation_6_is_applied_and_dims_swap() {
        let dir = TempDir::new().unwrap();
        let jpeg = insert_after_soi(&jpeg_of(&red_blue(64, 32)), &exif_app1(6));
        let path = write(&dir, "rotated.jpg", &jpeg);
        let out = process(&path);
        assert_eq!((out.original_width, out.original_height), (64, 32));
        assert_eq!((out.width, out.height), (32, 64));
        let img = decode_output(&out).to_rgb8();
        assert_eq!(img.dimensions(), (32, 64));
        // Orientation 6 = rotate 90 degrees clockwise: the left (red) half goes on top.
        let top = img.get_pixel(16, 8);
        let bottom = img.get_pixel(16, 56);
        assert!(
            top[0] > 200 && top[2] < 60,
            "top should be red, got {top:?}"
        );
        assert!(
            bottom[2] > 200 && bottom[0] < 60,
            "bottom should be blue, got {bottom:?}"
        );
    }

    #[test]
    fn exif_orientation_1_leaves_dims_alone() {
        let dir = TempDir::new().unwrap();
        let jpeg = insert_after_soi(&jpeg_of(&red_blue(64, 32)), &exif_app1(1));
        let out = process(&write(&dir, "upright.jpg", &jpeg));
        assert_eq!((out.width, out.height), (64, 32));
    }

    #[test]
    fn exif_gps_serial_and_all_metadata_segments_are_dropped() {
        let dir = TempDir::new().unwrap();
        let mut jpeg = insert_after_soi(&jpeg_of(&textured(48, 40)), &exif_app1(1));
        // Also an XMP-like APP1, an ICC APP2 and a comment.
        let mut xmp = vec![0xFF, 0xE1];
        let body = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>GPS 52.37N</x:xmpmeta>";
        xmp.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        xmp.extend_from_slice(body);
        jpeg = insert_after_soi(&jpeg, &xmp);
        let mut com = vec![0xFF, 0xFE];
        let body = b"camera serial SERIAL-SXF-4242";
        com.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        com.extend_from_slice(body);
        jpeg = insert_after_soi(&jpeg, &com);
        let input_has = |needle: &[u8]| jpeg.windows(needle.len()).any(|w| w == needle);
        assert!(input_has(b"Exif\0\0") && input_has(b"SERIAL-SXF-4242"));

        let out = process(&write(&dir, "gps.jpg", &jpeg));
        let has = |needle: &[u8]| out.bytes.windows(needle.len()).any(|w| w == needle);
        assert!(!has(b"Exif"), "output still carries an Exif block");
        assert!(!has(b"SERIAL-SXF-4242"), "output still carries the serial");
        assert!(!has(b"xmpmeta") && !has(b"GPS"), "output still carries XMP");
        for m in header_markers(&out.bytes) {
            assert!(
                matches!(m, 0xE0 | 0xDB | 0xC0 | 0xC2 | 0xC4 | 0xDA | 0xDD),
                "unexpected segment FF{m:02X} in the output header"
            );
        }
    }

    // ---------- colour types ----------

    #[test]
    fn alpha_is_flattened_onto_white() {
        let dir = TempDir::new().unwrap();
        // 32x32 blocks: transparent (black with alpha 0), opaque red, half-transparent black.
        let img = ImageBuffer::from_fn(96, 32, |x, _| match x / 32 {
            0 => Rgba([0u8, 0, 0, 0]),
            1 => Rgba([255, 0, 0, 255]),
            _ => Rgba([0, 0, 0, 128]),
        });
        let png = encode_with(&DynamicImage::ImageRgba8(img), ImageFormat::Png);
        let out = process(&write(&dir, "alpha.png", &png));
        let rgb = decode_output(&out).to_rgb8();
        let clear = rgb.get_pixel(16, 16);
        assert!(
            clear.0.iter().all(|&c| c >= 250),
            "transparent -> white, got {clear:?}"
        );
        let red = rgb.get_pixel(48, 16);
        assert!(red[0] > 240 && red[1] < 20 && red[2] < 20, "got {red:?}");
        let half = rgb.get_pixel(80, 16);
        assert!(
            half.0.iter().all(|&c| close(c, 127, 6)),
            "50% black on white, got {half:?}"
        );
    }

    #[test]
    fn over_white_rounds_correctly() {
        assert_eq!(over_white(0, 0), 255);
        assert_eq!(over_white(123, 255), 123);
        assert_eq!(over_white(0, 255), 0);
        assert_eq!(over_white(0, 128), 127);
    }

    #[test]
    fn gray_input_stays_gray() {
        let dir = TempDir::new().unwrap();
        let img = GrayImage::from_fn(40, 30, |x, _| Luma([(x * 6) as u8]));
        let png = encode_with(&DynamicImage::ImageLuma8(img), ImageFormat::Png);
        let out = process(&write(&dir, "gray.png", &png));
        let dec = decode_output(&out);
        assert_eq!(
            dec.color(),
            image::ColorType::L8,
            "output should be a grey JPEG"
        );
        assert_eq!(dec.dimensions(), (40, 30));
        let px = dec.to_luma8().get_pixel(20, 15)[0];
        assert!(close(px, 120, 8), "got {px}");
    }

    #[test]
    fn gray_alpha_input_flattens_to_gray() {
        let dir = TempDir::new().unwrap();
        let img = ImageBuffer::from_fn(32, 16, |x, _| {
            if x < 16 {
                LumaA([0u8, 0])
            } else {
                LumaA([60, 255])
            }
        });
        let png = encode_with(&DynamicImage::ImageLumaA8(img), ImageFormat::Png);
        let out = process(&write(&dir, "ga.png", &png));
        let dec = decode_output(&out);
        assert_eq!(dec.color(), image::ColorType::L8);
        let g = dec.to_luma8();
        assert!(g.get_pixel(4, 8)[0] >= 250, "transparent -> white");
        assert!(close(g.get_pixel(28, 8)[0], 60, 8));
    }

    #[test]
    fn sixteen_bit_inputs_are_scaled_to_eight_bit() {
        let dir = TempDir::new().unwrap();
        let rgb16 = ImageBuffer::from_fn(32, 32, |_, _| Rgb([65_535u16, 32_768, 0]));
        let png = encode_with(&DynamicImage::ImageRgb16(rgb16), ImageFormat::Png);
        let out = process(&write(&dir, "rgb16.png", &png));
        let px = *decode_output(&out).to_rgb8().get_pixel(16, 16);
        assert!(
            close(px[0], 255, 6) && close(px[1], 128, 6) && close(px[2], 0, 6),
            "{px:?}"
        );

        let gray16 = ImageBuffer::from_fn(32, 32, |_, _| Luma([16_384u16]));
        let png = encode_with(&DynamicImage::ImageLuma16(gray16), ImageFormat::Png);
        let out = process(&write(&dir, "gray16.png", &png));
        let dec = decode_output(&out);
        assert_eq!(dec.color(), image::ColorType::L8);
        assert!(close(dec.to_luma8().get_pixel(5, 5)[0], 64, 4));

        let rgba16 = ImageBuffer::from_fn(32, 32, |_, _| Rgba([0u16, 0, 65_535, 0]));
        let png = encode_with(&DynamicImage::ImageRgba16(rgba16), ImageFormat::Png);
        let out = process(&write(&dir, "rgba16.png", &png));
        let px = *decode_output(&out).to_rgb8().get_pixel(16, 16);
        assert!(
            px.0.iter().all(|&c| c >= 250),
            "transparent 16-bit -> white, got {px:?}"
        );
    }

    #[test]
    fn palette_png_with_transparency_works() {
        let dir = TempDir::new().unwrap();
        // 8x4, palette: red, green, blue, black-but-transparent (tRNS).
        let plte = vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0];
        let trns = vec![255, 255, 255, 0];
        let mut raw = Vec::new();
        for _ in 0..4 {
            raw.push(0); // filter: none
            raw.extend_from_slice(&[0, 0, 1, 1, 2, 2, 3, 3]);
        }
        let png = handmade_png(8, 4, 8, 3, &[(b"PLTE", plte), (b"tRNS", trns)], &raw);
        let out = process(&write(&dir, "palette.png", &png));
        assert_eq!((out.width, out.height), (8, 4));
        let rgb = decode_output(&out).to_rgb8();
        // Tiny image with 4:2:0 chroma: judge dominant channels loosely.
        let red = rgb.get_pixel(0, 1);
        assert!(red[0] > 150 && red[0] > red[2], "{red:?}");
        let clear = rgb.get_pixel(7, 1);
        assert!(
            clear.0.iter().all(|&c| c > 190),
            "transparent index -> white, {clear:?}"
        );
    }

    #[test]
    fn cmyk_jpeg_is_converted_to_rgb() {
        let dir = TempDir::new().unwrap();
        // Ink amounts: left third full cyan, middle none (white), right full black.
        let (w, h) = (48u16, 16u16);
        let mut cmyk = Vec::new();
        for _ in 0..h {
            for x in 0..w {
                cmyk.extend_from_slice(match x / 16 {
                    0 => &[255, 0, 0, 0],
                    1 => &[0, 0, 0, 0],
                    _ => &[0, 0, 0, 255],
                });
            }
        }
        // A CMYK ICC profile (header only: the decoder has made RGB of the inks
        // by then, so the profile cannot apply and is set aside).
        let mut cmyk_profile = vec![0u8; 132];
        cmyk_profile[0..4].copy_from_slice(&132u32.to_be_bytes());
        cmyk_profile[8] = 4;
        cmyk_profile[12..16].copy_from_slice(b"prtr");
        cmyk_profile[16..20].copy_from_slice(b"CMYK");
        cmyk_profile[20..24].copy_from_slice(b"Lab ");
        cmyk_profile[36..40].copy_from_slice(b"acsp");
        for (name, color, profile) in [
            ("cmyk.jpg", jpeg_encoder::ColorType::Cmyk, None),
            ("ycck.jpg", jpeg_encoder::ColorType::CmykAsYcck, None),
            (
                "profiled.jpg",
                jpeg_encoder::ColorType::Cmyk,
                Some(&cmyk_profile),
            ),
        ] {
            let mut jpeg = Vec::new();
            let mut encoder = jpeg_encoder::Encoder::new(&mut jpeg, 95);
            if let Some(icc) = profile {
                encoder.add_icc_profile(icc).unwrap();
            }
            encoder.encode(&cmyk, w, h, color).unwrap();
            let out = process(&write(&dir, name, &jpeg));
            let rgb = decode_output(&out).to_rgb8();
            let cyan = rgb.get_pixel(8, 8);
            let white = rgb.get_pixel(24, 8);
            let black = rgb.get_pixel(40, 8);
            assert!(
                cyan[0] < 60 && cyan[1] > 200 && cyan[2] > 200,
                "{name}: {cyan:?}"
            );
            assert!(white.0.iter().all(|&c| c > 230), "{name}: {white:?}");
            assert!(black.0.iter().all(|&c| c < 40), "{name}: {black:?}");
        }
    }

    #[test]
    fn every_supported_format_is_detected_from_content_not_extension() {
        let dir = TempDir::new().unwrap();
        let img = DynamicImage::ImageRgb8(textured(30, 20));
        let rgba = DynamicImage::ImageRgba8(img.to_rgba8());
        for (format, src) in [
            (ImageFormat::Png, &img),
            (ImageFormat::Gif, &rgba),
            (ImageFormat::Bmp, &img),
            (ImageFormat::Tiff, &img),
            (ImageFormat::WebP, &rgba),
            (ImageFormat::Jpeg, &img),
        ] {
            // A misleading extension: the content decides.
            let path = write(&dir, &format!("{format:?}.txt"), &encode_with(src, format));
            let out = process_image(&path, &ImageOptions::default())
                .unwrap_or_else(|e| panic!("{format:?}: {e}"));
            assert_eq!((out.width, out.height), (30, 20), "{format:?}");
            assert_eq!(out.media_type, "image/jpeg");
            assert_eq!(&out.bytes[..3], &[0xFF, 0xD8, 0xFF]);

            let kept = process_image(
                &path,
                &ImageOptions {
                    keep_original: true,
                    ..ImageOptions::default()
                },
            )
            .unwrap();
            assert_eq!(kept.media_type, format.to_mime_type(), "{format:?}");
        }
    }

    // ---------- size ----------

    #[test]
    fn max_dim_keeps_aspect_ratio() {
        let dir = TempDir::new().unwrap();
        let png = encode_with(
            &DynamicImage::ImageRgb8(textured(400, 100)),
            ImageFormat::Png,
        );
        let path = write(&dir, "wide.png", &png);
        let opts = ImageOptions {
            max_dim: Some(100),
            ..ImageOptions::default()
        };
        let out = process_image(&path, &opts).unwrap();
        assert_eq!((out.width, out.height), (100, 25));
        assert_eq!(decode_output(&out).dimensions(), (100, 25));
        assert_eq!((out.original_width, out.original_height), (400, 100));

        // Portrait, with a rounding case: 300x1000 -> 77x256 (76.8 rounds up).
        let png = encode_with(
            &DynamicImage::ImageRgb8(textured(300, 1000)),
            ImageFormat::Png,
        );
        let path = write(&dir, "tall.png", &png);
        let opts = ImageOptions {
            max_dim: Some(256),
            ..ImageOptions::default()
        };
        let out = process_image(&path, &opts).unwrap();
        assert_eq!((out.width, out.height), (77, 256));
    }

    #[test]
    fn max_dim_applies_to_the_displayed_long_side_after_orientation() {
        let dir = TempDir::new().unwrap();
        let jpeg = insert_after_soi(&jpeg_of(&red_blue(200, 100)), &exif_app1(6));
        let opts = ImageOptions {
            max_dim: Some(50),
            ..ImageOptions::default()
        };
        let out = process_image(&write(&dir, "r.jpg", &jpeg), &opts).unwrap();
        assert_eq!((out.width, out.height), (25, 50));
    }

    #[test]
    fn max_dim_never_upscales() {
        let dir = TempDir::new().unwrap();
        let png = encode_with(&DynamicImage::ImageRgb8(textured(50, 30)), ImageFormat::Png);
        let path = write(&dir, "small.png", &png);
        for max_dim in [50, 51, 1000] {
            let opts = ImageOptions {
                max_dim: Some(max_dim),
                ..ImageOptions::default()
            };
            let out = process_image(&path, &opts).unwrap();
            assert_eq!((out.width, out.height), (50, 30), "max_dim {max_dim}");
        }
    }

    #[test]
    fn downscaled_size_edge_cases() {
        assert_eq!(downscaled_size(100, 100, 100), None);
        assert_eq!(downscaled_size(101, 100, 100), Some((100, 99)));
        assert_eq!(
            downscaled_size(10_000, 1, 100),
            Some((100, 1)),
            "never 0 pixels"
        );
        assert_eq!(downscaled_size(1, 10_000, 100), Some((1, 100)));
        assert_eq!(downscaled_size(4000, 3000, 2048), Some((2048, 1536)));
    }

    // ---------- hostile and broken input ----------

    #[test]
    fn decompression_bomb_header_is_rejected_quickly() {
        let dir = TempDir::new().unwrap();
        // Tiny PNGs declaring 50000x50000 (beyond the side limit) and 16000x16000
        // (within it, but 256 megapixels). Both would need gigabytes to decode.
        for (side, name) in [(50_000u32, "bomb.png"), (16_000, "bomb2.png")] {
            let png = handmade_png(side, side, 8, 2, &[], &[0; 64]);
            assert!(png.len() < 200);
            let path = write(&dir, name, &png);
            let start = Instant::now();
            let err = process_image(&path, &ImageOptions::default()).unwrap_err();
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "took {:?}",
                start.elapsed()
            );
            assert!(matches!(err, ImageError::TooLarge { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("{} is too large", path.display())),
                "{msg}"
            );
            assert!(msg.contains(&format!("{side}x{side}")), "{msg}");
            assert!(msg.contains("16384"), "{msg}");
            // keep_original checks the header too.
            let opts = ImageOptions {
                keep_original: true,
                ..ImageOptions::default()
            };
            let err = process_image(&path, &opts).unwrap_err();
            assert!(matches!(err, ImageError::TooLarge { .. }), "{err:?}");
        }
    }

    #[test]
    fn decoder_limits_match_the_documented_constants() {
        let limits = decode_limits();
        assert_eq!(limits.max_image_width, Some(MAX_SIDE));
        assert_eq!(limits.max_image_height, Some(MAX_SIDE));
        assert_eq!(limits.max_alloc, Some(MAX_DECODE_ALLOC));
    }

    #[test]
    fn jpeg_bomb_header_is_rejected_quickly() {
        let dir = TempDir::new().unwrap();
        // Patch the SOF0 of a small JPEG to declare 60000x60000.
        let mut jpeg = jpeg_of(&textured(16, 16));
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        jpeg[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
        let path = write(&dir, "bomb.jpg", &jpeg);
        let start = Instant::now();
        let err = process_image(&path, &ImageOptions::default()).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(matches!(err, ImageError::TooLarge { .. }), "{err:?}");
        assert!(err.to_string().contains("60000x60000"), "{err}");
    }

    #[test]
    fn truncated_jpeg_is_rejected_naming_the_file() {
        let dir = TempDir::new().unwrap();
        let jpeg = jpeg_of(&textured(200, 150));
        for cut in [jpeg.len() / 2, jpeg.len() - 2, 100, 3] {
            let path = write(&dir, "cut.jpg", &jpeg[..cut]);
            let err = process_image(&path, &ImageOptions::default()).unwrap_err();
            assert!(
                matches!(err, ImageError::Damaged { .. }),
                "cut {cut}: {err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("{} is damaged or truncated: ", path.display())),
                "{msg}"
            );
        }
        // The whole file is fine.
        let path = write(&dir, "whole.jpg", &jpeg);
        assert!(process_image(&path, &ImageOptions::default()).is_ok());
    }

    #[test]
    fn truncated_png_is_rejected_naming_the_file() {
        let dir = TempDir::new().unwrap();
        let png = encode_with(
            &DynamicImage::ImageRgb8(textured(200, 150)),
            ImageFormat::Png,
        );
        let path = write(&dir, "cut.png", &png[..png.len() / 2]);
        let err = process_image(&path, &ImageOptions::default()).unwrap_err();
        assert!(matches!(err, ImageError::Damaged { .. }), "{err:?}");
        assert!(
            err.to_string().contains("cut.png is damaged or truncated"),
            "{err}"
        );
    }

    #[test]
    fn text_file_is_rejected_naming_the_file() {
        let dir = TempDir::new().unwrap();
        let path = write(&dir, "photo.png", b"Dear Bob, this is not a picture.\n");
        for keep_original in [false, true] {
            let opts = ImageOptions {
                keep_original,
                ..ImageOptions::default()
            };
            let err = process_image(&path, &opts).unwrap_err();
            assert!(matches!(err, ImageError::NotAnImage { .. }), "{err:?}");
            assert_eq!(
                err.to_string(),
                format!(
                    "{} is not an image sxf can read (unknown format)",
                    path.display()
                )
            );
        }
        let empty = write(&dir, "empty.jpg", b"");
        let err = process_image(&empty, &ImageOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("empty.jpg is not an image"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_error_names_the_file() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("x.jpg");
        let err = process_image(&path, &ImageOptions::default()).unwrap_err();
        assert!(matches!(err, ImageError::Read { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with(&format!("could not read {}: ", path.display())),
            "{err}"
        );
    }

    #[test]
    fn invalid_options_are_rejected() {
        let dir = TempDir::new().unwrap();
        let png = encode_with(&DynamicImage::ImageRgb8(textured(8, 8)), ImageFormat::Png);
        let path = write(&dir, "ok.png", &png);
        for opts in [
            ImageOptions {
                quality: 0,
                ..ImageOptions::default()
            },
            ImageOptions {
                quality: 101,
                ..ImageOptions::default()
            },
            ImageOptions {
                max_dim: Some(0),
                ..ImageOptions::default()
            },
        ] {
            let err = process_image(&path, &opts).unwrap_err();
            assert!(matches!(err, ImageError::InvalidOptions { .. }), "{opts:?}");
            assert!(err.to_string().contains("ok.png"));
        }
        for quality in [1, 100] {
            let opts = ImageOptions {
                quality,
                ..ImageOptions::default()
            };
            assert!(process_image(&path, &opts).is_ok(), "quality {quality}");
        }
    }

    // ---------- keep_original and naming ----------

    #[test]
    fn keep_original_returns_identical_bytes() {
        let dir = TempDir::new().unwrap();
        let jpeg = insert_after_soi(&jpeg_of(&textured(64, 32)), &exif_app1(6));
        let path = write(&dir, "holiday.JPG", &jpeg);
        let opts = ImageOptions {
            keep_original: true,
            max_dim: Some(8),
            quality: 10,
        };
        let out = process_image(&path, &opts).unwrap();
        assert_eq!(out.bytes, jpeg);
        assert_eq!(out.file_name, "holiday.JPG");
        assert_eq!(out.media_type, "image/jpeg");
        assert_eq!(out.original_len, jpeg.len() as u64);
        assert_eq!((out.original_width, out.original_height), (64, 32));
        assert_eq!((out.width, out.height), (64, 32));

        let png = encode_with(&DynamicImage::ImageRgb8(textured(10, 20)), ImageFormat::Png);
        let path = write(&dir, "scan.png", &png);
        let out = process_image(&path, &opts).unwrap();
        assert_eq!(out.bytes, png);
        assert_eq!(out.media_type, "image/png");
    }

    #[test]
    fn output_is_named_after_the_stem_and_reports_sizes() {
        let dir = TempDir::new().unwrap();
        let png = encode_with(
            &DynamicImage::ImageRgb8(textured(120, 80)),
            ImageFormat::Png,
        );
        let path = write(&dir, "my.holiday photo.png", &png);
        let out = process(&path);
        assert_eq!(out.file_name, "my.holiday photo.jpg");
        assert_eq!(out.media_type, "image/jpeg");
        assert_eq!(out.original_len, png.len() as u64);
        assert_eq!((out.original_width, out.original_height), (120, 80));
        assert_eq!((out.width, out.height), (120, 80));
        assert_eq!(&out.bytes[..2], &[0xFF, 0xD8]);
        assert_eq!(&out.bytes[out.bytes.len() - 2..], &[0xFF, 0xD9]);
        // Only a JFIF header besides the JPEG tables.
        assert_eq!(header_markers(&out.bytes)[0], 0xE0);
    }

    #[test]
    fn quality_changes_the_output() {
        let dir = TempDir::new().unwrap();
        let png = encode_with(
            &DynamicImage::ImageRgb8(textured(256, 256)),
            ImageFormat::Png,
        );
        let path = write(&dir, "q.png", &png);
        let size = |quality| {
            let opts = ImageOptions {
                quality,
                ..ImageOptions::default()
            };
            process_image(&path, &opts).unwrap().bytes.len()
        };
        assert!(size(30) < size(DEFAULT_QUALITY));
        assert!(size(DEFAULT_QUALITY) < size(95));
    }

    #[test]
    fn flat_colours_survive_a_round_trip_through_images_decoder() {
        // Guards the encoder settings: the output must decode right through the
        // `image` crate's decoder (see also the tests in encode.rs).
        for (w, h) in [(16u32, 16u32), (33, 17), (64, 48)] {
            for colour in [[255u8, 255, 255], [128, 128, 128], [10, 200, 30]] {
                let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(w, h, Rgb(colour)));
                let jpeg = encode_jpeg(&img, DEFAULT_QUALITY).unwrap();
                let back = image::load_from_memory_with_format(&jpeg, ImageFormat::Jpeg)
                    .unwrap()
                    .to_rgb8();
                for (x, y) in [(0, 0), (w / 2, h / 2), (w - 1, h - 1)] {
                    let px = back.get_pixel(x, y).0;
                    assert!(
                        px.iter().zip(colour).all(|(&a, b)| close(a, b, 4)),
                        "{w}x{h} {colour:?}: got {px:?} at ({x}, {y})"
                    );
                }
            }
        }
    }

    #[test]
    fn downscale_keeps_size_aspect_and_flat_colours() {
        let (red, blue) = ([220u8, 20, 30], [20, 40, 200]);
        let img = RgbImage::from_fn(400, 300, |x, _| Rgb(if x < 200 { red } else { blue }));
        let (w, h) = downscaled_size(400, 300, 100).unwrap();
        assert_eq!((w, h), (100, 75));
        let out = downscale(&DynamicImage::ImageRgb8(img), w, h)
            .unwrap()
            .to_rgb8();
        assert_eq!(out.dimensions(), (100, 75));
        for (x, want) in [(10, red), (40, red), (60, blue), (90, blue)] {
            for y in [0, 37, 74] {
                assert_eq!(out.get_pixel(x, y).0, want, "at ({x}, {y})");
            }
        }
        let grey = DynamicImage::ImageLuma8(GrayImage::from_pixel(64, 33, Luma([77])));
        let out = downscale(&grey, 32, 17).unwrap();
        let DynamicImage::ImageLuma8(g) = out else {
            panic!("grey must stay grey");
        };
        assert_eq!(g.dimensions(), (32, 17));
        assert!(g.pixels().all(|p| p[0] == 77));
    }

    #[test]
    fn default_options_match_the_documented_defaults() {
        let opts = ImageOptions::default();
        assert_eq!(opts.quality, DEFAULT_QUALITY);
        assert_eq!(opts.max_dim, None);
        assert!(!opts.keep_original);
        assert!((1..=100).contains(&DEFAULT_QUALITY));
    }
}
