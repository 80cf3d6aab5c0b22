//! Photos handed to `sxf seal` may come from anyone: bombs, truncated and fake
//! images must fail at once with exit 2, name the file, and leave nothing behind.
#![cfg(unix)] // the memory cap is sh's ulimit -v

mod common;

use std::ffi::OsString;
use std::fs;
use std::io::Cursor;
use std::path::Path;
use std::process::{Command as StdCommand, Output};
use std::time::{Duration, Instant};

use common::*;
use tempfile::tempdir;

/// Virtual memory allowed to `sxf seal` here: far below what decoding any of
/// the bombs would take (60000x60000 RGB is 10.8 GB).
const MEMORY_LIMIT_KIB: u64 = 512 * 1024;
/// "At once": header checks, no decoding.
const TIME_LIMIT: Duration = Duration::from_secs(3);

fn encode(img: &image::RgbImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A valid small PNG whose IHDR (with a correct CRC) declares `width` x `height`.
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut png = encode(&test_picture(8, 8), image::ImageFormat::Png);
    assert_eq!(&png[12..16], b"IHDR");
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// A valid small JPEG whose baseline frame header declares `width` x `height`.
fn jpeg_declaring(width: u16, height: u16) -> Vec<u8> {
    let mut jpeg = encode(&test_picture(16, 16), image::ImageFormat::Jpeg);
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline JPEG has SOF0");
    // FF C0, length (2), precision (1), height (2), width (2)
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpeg
}

/// A GIF whose logical screen declares `width` x `height` around an 8x8 frame.
fn gif_declaring(width: u16, height: u16) -> Vec<u8> {
    let mut gif = encode(&test_picture(8, 8), image::ImageFormat::Gif);
    assert_eq!(&gif[..3], b"GIF");
    gif[6..8].copy_from_slice(&width.to_le_bytes());
    gif[8..10].copy_from_slice(&height.to_le_bytes());
    gif
}

fn seal_args(out: &Path, image: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut a = args![
        "seal",
        "--to",
        key("bob.pub"),
        "--sign",
        key("alice.key"),
        "-m",
        "x",
        "--image",
        image
    ];
    a.extend(extra.iter().map(OsString::from));
    a.extend(args!["-o", out]);
    a
}

/// Runs sxf with `args` under `ulimit -v`, and times it.
fn run_limited(args: &[OsString]) -> (Output, Duration) {
    let program = env!("CARGO_BIN_EXE_sxf");
    let started = Instant::now();
    let output = StdCommand::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {MEMORY_LIMIT_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(program)
        .args(args)
        .env_remove("SXF_PASSPHRASE")
        .output()
        .expect("sh runs");
    (output, started.elapsed())
}

/// `sxf seal --image <name>` fails with exit 2, quickly, within the memory
/// limit, with an error naming the file and saying `why`, and writes nothing.
fn assert_image_refused(name: &str, bytes: &[u8], extra: &[&str], why: &str) {
    let dir = tempdir().unwrap();
    let image = dir.path().join(name);
    fs::write(&image, bytes).unwrap();
    let out = dir.path().join("out.sxf");
    let (output, elapsed) = run_limited(&seal_args(&out, &image, extra));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let what = format!("seal --image {name} {extra:?}");
    assert_eq!(
        output.status.code(),
        Some(2),
        "{what}: exit status {:?}, stderr: {stderr}",
        output.status
    );
    assert!(
        stderr.contains(name),
        "{what}: the error names the file: {stderr}"
    );
    assert!(
        stderr.contains(why),
        "{what}: the error says {why:?}: {stderr}"
    );
    assert!(elapsed < TIME_LIMIT, "{what}: took {elapsed:?}");
    assert_not_created(&out);
    assert_eq!(listing(dir.path()), [name.to_owned()].into(), "{what}");
}

#[test]
fn control_the_same_pictures_at_a_sane_size_are_sealed_under_the_limits() {
    let dir = tempdir().unwrap();
    for (name, bytes) in [
        ("ok.png", png_declaring(8, 8)),
        ("ok.jpg", jpeg_declaring(16, 16)),
        ("ok.gif", gif_declaring(8, 8)),
    ] {
        let image = dir.path().join(name);
        fs::write(&image, bytes).unwrap();
        let out = dir.path().join(format!("{name}.sxf"));
        let (output, _) = run_limited(&seal_args(&out, &image, &[]));
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(out.is_file());
    }
}

#[test]
fn png_decompression_bomb_is_refused_at_once_naming_the_file() {
    let bomb = png_declaring(60_000, 60_000);
    assert!(bomb.len() < 1000, "a small file: {} bytes", bomb.len());
    assert_image_refused("bomb.png", &bomb, &[], "too large");
    assert_image_refused("bomb.png", &bomb, &["--keep-original"], "too large");
    assert_image_refused("bomb.png", &bomb, &["--max-dim", "100"], "too large");
    // Within the side limit, but too many pixels in all.
    assert_image_refused("wide.png", &png_declaring(16_000, 16_000), &[], "too large");
    assert_image_refused("tall.png", &png_declaring(1, 4_000_000), &[], "too large");
}

/// A valid 8x8 PNG whose colour profile (iCCP, zlib-compressed) inflates to
/// `profile_len` zero bytes.
fn png_with_profile(profile_len: usize) -> Vec<u8> {
    let mut info = png::Info::with_size(8, 8);
    info.color_type = png::ColorType::Rgb;
    info.bit_depth = png::BitDepth::Eight;
    info.icc_profile = Some(vec![0u8; profile_len].into());
    let mut out = Vec::new();
    let mut w = png::Encoder::with_info(&mut out, info)
        .unwrap()
        .write_header()
        .unwrap();
    w.write_image_data(&[128u8; 8 * 8 * 3]).unwrap();
    w.finish().unwrap();
    out
}

#[test]
fn a_png_whose_colour_profile_inflates_past_the_cap_is_refused_before_inflating() {
    // 64 MiB of profile in about 64 KiB of file.
    let bomb = png_with_profile(64 << 20);
    assert!(bomb.len() < 200_000, "a small file: {} bytes", bomb.len());
    assert_image_refused("profile.png", &bomb, &[], "colour profile");
    assert_image_refused("profile.png", &bomb, &["--keep-original"], "colour profile");
    // A profile of a usual size is no reason to refuse (this one is not a
    // valid profile, so the pixels are taken as sRGB).
    let dir = tempdir().unwrap();
    let image = dir.path().join("usual.png");
    fs::write(&image, png_with_profile(500 << 10)).unwrap();
    let out = dir.path().join("usual.sxf");
    let (output, _) = run_limited(&seal_args(&out, &image, &[]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn jpeg_and_gif_declaring_huge_sizes_are_refused_at_once() {
    assert_image_refused(
        "huge.jpg",
        &jpeg_declaring(65_000, 65_000),
        &[],
        "too large",
    );
    assert_image_refused("huge.gif", &gif_declaring(65_535, 65_535), &[], "too large");
    assert_image_refused(
        "huge.jpg",
        &jpeg_declaring(65_000, 65_000),
        &["--keep-original"],
        "too large",
    );
}

#[test]
fn truncated_jpeg_is_refused_naming_the_file() {
    // Large enough that most cuts fall in the entropy-coded data.
    let jpeg = encode(&test_picture(256, 256), image::ImageFormat::Jpeg);
    for cut in [
        jpeg.len() / 2,
        jpeg.len() * 3 / 4,
        jpeg.len() - 2,
        jpeg.len() - 1,
    ] {
        assert_image_refused("cut.jpg", &jpeg[..cut], &[], "damaged or truncated");
        assert_image_refused(
            "cut.jpg",
            &jpeg[..cut],
            &["--keep-original"],
            "damaged or truncated",
        );
    }
    // Cut inside the headers.
    assert_image_refused("head.jpg", &jpeg[..20], &[], "damaged or truncated");
}

#[test]
fn truncated_png_is_refused_naming_the_file() {
    let png = encode(&test_picture(64, 64), image::ImageFormat::Png);
    for cut in [40, png.len() / 2, png.len() - 12] {
        assert_image_refused("cut.png", &png[..cut], &[], "damaged or truncated");
    }
}

#[test]
fn text_file_passed_as_image_is_refused_naming_the_file() {
    assert_image_refused(
        "letter.jpg",
        b"Dear Bob, this is not a photo.\n",
        &[],
        "is not an image",
    );
    assert_image_refused("empty.png", b"", &[], "is not an image");
    // The format comes from the content, not the name; an SVG is not a raster image.
    assert_image_refused(
        "drawing.svg",
        b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
        &[],
        "is not an image",
    );
}

#[test]
fn a_refused_image_among_good_ones_still_leaves_nothing() {
    let dir = tempdir().unwrap();
    let good = dir.path().join("good.png");
    test_picture(32, 32).save(&good).unwrap();
    let bad = dir.path().join("bomb.png");
    fs::write(&bad, png_declaring(60_000, 60_000)).unwrap();
    let attachment = dir.path().join("notes.txt");
    fs::write(&attachment, b"notes").unwrap();
    let out = dir.path().join("out.sxf");
    let r = run(&mut seal_cmd(
        &out,
        &["bob.pub"],
        "alice.key",
        args![
            "-m",
            "x",
            "--image",
            &good,
            "--image",
            &bad,
            "--attach",
            &attachment
        ],
    ));
    r.assert_code(2, "one bomb among good files")
        .assert_stderr_contains("bomb.png", "one bomb among good files");
    assert_not_created(&out);
    assert_eq!(
        listing(dir.path()),
        ["bomb.png", "good.png", "notes.txt"]
            .map(String::from)
            .into()
    );
}
