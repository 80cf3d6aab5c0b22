//! The drop-box's durable store: mailboxes on disk, crash-safe filing, quotas,
//! and the condition variable that wakes long-polling fetchers.
//!
//! Layout under the store directory (see `spec/DROPBOX.md`, "Store"):
//!
//! ```text
//! server-id                      64 hex digits: this server's identity
//! lock                           locked (File::try_lock) while a server runs on this store
//! tmp/upload-*.part              uploads being received (swept at start-up)
//! commit/<id>.sxf                the commit record of a message being filed
//! mailboxes/<64 hex>/<id>.sxf    a waiting message (one hard link per recipient)
//! mailboxes/<64 hex>/.<id>.sha256    its digest record (one hard link per recipient)
//! mailboxes/<64 hex>/.<id>.pending   a link made before the commit point
//! ```
//!
//! Filing a message is all-or-nothing across its recipients: pending links are
//! made and synced in every mailbox, then one rename into `commit/` is the
//! commit point, then the pending links are renamed into view. Start-up finishes
//! every committed message and removes every uncommitted one. No name under the
//! store ever comes from a client: mailbox directories are the hex of a parsed
//! [`Fingerprint`] and file names are server-generated [`MessageId`]s.
//!
//! Uploads are idempotent: the SHA-256 of every waiting archive is kept in
//! memory (and in its digest record, so start-up need not re-read the archives),
//! and an upload byte-identical to a message still waiting in every one of its
//! recipients' mailboxes is answered with that message's id instead of being
//! filed again.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::NoProgress;
use crate::keys::Fingerprint;
use crate::open::ExpectedSender;

use super::protocol::{ListEntry, MessageId};

/// What opening a store found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub messages: u64,
    pub mailboxes: u64,
    pub bytes: u64,
    /// Leftover upload temp files removed.
    pub swept_temp_files: u64,
    /// Messages whose filing was committed but not finished before a crash.
    pub recovered: u64,
    /// Pending links of uncommitted messages removed.
    pub discarded_pending: u64,
    /// Waiting messages whose digest record was missing or unreadable, hashed
    /// again and recorded.
    pub rehashed: u64,
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

/// One mailbox in memory: its usage and the digest of every waiting message.
#[derive(Debug, Default)]
struct Mailbox {
    bytes: u64,
    /// Bytes of messages being filed right now, counted against the quota.
    reserved: u64,
    digests: HashMap<MessageId, ArchiveDigest>,
    by_digest: HashMap<ArchiveDigest, BTreeSet<MessageId>>,
}

impl Mailbox {
    fn count(&self) -> usize {
        self.digests.len()
    }

    fn insert(&mut self, id: MessageId, digest: ArchiveDigest, len: u64) {
        self.bytes += len;
        self.digests.insert(id, digest);
        self.by_digest.entry(digest).or_default().insert(id);
    }

    fn remove(&mut self, id: &MessageId, len: u64) {
        self.bytes = self.bytes.saturating_sub(len);
        if let Some(d) = self.digests.remove(id)
            && let Some(ids) = self.by_digest.get_mut(&d)
        {
            ids.remove(id);
            if ids.is_empty() {
                self.by_digest.remove(&d);
            }
        }
    }
}

#[derive(Debug, Default)]
struct State {
    boxes: HashMap<Fingerprint, Mailbox>,
    /// Digests of uploads being filed right now: an identical upload waits for
    /// the filing to finish, then finds it (or files, if it failed).
    filing: HashSet<ArchiveDigest>,
    stopping: bool,
}

impl State {
    /// The oldest message with this digest that waits in every one of these
    /// mailboxes, if any.
    fn waiting_everywhere(
        &self,
        recipients: &[Fingerprint],
        digest: &ArchiveDigest,
    ) -> Option<MessageId> {
        let (first, rest) = recipients.split_first()?;
        let candidates = self.boxes.get(first)?.by_digest.get(digest)?;
        candidates.iter().copied().find(|id| {
            rest.iter().all(|r| {
                self.boxes
                    .get(r)
                    .and_then(|b| b.by_digest.get(digest))
                    .is_some_and(|ids| ids.contains(id))
            })
        })
    }
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

/// The store. Shared by every connection thread.
pub struct Store {
    root: PathBuf,
    tmp: PathBuf,
    commit: PathBuf,
    mailboxes: PathBuf,
    quota: u64,
    server_id: [u8; 32],
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
    _lock: File,
}

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

fn parse_digest_record(text: &str, id: &MessageId, len: u64) -> Option<ArchiveDigest> {
    let mut parts = text.strip_suffix('\n')?.split(' ');
    let (rid, rlen, rhex) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || MessageId::parse(rid)? != *id || rlen != len.to_string() {
        return None;
    }
    crate::parse_lower_hex(rhex)
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

/// Writes a digest record durably into `dir` (made in `tmp`, fsynced, renamed;
/// the caller fsyncs `dir`).
fn write_digest_record(
    tmp: &Path,
    dir: &Path,
    id: &MessageId,
    len: u64,
    digest: &ArchiveDigest,
) -> io::Result<()> {
    let mut f = tempfile::Builder::new()
        .prefix("digest-")
        .suffix(".part")
        .tempfile_in(tmp)?;
    f.write_all(digest_record(id, len, digest).as_bytes())?;
    f.as_file().sync_all()?;
    f.persist(dir.join(digest_record_name(id)))
        .map_err(|e| e.error)?;
    Ok(())
}

impl Store {
    /// Opens (creating if needed) a store, takes its lock, sweeps temp files and
    /// finishes or discards interrupted filings.
    pub fn open(root: &Path, quota: u64) -> io::Result<(Store, OpenReport)> {
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
        let commit = root.join("commit");
        let mailboxes = root.join("mailboxes");
        for d in [&tmp, &commit, &mailboxes] {
            private_dir_all(d).map_err(|e| ctx(format!("creating {}", d.display()), e))?;
        }
        sync_dir(root)?;
        let server_id = load_or_create_server_id(root)?;
        let mut report = OpenReport::default();

        // 1. Uploads that never finished.
        for entry in fs::read_dir(&tmp)? {
            let entry = entry?;
            fs::remove_file(entry.path())
                .map_err(|e| ctx(format!("removing {}", entry.path().display()), e))?;
            report.swept_temp_files += 1;
        }
        sync_dir(&tmp)?;

        // 2. Commit records of filings that a crash interrupted.
        let mut committed = Vec::new();
        for entry in fs::read_dir(&commit)? {
            let entry = entry?;
            if let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| is_id_name(n, "", ".sxf"))
            {
                committed.push(id);
            }
        }

        // 3. Every mailbox: finish committed pending links, drop the rest, count,
        // and load (or rebuild) the digest of every waiting message.
        let mut boxes = HashMap::new();
        let mut hashed: HashMap<(u64, u64), ArchiveDigest> = HashMap::new();
        for entry in fs::read_dir(&mailboxes)? {
            let entry = entry?;
            let Some(fp) = entry
                .file_name()
                .to_str()
                .and_then(|n| Fingerprint::parse(&format!("{}{n}", Fingerprint::PREFIX)))
            else {
                continue; // not ours; never touched
            };
            let dir = entry.path();
            let mut mailbox = Mailbox::default();
            let mut changed = false;
            for m in fs::read_dir(&dir)? {
                let m = m?;
                let Some(name) = m.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if let Some(id) = is_id_name(&name, ".", ".pending") {
                    if committed.contains(&id) {
                        fs::rename(m.path(), dir.join(format!("{id}.sxf")))?;
                        report.recovered += 1;
                    } else {
                        fs::remove_file(m.path())?;
                        report.discarded_pending += 1;
                    }
                    changed = true;
                }
            }
            // Waiting messages and their digest records.
            let mut waiting = Vec::new();
            let mut records = HashSet::new();
            for m in fs::read_dir(&dir)? {
                let m = m?;
                let Some(name) = m.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if let Some(id) = is_id_name(&name, "", ".sxf") {
                    waiting.push((id, m.metadata()?.len()));
                } else if let Some(id) = is_id_name(&name, ".", ".sha256") {
                    records.insert(id);
                }
            }
            for (id, len) in &waiting {
                let record = dir.join(digest_record_name(id));
                let known = if records.remove(id) {
                    fs::read_to_string(&record)
                        .ok()
                        .and_then(|t| parse_digest_record(&t, id, *len))
                } else {
                    None
                };
                let digest = match known {
                    Some(d) => d,
                    None => {
                        // Missing (a store from before digest records) or
                        // unreadable. A message in several mailboxes is one file
                        // with several links: hash it once.
                        let path = dir.join(format!("{id}.sxf"));
                        let inode = crate::platform::file_identity(&fs::metadata(&path)?);
                        let d = match inode.and_then(|i| hashed.get(&i)) {
                            Some(d) => *d,
                            None => {
                                let d = hash_file(&path)?;
                                if let Some(i) = inode {
                                    hashed.insert(i, d);
                                }
                                d
                            }
                        };
                        write_digest_record(&tmp, &dir, id, *len, &d)?;
                        report.rehashed += 1;
                        changed = true;
                        d
                    }
                };
                mailbox.insert(*id, digest, *len);
            }
            // Records whose message is gone (a crash during a DELETE, or an
            // uncommitted filing).
            for id in records {
                fs::remove_file(dir.join(digest_record_name(&id)))?;
                changed = true;
            }
            if changed {
                sync_dir(&dir)?;
            }
            report.messages += mailbox.count() as u64;
            report.bytes += mailbox.bytes;
            if mailbox.count() > 0 {
                report.mailboxes += 1;
            }
            boxes.insert(fp, mailbox);
        }
        for id in &committed {
            fs::remove_file(commit.join(format!("{id}.sxf")))?;
        }
        if !committed.is_empty() {
            sync_dir(&commit)?;
        }
        Ok((
            Store {
                root: root.to_owned(),
                tmp,
                commit,
                mailboxes,
                quota,
                server_id,
                assumed_free_space: None,
                disk_in_flight: Mutex::new(0),
                assumed_free_inodes: None,
                min_free_inodes: super::DEFAULT_MIN_FREE_INODES,
                inodes_in_flight: Mutex::new(0),
                state: Mutex::new(State {
                    boxes,
                    filing: HashSet::new(),
                    stopping: false,
                }),
                changed: Condvar::new(),
                validating: Mutex::new(0),
                validated: Condvar::new(),
                max_validating: std::thread::available_parallelism().map_or(2, |n| n.get()),
                _lock: lock,
            },
            report,
        ))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This server's identity, stored in `server-id`.
    pub fn server_id(&self) -> &[u8; 32] {
        &self.server_id
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
        let digest: ArchiveDigest = upload.sha.clone().finalize().into();

        // Idempotence: the same bytes already waiting for every recipient (a
        // sender retrying after a lost STORED) get the same id, not a second
        // filing. An identical upload being filed right now is waited for.
        let mut state = self.lock();
        loop {
            if let Some(id) = state.waiting_everywhere(&recipients, &digest) {
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
        Self::reserve(&mut state, self.quota, &recipients, len)?;
        state.filing.insert(digest);
        drop(state);

        let committed = MessageId::generate().and_then(|id| {
            self.commit_links(upload, &recipients, id, &digest)
                .map(|_| id)
        });
        // The message is known in memory before any of its names becomes
        // visible: a recipient's DELETE can then never remove a file whose id
        // memory does not hold yet (memory would keep a message that is gone).
        let mut state = self.lock();
        state.filing.remove(&digest);
        for r in &recipients {
            let b = state.boxes.entry(r.clone()).or_default();
            b.reserved -= len;
            if let Ok(id) = &committed {
                b.insert(*id, digest, len);
            }
        }
        drop(state);
        let result = committed.and_then(|id| self.publish_links(&recipients, id).map(|_| id));
        // Wakes long-polls, and identical uploads waiting for this filing.
        self.changed.notify_all();
        Ok(Deposited {
            id: result?,
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

    /// Counts `len` against every recipient's quota, or refuses.
    fn reserve(
        state: &mut State,
        quota: u64,
        recipients: &[Fingerprint],
        len: u64,
    ) -> Result<(), DepositError> {
        for r in recipients {
            let used = state.boxes.get(r).map_or(0, |b| b.bytes + b.reserved);
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
            state.boxes.entry(r.clone()).or_default().reserved += len;
        }
        Ok(())
    }

    /// Pending links (and digest records) in every mailbox, then the commit
    /// rename. [`Store::publish_links`] makes the names visible.
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
        let mut record = tempfile::Builder::new()
            .prefix("digest-")
            .suffix(".part")
            .tempfile_in(&self.tmp)?;
        record.write_all(digest_record(&id, upload.written, digest).as_bytes())?;
        record.as_file().sync_all()?;
        // New mailbox directories take inodes too: within the reserve, or
        // the message is not filed.
        let new_boxes = recipients
            .iter()
            .filter(|r| !self.mailbox_dir(r).exists())
            .count() as u64;
        if new_boxes > 0 {
            match self.take_inodes(new_boxes, 0) {
                Ok(()) => {}
                Err(DiskRefusal::LowInodes {
                    free,
                    in_flight,
                    reserve,
                }) => {
                    return Err(io::Error::new(
                        io::ErrorKind::StorageFull,
                        format!(
                            "the server is low on inodes ({free} free, {in_flight} held for uploads in \
                             progress, it keeps {reserve} in reserve; this message needs {new_boxes} \
                             new mailbox(es)); try again later"
                        ),
                    ));
                }
                Err(DiskRefusal::Io(e)) => return Err(e),
                Err(DiskRefusal::Low { .. }) => return Err(io::ErrorKind::StorageFull.into()),
            }
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
            Ok(())
        })();
        if let Err(e) = linked {
            for p in &made {
                let _ = fs::remove_file(p);
            }
            return Err(e);
        }
        // The commit point.
        let commit_path = self.commit.join(&final_name);
        if let Err(e) = upload.file.persist(&commit_path) {
            for p in &made {
                let _ = fs::remove_file(p);
            }
            return Err(e.error);
        }
        sync_dir(&self.commit)
    }

    /// Past the commit point: the visible names, then the commit record goes.
    /// A failure here is finished by the next start-up.
    fn publish_links(&self, recipients: &[Fingerprint], id: MessageId) -> io::Result<()> {
        let pending_name = format!(".{id}.pending");
        let final_name = format!("{id}.sxf");
        let commit_path = self.commit.join(&final_name);
        for r in recipients {
            let dir = self.mailbox_dir(r);
            fs::rename(dir.join(&pending_name), dir.join(&final_name))?;
            sync_dir(&dir)?;
        }
        fs::remove_file(&commit_path)?;
        Ok(())
    }

    /// The oldest waiting messages (at most `max`), and whether there are more.
    pub fn list(&self, mailbox: &Fingerprint, max: usize) -> io::Result<(Vec<ListEntry>, bool)> {
        let dir = self.mailbox_dir(mailbox);
        let mut ids = Vec::new();
        match fs::read_dir(&dir) {
            Ok(rd) => {
                for e in rd {
                    if let Some(id) = e?
                        .file_name()
                        .to_str()
                        .and_then(|n| is_id_name(n, "", ".sxf"))
                    {
                        ids.push(id);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        ids.sort();
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

    /// Deletes a message durably; `false` if there was no such message.
    pub fn delete(&self, mailbox: &Fingerprint, id: &MessageId) -> io::Result<bool> {
        let dir = self.mailbox_dir(mailbox);
        let path = dir.join(format!("{id}.sxf"));
        let len = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        self.lock()
            .boxes
            .entry(mailbox.clone())
            .or_default()
            .remove(id, len);
        // A record left by a crash here is removed at the next start-up.
        match fs::remove_file(dir.join(digest_record_name(id))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        sync_dir(&dir)?;
        Ok(true)
    }

    /// Blocks until the mailbox holds a message (true), or `timeout` passes or
    /// the store is stopping (false). Never polls: it sleeps on a condition
    /// variable that every filing notifies.
    pub fn wait(&self, mailbox: &Fingerprint, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if state.boxes.get(mailbox).is_some_and(|b| b.count() > 0) {
                return true;
            }
            let now = Instant::now();
            if state.stopping || now >= deadline {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Wakes every waiter and makes further waits return at once.
    pub fn stop_waiters(&self) {
        self.lock().stopping = true;
        self.changed.notify_all();
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

/// Reads `server-id`, or creates it atomically with 32 random bytes.
fn load_or_create_server_id(root: &Path) -> io::Result<[u8; 32]> {
    let path = root.join("server-id");
    match fs::read_to_string(&path) {
        Ok(text) => {
            let mut id = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut id).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not 64 hex digits", path.display()),
                )
            })?;
            Ok(id)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let id = super::protocol::random_nonce()?;
            let mut tmp = tempfile::Builder::new()
                .prefix(".server-id-")
                .tempfile_in(root)?;
            writeln!(tmp, "{}", hex::encode(id))?;
            tmp.as_file().sync_all()?;
            tmp.persist_noclobber(&path).map_err(|e| e.error)?;
            sync_dir(root)?;
            Ok(id)
        }
        Err(e) => Err(ctx(format!("reading {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_duplicate_is_found_only_where_it_waits_for_every_recipient() {
        let fp = |b: u8| Fingerprint::of_spki_der(&[b]);
        let (bob, dave) = (fp(1), fp(2));
        let (d, other) = ([1; 32], [2; 32]);
        let (old, new) = (MessageId([1; 16]), MessageId([2; 16]));
        let mut state = State::default();
        for who in [&bob, &dave] {
            let b = state.boxes.entry(who.clone()).or_default();
            b.insert(new, d, 10);
            b.insert(old, d, 10);
        }
        let both = [bob.clone(), dave.clone()];
        assert_eq!(state.waiting_everywhere(&both, &d), Some(old), "the oldest");
        assert_eq!(state.waiting_everywhere(&both, &other), None);
        state.boxes.get_mut(&dave).unwrap().remove(&old, 10);
        assert_eq!(state.waiting_everywhere(&both, &d), Some(new));
        state.boxes.get_mut(&bob).unwrap().remove(&new, 10);
        assert_eq!(state.waiting_everywhere(&both, &d), None, "only in some");
        assert_eq!(
            state.waiting_everywhere(std::slice::from_ref(&dave), &d),
            Some(new)
        );
        assert_eq!(state.boxes[&bob].bytes, 10);
        assert_eq!(state.boxes[&bob].count(), 1);
        assert!(!state.boxes[&dave].by_digest.contains_key(&other));
    }
}
