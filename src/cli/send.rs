//! `sxf send`: upload a sealed archive to a drop-box.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::dropbox::{client_options, parse_server_addr, parse_server_id, peer_error};
use super::input::{SpoolArgs, load_archive, shown_name};
use super::output::human_bytes;
use super::progress::TerminalProgress;

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// The sealed .sxf file (binary or armored), or - for standard input
    file: PathBuf,
    /// The drop-box server
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_server_addr)]
    server: String,
    /// Refuse a server whose id (64 hex digits, `sxf serve` logs it) differs
    #[arg(long, value_name = "HEX", value_parser = parse_server_id)]
    server_id: Option<[u8; 32]>,
    #[command(flatten)]
    spool: SpoolArgs,
}

pub(crate) fn run(a: SendArgs) -> Result<()> {
    // An armored archive is decoded first: the server stores and serves the binary form.
    let archive = load_archive(&a.file, &a.spool, &mut TerminalProgress::new())?;
    let mut client =
        super::dropbox::connect(&a.server, &client_options(a.server_id)).map_err(peer_error)?;
    let stored = client
        .upload(archive.reopen()?, archive.len())
        .map_err(peer_error)
        .with_context(|| format!("sending {}", shown_name(&a.file)))?;
    eprintln!(
        "sent {} ({}) to {}: waiting for {} recipient(s)",
        shown_name(&a.file),
        human_bytes(stored.len),
        a.server,
        stored.recipients
    );
    println!("{}", stored.id);
    Ok(())
}
