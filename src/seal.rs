//! `seal`: compress the photos, build the payload, encrypt it to every recipient,
//! sign the manifest, and write the archive atomically.
//!
//! The output is written to a temporary file beside the destination and renamed
//! into place only when complete and synced, so no partial archive ever appears.

use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use indicatif::HumanBytes;
use rand::TryCryptoRng;
use sha2::{Digest, Sha256};

use crate::Progress;
use crate::crypto::{self, ContentKey};
use crate::error::Error;
use crate::format::{
    Algorithms, ContainerWriter, EntryDigest, FORMAT_VERSION, Manifest, PayloadDigest, Recipient,
    Sender, encode_public_key, format_time, mac_header,
};
use crate::images::batch::{self, BatchError, FitChoice, FitOutcome};
use crate::images::{Conversion, ImageOptions, Method, ProcessedImage};
use crate::keys::{Fingerprint, PrivateKeyInfo, PublicKeyInfo};
use crate::payload::{FileEntry, FileKind, PayloadPlan, PlannedFile, Source, clamp_name};

/// What to seal and for whom.
pub struct SealRequest<'a> {
    pub sender: &'a PrivateKeyInfo,
    pub recipients: &'a [PublicKeyInfo],
    pub message: String,
    pub images: Vec<PathBuf>,
    pub image_options: ImageOptions,
    pub attachments: Vec<PathBuf>,
    /// The creation time written in the manifest.
    pub created: SystemTime,
    /// Make the finished archive at most this many bytes by choosing the photos'
    /// quality, and if need be a smaller size (see [`crate::images::batch`]).
    pub fit: Option<u64>,
    /// Photos processed at once; `None` means one per core.
    pub threads: Option<usize>,
}

/// One image as it went into the archive.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    pub path: PathBuf,
    pub name: String,
    pub original_len: u64,
    pub original_dims: (u32, u32),
    pub sealed_len: u64,
    pub sealed_dims: (u32, u32),
    pub method: Method,
    pub colour: Conversion,
}

/// What `seal` did, for the summary the binary prints.
#[derive(Debug, Clone)]
pub struct SealReport {
    pub images: Vec<ImageSummary>,
    pub attachments: Vec<(PathBuf, u64)>,
    pub archive_len: u64,
    pub sender: Fingerprint,
    pub recipients: Vec<Fingerprint>,
    /// The settings `--fit` chose, when it was asked for.
    pub fit: Option<FitChoice>,
}

/// Most bytes read into memory from an attachment whose size the filesystem
/// does not report (a /proc file says 0 and holds a few KiB).
pub const MAX_SIZELESS_ATTACHMENT: u64 = 16 * 1024 * 1024;

/// Reads a regular file that reports a size of 0: empty, or a pseudo-file
/// whose content exists only when read. Refused above
/// [`MAX_SIZELESS_ATTACHMENT`].
fn read_sizeless(path: &Path) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SIZELESS_ATTACHMENT + 1).read_to_end(&mut bytes))
        .map_err(|e| Error::io_at(path, e))?;
    if bytes.len() as u64 > MAX_SIZELESS_ATTACHMENT {
        return Err(Error::Usage(format!(
            "{} reports no size and holds more than {}; copy it to a regular file and attach that",
            path.display(),
            HumanBytes(MAX_SIZELESS_ATTACHMENT)
        )));
    }
    Ok(bytes)
}

/// Media type for an attachment, from its extension; unknown is octet-stream.
pub fn guess_media_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("txt" | "md") => "text/plain",
        Some("pdf") => "application/pdf",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("zip") => "application/zip",
        Some("csv") => "text/csv",
        Some("json") => "application/json",
        Some("mp4") => "video/mp4",
        Some("mp3") => "audio/mpeg",
        _ => "application/octet-stream",
    }
}

fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned())
}

/// Seals with the operating system's random source.
pub fn seal(
    req: SealRequest<'_>,
    out: &Path,
    progress: &mut dyn Progress,
) -> Result<SealReport, Error> {
    seal_with_rng(req, out, &mut rand::rngs::SysRng, progress)
}

/// Seals with the given random source (fixed randomness makes test vectors).
pub fn seal_with_rng<R: TryCryptoRng + ?Sized>(
    req: SealRequest<'_>,
    out: &Path,
    rng: &mut R,
    progress: &mut dyn Progress,
) -> Result<SealReport, Error> {
    seal_to(
        req,
        Destination::File {
            path: out,
            armor: false,
        },
        rng,
        progress,
    )
}

/// Where [`seal_to`] writes the archive.
pub enum Destination<'a> {
    /// A new file, written to a temporary file beside it and renamed into place
    /// when complete and synced; `armor` writes the text form.
    File { path: &'a Path, armor: bool },
    /// A stream such as standard output. The archive is built in an anonymous
    /// private temporary file and copied out once complete; a failure before
    /// that writes nothing to the stream.
    Writer { out: &'a mut dyn Write, armor: bool },
}

impl Destination<'_> {
    fn armored(&self) -> bool {
        match self {
            Destination::File { armor, .. } | Destination::Writer { armor, .. } => *armor,
        }
    }

    fn name(&self) -> String {
        match self {
            Destination::File { path, .. } => path.display().to_string(),
            Destination::Writer { .. } => "the archive".into(),
        }
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

fn temp_beside(out: &Path) -> Result<tempfile::NamedTempFile, Error> {
    let dir = parent_dir(out);
    tempfile::Builder::new()
        .prefix(".sxf-seal-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| {
            Error::io(
                format!("creating a temporary file in {}", dir.display()),
                crate::fsutil::without_temp_path(e),
            )
        })
}

/// Copies the finished binary archive to `out`, armoring it if asked.
fn copy_out(
    source: &std::fs::File,
    out: impl Write,
    armor: bool,
    stop: &crate::StopFlag,
    progress: &mut dyn Progress,
) -> std::io::Result<()> {
    let total = source.metadata()?.len();
    let mut source = stop.guard(std::io::BufReader::with_capacity(1 << 16, source));
    let mut out = BufWriter::with_capacity(1 << 16, out);
    progress.begin(if armor { "armoring" } else { "writing" }, total);
    let result = if armor {
        let mut w = crate::armor::ArmorWriter::new(&mut out)?;
        std::io::copy(&mut source, &mut w).and_then(|_| w.finish().map(|_| ()))
    } else {
        std::io::copy(&mut source, &mut out).map(|_| ())
    };
    progress.end();
    result?;
    out.flush()
}

/// Seals to a file or a stream, in binary or armored form.
pub fn seal_to<R: TryCryptoRng + ?Sized>(
    req: SealRequest<'_>,
    dest: Destination<'_>,
    rng: &mut R,
    progress: &mut dyn Progress,
) -> Result<SealReport, Error> {
    if req.message.is_empty() && req.images.is_empty() && req.attachments.is_empty() {
        return Err(Error::Usage(
            "nothing to seal: give a message, an image or an attachment".into(),
        ));
    }
    if req.recipients.is_empty() {
        return Err(Error::Usage(
            "at least one recipient (--to) is needed".into(),
        ));
    }
    if req.recipients.len() > crate::format::MAX_RECIPIENTS {
        return Err(Error::Usage(format!(
            "at most {} recipients",
            crate::format::MAX_RECIPIENTS
        )));
    }
    let mut recipient_fps: Vec<Fingerprint> = Vec::new();
    for r in req.recipients {
        if recipient_fps.contains(r.fingerprint()) {
            return Err(Error::Usage(format!(
                "recipient {} is given twice",
                r.fingerprint()
            )));
        }
        recipient_fps.push(r.fingerprint().clone());
    }
    if let Destination::File { path, .. } = &dest
        && path.exists()
    {
        return Err(Error::already_exists(path));
    }
    let armor = dest.armored();

    // Attachments first: they are cheap to check, and `--fit` must know their size.
    let stop = crate::StopFlag::of(progress);
    let mut attachments = Vec::new();
    let mut attachment_files = Vec::new();
    for path in &req.attachments {
        let meta = std::fs::metadata(path).map_err(|e| Error::io_at(path, e))?;
        if !meta.is_file() {
            return Err(Error::Usage(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        let (length, source) = if meta.len() == 0 {
            // A file that reports no size may still have content (/proc):
            // what is read now is what is sealed.
            let bytes = read_sizeless(path)?;
            (bytes.len() as u64, Source::Memory(bytes))
        } else {
            (meta.len(), Source::Path(path.clone()))
        };
        attachments.push((path.clone(), length));
        attachment_files.push(PlannedFile {
            entry: FileEntry {
                name: clamp_name(&file_name_of(path)),
                media_type: guess_media_type(path).into(),
                kind: FileKind::Attachment,
                length,
            },
            source,
        });
    }

    // Photos are compressed in memory, in parallel; attachments stream from disk.
    if req.fit.is_some() && req.image_options.keep_original {
        return Err(Error::Usage(
            "--fit cannot change photos kept as they are (--keep-original)".into(),
        ));
    }
    let threads = batch::worker_count(req.threads, req.images.len());
    let (processed, fit) = match req.fit {
        None => (
            batch::process_all(&req.images, &req.image_options, threads, &stop)
                .map_err(batch_error)?,
            None,
        ),
        Some(limit) => {
            let sizer = ArchiveSizer {
                message_len: req.message.len(),
                image_names: req.images.iter().map(|p| image_entry_name(p)).collect(),
                attachments: attachment_files.iter().map(|f| f.entry.clone()).collect(),
                keys_len: req.recipients.iter().map(|r| r.modulus_len()).sum(),
                signature_len: req.sender.public().modulus_len(),
                created: req.created,
                sender: req.sender,
                recipients: req.recipients,
            };
            // With armor, --fit limits the text that is written.
            let output_len = |sizes: &[u64]| {
                let n = sizer.archive_len(sizes);
                if armor {
                    crate::armor::armored_len(n)
                } else {
                    n
                }
            };
            let fixed = output_len(&vec![0; req.images.len()]);
            if fixed > limit {
                return Err(Error::Usage(format!(
                    "cannot fit the archive in {}: the message, attachments and headers alone take {}",
                    HumanBytes(limit),
                    HumanBytes(fixed)
                )));
            }
            let outcome = batch::fit(
                &req.images,
                &req.image_options,
                threads,
                &stop,
                limit,
                &|sizes| output_len(sizes),
            )
            .map_err(batch_error)?;
            match outcome {
                FitOutcome::Fits { images, choice, .. } => (images, Some(choice)),
                FitOutcome::TooBig { smallest, floor } => {
                    let size = match floor.max_dim {
                        Some(px) => format!("{px} pixels on the long side"),
                        None => "full size".to_string(),
                    };
                    return Err(Error::Usage(format!(
                        "cannot fit the archive in {} ({limit} bytes): even with photos at quality {} and {size} it takes {} ({smallest} bytes), of which the message, attachments and headers take {}; use --fit {smallest} or more, or send fewer photos",
                        HumanBytes(limit),
                        floor.quality,
                        HumanBytes(smallest),
                        HumanBytes(fixed),
                    )));
                }
            }
        }
    };
    let mut files = Vec::new();
    let mut images = Vec::new();
    for (path, img) in req.images.iter().zip(processed) {
        images.push(ImageSummary {
            path: path.clone(),
            name: img.file_name.clone(),
            original_len: img.original_len,
            original_dims: (img.original_width, img.original_height),
            sealed_len: img.bytes.len() as u64,
            sealed_dims: (img.width, img.height),
            method: img.method,
            colour: img.colour,
        });
        files.push(image_file(img));
    }
    files.extend(attachment_files);
    let plan = PayloadPlan {
        message: req.message,
        files,
    };
    plan.check_limits().map_err(Error::Usage)?;
    let plaintext_len = plan.len();

    // Keys: one content key, wrapped to each recipient.
    let content_key = ContentKey::generate(rng).map_err(|e| Error::io("random source", e))?;
    let mut iv = [0u8; crypto::BLOCK_LEN];
    rng.try_fill_bytes(&mut iv)
        .map_err(|_| Error::io("random source", std::io::Error::other("failed")))?;
    let mut keys_bin = Vec::new();
    let mut recipients = Vec::new();
    for r in req.recipients {
        let wrapped = crypto::wrap_key(rng, r.key(), &content_key)
            .map_err(|e| Error::io("wrapping the content key", e))?;
        recipients.push(Recipient {
            fingerprint: r.fingerprint().to_string(),
            wrapped_key_length: wrapped.len() as u64,
        });
        keys_bin.extend_from_slice(&wrapped);
    }

    // The binary archive is built in a seekable file (the ZIP writer goes back to
    // fill in headers): the temporary file beside `out` that becomes the archive,
    // or, for armor and streams, an anonymous private one that is then encoded.
    let dest_name = dest.name();
    let write_err = |e| Error::io(format!("writing {dest_name}"), e);
    let named = match &dest {
        Destination::File { path, armor: false } => Some(temp_beside(path)?),
        _ => None,
    };
    let anonymous = match &dest {
        Destination::File { path, armor: true } => Some(
            tempfile::tempfile_in(parent_dir(path))
                .map_err(|e| Error::io("creating a private temporary file", e))?,
        ),
        Destination::Writer { .. } => Some(
            tempfile::tempfile().map_err(|e| Error::io("creating a private temporary file", e))?,
        ),
        Destination::File { armor: false, .. } => None,
    };
    let bin: &std::fs::File = match (&named, &anonymous) {
        (Some(t), _) => t.as_file(),
        (None, Some(f)) => f,
        (None, None) => unreachable!("one of the two is made above"),
    };

    let mut writer = ContainerWriter::new(BufWriter::with_capacity(1 << 16, bin), &keys_bin)
        .map_err(write_err)?;
    let header = mac_header(req.sender.fingerprint(), &recipient_fps);
    progress.begin("sealing", plaintext_len);
    let plaintext = stop.guard(plan.into_reader());
    let digests = {
        let payload_out = writer
            .start_payload(crypto::sealed_len(plaintext_len))
            .map_err(write_err)?;
        crypto::encrypt_stream(
            &content_key,
            &iv,
            &header,
            plaintext,
            payload_out,
            &mut |n| progress.advance(n),
        )
        .map_err(|e| {
            if stop.is_set() {
                Error::Interrupted
            } else {
                Error::io("sealing", e)
            }
        })?
    };
    progress.end();

    let manifest = manifest(
        req.sender,
        req.created,
        EntryDigest {
            length: keys_bin.len() as u64,
            sha256: hex::encode(Sha256::digest(&keys_bin)),
        },
        PayloadDigest {
            length: digests.len,
            sha256: hex::encode(digests.sha256),
            mac: hex::encode(digests.mac),
        },
        recipients,
    );
    let manifest_bytes = manifest.to_toml();
    let signature = crypto::sign(rng, req.sender.key(), &manifest_bytes)
        .map_err(|e| Error::io("signing", e))?;
    let mut buffered = writer
        .finish(&manifest_bytes, &signature)
        .map_err(write_err)?;
    buffered.flush().map_err(write_err)?;
    drop(buffered);
    let binary_len = bin.metadata().map_err(write_err)?.len();
    let archive_len = if armor {
        crate::armor::armored_len(binary_len)
    } else {
        binary_len
    };
    if let Some(limit) = req.fit
        && archive_len > limit
    {
        // The size was computed exactly before sealing; this would be a bug.
        return Err(Error::Usage(format!(
            "the archive came out at {} bytes, over --fit {limit}",
            archive_len
        )));
    }
    stop.check()?;

    match dest {
        Destination::File { path: out, armor } => {
            let tmp = match named {
                Some(tmp) => tmp,
                None => {
                    let tmp = temp_beside(out)?;
                    let mut source = bin;
                    source.seek(SeekFrom::Start(0)).map_err(write_err)?;
                    copy_out(source, tmp.as_file(), armor, &stop, progress).map_err(|e| {
                        if stop.is_set() {
                            Error::Interrupted
                        } else {
                            write_err(e)
                        }
                    })?;
                    tmp
                }
            };
            tmp.as_file().sync_all().map_err(write_err)?;
            // A stop asked for while signing or syncing still wins: nothing is published.
            stop.check()?;
            tmp.persist_noclobber(out).map_err(|e| {
                if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::already_exists(out)
                } else {
                    write_err(e.error)
                }
            })?;
            crate::fsutil::sync_parent_dir(out);
        }
        Destination::Writer { out, armor } => {
            let mut source = bin;
            source.seek(SeekFrom::Start(0)).map_err(write_err)?;
            copy_out(source, out, armor, &stop, progress).map_err(|e| {
                if stop.is_set() {
                    Error::Interrupted
                } else {
                    write_err(e)
                }
            })?;
        }
    }

    Ok(SealReport {
        images,
        attachments,
        archive_len,
        sender: req.sender.fingerprint().clone(),
        recipients: recipient_fps,
        fit,
    })
}

fn manifest(
    sender: &PrivateKeyInfo,
    created: SystemTime,
    keys: EntryDigest,
    payload: PayloadDigest,
    recipients: Vec<Recipient>,
) -> Manifest {
    Manifest {
        format: FORMAT_VERSION.into(),
        created: format_time(created),
        algorithms: Algorithms::current(),
        sender: Sender {
            fingerprint: sender.fingerprint().to_string(),
            public_key: encode_public_key(sender.public()),
        },
        keys,
        payload,
        recipients,
    }
}

fn batch_error(e: BatchError) -> Error {
    match e {
        BatchError::Image(e) => Error::Image(e),
        BatchError::Interrupted => Error::Interrupted,
    }
}

/// A photo's entry in the payload index.
fn image_file(img: ProcessedImage) -> PlannedFile {
    PlannedFile {
        entry: FileEntry {
            name: clamp_name(&img.file_name),
            media_type: img.media_type,
            kind: FileKind::Image,
            length: img.bytes.len() as u64,
        },
        source: Source::Memory(img.bytes),
    }
}

/// The name a re-encoded photo gets in the archive.
fn image_entry_name(path: &Path) -> String {
    clamp_name(&crate::images::jpeg_file_name(path))
}

/// Computes, without sealing, the exact length of the archive for given photo
/// sizes: everything else in it (message, attachments, keys, manifest, signature,
/// container headers) is already known. `--fit` searches with it.
struct ArchiveSizer<'a> {
    message_len: usize,
    image_names: Vec<String>,
    attachments: Vec<FileEntry>,
    keys_len: usize,
    signature_len: usize,
    created: SystemTime,
    sender: &'a PrivateKeyInfo,
    recipients: &'a [PublicKeyInfo],
}

impl ArchiveSizer<'_> {
    fn archive_len(&self, image_sizes: &[u64]) -> u64 {
        let mut files: Vec<PlannedFile> = self
            .image_names
            .iter()
            .zip(image_sizes)
            .map(|(name, &length)| PlannedFile {
                entry: FileEntry {
                    name: name.clone(),
                    media_type: "image/jpeg".into(),
                    kind: FileKind::Image,
                    length,
                },
                source: Source::Memory(Vec::new()),
            })
            .collect();
        files.extend(self.attachments.iter().map(|entry| PlannedFile {
            entry: entry.clone(),
            source: Source::Memory(Vec::new()),
        }));
        let plan = PayloadPlan {
            message: " ".repeat(self.message_len),
            files,
        };
        let payload_len = crypto::sealed_len(plan.len());
        // Digests are fixed-width hex, so zeros give the real manifest length.
        let zeros = hex::encode([0u8; 32]);
        let manifest = manifest(
            self.sender,
            self.created,
            EntryDigest {
                length: self.keys_len as u64,
                sha256: zeros.clone(),
            },
            PayloadDigest {
                length: payload_len,
                sha256: zeros.clone(),
                mac: zeros,
            },
            self.recipients
                .iter()
                .map(|r| Recipient {
                    fingerprint: r.fingerprint().to_string(),
                    wrapped_key_length: r.modulus_len() as u64,
                })
                .collect(),
        );
        crate::format::container_len([
            self.keys_len as u64,
            payload_len,
            manifest.to_toml().len() as u64,
            self.signature_len as u64,
        ])
    }
}
