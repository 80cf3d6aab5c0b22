//! Which JPEG encoder, and which default quality, should `sxf seal` use?
//!
//! ```text
//! cargo run --release --example jpeg_bench -- [PATH] [--runs N]
//! ```
//!
//! Decodes PATH once (default: examples/sample.jpg). If it has fewer than 8
//! megapixels, a 4000x3000 (12 MP) benchmark input is built from it at run time:
//! upscaled 2x with Lanczos3 (so per-pixel detail is closer to a phone photo than
//! the small source's), then mirror-tiled. The program says so in its output.
//!
//! Then, for each quality, each encoder encodes the image N times (default 5 for
//! big inputs, 15 for small ones) and the table reports the median time, the output
//! size, bits per pixel and the PSNR over R, G and B against the decoded source.
//! Encoders:
//! - `sxf::images::encode_jpeg`: jpeg-encoder with box-averaged chroma (what sxf uses),
//! - jpeg-encoder with its defaults (top-left-pixel chroma subsampling),
//! - `image`'s own `JpegEncoder`,
//! - libjpeg-turbo's `cjpeg` as a reference, when it is installed (Debian package
//!   libjpeg-turbo-progs). It is fed a PPM file and timed as a whole process (start,
//!   PPM parse, encode, write), so its times include that overhead. Its defaults
//!   (4:2:0, standard Huffman tables) match Pillow's, so cjpeg at quality 50 stands
//!   in for the old prototype's Pillow quality 50.
//!
//! Finally it times the whole `sxf::images::process_image` pipeline on the big input
//! stored as a JPEG, with default options and with `max_dim` 2048.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ExtendedColorType, ImageFormat, RgbImage};
use sxf::images::{DEFAULT_QUALITY, ImageOptions, encode_jpeg, process_image};

const QUALITIES: [u8; 7] = [50, 60, 70, 75, 80, 85, 90];
const BIG_W: u32 = 4000;
const BIG_H: u32 = 3000;

type Encode = fn(&DynamicImage, u8) -> Vec<u8>;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut path: Option<PathBuf> = None;
    let mut runs: Option<usize> = None;
    while let Some(arg) = args.next() {
        if arg == "--runs" {
            let n = args.next().and_then(|s| s.parse().ok());
            runs = Some(
                n.filter(|&n| n > 0)
                    .expect("--runs needs a positive number"),
            );
        } else {
            path = Some(PathBuf::from(arg));
        }
    }
    let path =
        path.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample.jpg"));

    let file_len = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .len();
    let t = Instant::now();
    let source = image::open(&path)
        .unwrap_or_else(|e| panic!("cannot decode {}: {e}", path.display()))
        .to_rgb8();
    let decode_time = t.elapsed();
    println!("# JPEG encoder benchmark\n");
    println!(
        "Source: {} ({}x{}, {} bytes, decoded in {:.1} ms).",
        path.display(),
        source.width(),
        source.height(),
        file_len,
        ms(decode_time)
    );
    println!(
        "Machine: {} logical CPU(s); jpeg-encoder AVX2 path: {}.",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if is_avx2() { "yes" } else { "no" }
    );

    let big = if u64::from(source.width()) * u64::from(source.height()) >= 8_000_000 {
        println!("Headline input: the source itself (at least 8 MP).\n");
        source.clone()
    } else {
        let t = Instant::now();
        let up = image::imageops::resize(
            &source,
            source.width() * 2,
            source.height() * 2,
            FilterType::Lanczos3,
        );
        let big = mirror_tile(&up, BIG_W, BIG_H);
        println!(
            "Headline input: SYNTHETIC {BIG_W}x{BIG_H} (12 MP) image made from the source: \
             upscaled 2x with Lanczos3 to {}x{}, then mirror-tiled ({:.0} ms to build). \
             Real 12 MP photos are not available offline; treat absolute sizes as indicative.\n",
            up.width(),
            up.height(),
            ms(t.elapsed())
        );
        big
    };

    let cjpeg = find_cjpeg();
    match &cjpeg {
        Some(version) => println!("Reference: cjpeg found ({version})."),
        None => println!(
            "Reference: cjpeg not found, libjpeg-turbo reference SKIPPED \
             (apt-get install -y libjpeg-turbo-progs)."
        ),
    }
    println!("Current sxf DEFAULT_QUALITY = {DEFAULT_QUALITY}.\n");

    let big_runs = runs.unwrap_or(5);
    bench_table(
        &format!("{}x{} headline input", big.width(), big.height()),
        &big,
        big_runs,
        cjpeg.is_some(),
    );
    if big.dimensions() != source.dimensions() {
        bench_table(
            &format!("{}x{} source as is", source.width(), source.height()),
            &source,
            runs.unwrap_or(15),
            cjpeg.is_some(),
        );
    }
    pipeline_timing(&big, big_runs.min(3));
}

fn bench_table(title: &str, img: &RgbImage, runs: usize, with_cjpeg: bool) {
    let pixels = f64::from(img.width()) * f64::from(img.height());
    println!("## {title}: median of {runs} runs\n");
    println!("| encoder | quality | median ms | bytes | bits/pixel | PSNR dB |");
    println!("|---|---:|---:|---:|---:|---:|");
    let encoders: [(&str, Encode); 3] = [
        ("sxf (jpeg-encoder, avg chroma)", enc_sxf),
        ("jpeg-encoder defaults", enc_jpeg_encoder_default),
        ("image JpegEncoder (4:4:4)", enc_image),
    ];
    let ppm = with_cjpeg.then(|| write_ppm(img));
    let dynamic = DynamicImage::ImageRgb8(img.clone());
    for q in QUALITIES {
        for (name, encode) in encoders {
            let (time, out) = median_time(runs, || encode(&dynamic, q));
            row(name, q, time, &out, pixels, img);
        }
        if let Some(ppm) = &ppm {
            let out_path = ppm.path().with_extension("out.jpg");
            let (time, out) = median_time(runs, || run_cjpeg(ppm.path(), &out_path, q));
            row("cjpeg (libjpeg-turbo)", q, time, &out, pixels, img);
            let _ = std::fs::remove_file(&out_path);
        }
    }
    println!();
}

fn row(name: &str, q: u8, time: Duration, out: &[u8], pixels: f64, img: &RgbImage) {
    let decoded = image::load_from_memory_with_format(out, ImageFormat::Jpeg)
        .expect("encoder output decodes")
        .to_rgb8();
    println!(
        "| {name} | {q} | {:.1} | {} | {:.3} | {:.2} |",
        ms(time),
        out.len(),
        out.len() as f64 * 8.0 / pixels,
        psnr(img, &decoded)
    );
}

fn pipeline_timing(big: &RgbImage, runs: usize) {
    println!("## Whole pipeline: sxf::images::process_image on the headline input\n");
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("big.jpg");
    let big = DynamicImage::ImageRgb8(big.clone());
    std::fs::write(&input, enc_sxf(&big, 92)).expect("write temp JPEG");
    let input_len = std::fs::metadata(&input).map_or(0, |m| m.len());
    println!(
        "Input: the headline image stored as a quality-92 JPEG ({input_len} bytes). \
         Median of {runs} runs (read + decode + convert + encode).\n"
    );
    println!("| options | median ms | output bytes | output size |");
    println!("|---|---:|---:|---|");
    for (label, max_dim) in [("defaults", None), ("max_dim 2048", Some(2048))] {
        let opts = ImageOptions {
            max_dim,
            ..ImageOptions::default()
        };
        let (time, out) = median_time(runs, || process_image(&input, &opts).expect("pipeline"));
        println!(
            "| quality {}, {label} | {:.1} | {} | {}x{} |",
            opts.quality,
            ms(time),
            out.bytes.len(),
            out.width,
            out.height
        );
    }
    println!();
}

// ---------- encoders ----------

fn enc_sxf(img: &DynamicImage, q: u8) -> Vec<u8> {
    encode_jpeg(img, q).expect("sxf encode")
}

fn enc_jpeg_encoder_default(img: &DynamicImage, q: u8) -> Vec<u8> {
    let img = img.as_rgb8().expect("RGB input");
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, q)
        .encode(
            img.as_raw(),
            img.width() as u16,
            img.height() as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .expect("jpeg-encoder");
    out
}

fn enc_image(img: &DynamicImage, q: u8) -> Vec<u8> {
    let img = img.as_rgb8().expect("RGB input");
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, q)
        .encode(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        )
        .expect("image JpegEncoder");
    out
}

fn find_cjpeg() -> Option<String> {
    let out = Command::new("cjpeg").arg("-version").output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .next()
            .unwrap_or("version unknown")
            .trim()
            .to_string(),
    )
}

fn write_ppm(img: &RgbImage) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".ppm")
        .tempfile()
        .expect("temp file");
    let mut data = format!("P6\n{} {}\n255\n", img.width(), img.height()).into_bytes();
    data.extend_from_slice(img.as_raw());
    std::io::Write::write_all(&mut file, &data).expect("write PPM");
    file
}

fn run_cjpeg(ppm: &Path, out: &Path, q: u8) -> Vec<u8> {
    let status = Command::new("cjpeg")
        .arg("-quality")
        .arg(q.to_string())
        .arg("-outfile")
        .arg(out)
        .arg(ppm)
        .status()
        .expect("run cjpeg");
    assert!(status.success(), "cjpeg failed");
    std::fs::read(out).expect("read cjpeg output")
}

// ---------- helpers ----------

/// Run `f` `runs` times; return the median duration and the last result.
fn median_time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let out = f();
        times.push(t.elapsed());
        last = Some(std::hint::black_box(out));
    }
    times.sort();
    (times[times.len() / 2], last.expect("at least one run"))
}

fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| {
            let d = u64::from(x.abs_diff(y));
            d * d
        })
        .sum();
    let mse = sum as f64 / a.as_raw().len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// Fill `w` x `h` by repeating `src`, mirrored on every other tile so that tile
/// edges are seamless (no artificial hard edges for the encoder).
fn mirror_tile(src: &RgbImage, w: u32, h: u32) -> RgbImage {
    let mirror = |v: u32, n: u32| {
        let m = v % (2 * n);
        if m < n { m } else { 2 * n - 1 - m }
    };
    RgbImage::from_fn(w, h, |x, y| {
        *src.get_pixel(mirror(x, src.width()), mirror(y, src.height()))
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn is_avx2() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    {
        false
    }
}
