//! A `POST /events` body: validation never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = publisher::ingest::parse_body(data, 100);
});
