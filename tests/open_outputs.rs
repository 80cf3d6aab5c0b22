//! What `open` and `seal` leave on disk: private modes, safe default names, clean
//! interruption, and no archive that sxf itself would refuse to open.

mod common;

use std::fs;
#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;
#[cfg(unix)]
use std::process::{Command, Stdio};
#[cfg(unix)]
use std::time::Duration;

use common::*;

// Windows has no modes: outputs inherit the directory's ACL (src/platform.rs).
#[cfg(unix)]
#[test]
fn opened_files_are_private_to_their_owner() {
    let dir = tempfile::tempdir().unwrap();
    let archive = seal_standard(dir.path());
    let out = dir.path().join("opened");
    run(&mut open_cmd(&archive, "bob.key", Some("alice.pub"), &out)).assert_code(0, "open");
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out), 0o700, "output directory mode");
    for entry in fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{} mode", path.display());
    }
}

#[test]
fn default_output_directory_is_never_a_hidden_name_from_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let archive = seal_standard(dir.path());
    let hostile = dir.path().join(".ssh.sxf");
    fs::rename(&archive, &hostile).unwrap();
    let mut cmd = sxf();
    cmd.current_dir(dir.path())
        .arg("open")
        .arg(".ssh.sxf")
        .arg("--key")
        .arg(key("bob.key"))
        .arg("--from")
        .arg(key("alice.pub"));
    run(&mut cmd).assert_code(0, "open with the default directory");
    assert!(!dir.path().join(".ssh").exists(), ".ssh was created");
    assert!(dir.path().join("ssh/message.txt").exists());
}

#[test]
fn ordinary_attachment_names_are_opened_exactly_as_they_were_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    fs::create_dir(&inputs).unwrap();
    let names = [
        "Q3 report, final & signed [v2].pdf",
        "Mum's birthday #1!.jpg",
    ];
    let mut seal_args = args!["-m", "two ordinary names"];
    for name in names {
        let path = inputs.join(name);
        fs::write(&path, format!("the bytes of {name}")).unwrap();
        seal_args.extend(args!["--attach", &path]);
    }
    let archive = dir.path().join("names.sxf");
    seal(&archive, &["bob.pub"], "alice.key", seal_args);
    let out = dir.path().join("opened");
    run(&mut open_cmd(&archive, "bob.key", Some("alice.pub"), &out)).assert_code(0, "open");
    let mut expected: std::collections::BTreeSet<String> =
        names.iter().map(|n| n.to_string()).collect();
    expected.insert("message.txt".into());
    assert_eq!(listing(&out), expected);
    for name in names {
        assert_eq!(
            fs::read_to_string(out.join(name)).unwrap(),
            format!("the bytes of {name}")
        );
    }
}

#[test]
fn a_message_over_the_readers_limit_is_refused_at_seal_time() {
    let dir = tempfile::tempdir().unwrap();
    let message = dir.path().join("message.txt");
    fs::write(&message, vec![b'x'; (64 << 20) + 1]).unwrap();
    let out = dir.path().join("big.sxf");
    run(&mut seal_cmd(
        &out,
        &["bob.pub"],
        "alice.key",
        args!["--message-file", &message],
    ))
    .assert_code(2, "seal of an oversized message")
    .assert_stderr_contains("limit", "names the limit");
    assert_not_created(&out);
}

/// Starts `sxf` with `args`, sends SIGINT after `delay`, and returns its exit code.
#[cfg(unix)]
fn interrupt_after(args: &[&std::ffi::OsStr], delay: Duration) -> Option<i32> {
    let child = Command::new(env!("CARGO_BIN_EXE_sxf"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let killed = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(0),
        "finished before the signal arrived; make the input larger (stderr: {stderr})"
    );
    out.status.code()
}

// Sends SIGINT with kill(1).
#[cfg(unix)]
#[test]
fn ctrl_c_during_seal_or_open_exits_130_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    // Sparse, so making it is instant; sealing it still takes seconds.
    fs::File::create(&big).unwrap().set_len(1536 << 20).unwrap();
    let archive = dir.path().join("big.sxf");
    let (alice, bob_pub) = (key("alice.key"), key("bob.pub"));
    let code = interrupt_after(
        &[
            "seal".as_ref(),
            "--to".as_ref(),
            bob_pub.as_os_str(),
            "--sign".as_ref(),
            alice.as_os_str(),
            "--attach".as_ref(),
            big.as_os_str(),
            "-o".as_ref(),
            archive.as_os_str(),
        ],
        Duration::from_millis(400),
    );
    assert_eq!(
        code,
        Some(130),
        "an interrupted seal exits 130, as for SIGINT"
    );
    assert_not_created(&archive);

    // A complete archive, then an interrupted open.
    fs::File::create(&big).unwrap().set_len(768 << 20).unwrap();
    run(sxf()
        .arg("seal")
        .arg("--to")
        .arg(&bob_pub)
        .arg("--sign")
        .arg(&alice)
        .arg("--attach")
        .arg(&big)
        .arg("-o")
        .arg(&archive))
    .assert_code(0, "seal");
    let out = dir.path().join("opened");
    let (bob, alice_pub) = (key("bob.key"), key("alice.pub"));
    let code = interrupt_after(
        &[
            "open".as_ref(),
            archive.as_os_str(),
            "--key".as_ref(),
            bob.as_os_str(),
            "--from".as_ref(),
            alice_pub.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ],
        Duration::from_millis(400),
    );
    assert_eq!(
        code,
        Some(130),
        "an interrupted open exits 130, as for SIGINT"
    );
    assert_not_created(&out);
}
