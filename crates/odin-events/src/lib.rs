//! The Odin event model: the one source of truth shared by every service. Pure, no I/O.
//!
//! # Layout
//! - [`event`]: the 23 event types, their eight categories and the topic each lives on.
//! - [`topics`]: topic names, modes (`per-category` / `single`) and specs (partitions, retention).
//! - [`token`]: token ids and `{TOKEN}.{category}` channel names.
//! - [`envelope`]: the record envelope this project produces, and the tolerant parser for the
//!   envelope and the two older formats.
//! - [`partitioner`]: Kafka's default murmur2 partitioner for keyed records.
//! - [`trade`]: `trade-info` trade records and the mapping from Odin trade events.
//! - [`aggregate`]: `aggregate-info` records.
//! - [`decimal`]: serde helpers for decimal strings-or-numbers.

pub mod aggregate;
pub mod decimal;
pub mod envelope;
pub mod event;
pub mod partitioner;
pub mod token;
pub mod topics;
pub mod trade;

pub use aggregate::{TokenAggregateData, TokenAggregateItem};
pub use envelope::{
    Classification, Envelope, EnvelopeError, Metadata, ParsedRecord, RecordFormat, EVENT_VERSION,
    HEADER_CONTENT_TYPE, HEADER_EVENT_TYPE, HEADER_EVENT_VERSION,
};
pub use event::{Category, EventType, UnknownName};
pub use partitioner::{murmur2, partition_for_key};
pub use token::{Channel, ChannelError, TokenId, TokenIdError, WILDCARD_TOKEN};
pub use topics::{TopicMode, TopicNames, TopicSpec};
pub use trade::{Side, TradeError, TradeRecord};
