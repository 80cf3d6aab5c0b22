//! Archives to read: a binary `.sxf` file as it is, or anything else made into
//! one first.
//!
//! Opening reads an archive twice (the checks, then the decryption) and seeks in
//! it, so `open`, `verify` and `inspect` need a seekable binary file. An
//! [`ArchiveInput`] is that file:
//!
//! - a regular file holding a binary archive is used as it is;
//! - a regular file holding an armored archive (see [`crate::armor`]) is decoded
//!   once into an anonymous private temporary file;
//! - anything that cannot be read twice (standard input, a pipe, a FIFO such as
//!   `<(…)`, a character device) is copied ("spooled") into an anonymous private
//!   temporary file, and decoded on the way if it is armored. At most
//!   [`InputOptions::spool_limit`] bytes are read from it.
//!
//! The temporary file is created in the system's temporary directory (`TMPDIR`)
//! with mode 0600 and is unlinked from the start (`O_TMPFILE`, or removed right
//! after creation where that is not supported), so it has no name, nothing can
//! open it, and it disappears with the process however the process ends.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::armor::{self, ArmorReader};
use crate::error::Error;
use crate::{Progress, StopFlag};

/// The default for [`InputOptions::spool_limit`]: 4 GiB.
pub const DEFAULT_SPOOL_LIMIT: u64 = 4 << 30;

/// How input that is not a seekable binary archive is handled.
#[derive(Debug, Clone)]
pub struct InputOptions {
    /// The most bytes read from input that cannot be read twice; more fails with
    /// [`Error::SpoolLimit`]. Armored regular files are not limited: their
    /// decoded copy is smaller than the file itself.
    pub spool_limit: u64,
}

impl Default for InputOptions {
    fn default() -> Self {
        InputOptions {
            spool_limit: DEFAULT_SPOOL_LIMIT,
        }
    }
}

/// A seekable binary archive, ready for [`crate::open`].
#[derive(Debug)]
pub struct ArchiveInput {
    file: File,
    len: u64,
    armored: bool,
    spooled: bool,
}

/// Opens an archive file. Windows refuses to open a directory as a file
/// (access denied), so that case is named here, as it is on Unix below.
fn open_archive_file(path: &Path) -> Result<File, Error> {
    File::open(path).map_err(|e| {
        if path.is_dir() {
            not_an_archive_but_a_directory()
        } else {
            Error::io("reading the archive", e)
        }
    })
}

impl ArchiveInput {
    /// A binary archive file, used as it is (no armor, no spooling): what the
    /// path-based functions of [`crate::open`] read.
    pub fn binary(path: &Path) -> Result<Self, Error> {
        let file = open_archive_file(path)?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io("reading the archive", e))?;
        if meta.is_dir() {
            return Err(not_an_archive_but_a_directory());
        }
        let len = meta.len();
        Ok(ArchiveInput {
            file,
            len,
            armored: false,
            spooled: false,
        })
    }

    /// Opens `path`, which may be binary or armored, a regular file or not.
    pub fn open(
        path: &Path,
        options: &InputOptions,
        progress: &mut dyn Progress,
    ) -> Result<Self, Error> {
        let file = open_archive_file(path)?;
        Self::from_file(file, options, progress)
    }

    /// Takes an open file (standard input, say), which may be binary or
    /// armored, a regular file or not.
    pub fn from_file(
        mut file: File,
        options: &InputOptions,
        progress: &mut dyn Progress,
    ) -> Result<Self, Error> {
        let meta = match file.metadata() {
            Ok(meta) => meta,
            // Windows cannot query a pipe's metadata: read it as the stream it is.
            #[cfg(windows)]
            Err(_) => return Self::spool(file, options.spool_limit, progress),
            #[cfg(not(windows))]
            Err(e) => return Err(Error::io("reading the archive", e)),
        };
        if meta.is_dir() {
            return Err(not_an_archive_but_a_directory());
        }
        if !meta.is_file() {
            return Self::spool(file, options.spool_limit, progress);
        }
        let mut first = [0u8; 1];
        let n = read_retrying(&mut file, &mut first)
            .map_err(|e| Error::io("reading the archive", e))?;
        file.seek(SeekFrom::Start(0)).map_err(not_seekable)?;
        if n == 1 && armor::starts_armored(first[0]) {
            return Self::copy(file, u64::MAX, Some(meta.len()), progress);
        }
        Ok(ArchiveInput {
            file,
            len: meta.len(),
            armored: false,
            spooled: false,
        })
    }

    /// Spools a reader that cannot be read twice, decoding armor on the way.
    pub fn from_reader(
        reader: impl Read,
        options: &InputOptions,
        progress: &mut dyn Progress,
    ) -> Result<Self, Error> {
        Self::spool(reader, options.spool_limit, progress)
    }

    fn spool(reader: impl Read, limit: u64, progress: &mut dyn Progress) -> Result<Self, Error> {
        let mut input = Self::copy(reader, limit, None, progress)?;
        input.spooled = true;
        Ok(input)
    }

    /// Copies `reader` into an anonymous private temporary file, decoding it if
    /// it is armored, reading at most `limit` bytes.
    fn copy(
        reader: impl Read,
        limit: u64,
        total: Option<u64>,
        progress: &mut dyn Progress,
    ) -> Result<Self, Error> {
        let stop = StopFlag::of(progress);
        let mut source = BufReader::with_capacity(
            1 << 16,
            Limited {
                inner: stop.guard(reader),
                left: limit,
                limit,
            },
        );
        let first = loop {
            match source.fill_buf() {
                Ok(b) => break b.first().copied(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e, &stop)),
            }
        };
        let armored = first.is_some_and(armor::starts_armored);
        let tmp =
            tempfile::tempfile().map_err(|e| Error::io("creating a private temporary file", e))?;
        let write_err = |e| Error::io("writing a private temporary copy of the archive", e);
        let mut out = BufWriter::with_capacity(1 << 16, &tmp);
        progress.begin(
            if armored { "decoding" } else { "reading" },
            total.unwrap_or(0),
        );
        let result = if armored {
            pump(&mut ArmorReader::new(source), &mut out, progress)
        } else {
            pump(&mut source, &mut out, progress)
        };
        progress.end();
        match result {
            Ok(()) => {}
            Err(Pumped::Read(e)) => return Err(read_error(e, &stop)),
            Err(Pumped::Write(e)) => return Err(write_err(e)),
        }
        out.flush().map_err(write_err)?;
        drop(out);
        stop.check()?;
        let mut file = tmp;
        let len = file.seek(SeekFrom::End(0)).map_err(write_err)?;
        file.seek(SeekFrom::Start(0)).map_err(write_err)?;
        Ok(ArchiveInput {
            file,
            len,
            armored,
            spooled: false,
        })
    }

    /// The binary archive's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty input (which no reader accepts).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the input was armored (and was decoded).
    pub fn was_armored(&self) -> bool {
        self.armored
    }

    /// Whether the input could not be read twice and was copied.
    pub fn was_spooled(&self) -> bool {
        self.spooled
    }

    /// A new handle on the binary archive, positioned at its start.
    pub fn reopen(&self) -> Result<File, Error> {
        let mut f = self
            .file
            .try_clone()
            .map_err(|e| Error::io("reading the archive", e))?;
        f.seek(SeekFrom::Start(0)).map_err(not_seekable)?;
        Ok(f)
    }
}

fn not_seekable(e: io::Error) -> Error {
    Error::io(
        "the archive cannot be read twice (it is not seekable); pipe it in instead",
        e,
    )
}

fn read_retrying(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

enum Pumped {
    Read(io::Error),
    Write(io::Error),
}

fn pump(r: &mut impl Read, w: &mut impl Write, progress: &mut dyn Progress) -> Result<(), Pumped> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = read_retrying(r, &mut buf).map_err(Pumped::Read)?;
        if n == 0 {
            return Ok(());
        }
        w.write_all(&buf[..n]).map_err(Pumped::Write)?;
        progress.advance(n as u64);
    }
}

/// The one error for input over the spool limit, found inside an `io::Error`.
#[derive(Debug, thiserror::Error)]
#[error("over the spool limit")]
struct OverLimit(u64);

fn read_error(e: io::Error, stop: &StopFlag) -> Error {
    if stop.is_set() {
        return Error::Interrupted;
    }
    if let Some(a) = armor::armor_error(&e) {
        return Error::Malformed(a.to_string());
    }
    if let Some(OverLimit(limit)) = e.get_ref().and_then(|i| i.downcast_ref::<OverLimit>()) {
        return Error::SpoolLimit { limit: *limit };
    }
    Error::io("reading the archive", e)
}

/// A reader that fails once more than `limit` bytes came through.
struct Limited<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(io::Error::other(OverLimit(self.limit)));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The error for a directory given where an archive belongs (a usage error,
/// exit 2: nothing about any archive was judged).
fn not_an_archive_but_a_directory() -> Error {
    Error::Usage("it is a directory, not an .sxf archive".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoProgress;

    fn armored(data: &[u8]) -> Vec<u8> {
        let mut w = armor::ArmorWriter::new(Vec::new()).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn contents(input: &ArchiveInput) -> Vec<u8> {
        let mut out = Vec::new();
        input.reopen().unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn armor_spooled_input_is_decoded_into_a_seekable_copy() {
        let data = b"PK\x03\x04 pretend archive".to_vec();
        let opts = InputOptions::default();
        let input = ArchiveInput::from_reader(&armored(&data)[..], &opts, &mut NoProgress).unwrap();
        assert!(input.was_armored() && input.was_spooled());
        assert_eq!(input.len(), data.len() as u64);
        assert_eq!(contents(&input), data);
        let input = ArchiveInput::from_reader(&data[..], &opts, &mut NoProgress).unwrap();
        assert!(!input.was_armored());
        assert_eq!(contents(&input), data);
    }

    #[test]
    fn armor_spool_limit_is_enforced_and_named() {
        let opts = InputOptions { spool_limit: 10 };
        let ok = ArchiveInput::from_reader(&[7u8; 10][..], &opts, &mut NoProgress).unwrap();
        assert_eq!(ok.len(), 10);
        let err = ArchiveInput::from_reader(&[7u8; 11][..], &opts, &mut NoProgress).unwrap_err();
        assert!(matches!(err, Error::SpoolLimit { limit: 10 }), "{err:?}");
    }

    #[test]
    fn armor_errors_are_malformed() {
        let mut bad = armored(b"hello");
        bad.extend_from_slice(b"junk\n");
        let err = ArchiveInput::from_reader(&bad[..], &InputOptions::default(), &mut NoProgress)
            .unwrap_err();
        assert!(matches!(err, Error::Malformed(_)), "{err:?}");
        assert!(err.is_rejection());
    }
}
