//! `sxf inspect`: what a manifest says, unverified.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::input::{SpoolArgs, load_archive, shown_name};
use super::output::human_bytes;
use super::progress::TerminalProgress;

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The .sxf file (binary or armored), or - for standard input
    file: PathBuf,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    spool: SpoolArgs,
}

pub(crate) fn run(a: InspectArgs) -> Result<()> {
    let archive = load_archive(&a.file, &a.spool, &mut TerminalProgress::new())?;
    let (m, archive_len) =
        sxf::open::inspect_input(&archive).with_context(|| shown_name(&a.file))?;
    let man = &m.manifest;
    if a.json {
        let value = serde_json::json!({
            "verified": false,
            "format": man.format,
            "created": man.created,
            "algorithms": man.algorithms,
            "sender": man.sender.fingerprint,
            "recipients": man.recipients.iter().map(|r| &r.fingerprint).collect::<Vec<_>>(),
            "archive_bytes": archive_len,
            "payload_bytes": man.payload.length,
            "keys_bytes": man.keys.length,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "{} (not verified: use sxf verify --from PUB)",
        shown_name(&a.file)
    );
    println!("format      {}", man.format);
    println!("created     {}", man.created);
    println!("sender      {}", man.sender.fingerprint);
    for r in &man.recipients {
        println!("recipient   {}", r.fingerprint);
    }
    println!("key wrap    {}", man.algorithms.key_wrap);
    println!("cipher      {}", man.algorithms.cipher);
    println!("mac         {}", man.algorithms.mac);
    println!("signature   {}", man.algorithms.signature);
    println!("archive     {}", human_bytes(archive_len));
    println!(
        "payload     {} (encrypted)",
        human_bytes(man.payload.length)
    );
    Ok(())
}
