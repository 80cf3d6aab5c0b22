//! Which JPEG encoder, default quality and downscaler should `sxf seal` use?
//!
//! ```text
//! cargo run --release --example photo_bench -- DIR [--runs N] [--limit N]
//! ```
//!
//! DIR holds the corpus: photographs as JPEG or PNG files (the README says how to
//! install the one the published figures come from). Needs libjpeg-turbo's `cjpeg`
//! and `djpeg` (Debian package libjpeg-turbo-progs): `cjpeg -optimize` is the
//! reference, `cjpeg` with its defaults at quality 50 stands in for the old
//! prototype (Pillow quality 50 writes the same file), and `djpeg` is the reference
//! decoder for every candidate's output. jpegli is measured when Python's `pyjpegli`
//! module imports; it is skipped otherwise.
//!
//! Part 1, compression. With `--max-side PX`, each corpus image is first
//! downscaled (Lanczos3) to fit PX, to bound the run time. For each corpus image, each candidate encodes it at a sweep
//! of qualities; each output is decoded by `djpeg` and scored with SSIMULACRA2
//! against the decoded source. For the reference at qualities 75, 80 and 85, the
//! candidate's bytes at the same score are interpolated (log bytes, linear in score,
//! between the two sweep points around it); the table gives the geometric mean over
//! the images of candidate bytes / reference bytes at equal score. It also checks
//! that the `image` crate decodes each candidate's output like `djpeg` does.
//!
//! Part 2, time, on a 12 MP input: the largest corpus image resized to 4000x3000
//! with Lanczos3 (the program says which). Medians of N runs (default 5), with the
//! reference timed in the same run: each encoder alone (cjpeg as a process fed a
//! PPM through a pipe), the whole pipeline (decode a 12 MP JPEG, encode: `djpeg |
//! cjpeg -optimize` against the `image` crate's decoder plus the candidate, and
//! sxf's own `process_image`), then each stage of sxf's pipeline: decode, colour
//! (a Display P3 to sRGB transform with moxcms), resize to 2048 px (the `image`
//! crate against `fast_image_resize`, with PSNR and SSIMULACRA2 against a
//! floating-point Lanczos3 reference downscale), orientation (rotate90), encode.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fast_image_resize as fir;
use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};
use moxcms::{ColorProfile, Layout, TransformOptions};
use sxf::images::{DEFAULT_QUALITY, ImageOptions, encode_jpeg, process_image};

/// Qualities every candidate is swept over.
const SWEEP: [u8; 6] = [60, 70, 75, 80, 85, 90];
/// Reference (cjpeg -optimize) qualities at which the candidates are compared.
const TARGETS: [u8; 3] = [75, 80, 85];
const BIG_W: u32 = 4000;
const BIG_H: u32 = 3000;
const RESIZE_TO: u32 = 2048;

#[derive(Clone, Copy, PartialEq)]
enum Enc {
    /// sxf's `encode_jpeg`, whatever it is at the time of the run.
    Sxf,
    /// jpeg-encoder 0.7, baseline, standard Huffman tables, averaged chroma.
    JeBaseline,
    /// jpeg-encoder 0.7, progressive, optimised Huffman tables, averaged chroma.
    JeProgressive,
    /// mozjpeg with its defaults (trellis quantisation, progressive, scan optimisation).
    MozDefault,
    /// mozjpeg reset to libjpeg defaults, then progressive and optimised Huffman tables.
    MozFast,
    /// Google's jpegli through Python's pyjpegli, with its defaults.
    Jpegli,
    /// libjpeg-turbo `cjpeg -optimize` (the reference).
    CjpegOptimize,
    /// libjpeg-turbo `cjpeg` with its defaults (Pillow's settings).
    Cjpeg,
}

impl Enc {
    fn name(self) -> &'static str {
        match self {
            Enc::Sxf => "sxf encode_jpeg (this build)",
            Enc::JeBaseline => "jpeg-encoder baseline (sxf until now)",
            Enc::JeProgressive => "jpeg-encoder progressive + optimised Huffman",
            Enc::MozDefault => "mozjpeg default (trellis, progressive)",
            Enc::MozFast => "mozjpeg fast (no trellis; progressive + optimised Huffman)",
            Enc::Jpegli => "jpegli (pyjpegli defaults)",
            Enc::CjpegOptimize => "cjpeg -optimize (reference)",
            Enc::Cjpeg => "cjpeg (defaults)",
        }
    }

    fn encode(self, img: &RgbImage, q: u8) -> Vec<u8> {
        match self {
            Enc::Sxf => encode_jpeg(&DynamicImage::ImageRgb8(img.clone()), q).expect("sxf encode"),
            Enc::JeBaseline => jpeg_encoder_encode(img, q, false),
            Enc::JeProgressive => jpeg_encoder_encode(img, q, true),
            Enc::MozDefault | Enc::MozFast => mozjpeg_encode(img, q, self),
            Enc::Jpegli => jpegli_encode(img, q, 1).0,
            Enc::CjpegOptimize => cjpeg(img, q, true),
            Enc::Cjpeg => cjpeg(img, q, false),
        }
    }
}

fn jpeg_encoder_encode(img: &RgbImage, q: u8, progressive: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, q);
    enc.set_chroma_subsampling_method(jpeg_encoder::ChromaSubsamplingMethod::Average);
    if progressive {
        enc.set_progressive(true);
        enc.set_optimized_huffman_tables(true);
    }
    let (w, h) = (img.width() as u16, img.height() as u16);
    enc.encode(img.as_raw(), w, h, jpeg_encoder::ColorType::Rgb)
        .expect("jpeg-encoder");
    out
}

fn mozjpeg_encode(img: &RgbImage, q: u8, which: Enc) -> Vec<u8> {
    let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
    if which == Enc::MozFast {
        c.set_fastest_defaults();
    }
    c.set_size(img.width() as usize, img.height() as usize);
    c.set_quality(f32::from(q));
    if which == Enc::MozFast {
        c.set_progressive_mode();
        c.set_optimize_coding(true);
    }
    let mut started = c.start_compress(Vec::new()).expect("mozjpeg start");
    started
        .write_scanlines(img.as_raw())
        .expect("mozjpeg write");
    started.finish().expect("mozjpeg finish")
}

fn ppm(img: &RgbImage) -> Vec<u8> {
    let mut data = format!("P6\n{} {}\n255\n", img.width(), img.height()).into_bytes();
    data.extend_from_slice(img.as_raw());
    data
}

/// Run `cmd` with `input` on stdin, return its stdout.
fn pipe(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let out = std::thread::scope(|s| {
        let feeder = s.spawn(move || {
            let _ = stdin.write_all(input);
        });
        let out = child.wait_with_output().expect("wait");
        feeder.join().expect("feeder");
        out
    });
    assert!(out.status.success(), "{cmd:?} failed");
    out.stdout
}

fn cjpeg(img: &RgbImage, q: u8, optimize: bool) -> Vec<u8> {
    let mut cmd = Command::new("cjpeg");
    cmd.args(["-quality", &q.to_string()]);
    if optimize {
        cmd.arg("-optimize");
    }
    pipe(&mut cmd, &ppm(img))
}

const JPEGLI_PY: &str = "import sys,time,pyjpegli\n\
w,h,q,n=map(int,sys.argv[1:5]);d=sys.stdin.buffer.read();ts=[]\n\
for _ in range(n):\n t=time.perf_counter();o=pyjpegli.encode(d,w,h,q);ts.append(time.perf_counter()-t)\n\
ts.sort();sys.stderr.write(str(ts[len(ts)//2]));sys.stdout.buffer.write(o)\n";

/// jpegli's output and its median in-process encode time over `runs` runs.
fn jpegli_encode(img: &RgbImage, q: u8, runs: usize) -> (Vec<u8>, Duration) {
    let out = Command::new("python3")
        .args(["-c", JPEGLI_PY])
        .args([img.width(), img.height(), u32::from(q), runs as u32].map(|v| v.to_string()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            let mut stdin = child.stdin.take().expect("stdin");
            let raw = img.as_raw().clone();
            let feeder = std::thread::spawn(move || {
                let _ = stdin.write_all(&raw);
            });
            let out = child.wait_with_output();
            feeder.join().expect("feeder");
            out
        })
        .expect("python3");
    let secs: f64 = String::from_utf8_lossy(&out.stderr)
        .trim()
        .parse()
        .expect("pyjpegli time");
    (out.stdout, Duration::from_secs_f64(secs))
}

fn jpegli_available() -> bool {
    Command::new("python3")
        .args(["-c", "import pyjpegli"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Decode with libjpeg-turbo's djpeg (the reference decoder).
fn djpeg(jpeg: &[u8]) -> RgbImage {
    let out = pipe(Command::new("djpeg").arg("-ppm"), jpeg);
    // P6\n<w> <h>\n255\n<data>: split off four whitespace-separated fields.
    let mut fields = Vec::new();
    let mut pos = 0;
    while fields.len() < 4 {
        while out[pos].is_ascii_whitespace() {
            pos += 1;
        }
        let start = pos;
        while !out[pos].is_ascii_whitespace() {
            pos += 1;
        }
        fields.push(String::from_utf8_lossy(&out[start..pos]).into_owned());
    }
    assert_eq!(fields[0], "P6", "djpeg wrote grey or other output");
    let (w, h) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    RgbImage::from_raw(w, h, out[pos + 1..].to_vec()).expect("PPM size")
}

fn to_ssim(img: &RgbImage) -> ssimulacra2::Rgb {
    let data = img
        .pixels()
        .map(|p| p.0.map(|v| f32::from(v) / 255.0))
        .collect();
    ssimulacra2::Rgb::new(
        data,
        img.width() as usize,
        img.height() as usize,
        ssimulacra2::TransferCharacteristic::SRGB,
        ssimulacra2::ColorPrimaries::BT709,
    )
    .expect("ssimulacra2 input")
}

fn score(source: &ssimulacra2::Rgb, decoded: &RgbImage) -> f64 {
    ssimulacra2::compute_frame_ssimulacra2(source.clone(), to_ssim(decoded)).expect("ssimulacra2")
}

fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    let se: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    let mse = se / a.as_raw().len() as f64;
    10.0 * (255.0 * 255.0 / mse).log10()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Bytes at `target` score, interpolating log(bytes) linearly in score between the
/// two sweep points around it; None when the sweep does not reach it.
fn bytes_at(points: &[(f64, usize)], target: f64) -> Option<f64> {
    let mut pts = points.to_vec();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    pts.windows(2).find_map(|w| {
        let ((s0, b0), (s1, b1)) = (w[0], w[1]);
        (s0 <= target && target <= s1 && s1 > s0).then(|| {
            let t = (target - s0) / (s1 - s0);
            ((b0 as f64).ln() * (1.0 - t) + (b1 as f64).ln() * t).exp()
        })
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut dir: Option<PathBuf> = None;
    let mut runs = 5;
    let mut limit = usize::MAX;
    let mut max_side = u32::MAX;
    while let Some(arg) = args.next() {
        let mut num = || {
            args.next()
                .and_then(|s| s.parse().ok())
                .filter(|&n| n > 0)
                .expect("a positive number")
        };
        match arg.as_str() {
            "--runs" => runs = num(),
            "--limit" => limit = num(),
            "--max-side" => max_side = num() as u32,
            _ => dir = Some(PathBuf::from(arg)),
        }
    }
    let dir = dir.expect("usage: photo_bench DIR [--runs N] [--limit N] [--max-side PX]");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    files.truncate(limit);
    assert!(
        !files.is_empty(),
        "no JPEG or PNG files in {}",
        dir.display()
    );

    let mut candidates = vec![
        Enc::JeBaseline,
        Enc::JeProgressive,
        Enc::MozDefault,
        Enc::MozFast,
    ];
    let jpegli = jpegli_available();
    if jpegli {
        candidates.push(Enc::Jpegli);
    }
    println!("# Photo benchmark\n");
    println!(
        "Corpus: {} ({} images). {} logical CPU(s). jpegli: {}.\n",
        dir.display(),
        files.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if jpegli {
            "pyjpegli"
        } else {
            "not measured (python3 -c 'import pyjpegli' fails)"
        }
    );

    // ---- Part 1: bytes at equal SSIMULACRA2 ----
    // ratios[c][t]: per-image log ratios; per_q[c][q]: (sum bytes, sum score, n)
    let mut log_ratios = vec![vec![Vec::new(); TARGETS.len()]; candidates.len()];
    let mut at_q = vec![vec![(0usize, 0.0f64); SWEEP.len()]; candidates.len()];
    let mut ref_at = vec![(0usize, 0.0f64); TARGETS.len()];
    let mut proto = (0usize, 0.0f64);
    let mut image_crate_diff = vec![0u8; candidates.len()];
    let mut largest: Option<RgbImage> = None;
    for path in &files {
        let source = image::open(path)
            .unwrap_or_else(|e| panic!("cannot decode {}: {e}", path.display()))
            .to_rgb8();
        // The 12 MP timing input is made from the full-size image.
        if largest
            .as_ref()
            .is_none_or(|l| l.width() * l.height() < source.width() * source.height())
        {
            largest = Some(source.clone());
        }
        let source = match sxf::images::downscaled_size(source.width(), source.height(), max_side) {
            Some((w, h)) => DynamicImage::ImageRgb8(source)
                .resize_exact(w, h, FilterType::Lanczos3)
                .to_rgb8(),
            None => source,
        };
        let src = to_ssim(&source);
        let measure = |enc: Enc, q: u8| {
            let jpeg = enc.encode(&source, q);
            let decoded = djpeg(&jpeg);
            (jpeg, decoded)
        };
        let refs: Vec<(f64, usize)> = TARGETS
            .iter()
            .map(|&q| {
                let (jpeg, dec) = measure(Enc::CjpegOptimize, q);
                (score(&src, &dec), jpeg.len())
            })
            .collect();
        for (i, r) in refs.iter().enumerate() {
            ref_at[i].0 += r.1;
            ref_at[i].1 += r.0;
        }
        let (pj, pd) = measure(Enc::Cjpeg, 50);
        proto.0 += pj.len();
        proto.1 += score(&src, &pd);
        let mut line = format!(
            "{}: {}x{}, cjpeg -optimize q80 {} B, SSIMULACRA2 {:.1}",
            path.file_name().unwrap().to_string_lossy(),
            source.width(),
            source.height(),
            refs[1].1,
            refs[1].0
        );
        for (ci, &enc) in candidates.iter().enumerate() {
            let mut points = Vec::new();
            for (qi, &q) in SWEEP.iter().enumerate() {
                let (jpeg, dec) = measure(enc, q);
                let s = score(&src, &dec);
                points.push((s, jpeg.len()));
                at_q[ci][qi].0 += jpeg.len();
                at_q[ci][qi].1 += s;
                if q == 80 {
                    // Does the image crate (zune-jpeg) decode this output like djpeg?
                    let ours = image::load_from_memory(&jpeg)
                        .expect("image decode")
                        .to_rgb8();
                    let diff = ours
                        .as_raw()
                        .iter()
                        .zip(dec.as_raw())
                        .map(|(&a, &b)| a.abs_diff(b))
                        .max()
                        .unwrap_or(0);
                    image_crate_diff[ci] = image_crate_diff[ci].max(diff);
                }
            }
            for (ti, r) in refs.iter().enumerate() {
                match bytes_at(&points, r.0) {
                    Some(b) => log_ratios[ci][ti].push((b / r.1 as f64).ln()),
                    None => line.push_str(&format!("; {} misses q{}", enc.name(), TARGETS[ti])),
                }
            }
        }
        println!("{line}");
    }
    let n = files.len() as f64;
    println!(
        "\n## Bytes at equal SSIMULACRA2, against cjpeg -optimize\n\n\
         Geometric mean over the images of (candidate bytes / cjpeg -optimize bytes) at the\n\
         SSIMULACRA2 score cjpeg -optimize reaches at quality 75, 80, 85; outputs decoded\n\
         by djpeg. Last column: largest difference between the `image` crate's decode and\n\
         djpeg's, any pixel and channel, at quality 80.\n"
    );
    println!("| candidate | q75 | q80 | q85 | all | image vs djpeg |");
    println!("|---|---|---|---|---|---|");
    for (ci, enc) in candidates.iter().enumerate() {
        let mut cells = Vec::new();
        let mut all = Vec::new();
        for lr in &log_ratios[ci] {
            all.extend_from_slice(lr);
            cells.push(gm_cell(lr, files.len()));
        }
        println!(
            "| {} | {} | {} |",
            enc.name(),
            cells.join(" | "),
            format_args!(
                "{} | {}",
                gm_cell(&all, files.len() * TARGETS.len()),
                image_crate_diff[ci]
            )
        );
    }
    println!("\n## Mean bytes and SSIMULACRA2 per quality setting\n");
    println!("| encoder | quality | mean bytes | mean SSIMULACRA2 |");
    println!("|---|---|---|---|");
    for (i, q) in TARGETS.iter().enumerate() {
        println!(
            "| {} | {q} | {:.0} | {:.2} |",
            Enc::CjpegOptimize.name(),
            ref_at[i].0 as f64 / n,
            ref_at[i].1 / n
        );
    }
    println!(
        "| cjpeg q50 (the old prototype, Pillow q50) | 50 | {:.0} | {:.2} |",
        proto.0 as f64 / n,
        proto.1 / n
    );
    for (ci, enc) in candidates.iter().enumerate() {
        for (qi, q) in SWEEP.iter().enumerate() {
            println!(
                "| {} | {q} | {:.0} | {:.2} |",
                enc.name(),
                at_q[ci][qi].0 as f64 / n,
                at_q[ci][qi].1 / n
            );
        }
    }

    // ---- Part 2: time on a 12 MP input ----
    let largest = largest.expect("one image");
    println!(
        "\n## Time, 12 MP ({BIG_W}x{BIG_H}: the largest corpus image, {}x{}, resized with Lanczos3), median of {runs} runs\n",
        largest.width(),
        largest.height()
    );
    let big = DynamicImage::ImageRgb8(largest)
        .resize_exact(BIG_W, BIG_H, FilterType::Lanczos3)
        .to_rgb8();
    drop(files);
    let q = 80;
    let ref_time = time(runs, || cjpeg(&big, q, true));
    println!("| encoder at quality {q} | ms | x cjpeg -optimize | bytes |");
    println!("|---|---|---|---|");
    for &enc in [Enc::CjpegOptimize, Enc::Cjpeg, Enc::Sxf]
        .iter()
        .chain(&candidates)
    {
        let (t, bytes) = if enc == Enc::Jpegli {
            let (out, t) = jpegli_encode(&big, q, runs);
            (t, out.len())
        } else if enc == Enc::CjpegOptimize {
            (ref_time, enc.encode(&big, q).len())
        } else {
            (
                time(runs, || enc.encode(&big, q)),
                enc.encode(&big, q).len(),
            )
        };
        println!(
            "| {} | {:.0} | {:.2} | {} |",
            enc.name(),
            ms(t),
            t.as_secs_f64() / ref_time.as_secs_f64(),
            bytes
        );
    }
    println!(
        "\n(cjpeg is timed as a process reading a PPM from a pipe; jpegli in-process in Python.)"
    );

    // Whole pipeline: 12 MP JPEG file in, JPEG out.
    let tmp = tempfile::tempdir().expect("tempdir");
    let camera = tmp.path().join("camera.jpg");
    std::fs::write(&camera, cjpeg(&big, 92, false)).expect("write");
    let pipeline_ref = time(runs, || {
        let mut djpeg = Command::new("djpeg")
            .arg(&camera)
            .stdout(Stdio::piped())
            .spawn()
            .expect("djpeg");
        let out = Command::new("cjpeg")
            .args(["-optimize", "-quality", &q.to_string()])
            .stdin(djpeg.stdout.take().expect("pipe"))
            .output()
            .expect("cjpeg");
        djpeg.wait().expect("djpeg");
        out.stdout.len()
    });
    println!(
        "\n## Whole pipeline: 12 MP JPEG file (cjpeg q92) to JPEG at quality {q}, median of {runs} runs\n"
    );
    println!("| pipeline | ms | x reference |");
    println!("|---|---|---|");
    println!(
        "| djpeg \\| cjpeg -optimize (reference) | {:.0} | 1.00 |",
        ms(pipeline_ref)
    );
    for &enc in std::iter::once(&Enc::Sxf).chain(&candidates) {
        if enc == Enc::Jpegli {
            continue;
        }
        let t = time(runs, || {
            let bytes = std::fs::read(&camera).expect("read");
            let img = image::load_from_memory(&bytes).expect("decode").to_rgb8();
            enc.encode(&img, q)
        });
        println!(
            "| image decode + {} | {:.0} | {:.2} |",
            enc.name(),
            ms(t),
            t.as_secs_f64() / pipeline_ref.as_secs_f64()
        );
    }
    let opts = ImageOptions::default();
    let t = time(runs, || {
        process_image(&camera, &opts).expect("process_image")
    });
    println!(
        "| sxf process_image, defaults (quality {DEFAULT_QUALITY}) | {:.0} | {:.2} |",
        ms(t),
        t.as_secs_f64() / pipeline_ref.as_secs_f64()
    );
    let opts = ImageOptions {
        max_dim: Some(RESIZE_TO),
        ..ImageOptions::default()
    };
    let t = time(runs, || {
        process_image(&camera, &opts).expect("process_image")
    });
    println!(
        "| sxf process_image, --max-dim {RESIZE_TO} | {:.0} | {:.2} |",
        ms(t),
        t.as_secs_f64() / pipeline_ref.as_secs_f64()
    );

    stages(&camera, &big, runs);
}

fn gm_cell(log_ratios: &[f64], expected: usize) -> String {
    if log_ratios.is_empty() {
        return "n/a".into();
    }
    let gm = (log_ratios.iter().sum::<f64>() / log_ratios.len() as f64).exp();
    let missing = if log_ratios.len() < expected {
        format!(" ({} of {expected})", log_ratios.len())
    } else {
        String::new()
    };
    format!("{gm:.3}{missing}")
}

fn stages(camera: &Path, big: &RgbImage, runs: usize) {
    let bytes = std::fs::read(camera).expect("read");
    println!("\n## sxf's stages on the 12 MP input, median of {runs} runs\n");
    println!("| stage | ms | notes |");
    println!("|---|---|---|");
    let t = time(runs, || image::load_from_memory(&bytes).expect("decode"));
    println!("| decode (image crate, JPEG) | {:.0} | |", ms(t));

    let p3 = ColorProfile::new_display_p3();
    let srgb = ColorProfile::new_srgb();
    let transform = p3
        .create_transform_8bit(Layout::Rgb, &srgb, Layout::Rgb, TransformOptions::default())
        .expect("moxcms transform");
    let mut out = vec![0u8; big.as_raw().len()];
    let t = time(runs, || {
        transform
            .transform(big.as_raw(), &mut out)
            .expect("transform")
    });
    println!(
        "| colour (moxcms 8-bit Display P3 to sRGB) | {:.0} | |",
        ms(t)
    );

    let (w, h) = sxf::images::downscaled_size(BIG_W, BIG_H, RESIZE_TO).expect("smaller");
    // Reference downscale: Lanczos3 on floating-point samples, rounded once.
    let reference = DynamicImage::ImageRgb32F(DynamicImage::ImageRgb8(big.clone()).to_rgb32f())
        .resize_exact(w, h, FilterType::Lanczos3)
        .to_rgb8();
    let ref_ssim = to_ssim(&reference);
    let big_dyn = DynamicImage::ImageRgb8(big.clone());
    for filter in [
        FilterType::CatmullRom,
        FilterType::Lanczos3,
        FilterType::Triangle,
    ] {
        let t = time(runs, || big_dyn.resize_exact(w, h, filter));
        let out = big_dyn.resize_exact(w, h, filter).to_rgb8();
        println!(
            "| resize to {w}x{h}, image {filter:?} | {:.0} | PSNR {:.2} dB, SSIMULACRA2 {:.2} |",
            ms(t),
            psnr(&out, &reference),
            score(&ref_ssim, &out)
        );
    }
    for (name, alg) in [
        (
            "CatmullRom",
            fir::ResizeAlg::Convolution(fir::FilterType::CatmullRom),
        ),
        (
            "Lanczos3",
            fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3),
        ),
        (
            "Bilinear",
            fir::ResizeAlg::Convolution(fir::FilterType::Bilinear),
        ),
    ] {
        let opts = fir::ResizeOptions::new().resize_alg(alg);
        let resize = || {
            let src = fir::images::Image::from_vec_u8(
                BIG_W,
                BIG_H,
                big.as_raw().clone(),
                fir::PixelType::U8x3,
            )
            .expect("fir src");
            let mut dst = fir::images::Image::new(w, h, fir::PixelType::U8x3);
            fir::Resizer::new()
                .resize(&src, &mut dst, &opts)
                .expect("fir resize");
            dst
        };
        let t = time(runs, resize);
        let out = RgbImage::from_raw(w, h, resize().into_vec()).expect("size");
        println!(
            "| resize to {w}x{h}, fast_image_resize {name} | {:.0} | PSNR {:.2} dB, SSIMULACRA2 {:.2} (includes copying the input) |",
            ms(t),
            psnr(&out, &reference),
            score(&ref_ssim, &out)
        );
    }
    let t = time(runs, || image::imageops::rotate90(big));
    println!("| orientation (rotate90) | {:.0} | |", ms(t));
    let img = DynamicImage::ImageRgb8(big.clone());
    let t = time(runs, || encode_jpeg(&img, DEFAULT_QUALITY).expect("encode"));
    println!(
        "| encode (sxf encode_jpeg, quality {DEFAULT_QUALITY}) | {:.0} | |",
        ms(t)
    );
}
