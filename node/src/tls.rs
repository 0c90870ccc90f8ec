//! TLS for the QUIC data plane, with certificates made from node keys.
//!
//! Each node presents a self-signed certificate whose key is its ed25519 node key; in a private
//! mesh the certificate also carries the node's membership certificate in an extension. There is
//! no certificate authority: a client checks that the server's key is the key of the peer it
//! meant to reach (learned from that peer's status, sent on a connection authenticated by its
//! key), and each side checks the other against its [`Admission`] policy: in a private mesh a
//! member neither serves nor uses a peer without a valid membership certificate. The TLS 1.3
//! handshake proves possession of the key.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use wasmesh_keys::SignedMembershipCert;
use wasmesh_protocol::{Keypair, PublicKey};

use crate::admission::Admission;
use crate::clock::now_ms;

/// The certificate extension that carries a membership certificate (a private-use OID).
const MEMBERSHIP_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 61_511, 1, 1];
/// The RFC 8410 PKCS#8 prefix of an ed25519 private key, followed by the 32-byte seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Why a TLS identity could not be made or a peer certificate read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// rcgen could not make the certificate.
    #[error("cannot create the node certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A node's certificate and key, ready for rustls.
#[derive(Debug)]
pub struct TlsIdentity {
    cert: CertificateDer<'static>,
    key_pkcs8: Vec<u8>,
}

impl TlsIdentity {
    /// The self-signed certificate for `keys`, carrying `membership` if given.
    pub fn new(
        keys: &Keypair,
        membership: Option<&SignedMembershipCert>,
    ) -> Result<Self, TlsError> {
        let mut key_pkcs8 = ED25519_PKCS8_PREFIX.to_vec();
        key_pkcs8.extend_from_slice(&keys.seed());
        let key_pair = rcgen::KeyPair::try_from(&PrivatePkcs8KeyDer::from(key_pkcs8.clone()))?;
        let mut params = rcgen::CertificateParams::new(vec!["wasmesh".to_owned()])?;
        if let Some(membership) = membership {
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    MEMBERSHIP_OID,
                    membership.encode(),
                ));
        }
        let cert = params.self_signed(&key_pair)?;
        Ok(Self {
            cert: cert.der().clone(),
            key_pkcs8,
        })
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
    }

    /// The client configuration for reaching the peer whose key is `expected`, which
    /// `admission` must admit.
    pub fn client_config(
        &self,
        expected: PublicKey,
        admission: &Admission,
        alpn: &[u8],
    ) -> Result<rustls::ClientConfig, TlsError> {
        let provider = provider();
        let verifier = ExpectedPeer {
            expected,
            admission: admission.clone(),
            algorithms: provider.signature_verification_algorithms,
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(vec![self.cert.clone()], self.key())?;
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(config)
    }

    /// The server configuration: clients must present a certificate the policy admits.
    pub fn server_config(
        &self,
        admission: Admission,
        alpns: &[&[u8]],
    ) -> Result<rustls::ServerConfig, TlsError> {
        let provider = provider();
        let verifier = AdmittedClient {
            admission,
            algorithms: provider.signature_verification_algorithms,
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_single_cert(vec![self.cert.clone()], self.key())?;
        config.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
        Ok(config)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The node key and membership certificate in a peer's certificate.
pub fn peer_identity(
    cert: &CertificateDer<'_>,
) -> Result<(PublicKey, Option<SignedMembershipCert>), rustls::Error> {
    let bad = |why: &str| rustls::Error::General(format!("peer certificate: {why}"));
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| bad("not X.509"))?;
    let spki = parsed.public_key();
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_SIG_ED25519 {
        return Err(bad("not an ed25519 key"));
    }
    let key: [u8; 32] = spki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| bad("bad ed25519 key length"))?;
    let oid = x509_parser::der_parser::oid::Oid::from(MEMBERSHIP_OID)
        .map_err(|_| bad("membership OID"))?;
    let membership = parsed
        .extensions()
        .iter()
        .find(|ext| ext.oid == oid)
        .map(|ext| SignedMembershipCert::decode(ext.value))
        .transpose()
        .map_err(|_| bad("malformed membership certificate"))?;
    Ok((PublicKey(key), membership))
}

/// The handshake-signature methods both verifiers share: TLS 1.3 only, ed25519 only. Expands
/// inside an `impl` of `ServerCertVerifier` or `ClientCertVerifier` for a type with an
/// `algorithms: WebPkiSupportedAlgorithms` field.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("TLS 1.2 is not used".into()))
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
            vec![SignatureScheme::ED25519]
        }
    };
}

#[derive(Debug)]
struct ExpectedPeer {
    expected: PublicKey,
    admission: Admission,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ExpectedPeer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let (key, membership) = peer_identity(end_entity)?;
        if key != self.expected {
            return Err(rustls::Error::General(format!(
                "reached {}, expected {}",
                key.fingerprint(),
                self.expected.fingerprint()
            )));
        }
        self.admission
            .check(&key, membership.as_ref(), now_ms())
            .map_err(|e| rustls::Error::General(format!("the server is not admitted: {e}")))?;
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

#[derive(Debug)]
struct AdmittedClient {
    admission: Admission,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AdmittedClient {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let (key, membership) = peer_identity(end_entity)?;
        self.admission
            .check(&key, membership.as_ref(), now_ms())
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures!();
}
