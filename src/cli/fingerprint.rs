//! `sxf fingerprint`: the fingerprint of a key file.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use sxf::keys;

use super::output;
use super::shared::PassphraseArgs;

#[derive(Debug, Args)]
pub(crate) struct FingerprintArgs {
    /// A public (.pub, ssh-rsa line) or private (.key, OpenSSH) key file
    keyfile: PathBuf,
    #[command(flatten)]
    passphrase: PassphraseArgs,
}

pub(crate) fn run(a: FingerprintArgs) -> Result<()> {
    let (key, format) = a
        .passphrase
        .source()
        .with_passphrase(&a.keyfile, |ask| keys::public_key_of_file(&a.keyfile, ask))?;
    println!("{}", key.fingerprint());
    output::fingerprint_for_people(&key, format);
    Ok(())
}
