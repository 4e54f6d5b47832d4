//! Mutual TLS for the QUIC push-pull whose trust is the cluster keyring.
//!
//! Every holder of a cluster key derives the same Ed25519 key pair and the same certificate
//! from it (the key pair's seed is an HMAC of the key over the cluster label; the certificate is
//! self-signed, with fixed dates and a serial derived from the public key, so it is the same
//! bytes at every node). Both ends of a connection present the certificate of one of their keys
//! and accept the peer's only if it is byte for byte the certificate of a key they hold; the
//! TLS 1.3 handshake then proves the peer holds its private key, which only a key holder can
//! derive. So only holders of an installed key (under the same label) can open or accept a
//! push-pull, and an outsider learns no more than that a QUIC endpoint answers, plus the key ids
//! offered in the handshake (public names, see [`crate::seal::KeyId`]).
//!
//! Rotation: each side offers the key ids it holds (the client as the server name it asks for,
//! `k<id>.k<id>….meshd`, primary first; the server as the certificate authorities it accepts),
//! and each picks a key the other holds, preferring its own primary, so two members with one key
//! in common connect whatever their primaries are.
//!
//! Without a configured key the same code runs on a public, built-in key: the exchange is
//! encrypted against passive observers but anyone can connect, as before keys existed.

use std::fmt;
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ClientConfig, ServerConfig, TransportConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::seal::{Key, KeyId};

/// ALPN id of the push-pull exchange; a peer speaking anything else is refused.
pub const ALPN_PUSH_PULL: &[u8] = b"meshd/1";
/// ALPN id of the keyring commands (install, use, remove, list) between members.
pub const ALPN_KEYS: &[u8] = b"meshd-keys/1";
/// ALPN id of the replicated stores' anti-entropy steps.
pub const ALPN_STORE: &[u8] = b"meshd-store/1";

/// Context of the HMAC that turns a cluster key and label into a TLS key pair seed.
const IDENTITY_CONTEXT: &[u8] = b"meshd quic identity v1\0";

/// The key used when none is configured: public, so it authenticates nothing.
const OPEN_KEY_SEED: [u8; 32] = *b"meshd: no cluster key configured";

/// A PKCS#8 v1 document for an Ed25519 key is this prefix and the 32-byte seed (RFC 8410).
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The TLS identity every holder of one cluster key shares.
struct Identity {
    /// The certificate and signing key presented.
    certified: Arc<CertifiedKey>,
    /// The DNS label that stands for this key in the server name a client asks for.
    dns_label: String,
    /// The name a server lists among the certificate authorities it accepts for this key.
    hint: DistinguishedName,
}

impl Identity {
    fn derive(key: &Key, label: &[u8], provider: &CryptoProvider) -> Result<Self, String> {
        let mut context = IDENTITY_CONTEXT.to_vec();
        context.extend_from_slice(label);
        let seed = key.derive(&context);
        let mut pkcs8 = ED25519_PKCS8_PREFIX.to_vec();
        pkcs8.extend_from_slice(&seed);
        let der = PrivatePkcs8KeyDer::from(pkcs8);
        let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)
            .map_err(|e| format!("deriving the cluster TLS key: {e}"))?;
        let id = key.id();
        let mut params = rcgen::CertificateParams::new(vec![format!("{}.meshd", dns_label(id))])
            .map_err(|e| format!("cluster certificate: {e}"))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("meshd cluster key {id}"));
        let cert = params
            .self_signed(&pair)
            .map_err(|e| format!("cluster certificate: {e}"))?;
        let signing = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(der))
            .map_err(|e| format!("cluster TLS key: {e}"))?;
        Ok(Identity {
            certified: Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing)),
            dns_label: dns_label(id),
            hint: DistinguishedName::from(common_name_der(&format!("meshd-key-{id}"))),
        })
    }

    fn cert(&self) -> &CertificateDer<'static> {
        // `derive` always builds a chain of one certificate.
        &self.certified.cert[0]
    }
}

/// The DNS label that stands for key `id` (17 characters: 8 keys fit a server name).
fn dns_label(id: KeyId) -> String {
    format!("k{id}")
}

/// DER of an X.501 Name holding one common name (short enough for one-byte lengths).
fn common_name_der(cn: &str) -> Vec<u8> {
    const COMMON_NAME_OID: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];
    let value_len = cn.len() as u8;
    let attribute_len = COMMON_NAME_OID.len() as u8 + 2 + value_len;
    let mut der = vec![
        0x30,
        attribute_len + 4,
        0x31,
        attribute_len + 2,
        0x30,
        attribute_len,
    ];
    der.extend_from_slice(&COMMON_NAME_OID);
    der.extend_from_slice(&[0x0c, value_len]);
    der.extend_from_slice(cn.as_bytes());
    der
}

/// The identities of every installed key, the primary first. Immutable: a keyring change
/// builds new ones (and new TLS configs).
struct Identities {
    list: Vec<Identity>,
    provider: Arc<CryptoProvider>,
    hints: Vec<DistinguishedName>,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.list.iter().map(|i| i.dns_label.as_str()).collect();
        f.debug_struct("Identities").field("keys", &names).finish()
    }
}

impl Identities {
    fn primary(&self) -> Arc<CertifiedKey> {
        // Built from a non-empty keyring.
        self.list[0].certified.clone()
    }

    fn is_trusted(
        &self,
        presented: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> bool {
        intermediates.is_empty()
            && self
                .list
                .iter()
                .any(|i| i.cert().as_ref() == presented.as_ref())
    }

    fn verify_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
}

fn untrusted() -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure)
}

/// Verifies servers (client side) and clients (server side) the same way.
#[derive(Debug)]
struct KeyringVerifier(Arc<Identities>);

impl ServerCertVerifier for KeyringVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.0.is_trusted(end_entity, intermediates) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(untrusted())
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is offered; a TLS 1.2 signature is never valid here.
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
        self.0.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for KeyringVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.0.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self.0.is_trusted(end_entity, intermediates) {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(untrusted())
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Server side: the certificate of the first of our keys (primary first) that the client
/// holds, as its server name lists them; else our primary's.
#[derive(Debug)]
struct ServerIdentity(Arc<Identities>);

impl ResolvesServerCert for ServerIdentity {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offered: Vec<&str> = hello.server_name().unwrap_or("").split('.').collect();
        let chosen = self
            .0
            .list
            .iter()
            .find(|i| offered.contains(&i.dns_label.as_str()));
        Some(chosen.map_or_else(|| self.0.primary(), |i| i.certified.clone()))
    }
}

/// Client side: the certificate of a key the server accepts (our primary first), else our
/// primary's.
#[derive(Debug)]
struct ClientIdentity(Arc<Identities>);

impl ResolvesClientCert for ClientIdentity {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let accepted = |i: &&Identity| root_hint_subjects.contains(&i.hint.as_ref());
        let chosen = self.0.list.iter().find(accepted);
        Some(chosen.map_or_else(|| self.0.primary(), |i| i.certified.clone()))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The QUIC configs of one keyring: the server's, a client's per protocol, and the server
/// name a client asks for.
#[derive(Clone, Debug)]
pub struct TlsConfigs {
    /// For the endpoint: accepts both protocols, requires a client certificate.
    pub server: ServerConfig,
    /// For push-pull exchanges.
    pub push_pull: ClientConfig,
    /// For keyring commands.
    pub keys: ClientConfig,
    /// For the stores' anti-entropy.
    pub store: ClientConfig,
    /// The server name to connect with: the labels of all our keys, primary first.
    pub server_name: String,
}

impl TlsConfigs {
    /// Configs trusting `keys` (the primary first) under `label`; with no keys, the public
    /// built-in key (no authentication).
    pub fn new(
        keys: &[Key],
        label: &[u8],
        transport: Arc<TransportConfig>,
    ) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let open_key = Key::from_bytes(OPEN_KEY_SEED);
        let keys = if keys.is_empty() {
            std::slice::from_ref(&open_key)
        } else {
            keys
        };
        let list = keys
            .iter()
            .map(|k| Identity::derive(k, label, &provider))
            .collect::<Result<Vec<_>, _>>()?;
        let hints = list.iter().map(|i| i.hint.clone()).collect();
        let labels: Vec<&str> = list.iter().map(|i| i.dns_label.as_str()).collect();
        let server_name = format!("{}.meshd", labels.join("."));
        let identities = Arc::new(Identities {
            list,
            provider: provider.clone(),
            hints,
        });
        let verifier = Arc::new(KeyringVerifier(identities.clone()));

        let mut server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("TLS server config: {e}"))?
            .with_client_cert_verifier(verifier.clone())
            .with_cert_resolver(Arc::new(ServerIdentity(identities.clone())));
        server_tls.alpn_protocols = vec![
            ALPN_PUSH_PULL.to_vec(),
            ALPN_KEYS.to_vec(),
            ALPN_STORE.to_vec(),
        ];
        let crypto = QuicServerConfig::try_from(server_tls)
            .map_err(|e| format!("QUIC server config: {e}"))?;
        let mut server = ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(transport.clone());

        let client = |alpn: &[u8]| -> Result<ClientConfig, String> {
            let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| format!("TLS client config: {e}"))?
                .dangerous()
                .with_custom_certificate_verifier(verifier.clone())
                .with_client_cert_resolver(Arc::new(ClientIdentity(identities.clone())));
            tls.alpn_protocols = vec![alpn.to_vec()];
            let crypto =
                QuicClientConfig::try_from(tls).map_err(|e| format!("QUIC client config: {e}"))?;
            let mut config = ClientConfig::new(Arc::new(crypto));
            config.transport_config(transport.clone());
            Ok(config)
        };
        Ok(TlsConfigs {
            server,
            push_pull: client(ALPN_PUSH_PULL)?,
            keys: client(ALPN_KEYS)?,
            store: client(ALPN_STORE)?,
            server_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::KEY_BYTES;

    fn key(byte: u8) -> Key {
        Key::from_bytes([byte; KEY_BYTES])
    }

    fn identities(keys: &[Key], label: &[u8]) -> Identities {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let list: Vec<Identity> = keys
            .iter()
            .map(|k| Identity::derive(k, label, &provider).expect("derived"))
            .collect();
        let hints = list.iter().map(|i| i.hint.clone()).collect();
        Identities {
            list,
            provider,
            hints,
        }
    }

    #[test]
    fn every_holder_derives_the_same_certificate() {
        let a = identities(&[key(1)], b"prod");
        let b = identities(&[key(2), key(1)], b"prod");
        assert_eq!(a.list[0].cert(), b.list[1].cert());
        assert!(b.is_trusted(a.list[0].cert(), &[]));
        assert!(
            !a.is_trusted(b.list[0].cert(), &[]),
            "key 2 is not held by a"
        );
        let other_label = identities(&[key(1)], b"test");
        assert!(!a.is_trusted(other_label.list[0].cert(), &[]));
        assert!(
            !b.is_trusted(a.list[0].cert(), &[a.list[0].cert().clone()]),
            "no chains"
        );
    }

    #[test]
    fn common_name_der_is_valid_der() {
        let der = common_name_der("meshd-key-0011223344556677");
        // SEQUENCE(SET(SEQUENCE(OID, UTF8String))) with lengths that add up.
        assert_eq!(der[0], 0x30);
        assert_eq!(usize::from(der[1]), der.len() - 2);
        assert_eq!(der[2], 0x31);
        assert_eq!(usize::from(der[3]), der.len() - 4);
        assert_eq!(der[4], 0x30);
        assert_eq!(usize::from(der[5]), der.len() - 6);
        assert!(der.ends_with(b"meshd-key-0011223344556677"));
    }

    #[test]
    fn the_client_offers_a_key_the_server_accepts() {
        let client = identities(&[key(2), key(1)], b"");
        let server = identities(&[key(1)], b"");
        let hints: Vec<&[u8]> = server.hints.iter().map(|h| h.as_ref()).collect();
        let resolver = ClientIdentity(Arc::new(client));
        let chosen = resolver.resolve(&hints, &[]).expect("a certificate");
        assert!(server.is_trusted(&chosen.cert[0], &[]));
        let no_hints = resolver.resolve(&[], &[]).expect("primary");
        assert!(
            !server.is_trusted(&no_hints.cert[0], &[]),
            "primary is key 2"
        );
    }
}
