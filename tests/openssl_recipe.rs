//! The "Opening an archive by hand" script in `spec/FORMAT.md`, run for real.
//!
//! The script is taken from between the `<!-- BEGIN open-by-hand.sh -->` and
//! `<!-- END open-by-hand.sh -->` markers, so these tests fail when the published
//! script is wrong. It needs `bash`, `unzip`, GNU coreutils and `openssl`; if one
//! is missing the tests fail with a message saying so instead of passing.
#![cfg(unix)] // the recipe is a bash script around the openssl command line tool

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output, Stdio};

use assert_cmd::Command;
use sha2::{Digest, Sha256};

const BEGIN: &str = "<!-- BEGIN open-by-hand.sh -->";
const END: &str = "<!-- END open-by-hand.sh -->";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The script from the spec, without its Markdown fence lines.
fn recipe() -> String {
    let spec = fs::read_to_string(root().join("spec/FORMAT.md")).expect("spec/FORMAT.md");
    let start = spec.find(BEGIN).expect("BEGIN marker in spec/FORMAT.md") + BEGIN.len();
    let len = spec[start..]
        .find(END)
        .expect("END marker in spec/FORMAT.md");
    let lines: Vec<&str> = spec[start..start + len].trim().lines().collect();
    assert!(
        lines.len() > 2 && lines[0] == "```bash" && lines[lines.len() - 1] == "```",
        "the script must be a ```bash fence directly between the markers"
    );
    let mut script = lines[1..lines.len() - 1].join("\n");
    script.push('\n');
    assert!(script.contains("set -euo pipefail"));
    script
}

/// Fails loudly when a tool the script needs is not installed.
fn require_tools() {
    for (tool, arg) in [
        ("openssl", "version"),
        ("unzip", "-v"),
        ("bash", "--version"),
    ] {
        let ok = StdCommand::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "`{tool}` is not installed or does not run: the open-by-hand recipe test needs \
             bash, unzip, GNU coreutils and the openssl command line tool"
        );
    }
}

/// Runs the spec's script in `dir` with the given inputs.
fn run_recipe(dir: &Path, archive: &Path, sender_pub: &Path, key: &Path, out: &Path) -> Output {
    let script = dir.join("open-by-hand.sh");
    fs::write(&script, recipe()).unwrap();
    StdCommand::new("bash")
        .arg(&script)
        .current_dir(dir)
        .env("ARCHIVE", archive)
        .env("SENDER_PUB", sender_pub)
        .env("RECIPIENT_KEY", key)
        .env("OUT", out)
        .env_remove("RECIPIENT_FP")
        .stdin(Stdio::null())
        .output()
        .expect("running bash")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn sorted_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// CRC-32 (ISO-HDLC, as ZIP uses it).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Flips one byte of `payload.bin` inside the archive; with `fix_crc`, also
/// rewrites the entry's CRC-32 in both headers so that only the cryptography
/// can notice.
fn flip_payload_byte(archive: &Path, out: &Path, fix_crc: bool) {
    let mut zip = zip::ZipArchive::new(fs::File::open(archive).unwrap()).unwrap();
    let mut entry = zip.by_name("payload.bin").unwrap();
    let mut payload = Vec::new();
    entry.read_to_end(&mut payload).unwrap();
    let data_start = entry.data_start().expect("data offset") as usize;
    let (local, central) = (
        entry.header_start() as usize,
        entry.central_header_start() as usize,
    );
    drop(entry);
    let mut bytes = fs::read(archive).unwrap();
    assert_eq!(&bytes[data_start..data_start + payload.len()], &payload[..]);
    let at = 20;
    bytes[data_start + at] ^= 0x01;
    payload[at] ^= 0x01;
    if fix_crc {
        let crc = crc32(&payload).to_le_bytes();
        bytes[local + 14..local + 18].copy_from_slice(&crc);
        bytes[central + 16..central + 20].copy_from_slice(&crc);
    }
    fs::write(out, bytes).unwrap();
}

#[test]
fn the_recipe_opens_what_sxf_seals_and_rejects_a_changed_payload() {
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let keys = root().join("keys");
    let (alice_key, alice_pub) = (keys.join("alice.key"), keys.join("alice.pub"));
    let (bob_key, bob_pub) = (keys.join("bob.key"), keys.join("bob.pub"));

    let message = "Dear Bob,\n\nphotos and the data, as promised.\nÀ bientôt — Alice\n";
    let attachment: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
    fs::write(dir.join("data.bin"), &attachment).unwrap();
    image::RgbImage::from_fn(48, 32, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 7) as u8, 128])
    })
    .save(dir.join("photo.png"))
    .unwrap();

    let archive = dir.join("sealed.sxf");
    Command::cargo_bin("sxf")
        .unwrap()
        .current_dir(dir)
        .arg("seal")
        .arg("--to")
        .arg(&bob_pub)
        .arg("--sign")
        .arg(&alice_key)
        .args([
            "-m",
            message,
            "--image",
            "photo.png",
            "--attach",
            "data.bin",
            "-o",
        ])
        .arg(&archive)
        .assert()
        .success();

    // The reference: what sxf itself opens.
    let reference = dir.join("by-sxf");
    Command::cargo_bin("sxf")
        .unwrap()
        .arg("open")
        .arg(&archive)
        .arg("--key")
        .arg(&bob_key)
        .arg("--from")
        .arg(&alice_pub)
        .arg("-o")
        .arg(&reference)
        .assert()
        .success();
    let image_name = sorted_names(&reference)
        .into_iter()
        .find(|n| n != "message.txt" && n != "data.bin")
        .expect("sxf wrote the image");
    let image_bytes = fs::read(reference.join(&image_name)).unwrap();

    // The recipe, from the spec.
    let out = dir.join("by-hand");
    let run = run_recipe(dir, &archive, &alice_pub, &bob_key, &out);
    assert!(
        run.status.success(),
        "the recipe failed on a good archive:\n{}",
        text(&run.stderr)
    );
    assert_eq!(text(&run.stdout), message, "the recipe prints the message");
    assert_eq!(
        fs::read_to_string(out.join("message.txt")).unwrap(),
        message
    );
    let numbered_image = format!("1-{image_name}");
    assert_eq!(
        sorted_names(&out),
        vec![
            numbered_image.clone(),
            "2-data.bin".to_owned(),
            "message.txt".to_owned()
        ]
    );
    assert_eq!(fs::read(out.join("2-data.bin")).unwrap(), attachment);
    assert_eq!(fs::read(out.join(&numbered_image)).unwrap(), image_bytes);
    let decoded = image::load_from_memory(&image_bytes).expect("the image decodes");
    assert_eq!((decoded.width(), decoded.height()), (48, 32));

    // A flipped payload byte must make the recipe fail, and leave no output. With
    // the ZIP CRC-32 left as it was, unzip may be the first to notice; with it
    // fixed, it must be the recipe's own SHA-256 check.
    for fix_crc in [false, true] {
        let bad = dir.join(format!("flipped-{fix_crc}.sxf"));
        flip_payload_byte(&archive, &bad, fix_crc);
        let out = dir.join(format!("by-hand-flipped-{fix_crc}"));
        let run = run_recipe(dir, &bad, &alice_pub, &bob_key, &out);
        let stderr = text(&run.stderr);
        assert!(
            !run.status.success(),
            "the recipe accepted a changed payload (CRC fixed: {fix_crc})"
        );
        assert!(!out.exists(), "a failed recipe left output behind");
        if fix_crc {
            assert!(
                stderr.contains("FAILED: payload.bin differs from what the manifest commits to"),
                "unexpected failure: {stderr}"
            );
        }
    }
}

/// The recipe's verdict on every vector whose failure is cryptographic or a
/// version/algorithm check (it does not enforce the container or every manifest
/// rule, so `malformed` vectors are not run).
#[test]
fn the_recipe_agrees_with_the_test_vectors() {
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let vectors = root().join("spec/vectors");
    let mut names: Vec<String> = fs::read_dir(&vectors)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "txt").then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    let mut checked = 0;
    let mut failures = Vec::new();
    for name in names {
        let spec = fs::read_to_string(vectors.join(format!("{name}.txt"))).unwrap();
        let field = |f: &str| -> Vec<String> {
            spec.lines()
                .filter_map(|l| l.strip_prefix(&format!("{f}: ")).map(str::to_owned))
                .collect()
        };
        let expect = field("expect").remove(0);
        if expect == "malformed" {
            continue;
        }
        checked += 1;
        let out = tmp.path().join(&name);
        let run = run_recipe(
            tmp.path(),
            &vectors.join(format!("{name}.sxf")),
            &root().join(&field("from")[0]),
            &root().join(&field("key")[0]),
            &out,
        );
        let stderr = text(&run.stderr);
        if expect != "success" {
            if run.status.success() || !stderr.contains("open-by-hand: FAILED") {
                failures.push(format!("{name}: expected the recipe to fail: {stderr}"));
            }
            continue;
        }
        if !run.status.success() {
            failures.push(format!("{name}: the recipe failed: {stderr}"));
            continue;
        }
        let sha = |p: PathBuf| hex::encode(Sha256::digest(fs::read(p).unwrap()));
        if sha(out.join("message.txt")) != field("message")[0] {
            failures.push(format!("{name}: message differs"));
        }
        let files = field("file");
        // message.txt plus the files numbered 1.. in index order.
        let mut produced = sorted_names(&out);
        produced.retain(|n| n != "message.txt");
        if produced.len() != files.len() {
            failures.push(format!(
                "{name}: {} files, expected {}",
                produced.len(),
                files.len()
            ));
            continue;
        }
        for (i, line) in files.iter().enumerate() {
            let want = line.split(' ').next().unwrap();
            let prefix = format!("{}-", i + 1);
            let file = produced.iter().find(|n| n.starts_with(&prefix)).unwrap();
            if sha(out.join(file)) != want {
                failures.push(format!("{name}: file {} ({file}) differs", i + 1));
            }
        }
    }
    assert!(checked >= 10, "only {checked} vectors checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Step 0 of the recipe: `sxf seal --armor` output decodes with `base64 -d` and
/// opens by hand to the same message.
#[test]
fn the_recipe_opens_what_sxf_seals_with_armor() {
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let keys = root().join("keys");
    let message = "armored, by hand\n";
    let archive = dir.join("sealed.sxf.asc");
    Command::cargo_bin("sxf")
        .unwrap()
        .arg("seal")
        .arg("--to")
        .arg(keys.join("bob.pub"))
        .arg("--sign")
        .arg(keys.join("alice.key"))
        .args(["-m", message, "--armor", "-o"])
        .arg(&archive)
        .assert()
        .success();
    assert!(
        fs::read_to_string(&archive)
            .unwrap()
            .starts_with("-----BEGIN SXF ARCHIVE-----\n")
    );
    let out = dir.join("by-hand");
    let run = run_recipe(
        dir,
        &archive,
        &keys.join("alice.pub"),
        &keys.join("bob.key"),
        &out,
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(text(&run.stdout), message);
}
