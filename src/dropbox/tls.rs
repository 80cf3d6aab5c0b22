//! The drop-box's TLS layer: TLS 1.3 only, rustls with the `ring` provider.
//!
//! The server presents a self-signed certificate kept in its store
//! ([`super::store`]); nobody vouches for it. The client instead pins the
//! server id, SHA-256 of the certificate's SubjectPublicKeyInfo DER, given with
//! `--server-id` or recorded on first contact ([`crate::contacts::ConfigDir`]'s
//! known servers). [`PinVerifier`] accepts exactly that key, and still checks
//! the handshake signature, so only the holder of the private key can complete
//! the handshake. The AUTH statement carries a TLS exporter value
//! ([`auth_binding`]), so a statement signed inside one TLS session is worth
//! nothing inside another.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// The RFC 8446 §7.5 exporter label of the AUTH binding.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-sxf-dropbox-auth-v2";
/// Length of the AUTH binding.
pub const BINDING_LEN: usize = 32;

/// The provider everything here uses: `ring`, never the process default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server id of a SubjectPublicKeyInfo DER: its SHA-256.
pub fn server_id_of_spki(spki_der: &[u8]) -> [u8; 32] {
    Sha256::digest(spki_der).into()
}

/// The server id of a certificate: SHA-256 of its SubjectPublicKeyInfo DER.
pub fn server_id_of_cert(cert_der: &[u8]) -> Result<[u8; 32], rustls::Error> {
    let cert = CertificateDer::from(cert_der);
    let parsed = ParsedCertificate::try_from(&cert)?;
    Ok(server_id_of_spki(parsed.subject_public_key_info().as_ref()))
}

/// A fresh ECDSA P-256 key (PKCS#8 DER) for a server.
pub fn generate_key() -> Result<zeroize::Zeroizing<Vec<u8>>, rcgen::Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    Ok(zeroize::Zeroizing::new(key.serialize_der()))
}

/// A self-signed certificate (DER) for `key_der` (PKCS#8). Its names mean
/// nothing: clients check the key, never the name or the dates.
pub fn self_signed_cert(key_der: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
    let key = rcgen::KeyPair::try_from(key_der)?;
    let mut params = rcgen::CertificateParams::new(vec!["sxf-dropbox".to_owned()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sxf drop-box");
    Ok(params.self_signed(&key)?.der().to_vec())
}

/// The server's certificate and key. Debug shows the id, never the key.
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    id: [u8; 32],
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("id", &hex::encode(self.id))
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Checks that the certificate parses; the key is checked against it by
    /// [`server_config`].
    pub fn from_der(key_der: Vec<u8>, cert_der: Vec<u8>) -> Result<Identity, rustls::Error> {
        let id = server_id_of_cert(&cert_der)?;
        Ok(Identity {
            cert: CertificateDer::from(cert_der),
            key: PrivatePkcs8KeyDer::from(key_der),
            id,
        })
    }

    /// SHA-256 of the certificate's SubjectPublicKeyInfo DER.
    pub fn server_id(&self) -> &[u8; 32] {
        &self.id
    }

    pub fn cert_der(&self) -> &[u8] {
        self.cert.as_ref()
    }
}

/// The server's TLS configuration: TLS 1.3 only, no client certificates, no
/// session tickets (nothing is resumed: every connection shows the key).
pub fn server_config(identity: &Identity) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(
            vec![identity.cert.clone()],
            PrivateKeyDer::Pkcs8(identity.key.clone_key()),
        )?;
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// Accepts exactly one server key, or, with nothing pinned, any key (trust on
/// first use), and remembers the id it was shown. The handshake signature is
/// verified either way: the peer must hold the private key of what it shows.
#[derive(Debug)]
pub struct PinVerifier {
    pinned: Option<[u8; 32]>,
    seen: Mutex<Option<[u8; 32]>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinVerifier {
    pub fn new(pinned: Option<[u8; 32]>) -> PinVerifier {
        PinVerifier {
            pinned,
            seen: Mutex::new(None),
            algorithms: provider().signature_verification_algorithms,
        }
    }

    /// The id of the certificate the server presented, once it did.
    pub fn seen(&self) -> Option<[u8; 32]> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = server_id_of_cert(end_entity.as_ref())?;
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
        match self.pinned {
            Some(pinned) if pinned != id => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // TLS 1.2 is never negotiated (and not even compiled in).
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A client configuration that accepts only `pinned` (any key when `None`)
/// and the verifier, to read the id the server showed.
pub fn client_config(
    pinned: Option<[u8; 32]>,
) -> Result<(Arc<rustls::ClientConfig>, Arc<PinVerifier>), rustls::Error> {
    let verifier = Arc::new(PinVerifier::new(pinned));
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    // No resumption: a resumed session would skip the certificate check.
    config.resumption = rustls::client::Resumption::disabled();
    Ok((Arc::new(config), verifier))
}

/// The name the client sends: the host of `addr` when it is a DNS name, else a
/// fixed one. The server ignores it; no certificate name is checked.
pub fn server_name(addr: &str) -> ServerName<'static> {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    match ServerName::try_from(host.to_owned()) {
        Ok(name @ ServerName::DnsName(_)) => name,
        _ => ServerName::try_from("sxf-dropbox").expect("a valid DNS name"),
    }
}

/// The AUTH binding of a TLS session: 32 bytes exported under
/// [`EXPORTER_LABEL`] with the challenge's server nonce as the context.
/// Both ends compute it; it differs for every session and every challenge.
pub fn auth_binding<D>(
    conn: &rustls::ConnectionCommon<D>,
    server_nonce: &[u8; 32],
) -> Result<[u8; BINDING_LEN], rustls::Error> {
    conn.export_keying_material([0u8; BINDING_LEN], EXPORTER_LABEL, Some(server_nonce))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData;

    #[test]
    fn the_server_id_is_the_hash_of_the_certificates_public_key() {
        let key = generate_key().unwrap();
        let cert = self_signed_cert(&key).unwrap();
        let spki = rcgen::KeyPair::try_from(&key[..])
            .unwrap()
            .subject_public_key_info();
        let id = server_id_of_cert(&cert).unwrap();
        assert_eq!(id, server_id_of_spki(&spki));
        // A new certificate for the same key keeps the id.
        assert_eq!(
            server_id_of_cert(&self_signed_cert(&key).unwrap()).unwrap(),
            id
        );
        let identity = Identity::from_der(key.to_vec(), cert).unwrap();
        assert!(!format!("{identity:?}").contains(&hex::encode(&key[..8])));
        server_config(&identity).unwrap();
    }

    #[test]
    fn a_certificate_that_is_not_the_keys_is_refused() {
        let key = generate_key().unwrap();
        let other = generate_key().unwrap();
        let cert = self_signed_cert(&other).unwrap();
        let identity = Identity::from_der(key.to_vec(), cert).unwrap();
        assert!(server_config(&identity).is_err());
    }

    #[test]
    fn server_names_fall_back_to_a_fixed_one_for_addresses() {
        assert_eq!(
            server_name("example.org:7878"),
            ServerName::try_from("example.org").unwrap()
        );
        for a in ["127.0.0.1:7878", "[::1]:7878"] {
            assert_eq!(server_name(a), ServerName::try_from("sxf-dropbox").unwrap());
        }
    }
}
