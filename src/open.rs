//! `open`, `verify` and `inspect`: every check, in one order, before any byte is
//! decrypted.
//!
//! [`open`] reads top to bottom as the spec's "Opening" section does:
//! container rules, signature over the raw manifest bytes, manifest rules, sender,
//! `keys.bin` digest, key unwrap, payload digest and MAC, and only then decryption
//! into a private temporary directory that is renamed into place at the end.
//! Any failure leaves nothing behind.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::Progress;
use crate::crypto::{self, ContentKey, DecryptReader, MacReader, StreamCheckError};
use crate::error::Error;
use crate::format::{CheckedManifest, ContainerReader, Manifest};
use crate::input::ArchiveInput;
use crate::keys::{PrivateKeyInfo, PublicKeyInfo};
use crate::payload::{self, FileEntry, PayloadError, PayloadSink};

/// Whose signature `open` and `verify` accept.
#[derive(Debug, Clone, Copy)]
pub enum ExpectedSender<'a> {
    /// Only this key (the normal case: `--from`).
    Key(&'a PublicKeyInfo),
    /// Whatever key the manifest embeds (`--any-sender`; the caller must warn).
    Embedded,
}

/// An archive whose signature and every digest checked out.
#[derive(Debug)]
pub struct Verified {
    pub manifest: CheckedManifest,
    pub archive_len: u64,
}

/// One file `open` wrote.
#[derive(Debug, Clone)]
pub struct OpenedFile {
    pub entry: FileEntry,
    /// The plain file name used inside the output directory.
    pub saved_as: String,
}

/// What `open` produced.
#[derive(Debug)]
pub struct Opened {
    pub manifest: CheckedManifest,
    pub message: String,
    pub files: Vec<OpenedFile>,
    pub out_dir: PathBuf,
}

/// The name of the message file in the output directory; not written when the
/// message is empty.
pub const MESSAGE_FILE: &str = payload::RESERVED_MESSAGE_NAME;

/// Prefix of the private staging directory that [`open`] decrypts into, beside
/// the output directory; tempfile adds random letters and digits.
pub const STAGING_PREFIX: &str = ".sxf-open-";

/// Steps 1–5 of the spec's opening procedure, shared by `open`, `verify` and the
/// drop-box: container rules, signature over the exact manifest bytes, manifest
/// rules, sender identity, and the `keys.bin` digest.
fn authenticate(
    container: &mut ContainerReader,
    sender: ExpectedSender<'_>,
) -> Result<(CheckedManifest, Vec<u8>), Error> {
    let manifest_bytes = container.read_manifest()?;
    let signature = container.read_signature()?;

    // With a known sender the signature is checked before the manifest is parsed.
    // With --any-sender the key comes from the manifest, so it is parsed first.
    let manifest = match sender {
        ExpectedSender::Key(key) => {
            if !crypto::verify_signature(key.key(), &manifest_bytes, &signature) {
                return Err(signature_failure(&manifest_bytes, key));
            }
            let manifest = Manifest::parse(&manifest_bytes)?;
            if manifest.sender.fingerprint() != key.fingerprint() {
                // Cannot happen for an honest signer, but the manifest must name
                // the key that signed it.
                return Err(Error::NotAuthentic(
                    "the manifest names a different sender than the key that signed it".into(),
                ));
            }
            manifest
        }
        ExpectedSender::Embedded => {
            let manifest = Manifest::parse(&manifest_bytes)?;
            if !crypto::verify_signature(manifest.sender.key(), &manifest_bytes, &signature) {
                return Err(Error::NotAuthentic(
                    "the signature does not match the embedded sender key".into(),
                ));
            }
            manifest
        }
    };

    if container.entry_len(0) != manifest.manifest.keys.length
        || container.entry_len(1) != manifest.manifest.payload.length
    {
        return Err(Error::NotAuthentic(
            "entry sizes differ from what the manifest commits to".into(),
        ));
    }
    let keys_bin = container.read_keys()?;
    if Sha256::digest(&keys_bin).as_slice() != manifest.keys_sha256 {
        return Err(Error::NotAuthentic(
            "keys.bin differs from what the manifest commits to".into(),
        ));
    }
    Ok((manifest, keys_bin))
}

/// The container, with a plain word for a directory given as an archive.
/// The cheap checks only (container rules, signature, manifest rules, sender and
/// the `keys.bin` digest), so that a caller can refuse a bad archive or the wrong
/// sender before it asks for a private key's passphrase. [`open`] and [`verify`]
/// make these checks again themselves, in their full order.
pub fn check_archive(
    archive: &ArchiveInput,
    sender: ExpectedSender<'_>,
) -> Result<CheckedManifest, Error> {
    let mut container = container(archive)?;
    Ok(authenticate(&mut container, sender)?.0)
}

/// Explains a bad signature: a clear "wrong sender" when the (unverified) manifest
/// names someone else, otherwise a plain failure.
fn signature_failure(manifest_bytes: &[u8], expected: &PublicKeyInfo) -> Error {
    match Manifest::parse(manifest_bytes) {
        Ok(m) if m.sender.fingerprint() != expected.fingerprint() => Error::WrongSender {
            expected: expected.fingerprint().clone(),
            found: m.sender.fingerprint().clone(),
        },
        _ => Error::NotAuthentic("the signature does not verify".into()),
    }
}

fn check_payload(
    container: &mut ContainerReader,
    manifest: &CheckedManifest,
    mac: Option<(&ContentKey, &[u8])>,
    progress: &mut dyn Progress,
) -> Result<(), Error> {
    progress.begin("verifying", manifest.manifest.payload.length);
    let stop = crate::StopFlag::of(progress);
    let reader = stop.guard(container.payload_reader()?);
    let result = crypto::check_stream(
        reader,
        &manifest.payload_sha256,
        mac.map(|(key, header)| (key, header, &manifest.payload_mac)),
        &mut |n| progress.advance(n),
    );
    progress.end();
    match result {
        Ok(()) => Ok(()),
        Err(StreamCheckError::Digest) => Err(Error::NotAuthentic(
            "payload.bin differs from what the manifest commits to".into(),
        )),
        Err(StreamCheckError::Mac) => Err(Error::CannotDecrypt),
        Err(StreamCheckError::Io(_)) if stop.is_set() => Err(Error::Interrupted),
        Err(StreamCheckError::Io(e)) => Err(crate::format::FormatError::Io(e).into()),
    }
}

fn container(archive: &ArchiveInput) -> Result<ContainerReader, Error> {
    Ok(ContainerReader::from_file(archive.reopen()?)?)
}

/// Checks the signature and every entry's digest; needs no private key.
/// `archive` is a binary archive file; [`verify_input`] also takes armor and pipes.
pub fn verify(
    archive: &Path,
    sender: ExpectedSender<'_>,
    progress: &mut dyn Progress,
) -> Result<Verified, Error> {
    verify_input(&ArchiveInput::binary(archive)?, sender, progress)
}

/// [`verify`] for any [`ArchiveInput`].
pub fn verify_input(
    archive: &ArchiveInput,
    sender: ExpectedSender<'_>,
    progress: &mut dyn Progress,
) -> Result<Verified, Error> {
    let mut container = container(archive)?;
    let (manifest, _) = authenticate(&mut container, sender)?;
    check_payload(&mut container, &manifest, None, progress)?;
    Ok(Verified {
        manifest,
        archive_len: archive.len(),
    })
}

/// Verifies everything, then decrypts into `out_dir`, which must not exist.
/// On any failure nothing is left behind. `archive` is a binary archive file;
/// [`open_input`] also takes armor and pipes.
pub fn open(
    archive: &Path,
    key: &PrivateKeyInfo,
    sender: ExpectedSender<'_>,
    out_dir: &Path,
    progress: &mut dyn Progress,
) -> Result<Opened, Error> {
    if out_dir.exists() {
        return Err(Error::already_exists(out_dir));
    }
    open_input(
        &ArchiveInput::binary(archive)?,
        key,
        sender,
        out_dir,
        progress,
    )
}

/// [`open`] for any [`ArchiveInput`].
pub fn open_input(
    archive: &ArchiveInput,
    key: &PrivateKeyInfo,
    sender: ExpectedSender<'_>,
    out_dir: &Path,
    progress: &mut dyn Progress,
) -> Result<Opened, Error> {
    if out_dir.exists() {
        return Err(Error::already_exists(out_dir));
    }
    // 1. Container rules.
    let mut container = container(archive)?;
    // 2–5. Signature, manifest rules, sender, keys.bin digest.
    let (manifest, keys_bin) = authenticate(&mut container, sender)?;
    // 6. Find our wrapped key and unwrap it. Not being a recipient and a failed
    //    unwrap are the same error.
    let index = manifest
        .recipients
        .iter()
        .position(|r| r == key.fingerprint())
        .ok_or(Error::CannotDecrypt)?;
    let wrapped = &keys_bin[manifest.wrapped_key_range(index)];
    let content_key = crypto::unwrap_key(&mut rand::rngs::SysRng, key.key(), wrapped)
        .map_err(|_| Error::CannotDecrypt)?;
    // 7. One pass over payload.bin: its SHA-256 and, in constant time, its MAC.
    let header = manifest.mac_header();
    check_payload(
        &mut container,
        &manifest,
        Some((&content_key, &header)),
        progress,
    )?;
    // 8. Only now decrypt, into a private temporary directory beside out_dir.
    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(STAGING_PREFIX);
    crate::platform::set_temp_mode(&mut builder, 0o700);
    let staging = builder.tempdir_in(parent).map_err(|e| {
        Error::io(
            format!("creating a directory in {}", parent.display()),
            crate::fsutil::without_temp_path(e),
        )
    })?;
    let mut sink = DirSink {
        dir: staging.path().to_owned(),
        message: String::new(),
        files: Vec::new(),
    };
    //    The MAC is computed again over the bytes actually decrypted, so a file
    //    changed after step 7 is caught before anything is published.
    progress.begin("decrypting", manifest.manifest.payload.length);
    let stop = crate::StopFlag::of(progress);
    let mut decrypted = DecryptReader::new(
        MacReader::new(
            ProgressReader {
                inner: stop.guard(container.payload_reader()?),
                progress: &mut *progress,
            },
            &content_key,
            &header,
        ),
        &content_key,
    );
    let result = payload::read_payload(&mut decrypted, &mut sink);
    // Read whatever the payload parser left (only after an error) so the MAC
    // covers the whole entry.
    let mut mac_reader = decrypted.into_inner();
    let drained = io::copy(&mut mac_reader, &mut io::sink())
        .map(|_| mac_reader.verify(&manifest.payload_mac));
    progress.end();
    stop.check()?;
    // A failure to read the archive itself (I/O, a CRC mismatch) is reported as
    // such; it depends on no key, so it tells nothing about the decryption.
    let remac = drained.map_err(|e| Error::from(crate::format::FormatError::Io(e)))?;
    match result {
        Ok(_) => {}
        Err(PayloadError::Io(e)) if crypto::is_decrypt_failure(&e) => {
            return Err(Error::CannotDecrypt);
        }
        Err(_) if remac.is_err() => return Err(Error::CannotDecrypt),
        Err(e) => return Err(e.into()),
    }
    remac.map_err(|_| Error::CannotDecrypt)?;
    // 9. Publish: sync the files, then rename the directory into place.
    crate::fsutil::sync_dir(staging.path()).map_err(|e| Error::io("syncing output", e))?;
    // A stop asked for during the sync still wins: nothing is published.
    stop.check()?;
    let staged = staging.keep();
    if let Err(e) = crate::platform::rename_noreplace(&staged, out_dir) {
        let _ = fs::remove_dir_all(&staged);
        return Err(if e.kind() == io::ErrorKind::AlreadyExists {
            Error::already_exists(out_dir)
        } else {
            Error::io(format!("creating {}", out_dir.display()), e)
        });
    }
    crate::fsutil::sync_parent_dir(out_dir);
    Ok(Opened {
        manifest,
        message: sink.message,
        files: sink.files,
        out_dir: out_dir.to_owned(),
    })
}

/// Reads the manifest without checking the signature, for `inspect`.
/// `archive` is a binary archive file; [`inspect_input`] also takes armor and pipes.
pub fn inspect(archive: &Path) -> Result<(CheckedManifest, u64), Error> {
    inspect_input(&ArchiveInput::binary(archive)?)
}

/// [`inspect`] for any [`ArchiveInput`].
pub fn inspect_input(archive: &ArchiveInput) -> Result<(CheckedManifest, u64), Error> {
    let mut container = container(archive)?;
    let manifest = Manifest::parse(&container.read_manifest()?)?;
    Ok((manifest, archive.len()))
}

/// Writes the message and the files into the staging directory.
struct DirSink {
    dir: PathBuf,
    message: String,
    files: Vec<OpenedFile>,
}

impl DirSink {
    fn create(&self, name: &str) -> io::Result<fs::File> {
        // Decrypted files are private: the directory is 0700 and the files 0600.
        crate::platform::private_file_options()
            .write(true)
            .create_new(true)
            .open(self.dir.join(name))
    }
}

impl PayloadSink for DirSink {
    fn message(&mut self, text: String) -> Result<(), PayloadError> {
        // No message, no message.txt: an empty file would only look like one.
        if !text.is_empty() {
            let mut f = self.create(MESSAGE_FILE)?;
            f.write_all(text.as_bytes())?;
        }
        self.message = text;
        Ok(())
    }

    fn file(
        &mut self,
        entry: &FileEntry,
        safe_name: &str,
        data: &mut dyn Read,
    ) -> Result<(), PayloadError> {
        let mut f = io::BufWriter::with_capacity(1 << 16, self.create(safe_name)?);
        io::copy(data, &mut f)?;
        f.flush()?;
        self.files.push(OpenedFile {
            entry: entry.clone(),
            saved_as: safe_name.to_owned(),
        });
        Ok(())
    }
}

struct ProgressReader<'p, R> {
    inner: R,
    progress: &'p mut dyn Progress,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}
