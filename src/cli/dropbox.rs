//! `sxf serve`, `sxf send` and `sxf fetch`: the drop-box's flags, its log lines
//! and its exit codes. The protocol, the store and the client are in the
//! library (`sxf::dropbox`); this layer parses, prints and handles signals.
//!
//! Exit codes follow the rest of sxf: 1 when the peer or an archive fails an
//! authenticity check (a server that is not the pinned `--server-id`; an archive
//! that `--open` rejects), 2 for everything else, including a server's refusal.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use clap::Args;

use sxf::dropbox::client::{self, Client, ClientOptions, Fetched};
use sxf::dropbox::server::{Server, ServerConfig};
use sxf::dropbox::{self as dbx};
use sxf::keys::{PrivateKeyInfo, PublicKeyInfo};

use super::PassphraseArgs;

#[derive(Debug, Args)]
pub struct ServeArgs {
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
    /// Most simultaneous connections; more are refused with a BUSY error
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_connections: u32,
    /// Free space kept on the store's filesystem; uploads that would eat into it are refused
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    min_free_space: u64,
    /// Close a connection on which nothing moves for this long
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Close any connection after this long
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    total_timeout: Duration,
    /// Longest a `fetch --watch` request is held before an empty answer
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    max_wait: Duration,
    /// How long an authentication challenge stays valid
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, hide = true)]
    challenge_ttl: Duration,
    /// For tests only: take SIZE as the store's free space instead of asking the filesystem
    #[arg(long, value_name = "SIZE", value_parser = parse_size, hide = true)]
    assume_free_space: Option<u64>,
    /// Another address clients reach this server at (NAT, port forward); repeatable
    #[arg(long = "public-addr", value_name = "IP:PORT")]
    public_addrs: Vec<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The sealed .sxf file
    file: PathBuf,
    /// The drop-box server
    #[arg(long, value_name = "ADDR:PORT")]
    server: String,
    /// Refuse a server whose id (64 hex digits, `sxf serve` logs it) differs
    #[arg(long, value_name = "HEX", value_parser = parse_server_id)]
    server_id: Option<[u8; 32]>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("sender").args(["from", "any_sender"])))]
pub struct FetchArgs {
    /// The drop-box server
    #[arg(long, value_name = "ADDR:PORT")]
    server: String,
    /// Your private key: it proves which mailbox is yours
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// Directory to save the archives into (created if missing)
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// Keep waiting and fetch new messages as they arrive (Ctrl-C to stop)
    #[arg(long)]
    watch: bool,
    /// Open each archive as it arrives, as `sxf open` does, into DIR/<id>/
    /// (needs --from or --any-sender)
    #[arg(long, requires = "sender")]
    open: bool,
    /// With --open: the sender's public key; archives sealed by anyone else are rejected
    #[arg(long, value_name = "PUB", requires = "open")]
    from: Option<PathBuf>,
    /// With --open: accept whatever sender key each archive embeds (prints a
    /// warning; not with --watch)
    #[arg(long, requires = "open", conflicts_with = "from")]
    any_sender: bool,
    /// Refuse a server whose id (64 hex digits) differs
    #[arg(long, value_name = "HEX", value_parser = parse_server_id)]
    server_id: Option<[u8; 32]>,
    /// Largest message to download, whatever the server says; larger ones stay
    /// on the server
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    max_size: u64,
    #[command(flatten)]
    passphrase: PassphraseArgs,
}

/// The longest a `fetch` without `--watch` may take.
const FETCH_DEADLINE: Duration = Duration::from_secs(600);

/// Parses `64MiB`, `1GiB`, `500k`, `1000`: SI suffixes are powers of 1000, IEC
/// suffixes powers of 1024; a bare number is bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 64MiB, 1GiB or 500k"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "kB" | "KB" => 1000,
        "M" | "MB" => 1000 * 1000,
        "G" | "GB" => 1000 * 1000 * 1000,
        "T" | "TB" => 1000 * 1000 * 1000 * 1000,
        "KiB" | "Ki" => 1 << 10,
        "MiB" | "Mi" => 1 << 20,
        "GiB" | "Gi" => 1 << 30,
        "TiB" | "Ti" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?}: use B, k, M, G, T (powers of 1000) or KiB, MiB, GiB, TiB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{text:?} is too large"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?}: {e} (try 30s, 10m, 500ms)"))?;
    if d.is_zero() {
        return Err("a duration of zero is not allowed".into());
    }
    Ok(d)
}

fn parse_server_id(text: &str) -> Result<[u8; 32], String> {
    let mut id = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut id)
        .map_err(|_| "a server id is 64 hex digits".to_string())?;
    Ok(id)
}

/// One log line: time, then the event.
fn log_line(msg: impl std::fmt::Display) {
    eprintln!(
        "{} {msg}",
        humantime::format_rfc3339_seconds(SystemTime::now())
    );
}

/// A drop-box error for anyhow: a server that fails its identity check is a
/// rejection (exit 1), everything else keeps its own type (exit 2).
fn peer_error(e: dbx::Error) -> anyhow::Error {
    match e {
        e @ dbx::Error::ServerMismatch { .. } => sxf::Error::NotAuthentic(e.to_string()).into(),
        other => other.into(),
    }
}

fn client_options(server_id: Option<[u8; 32]>) -> ClientOptions {
    ClientOptions {
        server_id,
        ..ClientOptions::default()
    }
}

pub fn serve(a: ServeArgs) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let config = ServerConfig {
        max_message_size: a.max_message_size,
        mailbox_quota: a.mailbox_quota,
        max_connections: a.max_connections as usize,
        min_free_space: a.min_free_space,
        idle_timeout: a.idle_timeout,
        total_timeout: a.total_timeout,
        max_wait: a.max_wait,
        challenge_ttl: a.challenge_ttl,
        public_addrs: a.public_addrs.clone(),
        assume_free_space: a.assume_free_space,
        ..ServerConfig::new(a.listen.clone(), a.store.clone())
    };
    // Signals first, so a SIGTERM right after the first line is a clean stop.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("installing signal handlers")?;
    let server = Server::bind(config)?;
    eprintln!("listening on {}", server.local_addr());
    let r = server.store_report();
    log_line(format_args!(
        "store {}: server id {}; {} message(s), {} bytes in {} mailbox(es); swept {} temp file(s), \
         finished {} interrupted filing(s), discarded {} uncommitted, hashed {} message(s) \
         that had no digest record",
        a.store.display(),
        hex::encode(server.server_id()),
        r.messages,
        r.bytes,
        r.mailboxes,
        r.swept_temp_files,
        r.recovered,
        r.discarded_pending,
        r.rehashed
    ));
    log_line(format_args!(
        "limits: {} bytes per message, {} per mailbox, {} connections, {} bytes free-disk reserve, \
         idle {}, total {}",
        a.max_message_size,
        a.mailbox_quota,
        a.max_connections,
        a.min_free_space,
        humantime::format_duration(a.idle_timeout),
        humantime::format_duration(a.total_timeout)
    ));
    if let Some(free) = a.assume_free_space {
        log_line(format_args!(
            "TESTING: --assume-free-space: taking {free} bytes as the free space, whatever the disk has"
        ));
    }
    let handle = server.shutdown_handle();
    let signal_thread = signals.handle();
    thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
            log_line(format_args!("received {name}"));
            handle.shutdown();
        }
    });
    server.run(Arc::new(|event| log_line(event)))?;
    signal_thread.close();
    Ok(())
}

pub fn send(a: SendArgs) -> Result<()> {
    let mut client =
        Client::connect(&a.server, &client_options(a.server_id)).map_err(peer_error)?;
    let stored = client
        .upload_file(&a.file)
        .map_err(peer_error)
        .with_context(|| format!("sending {}", a.file.display()))?;
    eprintln!(
        "sent {} ({} bytes) to {}: waiting for {} recipient(s)",
        a.file.display(),
        stored.len,
        a.server,
        stored.recipients
    );
    println!("{}", stored.id);
    Ok(())
}

/// Whether `fetch` opens what it saves, and against which sender key.
#[derive(Clone, Copy)]
enum OpenMode<'a> {
    /// Only save (no `--open`).
    Save,
    /// `--open --from PUB`.
    From(&'a PublicKeyInfo),
    /// `--open --any-sender`: the key each archive embeds, with a warning.
    AnySender,
}

/// What `--open` needs, and the first rejection it met.
struct Opener<'a> {
    out_dir: &'a Path,
    key: &'a PrivateKeyInfo,
    mode: OpenMode<'a>,
    first_rejection: Option<anyhow::Error>,
}

impl Opener<'_> {
    fn saved(&mut self, f: &Fetched) {
        if f.already_saved {
            eprintln!(
                "{} was saved by an earlier, interrupted fetch; removed it from the server",
                f.path.display()
            );
        } else {
            eprintln!("saved {} ({} bytes)", f.path.display(), f.len);
        }
        let from = match self.mode {
            OpenMode::Save => {
                println!("{}", f.path.display());
                return;
            }
            OpenMode::From(k) => Some(k),
            OpenMode::AnySender => None,
        };
        let out = self.out_dir.join(f.id.to_string());
        if out.exists() {
            eprintln!(
                "{} already exists; not opening {} again",
                out.display(),
                f.path.display()
            );
            return;
        }
        // `None` is --any-sender: the same loud warning as `sxf open --any-sender`.
        if let Err(e) = super::open_and_report(&f.path, self.key, from, &out, false) {
            eprintln!("sxf: {}", super::describe(&e));
            if self.first_rejection.is_none() {
                self.first_rejection = Some(e);
            }
        }
    }
}

pub fn fetch(a: FetchArgs) -> Result<()> {
    // clap enforces this too; the check keeps the rule next to its use.
    if a.open && a.from.is_some() == a.any_sender {
        anyhow::bail!(
            "say who the sender is with --open --from PUB (or accept any sender with --open --any-sender)"
        );
    }
    if a.watch && a.any_sender {
        anyhow::bail!(
            "--watch cannot be used with --any-sender: anyone could then make this key decrypt whatever they send, automatically, and time it; use --open --from PUB with --watch, or fetch --open --any-sender without --watch"
        );
    }
    let key = a.passphrase.source().load_private_key(&a.key)?;
    let from = a.from.as_deref().map(super::load_public).transpose()?;
    let mode = match (&from, a.open, a.any_sender) {
        (Some(k), true, false) => OpenMode::From(k),
        (None, true, true) => OpenMode::AnySender,
        _ => OpenMode::Save,
    };
    fs::create_dir_all(&a.out_dir).with_context(|| format!("creating {}", a.out_dir.display()))?;
    let swept = client::sweep_fetch_temps(&a.out_dir)?;
    if swept > 0 {
        eprintln!("removed {swept} partial download(s) left by an interrupted fetch");
    }
    let options = ClientOptions {
        max_message_size: a.max_size,
        ..client_options(a.server_id)
    };
    let mut opener = Opener {
        out_dir: &a.out_dir,
        key: &key,
        mode,
        first_rejection: None,
    };
    if !a.watch {
        let mut c = Client::connect(&a.server, &options).map_err(peer_error)?;
        let deadline = c.deadline(FETCH_DEADLINE)?;
        let n = c
            .authenticate(&key)
            .and_then(|()| client::fetch_all(&mut c, &a.out_dir, &mut |f| opener.saved(f)));
        let n = match n {
            Err(e) if deadline.expired() => {
                return Err(anyhow::Error::new(e).context(format!(
                    "the fetch did not finish within {}; what was saved is kept",
                    humantime::format_duration(FETCH_DEADLINE)
                )));
            }
            n => n?,
        };
        drop(deadline);
        if n == 0 {
            eprintln!("no messages waiting for {}", key.fingerprint());
        } else {
            eprintln!("fetched {n} message(s) into {}", a.out_dir.display());
        }
        return match opener.first_rejection {
            Some(e) => Err(e.context("a fetched archive could not be opened; it is kept")),
            None => Ok(()),
        };
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        match watch_session(
            &a.server,
            &options,
            &key,
            &a.out_dir,
            &mut opener,
            &mut backoff,
        ) {
            // The server's per-connection time limit: reconnect at once,
            // quietly, but only after a session that lasted; a server that
            // cuts every session short is backed off from like any other.
            Err(e)
                if e.code() == Some(dbx::ErrorCode::Deadline)
                    && started.elapsed() >= MIN_SESSION_FOR_QUICK_RECONNECT => {}
            Err(e) if e.is_transient() => {
                // The server's sentence is the server's: escape it like any
                // other error text before it reaches the terminal.
                eprintln!(
                    "sxf: {}; reconnecting in {}",
                    super::describe(&anyhow::Error::new(e)),
                    humantime::format_duration(backoff)
                );
                thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(peer_error(e)),
            Ok(never) => match never {},
        }
    }
}

/// One connection of `fetch --watch`: authenticate, then fetch and long-poll
/// until the connection ends. The server holds each WAIT; nothing here polls.
fn watch_session(
    server: &str,
    options: &ClientOptions,
    key: &PrivateKeyInfo,
    out_dir: &Path,
    opener: &mut Opener<'_>,
    backoff: &mut Duration,
) -> Result<std::convert::Infallible, dbx::Error> {
    let mut c = Client::connect(server, options)?;
    c.authenticate(key)?;
    *backoff = Duration::from_secs(1);
    eprintln!(
        "waiting for messages for {} at {server} (Ctrl-C to stop)",
        key.fingerprint()
    );
    let wait = Duration::from_secs(u64::from(c.hello().max_wait_secs.max(1)));
    // WAIT said ready but LIST found nothing: normal once in a while (another
    // fetcher took it), a spinning loop if a server keeps saying so.
    let mut empty_ready_rounds = 0u32;
    let mut ready = false;
    loop {
        let n = client::fetch_all(&mut c, out_dir, &mut |f| opener.saved(f))?;
        if ready && n == 0 {
            empty_ready_rounds += 1;
            thread::sleep(empty_ready_pause(empty_ready_rounds));
        } else {
            empty_ready_rounds = 0;
        }
        ready = c.wait(wait)?;
    }
}

/// A `--watch` session at least this long may reconnect at once after the
/// server's `deadline`.
const MIN_SESSION_FOR_QUICK_RECONNECT: Duration = Duration::from_secs(5);

/// The pause after `rounds` WAIT-ready rounds in a row that found nothing: none
/// for the first two, then 100 ms doubling up to 10 s.
fn empty_ready_pause(rounds: u32) -> Duration {
    if rounds <= 2 {
        return Duration::ZERO;
    }
    let exp = (rounds - 3).min(7);
    (Duration::from_millis(100) * (1 << exp)).min(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_si_and_iec_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("500k"), Ok(500_000));
        assert_eq!(parse_size("500K"), Ok(500_000));
        assert_eq!(parse_size("20kB"), Ok(20_000));
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("7B"), Ok(7));
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1.5GiB").is_err());
        assert!(parse_size("12parsecs").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn watch_backs_off_from_a_server_that_keeps_saying_ready_with_nothing_to_list() {
        assert_eq!(empty_ready_pause(1), Duration::ZERO);
        assert_eq!(empty_ready_pause(2), Duration::ZERO);
        assert_eq!(empty_ready_pause(3), Duration::from_millis(100));
        assert_eq!(empty_ready_pause(4), Duration::from_millis(200));
        assert_eq!(empty_ready_pause(50), Duration::from_secs(10));
        assert_eq!(empty_ready_pause(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn server_ids_and_durations_parse() {
        assert_eq!(parse_server_id(&"ab".repeat(32)), Ok([0xab; 32]));
        assert!(parse_server_id("abc").is_err());
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
    }
}
