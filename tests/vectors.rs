//! The test vectors in `spec/vectors/`: every archive, opened with the real `sxf`
//! binary and the key and sender its `.txt` file names, must succeed with exactly
//! the listed outputs or fail with exit code 1 and the listed error class.
//!
//! The vectors are written by `cargo run --example make_vectors`; this test only
//! reads the committed files, so it also catches a change in the reader that
//! would reject (or accept) archives it used to accept (or reject).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn vectors_dir() -> PathBuf {
    root().join("spec/vectors")
}

/// What a vector's `.txt` file says.
#[derive(Debug)]
struct Expectation {
    expect: String,
    from: String,
    key: String,
    /// SHA-256 (hex) of `message.txt`, for `success`.
    message: Option<String>,
    /// (SHA-256 hex, file name as `sxf open` writes it), for `success`.
    files: Vec<(String, String)>,
}

const CLASSES: [&str; 5] = [
    "success",
    "malformed",
    "unsupported",
    "not authentic",
    "cannot decrypt",
];

fn parse_expectation(name: &str, text: &str) -> Expectation {
    let (mut expect, mut from, mut key, mut message) = (None, None, None, None);
    let mut files = Vec::new();
    for line in text.lines() {
        let (field, value) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("{name}.txt: bad line {line:?}"));
        match field {
            "expect" => expect = Some(value.to_owned()),
            "from" => from = Some(value.to_owned()),
            "key" => key = Some(value.to_owned()),
            "message" => message = Some(value.to_owned()),
            "file" => {
                let (sha, file) = value
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("{name}.txt: bad file line {line:?}"));
                files.push((sha.to_owned(), file.to_owned()));
            }
            "comment" => {}
            other => panic!("{name}.txt: unknown field {other:?}"),
        }
    }
    let e = Expectation {
        expect: expect.unwrap_or_else(|| panic!("{name}.txt: no expect line")),
        from: from.unwrap_or_else(|| panic!("{name}.txt: no from line")),
        key: key.unwrap_or_else(|| panic!("{name}.txt: no key line")),
        message,
        files,
    };
    assert!(
        CLASSES.contains(&e.expect.as_str()),
        "{name}.txt: unknown class {:?}",
        e.expect
    );
    assert_eq!(
        e.expect == "success",
        e.message.is_some(),
        "{name}.txt: a message digest is given exactly for success"
    );
    e
}

/// All vectors, by name; every `.sxf` has a `.txt` and the other way round.
fn vectors() -> Vec<(String, Expectation)> {
    let mut sxf = BTreeSet::new();
    let mut txt = BTreeSet::new();
    for entry in fs::read_dir(vectors_dir()).expect("spec/vectors exists") {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        match path.extension().and_then(|e| e.to_str()) {
            Some("sxf") => {
                sxf.insert(stem);
            }
            Some("txt") => {
                txt.insert(stem);
            }
            _ => {}
        }
    }
    assert_eq!(sxf, txt, "every vector needs both NAME.sxf and NAME.txt");
    txt.into_iter()
        .map(|name| {
            let text = fs::read_to_string(vectors_dir().join(format!("{name}.txt"))).unwrap();
            let e = parse_expectation(&name, &text);
            (name, e)
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What `sxf` prints for each class of rejection.
fn class_marker(class: &str) -> &'static str {
    match class {
        "malformed" => "not a valid sxf archive",
        "unsupported" => "unsupported sxf archive",
        "not authentic" => "not authentic",
        "cannot decrypt" => "cannot decrypt",
        other => panic!("no marker for {other}"),
    }
}

/// Opens one vector with the binary; returns a description of what went wrong.
fn check_vector(name: &str, e: &Expectation, tmp: &Path) -> Result<(), String> {
    let out_dir = tmp.join(name);
    let output = Command::cargo_bin("sxf")
        .unwrap()
        .current_dir(root())
        .arg("open")
        .arg(vectors_dir().join(format!("{name}.sxf")))
        .args(["--key", &e.key, "--from", &e.from, "-o"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let code = output.status.code();
    if e.expect != "success" {
        if code != Some(1) {
            return Err(format!(
                "expected exit 1 ({}), got {code:?}: {stderr}",
                e.expect
            ));
        }
        if !stderr.contains(class_marker(&e.expect)) {
            return Err(format!("expected \"{}\", got: {stderr}", e.expect));
        }
        if out_dir.exists() {
            return Err("a failed open left its output directory behind".into());
        }
        return Ok(());
    }
    if code != Some(0) {
        return Err(format!("expected success, got {code:?}: {stderr}"));
    }
    let mut want: BTreeSet<(String, String)> = e
        .files
        .iter()
        .map(|(sha, file)| (file.clone(), sha.clone()))
        .collect();
    want.insert(("message.txt".into(), e.message.clone().unwrap()));
    let got: BTreeSet<(String, String)> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, sha256_hex(&fs::read(entry.path()).unwrap()))
        })
        .collect();
    if got != want {
        return Err(format!("outputs differ:\n  want {want:?}\n  got  {got:?}"));
    }
    Ok(())
}

#[test]
fn every_vector_opens_as_its_txt_file_says() {
    let tmp = tempfile::tempdir().unwrap();
    let vectors = vectors();
    let failures: Vec<String> = vectors
        .iter()
        .filter_map(|(name, e)| {
            check_vector(name, e, tmp.path())
                .err()
                .map(|m| format!("{name}: {m}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}

#[test]
fn the_vector_set_covers_every_class() {
    let vectors = vectors();
    for class in CLASSES {
        assert!(
            vectors.iter().any(|(_, e)| e.expect == class),
            "no vector for class {class}"
        );
    }
    let basic = vectors
        .iter()
        .find(|(name, _)| name == "basic")
        .expect("basic vector");
    assert_eq!(basic.1.expect, "success");
    assert_eq!(basic.1.from, "keys/alice.pub");
    assert_eq!(basic.1.key, "keys/bob.key");
}

/// The armored vectors: the accepted forms open like `basic`, and every rejected
/// form is rejected by the armor rules themselves (not later, by chance, by the
/// container rules).
#[test]
fn armor_vectors_fail_on_the_armor_rule_they_break() {
    let vectors = vectors();
    let armored: Vec<_> = vectors
        .iter()
        .filter(|(name, _)| name.starts_with("armor-"))
        .collect();
    for accepted in ["armor-basic", "armor-crlf", "armor-whitespace"] {
        assert!(
            armored
                .iter()
                .any(|(n, e)| n == accepted && e.expect == "success"),
            "{accepted} is a success vector"
        );
    }
    assert!(
        armored
            .iter()
            .filter(|(_, e)| e.expect == "malformed")
            .count()
            >= 10
    );
    let tmp = tempfile::tempdir().unwrap();
    // A byte order mark is not a byte that starts armor: that input is read as a
    // binary archive, and the container rules reject it.
    for (name, e) in armored
        .iter()
        .filter(|(n, e)| e.expect == "malformed" && n != "armor-byte-order-mark")
    {
        let output = Command::cargo_bin("sxf")
            .unwrap()
            .current_dir(root())
            .arg("verify")
            .arg(vectors_dir().join(format!("{name}.sxf")))
            .args(["--from", &e.from])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains("not a valid sxf archive: bad ASCII armor on line"),
            "{name}: {stderr}"
        );
    }
    drop(tmp);
}
