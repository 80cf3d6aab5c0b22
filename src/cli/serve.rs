//! `sxf serve`: run a drop-box server.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use sxf::dropbox::server::{Server, ServerConfig};

use super::dropbox::parse_duration;
use super::output::human_bytes;
use super::server_log::{flush_log, log_line};
use super::shared::parse_size;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address and port to listen on; port 0 picks a free port
    #[arg(long, value_name = "ADDR:PORT")]
    listen: String,
    /// The store directory (created if missing)
    #[arg(long, value_name = "DIR")]
    store: PathBuf,
    /// Largest message accepted (B, k/M/G = 1000s, KiB/MiB/GiB = 1024s)
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    max_message_size: u64,
    /// Most bytes waiting in one mailbox
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    mailbox_quota: u64,
    /// Most bytes waiting in the whole store, each message counted once (default: no cap)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_store: Option<u64>,
    /// Most distinct recipients one message is filed for
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    max_recipients: u16,
    /// Delete messages that have waited longer than this
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_duration)]
    expire_after: Duration,
    /// Most simultaneous connections; more are refused with a BUSY error
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_connections: u32,
    /// Most simultaneous connections from one client address (IPv6: one /64 network); more get BUSY
    #[arg(long = "max-connections-per-ip", value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_connections_per_ip: u32,
    /// Free space kept on the store's filesystem; uploads that would eat into it are refused
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    min_free_space: u64,
    /// Close a connection on which nothing moves for this long
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Close any connection after this long
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    total_timeout: Duration,
    /// Close a connection that has not authenticated after this long (time uploading does not count)
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_duration)]
    unauthenticated_timeout: Duration,
    /// Longest a `fetch --watch` request is held before an empty answer
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    max_wait: Duration,
    /// How long an authentication challenge stays valid
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, hide = true)]
    challenge_ttl: Duration,
    /// For tests only: take SIZE as the store's free space instead of asking the filesystem
    #[arg(long, value_name = "SIZE", value_parser = parse_size, hide = true)]
    assume_free_space: Option<u64>,
    /// Refuse uploads that would leave fewer free inodes than this (Linux, macOS)
    #[arg(long, value_name = "N", default_value_t = sxf::dropbox::DEFAULT_MIN_FREE_INODES)]
    min_free_inodes: u64,
    /// For tests only: take N as the store's free inodes instead of asking the filesystem
    #[arg(long, value_name = "N", hide = true)]
    assume_free_inodes: Option<u64>,
}

pub(crate) fn run(a: ServeArgs) -> Result<()> {
    let config = ServerConfig {
        max_message_size: a.max_message_size,
        mailbox_quota: a.mailbox_quota,
        max_store: a.max_store,
        max_recipients: usize::from(a.max_recipients),
        expire_after: a.expire_after,
        max_connections: a.max_connections as usize,
        max_connections_per_ip: a.max_connections_per_ip as usize,
        min_free_space: a.min_free_space,
        idle_timeout: a.idle_timeout,
        total_timeout: a.total_timeout,
        unauthenticated_timeout: a.unauthenticated_timeout,
        max_wait: a.max_wait,
        challenge_ttl: a.challenge_ttl,
        assume_free_space: a.assume_free_space,
        min_free_inodes: a.min_free_inodes,
        assume_free_inodes: a.assume_free_inodes,
        ..ServerConfig::new(a.listen.clone(), a.store.clone())
    };
    // The handler first, so a SIGTERM right after the first line is a clean
    // stop. It only wakes the thread below, which does the logging.
    let (stop_tx, stop_rx) = std::sync::mpsc::sync_channel::<()>(1);
    on_stop_request(move || {
        let _ = stop_tx.try_send(());
    })
    .context("installing signal handlers")?;
    let server = Server::bind(config)?;
    // The one line written directly: whoever started the server reads the
    // port from it. With no stderr to write it to, do not start at all.
    writeln!(std::io::stderr(), "listening on {}", server.local_addr())
        .context("writing to standard error")?;
    let r = server.store_report();
    log_line(format_args!(
        "store {}: server id {}; swept {} temp file(s), finished {} interrupted filing(s), \
         undid {} uncommitted; counting what it holds in the background",
        a.store.display(),
        hex::encode(server.server_id()),
        r.swept_temp_files,
        r.recovered,
        r.discarded_pending,
    ));
    log_line(format_args!(
        "limits: {} per message, {} per mailbox, store cap {}, {} recipients per message, \
         expiry after {}, {} connections ({} per address), {} free-disk reserve, idle {}, \
         total {} ({} until authenticated)",
        human_bytes(a.max_message_size),
        human_bytes(a.mailbox_quota),
        a.max_store.map_or("none".to_owned(), human_bytes),
        a.max_recipients,
        humantime::format_duration(a.expire_after),
        a.max_connections,
        a.max_connections_per_ip,
        human_bytes(a.min_free_space),
        humantime::format_duration(a.idle_timeout),
        humantime::format_duration(a.total_timeout),
        humantime::format_duration(a.unauthenticated_timeout)
    ));
    if let Some(free) = a.assume_free_inodes {
        log_line(format_args!(
            "TESTING: --assume-free-inodes: taking {free} as the free inodes, whatever the disk has"
        ));
    }
    if let Some(free) = a.assume_free_space {
        log_line(format_args!(
            "TESTING: --assume-free-space: taking {} as the free space, whatever the disk has",
            human_bytes(free)
        ));
    }
    let handle = server.shutdown_handle();
    thread::spawn(move || {
        if stop_rx.recv().is_ok() {
            log_line(format_args!("received a signal to stop ({STOP_SIGNALS})"));
            handle.shutdown();
        }
    });
    let result = server.run(Arc::new(|event| log_line(event)));
    flush_log(Duration::from_secs(2));
    result?;
    Ok(())
}

/// What stops the server (src/platform.rs has the table for every system).
#[cfg(unix)]
const STOP_SIGNALS: &str = "SIGTERM or SIGINT";
#[cfg(not(unix))]
const STOP_SIGNALS: &str = "Ctrl-C or Ctrl-Break";

/// Calls `stop` on each request to stop: SIGTERM or SIGINT on Unix, where
/// SIGHUP keeps the disposition it had so that `nohup sxf serve` outlives
/// the terminal; Ctrl-C or Ctrl-Break on Windows.
fn on_stop_request(stop: impl Fn() + Send + 'static) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
        thread::spawn(move || {
            for _ in signals.forever() {
                stop();
            }
        });
        Ok(())
    }
    #[cfg(not(unix))]
    {
        ctrlc::set_handler(stop).map_err(std::io::Error::other)
    }
}
