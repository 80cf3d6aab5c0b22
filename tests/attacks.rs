//! Tampered, forged and malformed archives, made from real ones. Every attack
//! must be refused with exit 1, print nothing on stdout, and leave nothing
//! behind: no output directory and no temporary file or directory.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use common::*;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use sxf::crypto::ContentKey;
use sxf::format::{Manifest, Recipient};
use tempfile::{TempDir, tempdir};

/// A sealed archive and a place to try variants of it.
struct Lab {
    dir: TempDir,
    bytes: Vec<u8>,
}

impl Lab {
    /// alice to bob: a message and a small attachment.
    fn standard() -> Self {
        let dir = tempdir().unwrap();
        let bytes = fs::read(seal_standard(dir.path())).unwrap();
        Lab { dir, bytes }
    }

    /// alice to `to`, with the given seal arguments.
    fn sealed(to: &[&str], extra: Vec<std::ffi::OsString>) -> Self {
        let dir = tempdir().unwrap();
        let out = dir.path().join("sealed.sxf");
        seal(&out, to, "alice.key", extra);
        let bytes = fs::read(&out).unwrap();
        Lab { dir, bytes }
    }

    fn arena(&self) -> PathBuf {
        let arena = self.dir.path().join("arena");
        fs::create_dir_all(&arena).unwrap();
        arena
    }

    fn evil_path(&self, bytes: &[u8]) -> PathBuf {
        let path = self.arena().join("evil.sxf");
        fs::write(&path, bytes).unwrap();
        path
    }

    /// Opens `bytes` with `key_file` (None for --any-sender), and reports what
    /// the attempt left in the arena besides the archive; then cleans up.
    fn try_open(&self, bytes: &[u8], key_file: &str, from: Option<&str>) -> (Run, Vec<String>) {
        let path = self.evil_path(bytes);
        let arena = self.arena();
        let r = run(&mut open_cmd(&path, key_file, from, &arena.join("out")));
        let left: Vec<String> = listing(&arena)
            .into_iter()
            .filter(|n| n != "evil.sxf")
            .collect();
        for name in &left {
            let p = arena.join(name);
            if p.is_dir() {
                fs::remove_dir_all(&p).unwrap();
            } else {
                fs::remove_file(&p).unwrap();
            }
        }
        (r, left)
    }

    /// Asserts that bob (expecting alice) cannot open `bytes`: exit 1, nothing
    /// on stdout, nothing left behind.
    fn assert_rejected(&self, bytes: &[u8], what: &str) -> Run {
        self.assert_rejected_as(bytes, "bob.key", Some("alice.pub"), what)
    }

    fn assert_rejected_as(
        &self,
        bytes: &[u8],
        key_file: &str,
        from: Option<&str>,
        what: &str,
    ) -> Run {
        let (r, left) = self.try_open(bytes, key_file, from);
        r.assert_code(1, what);
        assert!(r.stdout.is_empty(), "{what}: printed {:?}", r.stdout);
        assert!(left.is_empty(), "{what}: left {left:?} behind");
        assert!(
            !r.stderr.contains("verified: from") && !r.stderr.contains("signature valid"),
            "{what}: claims verification: {}",
            r.stderr
        );
        r
    }

    /// Why `bytes` would not be rejected by open (None if it is).
    fn open_failure(&self, bytes: &[u8]) -> Option<String> {
        let (r, left) = self.try_open(bytes, "bob.key", Some("alice.pub"));
        if r.code == 1 && left.is_empty() && r.stdout.is_empty() {
            None
        } else {
            let first_line: String = r
                .stderr
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(90)
                .collect();
            Some(format!("exit {} left {left:?}: {first_line}", r.code))
        }
    }

    fn verify(&self, bytes: &[u8], from: &str) -> Run {
        let path = self.evil_path(bytes);
        run(sxf().arg("verify").arg(&path).arg("--from").arg(key(from)))
    }

    fn assert_opens(&self, bytes: &[u8], key_file: &str, what: &str) -> Run {
        let (r, left) = self.try_open(bytes, key_file, Some("alice.pub"));
        r.assert_code(0, what);
        assert_eq!(left, vec!["out".to_owned()], "{what}");
        r
    }
}

/// The part of an error after the archive's name.
fn sentence_after_file_name(stderr: &str) -> String {
    stderr
        .split_once("evil.sxf: ")
        .map(|(_, s)| s.trim_end().to_owned())
        .unwrap_or_else(|| panic!("no file name in {stderr:?}"))
}

// ---------------------------------------------------------------------------
// Forging helpers: what a recipient (who knows the content key) or the sender
// (who can sign) could build.

/// The content key, as bob unwraps it.
fn bobs_content_key(archive: &[u8]) -> ContentKey {
    let m = manifest(archive);
    let bob = fingerprint("bob.pub");
    let index = m
        .recipients
        .iter()
        .position(|r| r.fingerprint == bob)
        .expect("bob is a recipient");
    let start: usize = m.recipients[..index]
        .iter()
        .map(|r| r.wrapped_key_length as usize)
        .sum();
    let len = m.recipients[index].wrapped_key_length as usize;
    let keys = entry(archive, "keys.bin");
    sxf::crypto::unwrap_key(
        &mut rand::rngs::SysRng,
        private_key("bob.key").key(),
        &keys[start..start + len],
    )
    .expect("bob unwraps his key")
}

/// The MAC header, written from the format description rather than the library.
fn mac_header(m: &Manifest) -> Vec<u8> {
    let mut h = format!("sxf/1 payload\nsender {}\n", m.sender.fingerprint);
    for r in &m.recipients {
        h.push_str(&format!("recipient {}\n", r.fingerprint));
    }
    h.push('\n');
    h.into_bytes()
}

fn payload_mac(key: &ContentKey, m: &Manifest, payload: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(&key.expose_for_tests()[32..]).expect("HMAC key");
    mac.update(&mac_header(m));
    mac.update(payload);
    hex::encode(mac.finalize().into_bytes())
}

fn decrypt(key: &ContentKey, payload: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    sxf::crypto::DecryptReader::new(payload, key)
        .read_to_end(&mut plain)
        .expect("the real payload decrypts");
    plain
}

fn encrypt(key: &ContentKey, m: &Manifest, plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    sxf::crypto::encrypt_stream(
        key,
        &[7u8; 16],
        &mac_header(m),
        plaintext,
        &mut out,
        &mut |_| {},
    )
    .expect("encrypting in memory");
    out
}

/// Replaces payload.bin, with a correct digest and MAC, re-signed by alice.
fn with_forged_payload(archive: &[u8], key: &ContentKey, payload: &[u8]) -> Vec<u8> {
    let mut m = manifest(archive);
    m.payload.length = payload.len() as u64;
    m.payload.sha256 = hex::encode(Sha256::digest(payload));
    m.payload.mac = payload_mac(key, &m, payload);
    let rebuilt = with_entry(archive, "payload.bin", payload);
    resigned(&rebuilt, &m.to_toml(), "alice.key")
}

/// A payload plaintext in the documented layout.
fn payload_plaintext(message: &str, files: &[(&str, &[u8])], declared: &[u64]) -> Vec<u8> {
    let mut index = format!("message_length = {}\n", message.len());
    for (i, (name, data)) in files.iter().enumerate() {
        let length = declared.get(i).copied().unwrap_or(data.len() as u64);
        index.push_str(&format!(
            "\n[[files]]\nname = {}\nmedia_type = \"application/octet-stream\"\nkind = \"attachment\"\nlength = {length}\n",
            toml::Value::String((*name).to_owned())
        ));
    }
    let mut out = format!("SXF-PAYLOAD/1 {}\n{index}{message}", index.len()).into_bytes();
    for (_, data) in files {
        out.extend_from_slice(data);
    }
    out
}

// ---------------------------------------------------------------------------
// Controls: the helpers produce archives sxf accepts, so the rejections below
// are caused by the tampering and nothing else.

#[test]
fn control_untouched_rebuilt_and_resigned_archives_open() {
    let lab = Lab::standard();
    lab.assert_opens(&lab.bytes, "bob.key", "the sealed archive");
    lab.assert_opens(
        &build_zip(&entries(&lab.bytes)),
        "bob.key",
        "rebuilt with zip",
    );
    let same = resigned(
        &lab.bytes,
        manifest_text(&lab.bytes).as_bytes(),
        "alice.key",
    );
    lab.assert_opens(&same, "bob.key", "re-signed by alice");
    let reserialised = with_manifest_resigned(&lab.bytes, "alice.key", |_| {});
    lab.assert_opens(&reserialised, "bob.key", "re-serialised manifest");
    // The MAC is what the format description says it is.
    let key = bobs_content_key(&lab.bytes);
    let m = manifest(&lab.bytes);
    assert_eq!(
        payload_mac(&key, &m, &entry(&lab.bytes, "payload.bin")),
        m.payload.mac
    );
    // A forged payload with a correct MAC and signature is accepted.
    let plain = payload_plaintext("forged but valid", &[("f.txt", b"ok")], &[]);
    let forged = with_forged_payload(&lab.bytes, &key, &encrypt(&key, &m, &plain));
    let r = lab.assert_opens(&forged, "bob.key", "forged payload");
    assert_eq!(r.stdout, "forged but valid\n");
}

// ---------------------------------------------------------------------------
// Flipped bytes

#[test]
fn flipped_byte_in_any_entry_is_rejected_by_open_and_verify() {
    let lab = Lab::standard();
    let mut failures = Vec::new();
    for span in spans(&lab.bytes) {
        for pos in [0, span.len / 2, span.len - 1] {
            let mut bad = lab.bytes.clone();
            bad[(span.data_start + pos) as usize] ^= 0x01;
            let what = format!("{} byte {pos}", span.name);
            if let Some(f) = lab.open_failure(&bad) {
                failures.push(format!("open, {what}: {f}"));
            }
            let v = lab.verify(&bad, "alice.pub");
            if v.code != 1 || !v.stdout.is_empty() {
                failures.push(format!("verify, {what}: exit {}", v.code));
            }
        }
    }
    assert!(failures.is_empty(), "accepted:\n{}", failures.join("\n"));
}

/// The same flips with the ZIP CRC recomputed, so only the signature and the
/// manifest's digests can catch them.
#[test]
fn flipped_byte_in_any_entry_with_a_fixed_crc_is_not_authentic() {
    let lab = Lab::standard();
    for (name, data) in entries(&lab.bytes) {
        for pos in [0, data.len() / 2, data.len() - 1] {
            let mut changed = data.clone();
            changed[pos] ^= 0x01;
            let bad = with_entry(&lab.bytes, &name, &changed);
            let what = format!("{name} byte {pos}, CRC fixed");
            let r = lab.assert_rejected(&bad, &what);
            if name != "manifest.toml" {
                r.assert_stderr_contains("not authentic", &what);
            }
            lab.verify(&bad, "alice.pub").assert_code(1, &what);
        }
    }
}

#[test]
fn verify_catches_a_flipped_payload_byte_without_a_private_key() {
    let lab = Lab::standard();
    let mut payload = entry(&lab.bytes, "payload.bin");
    payload[20] ^= 0x80;
    let bad = with_entry(&lab.bytes, "payload.bin", &payload);
    let r = lab.verify(&bad, "alice.pub");
    r.assert_code(1, "verify a changed payload")
        .assert_stderr_contains("not authentic", "verify a changed payload")
        .assert_stderr_contains("payload.bin", "verify a changed payload");
    assert!(r.stdout.is_empty());
    lab.verify(&lab.bytes, "alice.pub")
        .assert_code(0, "verify the original");
}

/// Each byte of the local headers, the central directory and the end record,
/// labelled with the field it belongs to.
fn header_bytes(archive: &[u8]) -> Vec<(usize, String, &'static str)> {
    const LOCAL: [(usize, &str); 12] = [
        (0, "signature"),
        (4, "version needed"),
        (6, "flags"),
        (8, "method"),
        (10, "time"),
        (12, "date"),
        (14, "crc"),
        (18, "compressed size"),
        (22, "size"),
        (26, "name length"),
        (28, "extra length"),
        (30, "name"),
    ];
    const CENTRAL: [(usize, &str); 18] = [
        (0, "signature"),
        (4, "version made by"),
        (6, "version needed"),
        (8, "flags"),
        (10, "method"),
        (12, "time"),
        (14, "date"),
        (16, "crc"),
        (20, "compressed size"),
        (24, "size"),
        (28, "name length"),
        (30, "extra length"),
        (32, "comment length"),
        (34, "disk start"),
        (36, "internal attributes"),
        (38, "external attributes"),
        (42, "local header offset"),
        (46, "name"),
    ];
    const END: [(usize, &str); 8] = [
        (0, "signature"),
        (4, "disk number"),
        (6, "directory disk"),
        (8, "entries on disk"),
        (10, "entries"),
        (12, "directory size"),
        (16, "directory offset"),
        (20, "comment length"),
    ];
    fn field(table: &[(usize, &'static str)], offset: usize) -> &'static str {
        table.iter().rev().find(|(o, _)| *o <= offset).unwrap().1
    }
    let spans = spans(archive);
    let end = archive.len() - 22;
    let mut out = Vec::new();
    for s in &spans {
        for i in s.header_start as usize..s.data_start as usize {
            let off = i - s.header_start as usize;
            out.push((i, format!("local {} +{off}", s.name), field(&LOCAL, off)));
        }
    }
    for (k, s) in spans.iter().enumerate() {
        let stop = spans
            .get(k + 1)
            .map(|n| n.central_header_start as usize)
            .unwrap_or(end);
        for i in s.central_header_start as usize..stop {
            let off = i - s.central_header_start as usize;
            out.push((
                i,
                format!("central {} +{off}", s.name),
                field(&CENTRAL, off),
            ));
        }
    }
    for i in end..archive.len() {
        out.push((i, format!("end record +{}", i - end), field(&END, i - end)));
    }
    out
}

/// Header fields whose values spec/FORMAT.md lets a reader ignore ("What the
/// reader does not check"): versions, flag bits other than encryption (bit 0)
/// and data descriptor (bit 3), and external attributes.
const EXEMPT_FIELDS: [&str; 4] = [
    "version made by",
    "version needed",
    "flags",
    "external attributes",
];

/// Fields the spec neither requires a reader to check nor lists as exempt.
const UNSPECIFIED_FIELDS: [&str; 2] = ["disk start", "internal attributes"];

/// Flips `mask` in each byte `pick` selects; returns how many variants were
/// tried and a description of each one `judge` objects to.
fn flip_header_bytes(
    lab: &Lab,
    pick: impl Fn(&str, &str) -> Vec<u8>,
    judge: impl Fn(&Lab, &[u8]) -> Option<String>,
) -> (usize, Vec<String>) {
    let mut tried = 0;
    let mut objections = Vec::new();
    for (i, label, field) in header_bytes(&lab.bytes) {
        for mask in pick(&label, field) {
            let mut bad = lab.bytes.clone();
            bad[i] ^= mask;
            tried += 1;
            if let Some(f) = judge(lab, &bad) {
                objections.push(format!("{label} ({field}) ^{mask:#04x}: {f}"));
            }
        }
    }
    (tried, objections)
}

#[test]
fn flipped_byte_in_zip_headers_is_rejected_unless_the_spec_exempts_the_field() {
    let lab = Lab::standard();
    let (tried, accepted) = flip_header_bytes(
        &lab,
        |label, field| {
            let flags_low_byte =
                field == "flags" && (label.ends_with("+6") || label.ends_with("+8"));
            if flags_low_byte {
                // Encryption and data descriptor are not exempt.
                vec![0x01, 0x08]
            } else if EXEMPT_FIELDS.contains(&field) || UNSPECIFIED_FIELDS.contains(&field) {
                vec![]
            } else if label.starts_with("central signature.bin")
                && field.ends_with("length")
                && field != "name length"
            {
                // The last central header's extra/comment length: see
                // last_central_header_running_into_the_end_record_is_rejected.
                vec![0x80]
            } else {
                vec![0x01, 0x80]
            }
        },
        Lab::open_failure,
    );
    assert!(tried > 600, "only {tried} variants");
    assert!(accepted.is_empty(), "accepted:\n{}", accepted.join("\n"));
}

/// What the spec lets a reader accept must not change what it extracts.
#[test]
fn flipped_byte_in_exempt_zip_header_fields_never_changes_what_is_extracted() {
    let lab = Lab::standard();
    let expected = {
        let (r, _) = lab.try_open(&lab.bytes, "bob.key", Some("alice.pub"));
        r.assert_code(0, "the original opens");
        r.stdout
    };
    let (tried, objections) = flip_header_bytes(
        &lab,
        |_, field| {
            if EXEMPT_FIELDS.contains(&field) || UNSPECIFIED_FIELDS.contains(&field) {
                vec![0x01, 0x80]
            } else {
                vec![]
            }
        },
        |lab, bad| {
            let path = lab.evil_path(bad);
            let out = lab.arena().join("out");
            let r = run(&mut open_cmd(&path, "bob.key", Some("alice.pub"), &out));
            let verdict = match r.code {
                1 if !out.exists() && r.stdout.is_empty() => None,
                0 if r.stdout == expected
                    && fs::read(out.join("notes.txt")).ok().as_deref()
                        == Some(&b"the attachment's bytes\n"[..]) =>
                {
                    None
                }
                code => Some(format!("exit {code}, stdout {:?}", r.stdout)),
            };
            let _ = fs::remove_dir_all(&out);
            verdict
        },
    );
    assert!(tried > 100, "only {tried} variants");
    assert!(objections.is_empty(), "{}", objections.join("\n"));
}

/// FORMAT.md rule 3: the central directory MUST end where the end record
/// starts. A last central header whose extra field or comment claims bytes of
/// the end record breaks that, although the declared size is unchanged.
#[test]
fn last_central_header_running_into_the_end_record_is_rejected() {
    let lab = Lab::standard();
    let last = spans(&lab.bytes).pop().unwrap();
    let mut accepted = Vec::new();
    for (field, offset) in [("extra length", 30usize), ("comment length", 32)] {
        for n in 1..=21u16 {
            let mut bad = lab.bytes.clone();
            let at = last.central_header_start as usize + offset;
            bad[at..at + 2].copy_from_slice(&n.to_le_bytes());
            if let Some(f) = lab.open_failure(&bad) {
                accepted.push(format!("{field} = {n}: {f}"));
            }
        }
    }
    assert!(accepted.is_empty(), "accepted:\n{}", accepted.join("\n"));
}

#[test]
fn truncated_archive_is_rejected_at_every_offset() {
    let lab = Lab::standard();
    let len = lab.bytes.len();
    let mut cuts: BTreeSet<usize> = (0..40).map(|k| len * k / 40).collect();
    cuts.extend((1..=30).map(|k| len - k));
    let mut failures = Vec::new();
    for cut in cuts {
        if let Some(f) = lab.open_failure(&lab.bytes[..cut]) {
            failures.push(format!("cut at {cut} of {len}: {f}"));
        }
    }
    assert!(failures.is_empty(), "accepted:\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// Container structure

#[test]
fn entries_added_removed_or_reordered_are_rejected() {
    let lab = Lab::standard();
    let original = entries(&lab.bytes);
    type Entries = Vec<(String, Vec<u8>)>;
    let mut variants: Vec<(String, Entries)> = Vec::new();
    for at in [0, 2, 4] {
        let mut es = original.clone();
        es.insert(at, ("extra.txt".into(), b"surprise".to_vec()));
        variants.push((format!("extra entry at {at}"), es));
    }
    for i in 0..4 {
        let mut es = original.clone();
        let (name, _) = es.remove(i);
        variants.push((format!("{name} removed"), es));
    }
    for (a, b) in [(0, 1), (2, 3), (1, 2), (0, 3)] {
        let mut es = original.clone();
        es.swap(a, b);
        variants.push((format!("entries {a} and {b} swapped"), es));
    }
    let mut reversed = original.clone();
    reversed.reverse();
    variants.push(("all reversed".into(), reversed));
    for (i, new_name) in [
        (0, "KEYS.BIN"),
        (2, "manifest.tom"),
        (3, "sig/signature.bin"),
    ] {
        let mut es = original.clone();
        es[i].0 = new_name.into();
        variants.push((format!("renamed to {new_name}"), es));
    }
    for (what, es) in variants {
        lab.assert_rejected(&build_zip(&es), &what)
            .assert_stderr_contains("not a valid sxf archive", &what);
    }
}

#[test]
fn duplicated_entries_are_rejected() {
    let lab = Lab::standard();
    let original = entries(&lab.bytes);
    for i in 0..4 {
        for at in [i + 1, 4] {
            let name = &original[i].0;
            let placeholder = format!("#{}", &name[1..]);
            let mut es = original.clone();
            es.insert(at, (placeholder.clone(), original[i].1.clone()));
            let mut bad = build_zip(&es);
            let patched = patch_all(&mut bad, placeholder.as_bytes(), name.as_bytes());
            assert_eq!(patched, 2, "placeholder in the local and central header");
            let what = format!("{name} duplicated at {at}");
            lab.assert_rejected(&bad, &what)
                .assert_stderr_contains("not a valid sxf archive", &what);
        }
    }
}

#[test]
fn entry_marked_as_deflated_is_rejected() {
    let lab = Lab::standard();
    for span in spans(&lab.bytes) {
        let mut bad = lab.bytes.clone();
        let local = span.header_start as usize + 8;
        let central = span.central_header_start as usize + 10;
        assert_eq!(&bad[local..local + 2], &[0, 0], "stored");
        assert_eq!(&bad[central..central + 2], &[0, 0], "stored");
        bad[local..local + 2].copy_from_slice(&8u16.to_le_bytes());
        bad[central..central + 2].copy_from_slice(&8u16.to_le_bytes());
        let what = format!("{} marked deflated", span.name);
        lab.assert_rejected(&bad, &what)
            .assert_stderr_contains("not a valid sxf archive", &what);
    }
}

#[test]
fn bytes_prepended_are_rejected() {
    let lab = Lab::standard();
    for prefix in [
        &b"X"[..],
        &[0u8; 100][..],
        b"PK\x03\x04",
        b"#!/bin/sh\nexit 0\n",
    ] {
        let mut bad = prefix.to_vec();
        bad.extend_from_slice(&lab.bytes);
        lab.assert_rejected(&bad, &format!("{} bytes prepended", prefix.len()));
    }
}

#[test]
fn bytes_appended_are_rejected() {
    let lab = Lab::standard();
    let end_record = lab.bytes[lab.bytes.len() - 22..].to_vec();
    for suffix in [
        &b"\0"[..],
        b"trailing garbage",
        &[0u8; 22][..],
        &end_record[..],
    ] {
        let mut bad = lab.bytes.clone();
        bad.extend_from_slice(suffix);
        lab.assert_rejected(&bad, &format!("{} bytes appended", suffix.len()));
    }
}

#[test]
fn archive_comment_is_rejected() {
    let lab = Lab::standard();
    let with_comment = build_zip_with_comment(&entries(&lab.bytes), Some("hello"));
    lab.assert_rejected(&with_comment, "ZIP comment")
        .assert_stderr_contains("not a valid sxf archive", "ZIP comment");
    // The same by hand: a comment length and the comment after the end record.
    let mut bad = lab.bytes.clone();
    let n = bad.len();
    bad[n - 2..].copy_from_slice(&3u16.to_le_bytes());
    bad.extend_from_slice(b"abc");
    lab.assert_rejected(&bad, "hand-made ZIP comment");
}

#[test]
fn bytes_inserted_between_the_entries_and_the_directory_are_rejected() {
    let lab = Lab::standard();
    let cd = central_directory_start(&lab.bytes);
    let mut bad = lab.bytes[..cd].to_vec();
    bad.extend_from_slice(b"smuggled");
    bad.extend_from_slice(&lab.bytes[cd..]);
    // Point the end record at the moved directory, so only the gap is wrong.
    let n = bad.len();
    bad[n - 6..n - 2].copy_from_slice(&((cd + 8) as u32).to_le_bytes());
    lab.assert_rejected(&bad, "bytes before the central directory")
        .assert_stderr_contains(
            "not a valid sxf archive",
            "bytes before the central directory",
        );
}

// ---------------------------------------------------------------------------
// Manifest edits

#[test]
fn manifest_edits_without_resigning_are_not_authentic() {
    let lab = Lab::sealed(&["bob.pub", "carol.pub"], args!["-m", "for two"]);
    let removed = with_manifest_unsigned(&lab.bytes, |m| {
        m.recipients.pop();
    });
    lab.assert_rejected(&removed, "recipient removed, not re-signed")
        .assert_stderr_contains("not authentic", "recipient removed, not re-signed");

    let mallory = public_key("mallory.pub");
    let sender_edited = with_manifest_unsigned(&lab.bytes, |m| {
        m.sender.fingerprint = mallory.fingerprint().to_string();
        m.sender.public_key = sxf::format::encode_public_key(&mallory);
    });
    for from in [Some("alice.pub"), Some("mallory.pub"), None] {
        let what = format!("sender edited, not re-signed, --from {from:?}");
        lab.assert_rejected_as(&sender_edited, "bob.key", from, &what)
            .assert_stderr_contains("not authentic", &what);
    }

    let created = with_manifest_unsigned(&lab.bytes, |m| {
        m.created = "2000-01-01T00:00:00Z".into();
    });
    lab.assert_rejected(&created, "date edited, not re-signed")
        .assert_stderr_contains("not authentic", "date edited, not re-signed");
}

#[test]
fn signature_by_another_key_over_the_untouched_manifest_is_not_authentic() {
    let lab = Lab::standard();
    let bad = resigned(
        &lab.bytes,
        manifest_text(&lab.bytes).as_bytes(),
        "mallory.key",
    );
    for from in [Some("alice.pub"), None] {
        let what = format!("re-signed by mallory, --from {from:?}");
        lab.assert_rejected_as(&bad, "bob.key", from, &what)
            .assert_stderr_contains("not authentic", &what);
    }
}

#[test]
fn resigned_by_another_key_with_sender_edited_fails_to_open() {
    let lab = Lab::standard();
    let mallory = public_key("mallory.pub");
    let bad = with_manifest_resigned(&lab.bytes, "mallory.key", |m| {
        m.sender.fingerprint = mallory.fingerprint().to_string();
        m.sender.public_key = sxf::format::encode_public_key(&mallory);
    });
    // The signature is now mallory's and checks out; the MAC binds alice.
    for from in [Some("mallory.pub"), None] {
        let what = format!("mallory's re-signed claim, --from {from:?}");
        lab.assert_rejected_as(&bad, "bob.key", from, &what)
            .assert_stderr_contains(CANNOT_DECRYPT, &what);
    }
    let what = "mallory's re-signed claim, --from alice.pub";
    lab.assert_rejected_as(&bad, "bob.key", Some("alice.pub"), what)
        .assert_stderr_contains(&fingerprint("mallory.pub"), what)
        .assert_stderr_contains("not authentic", what);
}

#[test]
fn recipient_list_retargeted_without_resigning_is_not_authentic() {
    let lab = Lab::standard();
    let mallory = fingerprint("mallory.pub");
    let bad = with_manifest_unsigned(&lab.bytes, |m| {
        m.recipients[0].fingerprint = mallory.clone();
    });
    lab.assert_rejected_as(
        &bad,
        "mallory.key",
        Some("alice.pub"),
        "retargeted, unsigned",
    )
    .assert_stderr_contains("not authentic", "retargeted, unsigned");
}

#[test]
fn recipient_replaced_and_resigned_by_the_sender_cannot_be_decrypted() {
    let lab = Lab::standard();
    let mallory = fingerprint("mallory.pub");
    let bad = with_manifest_resigned(&lab.bytes, "alice.key", |m| {
        m.recipients[0].fingerprint = mallory.clone();
    });
    for who in ["mallory.key", "bob.key"] {
        let what = format!("bob replaced by mallory, re-signed, opened by {who}");
        lab.assert_rejected_as(&bad, who, Some("alice.pub"), &what)
            .assert_stderr_contains(CANNOT_DECRYPT, &what);
    }
}

#[test]
fn recipient_added_and_resigned_by_the_sender_cannot_be_decrypted_by_anyone() {
    let lab = Lab::standard();
    let mallory = public_key("mallory.pub");
    let fresh = ContentKey::generate(&mut rand::rngs::SysRng).unwrap();
    let wrapped = sxf::crypto::wrap_key(&mut rand::rngs::SysRng, mallory.key(), &fresh).unwrap();
    let mut keys = entry(&lab.bytes, "keys.bin");
    keys.extend_from_slice(&wrapped);
    let rebuilt = with_entry(&lab.bytes, "keys.bin", &keys);
    let bad = with_manifest_resigned(&rebuilt, "alice.key", |m| {
        m.keys.length = keys.len() as u64;
        m.keys.sha256 = hex::encode(Sha256::digest(&keys));
        m.recipients.push(Recipient {
            fingerprint: mallory.fingerprint().to_string(),
            wrapped_key_length: wrapped.len() as u64,
        });
    });
    // bob's key still unwraps, but the MAC binds the original recipient list.
    for who in ["bob.key", "mallory.key"] {
        let what = format!("mallory added, re-signed, opened by {who}");
        lab.assert_rejected_as(&bad, who, Some("alice.pub"), &what)
            .assert_stderr_contains(CANNOT_DECRYPT, &what);
    }
}

#[test]
fn wrong_private_key_cannot_decrypt() {
    let lab = Lab::standard();
    for who in ["mallory.key", "dave.key"] {
        lab.assert_rejected_as(&lab.bytes, who, Some("alice.pub"), who)
            .assert_stderr_contains(CANNOT_DECRYPT, who);
    }
}

#[test]
fn wrong_from_is_rejected_naming_both_senders() {
    let lab = Lab::standard();
    let what = "--from bob.pub";
    lab.assert_rejected_as(&lab.bytes, "bob.key", Some("bob.pub"), what)
        .assert_stderr_contains("not authentic", what)
        .assert_stderr_contains(&fingerprint("alice.pub"), what)
        .assert_stderr_contains(&fingerprint("bob.pub"), what);
}

#[test]
fn unknown_format_version_is_unsupported_even_when_signed() {
    let lab = Lab::standard();
    let bad = with_manifest_resigned(&lab.bytes, "alice.key", |m| {
        m.format = "sxf/2".into();
    });
    for from in [Some("alice.pub"), None] {
        let what = format!("sxf/2, --from {from:?}");
        lab.assert_rejected_as(&bad, "bob.key", from, &what)
            .assert_stderr_contains("unsupported", &what)
            .assert_stderr_contains("sxf/2", &what);
    }
}

#[test]
fn downgraded_algorithms_are_unsupported_even_when_signed() {
    let lab = Lab::standard();
    type Edit = fn(&mut Manifest);
    let edits: [(&str, Edit); 5] = [
        ("cipher", |m| {
            m.algorithms.cipher = "AES-128-CBC-PKCS7".into()
        }),
        ("key_wrap", |m| {
            m.algorithms.key_wrap = "RSA-PKCS1-v1_5".into()
        }),
        ("mac", |m| m.algorithms.mac = "HMAC-SHA1".into()),
        ("signature", |m| {
            m.algorithms.signature = "RSA-PKCS1-v1_5-SHA256".into()
        }),
        ("cipher case", |m| {
            m.algorithms.cipher = "aes-256-cbc-pkcs7".into()
        }),
    ];
    for (what, edit) in edits {
        let bad = with_manifest_resigned(&lab.bytes, "alice.key", edit);
        lab.assert_rejected(&bad, what)
            .assert_stderr_contains("unsupported", what);
        lab.verify(&bad, "alice.pub").assert_code(1, what);
    }
}

#[test]
fn manifest_with_an_unknown_field_is_rejected_even_when_signed() {
    let lab = Lab::standard();
    let text = manifest_text(&lab.bytes);
    let top = text.replacen("\n", "\ncompression = \"none\"\n", 1);
    let nested = text.replacen(
        "[algorithms]\n",
        "[algorithms]\ncompression = \"deflate\"\n",
        1,
    );
    let table = format!("{text}\n[extensions]\nx = 1\n");
    for (what, edited) in [
        ("top-level", top),
        ("in [algorithms]", nested),
        ("new table", table),
    ] {
        assert_ne!(edited, text);
        let bad = resigned(&lab.bytes, edited.as_bytes(), "alice.key");
        lab.assert_rejected(&bad, what)
            .assert_stderr_contains("not a valid sxf archive", what);
    }
}

#[test]
fn manifest_that_does_not_commit_to_the_entries_is_rejected_even_when_signed() {
    let lab = Lab::standard();
    type Edit = fn(&mut Manifest);
    let edits: [(&str, Edit); 5] = [
        ("keys.sha256", |m| m.keys.sha256 = "00".repeat(32)),
        ("payload.sha256", |m| m.payload.sha256 = "00".repeat(32)),
        ("payload.length", |m| m.payload.length += 16),
        ("keys.length", |m| {
            m.keys.length += 256;
            m.recipients[0].wrapped_key_length += 256;
        }),
        ("no recipients", |m| m.recipients.clear()),
    ];
    for (what, edit) in edits {
        let bad = with_manifest_resigned(&lab.bytes, "alice.key", edit);
        lab.assert_rejected(&bad, what);
    }
}

// ---------------------------------------------------------------------------
// One error for every decryption failure

#[test]
fn every_decryption_failure_gives_the_same_sentence_and_exit_code() {
    // A long attachment, so that the block the bad-padding case garbles is
    // file data rather than the payload's index or message.
    let lab = Lab::sealed(&["bob.pub"], args!["-m", "x", "--attach", key("alice.pub")]);
    let key = bobs_content_key(&lab.bytes);
    let mut sentences: Vec<(String, String)> = Vec::new();
    let mut record = |what: &str, bytes: &[u8], key_file: &str| {
        let r = lab.assert_rejected_as(bytes, key_file, Some("alice.pub"), what);
        sentences.push((what.to_owned(), sentence_after_file_name(&r.stderr)));
    };

    // Not a recipient.
    record("not a recipient", &lab.bytes, "mallory.key");

    // Listed as a recipient, but the wrapped key is someone else's.
    let mallory = fingerprint("mallory.pub");
    let wrong_key = with_manifest_resigned(&lab.bytes, "alice.key", |m| {
        m.recipients[0].fingerprint = mallory.clone();
    });
    record("wrong key", &wrong_key, "mallory.key");

    // A damaged wrapped key, with a manifest that commits to it.
    let mut keys = entry(&lab.bytes, "keys.bin");
    keys[100] ^= 0x01;
    let rebuilt = with_entry(&lab.bytes, "keys.bin", &keys);
    let bad_wrap = with_manifest_resigned(&rebuilt, "alice.key", |m| {
        m.keys.sha256 = hex::encode(Sha256::digest(&keys));
    });
    record("corrupted wrapped key", &bad_wrap, "bob.key");

    // A changed payload whose digest is updated but whose MAC cannot be.
    let mut payload = entry(&lab.bytes, "payload.bin");
    payload[40] ^= 0x01;
    let rebuilt = with_entry(&lab.bytes, "payload.bin", &payload);
    let bad_mac = with_manifest_resigned(&rebuilt, "alice.key", |m| {
        m.payload.sha256 = hex::encode(Sha256::digest(&payload));
    });
    record("bad MAC", &bad_mac, "bob.key");

    // A valid MAC over a ciphertext whose padding is wrong (built with the
    // content key, as a hostile sender or recipient could).
    let real = entry(&lab.bytes, "payload.bin");
    let pad = 16 - decrypt(&key, &real).len() % 16;
    let mut bad_padding = real.clone();
    let n = bad_padding.len();
    bad_padding[n - 17] ^= pad as u8; // the last plaintext byte becomes 0
    record(
        "bad padding",
        &with_forged_payload(&lab.bytes, &key, &bad_padding),
        "bob.key",
    );

    let first = &sentences[0].1;
    assert!(first.starts_with(CANNOT_DECRYPT), "{first}");
    for (what, s) in &sentences {
        assert_eq!(s, first, "{what} reads differently");
    }
}

// ---------------------------------------------------------------------------
// Hostile payloads that carry a valid MAC and signature

#[test]
fn bad_padding_after_files_were_written_leaves_nothing_behind() {
    // A long attachment, so the damaged block is file data, written to disk
    // before the padding is checked at the very end.
    let lab = Lab::sealed(&["bob.pub"], args!["-m", "x", "--attach", key("alice.pub")]);
    let key = bobs_content_key(&lab.bytes);
    let real = entry(&lab.bytes, "payload.bin");
    let pad = 16 - decrypt(&key, &real).len() % 16;
    let mut bad = real.clone();
    let n = bad.len();
    bad[n - 17] ^= pad as u8;
    lab.assert_rejected(&with_forged_payload(&lab.bytes, &key, &bad), "bad padding")
        .assert_stderr_contains(CANNOT_DECRYPT, "bad padding");
}

#[test]
fn sender_crafted_file_names_cannot_escape_the_output_directory() {
    let dir = tempdir().unwrap();
    let base = fs::read(seal_standard(dir.path())).unwrap();
    let key = bobs_content_key(&base);
    let m = manifest(&base);
    let files: Vec<(&str, &[u8])> = vec![
        ("../../escape.txt", b"1"),
        ("/tmp/sxf-absolute-escape.txt", b"2"),
        ("..", b"3"),
        (".", b"4"),
        ("message.txt", b"5"),
        ("MESSAGE.TXT", b"6"),
        ("a/b/../../c.txt", b"7"),
        ("x\\..\\..\\y.txt", b"8"),
        ("-rf", b"9"),
        (".bashrc", b"10"),
        ("nul\0byte", b"11"),
        ("\u{202e}txt.exe", b"12"),
        ("  ", b"13"),
        ("out", b"14"),
    ];
    let plain = payload_plaintext("hostile names", &files, &[]);
    let forged = with_forged_payload(&base, &key, &encrypt(&key, &m, &plain));
    let deep = dir.path().join("a").join("b");
    fs::create_dir_all(&deep).unwrap();
    let archive = deep.join("hostile.sxf");
    fs::write(&archive, &forged).unwrap();
    let out = deep.join("out");
    let r = run(&mut open_cmd(&archive, "bob.key", Some("alice.pub"), &out));
    r.assert_code(0, "open hostile names");

    let written = tree(&out);
    assert_eq!(written.len(), files.len() + 1);
    assert_eq!(written[Path::new("message.txt")], b"hostile names");
    let mut seen = BTreeSet::new();
    for path in written.keys() {
        assert_eq!(path.components().count(), 1, "nested {path:?}");
        let name = path.to_str().unwrap();
        assert!(!name.starts_with('.') && !name.starts_with('-'), "{name:?}");
        assert!(
            name.chars()
                .all(|c| c.is_alphanumeric() || " ._-+()".contains(c)),
            "{name:?}"
        );
        assert!(seen.insert(name.to_lowercase()), "duplicate {name}");
    }
    for (_, data) in &files {
        assert_eq!(
            written.values().filter(|v| v.as_slice() == *data).count(),
            1,
            "contents {:?}",
            String::from_utf8_lossy(data)
        );
    }
    assert_eq!(
        listing(&deep),
        ["hostile.sxf", "out"].map(String::from).into()
    );
    assert_eq!(listing(&dir.path().join("a")), ["b".to_owned()].into());
    assert!(!dir.path().join("escape.txt").exists());
    assert!(!Path::new("/tmp/sxf-absolute-escape.txt").exists());
}

#[test]
fn sender_crafted_payload_whose_lengths_do_not_add_up_is_rejected_leaving_nothing() {
    let lab = Lab::standard();
    let key = bobs_content_key(&lab.bytes);
    let m = manifest(&lab.bytes);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "file shorter than declared",
            payload_plaintext("m", &[("a.bin", b"abc"), ("b.bin", b"def")], &[3, 10]),
        ),
        (
            "trailing bytes",
            payload_plaintext("m", &[("a.bin", b"abcdef")], &[3]),
        ),
        (
            "huge declared file",
            payload_plaintext("m", &[("a.bin", b"abc")], &[1 << 60]),
        ),
        ("huge declared message", {
            let index = "message_length = 999999999999\n";
            format!("SXF-PAYLOAD/1 {}\n{index}m", index.len()).into_bytes()
        }),
        ("not a payload", b"hello, not a payload".to_vec()),
        ("empty plaintext", Vec::new()),
    ];
    for (what, plain) in cases {
        let forged = with_forged_payload(&lab.bytes, &key, &encrypt(&key, &m, &plain));
        lab.assert_rejected(&forged, what)
            .assert_stderr_contains("malformed", what);
    }
}

// ---------------------------------------------------------------------------
// Bytes that change after they were checked

/// A change to `data` at `offset` (XOR `delta`) plus four bytes at `fix_at`
/// chosen so that the CRC-32 of the whole buffer stays the same: the ZIP CRC is
/// linear and no defence against a deliberate change.
fn crc_preserving_change(data: &[u8], offset: usize, delta: &[u8], fix_at: usize) -> Vec<u8> {
    let zero = crc32(&vec![0u8; data.len()]);
    let linear = |d: &[u8]| crc32(d) ^ zero;
    let mut wanted = vec![0u8; data.len()];
    wanted[offset..offset + delta.len()].copy_from_slice(delta);
    let target = linear(&wanted);
    // One column per bit of the four fix bytes; solve over GF(2).
    let mut rows: Vec<(u32, u32)> = (0..32)
        .map(|bit| {
            let mut e = vec![0u8; data.len()];
            e[fix_at + bit / 8] = 1 << (bit % 8);
            (linear(&e), 1u32 << bit)
        })
        .collect();
    let mut rank = 0;
    for pivot in 0..32 {
        let Some(k) = (rank..32).find(|&k| rows[k].0 >> pivot & 1 == 1) else {
            continue;
        };
        rows.swap(rank, k);
        for k in 0..32 {
            if k != rank && rows[k].0 >> pivot & 1 == 1 {
                rows[k].0 ^= rows[rank].0;
                rows[k].1 ^= rows[rank].1;
            }
        }
        rank += 1;
    }
    assert_eq!(rank, 32, "32 consecutive bits span the CRC space");
    let mut fix = 0u32;
    for (value, combo) in &rows {
        if target & value != 0 {
            fix ^= combo;
        }
    }
    let mut changed = data.to_vec();
    for (i, d) in delta.iter().enumerate() {
        changed[offset + i] ^= d;
    }
    for (i, b) in fix.to_le_bytes().iter().enumerate() {
        changed[fix_at + i] ^= b;
    }
    assert_eq!(crc32(&changed), crc32(data), "the CRC is unchanged");
    changed
}

/// Rewrites part of a file in place the second time a pass over the payload
/// begins: after the first pass (digest and MAC) and before the next.
struct ChangeAfterFirstPass {
    path: PathBuf,
    offset: u64,
    bytes: Vec<u8>,
    passes: usize,
    changed: bool,
}

impl sxf::Progress for ChangeAfterFirstPass {
    fn begin(&mut self, _what: &str, _total: u64) {
        self.passes += 1;
        if self.passes == 2 {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = fs::OpenOptions::new().write(true).open(&self.path).unwrap();
            f.seek(SeekFrom::Start(self.offset)).unwrap();
            f.write_all(&self.bytes).unwrap();
            f.sync_all().unwrap();
            self.changed = true;
        }
    }
}

/// A file served by someone else (a network share, a FUSE mount, a hostile USB
/// device) can change between the MAC check and decryption. What `open`
/// publishes must still be exactly what was sealed, or nothing.
#[test]
fn payload_changed_between_the_mac_check_and_decryption_is_never_published() {
    let dir = tempdir().unwrap();
    let attachment = dir.path().join("ledger.txt");
    let original: Vec<u8> = b"pay 100 EUR to alice\n".repeat(200);
    fs::write(&attachment, &original).unwrap();
    let archive = dir.path().join("a.sxf");
    seal(
        &archive,
        &["bob.pub"],
        "alice.key",
        args!["--attach", &attachment],
    );
    let bytes = fs::read(&archive).unwrap();
    let payload_span = spans(&bytes)
        .into_iter()
        .find(|s| s.name == "payload.bin")
        .unwrap();
    let payload = entry(&bytes, "payload.bin");

    // Flip bits in a ciphertext block well inside the attachment (CBC: the
    // same bits flip in the next plaintext block), and keep the CRC.
    let blocks = payload.len() / 16;
    let target = 16 * (blocks - 12);
    let fix_at = 16 * (blocks - 30);
    let changed = crc_preserving_change(&payload, target, &[0x55; 8], fix_at);

    let bob = private_key("bob.key");
    let alice = public_key("alice.pub");
    let out = dir.path().join("out");
    let mut progress = ChangeAfterFirstPass {
        path: archive.clone(),
        offset: payload_span.data_start,
        bytes: changed,
        passes: 0,
        changed: false,
    };
    let result = sxf::open::open(
        &archive,
        &bob,
        sxf::open::ExpectedSender::Key(&alice),
        &out,
        &mut progress,
    );
    match result {
        Ok(_) => {
            let published = fs::read(out.join("ledger.txt")).unwrap();
            assert!(
                published == original,
                "open published bytes that were never sealed (changed after the MAC \
                 check: {}; {} of {} bytes differ)",
                progress.changed,
                published
                    .iter()
                    .zip(&original)
                    .filter(|(a, b)| a != b)
                    .count(),
                original.len()
            );
        }
        Err(e) => {
            assert!(e.is_rejection(), "{e}");
            assert_not_created(&out);
        }
    }
}
