//! The `sxf` command line: arguments in, library calls, one clear sentence and an
//! exit code out. Exit codes: 0 success; 1 the archive is not authentic, is
//! malformed, or cannot be opened with the given keys; 2 usage, I/O and every
//! other error; 130 stopped by Ctrl-C.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sxf: {}", cli::describe(&err));
            ExitCode::from(cli::exit_code(&err))
        }
    }
}
