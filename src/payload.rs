//! The inner plaintext: the message and the files, in a layout a person can read
//! after decrypting by hand.
//!
//! ```text
//! SXF-PAYLOAD/1 <index length in decimal>\n
//! <index: TOML, exactly that many bytes>
//! <message bytes><file 1 bytes><file 2 bytes>...
//! ```
//!
//! The index gives the message length and each file's display name, media type,
//! kind and length, so the body is plain concatenation and can be streamed in both
//! directions. The reader treats the decrypted bytes as hostile: the sender may be
//! the attacker. Caps are checked before allocating, lengths must add up exactly,
//! and a name from the index is only ever used as a path after [`safe_file_name`].

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The first bytes of every payload.
pub const MAGIC: &str = "SXF-PAYLOAD/1 ";
/// Caps on what a payload may declare.
pub const MAX_INDEX_LEN: u64 = 1 << 20;
pub const MAX_MESSAGE_LEN: u64 = 64 << 20;
pub const MAX_FILES: usize = 10_000;
pub const MAX_NAME_LEN: usize = 255;
pub const MAX_MEDIA_TYPE_LEN: usize = 127;

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("the decrypted payload is malformed: {0}")]
    Malformed(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn malformed(msg: impl Into<String>) -> PayloadError {
    PayloadError::Malformed(msg.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Image,
    Attachment,
}

/// One file as the index describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub media_type: String,
    pub kind: FileKind,
    pub length: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    pub message_length: u64,
    pub files: Vec<FileEntry>,
}

/// Where a file's bytes come from when sealing.
pub enum Source {
    Memory(Vec<u8>),
    /// A file on disk, read as a stream; it must still be this long when read.
    Path(PathBuf),
}

/// A file to be sealed.
pub struct PlannedFile {
    pub entry: FileEntry,
    pub source: Source,
}

/// Everything that goes into one payload, before it is serialised.
pub struct PayloadPlan {
    pub message: String,
    pub files: Vec<PlannedFile>,
}

impl PayloadPlan {
    fn index(&self) -> Index {
        Index {
            message_length: self.message.len() as u64,
            files: self.files.iter().map(|f| f.entry.clone()).collect(),
        }
    }

    fn preamble(&self) -> Vec<u8> {
        let index = toml::to_string(&self.index()).expect("index serialises");
        let mut out = format!("{MAGIC}{}\n", index.len()).into_bytes();
        out.extend_from_slice(index.as_bytes());
        out.extend_from_slice(self.message.as_bytes());
        out
    }

    /// Checks the plan against the caps a reader enforces, so that sxf never seals
    /// what it would refuse to open.
    pub fn check_limits(&self) -> Result<(), String> {
        if self.message.len() as u64 > MAX_MESSAGE_LEN {
            return Err(format!(
                "the message is {} bytes; the limit is {MAX_MESSAGE_LEN} (attach large text as a file)",
                self.message.len()
            ));
        }
        if self.files.len() > MAX_FILES {
            return Err(format!(
                "{} files; the limit is {MAX_FILES}",
                self.files.len()
            ));
        }
        for f in &self.files {
            if f.entry.name.is_empty() || f.entry.name.len() > MAX_NAME_LEN {
                return Err(format!(
                    "the file name {:?} is empty or too long",
                    f.entry.name
                ));
            }
        }
        let index_len = toml::to_string(&self.index()).map_or(0, |s| s.len()) as u64;
        if index_len > MAX_INDEX_LEN {
            return Err("the list of files is too large; seal fewer files".into());
        }
        Ok(())
    }

    /// Total plaintext length.
    pub fn len(&self) -> u64 {
        self.preamble().len() as u64 + self.files.iter().map(|f| f.entry.length).sum::<u64>()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The plaintext as a stream. Files on disk are opened lazily and must yield
    /// exactly their planned length.
    pub fn into_reader(self) -> impl Read {
        let preamble = io::Cursor::new(self.preamble());
        PlanReader {
            current: Box::new(preamble),
            rest: self.files.into_iter().rev().collect(),
        }
    }
}

struct PlanReader {
    current: Box<dyn Read>,
    /// Remaining files, last first.
    rest: Vec<PlannedFile>,
}

impl Read for PlanReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let Some(next) = self.rest.pop() else {
                return Ok(0);
            };
            self.current = match next.source {
                Source::Memory(bytes) => Box::new(io::Cursor::new(bytes)),
                Source::Path(path) => Box::new(ExactLen {
                    inner: File::open(&path)
                        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?
                        .take(next.entry.length),
                    remaining: next.entry.length,
                    path,
                }),
            };
        }
    }
}

/// Fails if a file on disk shrank between planning and reading.
struct ExactLen<R> {
    inner: R,
    remaining: u64,
    path: PathBuf,
}

impl<R: Read> Read for ExactLen<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} changed size while it was being sealed",
                    self.path.display()
                ),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Receives the parts of a payload as they are read.
pub trait PayloadSink {
    fn message(&mut self, text: String) -> Result<(), PayloadError>;
    /// `data` yields exactly `entry.length` bytes; `safe_name` is the entry's
    /// name reduced by [`safe_file_name`] and made unique within the payload.
    fn file(
        &mut self,
        entry: &FileEntry,
        safe_name: &str,
        data: &mut dyn Read,
    ) -> Result<(), PayloadError>;
}

/// Reads a whole payload from `input` into `sink`. Trailing bytes are an error.
pub fn read_payload(
    mut input: impl Read,
    sink: &mut dyn PayloadSink,
) -> Result<Index, PayloadError> {
    // Header line: the magic, a decimal length without leading zeros, a newline.
    let mut line = Vec::new();
    loop {
        let mut b = [0u8; 1];
        if input.read(&mut b)? == 0 {
            return Err(malformed("missing header line"));
        }
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
        if line.len() > MAGIC.len() + 8 {
            return Err(malformed("header line too long"));
        }
    }
    let digits = line
        .strip_prefix(MAGIC.as_bytes())
        .ok_or_else(|| malformed("does not start with SXF-PAYLOAD/1"))?;
    let canonical = !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || digits.len() == 1);
    if !canonical {
        return Err(malformed("bad index length"));
    }
    let index_len: u64 = std::str::from_utf8(digits)
        .expect("ASCII digits")
        .parse()
        .map_err(|_| malformed("bad index length"))?;
    if index_len > MAX_INDEX_LEN {
        return Err(malformed("index too large"));
    }
    let mut index_bytes = Vec::with_capacity(index_len as usize);
    (&mut input).take(index_len).read_to_end(&mut index_bytes)?;
    if index_bytes.len() as u64 != index_len {
        return Err(malformed("truncated index"));
    }
    let index_text = String::from_utf8(index_bytes).map_err(|_| malformed("index is not UTF-8"))?;
    let index: Index =
        toml::from_str(&index_text).map_err(|e| malformed(format!("index: {}", e.message())))?;
    if toml::to_string(&index).ok().as_deref() != Some(index_text.as_str()) {
        return Err(malformed("index is not in canonical form"));
    }
    if index.message_length > MAX_MESSAGE_LEN {
        return Err(malformed("message too large"));
    }
    if index.files.len() > MAX_FILES {
        return Err(malformed("too many files"));
    }
    for f in &index.files {
        if f.name.is_empty() || f.name.len() > MAX_NAME_LEN {
            return Err(malformed("a file name is empty or too long"));
        }
        if !is_media_type(&f.media_type) {
            return Err(malformed("a media type is not of the form type/subtype"));
        }
    }

    // Grow with the data actually present, not with the declared length.
    let mut message = Vec::new();
    (&mut input)
        .take(index.message_length)
        .read_to_end(&mut message)?;
    if message.len() as u64 != index.message_length {
        return Err(malformed("truncated message"));
    }
    let message = String::from_utf8(message).map_err(|_| malformed("message is not UTF-8"))?;
    sink.message(message)?;

    let mut names = NamesInUse::with_reserved(RESERVED_MESSAGE_NAME);
    for (i, f) in index.files.iter().enumerate() {
        let name = names.claim(&safe_file_name(&f.name, i));
        let mut limited = (&mut input).take(f.length);
        sink.file(f, &name, &mut limited)?;
        // The sink consumes everything it is given; anything left means the body is short.
        if limited.limit() != 0 {
            return Err(malformed(format!("file {} is truncated", i + 1)));
        }
    }
    let mut extra = [0u8; 1];
    if input.read(&mut extra)? != 0 {
        return Err(malformed("trailing bytes after the last file"));
    }
    Ok(index)
}

/// Shortens a display name to at most [`MAX_NAME_LEN`] bytes, on a character
/// boundary, keeping it non-empty.
pub fn clamp_name(name: &str) -> String {
    let mut end = name.len().min(MAX_NAME_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    match &name[..end] {
        "" => "file".to_owned(),
        short => short.to_owned(),
    }
}

/// The file `open` writes the message to; no attached file may take this name.
pub const RESERVED_MESSAGE_NAME: &str = "message.txt";

fn is_media_type(s: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    s.len() <= MAX_MEDIA_TYPE_LEN && s.split_once('/').is_some_and(|(a, b)| token(a) && token(b))
}

/// Reduces a name from inside an archive to a plain, safe file name: the last
/// path component (either slash), only letters, digits, space and `._-+()`,
/// no leading dot or dash, at most 100 bytes, never empty. `index` numbers the
/// fallback name `file-N`.
pub fn safe_file_name(name: &str, index: usize) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut out: String = last
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || " ._-+()".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Strip leading dots, dashes and spaces (no hidden files, no "..", no options).
    out = out
        .trim_start_matches(['.', '-', ' '])
        .trim_end_matches([' ', '.'])
        .to_owned();
    while out.len() > 100 {
        out.pop();
    }
    out = out.trim_end_matches([' ', '.']).to_owned();
    if out.is_empty() || out.chars().all(|c| c == '_') {
        out = format!("file-{}", index + 1);
    }
    out
}

/// Lowercases character by character (unlike `str::to_lowercase`, whose final
/// sigma depends on context), so equal names compare equal wherever they occur.
fn fold_case(name: &str) -> String {
    name.chars().flat_map(char::to_lowercase).collect()
}

/// The output names taken so far, compared case-insensitively, with the next
/// suffix to try for each name, so that many equal names stay linear.
#[derive(Default)]
struct NamesInUse {
    used: HashSet<String>,
    next_suffix: HashMap<String, usize>,
}

impl NamesInUse {
    fn with_reserved(name: &str) -> Self {
        let mut names = NamesInUse::default();
        names.used.insert(fold_case(name));
        names
    }

    /// Makes `name` unique by adding " (2)", " (3)"... before the extension, and
    /// records it.
    fn claim(&mut self, name: &str) -> String {
        let (stem, ext) = match name.rfind('.') {
            Some(i) if i > 0 => (&name[..i], &name[i..]),
            _ => (name, ""),
        };
        let key = fold_case(name);
        let mut candidate = name.to_owned();
        let mut n = self.next_suffix.get(&key).copied().unwrap_or(2);
        while self.used.contains(&fold_case(&candidate)) {
            candidate = format!("{stem} ({n}){ext}");
            n += 1;
        }
        self.next_suffix.insert(key, n);
        self.used.insert(fold_case(&candidate));
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        message: String,
        files: Vec<(String, FileEntry, Vec<u8>)>,
    }

    impl PayloadSink for Collect {
        fn message(&mut self, text: String) -> Result<(), PayloadError> {
            self.message = text;
            Ok(())
        }
        fn file(
            &mut self,
            e: &FileEntry,
            name: &str,
            data: &mut dyn Read,
        ) -> Result<(), PayloadError> {
            let mut v = Vec::new();
            data.read_to_end(&mut v)?;
            self.files.push((name.to_owned(), e.clone(), v));
            Ok(())
        }
    }

    fn plan(message: &str, files: &[(&str, &[u8])]) -> PayloadPlan {
        PayloadPlan {
            message: message.into(),
            files: files
                .iter()
                .map(|(n, b)| PlannedFile {
                    entry: FileEntry {
                        name: (*n).into(),
                        media_type: "application/octet-stream".into(),
                        kind: FileKind::Attachment,
                        length: b.len() as u64,
                    },
                    source: Source::Memory(b.to_vec()),
                })
                .collect(),
        }
    }

    fn bytes_of(p: PayloadPlan) -> Vec<u8> {
        let len = p.len();
        let mut v = Vec::new();
        p.into_reader().read_to_end(&mut v).unwrap();
        assert_eq!(v.len() as u64, len);
        v
    }

    #[test]
    fn payload_round_trips_and_is_readable_by_hand() {
        let bytes = bytes_of(plan("héllo\nworld", &[("a.txt", b"AAA"), ("b.bin", b"")]));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("SXF-PAYLOAD/1 "));
        assert!(text.contains("name = \"a.txt\""));
        assert!(text.ends_with("héllo\nworldAAA"));
        let mut c = Collect::default();
        read_payload(&bytes[..], &mut c).unwrap();
        assert_eq!(c.message, "héllo\nworld");
        assert_eq!(c.files.len(), 2);
        assert_eq!(c.files[0].2, b"AAA");
        assert_eq!(c.files[1].0, "b.bin");
    }

    #[test]
    fn trailing_or_missing_bytes_are_rejected() {
        let bytes = bytes_of(plan("m", &[("a", b"xyz")]));
        let mut long = bytes.clone();
        long.push(0);
        assert!(read_payload(&long[..], &mut Collect::default()).is_err());
        for cut in 0..bytes.len() {
            assert!(
                read_payload(&bytes[..cut], &mut Collect::default()).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn hostile_names_become_plain_unique_file_names() {
        assert_eq!(safe_file_name("../../etc/passwd", 0), "passwd");
        assert_eq!(safe_file_name("..\\..\\win.ini", 0), "win.ini");
        assert_eq!(safe_file_name("..", 3), "file-4");
        assert_eq!(safe_file_name("/", 0), "file-1");
        assert_eq!(safe_file_name(".bashrc", 0), "bashrc");
        assert_eq!(safe_file_name("-rf", 0), "rf");
        assert_eq!(safe_file_name("a\0b\nc", 0), "a_b_c");
        assert_eq!(safe_file_name(&"x".repeat(300), 0).len(), 100);
        let mut names = NamesInUse::with_reserved("message.txt");
        assert_eq!(names.claim("message.txt"), "message (2).txt");
        assert_eq!(names.claim("Photo.jpg"), "Photo.jpg");
        assert_eq!(names.claim("photo.jpg"), "photo (2).jpg");
        assert_eq!(names.claim("photo (2).jpg"), "photo (2) (2).jpg");
        assert_eq!(names.claim("PHOTO.jpg"), "PHOTO (3).jpg");
        // Case folding is per character: a final sigma folds like any other.
        assert_eq!(names.claim("AΣ.jpg"), "AΣ.jpg");
        assert_eq!(names.claim("Aσ.jpg"), "Aσ (2).jpg");
        assert_eq!(names.claim("AΣ.jpg"), "AΣ (3).jpg");
    }

    #[test]
    fn ten_thousand_equal_names_are_all_made_unique() {
        let mut names = NamesInUse::with_reserved(RESERVED_MESSAGE_NAME);
        let all: Vec<String> = (0..MAX_FILES).map(|_| names.claim("a.jpg")).collect();
        assert_eq!(all[0], "a.jpg");
        assert_eq!(all[1], "a (2).jpg");
        assert_eq!(all[MAX_FILES - 1], format!("a ({MAX_FILES}).jpg"));
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), MAX_FILES);
    }

    #[test]
    fn non_canonical_index_length_is_rejected() {
        let bytes = bytes_of(plan("m", &[]));
        let text = String::from_utf8(bytes).unwrap();
        let padded = text.replacen("SXF-PAYLOAD/1 ", "SXF-PAYLOAD/1 0", 1);
        assert!(read_payload(padded.as_bytes(), &mut Collect::default()).is_err());
    }
}
