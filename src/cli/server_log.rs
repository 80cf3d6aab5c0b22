//! The log of `sxf serve`: one line per event, written by a thread of its own.
//!
//! A log must never take the service down with it. A connection thread only
//! queues its line; the log thread writes it to stderr. If stderr is closed
//! (`sxf serve 2>&1 | tee log` with `tee` gone), full (a reader that stopped
//! reading), or fails in any way, replies, authentication and shutdown go on
//! as before: the lines that could not be queued or written are counted, and
//! the count is logged as soon as a line can be written again.
//!
//! Every line is escaped on the way in: control characters (newlines and
//! escape sequences included) and bidi controls from anything a client sent,
//! such as an unknown manifest key quoted in a refusal, come out as `\n`,
//! `\u{1b}`, `\u{202e}`, so no client can forge a line or drive the
//! operator's terminal.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use super::output::escape_controls;

/// Lines waiting for the log thread; more are counted as lost.
const QUEUE_LINES: usize = 4096;

enum Entry {
    Line(String),
    /// Answered once everything queued before it has been written or lost.
    Flush(SyncSender<()>),
}

struct Log {
    queue: SyncSender<Entry>,
    lost: Arc<AtomicU64>,
}

fn log() -> &'static Log {
    static LOG: OnceLock<Log> = OnceLock::new();
    LOG.get_or_init(|| {
        let (queue, entries) = sync_channel(QUEUE_LINES);
        let lost = Arc::new(AtomicU64::new(0));
        let counter = lost.clone();
        std::thread::spawn(move || write_entries(entries, std::io::stderr(), &counter));
        Log { queue, lost }
    })
}

/// Queues one log line: the time, then `msg`, escaped. Never blocks and never
/// fails; a line that cannot be queued is counted.
pub(crate) fn log_line(msg: impl std::fmt::Display) {
    let line = format!("{} {}", now(), escape_controls(&msg.to_string()));
    let log = log();
    if log.queue.try_send(Entry::Line(line)).is_err() {
        log.lost.fetch_add(1, Ordering::Relaxed);
    }
}

/// Waits, at most `timeout`, until the lines queued so far are written (or
/// counted as lost): the last lines of a server that is stopping.
pub(crate) fn flush_log(timeout: Duration) {
    let (done, answer) = sync_channel(1);
    if log().queue.try_send(Entry::Flush(done)).is_ok() {
        let _ = answer.recv_timeout(timeout);
    }
}

fn now() -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_seconds(SystemTime::now())
}

/// The log thread: writes each line, first saying how many were lost since
/// the last line that was written.
fn write_entries(entries: Receiver<Entry>, mut out: impl Write, lost: &AtomicU64) {
    for entry in entries {
        match entry {
            Entry::Line(line) => write_line(&mut out, &line, lost),
            Entry::Flush(done) => {
                let _ = out.flush();
                let _ = done.try_send(());
            }
        }
    }
}

fn write_line(out: &mut impl Write, line: &str, lost: &AtomicU64) {
    let missed = lost.swap(0, Ordering::Relaxed);
    if missed > 0 {
        let note = format!(
            "{} {missed} log line(s) were lost: the log could not be written",
            now()
        );
        if writeln!(out, "{note}").is_err() {
            lost.fetch_add(missed + 1, Ordering::Relaxed);
            return;
        }
    }
    if writeln!(out, "{line}").is_err() {
        lost.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that fails while `broken` is set.
    struct Flaky {
        broken: bool,
        written: Vec<u8>,
    }

    impl Write for Flaky {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.broken {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_lost_to_a_broken_log_are_counted_and_reported_when_it_works_again() {
        let lost = AtomicU64::new(0);
        let mut out = Flaky {
            broken: true,
            written: Vec::new(),
        };
        write_line(&mut out, "one", &lost);
        write_line(&mut out, "two", &lost);
        assert_eq!(lost.load(Ordering::Relaxed), 2);
        out.broken = false;
        write_line(&mut out, "three", &lost);
        let text = String::from_utf8(out.written).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].ends_with(" 2 log line(s) were lost: the log could not be written"),
            "{text}"
        );
        assert_eq!(lines[1], "three");
        assert_eq!(lost.load(Ordering::Relaxed), 0);
    }
}
