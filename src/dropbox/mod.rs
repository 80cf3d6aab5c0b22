//! The optional drop-box: `sxf serve`, `sxf send` and `sxf fetch`.
//!
//! A small TCP server where anyone may leave a sealed `.sxf` for its recipients,
//! and only a recipient, proven by a signature from their private key, can list,
//! download and delete what waits for them. The server holds no private key and
//! decrypts nothing; it checks that an upload is a well-formed, validly signed
//! archive and files it by recipient fingerprint. `spec/DROPBOX.md` is the
//! protocol; this module is split by concern:
//!
//! - [`protocol`]: frames, bodies, caps, error codes, the signed statement.
//! - [`store`]: the durable on-disk mailboxes, quotas and long-poll wake-ups.
//! - [`server`]: accepting connections, deadlines, limits, authentication.
//! - [`client`]: upload, authenticate, list, download atomically, delete, wait.
//!
//! Like the rest of the library, nothing here prints: the server reports events
//! through a callback and every failure is an [`Error`] value.

pub mod client;
pub mod protocol;
pub mod server;
pub mod store;
pub mod tls;

use std::io;

pub use protocol::{ErrorCode, MessageId};

/// Default largest message a server accepts: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 << 20;
/// Default quota of one mailbox: 1 GiB.
pub const DEFAULT_MAILBOX_QUOTA: u64 = 1 << 30;
/// Default most distinct recipients one message is filed for.
pub const DEFAULT_MAX_RECIPIENTS: usize = 32;
/// Default age at which a waiting message is deleted: 30 days.
pub const DEFAULT_EXPIRE_AFTER: std::time::Duration =
    std::time::Duration::from_secs(30 * 24 * 3600);
/// Default most simultaneous connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default most simultaneous connections from one address (IPv6: one /64): a
/// sixteenth of the default cap, so no one address can take every slot, and
/// more than an honest user runs at once (a `fetch --watch` and a few sends).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 16;
/// Default free space the server keeps on the store's filesystem: 256 MiB.
pub const DEFAULT_MIN_FREE_SPACE: u64 = 256 << 20;
/// Free inodes the server keeps in reserve, as it keeps free bytes.
pub const DEFAULT_MIN_FREE_INODES: u64 = 1024;
/// Default idle deadline: nothing received for this long closes the connection.
pub const DEFAULT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Default total deadline of one connection.
pub const DEFAULT_TOTAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
/// Default deadline of a connection that has not authenticated, counted from
/// its start, time inside an upload excepted (uploads need no authentication).
/// An honest client authenticates or starts its upload after a round trip or
/// two and one signature, so 20 s is ample; and being shorter than the idle
/// deadline, it means a client that keeps an unauthenticated connection alive
/// with one request per idle period holds it no longer than one that sends
/// nothing at all.
pub const DEFAULT_UNAUTHENTICATED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// Default longest WAIT before an empty reply.
pub const DEFAULT_MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// Default lifetime of an authentication challenge.
pub const DEFAULT_CHALLENGE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// Every drop-box failure, on either side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an ERROR frame.
    #[error("the server refused: {message} [{code}]")]
    Refused { code: ErrorCode, message: String },
    /// The peer sent something this protocol does not allow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server is not the one the client pinned with `--server-id`.
    #[error("the server at {addr} has id {found}, not the expected {expected}")]
    ServerMismatch {
        addr: String,
        expected: String,
        found: String,
    },
    /// The server is not the one recorded for its address on first contact.
    #[error(
        "the server at {addr} now shows server id {found}, but {file} recorded {expected} for it \
         on first contact: refused, someone may be impersonating it (if its key really changed, \
         confirm the new id with its operator, then remove its line from that file)"
    )]
    KnownServerChanged {
        addr: String,
        expected: String,
        found: String,
        file: String,
    },
    /// The connection reached the client's own limit on its length
    /// ([`client::ClientOptions::total_timeout`]) and was cut.
    #[error(
        "the connection to {addr} did not finish within {} (the client's time limit) and was cut",
        humantime::format_duration(*limit)
    )]
    TimedOut {
        addr: String,
        limit: std::time::Duration,
    },
    /// Talking to the peer failed (refused, reset, timed out, closed).
    #[error("{context}: {source}")]
    Connection {
        context: String,
        #[source]
        source: io::Error,
    },
    /// Another fetch holds the output directory ([`client::lock_out_dir`]).
    #[error(
        "another fetch is already saving into {dir}; wait for it to end, or fetch into another \
         directory"
    )]
    OutDirBusy { dir: String },
    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
}

impl Error {
    pub(crate) fn conn(context: impl Into<String>, source: io::Error) -> Self {
        Error::Connection {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The server's error code, if the server refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when trying again later may succeed: the connection broke or
    /// reached the client's time limit, or the server was busy, stopping, or
    /// closed a connection at its deadline.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connection { .. } | Error::TimedOut { .. } => true,
            Error::Refused { code, .. } => matches!(
                code,
                ErrorCode::Busy
                    | ErrorCode::ShuttingDown
                    | ErrorCode::IdleTimeout
                    | ErrorCode::Deadline
                    | ErrorCode::Internal
            ),
            _ => false,
        }
    }
}
