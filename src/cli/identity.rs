//! `sxf identity`: which private key is yours, so that `seal`, `open` and
//! `fetch` need no key path.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use sxf::contacts::ConfigDir;

use super::output::shown_path;
use super::shared::PassphraseArgs;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  sxf identity set ~/keys/alice.key
  sxf identity show
  sxf identity show --pem > alice.pub")]
pub(crate) struct IdentityArgs {
    #[command(subcommand)]
    command: IdentityCommand,
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// Make an existing private key your identity (the file stays where it is)
    Set(SetArgs),
    /// Show your identity's key file and fingerprint
    Show(ShowArgs),
}

#[derive(Debug, Args)]
struct SetArgs {
    /// Your private key file (PEM or OpenSSH)
    keyfile: PathBuf,
    #[command(flatten)]
    passphrase: PassphraseArgs,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// Print only your public key (PEM), to give to others
    #[arg(long)]
    pem: bool,
}

pub(crate) fn run(a: IdentityArgs) -> Result<()> {
    let dir = ConfigDir::from_env()?;
    match a.command {
        IdentityCommand::Set(a) => {
            // Loading proves the file is a private key you can unlock.
            let key = a.passphrase.source().load_private_key(&a.keyfile)?;
            let previous = dir.identity()?;
            dir.set_identity(&a.keyfile, key.public())?;
            if let Some(old) = previous
                && old.public.fingerprint() != key.fingerprint()
            {
                eprintln!(
                    "your identity was {} ({}); the old key file is left as it is",
                    old.public.fingerprint(),
                    shown_path(&old.key_file)
                );
            }
            eprintln!(
                "your identity is now {}\nread aloud: {}",
                shown_path(&a.keyfile),
                key.fingerprint().grouped()
            );
            println!("{}", key.fingerprint());
            Ok(())
        }
        IdentityCommand::Show(a) => {
            let Some(id) = dir.identity()? else {
                bail!(
                    "you have no identity yet: `sxf keygen NAME --identity` makes one, \
                     `sxf identity set KEYFILE` adopts a key you have"
                );
            };
            if a.pem {
                print!("{}", id.public.to_pem());
                return Ok(());
            }
            println!("key file     {}", shown_path(&id.key_file));
            println!("fingerprint  {}", id.public.fingerprint());
            println!("read aloud   {}", id.public.fingerprint().grouped());
            Ok(())
        }
    }
}
