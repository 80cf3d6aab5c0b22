//! Small filesystem helpers for durable, atomic outputs.

use std::fs::File;
use std::io;
use std::path::Path;

/// fsyncs every regular file directly inside `dir`, then `dir` itself.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            File::open(entry.path())?.sync_all()?;
        }
    }
    File::open(dir)?.sync_all()
}

/// fsyncs the directory holding `path`, so a rename into it is durable.
/// Best effort: some filesystems refuse to sync directories.
pub fn sync_parent_dir(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(parent) {
        let _ = d.sync_all();
    }
}

/// Renames `from` to `to`, failing with `AlreadyExists` rather than replacing
/// anything at `to` (Linux `renameat2(RENAME_NOREPLACE)`).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE).map_err(io::Error::from)
}
