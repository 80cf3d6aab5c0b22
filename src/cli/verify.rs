//! `sxf verify`: every check `open` makes, without a private key.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::input::{SpoolArgs, load_archive, shown_name};
use super::output::warn_any_sender;
use super::progress::TerminalProgress;
use super::shared::{Keyring, Sender, SenderArgs, choose_sender};

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The .sxf file (binary or armored), or - for standard input
    file: PathBuf,
    #[command(flatten)]
    sender: SenderArgs,
    #[command(flatten)]
    spool: SpoolArgs,
}

pub(crate) fn run(a: VerifyArgs) -> Result<()> {
    let mut progress = TerminalProgress::new();
    let archive = load_archive(&a.file, &a.spool, &mut progress)?;
    let mut keyring = Keyring::new();
    let sender = choose_sender(&a.sender, &archive, &a.file, &mut keyring)?;
    let v = sxf::open::verify_input(&archive, sender.expected(), &mut progress)
        .with_context(|| shown_name(&a.file))?;
    let fp = v.manifest.sender.fingerprint();
    let created = &v.manifest.manifest.created;
    match &sender {
        Sender::Known(k) => println!(
            "verified: from {} ({fp}), sealed at {created}: {} is authentic, every entry intact",
            k.label,
            shown_name(&a.file),
        ),
        Sender::Any => {
            warn_any_sender(fp);
            // The key that signed came from the archive itself: say so where the
            // verdict is read, and never call it authentic.
            println!(
                "OK with --any-sender: the signature of {} is valid and every entry is intact, \
                 but the sender is NOT verified: it was signed by the key it carries, {fp}, at {created}",
                shown_name(&a.file),
            );
        }
    }
    Ok(())
}
