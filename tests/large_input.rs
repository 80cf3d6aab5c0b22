//! A large attachment is sealed and opened as a stream: peak memory stays far
//! below the attachment's size.
#![cfg(unix)] // peak memory comes from /usr/bin/time

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

const ATTACHMENT_MIB: u64 = 256;
const RSS_LIMIT_KIB: u64 = 100 * 1024;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Runs the binary under `/usr/bin/time -f %M` and returns its peak RSS in KiB.
fn run_measured(args: &[&str]) -> u64 {
    run_timed(args).0
}

/// Runs the binary under `/usr/bin/time`; returns its peak RSS in KiB and its
/// wall time in seconds.
fn run_timed(args: &[&str]) -> (u64, f64) {
    let time = Path::new("/usr/bin/time");
    assert!(
        time.exists(),
        "/usr/bin/time is needed to measure peak memory (apt-get install time)"
    );
    let out = Command::new(time)
        .arg("-f")
        .arg("peak-rss-kib=%M\nwall-s=%e")
        .arg(env!("CARGO_BIN_EXE_sxf"))
        .args(args)
        .output()
        .expect("run sxf under /usr/bin/time");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sxf {args:?} failed: {stderr}");
    let field = |name: &str| {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in: {stderr}"))
    };
    (
        field("peak-rss-kib=").parse().unwrap(),
        field("wall-s=").parse().unwrap(),
    )
}

fn sha256_file(path: &Path) -> [u8; 32] {
    let mut f = File::open(path).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().into()
}

#[test]
fn large_attachment_is_streamed_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    {
        // Non-repeating content, written without holding it in memory.
        let mut f = std::io::BufWriter::new(File::create(&big).unwrap());
        let mut block = [0u8; 1 << 16];
        for i in 0..(ATTACHMENT_MIB * 16) {
            let seed = Sha256::digest(i.to_le_bytes());
            for (j, b) in block.iter_mut().enumerate() {
                *b = seed[j % 32] ^ (j as u8);
            }
            f.write_all(&block).unwrap();
        }
        f.flush().unwrap();
    }
    let archive = dir.path().join("big.sxf");
    let out = dir.path().join("opened");
    let (alice_key, alice_pub) = (repo("keys/alice.key"), repo("keys/alice.pub"));
    let (bob_key, bob_pub) = (repo("keys/bob.key"), repo("keys/bob.pub"));

    let seal_rss = run_measured(&[
        "seal",
        "--to",
        bob_pub.to_str().unwrap(),
        "--sign",
        alice_key.to_str().unwrap(),
        "-m",
        "the big one",
        "--attach",
        big.to_str().unwrap(),
        "-o",
        archive.to_str().unwrap(),
    ]);
    let open_rss = run_measured(&[
        "open",
        archive.to_str().unwrap(),
        "--key",
        bob_key.to_str().unwrap(),
        "--from",
        alice_pub.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(sha256_file(&out.join("big.bin")), sha256_file(&big));
    eprintln!("peak RSS for {ATTACHMENT_MIB} MiB: seal {seal_rss} KiB, open {open_rss} KiB");
    assert!(seal_rss < RSS_LIMIT_KIB, "seal peak RSS {seal_rss} KiB");
    assert!(open_rss < RSS_LIMIT_KIB, "open peak RSS {open_rss} KiB");
}

/// Past 4 GiB the container needs ZIP64 (sizes of payload.bin, offsets of the
/// entries after it, the ZIP64 end records). Slow and disk-hungry (about 9 GB
/// written), so it runs on request:
/// `cargo test --release --test large_input -- --ignored`.
#[test]
#[ignore]
fn archives_over_4_gib_use_zip64_and_still_open() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let big = dir.path().join("huge.bin");
    File::create(&big)
        .unwrap()
        .set_len((4u64 << 30) + (300 << 20))
        .unwrap();
    let archive = dir.path().join("huge.sxf");
    let out = dir.path().join("opened");
    let sxf = |args: &[&str]| {
        let status = Command::new(env!("CARGO_BIN_EXE_sxf"))
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "sxf {args:?}");
    };
    let p = |x: &Path| x.to_str().unwrap().to_owned();
    let (alice_key, alice_pub) = (p(&repo("keys/alice.key")), p(&repo("keys/alice.pub")));
    let (bob_key, bob_pub) = (p(&repo("keys/bob.key")), p(&repo("keys/bob.pub")));
    sxf(&[
        "seal",
        "--to",
        &bob_pub,
        "--sign",
        &alice_key,
        "--attach",
        &p(&big),
        "-o",
        &p(&archive),
    ]);
    sxf(&["verify", &p(&archive), "--from", &alice_pub]);
    sxf(&[
        "open",
        &p(&archive),
        "--key",
        &bob_key,
        "--from",
        &alice_pub,
        "-o",
        &p(&out),
    ]);
    assert_eq!(sha256_file(&out.join("huge.bin")), sha256_file(&big));
}

/// ASCII armor streams too: a 1 GiB attachment sealed with `--armor` and the
/// armored archive opened (decoded once into a private temporary file, then
/// opened) each stay under the same 100 MiB peak RSS. Writes about 4.5 GB, so it
/// runs on request:
/// `cargo test --release --test large_input -- --ignored armored`.
#[test]
#[ignore]
fn armored_1_gib_seal_and_open_stream_in_bounded_memory() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let big = dir.path().join("big.bin");
    File::create(&big).unwrap().set_len(1 << 30).unwrap();
    let archive = dir.path().join("big.sxf.asc");
    let out = dir.path().join("opened");
    let p = |x: &Path| x.to_str().unwrap().to_owned();
    let (alice_key, alice_pub) = (p(&repo("keys/alice.key")), p(&repo("keys/alice.pub")));
    let (bob_key, bob_pub) = (p(&repo("keys/bob.key")), p(&repo("keys/bob.pub")));
    let (seal_rss, seal_s) = run_timed(&[
        "seal",
        "--to",
        &bob_pub,
        "--sign",
        &alice_key,
        "--armor",
        "--attach",
        &p(&big),
        "-o",
        &p(&archive),
    ]);
    let (open_rss, open_s) = run_timed(&[
        "open",
        &p(&archive),
        "--key",
        &bob_key,
        "--from",
        &alice_pub,
        "-o",
        &p(&out),
    ]);
    let armored_len = std::fs::metadata(&archive).unwrap().len();
    assert_eq!(sha256_file(&out.join("big.bin")), sha256_file(&big));
    eprintln!(
        "1 GiB armored ({armored_len} bytes of text): seal --armor {seal_rss} KiB peak RSS, {seal_s:.1} s; open {open_rss} KiB, {open_s:.1} s"
    );
    assert!(
        seal_rss < RSS_LIMIT_KIB,
        "seal --armor peak RSS {seal_rss} KiB"
    );
    assert!(
        open_rss < RSS_LIMIT_KIB,
        "armored open peak RSS {open_rss} KiB"
    );
}
