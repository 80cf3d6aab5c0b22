//! `sxf completions SHELL`: a tab-completion script for the shell, on stdout.

use std::io::Write;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for
    shell: clap_complete::Shell,
}

pub(crate) fn run(a: CompletionsArgs) -> Result<()> {
    let mut cmd = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "sxf", &mut script);
    std::io::stdout()
        .write_all(&script)
        .context("writing to standard output")
}
