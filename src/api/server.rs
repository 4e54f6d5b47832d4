//! The API listener: an accept loop over hyper instead of `axum::serve`, so that every
//! connection is bounded. At most [`MAX_CONNECTIONS`] at once and [`MAX_CONNECTIONS_PER_IP`]
//! from one address (beyond that a connection is closed at once); request headers must arrive
//! within [`HEADER_READ_TIMEOUT`], and a connection that moves no byte for [`IDLE_TIMEOUT`] (or
//! none at all in its first [`HEADER_READ_TIMEOUT`]) is closed, so half-sent requests cannot
//! pile up (slowloris) and `/ha/health` keeps answering. HTTP/1.1 and HTTP/2 (gRPC) share the
//! port, in the clear or, with a certificate, over TLS.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Connections served at once; more are closed as soon as they are accepted.
pub const MAX_CONNECTIONS: usize = 1024;
/// Connections served at once from one client address.
pub const MAX_CONNECTIONS_PER_IP: usize = 64;
/// Longest a client may take to send a request's headers (and to start sending anything).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no byte read or written for this long is closed. HTTP/2 connections (gRPC
/// watchers that only receive) stay busy through keep-alive pings, sent far more often.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often an HTTP/2 connection is pinged, and how long the answer may take.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors, say) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// What the listener counts, for `/metrics`.
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// Connections closed at once because [`MAX_CONNECTIONS`] were open.
    pub refused_total: AtomicU64,
    /// Connections closed at once because their address had [`MAX_CONNECTIONS_PER_IP`] open.
    pub refused_per_ip: AtomicU64,
    /// Connections closed for sending nothing, or headers too slowly, or going idle.
    pub timed_out: AtomicU64,
    /// TLS handshakes that failed.
    pub tls_failed: AtomicU64,
    /// Mutating calls refused for want of loopback or the token.
    pub denied: AtomicU64,
    /// Mutating POSTs refused for not declaring a JSON body.
    pub not_json: AtomicU64,
    /// Requests refused for a body over the limit.
    pub body_too_large: AtomicU64,
}

impl ServerCounters {
    /// Sets the listener's series (call under the node's metrics recorder).
    pub fn record(&self) {
        use metrics::counter;
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for (reason, n) in [
            ("total_cap", read(&self.refused_total)),
            ("per_ip_cap", read(&self.refused_per_ip)),
        ] {
            counter!("meshd_http_connections_refused_total", "reason" => reason).absolute(n);
        }
        counter!("meshd_http_connections_timed_out_total").absolute(read(&self.timed_out));
        counter!("meshd_http_tls_handshakes_failed_total").absolute(read(&self.tls_failed));
        for (reason, n) in [
            ("access", read(&self.denied)),
            ("not_json", read(&self.not_json)),
            ("body_too_large", read(&self.body_too_large)),
        ] {
            counter!("meshd_http_requests_refused_total", "reason" => reason).absolute(n);
        }
    }

    /// Counts a mutating call refused by the access policy.
    pub fn count_denied(&self) {
        self.denied.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request whose body was over the limit.
    pub fn count_body_too_large(&self) {
        self.body_too_large.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a mutating POST without a JSON content type.
    pub fn count_not_json(&self) {
        self.not_json.fetch_add(1, Ordering::Relaxed);
    }
}

/// Open connections, overall and per client address.
#[derive(Debug, Default)]
struct Slots {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One taken slot; gives it back when dropped.
struct Slot {
    slots: Arc<Slots>,
    ip: IpAddr,
}

/// Why a connection got no slot.
enum Full {
    Total,
    PerIp,
}

impl Slots {
    fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Full> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.0 >= MAX_CONNECTIONS {
            return Err(Full::Total);
        }
        let from_ip = open.1.entry(ip).or_default();
        if *from_ip >= MAX_CONNECTIONS_PER_IP {
            return Err(Full::PerIp);
        }
        *from_ip += 1;
        open.0 += 1;
        Ok(Slot {
            slots: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown` completes, then
/// lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    counters: Arc<ServerCounters>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Slots::default());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let slot = match slots.take(peer.ip()) {
            Ok(slot) => slot,
            Err(full) => {
                let counter = match full {
                    Full::Total => &counters.refused_total,
                    Full::PerIp => &counters.refused_per_ip,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                continue; // dropping the stream closes it
            }
        };
        let connection = Connection {
            app: app.clone(),
            tls: tls.clone(),
            counters: counters.clone(),
            watcher: graceful.watcher(),
            peer,
        };
        tokio::spawn(async move {
            let _slot = slot;
            connection.run(stream).await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// One accepted connection and what serving it needs.
struct Connection {
    app: Router,
    tls: Option<TlsAcceptor>,
    counters: Arc<ServerCounters>,
    watcher: Watcher,
    peer: SocketAddr,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let stream = IdleTimeout::new(stream);
        match self.tls.clone() {
            None => self.serve_http(stream).await,
            Some(acceptor) => {
                let handshake = tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream));
                match handshake.await {
                    Ok(Ok(tls)) => self.serve_http(tls).await,
                    Ok(Err(e)) => {
                        self.counters.tls_failed.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    async fn serve_http<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = self.peer;
        let app = self.app;
        // The handlers read the caller's address as axum's `ConnectInfo`.
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        if let Err(e) = self.watcher.watch(connection.into_owned()).await {
            if is_timeout(&*e) {
                self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
        }
    }
}

/// True when a connection error (hyper's, or our idle timer's under it) is a timeout.
fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if let Some(hyper_err) = err.downcast_ref::<hyper::Error>() {
            if hyper_err.is_timeout() {
                return true;
            }
        }
        if let Some(io_err) = err.downcast_ref::<io::Error>() {
            if io_err.kind() == io::ErrorKind::TimedOut {
                return true;
            }
        }
        cause = err.source();
    }
    false
}

/// A stream that fails with `TimedOut` once no byte has moved for [`IDLE_TIMEOUT`], or within
/// [`HEADER_READ_TIMEOUT`] of the start when none has moved at all.
struct IdleTimeout<S> {
    inner: S,
    deadline: Pin<Box<Sleep>>,
}

impl<S> IdleTimeout<S> {
    fn new(inner: S) -> Self {
        IdleTimeout {
            inner,
            deadline: Box::pin(tokio::time::sleep(HEADER_READ_TIMEOUT)),
        }
    }

    fn touched(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + IDLE_TIMEOUT);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle for too long")
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.touched();
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.touched();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Reads the API's TLS certificate chain and key (PEM files) into an acceptor.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--api-tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--api-tls-cert {} holds no PEM certificate",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|e| format!("--api-tls-key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("API TLS config: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| format!("--api-tls-cert/--api-tls-key do not match or are unusable: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cap_per_address_and_overall_and_come_back() {
        let slots = Arc::new(Slots::default());
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let mut held: Vec<Slot> = (0..MAX_CONNECTIONS_PER_IP)
            .map(|_| slots.take(a).ok().expect("room"))
            .collect();
        assert!(matches!(slots.take(a), Err(Full::PerIp)));
        held.pop();
        assert!(slots.take(a).is_ok(), "a slot comes back when dropped");
        let mut others = Vec::new();
        for i in 0..MAX_CONNECTIONS {
            let ip = IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8]);
            match slots.take(ip) {
                Ok(slot) => others.push(slot),
                Err(Full::Total) => break,
                Err(Full::PerIp) => panic!("one each"),
            }
        }
        assert_eq!(others.len() + held.len(), MAX_CONNECTIONS);
        drop(others);
        drop(held);
        let open = slots.open.lock().expect("lock");
        assert_eq!((open.0, open.1.len()), (0, 0));
    }
}
