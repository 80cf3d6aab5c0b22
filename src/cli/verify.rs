//! `sxf verify`: every check `open` makes, without a private key.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use sxf::open::ExpectedSender;

use super::output::warn_any_sender;
use super::progress::TerminalProgress;
use super::shared::{SenderArgs, expected_sender};

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The .sxf file
    file: PathBuf,
    #[command(flatten)]
    sender: SenderArgs,
}

pub(crate) fn run(a: VerifyArgs) -> Result<()> {
    let (from, any) = expected_sender(&a.sender)?;
    let sender = match &from {
        Some(k) => ExpectedSender::Key(k),
        None => ExpectedSender::Embedded,
    };
    let v = sxf::open::verify(&a.file, sender, &mut TerminalProgress::new())
        .with_context(|| a.file.display().to_string())?;
    if any {
        warn_any_sender(v.manifest.sender.fingerprint());
        // The key that signed came from the archive itself: say so where the
        // verdict is read, and never call it authentic.
        println!(
            "OK with --any-sender: the signature of {} is valid and every entry is intact, \
             but the sender is NOT verified: it was signed by the key it carries, {}, at {}",
            a.file.display(),
            v.manifest.sender.fingerprint(),
            v.manifest.manifest.created
        );
        return Ok(());
    }
    println!(
        "OK: {} is authentic: sealed by {} at {}, every entry intact",
        a.file.display(),
        v.manifest.sender.fingerprint(),
        v.manifest.manifest.created
    );
    Ok(())
}
