//! Photos as phones and cameras make them, through the real binary: wide-gamut
//! colours arrive looking the same, an already small JPEG is never made bigger or
//! worse, `--fit` keeps the archive under a size, and several photos processed in
//! parallel give the same bytes as one at a time.
//!
//! The colour checks compute the expected colours with their own arithmetic
//! (primaries, white point and transfer curves from the standards), not with the
//! colour engine sxf uses, so a wrong conversion cannot agree with itself.

mod common;

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use common::*;
use image::{ImageEncoder, RgbImage};
use tempfile::tempdir;

// ---------------------------------------------------------------------------
// Colour arithmetic, from the standards

type Mat = [[f64; 3]; 3];

const D65: (f64, f64) = (0.3127, 0.3290);
const SRGB: [(f64, f64); 3] = [(0.64, 0.33), (0.30, 0.60), (0.15, 0.06)];
const ADOBE_RGB: [(f64, f64); 3] = [(0.64, 0.33), (0.21, 0.71), (0.15, 0.06)];
const DISPLAY_P3: [(f64, f64); 3] = [(0.680, 0.320), (0.265, 0.690), (0.150, 0.060)];

#[derive(Clone, Copy)]
enum Transfer {
    Srgb,
    /// Adobe RGB (1998): a pure power of 563/256.
    Gamma(f64),
}

#[derive(Clone, Copy)]
struct Space {
    primaries: [(f64, f64); 3],
    transfer: Transfer,
}

const SPACE_SRGB: Space = Space {
    primaries: SRGB,
    transfer: Transfer::Srgb,
};
const SPACE_ADOBE: Space = Space {
    primaries: ADOBE_RGB,
    transfer: Transfer::Gamma(563.0 / 256.0),
};
const SPACE_P3: Space = Space {
    primaries: DISPLAY_P3,
    transfer: Transfer::Srgb,
};

fn xyz_of_xy((x, y): (f64, f64)) -> [f64; 3] {
    [x / y, 1.0, (1.0 - x - y) / y]
}

fn invert(m: &Mat) -> Mat {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    let mut inv = [[0.0; 3]; 3];
    for (r, row) in inv.iter_mut().enumerate() {
        for (c, cell) in row.iter_mut().enumerate() {
            let (r1, r2) = ((c + 1) % 3, (c + 2) % 3);
            let (c1, c2) = ((r + 1) % 3, (r + 2) % 3);
            *cell = (m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]) / det;
        }
    }
    inv
}

fn mul(m: &Mat, v: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|r| m[r][0] * v[0] + m[r][1] * v[1] + m[r][2] * v[2])
}

/// RGB (linear) to XYZ for primaries and a D65 white.
fn rgb_to_xyz(primaries: [(f64, f64); 3]) -> Mat {
    let cols = primaries.map(xyz_of_xy);
    let p: Mat = [0, 1, 2].map(|r| [cols[0][r], cols[1][r], cols[2][r]]);
    let s = mul(&invert(&p), xyz_of_xy(D65));
    [0, 1, 2].map(|r| [p[r][0] * s[0], p[r][1] * s[1], p[r][2] * s[2]])
}

fn decode_transfer(t: Transfer, v: f64) -> f64 {
    match t {
        Transfer::Srgb if v <= 0.04045 => v / 12.92,
        Transfer::Srgb => ((v + 0.055) / 1.055).powf(2.4),
        Transfer::Gamma(g) => v.powf(g),
    }
}

fn encode_transfer(t: Transfer, v: f64) -> f64 {
    let v = v.clamp(0.0, 1.0);
    match t {
        Transfer::Srgb if v <= 0.0031308 => v * 12.92,
        Transfer::Srgb => 1.055 * v.powf(1.0 / 2.4) - 0.055,
        Transfer::Gamma(g) => v.powf(1.0 / g),
    }
}

fn pixel_to_xyz(space: Space, p: [u8; 3]) -> [f64; 3] {
    let linear = p.map(|c| decode_transfer(space.transfer, f64::from(c) / 255.0));
    mul(&rgb_to_xyz(space.primaries), linear)
}

/// CIE L*a*b* relative to D65.
fn lab(xyz: [f64; 3]) -> [f64; 3] {
    let white = xyz_of_xy(D65);
    let f = |t: f64| {
        if t > 216.0 / 24389.0 {
            t.cbrt()
        } else {
            (24389.0 / 27.0 * t + 16.0) / 116.0
        }
    };
    let [fx, fy, fz] = [0, 1, 2].map(|i| f(xyz[i] / white[i]));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// Re-express sRGB pixels in another space (8 bits a sample), as a camera or
/// phone would store them. No sRGB colour is outside these spaces.
fn convert_image(img: &RgbImage, to: Space) -> RgbImage {
    let to_rgb = invert(&rgb_to_xyz(to.primaries));
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let linear = mul(&to_rgb, pixel_to_xyz(SPACE_SRGB, p.0));
        p.0 = linear.map(|v| (encode_transfer(to.transfer, v) * 255.0).round() as u8);
    }
    out
}

/// ΔE76 between the block means (8x8 pixels) of two renderings: (mean, 99th
/// percentile).
fn block_delta_e(original: &RgbImage, space: Space, output: &RgbImage) -> (f64, f64) {
    assert_eq!(original.dimensions(), output.dimensions());
    let (w, h) = original.dimensions();
    let mut errors = Vec::new();
    for by in 0..h / 8 {
        for bx in 0..w / 8 {
            let mut sums = [[0.0; 3]; 2];
            for y in by * 8..by * 8 + 8 {
                for x in bx * 8..bx * 8 + 8 {
                    let a = lab(pixel_to_xyz(space, original.get_pixel(x, y).0));
                    let b = lab(pixel_to_xyz(SPACE_SRGB, output.get_pixel(x, y).0));
                    for i in 0..3 {
                        sums[0][i] += a[i];
                        sums[1][i] += b[i];
                    }
                }
            }
            let d: f64 = (0..3)
                .map(|i| (sums[0][i] - sums[1][i]) / 64.0)
                .map(|d| d * d)
                .sum();
            errors.push(d.sqrt());
        }
    }
    errors.sort_by(f64::total_cmp);
    let mean = errors.iter().sum::<f64>() / errors.len() as f64;
    let p99 = errors[(errors.len() * 99 / 100).min(errors.len() - 1)];
    (mean, p99)
}

// ---------------------------------------------------------------------------
// Fixtures

fn sample_photo() -> RgbImage {
    image::open(project_root().join("examples/sample.jpg"))
        .unwrap()
        .to_rgb8()
}

fn icc_profile(space: &str) -> Vec<u8> {
    let profile = match space {
        "adobe" => moxcms::ColorProfile::new_adobe_rgb(),
        "p3" => moxcms::ColorProfile::new_display_p3(),
        other => panic!("no profile {other}"),
    };
    profile.encode().unwrap()
}

/// `img` written by `encoder` with the ICC profile `icc` embedded.
fn with_profile(mut encoder: impl ImageEncoder, img: &RgbImage, icc: &[u8]) {
    encoder.set_icc_profile(icc.to_vec()).unwrap();
    encoder
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
}

fn jpeg_with_profile(img: &RgbImage, icc: &[u8], quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
    with_profile(encoder, img, icc);
    out
}

fn png_with_profile(img: &RgbImage, icc: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    with_profile(image::codecs::png::PngEncoder::new(&mut out), img, icc);
    out
}

/// Seals the photos alice to bob with `extra` options, opens the archive, and
/// returns (seal's stderr, archive path, the opened directory). The line of open's
/// stderr that lists the files written, in archive order, is in `WROTE`.
fn seal_and_open(
    dir: &Path,
    photos: &[PathBuf],
    extra: Vec<std::ffi::OsString>,
) -> (String, PathBuf, PathBuf) {
    let archive = dir.join(format!("photos-{}.sxf", listing(dir).len()));
    let mut args = Vec::new();
    for p in photos {
        args.push("--image".into());
        args.push(p.clone().into_os_string());
    }
    args.extend(extra);
    let sealed = seal(&archive, &["bob.pub"], "alice.key", args);
    let out = dir.join(format!("opened-{}", listing(dir).len()));
    let r = run(&mut open_cmd(&archive, "bob.key", Some("alice.pub"), &out));
    r.assert_code(0, "open");
    let wrote = r
        .stderr
        .lines()
        .find(|l| l.starts_with("wrote "))
        .unwrap_or("");
    fs::write(out.with_extension("wrote"), wrote).unwrap();
    (sealed.stderr, archive, out)
}

fn opened_file(dir: &Path, name: &str) -> Vec<u8> {
    fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name} in {}: {e}", dir.display()))
}

// ---------------------------------------------------------------------------
// True colours

fn assert_colours_survive(space: Space, file_name: &str, bytes: Vec<u8>) {
    let dir = tempdir().unwrap();
    let source = convert_image(&sample_photo(), space);
    // Guard: the test can see a colour shift (what sxf did before).
    let (untagged_mean, _) = block_delta_e(&source, space, &source);
    assert!(
        untagged_mean > 3.0,
        "fixture too close to sRGB: {untagged_mean}"
    );

    let path = dir.path().join(file_name);
    fs::write(&path, bytes).unwrap();
    let (stderr, _, out) = seal_and_open(dir.path(), &[path], vec![]);
    assert!(stderr.contains("colours converted to sRGB"), "{stderr}");
    let stem = file_name.split('.').next().unwrap();
    let output = image::load_from_memory(&opened_file(&out, &format!("{stem}.jpg")))
        .unwrap()
        .to_rgb8();
    let (mean, p99) = block_delta_e(&source, space, &output);
    eprintln!("{file_name}: mean ΔE76 {mean:.2}, p99 {p99:.2}");
    assert!(mean <= 1.5, "{file_name}: mean ΔE76 {mean:.2} > 1.5");
    assert!(p99 <= 5.0, "{file_name}: p99 ΔE76 {p99:.2} > 5");
}

#[test]
fn adobe_rgb_jpeg_arrives_with_the_same_colours() {
    let source = convert_image(&sample_photo(), SPACE_ADOBE);
    let jpeg = jpeg_with_profile(&source, &icc_profile("adobe"), 95);
    assert_colours_survive(SPACE_ADOBE, "camera.jpg", jpeg);
}

#[test]
fn display_p3_jpeg_arrives_with_the_same_colours() {
    let source = convert_image(&sample_photo(), SPACE_P3);
    let jpeg = jpeg_with_profile(&source, &icc_profile("p3"), 95);
    assert_colours_survive(SPACE_P3, "phone.jpg", jpeg);
}

#[test]
fn display_p3_png_arrives_with_the_same_colours() {
    let source = convert_image(&sample_photo(), SPACE_P3);
    let png = png_with_profile(&source, &icc_profile("p3"));
    assert_colours_survive(SPACE_P3, "screenshot.png", png);
}

#[test]
fn srgb_photo_is_not_converted() {
    let dir = tempdir().unwrap();
    let (stderr, _, _) = seal_and_open(
        dir.path(),
        &[project_root().join("examples/sample.jpg")],
        vec![],
    );
    assert!(!stderr.contains("converted"), "{stderr}");
    assert!(stderr.contains("re-encoded at quality 80"), "{stderr}");
}

// ---------------------------------------------------------------------------
// Never worse than what the user gave

/// EXIF with Orientation, a camera serial, a date and a GPS latitude.
fn exif_segment(orientation: u16) -> Vec<u8> {
    let mut t = b"MM\0\x2A\0\0\0\x08".to_vec();
    let entries: u16 = 4;
    let data_at = 8 + 2 + 12 * u32::from(entries) + 4;
    let serial = b"SERIAL-SXF-4242\0";
    let date = b"2026:11:29 10:00:00\0";
    let gps_at = data_at + (serial.len() + date.len()) as u32;
    t.extend_from_slice(&entries.to_be_bytes());
    let mut entry = |tag: u16, kind: u16, count: u32, value: [u8; 4]| {
        t.extend_from_slice(&tag.to_be_bytes());
        t.extend_from_slice(&kind.to_be_bytes());
        t.extend_from_slice(&count.to_be_bytes());
        t.extend_from_slice(&value);
    };
    entry(0x010E, 2, serial.len() as u32, data_at.to_be_bytes());
    let o = orientation.to_be_bytes();
    entry(0x0112, 3, 1, [o[0], o[1], 0, 0]);
    entry(
        0x0132,
        2,
        date.len() as u32,
        (data_at + serial.len() as u32).to_be_bytes(),
    );
    entry(0x8825, 4, 1, gps_at.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    t.extend_from_slice(serial);
    t.extend_from_slice(date);
    t.extend_from_slice(&1u16.to_be_bytes());
    t.extend_from_slice(&[0, 1, 0, 2, 0, 0, 0, 2, b'N', 0, 0, 0]);
    t.extend_from_slice(&0u32.to_be_bytes());
    let mut seg = vec![0xFF, 0xE1];
    seg.extend_from_slice(&((t.len() + 8) as u16).to_be_bytes());
    seg.extend_from_slice(b"Exif\0\0");
    seg.extend_from_slice(&t);
    seg
}

fn low_quality_jpeg_with_gps(orientation: u16) -> Vec<u8> {
    let mut out = low_quality_jpeg_with(&exif_segment(orientation));
    // A phone's appended second picture (depth map, say) after the end marker.
    out.extend_from_slice(b"\xFF\xD8 appended picture SERIAL-SXF-4242 \xFF\xD9");
    out
}

/// Marker segments (code, body) before the first scan.
fn header_segments(jpeg: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 2;
    while i + 4 <= jpeg.len() && jpeg[i + 1] != 0xDA {
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        out.push((jpeg[i + 1], jpeg[i + 4..i + 2 + len].to_vec()));
        i += 2 + len;
    }
    out
}

#[test]
fn low_quality_jpeg_is_sent_losslessly_without_metadata_and_right_side_up() {
    let dir = tempdir().unwrap();
    let original = low_quality_jpeg_with_gps(6);
    let path = dir.path().join("small.jpg");
    fs::write(&path, &original).unwrap();
    let (stderr, _, out) = seal_and_open(dir.path(), std::slice::from_ref(&path), vec![]);
    assert!(
        stderr.contains("original JPEG data with its metadata removed"),
        "{stderr}"
    );

    let sent = opened_file(&out, "small.jpg");
    eprintln!(
        "quality-30 JPEG with EXIF: {} bytes in, {} bytes sent; {stderr}",
        original.len(),
        sent.len()
    );
    assert!(
        sent.len() < original.len(),
        "{} >= {}",
        sent.len(),
        original.len()
    );
    for secret in [&b"SERIAL"[..], b"2026:11:29", b"appended"] {
        assert!(!sent.windows(secret.len()).any(|w| w == secret), "leaked");
    }
    // Only a minimal EXIF with the Orientation tag is left of the metadata.
    let segments = header_segments(&sent);
    let app: Vec<_> = segments
        .iter()
        .filter(|(m, _)| (0xE0..=0xEF).contains(m) || *m == 0xFE)
        .collect();
    assert_eq!(
        app.len(),
        1,
        "{:?}",
        app.iter().map(|s| s.0).collect::<Vec<_>>()
    );
    let (marker, body) = app[0];
    assert_eq!(*marker, 0xE1);
    assert_eq!(&body[..6], b"Exif\0\0");
    assert_eq!(u16::from_be_bytes([body[14], body[15]]), 1, "one EXIF tag");
    assert_eq!(&body[16..18], &[0x01, 0x12], "the tag is Orientation");

    // The entropy-coded data is the original's, byte for byte.
    let scan = |j: &[u8]| j[j.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap()..].to_vec();
    let original_scan = scan(&original);
    let sent_scan = scan(&sent);
    assert!(original_scan.starts_with(&sent_scan), "image data changed");

    // Right side up: decoded with its orientation, it is the source turned 90°.
    let mut decoder = image::ImageReader::new(Cursor::new(&sent))
        .with_guessed_format()
        .unwrap()
        .into_decoder()
        .unwrap();
    use image::ImageDecoder;
    let orientation = decoder.orientation().unwrap();
    let mut shown = image::DynamicImage::from_decoder(decoder).unwrap();
    shown.apply_orientation(orientation);
    let (w, h) = sample_photo().dimensions();
    assert_eq!((shown.width(), shown.height()), (h, w));
}

#[test]
fn a_jpeg_that_re_encoding_shrinks_is_re_encoded() {
    let dir = tempdir().unwrap();
    let big = jpeg_with_profile(&sample_photo(), &icc_profile("p3"), 98);
    let path = dir.path().join("big.jpg");
    fs::write(&path, &big).unwrap();
    let (stderr, _, out) = seal_and_open(dir.path(), &[path], vec![]);
    assert!(stderr.contains("re-encoded at quality 80"), "{stderr}");
    assert!(opened_file(&out, "big.jpg").len() < big.len());
}

// ---------------------------------------------------------------------------
// --fit

/// A 2400x1600 photo made from the sample (upscaled, so it has photo texture).
fn big_photo(dir: &Path, name: &str, flip: bool) -> PathBuf {
    let mut img = image::imageops::resize(
        &sample_photo(),
        2400,
        1600,
        image::imageops::FilterType::Triangle,
    );
    if flip {
        image::imageops::flip_horizontal_in_place(&mut img);
    }
    let path = dir.join(name);
    img.save(&path).unwrap();
    path
}

fn fit_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.trim_start().starts_with("fit "))
        .unwrap_or_else(|| panic!("no fit line in {stderr}"))
}

#[test]
fn fit_keeps_the_archive_at_or_under_the_size_across_a_range_of_sizes() {
    let dir = tempdir().unwrap();
    let photos = vec![
        big_photo(dir.path(), "one.png", false),
        big_photo(dir.path(), "two.png", true),
    ];
    let (_, unconstrained, _) = seal_and_open(dir.path(), &photos, args!["-m", "hello"]);
    let full = fs::metadata(&unconstrained).unwrap().len();

    let mut saw_lower_quality = false;
    let mut saw_smaller_photos = false;
    let mut saw_refusal = false;
    for percent in [100u64, 70, 50, 30, 10] {
        let limit = full * percent / 100;
        let archive = dir.path().join(format!("fit-{percent}.sxf"));
        let mut cmd = seal_cmd(
            &archive,
            &["bob.pub"],
            "alice.key",
            args![
                "-m",
                "hello",
                "--image",
                &photos[0],
                "--image",
                &photos[1],
                "--fit",
                limit.to_string(),
            ],
        );
        let r = run(&mut cmd);
        eprintln!(
            "--fit {percent}%: {}",
            r.stderr
                .lines()
                .find(|l| l.contains("fit") || l.contains("cannot"))
                .unwrap_or("")
        );
        if r.code == 0 {
            let len = fs::metadata(&archive).unwrap().len();
            assert!(len <= limit, "--fit {limit}: archive is {len}");
            let line = fit_line(&r.stderr);
            saw_lower_quality |= !line.contains("quality 80");
            saw_smaller_photos |= line.contains("pixels on the long side");
            let opened = dir.path().join(format!("fit-{percent}-opened"));
            run(&mut open_cmd(
                &archive,
                "bob.key",
                Some("alice.pub"),
                &opened,
            ))
            .assert_code(0, "open");
        } else {
            r.assert_code(2, "seal --fit too small")
                .assert_stderr_contains("cannot fit the archive in", "what would fit");
            assert_not_created(&archive);
            saw_refusal = true;
        }
    }
    assert!(saw_lower_quality && saw_smaller_photos && saw_refusal);
}

#[test]
fn fit_smaller_than_the_attachments_says_what_takes_the_room() {
    let dir = tempdir().unwrap();
    let attachment = dir.path().join("report.bin");
    fs::write(&attachment, vec![7u8; 200_000]).unwrap();
    let archive = dir.path().join("x.sxf");
    let mut cmd = seal_cmd(
        &archive,
        &["bob.pub"],
        "alice.key",
        args![
            "--attach",
            &attachment,
            "--image",
            project_root().join("examples/sample.jpg"),
            "--fit",
            "100kB",
        ],
    );
    run(&mut cmd)
        .assert_code(2, "attachments over the limit")
        .assert_stderr_contains("the message, attachments and headers alone take", "why");
    assert_not_created(&archive);
}

// ---------------------------------------------------------------------------
// Several photos at once

#[test]
fn parallel_output_is_byte_identical_to_serial() {
    let dir = tempdir().unwrap();
    let mut photos = vec![
        big_photo(dir.path(), "a.png", false),
        big_photo(dir.path(), "b.png", true),
        project_root().join("examples/sample.jpg"),
    ];
    let p3 = dir.path().join("p3.jpg");
    fs::write(
        &p3,
        jpeg_with_profile(
            &convert_image(&sample_photo(), SPACE_P3),
            &icc_profile("p3"),
            95,
        ),
    )
    .unwrap();
    photos.push(p3);
    let (_, _, serial) = seal_and_open(dir.path(), &photos, args!["--jobs", "1"]);
    let (_, _, parallel) = seal_and_open(dir.path(), &photos, args!["--jobs", "4"]);
    assert_eq!(tree(&serial), tree(&parallel));
    // And the order of files in the archive is the order of the command line.
    let wrote = |out: &Path| {
        let line = fs::read_to_string(out.with_extension("wrote")).unwrap();
        line.split(" into ").next().unwrap().to_owned()
    };
    assert_eq!(wrote(&serial), wrote(&parallel));
    assert!(
        wrote(&serial) == "wrote a.jpg, b.jpg, sample.jpg, p3.jpg",
        "{}",
        wrote(&serial)
    );
}

/// An iPhone-style HEIC: Display P3 described by an nclx box (no ICC profile).
#[cfg(feature = "heif")]
#[test]
fn display_p3_heic_with_nclx_arrives_with_the_same_colours() {
    let heic = fs::read(project_root().join("tests/data/heif/p3-photo.heic")).unwrap();
    assert_colours_survive(SPACE_P3, "iphone.heic", heic);
}

/// A low-quality JPEG with one extra segment inserted after SOI.
fn low_quality_jpeg_with(segment: &[u8]) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 30)
        .encode_image(&sample_photo())
        .unwrap();
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(segment);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn segments_outside_the_allowlist_never_reach_the_recipient() {
    // Markers a metadata filter might pass through: a JPG-n extension, a
    // reserved SOF, an APP2 that says ICC_PROFILE but holds something else.
    let dir = tempdir().unwrap();
    let secret = b"SERIAL-SXF-4242";
    for (name, marker, prefix) in [
        ("jpgn.jpg", 0xF0u8, &b""[..]),
        ("sof8.jpg", 0xC8, b""),
        ("icc.jpg", 0xE2, b"ICC_PROFILE\0\x01\x01"),
    ] {
        let mut body = prefix.to_vec();
        body.extend_from_slice(secret);
        let mut segment = vec![0xFF, marker];
        segment.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        segment.extend_from_slice(&body);
        let path = dir.path().join(name);
        fs::write(&path, low_quality_jpeg_with(&segment)).unwrap();
        let archive = dir.path().join(format!("{name}.sxf"));
        let r = run(&mut seal_cmd(
            &archive,
            &["bob.pub"],
            "alice.key",
            args!["--image", &path],
        ));
        // sxf re-encodes such a file; it must not quietly refuse it either.
        r.assert_code(0, name);
        assert!(
            !r.stderr.contains("original JPEG data"),
            "{name}: {}",
            r.stderr
        );
        let out = dir.path().join(format!("{name}-opened"));
        run(&mut open_cmd(&archive, "bob.key", Some("alice.pub"), &out)).assert_code(0, "open");
        let sent = opened_file(&out, name);
        assert!(
            !sent.windows(secret.len()).any(|w| w == secret),
            "{name} leaked"
        );
    }
}

/// A file that shows one picture to a reader that takes FF 01 (TEM) as a
/// stand-alone marker and another to one that reads a length after it.
fn two_faced_jpeg() -> (Vec<u8>, (u32, u32)) {
    let encode = |img: &RgbImage, q: u8| {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, q)
            .encode_image(img)
            .unwrap();
        out
    };
    // A noisy 256x256 picture (large at any quality) and a flat 64x64 one.
    let mut seed = 5u32;
    let noisy = RgbImage::from_fn(256, 256, |_, _| {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let [a, b, c, _] = seed.to_be_bytes();
        image::Rgb([a, b, c])
    });
    let a = encode(&noisy, 95);
    let b = encode(&RgbImage::from_pixel(64, 64, image::Rgb([255, 0, 0])), 50);
    let mut out = vec![0xFF, 0xD8, 0xFF, 0x01];
    let skip: usize = 0xFFE1;
    out.extend_from_slice(&[0xFF, 0xE1, 0x00, 0x04, b'x', b'x']);
    out.extend_from_slice(&b[2..]);
    let target = 2 + 2 + skip;
    assert!(out.len() <= target);
    out.resize(target, 0);
    out.extend_from_slice(&a[2..]);
    (out, (256, 256))
}

#[test]
fn the_lossless_path_never_sends_a_picture_other_than_the_one_checked() {
    let dir = tempdir().unwrap();
    let (jpeg, checked) = two_faced_jpeg();
    let path = dir.path().join("two-faced.jpg");
    fs::write(&path, &jpeg).unwrap();
    let archive = dir.path().join("x.sxf");
    let r = run(&mut seal_cmd(
        &archive,
        &["bob.pub"],
        "alice.key",
        args!["--image", &path],
    ));
    // The picture sxf checked is re-encoded and sent.
    r.assert_code(0, "seal of the two-faced JPEG");
    assert!(!r.stderr.contains("original JPEG data"), "{}", r.stderr);
    let out = dir.path().join("opened");
    run(&mut open_cmd(&archive, "bob.key", Some("alice.pub"), &out)).assert_code(0, "open");
    let sent = image::load_from_memory(&opened_file(&out, "two-faced.jpg")).unwrap();
    assert_eq!((sent.width(), sent.height()), checked);
}

#[test]
fn a_jpeg_tagged_srgb_is_not_reported_as_converted() {
    let dir = tempdir().unwrap();
    let srgb = moxcms::ColorProfile::new_srgb().encode().unwrap();
    let path = dir.path().join("tagged.jpg");
    fs::write(&path, jpeg_with_profile(&sample_photo(), &srgb, 95)).unwrap();
    let (stderr, _, _) = seal_and_open(dir.path(), &[path], vec![]);
    assert!(!stderr.contains("converted"), "{stderr}");
}

#[cfg(feature = "heif")]
#[test]
fn fit_works_with_heic_photos() {
    let dir = tempdir().unwrap();
    let heic = project_root().join("tests/data/heif/p3-photo.heic");
    let archive = dir.path().join("x.sxf");
    let r = run(&mut seal_cmd(
        &archive,
        &["bob.pub"],
        "alice.key",
        args!["--image", &heic, "--fit", "60000",],
    ));
    r.assert_code(0, "seal --fit with a HEIC");
    assert!(fs::metadata(&archive).unwrap().len() <= 60_000);
}
