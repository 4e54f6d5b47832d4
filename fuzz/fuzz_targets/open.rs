//! One datagram from the mesh port, opened with a keyring (the first thing a keyed node does
//! with anything it receives), then decoded. No panic, no hang, bounded memory; whatever opens
//! decodes like any plain datagram, and sealing a plain datagram always opens again to it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use meshd::seal::NONCE_BYTES;
use meshd::swim::codec;
use meshd_fuzz::fixture;

fuzz_target!(|data: &[u8]| {
    let keyring = fixture::keyring();
    if let Ok(opened) = keyring.open(fixture::LABEL, fixture::NOW, data) {
        // Only a key holder could have made it; the codec still judges it like any datagram.
        let _ = codec::decode_datagram(&opened.plain);
    }
    // The same bytes as a plain datagram: sealed, they open to exactly themselves.
    let sealed = keyring.seal(fixture::LABEL, fixture::NOW, [7; NONCE_BYTES], data);
    let opened = keyring.open(fixture::LABEL, fixture::NOW, &sealed);
    let plain = opened.map(|o| o.plain);
    assert_eq!(plain.as_deref(), Ok(data), "seal then open changed the datagram");
});
