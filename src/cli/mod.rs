//! The command line. `mod.rs` holds the command list, the dispatch and the error
//! wording; each command lives in its own file, flags first, then the code that
//! turns them into library calls. Printing helpers are in `output.rs`; the
//! library never prints.

mod completions;
mod contacts;
mod dropbox;
mod fetch;
mod fingerprint;
mod identity;
mod input;
mod inspect;
mod keygen;
mod man;
mod open;
mod output;
mod passphrase;
mod progress;
mod pubkey;
mod seal;
mod send;
mod serve;
mod server_log;
mod shared;
mod verify;

use anyhow::Result;
use clap::{Parser, Subcommand};

pub(crate) use output::describe;

#[derive(Debug, Parser)]
#[command(
    name = "sxf",
    version,
    about = "Send a message and photos securely without a live connection",
    long_about = "Send a message and photos securely without a live connection.\n\n\
        seal encrypts to the recipients' RSA keys and signs with yours; open proves who \
        sealed the file and that no byte changed before it decrypts anything.\n\n\
        Exit codes: 0 success; 1 the archive is not authentic (or its sender is not one of \
        your contacts), is malformed, or cannot be opened with the given keys; 2 usage, I/O and every other error; 130 stopped by \
        Ctrl-C (nothing was written)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate an RSA key pair: NAME.key (private, mode 0600) and NAME.pub
    #[command(after_help = "Examples:\n  \
        sxf keygen alice --identity\n  \
        sxf keygen bob --out-dir keys --bits 3072")]
    Keygen(keygen::KeygenArgs),
    /// Compress, encrypt and sign a message, photos and files into one .sxf file
    #[command(after_help = "Examples:\n  \
        sxf seal --to bob -m 'see you at noon' --image beach.jpg -o hello.sxf\n  \
        sxf seal --to bob.pub --sign alice.key -m 'see you at noon' -a -o hello.sxf.asc\n  \
        sxf seal --to bob.pub --sign alice.key --attach report.pdf --fit 10MB -o report.sxf")]
    Seal(seal::SealArgs),
    /// Verify an .sxf file, then decrypt it into a new directory
    #[command(after_help = "Examples:\n  \
        sxf open hello.sxf\n  \
        sxf open hello.sxf --key bob.key --from alice.pub -o hello")]
    Open(open::OpenArgs),
    /// Check the signature and every entry of an .sxf file, without a private key
    #[command(after_help = "Examples:\n  \
        sxf verify hello.sxf\n  \
        sxf verify hello.sxf --from alice.pub")]
    Verify(verify::VerifyArgs),
    /// Show what an .sxf file's manifest says (unverified; needs no key)
    #[command(after_help = "Examples:\n  \
        sxf inspect hello.sxf\n  \
        sxf inspect --json hello.sxf")]
    Inspect(inspect::InspectArgs),
    /// Save, list, show and remove the public keys of people you exchange archives with
    Contacts(contacts::ContactsArgs),
    /// Set or show your own key, used when --sign or --key is not given
    Identity(identity::IdentityArgs),
    /// Print the fingerprint of a public or private key file
    #[command(after_help = "Example:\n  \
        sxf fingerprint alice.pub")]
    Fingerprint(fingerprint::FingerprintArgs),
    /// Print the public key of a private key file (SPKI PEM, or an ssh-rsa line)
    Pubkey(pubkey::PubkeyArgs),
    /// Run a drop-box server that holds sealed archives for their recipients
    #[command(after_help = "Example:\n  \
        sxf serve --listen 127.0.0.1:7878 --store store")]
    Serve(serve::ServeArgs),
    /// Upload a sealed .sxf file to a drop-box server for its recipients
    #[command(after_help = "Example:\n  \
        sxf send hello.sxf --server 127.0.0.1:7878")]
    Send(send::SendArgs),
    /// Download (and optionally open) the archives waiting for your key on a drop-box server
    #[command(after_help = "Examples:\n  \
        sxf fetch --server 127.0.0.1:7878 --key bob.key --out-dir inbox\n  \
        sxf fetch --server 127.0.0.1:7878 --key bob.key --out-dir inbox --watch --open --from alice.pub")]
    Fetch(fetch::FetchArgs),
    /// Print a tab-completion script for bash, zsh, fish, elvish or powershell
    #[command(after_help = "Examples:\n  \
        sxf completions bash > ~/.local/share/bash-completion/completions/sxf\n  \
        sxf completions zsh > ~/.zfunc/_sxf")]
    Completions(completions::CompletionsArgs),
    /// Print the sxf(1) manual page, or write one page per command into a directory
    #[command(after_help = "Examples:\n  \
        sxf man | man -l -\n  \
        sxf man --dir ~/.local/share/man/man1")]
    Man(man::ManArgs),
}

/// Runs one command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen(a) => keygen::run(a),
        Command::Seal(a) => seal::run(a),
        Command::Open(a) => open::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Fingerprint(a) => fingerprint::run(a),
        Command::Contacts(a) => contacts::run(a),
        Command::Identity(a) => identity::run(a),
        Command::Pubkey(a) => pubkey::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Send(a) => send::run(a),
        Command::Fetch(a) => fetch::run(a),
        Command::Completions(a) => completions::run(a),
        Command::Man(a) => man::run(a),
    }
}

/// The library error inside an anyhow chain, if any.
fn library_error(err: &anyhow::Error) -> Option<&sxf::Error> {
    err.chain().find_map(|e| e.downcast_ref::<sxf::Error>())
}

/// 1 for a rejected archive (including one whose sender is unknown), 130 for
/// a stop asked with Ctrl-C (as a shell reports SIGINT), 2 for everything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    // An archive signed by nobody you know is rejected like a wrong sender.
    if err
        .chain()
        .any(|e| e.downcast_ref::<shared::UnknownSender>().is_some())
    {
        return 1;
    }
    match library_error(err) {
        Some(e) if e.is_rejection() => 1,
        Some(sxf::Error::Interrupted) => 130,
        _ => 2,
    }
}
