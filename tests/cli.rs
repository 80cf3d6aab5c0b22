//! The command line, driven through the real binary: exit codes, messages,
//! refusals, atomic outputs, keys and passphrases.

mod common;

use std::fs;
#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
#[cfg(unix)]
use std::process::Command as StdCommand;

use common::*;
use tempfile::tempdir;

#[cfg(unix)]
fn openssl(args: &[&str]) -> Vec<u8> {
    let out = StdCommand::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn stdout_line(r: &Run) -> String {
    r.stdout.trim_end().to_owned()
}

// ---------------------------------------------------------------------------
// open: who the sender is

#[test]
fn open_without_from_from_an_unknown_sender_is_refused_and_says_what_to_do() {
    let dir = tempdir().unwrap();
    let archive = seal_standard(dir.path());
    let out = dir.path().join("out");
    let r = run(sxf()
        .arg("open")
        .arg(&archive)
        .arg("--key")
        .arg(key("bob.key"))
        .arg("-o")
        .arg(&out));
    // No contacts: the sender is unknown, which is a rejection (exit 1).
    r.assert_code(1, "open without a sender")
        .assert_stderr_contains("--from", "open without a sender")
        .assert_stderr_contains("--any-sender", "open without a sender")
        .assert_stderr_contains(
            "sxf contacts add NAME --fingerprint",
            "open without a sender",
        );
    assert!(r.stdout.is_empty(), "nothing printed: {}", r.stdout);
    assert_not_created(&out);
}

#[test]
fn verify_without_from_from_an_unknown_sender_is_refused() {
    let dir = tempdir().unwrap();
    let archive = seal_standard(dir.path());
    let r = run(sxf().arg("verify").arg(&archive));
    r.assert_code(1, "verify without a sender")
        .assert_stderr_contains("--from", "verify without a sender")
        .assert_stderr_contains("not one of your contacts", "verify without a sender");
    assert!(r.stdout.is_empty(), "nothing on stdout: {}", r.stdout);
}

#[test]
fn from_and_any_sender_together_are_a_usage_error() {
    let dir = tempdir().unwrap();
    let archive = seal_standard(dir.path());
    let out = dir.path().join("out");
    let r = run(open_cmd(&archive, "bob.key", Some("alice.pub"), &out).arg("--any-sender"));
    r.assert_code(2, "--from with --any-sender");
    assert_not_created(&out);
}

#[test]
fn any_sender_opens_and_warns_with_the_sender_fingerprint() {
    let dir = tempdir().unwrap();
    let archive = seal_standard(dir.path());
    let out = dir.path().join("out");
    let r = run(&mut open_cmd(&archive, "bob.key", None, &out));
    r.assert_code(0, "open --any-sender");
    let alice = fingerprint("alice.pub");
    let warning = r
        .stderr
        .lines()
        .find(|l| l.contains("WARNING") && l.contains(&alice));
    assert!(
        warning.is_some(),
        "a WARNING line with the sender fingerprint {alice}\nstderr: {}",
        r.stderr
    );
    assert_eq!(r.stdout, "hello bob\n");
    assert_eq!(fs::read(out.join("message.txt")).unwrap(), b"hello bob");
}

#[test]
fn open_with_from_prints_no_warning_and_names_the_verified_sender() {
    let dir = tempdir().unwrap();
    let archive = seal_standard(dir.path());
    let out = dir.path().join("out");
    let r = run(&mut open_cmd(&archive, "bob.key", Some("alice.pub"), &out));
    r.assert_code(0, "open --from")
        .assert_stderr_contains(&fingerprint("alice.pub"), "open --from");
    assert!(!r.stderr.contains("WARNING"), "no warning: {}", r.stderr);
    assert_eq!(r.stdout, "hello bob\n");
    assert_eq!(
        fs::read(out.join("notes.txt")).unwrap(),
        b"the attachment's bytes\n"
    );
    assert_no_temp_files(dir.path());
}

// ---------------------------------------------------------------------------
// Never overwrite; atomic outputs

#[test]
fn seal_refuses_to_overwrite_an_existing_archive() {
    let dir = tempdir().unwrap();
    let out = dir.path().join("letter.sxf");
    fs::write(&out, b"precious").unwrap();
    let before = listing(dir.path());
    let r = run(&mut seal_cmd(
        &out,
        &["bob.pub"],
        "alice.key",
        args!["-m", "hi"],
    ));
    r.assert_code(2, "seal over an existing file")
        .assert_stderr_contains("already exists", "seal over an existing file");
    assert_eq!(fs::read(&out).unwrap(), b"precious");
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn open_refuses_an_existing_output_directory() {
    let dir = tempdir().unwrap();
    let archive = seal_standard(dir.path());
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("mine.txt"), b"mine").unwrap();
    let r = run(&mut open_cmd(&archive, "bob.key", Some("alice.pub"), &out));
    r.assert_code(2, "open into an existing directory")
        .assert_stderr_contains("already exists", "open into an existing directory");
    assert!(r.stdout.is_empty());
    assert_eq!(listing(&out), ["mine.txt".to_owned()].into());
    assert_eq!(fs::read(out.join("mine.txt")).unwrap(), b"mine");
    assert_no_temp_files(dir.path());
}

#[test]
fn open_refuses_an_existing_file_as_output_directory() {
    let dir = tempdir().unwrap();
    let archive = seal_standard(dir.path());
    let out = dir.path().join("out");
    fs::write(&out, b"a file").unwrap();
    let r = run(&mut open_cmd(&archive, "bob.key", Some("alice.pub"), &out));
    r.assert_code(2, "open onto an existing file");
    assert_eq!(fs::read(&out).unwrap(), b"a file");
}

// Symlinks on Windows need a privilege most users lack; these run on Unix.
#[cfg(unix)]
#[test]
fn seal_never_writes_through_a_dangling_symlink_at_out() {
    let dir = tempdir().unwrap();
    let target = dir.path().join("elsewhere.sxf");
    let out = dir.path().join("link.sxf");
    std::os::unix::fs::symlink(&target, &out).unwrap();
    let r = run(&mut seal_cmd(
        &out,
        &["bob.pub"],
        "alice.key",
        args!["-m", "hi"],
    ));
    r.assert_code(2, "seal onto a dangling symlink")
        .assert_stderr_contains("already exists", "seal onto a dangling symlink");
    assert!(!target.exists(), "wrote through the symlink");
    assert_eq!(fs::read_link(&out).unwrap(), target);
    assert_no_temp_files(dir.path());
}

#[cfg(unix)]
#[test]
fn open_never_creates_the_target_of_a_dangling_symlink_at_dir() {
    let dir = tempdir().unwrap();
    let archive = seal_standard(dir.path());
    let target = dir.path().join("elsewhere");
    let out = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &out).unwrap();
    let r = run(&mut open_cmd(&archive, "bob.key", Some("alice.pub"), &out));
    r.assert_code(2, "open onto a dangling symlink")
        .assert_stderr_contains("already exists", "open onto a dangling symlink");
    assert!(!target.exists(), "created the symlink's target");
    assert_eq!(fs::read_link(&out).unwrap(), target);
    assert_no_temp_files(dir.path());
}

#[test]
fn open_defaults_to_the_archive_name_without_extension_in_the_current_directory() {
    let dir = tempdir().unwrap();
    let elsewhere = dir.path().join("inbox");
    let cwd = dir.path().join("work");
    fs::create_dir(&elsewhere).unwrap();
    fs::create_dir(&cwd).unwrap();
    let archive = elsewhere.join("letter.sxf");
    seal(
        &archive,
        &["bob.pub"],
        "alice.key",
        args!["-m", "default dir"],
    );
    let r = run(sxf()
        .current_dir(&cwd)
        .arg("open")
        .arg(&archive)
        .arg("--key")
        .arg(key("bob.key"))
        .arg("--from")
        .arg(key("alice.pub")));
    r.assert_code(0, "open with the default directory");
    assert_eq!(
        fs::read(cwd.join("letter").join("message.txt")).unwrap(),
        b"default dir"
    );
    assert_eq!(listing(&cwd), ["letter".to_owned()].into());
    assert_eq!(listing(&elsewhere), ["letter.sxf".to_owned()].into());
    // A second open finds the directory and refuses.
    let again = run(sxf()
        .current_dir(&cwd)
        .arg("open")
        .arg(&archive)
        .arg("--key")
        .arg(key("bob.key"))
        .arg("--from")
        .arg(key("alice.pub")));
    again.assert_code(2, "second open into the default directory");
    assert_no_temp_files(&cwd);
}

#[test]
fn failed_seal_of_a_non_image_leaves_no_archive_and_no_temp_file() {
    let dir = tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    fs::write(&text, "not a picture\n").unwrap();
    let out = dir.path().join("out.sxf");
    let r = run(&mut seal_cmd(
        &out,
        &["bob.pub"],
        "alice.key",
        args!["-m", "hi", "--image", &text],
    ));
    r.assert_code(2, "seal with a text file as --image")
        .assert_stderr_contains("notes.txt", "seal with a text file as --image");
    assert_not_created(&out);
    assert_eq!(listing(dir.path()), ["notes.txt".to_owned()].into());
}

#[test]
fn failed_seal_of_a_missing_attachment_leaves_no_archive_and_no_temp_file() {
    let dir = tempdir().unwrap();
    let missing = dir.path().join("missing.pdf");
    let out = dir.path().join("out.sxf");
    let r = run(&mut seal_cmd(
        &out,
        &["bob.pub"],
        "alice.key",
        args!["-m", "hi", "--attach", &missing],
    ));
    r.assert_code(2, "seal with a missing --attach")
        .assert_stderr_contains("missing.pdf", "seal with a missing --attach");
    assert_not_created(&out);
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn failed_seal_of_a_directory_as_attachment_leaves_nothing() {
    let dir = tempdir().unwrap();
    let sub = dir.path().join("folder");
    fs::create_dir(&sub).unwrap();
    let out = dir.path().join("out.sxf");
    let r = run(&mut seal_cmd(
        &out,
        &["bob.pub"],
        "alice.key",
        args!["-m", "hi", "--attach", &sub],
    ));
    r.assert_code(2, "seal with a directory as --attach")
        .assert_stderr_contains("folder", "seal with a directory as --attach");
    assert_not_created(&out);
}

/// /proc files report a size of 0 and yet have content: what is read is
/// sealed, never an empty file.
#[cfg(target_os = "linux")]
#[test]
fn an_attachment_that_reports_no_size_is_sealed_with_what_it_holds() {
    let sizeless = Path::new("/proc/version");
    assert_eq!(fs::metadata(sizeless).unwrap().len(), 0, "precondition");
    let real = fs::read(sizeless).unwrap();
    assert!(!real.is_empty(), "precondition");
    let dir = tempdir().unwrap();
    let archive = dir.path().join("proc.sxf");
    run(&mut seal_cmd(
        &archive,
        &["bob.pub"],
        "alice.key",
        args!["--attach", sizeless],
    ))
    .assert_code(0, "seal --attach /proc/version");
    let out = dir.path().join("out");
    run(&mut open_cmd(&archive, "bob.key", Some("alice.pub"), &out))
        .assert_code(0, "open the archive with /proc/version");
    assert_eq!(fs::read(out.join("version")).unwrap(), real);
}

/// sysfs files report 4096 bytes but yield fewer: the read fails while the
/// archive is being written, after the temporary file exists.
#[test]
fn attachment_that_fails_while_sealing_leaves_no_archive_and_no_temp_file() {
    let shrinking = Path::new("/sys/devices/system/cpu/online");
    let meta = fs::metadata(shrinking).expect("a Linux sysfs file");
    let real = fs::read(shrinking).unwrap();
    assert!(
        meta.len() > real.len() as u64,
        "precondition: sysfs reports more bytes than it yields"
    );
    let dir = tempdir().unwrap();
    let out = dir.path().join("out.sxf");
    let r = run(&mut seal_cmd(
        &out,
        &["bob.pub"],
        "alice.key",
        args!["-m", "hi", "--attach", shrinking],
    ));
    r.assert_code(2, "seal with an attachment that fails mid-way")
        .assert_stderr_contains("online", "seal with an attachment that fails mid-way");
    assert_not_created(&out);
    assert!(listing(dir.path()).is_empty());
}

// ---------------------------------------------------------------------------
// keygen and fingerprints

// Runs the openssl command line tool, a Linux program.
#[cfg(unix)]
#[test]
fn keygen_writes_a_private_key_only_its_owner_reads_that_openssl_decrypts() {
    let dir = tempdir().unwrap();
    let pass_file = dir.path().join("pass.txt");
    fs::write(&pass_file, "kg-secret-passphrase\n").unwrap();
    let r = run(sxf()
        .arg("keygen")
        .arg("kg")
        .arg("--out-dir")
        .arg(dir.path())
        .arg("--passphrase-file")
        .arg(&pass_file));
    r.assert_code(0, "keygen");
    let private = dir.path().join("kg.key");
    let public = dir.path().join("kg.pub");
    // On Windows the key inherits the directory's ACL (src/platform.rs).
    #[cfg(unix)]
    {
        let mode = fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "kg.key mode is {mode:o}");
    }
    assert!(public.is_file());
    assert!(
        fs::read_to_string(&private)
            .unwrap()
            .contains("BEGIN ENCRYPTED PRIVATE KEY"),
        "the key is passphrase-protected"
    );
    let printed = stdout_line(&r);
    assert!(
        printed.starts_with("sha256:") && printed.len() == 71,
        "{printed}"
    );

    // The printed fingerprint is the public key's, by sxf and by openssl.
    let fp = run(sxf().arg("fingerprint").arg(&public));
    fp.assert_code(0, "fingerprint kg.pub");
    assert_eq!(stdout_line(&fp), printed);
    let key_s = private.to_str().unwrap();
    let der = openssl(&[
        "pkey",
        "-in",
        key_s,
        "-passin",
        "pass:kg-secret-passphrase",
        "-pubout",
        "-outform",
        "DER",
    ]);
    assert_eq!(fingerprint_of_der(&der), printed);
    let fp_private = run(sxf()
        .arg("fingerprint")
        .arg(&private)
        .arg("--passphrase-file")
        .arg(&pass_file));
    fp_private.assert_code(0, "fingerprint kg.key");
    assert_eq!(stdout_line(&fp_private), printed);

    // openssl refuses a wrong passphrase: the key really is encrypted.
    let wrong = StdCommand::new("openssl")
        .args(["pkey", "-in", key_s, "-passin", "pass:wrong", "-noout"])
        .output()
        .unwrap();
    assert!(
        !wrong.status.success(),
        "openssl read the key with a wrong passphrase"
    );

    // A second keygen with the same name refuses and changes nothing.
    let before = (fs::read(&private).unwrap(), fs::read(&public).unwrap());
    let again = run(sxf()
        .arg("keygen")
        .arg("kg")
        .arg("--out-dir")
        .arg(dir.path())
        .arg("--passphrase-file")
        .arg(&pass_file));
    again
        .assert_code(2, "keygen over existing keys")
        .assert_stderr_contains("already exists", "keygen over existing keys");
    assert_eq!(
        (fs::read(&private).unwrap(), fs::read(&public).unwrap()),
        before
    );
    assert_eq!(
        listing(dir.path()),
        ["kg.key", "kg.pub", "pass.txt"].map(String::from).into()
    );
}

#[test]
fn keygen_without_a_passphrase_source_or_terminal_refuses_and_writes_nothing() {
    let dir = tempdir().unwrap();
    let r = run(sxf()
        .arg("keygen")
        .arg("nopass")
        .arg("--out-dir")
        .arg(dir.path()));
    r.assert_code(2, "keygen without a passphrase")
        .assert_stderr_contains("--no-passphrase", "keygen without a passphrase");
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn keygen_rejects_bad_names_and_sizes() {
    let dir = tempdir().unwrap();
    for name in ["../escape", ".hidden", "a/b"] {
        let r = run(sxf()
            .arg("keygen")
            .arg(name)
            .arg("--no-passphrase")
            .arg("--out-dir")
            .arg(dir.path()));
        r.assert_code(2, &format!("keygen {name}"));
    }
    let r = run(sxf()
        .arg("keygen")
        .arg("small")
        .arg("--bits")
        .arg("1024")
        .arg("--no-passphrase")
        .arg("--out-dir")
        .arg(dir.path()));
    r.assert_code(2, "keygen --bits 1024");
    assert!(listing(dir.path()).is_empty());
    assert!(!dir.path().parent().unwrap().join("escape.key").exists());
}

// Runs the openssl command line tool, a Linux program.
#[cfg(unix)]
#[test]
fn fingerprint_equals_openssl_sha256_of_the_spki_der() {
    let alice = key("alice.pub");
    let der = openssl(&[
        "pkey",
        "-pubin",
        "-in",
        alice.to_str().unwrap(),
        "-outform",
        "DER",
    ]);
    let r = run(sxf().arg("fingerprint").arg(&alice));
    r.assert_code(0, "fingerprint alice.pub");
    assert_eq!(stdout_line(&r), fingerprint_of_der(&der));

    // mallory.pub is PKCS#1: the fingerprint is still of the SPKI form.
    let mallory = key("mallory.pub");
    let der = openssl(&[
        "rsa",
        "-RSAPublicKey_in",
        "-in",
        mallory.to_str().unwrap(),
        "-pubout",
        "-outform",
        "DER",
    ]);
    let r = run(sxf().arg("fingerprint").arg(&mallory));
    r.assert_code(0, "fingerprint mallory.pub");
    assert_eq!(stdout_line(&r), fingerprint_of_der(&der));
}

#[test]
fn fingerprint_of_a_private_key_equals_that_of_its_public_key() {
    for name in ["alice", "bob", "mallory", "dave"] {
        let private = run(sxf().arg("fingerprint").arg(key(&format!("{name}.key"))));
        private.assert_code(0, &format!("fingerprint {name}.key"));
        assert_eq!(
            stdout_line(&private),
            fingerprint(&format!("{name}.pub")),
            "{name}"
        );
    }
    let carol = run(sxf()
        .arg("fingerprint")
        .arg(key("carol.key"))
        .env("SXF_PASSPHRASE", CAROL_PASSPHRASE));
    carol.assert_code(0, "fingerprint carol.key");
    assert_eq!(stdout_line(&carol), fingerprint("carol.pub"));
}

#[test]
fn fingerprint_of_a_file_that_is_not_a_key_fails_with_exit_2() {
    let dir = tempdir().unwrap();
    let junk = dir.path().join("junk.pub");
    fs::write(&junk, "hello\n").unwrap();
    let r = run(sxf().arg("fingerprint").arg(&junk));
    r.assert_code(2, "fingerprint of junk")
        .assert_stderr_contains("junk.pub", "fingerprint of junk");
    let r = run(sxf().arg("fingerprint").arg(dir.path().join("absent.pub")));
    r.assert_code(2, "fingerprint of a missing file")
        .assert_stderr_contains("absent.pub", "fingerprint of a missing file");
}

// ---------------------------------------------------------------------------
// Passphrases

#[test]
fn encrypted_signing_key_works_with_the_environment_passphrase() {
    let dir = tempdir().unwrap();
    let out = dir.path().join("from-carol.sxf");
    let r = run(
        seal_cmd(&out, &["bob.pub"], "carol.key", args!["-m", "from carol"])
            .env("SXF_PASSPHRASE", CAROL_PASSPHRASE),
    );
    r.assert_code(0, "seal signed by carol with SXF_PASSPHRASE");
    let v = run(sxf()
        .arg("verify")
        .arg(&out)
        .arg("--from")
        .arg(key("carol.pub")));
    v.assert_code(0, "verify carol's archive");
}

#[test]
fn encrypted_private_key_opens_with_a_passphrase_file() {
    let dir = tempdir().unwrap();
    let archive = dir.path().join("to-carol.sxf");
    seal(
        &archive,
        &["carol.pub"],
        "alice.key",
        args!["-m", "for carol"],
    );
    let pass_file = dir.path().join("carol-pass");
    fs::write(&pass_file, format!("{CAROL_PASSPHRASE}\n")).unwrap();
    let out = dir.path().join("out");
    let r = run(open_cmd(&archive, "carol.key", Some("alice.pub"), &out)
        .arg("--passphrase-file")
        .arg(&pass_file)
        // The file wins over the environment.
        .env("SXF_PASSPHRASE", "not-the-passphrase"));
    r.assert_code(0, "open with carol's key and --passphrase-file");
    assert_eq!(r.stdout, "for carol\n");
}

/// carol's encrypted PKCS#8 key with scrypt N = 2^40 declared for its
/// passphrase: a derivation would need 128 TiB (the allocation used to abort
/// the process).
fn carol_asking_for_scrypt_2_to_the_40() -> String {
    use pkcs8::der::{Decode, EncodePem};
    use pkcs8::pkcs5::{EncryptionScheme, pbes2};
    let text = fs::read_to_string(key("carol.key")).unwrap();
    let (_, doc) = pkcs8::Document::from_pem(&text).unwrap();
    let mut info = pkcs8::EncryptedPrivateKeyInfoOwned::from_der(doc.as_bytes()).unwrap();
    let EncryptionScheme::Pbes2(params) = &mut info.encryption_algorithm else {
        panic!("carol.key is PBES2");
    };
    let salt = params.kdf.pbkdf2().unwrap().salt;
    params.kdf = pbes2::Kdf::Scrypt(pbes2::ScryptParams {
        salt,
        cost_parameter: 1 << 40,
        block_size: 8,
        parallelization: 1,
        key_length: None,
    });
    info.to_pem(pkcs8::LineEnding::LF).unwrap()
}

#[test]
fn an_encrypted_key_asking_for_a_huge_derivation_is_refused_with_a_sentence() {
    let dir = tempdir().unwrap();
    let hostile = dir.path().join("hostile.key");
    fs::write(&hostile, carol_asking_for_scrypt_2_to_the_40()).unwrap();
    let r = run(sxf()
        .arg("fingerprint")
        .arg(&hostile)
        .env("SXF_PASSPHRASE", CAROL_PASSPHRASE));
    r.assert_code(2, "scrypt N = 2^40")
        .assert_stderr_contains(
            "scrypt with N = 1099511627776, r = 8, p = 1",
            "scrypt N = 2^40",
        )
        .assert_stderr_contains("N a power of two up to 2^20", "scrypt N = 2^40");
}

#[test]
fn wrong_passphrase_fails_clearly_with_exit_2() {
    let dir = tempdir().unwrap();
    let archive = dir.path().join("to-carol.sxf");
    seal(
        &archive,
        &["carol.pub"],
        "alice.key",
        args!["-m", "for carol"],
    );
    let out = dir.path().join("out");
    let r = run(open_cmd(&archive, "carol.key", Some("alice.pub"), &out)
        .env("SXF_PASSPHRASE", "wrong-passphrase"));
    r.assert_code(2, "open with a wrong passphrase")
        .assert_stderr_contains("wrong passphrase", "open with a wrong passphrase")
        .assert_stderr_contains("carol.key", "open with a wrong passphrase");
    assert!(r.stdout.is_empty());
    assert_not_created(&out);

    let seal_out = dir.path().join("x.sxf");
    let pass_file = dir.path().join("bad-pass");
    fs::write(&pass_file, "also wrong\n").unwrap();
    let r = run(
        seal_cmd(&seal_out, &["bob.pub"], "carol.key", args!["-m", "x"])
            .arg("--passphrase-file")
            .arg(&pass_file),
    );
    r.assert_code(2, "seal with a wrong passphrase file")
        .assert_stderr_contains("wrong passphrase", "seal with a wrong passphrase file");
    assert_not_created(&seal_out);
}

#[test]
fn encrypted_key_without_passphrase_or_terminal_fails_clearly_with_exit_2() {
    let dir = tempdir().unwrap();
    let archive = dir.path().join("to-carol.sxf");
    seal(
        &archive,
        &["carol.pub"],
        "alice.key",
        args!["-m", "for carol"],
    );
    let out = dir.path().join("out");
    let r = run(&mut open_cmd(
        &archive,
        "carol.key",
        Some("alice.pub"),
        &out,
    ));
    r.assert_code(2, "open with no passphrase")
        .assert_stderr_contains("passphrase-protected", "open with no passphrase")
        .assert_stderr_contains("--passphrase-file", "open with no passphrase")
        .assert_stderr_contains("SXF_PASSPHRASE", "open with no passphrase");
    assert_not_created(&out);

    let seal_out = dir.path().join("x.sxf");
    let r = run(&mut seal_cmd(
        &seal_out,
        &["bob.pub"],
        "carol.key",
        args!["-m", "x"],
    ));
    r.assert_code(2, "seal with no passphrase")
        .assert_stderr_contains("passphrase-protected", "seal with no passphrase");
    assert_not_created(&seal_out);
}

// ---------------------------------------------------------------------------
// Weak keys and wrong kinds of key

#[test]
fn weak_keys_are_refused_as_recipient_and_as_signer() {
    let dir = tempdir().unwrap();
    let out = dir.path().join("out.sxf");
    let cases = [
        (
            &["weak1024.pub"][..],
            "alice.key",
            "weak1024.pub",
            "1024-bit",
        ),
        (&["bob.pub"][..], "weak1024.key", "weak1024.key", "1024-bit"),
        (&["e3.pub"][..], "alice.key", "e3.pub", "exponent 3"),
        (&["bob.pub"][..], "e3.key", "e3.key", "exponent 3"),
        (&["bob.pub", "e3.pub"][..], "alice.key", "e3.pub", "65537"),
    ];
    for (to, sign, named, why) in cases {
        let what = format!("seal --to {to:?} --sign {sign}");
        let r = run(&mut seal_cmd(&out, to, sign, args!["-m", "hi"]));
        r.assert_code(2, &what)
            .assert_stderr_contains(named, &what)
            .assert_stderr_contains(why, &what);
        assert_not_created(&out);
    }
}

#[test]
fn weak_keys_are_refused_when_opening_and_verifying() {
    let dir = tempdir().unwrap();
    let archive = seal_standard(dir.path());
    let out = dir.path().join("out");
    let r = run(&mut open_cmd(
        &archive,
        "weak1024.key",
        Some("alice.pub"),
        &out,
    ));
    r.assert_code(2, "open --key weak1024.key")
        .assert_stderr_contains("1024-bit", "open --key weak1024.key");
    assert_not_created(&out);
    let r = run(&mut open_cmd(&archive, "bob.key", Some("e3.pub"), &out));
    r.assert_code(2, "open --from e3.pub")
        .assert_stderr_contains("e3.pub", "open --from e3.pub");
    assert_not_created(&out);
    let r = run(sxf()
        .arg("verify")
        .arg(&archive)
        .arg("--from")
        .arg(key("weak1024.pub")));
    r.assert_code(2, "verify --from weak1024.pub")
        .assert_stderr_contains("weak1024.pub", "verify --from weak1024.pub");
}

#[test]
fn key_of_the_wrong_kind_is_refused_with_exit_2() {
    let dir = tempdir().unwrap();
    let out = dir.path().join("out.sxf");
    // A public key to sign with, a private key as recipient.
    let r = run(&mut seal_cmd(
        &out,
        &["bob.pub"],
        "alice.pub",
        args!["-m", "hi"],
    ));
    r.assert_code(2, "--sign alice.pub")
        .assert_stderr_contains("alice.pub", "--sign alice.pub");
    let r = run(&mut seal_cmd(
        &out,
        &["bob.key"],
        "alice.key",
        args!["-m", "hi"],
    ));
    r.assert_code(2, "--to bob.key")
        .assert_stderr_contains("bob.key", "--to bob.key");
    assert_not_created(&out);
}

#[test]
fn pkcs1_keys_from_openssl_work_for_sealing_and_opening() {
    let dir = tempdir().unwrap();
    let archive = dir.path().join("m.sxf");
    seal(
        &archive,
        &["mallory.pub"],
        "mallory.key",
        args!["-m", "pkcs1"],
    );
    let out = dir.path().join("out");
    let r = run(&mut open_cmd(
        &archive,
        "mallory.key",
        Some("mallory.pub"),
        &out,
    ));
    r.assert_code(0, "open with PKCS#1 keys");
    assert_eq!(r.stdout, "pkcs1\n");
}

#[test]
fn the_same_recipient_twice_is_refused() {
    let dir = tempdir().unwrap();
    let out = dir.path().join("out.sxf");
    let r = run(&mut seal_cmd(
        &out,
        &["bob.pub", "bob.pub"],
        "alice.key",
        args!["-m", "hi"],
    ));
    r.assert_code(2, "--to bob.pub twice")
        .assert_stderr_contains(&fingerprint("bob.pub"), "--to bob.pub twice");
    assert_not_created(&out);
}

// ---------------------------------------------------------------------------
// The message

#[test]
fn message_and_message_file_conflict() {
    let dir = tempdir().unwrap();
    let file = dir.path().join("m.txt");
    fs::write(&file, "from a file").unwrap();
    let out = dir.path().join("out.sxf");
    let r = run(&mut seal_cmd(
        &out,
        &["bob.pub"],
        "alice.key",
        args!["-m", "inline", "--message-file", &file],
    ));
    r.assert_code(2, "-m with --message-file")
        .assert_stderr_contains("--message-file", "-m with --message-file");
    assert_not_created(&out);
}

#[test]
fn message_file_dash_reads_standard_input() {
    let dir = tempdir().unwrap();
    let out = dir.path().join("stdin.sxf");
    let message = "line one\nzwei: Grüße ✓\n";
    let r = run(seal_cmd(
        &out,
        &["bob.pub"],
        "alice.key",
        args!["--message-file", "-"],
    )
    .write_stdin(message));
    r.assert_code(0, "seal --message-file -");
    let opened = dir.path().join("opened");
    let r = run(&mut open_cmd(&out, "bob.key", Some("alice.pub"), &opened));
    r.assert_code(0, "open");
    assert_eq!(r.stdout, message);
    assert_eq!(
        fs::read_to_string(opened.join("message.txt")).unwrap(),
        message
    );
}

#[test]
fn message_file_is_read_byte_for_byte() {
    let dir = tempdir().unwrap();
    let file = dir.path().join("m.txt");
    let message = "no trailing newline — ünïcödé";
    fs::write(&file, message).unwrap();
    let out = dir.path().join("f.sxf");
    seal(
        &out,
        &["bob.pub"],
        "alice.key",
        args!["--message-file", &file],
    );
    let opened = dir.path().join("opened");
    let r = run(&mut open_cmd(&out, "bob.key", Some("alice.pub"), &opened));
    r.assert_code(0, "open");
    assert_eq!(
        fs::read_to_string(opened.join("message.txt")).unwrap(),
        message
    );
}

#[test]
fn message_that_is_not_utf8_is_refused() {
    let dir = tempdir().unwrap();
    let file = dir.path().join("latin1.txt");
    fs::write(&file, b"caf\xe9").unwrap();
    let out = dir.path().join("out.sxf");
    let r = run(&mut seal_cmd(
        &out,
        &["bob.pub"],
        "alice.key",
        args!["--message-file", &file],
    ));
    r.assert_code(2, "non-UTF-8 message")
        .assert_stderr_contains("UTF-8", "non-UTF-8 message");
    assert_not_created(&out);
}

#[test]
fn seal_with_nothing_to_seal_fails() {
    let dir = tempdir().unwrap();
    let out = dir.path().join("out.sxf");
    let r = run(&mut seal_cmd(
        &out,
        &["bob.pub"],
        "alice.key",
        args!["-m", ""],
    ));
    r.assert_code(2, "seal -m ''")
        .assert_stderr_contains("nothing to seal", "seal -m ''");
    assert_not_created(&out);
    // No message source at all, and standard input is not a terminal.
    let r = run(&mut seal_cmd(&out, &["bob.pub"], "alice.key", vec![]));
    r.assert_code(2, "seal with no message")
        .assert_stderr_contains("nothing to seal", "seal with no message");
    assert_not_created(&out);
    assert!(listing(dir.path()).is_empty());
}

// ---------------------------------------------------------------------------
// inspect and verify

#[test]
fn inspect_json_parses_and_names_sender_and_recipients() {
    let dir = tempdir().unwrap();
    let archive = dir.path().join("two.sxf");
    seal(
        &archive,
        &["bob.pub", "carol.pub"],
        "alice.key",
        args!["-m", "for both"],
    );
    let r = run(sxf().arg("inspect").arg("--json").arg(&archive));
    r.assert_code(0, "inspect --json");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("inspect --json is JSON");
    assert_eq!(v["sender"], fingerprint("alice.pub").as_str());
    // seal also encrypts to the sender unless --no-self.
    assert_eq!(
        v["recipients"],
        serde_json::json!([
            fingerprint("bob.pub"),
            fingerprint("carol.pub"),
            fingerprint("alice.pub")
        ])
    );
    assert_eq!(v["verified"], false);
    assert_eq!(v["format"], "sxf/1");
    assert_eq!(v["archive_bytes"], fs::metadata(&archive).unwrap().len());
    assert_eq!(v["keys_bytes"], 3 * 256);
}

#[test]
fn inspect_text_says_it_is_not_verified() {
    let dir = tempdir().unwrap();
    let archive = seal_standard(dir.path());
    let r = run(sxf().arg("inspect").arg(&archive));
    r.assert_code(0, "inspect");
    assert!(r.stdout.contains("not verified"), "{}", r.stdout);
    assert!(r.stdout.contains(&fingerprint("alice.pub")), "{}", r.stdout);
    assert!(r.stdout.contains(&fingerprint("bob.pub")), "{}", r.stdout);
}

#[test]
fn verify_accepts_an_intact_archive_without_a_private_key() {
    let dir = tempdir().unwrap();
    let archive = seal_standard(dir.path());
    let r = run(sxf()
        .arg("verify")
        .arg(&archive)
        .arg("--from")
        .arg(key("alice.pub")));
    r.assert_code(0, "verify");
    assert!(r.stdout.starts_with("verified: from "), "{}", r.stdout);
    assert!(
        r.stdout.contains("is authentic, every entry intact"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(&fingerprint("alice.pub")));
    let any = run(sxf().arg("verify").arg(&archive).arg("--any-sender"));
    any.assert_code(0, "verify --any-sender")
        .assert_stderr_contains("WARNING", "verify --any-sender")
        .assert_stderr_contains(&fingerprint("alice.pub"), "verify --any-sender");
}

#[test]
fn verify_with_the_wrong_sender_exits_1_and_names_both_fingerprints() {
    let dir = tempdir().unwrap();
    let archive = seal_standard(dir.path());
    let r = run(sxf()
        .arg("verify")
        .arg(&archive)
        .arg("--from")
        .arg(key("bob.pub")));
    r.assert_code(1, "verify --from bob.pub")
        .assert_stderr_contains(&fingerprint("alice.pub"), "verify --from bob.pub")
        .assert_stderr_contains(&fingerprint("bob.pub"), "verify --from bob.pub")
        .assert_stderr_contains("not authentic", "verify --from bob.pub");
    assert!(r.stdout.is_empty());
}

#[test]
fn open_with_the_wrong_sender_exits_1_and_writes_nothing() {
    let dir = tempdir().unwrap();
    let archive = seal_standard(dir.path());
    let out = dir.path().join("out");
    let r = run(&mut open_cmd(
        &archive,
        "bob.key",
        Some("mallory.pub"),
        &out,
    ));
    r.assert_code(1, "open --from mallory.pub")
        .assert_stderr_contains(&fingerprint("alice.pub"), "open --from mallory.pub")
        .assert_stderr_contains(&fingerprint("mallory.pub"), "open --from mallory.pub");
    assert!(r.stdout.is_empty());
    assert_not_created(&out);
}

// ---------------------------------------------------------------------------
// Exit codes for missing and malformed archives, and usage errors

#[test]
fn missing_archive_is_an_io_error_with_exit_2_for_every_command() {
    let dir = tempdir().unwrap();
    let absent = dir.path().join("absent.sxf");
    let out = dir.path().join("out");
    let runs = [
        run(&mut open_cmd(&absent, "bob.key", Some("alice.pub"), &out)),
        run(sxf()
            .arg("verify")
            .arg(&absent)
            .arg("--from")
            .arg(key("alice.pub"))),
        run(sxf().arg("inspect").arg(&absent)),
    ];
    for r in &runs {
        r.assert_code(2, "missing archive")
            .assert_stderr_contains("absent.sxf", "missing archive");
    }
    assert_not_created(&out);
}

#[test]
fn file_that_is_not_an_archive_exits_1_for_every_command() {
    let dir = tempdir().unwrap();
    let junk = dir.path().join("junk.sxf");
    fs::write(&junk, "this is not a zip file at all, just some text\n").unwrap();
    let out = dir.path().join("out");
    let runs = [
        run(&mut open_cmd(&junk, "bob.key", Some("alice.pub"), &out)),
        run(sxf()
            .arg("verify")
            .arg(&junk)
            .arg("--from")
            .arg(key("alice.pub"))),
        run(sxf().arg("inspect").arg(&junk)),
    ];
    for r in &runs {
        r.assert_code(1, "not an archive")
            .assert_stderr_contains("junk.sxf", "not an archive")
            .assert_stderr_contains("not a valid sxf archive", "not an archive");
    }
    assert_not_created(&out);
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempdir().unwrap();
    let out = dir.path().join("out.sxf");
    let cases: Vec<(&str, Vec<std::ffi::OsString>)> = vec![
        ("no subcommand", args![]),
        ("unknown subcommand", args!["frobnicate"]),
        (
            "seal without --to",
            args!["seal", "--sign", key("alice.key"), "-m", "x", "-o", &out],
        ),
        (
            "seal without -o",
            args![
                "seal",
                "--to",
                key("bob.pub"),
                "--sign",
                key("alice.key"),
                "-m",
                "x"
            ],
        ),
        (
            "quality 0",
            args![
                "seal",
                "--to",
                key("bob.pub"),
                "--sign",
                key("alice.key"),
                "-m",
                "x",
                "--quality",
                "0",
                "-o",
                &out
            ],
        ),
        (
            "quality 101",
            args![
                "seal",
                "--to",
                key("bob.pub"),
                "--sign",
                key("alice.key"),
                "-m",
                "x",
                "--quality",
                "101",
                "-o",
                &out
            ],
        ),
        (
            "max-dim 0",
            args![
                "seal",
                "--to",
                key("bob.pub"),
                "--sign",
                key("alice.key"),
                "-m",
                "x",
                "--max-dim",
                "0",
                "-o",
                &out
            ],
        ),
        ("open without --key", args!["open", "x.sxf", "--any-sender"]),
    ];
    for (what, a) in cases {
        let r = run(sxf().args(&a));
        r.assert_code(2, what);
    }
    assert_not_created(&out);
}

#[test]
fn io_error_messages_state_the_cause_once() {
    let dir = tempdir().unwrap();
    let absent_key = dir.path().join("absent.pub");
    let absent_archive = dir.path().join("absent.sxf");
    let absent_attachment = dir.path().join("absent.pdf");
    let runs = [
        run(sxf().arg("fingerprint").arg(&absent_key)),
        run(sxf().arg("inspect").arg(&absent_archive)),
        run(&mut seal_cmd(
            &dir.path().join("o.sxf"),
            &["bob.pub"],
            "alice.key",
            args!["-m", "x", "--attach", &absent_attachment],
        )),
    ];
    for r in &runs {
        r.assert_code(2, "missing file");
        // The system's own sentence for a missing file, whatever the system.
        let cause = std::io::Error::from_raw_os_error(2).to_string();
        let cause = cause.split(" (os error").next().unwrap();
        assert_eq!(
            r.stderr.matches(cause).count(),
            1,
            "the cause should be stated once: {}",
            r.stderr
        );
    }
}

#[test]
fn passphrase_file_takes_its_first_line_and_refuses_an_overlong_one() {
    let dir = tempdir().unwrap();
    let archive = dir.path().join("from-carol.sxf");
    let pass_file = dir.path().join("carol-pass");
    // A Windows line end and a second line are not part of the passphrase.
    fs::write(&pass_file, format!("{CAROL_PASSPHRASE}\r\nsecond line\n")).unwrap();
    let r = run(
        seal_cmd(&archive, &["bob.pub"], "carol.key", args!["-m", "hi"])
            .arg("--passphrase-file")
            .arg(&pass_file),
    );
    r.assert_code(0, "seal with carol's key and a CRLF passphrase file");

    let long = dir.path().join("long-pass");
    fs::write(&long, "x".repeat(5000)).unwrap();
    let out = dir.path().join("never.sxf");
    run(seal_cmd(&out, &["bob.pub"], "carol.key", args!["-m", "hi"])
        .arg("--passphrase-file")
        .arg(&long))
    .assert_code(2, "an overlong passphrase line")
    .assert_stderr_contains("longer than", "says why");
    assert_not_created(&out);
}

// Needs file names with control characters, which Windows forbids.
#[cfg(unix)]
#[test]
fn seal_summary_escapes_local_file_names() {
    let dir = tempdir().unwrap();
    let attachment = dir.path().join("evil\x1b[2Jname\n\u{202E}.txt");
    fs::write(&attachment, b"x").unwrap();
    let out = dir.path().join("x.sxf");
    let r = seal(
        &out,
        &["bob.pub"],
        "alice.key",
        args!["--attach", &attachment],
    );
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("attachment"))
        .expect("an attachment line");
    assert!(line.contains("evil") && line.contains(".txt: "), "{line}");
    assert!(!r.stderr.contains('\x1b') && !r.stderr.contains('\u{202E}'));
}

#[test]
fn verify_any_sender_says_on_stdout_that_the_sender_is_not_verified() {
    let dir = tempdir().unwrap();
    let archive = seal_standard(dir.path());
    let r = run(sxf().arg("verify").arg(&archive).arg("--any-sender"));
    r.assert_code(0, "verify --any-sender");
    assert!(r.stdout.contains("NOT verified"), "{}", r.stdout);
    assert!(r.stdout.contains("signature"), "{}", r.stdout);
    assert!(r.stdout.contains(&fingerprint("alice.pub")), "{}", r.stdout);
    assert!(
        !r.stdout.contains("authentic"),
        "an unknown sender is never called authentic: {}",
        r.stdout
    );
}

#[test]
fn a_directory_given_as_an_archive_is_called_a_directory() {
    let dir = tempdir().unwrap();
    let folder = dir.path().join("letters");
    fs::create_dir(&folder).unwrap();
    let out = dir.path().join("out");
    let runs = [
        run(&mut open_cmd(&folder, "bob.key", Some("alice.pub"), &out)),
        run(sxf()
            .arg("open")
            .arg(&folder)
            .arg("--key")
            .arg(key("bob.key"))
            .arg("--from")
            .arg(key("alice.pub"))),
        run(sxf().arg("verify").arg(&folder).arg("--any-sender")),
        run(sxf().arg("inspect").arg(&folder)),
    ];
    for r in &runs {
        r.assert_code(2, "a directory as the archive")
            .assert_stderr_contains("is a directory, not an .sxf archive", "a directory");
        assert_eq!(r.stderr.matches("letters").count(), 1, "{}", r.stderr);
    }
    assert_not_created(&out);
}

#[test]
fn passphrase_file_errors_name_the_passphrase_file() {
    let dir = tempdir().unwrap();
    let out = dir.path().join("never.sxf");
    let absent = dir.path().join("no-such-pass");
    let r = run(seal_cmd(&out, &["bob.pub"], "carol.key", args!["-m", "hi"])
        .arg("--passphrase-file")
        .arg(&absent));
    r.assert_code(2, "a missing passphrase file")
        .assert_stderr_contains("passphrase file", "names what it is")
        .assert_stderr_contains("no-such-pass", "names the file");
    assert!(!r.stderr.contains("key file"), "{}", r.stderr);
    let binary = dir.path().join("binary-pass");
    fs::write(&binary, b"\xff\xfe\n").unwrap();
    let r = run(sxf()
        .arg("fingerprint")
        .arg(key("carol.key"))
        .arg("--passphrase-file")
        .arg(&binary));
    r.assert_code(2, "a passphrase file that is not text")
        .assert_stderr_contains("binary-pass", "names the file")
        .assert_stderr_contains("UTF-8", "says why");
    assert!(!r.stderr.contains("key file"), "{}", r.stderr);
    assert_not_created(&out);
}

#[test]
fn passphrase_file_dash_reads_the_passphrase_from_standard_input() {
    let dir = tempdir().unwrap();
    let archive = dir.path().join("from-carol.sxf");
    let r = run(
        seal_cmd(&archive, &["bob.pub"], "carol.key", args!["-m", "hi"])
            .args(["--passphrase-file", "-"])
            .write_stdin(format!("{CAROL_PASSPHRASE}\n")),
    );
    r.assert_code(0, "seal with the passphrase on standard input");
    let out = dir.path().join("opened");
    let r = run(&mut open_cmd(&archive, "bob.key", Some("carol.pub"), &out));
    r.assert_code(0, "open");
    // Both from standard input cannot work; say so rather than guess.
    let never = dir.path().join("never.sxf");
    run(seal_cmd(
        &never,
        &["bob.pub"],
        "carol.key",
        args!["--message-file", "-"],
    )
    .args(["--passphrase-file", "-"])
    .write_stdin(format!("{CAROL_PASSPHRASE}\nhello\n")))
    .assert_code(2, "two readers of standard input")
    .assert_stderr_contains("standard input", "says why");
    assert_not_created(&never);
}

/// carol.key is encrypted and no passphrase is given: had `open` loaded the key
/// first, it would fail with "passphrase-protected" (or prompt, on a terminal).
#[test]
fn open_checks_the_archive_and_sender_before_asking_for_a_passphrase() {
    let dir = tempdir().unwrap();
    let archive = dir.path().join("to-carol.sxf");
    seal(
        &archive,
        &["carol.pub"],
        "alice.key",
        args!["-m", "hi carol"],
    );
    let out = dir.path().join("out");
    let r = run(&mut open_cmd(&archive, "carol.key", Some("bob.pub"), &out));
    r.assert_code(1, "open --from the wrong sender")
        .assert_stderr_contains("not authentic", "the wrong sender");
    assert!(!r.stderr.contains("passphrase"), "{}", r.stderr);
    let junk = dir.path().join("junk.sxf");
    fs::write(&junk, "not an archive\n").unwrap();
    let r = run(&mut open_cmd(&junk, "carol.key", Some("alice.pub"), &out));
    r.assert_code(1, "open of junk")
        .assert_stderr_contains("not a valid sxf archive", "junk");
    assert!(!r.stderr.contains("passphrase"), "{}", r.stderr);
    assert_not_created(&out);
    // A good archive still needs the passphrase, and opens with it.
    let r = run(&mut open_cmd(
        &archive,
        "carol.key",
        Some("alice.pub"),
        &out,
    ));
    r.assert_code(2, "no passphrase")
        .assert_stderr_contains("passphrase-protected", "asks for one");
    let r = run(open_cmd(&archive, "carol.key", Some("alice.pub"), &out)
        .env("SXF_PASSPHRASE", CAROL_PASSPHRASE));
    r.assert_code(0, "open with the passphrase");
}

#[test]
fn errors_never_show_a_temporary_files_name() {
    let dir = tempdir().unwrap();
    let missing = dir.path().join("missing");
    let archive = seal_standard(dir.path());
    #[allow(unused_mut)]
    let mut runs = vec![
        // Creating the temporary archive beside -o fails.
        run(&mut seal_cmd(
            &missing.join("out.sxf"),
            &["bob.pub"],
            "alice.key",
            args!["-m", "hi"],
        )),
        // Creating the staging directory beside -o fails.
        run(&mut open_cmd(
            &archive,
            "bob.key",
            Some("alice.pub"),
            &missing.join("out"),
        )),
    ];
    // procfs refuses new files, even to root.
    #[cfg(target_os = "linux")]
    runs.push(run(sxf().args([
        "keygen",
        "zed",
        "--no-passphrase",
        "--out-dir",
        "/proc/self",
    ])));
    for r in &runs {
        r.assert_code(2, "an output that cannot be created");
        assert!(
            !r.stderr.contains(".sxf-"),
            "a temporary name: {}",
            r.stderr
        );
        assert!(
            !r.stderr.contains("at path"),
            "a temporary name: {}",
            r.stderr
        );
    }
}

#[test]
fn keygen_creates_a_missing_out_dir_private_to_its_owner() {
    let dir = tempdir().unwrap();
    let out_dir = dir.path().join("new/keys");
    run(sxf()
        .args(["keygen", "dave", "--no-passphrase", "--out-dir"])
        .arg(&out_dir))
    .assert_code(0, "keygen into a missing directory");
    assert!(out_dir.join("dave.key").is_file() && out_dir.join("dave.pub").is_file());
    #[cfg(unix)]
    {
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&out_dir), 0o700);
        assert_eq!(mode(&dir.path().join("new")), 0o700);
    }
}

#[test]
fn a_server_without_a_port_is_refused_with_an_example() {
    let dir = tempdir().unwrap();
    let archive = seal_standard(dir.path());
    let runs = [
        run(sxf()
            .arg("send")
            .arg(&archive)
            .args(["--server", "localhost"])),
        run(sxf()
            .args(["fetch", "--server", "localhost", "--key"])
            .arg(key("bob.key"))
            .arg("--out-dir")
            .arg(dir.path().join("in"))),
    ];
    for r in &runs {
        r.assert_code(2, "--server localhost")
            .assert_stderr_contains("give the port too, like localhost:7878", "an example");
    }
    assert!(!dir.path().join("in").exists());
}

// Needs file names with control characters, which Windows forbids.
#[cfg(unix)]
#[test]
fn seal_summary_escapes_the_archive_name() {
    let dir = tempdir().unwrap();
    let out = dir.path().join("evil\x1b[2J\u{202E}.sxf");
    let r = seal(&out, &["bob.pub"], "alice.key", args!["-m", "hi"]);
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with("sealed "))
        .expect("a sealed line");
    assert!(line.contains("evil"), "{line}");
    assert!(
        !r.stderr.contains('\x1b') && !r.stderr.contains('\u{202E}'),
        "{line}"
    );
}

#[test]
fn completions_and_man_page_are_printed() {
    let r = run(sxf().args(["completions", "bash"]));
    r.assert_code(0, "completions bash");
    assert!(r.stdout.contains("seal"), "{}", r.stdout);
    assert!(r.stdout.contains("--passphrase-file"), "flags too");
    for shell in ["zsh", "fish", "powershell"] {
        let r = run(sxf().args(["completions", shell]));
        r.assert_code(0, shell);
        assert!(r.stdout.contains("seal"), "{shell}");
    }
    run(sxf().args(["completions", "tcsh"])).assert_code(2, "an unknown shell");
    let r = run(sxf().arg("man"));
    r.assert_code(0, "man");
    assert!(r.stdout.contains(".TH"), "roff: {}", r.stdout);
    assert!(r.stdout.contains("seal"), "names the commands");
}

#[test]
fn man_dir_writes_one_page_per_command() {
    let dir = tempdir().unwrap();
    let pages = dir.path().join("man1");
    run(sxf().arg("man").arg("--dir").arg(&pages)).assert_code(0, "man --dir");
    for page in ["sxf.1", "sxf-seal.1", "sxf-open.1", "sxf-fetch.1"] {
        let text = fs::read_to_string(pages.join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
    assert_no_temp_files(&pages);
}

#[test]
fn every_subcommands_help_has_an_example() {
    for cmd in [
        "keygen",
        "seal",
        "open",
        "verify",
        "inspect",
        "fingerprint",
        "serve",
        "send",
        "fetch",
        "completions",
        "man",
    ] {
        let r = run(sxf().arg(cmd).arg("--help"));
        r.assert_code(0, cmd);
        assert!(
            r.stdout.contains("Example"),
            "sxf {cmd} --help: {}",
            r.stdout
        );
        assert!(
            r.stdout.contains(&format!("sxf {cmd}")),
            "sxf {cmd} --help: {}",
            r.stdout
        );
    }
}
