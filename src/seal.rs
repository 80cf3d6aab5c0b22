//! `seal`: compress the photos, build the payload, encrypt it to every recipient,
//! sign the manifest, and write the archive atomically.
//!
//! The output is written to a temporary file beside the destination and renamed
//! into place only when complete and synced, so no partial archive ever appears.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rand::TryCryptoRng;
use sha2::{Digest, Sha256};

use crate::Progress;
use crate::crypto::{self, ContentKey};
use crate::error::Error;
use crate::format::{
    Algorithms, ContainerWriter, EntryDigest, FORMAT_VERSION, Manifest, PayloadDigest, Recipient,
    Sender, encode_public_key, format_time, mac_header,
};
use crate::images::{ImageOptions, process_image};
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
}

/// What `seal` did, for the summary the binary prints.
#[derive(Debug, Clone)]
pub struct SealReport {
    pub images: Vec<ImageSummary>,
    pub attachments: Vec<(PathBuf, u64)>,
    pub archive_len: u64,
    pub sender: Fingerprint,
    pub recipients: Vec<Fingerprint>,
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
    if out.exists() {
        return Err(Error::already_exists(out));
    }

    // Plan the payload: images are compressed in memory, attachments stream from disk.
    let mut files = Vec::new();
    let mut images = Vec::new();
    let stop = crate::StopFlag::of(progress);
    for path in &req.images {
        stop.check()?;
        let img = process_image(path, &req.image_options)?;
        images.push(ImageSummary {
            path: path.clone(),
            name: img.file_name.clone(),
            original_len: img.original_len,
            original_dims: (img.original_width, img.original_height),
            sealed_len: img.bytes.len() as u64,
            sealed_dims: (img.width, img.height),
        });
        files.push(PlannedFile {
            entry: FileEntry {
                name: clamp_name(&img.file_name),
                media_type: img.media_type,
                kind: FileKind::Image,
                length: img.bytes.len() as u64,
            },
            source: Source::Memory(img.bytes),
        });
    }
    let mut attachments = Vec::new();
    for path in &req.attachments {
        let meta = std::fs::metadata(path).map_err(|e| Error::io_at(path, e))?;
        if !meta.is_file() {
            return Err(Error::Usage(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        attachments.push((path.clone(), meta.len()));
        files.push(PlannedFile {
            entry: FileEntry {
                name: clamp_name(&file_name_of(path)),
                media_type: guess_media_type(path).into(),
                kind: FileKind::Attachment,
                length: meta.len(),
            },
            source: Source::Path(path.clone()),
        });
    }
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

    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".sxf-seal-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))?;
    let write_err = |e| Error::io(format!("writing {}", out.display()), e);

    let mut writer =
        ContainerWriter::new(BufWriter::with_capacity(1 << 16, tmp.as_file()), &keys_bin)
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

    let manifest = Manifest {
        format: FORMAT_VERSION.into(),
        created: format_time(req.created),
        algorithms: Algorithms::current(),
        sender: Sender {
            fingerprint: req.sender.fingerprint().to_string(),
            public_key: encode_public_key(req.sender.public()),
        },
        keys: EntryDigest {
            length: keys_bin.len() as u64,
            sha256: hex::encode(Sha256::digest(&keys_bin)),
        },
        payload: PayloadDigest {
            length: digests.len,
            sha256: hex::encode(digests.sha256),
            mac: hex::encode(digests.mac),
        },
        recipients,
    };
    let manifest_bytes = manifest.to_toml();
    let signature = crypto::sign(rng, req.sender.key(), &manifest_bytes)
        .map_err(|e| Error::io("signing", e))?;
    let mut buffered = writer
        .finish(&manifest_bytes, &signature)
        .map_err(write_err)?;
    buffered.flush().map_err(write_err)?;
    drop(buffered);
    tmp.as_file().sync_all().map_err(write_err)?;
    let archive_len = tmp.as_file().metadata().map_err(write_err)?.len();
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

    Ok(SealReport {
        images,
        attachments,
        archive_len,
        sender: req.sender.fingerprint().clone(),
        recipients: recipient_fps,
    })
}
