//! A Kafka record (value and key) in any of the three accepted formats: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: key length (0 = no key), then the key, then the value.
    let (key, value) = match data.split_first() {
        Some((&n, rest)) if n > 0 && (n as usize) <= rest.len() => {
            let (k, v) = rest.split_at(n as usize);
            (Some(k), v)
        }
        Some((_, rest)) => (None, rest),
        None => (None, data),
    };
    let _ = odin_events::envelope::parse_record(value, key);
});
