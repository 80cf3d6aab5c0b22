//! `sxf verify`: every check `open` makes, without a private key.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use sxf::open::ExpectedSender;

use super::input::{SpoolArgs, load_archive, shown_name};
use super::output::warn_any_sender;
use super::progress::TerminalProgress;
use super::shared::{SenderArgs, expected_sender};

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
    let (from, any) = expected_sender(&a.sender)?;
    let sender = match &from {
        Some(k) => ExpectedSender::Key(k),
        None => ExpectedSender::Embedded,
    };
    let mut progress = TerminalProgress::new();
    let archive = load_archive(&a.file, &a.spool, &mut progress)?;
    let v = sxf::open::verify_input(&archive, sender, &mut progress)
        .with_context(|| shown_name(&a.file))?;
    if any {
        warn_any_sender(v.manifest.sender.fingerprint());
    }
    println!(
        "OK: {} is authentic: sealed by {} at {}, every entry intact",
        shown_name(&a.file),
        v.manifest.sender.fingerprint(),
        v.manifest.manifest.created
    );
    Ok(())
}
