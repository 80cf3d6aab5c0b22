//! HEIF/HEIC and AVIF photos through the real binary: with the `heif` feature they
//! are decoded right side up (HEIF's irot/imir applied) and re-encoded as JPEG;
//! without it they are refused with a sentence saying how to get a build that
//! reads them. `--keep-original` passes them through unchanged in both builds.
//! The fixtures and how they were made: tests/data/heif/make.py.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use tempfile::tempdir;

fn fixture(name: &str) -> PathBuf {
    project_root().join("tests/data/heif").join(name)
}

/// Seal `photo` (alice to bob) with `extra` options.
fn seal_photo(dir: &Path, photo: &Path, extra: &[&str]) -> Run {
    let mut args = args!["-m", "photo", "--image", photo];
    args.extend(extra.iter().map(std::ffi::OsString::from));
    run(&mut seal_cmd(
        &dir.join("photo.sxf"),
        &["bob.pub"],
        "alice.key",
        args,
    ))
}

/// Open the archive `seal_photo` wrote and return the output directory.
fn open_photo(dir: &Path) -> PathBuf {
    let out = dir.join("opened");
    let r = run(&mut open_cmd(
        &dir.join("photo.sxf"),
        "bob.key",
        Some("alice.pub"),
        &out,
    ));
    r.assert_code(0, "open");
    out
}

/// `name` copied into `dir` (so the message names a file of the test's own).
fn copy_in(dir: &Path, name: &str, as_name: &str) -> PathBuf {
    let path = dir.join(as_name);
    fs::copy(fixture(name), &path).unwrap();
    path
}

/// The 64x48 fixture `name` with the `ispe` property of its primary image (the
/// 64x48 grid; its one 64x64 tile has an ispe of its own) declaring `width` x
/// `height`.
fn declaring(name: &str, width: u32, height: u32) -> Vec<u8> {
    let mut data = fs::read(fixture(name)).unwrap();
    let mut ispe = b"ispe\0\0\0\0".to_vec();
    ispe.extend_from_slice(&64u32.to_be_bytes());
    ispe.extend_from_slice(&48u32.to_be_bytes());
    let found: Vec<usize> = (0..data.len())
        .filter(|&i| data[i..].starts_with(&ispe))
        .collect();
    assert_eq!(found.len(), 1, "one 64x48 ispe property in {name}");
    let at = found[0];
    data[at + 8..at + 12].copy_from_slice(&width.to_be_bytes());
    data[at + 12..at + 16].copy_from_slice(&height.to_be_bytes());
    data
}

#[test]
fn keep_original_passes_heic_and_avif_through_unchanged() {
    for (name, kept) in [
        ("orient-6.heic", "IMG_0006.HEIC"),
        ("plain.avif", "pic.avif"),
    ] {
        let dir = tempdir().unwrap();
        let photo = copy_in(dir.path(), name, kept);
        seal_photo(dir.path(), &photo, &["--keep-original"]).assert_code(0, name);
        let out = open_photo(dir.path());
        assert_eq!(
            fs::read(out.join(kept)).unwrap(),
            fs::read(fixture(name)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn keep_original_refuses_an_oversized_heic() {
    let dir = tempdir().unwrap();
    let photo = dir.path().join("bomb.heic");
    fs::write(&photo, declaring("orient-1.heic", 60_000, 60_000)).unwrap();
    seal_photo(dir.path(), &photo, &["--keep-original"])
        .assert_code(2, "keep-original bomb")
        .assert_stderr_contains("bomb.heic is too large", "keep-original bomb")
        .assert_stderr_contains("60000x60000", "keep-original bomb");
}

#[cfg(not(feature = "heif"))]
#[test]
fn without_the_feature_heif_photos_are_refused_clearly() {
    for (name, kind) in [
        ("orient-1.heic", "HEIC"),
        ("plain.avif", "AVIF"),
        ("10bit.heic", "HEIC"),
    ] {
        let dir = tempdir().unwrap();
        // The content decides, not the extension.
        let photo = copy_in(dir.path(), name, "IMG_0001.JPG");
        let r = seal_photo(dir.path(), &photo, &[]);
        r.assert_code(2, name).assert_stderr_contains(
            &format!(
                "IMG_0001.JPG is a {kind} photo, and this build of sxf has no HEIF support; \
                 build one with the heif feature"
            ),
            name,
        );
        r.assert_stderr_contains("cargo install --path . --features heif", name);
        assert_not_created(&dir.path().join("photo.sxf"));
    }
}

#[cfg(feature = "heif")]
mod decoding {
    use super::*;
    use std::time::{Duration, Instant};

    const RED: [u8; 3] = [220, 30, 30];
    const GREEN: [u8; 3] = [30, 200, 30];
    const BLUE: [u8; 3] = [30, 30, 220];
    const YELLOW: [u8; 3] = [230, 230, 40];

    /// Seal, open, and decode the JPEG that came out.
    fn round_trip(name: &str, extra: &[&str]) -> image::RgbImage {
        let dir = tempdir().unwrap();
        let photo = copy_in(dir.path(), name, name);
        seal_photo(dir.path(), &photo, extra).assert_code(0, name);
        let out = open_photo(dir.path());
        let stem = name.rsplit_once('.').unwrap().0;
        let jpeg = fs::read(out.join(format!("{stem}.jpg"))).unwrap();
        assert_eq!(&jpeg[..3], &[0xFF, 0xD8, 0xFF], "{name}: a JPEG");
        image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
            .unwrap()
            .to_rgb8()
    }

    /// The four quadrants of the fixtures' picture, checked at their centres.
    fn assert_upright(name: &str, img: &image::RgbImage) {
        assert_eq!(img.dimensions(), (64, 48), "{name}");
        for ((x, y), want, what) in [
            ((16, 12), RED, "top-left red"),
            ((48, 12), GREEN, "top-right green"),
            ((16, 36), BLUE, "bottom-left blue"),
            ((48, 36), YELLOW, "bottom-right yellow"),
        ] {
            let got = img.get_pixel(x, y).0;
            assert!(
                got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) <= 40),
                "{name}: expected {what} {want:?} at ({x}, {y}), got {got:?}"
            );
        }
    }

    #[test]
    fn every_heif_orientation_comes_out_right_side_up() {
        for n in 1..=8 {
            let name = format!("orient-{n}.heic");
            assert_upright(&name, &round_trip(&name, &[]));
        }
    }

    #[test]
    fn avif_and_10_bit_heic_decode() {
        assert_upright("plain.avif", &round_trip("plain.avif", &[]));
        assert_upright("10bit.heic", &round_trip("10bit.heic", &[]));
        // Tagged files decode too (their colours are the colour conversion's job).
        assert_upright("p3-nclx.heic", &round_trip("p3-nclx.heic", &[]));
        assert_upright("adobe-icc.heic", &round_trip("adobe-icc.heic", &[]));
    }

    #[test]
    fn heif_alpha_is_flattened_onto_white() {
        let img = round_trip("alpha.avif", &[]);
        assert_eq!(img.dimensions(), (64, 48));
        for ((x, y), want) in [
            ((16, 12), RED),
            ((48, 12), [255, 255, 255]),
            ((16, 36), BLUE),
            ((48, 36), [255, 255, 255]),
        ] {
            let got = img.get_pixel(x, y).0;
            assert!(
                got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) <= 40),
                "expected {want:?} at ({x}, {y}), got {got:?}"
            );
        }
    }

    #[test]
    fn max_dim_applies_to_heif_after_its_rotation() {
        let img = round_trip("orient-6.heic", &["--max-dim", "32"]);
        assert_eq!(img.dimensions(), (32, 24));
        let got = img.get_pixel(8, 6).0;
        assert!(got[0] > 150 && got[1] < 90, "top-left still red: {got:?}");
    }

    #[test]
    fn oversized_declared_dimensions_are_refused_before_decoding() {
        for (w, h) in [(60_000, 60_000), (16_000, 16_000)] {
            let dir = tempdir().unwrap();
            let photo = dir.path().join("bomb.heic");
            fs::write(&photo, declaring("orient-1.heic", w, h)).unwrap();
            let start = Instant::now();
            let r = seal_photo(dir.path(), &photo, &[]);
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "took {:?}",
                start.elapsed()
            );
            r.assert_code(2, "bomb")
                .assert_stderr_contains("bomb.heic is too large to decode safely", "bomb")
                .assert_stderr_contains(&format!("{w}x{h}"), "bomb");
            assert_not_created(&dir.path().join("photo.sxf"));
        }
    }

    #[test]
    fn oversized_grid_is_refused_by_libheifs_limits() {
        // The ispe properties stay small; the grid's own description (in idat:
        // version, flags, rows-1, columns-1, 16-bit output width and height) says
        // 60000x60000. libheif's limits, set to ours, refuse it.
        let mut data = fs::read(fixture("orient-1.heic")).unwrap();
        let idat = data.windows(4).position(|w| w == b"idat").unwrap() + 4;
        assert_eq!(&data[idat..idat + 8], &[0, 0, 0, 0, 0, 64, 0, 48]);
        data[idat + 4..idat + 8].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
        let dir = tempdir().unwrap();
        let photo = dir.path().join("grid.heic");
        fs::write(&photo, &data).unwrap();
        let start = Instant::now();
        let r = seal_photo(dir.path(), &photo, &[]);
        assert!(start.elapsed() < Duration::from_secs(5));
        r.assert_code(2, "grid bomb")
            .assert_stderr_contains("grid.heic is too large to decode safely", "grid bomb")
            .assert_stderr_contains("60000x60000", "grid bomb");
        assert!(!r.stderr.contains("\\n"), "{}", r.stderr);
    }

    #[test]
    fn truncated_or_garbled_heif_fails_cleanly_naming_the_file() {
        let data = fs::read(fixture("orient-5.heic")).unwrap();
        let mut cases: Vec<(String, Vec<u8>)> = [40, 200, data.len() / 2, data.len() - 20]
            .into_iter()
            .map(|cut| (format!("cut at {cut}"), data[..cut].to_vec()))
            .collect();
        // The coded picture overwritten with noise.
        let mut noisy = data.clone();
        let n = noisy.len();
        for (i, b) in noisy[n - 200..].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(151).wrapping_add(7);
        }
        cases.push(("noise".into(), noisy));
        for (what, bytes) in cases {
            let dir = tempdir().unwrap();
            let photo = dir.path().join("broken.heic");
            fs::write(&photo, &bytes).unwrap();
            let r = seal_photo(dir.path(), &photo, &[]);
            // 2, not a panic's 101 or a signal.
            r.assert_code(2, &what)
                .assert_stderr_contains("broken.heic", &what);
            assert!(!r.stderr.contains("panicked"), "{what}: {}", r.stderr);
            assert_not_created(&dir.path().join("photo.sxf"));
        }
    }
}
