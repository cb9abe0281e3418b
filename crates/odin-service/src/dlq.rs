//! Dead-letter records: a record that cannot be processed is written, unchanged, to
//! `<topic>.dlq` with headers saying why and where it came from, so repeats after a restart
//! can be recognised and nothing is lost silently.

use crate::producer::OutRecord;

pub const HEADER_ERROR: &str = "x-error";
pub const HEADER_SOURCE_TOPIC: &str = "x-source-topic";
pub const HEADER_SOURCE_PARTITION: &str = "x-source-partition";
pub const HEADER_SOURCE_OFFSET: &str = "x-source-offset";

/// The dead-letter record for a record read from `topic`/`partition` at `offset`.
pub fn dead_letter(
    topic: &str,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    timestamp_ms: i64,
    error: &str,
) -> OutRecord {
    OutRecord::new(
        odin_events::topics::dlq_topic(topic),
        key,
        value,
        timestamp_ms,
    )
    .header(HEADER_ERROR, error.as_bytes())
    .header(HEADER_SOURCE_TOPIC, topic.as_bytes())
    .header(HEADER_SOURCE_PARTITION, partition.to_string())
    .header(HEADER_SOURCE_OFFSET, offset.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_provenance() {
        let r = dead_letter("trade-info", 3, 42, None, b"{".to_vec(), 1, "bad json");
        assert_eq!(r.topic, "trade-info.dlq");
        assert_eq!(r.headers["x-error"], b"bad json");
        assert_eq!(r.headers["x-source-partition"], b"3");
        assert_eq!(r.headers["x-source-offset"], b"42");
        assert_eq!(r.value, b"{");
    }
}
