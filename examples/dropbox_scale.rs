//! Drop-box start-up and memory against the number of stored messages.
//!
//! For each size it writes a store on disk in the layout of `spec/DROPBOX.md`
//! (each message its own archive file with its digest record and digest
//! pointer, spread over mailboxes of 100 messages, a tenth of them filed for
//! two recipients), then starts the real `sxf serve` on it several times and
//! reports the medians of:
//! - start-up: from spawning the process to its `listening on` line;
//! - count: to its `store holds` line (the background pass);
//! - RSS after the count (VmRSS), and the peak (VmHWM).
//!
//! The reference is the same server on an empty store, in the same run.
//!
//! ```sh
//! cargo build --release
//! cargo run --release --example dropbox_scale -- --sizes 0,10000,100000 --runs 5
//! ```

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use sha2::Digest as _;

#[derive(Parser)]
struct Args {
    /// Stored message counts to measure, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "0,10000,100000")]
    sizes: Vec<usize>,
    /// Starts per size (the median is reported)
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Bytes per stored archive
    #[arg(long, default_value_t = 2130)]
    len: usize,
    /// The sxf binary (default: target/release/sxf)
    #[arg(long)]
    sxf: Option<PathBuf>,
    /// Where to build the stores (default: a temp dir under target/)
    #[arg(long)]
    work: Option<PathBuf>,
}

const PER_MAILBOX: usize = 100;

/// Writes `n` messages into a new store at `root`.
fn populate(root: &Path, n: usize, len: usize) -> (usize, usize) {
    let mailboxes = root.join("mailboxes");
    let digests = root.join("digests");
    std::fs::create_dir_all(&digests).unwrap();
    let mut links = 0;
    let boxes = n.div_ceil(PER_MAILBOX);
    let dir_of =
        |m: usize| mailboxes.join(hex::encode(sha2::Sha256::digest((m as u64).to_be_bytes())));
    for m in 0..boxes {
        std::fs::create_dir_all(dir_of(m)).unwrap();
    }
    for i in 0..n {
        let mut body = vec![0u8; len];
        body[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let digest = hex::encode(sha2::Sha256::digest(&body));
        let id = format!("{:08x}{:024x}", 0x6900_0000u32, i);
        let dir = dir_of(i / PER_MAILBOX);
        let archive = dir.join(format!("{id}.sxf"));
        let record = dir.join(format!(".{id}.sha256"));
        std::fs::write(&archive, &body).unwrap();
        std::fs::write(&record, format!("{id} {len} {digest}\n")).unwrap();
        std::fs::hard_link(&record, digests.join(&digest)).unwrap();
        links += 1;
        // Every tenth message is also filed for the next mailbox.
        if i % 10 == 0 && boxes > 1 {
            let other = dir_of((i / PER_MAILBOX + 1) % boxes);
            std::fs::hard_link(&archive, other.join(format!("{id}.sxf"))).unwrap();
            std::fs::hard_link(&record, other.join(format!(".{id}.sha256"))).unwrap();
            links += 1;
        }
    }
    (boxes, links)
}

/// A kernel figure from /proc/PID/status, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

struct Start {
    listening: Duration,
    counted: Duration,
    rss_kib: u64,
    hwm_kib: u64,
    line: String,
}

fn start_once(sxf: &Path, store: &Path) -> Start {
    let t0 = Instant::now();
    let mut child = Command::new(sxf)
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sxf serve");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut listening = None;
    let mut result = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if listening.is_none() && line.starts_with("listening on ") {
            listening = Some(t0.elapsed());
        }
        if line.contains("store holds ") {
            let counted = t0.elapsed();
            let pid = child.id();
            result = Some(Start {
                listening: listening.expect("listening first"),
                counted,
                rss_kib: status_kib(pid, "VmRSS:"),
                hwm_kib: status_kib(pid, "VmHWM:"),
                line: line
                    .split_once(' ')
                    .map_or(line.clone(), |(_, l)| l.to_owned()),
            });
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    result.expect("the server printed its count")
}

fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args = Args::parse();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sxf = args.sxf.unwrap_or_else(|| repo.join("target/release/sxf"));
    assert!(sxf.exists(), "build it first: cargo build --release");
    let work = match args.work {
        Some(w) => tempfile::tempdir_in(w).unwrap(),
        None => tempfile::tempdir_in(repo.join("target")).unwrap(),
    };
    println!(
        "sxf drop-box scale run: {} starts per size, archives of {} bytes, {} per mailbox, a tenth filed for two mailboxes",
        args.runs, args.len, PER_MAILBOX
    );
    println!(
        "stored messages | links | start-up (to listening) | count done | RSS after count | peak RSS"
    );
    for &n in &args.sizes {
        let store = work.path().join(format!("store-{n}"));
        let t = Instant::now();
        let (_, links) = populate(&store, n, args.len);
        let made = t.elapsed();
        let starts: Vec<Start> = (0..args.runs).map(|_| start_once(&sxf, &store)).collect();
        let line = starts[0].line.clone();
        println!(
            "{n:>15} | {links:>6} | {:>9.1} ms | {:>8.1} ms | {:>7.1} MiB | {:>6.1} MiB",
            median(
                starts
                    .iter()
                    .map(|s| s.listening.as_secs_f64() * 1e3)
                    .collect()
            ),
            median(
                starts
                    .iter()
                    .map(|s| s.counted.as_secs_f64() * 1e3)
                    .collect()
            ),
            median(starts.iter().map(|s| s.rss_kib).collect()) as f64 / 1024.0,
            median(starts.iter().map(|s| s.hwm_kib).collect()) as f64 / 1024.0,
        );
        eprintln!(
            "  (store written in {:.1} s; the server said: {line})",
            made.as_secs_f64()
        );
        std::fs::remove_dir_all(&store).unwrap();
    }
}
