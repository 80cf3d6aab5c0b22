//! The command line. `mod.rs` holds the command list, the dispatch and the error
//! wording; each command lives in its own file, flags first, then the code that
//! turns them into library calls. Printing helpers are in `output.rs`; the
//! library never prints.

mod dropbox;
mod fetch;
mod fingerprint;
mod input;
mod inspect;
mod keygen;
mod open;
mod output;
mod passphrase;
mod progress;
mod seal;
mod send;
mod serve;
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
    Keygen(keygen::KeygenArgs),
    /// Compress, encrypt and sign a message, photos and files into one .sxf file
    Seal(seal::SealArgs),
    /// Verify an .sxf file, then decrypt it into a new directory
    Open(open::OpenArgs),
    /// Check the signature and every entry of an .sxf file, without a private key
    Verify(verify::VerifyArgs),
    /// Show what an .sxf file's manifest says (unverified; needs no key)
    Inspect(inspect::InspectArgs),
    /// Print the fingerprint of a public or private key file
    Fingerprint(fingerprint::FingerprintArgs),
    /// Run a drop-box server that holds sealed archives for their recipients
    Serve(serve::ServeArgs),
    /// Upload a sealed .sxf file to a drop-box server for its recipients
    Send(send::SendArgs),
    /// Download (and optionally open) the archives waiting for your key on a drop-box server
    Fetch(fetch::FetchArgs),
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
        Command::Serve(a) => serve::run(a),
        Command::Send(a) => send::run(a),
        Command::Fetch(a) => fetch::run(a),
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
