//! A WebSocket client's text frame: parsing never panics, and every refusal becomes an
//! error frame that is valid JSON (grammar).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_gateway::protocol;

fuzz_target!(|data: &[u8]| {
    // Text frames reach the parser only as UTF-8 (anything else closes with 1007).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err((id, e)) = protocol::parse_client_frame(text) {
        let frame = protocol::error(id.as_deref(), &e);
        // JSON grammar, not f64 range: the client's id is echoed verbatim and JSON numbers
        // have no range (found by this target: `{"id":-7.6e666…}`, now a regression test in
        // crates/ws-gateway/tests/properties.rs).
        let parsed = serde_json::from_str::<Box<serde_json::value::RawValue>>(&frame);
        assert!(parsed.is_ok(), "{}", frame.as_str());
    }
});
