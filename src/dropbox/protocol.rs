//! The drop-box wire protocol, version 2 (inside TLS 1.3): frames, request and reply bodies, error
//! codes and the signed authentication statement (`spec/DROPBOX.md`).
//!
//! This module is pure encoding and decoding, shared by the server and the client
//! so the two can never disagree. It owns every hard cap: a frame header is read,
//! its length is checked against the cap for its type, and only then is a buffer
//! allocated. Sockets, files and policy live in `server`, `client` and `store`.

use std::fmt;
use std::io::{self, Read, Write};

/// First four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"SXFD";
/// The protocol version this build speaks, in every frame header.
pub const VERSION: u8 = 2;
/// `magic(4) | version(1) | type(1) | length(4, big-endian)`.
pub const HEADER_LEN: usize = 10;
/// Largest body of any frame but DATA.
pub const MAX_CONTROL_BODY: u32 = 4096;
/// Largest body of a DATA frame.
pub const MAX_DATA_BODY: u32 = 64 * 1024;
/// Most entries in one LIST reply; the client lists again after deleting them.
pub const MAX_LIST_ENTRIES: usize = 100;
/// Largest SubjectPublicKeyInfo DER accepted in AUTH (RSA-4096 is 550 bytes).
pub const MAX_SPKI_LEN: usize = 1024;
/// Largest signature accepted in AUTH (RSA-4096).
pub const MAX_SIGNATURE_LEN: usize = 512;
/// Largest UTF-8 sentence in an ERROR frame.
pub const MAX_ERROR_TEXT: usize = MAX_CONTROL_BODY as usize - 2;
/// Length of server ids and nonces.
pub const NONCE_LEN: usize = 32;
/// The label every signed statement starts with. No sxf manifest can start with
/// it (manifests start with `format = `), so a statement signature is never a
/// manifest signature and vice versa.
pub const STATEMENT_LABEL: &[u8; 19] = b"sxf-dropbox/2 auth\n";
/// Length of a whole statement: label, server id, mailbox, server nonce,
/// client nonce, TLS binding.
pub const STATEMENT_LEN: usize = STATEMENT_LABEL.len() + 32 + 32 + 32 + 32 + 32;

/// Frame types. Requests have the high bit clear, replies have it set; DATA
/// flows both ways.
pub mod kind {
    pub const CHALLENGE: u8 = 0x01;
    pub const AUTH: u8 = 0x02;
    pub const LIST: u8 = 0x03;
    pub const GET: u8 = 0x04;
    pub const DELETE: u8 = 0x05;
    pub const WAIT: u8 = 0x06;
    pub const UPLOAD: u8 = 0x07;
    pub const DATA: u8 = 0x08;

    pub const HELLO: u8 = 0x80;
    pub const CHALLENGE_REPLY: u8 = 0x81;
    pub const OK: u8 = 0x82;
    pub const LIST_REPLY: u8 = 0x83;
    pub const GET_REPLY: u8 = 0x84;
    pub const WAIT_REPLY: u8 = 0x85;
    pub const STORED: u8 = 0x86;
    pub const ERROR: u8 = 0xFF;

    /// Every type this version knows.
    pub fn is_known(t: u8) -> bool {
        matches!(t, 0x01..=0x08 | 0x80..=0x86 | 0xFF)
    }
}

/// The cap on a frame's body, by type.
pub fn max_body(frame_type: u8) -> u32 {
    if frame_type == kind::DATA {
        MAX_DATA_BODY
    } else {
        MAX_CONTROL_BODY
    }
}

/// Error codes carried by ERROR frames. Unknown codes read as [`ErrorCode::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Bytes that are not a frame of this protocol. The connection is closed.
    BadFrame,
    /// A frame header with a version this server does not speak. Closed.
    UnsupportedVersion,
    /// A length field over its cap. Closed.
    FrameTooLarge,
    /// A well-formed frame that is not valid at this point.
    Unexpected,
    /// The server is at its connection limit. Closed.
    Busy,
    /// Nothing arrived within the idle deadline. Closed.
    IdleTimeout,
    /// The connection reached its total time limit. Closed.
    Deadline,
    /// The server is stopping. Closed.
    ShuttingDown,
    /// LIST, GET, DELETE and WAIT need a successful AUTH first.
    AuthRequired,
    /// The key or the signature does not prove the mailbox.
    AuthFailed,
    /// No outstanding challenge matches: replayed, stale, or never asked for.
    ChallengeInvalid,
    /// The statement names another server id.
    WrongServer,
    /// The statement's TLS binding is not this connection's: it was signed
    /// inside another TLS session (relayed or replayed).
    WrongSession,
    /// The upload is larger than the server accepts.
    TooLarge,
    /// A recipient's mailbox would exceed its quota.
    OverQuota,
    /// The server keeps a free-disk reserve and is at it.
    DiskFull,
    /// The upload is not a well-formed, validly signed sxf archive.
    NotSxf,
    /// No such message in this mailbox.
    NotFound,
    /// The upload names more recipients than the server files one message for.
    TooManyRecipients,
    /// The store as a whole would exceed its cap (`--max-store`).
    StoreFull,
    /// The server failed (I/O); try again later.
    Internal,
    /// A code this build does not know.
    Other(u16),
}

impl ErrorCode {
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::BadFrame => 1,
            ErrorCode::UnsupportedVersion => 2,
            ErrorCode::FrameTooLarge => 3,
            ErrorCode::Unexpected => 4,
            ErrorCode::Busy => 10,
            ErrorCode::IdleTimeout => 11,
            ErrorCode::Deadline => 12,
            ErrorCode::ShuttingDown => 13,
            ErrorCode::AuthRequired => 20,
            ErrorCode::AuthFailed => 21,
            ErrorCode::ChallengeInvalid => 22,
            ErrorCode::WrongServer => 23,
            ErrorCode::WrongSession => 24,
            ErrorCode::TooLarge => 30,
            ErrorCode::OverQuota => 31,
            ErrorCode::DiskFull => 32,
            ErrorCode::NotSxf => 33,
            ErrorCode::NotFound => 34,
            ErrorCode::TooManyRecipients => 35,
            ErrorCode::StoreFull => 36,
            ErrorCode::Internal => 50,
            ErrorCode::Other(c) => c,
        }
    }

    pub fn from_u16(code: u16) -> Self {
        match code {
            1 => ErrorCode::BadFrame,
            2 => ErrorCode::UnsupportedVersion,
            3 => ErrorCode::FrameTooLarge,
            4 => ErrorCode::Unexpected,
            10 => ErrorCode::Busy,
            11 => ErrorCode::IdleTimeout,
            12 => ErrorCode::Deadline,
            13 => ErrorCode::ShuttingDown,
            20 => ErrorCode::AuthRequired,
            21 => ErrorCode::AuthFailed,
            22 => ErrorCode::ChallengeInvalid,
            23 => ErrorCode::WrongServer,
            24 => ErrorCode::WrongSession,
            30 => ErrorCode::TooLarge,
            31 => ErrorCode::OverQuota,
            32 => ErrorCode::DiskFull,
            33 => ErrorCode::NotSxf,
            34 => ErrorCode::NotFound,
            35 => ErrorCode::TooManyRecipients,
            36 => ErrorCode::StoreFull,
            50 => ErrorCode::Internal,
            c => ErrorCode::Other(c),
        }
    }

    /// The name used in logs and in `spec/DROPBOX.md`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad-frame",
            ErrorCode::UnsupportedVersion => "unsupported-version",
            ErrorCode::FrameTooLarge => "frame-too-large",
            ErrorCode::Unexpected => "unexpected",
            ErrorCode::Busy => "busy",
            ErrorCode::IdleTimeout => "idle-timeout",
            ErrorCode::Deadline => "deadline",
            ErrorCode::ShuttingDown => "shutting-down",
            ErrorCode::AuthRequired => "auth-required",
            ErrorCode::AuthFailed => "auth-failed",
            ErrorCode::ChallengeInvalid => "challenge-invalid",
            ErrorCode::WrongServer => "wrong-server",
            ErrorCode::WrongSession => "wrong-session",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::OverQuota => "over-quota",
            ErrorCode::DiskFull => "disk-full",
            ErrorCode::NotSxf => "not-sxf",
            ErrorCode::NotFound => "not-found",
            ErrorCode::TooManyRecipients => "too-many-recipients",
            ErrorCode::StoreFull => "store-full",
            ErrorCode::Internal => "internal",
            ErrorCode::Other(_) => "other",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_u16(), self.name())
    }
}

/// A server-generated message id: 8 bytes of big-endian Unix nanoseconds then 8
/// random bytes, so ids sort by arrival. Written as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// A fresh id from the clock and the system random source.
    pub fn generate() -> io::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&nanos.to_be_bytes());
        random_bytes(&mut id[8..])?;
        Ok(MessageId(id))
    }

    /// Parses exactly 32 lowercase hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        crate::parse_lower_hex(text).map(MessageId)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Fills `buf` from the operating system's random source.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    use rand::TryRng;
    rand::rngs::SysRng
        .try_fill_bytes(buf)
        .map_err(|_| io::Error::other("the system random source failed"))
}

/// A 32-byte value from the random source (nonces, server ids).
pub fn random_nonce() -> io::Result<[u8; NONCE_LEN]> {
    let mut n = [0u8; NONCE_LEN];
    random_bytes(&mut n)?;
    Ok(n)
}

/// Why bytes on the wire are not a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection cleanly before the first header byte.
    #[error("the connection was closed")]
    Closed,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{}", if *.http { "this is an sxf drop-box, not an HTTP server" } else { "not an sxf drop-box frame (bad magic)" })]
    BadMagic { http: bool },
    #[error("protocol version {0} is not supported; this build speaks version {VERSION}")]
    Version(u8),
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    #[error("a frame of type 0x{frame_type:02x} announces {len} bytes; the limit is {cap}")]
    TooLarge { frame_type: u8, len: u32, cap: u32 },
}

impl FrameError {
    /// The code a server answers this with.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::Closed | FrameError::Io(_) | FrameError::BadMagic { .. } => {
                ErrorCode::BadFrame
            }
            FrameError::UnknownType(_) => ErrorCode::BadFrame,
            FrameError::Version(_) => ErrorCode::UnsupportedVersion,
            FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
        }
    }
}

/// One frame: its type and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub frame_type: u8,
    pub body: Vec<u8>,
}

/// Reads one frame. The length is checked against the cap for its type before
/// the body buffer is allocated.
pub fn read_frame(r: &mut impl Read) -> Result<Frame, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    // The first byte separately, so a clean close between frames is not an error.
    let mut got = 0;
    while got == 0 {
        match r.read(&mut header[..1]) {
            Ok(0) => return Err(FrameError::Closed),
            Ok(n) => got = n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    read_exact_or_magic(r, &mut header)?;
    if header[..4] != MAGIC {
        let http = HTTP_METHODS.iter().any(|m| m[..] == header[..4]);
        return Err(FrameError::BadMagic { http });
    }
    if header[4] != VERSION {
        return Err(FrameError::Version(header[4]));
    }
    let frame_type = header[5];
    if !kind::is_known(frame_type) {
        return Err(FrameError::UnknownType(frame_type));
    }
    let len = u32::from_be_bytes(header[6..10].try_into().expect("4 bytes"));
    let cap = max_body(frame_type);
    if len > cap {
        return Err(FrameError::TooLarge {
            frame_type,
            len,
            cap,
        });
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    Ok(Frame { frame_type, body })
}

/// The first four bytes of HTTP requests, to answer them with a clear sentence.
const HTTP_METHODS: [&[u8; 4]; 8] = [
    b"GET ", b"POST", b"HEAD", b"PUT ", b"OPTI", b"DELE", b"CONN", b"PATC",
];

/// Reads the rest of a header. A short header whose first bytes already show
/// bad magic is reported as bad magic, not as a truncated read.
fn read_exact_or_magic(r: &mut impl Read, header: &mut [u8; HEADER_LEN]) -> Result<(), FrameError> {
    let mut filled = 1;
    while filled < HEADER_LEN {
        // Give up early on bytes that can be neither a frame nor an HTTP request.
        if filled < 4
            && header[..filled] != MAGIC[..filled]
            && !HTTP_METHODS.iter().any(|m| m[..filled] == header[..filled])
        {
            return Err(FrameError::BadMagic { http: false });
        }
        if filled >= 4 && header[..4] != MAGIC {
            break;
        }
        match r.read(&mut header[filled..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection closed in the middle of a frame header",
                )
                .into());
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Writes one frame (header and body in one write for small frames).
pub fn write_frame(w: &mut impl Write, frame_type: u8, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&l| l <= max_body(frame_type))
        .ok_or_else(|| io::Error::other("frame body over its cap"))?;
    let mut buf = Vec::with_capacity(HEADER_LEN + body.len());
    buf.extend_from_slice(&MAGIC);
    buf.push(VERSION);
    buf.push(frame_type);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf)?;
    w.flush()
}

/// A body that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what} body: {why}")]
pub struct BodyError {
    pub what: &'static str,
    pub why: String,
}

/// Reads fixed fields off a body, refusing short or trailing bytes.
struct Cursor<'a> {
    what: &'static str,
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(what: &'static str, body: &'a [u8]) -> Self {
        Cursor { what, rest: body }
    }
    fn err(&self, why: impl Into<String>) -> BodyError {
        BodyError {
            what: self.what,
            why: why.into(),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], BodyError> {
        if self.rest.len() < n {
            return Err(self.err("too short"));
        }
        let (a, b) = self.rest.split_at(n);
        self.rest = b;
        Ok(a)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], BodyError> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }
    fn u8(&mut self) -> Result<u8, BodyError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, BodyError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, BodyError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, BodyError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn end(self) -> Result<(), BodyError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.err(format!("{} unexpected trailing bytes", self.rest.len())))
        }
    }
}

/// What a client signs to prove it holds a mailbox's private key. Only the
/// client builds one (from fixed-length fields), so a server cannot make the
/// client sign bytes of its choosing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The id of the certificate the client verified (and HELLO repeats).
    /// No address: the TLS binding ties the statement to one session with the
    /// holder of that key, whatever address or tunnel the client dialled.
    pub server_id: [u8; 32],
    /// The mailbox: SHA-256 of the client's SubjectPublicKeyInfo DER.
    pub mailbox: [u8; 32],
    pub server_nonce: [u8; 32],
    pub client_nonce: [u8; 32],
    /// The TLS exporter value of the connection the statement is made on
    /// ([`super::tls::auth_binding`]).
    pub tls_binding: [u8; 32],
}

impl Statement {
    /// `label | server id | mailbox | server nonce | client nonce | TLS
    /// binding`.
    pub fn to_bytes(&self) -> [u8; STATEMENT_LEN] {
        let mut out = [0u8; STATEMENT_LEN];
        let mut at = 0;
        for part in [
            &STATEMENT_LABEL[..],
            &self.server_id,
            &self.mailbox,
            &self.server_nonce,
            &self.client_nonce,
            &self.tls_binding,
        ] {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        debug_assert_eq!(at, STATEMENT_LEN);
        out
    }

    /// Parses the wire form; the label must be exact.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BodyError> {
        let mut c = Cursor::new("statement", bytes);
        if c.take(STATEMENT_LABEL.len())? != STATEMENT_LABEL {
            return Err(c.err("the protocol label is wrong"));
        }
        let server_id = c.array()?;
        let mailbox = c.array()?;
        let server_nonce = c.array()?;
        let client_nonce = c.array()?;
        let tls_binding = c.array()?;
        c.end()?;
        Ok(Statement {
            server_id,
            mailbox,
            server_nonce,
            client_nonce,
            tls_binding,
        })
    }
}

/// The AUTH request: the statement, the key it is signed with, and the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub statement: Statement,
    /// SubjectPublicKeyInfo DER of the mailbox key.
    pub spki: Vec<u8>,
    /// RSA-PSS-SHA256 (MGF1-SHA256, 32-byte salt) over the statement bytes.
    pub signature: Vec<u8>,
}

/// One waiting message in a LIST reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub id: MessageId,
    pub len: u64,
    /// When the server stored it, Unix seconds.
    pub received: u64,
}

/// The server's greeting, sent first on every accepted connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub server_id: [u8; 32],
    pub max_message_size: u64,
    /// The longest a WAIT is held before an empty reply, in seconds.
    pub max_wait_secs: u32,
}

/// A client-to-server frame, decoded.
// One request lives at a time per connection: the AUTH statement's 240 bytes
// inline cost nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Challenge,
    Auth(AuthRequest),
    List,
    Get(MessageId),
    Delete(MessageId),
    /// Hold the request until the mailbox is non-empty, or at most this many seconds.
    Wait(u32),
    /// Announce an upload of exactly this many bytes, sent next as DATA frames
    /// once the server says OK.
    Upload(u64),
    Data(Vec<u8>),
}

/// A server-to-client frame, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Hello(Hello),
    Challenge([u8; 32]),
    Ok,
    List {
        entries: Vec<ListEntry>,
        more: bool,
    },
    /// A GET's answer: this many bytes follow as DATA frames.
    Get(u64),
    Wait {
        ready: bool,
    },
    Stored {
        id: MessageId,
        recipients: u16,
    },
    Data(Vec<u8>),
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl Request {
    pub fn encode(&self) -> (u8, Vec<u8>) {
        match self {
            Request::Challenge => (kind::CHALLENGE, Vec::new()),
            Request::Auth(a) => {
                let mut b =
                    Vec::with_capacity(STATEMENT_LEN + 4 + a.spki.len() + a.signature.len());
                b.extend_from_slice(&a.statement.to_bytes());
                b.extend_from_slice(&(a.spki.len() as u16).to_be_bytes());
                b.extend_from_slice(&a.spki);
                b.extend_from_slice(&(a.signature.len() as u16).to_be_bytes());
                b.extend_from_slice(&a.signature);
                (kind::AUTH, b)
            }
            Request::List => (kind::LIST, Vec::new()),
            Request::Get(id) => (kind::GET, id.0.to_vec()),
            Request::Delete(id) => (kind::DELETE, id.0.to_vec()),
            Request::Wait(s) => (kind::WAIT, s.to_be_bytes().to_vec()),
            Request::Upload(n) => (kind::UPLOAD, n.to_be_bytes().to_vec()),
            Request::Data(d) => (kind::DATA, d.clone()),
        }
    }

    pub fn decode(frame: Frame) -> Result<Self, BodyError> {
        let body = &frame.body[..];
        let empty = |what, r| {
            let c = Cursor::new(what, body);
            c.end().map(|_| r)
        };
        match frame.frame_type {
            kind::CHALLENGE => empty("CHALLENGE", Request::Challenge),
            kind::LIST => empty("LIST", Request::List),
            kind::AUTH => {
                let mut c = Cursor::new("AUTH", body);
                let statement = Statement::from_bytes(c.take(STATEMENT_LEN)?)?;
                let spki_len = c.u16()? as usize;
                if spki_len > MAX_SPKI_LEN {
                    return Err(c.err(format!(
                        "a {spki_len}-byte key is over the {MAX_SPKI_LEN}-byte cap"
                    )));
                }
                let spki = c.take(spki_len)?.to_vec();
                let sig_len = c.u16()? as usize;
                if sig_len > MAX_SIGNATURE_LEN {
                    return Err(c.err(format!(
                        "a {sig_len}-byte signature is over the {MAX_SIGNATURE_LEN}-byte cap"
                    )));
                }
                let signature = c.take(sig_len)?.to_vec();
                c.end()?;
                Ok(Request::Auth(AuthRequest {
                    statement,
                    spki,
                    signature,
                }))
            }
            kind::GET | kind::DELETE => {
                let what = if frame.frame_type == kind::GET {
                    "GET"
                } else {
                    "DELETE"
                };
                let mut c = Cursor::new(what, body);
                let id = MessageId(c.array()?);
                c.end()?;
                Ok(if frame.frame_type == kind::GET {
                    Request::Get(id)
                } else {
                    Request::Delete(id)
                })
            }
            kind::WAIT => {
                let mut c = Cursor::new("WAIT", body);
                let s = c.u32()?;
                c.end()?;
                Ok(Request::Wait(s))
            }
            kind::UPLOAD => {
                let mut c = Cursor::new("UPLOAD", body);
                let n = c.u64()?;
                c.end()?;
                Ok(Request::Upload(n))
            }
            kind::DATA => Ok(Request::Data(frame.body)),
            other => Err(BodyError {
                what: "request",
                why: format!("frame type 0x{other:02x} is not a request"),
            }),
        }
    }
}

impl Reply {
    pub fn encode(&self) -> (u8, Vec<u8>) {
        match self {
            Reply::Hello(h) => {
                let mut b = Vec::with_capacity(44);
                b.extend_from_slice(&h.server_id);
                b.extend_from_slice(&h.max_message_size.to_be_bytes());
                b.extend_from_slice(&h.max_wait_secs.to_be_bytes());
                (kind::HELLO, b)
            }
            Reply::Challenge(n) => (kind::CHALLENGE_REPLY, n.to_vec()),
            Reply::Ok => (kind::OK, Vec::new()),
            Reply::List { entries, more } => {
                let mut b = Vec::with_capacity(3 + entries.len() * 32);
                b.extend_from_slice(&(entries.len() as u16).to_be_bytes());
                b.push(u8::from(*more));
                for e in entries {
                    b.extend_from_slice(&e.id.0);
                    b.extend_from_slice(&e.len.to_be_bytes());
                    b.extend_from_slice(&e.received.to_be_bytes());
                }
                (kind::LIST_REPLY, b)
            }
            Reply::Get(n) => (kind::GET_REPLY, n.to_be_bytes().to_vec()),
            Reply::Wait { ready } => (kind::WAIT_REPLY, vec![u8::from(*ready)]),
            Reply::Stored { id, recipients } => {
                let mut b = id.0.to_vec();
                b.extend_from_slice(&recipients.to_be_bytes());
                (kind::STORED, b)
            }
            Reply::Data(d) => (kind::DATA, d.clone()),
            Reply::Error { code, message } => {
                let mut b = code.to_u16().to_be_bytes().to_vec();
                b.extend_from_slice(truncate_utf8(message, MAX_ERROR_TEXT).as_bytes());
                (kind::ERROR, b)
            }
        }
    }

    pub fn decode(frame: Frame) -> Result<Self, BodyError> {
        let body = &frame.body[..];
        match frame.frame_type {
            kind::HELLO => {
                let mut c = Cursor::new("HELLO", body);
                let server_id = c.array()?;
                let max_message_size = c.u64()?;
                let max_wait_secs = c.u32()?;
                c.end()?;
                Ok(Reply::Hello(Hello {
                    server_id,
                    max_message_size,
                    max_wait_secs,
                }))
            }
            kind::CHALLENGE_REPLY => {
                let mut c = Cursor::new("CHALLENGE reply", body);
                let n = c.array()?;
                c.end()?;
                Ok(Reply::Challenge(n))
            }
            kind::OK => Cursor::new("OK", body).end().map(|_| Reply::Ok),
            kind::LIST_REPLY => {
                let mut c = Cursor::new("LIST reply", body);
                let count = c.u16()? as usize;
                if count > MAX_LIST_ENTRIES {
                    return Err(c.err(format!(
                        "{count} entries is over the cap of {MAX_LIST_ENTRIES}"
                    )));
                }
                let more = match c.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(c.err("the more flag is not 0 or 1")),
                };
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    entries.push(ListEntry {
                        id: MessageId(c.array()?),
                        len: c.u64()?,
                        received: c.u64()?,
                    });
                }
                c.end()?;
                Ok(Reply::List { entries, more })
            }
            kind::GET_REPLY => {
                let mut c = Cursor::new("GET reply", body);
                let n = c.u64()?;
                c.end()?;
                Ok(Reply::Get(n))
            }
            kind::WAIT_REPLY => {
                let mut c = Cursor::new("WAIT reply", body);
                let ready = match c.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(c.err("the ready flag is not 0 or 1")),
                };
                c.end()?;
                Ok(Reply::Wait { ready })
            }
            kind::STORED => {
                let mut c = Cursor::new("STORED", body);
                let id = MessageId(c.array()?);
                let recipients = c.u16()?;
                c.end()?;
                Ok(Reply::Stored { id, recipients })
            }
            kind::DATA => Ok(Reply::Data(frame.body)),
            kind::ERROR => {
                let mut c = Cursor::new("ERROR", body);
                let code = ErrorCode::from_u16(c.u16()?);
                let message = String::from_utf8_lossy(c.rest).into_owned();
                Ok(Reply::Error { code, message })
            }
            other => Err(BodyError {
                what: "reply",
                why: format!("frame type 0x{other:02x} is not a reply"),
            }),
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Writes a request frame.
pub fn write_request(w: &mut impl Write, r: &Request) -> io::Result<()> {
    let (t, b) = r.encode();
    write_frame(w, t, &b)
}

/// Writes a reply frame.
pub fn write_reply(w: &mut impl Write, r: &Reply) -> io::Result<()> {
    let (t, b) = r.encode();
    write_frame(w, t, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_bytes(t: u8, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        write_frame(&mut v, t, body).unwrap();
        v
    }

    #[test]
    fn oversized_length_is_refused_before_allocation() {
        let mut bytes = b"SXFD\x02\x07".to_vec();
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        match read_frame(&mut &bytes[..]) {
            Err(FrameError::TooLarge { len, cap, .. }) => {
                assert_eq!(len, u32::MAX);
                assert_eq!(cap, MAX_CONTROL_BODY);
            }
            other => panic!("{other:?}"),
        }
        let mut data = b"SXFD\x02\x08".to_vec();
        data.extend_from_slice(&(MAX_DATA_BODY + 1).to_be_bytes());
        assert!(matches!(
            read_frame(&mut &data[..]),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn bad_magic_http_version_and_type() {
        assert!(matches!(
            read_frame(&mut &b"GET / HTTP/1.1\r\n\r\n"[..]),
            Err(FrameError::BadMagic { http: true })
        ));
        assert!(matches!(
            read_frame(&mut &b"\x00\x01"[..]),
            Err(FrameError::BadMagic { http: false })
        ));
        assert!(matches!(
            read_frame(&mut &b"SXFD\x01\x01\0\0\0\0"[..]),
            Err(FrameError::Version(1))
        ));
        assert!(matches!(
            read_frame(&mut &b"SXFD\x02\x42\0\0\0\0"[..]),
            Err(FrameError::UnknownType(0x42))
        ));
        assert!(matches!(read_frame(&mut &b""[..]), Err(FrameError::Closed)));
    }

    #[test]
    fn requests_and_replies_round_trip() {
        let st = Statement {
            server_id: [1; 32],
            mailbox: [2; 32],
            server_nonce: [3; 32],
            client_nonce: [4; 32],
            tls_binding: [5; 32],
        };
        let reqs = [
            Request::Challenge,
            Request::Auth(AuthRequest {
                statement: st.clone(),
                spki: vec![5; 294],
                signature: vec![6; 256],
            }),
            Request::List,
            Request::Get(MessageId([7; 16])),
            Request::Delete(MessageId([8; 16])),
            Request::Wait(30),
            Request::Upload(1 << 40),
            Request::Data(vec![9; 100]),
        ];
        for r in reqs {
            let bytes = {
                let mut v = Vec::new();
                write_request(&mut v, &r).unwrap();
                v
            };
            let back = Request::decode(read_frame(&mut &bytes[..]).unwrap()).unwrap();
            assert_eq!(back, r);
        }
        let replies = [
            Reply::Hello(Hello {
                server_id: [1; 32],
                max_message_size: 64 << 20,
                max_wait_secs: 30,
            }),
            Reply::Challenge([2; 32]),
            Reply::Ok,
            Reply::List {
                entries: (0..MAX_LIST_ENTRIES)
                    .map(|i| ListEntry {
                        id: MessageId([i as u8; 16]),
                        len: i as u64,
                        received: 1,
                    })
                    .collect(),
                more: true,
            },
            Reply::Get(12345),
            Reply::Wait { ready: true },
            Reply::Stored {
                id: MessageId([3; 16]),
                recipients: 3,
            },
            Reply::Error {
                code: ErrorCode::OverQuota,
                message: "full".into(),
            },
        ];
        for r in replies {
            let mut v = Vec::new();
            write_reply(&mut v, &r).unwrap();
            let back = Reply::decode(read_frame(&mut &v[..]).unwrap()).unwrap();
            assert_eq!(back, r);
        }
        assert_eq!(Statement::from_bytes(&st.to_bytes()).unwrap(), st);
    }

    #[test]
    fn trailing_or_short_bodies_are_refused() {
        let f = read_frame(&mut &frame_bytes(kind::GET, &[0; 17])[..]).unwrap();
        assert!(Request::decode(f).is_err());
        let f = read_frame(&mut &frame_bytes(kind::LIST, b"../x")[..]).unwrap();
        assert!(Request::decode(f).is_err());
        let st = Statement {
            server_id: [1; 32],
            mailbox: [2; 32],
            server_nonce: [3; 32],
            client_nonce: [4; 32],
            tls_binding: [5; 32],
        }
        .to_bytes();
        assert_eq!(st.len(), 179);
        assert_eq!(&st[19..51], &[1; 32]);
        assert_eq!(&st[147..], &[5; 32]);
        let mut bad = st;
        bad[0] = b'X';
        assert!(Statement::from_bytes(&bad).is_err());
        assert!(Statement::from_bytes(&st[..178]).is_err());
        assert!(Statement::from_bytes(&[&st[..], b"\0"].concat()).is_err());
    }

    #[test]
    fn message_ids_sort_by_time_and_parse() {
        let a = MessageId::generate().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = MessageId::generate().unwrap();
        assert!(a < b);
        assert_eq!(MessageId::parse(&a.to_string()), Some(a));
        assert_eq!(MessageId::parse("../x"), None);
        assert_eq!(MessageId::parse(&a.to_string().to_uppercase()), None);
    }

    #[test]
    fn error_codes_round_trip() {
        for c in 0..100u16 {
            assert_eq!(ErrorCode::from_u16(c).to_u16(), c);
        }
        let long = "é".repeat(4000);
        let (_, body) = Reply::Error {
            code: ErrorCode::Internal,
            message: long,
        }
        .encode();
        assert!(body.len() <= MAX_CONTROL_BODY as usize);
    }
}
