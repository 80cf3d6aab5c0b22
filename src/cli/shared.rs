//! Flags and key loading that several commands share.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use sxf::contacts::{ConfigDir, ContactName, Contacts, Identity};
use sxf::input::ArchiveInput;
use sxf::keys::{self, Fingerprint, PrivateKeyInfo, PublicKeyInfo};
use sxf::open::ExpectedSender;

use super::input::{is_unnamed, shown_name};
use super::output::shown_path;
use super::passphrase::PassphraseSource;

#[derive(Debug, Args)]
pub(crate) struct PassphraseArgs {
    /// Read the private key's passphrase from this file (first line). Otherwise
    /// SXF_PASSPHRASE is used, otherwise a terminal prompt.
    #[arg(long, value_name = "PATH")]
    pub passphrase_file: Option<PathBuf>,
}

impl PassphraseArgs {
    pub(crate) fn source(&self) -> PassphraseSource {
        PassphraseSource::new(self.passphrase_file.clone())
    }
}

#[derive(Debug, Args)]
pub(crate) struct SenderArgs {
    /// The sender: a contact name or a public key file. Without it, the archive
    /// must be signed by one of your contacts (or by you)
    #[arg(long, value_name = "NAME|PUB")]
    pub from: Option<OsString>,
    /// Accept whatever sender key the archive embeds (prints a warning)
    #[arg(long, conflicts_with = "from")]
    pub any_sender: bool,
}

pub(crate) fn load_public(path: &Path) -> Result<PublicKeyInfo> {
    Ok(keys::load_public_key(path)?)
}

/// A public key named on the command line, and what to call it in output.
pub(crate) struct NamedKey {
    pub key: PublicKeyInfo,
    pub label: String,
}

/// Your contacts and identity, read from the config directory when first needed.
pub(crate) struct Keyring {
    dir: Option<ConfigDir>,
    contacts: Option<Contacts>,
    identity: Option<Option<Identity>>,
}

impl Keyring {
    pub(crate) fn new() -> Self {
        Keyring {
            dir: ConfigDir::from_env().ok(),
            contacts: None,
            identity: None,
        }
    }

    pub(crate) fn contacts(&mut self) -> Result<&Contacts> {
        if self.contacts.is_none() {
            let loaded = match &self.dir {
                Some(d) => d.contacts()?,
                None => Contacts::default(),
            };
            self.contacts = Some(loaded);
        }
        Ok(self.contacts.as_ref().expect("just loaded"))
    }

    pub(crate) fn identity(&mut self) -> Result<Option<&Identity>> {
        if self.identity.is_none() {
            let loaded = match &self.dir {
                Some(d) => d.identity()?,
                None => None,
            };
            self.identity = Some(loaded);
        }
        Ok(self.identity.as_ref().expect("just loaded").as_ref())
    }

    /// The saved key with this fingerprint, named: a contact, or "you" for
    /// your identity.
    pub(crate) fn known_key(&mut self, fp: &Fingerprint) -> Result<Option<NamedKey>> {
        if let Some(c) = self.contacts()?.by_fingerprint(fp) {
            return Ok(Some(NamedKey {
                key: c.key.clone(),
                label: c.name.to_string(),
            }));
        }
        Ok(self
            .identity()?
            .filter(|id| id.public.fingerprint() == fp)
            .map(|id| NamedKey {
                key: id.public.clone(),
                label: "you".to_string(),
            }))
    }

    /// What to call a key in output: its contact name, "you", or `None`. Only
    /// a label: a config file that cannot be read gives no name here (and is
    /// reported where a decision depends on it).
    pub(crate) fn label_for(&mut self, key: &PublicKeyInfo) -> Option<String> {
        self.known_key(key.fingerprint())
            .ok()
            .flatten()
            .map(|k| k.label)
    }

    /// A `--to`/`--from` argument: a key file or a contact name. It is a path
    /// when it contains a path separator or ends in `.pub`, even if a contact
    /// has that name. A bare word is a contact; only when no contact has that
    /// name is a file of that name used, so a stray file can never stand in
    /// for a contact.
    pub(crate) fn public_key(&mut self, arg: &OsStr) -> Result<NamedKey> {
        let path = Path::new(arg);
        let text = arg.to_string_lossy();
        let path_like = text.contains(std::path::is_separator) || text.ends_with(".pub");
        let name = ContactName::parse(&text).ok().filter(|_| !path_like);
        if let Some(name) = &name
            && let Some(c) = self.contacts()?.get(name)
        {
            return Ok(NamedKey {
                key: c.key.clone(),
                label: c.name.to_string(),
            });
        }
        if path_like || path.is_file() {
            let key = load_public(path)?;
            // A bare word that names a file is not a contact: never let it
            // read like one.
            let label = match self.label_for(&key) {
                Some(name) => name,
                None if path_like => shown_path(path),
                None => format!("the key in {}", shown_path(path)),
            };
            return Ok(NamedKey { key, label });
        }
        match name {
            Some(name) => bail!(
                "no contact named {name} and no file {name}; `sxf contacts list` shows your contacts, \
                 and `sxf contacts add {name} KEYFILE` adds one"
            ),
            None => bail!(
                "{} is neither a key file nor a contact name",
                shown_path(path)
            ),
        }
    }

    /// The private key file to use: the one given, else your identity's.
    pub(crate) fn private_key_file(&mut self, given: Option<&Path>, flag: &str) -> Result<PathBuf> {
        if let Some(p) = given {
            return Ok(p.to_owned());
        }
        match self.identity()? {
            Some(id) => Ok(id.key_file.clone()),
            None => bail!(
                "no key given: use {flag} KEY, or set your own key once with \
                 `sxf identity set KEY` (or make one with `sxf keygen NAME --identity`)"
            ),
        }
    }

    /// Loads the private key (given, or your identity's), and checks that an
    /// identity's key file still holds the key the identity was set with.
    pub(crate) fn load_private_key(
        &mut self,
        given: Option<&Path>,
        flag: &str,
        source: &PassphraseSource,
    ) -> Result<PrivateKeyInfo> {
        let path = self.private_key_file(given, flag)?;
        let key = source.load_private_key(&path)?;
        if given.is_none()
            && let Some(id) = self.identity()?
            && id.public.fingerprint() != key.fingerprint()
        {
            bail!(
                "your identity's key file {} now holds a different key ({}, not {}); \
                 run `sxf identity set KEY` again",
                shown_path(&path),
                key.fingerprint(),
                id.public.fingerprint()
            );
        }
        Ok(key)
    }
}

/// Who must have signed an archive.
pub(crate) enum Sender {
    Known(NamedKey),
    /// `--any-sender`.
    Any,
}

impl Sender {
    pub(crate) fn expected(&self) -> ExpectedSender<'_> {
        match self {
            Sender::Known(k) => ExpectedSender::Key(&k.key),
            Sender::Any => ExpectedSender::Embedded,
        }
    }
}

/// The archive is signed by a key that is neither a contact nor yours (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("the sender's key {0} is not one of your contacts")]
pub(crate) struct UnknownSender(pub Fingerprint);

/// `--from`, `--any-sender`, or else the contact (or you) whose key the
/// archive names. The name in the unverified manifest is only a lookup: the
/// signature is then checked against the key saved for that contact.
pub(crate) fn choose_sender(
    args: &SenderArgs,
    archive: &ArchiveInput,
    file: &Path,
    keyring: &mut Keyring,
) -> Result<Sender> {
    if args.any_sender {
        return Ok(Sender::Any);
    }
    if let Some(from) = &args.from {
        return Ok(Sender::Known(keyring.public_key(from)?));
    }
    let (manifest, _) = sxf::open::inspect_input(archive).with_context(|| shown_name(file))?;
    let claimed = manifest.sender.fingerprint();
    if let Some(known) = keyring.known_key(claimed)? {
        return Ok(Sender::Known(known));
    }
    let archive_word = match shell_word(file) {
        Some(word) if !is_unnamed(file) => word,
        _ => "FILE.sxf".to_string(),
    };
    eprintln!(
        "{} is signed by a key that is not one of your contacts:\n  {claimed}\n  read aloud: {}\n\
         If you know whose key it is, compare the fingerprint with them (in person, or by phone), \
         then save it{} and run this command again:\n  sxf contacts add NAME --fingerprint {claimed} {archive_word}\n\
         Or name the sender's key with --from NAME|PUB, or accept any sender with --any-sender.",
        shown_name(file),
        claimed.grouped(),
        if archive_word == "FILE.sxf" {
            " (with the archive saved as FILE.sxf)"
        } else {
            ""
        },
    );
    Err(anyhow::Error::new(UnknownSender(claimed.clone())).context(shown_name(file)))
}

/// A path as one shell word that names exactly that file, for a command the
/// user can paste; `None` when it cannot be shown exactly (control characters,
/// not UTF-8). A leading `-` gets `./` so it is never read as an option.
pub(crate) fn shell_word(path: &Path) -> Option<String> {
    let text = path.to_str()?;
    if text.is_empty() || shown_path(path) != text {
        return None;
    }
    let text = if text.starts_with('-') {
        format!("./{text}")
    } else {
        text.to_string()
    };
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._/-+,@%".contains(c));
    Some(if plain {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    })
}

/// Parses `64MiB`, `1.5GiB`, `10mb`, `500k`, `1000`: SI units (k, M, G, T, with
/// or without B) are powers of 1000, IEC units (KiB, MiB, GiB, TiB) powers of
/// 1024; units are case-insensitive, and `b` is bytes like `B` (sxf has no bit
/// units). A bare number is bytes; a fraction of a byte is rounded down.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a size like 64MiB, 1.5GiB, 10MB or 500k");
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty()
        || fraction.contains('.')
        || fraction.len() > 18
        || whole.len() > 20
    {
        return Err(bad());
    }
    let mult: u128 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000u128.pow(2),
        "g" | "gb" => 1000u128.pow(3),
        "t" | "tb" => 1000u128.pow(4),
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?}: use B, k, M, G, T (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)"
            ));
        }
    };
    let digits = |s: &str| -> Result<u128, String> {
        if s.is_empty() {
            Ok(0)
        } else {
            s.parse().map_err(|_| bad())
        }
    };
    let whole = digits(whole)?;
    let scale = 10u128.pow(fraction.len() as u32);
    // Exact integer arithmetic: 1.5GiB is 1610612736 bytes, not a float's guess.
    let bytes = whole
        .checked_mul(mult)
        .and_then(|w| w.checked_add(digits(fraction).ok()? * mult / scale))
        .ok_or_else(|| format!("{text:?} is too large"))?;
    u64::try_from(bytes).map_err(|_| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_si_and_iec_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("500k"), Ok(500_000));
        assert_eq!(parse_size("500K"), Ok(500_000));
        assert_eq!(parse_size("20kB"), Ok(20_000));
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("7B"), Ok(7));
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("12parsecs").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn sizes_accept_decimals_and_units_in_any_case() {
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("10mb"), Ok(10_000_000));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("10Mb"), Ok(10_000_000));
        assert_eq!(parse_size("2gib"), Ok(2 << 30));
        assert_eq!(parse_size("1KIB"), Ok(1024));
        assert_eq!(parse_size("0.5k"), Ok(500));
        assert_eq!(parse_size(".5KiB"), Ok(512));
        assert_eq!(parse_size("2.KB"), Ok(2000));
        assert_eq!(parse_size("7b"), Ok(7));
        // Fractions of a byte round down.
        assert_eq!(parse_size("1.9"), Ok(1));
        assert_eq!(parse_size("1.0001kB"), Ok(1000));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        for bad in [
            "",
            ".",
            "-1",
            "-1MB",
            "NaN",
            "nan",
            "inf",
            "1e3",
            "1.2.3",
            "1..5",
            "kb",
            "18446744073709551616",
            "16EiB",
            "20000000TB",
            "1,5MB",
            "0x10",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
