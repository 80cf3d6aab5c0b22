//! `sxf keygen`: a new RSA key pair.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use sxf::contacts::ConfigDir;
use sxf::keys::{self, KeyPairPaths};

use super::output::{self, shown_path};
use super::shared::PassphraseArgs;

#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Base name of the key files
    name: String,
    /// Modulus size
    #[arg(long, default_value_t = 2048, value_parser = parse_bits)]
    bits: usize,
    /// Directory to write the key files into (default: the current directory;
    /// created, mode 0700, if missing)
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Write the key pair into sxf's config directory and make it your identity:
    /// seal then signs with it and open opens with it, without --sign or --key
    #[arg(long, conflicts_with = "out_dir")]
    identity: bool,
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
    let config = if a.identity {
        let dir = ConfigDir::from_env()?;
        dir.create()?;
        Some(dir)
    } else {
        None
    };
    let out_dir = match (&config, &a.out_dir) {
        (Some(c), _) => c.path().to_owned(),
        (None, Some(d)) => d.clone(),
        (None, None) => PathBuf::from("."),
    };
    // Read the identity being replaced first: a damaged identity.toml must stop
    // keygen before it writes any key.
    let previous = match &config {
        Some(c) => c.identity()?,
        None => None,
    };
    let paths = KeyPairPaths::new(&out_dir, &a.name);
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
    if !out_dir.is_dir() {
        sxf::platform::private_dir_builder()
            .recursive(true)
            .create(&out_dir)
            .with_context(|| format!("creating {}", out_dir.display()))?;
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
    if let Some(config) = &config {
        config.set_identity(&paths.private, key.public())?;
        if let Some(old) = previous {
            eprintln!(
                "your identity was {} ({}); that key file is left as it is",
                old.public.fingerprint(),
                shown_path(&old.key_file)
            );
        }
        eprintln!(
            "this is now your identity; give {} to the people who will send to you",
            shown_path(&paths.public)
        );
    }
    println!("{}", key.fingerprint());
    output::fingerprint_for_people(key.public(), keys::KeyFormat::Pem);
    Ok(())
}
