//! Writes the test vectors in `spec/vectors/`: archives and, for each, a small
//! text file saying what opening it must do.
//!
//! ```text
//! cargo run --example make_vectors -- [OUT_DIR]     (default: spec/vectors)
//! ```
//!
//! Everything is deterministic: every random byte (content key, IV, OAEP seeds,
//! PSS salts) comes from a ChaCha20 generator seeded with SHA-256 of the vector's
//! name, `created` is fixed, and the ZIP writer's timestamps are fixed. Two runs
//! write byte-identical files.
//!
//! Failure vectors are derived from the success vectors by changing bytes. Some
//! re-sign the changed manifest with the sender's own key (`keys/alice.key`): not
//! because that is an attack, but so that the signature is valid and the check
//! the vector is about is the first one to fail. Others re-sign with
//! `tests/keys/mallory.key`, which is the attack.

use std::fs;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hmac::{Hmac, KeyInit, Mac};
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sha2::{Digest, Sha256};
use sxf::NoProgress;
use sxf::crypto::{self, ContentKey, DecryptReader};
use sxf::format::{ContainerWriter, Manifest, mac_header};
use sxf::images::ImageOptions;
use sxf::keys::{PrivateKeyInfo, PublicKeyInfo, load_private_key, load_public_key};
use sxf::payload::{FileEntry, FileKind, PayloadPlan, PlannedFile, Source};
use sxf::seal::{SealRequest, seal_with_rng};

/// 2026-01-01T00:00:00Z, the `created` time of every vector.
const CREATED_UNIX: u64 = 1_767_225_600;
const MESSAGE: &str = "Hello Bob,\nthe notes for Thursday are attached.\n\u{2014} Alice\n";
const ATTACHMENT_NAME: &str = "notes.txt";
const ATTACHMENT: &[u8] = b"1. bring the photos\n2. do not forget the keys\n";

const ALICE_PUB: &str = "keys/alice.pub";
const BOB_KEY: &str = "keys/bob.key";
const DAVE_KEY: &str = "tests/keys/dave.key";
const MALLORY_PUB: &str = "tests/keys/mallory.pub";

/// Names that the rules of FORMAT.md, "File names", keep byte for byte, each with
/// its file's contents.
const ORDINARY_NAMES: [(&str, &str); 8] = [
    ("Q3 report, final & signed [v2].pdf", "report"),
    ("Mum's birthday #1!.jpg", "birthday"),
    ("50% off = £10 + €5; {draft} ~ ^ @ $ `.txt", "punctuation"),
    ("résumé – v2 ✓ (final).pdf", "accents"),
    ("日本語のファイル.txt", "japanese"),
    ("👨\u{200D}👩\u{200D}👧 family.png", "emoji sequence"),
    ("v1.2.3.tar.gz", "dots inside"),
    ("console.txt", "not a device name"),
];

/// Names the rules change so that they are valid, and distinct, on Linux, macOS
/// and Windows: (index name, saved name, contents).
const PORTABLE_NAMES: [(&str, &str, &str); 19] = [
    ("CON", "_CON", "device"),
    ("aux.txt", "_aux.txt", "device with an extension"),
    ("Com1.tar.gz", "_Com1.tar.gz", "device in mixed case"),
    ("nul .txt", "_nul .txt", "device with a space"),
    (
        "LPT\u{b9}.jpg",
        "_LPT\u{b9}.jpg",
        "device with a superscript digit",
    ),
    ("COM10.txt", "COM10.txt", "not a device name"),
    ("a:b", "a_b", "colon"),
    ("<>:\"|?*.txt", "_______.txt", "forbidden characters"),
    ("trailing dots...", "trailing dots", "trailing dots"),
    ("report.pdf  ", "report.pdf", "trailing spaces"),
    ("\u{202E}gpj.exe", "_gpj.exe", "right-to-left override"),
    ("tab\there.txt", "tab_here.txt", "tab"),
    ("A.jpg", "A.jpg", "upper case"),
    ("a.jpg", "a (2).jpg", "lower case"),
    ("\u{3c2}.txt", "\u{3c2}.txt", "final sigma"),
    ("\u{3a3}.txt", "\u{3a3} (2).txt", "capital sigma"),
    ("Cafe\u{301}.txt", "Caf\u{e9}.txt", "NFD"),
    ("caf\u{e9}.txt", "caf\u{e9} (2).txt", "NFC, lower case"),
    (LONG_NAME, LONG_NAME_SAVED, "long name"),
];

/// 142 bytes; saved as its first 96 bytes and the extension, 100 in all.
const LONG_NAME: &str = "a name that goes on and on and on and on and on and on and on and on and on and on and on and on and on and on and on and on and on and on.pdf";
const LONG_NAME_SAVED: &str = "a name that goes on and on and on and on and on and on and on and on and on and on and on and on.pdf";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => root.join("spec/vectors"),
    };
    fs::create_dir_all(&out)?;
    let g = Generator::new(&root)?;
    let vectors = g.all()?;
    for v in &vectors {
        fs::write(out.join(format!("{}.sxf", v.name)), &v.archive)?;
        fs::write(out.join(format!("{}.txt", v.name)), v.description())?;
    }
    println!("wrote {} vectors into {}", vectors.len(), out.display());
    Ok(())
}

/// One vector: an archive and what opening it with `key`, trusting `from`, must do.
struct Vector {
    name: &'static str,
    expect: &'static str,
    from: &'static str,
    key: &'static str,
    comment: &'static str,
    archive: Vec<u8>,
    /// For `success`: the message, then each file as `sxf open` names it.
    outputs: Option<Outputs>,
}

struct Outputs {
    message: Vec<u8>,
    files: Vec<(String, Vec<u8>)>,
}

impl Vector {
    fn description(&self) -> String {
        let mut s = format!(
            "expect: {}\nfrom: {}\nkey: {}\n",
            self.expect, self.from, self.key
        );
        if let Some(o) = &self.outputs {
            s += &format!("message: {}\n", hex::encode(Sha256::digest(&o.message)));
            for (name, bytes) in &o.files {
                s += &format!("file: {} {}\n", hex::encode(Sha256::digest(bytes)), name);
            }
        }
        for line in self.comment.lines() {
            s += &format!("comment: {line}\n");
        }
        s
    }
}

fn rng_for(name: &str) -> ChaCha20Rng {
    let seed: [u8; 32] = Sha256::digest(format!("sxf test vector {name}")).into();
    ChaCha20Rng::from_seed(seed)
}

/// The four entries of an archive.
#[derive(Clone)]
struct Parts {
    keys: Vec<u8>,
    payload: Vec<u8>,
    manifest: Vec<u8>,
    signature: Vec<u8>,
}

impl Parts {
    fn split(archive: &[u8]) -> Result<Parts> {
        let mut zip = zip::ZipArchive::new(Cursor::new(archive))?;
        let mut read = |name: &str| -> Result<Vec<u8>> {
            let mut v = Vec::new();
            zip.by_name(name)?.read_to_end(&mut v)?;
            Ok(v)
        };
        Ok(Parts {
            keys: read("keys.bin")?,
            payload: read("payload.bin")?,
            manifest: read("manifest.toml")?,
            signature: read("signature.bin")?,
        })
    }

    /// The archive exactly as `sxf seal` would write these entries.
    fn join(&self) -> Result<Vec<u8>> {
        let mut w = ContainerWriter::new(Cursor::new(Vec::new()), &self.keys)?;
        w.start_payload(self.payload.len() as u64)?
            .write_all(&self.payload)?;
        Ok(w.finish(&self.manifest, &self.signature)?.into_inner())
    }

    fn manifest(&self) -> Result<Manifest> {
        Ok(toml::from_str(std::str::from_utf8(&self.manifest)?)?)
    }

    /// Replaces the manifest and signs it with `key`.
    fn resign(
        &mut self,
        manifest: Vec<u8>,
        key: &PrivateKeyInfo,
        rng: &mut ChaCha20Rng,
    ) -> Result<()> {
        self.signature = crypto::sign(rng, key.key(), &manifest)?;
        self.manifest = manifest;
        Ok(())
    }

    /// Edits the manifest (re-serialised as sxf writes it) and re-signs it.
    fn edit(
        &mut self,
        key: &PrivateKeyInfo,
        rng: &mut ChaCha20Rng,
        f: impl FnOnce(&mut Manifest),
    ) -> Result<()> {
        let mut m = self.manifest()?;
        f(&mut m);
        self.resign(m.to_toml(), key, rng)
    }

    /// Points the manifest at the current `keys.bin` and `payload.bin`.
    fn commit_digests(m: &mut Manifest, keys: &[u8], payload: &[u8]) {
        m.keys.length = keys.len() as u64;
        m.keys.sha256 = hex::encode(Sha256::digest(keys));
        m.payload.length = payload.len() as u64;
        m.payload.sha256 = hex::encode(Sha256::digest(payload));
    }
}

/// One entry's headers inside an archive (offsets in bytes from the start).
struct Entry {
    local: usize,
    central: usize,
}

/// Walks the central directory of an archive without ZIP64 records.
fn entries(a: &[u8]) -> Vec<Entry> {
    let le16 = |at: usize| u16::from_le_bytes([a[at], a[at + 1]]) as usize;
    let le32 = |at: usize| u32::from_le_bytes(a[at..at + 4].try_into().unwrap()) as usize;
    let eocd = a.len() - 22;
    assert_eq!(&a[eocd..eocd + 4], b"PK\x05\x06");
    let mut at = le32(eocd + 16);
    let mut out = Vec::new();
    for _ in 0..le16(eocd + 10) {
        assert_eq!(&a[at..at + 4], b"PK\x01\x02");
        out.push(Entry {
            local: le32(at + 42),
            central: at,
        });
        at += 46 + le16(at + 28) + le16(at + 30) + le16(at + 32);
    }
    out
}

/// Inserts `bytes` at `at` and moves every offset that points past it, so the
/// result is a self-consistent ZIP file with bytes where sxf allows none.
fn insert_bytes(archive: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let list = entries(archive);
    let mut a = archive.to_vec();
    let shift = |v: &mut [u8], pos: usize| {
        let old = u32::from_le_bytes(v[pos..pos + 4].try_into().unwrap()) as usize;
        if old >= at {
            v[pos..pos + 4].copy_from_slice(&((old + bytes.len()) as u32).to_le_bytes());
        }
    };
    for e in &list {
        shift(&mut a, e.central + 42);
    }
    let eocd = a.len() - 22;
    shift(&mut a, eocd + 16);
    a.splice(at..at, bytes.iter().copied());
    a
}

/// Writes the given entries with the same options sxf uses, in the given order.
fn zip_of(entries: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        w.start_file(*name, options)?;
        w.write_all(bytes)?;
    }
    Ok(w.finish()?.into_inner())
}

struct Generator {
    alice: PrivateKeyInfo,
    mallory: PrivateKeyInfo,
    bob: PrivateKeyInfo,
    bob_pub: PublicKeyInfo,
    carol_pub: PublicKeyInfo,
    dave_pub: PublicKeyInfo,
}

impl Generator {
    fn new(root: &Path) -> Result<Self> {
        let private = |p: &str| load_private_key(&root.join(p), || Ok(None));
        let public = |p: &str| load_public_key(&root.join(p));
        Ok(Generator {
            alice: private("keys/alice.key")?,
            mallory: private("tests/keys/mallory.key")?,
            bob: private(BOB_KEY)?,
            bob_pub: public("keys/bob.pub")?,
            carol_pub: public("tests/keys/carol.pub")?,
            dave_pub: public("tests/keys/dave.pub")?,
        })
    }

    /// Seals MESSAGE and ATTACHMENT from alice to `recipients` with `sxf::seal`.
    fn seal(&self, name: &str, recipients: &[PublicKeyInfo]) -> Result<Vec<u8>> {
        let dir = tempfile::tempdir()?;
        let attachment = dir.path().join(ATTACHMENT_NAME);
        fs::write(&attachment, ATTACHMENT)?;
        let out = dir.path().join("out.sxf");
        let request = SealRequest {
            sender: &self.alice,
            recipients,
            message: MESSAGE.into(),
            images: Vec::new(),
            image_options: ImageOptions::default(),
            attachments: vec![attachment],
            created: SystemTime::UNIX_EPOCH + Duration::from_secs(CREATED_UNIX),
            fit: None,
            threads: None,
        };
        seal_with_rng(request, &out, &mut rng_for(name), &mut NoProgress)?;
        let bytes = fs::read(&out)?;
        // The generator's own writer must reproduce sxf's bytes exactly.
        assert!(
            Parts::split(&bytes)?.join()? == bytes,
            "ContainerWriter output differs"
        );
        Ok(bytes)
    }

    /// The content key of an archive sealed to bob.
    fn content_key(&self, parts: &Parts) -> Result<ContentKey> {
        let m = sxf::format::Manifest::parse(&parts.manifest)?;
        let index = m
            .recipients
            .iter()
            .position(|r| r == self.bob.fingerprint())
            .ok_or("bob is not a recipient")?;
        let wrapped = &parts.keys[m.wrapped_key_range(index)];
        crypto::unwrap_key(&mut rng_for("unwrap"), self.bob.key(), wrapped)
            .map_err(|_| "cannot unwrap".into())
    }

    fn mac_header_of(&self, parts: &Parts) -> Result<Vec<u8>> {
        let m = sxf::format::Manifest::parse(&parts.manifest)?;
        Ok(mac_header(m.sender.fingerprint(), &m.recipients))
    }

    /// Encrypts `plain` under the archive's own content key (valid MAC), updates the
    /// manifest and re-signs it as alice: what a malicious sender can do.
    fn reseal_payload(&self, parts: &Parts, plain: &[u8], rng: &mut ChaCha20Rng) -> Result<Parts> {
        let key = self.content_key(parts)?;
        let header = self.mac_header_of(parts)?;
        let mut iv = [0u8; 16];
        rand::Rng::fill_bytes(rng, &mut iv);
        let mut payload = Vec::new();
        let d = crypto::encrypt_stream(&key, &iv, &header, plain, &mut payload, &mut |_| {})?;
        let mut p = parts.clone();
        p.edit(&self.alice, rng, |m| {
            Parts::commit_digests(m, &parts.keys, &payload);
            m.payload.mac = hex::encode(d.mac);
        })?;
        p.payload = payload;
        Ok(p)
    }

    /// Seals `message` and files named by hand (index name, name `sxf open` must
    /// save it under, contents) as alice to bob, with the key and MAC of `basic`.
    fn names_vector(
        &self,
        basic: &Parts,
        name: &'static str,
        message: &str,
        comment: &'static str,
        files: &[(&str, &str, &str)],
    ) -> Result<Vector> {
        let mut rng = rng_for(name);
        let plan = PayloadPlan {
            message: message.into(),
            files: files
                .iter()
                .map(|(index_name, _, contents)| PlannedFile {
                    entry: FileEntry {
                        name: (*index_name).into(),
                        media_type: "application/octet-stream".into(),
                        kind: FileKind::Attachment,
                        length: contents.len() as u64,
                    },
                    source: Source::Memory(contents.as_bytes().to_vec()),
                })
                .collect(),
        };
        let mut plain = Vec::new();
        plan.into_reader().read_to_end(&mut plain)?;
        let p = self.reseal_payload(basic, &plain, &mut rng)?;
        Ok(Vector {
            name,
            expect: "success",
            from: ALICE_PUB,
            key: BOB_KEY,
            comment,
            archive: p.join()?,
            outputs: Some(Outputs {
                message: message.as_bytes().to_vec(),
                files: files
                    .iter()
                    .map(|(_, saved, contents)| (saved.to_string(), contents.as_bytes().to_vec()))
                    .collect(),
            }),
        })
    }

    fn all(&self) -> Result<Vec<Vector>> {
        let mut v = Vec::new();
        let vector = |name, expect, from, key, comment, archive| Vector {
            name,
            expect,
            from,
            key,
            comment,
            archive,
            outputs: None,
        };

        // ----- success
        let basic = self.seal("basic", std::slice::from_ref(&self.bob_pub))?;
        let expected_outputs = || Outputs {
            message: MESSAGE.as_bytes().to_vec(),
            files: vec![(ATTACHMENT_NAME.to_owned(), ATTACHMENT.to_vec())],
        };
        v.push(Vector {
            outputs: Some(expected_outputs()),
            ..vector(
                "basic",
                "success",
                ALICE_PUB,
                BOB_KEY,
                "alice to bob: a message and one attachment, sealed by sxf::seal",
                basic.clone(),
            )
        });
        let two = self.seal(
            "two-recipients",
            &[self.bob_pub.clone(), self.dave_pub.clone()],
        )?;
        v.push(Vector {
            outputs: Some(expected_outputs()),
            ..vector(
                "two-recipients",
                "success",
                ALICE_PUB,
                DAVE_KEY,
                "alice to bob (2048-bit) and dave (3072-bit), opened by dave: his\n\
                 384-byte OAEP block starts at offset 256 of keys.bin",
                two.clone(),
            )
        });
        let bp = Parts::split(&basic)?;
        v.push(self.names_vector(
            &bp,
            "hostile-names",
            "names chosen by a hostile sender\n",
            "the index names ../../.bashrc, C:\\Windows\\evil.dll, message.txt, ..,\n\
             -rf, Notes.TXT and notes.txt; the opener reduces them to plain,\n\
             unique file names (see FORMAT.md, \"File names\")",
            &[
                ("../../.bashrc", "bashrc", "one"),
                ("C:\\Windows\\evil.dll", "evil.dll", "two"),
                ("message.txt", "message (2).txt", "three"),
                ("..", "file-4", "four"),
                ("-rf", "rf", "five"),
                ("Notes.TXT", "Notes.TXT", "six"),
                ("notes.txt", "notes (2).txt", "seven"),
            ],
        )?);
        v.push(self.names_vector(
            &bp,
            "ordinary-names",
            "ordinary file names arrive as they are\n",
            "ordinary names, punctuation, non-Latin scripts and an emoji sequence:\n\
             every one is saved byte for byte (see FORMAT.md, \"File names\")",
            &ORDINARY_NAMES.map(|(name, contents)| (name, name, contents)),
        )?);
        v.push(self.names_vector(
            &bp,
            "portable-names",
            "names that Windows or macOS would refuse or merge\n",
            "Windows device names, characters Windows forbids, trailing dots and\n\
             spaces, bidi and control characters, NFD, names equal on a\n\
             case-insensitive volume, and a long name: each saved as a name that is\n\
             the same and valid on Linux, macOS and Windows (see FORMAT.md, \"File names\")",
            &PORTABLE_NAMES,
        )?);

        // ----- not authentic
        v.push(vector(
            "wrong-sender",
            "not authentic",
            MALLORY_PUB,
            BOB_KEY,
            "basic.sxf, but the opener expects mallory as the sender",
            basic.clone(),
        ));
        {
            let mut p = bp.clone();
            let last = p.signature.len() - 1;
            p.signature[last] ^= 0x01;
            v.push(vector(
                "bad-signature",
                "not authentic",
                ALICE_PUB,
                BOB_KEY,
                "the last byte of signature.bin is flipped",
                p.join()?,
            ));
        }
        {
            let mut p = bp.clone();
            let mut m = p.manifest()?;
            m.created = "2026-01-01T00:00:01Z".into();
            p.manifest = m.to_toml();
            v.push(vector(
                "manifest-edited",
                "not authentic",
                ALICE_PUB,
                BOB_KEY,
                "created is moved by one second and the signature is left as it was",
                p.join()?,
            ));
        }
        {
            let mut p = bp.clone();
            let mut m = p.manifest()?;
            m.recipients[0].fingerprint = self.carol_pub.fingerprint().to_string();
            p.manifest = m.to_toml();
            v.push(vector(
                "retargeted-recipients",
                "not authentic",
                ALICE_PUB,
                BOB_KEY,
                "the recipient list names carol instead of bob; not re-signed",
                p.join()?,
            ));
        }
        {
            let mut p = bp.clone();
            p.payload[40] ^= 0x01;
            v.push(vector(
                "flipped-payload-byte",
                "not authentic",
                ALICE_PUB,
                BOB_KEY,
                "byte 40 of payload.bin is flipped (the ZIP CRC-32 is updated);\n\
                 its SHA-256 no longer matches the signed manifest",
                p.join()?,
            ));
        }
        {
            let mut p = bp.clone();
            p.keys[7] ^= 0x01;
            v.push(vector(
                "flipped-keys-byte",
                "not authentic",
                ALICE_PUB,
                BOB_KEY,
                "byte 7 of keys.bin is flipped; its SHA-256 no longer matches",
                p.join()?,
            ));
        }
        // Mallory takes alice's archive, replaces the sender with herself and signs.
        let stolen = {
            let mut rng = rng_for("mallory-resigned");
            let mut p = bp.clone();
            let mallory = self.mallory.public();
            p.edit(&self.mallory, &mut rng, |m| {
                m.sender.fingerprint = mallory.fingerprint().to_string();
                m.sender.public_key = sxf::format::encode_public_key(mallory);
            })?;
            p.join()?
        };
        v.push(vector(
            "mallory-resigned",
            "not authentic",
            ALICE_PUB,
            BOB_KEY,
            "mallory replaced the manifest's sender with her own key and signed it;\n\
             the opener expects alice",
            stolen.clone(),
        ));

        // ----- cannot decrypt
        v.push(vector(
            "mallory-resigned-trusted",
            "cannot decrypt",
            MALLORY_PUB,
            BOB_KEY,
            "mallory-resigned.sxf opened by someone who trusts mallory's key: the\n\
             signature verifies, but the MAC header names alice as the sender,\n\
             so the MAC fails (FORMAT.md, \"Security bindings\" (a))",
            stolen,
        ));
        v.push(vector(
            "not-a-recipient",
            "cannot decrypt",
            ALICE_PUB,
            DAVE_KEY,
            "basic.sxf opened with dave's key; dave is not a recipient",
            basic.clone(),
        ));
        {
            let mut rng = rng_for("flipped-payload-byte-resigned");
            let mut p = bp.clone();
            p.payload[40] ^= 0x01;
            let (keys, payload) = (p.keys.clone(), p.payload.clone());
            p.edit(&self.alice, &mut rng, |m| {
                Parts::commit_digests(m, &keys, &payload)
            })?;
            v.push(vector(
                "flipped-payload-byte-resigned",
                "cannot decrypt",
                ALICE_PUB,
                BOB_KEY,
                "byte 40 of payload.bin is flipped and the manifest's sha256 updated and\n\
                 re-signed with alice's key: only the MAC catches it",
                p.join()?,
            ));
        }
        {
            let mut rng = rng_for("flipped-wrapped-key-resigned");
            let mut p = bp.clone();
            p.keys[100] ^= 0x01;
            let (keys, payload) = (p.keys.clone(), p.payload.clone());
            p.edit(&self.alice, &mut rng, |m| {
                Parts::commit_digests(m, &keys, &payload)
            })?;
            v.push(vector(
                "flipped-wrapped-key-resigned",
                "cannot decrypt",
                ALICE_PUB,
                BOB_KEY,
                "byte 100 of bob's OAEP block is flipped, keys.sha256 updated and\n\
                 re-signed with alice's key: RSA-OAEP decryption fails",
                p.join()?,
            ));
        }
        {
            // Swap the two recipients (and their OAEP blocks) and re-sign as alice.
            let mut rng = rng_for("recipients-reordered-resigned");
            let mut p = Parts::split(&two)?;
            let bob_len = self.bob_pub.modulus_len();
            let mut keys = p.keys[bob_len..].to_vec();
            keys.extend_from_slice(&p.keys[..bob_len]);
            p.keys = keys.clone();
            let payload = p.payload.clone();
            p.edit(&self.alice, &mut rng, |m| {
                m.recipients.swap(0, 1);
                Parts::commit_digests(m, &keys, &payload);
            })?;
            v.push(vector(
                "recipients-reordered-resigned",
                "cannot decrypt",
                ALICE_PUB,
                DAVE_KEY,
                "two-recipients.sxf with the recipients (and their OAEP blocks) swapped\n\
                 and re-signed with alice's key: dave's key unwraps, but the MAC\n\
                 header lists the recipients in the new order, so the MAC fails",
                p.join()?,
            ));
        }
        {
            // Flip the last byte of the second-to-last ciphertext block so the last
            // plaintext byte (the padding length) becomes 0, then give it a valid MAC.
            let mut rng = rng_for("bad-padding-resigned");
            let key = self.content_key(&bp)?;
            let mut plain = Vec::new();
            DecryptReader::new(&bp.payload[..], &key).read_to_end(&mut plain)?;
            let pad = (bp.payload.len() - 16 - plain.len()) as u8;
            let mut payload = bp.payload.clone();
            let at = payload.len() - 17;
            payload[at] ^= pad;
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key.expose_for_tests()[32..])?;
            mac.update(&self.mac_header_of(&bp)?);
            mac.update(&payload);
            let tag = hex::encode(mac.finalize().into_bytes());
            let mut p = bp.clone();
            p.edit(&self.alice, &mut rng, |m| {
                Parts::commit_digests(m, &bp.keys, &payload);
                m.payload.mac = tag;
            })?;
            p.payload = payload;
            v.push(vector(
                "bad-padding-resigned",
                "cannot decrypt",
                ALICE_PUB,
                BOB_KEY,
                "the ciphertext is changed so the last plaintext byte is 0 (invalid\n\
                 PKCS#7 padding), with a valid MAC, sha256 updated and re-signed by\n\
                 alice: padding fails, and it is the same error as every other\n\
                 decryption failure",
                p.join()?,
            ));
        }

        // ----- unsupported
        for (name, comment, edit) in [
            (
                "unknown-version",
                "format = \"sxf/2\", re-signed with alice's key",
                (|m: &mut Manifest| m.format = "sxf/2".into()) as fn(&mut Manifest),
            ),
            (
                "unknown-cipher",
                "algorithms.cipher = \"AES-256-GCM\", re-signed with alice's key",
                |m: &mut Manifest| m.algorithms.cipher = "AES-256-GCM".into(),
            ),
            (
                "unknown-signature-algorithm",
                "algorithms.signature = \"RSA-PSS-SHA256-MGF1-SHA256-SALT0\",\n\
                 re-signed with alice's key",
                |m: &mut Manifest| {
                    m.algorithms.signature = "RSA-PSS-SHA256-MGF1-SHA256-SALT0".into()
                },
            ),
        ] {
            let mut p = bp.clone();
            p.edit(&self.alice, &mut rng_for(name), edit)?;
            v.push(vector(
                name,
                "unsupported",
                ALICE_PUB,
                BOB_KEY,
                comment,
                p.join()?,
            ));
        }

        // ----- malformed: the manifest (re-signed, so only the rule fails)
        let bob_fp = self.bob_pub.fingerprint().to_string();
        let bob_fp_upper = format!("sha256:{}", bob_fp["sha256:".len()..].to_uppercase());
        for (name, comment, from, to) in [
            (
                "unknown-manifest-field",
                "an extra top-level field `comment`, re-signed with alice's key",
                "created = ".to_owned(),
                "comment = \"hi\"\ncreated = ".to_owned(),
            ),
            (
                "noncanonical-created",
                "created = \"2026-01-01T00:00:00.000Z\" (fractional seconds),\n\
                 re-signed with alice's key",
                "00:00:00Z".to_owned(),
                "00:00:00.000Z".to_owned(),
            ),
            (
                "uppercase-fingerprint",
                "the recipient fingerprint in uppercase hex, re-signed with alice's key",
                bob_fp,
                bob_fp_upper,
            ),
        ] {
            let text = String::from_utf8(bp.manifest.clone())?;
            assert!(text.contains(&from), "{name}: pattern not found");
            let mut p = bp.clone();
            let edited = text.replacen(&from, &to, 1).into_bytes();
            p.resign(edited, &self.alice, &mut rng_for(name))?;
            v.push(vector(
                name,
                "malformed",
                ALICE_PUB,
                BOB_KEY,
                comment,
                p.join()?,
            ));
        }
        {
            let mut rng = rng_for("payload-trailing-byte");
            let key = self.content_key(&bp)?;
            let mut plain = Vec::new();
            DecryptReader::new(&bp.payload[..], &key).read_to_end(&mut plain)?;
            plain.push(b'!');
            let p = self.reseal_payload(&bp, &plain, &mut rng)?;
            v.push(vector(
                "payload-trailing-byte",
                "malformed",
                ALICE_PUB,
                BOB_KEY,
                "the plaintext has one byte after the last file; encrypted under the\n\
                 archive's own key with a valid MAC and re-signed by alice",
                p.join()?,
            ));
        }

        // ----- malformed: the container
        let ents = entries(&basic);
        let cd_offset = ents[0].central;
        let mut container = |name, comment, archive| {
            v.push(vector(
                name,
                "malformed",
                ALICE_PUB,
                BOB_KEY,
                comment,
                archive,
            ));
        };
        container(
            "trailing-byte",
            "one zero byte after the end-of-central-directory record",
            [&basic[..], b"\0"].concat(),
        );
        {
            let mut a = basic.clone();
            let n = a.len();
            a[n - 2..].copy_from_slice(&7u16.to_le_bytes());
            a.extend_from_slice(b"comment");
            container("archive-comment", "a 7-byte ZIP archive comment", a);
        }
        container(
            "prepended-bytes",
            "8 bytes before the first entry, every offset moved to match\n\
             (a self-consistent ZIP file, as a self-extracting archive would be)",
            insert_bytes(&basic, 0, b"#!/bin/x"),
        );
        container(
            "bytes-between-entries",
            "8 bytes between payload.bin's data and manifest.toml's local header,\n\
             every offset moved to match",
            insert_bytes(&basic, ents[2].local, b"\0\0\0\0\0\0\0\0"),
        );
        container(
            "bytes-before-central-directory",
            "8 bytes between signature.bin's data and the central directory,\n\
             every offset moved to match",
            insert_bytes(&basic, cd_offset, b"\0\0\0\0\0\0\0\0"),
        );
        container(
            "truncated",
            "the first 1000 bytes only",
            basic[..1000].to_vec(),
        );
        container(
            "extra-entry",
            "a fifth entry, extra.txt, after signature.bin",
            zip_of(&[
                ("keys.bin", &bp.keys),
                ("payload.bin", &bp.payload),
                ("manifest.toml", &bp.manifest),
                ("signature.bin", &bp.signature),
                ("extra.txt", b"hi"),
            ])?,
        );
        container(
            "missing-entry",
            "no signature.bin",
            zip_of(&[
                ("keys.bin", &bp.keys),
                ("payload.bin", &bp.payload),
                ("manifest.toml", &bp.manifest),
            ])?,
        );
        container(
            "entries-out-of-order",
            "payload.bin before keys.bin",
            zip_of(&[
                ("payload.bin", &bp.payload),
                ("keys.bin", &bp.keys),
                ("manifest.toml", &bp.manifest),
                ("signature.bin", &bp.signature),
            ])?,
        );
        {
            // manifest.toml and signature.bin have names of the same length.
            let mut a = basic.clone();
            for at in [ents[2].local + 30, ents[2].central + 46] {
                a[at..at + 13].copy_from_slice(b"signature.bin");
            }
            container(
                "duplicate-entry",
                "manifest.toml renamed to signature.bin in both its headers",
                a,
            );
        }
        {
            let mut a = basic.clone();
            for at in [ents[2].local + 8, ents[2].central + 10] {
                a[at..at + 2].copy_from_slice(&8u16.to_le_bytes());
            }
            container(
                "compressed-entry",
                "manifest.toml's compression method is 8 (deflate) in both headers",
                a,
            );
        }
        {
            let mut a = basic.clone();
            for at in [ents[0].local + 6, ents[0].central + 8] {
                a[at] |= 0x01;
            }
            container(
                "zip-encrypted-entry",
                "keys.bin has the ZIP encryption flag (bit 0) set in both headers",
                a,
            );
        }
        {
            let mut a = basic.clone();
            let at = ents[1].local + 30 + "payload.bi".len();
            a[at] = b'm';
            container(
                "headers-disagree",
                "payload.bin's local header names it payload.bim",
                a,
            );
        }

        // ----- ASCII armor: basic.sxf as text, as email can deliver it
        let armored = {
            let mut w = sxf::armor::ArmorWriter::new(Vec::new())?;
            w.write_all(&basic)?;
            String::from_utf8(w.finish()?)?
        };
        let lines: Vec<&str> = armored.lines().collect();
        let (begin, data, end) = (lines[0], &lines[1..lines.len() - 1], lines[lines.len() - 1]);
        let join = |ls: &[&str]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
        let with_data = |d: &[&str]| {
            let mut all = vec![begin];
            all.extend_from_slice(d);
            all.push(end);
            join(&all)
        };
        for (name, comment, text) in [
            (
                "armor-basic",
                "basic.sxf armored as sxf seal --armor writes it",
                armored.clone(),
            ),
            (
                "armor-crlf",
                "armor-basic with CRLF line endings",
                armored.replace('\n', "\r\n"),
            ),
            (
                "armor-whitespace",
                "armor-basic with blank lines (some holding spaces, tabs or a CR) before and after the block,\nspaces and tabs before and after every line, CRLF on every other line, and a last line\nholding only a tab, with no line ending",
                format!(
                    "\n  \r\n\t\n{}\n \t \n\t",
                    lines
                        .iter()
                        .enumerate()
                        .map(|(i, l)| if i % 2 == 0 {
                            format!("  {l}\t\r")
                        } else {
                            format!("\t{l} ")
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            ),
        ] {
            v.push(Vector {
                outputs: Some(expected_outputs()),
                ..vector(
                    name,
                    "success",
                    ALICE_PUB,
                    BOB_KEY,
                    comment,
                    text.into_bytes(),
                )
            });
        }
        let last = data[data.len() - 1];
        assert!(
            last.ends_with('=') && !last.ends_with("=="),
            "basic.sxf's length is 2 mod 3"
        );
        let bad_bits = {
            // The character before '=' carries 2 unused bits; set one.
            let c = last.as_bytes()[last.len() - 2];
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let i = alphabet.iter().position(|&a| a == c).unwrap();
            assert_eq!(i & 3, 0, "canonical");
            let mut l = last.as_bytes().to_vec();
            let n = l.len();
            l[n - 2] = alphabet[i | 1];
            String::from_utf8(l)?
        };
        let mut d_bits = data.to_vec();
        *d_bits.last_mut().unwrap() = &bad_bits;
        let short_first = [&data[0][..60], &data[0][60..]];
        let mut d_short = vec![short_first[0], short_first[1]];
        d_short.extend_from_slice(&data[1..]);
        let long_first = format!("{}{}", data[0], &data[1][..4]);
        let second_rest = &data[1][4..];
        let mut d_long = vec![long_first.as_str(), second_rest];
        d_long.extend_from_slice(&data[2..]);
        let spaced = format!("{} {}", &data[0][..32], &data[0][32..]);
        let mut d_space = vec![spaced.as_str()];
        d_space.extend_from_slice(&data[1..]);
        let mut d_blank = vec![data[0], ""];
        d_blank.extend_from_slice(&data[1..]);
        let k = data
            .iter()
            .position(|l| l.contains(['+', '/']))
            .expect("a data line with + or /");
        let urlsafe = data[k].replace('+', "-").replace('/', "_");
        let mut d_url = data.to_vec();
        d_url[k] = &urlsafe;
        let unpadded = last.trim_end_matches('=');
        let mut d_unpadded = data.to_vec();
        *d_unpadded.last_mut().unwrap() = unpadded;
        for (name, comment, text) in [
            (
                "armor-missing-end",
                "armor-basic without its -----END SXF ARCHIVE----- line",
                join(&lines[..lines.len() - 1]),
            ),
            (
                "armor-junk-after-end",
                "armor-basic followed by a line of text after the END line",
                format!("{armored}-- \nsent from my phone\n"),
            ),
            (
                "armor-other-label",
                "armor-basic labelled -----BEGIN/END PGP MESSAGE-----",
                armored.replace("SXF ARCHIVE", "PGP MESSAGE"),
            ),
            (
                "armor-noncanonical-padding-bits",
                "armor-basic with an unused bit of the last character before = set (decodes to the same bytes by a lax decoder)",
                with_data(&d_bits),
            ),
            (
                "armor-short-line",
                "armor-basic with its first data line split into 60 and 4 characters",
                with_data(&d_short),
            ),
            (
                "armor-long-line",
                "armor-basic with 4 characters moved from the second data line to the first (68 characters)",
                with_data(&d_long),
            ),
            (
                "armor-space-inside-line",
                "armor-basic with a space in the middle of the first data line",
                with_data(&d_space),
            ),
            (
                "armor-blank-line-inside",
                "armor-basic with a blank line between two data lines",
                with_data(&d_blank),
            ),
            (
                "armor-urlsafe-alphabet",
                "armor-basic with one data line in the URL-safe alphabet (- and _ for + and /)",
                with_data(&d_url),
            ),
            (
                "armor-missing-padding",
                "armor-basic with the = padding removed from the last data line",
                with_data(&d_unpadded),
            ),
            (
                "armor-byte-order-mark",
                "armor-basic preceded by a UTF-8 byte order mark",
                format!("\u{feff}{armored}"),
            ),
        ] {
            v.push(vector(
                name,
                "malformed",
                ALICE_PUB,
                BOB_KEY,
                comment,
                text.into_bytes(),
            ));
        }
        Ok(v)
    }
}
