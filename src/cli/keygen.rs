//! `sxf keygen`: a new RSA key pair.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use sxf::keys::{self, KeyPairPaths};

use super::shared::PassphraseArgs;

#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Base name of the key files
    name: String,
    /// Modulus size
    #[arg(long, default_value_t = 2048, value_parser = parse_bits)]
    bits: usize,
    /// Directory to write the key files into (created, mode 0700, if missing)
    #[arg(long, value_name = "DIR", default_value = ".")]
    out_dir: PathBuf,
    /// Write the private key unencrypted (anyone who reads the file can use it)
    #[arg(long)]
    no_passphrase: bool,
    #[command(flatten)]
    passphrase: PassphraseArgs,
}

fn parse_bits(s: &str) -> Result<usize, String> {
    match s {
        "2048" | "3072" | "4096" => Ok(s.parse().expect("digits")),
        _ => Err("choose 2048, 3072 or 4096".into()),
    }
}

pub(crate) fn run(a: KeygenArgs) -> Result<()> {
    if a.name.is_empty() || a.name.contains(['/', '\\']) || a.name.starts_with('.') {
        bail!("the key name must be a plain file name, like alice");
    }
    let paths = KeyPairPaths::new(&a.out_dir, &a.name);
    for p in [&paths.private, &paths.public] {
        if p.exists() {
            bail!("{} already exists; sxf never overwrites a key", p.display());
        }
    }
    let passphrase = if a.no_passphrase {
        None
    } else {
        Some(a.passphrase.source().new_passphrase(&paths.private)?)
    };
    eprintln!("generating a {}-bit RSA key...", a.bits);
    let key = keys::generate(a.bits)?;
    if !a.out_dir.is_dir() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&a.out_dir)
            .with_context(|| format!("creating {}", a.out_dir.display()))?;
    }
    keys::write_key_pair(&key, &paths, passphrase.as_ref().map(|p| p.as_bytes()))?;
    eprintln!(
        "wrote {} ({}) and {}",
        paths.private.display(),
        if a.no_passphrase {
            "NOT passphrase-protected"
        } else {
            "passphrase-protected"
        },
        paths.public.display()
    );
    println!("{}", key.fingerprint());
    Ok(())
}
