//! What every Odin service shares, written once.
//!
//! # Layout
//! - [`config`]: clap argument groups every service flattens into its own config
//!   (`KAFKA_BROKERS`, `TOPIC_MODE`, `LOG_LEVEL`, …).
//! - [`kafka`]: rskafka client construction with retry/backoff, and the shared Kafka health.
//! - [`topics`]: topic existence checks and creation from the specs of `odin-events`.
//! - [`consumer`]: a partition consumer that survives broker loss and resumes where it was.
//! - [`fetch_mux`]: many partitions' fetches in one request per broker (the gateway's
//!   low-latency read of every partition).
//! - [`producer`]: a batching, acknowledging producer (per-partition batches, linger, caps,
//!   compression, bounded retries).
//! - [`dlq`]: dead-letter records with their provenance headers.
//! - [`telemetry`]: tracing and the Prometheus recorder.
//! - [`shutdown`]: SIGINT/SIGTERM and the grace period.
//! - [`http`]: small axum pieces every service's HTTP side uses.

pub mod config;
pub mod consumer;
pub mod dlq;
pub mod fetch_mux;
pub mod http;
pub mod kafka;
pub mod producer;
pub mod shutdown;
pub mod telemetry;
pub mod topics;

pub use config::{KafkaArgs, TelemetryArgs, TopicArgs};
pub use consumer::{fetch_from, FetchSettings, PartitionConsumer, StartFrom};
pub use fetch_mux::FetchMux;
pub use kafka::{KafkaConnector, KafkaError, KafkaHealth};
pub use producer::{Delivery, OutRecord, ProduceError, Producer, ProducerConfig};
pub use shutdown::Shutdown;
