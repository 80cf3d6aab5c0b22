//! RSA key files: reading, generating, writing and fingerprinting.
//!
//! sxf reads the PEM files that openssl writes without conversion (PKCS#8, plain or
//! passphrase-encrypted, PKCS#1 private keys, SPKI and PKCS#1 public keys) and writes
//! keys that `openssl pkey` reads. Every key is checked on the way in: at least
//! 2048 bits and a public exponent of 65537, so no weak key ever reaches the crypto.
//! A key's identity everywhere in sxf is its fingerprint, the SHA-256 of its
//! SubjectPublicKeyInfo DER, written `sha256:<64 lowercase hex digits>`.

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use pkcs8::der::pem;
use pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{BoxedUint, PrivateKey, PublicKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Smallest modulus sxf accepts, in bits.
pub const MIN_BITS: usize = 2048;
/// Largest modulus sxf accepts, in bits.
pub const MAX_BITS: usize = 4096;
/// The only public exponent sxf accepts.
pub const PUBLIC_EXPONENT: u64 = 65537;
/// Key files larger than this are refused before parsing.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Errors about key files. Each message names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("could not read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a key file sxf can read: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{path} holds a {found}, but a {wanted} is needed here")]
    WrongKind {
        path: PathBuf,
        found: &'static str,
        wanted: &'static str,
    },
    #[error("{path} is passphrase-protected and no passphrase was given")]
    NeedPassphrase { path: PathBuf },
    #[error("wrong passphrase for {path} (or the encrypted key is damaged)")]
    WrongPassphrase { path: PathBuf },
    #[error("{path} is a {bits}-bit RSA key; sxf accepts {MIN_BITS} to {MAX_BITS} bits")]
    BadSize { path: PathBuf, bits: usize },
    #[error("{path} has public exponent {exponent}; sxf accepts only 65537")]
    BadExponent { path: PathBuf, exponent: String },
    #[error("{path} already exists; sxf never overwrites a key")]
    Exists { path: PathBuf },
    #[error("could not write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("not an acceptable RSA public key: {0}")]
    InvalidPublicKey(String),
}

/// `sha256:<hex>` of a public key's SubjectPublicKeyInfo DER.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub const PREFIX: &'static str = "sha256:";

    /// Fingerprint of SubjectPublicKeyInfo DER bytes.
    pub fn of_spki_der(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses the canonical text form: `sha256:` and exactly 64 lowercase hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        crate::parse_lower_hex(text.strip_prefix(Self::PREFIX)?).map(Fingerprint)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A checked RSA public key with its SPKI DER encoding and fingerprint.
#[derive(Clone)]
pub struct PublicKeyInfo {
    key: PublicKey,
    spki_der: Vec<u8>,
    fingerprint: Fingerprint,
}

impl fmt::Debug for PublicKeyInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKeyInfo")
            .field("bits", &self.bits())
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl PublicKeyInfo {
    /// Checks size and exponent, and computes the canonical SPKI DER and fingerprint.
    pub fn new(key: PublicKey) -> Result<Self, KeyError> {
        check_strength(&key).map_err(|e| KeyError::InvalidPublicKey(e.to_string()))?;
        let spki_der = key
            .to_public_key_der()
            .map_err(|e| KeyError::InvalidPublicKey(e.to_string()))?
            .into_vec();
        let fingerprint = Fingerprint::of_spki_der(&spki_der);
        Ok(PublicKeyInfo {
            key,
            spki_der,
            fingerprint,
        })
    }

    /// Parses SubjectPublicKeyInfo DER (as embedded in a manifest). The DER must be
    /// canonical: re-encoding the key must give the same bytes.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = PublicKey::from_public_key_der(der)
            .map_err(|e| KeyError::InvalidPublicKey(e.to_string()))?;
        let info = Self::new(key)?;
        if info.spki_der != der {
            return Err(KeyError::InvalidPublicKey(
                "the public key is not in canonical DER form".into(),
            ));
        }
        Ok(info)
    }

    pub fn key(&self) -> &PublicKey {
        &self.key
    }
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }
    pub fn bits(&self) -> usize {
        self.key.n().bit_width() as usize
    }
    /// Length in bytes of this key's OAEP ciphertexts and PSS signatures.
    pub fn modulus_len(&self) -> usize {
        self.key.size()
    }
    /// SPKI PEM, as `openssl pkey -pubout` writes it.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .expect("encoding a checked public key cannot fail")
    }
}

/// A checked RSA private key. Its secret parts are zeroized on drop by `rsa`,
/// and `Debug` shows only the public fingerprint.
pub struct PrivateKeyInfo {
    key: PrivateKey,
    public: PublicKeyInfo,
}

impl fmt::Debug for PrivateKeyInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKeyInfo")
            .field("fingerprint", &self.public.fingerprint)
            .finish_non_exhaustive()
    }
}

impl PrivateKeyInfo {
    pub fn new(key: PrivateKey) -> Result<Self, KeyError> {
        let public = PublicKeyInfo::new(key.to_public_key())?;
        Ok(PrivateKeyInfo { key, public })
    }
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }
    pub fn public(&self) -> &PublicKeyInfo {
        &self.public
    }
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.public.fingerprint
    }
    /// Unencrypted PKCS#8 PEM.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Generate(e.to_string()))
    }
    /// Passphrase-encrypted PKCS#8 PEM (PBES2: scrypt and AES-256-CBC), which
    /// `openssl pkey` reads.
    pub fn to_encrypted_pkcs8_pem(&self, passphrase: &[u8]) -> Result<Zeroizing<String>, KeyError> {
        self.key
            .to_pkcs8_encrypted_pem(passphrase, LineEnding::LF)
            .map_err(|e| KeyError::Generate(e.to_string()))
    }
}

fn check_strength(key: &PublicKey) -> Result<(), String> {
    let bits = key.n().bit_width() as usize;
    if !(MIN_BITS..=MAX_BITS).contains(&bits) {
        return Err(format!(
            "{bits}-bit modulus; sxf accepts {MIN_BITS} to {MAX_BITS} bits"
        ));
    }
    if key.e() != &BoxedUint::from(PUBLIC_EXPONENT) {
        return Err("public exponent is not 65537".into());
    }
    Ok(())
}

fn checked_public(path: &Path, key: PublicKey) -> Result<PublicKeyInfo, KeyError> {
    let bits = key.n().bit_width() as usize;
    if !(MIN_BITS..=MAX_BITS).contains(&bits) {
        return Err(KeyError::BadSize {
            path: path.to_owned(),
            bits,
        });
    }
    if key.e() != &BoxedUint::from(PUBLIC_EXPONENT) {
        return Err(KeyError::BadExponent {
            path: path.to_owned(),
            exponent: key.e().to_string_radix_vartime(10),
        });
    }
    PublicKeyInfo::new(key)
}

/// What a PEM file holds, judged by its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PemKind {
    Pkcs8Private,
    Pkcs8EncryptedPrivate,
    Pkcs1Private,
    SpkiPublic,
    Pkcs1Public,
}

/// Reads a key file: at most [`MAX_KEY_FILE_BYTES`], into a buffer that is
/// zeroized on drop.
fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let read_err = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = fs::metadata(path).map_err(read_err)?;
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(too_large(path));
    }
    // Read at most one byte past the cap, so a FIFO cannot feed more.
    // Allocated once at full size, so no reallocation leaves a copy behind.
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_BYTES as usize + 1));
    fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(too_large(path));
    }
    Ok(bytes)
}

fn too_large(path: &Path) -> KeyError {
    KeyError::Parse {
        path: path.to_owned(),
        reason: "file is too large to be a key".into(),
    }
}

fn read_pem(path: &Path) -> Result<(Zeroizing<String>, PemKind), KeyError> {
    let bytes = read_key_file(path)?;
    parse_pem(&bytes, path)
}

/// Classifies key text by its PEM label. `origin` names the source in errors.
fn parse_pem(bytes: &[u8], origin: &Path) -> Result<(Zeroizing<String>, PemKind), KeyError> {
    let path = origin;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(too_large(path));
    }
    let text = Zeroizing::new(
        std::str::from_utf8(bytes)
            .map_err(|_| KeyError::Parse {
                path: path.to_owned(),
                reason: "not a PEM text file".into(),
            })?
            .to_owned(),
    );
    let label = pem::decode_label(text.as_bytes()).map_err(|_| KeyError::Parse {
        path: path.to_owned(),
        reason: "no PEM block found (expected -----BEGIN ... KEY-----)".into(),
    })?;
    let kind = match label {
        "PRIVATE KEY" => PemKind::Pkcs8Private,
        "ENCRYPTED PRIVATE KEY" => PemKind::Pkcs8EncryptedPrivate,
        "RSA PRIVATE KEY" => PemKind::Pkcs1Private,
        "PUBLIC KEY" => PemKind::SpkiPublic,
        "RSA PUBLIC KEY" => PemKind::Pkcs1Public,
        other => {
            return Err(KeyError::Parse {
                path: path.to_owned(),
                reason: format!("unsupported PEM block \"{other}\""),
            });
        }
    };
    if kind == PemKind::Pkcs1Private && text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(KeyError::Parse {
            path: path.to_owned(),
            reason: "legacy OpenSSL-encrypted PKCS#1 keys are not supported; convert it with \
                     `openssl pkcs8 -topk8 -v2 aes-256-cbc -in OLD -out NEW`"
                .into(),
        });
    }
    Ok((text, kind))
}

fn parse_err(path: &Path, e: impl fmt::Display) -> KeyError {
    KeyError::Parse {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Reads a public key file (SPKI or PKCS#1 PEM).
pub fn load_public_key(path: &Path) -> Result<PublicKeyInfo, KeyError> {
    let bytes = read_key_file(path)?;
    parse_public_key(&bytes, path)
}

/// Parses public key text that did not come from a file of its own (standard
/// input, a contacts entry). `origin` names the source in errors.
pub fn parse_public_key(bytes: &[u8], origin: &Path) -> Result<PublicKeyInfo, KeyError> {
    let path = origin;
    let (text, kind) = parse_pem(bytes, path)?;
    let key = match kind {
        PemKind::SpkiPublic => {
            PublicKey::from_public_key_pem(&text).map_err(|e| parse_err(path, e))?
        }
        PemKind::Pkcs1Public => PublicKey::from_pkcs1_pem(&text).map_err(|e| parse_err(path, e))?,
        _ => {
            return Err(KeyError::WrongKind {
                path: path.to_owned(),
                found: "private key",
                wanted: "public key (.pub)",
            });
        }
    };
    checked_public(path, key)
}

/// Does this private key file need a passphrase?
pub fn private_key_is_encrypted(path: &Path) -> Result<bool, KeyError> {
    Ok(read_pem(path)?.1 == PemKind::Pkcs8EncryptedPrivate)
}

/// Reads a private key file (PKCS#8, encrypted PKCS#8 or PKCS#1 PEM). The passphrase
/// callback is called only for an encrypted key.
pub fn load_private_key(
    path: &Path,
    passphrase: impl FnOnce() -> Result<Option<Zeroizing<String>>, KeyError>,
) -> Result<PrivateKeyInfo, KeyError> {
    let (text, kind) = read_pem(path)?;
    let key = match kind {
        PemKind::Pkcs8Private => {
            PrivateKey::from_pkcs8_pem(&text).map_err(|e| parse_err(path, e))?
        }
        PemKind::Pkcs1Private => {
            PrivateKey::from_pkcs1_pem(&text).map_err(|e| parse_err(path, e))?
        }
        PemKind::Pkcs8EncryptedPrivate => {
            let pass = passphrase()?.ok_or_else(|| KeyError::NeedPassphrase {
                path: path.to_owned(),
            })?;
            PrivateKey::from_pkcs8_encrypted_pem(&text, pass.as_bytes()).map_err(|_| {
                KeyError::WrongPassphrase {
                    path: path.to_owned(),
                }
            })?
        }
        PemKind::SpkiPublic | PemKind::Pkcs1Public => {
            return Err(KeyError::WrongKind {
                path: path.to_owned(),
                found: "public key",
                wanted: "private key (.key)",
            });
        }
    };
    checked_public(path, key.to_public_key())?;
    PrivateKeyInfo::new(key)
}

/// Fingerprint of a key file, public or private. A passphrase is asked for only
/// when the file is an encrypted private key.
pub fn fingerprint_file(
    path: &Path,
    passphrase: impl FnOnce() -> Result<Option<Zeroizing<String>>, KeyError>,
) -> Result<Fingerprint, KeyError> {
    let (_, kind) = read_pem(path)?;
    match kind {
        PemKind::SpkiPublic | PemKind::Pkcs1Public => {
            Ok(load_public_key(path)?.fingerprint().clone())
        }
        _ => Ok(load_private_key(path, passphrase)?.fingerprint().clone()),
    }
}

/// Generates a new RSA key of `bits` bits with e = 65537.
pub fn generate(bits: usize) -> Result<PrivateKeyInfo, KeyError> {
    if ![2048, 3072, 4096].contains(&bits) {
        return Err(KeyError::Generate(format!(
            "{bits} bits is not offered; choose 2048, 3072 or 4096"
        )));
    }
    let key = PrivateKey::new(&mut rand::rngs::SysRng, bits)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    PrivateKeyInfo::new(key)
}

/// The two paths `keygen` writes.
#[derive(Debug, Clone)]
pub struct KeyPairPaths {
    pub private: PathBuf,
    pub public: PathBuf,
}

impl KeyPairPaths {
    pub fn new(dir: &Path, name: &str) -> Self {
        KeyPairPaths {
            private: dir.join(format!("{name}.key")),
            public: dir.join(format!("{name}.pub")),
        }
    }
}

/// Writes `NAME.key` (mode 0600) and `NAME.pub`, each atomically and never over an
/// existing file. With `passphrase`, the private key is encrypted PKCS#8.
pub fn write_key_pair(
    key: &PrivateKeyInfo,
    paths: &KeyPairPaths,
    passphrase: Option<&[u8]>,
) -> Result<(), KeyError> {
    for p in [&paths.private, &paths.public] {
        if p.exists() {
            return Err(KeyError::Exists { path: p.clone() });
        }
    }
    let private_pem = match passphrase {
        Some(pass) => key.to_encrypted_pkcs8_pem(pass)?,
        None => key.to_pkcs8_pem()?,
    };
    write_new_file(&paths.private, private_pem.as_bytes(), 0o600)?;
    if let Err(e) = write_new_file(&paths.public, key.public().to_pem().as_bytes(), 0o644) {
        let _ = fs::remove_file(&paths.private);
        return Err(e);
    }
    Ok(())
}

/// Writes a new file atomically: temp file in the same directory with `mode`,
/// fsync, then a rename that refuses to replace an existing file.
fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let write_err = |source| KeyError::Write {
        path: path.to_owned(),
        source: crate::fsutil::without_temp_path(source),
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".sxf-key-")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(write_err)?;
    tmp.write_all(contents).map_err(write_err)?;
    tmp.as_file().sync_all().map_err(write_err)?;
    tmp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists {
                path: path.to_owned(),
            }
        } else {
            write_err(e.error)
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_text_form_is_canonical() {
        let fp = Fingerprint::of_spki_der(b"x");
        let text = fp.to_string();
        assert!(text.starts_with("sha256:") && text.len() == 7 + 64);
        assert_eq!(Fingerprint::parse(&text), Some(fp));
        assert_eq!(Fingerprint::parse(&text.to_uppercase()), None);
        assert_eq!(Fingerprint::parse(&text.replace("sha256:", "sha1:")), None);
        assert_eq!(Fingerprint::parse(&text[..text.len() - 1]), None);
    }
}
