//! Store messages from the network: one input, read as a gossip payload, as an anti-entropy
//! step served, and as the answer to a step we started, by stores that already hold keys of
//! every kind. No panic, no hang, no unbounded growth (the bounds hold), and a second store
//! that takes the same input ends in the same state (merging is deterministic).

#![no_main]

use libfuzzer_sys::fuzz_target;
use meshd::store::{Op, StoreConfig, Stores};

/// Stores with a few keys of each kind, as a running node would hold.
fn stocked(name: &str) -> Stores {
    let mut s = Stores::new(StoreConfig::default(), name, 1);
    let writes = [
        ("workers", "w1", Op::Put(b"{\"url\":\"http://w1\"}".to_vec())),
        ("workers", "w2", Op::Put(b"[1,2]".to_vec())),
        ("hits", "a", Op::Incr(5)),
        ("hits", "b", Op::Incr(-2)),
        ("pools", "eu", Op::Add("gw-1".into())),
        ("pools", "eu", Op::Add("gw-2".into())),
    ];
    for (store, key, op) in writes {
        let _ = s.write(2, store, key, op);
    }
    s.handle_timeout(1_000);
    while s.poll_broadcast().is_some() {}
    s
}

fn drain(s: &mut Stores) {
    while s.poll_broadcast().is_some() {}
    while s.poll_change().is_some() {}
    while s.poll_persist().is_some() {}
}

fuzz_target!(|data: &[u8]| {
    let (mut a, mut b) = (stocked("a"), stocked("a"));
    a.handle_payload(10, data);
    b.handle_payload(10, data);
    let _ = a.serve_sync(11, data);
    let _ = b.serve_sync(11, data);
    let _ = a.handle_sync_reply(12, data);
    let _ = b.handle_sync_reply(12, data);
    drain(&mut a);
    drain(&mut b);
    assert_eq!(a.summaries(), b.summaries(), "the same input, the same state");
    let limits = meshd::store::StoreLimits::default();
    assert!(a.bytes() <= limits.max_bytes);
    assert!(a.summaries().len() <= limits.max_stores);
});
