//! `sxf seal`: the flags, the message input and the summary printed afterwards.

use std::ffi::OsString;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::Args;

use sxf::images::{DEFAULT_QUALITY, ImageOptions};
use sxf::seal::Destination;

use super::output::{human_bytes, shown_path};
use super::progress::TerminalProgress;
use super::shared::{Keyring, NamedKey, PassphraseArgs};

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("message_source").multiple(false))]
pub(crate) struct SealArgs {
    /// A recipient: a contact name or a public key file (repeat for several)
    #[arg(long = "to", value_name = "NAME|PUB", required = true)]
    to: Vec<OsString>,
    /// Your private key, to sign with (default: your identity, see `sxf identity`)
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
    /// Do not also encrypt to your own key (by default you can reopen what you seal)
    #[arg(long)]
    no_self: bool,
    /// The message text
    #[arg(
        short = 'm',
        long = "message",
        value_name = "TEXT",
        group = "message_source"
    )]
    message: Option<String>,
    /// Read the message from a file, or from standard input with -
    #[arg(long, value_name = "PATH|-", group = "message_source")]
    message_file: Option<PathBuf>,
    /// A photo to compress and include (repeatable)
    #[arg(long = "image", value_name = "PATH")]
    images: Vec<PathBuf>,
    /// Any file to include unchanged (repeatable)
    #[arg(long = "attach", value_name = "PATH")]
    attachments: Vec<PathBuf>,
    /// JPEG quality for photos, 1-100
    #[arg(long, default_value_t = DEFAULT_QUALITY, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// Downscale photos so the longer side is at most PX pixels
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u32).range(1..))]
    max_dim: Option<u32>,
    /// Store photos as they are (keeps their metadata, including GPS)
    #[arg(long)]
    keep_original: bool,
    /// Make the archive at most SIZE (e.g. 10MB, 24MiB): photo quality, and if
    /// need be photo size, is lowered until it fits
    #[arg(long, value_name = "SIZE", value_parser = super::shared::parse_size, conflicts_with = "keep_original")]
    fit: Option<u64>,
    /// Photos to process at once (default: one per core)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    /// The archive to write (it must not exist), or - for standard output
    #[arg(short = 'o', long = "out", value_name = "OUT.sxf|-")]
    out: PathBuf,
    /// Write the archive as ASCII armor (text for email), not binary
    #[arg(short = 'a', long)]
    armor: bool,
    #[command(flatten)]
    passphrase: PassphraseArgs,
}

/// How a photo went into the archive, for the seal summary.
fn describe_photo(method: sxf::images::Method, colour: sxf::images::Conversion) -> String {
    use sxf::images::{Conversion, Method};
    let how = match method {
        Method::Reencoded { quality } => format!("re-encoded at quality {quality}"),
        Method::Lossless => {
            "original JPEG data with its metadata removed (re-encoding would not make it smaller)"
                .to_string()
        }
        Method::Original => "stored as it is (--keep-original)".to_string(),
    };
    match colour {
        Conversion::Converted => format!("{how}, colours converted to sRGB"),
        Conversion::Ignored => format!("{how}, colour profile unusable, taken as sRGB"),
        Conversion::ProfileKept => format!("{how}, its colour profile kept"),
        Conversion::AlreadySrgb => how,
    }
}

fn read_message(a: &SealArgs) -> Result<String> {
    if let Some(m) = &a.message {
        return Ok(m.clone());
    }
    // One byte more than the limit is enough for seal to refuse it clearly.
    let cap = sxf::payload::MAX_MESSAGE_LEN + 1;
    let mut bytes = Vec::new();
    match &a.message_file {
        Some(p) if p.as_os_str() == "-" => {
            std::io::stdin()
                .take(cap)
                .read_to_end(&mut bytes)
                .context("reading the message from standard input")?;
        }
        Some(p) => {
            std::fs::File::open(p)
                .and_then(|f| f.take(cap).read_to_end(&mut bytes))
                .with_context(|| format!("reading {}", p.display()))?;
        }
        // Photos or files alone need no message: do not wait for one.
        None if a.images.is_empty()
            && a.attachments.is_empty()
            && std::io::stdin().is_terminal() =>
        {
            eprintln!(
                "Type the message; end it with {}:",
                sxf::platform::END_OF_INPUT
            );
            std::io::stdin()
                .take(cap)
                .read_to_end(&mut bytes)
                .context("reading the message")?;
        }
        None => {}
    }
    if bytes.len() as u64 >= cap {
        bail!(
            "the message is longer than {} bytes, the limit; attach large text as a file",
            sxf::payload::MAX_MESSAGE_LEN
        );
    }
    String::from_utf8(bytes).context("the message is not valid UTF-8 text")
}

const NOTHING_TO_SEAL: &str =
    "nothing to seal: give a message (-m, --message-file), an --image or an --attach";

/// Every photo and attachment must be a readable file: checked before the
/// message is typed, so that a typo in a path never costs the text.
fn check_inputs(a: &SealArgs) -> Result<()> {
    for path in a.images.iter().chain(&a.attachments) {
        let file = std::fs::File::open(path).with_context(|| shown_path(path))?;
        if !file.metadata().with_context(|| shown_path(path))?.is_file() {
            bail!("{} is not a regular file", shown_path(path));
        }
    }
    Ok(())
}

pub(crate) fn run(a: SealArgs) -> Result<()> {
    let to_stdout = super::input::is_stdin(&a.out);
    if to_stdout && !a.armor && std::io::stdout().is_terminal() {
        bail!(
            "refusing to write a binary archive to a terminal; redirect standard output (> FILE.sxf), or use --armor for text"
        );
    }
    let no_files = a.images.is_empty() && a.attachments.is_empty();
    // Known to be empty before anything is loaded: say so at once.
    let no_source = a.message.is_none() && a.message_file.is_none();
    let surely_empty =
        a.message.as_deref() == Some("") || no_source && !std::io::stdin().is_terminal();
    if no_files && surely_empty {
        bail!(NOTHING_TO_SEAL);
    }
    let passphrase = a.passphrase.source();
    if passphrase.reads_stdin() && a.message_file.as_deref() == Some(std::path::Path::new("-")) {
        bail!("--passphrase-file - and --message-file - cannot both read standard input");
    }
    // Keys, passphrase and input paths first: the message, which may be typed
    // at a terminal, comes last.
    let mut keyring = Keyring::new();
    let mut named = Vec::new();
    for to in &a.to {
        named.push(keyring.public_key(to)?);
    }
    let sender = keyring.load_private_key(a.sign.as_deref(), "--sign", &passphrase)?;
    // Also to yourself, unless --no-self: the manifest names the sender anyway,
    // so this reveals nothing new.
    if !a.no_self
        && !named
            .iter()
            .any(|n| n.key.fingerprint() == sender.fingerprint())
    {
        named.push(NamedKey {
            key: sender.public().clone(),
            label: "you".to_string(),
        });
    }
    let recipients: Vec<_> = named.iter().map(|n| n.key.clone()).collect();
    check_inputs(&a)?;
    let message = read_message(&a)?;
    if message.is_empty() && no_files {
        bail!(NOTHING_TO_SEAL);
    }
    let request = sxf::seal::SealRequest {
        sender: &sender,
        recipients: &recipients,
        message,
        images: a.images.clone(),
        image_options: ImageOptions {
            quality: a.quality,
            max_dim: a.max_dim,
            keep_original: a.keep_original,
        },
        attachments: a.attachments.clone(),
        created: SystemTime::now(),
        fit: a.fit,
        threads: a.jobs.map(usize::from),
    };
    let mut progress = TerminalProgress::new();
    let mut stdout = std::io::stdout().lock();
    let destination = if to_stdout {
        Destination::Writer {
            out: &mut stdout,
            armor: a.armor,
        }
    } else {
        Destination::File {
            path: &a.out,
            armor: a.armor,
        }
    };
    let report = sxf::seal::seal_to(request, destination, &mut rand::rngs::SysRng, &mut progress)?;
    for img in &report.images {
        eprintln!(
            "  image {}: {} {}x{} -> {} {}x{}, {}",
            shown_path(&img.path),
            human_bytes(img.original_len),
            img.original_dims.0,
            img.original_dims.1,
            human_bytes(img.sealed_len),
            img.sealed_dims.0,
            img.sealed_dims.1,
            describe_photo(img.method, img.colour),
        );
    }
    if let (Some(limit), Some(choice), false) = (a.fit, report.fit, report.images.is_empty()) {
        eprintln!(
            "  fit {}: photos at quality {}{}",
            human_bytes(limit),
            choice.quality,
            match choice.max_dim {
                Some(px) => format!(", at most {px} pixels on the long side"),
                None => String::new(),
            }
        );
    }
    for (path, len) in &report.attachments {
        eprintln!("  attachment {}: {}", shown_path(path), human_bytes(*len));
    }
    eprintln!(
        "sealed {}{} ({})",
        if to_stdout {
            "to standard output".to_string()
        } else {
            shown_path(&a.out)
        },
        if a.armor { ", armored" } else { "" },
        human_bytes(report.archive_len)
    );
    let sender_label = keyring.label_for(sender.public()).unwrap_or_default();
    eprintln!("  sender     {}", labelled(&sender_label, &report.sender));
    for r in &report.recipients {
        let label = named
            .iter()
            .find(|n| n.key.fingerprint() == r)
            .map_or("", |n| n.label.as_str());
        eprintln!("  recipient  {}", labelled(label, r));
    }
    Ok(())
}

/// `bob (sha256:…)`, or the fingerprint alone when there is no name.
fn labelled(label: &str, fp: &sxf::keys::Fingerprint) -> String {
    if label.is_empty() {
        fp.to_string()
    } else {
        format!("{label} ({fp})")
    }
}
