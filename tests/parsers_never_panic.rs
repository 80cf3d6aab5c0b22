//! Every parser takes hostile input: random and mutated bytes must give an error,
//! never a panic, a hang or a huge allocation. (A stable-toolchain stand-in for the
//! coverage-guided fuzzing that needs nightly.)

use std::io::Read;

use proptest::prelude::*;
use sxf::format::{ContainerReader, Manifest};
use sxf::payload::{FileEntry, PayloadError, PayloadSink, read_payload};

struct Discard;

impl PayloadSink for Discard {
    fn message(&mut self, _: String) -> Result<(), PayloadError> {
        Ok(())
    }
    fn file(&mut self, _: &FileEntry, name: &str, data: &mut dyn Read) -> Result<(), PayloadError> {
        assert!(!name.contains('/') && !name.contains('\\') && !name.starts_with('.'));
        std::io::copy(data, &mut std::io::sink())?;
        Ok(())
    }
}

const VALID_MANIFEST: &str = include_str!("fixtures/manifest.toml");

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn manifest_parser_rejects_random_bytes_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Manifest::parse(&bytes);
    }

    #[test]
    fn manifest_parser_survives_mutations_of_a_valid_manifest(pos in 0usize..4096, byte in any::<u8>(), cut in 0usize..4096) {
        let mut m = VALID_MANIFEST.as_bytes().to_vec();
        let pos = pos % m.len();
        m[pos] = byte;
        m.truncate(cut.max(1));
        let _ = Manifest::parse(&m);
    }

    #[test]
    fn payload_parser_rejects_random_bytes_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = read_payload(&bytes[..], &mut Discard);
    }

    #[test]
    fn payload_parser_survives_hostile_indexes(
        name in "\\PC{0,40}",
        len in any::<u64>(),
        msg_len in any::<u64>(),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let index = format!(
            "message_length = {}\n[[files]]\nname = {:?}\nmedia_type = \"a/b\"\nkind = \"attachment\"\nlength = {}\n",
            msg_len % (1 << 62), name, len % (1 << 62)
        );
        let mut p = format!("SXF-PAYLOAD/1 {}\n{}", index.len(), index).into_bytes();
        p.extend_from_slice(&body);
        let _ = read_payload(&p[..], &mut Discard);
    }

    #[test]
    fn container_reader_rejects_random_files_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sxf");
        std::fs::write(&path, &bytes).unwrap();
        prop_assert!(ContainerReader::open(&path).is_err());
    }
}
