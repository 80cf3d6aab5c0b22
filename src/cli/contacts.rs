//! `sxf contacts`: save, list, show and remove the public keys of the people you
//! exchange archives with, under short names.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use sxf::contacts::{Added, ConfigDir, ContactName, ContactsError};
use sxf::input::{ArchiveInput, InputOptions};
use sxf::keys::{self, Fingerprint, PublicKeyInfo};
use sxf::open::ExpectedSender;

use super::output::shown_path;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  sxf contacts add bob bob.pub
  ssh-add -L | grep bob@laptop | sxf contacts add bob -
  sxf contacts list
  sxf seal --to bob -m 'hello' -o hello.sxf")]
pub(crate) struct ContactsArgs {
    #[command(subcommand)]
    command: ContactsCommand,
}

#[derive(Debug, Subcommand)]
enum ContactsCommand {
    /// Save a public key under a name (prints its fingerprint)
    Add(AddArgs),
    /// List your contacts
    List(ListArgs),
    /// Show one contact's fingerprints and public key
    Show(ShowArgs),
    /// Forget a contact
    Remove(RemoveArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  sxf contacts add bob bob.pub
  sxf contacts add carol carol_id_rsa.pub --fingerprint sha256:…
  sxf contacts add dave --fingerprint sha256:… from-dave.sxf")]
struct AddArgs {
    /// The name: 1-64 of a-z, 0-9, '.', '_', '-' (upper case is folded)
    name: String,
    /// The key: a .pub file, a file with an `ssh-rsa` line, or - for standard
    /// input. An .sxf archive also works with --fingerprint: its sender's key is
    /// taken once the archive's signature checks out
    keyfile: PathBuf,
    /// Replace the key already saved under NAME
    #[arg(long)]
    replace: bool,
    /// Refuse the key unless it has this fingerprint (sha256:…), as read to you
    /// by its owner
    #[arg(long, value_name = "SHA256")]
    fingerprint: Option<String>,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Print JSON: [{"name", "fingerprint", "added"}]
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ShowArgs {
    name: String,
    /// Print only the public key (PEM), to pass it on
    #[arg(long)]
    pem: bool,
}

#[derive(Debug, Args)]
struct RemoveArgs {
    name: String,
}

pub(crate) fn run(a: ContactsArgs) -> Result<()> {
    let dir = ConfigDir::from_env()?;
    match a.command {
        ContactsCommand::Add(a) => add(&dir, a),
        ContactsCommand::List(a) => list(&dir, a),
        ContactsCommand::Show(a) => show(&dir, a),
        ContactsCommand::Remove(a) => remove(&dir, a),
    }
}

/// Is this file an .sxf archive (binary or armored), rather than a key?
fn is_archive(path: &Path) -> bool {
    let mut head = [0u8; 64];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let head = &head[..n];
    head.starts_with(b"PK\x03\x04")
        || String::from_utf8_lossy(head)
            .trim_start()
            .starts_with("-----BEGIN SXF ARCHIVE-----")
}

/// The public key KEYFILE names.
fn read_key(keyfile: &Path, expected: Option<&Fingerprint>) -> Result<PublicKeyInfo> {
    if keyfile.as_os_str() == "-" {
        let mut bytes = zeroize::Zeroizing::new(Vec::new());
        std::io::stdin()
            .take(keys::MAX_KEY_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .context("reading the key from standard input")?;
        return Ok(keys::parse_public_key(&bytes, Path::new("standard input"))?);
    }
    if is_archive(keyfile) {
        if expected.is_none() {
            bail!(
                "{} is an archive: anyone can make one, so its sender's key is saved only with \
                 --fingerprint sha256:…, checked with the sender through another channel",
                shown_path(keyfile)
            );
        }
        // Binary or armored: read as `sxf verify` reads it.
        let mut progress = sxf::NoProgress;
        let archive = ArchiveInput::open(keyfile, &InputOptions::default(), &mut progress)
            .with_context(|| shown_path(keyfile))?;
        let v = sxf::open::verify_input(&archive, ExpectedSender::Embedded, &mut progress)
            .with_context(|| shown_path(keyfile))?;
        return Ok(v.manifest.sender);
    }
    Ok(keys::load_public_key(keyfile)?)
}

fn add(dir: &ConfigDir, a: AddArgs) -> Result<()> {
    let name = ContactName::parse(&a.name)?;
    let expected = match &a.fingerprint {
        Some(text) => Some(Fingerprint::parse(text.trim()).with_context(|| {
            format!("{text:?} is not a fingerprint: expected sha256: and 64 lowercase hex digits")
        })?),
        None => None,
    };
    let key = read_key(&a.keyfile, expected.as_ref())?;
    if let Some(expected) = &expected
        && key.fingerprint() != expected
    {
        bail!(
            "the key in {} has fingerprint {}, not the {expected} you expected; nothing was saved",
            shown_path(&a.keyfile),
            key.fingerprint()
        );
    }
    let fp = key.fingerprint().clone();
    let outcome =
        dir.update_contacts(|c| c.add(name.clone(), key, a.replace, SystemTime::now()))?;
    match outcome {
        Added::New => eprintln!("added contact {name}"),
        Added::Unchanged => eprintln!("{name} already has this key; nothing changed"),
        Added::Replaced(old) => eprintln!("replaced {name}'s key (was {old})"),
    }
    eprintln!("read aloud: {}", fp.grouped());
    println!("{fp}");
    Ok(())
}

fn list(dir: &ConfigDir, a: ListArgs) -> Result<()> {
    let contacts = dir.contacts()?;
    if a.json {
        let value: Vec<_> = contacts
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name.as_str(),
                    "fingerprint": c.key.fingerprint().to_string(),
                    "added": c.added,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    if contacts.is_empty() {
        eprintln!("no contacts yet; add one with `sxf contacts add NAME KEYFILE`");
        return Ok(());
    }
    let width = contacts
        .iter()
        .map(|c| c.name.as_str().len())
        .max()
        .unwrap_or(0);
    for c in contacts.iter() {
        println!("{:width$}  {}", c.name.as_str(), c.key.fingerprint());
    }
    Ok(())
}

fn show(dir: &ConfigDir, a: ShowArgs) -> Result<()> {
    let name = ContactName::parse(&a.name)?;
    let contacts = dir.contacts()?;
    let c = contacts
        .get(&name)
        .ok_or_else(|| ContactsError::NoSuchContact(name.to_string()))?;
    if a.pem {
        print!("{}", c.key.to_pem());
        return Ok(());
    }
    println!("name         {}", c.name);
    println!("fingerprint  {}", c.key.fingerprint());
    println!("read aloud   {}", c.key.fingerprint().grouped());
    println!("key          RSA {} bits", c.key.bits());
    println!("added        {}", c.added);
    Ok(())
}

fn remove(dir: &ConfigDir, a: RemoveArgs) -> Result<()> {
    let name = ContactName::parse(&a.name)?;
    let removed = dir.update_contacts(|c| c.remove(&name))?;
    eprintln!(
        "removed contact {} ({})",
        removed.name,
        removed.key.fingerprint()
    );
    Ok(())
}
