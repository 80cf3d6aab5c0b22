//! Everything the CLI prints passes through here: error sentences, decrypted
//! text, file names and sizes. Text that came from someone else (an archive, a
//! server, a file name) is neutralised before it reaches a terminal.

use std::path::Path;

use sxf::keys;

/// One sentence: the contexts and the cause, joined. Control characters (which
/// could come from a hostile archive) are escaped so they never reach a terminal.
pub fn describe(err: &anyhow::Error) -> String {
    let mut sentence = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        // Some errors already include their cause's text; say it once. A cause
        // that restates the whole sentence so far replaces it.
        if !sentence.is_empty() && text.starts_with(&sentence) {
            sentence = text;
        } else if !sentence.contains(&text) {
            if !sentence.is_empty() {
                sentence.push_str(": ");
            }
            sentence.push_str(&text);
        }
    }
    escape_controls(&sentence)
}

/// One line of text with every control character (newline and escape
/// included) and bidi control written as an escape: `\n`, `\u{1b}`.
pub(crate) fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || is_bidi_control(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Makes a decrypted message safe to print on a terminal: control characters other
/// than newline and tab are shown as U+FFFD, so a sender cannot drive the
/// recipient's terminal with escape sequences. The file on disk is unchanged.
/// Bidirectional overrides and isolates, which can make text read differently
/// from what it is.
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

pub(crate) fn terminal_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c) {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// A local file name as the seal summary prints it: on one line, with control and
/// bidi characters neutralised like every other printed name.
pub(crate) fn shown_path(path: &Path) -> String {
    terminal_safe(&path.display().to_string()).replace(['\n', '\t'], "\u{FFFD}")
}

/// Sizes everywhere in the CLI use indicatif's binary units, as the progress bar does.
pub(crate) fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// The fingerprint as people compare it, on stderr (stdout keeps the machine
/// `sha256:` form alone): grouped for reading aloud and, for a key that came from
/// an OpenSSH file, OpenSSH's own fingerprint, to match `ssh-keygen -lf`.
pub(crate) fn fingerprint_for_people(key: &keys::PublicKeyInfo, format: keys::KeyFormat) {
    eprintln!("read aloud: {}", key.fingerprint().grouped());
    if format == keys::KeyFormat::OpenSsh {
        eprintln!(
            "OpenSSH fingerprint (as ssh-keygen -lf shows it): {}",
            key.openssh_fingerprint()
        );
    }
}

pub(crate) fn warn_any_sender(fp: &keys::Fingerprint) {
    eprintln!(
        "WARNING: --any-sender: the archive verifies against the key it carries itself, \
         which proves nothing about who sent it.\n\
         WARNING: sender key fingerprint: {fp}\n\
         WARNING: compare it with the sender's real fingerprint through another channel."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_output_neutralises_escape_sequences_and_bidi_overrides() {
        let hostile = "hi\x1b]0;pwned\x07 \u{202E}gnp.exe\n\tok";
        let shown = terminal_safe(hostile);
        assert!(!shown.contains('\x1b') && !shown.contains('\x07'));
        assert!(!shown.contains('\u{202E}'));
        assert!(shown.ends_with("\n\tok"), "newline and tab are kept");
    }

    #[test]
    fn error_sentences_escape_control_characters_and_state_causes_once() {
        let io = std::io::Error::other("disk on fire");
        let err = anyhow::Error::new(io).context("writing x\x1b[2J");
        let text = describe(&err);
        assert_eq!(text, "writing x\\u{1b}[2J: disk on fire");
    }
}
