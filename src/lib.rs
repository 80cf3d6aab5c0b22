//! sxf: send a message and photos securely without a live connection.
//!
//! The library owns the file format, the cryptography, the payload and the keys;
//! it returns typed errors and never prints or exits. The `sxf` binary is a thin
//! layer over it.
//!
//! - [`keys`]: reading, generating and fingerprinting RSA keys.
//! - [`format`]: the `.sxf` container and manifest (parsing knows no crypto).
//! - [`crypto`]: key wrap, signatures, and the streaming encrypt-then-MAC payload.
//! - [`payload`]: the inner plaintext layout (message and files).
//! - [`images`]: photo compression and metadata removal at seal time.
//! - [`seal`] and [`open`]: the two halves of the workflow.
//! - [`dropbox`]: the optional drop-box server and its client (`sxf serve`, `send`, `fetch`).

pub mod crypto;
pub mod dropbox;
pub mod error;
pub mod format;
mod fsutil;
pub mod images;
pub mod keys;
pub mod open;
pub mod payload;
pub mod seal;

pub use error::Error;

/// Progress of a long operation, reported in bytes. The library calls it; the
/// binary decides whether to draw anything.
pub trait Progress {
    fn begin(&mut self, _what: &str, _total: u64) {}
    fn advance(&mut self, _bytes: u64) {}
    fn end(&mut self) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
