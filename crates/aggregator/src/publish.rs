//! Publishing aggregates: one record per token per tick to the aggregate topic, keyed by
//! token (Kafka's partitioner), with the contract's headers; and the producer statistics
//! `/stats` reports.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use odin_events::aggregate::AGGREGATE_VERSION;
use odin_events::TokenAggregateData;
use odin_service::{OutRecord, ProduceError, Producer};
use serde::Serialize;
use tracing::warn;
use utoipa::ToSchema;

/// Producer statistics since start.
#[derive(Debug, Default)]
pub struct PublishStats {
    sent: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    last_sent_ms: AtomicI64,
    latency_us_sum: AtomicU64,
    latency_count: AtomicU64,
}

/// What `/stats` shows of the producer.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct PublishStatsView {
    pub topic: String,
    pub messages_sent: u64,
    pub messages_error: u64,
    pub bytes_sent: u64,
    /// RFC 3339, absent before the first acknowledged record.
    pub last_sent_time: Option<String>,
    /// Mean time from enqueueing a record to its acknowledgement.
    pub average_latency_ms: f64,
}

/// The outcome of publishing one tick (or one `POST /publish`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Published {
    pub tokens: Vec<String>,
    pub failed: Vec<Failed>,
}

/// A record the broker did not acknowledge.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct Failed {
    pub token: String,
    pub error: String,
}

/// Writes aggregates and keeps the statistics.
#[derive(Debug)]
pub struct Publisher {
    producer: Producer,
    topic: String,
    stats: PublishStats,
}

/// The record of one token's aggregates at `end`.
pub fn record(topic: &str, data: &TokenAggregateData, end: i64) -> OutRecord {
    OutRecord::new(
        topic,
        Some(data.token.as_bytes().to_vec()),
        data.to_json(),
        end,
    )
    .header("content-type", "application/json")
    .header("version", AGGREGATE_VERSION)
    .header("token", data.token.as_bytes())
}

impl Publisher {
    pub fn new(producer: Producer, topic: String) -> Self {
        Self {
            producer,
            topic,
            stats: PublishStats::default(),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Produces every record and waits for all acknowledgements (batched per partition by
    /// the producer). A record the broker did not acknowledge is reported in `failed`.
    pub async fn publish(&self, data: Vec<TokenAggregateData>, end: i64) -> Published {
        let mut pending = Vec::with_capacity(data.len());
        for d in &data {
            let rec = record(&self.topic, d, end);
            let size = rec.value.len() as u64;
            let started = Instant::now();
            pending.push((
                d.token.clone(),
                size,
                started,
                self.producer.enqueue(rec).await,
            ));
        }
        let mut out = Published::default();
        for (token, size, started, enqueued) in pending {
            let result = match enqueued {
                Ok(rx) => rx.await.unwrap_or(Err(ProduceError::Closed)),
                Err(e) => Err(e),
            };
            match result {
                Ok(_) => {
                    let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    self.stats.bytes.fetch_add(size, Ordering::Relaxed);
                    self.stats.latency_us_sum.fetch_add(us, Ordering::Relaxed);
                    self.stats.latency_count.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .last_sent_ms
                        .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
                    metrics::counter!("aggregator_published_total", "result" => "ok").increment(1);
                    metrics::counter!("aggregator_published_bytes_total").increment(size);
                    out.tokens.push(token);
                }
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("aggregator_published_total", "result" => "error")
                        .increment(1);
                    warn!(%token, end, error = %e, "aggregate not published");
                    out.failed.push(Failed {
                        token,
                        error: e.to_string(),
                    });
                }
            }
        }
        out
    }

    pub fn stats(&self) -> PublishStatsView {
        let s = &self.stats;
        let count = s.latency_count.load(Ordering::Relaxed);
        let last = s.last_sent_ms.load(Ordering::Relaxed);
        PublishStatsView {
            topic: self.topic.clone(),
            messages_sent: s.sent.load(Ordering::Relaxed),
            messages_error: s.errors.load(Ordering::Relaxed),
            bytes_sent: s.bytes.load(Ordering::Relaxed),
            last_sent_time: (last > 0).then(|| crate::window::rfc3339(last)),
            average_latency_ms: if count == 0 {
                0.0
            } else {
                s.latency_us_sum.load(Ordering::Relaxed) as f64 / count as f64 / 1000.0
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_keyed_and_carry_the_headers() {
        let d = TokenAggregateData {
            token: "BTC".into(),
            symbol: None,
            name: None,
            aggregate_data: vec![],
            generated_at: "x".into(),
            version: "1.0".into(),
        };
        let r = record("aggregate-info", &d, 30_000);
        assert_eq!(r.key.as_deref(), Some(&b"BTC"[..]));
        assert_eq!(r.headers["content-type"], b"application/json");
        assert_eq!(r.headers["version"], b"1.0");
        assert_eq!(r.headers["token"], b"BTC");
        assert_eq!(r.timestamp_ms, 30_000);
    }
}
