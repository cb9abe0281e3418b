//! Prometheus metric names of the gateway, and handles resolved once so the hot paths
//! (fan-out, sessions) never look a metric up by name.

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

pub const KAFKA_CONNECTED: &str = "ws_kafka_connected";
pub const DLQ_KAFKA_CONNECTED: &str = "ws_dlq_kafka_connected";
pub const CONNECTIONS: &str = "ws_connections";
pub const CONNECTIONS_ACCEPTED: &str = "ws_connections_accepted_total";
pub const CONNECTIONS_REJECTED: &str = "ws_connections_rejected_total";
pub const DISCONNECTIONS: &str = "ws_disconnections_total";
pub const SUBSCRIPTIONS: &str = "ws_subscriptions";
pub const RECORDS_CONSUMED: &str = "ws_kafka_records_consumed_total";
pub const RECORDS_INVALID: &str = "ws_kafka_records_invalid_total";
pub const DLQ_RECORDS: &str = "ws_dlq_records_total";
pub const CONSUMER_LAG: &str = "ws_kafka_consumer_lag";
pub const PARTITIONS: &str = "ws_kafka_partitions";
pub const LOG_RESETS: &str = "ws_kafka_log_resets_total";
pub const DELIVERIES: &str = "ws_deliveries_total";
pub const DROPPED: &str = "ws_messages_dropped_total";
pub const FANOUT_LATENCY: &str = "ws_fanout_latency_seconds";
pub const CLIENT_ERRORS: &str = "ws_client_errors_total";
pub const GAP_FRAMES: &str = "ws_gap_frames_total";

/// Reasons of `ws_messages_dropped_total`.
pub mod drop_reason {
    /// `WS_SLOW_CLIENT=drop`: the client's queue was full.
    pub const QUEUE_FULL: &str = "queue_full";
    /// `WS_SLOW_CLIENT=disconnect`: the queue was full (the client is being disconnected).
    pub const SLOW_CONSUMER: &str = "slow_consumer";
    /// The connection was closing when the record arrived.
    pub const CLOSED: &str = "closed";
}

/// Handles used on the fan-out path.
#[derive(Debug, Clone)]
pub struct FanoutMetrics {
    pub deliveries: Counter,
    pub dropped_queue_full: Counter,
    pub dropped_slow: Counter,
    pub dropped_closed: Counter,
    pub latency: Histogram,
    pub subscriptions: Gauge,
    pub gaps: Counter,
}

impl FanoutMetrics {
    pub fn new() -> Self {
        Self {
            deliveries: counter!(DELIVERIES),
            dropped_queue_full: counter!(DROPPED, "reason" => drop_reason::QUEUE_FULL),
            dropped_slow: counter!(DROPPED, "reason" => drop_reason::SLOW_CONSUMER),
            dropped_closed: counter!(DROPPED, "reason" => drop_reason::CLOSED),
            latency: histogram!(FANOUT_LATENCY),
            subscriptions: gauge!(SUBSCRIPTIONS),
            gaps: counter!(GAP_FRAMES),
        }
    }
}

impl Default for FanoutMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Describes every metric once, so `/metrics` explains itself.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(KAFKA_CONNECTED, "1 when every consumer reaches the brokers");
    describe_gauge!(CONNECTIONS, "Open WebSocket connections");
    describe_counter!(CONNECTIONS_ACCEPTED, "WebSocket upgrades accepted");
    describe_counter!(CONNECTIONS_REJECTED, "Connections refused, by reason");
    describe_counter!(DISCONNECTIONS, "Connections closed, by reason");
    describe_gauge!(SUBSCRIPTIONS, "Channel subscriptions over all connections");
    describe_counter!(RECORDS_CONSUMED, "Kafka records consumed, by topic");
    describe_counter!(
        RECORDS_INVALID,
        "Kafka records that could not be read (dead-lettered with --dlq), by topic"
    );
    describe_counter!(DLQ_RECORDS, "Dead-letter writes, by result");
    describe_gauge!(
        CONSUMER_LAG,
        "High-watermark minus position, by topic and partition"
    );
    describe_gauge!(PARTITIONS, "Partitions being consumed");
    describe_counter!(
        LOG_RESETS,
        "Partitions re-read from their start because the broker came back with another log"
    );
    describe_counter!(DELIVERIES, "Event frames queued to clients");
    describe_counter!(DROPPED, "Event frames not delivered, by reason");
    describe_histogram!(
        FANOUT_LATENCY,
        Unit::Seconds,
        "Record timestamp to frame queued for its subscribers"
    );
    describe_counter!(CLIENT_ERRORS, "Error frames sent to clients, by code");
    describe_counter!(
        GAP_FRAMES,
        "Gap frames queued: a client was told which frames of a channel it lost"
    );
}
