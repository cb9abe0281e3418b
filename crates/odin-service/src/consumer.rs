//! A partition consumer that survives broker loss and resumes from its last position.
//!
//! rskafka's `StreamConsumer` ends on the first error; services need a reader that keeps its
//! position across broker restarts, resets only when the broker has really dropped the data
//! (retention), and says so in metrics.

use std::sync::Arc;
use std::time::Duration;

use rskafka::chrono::{TimeZone, Utc};
use rskafka::client::error::{Error as RsError, ProtocolError, ServerErrorResponse};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::Client;
use rskafka::record::RecordAndOffset;
use tracing::{debug, warn};

use crate::fetch_mux::FetchMux;
use crate::kafka::KafkaHealth;

/// Where a consumer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The earliest retained record.
    Earliest,
    /// The log end (the high-watermark), i.e. only records produced from now on.
    Latest,
    /// A given offset (e.g. the one after the last record processed).
    Offset(i64),
    /// The first record whose timestamp is at or after this instant (epoch ms), found with
    /// ListOffsets by timestamp; the log end when every record is older.
    Timestamp(i64),
}

impl std::str::FromStr for StartFrom {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "earliest" => Ok(StartFrom::Earliest),
            "latest" => Ok(StartFrom::Latest),
            other => other
                .parse::<i64>()
                .map(StartFrom::Offset)
                .map_err(|_| format!("{s:?} is not earliest, latest or an offset")),
        }
    }
}

/// How each fetch asks the broker.
#[derive(Debug, Clone, Copy)]
pub struct FetchSettings {
    /// Longest the broker may hold a fetch waiting for data. Kafka and Redpanda answer a
    /// waiting fetch as soon as data arrives, so this bounds only how often an idle
    /// partition is polled.
    pub max_wait_ms: i32,
    /// Upper bound of bytes per fetch.
    pub max_bytes: i32,
    /// How long one fetch (reconnects included) may take before it counts as failed.
    pub request_timeout: Duration,
}

impl Default for FetchSettings {
    fn default() -> Self {
        Self {
            max_wait_ms: 100,
            max_bytes: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Records fetched in one round, with the partition's high-watermark at that time.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<RecordAndOffset>,
    pub high_watermark: i64,
    /// Records that were skipped because the broker no longer had them (retention).
    pub skipped: i64,
}

/// Reads one partition in order, from its own position, forever.
#[derive(Debug)]
pub struct PartitionConsumer {
    client: Arc<Client>,
    topic: String,
    partition: i32,
    partition_client: Option<Arc<PartitionClient>>,
    start: StartFrom,
    next_offset: Option<i64>,
    high_watermark: i64,
    settings: FetchSettings,
    health: Option<KafkaHealth>,
    /// Fetches ride in shared multi-partition requests; `client` then serves only offset
    /// look-ups and mid-batch re-reads.
    mux: Option<FetchMux>,
    backoff: Duration,
    failures: u64,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl PartitionConsumer {
    /// `client` should be one that no producer shares (see [`crate::kafka`]).
    pub fn new(
        client: Arc<Client>,
        topic: impl Into<String>,
        partition: i32,
        start: StartFrom,
        settings: FetchSettings,
    ) -> Self {
        Self {
            client,
            topic: topic.into(),
            partition,
            partition_client: None,
            start,
            next_offset: match start {
                StartFrom::Offset(o) => Some(o),
                _ => None,
            },
            high_watermark: 0,
            settings,
            health: None,
            mux: None,
            backoff: MIN_BACKOFF,
            failures: 0,
        }
    }

    /// Report connection state to `health` on every success and failure.
    pub fn with_health(mut self, health: KafkaHealth) -> Self {
        self.health = Some(health);
        self
    }

    /// Fetch through `mux` (see [`crate::fetch_mux`]).
    pub fn with_mux(mut self, mux: FetchMux) -> Self {
        self.mux = Some(mux);
        self
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The offset of the next record to read, once resolved.
    pub fn position(&self) -> Option<i64> {
        self.next_offset
    }

    /// The high-watermark seen in the last successful fetch.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// Records behind the log end.
    pub fn lag(&self) -> i64 {
        self.next_offset
            .map(|o| (self.high_watermark - o).max(0))
            .unwrap_or(0)
    }

    /// Failed fetch attempts so far. A caller that sees it grow across a `next_batch` knows
    /// the broker was lost meanwhile and may check the log is still the one it was reading.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Moves the position (e.g. a replay).
    pub fn seek(&mut self, offset: i64) {
        self.next_offset = Some(offset);
    }

    async fn partition_client(&mut self) -> Result<Arc<PartitionClient>, RsError> {
        if let Some(pc) = &self.partition_client {
            return Ok(Arc::clone(pc));
        }
        let pc = Arc::new(
            self.client
                .partition_client(
                    self.topic.clone(),
                    self.partition,
                    UnknownTopicHandling::Retry,
                )
                .await?,
        );
        self.partition_client = Some(Arc::clone(&pc));
        Ok(pc)
    }

    /// The log end (the high-watermark: the offset the next produced record gets).
    async fn log_end(pc: &PartitionClient) -> Result<i64, RsError> {
        pc.get_offset(OffsetAt::Latest).await
    }

    async fn resolve_start(&mut self, pc: &PartitionClient) -> Result<i64, RsError> {
        if let Some(o) = self.next_offset {
            return Ok(o);
        }
        let o = match self.start {
            StartFrom::Earliest => pc.get_offset(OffsetAt::Earliest).await?,
            StartFrom::Latest => Self::log_end(pc).await?,
            StartFrom::Offset(o) => o,
            StartFrom::Timestamp(ms) => {
                let at = Utc
                    .timestamp_millis_opt(ms)
                    .single()
                    .unwrap_or_else(Utc::now);
                match pc.get_offset(OffsetAt::Timestamp(at)).await? {
                    // Kafka's answer when no record is that recent.
                    o if o < 0 => Self::log_end(pc).await?,
                    o => o,
                }
            }
        };
        debug!(topic = %self.topic, partition = self.partition, offset = o, "consumer start resolved");
        self.next_offset = Some(o);
        Ok(o)
    }

    async fn try_fetch(&mut self) -> Result<Batch, RsError> {
        let pc = self.partition_client().await?;
        let offset = self.resolve_start(&pc).await?;
        let fetched = match &self.mux {
            Some(mux) => match mux.fetch(&self.topic, self.partition, offset).await {
                Ok(first) => settle_inside_batch(&pc, offset, self.settings.max_bytes, first).await,
                Err(e) => Err(e),
            },
            None => {
                fetch_from(
                    &pc,
                    offset,
                    self.settings.max_bytes,
                    self.settings.max_wait_ms,
                )
                .await
            }
        };
        match fetched {
            Ok((records, hwm)) => {
                self.high_watermark = hwm;
                if let Some(last) = records.last() {
                    self.next_offset = Some(last.offset + 1);
                }
                Ok(Batch {
                    records,
                    high_watermark: hwm,
                    skipped: 0,
                })
            }
            Err(RsError::ServerError {
                protocol_error: ProtocolError::OffsetOutOfRange,
                response,
                ..
            }) => {
                let earliest = pc.get_offset(OffsetAt::Earliest).await?;
                // Kafka answers OffsetOutOfRange with a high-watermark of -1: ask for it.
                let hwm =
                    match response {
                        Some(ServerErrorResponse::PartitionFetchState {
                            high_watermark, ..
                        }) if high_watermark >= 0 => high_watermark,
                        _ => Self::log_end(&pc).await?,
                    };
                // Behind the log start (retention deleted it): the earliest retained record
                // is the next one there is. Beyond the log end (the topic was recreated, or
                // the log truncated by an unclean leader change): never rewind to the start
                // of what is now a different log (the aggregator would re-apply hours of
                // trades); resume at its end and count what that passes over.
                let (new, skipped) = if offset < earliest {
                    (earliest, earliest - offset)
                } else {
                    (hwm.max(earliest), (hwm - earliest).max(0))
                };
                warn!(
                    topic = %self.topic, partition = self.partition, offset, earliest, hwm, skipped,
                    "position out of range, resetting"
                );
                metrics::counter!("kafka_consumer_offset_resets_total", "topic" => self.topic.clone())
                    .increment(1);
                metrics::counter!("kafka_consumer_records_skipped_total", "topic" => self.topic.clone())
                    .increment(u64::try_from(skipped).unwrap_or(0));
                self.next_offset = Some(new);
                self.high_watermark = hwm;
                Ok(Batch {
                    records: Vec::new(),
                    high_watermark: hwm,
                    skipped,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The next records, waiting at most the fetch max-wait when there are none. Broker
    /// errors are retried with backoff (forever: cancel the caller to stop); the position
    /// is kept, so nothing still retained is skipped. Cancel-safe.
    pub async fn next_batch(&mut self) -> Batch {
        let limit = self.settings.request_timeout
            + Duration::from_millis(self.settings.max_wait_ms.max(0) as u64);
        loop {
            // rskafka nests its own reconnect retries; bound the whole attempt so a lost
            // broker is noticed (and reported) promptly.
            let attempt = tokio::time::timeout(limit, self.try_fetch()).await;
            match attempt.unwrap_or_else(|_| {
                Err(RsError::InvalidResponse(format!(
                    "no answer within {limit:?}"
                )))
            }) {
                Ok(batch) => {
                    self.backoff = MIN_BACKOFF;
                    if let Some(h) = &self.health {
                        h.set_connected();
                    }
                    return batch;
                }
                Err(e) => {
                    self.failures += 1;
                    warn!(topic = %self.topic, partition = self.partition, error = %e, retry_in = ?self.backoff, "fetch failed");
                    metrics::counter!("kafka_consumer_errors_total", "topic" => self.topic.clone())
                        .increment(1);
                    if let Some(h) = &self.health {
                        h.set_disconnected(format!("fetch {}/{}: {e}", self.topic, self.partition));
                    }
                    // A broken connection may have poisoned the cached partition client.
                    self.partition_client = None;
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Fetches the records at and after `offset` — [`PartitionClient::fetch_records`] made safe
/// for positions inside a produced batch (see [`read_from_inside_batch`]). Every reader that
/// starts at an arbitrary offset (consumers, replays) goes through here.
pub async fn fetch_from(
    pc: &PartitionClient,
    offset: i64,
    max_bytes: i32,
    max_wait_ms: i32,
) -> Result<(Vec<RecordAndOffset>, i64), RsError> {
    let first = pc
        .fetch_records(offset, 1..max_bytes.max(2), max_wait_ms)
        .await?;
    settle_inside_batch(pc, offset, max_bytes, first).await
}

/// Completes a fetch answer `(records, hwm)` for `offset`: re-reads from a batch boundary
/// when the position is inside a batch (see [`read_from_inside_batch`]).
async fn settle_inside_batch(
    pc: &PartitionClient,
    offset: i64,
    max_bytes: i32,
    (records, hwm): (Vec<RecordAndOffset>, i64),
) -> Result<(Vec<RecordAndOffset>, i64), RsError> {
    // A first record past the position, or nothing although the log goes further: the
    // position is inside a batch.
    let inside_batch = match records.first() {
        Some(r) => r.offset > offset,
        None => offset < hwm,
    };
    if inside_batch {
        if let Some(found) = read_from_inside_batch(pc, offset, max_bytes).await? {
            return Ok((found, hwm));
        }
    }
    Ok((records, hwm))
}

/// Reads from `offset` when it lies inside a produced batch.
///
/// Kafka and Redpanda answer a fetch that starts inside a batch with that whole batch, so
/// this path never runs against them; tansu 0.6 answered with the batches after it, and any
/// broker that does the same would make a consumer resuming mid-batch (a replay from a
/// client's last offset, a restart) skip the rest of that batch. A fetch whose first record is past the position is
/// therefore re-read from a batch boundary at or before it: step back until the broker
/// answers from where it was asked (a boundary), walk forward by whole batches, and keep
/// the records at or after `offset`. `None` when no such records could be found (a
/// genuine gap, e.g. compaction), in which case the original answer stands.
async fn read_from_inside_batch(
    pc: &PartitionClient,
    offset: i64,
    max_bytes: i32,
) -> Result<Option<Vec<RecordAndOffset>>, RsError> {
    let earliest = pc.get_offset(OffsetAt::Earliest).await?;
    let mut step = 64i64;
    let mut probe = (offset - step).max(earliest);
    // Bounded: the step grows 4× per round and the forward walk moves a batch per round.
    for _ in 0..32 {
        if probe >= offset {
            return Ok(None);
        }
        let (raw, _) = pc.fetch_records(probe, 1..max_bytes.max(2), 0).await?;
        let Some(first) = raw.first() else {
            return Ok(None);
        };
        if first.offset > probe && probe > earliest {
            // Still inside a batch: step further back.
            step = step.saturating_mul(4);
            probe = (offset - step).max(earliest);
            continue;
        }
        let last = raw.last().map_or(probe, |r| r.offset);
        let kept: Vec<RecordAndOffset> = raw.into_iter().filter(|r| r.offset >= offset).collect();
        if !kept.is_empty() {
            if kept[0].offset > offset {
                debug!(
                    offset,
                    first = kept[0].offset,
                    "gap in the log at the consumer position"
                );
            }
            return Ok(Some(kept));
        }
        // Every record read lies before the position: the next one starts a batch.
        probe = last + 1;
    }
    Ok(None)
}
