//! The one UDP socket shared by SWIM and QUIC, and the demultiplexer between them.
//!
//! quinn's endpoint driver is the only reader of the socket: it calls [`SharedSocket::poll_recv`],
//! which hands SWIM datagrams to the driver over a bounded channel and passes the rest to quinn.
//! SWIM datagrams are sent directly with [`SharedSocket::udp`]'s `send_to`.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Largest UDP payload we can receive; anything bigger is truncated by the kernel.
pub const RECV_BUFFER_SIZE: usize = 65_535;

/// QUIC packets always have this "fixed bit" set (we disable greasing); SWIM's header never does.
const QUIC_FIXED_BIT: u8 = 0x40;

/// Datagrams handled per `poll_recv` call before yielding, so a SWIM flood cannot starve QUIC
/// timers or other tasks on the endpoint driver.
const MAX_DATAGRAMS_PER_POLL: usize = 64;

/// Which protocol a received datagram belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A SWIM datagram for the core (first byte has the 0x40 bit clear, or is empty).
    Swim,
    /// A QUIC packet for quinn.
    Quic,
}

/// Tells SWIM datagrams from QUIC packets by the first byte. Empty datagrams go to SWIM, whose
/// codec drops and counts them.
pub fn classify(datagram: &[u8]) -> Kind {
    match datagram.first() {
        Some(byte) if byte & QUIC_FIXED_BIT != 0 => Kind::Quic,
        _ => Kind::Swim,
    }
}

/// One received SWIM datagram on its way to the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwimDatagram {
    /// Sender address.
    pub from: SocketAddr,
    /// Raw bytes, header byte included.
    pub bytes: Vec<u8>,
}

/// Receive buffer asked of the kernel for the mesh socket (memberlist asks the same 2 MiB).
/// The default (~208 KiB) holds only a few hundred small datagrams, and a mass join sends each
/// node one announcement from every joiner at once: on a busy host the process is not scheduled
/// soon enough to drain them, and the kernel drops the rest. The kernel caps the request at
/// `net.core.rmem_max`; the memory is used only while datagrams wait.
pub const RECV_BUFFER_BYTES: usize = 2 * 1024 * 1024;

/// Asks for a [`RECV_BUFFER_BYTES`] receive buffer on `udp`; returns the size the kernel
/// granted (it reports twice the usable size, for its own bookkeeping).
pub fn enlarge_recv_buffer(udp: &UdpSocket) -> std::io::Result<usize> {
    let socket = socket2::SockRef::from(udp);
    socket.set_recv_buffer_size(RECV_BUFFER_BYTES)?;
    socket.recv_buffer_size()
}

/// Counters kept by the socket layer, readable from any task.
#[derive(Debug, Default)]
pub struct SocketCounters {
    /// SWIM datagrams dropped because the driver's channel was full (or closed).
    pub swim_dropped_full: AtomicU64,
    /// QUIC packets dropped because they did not fit quinn's receive buffer.
    pub quic_dropped_oversize: AtomicU64,
    /// Receive errors swallowed (logged at debug) instead of stopping the endpoint.
    pub recv_errors: AtomicU64,
    /// UDP payload bytes of QUIC packets sent (handshakes, TLS, acks and stream frames).
    pub quic_bytes_sent: AtomicU64,
    /// UDP payload bytes of QUIC packets received and handed to quinn.
    pub quic_bytes_received: AtomicU64,
    /// QUIC handshakes refused (no common key, a foreign certificate, not a meshd); shared with
    /// the QUIC server, which counts them.
    pub quic_handshakes_failed: Arc<AtomicU64>,
}

/// The shared UDP socket: quinn's [`AsyncUdpSocket`] plus a SWIM side channel.
pub struct SharedSocket {
    udp: Arc<UdpSocket>,
    swim_tx: mpsc::Sender<SwimDatagram>,
    counters: Arc<SocketCounters>,
    // Only quinn's endpoint driver calls poll_recv, so this lock is never contended; it exists
    // because poll_recv takes &self.
    recv_buf: Mutex<Box<[u8]>>,
}

impl fmt::Debug for SharedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSocket")
            .field("local_addr", &self.udp.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl SharedSocket {
    /// Wraps a bound socket; SWIM datagrams go to `swim_tx`.
    pub fn new(udp: Arc<UdpSocket>, swim_tx: mpsc::Sender<SwimDatagram>) -> Self {
        SharedSocket {
            udp,
            swim_tx,
            counters: Arc::new(SocketCounters::default()),
            recv_buf: Mutex::new(vec![0; RECV_BUFFER_SIZE].into_boxed_slice()),
        }
    }

    /// The underlying tokio socket, for sending SWIM datagrams.
    pub fn udp(&self) -> &Arc<UdpSocket> {
        &self.udp
    }

    /// The counters this socket updates.
    pub fn counters(&self) -> &Arc<SocketCounters> {
        &self.counters
    }

    /// Forwards one SWIM datagram to the driver without waiting; drops it when the channel is full.
    fn forward_swim(&self, from: SocketAddr, bytes: &[u8]) {
        let datagram = SwimDatagram {
            from,
            bytes: bytes.to_vec(),
        };
        if self.swim_tx.try_send(datagram).is_err() {
            self.counters
                .swim_dropped_full
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl AsyncUdpSocket for SharedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(WritablePoller {
            udp: self.udp.clone(),
            pending: None,
        })
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        // max_transmit_segments is 1, so `contents` is exactly one datagram.
        let sent = self
            .udp
            .try_send_to(transmit.contents, transmit.destination)?;
        self.counters
            .quic_bytes_sent
            .fetch_add(sent as u64, Ordering::Relaxed);
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(out), Some(out_meta)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        let mut guard = match self.recv_buf.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        for _ in 0..MAX_DATAGRAMS_PER_POLL {
            let mut read = ReadBuf::new(&mut guard[..]);
            let from = match self.udp.poll_recv_from(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(from)) => from,
                Poll::Ready(Err(err)) => {
                    // An error returned to quinn stops its endpoint driver, and with it SWIM
                    // reception: swallow it (e.g. ICMP-induced ECONNREFUSED) and keep going.
                    self.counters.recv_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %err, "udp receive error ignored");
                    continue;
                }
            };
            let data = read.filled();
            match classify(data) {
                Kind::Swim => self.forward_swim(from, data),
                Kind::Quic if data.len() > out.len() => {
                    self.counters
                        .quic_dropped_oversize
                        .fetch_add(1, Ordering::Relaxed);
                }
                Kind::Quic => {
                    self.counters
                        .quic_bytes_received
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    out[..data.len()].copy_from_slice(data);
                    *out_meta = RecvMeta {
                        addr: from,
                        len: data.len(),
                        stride: data.len(),
                        ecn: None,
                        dst_ip: None,
                    };
                    return Poll::Ready(Ok(1));
                }
            }
        }
        // Budget spent: ask to be polled again soon rather than looping here forever.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        1
    }
}

type WritableFuture = Pin<Box<dyn std::future::Future<Output = io::Result<()>> + Send + Sync>>;

/// Waits for the socket to become writable. Each poller owns its own `writable()` future, so many
/// quinn tasks can wait at once (tokio's `poll_send_ready` would keep only the last waker).
struct WritablePoller {
    udp: Arc<UdpSocket>,
    pending: Option<WritableFuture>,
}

impl fmt::Debug for WritablePoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WritablePoller").finish_non_exhaustive()
    }
}

impl UdpPoller for WritablePoller {
    fn poll_writable(mut self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let udp = &this.udp;
        let fut = this.pending.get_or_insert_with(|| {
            let udp = udp.clone();
            Box::pin(async move { udp.writable().await })
        });
        let result = fut.as_mut().poll(cx);
        if result.is_ready() {
            this.pending = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swim::codec::WIRE_VERSION;

    #[tokio::test]
    async fn recv_buffer_grows_as_far_as_the_kernel_allows() {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind loopback");
        let before = socket2::SockRef::from(&udp)
            .recv_buffer_size()
            .expect("read buffer size");
        let granted = enlarge_recv_buffer(&udp).expect("set buffer size");
        let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        // Linux grants min(request, rmem_max) and reports it doubled.
        let expected = RECV_BUFFER_BYTES.min(rmem_max) * 2;
        if expected > before {
            assert_eq!(granted, expected, "before {before}, rmem_max {rmem_max}");
        } else {
            assert!(granted >= before.min(expected), "granted {granted}");
        }
    }

    #[test]
    fn swim_header_is_classified_as_swim() {
        assert_eq!(classify(&[WIRE_VERSION, 1, 2, 3]), Kind::Swim);
        assert_eq!(classify(&[]), Kind::Swim);
        assert_eq!(classify(&[0x00]), Kind::Swim);
        assert_eq!(classify(&[0x3f]), Kind::Swim);
        assert_eq!(classify(&[0x80]), Kind::Swim);
    }

    #[test]
    fn quic_headers_are_classified_as_quic() {
        // Long header (Initial): 0b11xx_xxxx; short header: 0b01xx_xxxx.
        assert_eq!(classify(&[0xc0, 0, 0, 0, 1]), Kind::Quic);
        assert_eq!(classify(&[0x40, 9, 9]), Kind::Quic);
        assert_eq!(classify(&[0x7f]), Kind::Quic);
    }

    #[test]
    fn every_first_byte_is_classified_by_the_fixed_bit() {
        for byte in 0..=u8::MAX {
            let expected = if byte & 0x40 != 0 {
                Kind::Quic
            } else {
                Kind::Swim
            };
            assert_eq!(classify(&[byte]), expected, "byte {byte:#04x}");
        }
    }

    #[tokio::test]
    async fn swim_datagrams_reach_the_channel_and_full_channel_counts_drops() {
        let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind loopback"));
        let addr = udp.local_addr().expect("local addr");
        let (tx, mut rx) = mpsc::channel(1);
        let socket = Arc::new(SharedSocket::new(udp, tx));
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind sender");
        for _ in 0..3 {
            sender.send_to(&[WIRE_VERSION, 7], addr).ok();
        }
        sender.send_to(&[0x41, 1, 2], addr).ok();

        // Drive poll_recv by hand until the QUIC packet surfaces (bounded by a deadline).
        let mut buf = vec![0u8; 1500];
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let got = tokio::time::timeout_at(
            deadline,
            std::future::poll_fn(|cx| {
                let mut bufs = [IoSliceMut::new(&mut buf)];
                let mut meta = [RecvMeta::default()];
                socket
                    .poll_recv(cx, &mut bufs, &mut meta)
                    .map(|r| r.map(|n| (n, meta[0].len)))
            }),
        )
        .await;
        assert!(matches!(got, Ok(Ok((1, 3)))), "{got:?}");
        assert_eq!(&buf[..3], &[0x41, 1, 2]);
        let first = rx.try_recv().ok();
        assert_eq!(first.map(|d| d.bytes), Some(vec![WIRE_VERSION, 7]));
        // Channel capacity 1: the other two SWIM datagrams were dropped and counted.
        assert_eq!(
            socket.counters().swim_dropped_full.load(Ordering::Relaxed),
            2
        );
    }
}
