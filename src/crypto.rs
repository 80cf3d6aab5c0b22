//! The cryptography, and nothing else: content keys, RSA-OAEP key wrap, RSA-PSS
//! signatures, and the streaming AES-256-CBC + HMAC-SHA-256 payload.
//!
//! This module knows keys and bytes, never archives or file names (the `format`
//! module knows those). The payload is processed as a stream in fixed chunks so
//! a 1 GiB attachment never sits in memory. Sealing runs the cipher on the calling
//! thread and both digests (HMAC and SHA-256) on a second one; checking runs the
//! two digests on two threads.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread;

use aes::Aes256;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{Array, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, KeyInit, Mac};
use rand::TryCryptoRng;
use rsa::{PrivateKey, PublicKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// Bytes in a content key: 32 for AES-256-CBC, then 32 for HMAC-SHA-256.
pub const CONTENT_KEY_LEN: usize = 64;
/// AES block and IV size.
pub const BLOCK_LEN: usize = 16;
/// Size of an HMAC-SHA-256 tag and of a SHA-256 digest.
pub const TAG_LEN: usize = 32;
/// The streaming chunk: a multiple of the block size.
const CHUNK_LEN: usize = 1 << 20;
/// Chunks in flight between the cipher and the hashing threads.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Every way a decryption can fail collapses into this one value, so that a
/// wrong key, a non-recipient, a bad OAEP block, a bad MAC and bad padding
/// are indistinguishable to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecryptFailure;

/// A fresh per-archive secret: independent AES and HMAC keys. Zeroized on drop;
/// `Debug` never shows it.
pub struct ContentKey(Zeroizing<[u8; CONTENT_KEY_LEN]>);

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentKey(..)")
    }
}

impl ContentKey {
    pub fn generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> io::Result<Self> {
        let mut key = Zeroizing::new([0u8; CONTENT_KEY_LEN]);
        rng.try_fill_bytes(&mut key[..])
            .map_err(|_| io::Error::other("the system random source failed"))?;
        Ok(ContentKey(key))
    }

    fn from_slice(bytes: &[u8]) -> Result<Self, DecryptFailure> {
        let mut key = Zeroizing::new([0u8; CONTENT_KEY_LEN]);
        if bytes.len() != CONTENT_KEY_LEN {
            return Err(DecryptFailure);
        }
        key.copy_from_slice(bytes);
        Ok(ContentKey(key))
    }

    fn enc_key(&self) -> &[u8] {
        &self.0[..32]
    }

    fn mac_key(&self) -> &[u8] {
        &self.0[32..]
    }

    /// The raw 64 bytes, for tests and the test-vector generator only.
    #[doc(hidden)]
    pub fn expose_for_tests(&self) -> &[u8] {
        &self.0[..]
    }

    fn new_mac(&self) -> HmacSha256 {
        <HmacSha256 as KeyInit>::new_from_slice(self.mac_key()).expect("HMAC takes any key length")
    }
}

/// RSA-OAEP (SHA-256, MGF1-SHA-256, empty label) of the content key to one recipient.
pub fn wrap_key<R: TryCryptoRng + ?Sized>(
    rng: &mut R,
    recipient: &PublicKey,
    key: &ContentKey,
) -> io::Result<Vec<u8>> {
    recipient
        .oaep_encrypt_with_rng::<Sha256, _>(rng, &key.0[..])
        .map_err(|e| io::Error::other(format!("RSA-OAEP key wrap failed: {e}")))
}

/// Inverse of [`wrap_key`], with a blinded private-key operation. A block
/// that is not exactly a content key is the same failure as a bad one.
pub fn unwrap_key<R: TryCryptoRng + ?Sized>(
    rng: &mut R,
    key: &PrivateKey,
    wrapped: &[u8],
) -> Result<ContentKey, DecryptFailure> {
    ContentKey::from_slice(&oaep_decrypt(rng, key, wrapped)?)
}

/// The RSA-OAEP decryption under [`unwrap_key`] (SHA-256, MGF1-SHA-256, empty
/// label, blinded), whatever the length of what it yields: public so that
/// Wycheproof's vectors, most of which do not hold 64-byte keys, test it.
///
/// RFC 8017 (7.1.2, step 3g) rejects an encoded message whose first octet Y
/// is not zero, and so does openssl; the rsa crate's decoding ignores Y. sxf
/// checks it on a second blinded private-key operation, made whatever the
/// first one found, and fails the same way for either: a wrapped key openssl
/// refuses never opens in sxf.
pub fn oaep_decrypt<R: TryCryptoRng + ?Sized>(
    rng: &mut R,
    key: &PrivateKey,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, DecryptFailure> {
    let leading_zero = leading_octet_is_zero(rng, key, ciphertext);
    let plain = key.oaep_decrypt_with_rng::<Sha256, _>(rng, ciphertext);
    match (leading_zero, plain) {
        (true, Ok(plain)) => Ok(Zeroizing::new(plain)),
        (_, Ok(plain)) => {
            drop(Zeroizing::new(plain));
            Err(DecryptFailure)
        }
        _ => Err(DecryptFailure),
    }
}

/// Whether the RSA private-key operation on `ciphertext` (exactly k octets)
/// gives an encoded message whose first octet is zero: a value below
/// 2^(8(k-1)). Blinded like the decryption itself; false on any error.
fn leading_octet_is_zero<R: TryCryptoRng + ?Sized>(
    rng: &mut R,
    key: &PrivateKey,
    ciphertext: &[u8],
) -> bool {
    use rsa::traits::PublicKeyParts;
    let k = key.size();
    if ciphertext.len() != k || k == 0 {
        return false;
    }
    let Ok(c) = rsa::BoxedUint::from_be_slice(ciphertext, key.n_bits_precision()) else {
        return false;
    };
    match rsa::hazmat::rsa_decrypt_and_check(key, Some(rng), &c) {
        Ok(em) => {
            let em = Zeroizing::new(em);
            em.bit_width() <= 8 * (k as u32 - 1)
        }
        Err(_) => false,
    }
}

/// RSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt) signature of `message`.
pub fn sign<R: TryCryptoRng + ?Sized>(
    rng: &mut R,
    key: &PrivateKey,
    message: &[u8],
) -> io::Result<Vec<u8>> {
    key.pss_sign_with_rng::<Sha256, _>(rng, message)
        .map_err(|e| io::Error::other(format!("RSA-PSS signing failed: {e}")))
}

/// Checks an RSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt) signature.
pub fn verify_signature(key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
    key.pss_verify::<Sha256>(message, signature).is_ok()
}

/// What sealing the payload stream produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedDigests {
    /// Bytes written: IV plus ciphertext.
    pub len: u64,
    /// SHA-256 of IV ‖ ciphertext.
    pub sha256: [u8; TAG_LEN],
    /// HMAC-SHA-256 under the MAC key of mac_header ‖ IV ‖ ciphertext.
    pub mac: [u8; TAG_LEN],
}

/// The ciphertext length for a plaintext of `plaintext_len` bytes, IV included.
pub fn sealed_len(plaintext_len: u64) -> u64 {
    BLOCK_LEN as u64 + (plaintext_len / BLOCK_LEN as u64 + 1) * BLOCK_LEN as u64
}

/// Encrypts `plaintext` to `out` as IV ‖ AES-256-CBC-PKCS#7 ciphertext, and computes
/// the SHA-256 and the HMAC of it on a second thread. `progress` is told how many
/// plaintext bytes were consumed after each chunk.
pub fn encrypt_stream(
    key: &ContentKey,
    iv: &[u8; BLOCK_LEN],
    mac_header: &[u8],
    mut plaintext: impl Read,
    mut out: impl Write,
    progress: &mut dyn FnMut(u64),
) -> io::Result<SealedDigests> {
    let mut cipher = Some(cbc::Encryptor::<Aes256>::new(
        &Array::try_from(key.enc_key()).expect("32-byte key"),
        &Array::from(*iv),
    ));
    let mut mac = key.new_mac();
    mac.update(mac_header);
    let (tx, rx) = sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    thread::scope(|scope| {
        let hasher = scope.spawn(move || {
            let mut sha = Sha256::new();
            for chunk in rx {
                sha.update(&chunk);
                mac.update(&chunk);
            }
            (sha.finalize(), mac.finalize().into_bytes())
        });
        let mut written = BLOCK_LEN as u64;
        let result = (|| -> io::Result<()> {
            out.write_all(iv)?;
            let _ = tx.send(iv.to_vec());
            loop {
                let mut chunk = vec![0u8; CHUNK_LEN + BLOCK_LEN];
                let n = read_full(&mut plaintext, &mut chunk[..CHUNK_LEN])?;
                progress(n as u64);
                if n == CHUNK_LEN {
                    chunk.truncate(CHUNK_LEN);
                    let (blocks, _) = Array::slice_as_chunks_mut(&mut chunk[..]);
                    cipher
                        .as_mut()
                        .expect("cipher is only consumed at the end")
                        .encrypt_blocks(blocks);
                    out.write_all(&chunk)?;
                    written += chunk.len() as u64;
                    if tx.send(chunk).is_err() {
                        return Err(io::Error::other("hashing thread stopped"));
                    }
                } else {
                    let ct_len = cipher
                        .take()
                        .expect("cipher is only consumed at the end")
                        .encrypt_padded::<Pkcs7>(&mut chunk, n)
                        .map_err(|_| io::Error::other("padding buffer too small"))?
                        .len();
                    chunk.truncate(ct_len);
                    out.write_all(&chunk)?;
                    written += chunk.len() as u64;
                    let _ = tx.send(chunk);
                    return Ok(());
                }
            }
        })();
        drop(tx);
        let (sha, mac) = hasher.join().expect("hashing thread panicked");
        result?;
        Ok(SealedDigests {
            len: written,
            sha256: sha.into(),
            mac: mac.into(),
        })
    })
}

/// Why a stream check failed.
#[derive(Debug)]
pub enum StreamCheckError {
    /// The SHA-256 of the stream is not the expected one.
    Digest,
    /// The MAC did not verify.
    Mac,
    Io(io::Error),
}

/// Reads the whole payload entry once and checks its SHA-256 and, when a key is
/// given, its HMAC (in constant time), on two threads. Nothing is decrypted.
pub fn check_stream(
    mut input: impl Read,
    expected_sha256: &[u8; TAG_LEN],
    mac: Option<(&ContentKey, &[u8], &[u8; TAG_LEN])>,
    progress: &mut dyn FnMut(u64),
) -> Result<(), StreamCheckError> {
    fn spawn_consumer<'s, T: Send + 's>(
        scope: &'s thread::Scope<'s, '_>,
        rx: Receiver<Arc<Vec<u8>>>,
        mut state: T,
        update: fn(&mut T, &[u8]),
    ) -> thread::ScopedJoinHandle<'s, T> {
        scope.spawn(move || {
            for chunk in rx {
                update(&mut state, &chunk);
            }
            state
        })
    }
    let mac_state = mac.map(|(key, header, _)| {
        let mut m = key.new_mac();
        m.update(header);
        m
    });
    thread::scope(|scope| {
        let (sha_tx, sha_rx) = sync_channel(CHUNKS_IN_FLIGHT);
        let sha_thread = spawn_consumer(scope, sha_rx, Sha256::new(), |s, b| s.update(b));
        let (mac_tx, mac_thread) = match mac_state {
            Some(m) => {
                let (tx, rx) = sync_channel(CHUNKS_IN_FLIGHT);
                (
                    Some(tx),
                    Some(spawn_consumer(scope, rx, m, |m, b| m.update(b))),
                )
            }
            None => (None, None),
        };
        let read_result = (|| -> io::Result<()> {
            loop {
                let mut chunk = vec![0u8; CHUNK_LEN];
                let n = read_full(&mut input, &mut chunk)?;
                if n == 0 {
                    return Ok(());
                }
                chunk.truncate(n);
                progress(n as u64);
                let chunk = Arc::new(chunk);
                let _ = sha_tx.send(chunk.clone());
                if let Some(tx) = &mac_tx {
                    let _ = tx.send(chunk);
                }
            }
        })();
        drop(sha_tx);
        drop(mac_tx);
        let sha = sha_thread.join().expect("hashing thread panicked");
        let mac_state = mac_thread.map(|t| t.join().expect("MAC thread panicked"));
        read_result.map_err(StreamCheckError::Io)?;
        if sha.finalize().as_slice() != expected_sha256 {
            return Err(StreamCheckError::Digest);
        }
        if let (Some(state), Some((_, _, tag))) = (mac_state, mac) {
            state.verify_slice(tag).map_err(|_| StreamCheckError::Mac)?;
        }
        Ok(())
    })
}

/// A reader that yields the plaintext of IV ‖ ciphertext read from `inner`.
/// The last block is held back until the end of input so that padding is checked
/// before it is released; any failure reads as `io::ErrorKind::InvalidData`
/// carrying [`DecryptFailure`]. Use it only on a stream whose MAC has already been
/// verified.
pub struct DecryptReader<R> {
    inner: R,
    cipher: Option<cbc::Decryptor<Aes256>>,
    key: Zeroizing<[u8; 32]>,
    /// Ciphertext read but not yet decrypted (less than one chunk).
    pending: Vec<u8>,
    /// Plaintext ready to hand out, and how much of it was handed out.
    ready: Zeroizing<Vec<u8>>,
    ready_pos: usize,
    finished: bool,
}

impl<R: Read> DecryptReader<R> {
    pub fn new(inner: R, key: &ContentKey) -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(key.enc_key());
        DecryptReader {
            inner,
            cipher: None,
            key: k,
            pending: Vec::with_capacity(CHUNK_LEN + BLOCK_LEN),
            ready: Zeroizing::new(Vec::with_capacity(CHUNK_LEN)),
            ready_pos: 0,
            finished: false,
        }
    }

    fn failure() -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, DecryptFailureError)
    }

    /// Reads more ciphertext and decrypts all whole blocks but the last.
    fn refill(&mut self) -> io::Result<()> {
        if self.cipher.is_none() {
            let mut iv = [0u8; BLOCK_LEN];
            if read_full(&mut self.inner, &mut iv)? != BLOCK_LEN {
                return Err(Self::failure());
            }
            self.cipher = Some(cbc::Decryptor::<Aes256>::new(
                &Array::from(*self.key),
                &Array::from(iv),
            ));
        }
        let start = self.pending.len();
        self.pending.resize(CHUNK_LEN + BLOCK_LEN, 0);
        let n = read_full(&mut self.inner, &mut self.pending[start..])?;
        self.pending.truncate(start + n);
        self.ready.clear();
        self.ready_pos = 0;
        let at_end = start + n < CHUNK_LEN + BLOCK_LEN;
        if at_end {
            self.finished = true;
            let len = self.pending.len();
            if len == 0 || !len.is_multiple_of(BLOCK_LEN) {
                return Err(Self::failure());
            }
            let cipher = self.cipher.take().expect("cipher initialised");
            let mut buf = std::mem::take(&mut self.pending);
            let plain_len = cipher
                .decrypt_padded::<Pkcs7>(&mut buf)
                .map_err(|_| Self::failure())?
                .len();
            buf.truncate(plain_len);
            self.ready = Zeroizing::new(buf);
        } else {
            // Decrypt all but the last block, which stays pending.
            let keep_from = self.pending.len() - BLOCK_LEN;
            let cipher = self.cipher.as_mut().expect("cipher initialised");
            let (blocks, _) = Array::slice_as_chunks_mut(&mut self.pending[..keep_from]);
            cipher.decrypt_blocks(blocks);
            self.ready.extend_from_slice(&self.pending[..keep_from]);
            self.pending.drain(..keep_from);
        }
        Ok(())
    }
}

impl<R: Read> Read for DecryptReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.ready_pos == self.ready.len() {
            if self.finished {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = buf.len().min(self.ready.len() - self.ready_pos);
        buf[..n].copy_from_slice(&self.ready[self.ready_pos..self.ready_pos + n]);
        self.ready_pos += n;
        Ok(n)
    }
}

impl<R> DecryptReader<R> {
    /// The underlying reader, once decryption is done.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// A reader that computes the payload MAC over exactly the bytes it passes on.
/// `open` decrypts through it and checks the MAC again at the end, so what was
/// decrypted is what was authenticated even if the file changed after the first
/// check.
pub struct MacReader<R> {
    inner: R,
    mac: HmacSha256,
}

impl<R: Read> MacReader<R> {
    pub fn new(inner: R, key: &ContentKey, mac_header: &[u8]) -> Self {
        let mut mac = key.new_mac();
        mac.update(mac_header);
        MacReader { inner, mac }
    }

    /// Checks, in constant time, the MAC of everything read against `tag`.
    pub fn verify(self, tag: &[u8; TAG_LEN]) -> Result<(), DecryptFailure> {
        self.mac.verify_slice(tag).map_err(|_| DecryptFailure)
    }
}

impl<R: Read> Read for MacReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.mac.update(&buf[..n]);
        Ok(n)
    }
}

/// The error carried inside `io::Error` when decryption fails.
#[derive(Debug)]
pub struct DecryptFailureError;

impl std::fmt::Display for DecryptFailureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("decryption failed")
    }
}

impl std::error::Error for DecryptFailureError {}

/// Is this I/O error a decryption failure from [`DecryptReader`]?
pub fn is_decrypt_failure(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<DecryptFailureError>())
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ContentKey {
        ContentKey::from_slice(&[7u8; CONTENT_KEY_LEN]).unwrap()
    }

    fn seal(plain: &[u8]) -> (Vec<u8>, SealedDigests) {
        let mut out = Vec::new();
        let d = encrypt_stream(&key(), &[9u8; 16], b"hdr", plain, &mut out, &mut |_| {}).unwrap();
        (out, d)
    }

    #[test]
    fn stream_round_trips_across_block_and_chunk_boundaries() {
        for len in [
            0,
            1,
            15,
            16,
            17,
            CHUNK_LEN - 1,
            CHUNK_LEN,
            CHUNK_LEN + 1,
            CHUNK_LEN + BLOCK_LEN,
            2 * CHUNK_LEN + 5,
        ] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let (sealed, digests) = seal(&plain);
            assert_eq!(sealed.len() as u64, sealed_len(len as u64), "len {len}");
            assert_eq!(digests.len, sealed.len() as u64);
            assert_eq!(
                digests.sha256.as_slice(),
                Sha256::digest(&sealed).as_slice()
            );
            check_stream(
                &sealed[..],
                &digests.sha256,
                Some((&key(), b"hdr", &digests.mac)),
                &mut |_| {},
            )
            .unwrap();
            let mut back = Vec::new();
            DecryptReader::new(&sealed[..], &key())
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, plain, "len {len}");
        }
    }

    #[test]
    fn mac_covers_header_and_every_byte() {
        let (sealed, d) = seal(b"attack at dawn, bring photos");
        let wrong_header = check_stream(
            &sealed[..],
            &d.sha256,
            Some((&key(), b"hdR", &d.mac)),
            &mut |_| {},
        );
        assert!(matches!(wrong_header, Err(StreamCheckError::Mac)));
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            let sha: [u8; 32] = Sha256::digest(&t).into();
            let r = check_stream(&t[..], &sha, Some((&key(), b"hdr", &d.mac)), &mut |_| {});
            assert!(matches!(r, Err(StreamCheckError::Mac)), "byte {i}");
            let r = check_stream(&t[..], &d.sha256, None, &mut |_| {});
            assert!(matches!(r, Err(StreamCheckError::Digest)), "byte {i}");
        }
    }

    #[test]
    fn bad_padding_and_truncation_are_decrypt_failures() {
        let (sealed, _) = seal(b"0123456789abcdef0123");
        for cut in [0, 5, 16, 17, sealed.len() - 1] {
            let mut out = Vec::new();
            let e = DecryptReader::new(&sealed[..cut], &key())
                .read_to_end(&mut out)
                .unwrap_err();
            assert!(is_decrypt_failure(&e), "cut {cut}");
        }
        let mut t = sealed.clone();
        let n = t.len();
        t[n - 17] ^= 0x55; // corrupts the padding of the last block
        let e = DecryptReader::new(&t[..], &key())
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(is_decrypt_failure(&e));
    }

    #[test]
    fn content_key_debug_hides_the_key() {
        assert_eq!(format!("{:?}", key()), "ContentKey(..)");
    }
}
