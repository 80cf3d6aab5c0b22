//! RSA key files: reading, generating, writing and fingerprinting.
//!
//! sxf reads the PEM files that openssl writes without conversion (PKCS#8, plain or
//! passphrase-encrypted, PKCS#1 private keys, SPKI and PKCS#1 public keys) and writes
//! keys that `openssl pkey` reads. It also reads the RSA keys people already have for
//! SSH: `ssh-rsa` public key lines (an `id_rsa.pub` or `authorized_keys` file) and
//! `OPENSSH PRIVATE KEY` files, passphrase-protected ones included (bcrypt-pbkdf).
//! Ed25519, ECDSA and other non-RSA keys are refused with a sentence that names
//! their kind. Every key is checked on the way in: at least
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
/// Most bcrypt-pbkdf rounds sxf runs for a passphrase-protected OpenSSH private
/// key. The file chooses the count and every round costs the same, so without a
/// cap a crafted file (rounds = 2^32 - 1) would keep sxf busy for about a year.
/// ssh-keygen uses 16 unless told otherwise with `-a`, and guides suggest 64 to
/// a few hundred; 1000 rounds already take ssh-keygen itself about 8 s of CPU.
/// The cap admits every key made in practice and bounds the worst case at about
/// half a minute. A key over it can be re-encrypted with `ssh-keygen -p -a 100`.
pub const MAX_BCRYPT_ROUNDS: u32 = 4096;

/// scrypt cost, as log2 N, of the keys `sxf keygen` protects with a
/// passphrase (r = 8): the largest that `openssl pkey` still reads under its
/// default 32 MiB scrypt memory limit. N = 2^15 needs 128 * r * (N + 2) bytes,
/// just over 32 MiB, and openssl refuses it. (age uses 2^18.)
pub const KEYGEN_SCRYPT_LOG_N: u8 = 14;
/// scrypt parallelism of keygen's keys: eight passes over the same 16 MiB,
/// eight times the work of openssl's own `-scrypt` default (p = 1) with no more
/// memory, about 0.26 s to derive here (0.35 s for `openssl pkey`).
pub const KEYGEN_SCRYPT_P: u32 = 8;

/// Most PBKDF2 iterations sxf runs for a passphrase-encrypted PKCS#8 key. As
/// with bcrypt rounds, the file chooses: 2^32 - 1 iterations would cost about
/// 12 minutes of CPU. openssl makes 2048 by default, and the strongest
/// settings in use (600,000 for PBKDF2-SHA256) are far below this cap, which
/// bounds the worst case at a few seconds.
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// Largest scrypt cost N, as log2 N, for an encrypted PKCS#8 key (openssl
/// and sxf keygen use 2^14; age uses 2^18).
pub const MAX_SCRYPT_LOG_N: u32 = 20;
/// Largest scrypt block size r (8 everywhere in practice).
pub const MAX_SCRYPT_R: u16 = 32;
/// Largest scrypt parallelism p (1 everywhere in practice).
pub const MAX_SCRYPT_P: u16 = 16;
/// Most memory scrypt may take, 128 * r * N bytes. Without a cap, a crafted
/// file with N = 2^40 made the allocation abort the process.
pub const MAX_SCRYPT_MEMORY: u64 = 1 << 30;

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
    #[error(
        "{path} is {what}, and sxf uses RSA keys: make one with `sxf keygen NAME` \
         (or `ssh-keygen -t rsa -b 3072`)"
    )]
    NotRsa { path: PathBuf, what: &'static str },
    #[error(
        "{path} holds {count} RSA public keys; sxf needs exactly one: \
         put the line you mean in a file of its own"
    )]
    SeveralKeys { path: PathBuf, count: usize },
    #[error(
        "{path} asks for {rounds} bcrypt rounds to turn its passphrase into a key; \
         sxf accepts 1 to {MAX_BCRYPT_ROUNDS} (lower them with `ssh-keygen -p -a 100 -f KEY`)"
    )]
    BadKdfRounds { path: PathBuf, rounds: u32 },
    #[error(
        "{path} asks for {asked} to turn its passphrase into a key; sxf accepts {accepted} \
         (re-encrypt it with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in KEY -out NEW`)"
    )]
    KdfTooCostly {
        path: PathBuf,
        asked: String,
        accepted: String,
    },
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

    /// The hex digits in groups of four, for reading aloud or comparing by eye:
    /// `3441 9608 9488 …` (16 groups). The `sha256:` form stays the machine form.
    pub fn grouped(&self) -> String {
        let hex = hex::encode(self.0);
        let groups: Vec<&str> = hex
            .as_bytes()
            .chunks(4)
            .map(|g| std::str::from_utf8(g).expect("hex digits are ASCII"))
            .collect();
        groups.join(" ")
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

    fn to_ssh(&self) -> ssh_key::PublicKey {
        let rsa = ssh_key::public::RsaPublicKey::try_from(&self.key)
            .expect("a checked RSA public key has an SSH encoding");
        ssh_key::PublicKey::new(ssh_key::public::KeyData::Rsa(rsa), "")
    }

    /// The key as an OpenSSH public key line, `ssh-rsa AAAA…` (no comment).
    pub fn to_openssh(&self) -> String {
        self.to_ssh()
            .to_openssh()
            .expect("encoding a checked public key cannot fail")
    }

    /// OpenSSH's own fingerprint of this key, `SHA256:<base64>`, as
    /// `ssh-keygen -lf` shows it. For humans matching ssh tools only: sxf's
    /// identity of a key is [`Fingerprint`].
    pub fn openssh_fingerprint(&self) -> String {
        self.to_ssh()
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string()
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
    /// Passphrase-encrypted PKCS#8 PEM (PBES2: scrypt with
    /// [`KEYGEN_SCRYPT_LOG_N`], r = 8, [`KEYGEN_SCRYPT_P`], and AES-256-CBC), which
    /// `openssl pkey` reads with its default limits.
    pub fn to_encrypted_pkcs8_pem(&self, passphrase: &[u8]) -> Result<Zeroizing<String>, KeyError> {
        use pkcs8::der::pem::PemLabel;
        use pkcs8::pkcs5::{pbes2, scrypt};
        use rand::TryRng;
        let err = |e: &dyn fmt::Display| KeyError::Generate(e.to_string());
        let (mut salt, mut iv) = ([0u8; 16], [0u8; 16]);
        rand::rngs::SysRng
            .try_fill_bytes(&mut salt)
            .and_then(|()| rand::rngs::SysRng.try_fill_bytes(&mut iv))
            .map_err(|e| err(&e))?;
        let cost =
            scrypt::Params::new(KEYGEN_SCRYPT_LOG_N, 8, KEYGEN_SCRYPT_P).map_err(|e| err(&e))?;
        let params =
            pbes2::Parameters::generate_scrypt_aes256cbc(cost, &salt, iv).map_err(|e| err(&e))?;
        let der = self.key.to_pkcs8_der().map_err(|e| err(&e))?;
        let encrypted = pkcs8::PrivateKeyInfoRef::try_from(der.as_bytes())
            .and_then(|info| info.encrypt_with_params(params, passphrase))
            .map_err(|e| err(&e))?;
        encrypted
            .to_pem(pkcs8::EncryptedPrivateKeyInfoRef::PEM_LABEL, LineEnding::LF)
            .map_err(|e| err(&e))
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

/// What a key file holds, judged by its PEM label or, for OpenSSH public keys,
/// by its first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Pkcs8Private,
    Pkcs8EncryptedPrivate,
    Pkcs1Private,
    OpenSshPrivate,
    SpkiPublic,
    Pkcs1Public,
    /// `ssh-rsa AAAA… comment` lines, as in `id_rsa.pub` or `authorized_keys`.
    SshPublic,
}

impl KeyKind {
    fn is_public(self) -> bool {
        matches!(
            self,
            KeyKind::SpkiPublic | KeyKind::Pkcs1Public | KeyKind::SshPublic
        )
    }

    fn format(self) -> KeyFormat {
        match self {
            KeyKind::OpenSshPrivate | KeyKind::SshPublic => KeyFormat::OpenSsh,
            _ => KeyFormat::Pem,
        }
    }
}

/// The two families of key file sxf reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// PEM as openssl and sxf write it: PKCS#8, PKCS#1, SubjectPublicKeyInfo.
    Pem,
    /// OpenSSH: `ssh-rsa` public key lines and `OPENSSH PRIVATE KEY` files.
    OpenSsh,
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

fn read_key_text(path: &Path) -> Result<(Zeroizing<String>, KeyKind), KeyError> {
    let bytes = read_key_file(path)?;
    parse_key_text(&bytes, path)
}

/// Does this line look like an OpenSSH public key, perhaps after
/// `authorized_keys` options? A key type (`ssh-rsa`, `ssh-ed25519`,
/// `ecdsa-sha2-nistp256`, `sk-…`) must appear as one of its words.
fn looks_like_ssh_public(line: &str) -> bool {
    line.split_whitespace().any(|word| {
        ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"]
            .iter()
            .any(|prefix| word.starts_with(prefix))
    })
}

/// Classifies key text: a PEM block by its label, otherwise OpenSSH public key
/// lines. `origin` names the source in errors.
fn parse_key_text(bytes: &[u8], origin: &Path) -> Result<(Zeroizing<String>, KeyKind), KeyError> {
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
    // The first line that says something: authorized_keys files may open with
    // blank lines and `#` comments.
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    if let Some(line) = first
        && !line.starts_with("-----")
        && looks_like_ssh_public(line)
    {
        return Ok((text, KeyKind::SshPublic));
    }
    let label = pem::decode_label(text.as_bytes()).map_err(|_| KeyError::Parse {
        path: path.to_owned(),
        reason: "no PEM block found (expected -----BEGIN ... KEY----- or an ssh-rsa line)".into(),
    })?;
    let kind = match label {
        "PRIVATE KEY" => KeyKind::Pkcs8Private,
        "ENCRYPTED PRIVATE KEY" => KeyKind::Pkcs8EncryptedPrivate,
        "RSA PRIVATE KEY" => KeyKind::Pkcs1Private,
        "OPENSSH PRIVATE KEY" => KeyKind::OpenSshPrivate,
        "PUBLIC KEY" => KeyKind::SpkiPublic,
        "RSA PUBLIC KEY" => KeyKind::Pkcs1Public,
        "EC PRIVATE KEY" | "EC PARAMETERS" => return Err(not_rsa(path, ECDSA)),
        "DSA PRIVATE KEY" => return Err(not_rsa(path, DSA)),
        other => {
            return Err(KeyError::Parse {
                path: path.to_owned(),
                reason: format!("unsupported PEM block \"{other}\""),
            });
        }
    };
    if kind == KeyKind::Pkcs1Private && text.contains("Proc-Type: 4,ENCRYPTED") {
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

// The kinds of key sxf names when it refuses one. Never an OID: people know
// their keys as "Ed25519" or "ECDSA", not as 1.3.101.112.
const ED25519: &str = "an Ed25519 key";
const ED448: &str = "an Ed448 key";
const X25519: &str = "an X25519 key";
const X448: &str = "an X448 key";
const ECDSA: &str = "an ECDSA (elliptic-curve) key";
const DSA: &str = "a DSA key";
const RSA_PSS: &str = "an RSA-PSS key (openssl's `-algorithm RSA-PSS`, restricted to signing)";
const DIFFIE_HELLMAN: &str = "a Diffie-Hellman key";
const SECURITY_KEY_ED25519: &str = "an Ed25519 security-key (FIDO) key";
const SECURITY_KEY_ECDSA: &str = "an ECDSA security-key (FIDO) key";
const OTHER_KIND: &str = "a key of a kind other than RSA";

fn not_rsa(path: &Path, what: &'static str) -> KeyError {
    KeyError::NotRsa {
        path: path.to_owned(),
        what,
    }
}

/// The rsaEncryption algorithm of PKCS#1, the only one sxf uses.
const RSA_ENCRYPTION: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Refuses a PKCS#8 or SPKI algorithm other than rsaEncryption, naming its kind.
fn check_rsa_oid(path: &Path, oid: pkcs8::ObjectIdentifier) -> Result<(), KeyError> {
    if oid == RSA_ENCRYPTION {
        return Ok(());
    }
    let what = match oid.to_string().as_str() {
        "1.3.101.112" => ED25519,
        "1.3.101.113" => ED448,
        "1.3.101.110" => X25519,
        "1.3.101.111" => X448,
        "1.2.840.10045.2.1" => ECDSA,
        "1.2.840.10040.4.1" => DSA,
        "1.2.840.113549.1.1.10" => RSA_PSS,
        "1.2.840.10046.2.1" | "1.2.840.113549.1.3.1" => DIFFIE_HELLMAN,
        _ => OTHER_KIND,
    };
    Err(not_rsa(path, what))
}

/// The kind of a non-RSA OpenSSH key, for the refusal.
fn ssh_kind(path: &Path, key: &ssh_key::public::KeyData) -> Result<&'static str, KeyError> {
    use ssh_key::Algorithm;
    if key.is_certificate() {
        return Err(parse_err(
            path,
            "it is an OpenSSH certificate; give the plain ssh-rsa public key instead",
        ));
    }
    Ok(match key.algorithm() {
        Algorithm::Ed25519 => ED25519,
        Algorithm::Ecdsa { .. } => ECDSA,
        Algorithm::Dsa => DSA,
        Algorithm::SkEd25519 => SECURITY_KEY_ED25519,
        Algorithm::SkEcdsaSha2NistP256 => SECURITY_KEY_ECDSA,
        _ => OTHER_KIND,
    })
}

/// The bit length of a positive SSH mpint (the encoding's own length counts
/// whole bytes, and a leading zero byte).
fn mpint_bits(m: &ssh_key::Mpint) -> usize {
    match m.as_positive_bytes().map(|b| {
        let skip = b.iter().take_while(|&&x| x == 0).count();
        &b[skip..]
    }) {
        Some([first, rest @ ..]) => rest.len() * 8 + (8 - first.leading_zeros() as usize),
        _ => 0,
    }
}

/// Checks an OpenSSH RSA public key's size and exponent before any big-number
/// work, so an oversized modulus is refused with the usual sentence.
fn check_ssh_rsa(path: &Path, key: &ssh_key::public::RsaPublicKey) -> Result<(), KeyError> {
    let bits = mpint_bits(key.n());
    if !(MIN_BITS..=MAX_BITS).contains(&bits) {
        return Err(KeyError::BadSize {
            path: path.to_owned(),
            bits,
        });
    }
    if key.e().as_positive_bytes() != Some(&[0x01, 0x00, 0x01][..]) {
        let e = key.e().as_positive_bytes().unwrap_or(&[]);
        let exponent = if e.len() <= 8 {
            e.iter()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
                .to_string()
        } else {
            format!("0x{}", hex::encode(e))
        };
        return Err(KeyError::BadExponent {
            path: path.to_owned(),
            exponent,
        });
    }
    Ok(())
}

/// Reads `ssh-rsa` lines: one key, or an `authorized_keys` file (options before
/// the key type are allowed). Exactly one RSA key must be there; other kinds of
/// key beside it are passed over, and a file with no RSA key is refused naming
/// the kind of its first key.
fn parse_ssh_public(text: &str, path: &Path) -> Result<PublicKey, KeyError> {
    let mut rsa = Vec::new();
    let mut first_other = None;
    for entry in ssh_key::AuthorizedKeys::new(text) {
        let entry = entry.map_err(|e| {
            parse_err(
                path,
                format!("a line is not an OpenSSH public key ({e}); expected ssh-rsa AAAA…"),
            )
        })?;
        let data = entry.public_key().key_data();
        match data.rsa() {
            Some(key) => rsa.push(key.clone()),
            None if first_other.is_none() => first_other = Some(ssh_kind(path, data)?),
            None => {}
        }
    }
    match (rsa.as_slice(), first_other) {
        ([key], _) => {
            check_ssh_rsa(path, key)?;
            PublicKey::try_from(key).map_err(|e| parse_err(path, e))
        }
        ([], Some(what)) => Err(not_rsa(path, what)),
        ([], None) => Err(parse_err(path, "no public key found")),
        (keys, _) => Err(KeyError::SeveralKeys {
            path: path.to_owned(),
            count: keys.len(),
        }),
    }
}

/// Reads a PEM public key (SPKI or PKCS#1).
fn parse_pem_public(text: &str, kind: KeyKind, path: &Path) -> Result<PublicKey, KeyError> {
    match kind {
        KeyKind::SpkiPublic => {
            let (_, doc) = pkcs8::Document::from_pem(text).map_err(|e| parse_err(path, e))?;
            let spki = pkcs8::SubjectPublicKeyInfoRef::try_from(doc.as_bytes())
                .map_err(|e| parse_err(path, e))?;
            check_rsa_oid(path, spki.algorithm.oid)?;
            PublicKey::from_public_key_der(doc.as_bytes()).map_err(|e| parse_err(path, e))
        }
        KeyKind::Pkcs1Public => PublicKey::from_pkcs1_pem(text).map_err(|e| parse_err(path, e)),
        _ => unreachable!("only public kinds come here"),
    }
}

/// Reads a public key file: SPKI or PKCS#1 PEM, or an OpenSSH `ssh-rsa` line
/// (`id_rsa.pub`, or an `authorized_keys` file holding one RSA key).
pub fn load_public_key(path: &Path) -> Result<PublicKeyInfo, KeyError> {
    let bytes = read_key_file(path)?;
    parse_public_key(&bytes, path)
}

/// Parses public key text that did not come from a file of its own (standard
/// input, a contacts entry): PEM or OpenSSH, as [`load_public_key`] reads.
/// `origin` names the source in errors.
pub fn parse_public_key(bytes: &[u8], origin: &Path) -> Result<PublicKeyInfo, KeyError> {
    let path = origin;
    let (text, kind) = parse_key_text(bytes, path)?;
    public_from_text(&text, kind, path)
}

fn public_from_text(text: &str, kind: KeyKind, path: &Path) -> Result<PublicKeyInfo, KeyError> {
    let key = match kind {
        KeyKind::SshPublic => parse_ssh_public(text, path)?,
        KeyKind::SpkiPublic | KeyKind::Pkcs1Public => parse_pem_public(text, kind, path)?,
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
    let (text, kind) = read_key_text(path)?;
    Ok(match kind {
        KeyKind::Pkcs8EncryptedPrivate => true,
        KeyKind::OpenSshPrivate => ssh_key::PrivateKey::from_openssh(text.as_bytes())
            .map_err(|e| openssh_parse_err(path, e))?
            .is_encrypted(),
        _ => false,
    })
}

fn openssh_parse_err(path: &Path, e: ssh_key::Error) -> KeyError {
    parse_err(path, format!("not a readable OpenSSH private key ({e})"))
}

/// Refuses a bcrypt-pbkdf round count outside 1..=[`MAX_BCRYPT_ROUNDS`] before
/// any derivation runs.
fn check_kdf(path: &Path, kdf: &ssh_key::Kdf) -> Result<(), KeyError> {
    match kdf {
        ssh_key::Kdf::Bcrypt { rounds, .. } if !(1..=MAX_BCRYPT_ROUNDS).contains(rounds) => {
            Err(KeyError::BadKdfRounds {
                path: path.to_owned(),
                rounds: *rounds,
            })
        }
        _ => Ok(()),
    }
}

/// Refuses the key derivation an encrypted PKCS#8 file declares if it would
/// cost more than the caps above, before any passphrase is asked for or any
/// derivation runs. (PBES1's iteration count is 16 bits: nothing to cap.)
fn check_pkcs8_kdf(path: &Path, scheme: &pkcs8::pkcs5::EncryptionScheme) -> Result<(), KeyError> {
    use pkcs8::pkcs5::pbes2::Kdf;
    let refuse = |asked: String, accepted: String| {
        Err(KeyError::KdfTooCostly {
            path: path.to_owned(),
            asked,
            accepted,
        })
    };
    match scheme.pbes2().map(|p| &p.kdf) {
        Some(Kdf::Pbkdf2(p)) if !(1..=MAX_PBKDF2_ITERATIONS).contains(&p.iteration_count) => {
            refuse(
                format!("PBKDF2 with {} iterations", p.iteration_count),
                format!("1 to {MAX_PBKDF2_ITERATIONS} iterations"),
            )
        }
        Some(Kdf::Scrypt(p)) => {
            let (n, r, par) = (p.cost_parameter, p.block_size, p.parallelization);
            let memory = 128u128 * u128::from(r) * u128::from(n);
            let acceptable = n.is_power_of_two()
                && n >= 2
                && n.trailing_zeros() <= MAX_SCRYPT_LOG_N
                && (1..=MAX_SCRYPT_R).contains(&r)
                && (1..=MAX_SCRYPT_P).contains(&par)
                && memory <= u128::from(MAX_SCRYPT_MEMORY);
            if acceptable {
                return Ok(());
            }
            refuse(
                format!("scrypt with N = {n}, r = {r}, p = {par}"),
                format!(
                    "N a power of two up to 2^{MAX_SCRYPT_LOG_N}, r up to {MAX_SCRYPT_R}, \
                     p up to {MAX_SCRYPT_P}, and at most {} of memory (128 * r * N)",
                    indicatif::HumanBytes(MAX_SCRYPT_MEMORY)
                ),
            )
        }
        _ => Ok(()),
    }
}

/// Reads an `OPENSSH PRIVATE KEY`. The public half is in the clear, so a
/// non-RSA key is refused before any passphrase is asked for.
fn load_openssh_private(
    text: &str,
    path: &Path,
    passphrase: impl FnOnce() -> Result<Option<Zeroizing<String>>, KeyError>,
) -> Result<PrivateKey, KeyError> {
    let key = ssh_key::PrivateKey::from_openssh(text.as_bytes())
        .map_err(|e| openssh_parse_err(path, e))?;
    let public = key.public_key().key_data();
    match public.rsa() {
        Some(rsa) => check_ssh_rsa(path, rsa)?,
        None => return Err(not_rsa(path, ssh_kind(path, public)?)),
    }
    let key = if key.is_encrypted() {
        check_kdf(path, key.kdf())?;
        let pass = passphrase()?.ok_or_else(|| KeyError::NeedPassphrase {
            path: path.to_owned(),
        })?;
        key.decrypt(pass.as_bytes()).map_err(|e| match e {
            ssh_key::Error::Crypto => KeyError::WrongPassphrase {
                path: path.to_owned(),
            },
            other => parse_err(path, format!("could not decrypt the OpenSSH key ({other})")),
        })?
    } else {
        key
    };
    let keypair = key
        .key_data()
        .rsa()
        .ok_or_else(|| parse_err(path, "the private half is not an RSA key"))?;
    PrivateKey::try_from(keypair).map_err(|e| parse_err(path, e))
}

/// Reads a private key file: PKCS#8 (plain or encrypted), PKCS#1 PEM, or an
/// `OPENSSH PRIVATE KEY` (plain or passphrase-protected). The passphrase
/// callback is called only for an encrypted key.
pub fn load_private_key(
    path: &Path,
    passphrase: impl FnOnce() -> Result<Option<Zeroizing<String>>, KeyError>,
) -> Result<PrivateKeyInfo, KeyError> {
    let (text, kind) = read_key_text(path)?;
    private_from_text(&text, kind, path, passphrase)
}

fn private_from_text(
    text: &str,
    kind: KeyKind,
    path: &Path,
    passphrase: impl FnOnce() -> Result<Option<Zeroizing<String>>, KeyError>,
) -> Result<PrivateKeyInfo, KeyError> {
    let key = match kind {
        KeyKind::Pkcs8Private => {
            let (_, doc) = pkcs8::SecretDocument::from_pem(text).map_err(|e| parse_err(path, e))?;
            pkcs8_rsa(path, doc.as_bytes())?
        }
        KeyKind::Pkcs1Private => {
            PrivateKey::from_pkcs1_pem(text).map_err(|e| parse_err(path, e))?
        }
        KeyKind::Pkcs8EncryptedPrivate => {
            let (_, doc) = pkcs8::Document::from_pem(text).map_err(|e| parse_err(path, e))?;
            let encrypted = pkcs8::EncryptedPrivateKeyInfoRef::try_from(doc.as_bytes())
                .map_err(|e| parse_err(path, e))?;
            check_pkcs8_kdf(path, &encrypted.encryption_algorithm)?;
            let pass = passphrase()?.ok_or_else(|| KeyError::NeedPassphrase {
                path: path.to_owned(),
            })?;
            let wrong = || KeyError::WrongPassphrase {
                path: path.to_owned(),
            };
            let der = encrypted.decrypt(pass.as_bytes()).map_err(|_| wrong())?;
            // Garbage that happens to decrypt to DER is still a wrong passphrase.
            pkcs8::PrivateKeyInfoRef::try_from(der.as_bytes()).map_err(|_| wrong())?;
            pkcs8_rsa(path, der.as_bytes())?
        }
        KeyKind::OpenSshPrivate => load_openssh_private(text, path, passphrase)?,
        KeyKind::SpkiPublic | KeyKind::Pkcs1Public | KeyKind::SshPublic => {
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

/// An RSA key from PKCS#8 DER, after checking that its algorithm is RSA.
fn pkcs8_rsa(path: &Path, der: &[u8]) -> Result<PrivateKey, KeyError> {
    let info = pkcs8::PrivateKeyInfoRef::try_from(der).map_err(|e| parse_err(path, e))?;
    check_rsa_oid(path, info.algorithm.oid)?;
    PrivateKey::from_pkcs8_der(der).map_err(|e| parse_err(path, e))
}

/// The public key of any key file sxf reads, and the file's format. For a
/// private key this loads the key itself (asking for a passphrase only if it
/// is encrypted), so what comes back is the key that will really be used.
pub fn public_key_of_file(
    path: &Path,
    passphrase: impl FnOnce() -> Result<Option<Zeroizing<String>>, KeyError>,
) -> Result<(PublicKeyInfo, KeyFormat), KeyError> {
    let (text, kind) = read_key_text(path)?;
    let public = if kind.is_public() {
        public_from_text(&text, kind, path)?
    } else {
        private_from_text(&text, kind, path, passphrase)?
            .public()
            .clone()
    };
    Ok((public, kind.format()))
}

/// Fingerprint of a key file, public or private. A passphrase is asked for only
/// when the file is an encrypted private key.
pub fn fingerprint_file(
    path: &Path,
    passphrase: impl FnOnce() -> Result<Option<Zeroizing<String>>, KeyError>,
) -> Result<Fingerprint, KeyError> {
    Ok(public_key_of_file(path, passphrase)?
        .0
        .fingerprint()
        .clone())
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
    let write_err = |source| KeyError::Write {
        path: path.to_owned(),
        source: crate::fsutil::without_temp_path(source),
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".sxf-key-");
    crate::platform::set_temp_mode(&mut builder, mode);
    let mut tmp = builder.tempfile_in(dir).map_err(write_err)?;
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
    #[test]
    fn grouped_fingerprint_is_sixteen_groups_of_four_hex_digits() {
        let mut bytes = [0u8; 32];
        bytes[..6].copy_from_slice(&[0x34, 0x41, 0x96, 0x08, 0x94, 0x88]);
        let grouped = Fingerprint(bytes).grouped();
        assert!(grouped.starts_with("3441 9608 9488 0000 "), "{grouped}");
        assert_eq!(grouped.len(), 64 + 15);

        let fp = Fingerprint::of_spki_der(b"x");
        let grouped = fp.grouped();
        let groups: Vec<&str> = grouped.split(' ').collect();
        assert_eq!(groups.len(), 16);
        assert!(groups.iter().all(|g| g.len() == 4));
        // The same digits as the machine form, in the same order.
        assert_eq!(format!("sha256:{}", groups.concat()), fp.to_string());
    }

    const FRANK_PUB: &str = include_str!("../tests/keys/frank_id_rsa.pub");
    const GRACE_PUB: &str = include_str!("../tests/keys/grace_id_rsa.pub");
    const HEIDI_PUB: &str = include_str!("../tests/keys/heidi_id_ed25519.pub");

    fn parse(text: &str) -> Result<PublicKeyInfo, KeyError> {
        parse_public_key(text.as_bytes(), Path::new("test input"))
    }

    #[test]
    fn an_ssh_rsa_line_and_its_spki_pem_have_one_fingerprint() {
        let spki = include_str!("../tests/keys/frank_id_rsa.spki.pub");
        let from_ssh = parse(FRANK_PUB).unwrap();
        assert_eq!(from_ssh.fingerprint(), parse(spki).unwrap().fingerprint());
        assert_eq!(from_ssh.to_pem(), spki);
        assert_eq!(
            from_ssh.to_openssh(),
            FRANK_PUB.trim_end().trim_end_matches(" frank@example")
        );
    }

    #[test]
    fn authorized_keys_with_options_comments_and_one_rsa_key_is_read() {
        let file = format!(
            "# my keys\n\n{}from=\"10.0.0.1\",no-pty {}",
            HEIDI_PUB, FRANK_PUB
        );
        let key = parse(&file).unwrap();
        assert_eq!(key.fingerprint(), parse(FRANK_PUB).unwrap().fingerprint());
    }

    #[test]
    fn authorized_keys_with_two_rsa_keys_is_refused_as_ambiguous() {
        let file = format!("{FRANK_PUB}{GRACE_PUB}");
        match parse(&file) {
            Err(KeyError::SeveralKeys { count: 2, .. }) => {}
            other => panic!("expected SeveralKeys, got {other:?}"),
        }
    }

    #[test]
    fn an_ed25519_line_is_refused_by_name() {
        let err = parse(HEIDI_PUB).unwrap_err();
        assert!(
            matches!(err, KeyError::NotRsa { what: ED25519, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("is an Ed25519 key, and sxf uses RSA keys")
        );
    }

    #[test]
    fn a_weak_ssh_rsa_key_is_refused_by_its_size_before_conversion() {
        // A 1024-bit ssh-rsa line made from the weak1024 fixture's modulus.
        let weak = parse_pem_public(
            include_str!("../tests/keys/weak1024.pub"),
            KeyKind::SpkiPublic,
            Path::new("weak"),
        )
        .unwrap();
        let line = ssh_key::PublicKey::new(
            ssh_key::public::KeyData::Rsa(ssh_key::public::RsaPublicKey::try_from(&weak).unwrap()),
            "",
        )
        .to_openssh()
        .unwrap();
        assert!(matches!(
            parse(&line),
            Err(KeyError::BadSize { bits: 1024, .. })
        ));
    }

    #[test]
    fn mpint_bit_length_counts_bits_not_bytes() {
        let m = |b: &[u8]| ssh_key::Mpint::from_positive_bytes(b);
        assert_eq!(mpint_bits(&m(&[0x01, 0x00, 0x01])), 17);
        assert_eq!(mpint_bits(&m(&[0x80, 0x00])), 16);
        assert_eq!(mpint_bits(&m(&[0x00, 0x7f])), 7);
        assert_eq!(mpint_bits(&m(&[])), 0);
    }

    /// carol's PBKDF2-encrypted PKCS#8 key, its key derivation replaced by
    /// `kdf` (the ciphertext stays), written to `dir`.
    fn carol_with_kdf(
        dir: &Path,
        kdf: impl FnOnce(pkcs8::pkcs5::pbes2::Pbkdf2Params) -> pkcs8::pkcs5::pbes2::Kdf,
    ) -> PathBuf {
        use pkcs8::der::{Decode, EncodePem};
        use pkcs8::pkcs5::EncryptionScheme;
        let text = include_str!("../tests/keys/carol.key");
        let (_, doc) = pkcs8::Document::from_pem(text).unwrap();
        let mut info = pkcs8::EncryptedPrivateKeyInfoOwned::from_der(doc.as_bytes()).unwrap();
        let EncryptionScheme::Pbes2(params) = &mut info.encryption_algorithm else {
            panic!("carol.key is PBES2");
        };
        let pbkdf2 = *params.kdf.pbkdf2().expect("carol.key uses PBKDF2");
        params.kdf = kdf(pbkdf2);
        let path = dir.join("hostile.key");
        fs::write(&path, info.to_pem(LineEnding::LF).unwrap()).unwrap();
        path
    }

    #[test]
    fn pkcs8_key_derivations_over_the_caps_are_refused_before_asking_or_deriving() {
        use pkcs8::pkcs5::pbes2::{Kdf, ScryptParams};
        let dir = tempfile::tempdir().unwrap();
        let scrypt = |log_n: u32, r: u16, p: u16| {
            move |pb: pkcs8::pkcs5::pbes2::Pbkdf2Params| {
                Kdf::Scrypt(ScryptParams {
                    salt: pb.salt,
                    cost_parameter: 1u64 << log_n,
                    block_size: r,
                    parallelization: p,
                    key_length: None,
                })
            }
        };
        let iterations = |n: u32| {
            move |mut pb: pkcs8::pkcs5::pbes2::Pbkdf2Params| {
                pb.iteration_count = n;
                Kdf::Pbkdf2(pb)
            }
        };
        let hostile = [
            // "capacity overflow" panic, and an allocation that aborts.
            carol_with_kdf(dir.path(), scrypt(56, 8, 1)),
            carol_with_kdf(dir.path(), scrypt(40, 8, 1)),
            carol_with_kdf(dir.path(), scrypt(21, 1, 1)),
            carol_with_kdf(dir.path(), scrypt(14, 33, 1)),
            carol_with_kdf(dir.path(), scrypt(14, 8, 17)),
            carol_with_kdf(dir.path(), scrypt(14, 0, 1)),
            // 2^20 * 16 * 128 bytes = 2 GiB.
            carol_with_kdf(dir.path(), scrypt(20, 16, 1)),
            // About 12 minutes of CPU.
            carol_with_kdf(dir.path(), iterations(u32::MAX)),
            carol_with_kdf(dir.path(), iterations(MAX_PBKDF2_ITERATIONS + 1)),
            carol_with_kdf(dir.path(), iterations(0)),
        ];
        for path in hostile {
            let text = fs::read_to_string(&path).unwrap();
            let asked = std::cell::Cell::new(false);
            let got = load_private_key(&path, || {
                asked.set(true);
                Ok(Some(Zeroizing::new("carol-passphrase".into())))
            });
            assert!(
                matches!(got, Err(KeyError::KdfTooCostly { .. })),
                "{got:?}\n{text}"
            );
            assert!(!asked.get(), "asked for a passphrase first");
        }
        // Within the caps, the derivation runs: the wrong derivation for this
        // ciphertext, so the passphrase is wrong, not the file.
        let fine = carol_with_kdf(dir.path(), scrypt(10, 8, 1));
        let got = load_private_key(&fine, || {
            Ok(Some(Zeroizing::new("carol-passphrase".into())))
        });
        assert!(
            matches!(got, Err(KeyError::WrongPassphrase { .. })),
            "{got:?}"
        );
        let fine = carol_with_kdf(dir.path(), iterations(2048));
        let got = load_private_key(&fine, || {
            Ok(Some(Zeroizing::new("carol-passphrase".into())))
        });
        assert!(got.is_ok(), "{got:?}");
    }

    #[test]
    fn keygen_protects_a_key_with_scrypt_at_openssls_memory_limit_and_reads_it_back() {
        use pkcs8::der::Decode;
        let key = load_private_key(Path::new("tests/keys/dave.key"), || Ok(None)).unwrap();
        let pem = key.to_encrypted_pkcs8_pem(b"pass").unwrap();
        let (_, doc) = pkcs8::Document::from_pem(&pem).unwrap();
        let info = pkcs8::EncryptedPrivateKeyInfoOwned::from_der(doc.as_bytes()).unwrap();
        let params = info.encryption_algorithm.pbes2().unwrap();
        let scrypt = params.kdf.scrypt().expect("scrypt");
        assert_eq!(
            (
                scrypt.cost_parameter,
                scrypt.block_size,
                scrypt.parallelization
            ),
            (1 << 14, 8, 8)
        );
        assert!(matches!(
            params.encryption,
            pkcs8::pkcs5::pbes2::EncryptionScheme::Aes256Cbc { .. }
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        fs::write(&path, pem.as_bytes()).unwrap();
        let back = load_private_key(&path, || Ok(Some(Zeroizing::new("pass".into())))).unwrap();
        assert_eq!(back.fingerprint(), key.fingerprint());
    }

    #[test]
    fn bcrypt_rounds_outside_the_cap_are_refused_before_deriving() {
        let kdf = |rounds| ssh_key::Kdf::Bcrypt {
            salt: vec![0; 16],
            rounds,
        };
        let path = Path::new("k");
        for ok in [1, 16, 100, MAX_BCRYPT_ROUNDS] {
            assert!(check_kdf(path, &kdf(ok)).is_ok(), "{ok} rounds");
        }
        for bad in [0, MAX_BCRYPT_ROUNDS + 1, u32::MAX] {
            assert!(
                matches!(check_kdf(path, &kdf(bad)), Err(KeyError::BadKdfRounds { rounds, .. }) if rounds == bad),
                "{bad} rounds"
            );
        }
    }

    #[test]
    fn text_that_is_neither_pem_nor_ssh_keeps_the_pem_error() {
        let err = parse("hello world\n").unwrap_err();
        assert!(err.to_string().contains("no PEM block found"), "{err}");
        assert!(looks_like_ssh_public("command=\"x y\" ssh-rsa AAAA c"));
        assert!(looks_like_ssh_public("ecdsa-sha2-nistp256 AAAA"));
        assert!(!looks_like_ssh_public("-----BEGIN PUBLIC KEY-----"));
    }
}
