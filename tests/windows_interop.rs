//! Archives crossing between Linux and Windows: the Linux build and the
//! Windows build (x86_64-pc-windows-gnu, run under wine) seal for each other
//! and open each other's archives, byte for byte and name for name.
//!
//! These tests need the Windows build and wine, so they are ignored by a plain
//! `cargo test`. `.ci/run` builds `sxf.exe`, prepares a wine prefix
//! (`.ci/windows/setup-wine`) and runs them with `--ignored`, setting
//! `SXF_WINDOWS_EXE` to the `.exe` and `WINEPREFIX` to the prefix. Without
//! `SXF_WINDOWS_EXE` they fail rather than pass vacuously.
#![cfg(target_os = "linux")]

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{key, listing, sxf};

/// The Windows `sxf.exe`, run by wine in `dir` (so every path is relative and
/// means the same to both builds).
fn windows_sxf(dir: &Path) -> Command {
    let exe = std::env::var_os("SXF_WINDOWS_EXE")
        .expect("SXF_WINDOWS_EXE names the x86_64-pc-windows-gnu sxf.exe");
    let wine = std::env::var_os("SXF_WINE").unwrap_or_else(|| "/usr/lib/wine/wine64".into());
    let mut cmd = Command::new(wine);
    cmd.arg(exe)
        .current_dir(dir)
        .env("WINEDEBUG", "-all")
        .env("SXF_HOME", dir.join("windows-home-never-created"))
        .env_remove("SXF_PASSPHRASE");
    cmd
}

fn linux_sxf(dir: &Path) -> assert_cmd::Command {
    let mut cmd = sxf();
    cmd.current_dir(dir);
    cmd
}

fn succeeded(what: &str, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Copies the test keys into `dir`, where both builds find them by name.
fn scratch_with_keys() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for k in ["alice.key", "alice.pub", "bob.key", "bob.pub"] {
        fs::copy(key(k), dir.path().join(k)).unwrap();
    }
    dir
}

/// Line endings of every kind, a BOM-less UTF-8 mix, a tab and a Ctrl-Z byte:
/// what arrives must be exactly this.
const MESSAGE: &[u8] =
    "Windows line\r\nUnix line\nold Mac line\rnon-ASCII: héllo wörld ✓ 日本\r\n\ttab \u{1a} end\r\n"
        .as_bytes();

#[test]
#[ignore = "needs the Windows build under wine; .ci/run runs it"]
fn an_archive_sealed_on_linux_opens_on_windows_byte_for_byte() {
    let dir = scratch_with_keys();
    let d = dir.path();
    fs::write(d.join("message.txt"), MESSAGE).unwrap();
    let report: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    fs::write(d.join("report.bin"), &report).unwrap();
    let mut seal = linux_sxf(d);
    seal.args([
        "seal",
        "--to",
        "bob.pub",
        "--sign",
        "alice.key",
        "--no-self",
    ])
    .args(["--message-file", "message.txt", "--attach", "report.bin"])
    .args(["-o", "from-linux.sxf"]);
    seal.assert().success();
    // Binary and armored, verified and opened by the Windows build.
    let mut armor = linux_sxf(d);
    armor
        .args([
            "seal",
            "--to",
            "bob.pub",
            "--sign",
            "alice.key",
            "--no-self",
        ])
        .args([
            "--message-file",
            "message.txt",
            "-a",
            "-o",
            "from-linux.sxf.txt",
        ]);
    armor.assert().success();
    for archive in ["from-linux.sxf", "from-linux.sxf.txt"] {
        succeeded(
            "verify on Windows",
            windows_sxf(d)
                .args(["verify", archive, "--from", "alice.pub"])
                .output()
                .unwrap(),
        );
    }
    succeeded(
        "open on Windows",
        windows_sxf(d)
            .args([
                "open",
                "from-linux.sxf",
                "--key",
                "bob.key",
                "--from",
                "alice.pub",
            ])
            .args(["-o", "opened-on-windows"])
            .output()
            .unwrap(),
    );
    let out = d.join("opened-on-windows");
    assert_eq!(fs::read(out.join("message.txt")).unwrap(), MESSAGE);
    assert_eq!(fs::read(out.join("report.bin")).unwrap(), report);
    succeeded(
        "open the armored one on Windows",
        windows_sxf(d)
            .args(["open", "from-linux.sxf.txt", "--key", "bob.key"])
            .args(["--from", "alice.pub", "-o", "armored-on-windows"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        fs::read(d.join("armored-on-windows/message.txt")).unwrap(),
        MESSAGE
    );
}

#[test]
#[ignore = "needs the Windows build under wine; .ci/run runs it"]
fn an_archive_sealed_on_windows_opens_on_linux_byte_for_byte() {
    let dir = scratch_with_keys();
    let d = dir.path();
    let photo = common::test_picture(640, 480);
    photo.save(d.join("photo.png")).unwrap();
    fs::write(d.join("notes.txt"), b"attached\r\n").unwrap();
    // The message comes through a pipe on standard input.
    let mut child = windows_sxf(d)
        .args([
            "seal",
            "--to",
            "bob.pub",
            "--sign",
            "alice.key",
            "--no-self",
        ])
        .args([
            "--message-file",
            "-",
            "--image",
            "photo.png",
            "--attach",
            "notes.txt",
        ])
        .args(["-o", "from-windows.sxf"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(MESSAGE).unwrap();
    succeeded("seal on Windows", child.wait_with_output().unwrap());
    linux_sxf(d)
        .args(["verify", "from-windows.sxf", "--from", "alice.pub"])
        .assert()
        .success();
    linux_sxf(d)
        .args([
            "open",
            "from-windows.sxf",
            "--key",
            "bob.key",
            "--from",
            "alice.pub",
        ])
        .args(["-o", "opened-on-linux"])
        .assert()
        .success();
    let out = d.join("opened-on-linux");
    assert_eq!(fs::read(out.join("message.txt")).unwrap(), MESSAGE);
    assert_eq!(fs::read(out.join("notes.txt")).unwrap(), b"attached\r\n");
    assert_eq!(
        listing(&out),
        ["message.txt", "notes.txt", "photo.jpg"]
            .map(String::from)
            .into()
    );

    // A message given as an argument: Windows passes it as UTF-16, and it
    // arrives as the same UTF-8.
    let text = "Grüße, 你好,\r\nemoji 📷 and \"quotes\"\n& carets ^ \\ end\r\n";
    succeeded(
        "seal -m on Windows",
        windows_sxf(d)
            .args([
                "seal",
                "--to",
                "bob.pub",
                "--sign",
                "alice.key",
                "--no-self",
            ])
            .args(["-m", text, "-o", "argument.sxf"])
            .output()
            .unwrap(),
    );
    linux_sxf(d)
        .args([
            "open",
            "argument.sxf",
            "--key",
            "bob.key",
            "--from",
            "alice.pub",
        ])
        .args(["-o", "argument"])
        .assert()
        .success();
    assert_eq!(
        fs::read_to_string(d.join("argument/message.txt")).unwrap(),
        text
    );
}

/// File names that Linux allows and Windows does not: the archive carries
/// the same safe names to both, so the two builds open it identically.
#[test]
#[ignore = "needs the Windows build under wine; .ci/run runs it"]
fn names_windows_forbids_open_the_same_on_both_systems() {
    let dir = scratch_with_keys();
    let d = dir.path();
    let hostile = [
        "CON",
        "aux.txt",
        "com1.jpg.txt",
        "a:b.txt",
        "trailing dot.",
        "trailing space ",
        "q<u>o\"t|e?s*.txt",
        "back\\slash.txt",
        "Same.txt",
        "same.txt",
    ];
    let mut seal = linux_sxf(d);
    seal.args([
        "seal",
        "--to",
        "bob.pub",
        "--sign",
        "alice.key",
        "--no-self",
        "-m",
        "names",
    ]);
    for (i, name) in hostile.iter().enumerate() {
        fs::create_dir(d.join(format!("src{i}"))).unwrap();
        let path = PathBuf::from(format!("src{i}")).join(name);
        fs::write(d.join(&path), name.as_bytes()).unwrap();
        seal.arg("--attach").arg(path);
    }
    seal.args(["-o", "names.sxf"]).assert().success();

    linux_sxf(d)
        .args([
            "open",
            "names.sxf",
            "--key",
            "bob.key",
            "--from",
            "alice.pub",
            "-o",
            "on-linux",
        ])
        .assert()
        .success();
    succeeded(
        "open on Windows",
        windows_sxf(d)
            .args([
                "open",
                "names.sxf",
                "--key",
                "bob.key",
                "--from",
                "alice.pub",
            ])
            .args(["-o", "on-windows"])
            .output()
            .unwrap(),
    );
    let on_linux = listing(&d.join("on-linux"));
    assert_eq!(listing(&d.join("on-windows")), on_linux);
    // Every name is one Windows accepts, and says what it was.
    for name in &on_linux {
        assert!(
            !name.contains(['<', '>', ':', '"', '|', '?', '*', '\\', '/'])
                && !name.ends_with(['.', ' ']),
            "{name:?}"
        );
    }
    for expected in [
        "_CON",
        "_aux.txt",
        "_com1.jpg.txt",
        "a_b.txt",
        "trailing dot",
        "trailing space",
        "q_u_o_t_e_s_.txt",
        "slash.txt",
        "Same.txt",
        "same (2).txt",
    ] {
        assert!(on_linux.contains(expected), "{expected} in {on_linux:?}");
    }
    // Same contents on both sides, file by file.
    for name in &on_linux {
        assert_eq!(
            fs::read(d.join("on-windows").join(name)).unwrap(),
            fs::read(d.join("on-linux").join(name)).unwrap(),
            "{name}"
        );
    }
}
