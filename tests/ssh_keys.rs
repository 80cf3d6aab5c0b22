//! The RSA keys people already have for SSH: `ssh-rsa` public lines (an
//! `id_rsa.pub` or `authorized_keys` file) and `OPENSSH PRIVATE KEY` files,
//! through the real binary. Ed25519 and ECDSA keys are refused by name. The
//! `SHA256:` fingerprints are checked against `ssh-keygen -lf`, run here.

mod common;

use std::fs;
use std::path::Path;
#[cfg(unix)]
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;

const GRACE_PASSPHRASE: &str = "grace-passphrase";

fn passphrase_file(dir: &Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("passphrase");
    fs::write(&p, format!("{text}\n")).unwrap();
    p
}

/// OpenSSH's fingerprint of a key file, as `ssh-keygen -lf` prints it.
#[cfg(unix)]
fn ssh_keygen_fingerprint(path: &Path) -> String {
    let out = StdCommand::new("ssh-keygen")
        .arg("-lf")
        .arg(path)
        .output()
        .expect("ssh-keygen runs (CI installs openssh-client)");
    assert!(out.status.success(), "ssh-keygen -lf {}", path.display());
    let text = String::from_utf8(out.stdout).unwrap();
    let fp = text
        .split_whitespace()
        .nth(1)
        .expect("bits, fingerprint, comment");
    assert!(fp.starts_with("SHA256:"), "{text}");
    fp.to_owned()
}

/// A dotted object identifier such as 1.3.101.112 anywhere in the text.
fn has_dotted_oid(text: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .any(|w| w.split('.').filter(|p| !p.is_empty()).count() >= 3)
}

#[test]
fn dotted_oid_detector_sees_oids_and_nothing_else() {
    assert!(has_dotted_oid("unknown OID 1.3.101.112 here"));
    assert!(has_dotted_oid("(1.2.840.10045.2.1)"));
    assert!(!has_dotted_oid("OpenSSH 9.2, 2048 to 4096 bits, SHA256:x"));
}

#[test]
fn seal_to_an_ssh_rsa_line_signed_by_an_openssh_key_opens_with_a_passphrase_protected_openssh_key()
{
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("to-grace.sxf");
    seal(
        &archive,
        &["grace_id_rsa.pub"],
        "frank_id_rsa",
        args!["-m", "hello grace, from an ssh key"],
    );

    let out = dir.path().join("opened");
    let pass = passphrase_file(dir.path(), GRACE_PASSPHRASE);
    let r = run(
        open_cmd(&archive, "grace_id_rsa", Some("frank_id_rsa.pub"), &out)
            .arg("--passphrase-file")
            .arg(&pass),
    );
    r.assert_code(0, "open with grace's OpenSSH key");
    assert_eq!(
        fs::read_to_string(out.join("message.txt")).unwrap(),
        "hello grace, from an ssh key"
    );

    // The sender named by an authorized_keys-style file: a comment, an Ed25519
    // key (passed over) and frank's key behind options.
    let authorized = dir.path().join("authorized_keys");
    fs::write(
        &authorized,
        format!(
            "# frank's keys\n{}from=\"10.0.0.0/8\",no-pty {}",
            fs::read_to_string(key("heidi_id_ed25519.pub")).unwrap(),
            fs::read_to_string(key("frank_id_rsa.pub")).unwrap()
        ),
    )
    .unwrap();
    run(sxf()
        .arg("verify")
        .arg(&archive)
        .arg("--from")
        .arg(&authorized))
    .assert_code(0, "verify --from an authorized_keys file");

    // Someone else's ssh key is not the sender.
    run(sxf()
        .arg("verify")
        .arg(&archive)
        .arg("--from")
        .arg(key("grace_id_rsa.pub")))
    .assert_code(1, "verify --from the wrong ssh key");
}

#[test]
fn an_openssh_key_with_the_wrong_passphrase_is_refused_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let pass = passphrase_file(dir.path(), "not-grace-passphrase");
    let r = run(sxf()
        .arg("fingerprint")
        .arg(key("grace_id_rsa"))
        .arg("--passphrase-file")
        .arg(&pass));
    r.assert_code(2, "wrong passphrase")
        .assert_stderr_contains("wrong passphrase", "wrong passphrase");
    assert!(r.stdout.is_empty());
}

// Runs ssh-keygen, a Linux program here.
#[cfg(unix)]
#[test]
fn fingerprint_of_ssh_keys_shows_ssh_keygens_sha256_and_keeps_stdout_the_machine_form() {
    let dir = tempfile::tempdir().unwrap();
    let pass = passphrase_file(dir.path(), GRACE_PASSPHRASE);
    for (file, public) in [
        ("frank_id_rsa.pub", "frank_id_rsa.pub"),
        ("frank_id_rsa", "frank_id_rsa.pub"),
        ("grace_id_rsa.pub", "grace_id_rsa.pub"),
        ("grace_id_rsa", "grace_id_rsa.pub"),
    ] {
        let r = run(sxf()
            .arg("fingerprint")
            .arg(key(file))
            .arg("--passphrase-file")
            .arg(&pass));
        r.assert_code(0, file);
        // stdout: the sha256: line alone, of the SPKI DER, as for every key.
        assert_eq!(r.stdout, format!("{}\n", fingerprint(public)), "{file}");
        let expected = ssh_keygen_fingerprint(&key(public));
        r.assert_stderr_contains(
            &format!("OpenSSH fingerprint (as ssh-keygen -lf shows it): {expected}\n"),
            file,
        );
        let grouped = public_key(public).fingerprint().grouped();
        r.assert_stderr_contains(&format!("read aloud: {grouped}\n"), file);
    }
    // The same key as SPKI PEM: same sha256:, and no OpenSSH line (not an ssh file).
    let r = run(sxf().arg("fingerprint").arg(key("frank_id_rsa.spki.pub")));
    r.assert_code(0, "spki");
    assert_eq!(r.stdout, format!("{}\n", fingerprint("frank_id_rsa.pub")));
    assert!(!r.stderr.contains("SHA256:"), "{}", r.stderr);
}

#[test]
fn ed25519_and_ecdsa_keys_are_refused_by_name_without_an_oid() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("heidi_id_ed25519", "an Ed25519 key"),
        ("heidi_id_ed25519.pub", "an Ed25519 key"),
        ("judy_ed25519.key", "an Ed25519 key"),
        ("judy_ed25519.pub", "an Ed25519 key"),
        ("ivan_id_ecdsa", "an ECDSA (elliptic-curve) key"),
        ("ivan_id_ecdsa.pub", "an ECDSA (elliptic-curve) key"),
        ("kim_ec.key", "an ECDSA (elliptic-curve) key"),
        ("kim_ec.pub", "an ECDSA (elliptic-curve) key"),
        ("kim_ec.sec1.key", "an ECDSA (elliptic-curve) key"),
    ];
    for (file, what) in cases {
        let is_public = file.ends_with(".pub");
        let sentence = format!("{what}, and sxf uses RSA keys");
        let mut commands = vec![
            ("fingerprint", {
                let mut c = sxf();
                c.arg("fingerprint").arg(key(file));
                c
            }),
            ("pubkey", {
                let mut c = sxf();
                c.arg("pubkey").arg(key(file));
                c
            }),
        ];
        // Where the key is really used: as a recipient, or as the signer.
        let out = dir.path().join("x.sxf");
        commands.push(if is_public {
            (
                "seal --to",
                seal_cmd(&out, &[file], "alice.key", args!["-m", "x"]),
            )
        } else {
            (
                "seal --sign",
                seal_cmd(&out, &["bob.pub"], file, args!["-m", "x"]),
            )
        });
        for (what_ran, mut cmd) in commands {
            let label = format!("{what_ran} {file}");
            let r = run(&mut cmd);
            r.assert_code(2, &label)
                .assert_stderr_contains(&sentence, &label);
            assert!(
                !has_dotted_oid(&r.stderr),
                "{label}: an OID reached the user: {}",
                r.stderr
            );
            assert_not_created(&out);
        }
    }
}

// Runs ssh-keygen, a Linux program here.
#[cfg(unix)]
#[test]
fn pubkey_prints_the_pub_file_sxf_would_write_and_it_round_trips_through_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(sxf().arg("pubkey").arg(key("frank_id_rsa")));
    r.assert_code(0, "pubkey frank_id_rsa");
    assert_eq!(
        r.stdout,
        fs::read_to_string(key("frank_id_rsa.spki.pub")).unwrap()
    );
    let written = dir.path().join("frank.pub");
    fs::write(&written, &r.stdout).unwrap();
    let fp = run(sxf().arg("fingerprint").arg(&written));
    fp.assert_code(0, "fingerprint of pubkey's output");
    assert_eq!(fp.stdout, format!("{}\n", fingerprint("frank_id_rsa.pub")));

    // An encrypted key asks for its passphrase through the usual sources.
    let r = run(sxf().arg("pubkey").arg(key("carol.key")));
    r.assert_code(2, "pubkey carol.key with no passphrase")
        .assert_stderr_contains("--passphrase-file", "pubkey carol.key");
    let carol_pass = passphrase_file(dir.path(), CAROL_PASSPHRASE);
    let r = run(sxf()
        .arg("pubkey")
        .arg(key("carol.key"))
        .arg("--passphrase-file")
        .arg(&carol_pass));
    r.assert_code(0, "pubkey carol.key");
    assert_eq!(r.stdout, fs::read_to_string(key("carol.pub")).unwrap());

    // --ssh: an ssh-rsa line that ssh-keygen reads as the same key.
    let grace_pass = passphrase_file(dir.path(), GRACE_PASSPHRASE);
    let r = run(sxf()
        .arg("pubkey")
        .arg("--ssh")
        .arg(key("grace_id_rsa"))
        .arg("--passphrase-file")
        .arg(&grace_pass));
    r.assert_code(0, "pubkey --ssh grace_id_rsa");
    assert!(r.stdout.starts_with("ssh-rsa AAAA") && r.stdout.ends_with('\n'));
    let line = dir.path().join("grace.pub");
    fs::write(&line, &r.stdout).unwrap();
    assert_eq!(
        ssh_keygen_fingerprint(&line),
        ssh_keygen_fingerprint(&key("grace_id_rsa.pub"))
    );
}

/// grace's key with its bcrypt rounds replaced. The kdfoptions string follows
/// the kdfname "bcrypt": uint32 length, string salt, uint32 rounds.
fn grace_with_rounds(rounds: u32) -> String {
    let pem = fs::read_to_string(key("grace_id_rsa")).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut blob = STANDARD.decode(body).unwrap();
    let kdfname = b"\x00\x00\x00\x06bcrypt";
    let at = blob
        .windows(kdfname.len())
        .position(|w| w == kdfname)
        .expect("an encrypted key names its kdf")
        + kdfname.len();
    let salt_len = u32::from_be_bytes(blob[at + 4..at + 8].try_into().unwrap()) as usize;
    let rounds_at = at + 8 + salt_len;
    let old = u32::from_be_bytes(blob[rounds_at..rounds_at + 4].try_into().unwrap());
    assert_eq!(old, 16, "the fixture uses ssh-keygen's default rounds");
    blob[rounds_at..rounds_at + 4].copy_from_slice(&rounds.to_be_bytes());
    let encoded = STANDARD.encode(&blob);
    let mut out = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for chunk in encoded.as_bytes().chunks(70) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str("-----END OPENSSH PRIVATE KEY-----\n");
    out
}

#[test]
fn hostile_bcrypt_rounds_are_refused_before_any_derivation() {
    let dir = tempfile::tempdir().unwrap();
    let pass = passphrase_file(dir.path(), GRACE_PASSPHRASE);
    // Sanity: the rewriting itself keeps a key that opens (16 rounds as before).
    let same = dir.path().join("same");
    fs::write(&same, grace_with_rounds(16)).unwrap();
    run(sxf()
        .arg("fingerprint")
        .arg(&same)
        .arg("--passphrase-file")
        .arg(&pass))
    .assert_code(0, "rewritten with the same rounds");

    for rounds in [u32::MAX, 0, sxf::keys::MAX_BCRYPT_ROUNDS + 1] {
        let hostile = dir.path().join(format!("rounds-{rounds}"));
        fs::write(&hostile, grace_with_rounds(rounds)).unwrap();
        let started = Instant::now();
        let r = run(sxf()
            .arg("fingerprint")
            .arg(&hostile)
            .arg("--passphrase-file")
            .arg(&pass));
        let took = started.elapsed();
        r.assert_code(2, "hostile rounds").assert_stderr_contains(
            &format!("asks for {rounds} bcrypt rounds"),
            "hostile rounds",
        );
        // u32::MAX rounds would take about a year; a refusal takes no derivation.
        assert!(
            took < Duration::from_secs(10),
            "{rounds} rounds took {took:?}"
        );
    }
}
