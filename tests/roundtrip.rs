//! Seal then open: what goes in comes out, byte for byte, under safe names.

mod common;

#[cfg(unix)]
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;
#[cfg(unix)]
use std::path::PathBuf;
use std::time::SystemTime;

use common::*;
use proptest::prelude::*;
use sxf::NoProgress;
use sxf::images::ImageOptions;
use sxf::open::ExpectedSender;
use sxf::seal::SealRequest;
use tempfile::tempdir;

/// A file name `open` may write: plain, no leading dot or dash, no separators.
#[cfg(unix)]
fn assert_safe_name(name: &str) {
    assert!(!name.is_empty(), "empty name");
    assert!(name.len() <= 110, "long name {name:?}");
    assert!(
        !name.starts_with(['.', '-', ' ']),
        "hidden or option-like name {name:?}"
    );
    assert!(
        !name.ends_with(['.', ' ']),
        "trailing dot or space in {name:?}"
    );
    // FORMAT.md, "File names": no separator, control, bidi control or character
    // that Windows forbids.
    assert!(
        !name.chars().any(|c| c.is_control()
            || "/\\<>:\"|?*\u{61c}\u{200e}\u{200f}".contains(c)
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)),
        "unexpected character in {name:?}"
    );
    assert!(name != "." && name != "..");
}

fn open_ok(archive: &Path, key_file: &str, out: &Path) -> Run {
    let r = run(&mut open_cmd(archive, key_file, Some("alice.pub"), out));
    r.assert_code(0, &format!("open with {key_file}"));
    r
}

#[test]
fn empty_message_with_one_attachment_round_trips() {
    let dir = tempdir().unwrap();
    let attachment = dir.path().join("report.bin");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_001).collect();
    fs::write(&attachment, &bytes).unwrap();
    let archive = dir.path().join("a.sxf");
    seal(
        &archive,
        &["bob.pub"],
        "alice.key",
        args!["--attach", &attachment],
    );
    let out = dir.path().join("out");
    let r = open_ok(&archive, "bob.key", &out);
    assert_eq!(r.stdout, "", "an empty message prints nothing");
    assert_eq!(fs::read(out.join("report.bin")).unwrap(), bytes);
    // No message, no message.txt: an empty one would look like a message.
    assert_eq!(listing(&out), ["report.bin"].map(String::from).into());
    assert!(r.stderr.contains("wrote report.bin into"), "{}", r.stderr);
    assert!(!r.stderr.contains("message.txt"), "{}", r.stderr);
}

#[test]
fn long_unicode_message_round_trips_exactly() {
    let pieces = [
        "Hello, world. ",
        "Grüße aus Köln — ",
        "Привет, мир! ",
        "γειά σου κόσμε ",
        "שלום עולם ",
        "مرحبا بالعالم ",
        "नमस्ते दुनिया ",
        "你好，世界。",
        "こんにちは世界 ",
        "안녕하세요 ",
        "👩‍👩‍👧‍👦🏳️‍🌈🇯🇵👍🏽 ",
        "e\u{301} a\u{30a} \u{200b}\u{feff}",
        "\ttabs\r\nand CRLF\n",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕏 ",
    ];
    let mut message = String::new();
    let mut i = 0;
    while message.len() < 100_000 {
        message.push_str(pieces[i % pieces.len()]);
        i += 1;
    }
    let dir = tempdir().unwrap();
    let file = dir.path().join("long.txt");
    fs::write(&file, &message).unwrap();
    let archive = dir.path().join("long.sxf");
    seal(
        &archive,
        &["bob.pub"],
        "alice.key",
        args!["--message-file", &file],
    );
    let out = dir.path().join("out");
    let r = open_ok(&archive, "bob.key", &out);
    assert_eq!(
        fs::read_to_string(out.join("message.txt")).unwrap(),
        message
    );
    let printed = r.stdout.strip_suffix('\n').unwrap_or(&r.stdout);
    assert_eq!(printed, message.strip_suffix('\n').unwrap_or(&message));

    // The same text as -m (under the 128 KiB argument limit).
    let archive2 = dir.path().join("long-m.sxf");
    let short: String = message.chars().take(20_000).collect();
    seal(&archive2, &["bob.pub"], "alice.key", args!["-m", &short]);
    let out2 = dir.path().join("out2");
    open_ok(&archive2, "bob.key", &out2);
    assert_eq!(fs::read_to_string(out2.join("message.txt")).unwrap(), short);
}

// Needs file names Windows forbids; tests/windows_interop.rs opens such names on Windows.
#[cfg(unix)]
#[test]
fn images_and_attachments_with_hostile_names_come_out_safe_unique_and_identical() {
    let dir = tempdir().unwrap();
    let inputs = dir.path().join("in");
    let other = dir.path().join("other");
    fs::create_dir(&inputs).unwrap();
    fs::create_dir(&other).unwrap();

    // Photos in three formats; two share the stem "photo".
    let png = inputs.join("photo.png");
    test_picture(64, 48).save(&png).unwrap();
    let jpeg = inputs.join("holiday.jpeg");
    test_picture(40, 30).save(&jpeg).unwrap();
    let gif = inputs.join("anim.gif");
    test_picture(16, 16).save(&gif).unwrap();
    let image_dims = [(64, 48), (40, 30), (16, 16)];

    // Attachments: each with distinct contents, so outputs can be matched by bytes.
    let names: Vec<(PathBuf, Vec<u8>)> = vec![
        (inputs.join("empty.dat"), Vec::new()),
        (inputs.join("message.txt"), b"I am not the message".to_vec()),
        (inputs.join("MESSAGE.TXT"), b"nor am I".to_vec()),
        (
            inputs.join("photo.jpg"),
            b"first photo.jpg (not a photo)".to_vec(),
        ),
        (
            other.join("photo.jpg"),
            b"second photo.jpg, other dir".to_vec(),
        ),
        (
            inputs.join("with  spaces and (parens).txt"),
            b"spaces".to_vec(),
        ),
        (
            inputs.join("résumé final – v2 ✓.pdf"),
            b"unicode name".to_vec(),
        ),
        (inputs.join("日本語のファイル.txt"), b"japanese".to_vec()),
        (inputs.join("-rf"), b"dash".to_vec()),
        (inputs.join(".bashrc"), b"hidden".to_vec()),
        (inputs.join("..\\..\\evil.txt"), b"backslashes".to_vec()),
        (inputs.join("new\nline;$(rm -rf).txt"), b"shell".to_vec()),
        (inputs.join("..."), b"dots only".to_vec()),
    ];
    let mut seal_args = args!["-m", "photos and files", "--max-dim", "32"];
    for img in [&png, &jpeg, &gif] {
        seal_args.extend(args!["--image", img]);
    }
    for (path, bytes) in &names {
        fs::write(path, bytes).unwrap();
        seal_args.extend(args!["--attach", path]);
    }
    let archive = dir.path().join("mixed.sxf");
    seal(&archive, &["bob.pub"], "alice.key", seal_args);
    let out = dir.path().join("out");
    open_ok(&archive, "bob.key", &out);

    let written = tree(&out);
    assert_eq!(
        written.len(),
        1 + image_dims.len() + names.len(),
        "one file per part: {:?}",
        written.keys().collect::<Vec<_>>()
    );
    let mut lower = HashSet::new();
    for path in written.keys() {
        assert_eq!(path.components().count(), 1, "nested output {path:?}");
        let name = path.to_str().expect("UTF-8 name");
        assert_safe_name(name);
        assert!(lower.insert(name.to_lowercase()), "duplicate name {name}");
    }
    assert_eq!(written[Path::new("message.txt")], b"photos and files");

    // Every attachment's bytes come out exactly once.
    let mut pool: BTreeMap<PathBuf, Vec<u8>> = written.clone();
    pool.remove(Path::new("message.txt"));
    for (path, bytes) in &names {
        let found = pool
            .iter()
            .find(|(_, b)| *b == bytes)
            .map(|(p, _)| p.clone())
            .unwrap_or_else(|| panic!("{} did not come out", path.display()));
        pool.remove(&found);
    }
    // What is left are the three photos, as JPEGs within --max-dim.
    assert_eq!(pool.len(), 3, "{:?}", pool.keys().collect::<Vec<_>>());
    let mut dims: Vec<(u32, u32)> = pool
        .values()
        .map(|b| {
            let img = image::load_from_memory_with_format(b, image::ImageFormat::Jpeg)
                .expect("a photo comes out as JPEG");
            (img.width(), img.height())
        })
        .collect();
    dims.sort();
    assert_eq!(dims, vec![(16, 16), (32, 24), (32, 24)]);

    // Names that were taken get a suffix, not an overwrite.
    assert!(written.contains_key(Path::new("photo.jpg")));
    assert!(written.contains_key(Path::new("photo (2).jpg")));
    assert!(written.contains_key(Path::new("photo (3).jpg")));
    assert!(written.contains_key(Path::new("message (2).txt")));
    // Nothing escaped the output directory.
    assert_eq!(
        listing(dir.path()),
        ["in", "mixed.sxf", "other", "out"].map(String::from).into()
    );
}

#[test]
fn every_recipient_gets_identical_output_and_a_stranger_gets_nothing() {
    let dir = tempdir().unwrap();
    let attachment = dir.path().join("data.bin");
    fs::write(&attachment, b"shared with three recipients").unwrap();
    let archive = dir.path().join("three.sxf");
    seal(
        &archive,
        &["bob.pub", "carol.pub", "dave.pub"],
        "alice.key",
        args!["-m", "to all of you", "--attach", &attachment],
    );
    let mut trees = Vec::new();
    for (who, key_file) in [
        ("bob", "bob.key"),
        ("carol", "carol.key"),
        ("dave", "dave.key"),
    ] {
        let out = dir.path().join(who);
        let r = run(open_cmd(&archive, key_file, Some("alice.pub"), &out)
            .env("SXF_PASSPHRASE", CAROL_PASSPHRASE));
        r.assert_code(0, &format!("{who} opens"));
        assert_eq!(r.stdout, "to all of you\n");
        trees.push(tree(&out));
    }
    assert_eq!(trees[0], trees[1]);
    assert_eq!(trees[0], trees[2]);
    assert_eq!(
        trees[0][Path::new("data.bin")],
        b"shared with three recipients"
    );

    let out = dir.path().join("mallory");
    let before = listing(dir.path());
    let r = run(&mut open_cmd(
        &archive,
        "mallory.key",
        Some("alice.pub"),
        &out,
    ));
    r.assert_code(1, "mallory opens")
        .assert_stderr_contains(CANNOT_DECRYPT, "mallory opens");
    assert!(r.stdout.is_empty());
    assert_not_created(&out);
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn keep_original_stores_the_photo_bytes_unchanged() {
    let dir = tempdir().unwrap();
    let png = dir.path().join("exact.png");
    test_picture(20, 10).save(&png).unwrap();
    let archive = dir.path().join("k.sxf");
    seal(
        &archive,
        &["bob.pub"],
        "alice.key",
        args!["--image", &png, "--keep-original"],
    );
    let out = dir.path().join("out");
    open_ok(&archive, "bob.key", &out);
    assert_eq!(
        fs::read(out.join("exact.png")).unwrap(),
        fs::read(&png).unwrap()
    );
}

// ---------------------------------------------------------------------------
// Property: the library round-trips any message and any bytes exactly.

fn seal_and_open(message: &str, files: &[Vec<u8>]) -> Result<(String, Vec<Vec<u8>>), String> {
    let dir = tempdir().unwrap();
    let mut attachments = Vec::new();
    for (i, bytes) in files.iter().enumerate() {
        let p = dir.path().join(format!("file-{i}.bin"));
        fs::write(&p, bytes).unwrap();
        attachments.push(p);
    }
    let sender = sxf::keys::load_private_key(&key("alice.key"), || Ok(None)).unwrap();
    let recipient = sxf::keys::load_public_key(&key("bob.pub")).unwrap();
    let recipients = [recipient];
    let archive = dir.path().join("p.sxf");
    let request = SealRequest {
        sender: &sender,
        recipients: &recipients,
        message: message.to_owned(),
        images: Vec::new(),
        image_options: ImageOptions::default(),
        attachments,
        created: SystemTime::now(),
        fit: None,
        threads: None,
    };
    sxf::seal::seal(request, &archive, &mut NoProgress).map_err(|e| e.to_string())?;

    let bob = sxf::keys::load_private_key(&key("bob.key"), || Ok(None)).unwrap();
    let alice = sxf::keys::load_public_key(&key("alice.pub")).unwrap();
    let out = dir.path().join("out");
    let opened = sxf::open::open(
        &archive,
        &bob,
        ExpectedSender::Key(&alice),
        &out,
        &mut NoProgress,
    )
    .expect("an archive just sealed opens");
    // message.txt holds the message, and is not written when there is none.
    match fs::read_to_string(out.join("message.txt")) {
        Ok(text) => assert_eq!(text, opened.message),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => assert_eq!(opened.message, ""),
        Err(e) => panic!("reading message.txt: {e}"),
    }
    let contents = opened
        .files
        .iter()
        .map(|f| {
            let bytes = fs::read(out.join(&f.saved_as)).unwrap();
            assert_eq!(bytes.len() as u64, f.entry.length);
            bytes
        })
        .collect();
    Ok((opened.message, contents))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 8,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn library_seal_then_open_round_trips_any_message_and_bytes(
        message in any::<String>(),
        files in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..5000), 0..4),
    ) {
        let result = seal_and_open(&message, &files);
        if message.is_empty() && files.is_empty() {
            let err = result.expect_err("nothing to seal is refused");
            prop_assert!(err.contains("nothing to seal"), "{}", err);
        } else {
            let (m, f) = result.expect("seal succeeds");
            prop_assert_eq!(m, message);
            prop_assert_eq!(f, files);
        }
    }
}

#[test]
fn library_round_trips_the_empty_message_edge_cases() {
    // Cases proptest may not draw: empty message with an empty file, and a
    // message whose length is an exact multiple of the AES block.
    let (m, f) = seal_and_open("", &[Vec::new()]).unwrap();
    assert_eq!(m, "");
    assert_eq!(f, vec![Vec::<u8>::new()]);
    let sixteen = "0123456789abcdef".repeat(4);
    let (m, f) = seal_and_open(&sixteen, &[]).unwrap();
    assert_eq!(m, sixteen);
    assert!(f.is_empty());
    let err = seal_and_open("", &[]).unwrap_err();
    assert!(err.contains("nothing to seal"), "{err}");
}
