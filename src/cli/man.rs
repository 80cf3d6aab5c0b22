//! `sxf man`: manual pages in roff, made from the same definitions as `--help`.
//! Without `--dir`, sxf(1) goes to stdout; with it, one page per command
//! (sxf.1, sxf-seal.1, ...) is written into the directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use clap::{Args, CommandFactory};
use clap_mangen::Man;

use super::output::shown_path;

#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Write one page per command (sxf.1, sxf-seal.1, ...) into DIR, created if
    /// missing, instead of printing sxf(1)
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

fn render(cmd: clap::Command) -> Result<(String, Vec<u8>)> {
    let man = Man::new(cmd).source(format!("sxf {}", env!("CARGO_PKG_VERSION")));
    let mut page = Vec::new();
    man.render(&mut page).context("rendering the manual page")?;
    Ok((man.get_filename(), page))
}

/// Replaces `path` with `bytes` atomically: a temporary file beside it, then a rename.
fn write_page(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // Said without the temporary file's name, which means nothing to anyone.
    let failed = |e: std::io::Error| anyhow!("could not write {}: {}", shown_path(path), e.kind());
    let mut tmp = tempfile::Builder::new()
        .prefix(".sxf-man-")
        .tempfile_in(dir)
        .map_err(failed)?;
    tmp.as_file_mut().write_all(bytes).map_err(failed)?;
    tmp.as_file().sync_all().map_err(failed)?;
    tmp.persist(path).map_err(|e| failed(e.error))?;
    Ok(())
}

pub(crate) fn run(a: ManArgs) -> Result<()> {
    let mut cmd = super::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let Some(dir) = a.dir else {
        let (_, page) = render(cmd)?;
        return std::io::stdout()
            .write_all(&page)
            .context("writing to standard output");
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", shown_path(&dir)))?;
    let mut pages = vec![cmd.clone()];
    pages.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    for page in pages {
        let (name, bytes) = render(page)?;
        let path = dir.join(name);
        write_page(&path, &bytes)?;
        eprintln!("wrote {}", shown_path(&path));
    }
    Ok(())
}
