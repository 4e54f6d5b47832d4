//! One push-pull message from a QUIC stream: the codec, then a converged node (a periodic
//! exchange) and a joining node (a join) that merge it and run their timers. No panic, no hang,
//! bounded memory; whatever decodes re-encodes to the same message, and each node's own table
//! afterwards is a push-pull message its peers accept.

#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use meshd::swim::codec;
use meshd_fuzz::fixture;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = codec::decode_push_pull(data) {
        let again = codec::decode_push_pull(&fixture::encode_push_pull(&decoded));
        assert_eq!(
            again.as_ref(),
            Ok(&decoded),
            "re-encoding changed the message"
        );
    }
    let now = Instant::now();
    for mut node in [fixture::converged(now), fixture::joining(now)] {
        let merged = node
            .handle_push_pull(now, fixture::peer_addr(0), data)
            .is_ok();
        fixture::drain(&mut node);
        // A dropped message leaves the node as built: its timers would only repeat the same
        // work for every such input, so they run only after a merge.
        if merged {
            if let Err(reason) = codec::decode_push_pull(&node.push_pull_payload()) {
                panic!("after a merge the node's own table is dropped by peers ({reason:?})");
            }
            fixture::run_timers(&mut node, now);
        }
    }
});
