//! Datagram framing: header byte + prost `Envelope`, with hard size and count limits.

/// Wire version carried in the first byte of every SWIM datagram. Its 0x40 bit is clear so the
/// runtime can tell SWIM datagrams from QUIC packets on the shared port.
pub const WIRE_VERSION: u8 = 0x01;
