//! The `.sxf` container and its manifest, byte for byte as `spec/FORMAT.md` says.
//!
//! This module parses and writes; it knows no cryptography. The container is a
//! ZIP archive of exactly four stored entries in a fixed order, and the reader is
//! strict in the way of a canonical encoding: anything the writer would never
//! produce (an extra, missing, duplicated or reordered entry, compression, a
//! comment, bytes before, between or after the entries, local and central headers
//! that disagree) is rejected before any byte is trusted.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use base64::Engine;
use serde::{Deserialize, Serialize};
use zip::read::{Config, ZipReadOptions};
use zip::result::ZipError;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use crate::keys::{Fingerprint, PublicKeyInfo};

/// The format identifier in the manifest and the MAC header.
pub const FORMAT_VERSION: &str = "sxf/1";
/// The key-wrap algorithm: RSA-OAEP with SHA-256 and MGF1-SHA-256, empty label.
pub const ALG_KEY_WRAP: &str = "RSA-OAEP-SHA256-MGF1-SHA256";
/// The content cipher: AES-256 in CBC mode with PKCS#7 padding.
pub const ALG_CIPHER: &str = "AES-256-CBC-PKCS7";
/// The MAC: HMAC-SHA-256, encrypt-then-MAC.
pub const ALG_MAC: &str = "HMAC-SHA256";
/// The signature: RSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
pub const ALG_SIGNATURE: &str = "RSA-PSS-SHA256-MGF1-SHA256-SALT32";

/// Entry names, in the only order allowed.
pub const ENTRY_KEYS: &str = "keys.bin";
pub const ENTRY_PAYLOAD: &str = "payload.bin";
pub const ENTRY_MANIFEST: &str = "manifest.toml";
pub const ENTRY_SIGNATURE: &str = "signature.bin";
pub const ENTRY_ORDER: [&str; 4] = [ENTRY_KEYS, ENTRY_PAYLOAD, ENTRY_MANIFEST, ENTRY_SIGNATURE];

/// Hard caps, checked before anything is allocated.
pub const MAX_MANIFEST_LEN: u64 = 256 * 1024;
pub const MAX_RECIPIENTS: usize = 256;
/// An RSA-4096 signature or wrapped key is 512 bytes; 2048-bit ones are 256.
pub const MIN_RSA_LEN: u64 = 256;
pub const MAX_RSA_LEN: u64 = 512;

/// Structural problems with an archive. `Unsupported` is an archive of a version
/// or algorithm this build does not speak; it is never read with a fallback.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a valid sxf archive: {0}")]
    Malformed(String),
    #[error("unsupported sxf archive: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn malformed(msg: impl Into<String>) -> FormatError {
    FormatError::Malformed(msg.into())
}

/// The signed manifest. Field order here is the order written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    /// RFC 3339 UTC time with seconds, e.g. `2026-11-27T15:17:34Z`.
    pub created: String,
    pub algorithms: Algorithms,
    pub sender: Sender,
    pub keys: EntryDigest,
    pub payload: PayloadDigest,
    pub recipients: Vec<Recipient>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Algorithms {
    pub key_wrap: String,
    pub cipher: String,
    pub mac: String,
    pub signature: String,
}

impl Algorithms {
    pub fn current() -> Self {
        Algorithms {
            key_wrap: ALG_KEY_WRAP.into(),
            cipher: ALG_CIPHER.into(),
            mac: ALG_MAC.into(),
            signature: ALG_SIGNATURE.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sender {
    pub fingerprint: String,
    /// Standard base64 (with padding) of the sender's SubjectPublicKeyInfo DER.
    pub public_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryDigest {
    pub length: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadDigest {
    /// Bytes of `payload.bin`: the 16-byte IV and the ciphertext.
    pub length: u64,
    /// SHA-256 of `payload.bin`.
    pub sha256: String,
    /// HMAC-SHA-256 of the MAC header and `payload.bin`.
    pub mac: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    pub fingerprint: String,
    /// Bytes of this recipient's OAEP block in `keys.bin` (its modulus length).
    pub wrapped_key_length: u64,
}

/// A manifest that passed every rule in [`Manifest::parse`], with typed fields.
#[derive(Debug, Clone)]
pub struct CheckedManifest {
    pub manifest: Manifest,
    pub sender: PublicKeyInfo,
    pub recipients: Vec<Fingerprint>,
    pub keys_sha256: [u8; 32],
    pub payload_sha256: [u8; 32],
    pub payload_mac: [u8; 32],
    pub created: std::time::SystemTime,
}

impl CheckedManifest {
    /// Byte range of recipient `index`'s wrapped key inside `keys.bin`.
    pub fn wrapped_key_range(&self, index: usize) -> std::ops::Range<usize> {
        let r = &self.manifest.recipients;
        let start: u64 = r[..index].iter().map(|r| r.wrapped_key_length).sum();
        start as usize..(start + r[index].wrapped_key_length) as usize
    }

    /// The header the payload MAC covers before IV ‖ ciphertext.
    pub fn mac_header(&self) -> Vec<u8> {
        mac_header(self.sender.fingerprint(), &self.recipients)
    }
}

/// `sxf/1 payload\n`, `sender <fp>\n`, one `recipient <fp>\n` per recipient in
/// manifest order, then an empty line. It binds the version, the sender and the
/// recipient list under the content key.
pub fn mac_header(sender: &Fingerprint, recipients: &[Fingerprint]) -> Vec<u8> {
    let mut h = format!("{FORMAT_VERSION} payload\nsender {sender}\n");
    for r in recipients {
        h.push_str(&format!("recipient {r}\n"));
    }
    h.push('\n');
    h.into_bytes()
}

fn parse_hex32(field: &str, text: &str) -> Result<[u8; 32], FormatError> {
    crate::parse_lower_hex(text).ok_or_else(|| {
        malformed(format!(
            "manifest field {field} is not 64 lowercase hex digits"
        ))
    })
}

fn parse_fingerprint(field: &str, text: &str) -> Result<Fingerprint, FormatError> {
    Fingerprint::parse(text).ok_or_else(|| {
        malformed(format!(
            "manifest field {field} is not a sha256: fingerprint"
        ))
    })
}

/// Formats a time as RFC 3339 UTC with whole seconds.
pub fn format_time(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl Manifest {
    /// Serialises to the exact bytes that are stored and signed.
    pub fn to_toml(&self) -> Vec<u8> {
        toml::to_string(self)
            .expect("the manifest always serialises")
            .into_bytes()
    }

    /// Parses and checks every MUST rule of the spec that needs no key material
    /// beyond the embedded sender key.
    pub fn parse(bytes: &[u8]) -> Result<CheckedManifest, FormatError> {
        let text = std::str::from_utf8(bytes).map_err(|_| malformed("manifest is not UTF-8"))?;
        // Check the version before anything else, so a future format is reported
        // as unsupported rather than as an unknown-field error.
        #[derive(Deserialize)]
        struct VersionOnly {
            format: Option<toml::Value>,
        }
        let version: VersionOnly = toml::from_str(text)
            .map_err(|e| malformed(format!("manifest is not valid TOML: {}", e.message())))?;
        match version.format {
            Some(toml::Value::String(v)) if v == FORMAT_VERSION => {}
            Some(toml::Value::String(v)) => {
                return Err(FormatError::Unsupported(format!(
                    "format version {v:?} (this sxf reads \"{FORMAT_VERSION}\")"
                )));
            }
            _ => return Err(malformed("manifest has no format version")),
        }
        let manifest: Manifest =
            toml::from_str(text).map_err(|e| malformed(format!("manifest: {}", e.message())))?;
        // One manifest, one encoding: what a line-oriented reader (like the spec's
        // openssl recipe) sees is what this parser sees.
        if manifest.to_toml() != bytes {
            return Err(malformed("manifest is not in canonical form"));
        }
        let algs = &manifest.algorithms;
        for (name, got, want) in [
            ("key_wrap", &algs.key_wrap, ALG_KEY_WRAP),
            ("cipher", &algs.cipher, ALG_CIPHER),
            ("mac", &algs.mac, ALG_MAC),
            ("signature", &algs.signature, ALG_SIGNATURE),
        ] {
            if got != want {
                return Err(FormatError::Unsupported(format!(
                    "{name} algorithm {got:?} (this sxf uses only \"{want}\")"
                )));
            }
        }
        let created = humantime::parse_rfc3339(&manifest.created)
            .ok()
            .filter(|t| format_time(*t) == manifest.created)
            .ok_or_else(|| malformed("manifest field created is not an RFC 3339 UTC time"))?;

        let sender_fp = parse_fingerprint("sender.fingerprint", &manifest.sender.fingerprint)?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(&manifest.sender.public_key)
            .map_err(|_| malformed("manifest field sender.public_key is not base64"))?;
        let sender = PublicKeyInfo::from_spki_der(&der)
            .map_err(|e| malformed(format!("manifest sender key: {e}")))?;
        if sender.fingerprint() != &sender_fp {
            return Err(malformed(
                "manifest sender fingerprint does not match its public key",
            ));
        }

        if manifest.recipients.is_empty() || manifest.recipients.len() > MAX_RECIPIENTS {
            return Err(malformed(format!(
                "manifest must list 1 to {MAX_RECIPIENTS} recipients"
            )));
        }
        let mut recipients = Vec::with_capacity(manifest.recipients.len());
        for (i, r) in manifest.recipients.iter().enumerate() {
            let fp = parse_fingerprint(&format!("recipients[{i}].fingerprint"), &r.fingerprint)?;
            if recipients.contains(&fp) {
                return Err(malformed(format!("recipient {fp} is listed twice")));
            }
            if !(MIN_RSA_LEN..=MAX_RSA_LEN).contains(&r.wrapped_key_length) {
                return Err(malformed(format!(
                    "recipients[{i}].wrapped_key_length must be {MIN_RSA_LEN} to {MAX_RSA_LEN}"
                )));
            }
            recipients.push(fp);
        }
        let wrapped_total: u64 = manifest
            .recipients
            .iter()
            .map(|r| r.wrapped_key_length)
            .sum();
        if manifest.keys.length != wrapped_total {
            return Err(malformed(
                "keys.length is not the sum of the recipients' wrapped_key_length",
            ));
        }
        let p = &manifest.payload;
        if p.length < 32 || !p.length.is_multiple_of(16) {
            return Err(malformed(
                "payload.length must be a multiple of 16 and at least 32",
            ));
        }
        Ok(CheckedManifest {
            keys_sha256: parse_hex32("keys.sha256", &manifest.keys.sha256)?,
            payload_sha256: parse_hex32("payload.sha256", &p.sha256)?,
            payload_mac: parse_hex32("payload.mac", &p.mac)?,
            manifest,
            sender,
            recipients,
            created,
        })
    }
}

/// Encodes the sender key as the manifest stores it.
pub fn encode_public_key(key: &PublicKeyInfo) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.spki_der())
}

// ---------------------------------------------------------------------------
// Writing

/// Writes the four entries in order. `payload.bin` is streamed; the manifest and
/// signature come last because they depend on the payload's digests.
pub struct ContainerWriter<W: Write + Seek> {
    zip: ZipWriter<W>,
}

fn entry_options(large: bool) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(DateTime::default())
        .unix_permissions(0o644)
        .large_file(large)
}

fn zip_io(e: ZipError) -> io::Error {
    match e {
        ZipError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

impl<W: Write + Seek> ContainerWriter<W> {
    /// Starts the archive and writes `keys.bin`.
    pub fn new(out: W, keys: &[u8]) -> io::Result<Self> {
        let mut zip = ZipWriter::new(out);
        zip.start_file(ENTRY_KEYS, entry_options(false))
            .map_err(zip_io)?;
        zip.write_all(keys)?;
        Ok(ContainerWriter { zip })
    }

    /// Starts `payload.bin`; write exactly `len` bytes to the returned writer.
    pub fn start_payload(&mut self, len: u64) -> io::Result<&mut ZipWriter<W>> {
        let large = len >= u32::MAX as u64;
        self.zip
            .start_file(ENTRY_PAYLOAD, entry_options(large))
            .map_err(zip_io)?;
        Ok(&mut self.zip)
    }

    /// Writes the manifest and signature and the central directory.
    pub fn finish(mut self, manifest: &[u8], signature: &[u8]) -> io::Result<W> {
        for (name, bytes) in [(ENTRY_MANIFEST, manifest), (ENTRY_SIGNATURE, signature)] {
            self.zip
                .start_file(name, entry_options(false))
                .map_err(zip_io)?;
            self.zip.write_all(bytes)?;
        }
        self.zip.finish().map_err(zip_io)
    }
}

/// The exact length of the archive [`ContainerWriter`] writes for entries of
/// these lengths, in [`ENTRY_ORDER`], following the layout rules of
/// `spec/FORMAT.md`: each entry's local header (30 bytes, the name, and for a
/// ZIP64 `payload.bin` a 20-byte extra field), its data; then each central header
/// (46 bytes, the name, and a ZIP64 extra field holding the sizes of a ZIP64
/// entry and the offset of an entry starting at 2^32 − 1 or later); the ZIP64 end
/// records when the central directory starts after 2^32 − 1; the end record.
pub fn container_len(entry_lens: [u64; 4]) -> u64 {
    const THRESHOLD: u64 = u32::MAX as u64;
    let payload_is_zip64 = entry_lens[1] >= THRESHOLD;
    let mut offset = 0u64;
    let mut central = 0u64;
    for (i, (name, &len)) in ENTRY_ORDER.iter().zip(&entry_lens).enumerate() {
        let sizes_in_zip64 = i == 1 && payload_is_zip64;
        let local_extra = if sizes_in_zip64 { 20 } else { 0 };
        let mut central_extra = if sizes_in_zip64 { 16 } else { 0 };
        if offset >= THRESHOLD {
            central_extra += 8;
        }
        if central_extra > 0 {
            central_extra += 4; // the extra field's ID and length
        }
        central += 46 + name.len() as u64 + central_extra;
        offset += 30 + name.len() as u64 + local_extra + len;
    }
    let zip64_end = if offset > THRESHOLD { 56 + 20 } else { 0 };
    offset + central + zip64_end + 22
}

// ---------------------------------------------------------------------------
// Reading

/// An archive whose container passed every structural rule. Entry bytes are read
/// on demand; each read checks the entry's CRC-32 as a transport check (the
/// signature and digests are the real integrity check).
pub struct ContainerReader {
    zip: ZipArchive<File>,
    sizes: [u64; 4],
}

impl std::fmt::Debug for ContainerReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerReader")
            .field("sizes", &self.sizes)
            .finish()
    }
}

const EOCD_LEN: u64 = 22;
const ZIP64_LOCATOR_LEN: u64 = 20;
const ZIP64_EOCD_LEN: u64 = 56;

fn le16(b: &[u8]) -> u64 {
    u16::from_le_bytes([b[0], b[1]]) as u64
}
fn le32(b: &[u8]) -> u64 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64
}
fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

/// Finds where the central directory must end, from the end-of-central-directory
/// record at the very end of the file, and returns (cd offset, cd size, cd end).
/// Rejects a comment and any byte after the record.
fn read_directory_end(file: &mut File, file_len: u64) -> Result<(u64, u64, u64), FormatError> {
    if file_len < EOCD_LEN {
        return Err(malformed("too short to be a ZIP archive"));
    }
    let mut eocd = [0u8; EOCD_LEN as usize];
    file.seek(SeekFrom::Start(file_len - EOCD_LEN))?;
    file.read_exact(&mut eocd)?;
    if eocd[..4] != *b"PK\x05\x06" {
        return Err(malformed(
            "the file does not end with a ZIP end record (trailing bytes or a comment)",
        ));
    }
    if le16(&eocd[20..]) != 0 {
        return Err(malformed("ZIP archive comments are not allowed"));
    }
    let eocd_start = file_len - EOCD_LEN;
    // ZIP64 is recognised by its locator just before the end record, never by
    // 0xFFFFFFFF placeholders alone.
    let has_locator = eocd_start >= ZIP64_LOCATOR_LEN + ZIP64_EOCD_LEN && {
        let mut sig = [0u8; 4];
        file.seek(SeekFrom::Start(eocd_start - ZIP64_LOCATOR_LEN))?;
        file.read_exact(&mut sig)?;
        sig == *b"PK\x06\x07"
    };
    if !has_locator {
        return Ok((le32(&eocd[16..]), le32(&eocd[12..]), eocd_start));
    }
    // The locator points at the ZIP64 end record, which must sit just before it.
    let zip64_start = eocd_start - ZIP64_LOCATOR_LEN - ZIP64_EOCD_LEN;
    let mut tail = [0u8; (ZIP64_EOCD_LEN + ZIP64_LOCATOR_LEN) as usize];
    file.seek(SeekFrom::Start(zip64_start))?;
    file.read_exact(&mut tail)?;
    let (rec, loc) = tail.split_at(ZIP64_EOCD_LEN as usize);
    if rec[..4] != *b"PK\x06\x06"
        || le64(&loc[8..]) != zip64_start
        || le64(&rec[4..]) != ZIP64_EOCD_LEN - 12
    {
        return Err(malformed("bad ZIP64 end records"));
    }
    Ok((le64(&rec[48..]), le64(&rec[40..]), zip64_start))
}

/// The largest central directory four entries can need (names, ZIP64 extras).
const MAX_CENTRAL_DIRECTORY_LEN: u64 = 1024;
const LOCAL_HEADER_LEN: usize = 30;
const CENTRAL_HEADER_LEN: usize = 46;

/// The only extra field allowed is a single ZIP64 field: on payload.bin's local
/// header (its sizes), and on any central header (sizes or, past 4 GiB, offsets).
fn extra_allowed(local_index: Option<usize>, extra: &[u8]) -> bool {
    extra.is_empty()
        || (local_index.is_none_or(|i| i == 1)
            && extra.len() >= 4
            && extra.len() <= 4 + 28
            && le16(&extra[0..]) == 0x0001
            && le16(&extra[2..]) as usize == extra.len() - 4)
}

/// Byte-level rules the ZIP library does not enforce: general-purpose flags are
/// zero (no data descriptors, no encryption), no entry comments, no extra fields
/// other than ZIP64 on payload.bin, and the four central headers fill the central
/// directory exactly, so nothing can hide in or between the headers.
fn check_raw_headers(
    file: &mut File,
    header_starts: &[u64; 4],
    cd_offset: u64,
    cd_size: u64,
) -> Result<(), FormatError> {
    if cd_size > MAX_CENTRAL_DIRECTORY_LEN {
        return Err(malformed(
            "the central directory is too large for four entries",
        ));
    }
    for (i, &start) in header_starts.iter().enumerate() {
        let mut h = [0u8; LOCAL_HEADER_LEN];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut h)?;
        let (name_len, extra_len) = (le16(&h[26..]) as usize, le16(&h[28..]) as usize);
        let mut rest = vec![0u8; name_len + extra_len];
        file.read_exact(&mut rest)?;
        if h[..4] != *b"PK\x03\x04" || le16(&h[6..]) != 0 || le16(&h[8..]) != 0 {
            return Err(malformed(format!(
                "local header of {} must have no flags and no compression",
                ENTRY_ORDER[i]
            )));
        }
        if !extra_allowed(Some(i), &rest[name_len..]) {
            return Err(malformed(format!(
                "unexpected extra field in {}",
                ENTRY_ORDER[i]
            )));
        }
    }
    let mut cd = vec![0u8; cd_size as usize];
    file.seek(SeekFrom::Start(cd_offset))?;
    file.read_exact(&mut cd)?;
    let mut pos = 0usize;
    for name in ENTRY_ORDER.iter() {
        let h = cd
            .get(pos..pos + CENTRAL_HEADER_LEN)
            .ok_or_else(|| malformed("truncated central directory"))?;
        let (n, e, c) = (
            le16(&h[28..]) as usize,
            le16(&h[30..]) as usize,
            le16(&h[32..]) as usize,
        );
        if h[..4] != *b"PK\x01\x02" || le16(&h[8..]) != 0 || le16(&h[10..]) != 0 {
            return Err(malformed(format!(
                "central header of {name} must have no flags and no compression"
            )));
        }
        if c != 0 || le16(&h[34..]) != 0 {
            return Err(malformed(format!(
                "entry comments are not allowed ({name})"
            )));
        }
        let extra = cd
            .get(pos + CENTRAL_HEADER_LEN + n..pos + CENTRAL_HEADER_LEN + n + e)
            .ok_or_else(|| malformed("truncated central directory"))?;
        if !extra_allowed(None, extra) {
            return Err(malformed(format!("unexpected extra field in {name}")));
        }
        pos += CENTRAL_HEADER_LEN + n + e + c;
    }
    if pos as u64 != cd_size {
        return Err(malformed(
            "the central directory holds more than the four entry headers",
        ));
    }
    Ok(())
}

impl ContainerReader {
    /// Opens `path` and applies every container rule of the spec.
    pub fn open(path: &Path) -> Result<Self, FormatError> {
        Self::from_file(File::open(path)?)
    }

    /// Applies every container rule to an open, seekable file.
    pub fn from_file(mut file: File) -> Result<Self, FormatError> {
        let file_len = file.metadata()?.len();
        let (cd_offset, cd_size, cd_end) = read_directory_end(&mut file, file_len)?;
        if cd_offset.checked_add(cd_size) != Some(cd_end) {
            return Err(malformed(
                "bytes between the central directory and the end record",
            ));
        }
        file.seek(SeekFrom::Start(0))?;
        let config = Config {
            archive_offset: zip::read::ArchiveOffset::Known(0),
        };
        let mut zip = ZipArchive::with_config(config, file.try_clone()?)
            .map_err(|e| malformed(format!("unreadable ZIP structure: {e}")))?;
        if !zip.comment().is_empty() {
            return Err(malformed("ZIP archive comments are not allowed"));
        }
        if zip.has_duplicate_names() {
            return Err(malformed("duplicate entry names"));
        }
        let names: Vec<&[u8]> = zip.file_names_raw().collect();
        if names.len() != ENTRY_ORDER.len()
            || names
                .iter()
                .zip(ENTRY_ORDER)
                .any(|(got, want)| *got != want.as_bytes())
        {
            let shown: Vec<String> = names
                .iter()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect();
            return Err(malformed(format!(
                "entries must be exactly {} in that order, found {}",
                ENTRY_ORDER.join(", "),
                shown.join(", ")
            )));
        }
        if zip.central_directory_start() != cd_offset {
            return Err(malformed(
                "the central directory is not where the end record says",
            ));
        }
        zip.validate_header_consistency()
            .map_err(|e| malformed(format!("local and central headers disagree: {e}")))?;
        let mut expected_start = 0u64;
        let mut sizes = [0u64; 4];
        let mut header_starts = [0u64; 4];
        for (i, name) in ENTRY_ORDER.iter().enumerate() {
            let entry = zip
                .by_index_raw(i)
                .map_err(|e| malformed(format!("entry {name}: {e}")))?;
            if entry.compression() != CompressionMethod::Stored {
                return Err(malformed(format!(
                    "entry {name} must be stored, not compressed"
                )));
            }
            if entry.encrypted() {
                return Err(malformed(format!(
                    "entry {name} must not use ZIP encryption"
                )));
            }
            if entry.size() != entry.compressed_size() {
                return Err(malformed(format!("entry {name} has inconsistent sizes")));
            }
            if entry.header_start() != expected_start {
                return Err(malformed(format!(
                    "unexpected bytes before entry {name} (entries must be contiguous from offset 0)"
                )));
            }
            let data_start = entry
                .data_start()
                .ok_or_else(|| malformed(format!("entry {name}: no data offset")))?;
            sizes[i] = entry.size();
            header_starts[i] = entry.header_start();
            expected_start = data_start
                .checked_add(entry.compressed_size())
                .ok_or_else(|| malformed("entry size overflows"))?;
        }
        if expected_start != cd_offset {
            return Err(malformed(
                "unexpected bytes between the last entry and the central directory",
            ));
        }
        check_raw_headers(&mut file, &header_starts, cd_offset, cd_size)?;
        let reader = ContainerReader { zip, sizes };
        let [keys, _, manifest, signature] = reader.sizes;
        if manifest > MAX_MANIFEST_LEN {
            return Err(malformed("manifest.toml is too large"));
        }
        if !(MIN_RSA_LEN..=MAX_RSA_LEN).contains(&signature) {
            return Err(malformed("signature.bin has an impossible length"));
        }
        if keys > MAX_RSA_LEN * MAX_RECIPIENTS as u64 {
            return Err(malformed("keys.bin is too large"));
        }
        Ok(reader)
    }

    /// Size in bytes of entry `index` (in [`ENTRY_ORDER`]).
    pub fn entry_len(&self, index: usize) -> u64 {
        self.sizes[index]
    }

    /// Reads a small entry whole. Only for entries whose size was capped in `open`.
    fn read_small(&mut self, index: usize) -> Result<Vec<u8>, FormatError> {
        let mut buf = Vec::with_capacity(self.sizes[index] as usize);
        self.entry_reader(index)?.read_to_end(&mut buf)?;
        Ok(buf)
    }

    pub fn read_manifest(&mut self) -> Result<Vec<u8>, FormatError> {
        self.read_small(2)
    }
    pub fn read_signature(&mut self) -> Result<Vec<u8>, FormatError> {
        self.read_small(3)
    }
    pub fn read_keys(&mut self) -> Result<Vec<u8>, FormatError> {
        self.read_small(0)
    }

    /// A streaming reader over `payload.bin`.
    pub fn payload_reader(&mut self) -> Result<impl Read + '_, FormatError> {
        self.entry_reader(1)
    }

    fn entry_reader(&mut self, index: usize) -> Result<impl Read + '_, FormatError> {
        let options = ZipReadOptions::new().enforce_header_consistency(true);
        let entry = self
            .zip
            .by_index_with_options(index, options)
            .map_err(|e| malformed(format!("entry {}: {e}", ENTRY_ORDER[index])))?;
        Ok(CrcErrorsAsMalformed(entry))
    }
}

/// Maps the ZIP reader's CRC failure to a clear "damaged" error.
struct CrcErrorsAsMalformed<R>(R);

impl<R: Read> Read for CrcErrorsAsMalformed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("entry data is damaged ({e})"),
                )
            } else {
                e
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom};

    /// Counts what a writer writes, keeping none of it.
    #[derive(Default)]
    struct Sink {
        pos: u64,
        len: u64,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.pos += buf.len() as u64;
            self.len = self.len.max(self.pos);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Seek for Sink {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.pos = match to {
                SeekFrom::Start(n) => n,
                SeekFrom::End(d) => self.len.saturating_add_signed(d),
                SeekFrom::Current(d) => self.pos.saturating_add_signed(d),
            };
            Ok(self.pos)
        }
    }

    fn written_len(keys: usize, payload: u64, manifest: usize, signature: usize) -> u64 {
        let mut writer = ContainerWriter::new(Sink::default(), &vec![1; keys]).unwrap();
        let out = writer.start_payload(payload).unwrap();
        let chunk = vec![0u8; 1 << 20];
        let mut left = payload;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            out.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
        let sink = writer
            .finish(&vec![b'm'; manifest], &vec![2; signature])
            .unwrap();
        sink.len
    }

    #[test]
    fn container_len_is_exactly_what_the_writer_writes() {
        for (keys, payload, manifest, signature) in [
            (256, 32, 900, 256),
            (512 * 3, 1_000_016, 2_000, 384),
            (256, 0, 1, 256),
        ] {
            assert_eq!(
                container_len([keys as u64, payload, manifest as u64, signature as u64]),
                written_len(keys, payload, manifest, signature),
                "{keys} {payload} {manifest} {signature}"
            );
        }
    }

    /// Past 4 GiB: a ZIP64 payload, entries starting past the 32-bit limit (the
    /// signature alone, or manifest and signature), and the ZIP64 end records.
    /// Pushes 4 GiB through a counting sink (the zip writer's CRC-32 is fast).
    #[test]
    fn container_len_is_exact_past_4_gib() {
        let limit = u64::from(u32::MAX);
        // Local headers before the payload's data: keys (30 + 8 + 256), payload (30 + 11).
        let payload_data_start = 30 + 8 + 256 + 30 + 11;
        for payload in [limit - payload_data_start - 500, limit, limit + 1_000] {
            assert_eq!(
                container_len([256, payload, 900, 256]),
                written_len(256, payload, 900, 256),
                "payload {payload}"
            );
        }
    }
}
