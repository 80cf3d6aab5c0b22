//! `sxf inspect`: what a manifest says, unverified.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::output::human_bytes;

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The .sxf file
    file: PathBuf,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: InspectArgs) -> Result<()> {
    let (m, archive_len) =
        sxf::open::inspect(&a.file).with_context(|| a.file.display().to_string())?;
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
        a.file.display()
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
