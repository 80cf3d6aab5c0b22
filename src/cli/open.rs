//! `sxf open`: verify, then decrypt into a new directory. `sxf fetch --open`
//! shares the reporting.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use sxf::keys::PrivateKeyInfo;

use super::input::{SpoolArgs, is_unnamed, load_archive, shown_name, without_text_suffix};
use super::output::{terminal_safe, warn_any_sender};
use super::progress::TerminalProgress;
use super::shared::{Keyring, PassphraseArgs, Sender, SenderArgs, choose_sender};

#[derive(Debug, Args)]
pub(crate) struct OpenArgs {
    /// The .sxf file (binary or armored), or - for standard input
    file: PathBuf,
    /// Your private key (default: your identity, see `sxf identity`)
    #[arg(long, value_name = "KEY")]
    key: Option<PathBuf>,
    #[command(flatten)]
    sender: SenderArgs,
    /// Output directory (must not exist); default: the archive's name without .sxf
    /// (required when the archive comes from standard input or a pipe)
    #[arg(short = 'o', long = "out-dir", value_name = "DIR")]
    out_dir: Option<PathBuf>,
    #[command(flatten)]
    passphrase: PassphraseArgs,
    #[command(flatten)]
    spool: SpoolArgs,
}

/// The archive's name without `.sxf`, reduced to a plain, visible file name: the
/// name comes from whoever sent the file, so `.ssh.sxf` must not open into `.ssh`.
fn default_out_dir(file: &Path) -> Result<PathBuf> {
    let stem = file
        .file_stem()
        .filter(|s| !s.is_empty())
        .context("cannot name an output directory after this file; give -o DIR")?;
    Ok(PathBuf::from(sxf::payload::safe_file_name(
        &stem.to_string_lossy(),
        0,
    )))
}

pub(crate) fn run(a: OpenArgs) -> Result<()> {
    let out_dir = match &a.out_dir {
        Some(d) => d.clone(),
        None if is_unnamed(&a.file) => bail!(
            "{} has no file name to name the output directory after; give -o DIR",
            shown_name(&a.file)
        ),
        None => default_out_dir(&without_text_suffix(&a.file))?,
    };
    if out_dir.exists() {
        bail!("{} already exists; sxf never overwrites", out_dir.display());
    }
    let mut progress = TerminalProgress::new();
    let archive = load_archive(&a.file, &a.spool, &mut progress)?;
    let mut keyring = Keyring::new();
    let sender = choose_sender(&a.sender, &archive, &a.file, &mut keyring)?;
    // The cheap checks first: a bad archive or the wrong sender never costs a
    // passphrase prompt. `open_input` below makes every check again, in order.
    sxf::open::check_archive(&archive, sender.expected()).with_context(|| shown_name(&a.file))?;
    let key = keyring.load_private_key(a.key.as_deref(), "--key", &a.passphrase.source())?;
    let opened = sxf::open::open_input(&archive, &key, sender.expected(), &out_dir, &mut progress)
        .with_context(|| shown_name(&a.file))?;
    report(&opened, &sender)
}

/// Opens one archive file into `out_dir` and reports exactly as `sxf open`
/// does. `sxf fetch --open` uses it, with `own_signals` false so that Ctrl-C
/// keeps its usual meaning in `fetch --watch`.
pub(crate) fn open_and_report(
    file: &Path,
    key: &PrivateKeyInfo,
    sender: &Sender,
    out_dir: &Path,
    own_signals: bool,
) -> Result<()> {
    let mut progress = if own_signals {
        TerminalProgress::new()
    } else {
        TerminalProgress::without_signals()
    };
    let opened = sxf::open::open(file, key, sender.expected(), out_dir, &mut progress)
        .with_context(|| file.display().to_string())?;
    report(&opened, sender)
}

/// What `open` prints: who sealed it, the files written, and the message.
fn report(opened: &sxf::open::Opened, sender: &Sender) -> Result<()> {
    let fp = opened.manifest.sender.fingerprint();
    match sender {
        Sender::Known(k) => eprintln!(
            "verified: from {} ({fp}), sealed at {}",
            k.label, opened.manifest.manifest.created
        ),
        Sender::Any => {
            warn_any_sender(fp);
            eprintln!(
                "signature valid, sender NOT verified: sealed by {fp} at {}",
                opened.manifest.manifest.created
            );
        }
    }
    // No message.txt is written for an empty message.
    let mut names = Vec::new();
    if !opened.message.is_empty() {
        names.push(sxf::open::MESSAGE_FILE.to_owned());
    }
    names.extend(opened.files.iter().map(|f| f.saved_as.clone()));
    if names.is_empty() {
        eprintln!(
            "opened into {}: the archive holds no message and no files",
            opened.out_dir.display()
        );
    } else {
        eprintln!(
            "wrote {} into {}",
            names.join(", "),
            opened.out_dir.display()
        );
    }
    if std::io::stdout().is_terminal() {
        print!("{}", terminal_safe(&opened.message));
    } else {
        print!("{}", opened.message);
    }
    if !opened.message.is_empty() && !opened.message.ends_with('\n') {
        println!();
    }
    Ok(())
}
