//! Contacts and your own identity: names for public keys, so that nobody has to
//! type a key path or a fingerprint twice.
//!
//! Everything lives in one config directory ([`ConfigDir`]): `contacts.toml`
//! (name → public key) and `identity.toml` (which private key is yours). Both are
//! TOML, created 0600 inside a 0700 directory, and replaced atomically (temp
//! file, fsync, rename) under a lock, so two commands at once never lose an
//! update. Every field is checked on the way in: a hand-edited or damaged file
//! is refused with the line at fault, never half-used. A stored key is kept as
//! its SubjectPublicKeyInfo DER (base64) next to its fingerprint, and the two
//! must agree.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::keys::{Fingerprint, KeyError, PublicKeyInfo};

/// The contacts file inside the config directory.
pub const CONTACTS_FILE: &str = "contacts.toml";
/// The identity file inside the config directory.
pub const IDENTITY_FILE: &str = "identity.toml";
/// The drop-box servers met so far, inside the config directory.
pub const KNOWN_SERVERS_FILE: &str = "known-servers";
/// Config files larger than this are refused before parsing.
const MAX_CONFIG_FILE_BYTES: u64 = 4 << 20;
/// Longest contact name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ContactsError {
    #[error("cannot find your sxf config directory: {0} is not set; set SXF_HOME to a directory")]
    NoHome(&'static str),
    #[error(
        "{0:?} is not a contact name: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    )]
    BadName(String),
    #[error("no contact named {0}; `sxf contacts list` shows your contacts")]
    NoSuchContact(String),
    #[error(
        "{name} is already a contact with a different key ({existing}); give --replace to replace it"
    )]
    NameTaken { name: String, existing: Fingerprint },
    #[error("this key ({fingerprint}) is already your contact {name}")]
    KeyTaken {
        name: String,
        fingerprint: Fingerprint,
    },
    #[error("{path} is damaged: {reason}; fix or remove it")]
    Damaged { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ContactsError + '_ {
    move |source| ContactsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A contact's name: `[a-z0-9][a-z0-9._-]{0,63}`, after ASCII case folding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContactName(String);

impl ContactName {
    /// Folds ASCII case, then checks the pattern. Anything else is refused, so a
    /// name is always safe to print and to use in a shell command.
    pub fn parse(text: &str) -> Result<Self, ContactsError> {
        let folded = text.to_ascii_lowercase();
        let bytes = folded.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= MAX_NAME_LEN
            && bytes[0].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(ContactName(folded))
        } else {
            Err(ContactsError::BadName(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ContactName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One saved public key.
#[derive(Debug, Clone)]
pub struct Contact {
    pub name: ContactName,
    pub key: PublicKeyInfo,
    /// When it was added, RFC 3339 UTC.
    pub added: String,
}

/// What [`Contacts::add`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    New,
    /// The same key was already saved under this name; nothing changed.
    Unchanged,
    /// `--replace`: the name now holds the new key instead of this one.
    Replaced(Fingerprint),
}

/// Every contact, by name.
#[derive(Debug, Clone, Default)]
pub struct Contacts {
    by_name: BTreeMap<ContactName, Contact>,
}

impl Contacts {
    pub fn get(&self, name: &ContactName) -> Option<&Contact> {
        self.by_name.get(name)
    }

    /// The contact holding this key, if any (a key is saved under one name only).
    pub fn by_fingerprint(&self, fp: &Fingerprint) -> Option<&Contact> {
        self.by_name.values().find(|c| c.key.fingerprint() == fp)
    }

    /// Every contact, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Contact> {
        self.by_name.values()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Saves `key` under `name`. The same key again is fine; a different key
    /// under a taken name needs `replace`; one key under two names is refused,
    /// so that a fingerprint always maps back to exactly one name.
    pub fn add(
        &mut self,
        name: ContactName,
        key: PublicKeyInfo,
        replace: bool,
        now: SystemTime,
    ) -> Result<Added, ContactsError> {
        if let Some(other) = self.by_fingerprint(key.fingerprint())
            && other.name != name
        {
            return Err(ContactsError::KeyTaken {
                name: other.name.to_string(),
                fingerprint: key.fingerprint().clone(),
            });
        }
        let outcome = match self.by_name.get(&name) {
            Some(existing) if existing.key.fingerprint() == key.fingerprint() => {
                return Ok(Added::Unchanged);
            }
            Some(existing) if !replace => {
                return Err(ContactsError::NameTaken {
                    name: name.to_string(),
                    existing: existing.key.fingerprint().clone(),
                });
            }
            Some(existing) => Added::Replaced(existing.key.fingerprint().clone()),
            None => Added::New,
        };
        let added = humantime::format_rfc3339_seconds(now).to_string();
        self.by_name
            .insert(name.clone(), Contact { name, key, added });
        Ok(outcome)
    }

    pub fn remove(&mut self, name: &ContactName) -> Result<Contact, ContactsError> {
        self.by_name
            .remove(name)
            .ok_or_else(|| ContactsError::NoSuchContact(name.to_string()))
    }
}

/// Your own key: the private key file to sign and open with, and its public half.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The private key file (absolute, or relative to the config directory).
    pub key_file: PathBuf,
    pub public: PublicKeyInfo,
}

/// `contacts.toml`: one table per contact.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactRecord {
    fingerprint: String,
    /// base64 of the SubjectPublicKeyInfo DER.
    key: String,
    added: String,
}

/// `identity.toml`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityRecord {
    key_file: String,
    fingerprint: String,
    /// base64 of the SubjectPublicKeyInfo DER.
    public_key: String,
}

/// The config directory: `$SXF_HOME`, else, on Linux and macOS,
/// `$XDG_CONFIG_HOME/sxf`, else `~/.config/sxf`; on Windows, `%APPDATA%\sxf`.
#[derive(Debug, Clone)]
pub struct ConfigDir {
    root: PathBuf,
}

impl ConfigDir {
    /// The directory the environment names (it need not exist yet).
    pub fn from_env() -> Result<Self, ContactsError> {
        let var = std::env::var_os;
        if cfg!(windows) {
            Self::locate_on_windows(var("SXF_HOME"), var("APPDATA"))
        } else {
            Self::locate(var("SXF_HOME"), var("XDG_CONFIG_HOME"), var("HOME"))
        }
    }

    /// The Windows lookup: `%SXF_HOME%`, else `%APPDATA%\sxf` (the roaming
    /// application data under the user's profile, private to the user).
    pub fn locate_on_windows(
        sxf_home: Option<OsString>,
        appdata: Option<OsString>,
    ) -> Result<Self, ContactsError> {
        let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
        match (set(sxf_home), set(appdata)) {
            (Some(dir), _) => Ok(ConfigDir { root: dir }),
            (None, Some(appdata)) => Ok(ConfigDir {
                root: appdata.join("sxf"),
            }),
            (None, None) => Err(ContactsError::NoHome("APPDATA")),
        }
    }

    /// The lookup order, with the environment passed in. Empty variables count
    /// as unset, and a relative `XDG_CONFIG_HOME` is ignored, as the XDG base
    /// directory rules say.
    pub fn locate(
        sxf_home: Option<OsString>,
        xdg_config_home: Option<OsString>,
        home: Option<OsString>,
    ) -> Result<Self, ContactsError> {
        let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(dir) = set(sxf_home) {
            return Ok(ConfigDir { root: dir });
        }
        if let Some(xdg) = set(xdg_config_home).filter(|p| p.is_absolute()) {
            return Ok(ConfigDir {
                root: xdg.join("sxf"),
            });
        }
        match set(home) {
            Some(home) => Ok(ConfigDir {
                root: home.join(".config").join("sxf"),
            }),
            None => Err(ContactsError::NoHome("HOME")),
        }
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        ConfigDir { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Creates the directory (0700) if it is missing.
    pub fn create(&self) -> Result<(), ContactsError> {
        crate::platform::private_dir_builder()
            .recursive(true)
            .create(&self.root)
            .map_err(io_err(&self.root))
    }

    /// The saved contacts; none if the file does not exist yet.
    pub fn contacts(&self) -> Result<Contacts, ContactsError> {
        let path = self.file(CONTACTS_FILE);
        let Some(text) = read_config_file(&path)? else {
            return Ok(Contacts::default());
        };
        parse_contacts(&text, &path)
    }

    /// Reads, changes and saves the contacts under the directory's lock.
    pub fn update_contacts<T>(
        &self,
        change: impl FnOnce(&mut Contacts) -> Result<T, ContactsError>,
    ) -> Result<T, ContactsError> {
        self.create()?;
        let _lock = self.lock()?;
        let mut contacts = self.contacts()?;
        let out = change(&mut contacts)?;
        let text = render_contacts(&contacts);
        write_atomically(&self.file(CONTACTS_FILE), text.as_bytes())?;
        Ok(out)
    }

    /// Your identity, if one is set.
    pub fn identity(&self) -> Result<Option<Identity>, ContactsError> {
        let path = self.file(IDENTITY_FILE);
        let Some(text) = read_config_file(&path)? else {
            return Ok(None);
        };
        let damaged = |reason: String| ContactsError::Damaged {
            path: path.clone(),
            reason,
        };
        let record: IdentityRecord = toml::from_str(&text).map_err(|e| damaged(one_line(&e)))?;
        let public = stored_key(&record.public_key, &record.fingerprint).map_err(damaged)?;
        let key_file = PathBuf::from(record.key_file);
        Ok(Some(Identity {
            key_file: self.root.join(key_file),
            public,
        }))
    }

    /// Makes `key_file` (whose public half is `public`) your identity. A path
    /// inside the config directory is stored relative to it, so the directory
    /// can move.
    pub fn set_identity(
        &self,
        key_file: &Path,
        public: &PublicKeyInfo,
    ) -> Result<(), ContactsError> {
        self.create()?;
        let _lock = self.lock()?;
        let absolute = std::path::absolute(key_file).map_err(io_err(key_file))?;
        let root = std::path::absolute(&self.root).map_err(io_err(&self.root))?;
        let stored = absolute
            .strip_prefix(&root)
            .map(Path::to_path_buf)
            .unwrap_or(absolute.clone());
        let record = IdentityRecord {
            key_file: stored.to_string_lossy().into_owned(),
            fingerprint: public.fingerprint().to_string(),
            public_key: BASE64.encode(public.spki_der()),
        };
        if stored.to_str().is_none() {
            return Err(ContactsError::Io {
                path: key_file.to_owned(),
                source: std::io::Error::other("the key file's path is not valid UTF-8"),
            });
        }
        let text = format!(
            "# Your sxf identity: the private key seal signs with and open opens with.\n\
             # Change it with `sxf identity set KEYFILE`.\n{}",
            toml::to_string(&record).expect("the identity record serialises")
        );
        write_atomically(&self.file(IDENTITY_FILE), text.as_bytes())
    }

    /// The path of the known drop-box servers file.
    pub fn known_servers_path(&self) -> PathBuf {
        self.file(KNOWN_SERVERS_FILE)
    }

    /// The server id recorded for the drop-box server `addr` (`host:port`, as
    /// given to `--server`; the host compared without regard to ASCII case).
    pub fn known_server(&self, addr: &str) -> Result<Option<[u8; 32]>, ContactsError> {
        let path = self.file(KNOWN_SERVERS_FILE);
        let Some(text) = read_config_file(&path)? else {
            return Ok(None);
        };
        let known = parse_known_servers(&text).map_err(|reason| ContactsError::Damaged {
            path: path.clone(),
            reason,
        })?;
        let addr = addr.to_ascii_lowercase();
        Ok(known
            .into_iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, id)| id))
    }

    /// Records `addr → id` on first contact. If another process recorded
    /// `addr` meanwhile, nothing is written and its id is returned.
    pub fn remember_server(
        &self,
        addr: &str,
        id: [u8; 32],
    ) -> Result<Option<[u8; 32]>, ContactsError> {
        let addr = addr.to_ascii_lowercase();
        if addr.is_empty() || addr.contains(|c: char| c.is_whitespace() || c == '#') {
            return Err(ContactsError::Io {
                path: self.file(KNOWN_SERVERS_FILE),
                source: std::io::Error::other(format!("{addr:?} cannot be recorded as a server")),
            });
        }
        self.create()?;
        let _lock = self.lock()?;
        let path = self.file(KNOWN_SERVERS_FILE);
        let mut text = read_config_file(&path)?.unwrap_or_else(|| {
            "# sxf drop-box servers met so far: ADDR:PORT and the server id (SHA-256\n\
             # of its TLS certificate's public key), recorded on first contact.\n\
             # A server that later shows another id is refused.\n"
                .to_owned()
        });
        let known = parse_known_servers(&text).map_err(|reason| ContactsError::Damaged {
            path: path.clone(),
            reason,
        })?;
        if let Some((_, existing)) = known.into_iter().find(|(a, _)| *a == addr) {
            return Ok(Some(existing));
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("{addr} {}\n", hex::encode(id)));
        write_atomically(&path, text.as_bytes())?;
        Ok(None)
    }

    /// An exclusive lock on `DIR/.lock`, released when dropped.
    fn lock(&self) -> Result<fs::File, ContactsError> {
        let path = self.file(".lock");
        let mut options = crate::platform::private_file_options();
        options.create(true).truncate(false).write(true);
        crate::platform::do_not_follow(&mut options);
        let file = options.open(&path).map_err(io_err(&path))?;
        file.lock().map_err(io_err(&path))?;
        Ok(file)
    }
}

/// `ADDR:PORT HEX` lines; blank lines and `#` comments are skipped.
fn parse_known_servers(text: &str) -> Result<Vec<(String, [u8; 32])>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || format!("line {} is not `ADDR:PORT SERVER-ID`", n + 1);
        let (addr, id) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
        let id = crate::parse_lower_hex::<32>(id.trim()).ok_or_else(bad)?;
        out.push((addr.to_ascii_lowercase(), id));
    }
    Ok(out)
}

fn one_line(e: &toml::de::Error) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A config file's text, or `None` if it does not exist. The file decides whom
/// `open` calls a verified sender, so it must be a regular file (not a
/// symlink, FIFO or device) that only you can change, in a directory that only
/// you can change.
fn read_config_file(path: &Path) -> Result<Option<String>, ContactsError> {
    let damaged = |reason: String| ContactsError::Damaged {
        path: path.to_owned(),
        reason,
    };
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    if !meta.file_type().is_file() {
        return Err(damaged("it is not a regular file".into()));
    }
    if let Some(dir) = path.parent() {
        crate::platform::check_private(&fs::metadata(dir).map_err(io_err(dir))?).map_err(
            |reason| ContactsError::Damaged {
                path: dir.to_owned(),
                reason,
            },
        )?;
    }
    let mut options = fs::OpenOptions::new();
    options.read(true);
    crate::platform::do_not_follow(&mut options);
    let file = options.open(path).map_err(io_err(path))?;
    // What was opened, not what the path named a moment ago, is what must be
    // a private regular file: a swap between the two checks changes nothing.
    let opened = file.metadata().map_err(io_err(path))?;
    if !opened.file_type().is_file() {
        return Err(damaged("it is not a regular file".into()));
    }
    crate::platform::check_private(&opened).map_err(damaged)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(path))?;
    if bytes.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(damaged(format!(
            "it is larger than {MAX_CONFIG_FILE_BYTES} bytes"
        )));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| damaged("it is not UTF-8 text".into()))
}

/// A stored key: base64 SPKI DER that must match the stored fingerprint.
fn stored_key(base64_der: &str, fingerprint: &str) -> Result<PublicKeyInfo, String> {
    let der = BASE64
        .decode(base64_der)
        .map_err(|_| "a key is not valid base64".to_string())?;
    let key = PublicKeyInfo::from_spki_der(&der).map_err(|e| e.to_string())?;
    if key.fingerprint().to_string() != fingerprint {
        return Err(format!(
            "the key stored with fingerprint {fingerprint} has fingerprint {}",
            key.fingerprint()
        ));
    }
    Ok(key)
}

fn parse_contacts(text: &str, path: &Path) -> Result<Contacts, ContactsError> {
    let damaged = |reason: String| ContactsError::Damaged {
        path: path.to_owned(),
        reason,
    };
    let records: BTreeMap<String, ContactRecord> =
        toml::from_str(text).map_err(|e| damaged(one_line(&e)))?;
    let mut contacts = Contacts::default();
    for (name, record) in records {
        let parsed = ContactName::parse(&name)
            .ok()
            .filter(|n| n.as_str() == name)
            .ok_or_else(|| damaged(format!("{name:?} is not a contact name")))?;
        let key = stored_key(&record.key, &record.fingerprint)
            .map_err(|reason| damaged(format!("contact {name}: {reason}")))?;
        if humantime::parse_rfc3339(&record.added).is_err() {
            return Err(damaged(format!(
                "contact {name}: added is not an RFC 3339 time"
            )));
        }
        if let Some(other) = contacts.by_fingerprint(key.fingerprint()) {
            return Err(damaged(format!(
                "contacts {} and {name} hold the same key",
                other.name
            )));
        }
        contacts.by_name.insert(
            parsed.clone(),
            Contact {
                name: parsed,
                key,
                added: record.added,
            },
        );
    }
    Ok(contacts)
}

fn render_contacts(contacts: &Contacts) -> String {
    let records: BTreeMap<&str, ContactRecord> = contacts
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                ContactRecord {
                    fingerprint: c.key.fingerprint().to_string(),
                    key: BASE64.encode(c.key.spki_der()),
                    added: c.added.clone(),
                },
            )
        })
        .collect();
    format!(
        "# Your sxf contacts: a name for each public key. Change them with `sxf contacts`.\n{}",
        toml::to_string(&records).expect("contact records serialise")
    )
}

/// Replaces `path` atomically: a 0600 temp file beside it, fsync, rename.
fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), ContactsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".sxf-config-");
    crate::platform::set_temp_mode(&mut builder, 0o600);
    let mut tmp = builder.tempfile_in(dir).map_err(io_err(path))?;
    tmp.write_all(contents).map_err(io_err(path))?;
    tmp.as_file().sync_all().map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
    crate::fsutil::sync_parent_dir(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_names_fold_case_and_refuse_everything_outside_the_pattern() {
        assert_eq!(ContactName::parse("Alice").unwrap().as_str(), "alice");
        assert_eq!(
            ContactName::parse("bob.work-2_x").unwrap().as_str(),
            "bob.work-2_x"
        );
        assert!(ContactName::parse(&"a".repeat(64)).is_ok());
        for bad in [
            "",
            ".alice",
            "-x",
            "_x",
            "a b",
            "a/b",
            "ali\u{e7}e",
            "K\u{212a}",
            &"a".repeat(65),
            "a\n",
        ] {
            assert!(ContactName::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[cfg(unix)] // "/y" is a relative path on Windows
    #[test]
    fn config_dir_prefers_sxf_home_then_absolute_xdg_then_home() {
        let s = |v: &str| Some(OsString::from(v));
        let at = |a, b, c| ConfigDir::locate(a, b, c).unwrap().root;
        assert_eq!(at(s("/x"), s("/y"), s("/h")), PathBuf::from("/x"));
        assert_eq!(at(s(""), s("/y"), s("/h")), PathBuf::from("/y/sxf"));
        assert_eq!(at(None, s("rel"), s("/h")), PathBuf::from("/h/.config/sxf"));
        assert_eq!(at(None, None, s("/h")), PathBuf::from("/h/.config/sxf"));
        assert!(matches!(
            ConfigDir::locate(None, None, None),
            Err(ContactsError::NoHome("HOME"))
        ));
    }

    #[test]
    fn config_dir_on_windows_is_sxf_home_then_appdata() {
        let s = |v: &str| Some(OsString::from(v));
        let at = |a, b| ConfigDir::locate_on_windows(a, b).unwrap().root;
        assert_eq!(at(s("D:\\x"), s("C:\\A")), PathBuf::from("D:\\x"));
        assert_eq!(at(s(""), s("C:\\A")), PathBuf::from("C:\\A").join("sxf"));
        assert!(matches!(
            ConfigDir::locate_on_windows(None, s("")),
            Err(ContactsError::NoHome("APPDATA"))
        ));
    }
}
