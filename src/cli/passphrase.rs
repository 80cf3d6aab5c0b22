//! Where passphrases come from: `--passphrase-file`, then `SXF_PASSPHRASE`, then a
//! terminal prompt, and otherwise a clear error. Passphrases are zeroized on drop.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sxf::keys::{self, KeyError, PrivateKeyInfo};
use zeroize::Zeroizing;

pub const ENV_VAR: &str = "SXF_PASSPHRASE";
/// The longest passphrase line read from `--passphrase-file`.
const MAX_PASSPHRASE_FILE: usize = 4096;

/// Turns "no passphrase given" into advice on how to give one.
pub fn explain(e: KeyError) -> anyhow::Error {
    match e {
        KeyError::NeedPassphrase { path } => anyhow::anyhow!(
            "{} is passphrase-protected: give --passphrase-file PATH, set {ENV_VAR}, \
             or run sxf in a terminal to be asked",
            path.display()
        ),
        other => other.into(),
    }
}

pub struct PassphraseSource {
    file: Option<PathBuf>,
}

/// Is there a terminal to prompt on? rpassword reads from the controlling
/// terminal; we only try when stdin or stderr is one.
fn can_prompt() -> bool {
    std::io::stdin().is_terminal() || std::io::stderr().is_terminal()
}

impl PassphraseSource {
    pub fn new(file: Option<PathBuf>) -> Self {
        PassphraseSource { file }
    }

    /// A passphrase from the file or the environment, if either is given.
    fn given(&self) -> Result<Option<Zeroizing<String>>, KeyError> {
        if let Some(path) = &self.file {
            // The first line, at most MAX_PASSPHRASE_FILE bytes; never a silent cut.
            let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_PASSPHRASE_FILE + 1));
            std::fs::File::open(path)
                .and_then(|f| {
                    f.take(MAX_PASSPHRASE_FILE as u64 + 1)
                        .read_to_end(&mut bytes)
                })
                .map_err(|source| KeyError::Read {
                    path: path.clone(),
                    source,
                })?;
            let line_end = bytes.iter().position(|&b| b == b'\n');
            if line_end.is_none() && bytes.len() > MAX_PASSPHRASE_FILE {
                return Err(KeyError::Parse {
                    path: path.clone(),
                    reason: format!("its first line is longer than {MAX_PASSPHRASE_FILE} bytes"),
                });
            }
            let first = &bytes[..line_end.unwrap_or(bytes.len())];
            let first = first.strip_suffix(b"\r").unwrap_or(first);
            let text = std::str::from_utf8(first).map_err(|_| KeyError::Parse {
                path: path.clone(),
                reason: "the passphrase is not UTF-8 text".into(),
            })?;
            return Ok(Some(Zeroizing::new(text.to_owned())));
        }
        if let Ok(v) = std::env::var(ENV_VAR) {
            return Ok(Some(Zeroizing::new(v)));
        }
        Ok(None)
    }

    /// The passphrase for an existing encrypted key.
    pub fn for_key(&self, key: &Path) -> Result<Option<Zeroizing<String>>, KeyError> {
        if let Some(p) = self.given()? {
            return Ok(Some(p));
        }
        if !can_prompt() {
            return Ok(None);
        }
        let prompt = format!("Passphrase for {}: ", key.display());
        rpassword::prompt_password(prompt)
            .map(|p| Some(Zeroizing::new(p)))
            .map_err(|source| KeyError::Read {
                path: PathBuf::from("the terminal"),
                source,
            })
    }

    /// Loads a private key, asking for its passphrase only if it is encrypted.
    pub fn load_private_key(&self, path: &Path) -> Result<PrivateKeyInfo> {
        keys::load_private_key(path, || self.for_key(path)).map_err(explain)
    }

    /// A new passphrase for `keygen`: given, or typed twice at a prompt.
    pub fn new_passphrase(&self, key: &Path) -> Result<Zeroizing<String>> {
        let pass = match self.given()? {
            Some(p) => p,
            None => {
                if !can_prompt() {
                    bail!(
                        "a passphrase is needed for {}: give --passphrase-file PATH, set {ENV_VAR}, \
                         run in a terminal, or use --no-passphrase",
                        key.display()
                    );
                }
                let first = Zeroizing::new(
                    rpassword::prompt_password(format!("New passphrase for {}: ", key.display()))
                        .context("reading the passphrase")?,
                );
                let again = Zeroizing::new(
                    rpassword::prompt_password("Repeat the passphrase: ")
                        .context("reading the passphrase")?,
                );
                if *first != *again {
                    bail!("the two passphrases differ; nothing was written");
                }
                first
            }
        };
        if pass.is_empty() {
            bail!("the passphrase is empty; use --no-passphrase if you really want no passphrase");
        }
        Ok(pass)
    }
}
