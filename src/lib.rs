//! sxf: send a message and photos securely without a live connection.
//!
//! The library owns the file format, the cryptography, the payload and the keys;
//! it returns typed errors and never prints or exits. The `sxf` binary is a thin
//! layer over it.
//!
//! - [`keys`]: reading, generating and fingerprinting RSA keys.
//! - [`contacts`]: names for public keys, and your own identity, in the config directory.
//! - [`format`]: the `.sxf` container and manifest (parsing knows no crypto).
//! - [`crypto`]: key wrap, signatures, and the streaming encrypt-then-MAC payload.
//! - [`payload`]: the inner plaintext layout (message and files).
//! - [`images`]: photo compression and metadata removal at seal time.
//! - [`seal`] and [`open`]: the two halves of the workflow.
//! - [`armor`] and [`input`]: the text form of an archive, and reading archives
//!   from pipes and armored files.
//! - [`dropbox`]: the optional drop-box server and its client (`sxf serve`, `send`, `fetch`).

pub mod armor;
pub mod contacts;
pub mod crypto;
pub mod dropbox;
pub mod error;
pub mod format;
mod fsutil;
pub mod images;
pub mod input;
pub mod keys;
pub mod open;
pub mod payload;
pub mod platform;
pub mod seal;

pub use error::Error;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Progress of a long operation, reported in bytes. The library calls it; the
/// binary decides whether to draw anything.
pub trait Progress {
    fn begin(&mut self, _what: &str, _total: u64) {}
    fn advance(&mut self, _bytes: u64) {}
    fn end(&mut self) {}
    /// A flag the caller sets (on Ctrl-C, say) to stop a seal or open at the next
    /// chunk. The operation then fails with [`Error::Interrupted`] and cleans up
    /// exactly as for any other error: nothing is left behind.
    fn stop_flag(&self) -> Option<Arc<AtomicBool>> {
        None
    }
}

/// Parses exactly `2 * N` lowercase hex digits: the one canonical spelling of
/// digests, fingerprints and ids everywhere in sxf.
pub(crate) fn parse_lower_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let canonical = text.len() == 2 * N
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let mut out = [0u8; N];
    (canonical && hex::decode_to_slice(text, &mut out).is_ok()).then_some(out)
}

/// The caller's stop request (see [`Progress::stop_flag`]), as seal and open use it.
#[derive(Clone)]
pub(crate) struct StopFlag(Option<Arc<AtomicBool>>);

impl StopFlag {
    pub(crate) fn of(progress: &dyn Progress) -> Self {
        StopFlag(progress.stop_flag())
    }

    /// A flag nobody can set.
    #[cfg(test)]
    pub(crate) fn none() -> Self {
        StopFlag(None)
    }

    pub(crate) fn is_set(&self) -> bool {
        self.0.as_ref().is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// `Err(Interrupted)` once a stop was asked for.
    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.is_set() {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Wraps a reader so that it fails at its next read once a stop was asked for.
    pub(crate) fn guard<R>(&self, inner: R) -> Stoppable<R> {
        Stoppable {
            inner,
            flag: self.clone(),
        }
    }
}

/// A reader that fails once its [`StopFlag`] is set.
pub(crate) struct Stoppable<R> {
    inner: R,
    flag: StopFlag,
}

impl<R: std::io::Read> std::io::Read for Stoppable<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.flag.is_set() {
            return Err(std::io::Error::other("interrupted"));
        }
        self.inner.read(buf)
    }
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
