//! `sxf send`: upload a sealed archive to a drop-box.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use sxf::dropbox::client::Client;

use super::dropbox::{client_options, parse_server_addr, parse_server_id, peer_error};
use super::output::human_bytes;

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// The sealed .sxf file
    file: PathBuf,
    /// The drop-box server
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_server_addr)]
    server: String,
    /// Refuse a server whose id (64 hex digits, `sxf serve` logs it) differs
    #[arg(long, value_name = "HEX", value_parser = parse_server_id)]
    server_id: Option<[u8; 32]>,
}

pub(crate) fn run(a: SendArgs) -> Result<()> {
    let mut client =
        Client::connect(&a.server, &client_options(a.server_id)).map_err(peer_error)?;
    let stored = client
        .upload_file(&a.file)
        .map_err(peer_error)
        .with_context(|| format!("sending {}", a.file.display()))?;
    eprintln!(
        "sent {} ({}) to {}: waiting for {} recipient(s)",
        a.file.display(),
        human_bytes(stored.len),
        a.server,
        stored.recipients
    );
    println!("{}", stored.id);
    Ok(())
}
