//! The contents of a `--keyring-file`: the parser must refuse anything that is not a JSON list
//! of base64 keys with a clear error, never panic or hang, and what it accepts must be written
//! back (formatted) to a file that parses to the same keyring.

#![no_main]

use libfuzzer_sys::fuzz_target;
use meshd::seal::file;

fuzz_target!(|data: &[u8]| {
    if let Ok(keyring) = file::parse(data) {
        let again = file::parse(file::format(&keyring).as_bytes());
        assert_eq!(again.as_ref(), Ok(&keyring), "format then parse changed the keyring");
    }
});
