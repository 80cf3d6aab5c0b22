//! Shared helpers for the drop-box tests: a guard that runs the real `sxf serve`
//! binary on 127.0.0.1 with an ephemeral port and kills it on drop, sealing via
//! the real CLI, and a raw protocol client for hostile tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sxf::dropbox::protocol::{self, ErrorCode, Hello, Reply, Request};

pub const SXF: &str = env!("CARGO_BIN_EXE_sxf");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A key file by name: alice and bob live in keys/, the rest in tests/keys/.
pub fn key(name: &str) -> PathBuf {
    let (stem, ext) = name.split_once('.').expect("name.ext");
    match stem {
        "alice" | "bob" => repo().join("keys").join(format!("{stem}.{ext}")),
        _ => repo().join("tests/keys").join(format!("{stem}.{ext}")),
    }
}

pub fn fingerprint(name: &str) -> sxf::keys::Fingerprint {
    sxf::keys::load_public_key(&key(&format!("{name}.pub")))
        .unwrap()
        .fingerprint()
        .clone()
}

pub fn private_key(name: &str) -> sxf::keys::PrivateKeyInfo {
    sxf::keys::load_private_key(&key(&format!("{name}.key")), || {
        Ok(Some(zeroize::Zeroizing::new(
            "carol-passphrase".to_string(),
        )))
    })
    .unwrap()
}

pub fn sxf() -> Command {
    let mut c = Command::new(SXF);
    c.env_remove("SXF_PASSPHRASE")
        .env("SXF_HOME", fresh_home())
        .stdin(Stdio::null());
    c
}

/// A config directory of its own for each command (not created): the
/// known-servers file a send or fetch writes on first contact with a server
/// never meets another test's server that got the same port. A test that
/// needs one directory across commands sets `SXF_HOME` itself.
pub fn fresh_home() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("sxf-homes")
        .join(format!("{}-{n}", std::process::id()))
}

/// Runs sxf and returns its output (never panics on a failed exit).
pub fn run(args: &[&str]) -> Output {
    sxf().args(args).output().expect("run sxf")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Seals `message` from alice to `to` (key names) into `dir/name`, optionally
/// with an attachment of `attach_len` pseudo-random bytes.
pub fn seal(dir: &Path, name: &str, to: &[&str], message: &str, attach_len: usize) -> PathBuf {
    seal_from(dir, name, "alice", to, message, attach_len)
}

pub fn seal_from(
    dir: &Path,
    name: &str,
    from: &str,
    to: &[&str],
    message: &str,
    attach_len: usize,
) -> PathBuf {
    let out = dir.join(name);
    let mut c = sxf();
    // --no-self: the drop-box tests count mailboxes, so each archive goes to
    // exactly the recipients named.
    c.args(["seal", "--no-self", "-m", message, "--sign"])
        .arg(key(&format!("{from}.key")))
        .arg("-o")
        .arg(&out);
    for t in to {
        c.arg("--to").arg(key(&format!("{t}.pub")));
    }
    if attach_len > 0 {
        let att = dir.join(format!("{name}.bin"));
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ attach_len as u64;
        let data: Vec<u8> = (0..attach_len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(&att, data).unwrap();
        c.arg("--attach").arg(&att);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "seal failed: {}", text(&o.stderr));
    out
}

/// The real `sxf serve`, killed on drop.
pub struct Server {
    child: Option<Child>,
    pub addr: String,
    pub store: PathBuf,
    log: Arc<(Mutex<Vec<String>>, Condvar)>,
    pub extra: Vec<String>,
}

impl Server {
    pub fn start(store: &Path, extra: &[&str]) -> Server {
        Self::start_on(store, "127.0.0.1:0", extra)
    }

    pub fn start_on(store: &Path, listen: &str, extra: &[&str]) -> Server {
        let mut child = sxf()
            .args(["serve", "--listen", listen, "--store"])
            .arg(store)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sxf serve");
        let stderr = child.stderr.take().unwrap();
        let log: Arc<(Mutex<Vec<String>>, Condvar)> = Arc::default();
        let thread_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let (lines, cv) = &*thread_log;
                lines.lock().unwrap().push(line);
                cv.notify_all();
            }
            thread_log.0.lock().unwrap().push("<eof>".into());
            thread_log.1.notify_all();
        });
        let mut server = Server {
            child: Some(child),
            addr: String::new(),
            store: store.to_owned(),
            log,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        assert!(
            server.wait_for_log("listening on ", Duration::from_secs(20)),
            "server did not start: {:?}",
            server.log()
        );
        let first = server.log()[0].clone();
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line must be the listening line, got {first:?}"));
        assert!(!addr.ends_with(":0"), "the real port is reported");
        server.addr = addr.to_owned();
        // The store report follows the listening line.
        assert!(
            server.wait_for_log(" limits: ", Duration::from_secs(20)),
            "{:?}",
            server.log()
        );
        server
    }

    /// Starts a server, reads its first lines, then closes the reading end of
    /// its stderr, as `sxf serve 2>&1 | tee log` does when `tee` is gone.
    pub fn start_then_close_log(store: &Path) -> Server {
        let mut child = sxf()
            .args(["serve", "--listen", "127.0.0.1:0", "--store"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sxf serve");
        let mut reader = BufReader::new(child.stderr.take().unwrap());
        let mut lines: Vec<String> = Vec::new();
        while !lines.iter().any(|l| l.contains(" limits: ")) {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).unwrap() > 0, "{lines:?}");
            lines.push(line.trim_end().to_owned());
        }
        drop(reader);
        let addr = lines[0].strip_prefix("listening on ").unwrap().to_owned();
        lines.push("<eof>".into());
        Server {
            child: Some(child),
            addr,
            store: store.to_owned(),
            log: Arc::new((Mutex::new(lines), Condvar::new())),
            extra: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> Vec<String> {
        self.log.0.lock().unwrap().clone()
    }

    /// Waits until some log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lines, cv) = &*self.log;
        let mut g = lines.lock().unwrap();
        loop {
            if g.iter().any(|l| l.contains(needle)) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || g.last().is_some_and(|l| l == "<eof>") {
                return false;
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// Waits until at least `n` log lines contain `needle`.
    pub fn wait_for_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lines, cv) = &*self.log;
        let mut g = lines.lock().unwrap();
        loop {
            if g.iter().filter(|l| l.contains(needle)).count() >= n {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || g.last().is_some_and(|l| l == "<eof>") {
                return false;
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    pub fn count_log(&self, needle: &str) -> usize {
        self.log().iter().filter(|l| l.contains(needle)).count()
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait up to `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let ok = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a new server on the same store with the same options.
    pub fn restart(&mut self) -> Server {
        self.kill();
        let extra: Vec<&str> = self.extra.iter().map(|s| s.as_str()).collect();
        Server::start(&self.store, &extra)
    }

    /// `sxf send FILE --server ADDR`.
    pub fn send(&self, file: &Path) -> Output {
        sxf()
            .arg("send")
            .arg(file)
            .args(["--server", &self.addr])
            .output()
            .unwrap()
    }

    /// Sends and returns the printed message id.
    pub fn send_ok(&self, file: &Path) -> String {
        let o = self.send(file);
        assert!(o.status.success(), "send failed: {}", text(&o.stderr));
        let id = text(&o.stdout).trim().to_owned();
        assert_eq!(id.len(), 32, "message id: {id:?}");
        id
    }

    /// `sxf fetch --server ADDR --key KEY --out-dir DIR [extra]`.
    pub fn fetch(&self, who: &str, out: &Path, extra: &[&str]) -> Output {
        let mut c = sxf();
        c.args(["fetch", "--server", &self.addr, "--key"])
            .arg(key(&format!("{who}.key")))
            .arg("--out-dir")
            .arg(out)
            .args(extra);
        if who == "carol" {
            c.env("SXF_PASSPHRASE", "carol-passphrase");
        }
        c.output().unwrap()
    }

    /// The directory of a mailbox in the store.
    pub fn mailbox_dir(&self, who: &str) -> PathBuf {
        let fp = fingerprint(who).to_string();
        self.store.join("mailboxes").join(&fp["sha256:".len()..])
    }

    /// Every file in a mailbox directory, sorted.
    pub fn mailbox_all_files(&self, who: &str) -> Vec<String> {
        let mut v: Vec<String> = match std::fs::read_dir(self.mailbox_dir(who)) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v
    }

    /// Files in a mailbox, straight from the store directory, less the digest
    /// records (`.<id>.sha256`) that sit beside the waiting messages.
    pub fn mailbox_files(&self, who: &str) -> Vec<String> {
        self.mailbox_all_files(who)
            .into_iter()
            .filter(|n| !n.ends_with(".sha256"))
            .collect()
    }

    pub fn tmp_files(&self) -> Vec<String> {
        std::fs::read_dir(self.store.join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// A raw connection that has read the HELLO.
    pub fn raw(&self) -> Raw {
        Raw::connect(&self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Files in `dir` named `<32 hex>.sxf`, sorted.
pub fn saved_archives(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().path())
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "sxf")
                        && p.file_stem().is_some_and(|s| s.len() == 32)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A TLS session to a drop-box server, as the raw client speaks it.
pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A raw protocol connection over TLS, for hostile clients. It accepts any
/// server certificate (it is not the client under test) and can compute its
/// session's AUTH binding, so attack tests can build their own statements.
pub struct Raw {
    pub stream: Tls,
    pub hello: Hello,
}

impl Raw {
    pub fn connect(addr: &str) -> Raw {
        let stream = Raw::tls(addr);
        let mut raw = Raw {
            stream,
            hello: Hello {
                server_id: [0; 32],
                max_message_size: 0,
                max_wait_secs: 0,
            },
        };
        match raw.reply() {
            Reply::Hello(h) => raw.hello = h,
            other => panic!("expected HELLO, got {other:?}"),
        }
        raw
    }

    /// A plain TCP connection, no TLS, nothing read: what a server at its
    /// connection cap answers with one plaintext BUSY frame.
    pub fn bare(addr: &str) -> TcpStream {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s
    }

    /// A finished TLS handshake, the HELLO not yet read.
    pub fn tls(addr: &str) -> Tls {
        Raw::try_tls(addr).expect("a TLS handshake")
    }

    /// A TLS handshake, or the error that stopped it (a server at its cap
    /// answers in plaintext, which is no TLS).
    pub fn try_tls(addr: &str) -> std::io::Result<Tls> {
        let mut sock = Raw::bare(addr);
        let (config, _verifier) = sxf::dropbox::tls::client_config(None).unwrap();
        let mut conn =
            rustls::ClientConnection::new(config, sxf::dropbox::tls::server_name(addr)).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        Ok(rustls::StreamOwned::new(conn, sock))
    }

    /// The id the server's certificate shows.
    pub fn cert_id(&self) -> [u8; 32] {
        let cert = &self.stream.conn.peer_certificates().unwrap()[0];
        sxf::dropbox::tls::server_id_of_cert(cert.as_ref()).unwrap()
    }

    /// This session's AUTH binding for the challenge `nonce`.
    pub fn binding(&self, nonce: &[u8; 32]) -> [u8; 32] {
        sxf::dropbox::tls::auth_binding(&self.stream.conn, nonce).unwrap()
    }

    pub fn reply(&mut self) -> Reply {
        read_reply(&mut self.stream).expect("a reply frame")
    }

    pub fn request(&mut self, r: &Request) -> Reply {
        protocol::write_request(&mut self.stream, r).unwrap();
        self.reply()
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
        self.stream.flush().unwrap();
    }

    /// Every reply left to read once the server cut the connection, even
    /// after a write of ours failed (the TLS stream would first retry that
    /// write, so this reads the socket directly).
    pub fn replies_after_cut(&mut self) -> Vec<Reply> {
        let mut plain = Vec::new();
        let tls = &mut self.stream;
        loop {
            let more = matches!(tls.conn.read_tls(&mut tls.sock), Ok(n) if n > 0);
            if tls.conn.process_new_packets().is_err() {
                break;
            }
            let _ = tls.conn.reader().read_to_end(&mut plain);
            if !more {
                break;
            }
        }
        let mut rest = &plain[..];
        std::iter::from_fn(|| read_reply(&mut rest)).collect()
    }

    /// True when the server closed the connection (reads end or reset).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}

pub fn read_reply(s: &mut impl Read) -> Option<Reply> {
    let frame = protocol::read_frame(s).ok()?;
    Reply::decode(frame).ok()
}

/// Asserts that `r` is an ERROR with `code`, and returns its sentence.
#[track_caller]
pub fn expect_error(r: Reply, code: ErrorCode) -> String {
    match r {
        Reply::Error { code: c, message } => {
            assert_eq!(c, code, "error code (message: {message})");
            assert!(!message.is_empty(), "every error has a sentence");
            message
        }
        other => panic!("expected error {code:?}, got {other:?}"),
    }
}

/// CPU time (user + system) of a process, from /proc, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let utime: f64 = fields[11].parse().unwrap();
    let stime: f64 = fields[12].parse().unwrap();
    (utime + stime) / 100.0
}
