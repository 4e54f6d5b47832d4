//! QUIC transport for full-state push-pull exchanges.
//!
//! Each node has a fresh self-signed certificate. Clients accept any server certificate: push-pull
//! carries only membership data that every member gossips anyway, so we get encryption against
//! passive observers but no peer authentication. Authenticating peers (a shared CA or key) is
//! future work.
//!
//! Protocol, one exchange per connection: the initiator opens a bidirectional stream, writes its
//! `PushPull` payload and finishes; the responder reads to the end, answers with its own payload
//! and finishes; the initiator reads to the end and closes the connection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ClientConfig, Connection, Endpoint, EndpointConfig, ServerConfig, TransportConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use tokio::sync::Semaphore;

use super::socket::SharedSocket;

/// ALPN protocol id; a peer speaking anything else is refused during the handshake.
pub const ALPN: &[u8] = b"meshd/1";

/// Largest push-pull message accepted in either direction. A full table of 10,000 members with
/// metadata is well under this; the cap stops a broken peer from exhausting memory.
pub const MAX_PUSH_PULL_BYTES: usize = 16 * 1024 * 1024;

/// Default bound on one whole exchange (connect, send, receive).
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(3);

/// Server name sent in the TLS handshake; certificates are not verified against it.
const SERVER_NAME: &str = "meshd";

/// Idle connections are closed after this long, so a vanished peer frees its state.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Application close code for a completed exchange.
const CLOSE_DONE: u32 = 0;

/// Stream reset code when our side rejects the peer's payload.
const REFUSED: u32 = 1;

/// Push-pull exchanges served at once; more are refused so a flood cannot exhaust memory.
pub const MAX_CONCURRENT_SERVES: usize = 64;

/// Why a push-pull exchange failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// The whole exchange did not finish within its timeout.
    Timeout,
    /// Connecting failed (bad address, endpoint closed).
    Connect(quinn::ConnectError),
    /// The handshake or the connection failed.
    Connection(quinn::ConnectionError),
    /// Writing our payload failed.
    Write(String),
    /// Reading the peer's payload failed or it exceeded the size cap.
    Read(quinn::ReadToEndError),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::Timeout => write!(f, "timed out"),
            ExchangeError::Connect(e) => write!(f, "connect: {e}"),
            ExchangeError::Connection(e) => write!(f, "connection: {e}"),
            ExchangeError::Write(e) => write!(f, "write: {e}"),
            ExchangeError::Read(e) => write!(f, "read: {e}"),
        }
    }
}

impl std::error::Error for ExchangeError {}

/// Builds the QUIC endpoint over the shared socket, as both server and client.
pub fn endpoint(socket: Arc<SharedSocket>) -> Result<Endpoint, String> {
    let mut endpoint_config = EndpointConfig::default();
    // SWIM is told from QUIC by the 0x40 bit, so QUIC must always set it.
    endpoint_config.grease_quic_bit(false);
    let runtime = Arc::new(quinn::TokioRuntime);
    let mut endpoint = Endpoint::new_with_abstract_socket(
        endpoint_config,
        Some(server_config()?),
        socket,
        runtime,
    )
    .map_err(|e| format!("creating QUIC endpoint: {e}"))?;
    endpoint.set_default_client_config(client_config()?);
    Ok(endpoint)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport() -> Arc<TransportConfig> {
    let mut transport = TransportConfig::default();
    transport.max_concurrent_uni_streams(0u32.into());
    // One exchange per connection, so one bidirectional stream is all a peer may open.
    transport.max_concurrent_bidi_streams(1u32.into());
    if let Ok(idle) = IDLE_TIMEOUT.try_into() {
        transport.max_idle_timeout(Some(idle));
    }
    Arc::new(transport)
}

/// Server side: a fresh self-signed certificate, TLS 1.3, ALPN `meshd/1`.
fn server_config() -> Result<ServerConfig, String> {
    let certified = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])
        .map_err(|e| format!("generating certificate: {e}"))?;
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS server config: {e}"))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| format!("TLS server certificate: {e}"))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| format!("QUIC server config: {e}"))?;
    let mut config = ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
}

/// Client side: TLS 1.3, ALPN `meshd/1`, any server certificate accepted (see module docs).
fn client_config() -> Result<ClientConfig, String> {
    let provider = provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS client config: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert { provider }))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| format!("QUIC client config: {e}"))?;
    let mut config = ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
}

/// Accepts any server certificate but still checks handshake signatures, so the session key is
/// bound to the certificate the server presented. No authentication (see module docs).
#[derive(Debug)]
struct AcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
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

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Runs one push-pull exchange as the initiator: sends `payload`, returns the peer's reply.
pub async fn exchange(
    endpoint: &Endpoint,
    peer: SocketAddr,
    payload: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, ExchangeError> {
    match tokio::time::timeout(timeout, exchange_inner(endpoint, peer, payload)).await {
        Ok(result) => result,
        Err(_) => Err(ExchangeError::Timeout),
    }
}

async fn exchange_inner(
    endpoint: &Endpoint,
    peer: SocketAddr,
    payload: &[u8],
) -> Result<Vec<u8>, ExchangeError> {
    let connecting = endpoint
        .connect(peer, SERVER_NAME)
        .map_err(ExchangeError::Connect)?;
    let connection = connecting.await.map_err(ExchangeError::Connection)?;
    let result = request(&connection, payload).await;
    connection.close(CLOSE_DONE.into(), b"done");
    result
}

async fn request(connection: &Connection, payload: &[u8]) -> Result<Vec<u8>, ExchangeError> {
    let (mut send, mut recv) = connection
        .open_bi()
        .await
        .map_err(ExchangeError::Connection)?;
    send.write_all(payload)
        .await
        .map_err(|e| ExchangeError::Write(e.to_string()))?;
    send.finish()
        .map_err(|e| ExchangeError::Write(e.to_string()))?;
    recv.read_to_end(MAX_PUSH_PULL_BYTES)
        .await
        .map_err(ExchangeError::Read)
}

/// Accepts connections until the endpoint closes; each connection's one request stream is
/// answered with what `respond` returns for its bytes (`None` resets the stream). Every
/// connection is bounded by `timeout`; beyond [`MAX_CONCURRENT_SERVES`] new ones are refused.
pub async fn serve<F, Fut>(endpoint: Endpoint, respond: F, timeout: Duration)
where
    F: Fn(SocketAddr, Vec<u8>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Option<Vec<u8>>> + Send,
{
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_SERVES));
    while let Some(incoming) = endpoint.accept().await {
        let peer = incoming.remote_address();
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many push-pull exchanges in progress; refusing");
            incoming.refuse();
            continue;
        };
        let respond = respond.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(timeout, serve_connection(incoming, respond)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::debug!(%peer, error = %err, "push-pull serve failed"),
                Err(_) => tracing::debug!(%peer, "push-pull serve timed out"),
            }
        });
    }
}

async fn serve_connection<F, Fut>(incoming: quinn::Incoming, respond: F) -> Result<(), String>
where
    F: Fn(SocketAddr, Vec<u8>) -> Fut,
    Fut: Future<Output = Option<Vec<u8>>>,
{
    let connection = incoming.await.map_err(|e| format!("handshake: {e}"))?;
    let peer = connection.remote_address();
    let (mut send, mut recv) = connection
        .accept_bi()
        .await
        .map_err(|e| format!("accept stream: {e}"))?;
    let request = recv
        .read_to_end(MAX_PUSH_PULL_BYTES)
        .await
        .map_err(|e| format!("read request: {e}"))?;
    match respond(peer, request).await {
        Some(reply) => {
            send.write_all(&reply)
                .await
                .map_err(|e| format!("write reply: {e}"))?;
            send.finish().map_err(|e| format!("finish reply: {e}"))?;
        }
        None => {
            send.reset(REFUSED.into()).ok();
        }
    }
    // Keep the connection until the initiator closes it after reading our reply: dropping it
    // earlier could discard reply bytes not yet acknowledged.
    match connection.closed().await {
        quinn::ConnectionError::ApplicationClosed(_) | quinn::ConnectionError::LocallyClosed => {
            Ok(())
        }
        err => Err(format!("connection: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::socket::{SocketCounters, SwimDatagram};
    use std::sync::atomic::Ordering;
    use tokio::net::UdpSocket;
    use tokio::sync::mpsc;

    async fn node() -> (Endpoint, SocketAddr, mpsc::Receiver<SwimDatagram>) {
        let (endpoint, addr, rx, _) = counted_node().await;
        (endpoint, addr, rx)
    }

    async fn counted_node() -> (
        Endpoint,
        SocketAddr,
        mpsc::Receiver<SwimDatagram>,
        Arc<SocketCounters>,
    ) {
        let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind loopback"));
        let addr = udp.local_addr().expect("local addr");
        let (tx, rx) = mpsc::channel(16);
        let socket = Arc::new(SharedSocket::new(udp, tx));
        let counters = socket.counters().clone();
        let endpoint = endpoint(socket).expect("endpoint");
        (endpoint, addr, rx, counters)
    }

    #[tokio::test]
    async fn quic_packets_are_counted_with_their_overhead() {
        let (server, server_addr, _server_swim, server_counts) = counted_node().await;
        let (client, _client_addr, _client_swim, client_counts) = counted_node().await;
        tokio::spawn(serve(
            server.clone(),
            |_peer, _request: Vec<u8>| async move { Some(vec![7; 10]) },
            EXCHANGE_TIMEOUT,
        ));
        let reply = exchange(&client, server_addr, &[1; 10], Duration::from_secs(5))
            .await
            .expect("exchange");
        assert_eq!(reply, vec![7; 10]);
        let sent = |c: &SocketCounters| c.quic_bytes_sent.load(Ordering::Relaxed);
        let received = |c: &SocketCounters| c.quic_bytes_received.load(Ordering::Relaxed);
        // Ten bytes each way, but a QUIC handshake (client hello, certificate, finished)
        // costs hundreds of bytes more in each direction.
        assert!(
            sent(&client_counts) > 500,
            "client sent {}",
            sent(&client_counts)
        );
        assert!(
            sent(&server_counts) > 500,
            "server sent {}",
            sent(&server_counts)
        );
        // What the client received, the server sent (loopback loses nothing); packets still
        // in flight when the reply arrived are the only difference.
        assert!(received(&client_counts) > 500);
        assert!(received(&client_counts) <= sent(&server_counts));
    }

    #[tokio::test]
    async fn push_pull_round_trip_over_quic() {
        let (server, server_addr, _server_swim) = node().await;
        let (client, _client_addr, _client_swim) = node().await;
        tokio::spawn(serve(
            server.clone(),
            |_peer, request: Vec<u8>| async move {
                let mut reply = b"reply:".to_vec();
                reply.extend_from_slice(&request);
                Some(reply)
            },
            EXCHANGE_TIMEOUT,
        ));
        let payload = vec![0xAB; 100_000];
        let reply = exchange(&client, server_addr, &payload, Duration::from_secs(5))
            .await
            .expect("exchange");
        assert_eq!(&reply[..6], b"reply:");
        assert_eq!(&reply[6..], &payload[..]);
        // A second exchange on fresh connections works too.
        let reply = exchange(&client, server_addr, b"again", Duration::from_secs(5))
            .await
            .expect("second exchange");
        assert_eq!(reply, b"reply:again");
    }

    #[tokio::test]
    async fn swim_and_quic_share_the_socket() {
        let (server, server_addr, mut server_swim) = node().await;
        let (client, _client_addr, _client_swim) = node().await;
        tokio::spawn(serve(
            server.clone(),
            |_p, r: Vec<u8>| async move { Some(r) },
            EXCHANGE_TIMEOUT,
        ));
        let sender = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        sender
            .send_to(&[0x01, 0xEE], server_addr)
            .await
            .expect("send");
        let reply = exchange(&client, server_addr, b"x", Duration::from_secs(5)).await;
        assert_eq!(reply.ok(), Some(b"x".to_vec()));
        let got = tokio::time::timeout(Duration::from_secs(5), server_swim.recv()).await;
        assert_eq!(got.ok().flatten().map(|d| d.bytes), Some(vec![0x01, 0xEE]));
    }

    #[tokio::test]
    async fn a_refused_payload_is_an_error_for_the_initiator() {
        let (server, server_addr, _server_swim) = node().await;
        let (client, _client_addr, _client_swim) = node().await;
        tokio::spawn(serve(
            server.clone(),
            |_p, _r: Vec<u8>| async { None },
            EXCHANGE_TIMEOUT,
        ));
        let result = exchange(&client, server_addr, b"bad", Duration::from_secs(5)).await;
        assert!(matches!(result, Err(ExchangeError::Read(_))), "{result:?}");
    }

    #[tokio::test]
    async fn exchange_with_nobody_times_out() {
        let (client, _addr, _swim) = node().await;
        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = silent.local_addr().expect("addr");
        let result = exchange(&client, addr, b"x", Duration::from_millis(300)).await;
        assert!(matches!(result, Err(ExchangeError::Timeout)), "{result:?}");
    }
}
