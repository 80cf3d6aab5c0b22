//! `sxf fetch`: download (and with `--open`, open) what waits for your key.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use sxf::dropbox::client::{self, ClientOptions, Fetched, Unopened};
use sxf::dropbox::protocol::MessageId;
use sxf::dropbox::{self as dbx};
use sxf::keys::PrivateKeyInfo;

use super::dropbox::{
    client_options, parse_duration, parse_server_addr, parse_server_id, peer_error,
};
use super::output::human_bytes;
use super::shared::{Keyring, PassphraseArgs, Sender, parse_size};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("sender").args(["from", "any_sender"])))]
pub(crate) struct FetchArgs {
    /// The drop-box server
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_server_addr)]
    server: String,
    /// Your private key: it proves which mailbox is yours (default: your identity)
    #[arg(long, value_name = "KEY")]
    key: Option<PathBuf>,
    /// Directory to save the archives into (created if missing)
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// Keep waiting and fetch new messages as they arrive (Ctrl-C to stop)
    #[arg(long)]
    watch: bool,
    /// Open each archive as it arrives, as `sxf open` does, into DIR/<id>/,
    /// and first any DIR/<id>.sxf saved earlier and not yet opened (needs
    /// --from or --any-sender)
    #[arg(long, requires = "sender")]
    open: bool,
    /// With --open: the sender (a contact name or public key file); archives
    /// sealed by anyone else are rejected
    #[arg(long, value_name = "NAME|PUB", requires = "open")]
    from: Option<OsString>,
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
    /// The longest one connection may last, from the connect: without
    /// --watch the fetch gives up after it (what was saved is kept); --watch
    /// reconnects
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    passphrase: PassphraseArgs,
}

/// Whether `fetch` opens what it saves, and against which sender key.
#[derive(Clone, Copy)]
enum OpenMode<'a> {
    /// Only save (no `--open`).
    Save,
    /// `--open --from NAME|PUB`, or `--open --any-sender` (the key each archive
    /// embeds, with a warning).
    Open(&'a Sender),
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
            eprintln!("saved {} ({})", f.path.display(), human_bytes(f.len));
        }
        match self.mode {
            OpenMode::Save => println!("{}", f.path.display()),
            OpenMode::Open(sender) => self.open(f.id, &f.path, sender),
        }
    }

    /// Opens an archive that an earlier fetch saved into the output directory
    /// and did not open (one stopped while it opened, or run without --open),
    /// with this run's sender check and report.
    fn resume(&mut self, u: &Unopened) {
        let OpenMode::Open(sender) = self.mode else {
            return;
        };
        eprintln!(
            "{} was saved by an earlier fetch and not opened; opening it",
            u.path.display()
        );
        self.open(u.id, &u.path, sender);
    }

    fn open(&mut self, id: MessageId, path: &Path, sender: &Sender) {
        let out = self.out_dir.join(id.to_string());
        if out.exists() {
            eprintln!(
                "{} already exists; not opening {} again",
                out.display(),
                path.display()
            );
            return;
        }
        // --any-sender gets the same loud warning as `sxf open --any-sender`.
        if let Err(e) = super::open::open_and_report(path, self.key, sender, &out, false) {
            eprintln!("sxf: {}", super::output::describe(&e));
            if self.first_rejection.is_none() {
                self.first_rejection = Some(e);
            }
        }
    }
}

pub(crate) fn run(a: FetchArgs) -> Result<()> {
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
    let mut keyring = Keyring::new();
    let sender = match (&a.from, a.any_sender) {
        (Some(from), false) => Some(Sender::Known(keyring.public_key(from)?)),
        (None, true) => Some(Sender::Any),
        _ => None,
    };
    let key = keyring.load_private_key(a.key.as_deref(), "--key", &a.passphrase.source())?;
    let mode = match (&sender, a.open) {
        (Some(sender), true) => OpenMode::Open(sender),
        _ => OpenMode::Save,
    };
    fs::create_dir_all(&a.out_dir).with_context(|| format!("creating {}", a.out_dir.display()))?;
    let swept = client::sweep_fetch_temps(&a.out_dir)?;
    if swept > 0 {
        eprintln!("removed {swept} partial download(s) left by an interrupted fetch");
    }
    let staged = client::sweep_open_staging(&a.out_dir)?;
    if staged > 0 {
        eprintln!(
            "removed {staged} staging director(ies) left by an interrupted open (each held part of a decrypted archive)"
        );
    }
    let options = ClientOptions {
        max_message_size: a.max_size,
        total_timeout: Some(a.timeout),
        ..client_options(a.server_id)
    };
    let mut opener = Opener {
        out_dir: &a.out_dir,
        key: &key,
        mode,
        first_rejection: None,
    };
    // What an earlier fetch saved here and did not open, once per run, before
    // the server is asked for anything: an archive this run rejects is
    // reported once, not at every reconnection of --watch.
    if let OpenMode::Open(_) = mode {
        for u in client::saved_unopened(&a.out_dir)? {
            opener.resume(&u);
        }
    }
    if a.watch {
        return watch(&a, &options, &key, &mut opener);
    }
    let n = match fetch_once(&a.server, &options, &key, &a.out_dir, &mut opener) {
        Err(dbx::Error::TimedOut { limit, .. }) => anyhow::bail!(
            "the fetch did not finish within {} (--timeout); what was saved is kept, and the rest waits on the server",
            humantime::format_duration(limit)
        ),
        n => n.map_err(peer_error)?,
    };
    if n == 0 {
        eprintln!("no messages waiting for {}", key.fingerprint());
    } else {
        eprintln!("fetched {n} message(s) into {}", a.out_dir.display());
    }
    match opener.first_rejection {
        Some(e) => Err(e.context(format!(
            "a fetched archive could not be opened; it is kept, and each fetch --open into {} tries it again until it opens or is moved away",
            a.out_dir.display()
        ))),
        None => Ok(()),
    }
}

/// A fetch without `--watch`: one connection, everything waiting.
fn fetch_once(
    server: &str,
    options: &ClientOptions,
    key: &PrivateKeyInfo,
    out_dir: &Path,
    opener: &mut Opener<'_>,
) -> Result<usize, dbx::Error> {
    let mut c = super::dropbox::connect(server, options)?;
    c.authenticate(key)?;
    client::fetch_all(&mut c, out_dir, &mut |f| opener.saved(f))
}

/// `fetch --watch`: sessions one after another until an error that trying
/// again cannot mend.
fn watch(
    a: &FetchArgs,
    options: &ClientOptions,
    key: &PrivateKeyInfo,
    opener: &mut Opener<'_>,
) -> Result<()> {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        match watch_session(&a.server, options, key, &a.out_dir, opener, &mut backoff) {
            // Near its --timeout: a new session at once.
            Ok(()) => {}
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
                    super::output::describe(&anyhow::Error::new(e)),
                    humantime::format_duration(backoff)
                );
                thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(peer_error(e)),
        }
    }
}

/// One connection of `fetch --watch`: authenticate, then fetch and long-poll
/// until the connection ends (an error), or until too little is left of
/// `--timeout` for another WAIT (`Ok`: reconnect at once). The server holds
/// each WAIT; nothing here polls.
fn watch_session(
    server: &str,
    options: &ClientOptions,
    key: &PrivateKeyInfo,
    out_dir: &Path,
    opener: &mut Opener<'_>,
    backoff: &mut Duration,
) -> Result<(), dbx::Error> {
    let mut c = super::dropbox::connect(server, options)?;
    c.authenticate(key)?;
    *backoff = Duration::from_secs(1);
    eprintln!(
        "waiting for messages for {} at {server} (Ctrl-C to stop)",
        key.fingerprint()
    );
    let max_wait = Duration::from_secs(u64::from(c.hello().max_wait_secs.max(1)));
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
        let Some(wait) = next_wait(max_wait, c.time_left(), options.total_timeout) else {
            return Ok(());
        };
        ready = c.wait(wait)?;
    }
}

/// The most of a `--watch` session's `--timeout` left unused at its end (a
/// quarter of it when that is less): the session ends by itself this long
/// before its limit, so that a server whose own limit on a connection is the
/// same rarely cuts it first, and the client's cut is left for a server that
/// stalls.
const RENEW_MARGIN: Duration = Duration::from_secs(10);

/// How long the next WAIT of a `--watch` session may be: the server's
/// longest, ending before the session's margin; `None` when that leaves less
/// than a second, and the session should end.
fn next_wait(
    max_wait: Duration,
    left: Option<Duration>,
    limit: Option<Duration>,
) -> Option<Duration> {
    let (Some(left), Some(limit)) = (left, limit) else {
        return Some(max_wait);
    };
    let wait = left
        .saturating_sub(RENEW_MARGIN.min(limit / 4))
        .min(max_wait);
    (wait >= Duration::from_secs(1)).then_some(wait)
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
    fn watch_backs_off_from_a_server_that_keeps_saying_ready_with_nothing_to_list() {
        assert_eq!(empty_ready_pause(1), Duration::ZERO);
        assert_eq!(empty_ready_pause(2), Duration::ZERO);
        assert_eq!(empty_ready_pause(3), Duration::from_millis(100));
        assert_eq!(empty_ready_pause(4), Duration::from_millis(200));
        assert_eq!(empty_ready_pause(50), Duration::from_secs(10));
        assert_eq!(empty_ready_pause(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn a_watch_session_ends_by_itself_shortly_before_its_timeout() {
        let s = Duration::from_secs;
        let ten_min = Some(s(600));
        // Early on, the server's longest WAIT.
        assert_eq!(next_wait(s(30), Some(s(590)), ten_min), Some(s(30)));
        // Near the end, a WAIT that ends 10 s before the limit...
        assert_eq!(next_wait(s(30), Some(s(25)), ten_min), Some(s(15)));
        // ...and none when that leaves less than a second.
        assert_eq!(next_wait(s(30), Some(s(10)), ten_min), None);
        // A short --timeout keeps a quarter of itself as the margin.
        assert_eq!(next_wait(s(30), Some(s(4)), Some(s(4))), Some(s(3)));
        assert_eq!(next_wait(s(30), Some(s(1)), Some(s(4))), None);
        // No limit, no margin.
        assert_eq!(next_wait(s(30), None, None), Some(s(30)));
    }
}
