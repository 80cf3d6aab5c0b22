//! A bounded load run of the drop-box, on loopback only.
//!
//! It starts the real `sxf serve` (release build) on 127.0.0.1 with an ephemeral
//! port, holds `--idle` connections open that do nothing, then runs `--senders`
//! threads that upload `--messages` archives in total (a new connection per
//! message, as `sxf send` does) while `--receivers` threads, one per recipient
//! key, authenticate, long-poll, download and delete. Everything stops after the
//! last message or after `--time-limit` seconds, whichever comes first, and the
//! server is stopped with SIGTERM. It reports messages per second, upload and
//! delivery latency percentiles, and the server's resident memory (from
//! /proc: at start, with the idle connections, and the peak VmHWM).
//!
//! Run:
//!
//! ```text
//! cargo build --release
//! cargo run --release --example dropbox_load -- --senders 8 --receivers 4 --messages 2000 --idle 200
//! ```
//!
//! Figures on the 2-core development machine (24 GB, ext4), release build
//! (also in spec/DROPBOX.md, "Appendix: load figures"):
//!
//! ```text
//! sxf drop-box load run: 8 senders, 4 receivers, 2000 messages of 2130 bytes, 200 idle connections, 2 CPUs
//! server memory: RSS 4.6 MiB at start (2 threads), 8.3 MiB with 200 idle connections (202 threads, 18.7 KiB per idle connection), 29.0 MiB at the end, peak 40.2 MiB (VmHWM); peak threads 218
//! uploads: 2000 stored, 0 refused, in 3.04 s = 658.0 messages/s (1.4 MB/s)
//! downloads: 2000 delivered and deleted; all done in 4.03 s
//! upload latency (connect to STORED, durable): p50 11.9 ms, p90 16.1 ms, p99 20.3 ms, max 27.8 ms
//! delivery latency (STORED to downloaded by the recipient): p50 1.5 ms, p90 4.0 ms, p99 7.7 ms, max 12.1 ms
//! server: 6009 log lines; stopped on SIGTERM with exit status: 0
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;

use sxf::dropbox::client::{Client, ClientOptions};
use sxf::dropbox::protocol::{self, MessageId, Reply};

#[derive(Parser, Debug)]
#[command(about = "Bounded loopback load run of the sxf drop-box")]
struct Args {
    /// Concurrent sender threads
    #[arg(long, default_value_t = 8)]
    senders: usize,
    /// Concurrent receivers, one per recipient key (at most 4)
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=4))]
    receivers: u8,
    /// Messages in total
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// Idle connections held open during the run
    #[arg(long, default_value_t = 200)]
    idle: usize,
    /// Bytes of attachment in each message (0: a short text message, about 2.6 kB sealed)
    #[arg(long, default_value_t = 0)]
    attach: usize,
    /// Stop after this many seconds whatever happens
    #[arg(long, default_value_t = 120)]
    time_limit: u64,
    /// The sxf binary (default: target/release/sxf)
    #[arg(long)]
    bin: Option<PathBuf>,
}

const RECIPIENTS: [&str; 4] = ["bob", "carol", "dave", "mallory"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn key_path(name: &str, ext: &str) -> PathBuf {
    match name {
        "alice" | "bob" => repo().join("keys").join(format!("{name}.{ext}")),
        _ => repo().join("tests/keys").join(format!("{name}.{ext}")),
    }
}

/// A field of /proc/PID/status, in kB or as a count.
fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

fn percentiles(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    v.sort();
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    format!(
        "p50 {}, p90 {}, p99 {}, max {}",
        ms(at(0.50)),
        ms(at(0.90)),
        ms(at(0.99)),
        ms(*v.last().unwrap())
    )
}

/// One distinct archive per message, sealed in-process on every core. The server
/// files a byte-identical upload that is still waiting only once (uploads are
/// idempotent), so sending one archive over and over would not be load.
fn seal_all(
    dir: &Path,
    receivers: &[&str],
    messages: usize,
    attach: usize,
) -> Result<Vec<PathBuf>> {
    let sender = sxf::keys::load_private_key(&key_path("alice", "key"), || {
        Ok(Some(zeroize::Zeroizing::new("carol-passphrase".to_owned())))
    })?;
    let keys: Vec<sxf::keys::PublicKeyInfo> = receivers
        .iter()
        .map(|r| sxf::keys::load_public_key(&key_path(r, "pub")))
        .collect::<Result<_, _>>()?;
    let attachments = if attach > 0 {
        let a = dir.join("attachment.bin");
        let data: Vec<u8> = (0..attach).map(|i| (i * 7919 % 251) as u8).collect();
        std::fs::write(&a, data)?;
        vec![a]
    } else {
        Vec::new()
    };
    let paths: Vec<PathBuf> = (0..messages)
        .map(|i| dir.join(format!("m{i}.sxf")))
        .collect();
    let threads = thread::available_parallelism().map_or(2, |n| n.get());
    thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (sender, keys, attachments, paths) = (&sender, &keys, &attachments, &paths);
                s.spawn(move || -> Result<()> {
                    for i in (t..messages).step_by(threads) {
                        let request = sxf::seal::SealRequest {
                            sender,
                            recipients: std::slice::from_ref(&keys[i % keys.len()]),
                            message: format!("load test message {i}"),
                            images: Vec::new(),
                            image_options: Default::default(),
                            attachments: attachments.clone(),
                            created: std::time::SystemTime::now(),
                            fit: None,
                            threads: None,
                        };
                        sxf::seal::seal(request, &paths[i], &mut sxf::NoProgress)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().expect("seal thread")?;
        }
        Ok(())
    })?;
    Ok(paths)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bin = args
        .bin
        .clone()
        .unwrap_or_else(|| repo().join("target/release/sxf"));
    if !bin.exists() {
        bail!(
            "{} not found: run `cargo build --release` first",
            bin.display()
        );
    }
    let limit = Instant::now() + Duration::from_secs(args.time_limit);
    let dir = tempfile::tempdir()?;
    let receivers = &RECIPIENTS[..args.receivers as usize];
    let archives = seal_all(dir.path(), receivers, args.messages, args.attach)?;
    let archive_len = std::fs::metadata(&archives[0])?.len();

    // The server.
    let mut server = Command::new(&bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(dir.path().join("store"))
        .args([
            "--max-connections",
            &(args.idle + args.senders + receivers.len() + 32).to_string(),
            // Every client here comes from 127.0.0.1.
            "--max-connections-per-ip",
            &(args.idle + args.senders + receivers.len() + 32).to_string(),
            "--idle-timeout",
            &format!("{}s", args.time_limit + 30),
            // The idle connections never authenticate.
            "--unauthenticated-timeout",
            &format!("{}s", args.time_limit + 30),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting sxf serve")?;
    let pid = server.id();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let first = lines.next().context("no output from the server")??;
    let addr = first
        .strip_prefix("listening on ")
        .context("unexpected first line")?
        .to_owned();
    let log_lines = Arc::new(AtomicUsize::new(0));
    let counter = log_lines.clone();
    let log_thread = thread::spawn(move || {
        for _ in lines.map_while(Result::ok) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    thread::sleep(Duration::from_millis(200));
    let rss_start = proc_status(pid, "VmRSS:");
    let threads_start = proc_status(pid, "Threads:");

    // Idle connections: connect, finish the TLS handshake, read HELLO, then nothing.
    let mut idle = Vec::with_capacity(args.idle);
    for _ in 0..args.idle {
        let mut sock = TcpStream::connect(&addr)?;
        let (config, _) = sxf::dropbox::tls::client_config(None)?;
        let mut conn =
            rustls::ClientConnection::new(config, sxf::dropbox::tls::server_name(&addr))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        let mut s = rustls::StreamOwned::new(conn, sock);
        match protocol::read_frame(&mut s).map(Reply::decode) {
            Ok(Ok(Reply::Hello(_))) => idle.push(s),
            other => bail!("idle connection got {other:?}"),
        }
    }
    thread::sleep(Duration::from_millis(300));
    let rss_idle = proc_status(pid, "VmRSS:");
    let threads_idle = proc_status(pid, "Threads:");

    // Sample the server while the load runs.
    let stop = Arc::new(AtomicBool::new(false));
    let peak_threads = Arc::new(AtomicUsize::new(threads_idle as usize));
    let monitor = {
        let stop = stop.clone();
        let peak = peak_threads.clone();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(proc_status(pid, "Threads:") as usize, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let stored_at: Arc<Mutex<HashMap<MessageId, Instant>>> = Arc::default();
    let delivered_at: Arc<Mutex<HashMap<MessageId, Instant>>> = Arc::default();
    let upload_latency: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let stored_ok = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let senders_done = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicUsize::new(0));

    let start = Instant::now();
    let mut receiver_threads = Vec::new();
    for who in receivers {
        let key = sxf::keys::load_private_key(&key_path(who, "key"), || {
            Ok(Some(zeroize::Zeroizing::new("carol-passphrase".to_owned())))
        })?;
        let (addr, delivered_at, received, stored_ok, senders_done) = (
            addr.clone(),
            delivered_at.clone(),
            received.clone(),
            stored_ok.clone(),
            senders_done.clone(),
        );
        receiver_threads.push(thread::spawn(move || -> Result<()> {
            let mut c = Client::connect(&addr, &ClientOptions::default())?;
            c.authenticate(&key)?;
            let mut sink = Vec::new();
            loop {
                let (entries, _) = c.list()?;
                for e in &entries {
                    sink.clear();
                    c.download(e.id, &mut sink)?;
                    if c.delete(e.id)? {
                        delivered_at.lock().unwrap().insert(e.id, Instant::now());
                        received.fetch_add(1, Ordering::SeqCst);
                    }
                }
                let done = senders_done.load(Ordering::SeqCst)
                    && received.load(Ordering::SeqCst) >= stored_ok.load(Ordering::SeqCst);
                if done || Instant::now() >= limit {
                    return Ok(());
                }
                if entries.is_empty() {
                    c.wait(Duration::from_secs(1))?;
                }
            }
        }));
    }
    let mut sender_threads = Vec::new();
    for s in 0..args.senders {
        let (addr, archives, stored_at, upload_latency, stored_ok, refused) = (
            addr.clone(),
            archives.clone(),
            stored_at.clone(),
            upload_latency.clone(),
            stored_ok.clone(),
            refused.clone(),
        );
        let total = args.messages;
        let n = args.senders;
        sender_threads.push(thread::spawn(move || {
            for i in (s..total).step_by(n) {
                if Instant::now() >= limit {
                    break;
                }
                let t0 = Instant::now();
                let result = Client::connect(&addr, &ClientOptions::default())
                    .and_then(|mut c| c.upload_file(&archives[i % archives.len()]));
                match result {
                    Ok(stored) => {
                        let t1 = Instant::now();
                        stored_at.lock().unwrap().insert(stored.id, t1);
                        upload_latency.lock().unwrap().push(t1 - t0);
                        stored_ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        eprintln!("upload refused: {e}");
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    for t in sender_threads {
        t.join().expect("sender thread");
    }
    let send_elapsed = start.elapsed();
    senders_done.store(true, Ordering::SeqCst);
    for t in receiver_threads {
        t.join().expect("receiver thread")?;
    }
    let all_elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    monitor.join().expect("monitor");
    let rss_peak = proc_status(pid, "VmHWM:");
    let rss_end = proc_status(pid, "VmRSS:");
    drop(idle);

    // Stop the server the way an operator would.
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = server.wait()?;
    log_thread.join().expect("log thread");

    let ok = stored_ok.load(Ordering::SeqCst);
    let stored = stored_at.lock().unwrap();
    let delivered = delivered_at.lock().unwrap();
    let delivery: Vec<Duration> = delivered
        .iter()
        .filter_map(|(id, d)| stored.get(id).map(|s| d.saturating_duration_since(*s)))
        .collect();
    let per_idle_kib = if args.idle > 0 {
        (rss_idle.saturating_sub(rss_start)) as f64 / args.idle as f64
    } else {
        0.0
    };
    println!(
        "sxf drop-box load run: {} senders, {} receivers, {} messages of {} bytes, {} idle connections, {} CPUs",
        args.senders,
        receivers.len(),
        args.messages,
        archive_len,
        args.idle,
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "server memory: RSS {} at start ({} threads), {} with {} idle connections ({} threads, {:.1} KiB per idle connection), \
         {} at the end, peak {} (VmHWM); peak threads {}",
        mib(rss_start),
        threads_start,
        mib(rss_idle),
        args.idle,
        threads_idle,
        per_idle_kib,
        mib(rss_end),
        mib(rss_peak),
        peak_threads.load(Ordering::Relaxed)
    );
    println!(
        "uploads: {ok} stored, {} refused, in {:.2} s = {:.1} messages/s ({:.1} MB/s)",
        refused.load(Ordering::SeqCst),
        send_elapsed.as_secs_f64(),
        ok as f64 / send_elapsed.as_secs_f64(),
        ok as f64 * archive_len as f64 / send_elapsed.as_secs_f64() / 1e6
    );
    println!(
        "downloads: {} delivered and deleted; all done in {:.2} s",
        received.load(Ordering::SeqCst),
        all_elapsed.as_secs_f64()
    );
    println!(
        "upload latency (connect to STORED, durable): {}",
        percentiles(upload_latency.lock().unwrap().clone())
    );
    println!(
        "delivery latency (STORED to downloaded by the recipient): {}",
        percentiles(delivery)
    );
    println!(
        "server: {} log lines; stopped on SIGTERM with {}",
        log_lines.load(Ordering::Relaxed),
        status
    );
    Ok(())
}
