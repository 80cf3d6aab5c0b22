//! The library's error type. Every failure is a value; nothing here prints.
//!
//! Errors fall into two classes, which the binary maps to exit codes: a
//! *rejection* (the archive is malformed, not authentic, or cannot be opened
//! with the given key: exit 1) and everything else (usage, I/O, bad key files,
//! bad images: exit 2). All decryption failures share one variant, so that a
//! wrong key, not being a recipient, a bad OAEP block, a bad MAC and bad padding
//! look the same from outside.

use std::io;

use crate::format::FormatError;
use crate::images::ImageError;
use crate::keys::{Fingerprint, KeyError};
use crate::payload::PayloadError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The container or manifest breaks a rule of the spec.
    #[error("not a valid sxf archive: {0}")]
    Malformed(String),
    /// A version or algorithm this build does not speak; never read with a fallback.
    #[error("unsupported sxf archive: {0}")]
    Unsupported(String),
    /// The signature or a digest does not check out.
    #[error("not authentic: {0}")]
    NotAuthentic(String),
    /// The archive is authentic but was sealed by someone else.
    #[error(
        "not authentic: the signature is not by the expected sender {expected} (the manifest claims {found})"
    )]
    WrongSender {
        expected: Fingerprint,
        found: Fingerprint,
    },
    /// The one error for every decryption failure.
    #[error(
        "cannot decrypt: this key cannot open this archive (it is not a recipient, or the archive was altered)"
    )]
    CannotDecrypt,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The caller asked for something impossible (nothing to seal, output exists...).
    #[error("{0}")]
    Usage(String),
    /// Input that cannot be read twice (standard input, a pipe) is copied to a
    /// private temporary file before it is read; this input was larger than the
    /// limit (see [`crate::input::InputOptions::spool_limit`]).
    #[error(
        "the archive read from a pipe or standard input is larger than the spool limit of {}",
        indicatif::HumanBytes(*limit)
    )]
    SpoolLimit { limit: u64 },
    /// Stopped by the caller's stop flag (Ctrl-C); nothing was left behind.
    #[error("interrupted; nothing was written")]
    Interrupted,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// True for failures that mean "this archive is bad, or not for you" (exit 1).
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            Error::Malformed(_)
                | Error::Unsupported(_)
                | Error::NotAuthentic(_)
                | Error::WrongSender { .. }
                | Error::CannotDecrypt
        )
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The refusal to replace an existing file or directory.
    pub(crate) fn already_exists(path: &std::path::Path) -> Self {
        Error::Usage(format!(
            "{} already exists; sxf never overwrites",
            path.display()
        ))
    }

    pub(crate) fn io_at(path: &std::path::Path, source: io::Error) -> Self {
        Error::io(path.display().to_string(), source)
    }
}

impl From<FormatError> for Error {
    fn from(e: FormatError) -> Self {
        match e {
            FormatError::Malformed(m) => Error::Malformed(m),
            FormatError::Unsupported(m) => Error::Unsupported(m),
            // A read error inside the container (CRC mismatch, truncated data).
            FormatError::Io(e)
                if e.kind() == io::ErrorKind::InvalidData
                    || e.kind() == io::ErrorKind::UnexpectedEof =>
            {
                Error::Malformed(e.to_string())
            }
            FormatError::Io(e) => Error::io("reading the archive", e),
        }
    }
}

impl From<PayloadError> for Error {
    fn from(e: PayloadError) -> Self {
        match e {
            PayloadError::Malformed(m) => {
                Error::Malformed(format!("the decrypted payload is malformed: {m}"))
            }
            PayloadError::Io(e) => Error::io("writing the opened files", e),
        }
    }
}
