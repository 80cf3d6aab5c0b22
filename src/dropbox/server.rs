//! The drop-box server: one thread per connection, capped, with idle and total
//! deadlines on every read and write (and a shorter total deadline until the
//! connection authenticates), challenge–response authentication, and a clean
//! stop.
//!
//! Threads rather than an async runtime: a connection's work is blocking file
//! I/O (fsync, hashing a 64 MiB upload), the connection cap is a few hundred, and
//! an idle thread costs a few KiB of resident memory (measured figures are in
//! `spec/DROPBOX.md`, "Why threads"). The accept loop never blocks on a client:
//! over the cap, or over the cap of the client's own address, it writes one
//! plaintext BUSY frame to the new socket and closes it, without TLS. Every
//! other connection is TLS 1.3 ([`super::tls`]): its thread does the
//! handshake, under the same deadlines as everything else, before the HELLO.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::keys::{Fingerprint, PublicKeyInfo};

use super::protocol::{
    self, AuthRequest, ErrorCode, FrameError, Hello, MAX_DATA_BODY, MAX_LIST_ENTRIES, MessageId,
    Reply, Request,
};
use super::store::{self, DepositError, DiskRefusal, Inventory, OpenReport, Store, StoreLimits};
use super::{Error, ErrorCode as Code};

/// How long a stopping server lets requests in progress finish.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Failed AUTH attempts allowed on one connection before it is closed.
const MAX_AUTH_FAILURES: u32 = 3;
/// Bytes of read buffer per connection.
const READ_BUFFER: usize = 8 * 1024;
/// Write deadline for the final ERROR frame of a connection being closed.
const LAST_WORD_TIMEOUT: Duration = Duration::from_secs(1);

/// Everything `sxf serve` can set.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `ADDR:PORT` to listen on; port 0 picks a free port.
    pub listen: String,
    pub store: PathBuf,
    pub max_message_size: u64,
    pub mailbox_quota: u64,
    /// Most bytes the whole store holds, each message counted once.
    pub max_store: Option<u64>,
    /// Most distinct recipients one message is filed for.
    pub max_recipients: usize,
    /// Messages waiting longer than this are deleted.
    pub expire_after: Duration,
    pub max_connections: usize,
    /// Most simultaneous connections from one address (an IPv6 /64 counting
    /// as one address; see [`AddrGroup`]).
    pub max_connections_per_ip: usize,
    /// Uploads are refused while the store's filesystem has less than this free
    /// after the upload and every other upload in progress.
    pub min_free_space: u64,
    /// For tests only: take this as the store's free space instead of asking
    /// the filesystem (`sxf serve --assume-free-space`, hidden).
    pub assume_free_space: Option<u64>,
    /// Free inodes kept in reserve (Unix; Windows has no inode count).
    pub min_free_inodes: u64,
    /// For tests: the free inodes to assume instead of asking the filesystem.
    pub assume_free_inodes: Option<u64>,
    /// A connection on which nothing is read or written for this long is closed.
    pub idle_timeout: Duration,
    /// No connection lives longer than this.
    pub total_timeout: Duration,
    /// A connection that has not authenticated is closed this long after it
    /// started; time inside an upload does not count (uploads need no AUTH).
    pub unauthenticated_timeout: Duration,
    /// The longest a WAIT is held.
    pub max_wait: Duration,
    /// How long a challenge stays valid.
    pub challenge_ttl: Duration,
}

impl ServerConfig {
    /// A configuration with the documented defaults.
    pub fn new(listen: impl Into<String>, store: impl Into<PathBuf>) -> Self {
        ServerConfig {
            listen: listen.into(),
            store: store.into(),
            max_message_size: super::DEFAULT_MAX_MESSAGE_SIZE,
            mailbox_quota: super::DEFAULT_MAILBOX_QUOTA,
            max_store: None,
            max_recipients: super::DEFAULT_MAX_RECIPIENTS,
            expire_after: super::DEFAULT_EXPIRE_AFTER,
            max_connections: super::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: super::DEFAULT_MAX_CONNECTIONS_PER_IP,
            min_free_space: super::DEFAULT_MIN_FREE_SPACE,
            assume_free_space: None,
            min_free_inodes: super::DEFAULT_MIN_FREE_INODES,
            assume_free_inodes: None,
            idle_timeout: super::DEFAULT_IDLE_TIMEOUT,
            total_timeout: super::DEFAULT_TOTAL_TIMEOUT,
            unauthenticated_timeout: super::DEFAULT_UNAUTHENTICATED_TIMEOUT,
            max_wait: super::DEFAULT_MAX_WAIT,
            challenge_ttl: super::DEFAULT_CHALLENGE_TTL,
        }
    }
}

/// One thing that happened, for the log. The library never prints; `sxf serve`
/// writes one line per event.
#[derive(Debug, Clone)]
pub enum Event {
    /// An upload was filed, or (`duplicate`) was byte-identical to message
    /// `id`, still waiting for every recipient, and was not filed again.
    Stored {
        peer: SocketAddr,
        id: MessageId,
        len: u64,
        recipients: Vec<Fingerprint>,
        duplicate: bool,
    },
    Authenticated {
        peer: SocketAddr,
        mailbox: Fingerprint,
    },
    Delivered {
        peer: SocketAddr,
        mailbox: Fingerprint,
        id: MessageId,
        len: u64,
    },
    Deleted {
        peer: SocketAddr,
        mailbox: Fingerprint,
        id: MessageId,
    },
    /// The server sent an ERROR frame.
    Refused {
        peer: SocketAddr,
        code: ErrorCode,
        reason: String,
    },
    /// A connection ended abnormally without an ERROR frame (reset, EOF mid-upload).
    Disconnected {
        peer: SocketAddr,
        reason: String,
    },
    AcceptFailed {
        error: String,
    },
    /// The first pass over the store finished.
    Inventoried(Inventory),
    /// A message waited longer than `--expire-after` and was deleted.
    Expired(store::Expired),
    /// A pass over the store failed (it is tried again at the next one).
    HousekeepingFailed {
        error: String,
    },
    Stopping {
        connections: usize,
    },
    Stopped {
        abandoned: usize,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Stored {
                peer,
                id,
                len,
                recipients,
                duplicate: true,
            } => write!(
                f,
                "{peer} sent {id} again ({}): identical to the message still waiting \
                 for its {} mailbox(es); not filed twice",
                indicatif::HumanBytes(*len),
                recipients.len()
            ),
            Event::Stored {
                peer,
                id,
                len,
                recipients,
                duplicate: false,
            } => {
                let list: Vec<String> = recipients.iter().map(|r| r.to_string()).collect();
                write!(
                    f,
                    "{peer} stored {id} ({}) for {} mailbox(es): {}",
                    indicatif::HumanBytes(*len),
                    recipients.len(),
                    list.join(", ")
                )
            }
            Event::Authenticated { peer, mailbox } => {
                write!(f, "{peer} authenticated as {mailbox}")
            }
            Event::Delivered {
                peer,
                mailbox,
                id,
                len,
            } => write!(
                f,
                "{peer} downloaded {id} ({}) from {mailbox}",
                indicatif::HumanBytes(*len)
            ),
            Event::Deleted { peer, mailbox, id } => write!(f, "{peer} deleted {id} from {mailbox}"),
            Event::Refused { peer, code, reason } => write!(f, "{peer} refused [{code}]: {reason}"),
            Event::Disconnected { peer, reason } => write!(f, "{peer} disconnected: {reason}"),
            Event::AcceptFailed { error } => write!(f, "accept failed: {error}"),
            Event::Inventoried(i) => write!(
                f,
                "store holds {} message(s), {} in {} mailbox(es) (each message counted once); \
                 hashed {} message(s) that had no digest record, cleared {} crash leftover(s); \
                 counted in {} ms",
                i.messages,
                indicatif::HumanBytes(i.bytes),
                i.mailboxes,
                i.rehashed,
                i.leftovers,
                i.took.as_millis()
            ),
            Event::Expired(e) => write!(
                f,
                "expired {} ({}) from {}: it waited {}",
                e.id,
                indicatif::HumanBytes(e.len),
                e.mailbox,
                humantime::format_duration(Duration::from_secs(e.age.as_secs()))
            ),
            Event::HousekeepingFailed { error } => {
                write!(f, "counting or expiring the store failed: {error}")
            }
            Event::Stopping { connections } => {
                write!(f, "stopping: {connections} connection(s) open")
            }
            Event::Stopped { abandoned: 0 } => write!(f, "stopped"),
            Event::Stopped { abandoned } => {
                write!(
                    f,
                    "stopped ({abandoned} connection(s) cut at the grace deadline)"
                )
            }
        }
    }
}

/// Where events go.
pub type Logger = Arc<dyn Fn(&Event) + Send + Sync>;

/// What the per-address connection cap counts: one IPv4 address, or one IPv6
/// /64 network. An IPv6 client usually has a whole /64 to pick addresses from,
/// so counting single IPv6 addresses would give it 2^64 caps. An IPv4 client of
/// a dual-stack listener (`::ffff:a.b.c.d`) counts as its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrGroup {
    V4(Ipv4Addr),
    /// The first 64 bits of the address.
    V6Net(u64),
}

impl AddrGroup {
    pub fn of(ip: IpAddr) -> AddrGroup {
        match ip {
            IpAddr::V4(a) => AddrGroup::V4(a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => AddrGroup::V4(v4),
                None => AddrGroup::V6Net((u128::from(a) >> 64) as u64),
            },
        }
    }
}

impl fmt::Display for AddrGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrGroup::V4(a) => write!(f, "{a}"),
            AddrGroup::V6Net(net) => write!(f, "{}/64", Ipv6Addr::from(u128::from(*net) << 64)),
        }
    }
}

struct ConnEntry {
    stream: TcpStream,
    /// Inside a request (not waiting for the next frame).
    busy: bool,
    /// The client's address, as the per-address cap counts it.
    group: AddrGroup,
}

#[derive(Default)]
struct Conns {
    next_id: u64,
    live: HashMap<u64, ConnEntry>,
    /// How many of `live` come from each address. A count that drops to zero
    /// is removed, so this never has more entries than `live`.
    per_addr: HashMap<AddrGroup, usize>,
}

impl Conns {
    fn insert(&mut self, entry: ConnEntry) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        *self.per_addr.entry(entry.group).or_insert(0) += 1;
        self.live.insert(id, entry);
        id
    }

    fn remove(&mut self, id: u64) -> Option<ConnEntry> {
        let entry = self.live.remove(&id)?;
        if let Some(n) = self.per_addr.get_mut(&entry.group) {
            *n -= 1;
            if *n == 0 {
                self.per_addr.remove(&entry.group);
            }
        }
        Some(entry)
    }

    fn count_from(&self, group: AddrGroup) -> usize {
        self.per_addr.get(&group).copied().unwrap_or(0)
    }
}

struct Shared {
    config: ServerConfig,
    store: Store,
    stopping: AtomicBool,
    conns: Mutex<Conns>,
    drained: Condvar,
    wake_addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, Conns> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    report: OpenReport,
}

/// Stops a running server from another thread (a signal handler thread).
#[derive(Clone)]
pub struct ShutdownHandle(Arc<Shared>);

impl ShutdownHandle {
    /// Stops accepting, ends WAITs and idle connections, and lets requests in
    /// progress finish (up to a grace period). Returns at once.
    pub fn shutdown(&self) {
        let shared = &self.0;
        if shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        shared.store.stop_waiters();
        for entry in shared.conns().live.values() {
            if !entry.busy {
                // Its thread reads end-of-stream, says SHUTTING_DOWN and exits.
                let _ = entry.stream.shutdown(Shutdown::Read);
            }
        }
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&shared.wake_addr, Duration::from_secs(1));
    }
}

impl Server {
    /// Opens the store (sweeping and recovering it) and binds the listener.
    pub fn bind(config: ServerConfig) -> Result<Server, Error> {
        let limits = StoreLimits {
            mailbox_quota: config.mailbox_quota,
            max_store: config.max_store,
            max_recipients: config.max_recipients,
        };
        let (mut store, report) = Store::open(&config.store, limits)
            .map_err(|e| Error::io(format!("opening the store {}", config.store.display()), e))?;
        store.assume_free_space(config.assume_free_space);
        store.assume_free_inodes(config.assume_free_inodes);
        store.set_min_free_inodes(config.min_free_inodes);
        let tls = super::tls::server_config(store.tls_identity()).map_err(|e| {
            Error::io(
                "setting up TLS",
                io::Error::new(io::ErrorKind::InvalidData, e),
            )
        })?;
        let addrs: Vec<SocketAddr> = config
            .listen
            .to_socket_addrs()
            .map_err(|e| Error::io(format!("resolving {}", config.listen), e))?
            .collect();
        let listener = TcpListener::bind(&addrs[..])
            .map_err(|e| Error::io(format!("listening on {}", config.listen), e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the listening address", e))?;
        let mut wake_addr = local_addr;
        if wake_addr.ip().is_unspecified() {
            wake_addr.set_ip(if local_addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        Ok(Server {
            listener,
            local_addr,
            shared: Arc::new(Shared {
                config,
                store,
                stopping: AtomicBool::new(false),
                conns: Mutex::new(Conns::default()),
                drained: Condvar::new(),
                wake_addr,
                tls,
            }),
            report,
        })
    }

    /// The address actually bound (the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What opening the store found.
    pub fn store_report(&self) -> &OpenReport {
        &self.report
    }

    /// The server's identity, as sent in HELLO.
    pub fn server_id(&self) -> [u8; 32] {
        *self.shared.store.server_id()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shared.clone())
    }

    /// Serves until [`ShutdownHandle::shutdown`] is called, then drains.
    /// Counting and expiring the store runs beside it, in its own thread.
    pub fn run(self, log: Logger) -> Result<(), Error> {
        let shared = &self.shared;
        let housekeeping = {
            let shared = shared.clone();
            let log = log.clone();
            thread::Builder::new()
                .name("sxf-dropbox-housekeeping".into())
                .spawn(move || housekeeping(&shared, &log))
                .map_err(|e| Error::io("starting the housekeeping thread", e))?
        };
        for incoming in self.listener.incoming() {
            if shared.stopping() {
                break;
            }
            let stream = match incoming {
                Ok(s) => s,
                Err(e) => {
                    log(&Event::AcceptFailed {
                        error: e.to_string(),
                    });
                    // Out of descriptors or similar: back off instead of spinning.
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            let Ok(peer) = stream.peer_addr() else {
                continue;
            };
            self.admit(stream, peer, &log);
        }
        let Server {
            listener, shared, ..
        } = self;
        drop(listener);
        drain(&shared, &log);
        let _ = housekeeping.join();
        Ok(())
    }

    /// Starts a connection thread, or refuses with BUSY over the cap or over
    /// the cap of the client's address.
    fn admit(&self, stream: TcpStream, peer: SocketAddr, log: &Logger) {
        let shared = &self.shared;
        let config = &shared.config;
        let group = AddrGroup::of(peer.ip());
        let busy_reason = format!(
            "the server is busy ({} connections); try again later",
            config.max_connections
        );
        let id = {
            let mut conns = shared.conns();
            if conns.live.len() >= config.max_connections {
                Err(busy_reason.clone())
            } else if conns.count_from(group) >= config.max_connections_per_ip {
                Err(match group {
                    AddrGroup::V4(_) => format!(
                        "too many connections from {group} (at most {} at once per address); \
                         close one or try again later",
                        config.max_connections_per_ip
                    ),
                    AddrGroup::V6Net(_) => format!(
                        "too many connections from {group} (at most {} at once per address, \
                         an IPv6 /64 network counting as one); close one or try again later",
                        config.max_connections_per_ip
                    ),
                })
            } else {
                match stream.try_clone() {
                    Ok(clone) => Ok(conns.insert(ConnEntry {
                        stream: clone,
                        busy: false,
                        group,
                    })),
                    Err(_) => Err(busy_reason.clone()),
                }
            }
        };
        let id = match id {
            Ok(id) => id,
            Err(reason) => {
                last_word(&stream, ErrorCode::Busy, &reason);
                log(&Event::Refused {
                    peer,
                    code: ErrorCode::Busy,
                    reason,
                });
                return;
            }
        };
        let thread_shared = shared.clone();
        let thread_log = log.clone();
        let spawned = thread::Builder::new()
            .name("sxf-dropbox-conn".into())
            .spawn(move || {
                let shared = thread_shared;
                // Frees the connection slot however the thread ends, a panic
                // included (declared first, so it drops after `conn`).
                let _slot = ConnSlot {
                    shared: &shared,
                    id,
                };
                match Conn::new(&shared, id, stream, peer, &*thread_log) {
                    Ok(mut conn) => conn.serve(),
                    Err(e) => thread_log(&Event::Disconnected {
                        peer,
                        reason: format!("cannot start TLS: {e}"),
                    }),
                }
            });
        if spawned.is_err() {
            let entry = shared.conns().remove(id);
            if let Some(entry) = entry {
                last_word(&entry.stream, ErrorCode::Busy, &busy_reason);
            }
            log(&Event::Refused {
                peer,
                code: ErrorCode::Busy,
                reason: busy_reason,
            });
        }
    }
}

/// How often expired messages are looked for: a tenth of the expiry age,
/// between 1 s and 1 h.
fn expiry_interval(expire_after: Duration) -> Duration {
    (expire_after / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// The first pass over the store (its size, expiry, repairs), then an expiry
/// pass at every [`expiry_interval`], until the server stops.
fn housekeeping(shared: &Shared, log: &Logger) {
    let max_age = shared.config.expire_after;
    let mut expired = |e: store::Expired| log(&Event::Expired(e));
    let mut counted = false;
    loop {
        // Until one inventory succeeds, each pass is another try (uploads
        // that need the store's size wait for it).
        let pass = if counted {
            shared.store.expire(max_age, &mut expired)
        } else {
            shared.store.inventory(max_age, &mut expired).map(|i| {
                counted = true;
                log(&Event::Inventoried(i));
            })
        };
        if let Err(e) = pass {
            log(&Event::HousekeepingFailed {
                error: e.to_string(),
            });
        }
        if !shared.store.pause(expiry_interval(max_age)) {
            return;
        }
    }
}

/// A connection's entry in [`Conns::live`]; removed on drop.
struct ConnSlot<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for ConnSlot<'_> {
    fn drop(&mut self) {
        self.shared.conns().remove(self.id);
        self.shared.drained.notify_all();
    }
}

/// After the accept loop: waits up to the grace period for connections to end,
/// then cuts the rest.
fn drain(shared: &Shared, log: &Logger) {
    let mut conns = shared.conns();
    log(&Event::Stopping {
        connections: conns.live.len(),
    });
    let deadline = Instant::now() + STOP_GRACE;
    while !conns.live.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        conns = shared
            .drained
            .wait_timeout(conns, deadline - now)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    let abandoned = conns.live.len();
    for entry in conns.live.values() {
        let _ = entry.stream.shutdown(Shutdown::Both);
    }
    drop(conns);
    log(&Event::Stopped { abandoned });
}

/// Writes one plaintext ERROR frame with a short deadline and closes the
/// socket: only for BUSY, before any TLS (the client reads `SXFD` where a TLS
/// record would start, and knows it).
fn last_word(stream: &TcpStream, code: ErrorCode, message: &str) {
    let _ = stream.set_write_timeout(Some(LAST_WORD_TIMEOUT));
    let mut s = stream;
    let _ = protocol::write_reply(
        &mut s,
        &Reply::Error {
            code,
            message: message.to_owned(),
        },
    );
    let _ = stream.shutdown(Shutdown::Write);
}

/// Which deadline cut a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    Idle,
    Total,
    Unauthenticated,
}

/// A socket whose every read and write is bounded by the idle deadline and by
/// what remains of the connection's total deadline, and of its unauthenticated
/// deadline while that runs.
struct DeadlineStream {
    stream: TcpStream,
    idle: Duration,
    /// The total deadline.
    deadline: Instant,
    /// The unauthenticated deadline: `None` once the connection has
    /// authenticated, and while an upload is in progress.
    unauthenticated: Option<Instant>,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    expired: Option<Expired>,
    /// The connection is being closed with a last ERROR frame: every deadline
    /// is past or beside the point, each operation gets [`LAST_WORD_TIMEOUT`].
    last_word: bool,
}

impl DeadlineStream {
    /// The timeout for the next operation, or the expiry if none is left.
    fn next_timeout(&mut self) -> io::Result<(Duration, Expired)> {
        if self.last_word {
            return Ok((LAST_WORD_TIMEOUT, Expired::Idle));
        }
        let now = Instant::now();
        let (end, which) = match self.unauthenticated {
            Some(u) if u < self.deadline => (u, Expired::Unauthenticated),
            _ => (self.deadline, Expired::Total),
        };
        if now >= end {
            self.expired = Some(which);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection deadline",
            ));
        }
        let left = end - now;
        Ok(if left < self.idle {
            (left, which)
        } else {
            (self.idle, Expired::Idle)
        })
    }

    /// Stops the unauthenticated deadline's clock (an upload starts), and
    /// returns what was left of it.
    fn pause_unauthenticated(&mut self) -> Option<Duration> {
        self.unauthenticated
            .take()
            .map(|u| u.saturating_duration_since(Instant::now()))
    }

    /// Starts the clock again with what was left (the upload ended).
    fn resume_unauthenticated(&mut self, left: Option<Duration>) {
        self.unauthenticated = left.map(|left| Instant::now() + left);
    }

    fn note(&mut self, e: io::Error, which: Expired) -> io::Error {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            self.expired = Some(which);
        }
        e
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (t, which) = self.next_timeout()?;
        if self.read_timeout != Some(t) {
            self.stream.set_read_timeout(Some(t))?;
            self.read_timeout = Some(t);
        }
        self.stream.read(buf).map_err(|e| self.note(e, which))
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (t, which) = self.next_timeout()?;
        if self.write_timeout != Some(t) {
            self.stream.set_write_timeout(Some(t))?;
            self.write_timeout = Some(t);
        }
        self.stream.write(buf).map_err(|e| self.note(e, which))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The TLS session over the deadline-bounded socket. A peer that closes
/// without a TLS close_notify reads as a plain end of stream: every frame
/// carries its own length, so a cut inside a frame is still an error.
struct TlsIo(rustls::StreamOwned<rustls::ServerConnection, DeadlineStream>);

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

/// Whether a connection goes on after a request.
enum Flow {
    Continue,
    Close,
}

/// One connection's state.
struct Conn<'a> {
    shared: &'a Shared,
    id: u64,
    io: BufReader<TlsIo>,
    peer: SocketAddr,
    mailbox: Option<Fingerprint>,
    challenge: Option<([u8; 32], Instant)>,
    auth_failures: u32,
    log: &'a (dyn Fn(&Event) + Send + Sync),
}

impl<'a> Conn<'a> {
    fn new(
        shared: &'a Shared,
        id: u64,
        stream: TcpStream,
        peer: SocketAddr,
        log: &'a (dyn Fn(&Event) + Send + Sync),
    ) -> Result<Self, rustls::Error> {
        let _ = stream.set_nodelay(true);
        let started = Instant::now();
        let tls = rustls::ServerConnection::new(shared.tls.clone())?;
        Ok(Conn {
            shared,
            id,
            // Small: headers and control frames go through it, while DATA bodies
            // larger than the buffer are read straight into their own vector.
            io: BufReader::with_capacity(
                READ_BUFFER,
                TlsIo(rustls::StreamOwned::new(
                    tls,
                    DeadlineStream {
                        stream,
                        idle: shared.config.idle_timeout,
                        deadline: started + shared.config.total_timeout,
                        unauthenticated: Some(started + shared.config.unauthenticated_timeout),
                        read_timeout: None,
                        write_timeout: None,
                        expired: None,
                        last_word: false,
                    },
                )),
            ),
            peer,
            mailbox: None,
            challenge: None,
            auth_failures: 0,
            log,
        })
    }

    /// The deadline-bounded socket under the TLS session.
    fn sock(&mut self) -> &mut DeadlineStream {
        &mut self.io.get_mut().0.sock
    }

    /// The TLS session.
    fn tls(&self) -> &rustls::ServerConnection {
        &self.io.get_ref().0.conn
    }

    fn set_busy(&self, busy: bool) {
        if let Some(e) = self.shared.conns().live.get_mut(&self.id) {
            e.busy = busy;
        }
    }

    fn reply(&mut self, r: &Reply) -> io::Result<()> {
        protocol::write_reply(self.io.get_mut(), r)
    }

    /// Sends an ERROR frame and logs it.
    fn refuse(&mut self, code: ErrorCode, reason: impl Into<String>) -> io::Result<()> {
        let reason = reason.into();
        (self.log)(&Event::Refused {
            peer: self.peer,
            code,
            reason: reason.clone(),
        });
        self.reply(&Reply::Error {
            code,
            message: reason,
        })
    }

    /// The final ERROR of a connection, sent even past its deadlines.
    fn close_with(&mut self, code: ErrorCode, reason: impl Into<String>) {
        let reason = reason.into();
        (self.log)(&Event::Refused {
            peer: self.peer,
            code,
            reason: reason.clone(),
        });
        self.sock().last_word = true;
        // Before the handshake finished there is no session to say it in.
        if !self.tls().is_handshaking() {
            let _ = protocol::write_reply(
                self.io.get_mut(),
                &Reply::Error {
                    code,
                    message: reason,
                },
            );
            self.io.get_mut().0.conn.send_close_notify();
            let _ = self.io.get_mut().flush();
        }
        let _ = self.sock().stream.shutdown(Shutdown::Write);
    }

    /// The connection ended because of an I/O error: a deadline gets its ERROR
    /// frame, anything else is logged.
    fn ended(&mut self, e: io::Error, during: &str) {
        match self.io.get_ref().0.sock.expired {
            Some(Expired::Idle) => self.close_with(
                Code::IdleTimeout,
                format!(
                    "nothing received for {} {during}; closing",
                    humantime::format_duration(self.shared.config.idle_timeout)
                ),
            ),
            Some(Expired::Total) => self.close_with(
                Code::Deadline,
                format!(
                    "the connection reached its time limit of {} {during}; reconnect to go on",
                    humantime::format_duration(self.shared.config.total_timeout)
                ),
            ),
            Some(Expired::Unauthenticated) => self.close_with(
                Code::Deadline,
                format!(
                    "an unauthenticated connection reached its time limit of {} {during} \
                     (time spent uploading does not count); reconnect to go on",
                    humantime::format_duration(self.shared.config.unauthenticated_timeout)
                ),
            ),
            None => (self.log)(&Event::Disconnected {
                peer: self.peer,
                reason: format!("{e} {during}"),
            }),
        }
    }

    fn serve(&mut self) {
        // The handshake, bounded by the idle and unauthenticated deadlines.
        while self.tls().is_handshaking() {
            let TlsIo(tls) = self.io.get_mut();
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                if self.io.get_ref().0.sock.expired.is_some() {
                    self.ended(e, "during the TLS handshake");
                } else {
                    (self.log)(&Event::Disconnected {
                        peer: self.peer,
                        reason: format!("TLS handshake failed: {e}"),
                    });
                }
                return;
            }
        }
        let hello = Reply::Hello(Hello {
            server_id: *self.shared.store.server_id(),
            max_message_size: self.shared.config.max_message_size,
            max_wait_secs: self.shared.config.max_wait.as_secs() as u32,
        });
        if let Err(e) = self.reply(&hello) {
            self.ended(e, "while sending HELLO");
            return;
        }
        loop {
            if self.shared.stopping() {
                self.close_with(
                    Code::ShuttingDown,
                    "the server is stopping; try again later",
                );
                return;
            }
            self.set_busy(false);
            let frame = protocol::read_frame(&mut self.io);
            self.set_busy(true);
            let frame = match frame {
                Ok(f) => f,
                Err(FrameError::Closed) => {
                    if self.shared.stopping() {
                        self.close_with(
                            Code::ShuttingDown,
                            "the server is stopping; try again later",
                        );
                    }
                    return;
                }
                Err(FrameError::Io(e)) => {
                    if self.shared.stopping() {
                        self.close_with(
                            Code::ShuttingDown,
                            "the server is stopping; try again later",
                        );
                    } else {
                        self.ended(e, "while waiting for a request");
                    }
                    return;
                }
                Err(e) => {
                    self.close_with(e.code(), e.to_string());
                    return;
                }
            };
            let request = match Request::decode(frame) {
                Ok(r) => r,
                Err(e) => {
                    self.close_with(Code::BadFrame, e.to_string());
                    return;
                }
            };
            match self.handle(request) {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close) => return,
                Err(e) => {
                    self.ended(e, "while answering");
                    return;
                }
            }
        }
    }

    fn handle(&mut self, request: Request) -> io::Result<Flow> {
        match request {
            Request::Challenge => {
                let nonce = match protocol::random_nonce() {
                    Ok(n) => n,
                    Err(e) => {
                        self.refuse(Code::Internal, e.to_string())?;
                        return Ok(Flow::Continue);
                    }
                };
                self.challenge = Some((nonce, Instant::now()));
                self.reply(&Reply::Challenge(nonce))?;
                Ok(Flow::Continue)
            }
            Request::Auth(a) => self.auth(a),
            Request::Upload(len) => {
                // An upload needs no authentication: the unauthenticated
                // deadline does not run while one is in progress.
                let left = self.sock().pause_unauthenticated();
                let flow = self.upload(len);
                self.sock().resume_unauthenticated(left);
                flow
            }
            Request::Data(_) => {
                self.close_with(Code::Unexpected, "DATA outside an upload");
                Ok(Flow::Close)
            }
            Request::List | Request::Get(_) | Request::Delete(_) | Request::Wait(_) => {
                let Some(mailbox) = self.mailbox.clone() else {
                    self.refuse(
                        Code::AuthRequired,
                        "authenticate first: LIST, GET, DELETE and WAIT need a signed challenge",
                    )?;
                    return Ok(Flow::Continue);
                };
                match request {
                    Request::List => self.list(&mailbox),
                    Request::Get(id) => self.get(&mailbox, id),
                    Request::Delete(id) => self.delete(&mailbox, id),
                    Request::Wait(secs) => self.wait(&mailbox, secs),
                    _ => unreachable!("matched above"),
                }
            }
        }
    }

    fn auth(&mut self, a: AuthRequest) -> io::Result<Flow> {
        // Single use: whatever happens, this challenge is gone.
        let challenge = self.challenge.take();
        match self.check_auth(&a, challenge) {
            Ok(mailbox) => {
                (self.log)(&Event::Authenticated {
                    peer: self.peer,
                    mailbox: mailbox.clone(),
                });
                self.mailbox = Some(mailbox);
                // From now on only the total deadline bounds the connection,
                // even if a later AUTH fails.
                self.sock().unauthenticated = None;
                self.reply(&Reply::Ok)?;
                Ok(Flow::Continue)
            }
            Err((code, reason)) => {
                self.mailbox = None;
                self.auth_failures += 1;
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    self.close_with(
                        code,
                        format!("{reason} (too many failed attempts; closing)"),
                    );
                    return Ok(Flow::Close);
                }
                self.refuse(code, reason)?;
                Ok(Flow::Continue)
            }
        }
    }

    fn check_auth(
        &self,
        a: &AuthRequest,
        challenge: Option<([u8; 32], Instant)>,
    ) -> Result<Fingerprint, (ErrorCode, String)> {
        let st = &a.statement;
        let own_id = self.shared.store.server_id();
        if &st.server_id != own_id {
            return Err((
                Code::WrongServer,
                format!(
                    "the statement is for server id {}, but this is server {}",
                    hex::encode(st.server_id),
                    hex::encode(own_id)
                ),
            ));
        }
        let Some((nonce, issued)) = challenge else {
            return Err((
                Code::ChallengeInvalid,
                "no challenge is outstanding on this connection (each is single-use); ask for a new one"
                    .into(),
            ));
        };
        if st.server_nonce != nonce {
            return Err((
                Code::ChallengeInvalid,
                "the statement does not carry this connection's challenge (replayed or foreign)"
                    .into(),
            ));
        }
        if issued.elapsed() > self.shared.config.challenge_ttl {
            return Err((
                Code::ChallengeInvalid,
                format!(
                    "the challenge expired (they live {}); ask for a new one",
                    humantime::format_duration(self.shared.config.challenge_ttl)
                ),
            ));
        }
        // The statement must have been made inside this very TLS session.
        let binding = super::tls::auth_binding(&**self.tls(), &nonce).map_err(|e| {
            (
                Code::Internal,
                format!("cannot compute this session's TLS binding: {e}"),
            )
        })?;
        if st.tls_binding != binding {
            return Err((
                Code::WrongSession,
                "the statement was signed for another TLS session (relayed or replayed); \
                 sign a statement inside this connection"
                    .into(),
            ));
        }
        let key = PublicKeyInfo::from_spki_der(&a.spki).map_err(|e| {
            (
                Code::AuthFailed,
                format!("the presented key is not acceptable: {e}"),
            )
        })?;
        if key.fingerprint().as_bytes() != &st.mailbox {
            return Err((
                Code::AuthFailed,
                format!(
                    "the presented key is {}, not the key of mailbox sha256:{}",
                    key.fingerprint(),
                    hex::encode(st.mailbox)
                ),
            ));
        }
        if !crate::crypto::verify_signature(key.key(), &st.to_bytes(), &a.signature) {
            return Err((
                Code::AuthFailed,
                "the signature does not verify with the presented key".into(),
            ));
        }
        Ok(key.fingerprint().clone())
    }

    fn upload(&mut self, len: u64) -> io::Result<Flow> {
        let config = &self.shared.config;
        if len == 0 {
            self.refuse(Code::NotSxf, "an empty upload is not an sxf archive")?;
            return Ok(Flow::Continue);
        }
        if len > config.max_message_size {
            let reason = format!(
                "the message is {len} bytes; this server accepts at most {} bytes",
                config.max_message_size
            );
            self.refuse(Code::TooLarge, reason)?;
            return Ok(Flow::Continue);
        }
        // The announced size must fit now; then only the bytes received are
        // held (each chunk checked against the reserve as it comes), until the
        // upload is filed, refused or cut off. After the data it is released
        // before the answer, so a client holding STORED can count on the space
        // being free again.
        let mut disk = match self
            .shared
            .store
            .hold_disk_space(len, config.min_free_space)
        {
            Ok(hold) => hold,
            Err(DiskRefusal::Low {
                free,
                in_flight,
                reserve,
            }) => {
                let reason = format!(
                    "the server is low on disk space ({free} bytes free, {in_flight} held for uploads \
                     in progress, it keeps {reserve} in reserve; this upload needs {len}); try again later"
                );
                self.refuse(Code::DiskFull, reason)?;
                return Ok(Flow::Continue);
            }
            Err(DiskRefusal::LowInodes {
                free,
                in_flight,
                reserve,
            }) => {
                let reason = format!(
                    "the server is low on inodes ({free} free, {in_flight} held for uploads in \
                     progress, it keeps {reserve} in reserve; an upload needs {}); try again later",
                    super::store::INODES_PER_UPLOAD
                );
                self.refuse(Code::DiskFull, reason)?;
                return Ok(Flow::Continue);
            }
            Err(DiskRefusal::Io(e)) => {
                self.refuse(Code::Internal, format!("cannot check free disk space: {e}"))?;
                return Ok(Flow::Continue);
            }
        };
        let mut up = match self.shared.store.begin_upload() {
            Ok(u) => u,
            Err(e) => {
                self.refuse(Code::Internal, format!("cannot start the upload: {e}"))?;
                return Ok(Flow::Continue);
            }
        };
        self.reply(&Reply::Ok)?;
        while up.written() < len {
            let frame = match protocol::read_frame(&mut self.io) {
                Ok(f) => f,
                Err(FrameError::Closed) => {
                    let written = up.written();
                    drop(up); // removes the temp file
                    drop(disk);
                    (self.log)(&Event::Disconnected {
                        peer: self.peer,
                        reason: format!(
                            "closed after {written} of {len} upload bytes; nothing stored"
                        ),
                    });
                    return Ok(Flow::Close);
                }
                Err(FrameError::Io(e)) => {
                    let during = format!(
                        "during an upload ({} of {len} bytes); nothing stored",
                        up.written()
                    );
                    drop(up);
                    drop(disk);
                    self.ended(e, &during);
                    return Ok(Flow::Close);
                }
                Err(e) => {
                    self.close_with(e.code(), e.to_string());
                    return Ok(Flow::Close);
                }
            };
            if frame.frame_type != protocol::kind::DATA {
                self.close_with(
                    Code::Unexpected,
                    "only DATA frames may follow an accepted UPLOAD",
                );
                return Ok(Flow::Close);
            }
            let left = len - up.written();
            if frame.body.is_empty() || frame.body.len() as u64 > left {
                self.close_with(
                    Code::BadFrame,
                    format!(
                        "a {}-byte DATA frame does not fit the {left} bytes left of the upload",
                        frame.body.len()
                    ),
                );
                return Ok(Flow::Close);
            }
            match disk.grow(frame.body.len() as u64, config.min_free_space) {
                Ok(()) => {}
                Err(DiskRefusal::Low {
                    free,
                    in_flight,
                    reserve,
                }) => {
                    self.close_with(
                        Code::DiskFull,
                        format!(
                            "the server ran low on disk space during the upload ({free} bytes free, \
                             {in_flight} held for uploads in progress, it keeps {reserve} in reserve; \
                             {} of {len} bytes received); nothing stored, try again later",
                            up.written()
                        ),
                    );
                    return Ok(Flow::Close);
                }
                // Chunks take no inodes: the upload's were held at its start.
                Err(DiskRefusal::LowInodes { .. }) => {
                    self.close_with(Code::DiskFull, "the server ran low on inodes");
                    return Ok(Flow::Close);
                }
                Err(DiskRefusal::Io(e)) => {
                    self.close_with(Code::Internal, format!("cannot check free disk space: {e}"));
                    return Ok(Flow::Close);
                }
            }
            if let Err(e) = up.write_all(&frame.body) {
                let code = if e.kind() == io::ErrorKind::StorageFull {
                    Code::DiskFull
                } else {
                    Code::Internal
                };
                self.close_with(code, format!("the server could not write the upload: {e}"));
                return Ok(Flow::Close);
            }
        }
        let deposited = self.shared.store.deposit(up);
        drop(disk);
        match deposited {
            Ok(d) => {
                (self.log)(&Event::Stored {
                    peer: self.peer,
                    id: d.id,
                    len: d.len,
                    recipients: d.recipients.clone(),
                    duplicate: d.duplicate,
                });
                self.reply(&Reply::Stored {
                    id: d.id,
                    recipients: d.recipients.len() as u16,
                })?;
            }
            Err(e @ DepositError::NotSxf(_)) => self.refuse(Code::NotSxf, e.to_string())?,
            Err(e @ DepositError::OverQuota { .. }) => {
                self.refuse(Code::OverQuota, e.to_string())?
            }
            Err(e @ DepositError::TooManyRecipients { .. }) => {
                self.refuse(Code::TooManyRecipients, e.to_string())?
            }
            Err(e @ DepositError::StoreFull { .. }) => {
                self.refuse(Code::StoreFull, e.to_string())?
            }
            Err(DepositError::Io(e)) => {
                let code = if e.kind() == io::ErrorKind::StorageFull {
                    Code::DiskFull
                } else {
                    Code::Internal
                };
                self.refuse(code, format!("the server could not store the message: {e}"))?
            }
        }
        Ok(Flow::Continue)
    }

    fn list(&mut self, mailbox: &Fingerprint) -> io::Result<Flow> {
        match self.shared.store.list(mailbox, MAX_LIST_ENTRIES) {
            Ok((entries, more)) => self.reply(&Reply::List { entries, more })?,
            Err(e) => self.refuse(Code::Internal, format!("cannot list the mailbox: {e}"))?,
        }
        Ok(Flow::Continue)
    }

    fn get(&mut self, mailbox: &Fingerprint, id: MessageId) -> io::Result<Flow> {
        let (file, len) = match self.shared.store.open_message(mailbox, &id) {
            Ok(Some(x)) => x,
            Ok(None) => {
                self.refuse(
                    Code::NotFound,
                    format!("no message {id} waits in this mailbox"),
                )?;
                return Ok(Flow::Continue);
            }
            Err(e) => {
                self.refuse(Code::Internal, format!("cannot read message {id}: {e}"))?;
                return Ok(Flow::Continue);
            }
        };
        self.reply(&Reply::Get(len))?;
        let mut reader = file.take(len);
        let mut buf = vec![0u8; MAX_DATA_BODY as usize];
        let mut sent = 0u64;
        while sent < len {
            let n = crate::crypto::read_full(&mut reader, &mut buf)?;
            if n == 0 {
                // The file shrank under us: the client sees a short download.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "message file shrank",
                ));
            }
            protocol::write_frame(self.io.get_mut(), protocol::kind::DATA, &buf[..n])?;
            sent += n as u64;
        }
        (self.log)(&Event::Delivered {
            peer: self.peer,
            mailbox: mailbox.clone(),
            id,
            len,
        });
        Ok(Flow::Continue)
    }

    fn delete(&mut self, mailbox: &Fingerprint, id: MessageId) -> io::Result<Flow> {
        match self.shared.store.delete(mailbox, &id) {
            Ok(true) => {
                (self.log)(&Event::Deleted {
                    peer: self.peer,
                    mailbox: mailbox.clone(),
                    id,
                });
                self.reply(&Reply::Ok)?;
            }
            Ok(false) => self.refuse(
                Code::NotFound,
                format!("no message {id} waits in this mailbox"),
            )?,
            Err(e) => self.refuse(Code::Internal, format!("cannot delete message {id}: {e}"))?,
        }
        Ok(Flow::Continue)
    }

    fn wait(&mut self, mailbox: &Fingerprint, secs: u32) -> io::Result<Flow> {
        let deadline = self.io.get_ref().0.sock.deadline;
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = Duration::from_secs(secs.into())
            .min(self.shared.config.max_wait)
            .min(left);
        let ready = self.shared.store.wait(mailbox, timeout);
        if !ready && self.shared.stopping() {
            self.close_with(
                Code::ShuttingDown,
                "the server is stopping; try again later",
            );
            return Ok(Flow::Close);
        }
        self.reply(&Reply::Wait { ready })?;
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(text: &str) -> AddrGroup {
        AddrGroup::of(text.parse().unwrap())
    }

    #[test]
    fn ipv4_addresses_count_one_by_one_and_ipv6_ones_by_64_network() {
        assert_eq!(group("192.0.2.7"), group("192.0.2.7"));
        assert_ne!(group("192.0.2.7"), group("192.0.2.8"));
        // One /64, however the last 64 bits are picked.
        assert_eq!(group("2001:db8:1:2::1"), group("2001:db8:1:2:ffff:1:2:3"));
        assert_ne!(group("2001:db8:1:2::1"), group("2001:db8:1:3::1"));
        // An IPv4 client of a dual-stack listener is its IPv4 address.
        assert_eq!(group("::ffff:192.0.2.7"), group("192.0.2.7"));
        assert_eq!(group("::ffff:192.0.2.7").to_string(), "192.0.2.7");
        assert_eq!(
            group("2001:db8:1:2:ffff:1:2:3").to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(group("::1").to_string(), "::/64");
    }

    #[test]
    fn the_unauthenticated_deadline_is_the_nearer_one_and_pauses_for_uploads() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let now = Instant::now();
        let mut s = DeadlineStream {
            stream,
            idle: Duration::from_secs(30),
            deadline: now + Duration::from_secs(600),
            unauthenticated: Some(now + Duration::from_secs(20)),
            read_timeout: None,
            write_timeout: None,
            expired: None,
            last_word: false,
        };
        let (t, which) = s.next_timeout().unwrap();
        assert_eq!(which, Expired::Unauthenticated);
        assert!(t <= Duration::from_secs(20) && t > Duration::from_secs(19));
        // An upload: only the idle and total deadlines bound it.
        let left = s.pause_unauthenticated();
        assert!(left.unwrap() > Duration::from_secs(19));
        assert_eq!(s.next_timeout().unwrap(), (s.idle, Expired::Idle));
        // After it, the clock goes on with what was left.
        s.resume_unauthenticated(left);
        assert_eq!(s.next_timeout().unwrap().1, Expired::Unauthenticated);
        // A total deadline nearer than the unauthenticated one wins.
        s.deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(s.next_timeout().unwrap().1, Expired::Total);
        // Spent: the next operation fails and says which deadline it was.
        s.unauthenticated = Some(Instant::now());
        s.deadline = Instant::now() + Duration::from_secs(600);
        let e = s.next_timeout().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(s.expired, Some(Expired::Unauthenticated));
        // Authenticated: no unauthenticated deadline, and none after an upload.
        s.unauthenticated = None;
        let left = s.pause_unauthenticated();
        s.resume_unauthenticated(left);
        assert_eq!(s.next_timeout().unwrap(), (s.idle, Expired::Idle));
    }

    #[test]
    fn the_per_address_table_holds_only_live_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let entry = |g: &str| ConnEntry {
            stream: stream.try_clone().unwrap(),
            busy: false,
            group: group(g),
        };
        let mut conns = Conns::default();
        let a1 = conns.insert(entry("192.0.2.1"));
        let a2 = conns.insert(entry("192.0.2.1"));
        let b = conns.insert(entry("2001:db8::1"));
        assert_eq!(conns.count_from(group("192.0.2.1")), 2);
        assert_eq!(conns.count_from(group("2001:db8::2")), 1);
        assert_eq!(conns.count_from(group("192.0.2.2")), 0);
        assert!(conns.remove(a1).is_some());
        assert!(conns.remove(a1).is_none(), "removing twice counts once");
        assert_eq!(conns.count_from(group("192.0.2.1")), 1);
        conns.remove(a2);
        conns.remove(b);
        assert!(conns.live.is_empty());
        assert!(conns.per_addr.is_empty(), "no entry is kept at zero");
    }
}
