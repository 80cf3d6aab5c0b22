//! Helpers shared by the integration tests: key paths, running the real `sxf`
//! binary, rebuilding `.sxf` containers with the `zip` crate, re-signing
//! manifests, and checking that a failed command left nothing behind.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use sha2::{Digest, Sha256};
use sxf::format::Manifest;
use sxf::keys::{PrivateKeyInfo, PublicKeyInfo};
use zeroize::Zeroizing;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

/// Builds a `Vec<OsString>` from strings and paths alike.
#[macro_export]
macro_rules! args {
    ($($x:expr),* $(,)?) => {
        vec![$(::std::ffi::OsString::from($x)),*]
    };
}

pub const CAROL_PASSPHRASE: &str = "carol-passphrase";

/// The four entries of an archive, in the only order allowed.
pub const ENTRY_NAMES: [&str; 4] = ["keys.bin", "payload.bin", "manifest.toml", "signature.bin"];

/// The sentence every decryption failure prints.
pub const CANNOT_DECRYPT: &str = "cannot decrypt: this key cannot open this archive";

pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A key file by file name: alice and bob live in `keys/`, the others in `tests/keys/`.
pub fn key(file: &str) -> PathBuf {
    let stem = file.split('.').next().unwrap_or(file);
    match stem {
        "alice" | "bob" => project_root().join("keys").join(file),
        _ => project_root().join("tests/keys").join(file),
    }
}

/// Loads a private key from the key directories (carol's passphrase is known).
pub fn private_key(file: &str) -> PrivateKeyInfo {
    let path = key(file);
    sxf::keys::load_private_key(&path, || {
        Ok(Some(Zeroizing::new(CAROL_PASSPHRASE.to_owned())))
    })
    .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

pub fn public_key(file: &str) -> PublicKeyInfo {
    let path = key(file);
    sxf::keys::load_public_key(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

/// `sha256:<hex>` of a public key file, as sxf prints it.
pub fn fingerprint(pub_file: &str) -> String {
    public_key(pub_file).fingerprint().to_string()
}

/// The fingerprint format: SHA-256 of SubjectPublicKeyInfo DER.
pub fn fingerprint_of_der(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// The real binary, with no passphrase in its environment and a config
/// directory (contacts, identity) that does not exist, so the developer's own
/// contacts never leak into a test. Tests of contacts set `SXF_HOME` themselves.
pub fn sxf() -> Command {
    let mut cmd = Command::cargo_bin("sxf").expect("the sxf binary is built");
    cmd.env_remove("SXF_PASSPHRASE");
    cmd.env("SXF_HOME", no_config_dir());
    cmd
}

/// A config directory nobody creates.
pub fn no_config_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("sxf-home-never-created")
}

/// What a finished command produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn assert_code(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.code, code,
            "{what}: expected exit code {code}\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn assert_stderr_contains(&self, needle: &str, what: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "{what}: stderr should contain {needle:?}\nstderr: {}",
            self.stderr
        );
        self
    }
}

pub fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("sxf runs");
    Run {
        code: out
            .status
            .code()
            .expect("sxf exited normally, not by a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `sxf seal --to <to>... --sign <sign> <extra...> -o <out>`, not yet run.
pub fn seal_cmd(out: &Path, to: &[&str], sign: &str, extra: Vec<OsString>) -> Command {
    let mut cmd = sxf();
    cmd.arg("seal");
    for t in to {
        cmd.arg("--to").arg(key(t));
    }
    cmd.arg("--sign")
        .arg(key(sign))
        .args(extra)
        .arg("-o")
        .arg(out);
    cmd
}

/// Seals and asserts success.
pub fn seal(out: &Path, to: &[&str], sign: &str, extra: Vec<OsString>) -> Run {
    let r = run(&mut seal_cmd(out, to, sign, extra));
    r.assert_code(0, "seal");
    assert!(
        out.is_file(),
        "seal succeeded but wrote no {}",
        out.display()
    );
    r
}

/// The archive most tests attack: alice to bob, a message and one attachment.
pub fn seal_standard(dir: &Path) -> PathBuf {
    let attachment = dir.join("notes.txt");
    fs::write(&attachment, b"the attachment's bytes\n").unwrap();
    let out = dir.join("standard.sxf");
    seal(
        &out,
        &["bob.pub"],
        "alice.key",
        args!["-m", "hello bob", "--attach", &attachment],
    );
    fs::remove_file(&attachment).unwrap();
    out
}

/// `sxf open <archive> --key <key> (--from <from> | --any-sender) -o <out_dir>`.
pub fn open_cmd(archive: &Path, key_file: &str, from: Option<&str>, out_dir: &Path) -> Command {
    let mut cmd = sxf();
    cmd.arg("open").arg(archive).arg("--key").arg(key(key_file));
    match from {
        Some(f) => cmd.arg("--from").arg(key(f)),
        None => cmd.arg("--any-sender"),
    };
    cmd.arg("-o").arg(out_dir);
    cmd
}

// ---------------------------------------------------------------------------
// Nothing left behind

/// The names in a directory.
pub fn listing(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Asserts that `path` does not exist and that no `.sxf-*` temporary file or
/// directory remains beside it.
pub fn assert_not_created(path: &Path) {
    assert!(
        fs::symlink_metadata(path).is_err(),
        "{} was created although the command failed",
        path.display()
    );
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    assert_no_temp_files(parent);
}

/// Asserts that no `.sxf-*` temporary file or directory remains in `dir`.
pub fn assert_no_temp_files(dir: &Path) {
    let leftovers: Vec<String> = listing(dir)
        .into_iter()
        .filter(|n| n.starts_with(".sxf-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left in {}: {leftovers:?}",
        dir.display()
    );
}

/// Every file in a directory tree, relative path to contents.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_owned(),
                    fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// ZIP containers

/// Where one entry sits inside an archive.
#[derive(Debug, Clone)]
pub struct Span {
    pub name: String,
    pub header_start: u64,
    pub data_start: u64,
    pub len: u64,
    pub central_header_start: u64,
}

/// The entries' positions, read with the zip crate.
pub fn spans(archive: &[u8]) -> Vec<Span> {
    let mut zip = ZipArchive::new(Cursor::new(archive)).expect("a readable ZIP");
    (0..zip.len())
        .map(|i| {
            let e = zip.by_index_raw(i).unwrap();
            Span {
                name: e.name().unwrap().into_owned(),
                header_start: e.header_start(),
                data_start: e.data_start().expect("data offset known"),
                len: e.compressed_size(),
                central_header_start: e.central_header_start(),
            }
        })
        .collect()
}

/// Offset of the central directory (from the end record; no comment allowed).
pub fn central_directory_start(archive: &[u8]) -> usize {
    let eocd = archive.len() - 22;
    assert_eq!(
        &archive[eocd..eocd + 4],
        b"PK\x05\x06",
        "end record at the end"
    );
    u32::from_le_bytes(archive[eocd + 16..eocd + 20].try_into().unwrap()) as usize
}

/// The entries of a (valid) archive, in order.
pub fn entries(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut zip = ZipArchive::new(Cursor::new(archive)).expect("a readable ZIP");
    (0..zip.len())
        .map(|i| {
            let mut e = zip.by_index(i).unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (e.name().unwrap().into_owned(), data)
        })
        .collect()
}

/// One entry's data.
pub fn entry(archive: &[u8], name: &str) -> Vec<u8> {
    entries(archive)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no entry {name}"))
        .1
}

/// A ZIP of stored entries written the way sxf writes them.
pub fn build_zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    build_zip_with_comment(entries, None)
}

pub fn build_zip_with_comment(entries: &[(String, Vec<u8>)], comment: Option<&str>) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(DateTime::default())
        .unix_permissions(0o644);
    for (name, data) in entries {
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(data).unwrap();
    }
    if let Some(c) = comment {
        zip.set_comment(c).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// The archive rebuilt with one entry's data replaced.
pub fn with_entry(archive: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
    let mut es = entries(archive);
    let slot = es
        .iter_mut()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no entry {name}"));
    slot.1 = data.to_vec();
    build_zip(&es)
}

/// Replaces every occurrence of `from` with `to` (same length) in the byte range.
pub fn patch_all(bytes: &mut [u8], from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut count = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            count += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    count
}

// ---------------------------------------------------------------------------
// Manifests and signatures

pub fn manifest_text(archive: &[u8]) -> String {
    String::from_utf8(entry(archive, "manifest.toml")).expect("UTF-8 manifest")
}

pub fn manifest(archive: &[u8]) -> Manifest {
    toml::from_str(&manifest_text(archive)).expect("a manifest sxf wrote parses")
}

/// RSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt) with the `rsa` crate directly.
pub fn pss_sign(key_file: &str, message: &[u8]) -> Vec<u8> {
    private_key(key_file)
        .key()
        .pss_sign::<Sha256>(message)
        .expect("PSS signing")
}

/// The archive with a new manifest (bytes as given) and a signature by `signer`.
pub fn resigned(archive: &[u8], manifest_bytes: &[u8], signer: &str) -> Vec<u8> {
    let signature = pss_sign(signer, manifest_bytes);
    let mut es = entries(archive);
    es[2].1 = manifest_bytes.to_vec();
    es[3].1 = signature;
    build_zip(&es)
}

/// The archive with its manifest changed by `edit`, not re-signed.
pub fn with_manifest_unsigned(archive: &[u8], edit: impl FnOnce(&mut Manifest)) -> Vec<u8> {
    let mut m = manifest(archive);
    edit(&mut m);
    with_entry(archive, "manifest.toml", &m.to_toml())
}

/// The archive with its manifest changed by `edit` and re-signed by `signer`.
pub fn with_manifest_resigned(
    archive: &[u8],
    signer: &str,
    edit: impl FnOnce(&mut Manifest),
) -> Vec<u8> {
    let mut m = manifest(archive);
    edit(&mut m);
    resigned(archive, &m.to_toml(), signer)
}

/// CRC-32 (IEEE), as ZIP and PNG use it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

// ---------------------------------------------------------------------------
// Image inputs

/// A small colourful picture.
pub fn test_picture(width: u32, height: u32) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 255 / width.max(1)) as u8,
            (y * 255 / height.max(1)) as u8,
            ((x + y) % 256) as u8,
        ])
    })
}
