//! `sxf fetch` against hostile servers and beside other fetchers (findings 8
//! and 9 of the drop-box review): a deadline counted from the connect, caps on
//! what one run takes, backoff from answers that make no progress, one fetch
//! per output directory, and a message two fetchers downloaded kept by only
//! one of them. The hostile servers are fakes that speak TLS and the framing
//! ([`Fake`]); the two-fetcher race runs the real `sxf serve`. Every fetch is
//! the real binary.

mod dropbox_common;

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use dropbox_common::*;
use sxf::dropbox::protocol::{self, ErrorCode, Hello, ListEntry, MessageId, Reply, Request};
use sxf::dropbox::tls;

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// What a fake server does with each connection.
enum Behaviour {
    /// Reads the ClientHello, then writes its handshake flight one byte every
    /// half second: about six minutes for the whole flight.
    TrickleHandshake,
    /// A handshake at full speed, HELLO, CHALLENGE and AUTH as a real server
    /// answers them (any AUTH is accepted), and every other request answered
    /// by this.
    Answer(Box<Answer>),
}

type Answer = dyn Fn(&Request, &mut Session) -> io::Result<()> + Send + Sync;

/// A fake drop-box server on 127.0.0.1 with a fresh self-signed certificate.
/// It counts connections and requests; its threads end with the test process.
struct Fake {
    addr: String,
    server_id: [u8; 32],
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

/// One fake server connection after the handshake.
struct Session {
    tls: rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
}

impl Session {
    fn reply(&mut self, r: &Reply) -> io::Result<()> {
        let (t, b) = r.encode();
        protocol::write_frame(&mut self.tls, t, &b)?;
        self.tls.flush()
    }

    fn list(&mut self, entries: Vec<ListEntry>) -> io::Result<()> {
        self.reply(&Reply::List {
            entries,
            more: false,
        })
    }

    fn not_found(&mut self) -> io::Result<()> {
        self.reply(&Reply::Error {
            code: ErrorCode::NotFound,
            message: "no such message".into(),
        })
    }

    /// A GET's answer: `len` bytes.
    fn send_message(&mut self, len: usize) -> io::Result<()> {
        self.reply(&Reply::Get(len as u64))?;
        self.reply(&Reply::Data(vec![0x5a; len]))
    }
}

impl Fake {
    fn start(behaviour: Behaviour) -> Fake {
        let key = tls::generate_key().unwrap();
        let cert = tls::self_signed_cert(&key).unwrap();
        let identity = tls::Identity::from_der(key.to_vec(), cert).unwrap();
        let config = tls::server_config(&identity).unwrap();
        let server_id = *identity.server_id();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let fake = Fake {
            addr: listener.local_addr().unwrap().to_string(),
            server_id,
            connections: Arc::default(),
            requests: Arc::default(),
        };
        let (connections, requests) = (fake.connections.clone(), fake.requests.clone());
        let behaviour = Arc::new(behaviour);
        thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(sock) = sock else { return };
                connections.fetch_add(1, Ordering::SeqCst);
                let (config, requests, behaviour) =
                    (config.clone(), requests.clone(), behaviour.clone());
                thread::spawn(move || {
                    let _ = match &*behaviour {
                        Behaviour::TrickleHandshake => trickle_handshake(sock, config),
                        Behaviour::Answer(answer) => {
                            serve(sock, config, server_id, &**answer, &requests)
                        }
                    };
                });
            }
        });
        fake
    }

    /// Serves with `answer`.
    fn answering(
        answer: impl Fn(&Request, &mut Session) -> io::Result<()> + Send + Sync + 'static,
    ) -> Fake {
        Fake::start(Behaviour::Answer(Box::new(answer)))
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// `sxf fetch` as bob, pinned to this server, into `out`.
    fn fetch(&self, out: &Path, extra: &[&str]) -> Command {
        let mut c = sxf();
        c.args(["fetch", "--server", &self.addr, "--server-id"])
            .arg(hex::encode(self.server_id))
            .arg("--key")
            .arg(key("bob.key"))
            .arg("--out-dir")
            .arg(out)
            .args(extra);
        c
    }
}

fn trickle_handshake(mut sock: TcpStream, config: Arc<rustls::ServerConfig>) -> io::Result<()> {
    let mut conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
    while !conn.wants_write() {
        if conn.read_tls(&mut sock)? == 0 {
            return Ok(());
        }
        conn.process_new_packets().map_err(io::Error::other)?;
    }
    let mut flight = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut flight)?;
    }
    for byte in flight {
        sock.write_all(&[byte])?;
        thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

fn serve(
    sock: TcpStream,
    config: Arc<rustls::ServerConfig>,
    server_id: [u8; 32],
    answer: &Answer,
    requests: &AtomicUsize,
) -> io::Result<()> {
    let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
    let mut s = Session {
        tls: rustls::StreamOwned::new(conn, sock),
    };
    while s.tls.conn.is_handshaking() {
        s.tls.conn.complete_io(&mut s.tls.sock)?;
    }
    s.reply(&Reply::Hello(Hello {
        server_id,
        max_message_size: 64 << 20,
        max_wait_secs: 30,
    }))?;
    loop {
        let Ok(frame) = protocol::read_frame(&mut s.tls) else {
            return Ok(());
        };
        requests.fetch_add(1, Ordering::SeqCst);
        match Request::decode(frame).map_err(|e| io::Error::other(e.to_string()))? {
            Request::Challenge => s.reply(&Reply::Challenge([7; 32]))?,
            Request::Auth(_) => s.reply(&Reply::Ok)?,
            other => answer(&other, &mut s)?,
        }
    }
}

fn entry(id: MessageId, len: usize) -> ListEntry {
    ListEntry {
        id,
        len: len as u64,
        received: 0,
    }
}

fn fresh_entries(n: usize, len: usize) -> Vec<ListEntry> {
    (0..n)
        .map(|_| entry(MessageId::generate().unwrap(), len))
        .collect()
}

/// What LIST shows: some messages once, then nothing.
struct ListOnce(std::sync::Mutex<Option<Vec<ListEntry>>>);

impl ListOnce {
    fn new(first: Vec<ListEntry>) -> ListOnce {
        ListOnce(std::sync::Mutex::new(Some(first)))
    }

    fn next(&self) -> Vec<ListEntry> {
        self.0.lock().unwrap().take().unwrap_or_default()
    }
}

/// Runs `cmd`; a run still going after `limit` is killed, and its standard
/// error so far is the `Err`.
fn run_within(mut cmd: Command, limit: Duration) -> Result<Output, String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Ok(Output {
                status,
                stdout: stdout.join().unwrap(),
                stderr: stderr.join().unwrap(),
            });
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(text(&stderr.join().unwrap()));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed when the test ends, passing or not.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `fetch --watch` process, killed when the test ends, and the lines of its
/// standard error so far.
struct Watch {
    _child: Kill,
    lines: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Watch {
    fn start(mut cmd: Command) -> Watch {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let sink = lines.clone();
        thread::spawn(move || {
            for line in io::BufRead::lines(io::BufReader::new(stderr)) {
                let Ok(line) = line else { return };
                sink.lock().unwrap().push(line);
            }
        });
        Watch {
            _child: Kill(child),
            lines,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

/// Waits until `done` holds, up to `limit`.
fn eventually(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    done()
}

// ------------------------------------------------- finding 8: the deadline

/// Finding 8: the deadline started only after HELLO, so a server that
/// trickled its TLS handshake held a fetch for as long as it liked.
#[test]
fn fetch_gives_up_at_its_timeout_against_a_server_that_trickles_the_handshake() {
    let fake = Fake::start(Behaviour::TrickleHandshake);
    let dir = tempdir();
    let cmd = fake.fetch(&dir.path().join("in"), &["--timeout", "2s"]);
    let o = run_within(cmd, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("fetch --timeout 2s still ran after 30 s: {e}"));
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("did not finish within 2s"), "{e}");
}

/// Finding 8: a `--watch` session had no deadline of its own, so a server
/// that trickled its handshake held the watch in one session forever.
#[test]
fn watch_ends_a_session_at_its_timeout_and_reconnects_from_a_trickling_server() {
    let fake = Fake::start(Behaviour::TrickleHandshake);
    let dir = tempdir();
    let watch = Watch::start(fake.fetch(&dir.path().join("in"), &["--watch", "--timeout", "2s"]));
    assert!(
        eventually(Duration::from_secs(30), || fake.connections() >= 2),
        "one session held for 30 s, with --timeout 2s: {:?}",
        watch.lines()
    );
    let said = watch.lines().join("\n");
    assert!(said.contains("did not finish within 2s"), "{said}");
    assert!(said.contains("reconnecting in 1s"), "{said}");
}

/// The session limit is the client's guard against a server that stalls: an
/// honest server's long-polls are shortened to end before it, and the session
/// ends by itself, quietly, rather than being cut.
#[test]
fn watch_renews_its_session_before_its_timeout_with_a_server_that_holds_each_wait() {
    let fake = Fake::answering(|request, s| match request {
        Request::List => s.reply(&Reply::List {
            entries: Vec::new(),
            more: false,
        }),
        Request::Wait(secs) => {
            thread::sleep(Duration::from_secs(u64::from(*secs)));
            s.reply(&Reply::Wait { ready: false })
        }
        other => panic!("unexpected {other:?}"),
    });
    let dir = tempdir();
    let watch = Watch::start(fake.fetch(&dir.path().join("in"), &["--watch", "--timeout", "4s"]));
    assert!(
        eventually(Duration::from_secs(30), || fake.connections() >= 3),
        "{:?}",
        watch.lines()
    );
    let said = watch.lines().join("\n");
    assert!(!said.contains("reconnecting"), "{said}");
    assert!(said.contains("waiting for messages"), "{said}");
}

// ------------------------------------------------- finding 8: the caps

/// A server that lists new messages forever: every LIST shows three more.
fn endless_server(len: usize) -> Fake {
    Fake::answering(move |request, s| match request {
        Request::List => s.reply(&Reply::List {
            entries: fresh_entries(3, len),
            more: true,
        }),
        Request::Get(_) => s.send_message(len),
        Request::Delete(_) => s.reply(&Reply::Ok),
        Request::Wait(_) => s.reply(&Reply::Wait { ready: true }),
        other => panic!("unexpected {other:?}"),
    })
}

/// Finding 8: a server that listed new ids forever kept a fetch downloading
/// until the disk was full. (The defaults, 1000 messages and 4 GiB, are
/// checked where the flags are parsed: 1000 messages here would take a
/// minute of fsyncs.)
#[test]
fn fetch_stops_at_its_max_messages_and_at_its_max_total() {
    let fake = endless_server(1000);
    let dir = tempdir();
    let by_count = dir.path().join("count");
    let o = run_within(
        fake.fetch(&by_count, &["--max-messages", "5"]),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("fetch --max-messages 5 still ran after 60 s: {e}"));
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert_eq!(saved_archives(&by_count).len(), 5);
    assert!(e.contains("stopped after 5 message(s)"), "{e}");
    assert!(e.contains("--max-messages"), "{e}");

    let by_size = dir.path().join("size");
    let o = run_within(
        fake.fetch(&by_size, &["--max-total", "3500"]),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("fetch --max-total 3500 still ran after 60 s: {e}"));
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert_eq!(saved_archives(&by_size).len(), 3, "1000 bytes each");
    assert!(e.contains("stopped after 3 message(s)"), "{e}");
    assert!(e.contains("--max-total"), "{e}");
}

/// The byte cap counts what LIST announced: a GET that announces more is a
/// server breaking the protocol, and nothing of it is kept.
#[test]
fn a_get_announcing_another_length_than_listed_is_refused() {
    let id = MessageId::generate().unwrap();
    let list = ListOnce::new(vec![entry(id, 10)]);
    let fake = Fake::answering(move |request, s| match request {
        Request::List => s.list(list.next()),
        Request::Get(_) => s.send_message(5000),
        Request::Delete(_) => s.reply(&Reply::Ok),
        other => panic!("unexpected {other:?}"),
    });
    let dir = tempdir();
    let out = dir.path().join("in");
    let o = run_within(fake.fetch(&out, &[]), Duration::from_secs(60)).unwrap();
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("listed it as 10 bytes"), "{e}");
    assert!(saved_archives(&out).is_empty());
}

// ------------------------------------------------- finding 8: backoff

/// Finding 8: `fetch` listed until LIST came back empty, so a server that
/// kept listing messages it then said were gone held it in a loop forever.
#[test]
fn fetch_stops_when_every_message_it_was_listed_is_gone_before_it_takes_it() {
    let fake = Fake::answering(|request, s| match request {
        Request::List => s.list(fresh_entries(2, 10)),
        Request::Get(_) => s.not_found(),
        other => panic!("unexpected {other:?}"),
    });
    let dir = tempdir();
    let out = dir.path().join("in");
    let o = run_within(fake.fetch(&out, &[]), Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("fetch still ran after 60 s: {e}"));
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert!(
        e.contains("was gone before this fetch could take it"),
        "{e}"
    );
    assert!(saved_archives(&out).is_empty());
}

/// The requests a `fetch --watch` makes of `fake` in its first 4 s, and the
/// first lines it printed.
fn watch_requests_in_4s(fake: &Fake) -> (usize, Vec<String>) {
    let dir = tempdir();
    let watch = Watch::start(fake.fetch(&dir.path().join("in"), &["--watch"]));
    thread::sleep(Duration::from_secs(4));
    let mut lines = watch.lines();
    lines.truncate(5);
    (fake.requests(), lines)
}

/// Finding 8: a server whose DELETE always said not-found made `--watch` spin
/// (about 35% of a core): fetching, deleting and listing again without pause.
#[test]
fn watch_backs_off_from_a_server_whose_delete_always_says_not_found() {
    let id = MessageId::generate().unwrap();
    let fake = Fake::answering(move |request, s| match request {
        Request::List => s.list(vec![entry(id, 10)]),
        Request::Get(_) => s.send_message(10),
        Request::Delete(_) => s.not_found(),
        Request::Wait(_) => s.reply(&Reply::Wait { ready: true }),
        other => panic!("unexpected {other:?}"),
    });
    let (n, lines) = watch_requests_in_4s(&fake);
    assert!(n < 100, "{n} requests in 4 s: {lines:?}");
}

/// Finding 8: a server whose GET always said not-found made `--watch` spin:
/// listing, asking and listing again without pause.
#[test]
fn watch_backs_off_from_a_server_whose_get_always_says_not_found() {
    let fake = Fake::answering(|request, s| match request {
        Request::List => s.list(fresh_entries(1, 10)),
        Request::Get(_) => s.not_found(),
        Request::Wait(_) => s.reply(&Reply::Wait { ready: true }),
        other => panic!("unexpected {other:?}"),
    });
    let (n, lines) = watch_requests_in_4s(&fake);
    assert!(n < 100, "{n} requests in 4 s: {lines:?}");
}

/// A WAIT answered at once with "not ready" is no long-poll: the round that
/// follows it made no progress and is backed off from like any other.
#[test]
fn watch_backs_off_from_a_server_that_answers_wait_at_once_with_nothing() {
    let fake = Fake::answering(|request, s| match request {
        Request::List => s.list(Vec::new()),
        Request::Wait(_) => s.reply(&Reply::Wait { ready: false }),
        other => panic!("unexpected {other:?}"),
    });
    let (n, lines) = watch_requests_in_4s(&fake);
    assert!(n < 100, "{n} requests in 4 s: {lines:?}");
}

/// Authenticating is no progress: a server that accepts AUTH and then hangs
/// up at once is reconnected to with a growing backoff, not every second.
#[test]
fn watch_backs_off_from_a_server_that_hangs_up_after_every_authentication() {
    let fake = Fake::answering(|_, _| Err(io::Error::other("hang up")));
    let dir = tempdir();
    let watch = Watch::start(fake.fetch(&dir.path().join("in"), &["--watch"]));
    thread::sleep(Duration::from_millis(9500));
    // Backoff 1 s, 2 s, 4 s: connections at about 0, 1, 3 and 7 s.
    let n = fake.connections();
    assert!(n <= 5, "{n} connections in 9.5 s: {:?}", watch.lines());
}

// ------------------------------------- finding 9: two fetchers, one mailbox

/// Finding 9: the client ignored a DELETE answered not-found, so a message
/// two fetchers had both downloaded was kept, and opened, by both.
#[test]
fn a_delete_answered_not_found_removes_the_unopened_copy_and_says_so() {
    let id = MessageId::generate().unwrap();
    let list = ListOnce::new(vec![entry(id, 10)]);
    let fake = Fake::answering(move |request, s| match request {
        Request::List => s.list(list.next()),
        Request::Get(_) => s.send_message(10),
        Request::Delete(_) => s.not_found(),
        other => panic!("unexpected {other:?}"),
    });
    let dir = tempdir();
    let out = dir.path().join("in");
    let o = run_within(fake.fetch(&out, &[]), Duration::from_secs(60)).unwrap();
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert!(
        e.contains(&format!(
            "{id} was taken by another fetcher; removed the local copy"
        )),
        "{e}"
    );
    assert!(saved_archives(&out).is_empty());
    assert_eq!(text(&o.stdout), "", "no path is printed for it");
}

/// A copy that an earlier `fetch --open` already opened is not removed: it
/// is said to be kept.
#[test]
fn a_copy_already_opened_is_kept_and_said_so_when_its_delete_says_not_found() {
    let id = MessageId::generate().unwrap();
    let list = ListOnce::new(vec![entry(id, 10)]);
    let fake = Fake::answering(move |request, s| match request {
        Request::List => s.list(list.next()),
        Request::Delete(_) => s.not_found(),
        other => panic!("unexpected {other:?}"),
    });
    let dir = tempdir();
    let out = dir.path().join("in");
    std::fs::create_dir_all(out.join(id.to_string())).unwrap();
    std::fs::write(out.join(format!("{id}.sxf")), [0x5a; 10]).unwrap();
    let o = run_within(fake.fetch(&out, &[]), Duration::from_secs(60)).unwrap();
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert!(
        e.contains(&format!("{id} was taken by another fetcher")),
        "{e}"
    );
    assert!(e.contains("already opened"), "{e}");
    assert!(out.join(format!("{id}.sxf")).is_file());
    assert!(out.join(id.to_string()).is_dir());
}

/// Finding 9, end to end: two fetchers of one mailbox into two directories.
/// Whatever the interleaving, each message ends up in exactly one of them.
#[test]
fn two_fetchers_into_two_directories_never_both_keep_a_message() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let mut sent = BTreeSet::new();
    for i in 0..40 {
        let m = seal(dir.path(), &format!("m{i}.sxf"), &["bob"], "race", 0);
        sent.insert(server.send_ok(&m));
    }
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let fetch = |out: &Path| {
        let mut c = sxf();
        c.args(["fetch", "--server", &server.addr, "--key"])
            .arg(key("bob.key"))
            .arg("--out-dir")
            .arg(out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    let (fa, fb) = (fetch(&a), fetch(&b));
    for f in [fa, fb] {
        let o = f.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    let ids = |d: &Path| -> BTreeSet<String> {
        saved_archives(d)
            .iter()
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    let (in_a, in_b) = (ids(&a), ids(&b));
    let both: Vec<_> = in_a.intersection(&in_b).collect();
    assert!(both.is_empty(), "{} kept by both: {both:?}", both.len());
    let all: BTreeSet<String> = in_a.union(&in_b).cloned().collect();
    assert_eq!(all, sent);
    assert!(server.mailbox_files("bob").is_empty());
}

/// Finding 9: with one output directory, one fetcher's start-up sweep removed
/// the other's download in progress.
#[test]
fn a_second_fetch_into_a_directory_in_use_is_refused_and_removes_nothing() {
    let id = MessageId::generate().unwrap();
    let fake = Fake::answering(move |request, s| match request {
        Request::List => s.list(vec![entry(id, 100_000)]),
        // A download that starts and then stalls.
        Request::Get(_) => {
            s.reply(&Reply::Get(100_000))?;
            s.reply(&Reply::Data(vec![0x5a; 10]))?;
            thread::sleep(Duration::from_secs(120));
            Ok(())
        }
        other => panic!("unexpected {other:?}"),
    });
    let dir = tempdir();
    let out = dir.path().join("in");
    let _first = Kill(
        fake.fetch(&out, &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let parts = || -> Vec<String> {
        std::fs::read_dir(&out)
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(".sxf-fetch-") && n.ends_with(".part"))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        eventually(Duration::from_secs(30), || !parts().is_empty()),
        "the first fetch started no download"
    );
    let before = parts();
    // A server that refuses connections: the second fetch should not get
    // that far.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut second = sxf();
    second
        .args(["fetch", "--server", &closed.to_string(), "--key"])
        .arg(key("bob.key"))
        .arg("--out-dir")
        .arg(&out);
    let o = run_within(second, Duration::from_secs(60)).unwrap();
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("another fetch is already saving into"), "{e}");
    assert!(e.contains(&out.display().to_string()), "{e}");
    assert_eq!(parts(), before, "the first fetch's download is untouched");
}

/// The lock is the system's, on an open file: a second hold fails while the
/// first lives, in the same process too, and the directory is free again once
/// it is dropped.
#[test]
fn an_output_directory_is_held_until_its_lock_is_dropped() {
    use sxf::dropbox::client;
    let dir = tempdir();
    let first = client::lock_out_dir(dir.path()).unwrap();
    match client::lock_out_dir(dir.path()) {
        Err(sxf::dropbox::Error::OutDirBusy { dir: d }) => {
            assert_eq!(d, dir.path().display().to_string())
        }
        other => panic!("a second hold: {other:?}"),
    }
    drop(first);
    client::lock_out_dir(dir.path()).unwrap();
    assert!(dir.path().join(client::FETCH_LOCK_NAME).is_file());
}
