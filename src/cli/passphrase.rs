//! Where passphrases come from: `--passphrase-file`, then `SXF_PASSPHRASE`, then a
//! terminal prompt, and otherwise a clear error. Passphrases are zeroized on drop.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sxf::keys::{self, KeyError, PrivateKeyInfo};
use zeroize::{Zeroize, Zeroizing};

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

/// Tries at a terminal prompt before a wrong passphrase is final.
const PROMPT_TRIES: u32 = 3;

/// Is there a terminal to prompt on? rpassword reads from the controlling
/// terminal; we only try when stdin or stderr is one.
fn can_prompt() -> bool {
    std::io::stdin().is_terminal() || std::io::stderr().is_terminal()
}

/// The passphrase callback that `sxf::keys` calls for an encrypted key.
pub type Ask<'a> = dyn FnMut() -> Result<Option<Zeroizing<String>>, KeyError> + 'a;

/// Reads the first line of standard input, one byte at a time from a duplicate
/// of its descriptor: no buffer keeps a copy, and nothing past the line is taken.
fn read_stdin_line(bytes: &mut Vec<u8>) -> std::io::Result<()> {
    let mut stdin = sxf::platform::stdin_file()?;
    let mut byte = [0u8; 1];
    while bytes.len() <= MAX_PASSPHRASE_FILE {
        match stdin.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => {
                bytes.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    byte.zeroize();
    Ok(())
}

impl PassphraseSource {
    pub fn new(file: Option<PathBuf>) -> Self {
        PassphraseSource { file }
    }

    /// Does `--passphrase-file -` take standard input?
    pub fn reads_stdin(&self) -> bool {
        self.file.as_deref() == Some(Path::new("-"))
    }

    /// A passphrase from the file (or standard input, for `-`) or the
    /// environment, if either is given. Errors name the passphrase file.
    fn given(&self) -> Result<Option<Zeroizing<String>>> {
        if let Some(path) = &self.file {
            let name = if self.reads_stdin() {
                "the passphrase from standard input (--passphrase-file -)".to_owned()
            } else {
                format!("the passphrase file {}", path.display())
            };
            // The first line, at most MAX_PASSPHRASE_FILE bytes; never a silent cut.
            let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_PASSPHRASE_FILE + 1));
            if self.reads_stdin() {
                read_stdin_line(&mut bytes)
            } else {
                std::fs::File::open(path).and_then(|f| {
                    f.take(MAX_PASSPHRASE_FILE as u64 + 1)
                        .read_to_end(&mut bytes)
                        .map(drop)
                })
            }
            .with_context(|| format!("could not read {name}"))?;
            let line_end = bytes.iter().position(|&b| b == b'\n');
            if line_end.is_none() && bytes.len() > MAX_PASSPHRASE_FILE {
                bail!("the first line of {name} is longer than {MAX_PASSPHRASE_FILE} bytes");
            }
            let first = &bytes[..line_end.unwrap_or(bytes.len())];
            let first = first.strip_suffix(b"\r").unwrap_or(first);
            let text = std::str::from_utf8(first)
                .map_err(|_| anyhow::anyhow!("{name} is not UTF-8 text"))?;
            return Ok(Some(Zeroizing::new(text.to_owned())));
        }
        if let Ok(v) = std::env::var(ENV_VAR) {
            return Ok(Some(Zeroizing::new(v)));
        }
        Ok(None)
    }

    /// Runs `load`, a key-loading call from `sxf::keys`, with a passphrase
    /// callback: the given passphrase, or else a terminal prompt. Only a prompt
    /// is tried again after a wrong passphrase, up to [`PROMPT_TRIES`] times.
    pub fn with_passphrase<T>(
        &self,
        key: &Path,
        mut load: impl FnMut(&mut Ask<'_>) -> Result<T, KeyError>,
    ) -> Result<T> {
        for attempt in 1..=PROMPT_TRIES {
            let mut failure = None;
            let mut prompted = false;
            let result = load(&mut || match self.given() {
                Ok(Some(p)) => Ok(Some(p)),
                Ok(None) if !can_prompt() => Ok(None),
                Ok(None) => {
                    prompted = true;
                    let prompt = format!("Passphrase for {}: ", key.display());
                    rpassword::prompt_password(prompt)
                        .map(|p| Some(Zeroizing::new(p)))
                        .map_err(|source| KeyError::Read {
                            path: PathBuf::from("the terminal"),
                            source,
                        })
                }
                Err(e) => {
                    // Reported below as it is; the key error is only a stand-in.
                    failure = Some(e);
                    Err(KeyError::NeedPassphrase {
                        path: key.to_owned(),
                    })
                }
            });
            if let Some(e) = failure {
                return Err(e);
            }
            match result {
                Err(KeyError::WrongPassphrase { .. }) if prompted && attempt < PROMPT_TRIES => {
                    eprintln!("Wrong passphrase; try again.");
                }
                other => return other.map_err(explain),
            }
        }
        unreachable!("the last try returns")
    }

    /// Loads a private key, asking for its passphrase only if it is encrypted.
    pub fn load_private_key(&self, path: &Path) -> Result<PrivateKeyInfo> {
        self.with_passphrase(path, |ask| keys::load_private_key(path, ask))
    }

    /// A new passphrase for `keygen`: given, or typed twice at a prompt (asked
    /// again, up to [`PROMPT_TRIES`] times, when the two differ).
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
                let mut attempt = 1;
                loop {
                    let first = Zeroizing::new(
                        rpassword::prompt_password(format!(
                            "New passphrase for {}: ",
                            key.display()
                        ))
                        .context("reading the passphrase")?,
                    );
                    let again = Zeroizing::new(
                        rpassword::prompt_password("Repeat the passphrase: ")
                            .context("reading the passphrase")?,
                    );
                    if *first == *again {
                        break first;
                    }
                    if attempt == PROMPT_TRIES {
                        bail!("the two passphrases differ; nothing was written");
                    }
                    attempt += 1;
                    eprintln!("The two passphrases differ; type them again.");
                }
            }
        };
        if pass.is_empty() {
            bail!("the passphrase is empty; use --no-passphrase if you really want no passphrase");
        }
        Ok(pass)
    }
}
