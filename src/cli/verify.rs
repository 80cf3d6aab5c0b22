//! `sxf verify`: every check `open` makes, without a private key.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::output::warn_any_sender;
use super::progress::TerminalProgress;
use super::shared::{Keyring, Sender, SenderArgs, choose_sender};

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The .sxf file
    file: PathBuf,
    #[command(flatten)]
    sender: SenderArgs,
}

pub(crate) fn run(a: VerifyArgs) -> Result<()> {
    let mut keyring = Keyring::new();
    let sender = choose_sender(&a.sender, &a.file, &mut keyring)?;
    let v = sxf::open::verify(&a.file, sender.expected(), &mut TerminalProgress::new())
        .with_context(|| a.file.display().to_string())?;
    let fp = v.manifest.sender.fingerprint();
    let created = &v.manifest.manifest.created;
    match &sender {
        Sender::Known(k) => println!(
            "OK: {} is authentic: sealed by {} ({fp}) at {created}, every entry intact",
            a.file.display(),
            k.label,
        ),
        Sender::Any => {
            warn_any_sender(fp);
            println!(
                "signature valid, sender NOT verified: {} is signed by the key it carries, {fp}, \
                 at {created}; every entry intact",
                a.file.display(),
            );
        }
    }
    Ok(())
}
