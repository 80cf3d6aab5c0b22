//! Contacts and identity, through the real binary: names instead of key paths,
//! your own key by default, sealing to yourself, and opening without `--from`
//! when the sender is a contact. Each test has its own config directory.

mod common;

use std::fs;
use std::path::PathBuf;

use common::{fingerprint, key, sxf};
use tempfile::TempDir;

/// A config directory of its own, and a scratch directory.
struct Home {
    dir: TempDir,
}

impl Home {
    fn new() -> Self {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn sxf(&self) -> assert_cmd::Command {
        let mut cmd = sxf();
        cmd.env("SXF_HOME", self.config());
        cmd.current_dir(self.dir.path());
        cmd
    }
    fn run(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        self.sxf().args(args).assert()
    }
    fn add(&self, name: &str, pub_file: &str) {
        self.sxf()
            .args(["contacts", "add", name])
            .arg(key(pub_file))
            .assert()
            .success();
    }
    fn set_identity(&self, key_file: &str) {
        self.sxf()
            .args(["identity", "set"])
            .arg(key(key_file))
            .assert()
            .success();
    }
}

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

#[test]
fn contacts_add_prints_the_fingerprint_and_the_name_then_works_as_to() {
    let alice = Home::new();
    alice.set_identity("alice.key");
    let added = alice
        .sxf()
        .args(["contacts", "add", "Bob"])
        .arg(key("bob.pub"))
        .assert()
        .success();
    let bob_fp = fingerprint("bob.pub");
    assert_eq!(stdout(&added).trim(), bob_fp);
    let grouped: Vec<String> = bob_fp.as_bytes()["sha256:".len()..]
        .chunks(4)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    assert!(
        stderr(&added).contains(&grouped.join(" ")),
        "{}",
        stderr(&added)
    );

    // The name was folded to lower case, and `--to bob` is the contact.
    let sealed = alice.run(&["seal", "--to", "bob", "-m", "hi bob", "-o", "hi.sxf"]);
    let e = stderr(&sealed.success());
    assert!(e.contains(&format!("recipient  bob ({bob_fp})")), "{e}");

    let bob = Home::new();
    bob.set_identity("bob.key");
    bob.add("alice", "alice.pub");
    let archive = alice.path("hi.sxf");
    let opened = bob
        .sxf()
        .arg("open")
        .arg(&archive)
        .arg("-o")
        .arg(bob.path("out"))
        .assert()
        .success();
    assert_eq!(stdout(&opened), "hi bob\n");
    assert!(
        stderr(&opened).contains(&format!(
            "verified: from alice ({})",
            fingerprint("alice.pub")
        )),
        "{}",
        stderr(&opened)
    );
    let verified = bob.sxf().arg("verify").arg(&archive).assert().success();
    assert!(stdout(&verified).starts_with(&format!(
        "verified: from alice ({})",
        fingerprint("alice.pub")
    )));
}

#[test]
fn an_unknown_sender_is_refused_with_its_fingerprint_and_the_command_to_add_it() {
    let alice = Home::new();
    alice.set_identity("alice.key");
    alice
        .sxf()
        .args(["seal", "-m", "x", "-o", "x.sxf", "--to"])
        .arg(key("bob.pub"))
        .assert()
        .success();
    let bob = Home::new();
    bob.set_identity("bob.key");
    let archive = alice.path("x.sxf");
    let refused = bob
        .sxf()
        .arg("open")
        .arg(&archive)
        .arg("-o")
        .arg(bob.path("out"))
        .assert()
        .code(1);
    let e = stderr(&refused);
    let alice_fp = fingerprint("alice.pub");
    assert!(e.contains(&alice_fp), "{e}");
    let command = format!("sxf contacts add NAME --fingerprint {alice_fp} ");
    assert!(e.contains(&command), "{e}");
    assert!(e.contains("--any-sender"), "{e}");
    assert!(!bob.path("out").exists(), "nothing is written");
    let refused = bob.sxf().arg("verify").arg(&archive).assert().code(1);
    assert!(stdout(&refused).is_empty());
    assert!(stderr(&refused).contains(&command));

    // The printed command, run with a name, saves exactly that key; then open works.
    let alice_fp = fingerprint("alice.pub");
    bob.sxf()
        .args(["contacts", "add", "alice", "--fingerprint", &alice_fp])
        .arg(&archive)
        .assert()
        .success()
        .stdout(format!("{alice_fp}\n"));
    bob.sxf()
        .arg("open")
        .arg(&archive)
        .arg("-o")
        .arg(bob.path("out"))
        .assert()
        .success()
        .stdout("x\n");
}

#[test]
fn an_archive_gives_its_sender_key_only_with_the_expected_fingerprint() {
    let alice = Home::new();
    alice.set_identity("alice.key");
    alice
        .sxf()
        .args(["seal", "-m", "x", "-o", "x.sxf", "--to"])
        .arg(key("bob.pub"))
        .assert()
        .success();
    let bob = Home::new();
    let archive = alice.path("x.sxf");
    let e = stderr(
        &bob.sxf()
            .args(["contacts", "add", "alice"])
            .arg(&archive)
            .assert()
            .code(2),
    );
    assert!(e.contains("--fingerprint"), "{e}");
    let e = stderr(
        &bob.sxf()
            .args(["contacts", "add", "alice", "--fingerprint"])
            .arg(fingerprint("mallory.pub"))
            .arg(&archive)
            .assert()
            .code(2),
    );
    assert!(e.contains("nothing was saved"), "{e}");
    assert!(!bob.config().join("contacts.toml").exists());

    // An armored archive, as pasted from an email, gives its key the same way.
    alice
        .sxf()
        .args(["seal", "-a", "-m", "x", "-o", "x.sxf.asc", "--to"])
        .arg(key("bob.pub"))
        .assert()
        .success();
    bob.sxf()
        .args(["contacts", "add", "alice", "--fingerprint"])
        .arg(fingerprint("alice.pub"))
        .arg(alice.path("x.sxf.asc"))
        .assert()
        .success()
        .stdout(format!("{}\n", fingerprint("alice.pub")));
}

#[test]
fn a_different_key_under_a_taken_name_needs_replace_and_one_key_has_one_name() {
    let h = Home::new();
    h.add("bob", "bob.pub");
    h.add("bob", "bob.pub"); // the same key again is fine
    let e = stderr(
        &h.sxf()
            .args(["contacts", "add", "bob"])
            .arg(key("mallory.pub"))
            .assert()
            .code(2),
    );
    assert!(e.contains("--replace"), "{e}");
    let e = stderr(
        &h.sxf()
            .args(["contacts", "add", "robert"])
            .arg(key("bob.pub"))
            .assert()
            .code(2),
    );
    assert!(e.contains("already your contact bob"), "{e}");
    h.sxf()
        .args(["contacts", "add", "bob", "--replace"])
        .arg(key("mallory.pub"))
        .assert()
        .success();
    let listed = h.run(&["contacts", "list"]).success();
    assert_eq!(
        stdout(&listed),
        format!("bob  {}\n", fingerprint("mallory.pub"))
    );
}

#[test]
fn contacts_list_json_show_and_remove() {
    let h = Home::new();
    h.add("bob", "bob.pub");
    h.add("carol", "carol.pub");
    let json: serde_json::Value = serde_json::from_slice(
        &h.run(&["contacts", "list", "--json"])
            .success()
            .get_output()
            .stdout,
    )
    .unwrap();
    let names: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bob", "carol"]);
    assert_eq!(json[1]["fingerprint"], fingerprint("carol.pub"));

    let shown = h.run(&["contacts", "show", "carol", "--pem"]).success();
    assert_eq!(
        stdout(&shown),
        sxf::keys::load_public_key(&key("carol.pub"))
            .unwrap()
            .to_pem()
    );
    h.run(&["contacts", "remove", "carol"]).success();
    h.run(&["contacts", "show", "carol"]).code(2);
    h.run(&["contacts", "remove", "carol"]).code(2);
    assert_eq!(
        stdout(&h.run(&["contacts", "list"]).success()),
        format!("bob  {}\n", fingerprint("bob.pub"))
    );
}

#[test]
fn contact_names_outside_the_pattern_are_refused() {
    let h = Home::new();
    for bad in ["-bob", ".bob", "bob smith", "bob/x", &"b".repeat(65), "bøb"] {
        let e = stderr(
            &h.sxf()
                .args(["contacts", "add", "--", bad])
                .arg(key("bob.pub"))
                .assert()
                .code(2),
        );
        assert!(e.contains("not a contact name"), "{bad}: {e}");
    }
    assert!(!h.config().join("contacts.toml").exists());
}

#[test]
fn contacts_add_reads_the_key_from_standard_input() {
    let h = Home::new();
    h.sxf()
        .args(["contacts", "add", "bob", "-"])
        .write_stdin(fs::read(key("bob.pub")).unwrap())
        .assert()
        .success()
        .stdout(format!("{}\n", fingerprint("bob.pub")));
}

#[test]
fn a_stray_file_named_like_a_contact_never_stands_in_for_it() {
    let h = Home::new();
    h.set_identity("alice.key");
    h.add("bob", "bob.pub");
    // Someone leaves mallory's key in a file called `bob`: the contact is used.
    fs::copy(key("mallory.pub"), h.path("bob")).unwrap();
    let e = stderr(
        &h.run(&["seal", "--to", "bob", "--no-self", "-m", "x", "-o", "x.sxf"])
            .success(),
    );
    assert!(
        e.contains(&format!("bob ({})", fingerprint("bob.pub"))),
        "{e}"
    );
    assert!(!e.contains(&fingerprint("mallory.pub")), "{e}");
    // Written as a path, it is the file, and is not called bob.
    let e = stderr(
        &h.run(&[
            "seal",
            "--to",
            "./bob",
            "--no-self",
            "-m",
            "x",
            "-o",
            "y.sxf",
        ])
        .success(),
    );
    assert!(
        e.contains(&format!(
            "recipient  ./bob ({})",
            fingerprint("mallory.pub")
        )),
        "{e}"
    );
    // `--from bob` checks against the contact, so mallory's archive is refused.
    let m = Home::new();
    m.sxf()
        .args(["seal", "-m", "from mallory", "-o", "m.sxf", "--sign"])
        .arg(key("mallory.key"))
        .arg("--to")
        .arg(key("alice.pub"))
        .assert()
        .success();
    h.sxf()
        .arg("verify")
        .arg(m.path("m.sxf"))
        .args(["--from", "bob"])
        .assert()
        .code(1);
    // A word that is neither: clear sentences.
    let e = stderr(
        &h.run(&["seal", "--to", "dave.pub", "-m", "x", "-o", "z.sxf"])
            .code(2),
    );
    assert!(e.contains("dave.pub"), "{e}");
    let e = stderr(
        &h.run(&["seal", "--to", "nobody", "-m", "x", "-o", "z.sxf"])
            .code(2),
    );
    assert!(e.contains("no contact named nobody"), "{e}");
}

#[test]
fn an_archive_that_names_a_contact_but_is_signed_by_another_key_is_refused() {
    // mallory signs, but the manifest names bob as the sender: without --from
    // the lookup finds bob, and the signature is checked against bob's saved key.
    let dir = tempfile::tempdir().unwrap();
    let genuine = dir.path().join("genuine.sxf");
    sxf()
        .args(["seal", "--no-self", "-m", "hi", "-o"])
        .arg(&genuine)
        .arg("--sign")
        .arg(key("bob.key"))
        .arg("--to")
        .arg(key("alice.pub"))
        .assert()
        .success();
    let forged = dir.path().join("forged.sxf");
    let bytes = fs::read(&genuine).unwrap();
    let manifest = common::entry(&bytes, "manifest.toml");
    let signature = common::pss_sign("mallory.key", &manifest);
    fs::write(
        &forged,
        common::with_entry(&bytes, "signature.bin", &signature),
    )
    .unwrap();

    let h = Home::new();
    h.set_identity("alice.key");
    h.add("bob", "bob.pub");
    let out = h.path("out");
    let r = h
        .sxf()
        .arg("open")
        .arg(&forged)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(1);
    assert!(stderr(&r).contains("not authentic"), "{}", stderr(&r));
    assert!(stdout(&r).is_empty());
    assert!(!out.exists());
    // The genuine one opens.
    h.sxf()
        .arg("open")
        .arg(&genuine)
        .arg("-o")
        .arg(&out)
        .assert()
        .success()
        .stdout("hi\n");
}

// The printed command is quoted for a POSIX shell, and sh checks it.
#[cfg(unix)]
#[test]
fn the_printed_contacts_add_command_names_hostile_file_names_exactly() {
    let alice = Home::new();
    alice.set_identity("alice.key");
    let bob = Home::new();
    let alice_fp = fingerprint("alice.pub");
    for name in ["--replace", "a b$(touch pwned)'x.sxf", "-x.sxf", "=ls"] {
        alice
            .sxf()
            .args(["seal", "-m", "x", "-o"])
            .arg(alice.path(name))
            .arg("--to")
            .arg(key("bob.pub"))
            .assert()
            .success();
        let r = bob
            .sxf()
            .args(["verify", "--", name])
            .current_dir(alice.dir.path())
            .assert()
            .code(1);
        let e = stderr(&r);
        let line = e
            .lines()
            .find(|l| l.trim_start().starts_with("sxf contacts add"))
            .unwrap_or_else(|| panic!("{e}"));
        let argv = shell_words(line.trim());
        assert_eq!(
            argv[..5],
            ["sxf", "contacts", "add", "NAME", "--fingerprint"],
            "{line}"
        );
        assert_eq!(argv[5], alice_fp);
        let expected = if name.starts_with('-') {
            format!("./{name}")
        } else {
            name.to_string()
        };
        assert_eq!(argv[6], expected, "{line}");
        assert_eq!(argv.len(), 7, "{line}");
    }
    assert!(!alice.path("pwned").exists());
}

/// Splits a command as sh would, for the quoting sxf uses: plain words and
/// single-quoted words with `'\''` escapes.
#[cfg(unix)]
fn shell_words(command: &str) -> Vec<String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "for a in {command}; do printf '%s\\0' \"$a\"; done"
        ))
        .output()
        .unwrap();
    out.stdout
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8(w.to_vec()).unwrap())
        .collect()
}

#[cfg(unix)]
#[test]
fn a_contacts_file_others_can_change_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let h = Home::new();
    h.add("bob", "bob.pub");
    let file = h.config().join("contacts.toml");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).unwrap();
    let e = stderr(&h.run(&["contacts", "list"]).code(2));
    assert!(e.contains("other users can change it"), "{e}");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(h.config(), fs::Permissions::from_mode(0o777)).unwrap();
    let e = stderr(&h.run(&["contacts", "list"]).code(2));
    assert!(e.contains("other users can change it"), "{e}");
    fs::set_permissions(h.config(), fs::Permissions::from_mode(0o700)).unwrap();
    // A symlink in place of the file is refused too.
    let elsewhere = h.path("elsewhere.toml");
    fs::rename(&file, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
    let e = stderr(&h.run(&["contacts", "list"]).code(2));
    assert!(e.contains("not a regular file"), "{e}");
}

#[test]
fn keygen_identity_with_a_damaged_identity_file_writes_no_key() {
    let h = Home::new();
    fs::create_dir_all(h.config()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(h.config(), fs::Permissions::from_mode(0o700)).unwrap();
    }
    fs::write(h.config().join("identity.toml"), "key_file = 3\n").unwrap();
    h.run(&["keygen", "me", "--identity", "--no-passphrase"])
        .code(2);
    assert!(!h.config().join("me.key").exists());
    assert!(!h.config().join("me.pub").exists());
}

#[test]
fn seal_encrypts_to_yourself_unless_no_self() {
    let h = Home::new();
    h.set_identity("alice.key");
    h.add("bob", "bob.pub");
    h.run(&["seal", "--to", "bob", "-m", "mine too", "-o", "a.sxf"])
        .success();
    // You can reopen what you sent: open with your identity, no --from needed.
    h.run(&["open", "a.sxf", "-o", "a"])
        .success()
        .stdout("mine too\n");

    h.run(&["seal", "--to", "bob", "--no-self", "-m", "x", "-o", "b.sxf"])
        .success();
    let e = stderr(&h.run(&["open", "b.sxf", "-o", "b"]).code(1));
    assert!(e.contains(common::CANNOT_DECRYPT), "{e}");
    let recipients = |file: &str| {
        let (m, _) = sxf::open::inspect(&h.path(file)).unwrap();
        m.manifest.recipients.len()
    };
    assert_eq!(recipients("a.sxf"), 2);
    assert_eq!(recipients("b.sxf"), 1);
}

#[test]
fn keygen_identity_writes_a_private_config_and_seal_and_open_need_no_key_paths() {
    let h = Home::new();
    h.sxf()
        .args(["keygen", "me", "--identity", "--no-passphrase"])
        .assert()
        .success();
    let config = h.config();
    assert!(config.join("me.key").is_file() && config.join("me.pub").is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&config), 0o700);
        assert_eq!(mode(&config.join("identity.toml")), 0o600);
        assert_eq!(mode(&config.join("me.key")), 0o600);
    }
    h.add("bob", "bob.pub");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(config.join("contacts.toml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    h.run(&["seal", "--to", "bob", "-m", "hello", "-o", "m.sxf"])
        .success();
    // bob opens it with his key file, naming the sender by file.
    sxf()
        .arg("open")
        .arg(h.path("m.sxf"))
        .arg("--key")
        .arg(key("bob.key"))
        .arg("--from")
        .arg(config.join("me.pub"))
        .arg("-o")
        .arg(h.path("bob-out"))
        .assert()
        .success()
        .stdout("hello\n");
    let shown = h.run(&["identity", "show", "--pem"]).success();
    assert_eq!(
        stdout(&shown),
        fs::read_to_string(config.join("me.pub")).unwrap()
    );
}

#[test]
fn without_an_identity_seal_says_how_to_set_one() {
    let h = Home::new();
    let e = stderr(
        &h.sxf()
            .args(["seal", "-m", "x", "-o", "x.sxf", "--to"])
            .arg(key("bob.pub"))
            .assert()
            .code(2),
    );
    assert!(
        e.contains("--sign") && e.contains("sxf identity set"),
        "{e}"
    );
    assert!(!h.path("x.sxf").exists());
}

#[test]
fn a_damaged_contacts_file_is_refused_not_half_used() {
    let h = Home::new();
    h.add("bob", "bob.pub");
    let file = h.config().join("contacts.toml");
    let text = fs::read_to_string(&file).unwrap();
    // Swap in another key but keep bob's fingerprint: the two must agree.
    let carol = Home::new();
    carol.add("carol", "carol.pub");
    let carol_text = fs::read_to_string(carol.config().join("contacts.toml")).unwrap();
    let carol_key = carol_text
        .lines()
        .find(|l| l.starts_with("key = "))
        .unwrap();
    let bob_key = text.lines().find(|l| l.starts_with("key = ")).unwrap();
    fs::write(&file, text.replace(bob_key, carol_key)).unwrap();
    let e = stderr(&h.run(&["contacts", "list"]).code(2));
    assert!(e.contains("is damaged"), "{e}");
    let e = stderr(
        &h.run(&[
            "seal", "--to", "bob", "--sign", "x.key", "-m", "x", "-o", "x.sxf",
        ])
        .code(2),
    );
    assert!(e.contains("is damaged"), "{e}");
    // Key files named as paths need no contact: the damaged file does not
    // stop them (it only costs the names in the summary).
    h.sxf()
        .args(["seal", "-m", "x", "-o", "paths.sxf", "--to"])
        .arg(key("bob.pub"))
        .arg("--sign")
        .arg(key("alice.key"))
        .assert()
        .success();
}

#[test]
fn the_identity_key_file_must_still_hold_the_identity_key() {
    let h = Home::new();
    let mine = h.path("mine.key");
    fs::copy(key("alice.key"), &mine).unwrap();
    h.sxf()
        .args(["identity", "set"])
        .arg(&mine)
        .assert()
        .success();
    fs::copy(key("bob.key"), &mine).unwrap();
    let e = stderr(
        &h.sxf()
            .args(["seal", "-m", "x", "-o", "x.sxf", "--to"])
            .arg(key("carol.pub"))
            .assert()
            .code(2),
    );
    assert!(e.contains("now holds a different key"), "{e}");
}
