//! The prompts that only appear on a terminal: the message typed at `seal`, and
//! a passphrase asked with rpassword. `script` (util-linux) gives the binary a
//! pseudo-terminal; the typing is piped in with pauses, as a person would type.
#![cfg(unix)] // script(1) gives the pseudo-terminal

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use common::*;

/// Runs `command` (a shell line) on a pseudo-terminal, typing `keystrokes` one
/// chunk at a time after a pause each; returns the terminal's output.
fn on_terminal(command: &str, keystrokes: &[&[u8]]) -> String {
    let (ok, text) = on_terminal_status(command, keystrokes);
    assert!(ok, "{command} failed: {text}");
    text
}

/// [`on_terminal`] for a command that may fail: whether it succeeded, and the output.
fn on_terminal_status(command: &str, keystrokes: &[&[u8]]) -> (bool, String) {
    let mut child = Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("`script` (util-linux) is needed for the terminal tests");
    let mut stdin = child.stdin.take().unwrap();
    for chunk in keystrokes {
        sleep(Duration::from_millis(700));
        // A command that already ended (as a refusal does) reads no more.
        if stdin.write_all(chunk).and_then(|()| stdin.flush()).is_err() {
            break;
        }
    }
    sleep(Duration::from_millis(700));
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    (out.status.success(), text)
}

fn quoted(p: &std::path::Path) -> String {
    format!("'{}'", p.display())
}

#[test]
fn seal_asks_for_the_message_on_a_terminal_and_ctrl_d_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("typed.sxf");
    let line = format!(
        "{} seal --to {} --sign {} -o {}",
        env!("CARGO_BIN_EXE_sxf"),
        quoted(&key("bob.pub")),
        quoted(&key("alice.key")),
        quoted(&archive)
    );
    let screen = on_terminal(&line, &[b"first line\nsecond line\n", b"\x04"]);
    assert!(screen.contains("Type the message"), "{screen}");
    let out = dir.path().join("opened");
    run(&mut open_cmd(&archive, "bob.key", Some("alice.pub"), &out)).assert_code(0, "open");
    assert_eq!(
        std::fs::read_to_string(out.join("message.txt")).unwrap(),
        "first line\nsecond line\n"
    );
}

#[test]
fn an_encrypted_key_asks_for_its_passphrase_on_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("carol.sxf");
    let line = format!(
        "env -u SXF_PASSPHRASE {} seal --to {} --sign {} -m hi -o {}",
        env!("CARGO_BIN_EXE_sxf"),
        quoted(&key("bob.pub")),
        quoted(&key("carol.key")),
        quoted(&archive)
    );
    let screen = on_terminal(&line, &[format!("{CAROL_PASSPHRASE}\n").as_bytes()]);
    assert!(screen.contains("Passphrase for"), "{screen}");
    assert!(
        !screen.contains(CAROL_PASSPHRASE),
        "the passphrase was echoed: {screen}"
    );
    let out = dir.path().join("opened");
    run(&mut open_cmd(&archive, "bob.key", Some("carol.pub"), &out)).assert_code(0, "open");
}

/// `sxf seal ... --sign KEY` with `extra` flags, on one shell line.
fn seal_line(sign: &str, extra: &str, out: &std::path::Path) -> String {
    format!(
        "env -u SXF_PASSPHRASE {} seal --to {} --sign {} {extra} -o {}",
        env!("CARGO_BIN_EXE_sxf"),
        quoted(&key("bob.pub")),
        quoted(&key(sign)),
        quoted(out)
    )
}

#[test]
fn a_mistyped_passphrase_can_be_typed_again_up_to_three_tries() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("carol.sxf");
    let line = seal_line("carol.key", "-m hi", &archive);
    let right = format!("{CAROL_PASSPHRASE}\n");
    let screen = on_terminal(&line, &[b"wrong\n", b"still wrong\n", right.as_bytes()]);
    assert_eq!(screen.matches("Passphrase for").count(), 3, "{screen}");
    assert!(archive.is_file(), "{screen}");
    // Three wrong ones and it gives up.
    let never = dir.path().join("never.sxf");
    let (ok, screen) = on_terminal_status(
        &seal_line("carol.key", "-m hi", &never),
        &[b"a\n", b"b\n", b"c\n"],
    );
    assert!(!ok, "{screen}");
    assert!(screen.contains("wrong passphrase"), "{screen}");
    assert!(!never.exists());
}

#[test]
fn keygen_asks_again_when_the_two_passphrases_differ() {
    let dir = tempfile::tempdir().unwrap();
    let line = format!(
        "env -u SXF_PASSPHRASE {} keygen dave --out-dir {}",
        env!("CARGO_BIN_EXE_sxf"),
        quoted(dir.path())
    );
    let screen = on_terminal(
        &line,
        &[
            b"first try\n",
            b"frist try\n",
            b"second try\n",
            b"second try\n",
        ],
    );
    assert!(screen.contains("differ"), "{screen}");
    assert_eq!(screen.matches("New passphrase").count(), 2, "{screen}");
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "second try\n").unwrap();
    run(sxf()
        .arg("fingerprint")
        .arg(dir.path().join("dave.key"))
        .arg("--passphrase-file")
        .arg(&pass))
    .assert_code(0, "the second passphrase opens the key");
}

#[test]
fn seal_with_only_attachments_does_not_wait_for_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "attached\n").unwrap();
    let archive = dir.path().join("files.sxf");
    let extra = format!("--attach {}", quoted(&file));
    // No keystrokes at all: it must finish on its own.
    let screen = on_terminal(&seal_line("alice.key", &extra, &archive), &[]);
    assert!(!screen.contains("Type the message"), "{screen}");
    assert!(archive.is_file(), "{screen}");
}

#[test]
fn a_typo_in_a_key_or_input_path_is_reported_before_the_message_is_typed() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("typo.sxf");
    let typo = dir.path().join("alcie.key");
    for extra in [
        format!("--to {}", quoted(&typo)),
        format!("--passphrase-file {}", quoted(&typo)),
    ] {
        let (ok, screen) = on_terminal_status(
            &seal_line("carol.key", &extra, &archive),
            &[b"a long message I would hate to type twice\n", b"\x04"],
        );
        assert!(!ok, "{screen}");
        assert!(screen.contains("alcie.key"), "{screen}");
        assert!(
            !screen.contains("Type the message"),
            "asked first: {screen}"
        );
    }
    assert!(!archive.exists());
}
