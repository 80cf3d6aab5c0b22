//! `sxf fingerprint`: the fingerprint of a key file.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use sxf::keys;

use super::shared::PassphraseArgs;

#[derive(Debug, Args)]
pub(crate) struct FingerprintArgs {
    /// A public (.pub) or private (.key) key file
    keyfile: PathBuf,
    #[command(flatten)]
    passphrase: PassphraseArgs,
}

pub(crate) fn run(a: FingerprintArgs) -> Result<()> {
    let fp = a
        .passphrase
        .source()
        .with_passphrase(&a.keyfile, |ask| keys::fingerprint_file(&a.keyfile, ask))?;
    println!("{fp}");
    Ok(())
}
