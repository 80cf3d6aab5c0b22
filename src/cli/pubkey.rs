//! `sxf pubkey`: the public key of a private key file, like `age-keygen -y`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use sxf::keys;

use super::shared::PassphraseArgs;

#[derive(Debug, Args)]
#[command(
    after_help = "Prints SubjectPublicKeyInfo PEM, the .pub format sxf keygen writes \
    (or, with --ssh, an ssh-rsa line). A public key file is converted the same way.\n\n\
    Examples:\n  sxf pubkey alice.key > alice.pub\n  sxf pubkey id_rsa > me.pub\n  \
    sxf pubkey --ssh alice.key >> authorized_keys"
)]
pub(crate) struct PubkeyArgs {
    /// A private key file (.key, or an OpenSSH id_rsa); a public one is converted
    keyfile: PathBuf,
    /// Print an OpenSSH `ssh-rsa AAAA…` line instead of PEM
    #[arg(long)]
    ssh: bool,
    #[command(flatten)]
    passphrase: PassphraseArgs,
}

pub(crate) fn run(a: PubkeyArgs) -> Result<()> {
    let (key, _) = a
        .passphrase
        .source()
        .with_passphrase(&a.keyfile, |ask| keys::public_key_of_file(&a.keyfile, ask))?;
    if a.ssh {
        println!("{}", key.to_openssh());
    } else {
        print!("{}", key.to_pem());
    }
    Ok(())
}
