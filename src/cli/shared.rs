//! Flags and key loading that several commands share.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;

use sxf::keys::{self, PublicKeyInfo};

use super::passphrase::PassphraseSource;

#[derive(Debug, Args)]
pub(crate) struct PassphraseArgs {
    /// Read the private key's passphrase from this file (first line). Otherwise
    /// SXF_PASSPHRASE is used, otherwise a terminal prompt.
    #[arg(long, value_name = "PATH")]
    pub passphrase_file: Option<PathBuf>,
}

impl PassphraseArgs {
    pub(crate) fn source(&self) -> PassphraseSource {
        PassphraseSource::new(self.passphrase_file.clone())
    }
}

#[derive(Debug, Args)]
pub(crate) struct SenderArgs {
    /// The sender's public key: the archive must be sealed by this key
    #[arg(long, value_name = "PUB", required_unless_present = "any_sender")]
    pub from: Option<PathBuf>,
    /// Accept whatever sender key the archive embeds (prints a warning)
    #[arg(long, conflicts_with = "from")]
    pub any_sender: bool,
}

pub(crate) fn load_public(path: &Path) -> Result<PublicKeyInfo> {
    Ok(keys::load_public_key(path)?)
}

pub(crate) fn expected_sender(args: &SenderArgs) -> Result<(Option<PublicKeyInfo>, bool)> {
    match (&args.from, args.any_sender) {
        (Some(p), false) => Ok((Some(load_public(p)?), false)),
        (None, true) => Ok((None, true)),
        _ => {
            bail!("say who the sender is with --from PUB (or accept any sender with --any-sender)")
        }
    }
}

/// Parses `64MiB`, `1GiB`, `500k`, `1000`: SI suffixes are powers of 1000, IEC
/// suffixes powers of 1024; a bare number is bytes.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 64MiB, 1GiB or 500k"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "kB" | "KB" => 1000,
        "M" | "MB" => 1000 * 1000,
        "G" | "GB" => 1000 * 1000 * 1000,
        "T" | "TB" => 1000 * 1000 * 1000 * 1000,
        "KiB" | "Ki" => 1 << 10,
        "MiB" | "Mi" => 1 << 20,
        "GiB" | "Gi" => 1 << 30,
        "TiB" | "Ti" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?}: use B, k, M, G, T (powers of 1000) or KiB, MiB, GiB, TiB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_si_and_iec_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("500k"), Ok(500_000));
        assert_eq!(parse_size("500K"), Ok(500_000));
        assert_eq!(parse_size("20kB"), Ok(20_000));
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("7B"), Ok(7));
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1.5GiB").is_err());
        assert!(parse_size("12parsecs").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }
}
