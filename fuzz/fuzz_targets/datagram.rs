//! One SWIM datagram from the network: the codec, then a converged node that handles it and
//! runs its timers. No panic, no hang, bounded memory; whatever decodes re-encodes to the same
//! datagram, and everything the node sends in reply decodes at its peers.

#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use meshd::swim::codec;
use meshd_fuzz::fixture;

fuzz_target!(|data: &[u8]| {
    let decoded = codec::decode_datagram(data);
    if let Ok(decoded) = &decoded {
        let again = codec::decode_datagram(&fixture::encode_datagram(decoded));
        assert_eq!(
            again.as_ref(),
            Ok(decoded),
            "re-encoding changed the datagram"
        );
    }
    let now = Instant::now();
    let mut node = fixture::converged(now);
    node.handle_datagram(now, fixture::peer_addr(0), data);
    fixture::drain(&mut node);
    // A dropped datagram leaves the node as built, so its timers would only repeat the same
    // work for every such input (most of them): run them only for what the node accepted.
    if decoded.is_ok() {
        fixture::run_timers(&mut node, now);
    }
});
