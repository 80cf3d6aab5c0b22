//! Where passphrases come from: `--passphrase-file`, then `SXF_PASSPHRASE`, then a
//! terminal prompt, and otherwise a clear error. Passphrases are zeroized on drop.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sxf::keys::{self, KeyError, PrivateKeyInfo};
use zeroize::Zeroizing;

pub const ENV_VAR: &str = "SXF_PASSPHRASE";

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
            let mut text = Zeroizing::new(String::new());
            std::fs::File::open(path)
                .and_then(|f| f.take(4096).read_to_string(&mut text))
                .map_err(|source| KeyError::Read {
                    path: path.clone(),
                    source,
                })?;
            let first = text.lines().next().unwrap_or("");
            return Ok(Some(Zeroizing::new(first.to_owned())));
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
