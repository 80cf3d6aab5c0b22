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
use unicode_normalization::UnicodeNormalization;

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
                    inner: File::open(&path).map_err(|e| {
                        io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                    })?,
                    remaining: next.entry.length,
                    end_checked: false,
                    path,
                }),
            };
        }
    }
}

/// Yields exactly `remaining` bytes of a file on disk, and fails if the file
/// shrank or grew between planning and reading: what is sealed is the whole
/// file, never a silently cut one.
struct ExactLen<R> {
    inner: R,
    remaining: u64,
    /// Whether the byte after the planned end was looked for.
    end_checked: bool,
    path: PathBuf,
}

impl<R: Read> ExactLen<R> {
    fn changed_size(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{} changed size while it was being sealed",
                self.path.display()
            ),
        )
    }
}

impl<R: Read> Read for ExactLen<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            if !self.end_checked {
                self.end_checked = true;
                if self.inner.read(&mut [0u8; 1])? > 0 {
                    return Err(self.changed_size());
                }
            }
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(self.changed_size());
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

/// The Unicode version of every character property, case mapping and
/// normalisation the file name rules use (spec/FORMAT.md, "File names"): Rust's
/// `char` methods follow the standard library's tables and NFC comes from the
/// `unicode-normalization` crate; a unit test checks that both are this version.
pub const NAME_RULES_UNICODE_VERSION: (u8, u8, u8) = (17, 0, 0);

/// The longest name [`safe_file_name`] makes before a Windows device name gets its
/// `_` and before a ` (N)` is added to make it unique, in UTF-8 bytes.
pub const MAX_SAFE_NAME_LEN: usize = 100;

/// The longest extension kept whole when a name is shortened, `.` included.
const MAX_KEPT_EXTENSION_LEN: usize = 16;

/// Characters Windows does not allow in a file name, other than controls and the
/// path separators (which never reach the character step).
const WINDOWS_FORBIDDEN: &[char] = &['<', '>', ':', '"', '|', '?', '*'];

/// Names Windows gives to devices, with or without an extension, in any ASCII case.
const WINDOWS_DEVICE_NAMES: &[&str] = &[
    "CON",
    "PRN",
    "AUX",
    "NUL",
    "CONIN$",
    "CONOUT$",
    "COM0",
    "COM1",
    "COM2",
    "COM3",
    "COM4",
    "COM5",
    "COM6",
    "COM7",
    "COM8",
    "COM9",
    "COM\u{b9}",
    "COM\u{b2}",
    "COM\u{b3}",
    "LPT0",
    "LPT1",
    "LPT2",
    "LPT3",
    "LPT4",
    "LPT5",
    "LPT6",
    "LPT7",
    "LPT8",
    "LPT9",
    "LPT\u{b9}",
    "LPT\u{b2}",
    "LPT\u{b3}",
];

/// The characters with the Unicode property `Bidi_Control`: they change how the
/// rest of a name is displayed (`\u{202E}gpj.exe` shows as `exe.jpg`).
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Whether the character step replaces `c` with `_`: a control character
/// (general category `Cc`), a bidi control, or a character Windows forbids.
fn is_replaced(c: char) -> bool {
    c.is_control() || is_bidi_control(c) || WINDOWS_FORBIDDEN.contains(&c)
}

/// Whether Windows would open `name` as a device: the part before its first `.`,
/// without trailing spaces, is a device name in any ASCII case.
fn is_windows_device_name(name: &str) -> bool {
    let base = name.split('.').next().unwrap_or("").trim_end_matches(' ');
    WINDOWS_DEVICE_NAMES
        .iter()
        .any(|d| d.eq_ignore_ascii_case(base))
}

/// Reduces a name from inside an archive to one plain file name that is the same,
/// and valid, on Linux, macOS and Windows (spec/FORMAT.md, "File names"):
///
/// 1. keep what follows the last `/` or `\`;
/// 2. normalise to NFC;
/// 3. replace each control character, bidi control and `<>:"|?*` with `_`;
/// 4. remove leading `.`, `-` and spaces, and trailing spaces and `.`;
/// 5. shorten to [`MAX_SAFE_NAME_LEN`] bytes, keeping a short extension;
/// 6. if nothing is left, or only `_`, use `file-N` (N is `index + 1`);
/// 7. put `_` before a Windows device name (`CON`, `aux.txt`, `COM1.jpg`...).
///
/// Every other name, `Q3 report, final & signed [v2].pdf` included, comes out as
/// it went in (if it was NFC). Making names unique is the caller's step.
pub fn safe_file_name(name: &str, index: usize) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let replaced: String = last
        .nfc()
        .map(|c| if is_replaced(c) { '_' } else { c })
        .collect();
    let trimmed = trim_name(replaced.trim_start_matches(['.', '-', ' ']));
    let mut out = shorten(trimmed, MAX_SAFE_NAME_LEN);
    if out.is_empty() || out.chars().all(|c| c == '_') {
        out = format!("file-{}", index + 1);
    }
    if is_windows_device_name(&out) {
        out.insert(0, '_');
    }
    out
}

/// Removes trailing spaces and dots, which Windows drops from a name.
fn trim_name(name: &str) -> &str {
    name.trim_end_matches([' ', '.'])
}

/// Shortens `name` (already trimmed at both ends) to at most `max` bytes, on
/// character boundaries. An extension of at most [`MAX_KEPT_EXTENSION_LEN`] bytes
/// (from the last `.`, not the first character) is kept and the part before it is
/// cut; otherwise the name is cut from the end. Trailing spaces and dots left at
/// the cut are removed.
fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= MAX_KEPT_EXTENSION_LEN => name.split_at(i),
        _ => (name, ""),
    };
    let mut end = max - ext.len();
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ext}", trim_name(&stem[..end]))
}

/// The key two output names are compared by: each character mapped on its own
/// (no context, so a final `Σ` folds like any other) to its full Unicode
/// uppercase, each of those to its full lowercase, then NFC. Names equal under
/// this key are one file on a case-insensitive Windows or macOS volume (`A.jpg`
/// and `a.jpg`, `ς` and `σ`, NFC and NFD `é`); the key also merges a few pairs
/// those systems keep apart (`ß` and `ss`), which only costs a ` (2)`.
fn fold_case(name: &str) -> String {
    name.chars()
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .nfc()
        .collect()
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
    fn a_file_that_grew_or_shrank_after_planning_is_an_error_not_a_cut_copy() {
        let read_all = |content: &[u8], planned: u64| {
            let mut r = ExactLen {
                inner: content,
                remaining: planned,
                end_checked: false,
                path: PathBuf::from("f"),
            };
            let mut out = Vec::new();
            r.read_to_end(&mut out).map(|_| out)
        };
        assert_eq!(read_all(b"12345", 5).unwrap(), b"12345");
        assert_eq!(read_all(b"", 0).unwrap(), b"");
        for (content, planned) in [(&b"1234567"[..], 5), (b"1", 0), (b"123", 5)] {
            let e = read_all(content, planned).unwrap_err();
            assert!(e.to_string().contains("changed size"), "{e}");
        }
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
    fn ordinary_names_survive_byte_for_byte() {
        for name in [
            "Q3 report, final & signed [v2].pdf",
            "Mum's birthday #1!.jpg",
            "50% off = £10 + €5; {draft} ~ ^ @ $ ` =.txt",
            "résumé – v2 ✓ (final).pdf",
            "日本語のファイル.txt",
            "👨\u{200D}👩\u{200D}👧 family.png",
            "v1.2.3.tar.gz",
            "a  b",
            "x",
            "console.txt",
            "COM10.txt",
            "LPT.jpg",
            "nul-byte.txt",
            "CON_notes.txt",
            "file-1",
            "end-",
            "_underscore first.txt",
            "Makefile",
        ] {
            assert_eq!(safe_file_name(name, 0), name, "{name:?}");
        }
        // 100 bytes is not cut.
        let long = format!("{}.pdf", "é".repeat(48));
        assert_eq!(long.len(), 100);
        assert_eq!(safe_file_name(&long, 0), long);
    }

    #[test]
    fn control_and_bidi_characters_become_underscores() {
        assert_eq!(safe_file_name("tab\there.txt", 0), "tab_here.txt");
        assert_eq!(safe_file_name("del\u{7f}\u{85}.txt", 0), "del__.txt");
        assert_eq!(safe_file_name("\u{202E}gpj.exe", 0), "_gpj.exe");
        for c in [
            '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}',
            '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
        ] {
            assert_eq!(
                safe_file_name(&format!("a{c}b"), 0),
                "a_b",
                "U+{:04X}",
                c as u32
            );
        }
        // Other format characters stay: the joiner holds emoji sequences together.
        assert_eq!(safe_file_name("a\u{200D}b", 0), "a\u{200D}b");
        assert_eq!(safe_file_name("\u{1}\u{2}", 6), "file-7");
    }

    #[test]
    fn characters_windows_forbids_become_underscores() {
        assert_eq!(safe_file_name("a:b", 0), "a_b");
        assert_eq!(safe_file_name("<>:\"|?*.txt", 0), "_______.txt");
        assert_eq!(
            safe_file_name("what? \"really\" <yes>|no*.md", 0),
            "what_ _really_ _yes__no_.md"
        );
        assert_eq!(safe_file_name("C:evil.dll", 0), "C_evil.dll");
        assert_eq!(safe_file_name("???", 2), "file-3");
    }

    #[test]
    fn trailing_dots_and_spaces_are_removed() {
        assert_eq!(safe_file_name("trailing dots...", 0), "trailing dots");
        assert_eq!(safe_file_name("report.pdf  ", 0), "report.pdf");
        assert_eq!(safe_file_name("a . . ", 0), "a");
        assert_eq!(
            safe_file_name("  leading spaces.txt", 0),
            "leading spaces.txt"
        );
        assert_eq!(safe_file_name("...", 1), "file-2");
        assert_eq!(safe_file_name(".", 0), "file-1");
        assert_eq!(safe_file_name(" . ", 4), "file-5");
        assert_eq!(safe_file_name("", 0), "file-1");
    }

    #[test]
    fn windows_device_names_get_an_underscore_in_front() {
        for (name, saved) in [
            ("CON", "_CON"),
            ("con", "_con"),
            ("aux.txt", "_aux.txt"),
            ("Com1.tar.gz", "_Com1.tar.gz"),
            ("COM0", "_COM0"),
            ("lpt9.jpg", "_lpt9.jpg"),
            ("NUL .txt", "_NUL .txt"),
            ("PRN.", "_PRN"),
            ("nul   ", "_nul"),
            ("CONIN$", "_CONIN$"),
            ("conout$.log", "_conout$.log"),
            ("COM\u{b9}.jpg", "_COM\u{b9}.jpg"),
            ("LPT\u{b2}", "_LPT\u{b2}"),
            ("lpt\u{b3}.txt", "_lpt\u{b3}.txt"),
            ("dir/AUX", "_AUX"),
            ("CON:", "CON_"),
        ] {
            assert_eq!(safe_file_name(name, 0), saved, "{name:?}");
        }
        // A cut that leaves a device name still gets the underscore.
        let name = format!("CON{}x.pdf", " ".repeat(120));
        assert_eq!(safe_file_name(&name, 0), "_CON.pdf");
    }

    #[test]
    fn names_are_nfc_normalised() {
        assert_eq!(safe_file_name("Cafe\u{301}.txt", 0), "Caf\u{e9}.txt");
        assert_eq!(safe_file_name("\u{1100}\u{1161}.txt", 0), "\u{ac00}.txt");
        // The Angstrom sign's canonical equivalent is Å.
        assert_eq!(safe_file_name("\u{212B}", 0), "\u{c5}");
    }

    #[test]
    fn long_names_are_cut_to_100_bytes_keeping_a_short_extension() {
        let name = format!("{}.pdf", "x".repeat(200));
        assert_eq!(safe_file_name(&name, 0), format!("{}.pdf", "x".repeat(96)));
        // Cut on a character boundary: 'é' is two bytes.
        let name = format!("a{}.jpeg", "é".repeat(100));
        let saved = safe_file_name(&name, 0);
        assert_eq!(saved, format!("a{}.jpeg", "é".repeat(47)));
        assert_eq!(saved.len(), 100);
        // Spaces and dots left at the cut go too.
        let name = format!("{}{}.txt", "y".repeat(90), " .".repeat(20));
        assert_eq!(safe_file_name(&name, 0), format!("{}.txt", "y".repeat(90)));
        // A long "extension" is not kept.
        let name = format!("{}.{}", "z".repeat(80), "w".repeat(40));
        assert_eq!(
            safe_file_name(&name, 0),
            format!("{}.{}", "z".repeat(80), "w".repeat(19))
        );
        // 100 UTF-8 bytes are at most 100 UTF-16 units: within Windows' 255 too.
        let name = "🙂".repeat(60);
        let saved = safe_file_name(&name, 0);
        assert_eq!(saved, "🙂".repeat(25));
        assert!(saved.encode_utf16().count() <= 255);
    }

    #[test]
    fn names_equal_on_windows_or_macos_get_distinct_names() {
        let mut names = NamesInUse::with_reserved(RESERVED_MESSAGE_NAME);
        let mut saved = |n: &str| names.claim(&safe_file_name(n, 0));
        assert_eq!(saved("A.jpg"), "A.jpg");
        assert_eq!(saved("a.jpg"), "a (2).jpg");
        // Final and medial sigma are one letter to a case-insensitive volume.
        assert_eq!(saved("ς.txt"), "ς.txt");
        assert_eq!(saved("σ.txt"), "σ (2).txt");
        assert_eq!(saved("Σ.txt"), "Σ (3).txt");
        // NFD and NFC spellings are one name on macOS.
        assert_eq!(saved("Cafe\u{301}.txt"), "Caf\u{e9}.txt");
        assert_eq!(saved("caf\u{e9}.txt"), "caf\u{e9} (2).txt");
        // Names that differ only by what the rules replaced or removed.
        assert_eq!(saved("a:b"), "a_b");
        assert_eq!(saved("a?b"), "a_b (2)");
        assert_eq!(saved("a_b."), "a_b (3)");
        // Dotless i uppercases to I, as on Windows.
        assert_eq!(saved("fıle.txt"), "fıle.txt");
        assert_eq!(saved("FILE.txt"), "FILE (2).txt");
        assert_eq!(saved("MESSAGE.TXT"), "MESSAGE (2).TXT");
    }

    #[test]
    fn name_rules_use_the_unicode_version_the_spec_pins() {
        // A toolchain or crate update that changes these tables changes which names
        // are altered: update spec/FORMAT.md, "File names", and the vectors with it.
        assert_eq!(char::UNICODE_VERSION, NAME_RULES_UNICODE_VERSION);
        assert_eq!(
            unicode_normalization::UNICODE_VERSION,
            NAME_RULES_UNICODE_VERSION
        );
    }

    proptest::proptest! {
        #[test]
        fn every_saved_name_is_valid_on_linux_macos_and_windows(name in "\\PC{0,80}|[ .:<>a-zA-Z0-9\u{b9}\u{202e}-]{0,12}") {
            let saved = safe_file_name(&name, 0);
            proptest::prop_assert!(!saved.is_empty());
            proptest::prop_assert!(saved.len() <= MAX_SAFE_NAME_LEN + 1, "{saved:?}");
            proptest::prop_assert!(!saved.starts_with(['.', '-', ' ']), "{saved:?}");
            proptest::prop_assert!(!saved.ends_with(['.', ' ']), "{saved:?}");
            proptest::prop_assert!(!saved.chars().any(|c| is_replaced(c) || c == '/' || c == '\\'), "{saved:?}");
            proptest::prop_assert!(!is_windows_device_name(&saved), "{saved:?}");
            proptest::prop_assert!(unicode_normalization::is_nfc(&saved), "{saved:?}");
            proptest::prop_assert_eq!(safe_file_name(&saved, 0), saved.clone());
        }
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
