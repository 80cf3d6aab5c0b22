//! Archives through pipes and as text: `seal -o -`, `open -`, `verify -`,
//! `inspect -`, FIFOs such as `<(…)`, `seal --armor`, and armored input to every
//! reader, driven through the real binary.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
#[cfg(unix)]
use std::thread::sleep;
#[cfg(unix)]
use std::time::Duration;

use common::*;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sxf")
}

#[cfg(unix)]
fn quoted(p: &Path) -> String {
    format!("'{}'", p.display())
}

/// Seals `message` from alice to bob into `out`, with extra flags.
fn seal_to(out: &Path, message: &str, extra: &[&str]) {
    let o = Command::new(bin())
        .arg("seal")
        .arg("--to")
        .arg(key("bob.pub"))
        .arg("--sign")
        .arg(key("alice.key"))
        .args(["-m", message])
        .args(extra)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `sxf ARGS` with `input` on standard input and TMPDIR set to `tmp`.
fn run_with_stdin(args: &[&std::ffi::OsStr], input: &[u8], tmp: &Path) -> std::process::Output {
    let mut child = Command::new(bin())
        .args(args)
        .env("TMPDIR", tmp)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn open_args(out_dir: &Path) -> Vec<std::ffi::OsString> {
    args![
        "open",
        "-",
        "--key",
        key("bob.key"),
        "--from",
        key("alice.pub"),
        "-o",
        out_dir
    ]
}

fn os(v: &[std::ffi::OsString]) -> Vec<&std::ffi::OsStr> {
    v.iter().map(|s| s.as_os_str()).collect()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn empty_dir(dir: &Path) -> bool {
    fs::read_dir(dir).unwrap().next().is_none()
}

fn private_tmp(parent: &Path) -> PathBuf {
    let t = parent.join("tmp");
    fs::create_dir(&t).unwrap();
    t
}

// A bash pipeline; the Windows build's own pipes are in windows_interop.rs.
#[cfg(unix)]
#[test]
fn seal_to_stdout_pipes_into_open_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = private_tmp(dir.path());
    let out_dir = dir.path().join("opened");
    let line = format!(
        "{b} seal --to {bob} --sign {alice} -m 'through a pipe' -o - | {b} open - --key {bobk} --from {alicep} -o {out}",
        b = bin(),
        bob = quoted(&key("bob.pub")),
        alice = quoted(&key("alice.key")),
        bobk = quoted(&key("bob.key")),
        alicep = quoted(&key("alice.pub")),
        out = quoted(&out_dir),
    );
    let o = Command::new("bash")
        .args(["-o", "pipefail", "-c", &line])
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "through a pipe\n");
    assert!(stderr(&o).contains("sealed to standard output"));
    assert_eq!(
        fs::read_to_string(out_dir.join("message.txt")).unwrap(),
        "through a pipe"
    );
    assert!(
        empty_dir(&tmp),
        "the spooled copy has no name and leaves nothing"
    );
}

#[test]
fn armored_seal_round_trips_through_open_verify_and_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let armored = dir.path().join("letter.sxf.asc");
    seal_to(&armored, "armored hello", &["--armor"]);
    let text = fs::read_to_string(&armored).unwrap();
    assert!(text.starts_with("-----BEGIN SXF ARCHIVE-----\n"));
    assert!(text.ends_with("-----END SXF ARCHIVE-----\n"));
    assert!(
        text.lines()
            .all(|l| l.len() <= 64 || l.starts_with("-----"))
    );

    // The default output directory drops .sxf.asc.
    let o = Command::new(bin())
        .current_dir(dir.path())
        .args(["open", "letter.sxf.asc", "--key"])
        .arg(key("bob.key"))
        .arg("--from")
        .arg(key("alice.pub"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        fs::read_to_string(dir.path().join("letter/message.txt")).unwrap(),
        "armored hello"
    );
    let o = Command::new(bin())
        .arg("verify")
        .arg(&armored)
        .arg("--from")
        .arg(key("alice.pub"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = Command::new(bin())
        .args(["inspect", "-"])
        .stdin(fs::File::open(&armored).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("standard input (not verified"));
}

#[test]
fn armor_mangled_by_email_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = private_tmp(dir.path());
    let armored = dir.path().join("a.sxf");
    seal_to(&armored, "crlf survives", &["-a"]);
    let text = fs::read_to_string(&armored).unwrap();
    // What a mail client does to pasted text: CRLF, indentation, blank lines.
    let mangled = format!(
        "\r\n   \r\n{}\r\n\r\n",
        text.lines()
            .map(|l| format!("  {l} \t"))
            .collect::<Vec<_>>()
            .join("\r\n")
    );
    let out_dir = dir.path().join("opened");
    let o = run_with_stdin(&os(&open_args(&out_dir)), mangled.as_bytes(), &tmp);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "crlf survives\n");
}

#[test]
fn broken_armor_is_malformed_with_exit_1_and_no_temp_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = private_tmp(dir.path());
    let armored = dir.path().join("a.sxf");
    seal_to(&armored, "x", &["-a"]);
    let text = fs::read_to_string(&armored).unwrap();
    let end = "-----END SXF ARCHIVE-----\n";
    for (what, bad) in [
        ("missing end line", text.replace(end, "")),
        ("junk after the end line", format!("{text}junk\n")),
        ("other label", text.replace("SXF ARCHIVE", "PGP MESSAGE")),
        ("space inside a line", text.replacen("UEsDB", "UEs DB", 1)),
    ] {
        let out_dir = dir.path().join("never");
        let o = run_with_stdin(&os(&open_args(&out_dir)), bad.as_bytes(), &tmp);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains("not a valid sxf archive: bad ASCII armor on line"),
            "{what}: {err}"
        );
        assert!(!err.contains(&tmp.display().to_string()), "{what}: {err}");
        assert!(!out_dir.exists(), "{what}");
    }
    assert!(empty_dir(&tmp));
}

#[test]
fn spool_limit_error_names_the_limit_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = private_tmp(dir.path());
    let archive = dir.path().join("a.sxf");
    seal_to(&archive, "too big for the limit", &[]);
    let bytes = fs::read(&archive).unwrap();
    let args = args![
        "verify",
        "-",
        "--from",
        key("alice.pub"),
        "--spool-limit",
        "1KiB"
    ];
    let o = run_with_stdin(&os(&args), &bytes, &tmp);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("spool limit of 1.00 KiB"), "{err}");
    assert!(err.contains("--spool-limit"), "{err}");
    assert!(!err.contains(&tmp.display().to_string()), "{err}");
    assert!(empty_dir(&tmp));
    // At the limit it is fine.
    let exact = format!("{}", bytes.len());
    let args = args![
        "verify",
        "-",
        "--from",
        key("alice.pub"),
        "--spool-limit",
        exact
    ];
    let o = run_with_stdin(&os(&args), &bytes, &tmp);
    assert!(o.status.success(), "{}", stderr(&o));
}

// bash process substitution: a Unix FIFO.
#[cfg(unix)]
#[test]
fn open_of_a_fifo_from_process_substitution_works() {
    let dir = tempfile::tempdir().unwrap();
    for (name, extra) in [("bin.sxf", &[][..]), ("text.sxf", &["--armor"][..])] {
        let archive = dir.path().join(name);
        seal_to(&archive, "via a fifo", extra);
        let out_dir = dir.path().join(format!("{name}-opened"));
        let line = format!(
            "{b} open <(cat {a}) --key {k} --from {f} -o {o}",
            b = bin(),
            a = quoted(&archive),
            k = quoted(&key("bob.key")),
            f = quoted(&key("alice.pub")),
            o = quoted(&out_dir)
        );
        let o = Command::new("bash").args(["-c", &line]).output().unwrap();
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout), "via a fifo\n");
    }
    // Without -o there is no name to make a directory from: a clear sentence.
    let line = format!(
        "{b} open <(cat {a}) --key {k} --from {f}",
        b = bin(),
        a = quoted(&dir.path().join("bin.sxf")),
        k = quoted(&key("bob.key")),
        f = quoted(&key("alice.pub")),
    );
    let o = Command::new("bash")
        .args(["-c", &line])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("give -o DIR"), "{}", stderr(&o));
}

#[test]
fn open_from_stdin_needs_an_output_directory() {
    let dir = tempfile::tempdir().unwrap();
    let args = args![
        "open",
        "-",
        "--key",
        key("bob.key"),
        "--from",
        key("alice.pub")
    ];
    let o = run_with_stdin(&os(&args), b"", dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(
            "standard input has no file name to name the output directory after; give -o DIR"
        ),
        "{}",
        stderr(&o)
    );
}

/// Runs a shell line on a pseudo-terminal (`script`, util-linux); returns what
/// the terminal showed and the exit status.
#[cfg(unix)]
fn on_terminal(line: &str) -> (String, bool) {
    let o = Command::new("script")
        .args(["-qec", line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("`script` (util-linux) is needed for the terminal tests");
    (
        String::from_utf8_lossy(&o.stdout).replace('\r', ""),
        o.status.success(),
    )
}

// script(1) gives a pseudo-terminal; Unix only.
#[cfg(unix)]
#[test]
fn seal_to_stdout_refuses_a_terminal_unless_armored() {
    let dir = tempfile::tempdir().unwrap();
    let seal = format!(
        "{} seal --to {} --sign {} -m hi -o -",
        bin(),
        quoted(&key("bob.pub")),
        quoted(&key("alice.key"))
    );
    let (shown, ok) = on_terminal(&seal);
    assert!(!ok, "{shown}");
    assert!(
        shown.contains("refusing to write a binary archive to a terminal"),
        "{shown}"
    );
    assert!(
        !shown.contains("PK"),
        "no archive bytes reached the terminal"
    );
    let (shown, ok) = on_terminal(&format!("{seal} --armor"));
    assert!(ok, "{shown}");
    assert!(shown.contains("-----BEGIN SXF ARCHIVE-----"), "{shown}");
    assert!(shown.contains("-----END SXF ARCHIVE-----"), "{shown}");
    assert!(empty_dir(dir.path()));
}

// Sends SIGINT with kill(1); Unix only.
#[cfg(unix)]
#[test]
fn ctrl_c_while_spooling_stdin_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = private_tmp(dir.path());
    let out_dir = dir.path().join("never");
    let mut child = Command::new(bin())
        .args(os(&open_args(&out_dir)))
        .env("TMPDIR", &tmp)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Armor that keeps coming: the spool is under way when the signal arrives.
    let mut line = String::from("-----BEGIN SXF ARCHIVE-----\n");
    stdin.write_all(line.as_bytes()).unwrap();
    line = format!("{}\n", "A".repeat(64));
    let chunk = line.repeat(4096);
    for _ in 0..8 {
        stdin.write_all(chunk.as_bytes()).unwrap();
    }
    sleep(Duration::from_millis(500));
    assert!(empty_dir(&tmp), "the spool file never has a name");
    let killed = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    // More input wakes the read, which then sees the stop request.
    let _ = stdin.write_all(chunk.as_bytes());
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("interrupted") || out.status.code() == Some(130),
        "{err}"
    );
    assert!(empty_dir(&tmp));
    assert!(!out_dir.exists());
}
