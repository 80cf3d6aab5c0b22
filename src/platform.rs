//! Everything that differs between Linux, macOS and Windows, in one place.
//!
//! The rest of the crate asks for what it needs ("a private file", "rename
//! without replacing", "is this config file safe to trust") and never names an
//! operating system. Each primitive below uses the system's own equivalent:
//!
//! | need | Linux | macOS | Windows |
//! |---|---|---|---|
//! | private outputs | mode 0600 / 0700 | mode 0600 / 0700 | the profile's ACL (see below) |
//! | rename, never replace | `renameat2(RENAME_NOREPLACE)` | `renamex_np(RENAME_EXCL)` | `MoveFileExW` without `MOVEFILE_REPLACE_EXISTING` |
//! | open, never follow a link | `O_NOFOLLOW` | `O_NOFOLLOW` | `FILE_FLAG_OPEN_REPARSE_POINT` |
//! | config files only you can change | owner uid and mode | owner uid and mode | the profile's ACL |
//! | durable rename | fsync the directory | fsync the directory | `FlushFileBuffers` on the directory, where the filesystem allows |
//! | free space | `statvfs` | `statvfs` | `GetDiskFreeSpaceExW` |
//! | free inodes | `statvfs` `f_favail` | same | none (NTFS has no fixed count) |
//! | file locks | `std::fs::File::lock` (flock) | same (flock) | same (`LockFileEx`) |
//! | Ctrl-C, termination | SIGINT, SIGTERM, SIGHUP | same | Ctrl-C, Ctrl-Break |
//! | stopping `sxf serve` | SIGTERM, SIGINT (SIGHUP left alone, for `nohup`) | same | Ctrl-C, Ctrl-Break |
//!
//! **Windows and privacy.** Windows has no mode bits. A new file inherits the
//! ACL of its directory, and the directories under a user's profile
//! (`%USERPROFILE%`, `%APPDATA%`, where sxf keeps its config, and the usual
//! places keys and outputs go) grant access only to that user, SYSTEM and
//! Administrators. So on Windows sxf's outputs are private where the user's
//! own files are private, and sxf does not try to rewrite ACLs.
//!
//! The system calls come from crates: `tempfile` (the no-replace rename: its
//! `persist_noclobber` is exactly the three calls in the table), `fs4` (free
//! space), `rustix` (the owner check), `ctrlc` (interrupts) and `signal-hook`
//! (the server's stop signals on Unix). No `unsafe`
//! here or anywhere in the crate.

use std::fs;
use std::io;
use std::path::Path;

/// A builder for a directory that only its owner can enter (0700 on Unix).
pub fn private_dir_builder() -> fs::DirBuilder {
    #[allow(unused_mut)]
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
}

/// Options for a file that only its owner can read (0600 on Unix).
pub fn private_file_options() -> fs::OpenOptions {
    #[allow(unused_mut)]
    let mut options = fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Gives temporary files (or directories) made by `builder` the Unix `mode`;
/// on Windows they inherit their directory's ACL.
pub fn set_temp_mode(builder: &mut tempfile::Builder, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = (builder, mode);
}

/// Makes `options` refuse to follow a symbolic link (or, on Windows, any
/// reparse point) at the last component, and, on Unix, not block on a FIFO
/// swapped in at the path. The opened file's own metadata then says what it is.
pub fn do_not_follow(options: &mut fs::OpenOptions) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc_flags::NOFOLLOW_NONBLOCK);
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        /// `FILE_FLAG_OPEN_REPARSE_POINT`: open the link itself, not its target.
        const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
        options.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
    }
}

#[cfg(unix)]
mod libc_flags {
    use rustix::fs::OFlags;
    pub const NOFOLLOW_NONBLOCK: i32 = OFlags::NOFOLLOW.union(OFlags::NONBLOCK).bits() as i32;
}

/// Whether a file or directory that decides whom sxf trusts is safe to trust:
/// on Unix, owned by the current user and writable by nobody else. On Windows
/// this is what the profile's ACL already gives (see the module docs).
pub fn check_private(meta: &fs::Metadata) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.uid() != rustix::process::geteuid().as_raw() {
            return Err("it belongs to another user".into());
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!(
                "other users can change it (mode {:o}); make it private with chmod go-w",
                meta.mode() & 0o7777
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(())
}

/// Renames the file or directory `from` to `to`, failing with `AlreadyExists`
/// rather than replacing anything at `to`. See the table above for the call.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    // `TempPath` deletes its file when dropped; disarmed first, so a failed
    // rename leaves `from` exactly as it was.
    let mut path = tempfile::TempPath::try_from_path(from)?;
    path.disable_cleanup(true);
    path.persist_noclobber(to).map_err(|e| e.error)
}

/// Flushes the file at `path` to disk. Windows flushes only through a handle
/// opened for writing (`FlushFileBuffers`); Unix needs no more than reading.
pub fn sync_file(path: &Path) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    if cfg!(windows) {
        options.write(true);
    } else {
        options.read(true);
    }
    options.open(path)?.sync_all()
}

/// Makes the entries of `dir` durable: fsync of the directory on Unix. On
/// Windows, `FlushFileBuffers` on the directory opened for writing with
/// `FILE_FLAG_BACKUP_SEMANTICS`; NTFS journals the rename itself, and this
/// asks for the journal on disk. Filesystems that refuse to flush a
/// directory (FAT on a USB stick, some network shares) are let be there.
pub fn sync_dir_entries(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        /// `FILE_FLAG_BACKUP_SEMANTICS`: needed to open a directory at all.
        const FILE_FLAG_BACKUP_SEMANTICS: u32 = 0x0200_0000;
        let opened = fs::OpenOptions::new()
            .write(true)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
            .open(dir);
        if let Ok(d) = opened {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// How many names (hard links) the open file has.
pub fn link_count(file: &fs::File) -> io::Result<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(file.metadata()?.nlink())
    }
    #[cfg(windows)]
    {
        Ok(winapi_util::file::information(file)?.number_of_links())
    }
}

/// Standard input as a `File` of its own (a duplicate of descriptor 0, or of
/// the standard input handle on Windows), to read without std's buffer.
pub fn stdin_file() -> io::Result<fs::File> {
    #[cfg(unix)]
    let owned = {
        use std::os::fd::AsFd;
        std::io::stdin().as_fd().try_clone_to_owned()?
    };
    #[cfg(windows)]
    let owned = {
        use std::os::windows::io::AsHandle;
        std::io::stdin().as_handle().try_clone_to_owned()?
    };
    Ok(fs::File::from(owned))
}

/// How to end typed input at a terminal.
#[cfg(not(windows))]
pub const END_OF_INPUT: &str = "Ctrl-D on a line of its own";
/// How to end typed input at a console.
#[cfg(windows)]
pub const END_OF_INPUT: &str = "Ctrl-Z, then Enter, on a line of its own";

/// Inodes (file and directory entries) an unprivileged user may still create
/// on the filesystem holding `path` (statvfs `f_favail`), or `None` where the
/// filesystem has no fixed number (it reports a total of 0, as btrfs does)
/// or the system has no such count (Windows).
pub fn available_inodes(path: &Path) -> io::Result<Option<u64>> {
    #[cfg(unix)]
    {
        let s = rustix::fs::statvfs(path).map_err(io::Error::from)?;
        Ok((s.f_files > 0).then_some(s.f_favail))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(None)
    }
}

/// Bytes available to an unprivileged user on the filesystem holding `path`.
pub fn available_space(path: &Path) -> io::Result<u64> {
    fs4::available_space(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_noreplace_moves_a_directory_and_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("staged");
        let to = dir.path().join("out");
        fs::create_dir(&from).unwrap();
        fs::write(from.join("f"), b"x").unwrap();
        fs::create_dir(&to).unwrap();
        let e = rename_noreplace(&from, &to).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert!(from.join("f").exists(), "a failed rename leaves the source");
        fs::remove_dir(&to).unwrap();
        rename_noreplace(&from, &to).unwrap();
        assert_eq!(fs::read(to.join("f")).unwrap(), b"x");
        assert!(!from.exists());
    }

    #[test]
    fn rename_noreplace_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a");
        let to = dir.path().join("b");
        fs::write(&from, b"new").unwrap();
        fs::write(&to, b"old").unwrap();
        let e = rename_noreplace(&from, &to).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(fs::read(&to).unwrap(), b"old");
        assert_eq!(fs::read(&from).unwrap(), b"new");
    }

    #[test]
    fn do_not_follow_refuses_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, b"secret").unwrap();
        let link = dir.path().join("link");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, &link).unwrap();
        #[cfg(windows)]
        if std::os::windows::fs::symlink_file(&target, &link).is_err() {
            return; // creating symlinks needs a privilege on Windows
        }
        let mut options = fs::OpenOptions::new();
        options.read(true);
        do_not_follow(&mut options);
        match options.open(&link) {
            Err(_) => {}
            // Windows opens the link itself, which is not a regular file.
            Ok(f) => assert!(!f.metadata().unwrap().is_file()),
        }
    }

    #[test]
    fn there_is_free_space_where_the_tests_run() {
        assert!(available_space(Path::new(".")).unwrap() > 0);
        if let Some(inodes) = available_inodes(Path::new(".")).unwrap() {
            assert!(inodes > 0);
        }
    }
}
