//! Argument parsing (clap derive) and the commands. This layer validates flags,
//! turns them into library calls and prints; the library never prints.

mod dropbox;
mod passphrase;
mod progress;

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use sxf::images::{DEFAULT_QUALITY, ImageOptions};
use sxf::keys::{self, KeyPairPaths, PrivateKeyInfo, PublicKeyInfo};
use sxf::open::ExpectedSender;

use passphrase::PassphraseSource;
use progress::TerminalProgress;

#[derive(Debug, Parser)]
#[command(
    name = "sxf",
    version,
    about = "Send a message and photos securely without a live connection",
    long_about = "Send a message and photos securely without a live connection.\n\n\
        seal encrypts to the recipients' RSA keys and signs with yours; open proves who \
        sealed the file and that no byte changed before it decrypts anything.\n\n\
        Exit codes: 0 success; 1 the archive is not authentic, is malformed, or cannot be \
        opened with the given keys; 2 usage, I/O and every other error."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate an RSA key pair: NAME.key (private, mode 0600) and NAME.pub
    Keygen(KeygenArgs),
    /// Compress, encrypt and sign a message, photos and files into one .sxf file
    Seal(SealArgs),
    /// Verify an .sxf file, then decrypt it into a new directory
    Open(OpenArgs),
    /// Check the signature and every entry of an .sxf file, without a private key
    Verify(VerifyArgs),
    /// Show what an .sxf file's manifest says (unverified; needs no key)
    Inspect(InspectArgs),
    /// Print the fingerprint of a public or private key file
    Fingerprint(FingerprintArgs),
    /// Run a drop-box server that holds sealed archives for their recipients
    Serve(dropbox::ServeArgs),
    /// Upload a sealed .sxf file to a drop-box server for its recipients
    Send(dropbox::SendArgs),
    /// Download (and optionally open) the archives waiting for your key on a drop-box server
    Fetch(dropbox::FetchArgs),
}

#[derive(Debug, Args)]
struct PassphraseArgs {
    /// Read the private key's passphrase from this file (first line). Otherwise
    /// SXF_PASSPHRASE is used, otherwise a terminal prompt.
    #[arg(long, value_name = "PATH")]
    passphrase_file: Option<PathBuf>,
}

impl PassphraseArgs {
    fn source(&self) -> PassphraseSource {
        PassphraseSource::new(self.passphrase_file.clone())
    }
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// Base name of the key files
    name: String,
    /// Modulus size
    #[arg(long, default_value_t = 2048, value_parser = parse_bits)]
    bits: usize,
    /// Directory to write the key files into
    #[arg(long, value_name = "DIR", default_value = ".")]
    out_dir: PathBuf,
    /// Write the private key unencrypted (anyone who reads the file can use it)
    #[arg(long)]
    no_passphrase: bool,
    #[command(flatten)]
    passphrase: PassphraseArgs,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("message_source").multiple(false))]
struct SealArgs {
    /// Recipient public key (repeat for several recipients)
    #[arg(long = "to", value_name = "PUB", required = true)]
    to: Vec<PathBuf>,
    /// Your private key, to sign with
    #[arg(long, value_name = "KEY")]
    sign: PathBuf,
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
    #[arg(long, value_name = "SIZE", value_parser = dropbox::parse_size, conflicts_with = "keep_original")]
    fit: Option<u64>,
    /// Photos to process at once (default: one per core)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    /// The archive to write; it must not exist
    #[arg(short = 'o', long = "out", value_name = "OUT.sxf")]
    out: PathBuf,
    #[command(flatten)]
    passphrase: PassphraseArgs,
}

#[derive(Debug, Args)]
struct SenderArgs {
    /// The sender's public key: the archive must be sealed by this key
    #[arg(long, value_name = "PUB", required_unless_present = "any_sender")]
    from: Option<PathBuf>,
    /// Accept whatever sender key the archive embeds (prints a warning)
    #[arg(long, conflicts_with = "from")]
    any_sender: bool,
}

#[derive(Debug, Args)]
struct OpenArgs {
    /// The .sxf file
    file: PathBuf,
    /// Your private key
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    #[command(flatten)]
    sender: SenderArgs,
    /// Output directory (must not exist); default: the archive's name without .sxf
    #[arg(short = 'o', long = "out-dir", value_name = "DIR")]
    out_dir: Option<PathBuf>,
    #[command(flatten)]
    passphrase: PassphraseArgs,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The .sxf file
    file: PathBuf,
    #[command(flatten)]
    sender: SenderArgs,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// The .sxf file
    file: PathBuf,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct FingerprintArgs {
    /// A public (.pub) or private (.key) key file
    keyfile: PathBuf,
    #[command(flatten)]
    passphrase: PassphraseArgs,
}

fn parse_bits(s: &str) -> Result<usize, String> {
    match s {
        "2048" | "3072" | "4096" => Ok(s.parse().expect("digits")),
        _ => Err("choose 2048, 3072 or 4096".into()),
    }
}

/// Runs one command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen(a) => keygen(a),
        Command::Seal(a) => seal(a),
        Command::Open(a) => open(a),
        Command::Verify(a) => verify(a),
        Command::Inspect(a) => inspect(a),
        Command::Fingerprint(a) => fingerprint(a),
        Command::Serve(a) => dropbox::serve(a),
        Command::Send(a) => dropbox::send(a),
        Command::Fetch(a) => dropbox::fetch(a),
    }
}

/// The library error inside an anyhow chain, if any.
fn library_error(err: &anyhow::Error) -> Option<&sxf::Error> {
    err.chain().find_map(|e| e.downcast_ref::<sxf::Error>())
}

/// 1 for a rejected archive, 2 for everything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    match library_error(err) {
        Some(e) if e.is_rejection() => 1,
        _ => 2,
    }
}

/// One sentence: the contexts and the cause, joined. Control characters (which
/// could come from a hostile archive) are escaped so they never reach a terminal.
pub fn describe(err: &anyhow::Error) -> String {
    let mut sentence = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        // Some errors already include their cause's text; say it once.
        if !sentence.contains(&text) {
            if !sentence.is_empty() {
                sentence.push_str(": ");
            }
            sentence.push_str(&text);
        }
    }
    sentence
        .chars()
        .map(|c| {
            if c.is_control() || is_bidi_control(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Makes a decrypted message safe to print on a terminal: control characters other
/// than newline and tab are shown as U+FFFD, so a sender cannot drive the
/// recipient's terminal with escape sequences. The file on disk is unchanged.
/// Bidirectional overrides and isolates, which can make text read differently
/// from what it is.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn terminal_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c) {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// A local file name as the seal summary prints it: on one line, with control and
/// bidi characters neutralised like every other printed name.
fn shown_path(path: &Path) -> String {
    terminal_safe(&path.display().to_string()).replace(['\n', '\t'], "\u{FFFD}")
}

fn load_public(path: &Path) -> Result<PublicKeyInfo> {
    Ok(keys::load_public_key(path)?)
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

/// Sizes everywhere in the CLI use indicatif's binary units, as the progress bar does.
fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

fn keygen(a: KeygenArgs) -> Result<()> {
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
        None if std::io::stdin().is_terminal() => {
            eprintln!("Type the message; end it with Ctrl-D on a line of its own:");
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

fn seal(a: SealArgs) -> Result<()> {
    let message = read_message(&a)?;
    if message.is_empty() && a.images.is_empty() && a.attachments.is_empty() {
        bail!("nothing to seal: give a message (-m, --message-file), an --image or an --attach");
    }
    let recipients =
        a.to.iter()
            .map(|p| load_public(p))
            .collect::<Result<Vec<_>>>()?;
    let sender = a.passphrase.source().load_private_key(&a.sign)?;
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
    let report = sxf::seal::seal(request, &a.out, &mut TerminalProgress::new())?;
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
        "sealed {} ({})",
        a.out.display(),
        human_bytes(report.archive_len)
    );
    eprintln!("  sender     {}", report.sender);
    for r in &report.recipients {
        eprintln!("  recipient  {r}");
    }
    Ok(())
}

fn expected_sender(args: &SenderArgs) -> Result<(Option<PublicKeyInfo>, bool)> {
    match (&args.from, args.any_sender) {
        (Some(p), false) => Ok((Some(load_public(p)?), false)),
        (None, true) => Ok((None, true)),
        _ => {
            bail!("say who the sender is with --from PUB (or accept any sender with --any-sender)")
        }
    }
}

fn warn_any_sender(fp: &keys::Fingerprint) {
    eprintln!(
        "WARNING: --any-sender: the archive verifies against the key it carries itself, \
         which proves nothing about who sent it.\n\
         WARNING: sender key fingerprint: {fp}\n\
         WARNING: compare it with the sender's real fingerprint through another channel."
    );
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

fn open(a: OpenArgs) -> Result<()> {
    let (from, any) = expected_sender(&a.sender)?;
    let out_dir = match &a.out_dir {
        Some(d) => d.clone(),
        None => default_out_dir(&a.file)?,
    };
    if out_dir.exists() {
        bail!("{} already exists; sxf never overwrites", out_dir.display());
    }
    let key = a.passphrase.source().load_private_key(&a.key)?;
    debug_assert_eq!(any, from.is_none());
    open_and_report(&a.file, &key, from.as_ref(), &out_dir, true)
}

/// Opens one archive into `out_dir` and reports exactly as `sxf open` does;
/// `from: None` means `--any-sender`. `sxf fetch --open` shares it, with
/// `own_signals` false so that Ctrl-C keeps its usual meaning in `fetch --watch`.
pub(crate) fn open_and_report(
    file: &Path,
    key: &PrivateKeyInfo,
    from: Option<&PublicKeyInfo>,
    out_dir: &Path,
    own_signals: bool,
) -> Result<()> {
    let mut progress = if own_signals {
        TerminalProgress::new()
    } else {
        TerminalProgress::without_signals()
    };
    let sender = match from {
        Some(k) => ExpectedSender::Key(k),
        None => ExpectedSender::Embedded,
    };
    let opened = sxf::open::open(file, key, sender, out_dir, &mut progress)
        .with_context(|| file.display().to_string())?;
    if from.is_none() {
        warn_any_sender(opened.manifest.sender.fingerprint());
    }
    eprintln!(
        "verified: sealed by {} at {}",
        opened.manifest.sender.fingerprint(),
        opened.manifest.manifest.created
    );
    let mut names = vec![sxf::open::MESSAGE_FILE.to_owned()];
    names.extend(opened.files.iter().map(|f| f.saved_as.clone()));
    eprintln!(
        "wrote {} into {}",
        names.join(", "),
        opened.out_dir.display()
    );
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

fn verify(a: VerifyArgs) -> Result<()> {
    let (from, any) = expected_sender(&a.sender)?;
    let sender = match &from {
        Some(k) => ExpectedSender::Key(k),
        None => ExpectedSender::Embedded,
    };
    let v = sxf::open::verify(&a.file, sender, &mut TerminalProgress::new())
        .with_context(|| a.file.display().to_string())?;
    if any {
        warn_any_sender(v.manifest.sender.fingerprint());
    }
    println!(
        "OK: {} is authentic: sealed by {} at {}, every entry intact",
        a.file.display(),
        v.manifest.sender.fingerprint(),
        v.manifest.manifest.created
    );
    Ok(())
}

fn inspect(a: InspectArgs) -> Result<()> {
    let (m, archive_len) =
        sxf::open::inspect(&a.file).with_context(|| a.file.display().to_string())?;
    let man = &m.manifest;
    if a.json {
        let value = serde_json::json!({
            "verified": false,
            "format": man.format,
            "created": man.created,
            "algorithms": man.algorithms,
            "sender": man.sender.fingerprint,
            "recipients": man.recipients.iter().map(|r| &r.fingerprint).collect::<Vec<_>>(),
            "archive_bytes": archive_len,
            "payload_bytes": man.payload.length,
            "keys_bytes": man.keys.length,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "{} (not verified: use sxf verify --from PUB)",
        a.file.display()
    );
    println!("format      {}", man.format);
    println!("created     {}", man.created);
    println!("sender      {}", man.sender.fingerprint);
    for r in &man.recipients {
        println!("recipient   {}", r.fingerprint);
    }
    println!("key wrap    {}", man.algorithms.key_wrap);
    println!("cipher      {}", man.algorithms.cipher);
    println!("mac         {}", man.algorithms.mac);
    println!("signature   {}", man.algorithms.signature);
    println!("archive     {} bytes", archive_len);
    println!("payload     {} bytes (encrypted)", man.payload.length);
    Ok(())
}

fn fingerprint(a: FingerprintArgs) -> Result<()> {
    let source = a.passphrase.source();
    let fp = keys::fingerprint_file(&a.keyfile, || source.for_key(&a.keyfile))
        .map_err(passphrase::explain)?;
    println!("{fp}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_output_neutralises_escape_sequences_and_bidi_overrides() {
        let hostile = "hi\x1b]0;pwned\x07 \u{202E}gnp.exe\n\tok";
        let shown = terminal_safe(hostile);
        assert!(!shown.contains('\x1b') && !shown.contains('\x07'));
        assert!(!shown.contains('\u{202E}'));
        assert!(shown.ends_with("\n\tok"), "newline and tab are kept");
    }

    #[test]
    fn error_sentences_escape_control_characters_and_state_causes_once() {
        let io = std::io::Error::other("disk on fire");
        let err = anyhow::Error::new(io).context("writing x\x1b[2J");
        let text = describe(&err);
        assert_eq!(text, "writing x\\u{1b}[2J: disk on fire");
    }
}
