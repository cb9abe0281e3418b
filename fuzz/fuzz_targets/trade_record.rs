//! A `trade-info` record value: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = odin_events::TradeRecord::parse(data);
});
