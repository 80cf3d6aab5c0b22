//! Small filesystem helpers for durable, atomic outputs.

use std::io;
use std::path::Path;

/// fsyncs every regular file directly inside `dir`, then `dir` itself.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            crate::platform::sync_file(&entry.path())?;
        }
    }
    crate::platform::sync_dir_entries(dir)
}

/// fsyncs the directory holding `path`, so a rename into it is durable.
/// Best effort: some filesystems refuse to sync directories.
pub fn sync_parent_dir(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let _ = crate::platform::sync_dir_entries(parent);
}

/// The same error without the name of a temporary file: the tempfile crate adds
/// `at path ".sxf-…"` to the errors of the files and directories it creates,
/// and that name means nothing to the user (the file never outlives the error).
pub fn without_temp_path(e: io::Error) -> io::Error {
    let text = e.to_string();
    match text.find(" at path \"") {
        Some(at) if e.get_ref().is_some() => io::Error::new(e.kind(), &text[..at]),
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_file_names_are_dropped_from_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = tempfile::Builder::new()
            .prefix(".sxf-test-")
            .tempfile_in(&missing)
            .unwrap_err();
        assert!(e.to_string().contains(".sxf-test-"), "{e}");
        let kind = e.kind();
        let e = without_temp_path(e);
        assert_eq!(e.kind(), kind);
        assert!(!e.to_string().contains(".sxf-test-"), "{e}");
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        // Other errors are left as they are.
        let plain = io::Error::from_raw_os_error(2);
        assert_eq!(
            without_temp_path(plain).raw_os_error(),
            Some(2),
            "an OS error stays one"
        );
    }
}
