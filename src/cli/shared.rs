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

/// Parses `64MiB`, `1.5GiB`, `10mb`, `500k`, `1000`: SI units (k, M, G, T, with
/// or without B) are powers of 1000, IEC units (KiB, MiB, GiB, TiB) powers of
/// 1024; units are case-insensitive, and `b` is bytes like `B` (sxf has no bit
/// units). A bare number is bytes; a fraction of a byte is rounded down.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a size like 64MiB, 1.5GiB, 10MB or 500k");
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty()
        || fraction.contains('.')
        || fraction.len() > 18
        || whole.len() > 20
    {
        return Err(bad());
    }
    let mult: u128 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000u128.pow(2),
        "g" | "gb" => 1000u128.pow(3),
        "t" | "tb" => 1000u128.pow(4),
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?}: use B, k, M, G, T (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)"
            ));
        }
    };
    let digits = |s: &str| -> Result<u128, String> {
        if s.is_empty() {
            Ok(0)
        } else {
            s.parse().map_err(|_| bad())
        }
    };
    let whole = digits(whole)?;
    let scale = 10u128.pow(fraction.len() as u32);
    // Exact integer arithmetic: 1.5GiB is 1610612736 bytes, not a float's guess.
    let bytes = whole
        .checked_mul(mult)
        .and_then(|w| w.checked_add(digits(fraction).ok()? * mult / scale))
        .ok_or_else(|| format!("{text:?} is too large"))?;
    u64::try_from(bytes).map_err(|_| format!("{text:?} is too large"))
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
        assert!(parse_size("12parsecs").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn sizes_accept_decimals_and_units_in_any_case() {
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("10mb"), Ok(10_000_000));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("10Mb"), Ok(10_000_000));
        assert_eq!(parse_size("2gib"), Ok(2 << 30));
        assert_eq!(parse_size("1KIB"), Ok(1024));
        assert_eq!(parse_size("0.5k"), Ok(500));
        assert_eq!(parse_size(".5KiB"), Ok(512));
        assert_eq!(parse_size("2.KB"), Ok(2000));
        assert_eq!(parse_size("7b"), Ok(7));
        // Fractions of a byte round down.
        assert_eq!(parse_size("1.9"), Ok(1));
        assert_eq!(parse_size("1.0001kB"), Ok(1000));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        for bad in [
            "",
            ".",
            "-1",
            "-1MB",
            "NaN",
            "nan",
            "inf",
            "1e3",
            "1.2.3",
            "1..5",
            "kb",
            "18446744073709551616",
            "16EiB",
            "20000000TB",
            "1,5MB",
            "0x10",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
