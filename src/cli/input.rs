//! Archives from files, armored files, pipes and standard input (`-`), for
//! `open`, `verify` and `inspect`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;

use sxf::input::{ArchiveInput, DEFAULT_SPOOL_LIMIT, InputOptions};

use super::output::shown_path;

#[derive(Debug, Args)]
pub(crate) struct SpoolArgs {
    /// Read at most SIZE (e.g. 8GiB) from standard input or a pipe, which is
    /// copied to a private temporary file first [default: 4GiB]
    #[arg(long, value_name = "SIZE", value_parser = super::shared::parse_size)]
    spool_limit: Option<u64>,
}

/// Whether the archive argument means standard input.
pub(crate) fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// How the archive argument is named in messages.
pub(crate) fn shown_name(path: &Path) -> String {
    if is_stdin(path) {
        "standard input".into()
    } else {
        shown_path(path)
    }
}

/// Whether `path` has no name to make an output directory from: standard input,
/// or a pipe or FIFO such as `<(…)` (named like `/dev/fd/63`).
pub(crate) fn is_unnamed(path: &Path) -> bool {
    is_stdin(path) || std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// The name to derive a default output directory from: an armored archive saved
/// as `message.sxf.asc` or `message.sxf.txt` opens into `message`, as
/// `message.sxf` does.
pub(crate) fn without_text_suffix(path: &Path) -> PathBuf {
    let name = path.to_string_lossy();
    for suffix in [".sxf.asc", ".sxf.txt"] {
        if let Some(stem) = name.strip_suffix(suffix)
            && !stem.is_empty()
            && !stem.ends_with('/')
        {
            return PathBuf::from(format!("{stem}.sxf"));
        }
    }
    path.to_owned()
}

/// Reads the archive argument into a seekable binary archive: decoding armor,
/// and copying standard input or a pipe to a private temporary file.
pub(crate) fn load_archive(
    path: &Path,
    args: &SpoolArgs,
    progress: &mut dyn sxf::Progress,
) -> Result<ArchiveInput> {
    let limit = args.spool_limit.unwrap_or(DEFAULT_SPOOL_LIMIT);
    let options = InputOptions { spool_limit: limit };
    let result = if is_stdin(path) {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            bail!(
                "standard input is a terminal; pipe or redirect an archive into sxf (sxf open - < FILE.sxf)"
            );
        }
        let file = sxf::platform::stdin_file().context("reading standard input")?;
        ArchiveInput::from_file(file, &options, progress)
    } else {
        ArchiveInput::open(path, &options, progress)
    };
    result.map_err(|e| match e {
        sxf::Error::SpoolLimit { .. } => anyhow!(
            "{}: {e}; raise it with --spool-limit SIZE (e.g. --spool-limit {})",
            shown_name(path),
            size_arg(limit.saturating_mul(2))
        ),
        e => anyhow::Error::new(e).context(shown_name(path)),
    })
}

/// A size as `--spool-limit` takes it: `8GiB`, `512MiB`, or bytes.
fn size_arg(n: u64) -> String {
    for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}
