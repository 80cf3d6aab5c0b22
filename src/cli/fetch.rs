//! `sxf fetch`: download (and with `--open`, open) what waits for your key.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use sxf::dropbox::client::{
    self, Budget, Cap, Client, ClientOptions, Fetched, Outcome, Stop, Summary, Taken, TakenCopy,
    Unopened,
};
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
    /// The most messages one run takes from the server (with --watch, in its
    /// whole life); the rest stay there for the next run
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    max_messages: u64,
    /// The most bytes one run downloads, all messages together (with --watch,
    /// in its whole life); the message that would pass it stays on the server
    #[arg(long, value_name = "SIZE", default_value = "4GiB", value_parser = parse_size)]
    max_total: u64,
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
    fn outcome(&mut self, o: &Outcome) {
        match o {
            Outcome::Fetched(f) => self.saved(f),
            Outcome::Taken(t) => report_taken(t),
        }
    }

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

/// Says what became of a message another fetcher of the mailbox took first.
fn report_taken(t: &Taken) {
    match &t.copy {
        TakenCopy::NotSaved => eprintln!(
            "{} was taken by another fetcher before this one could download it",
            t.id
        ),
        TakenCopy::Removed(_) => eprintln!(
            "{} was taken by another fetcher; removed the local copy",
            t.id
        ),
        TakenCopy::KeptOpened { archive, opened } => eprintln!(
            "{} was taken by another fetcher, but it was already opened into {}; kept it and {}",
            t.id,
            opened.display(),
            archive.display()
        ),
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
    // Held until the run ends, before the sweeps look at the directory.
    let _lock = client::lock_out_dir(&a.out_dir)?;
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
    let mut run = Run {
        server: &a.server,
        options,
        key: &key,
        out_dir: &a.out_dir,
        opener: Opener {
            out_dir: &a.out_dir,
            key: &key,
            mode,
            first_rejection: None,
        },
        budget: Budget::new(a.max_messages, a.max_total),
    };
    // What an earlier fetch saved here and did not open, once per run, before
    // the server is asked for anything: an archive this run rejects is
    // reported once, not at every reconnection of --watch.
    if let OpenMode::Open(_) = mode {
        for u in client::saved_unopened(&a.out_dir)? {
            run.opener.resume(&u);
        }
    }
    if a.watch {
        run.watch()
    } else {
        run.fetch_once()
    }
}

/// One run of `sxf fetch`: what each of its connections needs, and what they
/// share, the caps included.
struct Run<'a> {
    server: &'a str,
    options: ClientOptions,
    key: &'a PrivateKeyInfo,
    out_dir: &'a Path,
    opener: Opener<'a>,
    budget: Budget,
}

/// How a `--watch` session ended, when not by an error.
enum SessionEnd {
    /// Too little was left of `--timeout` for another WAIT: reconnect at once.
    Renew,
    /// A cap of the run was reached: the watch ends.
    Cap(Cap),
}

impl Run<'_> {
    /// A fetch without `--watch`: one connection, everything waiting, up to
    /// the caps.
    fn fetch_once(mut self) -> Result<()> {
        let summary = match self.connect().and_then(|mut c| self.fetch_all(&mut c)) {
            Err(dbx::Error::TimedOut { limit, .. }) => anyhow::bail!(
                "the fetch did not finish within {} (--timeout); what was saved is kept, and the rest waits on the server",
                humantime::format_duration(limit)
            ),
            s => s.map_err(peer_error)?,
        };
        self.report(summary);
        match self.opener.first_rejection {
            Some(e) => Err(e.context(format!(
                "a fetched archive could not be opened; it is kept, and each fetch --open into {} tries it again until it opens or is moved away",
                self.out_dir.display()
            ))),
            None => Ok(()),
        }
    }

    /// Connects and authenticates.
    fn connect(&self) -> Result<Client, dbx::Error> {
        let mut c = super::dropbox::connect(self.server, &self.options)?;
        c.authenticate(self.key)?;
        Ok(c)
    }

    fn fetch_all(&mut self, c: &mut Client) -> Result<Summary, dbx::Error> {
        let opener = &mut self.opener;
        client::fetch_all(c, self.out_dir, &mut self.budget, &mut |o| {
            opener.outcome(o)
        })
    }

    /// What a fetch without `--watch` says at its end.
    fn report(&self, summary: Summary) {
        match summary.fetched {
            0 if summary.stop == Stop::Empty => {
                eprintln!("no messages waiting for {}", self.key.fingerprint());
            }
            0 => {}
            n => eprintln!("fetched {n} message(s) into {}", self.out_dir.display()),
        }
        match summary.stop {
            Stop::Empty => {}
            Stop::NoProgress => eprintln!(
                "stopped: every message the server listed last was gone before this fetch could take it (taken by another fetcher of the mailbox); run fetch again for any that arrive later"
            ),
            Stop::Cap(cap) => eprintln!("{}", self.cap_sentence(cap)),
        }
    }

    /// Why the run stopped at `cap`, and what is left.
    fn cap_sentence(&self, cap: Cap) -> String {
        let n = self.budget.messages();
        let max = human_bytes(self.budget.max_bytes());
        match cap {
            Cap::Messages => format!(
                "stopped after {n} message(s), the --max-messages cap of one run; more may be waiting on the server: run fetch again"
            ),
            Cap::Bytes { next } if next > self.budget.max_bytes() => format!(
                "stopped after {n} message(s): the next, of {}, is alone over the --max-total cap of {max}; it waits on the server until a fetch with a larger --max-total takes it",
                human_bytes(next)
            ),
            Cap::Bytes { next } => format!(
                "stopped after {n} message(s), {}: the next, of {}, would take this run past the --max-total cap of {max}; it waits on the server, with any others: run fetch again",
                human_bytes(self.budget.bytes()),
                human_bytes(next)
            ),
        }
    }

    /// `fetch --watch`: sessions one after another until a cap, or an error
    /// that trying again cannot mend.
    fn watch(mut self) -> Result<()> {
        let mut reconnects = RECONNECT_BACKOFF;
        let mut idle = IDLE_BACKOFF;
        loop {
            let started = Instant::now();
            let end = self.watch_session(&mut idle);
            // Authenticating is no progress: only a session that lasted.
            let lasted = started.elapsed() >= MIN_SESSION_FOR_QUICK_RECONNECT;
            if lasted {
                reconnects.reset();
            }
            match end {
                Ok(SessionEnd::Renew) if lasted => {}
                // A --timeout of a few seconds: no faster than the backoff.
                Ok(SessionEnd::Renew) => thread::sleep(reconnects.next()),
                Ok(SessionEnd::Cap(cap)) => anyhow::bail!("{}", self.cap_sentence(cap)),
                // The server's per-connection time limit: reconnect at once,
                // quietly, but only after a session that lasted; a server that
                // cuts every session short is backed off from like any other.
                Err(e) if e.code() == Some(dbx::ErrorCode::Deadline) && lasted => {}
                Err(e) if e.is_transient() => {
                    let pause = reconnects.next();
                    // The server's sentence is the server's: escape it like
                    // any other error text before it reaches the terminal.
                    eprintln!(
                        "sxf: {}; reconnecting in {}",
                        super::output::describe(&anyhow::Error::new(e)),
                        humantime::format_duration(pause)
                    );
                    thread::sleep(pause);
                }
                Err(e) => return Err(peer_error(e)),
            }
        }
    }

    /// One connection of `fetch --watch`: authenticate, then fetch and
    /// long-poll until the connection ends (an error), a cap is reached, or
    /// too little is left of `--timeout` for another WAIT. The server holds
    /// each WAIT; nothing here polls, and a round that made no progress is
    /// followed by the `idle` backoff.
    fn watch_session(&mut self, idle: &mut Backoff) -> Result<SessionEnd, dbx::Error> {
        let mut c = self.connect()?;
        eprintln!(
            "waiting for messages for {} at {} (Ctrl-C to stop)",
            self.key.fingerprint(),
            self.server
        );
        let max_wait = Duration::from_secs(u64::from(c.hello().max_wait_secs.max(1)));
        let mut after_idle_wait = true;
        loop {
            let summary = self.fetch_all(&mut c)?;
            if let Stop::Cap(cap) = summary.stop {
                return Ok(SessionEnd::Cap(cap));
            }
            if progressed(&summary, after_idle_wait) {
                idle.reset();
            } else {
                thread::sleep(idle.next());
            }
            let Some(wait) = next_wait(max_wait, c.time_left(), self.options.total_timeout) else {
                return Ok(SessionEnd::Renew);
            };
            let asked = Instant::now();
            let ready = c.wait(wait)?;
            after_idle_wait = !ready && asked.elapsed() >= HELD_WAIT;
        }
    }
}

/// A WAIT the server held at least this long before it answered "not ready"
/// was a real long-poll of an empty mailbox.
const HELD_WAIT: Duration = Duration::from_secs(1);

/// Whether a round of `--watch` made progress: it took a message, or it
/// found the mailbox empty after an idle long-poll (or before any). A WAIT
/// answered ready, or at once, followed by nothing taken (LIST empty, or each
/// message gone by its GET or DELETE), is no progress: normal now and then,
/// a spinning loop if a server keeps answering so.
fn progressed(summary: &Summary, after_idle_wait: bool) -> bool {
    summary.fetched > 0 || after_idle_wait && summary.stop == Stop::Empty
}

/// A pause that grows while attempts make no progress: none for the first
/// `free` in a row, then `first`, doubling up to `max`.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    free: u32,
    first: Duration,
    max: Duration,
    misses: u32,
}

impl Backoff {
    const fn new(free: u32, first: Duration, max: Duration) -> Backoff {
        Backoff {
            free,
            first,
            max,
            misses: 0,
        }
    }

    /// The pause after one more attempt without progress.
    fn next(&mut self) -> Duration {
        self.misses = self.misses.saturating_add(1);
        match self.misses.checked_sub(self.free + 1) {
            None => Duration::ZERO,
            Some(doublings) => (self.first * (1 << doublings.min(16))).min(self.max),
        }
    }

    fn reset(&mut self) {
        self.misses = 0;
    }
}

/// Rounds of `--watch` without progress: none for the first two in a row,
/// then 100 ms doubling up to 10 s.
const IDLE_BACKOFF: Backoff = Backoff::new(2, Duration::from_millis(100), Duration::from_secs(10));

/// Reconnections of `--watch`: 1 s doubling up to 30 s.
const RECONNECT_BACKOFF: Backoff = Backoff::new(0, Duration::from_secs(1), Duration::from_secs(30));

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_pauses_longer_after_each_round_in_a_row_that_makes_no_progress() {
        let ms = Duration::from_millis;
        let mut idle = IDLE_BACKOFF;
        let pauses: Vec<Duration> = (0..5).map(|_| idle.next()).collect();
        assert_eq!(pauses, [ms(0), ms(0), ms(100), ms(200), ms(400)]);
        for _ in 0..100 {
            idle.next();
        }
        assert_eq!(idle.next(), Duration::from_secs(10));
        idle.reset();
        assert_eq!(idle.next(), Duration::ZERO);
        let mut reconnects = RECONNECT_BACKOFF;
        let pauses: Vec<u64> = (0..7).map(|_| reconnects.next().as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn a_round_makes_progress_by_taking_a_message_or_by_an_idle_long_poll() {
        let summary = |fetched, stop| Summary { fetched, stop };
        assert!(progressed(&summary(1, Stop::Empty), false));
        assert!(progressed(&summary(1, Stop::NoProgress), false));
        assert!(progressed(&summary(0, Stop::Empty), true));
        // WAIT said ready, or answered at once, and LIST had nothing.
        assert!(!progressed(&summary(0, Stop::Empty), false));
        // Everything listed was gone by its GET or DELETE.
        assert!(!progressed(&summary(0, Stop::NoProgress), true));
    }

    #[test]
    fn one_run_takes_at_most_1000_messages_and_4_gib_in_10_minute_connections_by_default() {
        use clap::Parser;
        let args = [
            "sxf",
            "fetch",
            "--server",
            "localhost:7878",
            "--out-dir",
            "in",
        ];
        let crate::cli::Command::Fetch(a) = crate::cli::Cli::parse_from(args).command else {
            panic!("not a fetch");
        };
        assert_eq!(a.max_messages, 1000);
        assert_eq!(a.max_total, 4 << 30);
        assert_eq!(a.timeout, Duration::from_secs(600));
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
