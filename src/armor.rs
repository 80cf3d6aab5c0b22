//! ASCII armor: the text form of an archive, for email and copy and paste, as
//! `spec/FORMAT.md` ("ASCII armor") defines it.
//!
//! ```text
//! -----BEGIN SXF ARCHIVE-----
//! UEsDBAoAAAAAAAAAIQAAAAAAAAAAAAAAAAAIAAAAa2V5cy5iaW4...   (64 columns)
//! ...
//! AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=                       (the last line may be shorter)
//! -----END SXF ARCHIVE-----
//! ```
//!
//! [`ArmorWriter`] encodes as it is written to and [`ArmorReader`] decodes as it
//! is read from; both hold at most one line, so armored archives stream like
//! binary ones. The reader accepts exactly what the spec allows (CRLF line
//! endings, blank lines around the block, spaces and tabs around each line) and
//! rejects everything else with an [`io::ErrorKind::InvalidData`] error carrying
//! an [`ArmorError`].

use std::io::{self, BufRead, Read, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The first line of an armored archive.
pub const BEGIN_LINE: &str = "-----BEGIN SXF ARCHIVE-----";
/// The last line of an armored archive.
pub const END_LINE: &str = "-----END SXF ARCHIVE-----";
/// Base64 characters on every data line but the last.
pub const LINE_CHARS: usize = 64;
/// Archive bytes on a full data line.
const LINE_BYTES: usize = LINE_CHARS / 4 * 3;
/// The longest line a reader accepts, in bytes, surrounding spaces and tabs and
/// a CR included, the LF not.
pub const MAX_LINE_LEN: usize = 1024;

/// Whether input starting with this byte is armored. A binary archive starts
/// with `PK`; armor starts with `-` or with the whitespace a reader skips before
/// the BEGIN line.
pub fn starts_armored(first_byte: u8) -> bool {
    matches!(first_byte, b'-' | b' ' | b'\t' | b'\r' | b'\n')
}

/// The length of the armor [`ArmorWriter`] writes for `binary_len` bytes.
pub fn armored_len(binary_len: u64) -> u64 {
    let chars = binary_len.div_ceil(3) * 4;
    let lines = chars.div_ceil(LINE_CHARS as u64);
    (BEGIN_LINE.len() as u64 + 1) + chars + lines + (END_LINE.len() as u64 + 1)
}

/// The largest binary length whose armor is at most `armored_limit` bytes
/// (0 when even the two marker lines do not fit).
pub fn max_binary_len(armored_limit: u64) -> u64 {
    // armored_len is monotonic; a binary search over [0, limit] is exact.
    let (mut lo, mut hi) = (0u64, armored_limit);
    if armored_len(0) > armored_limit {
        return 0;
    }
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if armored_len(mid) <= armored_limit {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

// ---------------------------------------------------------------------------
// Encoding

/// Encodes everything written to it as armor. Call [`ArmorWriter::finish`] to
/// write the last line and the END line; dropping it without that leaves the
/// armor unterminated, which every reader rejects.
pub struct ArmorWriter<W: Write> {
    inner: W,
    pending: [u8; LINE_BYTES],
    filled: usize,
}

impl<W: Write> ArmorWriter<W> {
    /// Writes the BEGIN line.
    pub fn new(mut inner: W) -> io::Result<Self> {
        inner.write_all(BEGIN_LINE.as_bytes())?;
        inner.write_all(b"\n")?;
        Ok(ArmorWriter {
            inner,
            pending: [0; LINE_BYTES],
            filled: 0,
        })
    }

    fn emit_line(&mut self) -> io::Result<()> {
        let mut line = [0u8; LINE_CHARS + 1];
        let n = STANDARD
            .encode_slice(&self.pending[..self.filled], &mut line)
            .expect("48 bytes fit in 64 characters");
        line[n] = b'\n';
        self.inner.write_all(&line[..n + 1])?;
        self.filled = 0;
        Ok(())
    }

    /// Writes the last data line and the END line, and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.filled > 0 {
            self.emit_line()?;
        }
        self.inner.write_all(END_LINE.as_bytes())?;
        self.inner.write_all(b"\n")?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ArmorWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(LINE_BYTES - self.filled);
        self.pending[self.filled..self.filled + n].copy_from_slice(&buf[..n]);
        self.filled += n;
        if self.filled == LINE_BYTES {
            self.emit_line()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

// ---------------------------------------------------------------------------
// Decoding

/// Why armored input was rejected, and on which line (counting from 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad ASCII armor on line {line}: {reason}")]
pub struct ArmorError {
    pub line: u64,
    pub reason: String,
}

/// The [`ArmorError`] inside an I/O error, if that is what it is.
pub fn armor_error(e: &io::Error) -> Option<&ArmorError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<ArmorError>())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Blank lines before the BEGIN line.
    Before,
    /// Data lines; `last_seen` once a line shorter than 64 characters or with
    /// padding was read, after which only the END line may come.
    Data {
        lines: u64,
        last_seen: bool,
    },
    /// Blank lines after the END line.
    After,
    Done,
}

/// Decodes armor as it is read, holding at most one line. Every rule of the
/// spec is checked; the first broken one fails the read with
/// [`io::ErrorKind::InvalidData`] and an [`ArmorError`] (see [`armor_error`]).
/// The reader reports the end of the data only after the END line and the
/// blank lines after it, up to the end of the input, were checked.
pub struct ArmorReader<R: BufRead> {
    inner: R,
    state: State,
    line_no: u64,
    line: Vec<u8>,
    out: [u8; LINE_BYTES],
    out_pos: usize,
    out_len: usize,
}

impl<R: BufRead> ArmorReader<R> {
    pub fn new(inner: R) -> Self {
        ArmorReader {
            inner,
            state: State::Before,
            line_no: 0,
            line: Vec::with_capacity(LINE_CHARS + 2),
            out: [0; LINE_BYTES],
            out_pos: 0,
            out_len: 0,
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    fn fail(&self, reason: impl Into<String>) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            ArmorError {
                line: self.line_no.max(1),
                reason: reason.into(),
            },
        )
    }

    /// Reads the next line into `self.line`, without its LF. `Ok(false)` at the
    /// end of the input (nothing read).
    fn next_line(&mut self) -> io::Result<bool> {
        self.line.clear();
        let mut any = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if any {
                    self.line_no += 1;
                }
                return Ok(any);
            }
            any = true;
            let (take, found) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (available.len(), false),
            };
            if self.line.len() + take > MAX_LINE_LEN {
                self.line_no += 1;
                return Err(self.fail(format!("the line is longer than {MAX_LINE_LEN} bytes")));
            }
            self.line.extend_from_slice(&available[..take]);
            self.inner.consume(take + usize::from(found));
            if found {
                self.line_no += 1;
                return Ok(true);
            }
        }
    }

    /// The current line without its CR and surrounding spaces and tabs, after
    /// checking that it holds nothing but printable ASCII.
    fn trimmed_line(&self) -> io::Result<(usize, usize)> {
        let mut line = &self.line[..];
        if let Some(rest) = line.strip_suffix(b"\r") {
            line = rest;
        }
        if let Some(b) = line
            .iter()
            .find(|&&b| !(b == b' ' || b == b'\t' || b.is_ascii_graphic()))
        {
            return Err(self.fail(match b {
                b'\r' => "a CR that does not end the line".to_string(),
                _ => format!("byte 0x{b:02x}, which armor never holds"),
            }));
        }
        let start = line
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(line.len());
        let end = line
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(start, |i| i + 1);
        Ok((start, end))
    }

    /// Reads lines until one yields data or the input ends.
    fn advance(&mut self) -> io::Result<()> {
        while self.out_pos == self.out_len && self.state != State::Done {
            if !self.next_line()? {
                match self.state {
                    State::Before => {
                        return Err(self.fail(format!("no {BEGIN_LINE} line")));
                    }
                    State::Data { .. } => {
                        return Err(self.fail(format!("no {END_LINE} line")));
                    }
                    State::After | State::Done => {
                        self.state = State::Done;
                        return Ok(());
                    }
                }
            }
            let (start, end) = self.trimmed_line()?;
            let text = &self.line[start..end];
            match self.state {
                State::Before => {
                    if text.is_empty() {
                        continue;
                    }
                    if text == BEGIN_LINE.as_bytes() {
                        self.state = State::Data {
                            lines: 0,
                            last_seen: false,
                        };
                    } else if text.starts_with(b"-----BEGIN ") {
                        return Err(self.fail(format!("the armor is not labelled {BEGIN_LINE}")));
                    } else {
                        return Err(self.fail(format!("expected {BEGIN_LINE}")));
                    }
                }
                State::Data { lines, last_seen } => {
                    if text == END_LINE.as_bytes() {
                        if lines == 0 {
                            return Err(self.fail("the armor holds no data"));
                        }
                        self.state = State::After;
                        continue;
                    }
                    if text.is_empty() {
                        return Err(self.fail("a blank line inside the armor"));
                    }
                    if text.starts_with(b"-----") {
                        return Err(self.fail(format!("expected {END_LINE}")));
                    }
                    if last_seen {
                        return Err(self.fail(
                            "a data line after a line shorter than 64 characters or with padding",
                        ));
                    }
                    let (n, last) = self.decode_data_line(start, end)?;
                    self.out_pos = 0;
                    self.out_len = n;
                    self.state = State::Data {
                        lines: lines + 1,
                        last_seen: last,
                    };
                }
                State::After => {
                    if !text.is_empty() {
                        return Err(self.fail(format!("text after the {END_LINE} line")));
                    }
                }
                State::Done => unreachable!("the loop stops at Done"),
            }
        }
        Ok(())
    }

    /// Decodes one data line into `self.out`; returns the byte count and
    /// whether the line must be the last one.
    fn decode_data_line(&mut self, start: usize, end: usize) -> io::Result<(usize, bool)> {
        let text = &self.line[start..end];
        if let Some(&b) = text
            .iter()
            .find(|&&b| !(b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='))
        {
            return Err(self.fail(format!("{:?} is not a base64 character", char::from(b))));
        }
        if text.len() > LINE_CHARS {
            return Err(self.fail("a data line longer than 64 characters"));
        }
        if !text.len().is_multiple_of(4) {
            return Err(self.fail(
                "a data line whose length is not a multiple of 4 (only the last line may be shorter than 64 characters)",
            ));
        }
        let padded = text.ends_with(b"=");
        let last = text.len() < LINE_CHARS || padded;
        let decoded = STANDARD.decode_slice(text, &mut self.out);
        match decoded {
            Ok(n) => Ok((n, last)),
            Err(_) => Err(self.fail("base64 that is not canonical (misplaced padding, or padding bits that are not zero)")),
        }
    }
}

impl<R: BufRead> Read for ArmorReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.advance()?;
        let n = (self.out_len - self.out_pos).min(buf.len());
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn armor(data: &[u8]) -> String {
        let mut w = ArmorWriter::new(Vec::new()).unwrap();
        // Odd-sized writes, to cross line boundaries in every way.
        for chunk in data.chunks(7) {
            w.write_all(chunk).unwrap();
        }
        String::from_utf8(w.finish().unwrap()).unwrap()
    }

    fn dearmor(text: &[u8]) -> Result<Vec<u8>, ArmorError> {
        // A tiny buffer makes lines arrive in pieces.
        let mut r = ArmorReader::new(io::BufReader::with_capacity(5, text));
        let mut out = Vec::new();
        r.read_to_end(&mut out)
            .map(|_| out)
            .map_err(|e| armor_error(&e).expect("an armor error").clone())
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 131 + 7) as u8).collect()
    }

    #[test]
    fn armor_round_trips_every_length_around_a_line() {
        for len in [1, 2, 3, 47, 48, 49, 95, 96, 97, 1000] {
            let data = sample(len);
            let text = armor(&data);
            assert_eq!(text.len() as u64, armored_len(len as u64), "{len}");
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines[0], BEGIN_LINE);
            assert_eq!(*lines.last().unwrap(), END_LINE);
            for l in &lines[1..lines.len() - 2] {
                assert_eq!(l.len(), LINE_CHARS);
            }
            assert_eq!(dearmor(text.as_bytes()).unwrap(), data, "{len}");
        }
    }

    #[test]
    fn armor_accepts_crlf_blank_lines_and_spaces_around_lines() {
        let data = sample(200);
        let text = armor(&data);
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(dearmor(crlf.as_bytes()).unwrap(), data);
        let spaced: String = text
            .lines()
            .map(|l| format!(" \t{l}  \r\n"))
            .collect::<String>();
        let padded = format!("\n\r\n  \n{spaced}\n \t\n");
        assert_eq!(dearmor(padded.as_bytes()).unwrap(), data);
        // No line ending after the END line.
        assert_eq!(dearmor(text.trim_end().as_bytes()).unwrap(), data);
    }

    fn rejected(text: &str) -> ArmorError {
        dearmor(text.as_bytes()).expect_err("must be rejected")
    }

    impl ArmorError {
        fn reason_of(&self) -> Reason {
            Reason(self.reason.clone())
        }
    }

    struct Reason(String);

    impl Reason {
        fn contains(&self, needle: &str) -> bool {
            assert!(
                self.0.contains(needle),
                "{:?} does not say {needle:?}",
                self.0
            );
            true
        }
    }

    #[test]
    fn armor_rejects_every_form_the_spec_forbids() {
        let data = sample(100); // two full lines and a 4-byte (8-character) last line
        let good = armor(&data);
        let lines: Vec<&str> = good.lines().collect();
        let join = |ls: &[&str]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();

        assert!(
            rejected(&good.replace(&format!("{END_LINE}\n"), ""))
                .reason_of()
                .contains("no -----END")
        );
        assert!(
            rejected(&format!("{good}junk\n"))
                .reason_of()
                .contains("after the")
        );
        assert!(
            rejected(&good.replace("SXF ARCHIVE", "PGP MESSAGE"))
                .reason_of()
                .contains("labelled")
        );
        assert!(
            rejected(&format!("junk\n{good}"))
                .reason_of()
                .contains("expected")
        );
        // A short line that is not the last one.
        let short = join(&[lines[0], &lines[1][..62], lines[2], lines[3], lines[4]]);
        assert!(rejected(&short).reason_of().contains("multiple of 4"));
        let short4 = join(&[lines[0], &lines[1][..60], &lines[1][60..], lines[4]]);
        assert!(
            rejected(&short4)
                .reason_of()
                .contains("after a line shorter")
        );
        // A line too long.
        let long = join(&[
            lines[0],
            &format!("{}{}", lines[1], &lines[2][..4]),
            lines[4],
        ]);
        assert!(rejected(&long).reason_of().contains("longer than 64"));
        // Whitespace inside a line.
        let inner = good.replacen(
            &lines[1][..8],
            &format!("{} {}", &lines[1][..4], &lines[1][4..8]),
            1,
        );
        assert!(rejected(&inner).reason_of().contains("not a base64"));
        // A blank line inside the block.
        assert!(
            rejected(&good.replacen(&format!("{}\n", lines[1]), &format!("{}\n\n", lines[1]), 1))
                .reason_of()
                .contains("blank")
        );
        // Non-zero padding bits: 1 byte -> "xx==" whose second char has low bits set.
        let one = armor(&[0xff]);
        assert!(one.contains("/w=="));
        assert!(
            rejected(&one.replace("/w==", "/x=="))
                .reason_of()
                .contains("canonical")
        );
        // Missing padding.
        assert!(
            rejected(&one.replace("/w==", "/w"))
                .reason_of()
                .contains("multiple of 4")
        );
        // A lone CR, a form feed, a non-ASCII byte.
        assert!(
            rejected(&good.replacen('\n', "\r \n", 1))
                .reason_of()
                .contains("CR")
        );
        assert!(
            rejected(&good.replacen('\n', "\x0c\n", 1))
                .reason_of()
                .contains("0x0c")
        );
        assert!(
            rejected(&format!("\u{feff}{good}"))
                .reason_of()
                .contains("0xef")
        );
        // An over-long line is refused without reading it whole.
        let spaces = " ".repeat(MAX_LINE_LEN + 1);
        assert!(
            rejected(&format!("{spaces}\n{good}"))
                .reason_of()
                .contains("longer than 1024")
        );
        // Empty input and no data.
        assert!(rejected("").reason_of().contains("no -----BEGIN"));
        assert!(
            rejected(&format!("{BEGIN_LINE}\n{END_LINE}\n"))
                .reason_of()
                .contains("no data")
        );
        assert_eq!(rejected(&format!("{good}x")).line, lines.len() as u64 + 1);
    }

    #[test]
    fn max_binary_len_inverts_armored_len() {
        for limit in [0, 50, 60, 100, 1000, 10_000_000] {
            let n = max_binary_len(limit);
            if n > 0 {
                assert!(armored_len(n) <= limit);
            }
            assert!(armored_len(n + 1) > limit, "{limit}");
        }
    }
}
