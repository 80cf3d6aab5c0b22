//! The drop-box's durable store: mailboxes on disk, crash-safe filing, quotas,
//! expiry, and the condition variable that wakes long-polling fetchers.
//!
//! Layout under the store directory (see `spec/DROPBOX.md`, "Store"):
//!
//! ```text
//! tls-key.der                    the TLS private key, PKCS#8 DER (0600)
//! tls-cert.der                   its self-signed certificate; the server id is
//!                                SHA-256 of the certificate's SubjectPublicKeyInfo
//! lock                           locked (File::try_lock) while a server runs on this store
//! tmp/*.part                     uploads and records being written (swept at start-up)
//! filing/<id>                    the intent record of a message being filed
//! commit/<id>.sxf                the commit record of a message being filed
//! digests/<64 hex>               the newest message filed with this SHA-256
//! mailboxes/<64 hex>/<id>.sxf    a waiting message (one hard link per recipient)
//! mailboxes/<64 hex>/.<id>.sha256    its digest record (one hard link per recipient)
//! mailboxes/<64 hex>/.<id>.pending   a link made before the commit point
//! ```
//!
//! **Memory does not grow with what is stored.** Everything about waiting
//! messages lives on disk; memory holds only what uploads in progress reserve,
//! and a bounded cache of recently used mailboxes' sizes (read from the
//! directory on a miss). Start-up reads only the intent records of filings a
//! crash interrupted; counting the store and expiring old messages is done by
//! a background pass that streams the directories.
//!
//! Filing a message is all-or-nothing across its recipients: an intent record
//! names the recipients, pending links are made and synced in every mailbox,
//! then one rename into `commit/` is the commit point, then the pending links
//! are renamed into view. Start-up finishes every committed filing and undoes
//! every uncommitted one, from the intent records alone. No name under the
//! store ever comes from a client: mailbox directories are the hex of a parsed
//! [`Fingerprint`] and file names are server-generated [`MessageId`]s or hex
//! digests.
//!
//! Uploads are idempotent: `digests/<sha256>` names the newest message filed
//! with those bytes, and an upload byte-identical to a message still waiting
//! in every one of its recipients' mailboxes is answered with that message's
//! id instead of being filed again.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::NoProgress;
use crate::keys::Fingerprint;
use crate::open::ExpectedSender;

use super::protocol::{ListEntry, MessageId};

/// What opening a store repaired. Opening reads only what a crash left in
/// flight, so it takes the same time however much is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Leftover upload and record temp files removed.
    pub swept_temp_files: u64,
    /// Messages whose filing was committed but not finished before a crash.
    pub recovered: u64,
    /// Filings a crash interrupted before their commit point, undone.
    pub discarded_pending: u64,
}

/// What the first pass over the stored messages counted and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Waiting messages, each counted once however many mailboxes link it.
    pub messages: u64,
    /// Mailboxes holding at least one message.
    pub mailboxes: u64,
    /// Bytes of the waiting messages, each counted once.
    pub bytes: u64,
    /// Waiting messages whose digest record was missing, hashed again and
    /// recorded.
    pub rehashed: u64,
    /// Links and records left by a crash in a store written before intent
    /// records, finished or removed.
    pub leftovers: u64,
    /// How long the pass took.
    pub took: Duration,
}

/// A message removed because it waited longer than the expiry age.
#[derive(Debug, Clone)]
pub struct Expired {
    pub mailbox: Fingerprint,
    pub id: MessageId,
    pub len: u64,
    /// How long it had waited.
    pub age: Duration,
}

/// The SHA-256 of a whole archive.
pub type ArchiveDigest = [u8; 32];

/// Why an upload was not filed.
#[derive(Debug, thiserror::Error)]
pub enum DepositError {
    /// The bytes are not a well-formed, validly signed sxf archive.
    #[error("not an sxf archive this server accepts: {0}")]
    NotSxf(String),
    #[error(
        "the mailbox {mailbox} holds {used} bytes; this {size}-byte message would exceed its quota of {quota} bytes"
    )]
    OverQuota {
        mailbox: Fingerprint,
        used: u64,
        size: u64,
        quota: u64,
    },
    #[error("the archive names {count} recipients; this server files a message for at most {max}")]
    TooManyRecipients { count: usize, max: usize },
    #[error(
        "the server's store holds {stored} bytes; this {size}-byte message would exceed its cap of {max} bytes; try again later"
    )]
    StoreFull { stored: u64, size: u64, max: u64 },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A message that was filed, or found already waiting.
#[derive(Debug, Clone)]
pub struct Deposited {
    pub id: MessageId,
    pub len: u64,
    pub recipients: Vec<Fingerprint>,
    /// The upload was byte-identical to message `id`, already waiting for every
    /// recipient: nothing was filed again.
    pub duplicate: bool,
}

/// Mailboxes whose size is kept in memory: the most recently used ones. A
/// miss costs one read of that mailbox's directory.
const USAGE_CACHE_ENTRIES: usize = 4096;

/// What the store keeps in memory: only uploads in progress, and a bounded
/// cache. Nothing here grows with the number of stored messages or mailboxes.
struct State {
    /// Bytes waiting in recently used mailboxes, each exactly the sum of its
    /// `<id>.sxf` and finished-but-unpublished `.<id>.pending` links.
    usage: lru::LruCache<Fingerprint, u64>,
    /// Bytes being filed right now, per recipient, counted against quotas.
    reserved: HashMap<Fingerprint, u64>,
    /// Digests of uploads being filed right now: an identical upload waits for
    /// the filing to finish, then finds it (or files, if it failed).
    filing: HashSet<ArchiveDigest>,
    /// Ids being filed right now, whose pending links are counted in
    /// `reserved`, not in `usage`.
    reserved_ids: HashSet<MessageId>,
    /// Ids from their intent record until their filing is published or has
    /// failed: the housekeeping pass and retries leave their links and
    /// records to the filing.
    in_flight_ids: HashSet<MessageId>,
    /// Bytes of all waiting messages, each counted once; `None` until the
    /// first [`Store::inventory`] has counted them.
    stored: Option<u64>,
    /// Bytes being filed right now, counted against `--max-store`.
    stored_reserved: u64,
    /// Mailboxes someone WAITs on: how many waiters, and a count bumped by
    /// every filing for that mailbox. Bounded by the connections.
    watched: HashMap<Fingerprint, (usize, u64)>,
    stopping: bool,
}

/// An upload being received: a temp file in `tmp/`, removed on drop unless
/// filed. The SHA-256 of the bytes is computed as they are written.
pub struct Upload {
    file: tempfile::NamedTempFile,
    written: u64,
    sha: Sha256,
}

impl Upload {
    pub fn written(&self) -> u64 {
        self.written
    }
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.sha.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Store-wide limits (besides the free-space and inode reserves).
#[derive(Debug, Clone)]
pub struct StoreLimits {
    /// Most bytes waiting in one mailbox.
    pub mailbox_quota: u64,
    /// Most bytes waiting in the whole store, each message counted once.
    pub max_store: Option<u64>,
    /// Most distinct recipients one message is filed for.
    pub max_recipients: usize,
}

impl Default for StoreLimits {
    /// The documented defaults of `sxf serve`.
    fn default() -> Self {
        StoreLimits {
            mailbox_quota: super::DEFAULT_MAILBOX_QUOTA,
            max_store: None,
            max_recipients: super::DEFAULT_MAX_RECIPIENTS,
        }
    }
}

/// The store. Shared by every connection thread.
pub struct Store {
    root: PathBuf,
    tmp: PathBuf,
    filing: PathBuf,
    commit: PathBuf,
    digests: PathBuf,
    mailboxes: PathBuf,
    limits: StoreLimits,
    tls: super::tls::Identity,
    /// For tests: the free space to report instead of asking the filesystem.
    assumed_free_space: Option<u64>,
    /// Bytes announced by uploads in progress, held against the free-disk reserve.
    disk_in_flight: Mutex<u64>,
    /// For tests: the free inodes to report instead of asking the filesystem.
    assumed_free_inodes: Option<u64>,
    /// Free inodes never used for uploads.
    min_free_inodes: u64,
    /// Inodes held by uploads in progress, [`INODES_PER_UPLOAD`] each.
    inodes_in_flight: Mutex<u64>,
    state: Mutex<State>,
    changed: Condvar,
    /// Uploads being validated right now, at most `max_validating`.
    validating: Mutex<usize>,
    validated: Condvar,
    max_validating: usize,
    /// For tests: runs right after a filing's commit point; an error stands
    /// for a failed sync there, and it may run anything a concurrent
    /// connection or the housekeeping pass could.
    #[cfg(test)]
    after_commit: Mutex<Option<AfterCommitHook>>,
    _lock: File,
}

#[cfg(test)]
type AfterCommitHook = Box<dyn FnMut(&Store) -> io::Result<()> + Send>;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn is_id_name(name: &str, prefix: &str, suffix: &str) -> Option<MessageId> {
    name.strip_prefix(prefix)?
        .strip_suffix(suffix)
        .and_then(MessageId::parse)
}

/// Creates a directory (and its missing parents) readable by its owner only:
/// mailbox names, message ids and sizes are nobody else's business.
fn private_dir_all(dir: &Path) -> io::Result<()> {
    crate::platform::private_dir_builder()
        .recursive(true)
        .create(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    crate::platform::sync_dir_entries(dir)
}

fn ctx(what: impl std::fmt::Display, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Removes a file; one that is already gone is not an error.
/// Whether `path` is a file of `len` bytes.
fn has_link(path: &Path, len: u64) -> io::Result<bool> {
    match fs::metadata(path) {
        Ok(m) => Ok(m.len() == len),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The name of a message's digest record in a mailbox.
fn digest_record_name(id: &MessageId) -> String {
    format!(".{id}.sha256")
}

/// A digest record: `<id> <length> <64 hex digits>` and a newline. It names its
/// message and length, so a record that does not belong to the archive beside
/// it (stale blocks after a crash, a copied file) is never believed.
fn digest_record(id: &MessageId, len: u64, digest: &ArchiveDigest) -> String {
    format!("{id} {len} {}\n", hex::encode(digest))
}

/// Parses a digest record into its id, length and digest.
fn parse_record_fields(text: &str) -> Option<(MessageId, u64, ArchiveDigest)> {
    let mut parts = text.strip_suffix('\n')?.split(' ');
    let (rid, rlen, rhex) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let len: u64 = rlen.parse().ok()?;
    if len.to_string() != rlen {
        return None; // canonical decimal only
    }
    Some((MessageId::parse(rid)?, len, crate::parse_lower_hex(rhex)?))
}

fn parse_digest_record(text: &str, id: &MessageId, len: u64) -> Option<ArchiveDigest> {
    let (rid, rlen, digest) = parse_record_fields(text)?;
    (rid == *id && rlen == len).then_some(digest)
}

/// Reads a small record file; `None` if it is missing, too long or not text.
fn read_record(path: &Path) -> io::Result<Option<String>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    // A record is ~120 bytes; an intent names at most a few hundred recipients.
    match Read::take(&mut f, 64 * 1024).read_to_string(&mut text) {
        Ok(_) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(None),
        Err(e) => Err(e),
    }
}

/// SHA-256 of a whole file.
fn hash_file(path: &Path) -> io::Result<ArchiveDigest> {
    let mut f = File::open(path)?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(sha.finalize().into());
        }
        sha.update(&buf[..n]);
    }
}

/// A small file written durably into `tmp` (fsynced), not yet named anywhere.
fn durable_temp(tmp: &Path, prefix: &str, text: &str) -> io::Result<tempfile::NamedTempFile> {
    let mut f = tempfile::Builder::new()
        .prefix(prefix)
        .suffix(".part")
        .tempfile_in(tmp)?;
    f.write_all(text.as_bytes())?;
    f.as_file().sync_all()?;
    Ok(f)
}

/// An intent record: the digest, then each recipient's mailbox directory
/// name, one per line.
fn intent_record(digest: &ArchiveDigest, recipients: &[Fingerprint]) -> String {
    let mut text = format!("{}\n", hex::encode(digest));
    for r in recipients {
        text.push_str(&hex::encode(r.as_bytes()));
        text.push('\n');
    }
    text
}

/// Parses an intent record into the digest and the recipients' directory names.
fn parse_intent_record(text: &str) -> Option<(ArchiveDigest, Vec<String>)> {
    let mut lines = text.strip_suffix('\n')?.split('\n');
    let digest = crate::parse_lower_hex(lines.next()?)?;
    let mut dirs = Vec::new();
    for l in lines {
        let _: [u8; 32] = crate::parse_lower_hex(l)?;
        dirs.push(l.to_owned());
    }
    Some((digest, dirs))
}

/// Per link count, how many links of that count were seen and their bytes:
/// a file with k links is seen k times, so dividing each bucket by k counts
/// every message once, without remembering which files were already seen.
#[derive(Default)]
struct LinkTally(HashMap<u64, (u64, u64)>);

impl LinkTally {
    fn add(&mut self, links: u64, len: u64) {
        let e = self.0.entry(links.max(1)).or_default();
        e.0 += 1;
        e.1 += len;
    }
    /// (messages, bytes), each message once. Exact unless links were added or
    /// removed while counting.
    fn totals(&self) -> (u64, u64) {
        self.0.iter().fold((0, 0), |(m, b), (k, (n, bytes))| {
            (m + n.div_ceil(*k), b + bytes.div_ceil(*k))
        })
    }
}

impl Store {
    /// Opens (creating if needed) a store, takes its lock, sweeps temp files and
    /// finishes or undoes interrupted filings. Reads only `tmp/`, `filing/` and
    /// `commit/`: its time does not depend on how much is stored.
    pub fn open(root: &Path, limits: StoreLimits) -> io::Result<(Store, OpenReport)> {
        private_dir_all(root).map_err(|e| ctx(format!("creating {}", root.display()), e))?;
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join("lock"))
            .map_err(|e| ctx(format!("opening {}/lock", root.display()), e))?;
        lock.try_lock().map_err(|_| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("the store {} is in use by another server", root.display()),
            )
        })?;
        let tmp = root.join("tmp");
        let filing = root.join("filing");
        let commit = root.join("commit");
        let digests = root.join("digests");
        let mailboxes = root.join("mailboxes");
        for d in [&tmp, &filing, &commit, &digests, &mailboxes] {
            private_dir_all(d).map_err(|e| ctx(format!("creating {}", d.display()), e))?;
        }
        sync_dir(root)?;
        let tls = load_or_create_tls_identity(root)?;
        let mut store = Store {
            root: root.to_owned(),
            tmp,
            filing,
            commit,
            digests,
            mailboxes,
            limits,
            tls,
            assumed_free_space: None,
            disk_in_flight: Mutex::new(0),
            assumed_free_inodes: None,
            min_free_inodes: super::DEFAULT_MIN_FREE_INODES,
            inodes_in_flight: Mutex::new(0),
            state: Mutex::new(State {
                usage: lru::LruCache::new(
                    NonZeroUsize::new(USAGE_CACHE_ENTRIES).expect("non-zero"),
                ),
                reserved: HashMap::new(),
                filing: HashSet::new(),
                reserved_ids: HashSet::new(),
                in_flight_ids: HashSet::new(),
                stored: None,
                stored_reserved: 0,
                watched: HashMap::new(),
                stopping: false,
            }),
            changed: Condvar::new(),
            validating: Mutex::new(0),
            validated: Condvar::new(),
            max_validating: std::thread::available_parallelism().map_or(2, |n| n.get()),
            #[cfg(test)]
            after_commit: Mutex::new(None),
            _lock: lock,
        };
        let report = store.recover()?;
        Ok((store, report))
    }

    /// Start-up repair: empties `tmp/`, then finishes every filing whose intent
    /// record has a commit record and undoes every other one.
    fn recover(&mut self) -> io::Result<OpenReport> {
        let mut report = OpenReport::default();
        for entry in fs::read_dir(&self.tmp)? {
            let entry = entry?;
            fs::remove_file(entry.path())
                .map_err(|e| ctx(format!("removing {}", entry.path().display()), e))?;
            report.swept_temp_files += 1;
        }
        sync_dir(&self.tmp)?;
        for entry in fs::read_dir(&self.filing)? {
            let entry = entry?;
            let Some(id) = entry.file_name().to_str().and_then(MessageId::parse) else {
                continue; // not ours; never touched
            };
            let intent = read_record(&entry.path())?.and_then(|t| parse_intent_record(&t));
            let commit_path = self.commit.join(format!("{id}.sxf"));
            let committed = commit_path.exists();
            if let Some((digest, dirs)) = intent {
                for d in dirs {
                    let dir = self.mailboxes.join(d);
                    let pending = dir.join(format!(".{id}.pending"));
                    if committed {
                        if pending.exists() {
                            fs::rename(&pending, dir.join(format!("{id}.sxf")))?;
                        }
                    } else {
                        remove_if_present(&pending)?;
                        remove_if_present(&dir.join(digest_record_name(&id)))?;
                    }
                    if dir.exists() {
                        sync_dir(&dir)?;
                    }
                }
                if !committed {
                    self.forget_digest(&digest, &id)?;
                }
            }
            if committed {
                report.recovered += 1;
            } else {
                report.discarded_pending += 1;
            }
            // The intent goes before the commit record: an intent never
            // outlives its commit record unless the filing was undone.
            fs::remove_file(entry.path())?;
            sync_dir(&self.filing)?;
            remove_if_present(&commit_path)?;
        }
        sync_dir(&self.commit)?;
        Ok(report)
    }

    /// Removes `digests/<hex>` if it names `id`.
    fn forget_digest(&self, digest: &ArchiveDigest, id: &MessageId) -> io::Result<()> {
        let pointer = self.digests.join(hex::encode(digest));
        if let Some(text) = read_record(&pointer)?
            && parse_record_fields(&text).is_some_and(|(pid, _, d)| pid == *id && d == *digest)
        {
            remove_if_present(&pointer)?;
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This server's identity: SHA-256 of its TLS certificate's
    /// SubjectPublicKeyInfo DER.
    pub fn server_id(&self) -> &[u8; 32] {
        self.tls.server_id()
    }

    /// The server's TLS certificate and key.
    pub fn tls_identity(&self) -> &super::tls::Identity {
        &self.tls
    }

    /// For tests: report this much free space instead of asking the filesystem.
    pub fn assume_free_space(&mut self, bytes: Option<u64>) {
        self.assumed_free_space = bytes;
    }

    /// For tests: report this many free inodes instead of asking the filesystem.
    pub fn assume_free_inodes(&mut self, inodes: Option<u64>) {
        self.assumed_free_inodes = inodes;
    }

    /// Keep `n` inodes free: uploads that would leave fewer are refused.
    pub fn set_min_free_inodes(&mut self, n: u64) {
        self.min_free_inodes = n;
    }

    /// Inodes available on the store's filesystem; `None` when it has no
    /// fixed number.
    pub fn free_inodes(&self) -> io::Result<Option<u64>> {
        if let Some(n) = self.assumed_free_inodes {
            return Ok(Some(n));
        }
        crate::platform::available_inodes(&self.root)
    }

    /// Checks that `needed` more inodes fit above the reserve, counting those
    /// uploads in progress hold, and holds `hold` of them.
    fn take_inodes(&self, needed: u64, hold: u64) -> Result<(), DiskRefusal> {
        let mut in_flight = self
            .inodes_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(free) = self.free_inodes().map_err(DiskRefusal::Io)? {
            let wanted = self
                .min_free_inodes
                .saturating_add(*in_flight)
                .saturating_add(needed);
            if free < wanted {
                return Err(DiskRefusal::LowInodes {
                    free,
                    in_flight: *in_flight,
                    reserve: self.min_free_inodes,
                });
            }
        }
        *in_flight += hold;
        Ok(())
    }

    /// Bytes available to an unprivileged user on the store's filesystem.
    pub fn free_space(&self) -> io::Result<u64> {
        if let Some(b) = self.assumed_free_space {
            return Ok(b);
        }
        crate::platform::available_space(&self.root)
    }

    /// Starts holding free space for an upload announced as `len` bytes, or
    /// refuses when the filesystem's free space, less what uploads in progress
    /// already hold, less `len`, would fall under `min_free`. The guard holds
    /// nothing yet: [`DiskHold::grow`] holds each received chunk as it comes,
    /// so an upload that only announces a size holds no space for anyone.
    ///
    /// It also holds the [`INODES_PER_UPLOAD`] inodes an upload uses, or refuses
    /// when they would take the free inodes under the inode reserve.
    pub fn hold_disk_space(&self, len: u64, min_free: u64) -> Result<DiskHold<'_>, DiskRefusal> {
        self.take_disk_space(len, 0, min_free)?;
        self.take_inodes(INODES_PER_UPLOAD, INODES_PER_UPLOAD)?;
        Ok(DiskHold {
            store: self,
            len: 0,
        })
    }

    /// Checks that `needed` more bytes fit above the reserve and holds `hold`
    /// of them. The check and the hold are one step, so concurrent uploads can
    /// never each pass on the same free space.
    fn take_disk_space(&self, needed: u64, hold: u64, min_free: u64) -> Result<(), DiskRefusal> {
        let mut in_flight = self
            .disk_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let free = self.free_space().map_err(DiskRefusal::Io)?;
        if free < min_free.saturating_add(*in_flight).saturating_add(needed) {
            return Err(DiskRefusal::Low {
                free,
                in_flight: *in_flight,
                reserve: min_free,
            });
        }
        *in_flight += hold;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mailbox_dir(&self, mailbox: &Fingerprint) -> PathBuf {
        self.mailboxes.join(hex::encode(mailbox.as_bytes()))
    }

    /// A new temp file for an upload.
    pub fn begin_upload(&self) -> io::Result<Upload> {
        let file = tempfile::Builder::new()
            .prefix("upload-")
            .suffix(".part")
            .tempfile_in(&self.tmp)?;
        Ok(Upload {
            file,
            written: 0,
            sha: Sha256::new(),
        })
    }

    /// Validates a complete upload and files it for every recipient its manifest
    /// names, durably, before returning. On any error nothing is filed.
    pub fn deposit(&self, mut upload: Upload) -> Result<Deposited, DepositError> {
        upload.file.flush()?;
        upload.file.as_file().sync_all()?;
        let len = upload.written;
        // The container, the manifest and the signature against the embedded
        // sender key, and the SHA-256 of every entry. Validation is CPU-bound and
        // holds a few MiB of buffers, so only as many run at once as there are cores.
        let verified = {
            let _slot = self.validation_slot();
            crate::open::verify(
                upload.file.path(),
                ExpectedSender::Embedded,
                &mut NoProgress,
            )
        }
        .map_err(|e| match e {
            crate::Error::Io { context, source } => DepositError::Io(io::Error::new(
                source.kind(),
                format!("{context}: {source}"),
            )),
            other => DepositError::NotSxf(other.to_string()),
        })?;
        let mut recipients = verified.manifest.recipients.clone();
        recipients.sort();
        recipients.dedup();
        if recipients.len() > self.limits.max_recipients {
            return Err(DepositError::TooManyRecipients {
                count: recipients.len(),
                max: self.limits.max_recipients,
            });
        }
        let digest: ArchiveDigest = upload.sha.clone().finalize().into();

        // Idempotence: the same bytes already waiting for every recipient (a
        // sender retrying after a lost STORED) get the same id, not a second
        // filing. An identical upload being filed right now is waited for.
        let mut state = self.lock();
        loop {
            if let Some(id) = self.waiting_everywhere(&state, &recipients, &digest)? {
                return Ok(Deposited {
                    id,
                    len,
                    recipients,
                    duplicate: true,
                });
            }
            if !state.filing.contains(&digest) {
                break;
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        let id = MessageId::generate()?;
        state = self.reserve(state, &recipients, len)?;
        state.filing.insert(digest);
        state.reserved_ids.insert(id);
        state.in_flight_ids.insert(id);
        drop(state);

        let committed = self.commit_links(upload, &recipients, id, &digest);
        // The message is counted before any of its names becomes visible, so a
        // recipient's DELETE never subtracts bytes that were not added.
        let mut state = self.lock();
        state.reserved_ids.remove(&id);
        state.stored_reserved -= len;
        if committed.is_ok()
            && let Some(s) = state.stored.as_mut()
        {
            *s += len;
        }
        for r in &recipients {
            if let Some(left) = state.reserved.get_mut(r) {
                *left -= len;
                if *left == 0 {
                    state.reserved.remove(r);
                }
            }
            if committed.is_ok()
                && let Some(b) = state.usage.get_mut(r)
            {
                *b += len;
            }
        }
        drop(state);
        // Past the commit point the message is filed, whatever fails next: a
        // failure is reported, and the sender's retry or the next start-up
        // finishes publishing it (see `waiting_everywhere`).
        let result = committed.and_then(|()| self.publish_links(&recipients, id));
        // Identical uploads wait until the names are visible, so that they find
        // this message instead of filing it again.
        let mut state = self.lock();
        state.filing.remove(&digest);
        state.in_flight_ids.remove(&id);
        for r in &recipients {
            if let Some((_, filed)) = state.watched.get_mut(r) {
                *filed += 1;
            }
        }
        drop(state);
        // Wakes long-polls, and identical uploads waiting for this filing.
        self.changed.notify_all();
        result?;
        Ok(Deposited {
            id,
            len,
            recipients,
            duplicate: false,
        })
    }

    /// Blocks until fewer than `max_validating` uploads are being validated.
    fn validation_slot(&self) -> ValidationSlot<'_> {
        let mut n = self.validating.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= self.max_validating {
            n = self.validated.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n += 1;
        ValidationSlot(self)
    }

    /// The message whose archive has this digest and that waits in every one
    /// of these mailboxes, if any. Only the newest filing of a digest can: an
    /// older one was filed again because a recipient no longer held it.
    ///
    /// A filing that passed its commit point but failed before it was
    /// published (its reply was an error) counts as waiting: this publishes
    /// it, so the sender's retry gets its id and nothing is filed twice.
    fn waiting_everywhere(
        &self,
        state: &State,
        recipients: &[Fingerprint],
        digest: &ArchiveDigest,
    ) -> io::Result<Option<MessageId>> {
        let Some(text) = read_record(&self.digests.join(hex::encode(digest)))? else {
            return Ok(None);
        };
        let Some((id, len, d)) = parse_record_fields(&text) else {
            return Ok(None);
        };
        if d != *digest {
            return Ok(None);
        }
        let committed_unpublished =
            !state.in_flight_ids.contains(&id) && self.commit.join(format!("{id}.sxf")).exists();
        let mut unpublished = false;
        for r in recipients {
            let dir = self.mailbox_dir(r);
            if has_link(&dir.join(format!("{id}.sxf")), len)? {
                continue;
            }
            if committed_unpublished && has_link(&dir.join(format!(".{id}.pending")), len)? {
                unpublished = true;
                continue;
            }
            return Ok(None);
        }
        if unpublished {
            self.publish_links(recipients, id)?;
        }
        Ok(Some(id))
    }

    /// Counts `len` against every recipient's quota and the store cap, or
    /// refuses. With a store cap, waits for the first inventory to know the
    /// store's size.
    fn reserve<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        recipients: &[Fingerprint],
        len: u64,
    ) -> Result<MutexGuard<'a, State>, DepositError> {
        if let Some(max) = self.limits.max_store {
            while state.stored.is_none() && !state.stopping {
                state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            let stored = state.stored.unwrap_or(0) + state.stored_reserved;
            if stored.saturating_add(len) > max {
                return Err(DepositError::StoreFull {
                    stored,
                    size: len,
                    max,
                });
            }
        }
        let quota = self.limits.mailbox_quota;
        for r in recipients {
            let used = self.usage(&mut state, r)? + state.reserved.get(r).copied().unwrap_or(0);
            if used.saturating_add(len) > quota {
                return Err(DepositError::OverQuota {
                    mailbox: r.clone(),
                    used,
                    size: len,
                    quota,
                });
            }
        }
        for r in recipients {
            *state.reserved.entry(r.clone()).or_default() += len;
        }
        state.stored_reserved += len;
        Ok(state)
    }

    /// The bytes waiting in a mailbox: from the cache, or read from its
    /// directory (under the store's lock, so no filing or deletion is half
    /// counted).
    fn usage(&self, state: &mut State, mailbox: &Fingerprint) -> io::Result<u64> {
        if let Some(b) = state.usage.get(mailbox) {
            return Ok(*b);
        }
        let mut bytes = 0u64;
        match fs::read_dir(self.mailbox_dir(mailbox)) {
            Ok(rd) => {
                for e in rd {
                    let e = e?;
                    let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                        continue;
                    };
                    let counted = is_id_name(&name, "", ".sxf").is_some()
                        || is_id_name(&name, ".", ".pending")
                            .is_some_and(|id| !state.reserved_ids.contains(&id));
                    if counted {
                        match e.metadata() {
                            Ok(m) => bytes += m.len(),
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        state.usage.put(mailbox.clone(), bytes);
        Ok(bytes)
    }

    /// The intent record, pending links and digest records in every mailbox,
    /// the digest pointer, then the commit rename. [`Store::publish_links`]
    /// makes the names visible.
    fn commit_links(
        &self,
        upload: Upload,
        recipients: &[Fingerprint],
        id: MessageId,
        digest: &ArchiveDigest,
    ) -> io::Result<()> {
        let pending_name = format!(".{id}.pending");
        let final_name = format!("{id}.sxf");
        let record_name = digest_record_name(&id);
        // One digest record, durable before it is linked anywhere; the temp name
        // goes when `record` drops, its links in the mailboxes stay.
        let record = durable_temp(
            &self.tmp,
            "digest-",
            &digest_record(&id, upload.written, digest),
        )?;
        // The intent: which mailboxes to finish or undo after a crash.
        let intent_path = self.filing.join(id.to_string());
        durable_temp(&self.tmp, "intent-", &intent_record(digest, recipients))?
            .persist_noclobber(&intent_path)
            .map_err(|e| e.error)?;
        sync_dir(&self.filing)?;
        let undo_intent = |made: &[PathBuf]| {
            for p in made {
                let _ = fs::remove_file(p);
            }
            let _ = fs::remove_file(&intent_path);
        };
        // New mailbox directories take inodes too: within the reserve, or
        // the message is not filed.
        let new_boxes = recipients
            .iter()
            .filter(|r| !self.mailbox_dir(r).exists())
            .count() as u64;
        if new_boxes > 0
            && let Err(e) = self.take_inodes(new_boxes, 0)
        {
            undo_intent(&[]);
            return Err(match e {
                DiskRefusal::LowInodes {
                    free,
                    in_flight,
                    reserve,
                } => io::Error::new(
                    io::ErrorKind::StorageFull,
                    format!(
                        "the server is low on inodes ({free} free, {in_flight} held for uploads in \
                         progress, it keeps {reserve} in reserve; this message needs {new_boxes} \
                         new mailbox(es)); try again later"
                    ),
                ),
                DiskRefusal::Io(e) => e,
                DiskRefusal::Low { .. } => io::ErrorKind::StorageFull.into(),
            });
        }
        let mut made = Vec::new();
        let linked = (|| -> io::Result<()> {
            for r in recipients {
                let dir = self.mailbox_dir(r);
                if !dir.exists() {
                    match crate::platform::private_dir_builder().create(&dir) {
                        Ok(()) => sync_dir(&self.mailboxes)?,
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(e),
                    }
                }
                let pending = dir.join(&pending_name);
                fs::hard_link(upload.file.path(), &pending)?;
                made.push(pending);
                let record_link = dir.join(&record_name);
                fs::hard_link(record.path(), &record_link)?;
                made.push(record_link);
                sync_dir(&dir)?;
            }
            // The digest pointer: one more link to the record, replacing the
            // pointer to any older filing of the same bytes.
            let staged = self.tmp.join(format!("pointer-{id}.part"));
            fs::hard_link(record.path(), &staged)?;
            fs::rename(&staged, self.digests.join(hex::encode(digest)))?;
            sync_dir(&self.digests)
        })();
        if let Err(e) = linked {
            let _ = self.forget_digest(digest, &id);
            undo_intent(&made);
            return Err(e);
        }
        // The commit point.
        let commit_path = self.commit.join(&final_name);
        if let Err(e) = upload.file.persist(&commit_path) {
            let _ = self.forget_digest(digest, &id);
            undo_intent(&made);
            return Err(e.error);
        }
        Ok(())
    }

    /// Past the commit point: the commit record durable, the visible names,
    /// then the intent record, then the commit record. A failure here is
    /// finished by a retry of the same archive or by the next start-up, so
    /// this may run again for the same message: a pending link already
    /// renamed is skipped.
    fn publish_links(&self, recipients: &[Fingerprint], id: MessageId) -> io::Result<()> {
        #[cfg(test)]
        if let Some(hook) = self.after_commit.lock().unwrap().as_mut() {
            hook(self)?;
        }
        let pending_name = format!(".{id}.pending");
        let final_name = format!("{id}.sxf");
        sync_dir(&self.commit)?;
        for r in recipients {
            let dir = self.mailbox_dir(r);
            match fs::rename(dir.join(&pending_name), dir.join(&final_name)) {
                Ok(()) => sync_dir(&dir)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        remove_if_present(&self.filing.join(id.to_string()))?;
        sync_dir(&self.filing)?;
        remove_if_present(&self.commit.join(&final_name))?;
        Ok(())
    }

    /// The oldest waiting messages (at most `max`), and whether there are more.
    /// Holds at most `max + 1` ids in memory, however full the mailbox.
    pub fn list(&self, mailbox: &Fingerprint, max: usize) -> io::Result<(Vec<ListEntry>, bool)> {
        let dir = self.mailbox_dir(mailbox);
        // A max-heap of the smallest ids seen: the largest is dropped first.
        let mut ids = BinaryHeap::new();
        match fs::read_dir(&dir) {
            Ok(rd) => {
                for e in rd {
                    if let Some(id) = e?
                        .file_name()
                        .to_str()
                        .and_then(|n| is_id_name(n, "", ".sxf"))
                    {
                        ids.push(id);
                        if ids.len() > max + 1 {
                            ids.pop();
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let ids = ids.into_sorted_vec();
        let more = ids.len() > max;
        let mut out = Vec::new();
        for id in ids.into_iter().take(max) {
            match fs::metadata(dir.join(format!("{id}.sxf"))) {
                Ok(m) => out.push(ListEntry {
                    id,
                    len: m.len(),
                    received: m
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs()),
                }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {} // deleted meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok((out, more))
    }

    /// Opens a waiting message for reading; `None` if there is no such message.
    pub fn open_message(
        &self,
        mailbox: &Fingerprint,
        id: &MessageId,
    ) -> io::Result<Option<(File, u64)>> {
        match File::open(self.mailbox_dir(mailbox).join(format!("{id}.sxf"))) {
            Ok(f) => {
                let len = f.metadata()?.len();
                Ok(Some((f, len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes a message from one mailbox durably; `false` if there was no
    /// such message.
    pub fn delete(&self, mailbox: &Fingerprint, id: &MessageId) -> io::Result<bool> {
        Ok(self.remove_message(mailbox, id)?.is_some())
    }

    /// Removes one mailbox's link to a message, its digest record, and the
    /// digest pointer (the message no longer waits everywhere). Returns the
    /// message's length, or `None` if it was not there.
    fn remove_message(&self, mailbox: &Fingerprint, id: &MessageId) -> io::Result<Option<u64>> {
        let dir = self.mailbox_dir(mailbox);
        let path = dir.join(format!("{id}.sxf"));
        let record = dir.join(digest_record_name(id));
        let (len, links) = match File::open(&path) {
            Ok(f) => (f.metadata()?.len(), crate::platform::link_count(&f)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Some(digest) = read_record(&record)?.and_then(|t| parse_digest_record(&t, id, len)) {
            self.forget_digest(&digest, id)?;
        }
        // The link count and the unlink under the store's lock: of two
        // recipients deleting at once, exactly one removes the last link.
        let mut state = self.lock();
        if !remove_if_present(&path)? {
            return Ok(None);
        }
        if let Some(b) = state.usage.get_mut(mailbox) {
            *b = b.saturating_sub(len);
        }
        let committing = self.commit.join(format!("{id}.sxf")).exists();
        let other_links = links.saturating_sub(1 + u64::from(committing));
        if other_links == 0
            && let Some(s) = state.stored.as_mut()
        {
            *s = s.saturating_sub(len);
        }
        drop(state);
        // A record left by a crash here is removed by the next inventory.
        remove_if_present(&record)?;
        sync_dir(&dir)?;
        Ok(Some(len))
    }

    /// True if the mailbox holds a waiting message.
    fn has_message(&self, mailbox: &Fingerprint) -> bool {
        let Ok(rd) = fs::read_dir(self.mailbox_dir(mailbox)) else {
            return false;
        };
        rd.filter_map(Result::ok).any(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| is_id_name(n, "", ".sxf").is_some())
        })
    }

    /// Blocks until the mailbox holds a message (true), or `timeout` passes or
    /// the store is stopping (false). Never polls: it sleeps on a condition
    /// variable, and looks at the mailbox's directory (outside the store's
    /// lock) only when a filing for this mailbox woke it.
    pub fn wait(&self, mailbox: &Fingerprint, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        state.watched.entry(mailbox.clone()).or_default().0 += 1;
        let ready = loop {
            let filed = state.watched.get(mailbox).map_or(0, |w| w.1);
            drop(state);
            let ready = self.has_message(mailbox);
            state = self.lock();
            if ready {
                break true;
            }
            loop {
                let now = Instant::now();
                if state.stopping || now >= deadline {
                    break;
                }
                if state.watched.get(mailbox).map_or(0, |w| w.1) != filed {
                    break;
                }
                state = self
                    .changed
                    .wait_timeout(state, deadline - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            if state.watched.get(mailbox).map_or(0, |w| w.1) == filed {
                break false; // stopping, or the deadline passed
            }
        };
        if let Some(w) = state.watched.get_mut(mailbox) {
            w.0 -= 1;
            if w.0 == 0 {
                state.watched.remove(mailbox);
            }
        }
        ready
    }

    /// Wakes every waiter and makes further waits return at once.
    pub fn stop_waiters(&self) {
        self.lock().stopping = true;
        self.changed.notify_all();
    }

    /// Sleeps for `d`, or until the store is stopping; false if it is.
    pub fn pause(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut state = self.lock();
        while !state.stopping {
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        false
    }

    /// Bytes waiting in the whole store, each message once; `None` before the
    /// first inventory.
    pub fn stored_bytes(&self) -> Option<u64> {
        self.lock().stored
    }

    /// Every mailbox directory: its fingerprint and path. Directories that
    /// are not a fingerprint's hex are not ours and are never touched.
    fn each_mailbox(&self) -> io::Result<impl Iterator<Item = (Fingerprint, PathBuf)>> {
        Ok(fs::read_dir(&self.mailboxes)?.filter_map(|e| {
            let e = e.ok()?;
            let fp = Fingerprint::parse(&format!(
                "{}{}",
                Fingerprint::PREFIX,
                e.file_name().to_str()?
            ))?;
            Some((fp, e.path()))
        }))
    }

    /// The first pass over every mailbox, streamed (memory does not depend on
    /// the number of messages): counts the store once per message, expires
    /// what is older than `max_age` (reported through `expired`), gives a
    /// digest record to any message without one, and finishes or removes what
    /// a crash left in a store written before intent records. Uploads that
    /// need the store's size (`--max-store`) wait for it.
    pub fn inventory(
        &self,
        max_age: Duration,
        expired: &mut dyn FnMut(Expired),
    ) -> io::Result<Inventory> {
        let started = Instant::now();
        let mut inv = self.count_and_repair(max_age, expired)?;
        self.lock().stored = Some(inv.bytes);
        self.changed.notify_all();
        inv.took = started.elapsed();
        Ok(inv)
    }

    fn count_and_repair(
        &self,
        max_age: Duration,
        expired: &mut dyn FnMut(Expired),
    ) -> io::Result<Inventory> {
        let mut inv = Inventory::default();
        let mut tally = LinkTally::default();
        let now = SystemTime::now();
        for (fp, dir) in self.each_mailbox()? {
            let mut holds = false;
            for m in fs::read_dir(&dir)? {
                let m = m?;
                let Some(name) = m.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if let Some(id) = is_id_name(&name, "", ".sxf") {
                    let path = m.path();
                    let Ok(f) = File::open(&path) else { continue };
                    let meta = f.metadata()?;
                    let links = self.mailbox_links(&f, &id)?;
                    drop(f);
                    let age = meta
                        .modified()
                        .ok()
                        .and_then(|t| now.duration_since(t).ok())
                        .unwrap_or_default();
                    if age > max_age {
                        if let Some(len) = self.remove_message(&fp, &id)? {
                            expired(Expired {
                                mailbox: fp.clone(),
                                id,
                                len,
                                age,
                            });
                        }
                        continue;
                    }
                    holds = true;
                    tally.add(links, meta.len());
                    if !dir.join(digest_record_name(&id)).exists() {
                        let digest = hash_file(&path)?;
                        let record = durable_temp(
                            &self.tmp,
                            "digest-",
                            &digest_record(&id, meta.len(), &digest),
                        )?;
                        let pointer = self.digests.join(hex::encode(digest));
                        if !pointer.exists() {
                            let _ = fs::hard_link(record.path(), &pointer);
                        }
                        fs::hard_link(record.path(), dir.join(digest_record_name(&id)))?;
                        sync_dir(&dir)?;
                        inv.rehashed += 1;
                    }
                } else if let Some(id) = is_id_name(&name, ".", ".pending") {
                    if self.lock().in_flight_ids.contains(&id) {
                        continue;
                    }
                    // No filing in progress: left by a crash in a store
                    // written before intent records, or by a filing that
                    // failed after its commit point (its intent and commit
                    // records stay for the next start-up).
                    if self.commit.join(format!("{id}.sxf")).exists() {
                        let published = dir.join(format!("{id}.sxf"));
                        match fs::rename(m.path(), &published) {
                            Ok(()) => {}
                            // A retry of the same archive published it.
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => return Err(e),
                        }
                        if let Ok(f) = File::open(&published) {
                            tally.add(self.mailbox_links(&f, &id)?, f.metadata()?.len());
                            holds = true;
                        }
                    } else {
                        remove_if_present(&m.path())?;
                    }
                    sync_dir(&dir)?;
                    inv.leftovers += 1;
                } else if let Some(id) = is_id_name(&name, ".", ".sha256") {
                    let orphan = !dir.join(format!("{id}.sxf")).exists()
                        && !dir.join(format!(".{id}.pending")).exists()
                        && !self.lock().in_flight_ids.contains(&id);
                    if orphan {
                        remove_if_present(&m.path())?;
                        inv.leftovers += 1;
                    }
                }
            }
            if holds {
                inv.mailboxes += 1;
            }
        }
        // Commit records of such old filings, now finished.
        for e in fs::read_dir(&self.commit)? {
            let e = e?;
            if let Some(id) = e
                .file_name()
                .to_str()
                .and_then(|n| is_id_name(n, "", ".sxf"))
                && !self.lock().in_flight_ids.contains(&id)
                && !self.filing.join(id.to_string()).exists()
            {
                remove_if_present(&e.path())?;
                inv.leftovers += 1;
            }
        }
        (inv.messages, inv.bytes) = tally.totals();
        Ok(inv)
    }

    /// How many mailboxes link this open message: its link count, less the
    /// commit record of a filing not yet finished.
    fn mailbox_links(&self, f: &File, id: &MessageId) -> io::Result<u64> {
        let links = crate::platform::link_count(f)?;
        let committing = self.commit.join(format!("{id}.sxf")).exists();
        Ok(links.saturating_sub(u64::from(committing)).max(1))
    }

    /// One expiry pass: removes every message that has waited longer than
    /// `max_age`, reporting each through `expired`. Streams the directories.
    pub fn expire(&self, max_age: Duration, expired: &mut dyn FnMut(Expired)) -> io::Result<()> {
        let now = SystemTime::now();
        for (fp, dir) in self.each_mailbox()? {
            for m in fs::read_dir(&dir)? {
                let m = m?;
                let Some(id) = m
                    .file_name()
                    .to_str()
                    .and_then(|n| is_id_name(n, "", ".sxf"))
                else {
                    continue;
                };
                let Ok(meta) = m.metadata() else { continue };
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .unwrap_or_default();
                if age > max_age
                    && let Some(len) = self.remove_message(&fp, &id)?
                {
                    expired(Expired {
                        mailbox: fp.clone(),
                        id,
                        len,
                        age,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Why [`Store::hold_disk_space`] refused.
#[derive(Debug)]
pub enum DiskRefusal {
    /// The reserve would be breached.
    Low {
        free: u64,
        in_flight: u64,
        reserve: u64,
    },
    /// The inode reserve would be breached.
    LowInodes {
        free: u64,
        in_flight: u64,
        reserve: u64,
    },
    /// The free space could not be read.
    Io(io::Error),
}

/// Inodes one upload uses while it is filed: the archive, its digest record
/// and the commit record (links in the mailboxes take none). A new mailbox
/// directory takes one more, checked when it is made.
pub const INODES_PER_UPLOAD: u64 = 3;

/// Free space held for one upload in progress: the bytes received so far.
/// Released on drop, whether the upload was filed or failed.
pub struct DiskHold<'a> {
    store: &'a Store,
    len: u64,
}

impl DiskHold<'_> {
    /// Holds `n` more bytes (a chunk about to be written), or refuses when they
    /// would breach the reserve.
    pub fn grow(&mut self, n: u64, min_free: u64) -> Result<(), DiskRefusal> {
        self.store.take_disk_space(n, n, min_free)?;
        self.len += n;
        Ok(())
    }
}

impl Drop for DiskHold<'_> {
    fn drop(&mut self) {
        let mut n = self
            .store
            .disk_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(self.len);
        drop(n);
        let mut inodes = self
            .store
            .inodes_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *inodes = inodes.saturating_sub(INODES_PER_UPLOAD);
    }
}

/// One of the limited validation slots; released on drop.
struct ValidationSlot<'a>(&'a Store);

impl Drop for ValidationSlot<'_> {
    fn drop(&mut self) {
        *self.0.validating.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.0.validated.notify_one();
    }
}

/// The server's TLS private key (`tls-key.der`, PKCS#8, private to the
/// server's user) and self-signed certificate (`tls-cert.der`), each created
/// when missing and written whole or not at all. The certificate is made from
/// the key, so one lost between the two writes is made again at the next start
/// with the same server id. A certificate that is not the key's is refused.
pub const TLS_KEY_FILE: &str = "tls-key.der";
/// See [`TLS_KEY_FILE`].
pub const TLS_CERT_FILE: &str = "tls-cert.der";

fn load_or_create_tls_identity(root: &Path) -> io::Result<super::tls::Identity> {
    let key_path = root.join(TLS_KEY_FILE);
    let cert_path = root.join(TLS_CERT_FILE);
    let invalid = |path: &Path, what: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what}", path.display()),
        )
    };
    let key = match read_small(&key_path)? {
        Some(key) => zeroize::Zeroizing::new(key),
        None => {
            if cert_path.exists() {
                return Err(invalid(
                    &cert_path,
                    format!(
                        "there is a certificate but no key ({TLS_KEY_FILE}); restore the key or remove the certificate"
                    ),
                ));
            }
            let key = super::tls::generate_key()
                .map_err(|e| invalid(&key_path, format!("making a TLS key: {e}")))?;
            write_new_file(root, &key_path, &key, true)?;
            key
        }
    };
    let cert = match read_small(&cert_path)? {
        Some(cert) => cert,
        None => {
            let cert = super::tls::self_signed_cert(&key)
                .map_err(|e| invalid(&key_path, format!("not a usable TLS key: {e}")))?;
            write_new_file(root, &cert_path, &cert, false)?;
            cert
        }
    };
    let identity = super::tls::Identity::from_der(key.to_vec(), cert)
        .map_err(|e| invalid(&cert_path, format!("not a usable certificate: {e}")))?;
    super::tls::server_config(&identity)
        .map_err(|e| invalid(&cert_path, format!("does not go with {TLS_KEY_FILE}: {e}")))?;
    Ok(identity)
}

/// A whole file of at most 64 KiB, or `None` when it does not exist.
fn read_small(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ctx(format!("reading {}", path.display()), e)),
    };
    let mut buf = Vec::new();
    file.take(64 << 10)
        .read_to_end(&mut buf)
        .map_err(|e| ctx(format!("reading {}", path.display()), e))?;
    Ok(Some(buf))
}

/// Writes a file that must not exist yet: a temp file (0600 when `private`),
/// fsync, a rename that replaces nothing, an fsync of the directory.
fn write_new_file(root: &Path, path: &Path, contents: &[u8], private: bool) -> io::Result<()> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tls-");
    if private {
        crate::platform::set_temp_mode(&mut builder, 0o600);
    }
    let mut tmp = builder.tempfile_in(root)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist_noclobber(path).map_err(|e| e.error)?;
    sync_dir(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signed archive for bob and dave (the spec's `basic` vector).
    const ARCHIVE: &[u8] = include_bytes!("../../spec/vectors/basic.sxf");

    fn test_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("store"), StoreLimits::default()).unwrap();
        (dir, store)
    }

    fn upload(store: &Store) -> Upload {
        let mut up = store.begin_upload().unwrap();
        up.write_all(ARCHIVE).unwrap();
        up
    }

    /// Every recipient's mailbox lists exactly `id`, and no filing is left
    /// half done.
    fn assert_filed_once(store: &Store, recipients: &[Fingerprint], id: MessageId) {
        assert!(!recipients.is_empty());
        for r in recipients {
            let (listed, more) = store.list(r, 100).unwrap();
            let ids: Vec<_> = listed.iter().map(|e| e.id).collect();
            assert_eq!((ids, more), (vec![id], false), "{r}");
        }
    }

    #[test]
    fn a_retry_after_a_failed_sync_past_the_commit_point_files_nothing_twice() {
        let (_dir, store) = test_store();
        *store.after_commit.lock().unwrap() =
            Some(Box::new(|_| Err(io::Error::other("injected sync failure"))));
        store.deposit(upload(&store)).unwrap_err();
        *store.after_commit.lock().unwrap() = None;
        // The sender saw an error and sends the same archive again.
        let retry = store.deposit(upload(&store)).unwrap();
        assert!(retry.duplicate, "filed a second time as {}", retry.id);
        assert_filed_once(&store, &retry.recipients, retry.id);
        // A restart finishes nothing a second time either.
        let root = store.root().to_owned();
        drop(store);
        let (store, _) = Store::open(&root, StoreLimits::default()).unwrap();
        assert_filed_once(&store, &retry.recipients, retry.id);
    }

    #[test]
    fn the_housekeeping_pass_running_while_a_message_is_published_never_fails_it() {
        let (_dir, store) = test_store();
        *store.after_commit.lock().unwrap() = Some(Box::new(|s: &Store| {
            s.inventory(Duration::from_secs(3600), &mut |_| {})
                .map(drop)
        }));
        let filed = store.deposit(upload(&store)).unwrap();
        assert_filed_once(&store, &filed.recipients, filed.id);
        assert_eq!(fs::read_dir(&store.filing).unwrap().count(), 0);
        assert_eq!(fs::read_dir(&store.commit).unwrap().count(), 0);
    }

    #[test]
    fn a_digest_record_is_believed_only_for_its_own_message_and_length() {
        let id = MessageId([7; 16]);
        let other = MessageId([8; 16]);
        let digest = [0xab; 32];
        let text = digest_record(&id, 2130, &digest);
        assert_eq!(parse_digest_record(&text, &id, 2130), Some(digest));
        assert_eq!(parse_digest_record(&text, &other, 2130), None);
        assert_eq!(parse_digest_record(&text, &id, 2131), None);
        for bad in [
            "",
            "\n",
            &text[..text.len() - 1],
            &text[..text.len() - 2],
            &format!("{text}x"),
            &text.to_uppercase(),
            &text.replace(' ', "  "),
            &format!("{} extra\n", text.trim_end()),
        ] {
            assert_eq!(parse_digest_record(bad, &id, 2130), None, "{bad:?}");
        }
    }

    #[test]
    fn the_link_tally_counts_each_message_once_however_many_links_it_has() {
        let mut t = LinkTally::default();
        // One 100-byte message in three mailboxes, two 7-byte ones in one.
        for _ in 0..3 {
            t.add(3, 100);
        }
        t.add(1, 7);
        t.add(1, 7);
        assert_eq!(t.totals(), (3, 114));
    }

    #[test]
    fn an_intent_record_round_trips_and_rejects_anything_else() {
        let fp = |b: u8| Fingerprint::of_spki_der(&[b]);
        let (bob, dave) = (fp(1), fp(2));
        let digest = [0xcd; 32];
        let text = intent_record(&digest, &[bob.clone(), dave.clone()]);
        let (d, dirs) = parse_intent_record(&text).unwrap();
        assert_eq!(d, digest);
        assert_eq!(
            dirs,
            vec![hex::encode(bob.as_bytes()), hex::encode(dave.as_bytes())]
        );
        for bad in [
            "",
            &text[..text.len() - 1],
            &text.replace('c', "C"),
            &format!("{text}../x\n"),
            &format!("{text}\n"),
        ] {
            assert!(parse_intent_record(bad).is_none(), "{bad:?}");
        }
    }
}
