//! The drop-box's durable store: mailboxes on disk, crash-safe filing, quotas,
//! and the condition variable that wakes long-polling fetchers.
//!
//! Layout under the store directory (see `spec/DROPBOX.md`, "Store"):
//!
//! ```text
//! server-id                      64 hex digits: this server's identity
//! lock                           flock()ed while a server runs on this store
//! tmp/upload-*.part              uploads being received (swept at start-up)
//! commit/<id>.sxf                the commit record of a message being filed
//! mailboxes/<64 hex>/<id>.sxf    a waiting message (one hard link per recipient)
//! mailboxes/<64 hex>/.<id>.pending   a link made before the commit point
//! ```
//!
//! Filing a message is all-or-nothing across its recipients: pending links are
//! made and synced in every mailbox, then one rename into `commit/` is the
//! commit point, then the pending links are renamed into view. Start-up finishes
//! every committed message and removes every uncommitted one. No name under the
//! store ever comes from a client: mailbox directories are the hex of a parsed
//! [`Fingerprint`] and file names are server-generated [`MessageId`]s.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, UNIX_EPOCH};

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
}

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

/// A message that was filed.
#[derive(Debug, Clone)]
pub struct Deposited {
    pub id: MessageId,
    pub len: u64,
    pub recipients: Vec<Fingerprint>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    count: u64,
    bytes: u64,
    /// Bytes of messages being filed right now, counted against the quota.
    reserved: u64,
}

#[derive(Debug, Default)]
struct State {
    boxes: HashMap<Fingerprint, Usage>,
    stopping: bool,
}

/// An upload being received: a temp file in `tmp/`, removed on drop unless filed.
pub struct Upload {
    file: tempfile::NamedTempFile,
    written: u64,
}

impl Upload {
    pub fn written(&self) -> u64 {
        self.written
    }
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
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

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn ctx(what: impl std::fmt::Display, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Store {
    /// Opens (creating if needed) a store, takes its lock, sweeps temp files and
    /// finishes or discards interrupted filings.
    pub fn open(root: &Path, quota: u64) -> io::Result<(Store, OpenReport)> {
        fs::create_dir_all(root).map_err(|e| ctx(format!("creating {}", root.display()), e))?;
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join("lock"))
            .map_err(|e| ctx(format!("opening {}/lock", root.display()), e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |_| {
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("the store {} is in use by another server", root.display()),
                )
            },
        )?;
        let tmp = root.join("tmp");
        let commit = root.join("commit");
        let mailboxes = root.join("mailboxes");
        for d in [&tmp, &commit, &mailboxes] {
            fs::create_dir_all(d).map_err(|e| ctx(format!("creating {}", d.display()), e))?;
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

        // 3. Every mailbox: finish committed pending links, drop the rest, count.
        let mut boxes = HashMap::new();
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
            let mut usage = Usage::default();
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
            if changed {
                sync_dir(&dir)?;
            }
            for m in fs::read_dir(&dir)? {
                let m = m?;
                if m.file_name()
                    .to_str()
                    .and_then(|n| is_id_name(n, "", ".sxf"))
                    .is_some()
                {
                    usage.count += 1;
                    usage.bytes += m.metadata()?.len();
                }
            }
            report.messages += usage.count;
            report.bytes += usage.bytes;
            if usage.count > 0 {
                report.mailboxes += 1;
            }
            boxes.insert(fp, usage);
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
                state: Mutex::new(State {
                    boxes,
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

    /// Bytes available to an unprivileged user on the store's filesystem.
    pub fn free_space(&self) -> io::Result<u64> {
        let s = rustix::fs::statvfs(&self.root).map_err(io::Error::from)?;
        Ok(s.f_bavail.saturating_mul(s.f_frsize))
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
        Ok(Upload { file, written: 0 })
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
        let id = MessageId::generate()?;

        self.reserve(&recipients, len)?;
        let result = self.file_links(upload, &recipients, id);
        let mut state = self.lock();
        for r in &recipients {
            let u = state.boxes.entry(r.clone()).or_default();
            u.reserved -= len;
            if result.is_ok() {
                u.count += 1;
                u.bytes += len;
            }
        }
        drop(state);
        result?;
        self.changed.notify_all();
        Ok(Deposited {
            id,
            len,
            recipients,
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
    fn reserve(&self, recipients: &[Fingerprint], len: u64) -> Result<(), DepositError> {
        let mut state = self.lock();
        for r in recipients {
            let u = state.boxes.get(r).copied().unwrap_or_default();
            let used = u.bytes + u.reserved;
            if used.saturating_add(len) > self.quota {
                return Err(DepositError::OverQuota {
                    mailbox: r.clone(),
                    used,
                    size: len,
                    quota: self.quota,
                });
            }
        }
        for r in recipients {
            state.boxes.entry(r.clone()).or_default().reserved += len;
        }
        Ok(())
    }

    /// Pending links in every mailbox, the commit rename, then the visible names.
    fn file_links(
        &self,
        upload: Upload,
        recipients: &[Fingerprint],
        id: MessageId,
    ) -> io::Result<()> {
        let pending_name = format!(".{id}.pending");
        let final_name = format!("{id}.sxf");
        let mut made = Vec::new();
        let linked = (|| -> io::Result<()> {
            for r in recipients {
                let dir = self.mailbox_dir(r);
                if !dir.exists() {
                    match fs::create_dir(&dir) {
                        Ok(()) => sync_dir(&self.mailboxes)?,
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(e),
                    }
                }
                let pending = dir.join(&pending_name);
                fs::hard_link(upload.file.path(), &pending)?;
                made.push(pending);
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
        sync_dir(&self.commit)?;
        // Past the commit point a failure is finished by the next start-up.
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
        {
            let mut state = self.lock();
            let u = state.boxes.entry(mailbox.clone()).or_default();
            u.count = u.count.saturating_sub(1);
            u.bytes = u.bytes.saturating_sub(len);
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
            if state.boxes.get(mailbox).is_some_and(|u| u.count > 0) {
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
