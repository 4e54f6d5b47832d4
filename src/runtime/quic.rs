//! QUIC transport for full-state push-pull exchanges and keyring commands between members.
//!
//! Both ends authenticate each other with certificates derived from the cluster keyring (see
//! [`super::tls`]): only holders of an installed key can open or accept a connection.
//!
//! Protocol, one request per connection: the initiator opens a bidirectional stream, writes its
//! message (a `PushPull` payload, or a keyring command for ALPN `meshd-keys/1`) and finishes;
//! the responder reads to the end, answers and finishes; the initiator reads to the end and
//! closes the connection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{ClientConfig, Connection, Endpoint, EndpointConfig, TransportConfig};
use tokio::sync::Semaphore;

use super::socket::SharedSocket;
use super::tls::{TlsConfigs, ALPN_KEYS, ALPN_STORE};

/// Largest push-pull message accepted in either direction. A full table of 10,000 members with
/// metadata is well under this; the cap stops a broken peer from exhausting memory.
pub const MAX_PUSH_PULL_BYTES: usize = crate::swim::codec::MAX_PUSH_PULL_BYTES;

/// Default bound on one whole exchange (connect, send, receive).
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(3);

/// Idle connections are closed after this long, so a vanished peer frees its state.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Application close code for a completed exchange.
const CLOSE_DONE: u32 = 0;

/// Stream reset code when our side rejects the peer's payload.
const REFUSED: u32 = 1;

/// Push-pull exchanges served at once; more are refused so a flood cannot exhaust memory.
pub const MAX_CONCURRENT_SERVES: usize = 64;

/// QUIC errors 0x100-0x1ff carry a TLS alert: the handshake itself failed.
const CRYPTO_ERROR_RANGE: std::ops::RangeInclusive<u64> = 0x100..=0x1ff;

/// Which request a connection carries, from its ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// A full-state push-pull exchange.
    PushPull,
    /// A keyring command (install, use, remove, list).
    Keys,
    /// One step of the stores' anti-entropy.
    Store,
}

/// How to reach peers for one protocol: the client config of the current keyring and the
/// server name to ask for.
#[derive(Clone, Debug)]
pub struct Dial {
    /// TLS and transport settings, ALPN included.
    pub config: ClientConfig,
    /// Server name sent in the handshake (names our primary key).
    pub server_name: String,
}

impl TlsConfigs {
    /// How to dial push-pull exchanges with this keyring.
    pub fn push_pull_dial(&self) -> Dial {
        Dial {
            config: self.push_pull.clone(),
            server_name: self.server_name.clone(),
        }
    }

    /// How to dial keyring commands with this keyring.
    pub fn keys_dial(&self) -> Dial {
        Dial {
            config: self.keys.clone(),
            server_name: self.server_name.clone(),
        }
    }

    /// How to dial the stores' anti-entropy with this keyring.
    pub fn store_dial(&self) -> Dial {
        Dial {
            config: self.store.clone(),
            server_name: self.server_name.clone(),
        }
    }
}

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

impl ExchangeError {
    /// True when the peer answered but the TLS handshake failed: it holds none of our keys
    /// (or runs under another cluster label), or it is not a meshd at all.
    pub fn is_handshake_refusal(&self) -> bool {
        let code = match self {
            ExchangeError::Connection(quinn::ConnectionError::TransportError(e)) => e.code,
            ExchangeError::Connection(quinn::ConnectionError::ConnectionClosed(c)) => c.error_code,
            _ => return false,
        };
        CRYPTO_ERROR_RANGE.contains(&u64::from(code))
    }
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

/// Transport settings of every connection, both sides.
pub fn transport() -> Arc<TransportConfig> {
    let mut transport = TransportConfig::default();
    transport.max_concurrent_uni_streams(0u32.into());
    // One exchange per connection, so one bidirectional stream is all a peer may open.
    transport.max_concurrent_bidi_streams(1u32.into());
    if let Ok(idle) = IDLE_TIMEOUT.try_into() {
        transport.max_idle_timeout(Some(idle));
    }
    Arc::new(transport)
}

/// Builds the QUIC endpoint over the shared socket, serving with `tls`'s server config.
pub fn endpoint(socket: Arc<SharedSocket>, tls: &TlsConfigs) -> Result<Endpoint, String> {
    let mut endpoint_config = EndpointConfig::default();
    // SWIM is told from QUIC by the 0x40 bit, so QUIC must always set it.
    endpoint_config.grease_quic_bit(false);
    let runtime = Arc::new(quinn::TokioRuntime);
    Endpoint::new_with_abstract_socket(endpoint_config, Some(tls.server.clone()), socket, runtime)
        .map_err(|e| format!("creating QUIC endpoint: {e}"))
}

/// Runs one request as the initiator, over `dial`'s protocol: sends `payload`, returns the
/// peer's reply.
pub async fn exchange(
    endpoint: &Endpoint,
    dial: &Dial,
    peer: SocketAddr,
    payload: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, ExchangeError> {
    match tokio::time::timeout(timeout, exchange_inner(endpoint, dial, peer, payload)).await {
        Ok(result) => result,
        Err(_) => Err(ExchangeError::Timeout),
    }
}

async fn exchange_inner(
    endpoint: &Endpoint,
    dial: &Dial,
    peer: SocketAddr,
    payload: &[u8],
) -> Result<Vec<u8>, ExchangeError> {
    let connecting = endpoint
        .connect_with(dial.config.clone(), peer, &dial.server_name)
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
/// answered with what `respond` returns for its protocol and bytes (`None` resets the stream).
/// Every connection is bounded by `timeout`; beyond [`MAX_CONCURRENT_SERVES`] new ones are
/// refused.
/// Handshakes that fail (a peer without any of our keys, a foreign certificate, or no meshd at
/// all) are counted in `refused`.
pub async fn serve<F, Fut>(
    endpoint: Endpoint,
    respond: F,
    timeout: Duration,
    refused: Arc<std::sync::atomic::AtomicU64>,
) where
    F: Fn(SocketAddr, Protocol, Vec<u8>) -> Fut + Clone + Send + Sync + 'static,
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
        let refused = refused.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let served = async {
                let connection = match incoming.await {
                    Ok(connection) => connection,
                    Err(e) => {
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return Err(format!("handshake: {e}"));
                    }
                };
                serve_connection(connection, respond).await
            };
            match tokio::time::timeout(timeout, served).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::debug!(%peer, error = %err, "push-pull serve failed"),
                Err(_) => tracing::debug!(%peer, "push-pull serve timed out"),
            }
        });
    }
}

async fn serve_connection<F, Fut>(connection: Connection, respond: F) -> Result<(), String>
where
    F: Fn(SocketAddr, Protocol, Vec<u8>) -> Fut,
    Fut: Future<Output = Option<Vec<u8>>>,
{
    let peer = connection.remote_address();
    let protocol = protocol_of(&connection);
    let (mut send, mut recv) = connection
        .accept_bi()
        .await
        .map_err(|e| format!("accept stream: {e}"))?;
    let request = recv
        .read_to_end(MAX_PUSH_PULL_BYTES)
        .await
        .map_err(|e| format!("read request: {e}"))?;
    match respond(peer, protocol, request).await {
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

/// The protocol the handshake agreed on (the server offers only ours, so anything but the keys
/// and store ALPNs is a push-pull).
fn protocol_of(connection: &Connection) -> Protocol {
    let alpn = connection
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    match alpn.as_deref() {
        Some(ALPN_KEYS) => Protocol::Keys,
        Some(ALPN_STORE) => Protocol::Store,
        _ => Protocol::PushPull,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::socket::{SocketCounters, SwimDatagram};
    use crate::seal::{Key, KEY_BYTES};
    use std::sync::atomic::Ordering;
    use tokio::net::UdpSocket;
    use tokio::sync::mpsc;

    /// One node's endpoint on 127.0.0.1, trusting `keys`.
    struct TestNode {
        endpoint: Endpoint,
        addr: SocketAddr,
        swim: mpsc::Receiver<SwimDatagram>,
        counters: Arc<SocketCounters>,
        dial: Dial,
        keys_dial: Dial,
    }

    fn key(byte: u8) -> Key {
        Key::from_bytes([byte; KEY_BYTES])
    }

    async fn node_with(keys: &[Key]) -> TestNode {
        let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind loopback"));
        let addr = udp.local_addr().expect("local addr");
        let (tx, swim) = mpsc::channel(16);
        let socket = Arc::new(SharedSocket::new(udp, tx));
        let counters = socket.counters().clone();
        let tls = TlsConfigs::new(keys, b"test", transport()).expect("tls configs");
        let endpoint = endpoint(socket, &tls).expect("endpoint");
        TestNode {
            endpoint,
            addr,
            swim,
            counters,
            dial: tls.push_pull_dial(),
            keys_dial: tls.keys_dial(),
        }
    }

    async fn node() -> TestNode {
        node_with(&[]).await
    }

    /// Serves `server`, answering every request with its protocol's name and the request.
    fn serve_echo(server: &TestNode) {
        tokio::spawn(serve(
            server.endpoint.clone(),
            |_peer, protocol, request: Vec<u8>| async move {
                let mut reply = format!("{protocol:?}:").into_bytes();
                reply.extend_from_slice(&request);
                Some(reply)
            },
            EXCHANGE_TIMEOUT,
            Arc::default(),
        ));
    }

    #[tokio::test]
    async fn quic_packets_are_counted_with_their_overhead() {
        let server = node().await;
        let client = node().await;
        tokio::spawn(serve(
            server.endpoint.clone(),
            |_peer, _protocol, _request: Vec<u8>| async move { Some(vec![7; 10]) },
            EXCHANGE_TIMEOUT,
            Arc::default(),
        ));
        let reply = exchange(
            &client.endpoint,
            &client.dial,
            server.addr,
            &[1; 10],
            Duration::from_secs(5),
        )
        .await
        .expect("exchange");
        assert_eq!(reply, vec![7; 10]);
        let (client_counts, server_counts) = (&client.counters, &server.counters);
        let sent = |c: &SocketCounters| c.quic_bytes_sent.load(Ordering::Relaxed);
        let received = |c: &SocketCounters| c.quic_bytes_received.load(Ordering::Relaxed);
        // Ten bytes each way, but a QUIC handshake (client hello, certificate, finished)
        // costs hundreds of bytes more in each direction.
        assert!(
            sent(client_counts) > 500,
            "client sent {}",
            sent(client_counts)
        );
        assert!(
            sent(server_counts) > 500,
            "server sent {}",
            sent(server_counts)
        );
        // What the client received, the server sent (loopback loses nothing); packets still
        // in flight when the reply arrived are the only difference.
        assert!(received(client_counts) > 500);
        assert!(received(client_counts) <= sent(server_counts));
    }

    /// Sends `payload` from `client` to `server` as a push-pull, within 5 s.
    async fn ask(
        client: &TestNode,
        server: &TestNode,
        payload: &[u8],
    ) -> Result<Vec<u8>, ExchangeError> {
        let five = Duration::from_secs(5);
        exchange(&client.endpoint, &client.dial, server.addr, payload, five).await
    }

    #[tokio::test]
    async fn push_pull_round_trip_over_quic() {
        let server = node().await;
        let client = node().await;
        serve_echo(&server);
        let payload = vec![0xAB; 100_000];
        let reply = ask(&client, &server, &payload).await.expect("exchange");
        assert_eq!(&reply[..9], b"PushPull:");
        assert_eq!(&reply[9..], &payload[..]);
        // A second exchange on fresh connections works too.
        let reply = ask(&client, &server, b"again")
            .await
            .expect("second exchange");
        assert_eq!(reply, b"PushPull:again");
    }

    #[tokio::test]
    async fn keyring_commands_arrive_as_their_own_protocol() {
        let server = node_with(&[key(1)]).await;
        let client = node_with(&[key(1)]).await;
        serve_echo(&server);
        let five = Duration::from_secs(5);
        let reply = exchange(
            &client.endpoint,
            &client.keys_dial,
            server.addr,
            b"list",
            five,
        )
        .await
        .expect("exchange");
        assert_eq!(reply, b"Keys:list");
    }

    #[tokio::test]
    async fn only_holders_of_a_common_key_connect() {
        // (client keys, server keys, connects?)
        let cases: &[(&[u8], &[u8], bool)] = &[
            (&[1], &[1], true),
            (&[2, 1], &[1], true), // the client rolled out key 2 first
            (&[1], &[2, 1], true), // the server did
            (&[2, 1], &[3, 1], true),
            (&[1], &[2], false),
            (&[], &[1], false), // no key against a keyed cluster
            (&[1], &[], false),
        ];
        for (client_keys, server_keys, connects) in cases {
            let keys = |bytes: &[u8]| bytes.iter().map(|b| key(*b)).collect::<Vec<_>>();
            let server = node_with(&keys(server_keys)).await;
            let client = node_with(&keys(client_keys)).await;
            let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let counter = served.clone();
            tokio::spawn(serve(
                server.endpoint.clone(),
                move |_peer, _protocol, request: Vec<u8>| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    async move { Some(request) }
                },
                EXCHANGE_TIMEOUT,
                refused.clone(),
            ));
            let what = format!("client {client_keys:?} server {server_keys:?}");
            let result = ask(&client, &server, b"table").await;
            if *connects {
                assert_eq!(result.ok(), Some(b"table".to_vec()), "{what}");
            } else {
                let err = result.expect_err(&what);
                assert!(err.is_handshake_refusal(), "{what}: {err}");
                assert_eq!(
                    served.load(Ordering::Relaxed),
                    0,
                    "{what}: request never served"
                );
            }
        }
    }

    #[tokio::test]
    async fn swim_and_quic_share_the_socket() {
        let mut server = node().await;
        let client = node().await;
        serve_echo(&server);
        let sender = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        sender
            .send_to(&[0x01, 0xEE], server.addr)
            .await
            .expect("send");
        let reply = ask(&client, &server, b"x").await;
        assert_eq!(reply.ok(), Some(b"PushPull:x".to_vec()));
        let got = tokio::time::timeout(Duration::from_secs(5), server.swim.recv()).await;
        assert_eq!(got.ok().flatten().map(|d| d.bytes), Some(vec![0x01, 0xEE]));
    }

    #[tokio::test]
    async fn a_refused_payload_is_an_error_for_the_initiator() {
        let server = node().await;
        let client = node().await;
        tokio::spawn(serve(
            server.endpoint.clone(),
            |_p, _protocol, _r: Vec<u8>| async { None },
            EXCHANGE_TIMEOUT,
            Arc::default(),
        ));
        let result = ask(&client, &server, b"bad").await;
        assert!(matches!(result, Err(ExchangeError::Read(_))), "{result:?}");
    }

    #[tokio::test]
    async fn exchange_with_nobody_times_out() {
        let client = node().await;
        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = silent.local_addr().expect("addr");
        let result = exchange(
            &client.endpoint,
            &client.dial,
            addr,
            b"x",
            Duration::from_millis(300),
        )
        .await;
        assert!(matches!(result, Err(ExchangeError::Timeout)), "{result:?}");
    }
}
