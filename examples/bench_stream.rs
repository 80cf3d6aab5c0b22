//! Seal and open a large attachment with the release `sxf` binary, and time the
//! same symmetric work done by the `openssl` CLI in the same run.
//!
//! ```text
//! cargo build --release && cargo run --release --example bench_stream -- [MiB] [runs]
//! ```
//!
//! Defaults: 1024 MiB, 3 runs; reports medians of wall time, user CPU and peak RSS
//! (through `/usr/bin/time`). Outputs go to a temporary directory on the same disk.
//! The openssl reference is `openssl enc -aes-256-cbc` followed by
//! `openssl dgst -sha256 -hmac` over the ciphertext for sealing, and the HMAC pass
//! followed by `openssl enc -d` for opening: the same passes sxf makes, without
//! the RSA, the ZIP container or a second thread. The last two rows seal with
//! `--armor` and open the armored text.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: f64,
    user: f64,
    sys: f64,
    rss_mib: f64,
}

fn timed(cmd: &str, args: &[&str]) -> Sample {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "bench=%e %U %S %M", cmd])
        .args(args)
        .output()
        .expect("/usr/bin/time is needed (apt-get install time)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd} {args:?} failed: {stderr}");
    let line = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("bench="))
        .expect("time output");
    let v: Vec<f64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    Sample {
        wall: v[0],
        user: v[1],
        sys: v[2],
        rss_mib: v[3] / 1024.0,
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn sh(script: &str) -> Sample {
    timed("bash", &["-c", script])
}

fn row(name: &str, samples: &[Sample], mib: u64) {
    let wall = median(samples.iter().map(|s| s.wall).collect());
    let user = median(samples.iter().map(|s| s.user).collect());
    let sys = median(samples.iter().map(|s| s.sys).collect());
    let rss = median(samples.iter().map(|s| s.rss_mib).collect());
    let gbps = mib as f64 * 1048576.0 / wall / 1e9;
    println!("| {name} | {wall:.2} | {user:.2} | {sys:.2} | {gbps:.2} | {rss:.0} |");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(1024);
    let runs: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(3);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sxf = root.join("target/release/sxf");
    assert!(sxf.exists(), "build first: cargo build --release");
    let keys = root.join("keys");
    let dir = tempfile::tempdir_in(root.join("target")).unwrap();
    let d = dir.path();
    let input = d.join("input.bin");
    {
        let mut f = BufWriter::new(File::create(&input).unwrap());
        let mut block = vec![0u8; 1 << 20];
        for i in 0..mib {
            for (j, b) in block.iter_mut().enumerate() {
                *b = (j as u64).wrapping_mul(2654435761).wrapping_add(i) as u8;
            }
            f.write_all(&block).unwrap();
        }
    }
    let p = |x: &Path| x.to_str().unwrap().to_owned();
    let key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    let iv = "000102030405060708090a0b0c0d0e0f";
    let (mut seal, mut open, mut ossl_seal, mut ossl_open) = (vec![], vec![], vec![], vec![]);
    let (mut seal_armor, mut open_armor) = (vec![], vec![]);
    for run in 0..runs {
        let archive = d.join(format!("a{run}.sxf"));
        let out = d.join(format!("out{run}"));
        seal.push(timed(
            sxf.to_str().unwrap(),
            &[
                "seal",
                "--to",
                &p(&keys.join("bob.pub")),
                "--sign",
                &p(&keys.join("alice.key")),
                "-m",
                "bench",
                "--attach",
                &p(&input),
                "-o",
                &p(&archive),
            ],
        ));
        open.push(timed(
            sxf.to_str().unwrap(),
            &[
                "open",
                &p(&archive),
                "--key",
                &p(&keys.join("bob.key")),
                "--from",
                &p(&keys.join("alice.pub")),
                "-o",
                &p(&out),
            ],
        ));
        std::fs::remove_file(&archive).unwrap();
        std::fs::remove_dir_all(&out).unwrap();
        // The same with ASCII armor: seal --armor, and open of the text.
        let armored = d.join(format!("a{run}.sxf.asc"));
        seal_armor.push(timed(
            sxf.to_str().unwrap(),
            &[
                "seal",
                "--to",
                &p(&keys.join("bob.pub")),
                "--sign",
                &p(&keys.join("alice.key")),
                "-m",
                "bench",
                "--attach",
                &p(&input),
                "--armor",
                "-o",
                &p(&armored),
            ],
        ));
        open_armor.push(timed(
            sxf.to_str().unwrap(),
            &[
                "open",
                &p(&armored),
                "--key",
                &p(&keys.join("bob.key")),
                "--from",
                &p(&keys.join("alice.pub")),
                "-o",
                &p(&out),
            ],
        ));
        std::fs::remove_file(&armored).unwrap();
        std::fs::remove_dir_all(&out).unwrap();
        let ct = p(&d.join("ct.bin"));
        ossl_seal.push(sh(&format!(
            "openssl enc -aes-256-cbc -K {key} -iv {iv} -in {} -out {ct} && \
             openssl dgst -sha256 -hmac k {ct} >/dev/null && openssl dgst -sha256 {ct} >/dev/null",
            p(&input)
        )));
        ossl_open.push(sh(&format!(
            "openssl dgst -sha256 -hmac k {ct} >/dev/null && \
             openssl enc -d -aes-256-cbc -K {key} -iv {iv} -in {ct} -out {}",
            p(&d.join("pt.bin"))
        )));
        std::fs::remove_file(&ct).unwrap();
        std::fs::remove_file(d.join("pt.bin")).unwrap();
    }
    println!("{mib} MiB attachment, median of {runs} runs, disk to disk");
    println!();
    println!("| step | wall s | user s | sys s | GB/s (wall) | peak RSS MiB |");
    println!("|---|---|---|---|---|---|");
    row("sxf seal", &seal, mib);
    row("openssl enc + HMAC + SHA-256 (reference)", &ossl_seal, mib);
    row("sxf open (verify, then decrypt)", &open, mib);
    row("openssl HMAC + enc -d (reference)", &ossl_open, mib);
    row("sxf seal --armor", &seal_armor, mib);
    row(
        "sxf open (armored: decode, verify, decrypt)",
        &open_armor,
        mib,
    );
}
