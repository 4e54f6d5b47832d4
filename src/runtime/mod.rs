//! The tokio runtime around the sans-IO core: one UDP socket, QUIC push-pull, seeds, driver.

pub mod quic;
pub mod socket;
