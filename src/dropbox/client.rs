//! The drop-box client: upload an archive, prove a mailbox with its private key,
//! list, download, delete and long-poll.
//!
//! Downloads are written the way the issue demands: a temp file in the output
//! directory, fsync, a rename that never replaces anything, an fsync of the
//! directory, and only then DELETE on the server. A fetch cut at any point
//! therefore loses nothing, and a message already saved under its id is not
//! saved twice. The client signs only statements it builds itself
//! ([`Statement`]), from fixed-length fields, under the protocol label.
//!
//! A hostile server is kept within bounds the client sets itself: a total time
//! limit on each connection counted from its TCP connect
//! ([`ClientOptions::total_timeout`]), the largest message it downloads, and
//! caps on what one run takes ([`Budget`]). Two fetches cannot share an
//! output directory ([`lock_out_dir`]), and a message two fetchers both
//! downloaded is kept by the one whose DELETE succeeded ([`TakenCopy`]).

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::keys::PrivateKeyInfo;

use super::Error;
use super::protocol::{
    self, AuthRequest, ErrorCode, FrameError, Hello, ListEntry, MAX_DATA_BODY, MessageId, Reply,
    Request, Statement,
};
use super::tls;

/// Prefix of the temp files a fetch writes into its output directory.
pub const FETCH_TEMP_PREFIX: &str = ".sxf-fetch-";

/// How the client connects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// Deadline of every read and write (a WAIT adds its own duration).
    pub io_timeout: Duration,
    /// Accept only the server whose TLS certificate has this id (SHA-256 of
    /// its SubjectPublicKeyInfo); `None` accepts any (trust on first use: the
    /// caller records [`Client::server_id`]).
    pub server_id: Option<[u8; 32]>,
    /// The largest message this client downloads, whatever the server's HELLO
    /// says: a hostile server cannot fill the disk with one.
    pub max_message_size: u64,
    /// The longest the connection may last, counted from the start of
    /// [`Client::connect`]: the TCP connect, the TLS handshake and the HELLO
    /// count, so a server that trickles any of them cannot hold the client
    /// past it. When it passes the connection is cut and the call under way
    /// fails with [`Error::TimedOut`]. `None`: only `io_timeout` bounds each
    /// read and write.
    pub total_timeout: Option<Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(60),
            server_id: None,
            max_message_size: super::DEFAULT_MAX_MESSAGE_SIZE,
            total_timeout: None,
        }
    }
}

/// The TLS session over the socket. A server that closes without a TLS
/// close_notify reads as a plain end of stream: frames carry their lengths, so
/// a cut inside one is still an error.
struct TlsIo(rustls::StreamOwned<rustls::ClientConnection, TcpStream>);

impl Read for TlsIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            r => r,
        }
    }
}

impl Write for TlsIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// A connection to a drop-box server.
pub struct Client {
    io: BufReader<TlsIo>,
    addr: String,
    server_id: [u8; 32],
    peer: SocketAddr,
    hello: Hello,
    io_timeout: Duration,
    max_message_size: u64,
    /// Cuts the connection at [`ClientOptions::total_timeout`].
    timer: Option<Timer>,
}

/// What the server said to an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: MessageId,
    pub recipients: u16,
    pub len: u64,
}

impl Client {
    /// Connects and reads the server's HELLO (a BUSY server answers with an
    /// error instead, returned as [`Error::Refused`]).
    pub fn connect(addr: &str, options: &ClientOptions) -> Result<Client, Error> {
        let started = Instant::now();
        let stream = tcp_connect(addr, options, started)?;
        let timer = match options.total_timeout {
            Some(limit) => Some(Timer::start(&stream, started + limit, limit, addr)?),
            None => None,
        };
        let timed_out = |e| match &timer {
            Some(t) => t.blame(e),
            None => e,
        };
        let setup = |s: &TcpStream| -> io::Result<SocketAddr> {
            s.set_read_timeout(Some(options.io_timeout))?;
            s.set_write_timeout(Some(options.io_timeout))?;
            s.set_nodelay(true)?;
            s.peer_addr()
        };
        let peer = setup(&stream).map_err(|e| Error::conn(format!("connecting to {addr}"), e))?;
        let (tls, server_id) = handshake(addr, stream, options.server_id).map_err(timed_out)?;
        let mut client = Client {
            io: BufReader::with_capacity(protocol::HEADER_LEN + MAX_DATA_BODY as usize, tls),
            addr: addr.to_owned(),
            server_id,
            peer,
            hello: Hello {
                server_id: [0; 32],
                max_message_size: 0,
                max_wait_secs: 0,
            },
            io_timeout: options.io_timeout,
            max_message_size: options.max_message_size,
            timer,
        };
        match client.recv()? {
            Reply::Hello(h) => client.hello = h,
            other => return Err(unexpected("HELLO", &other)),
        }
        if client.hello.server_id != server_id {
            return Err(Error::Protocol(format!(
                "the server's HELLO names server id {}, but its TLS certificate is {}",
                hex::encode(client.hello.server_id),
                hex::encode(server_id)
            )));
        }
        Ok(client)
    }

    /// The server's id, from its TLS certificate (SHA-256 of the certificate's
    /// SubjectPublicKeyInfo DER): the pinned one, or, on first use, the one to
    /// record.
    pub fn server_id(&self) -> [u8; 32] {
        self.server_id
    }

    fn socket(&self) -> &TcpStream {
        &self.io.get_ref().0.sock
    }

    /// The server's HELLO.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// The address this connection reached.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// What is left of [`ClientOptions::total_timeout`]; `None` without one.
    pub fn time_left(&self) -> Option<Duration> {
        self.timer
            .as_ref()
            .map(|t| t.at.saturating_duration_since(Instant::now()))
    }

    /// `e`, or [`Error::TimedOut`] when the total timeout cut the connection
    /// (which is then why the connection failed).
    fn timed_out(&self, e: Error) -> Error {
        match &self.timer {
            Some(t) => t.blame(e),
            None => e,
        }
    }

    fn send(&mut self, r: &Request) -> Result<(), Error> {
        protocol::write_request(self.io.get_mut(), r)
            .map_err(|e| self.timed_out(Error::conn(format!("sending to {}", self.addr), e)))
    }

    /// Reads one reply; an ERROR frame becomes [`Error::Refused`].
    fn recv(&mut self) -> Result<Reply, Error> {
        let frame = protocol::read_frame(&mut self.io).map_err(|e| self.read_error(e))?;
        match Reply::decode(frame).map_err(|e| Error::Protocol(e.to_string()))? {
            Reply::Error { code, message } => Err(Error::Refused { code, message }),
            r => Ok(r),
        }
    }

    fn read_error(&self, e: FrameError) -> Error {
        let e = match e {
            FrameError::Closed => Error::conn(
                format!("reading from {}", self.addr),
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ),
            ),
            FrameError::Io(e) => Error::conn(format!("reading from {}", self.addr), e),
            other => Error::Protocol(other.to_string()),
        };
        self.timed_out(e)
    }

    fn expect_ok(&mut self, what: &str) -> Result<(), Error> {
        match self.recv()? {
            Reply::Ok => Ok(()),
            other => Err(unexpected(what, &other)),
        }
    }

    /// After a failed write, the server may have explained itself in an ERROR
    /// frame before closing: prefer that to the bare socket error.
    fn explain(&mut self, err: Error) -> Error {
        let _ = self.socket().set_read_timeout(Some(Duration::from_secs(2)));
        match self.recv() {
            Err(refused @ Error::Refused { .. }) => refused,
            _ => err,
        }
    }

    /// Uploads an archive file.
    pub fn upload_file(&mut self, path: &Path) -> Result<Stored, Error> {
        let file = File::open(path).map_err(|e| Error::io(path.display().to_string(), e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(path.display().to_string(), e))?
            .len();
        self.upload(file, len)
    }

    /// Uploads exactly `len` bytes from `data`. The server answers the announced
    /// length first, so a refusal for size, disk or load comes before any data.
    pub fn upload(&mut self, mut data: impl Read, len: u64) -> Result<Stored, Error> {
        self.send(&Request::Upload(len))?;
        self.expect_ok("UPLOAD")?;
        let mut buf = vec![0u8; MAX_DATA_BODY as usize];
        let mut sent = 0u64;
        while sent < len {
            let want = (len - sent).min(buf.len() as u64) as usize;
            let n = crate::crypto::read_full(&mut data, &mut buf[..want])
                .map_err(|e| Error::io("reading the archive", e))?;
            if n == 0 {
                return Err(Error::io(
                    "reading the archive",
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file shrank while it was sent",
                    ),
                ));
            }
            if let Err(e) =
                protocol::write_frame(self.io.get_mut(), protocol::kind::DATA, &buf[..n])
            {
                let err = self.timed_out(Error::conn(format!("sending to {}", self.addr), e));
                return Err(self.explain(err));
            }
            sent += n as u64;
        }
        match self.recv()? {
            Reply::Stored { id, recipients } => Ok(Stored {
                id,
                recipients,
                len,
            }),
            other => Err(unexpected("the upload", &other)),
        }
    }

    /// Proves to the server that this client holds `key`, the key of the mailbox
    /// `key.fingerprint()`.
    pub fn authenticate(&mut self, key: &PrivateKeyInfo) -> Result<(), Error> {
        self.send(&Request::Challenge)?;
        let server_nonce = match self.recv()? {
            Reply::Challenge(n) => n,
            other => return Err(unexpected("CHALLENGE", &other)),
        };
        let binding = tls::auth_binding(&self.io.get_ref().0.conn, &server_nonce)
            .map_err(|e| Error::Protocol(format!("no TLS binding for the statement: {e}")))?;
        let auth = sign_statement(key, self.server_id, server_nonce, binding)?;
        self.send(&Request::Auth(auth))?;
        self.expect_ok("AUTH")
    }

    /// The oldest waiting messages (at most [`protocol::MAX_LIST_ENTRIES`]) and
    /// whether more wait behind them.
    pub fn list(&mut self) -> Result<(Vec<ListEntry>, bool), Error> {
        self.send(&Request::List)?;
        match self.recv()? {
            Reply::List { entries, more } => Ok((entries, more)),
            other => Err(unexpected("LIST", &other)),
        }
    }

    /// Downloads one message into `out`; returns its length.
    pub fn download(&mut self, id: MessageId, out: &mut impl Write) -> Result<u64, Error> {
        self.send(&Request::Get(id))?;
        let len = self.announced_len(None)?;
        self.receive(len, out)
    }

    /// Downloads a message LIST showed, refusing a GET that announces another
    /// length than the listing did: what a caller counted from the listing
    /// is what arrives.
    fn download_listed(&mut self, entry: &ListEntry, out: &mut impl Write) -> Result<u64, Error> {
        self.send(&Request::Get(entry.id))?;
        let len = self.announced_len(Some(entry))?;
        self.receive(len, out)
    }

    /// The length a GET reply announces, checked against both sides' limits
    /// and, for a listed message, its listing.
    fn announced_len(&mut self, listed: Option<&ListEntry>) -> Result<u64, Error> {
        let len = match self.recv()? {
            Reply::Get(n) => n,
            other => return Err(unexpected("GET", &other)),
        };
        if let Some(entry) = listed
            && len != entry.len
        {
            return Err(Error::Protocol(format!(
                "the GET of {} announced {len} bytes, but the server listed it as {} bytes",
                entry.id, entry.len
            )));
        }
        if len > self.hello.max_message_size {
            return Err(Error::Protocol(format!(
                "the server announced a {len}-byte message, over its own limit of {}",
                self.hello.max_message_size
            )));
        }
        if len > self.max_message_size {
            return Err(Error::Protocol(format!(
                "the server announced a {len}-byte message, over this client's limit of {} \
                 (--max-size); it is left on the server",
                self.max_message_size
            )));
        }
        Ok(len)
    }

    /// The `len` bytes of a GET, as DATA frames, into `out`.
    fn receive(&mut self, len: u64, out: &mut impl Write) -> Result<u64, Error> {
        let mut got = 0u64;
        while got < len {
            match self.recv()? {
                Reply::Data(d) if !d.is_empty() && got + d.len() as u64 <= len => {
                    out.write_all(&d)
                        .map_err(|e| Error::io("writing the downloaded message", e))?;
                    got += d.len() as u64;
                }
                Reply::Data(_) => {
                    return Err(Error::Protocol(
                        "a DATA frame overran the announced length".into(),
                    ));
                }
                other => return Err(unexpected("the download", &other)),
            }
        }
        Ok(len)
    }

    /// Deletes one message; `false` when it was already gone.
    pub fn delete(&mut self, id: MessageId) -> Result<bool, Error> {
        self.send(&Request::Delete(id))?;
        match self.recv() {
            Ok(Reply::Ok) => Ok(true),
            Ok(other) => Err(unexpected("DELETE", &other)),
            Err(Error::Refused {
                code: ErrorCode::NotFound,
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Long-polls: returns true as soon as the mailbox holds a message, false
    /// when the server's wait ran out. The server holds the request; nothing
    /// here sleeps or polls.
    pub fn wait(&mut self, max: Duration) -> Result<bool, Error> {
        let secs = max.as_secs().min(u32::MAX as u64) as u32;
        self.send(&Request::Wait(secs))?;
        let _ = self.socket().set_read_timeout(Some(max + self.io_timeout));
        let reply = self.recv();
        let _ = self.socket().set_read_timeout(Some(self.io_timeout));
        match reply? {
            Reply::Wait { ready } => Ok(ready),
            other => Err(unexpected("WAIT", &other)),
        }
    }
}

impl Drop for Client {
    /// Says goodbye with a TLS close_notify, briefly, if the socket takes it.
    fn drop(&mut self) {
        let TlsIo(tls) = self.io.get_mut();
        let _ = tls.sock.set_write_timeout(Some(Duration::from_secs(1)));
        tls.conn.send_close_notify();
        while tls.conn.wants_write() {
            if tls.conn.write_tls(&mut tls.sock).is_err() {
                break;
            }
        }
    }
}

/// The TLS 1.3 handshake on a connected socket, accepting only `pinned` (any
/// server key when `None`). Returns the session and the server id its
/// certificate showed. A server at its connection cap answers the ClientHello
/// with one plaintext BUSY frame instead (`SXFD` where a TLS record would
/// start): that becomes [`Error::Refused`].
fn handshake(
    addr: &str,
    mut sock: TcpStream,
    pinned: Option<[u8; 32]>,
) -> Result<(TlsIo, [u8; 32]), Error> {
    let setup_err = |e: rustls::Error| Error::Protocol(format!("setting up TLS: {e}"));
    let (config, verifier) = tls::client_config(pinned).map_err(setup_err)?;
    let mut conn =
        rustls::ClientConnection::new(config, tls::server_name(addr)).map_err(setup_err)?;
    let conn_err = |e| Error::conn(format!("TLS handshake with {addr}"), e);
    while conn.wants_write() {
        conn.write_tls(&mut sock).map_err(conn_err)?;
    }
    let mut first = [0u8; 1];
    if let Ok(1) = sock.peek(&mut first)
        && first[0] == protocol::MAGIC[0]
    {
        let mut plain = BufReader::new(&sock);
        return Err(match protocol::read_frame(&mut plain).map(Reply::decode) {
            Ok(Ok(Reply::Error { code, message })) => Error::Refused { code, message },
            _ => Error::Protocol(format!(
                "{addr} answered the TLS handshake with something that is neither TLS nor \
                 a drop-box refusal"
            )),
        });
    }
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            if let (Some(expected), Some(found)) = (pinned, verifier.seen())
                && expected != found
            {
                return Err(Error::ServerMismatch {
                    addr: addr.to_owned(),
                    expected: hex::encode(expected),
                    found: hex::encode(found),
                });
            }
            return Err(conn_err(e));
        }
    }
    let found = verifier
        .seen()
        .ok_or_else(|| Error::Protocol("the server showed no certificate".into()))?;
    Ok((TlsIo(rustls::StreamOwned::new(conn, sock)), found))
}

/// The first reachable address of `addr`, connected. Each attempt is bounded
/// by the connect timeout and by what is left of the total one, counted from
/// `started`, however many addresses the name has. (Resolving the name has
/// no bound but the system resolver's own.)
fn tcp_connect(addr: &str, options: &ClientOptions, started: Instant) -> Result<TcpStream, Error> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| Error::conn(format!("resolving {addr}"), e))?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    for a in &addrs {
        let attempt = match options.total_timeout {
            None => options.connect_timeout,
            Some(limit) => match limit.checked_sub(started.elapsed()) {
                Some(left) if !left.is_zero() => left.min(options.connect_timeout),
                _ => {
                    return Err(Error::TimedOut {
                        addr: addr.to_owned(),
                        limit,
                    });
                }
            },
        };
        match TcpStream::connect_timeout(a, attempt) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(Error::conn(format!("connecting to {addr}"), last))
}

/// Shuts a connection's socket down at a fixed instant, from a thread of its
/// own, unless dropped first: a read or write under way then fails at once,
/// however the server dribbles. Except on Windows, where a shutdown does not
/// wake a read already blocked (rust-lang/rust#121594): that one read ends at
/// its own timeout (`io_timeout`, or a WAIT's length more), or with the next
/// byte the server sends; every later call fails at once.
struct Timer {
    at: Instant,
    limit: Duration,
    addr: String,
    expired: Arc<AtomicBool>,
    _cancel: mpsc::Sender<()>,
}

impl Timer {
    fn start(stream: &TcpStream, at: Instant, limit: Duration, addr: &str) -> Result<Timer, Error> {
        let stream = stream
            .try_clone()
            .map_err(|e| Error::conn(format!("connecting to {addr}"), e))?;
        let expired = Arc::new(AtomicBool::new(false));
        let (cancel, cancelled) = mpsc::channel::<()>();
        let flag = expired.clone();
        std::thread::Builder::new()
            .name("sxf-client-deadline".into())
            .spawn(move || {
                let left = at.saturating_duration_since(Instant::now());
                if let Err(mpsc::RecvTimeoutError::Timeout) = cancelled.recv_timeout(left) {
                    flag.store(true, Ordering::SeqCst);
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                }
            })
            .map_err(|e| Error::io("starting the deadline thread", e))?;
        Ok(Timer {
            at,
            limit,
            addr: addr.to_owned(),
            expired,
            _cancel: cancel,
        })
    }

    /// A connection or protocol failure after the timer fired is its doing.
    fn blame(&self, e: Error) -> Error {
        match e {
            Error::Connection { .. } | Error::Protocol(_)
                if self.expired.load(Ordering::SeqCst) =>
            {
                Error::TimedOut {
                    addr: self.addr.clone(),
                    limit: self.limit,
                }
            }
            e => e,
        }
    }
}

fn unexpected(what: &str, got: &Reply) -> Error {
    let name = match got {
        Reply::Hello(_) => "HELLO",
        Reply::Challenge(_) => "CHALLENGE",
        Reply::Ok => "OK",
        Reply::List { .. } => "LIST",
        Reply::Get(_) => "GET",
        Reply::Wait { .. } => "WAIT",
        Reply::Stored { .. } => "STORED",
        Reply::Data(_) => "DATA",
        Reply::Error { .. } => "ERROR",
    };
    Error::Protocol(format!(
        "the server answered {what} with an unexpected {name} frame"
    ))
}

/// Builds and signs the AUTH statement. The server contributes only its
/// 32-byte nonce; the server id comes from its TLS certificate, and
/// `tls_binding` from the TLS session ([`tls::auth_binding`]).
pub fn sign_statement(
    key: &PrivateKeyInfo,
    server_id: [u8; 32],
    server_nonce: [u8; 32],
    tls_binding: [u8; 32],
) -> Result<AuthRequest, Error> {
    let client_nonce =
        protocol::random_nonce().map_err(|e| Error::io("the system random source", e))?;
    let statement = Statement {
        server_id,
        mailbox: *key.fingerprint().as_bytes(),
        server_nonce,
        client_nonce,
        tls_binding,
    };
    let signature = crate::crypto::sign(&mut rand::rngs::SysRng, key.key(), &statement.to_bytes())
        .map_err(|e| Error::io("signing the challenge", e))?;
    Ok(AuthRequest {
        statement,
        spki: key.public().spki_der().to_vec(),
        signature,
    })
}

/// One message a fetch saved.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub id: MessageId,
    pub path: PathBuf,
    pub len: u64,
    /// An earlier, interrupted fetch had already saved it; only the DELETE was missing.
    pub already_saved: bool,
}

/// What became of one listed message, as [`fetch_all`] reports it.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Saved in the output directory and deleted on the server.
    Fetched(Fetched),
    /// Another fetcher of the mailbox took it first.
    Taken(Taken),
}

/// A message another fetcher of the mailbox took first: the server answered
/// its GET or its DELETE `not-found`.
#[derive(Debug, Clone)]
pub struct Taken {
    pub id: MessageId,
    pub copy: TakenCopy,
}

/// What became of this fetch's copy of a [`Taken`] message.
#[derive(Debug, Clone)]
pub enum TakenCopy {
    /// Gone by its GET: nothing was saved.
    NotSaved,
    /// Gone by its DELETE: the copy saved here, never opened, was removed, so
    /// that only the fetcher that deleted the message keeps it.
    Removed(PathBuf),
    /// Gone by its DELETE, but the copy here had already been opened into
    /// `opened` (`out_dir/<id>/`, by a `fetch --open` that resumed it): both
    /// are kept.
    KeptOpened { archive: PathBuf, opened: PathBuf },
}

/// The file a fetch holds locked in its output directory while it runs
/// ([`lock_out_dir`]); it is never removed.
pub const FETCH_LOCK_NAME: &str = ".sxf-fetch.lock";

/// A fetch's hold on its output directory, given up when dropped (or when the
/// process ends, however it ends).
#[derive(Debug)]
pub struct OutDirLock {
    _file: File,
}

/// Takes `out_dir` for one fetch, before anything in it is looked at: a
/// second fetch into the same directory would sweep away this one's downloads
/// in progress ([`sweep_fetch_temps`]) and race it for the same files. Fails
/// at once, without waiting, with [`Error::OutDirBusy`] while another fetch,
/// in this process or any other, holds it. The lock is the system's own on
/// [`FETCH_LOCK_NAME`] ([`File::try_lock`]), so a fetch that dies leaves
/// nothing stale behind.
pub fn lock_out_dir(out_dir: &Path) -> Result<OutDirLock, Error> {
    let path = out_dir.join(FETCH_LOCK_NAME);
    let io_err = |e| Error::io(path.display().to_string(), e);
    let mut options = crate::platform::private_file_options();
    options.read(true).write(true).create(true).truncate(false);
    crate::platform::do_not_follow(&mut options);
    let file = options.open(&path).map_err(io_err)?;
    if !file.metadata().map_err(io_err)?.is_file() {
        return Err(io_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    match file.try_lock() {
        Ok(()) => Ok(OutDirLock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => Err(Error::OutDirBusy {
            dir: out_dir.display().to_string(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(io_err(e)),
    }
}

/// Removes temp files that an interrupted fetch left in `out_dir`.
pub fn sweep_fetch_temps(out_dir: &Path) -> Result<u64, Error> {
    let mut n = 0;
    let rd = fs::read_dir(out_dir).map_err(|e| Error::io(out_dir.display().to_string(), e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(out_dir.display().to_string(), e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(FETCH_TEMP_PREFIX) && name.ends_with(".part") {
            fs::remove_file(entry.path())
                .map_err(|e| Error::io(entry.path().display().to_string(), e))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Removes the staging directories that an open into `out_dir`, ended before
/// it finished (killed, or a second Ctrl-C), left there: they hold part of a
/// decrypted archive. Only what [`crate::open::open`] makes is touched: a real
/// directory named [`crate::open::STAGING_PREFIX`] and letters and digits. A
/// symbolic link of that name is left alone, never followed, and so is
/// anything else in `out_dir`.
pub fn sweep_open_staging(out_dir: &Path) -> Result<u64, Error> {
    let mut n = 0;
    let rd = fs::read_dir(out_dir).map_err(|e| Error::io(out_dir.display().to_string(), e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(out_dir.display().to_string(), e))?;
        if !is_open_staging_name(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        let io_err = |e| Error::io(path.display().to_string(), e);
        // The entry itself, not what a link points at.
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(e)),
        };
        if !meta.file_type().is_dir() {
            continue;
        }
        // remove_dir_all follows no link inside the directory; should a link
        // take its place after the check, it removes the link itself.
        match fs::remove_dir_all(&path) {
            Ok(()) => n += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(n)
}

/// `.sxf-open-` and at least one ASCII letter or digit, nothing else: the
/// names tempfile gives [`crate::open::open`]'s staging directories.
fn is_open_staging_name(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .and_then(|n| n.strip_prefix(crate::open::STAGING_PREFIX))
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// An archive that a fetch saved into its output directory and that was never
/// opened there.
#[derive(Debug, Clone)]
pub struct Unopened {
    pub id: MessageId,
    /// `out_dir/<id>.sxf`.
    pub path: PathBuf,
}

/// The archives a fetch saved in `out_dir` that have not been opened there, in
/// the order they reached the server: each regular file named `<id>.sxf` (`id`
/// being a message id, 32 lowercase hex digits) with nothing named `<id>`
/// beside it. A fetch that opens what it saves but was stopped after the
/// DELETE, before the open finished, leaves exactly that. Nothing else in
/// `out_dir` is looked at.
pub fn saved_unopened(out_dir: &Path) -> Result<Vec<Unopened>, Error> {
    let mut found = Vec::new();
    let rd = fs::read_dir(out_dir).map_err(|e| Error::io(out_dir.display().to_string(), e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(out_dir.display().to_string(), e))?;
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".sxf"))
            .and_then(MessageId::parse)
        else {
            continue;
        };
        let path = entry.path();
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(path.display().to_string(), e)),
        };
        // A fetch saves regular files only.
        if !meta.file_type().is_file() {
            continue;
        }
        let opened = out_dir.join(id.to_string());
        match fs::symlink_metadata(&opened) {
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(opened.display().to_string(), e)),
        }
        found.push(Unopened { id, path });
    }
    // Ids sort by arrival on the server.
    found.sort_by_key(|u| u.id);
    Ok(found)
}

/// The caps on what one fetch run takes from the server, every session of a
/// `--watch` included, and what the run has used of them: a server that lists
/// new messages forever cannot fill the disk past them.
#[derive(Debug, Clone)]
pub struct Budget {
    max_messages: u64,
    max_bytes: u64,
    messages: u64,
    bytes: u64,
}

impl Budget {
    /// At most `max_messages` messages (each DELETE sent counts one) and
    /// `max_bytes` bytes downloaded.
    pub fn new(max_messages: u64, max_bytes: u64) -> Budget {
        Budget {
            max_messages,
            max_bytes,
            messages: 0,
            bytes: 0,
        }
    }

    /// Messages taken so far: each DELETE sent.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Bytes downloaded so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn max_messages(&self) -> u64 {
        self.max_messages
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The cap that taking a message of `len` bytes would pass; `download`
    /// is false for one already saved, which needs only its DELETE.
    fn exceeded_by(&self, len: u64, download: bool) -> Option<Cap> {
        if self.messages >= self.max_messages {
            return Some(Cap::Messages);
        }
        if download && self.bytes.saturating_add(len) > self.max_bytes {
            return Some(Cap::Bytes { next: len });
        }
        None
    }
}

/// The cap of a [`Budget`] that stopped a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// The run took its most messages.
    Messages,
    /// The next message, of `next` bytes, would take the run past its most
    /// bytes.
    Bytes { next: u64 },
}

/// Why [`fetch_all`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// LIST came back empty.
    Empty,
    /// Nothing the last LIST showed could be taken: each message was gone
    /// (`not-found`: another fetcher of the mailbox took it) by its GET or its
    /// DELETE. Asking again at once would most likely make no progress
    /// either: the caller should pause first, or stop.
    NoProgress,
    /// A cap of the [`Budget`] was reached; the rest waits on the server.
    Cap(Cap),
}

/// What [`fetch_all`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Messages saved and deleted on the server.
    pub fetched: usize,
    pub stop: Stop,
}

/// Downloads every waiting message into `out_dir` as `<id>.sxf`, each written
/// atomically and durably, and deletes each on the server only after that,
/// until LIST is empty, a cap of `budget` would be passed, or nothing a LIST
/// showed could be taken ([`Stop`]). `each` is told what became of each
/// message taken or found gone, after its DELETE.
pub fn fetch_all(
    client: &mut Client,
    out_dir: &Path,
    budget: &mut Budget,
    each: &mut dyn FnMut(&Outcome),
) -> Result<Summary, Error> {
    let mut fetched = 0;
    loop {
        let (entries, _more) = client.list()?;
        if entries.is_empty() {
            return Ok(Summary {
                fetched,
                stop: Stop::Empty,
            });
        }
        let mut progress = false;
        for entry in &entries {
            let earlier = saved_earlier(entry, out_dir)?;
            if let Some(cap) = budget.exceeded_by(entry.len, earlier.is_none()) {
                return Ok(Summary {
                    fetched,
                    stop: Stop::Cap(cap),
                });
            }
            let outcome = take(client, entry, out_dir, earlier, budget)?;
            if let Outcome::Fetched(_) = outcome {
                fetched += 1;
                progress = true;
            }
            each(&outcome);
        }
        if !progress {
            return Ok(Summary {
                fetched,
                stop: Stop::NoProgress,
            });
        }
    }
}

/// Takes one listed message: downloads it into `out_dir` unless `earlier`
/// holds it, then deletes it on the server.
fn take(
    client: &mut Client,
    entry: &ListEntry,
    out_dir: &Path,
    earlier: Option<Fetched>,
    budget: &mut Budget,
) -> Result<Outcome, Error> {
    let saved = match earlier {
        Some(f) => f,
        None => match download_one(client, entry, out_dir)? {
            Some(f) => {
                budget.bytes += f.len;
                f
            }
            None => {
                return Ok(Outcome::Taken(Taken {
                    id: entry.id,
                    copy: TakenCopy::NotSaved,
                }));
            }
        },
    };
    budget.messages += 1;
    if client.delete(entry.id)? {
        Ok(Outcome::Fetched(saved))
    } else {
        give_up(saved, out_dir).map(Outcome::Taken)
    }
}

/// This fetch's copy of a message whose DELETE found it gone: another
/// fetcher took it and keeps it, so the copy here is removed, unless it was
/// already opened here.
fn give_up(saved: Fetched, out_dir: &Path) -> Result<Taken, Error> {
    let opened = out_dir.join(saved.id.to_string());
    let copy = match fs::symlink_metadata(&opened) {
        Ok(_) => TakenCopy::KeptOpened {
            archive: saved.path,
            opened,
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match fs::remove_file(&saved.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(saved.path.display().to_string(), e)),
            }
            sync_dir(out_dir)?;
            TakenCopy::Removed(saved.path)
        }
        Err(e) => return Err(Error::io(opened.display().to_string(), e)),
    };
    Ok(Taken { id: saved.id, copy })
}

/// Where a listed message is saved in `out_dir`, as a [`Fetched`].
fn saved_as(entry: &ListEntry, out_dir: &Path, already_saved: bool) -> Fetched {
    Fetched {
        id: entry.id,
        path: out_dir.join(format!("{}.sxf", entry.id)),
        len: entry.len,
        already_saved,
    }
}

/// The listed message as an earlier, interrupted fetch saved it (its DELETE
/// was missing), made durable now; `None` when it is not saved here. A file of
/// its name but another length is an error.
fn saved_earlier(entry: &ListEntry, out_dir: &Path) -> Result<Option<Fetched>, Error> {
    let saved = saved_as(entry, out_dir, true);
    let io_err = |e| Error::io(saved.path.display().to_string(), e);
    match fs::metadata(&saved.path) {
        Ok(m) if m.len() == entry.len => {
            // Perhaps not durably: make it so before the DELETE.
            crate::platform::sync_file(&saved.path).map_err(io_err)?;
            sync_dir(out_dir)?;
            Ok(Some(saved))
        }
        Ok(_) => Err(io_err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a different file already has this message's name; move it away and fetch again",
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    crate::platform::sync_dir_entries(dir)
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

/// Downloads one listed message into `out_dir`; `None` when the server no
/// longer has it (another fetcher took it between LIST and GET).
fn download_one(
    client: &mut Client,
    entry: &ListEntry,
    out_dir: &Path,
) -> Result<Option<Fetched>, Error> {
    let saved = saved_as(entry, out_dir, false);
    let io_err = |e| Error::io(saved.path.display().to_string(), e);
    let mut tmp = tempfile::Builder::new()
        .prefix(FETCH_TEMP_PREFIX)
        .suffix(".part")
        .tempfile_in(out_dir)
        .map_err(|e| {
            Error::io(
                format!("creating a file in {}", out_dir.display()),
                crate::fsutil::without_temp_path(e),
            )
        })?;
    {
        let mut w = BufWriter::with_capacity(1 << 16, tmp.as_file_mut());
        match client.download_listed(entry, &mut w) {
            Ok(_) => {}
            Err(Error::Refused {
                code: ErrorCode::NotFound,
                ..
            }) => return Ok(None),
            Err(e) => return Err(e),
        }
        w.flush().map_err(io_err)?;
    }
    tmp.as_file().sync_all().map_err(io_err)?;
    match tmp.persist_noclobber(&saved.path) {
        Ok(_) => {}
        // Another fetch into the same directory saved it first.
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
            return Ok(Some(saved_as(entry, out_dir, true)));
        }
        Err(e) => return Err(io_err(e.error)),
    }
    sync_dir(out_dir)?;
    Ok(Some(saved))
}
