//! A batching producer that reports each record's acknowledgement to its caller.
//!
//! Records are routed to a partition (Kafka's murmur2 of the key, so other Kafka clients
//! agree), queued on that partition's bounded queue, and written by one task per partition:
//! it gathers a batch (up to a record and byte cap, waiting at most `linger` for more),
//! produces it compressed with bounded retries, then answers every record of the batch with
//! its offset or the failure. One request in flight per partition keeps records in order.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::Client;
use rskafka::record::Record;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::kafka::{partition_counts, KafkaConnector, KafkaHealth};

/// Batching and retry settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// How long a partition's batch waits for more records once it has one.
    pub linger: Duration,
    pub max_batch_records: usize,
    pub max_batch_bytes: usize,
    pub compression: Compression,
    /// Retries of a failed batch (each attempt already retries reconnects for the
    /// connector's request timeout).
    pub max_retries: u32,
    pub retry_backoff: Duration,
    /// Records queued per partition before senders wait (backpressure).
    pub queue_per_partition: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            linger: Duration::from_millis(5),
            max_batch_records: 1_000,
            max_batch_bytes: 1024 * 1024,
            compression: Compression::Snappy,
            max_retries: 2,
            retry_backoff: Duration::from_millis(200),
            queue_per_partition: 10_000,
        }
    }
}

/// A record to produce.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: BTreeMap<String, Vec<u8>>,
    /// Record timestamp, epoch ms (the event time).
    pub timestamp_ms: i64,
    /// A fixed partition; `None` routes by key.
    pub partition: Option<i32>,
}

impl OutRecord {
    pub fn new(
        topic: impl Into<String>,
        key: Option<Vec<u8>>,
        value: Vec<u8>,
        timestamp_ms: i64,
    ) -> Self {
        Self {
            topic: topic.into(),
            key,
            value,
            headers: BTreeMap::new(),
            timestamp_ms,
            partition: None,
        }
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len)
            + self.value.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub partition: i32,
    pub offset: i64,
}

/// Why a record was not acknowledged. Nothing that failed here is known to be written
/// (a timed-out request may still have been; callers that retry may then duplicate).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProduceError {
    #[error("topic {topic:?} does not exist")]
    UnknownTopic { topic: String },
    #[error("partition {partition} is out of range for topic {topic:?}")]
    BadPartition { topic: String, partition: i32 },
    #[error("broker unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("produce to {topic}/{partition} failed: {reason}")]
    Failed {
        topic: String,
        partition: i32,
        reason: String,
    },
    #[error("producer is shut down")]
    Closed,
}

type Ack = oneshot::Sender<Result<Delivery, ProduceError>>;

struct Pending {
    record: Record,
    size: usize,
    ack: Ack,
}

#[derive(Debug)]
struct Inner {
    connector: KafkaConnector,
    config: ProducerConfig,
    health: KafkaHealth,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
    partitions: RwLock<HashMap<String, i32>>,
    workers: Mutex<HashMap<(String, i32), mpsc::Sender<Pending>>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

/// The batching producer; cheap to clone.
#[derive(Debug, Clone)]
pub struct Producer(Arc<Inner>);

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("size", &self.size).finish()
    }
}

impl Producer {
    /// A producer with its own broker connections. Connects lazily: creating it never fails,
    /// sends fail with [`ProduceError::Unavailable`] while the brokers are unreachable.
    pub fn new(connector: KafkaConnector, config: ProducerConfig, health: KafkaHealth) -> Self {
        Self(Arc::new(Inner {
            connector,
            config,
            health,
            client: tokio::sync::Mutex::new(None),
            partitions: RwLock::new(HashMap::new()),
            workers: Mutex::new(HashMap::new()),
            handles: Mutex::new(Vec::new()),
        }))
    }

    pub fn health(&self) -> &KafkaHealth {
        &self.0.health
    }

    async fn client(&self) -> Result<Arc<Client>, ProduceError> {
        let mut guard = self.0.client.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(Arc::clone(c));
        }
        match self.0.connector.client().await {
            Ok(c) => {
                let c = Arc::new(c);
                *guard = Some(Arc::clone(&c));
                self.0.health.set_connected();
                Ok(c)
            }
            Err(e) => {
                self.0.health.set_disconnected(e.to_string());
                Err(ProduceError::Unavailable {
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Checks the brokers answer (a metadata round trip); used by `/health`.
    pub async fn ping(&self) -> Result<(), ProduceError> {
        let client = self.client().await?;
        match partition_counts(&client).await {
            Ok(counts) => {
                self.0.health.set_connected();
                if let Ok(mut p) = self.0.partitions.write() {
                    p.extend(counts);
                }
                Ok(())
            }
            Err(e) => {
                self.0.health.set_disconnected(e.to_string());
                Err(ProduceError::Unavailable {
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Partition count of `topic`, from cache or a fresh unfiltered metadata request.
    pub async fn partition_count(&self, topic: &str) -> Result<i32, ProduceError> {
        if let Some(n) = self
            .0
            .partitions
            .read()
            .ok()
            .and_then(|p| p.get(topic).copied())
        {
            return Ok(n);
        }
        let client = self.client().await?;
        let counts = partition_counts(&client)
            .await
            .map_err(|e| ProduceError::Unavailable {
                reason: e.to_string(),
            })?;
        let n = counts.get(topic).copied();
        if let Ok(mut p) = self.0.partitions.write() {
            p.extend(counts);
        }
        n.ok_or_else(|| ProduceError::UnknownTopic {
            topic: topic.to_owned(),
        })
    }

    /// Queues a record and returns a receiver for its acknowledgement; waits only when the
    /// partition's queue is full. Use it to pipeline many records, then await the receivers.
    pub async fn enqueue(
        &self,
        rec: OutRecord,
    ) -> Result<oneshot::Receiver<Result<Delivery, ProduceError>>, ProduceError> {
        let count = self.partition_count(&rec.topic).await?;
        let partition = match rec.partition {
            Some(p) if (0..count).contains(&p) => p,
            Some(p) => {
                return Err(ProduceError::BadPartition {
                    topic: rec.topic,
                    partition: p,
                })
            }
            None => match &rec.key {
                Some(k) => odin_events::partition_for_key(k, count),
                None => rand::random_range(0..count),
            },
        };
        let size = rec.size();
        let tx = self.worker(&rec.topic, partition);
        let (ack, rx) = oneshot::channel();
        let record = Record {
            key: rec.key,
            value: Some(rec.value),
            headers: rec.headers,
            timestamp: DateTime::<Utc>::from_timestamp_millis(rec.timestamp_ms)
                .unwrap_or_else(Utc::now),
        };
        tx.send(Pending { record, size, ack })
            .await
            .map_err(|_| ProduceError::Closed)?;
        Ok(rx)
    }

    /// Produces one record and waits for the broker's acknowledgement.
    pub async fn send(&self, rec: OutRecord) -> Result<Delivery, ProduceError> {
        self.enqueue(rec)
            .await?
            .await
            .unwrap_or(Err(ProduceError::Closed))
    }

    /// Produces records (batched together where they share a partition) and waits for all
    /// acknowledgements; results are in input order.
    pub async fn send_all(&self, recs: Vec<OutRecord>) -> Vec<Result<Delivery, ProduceError>> {
        let mut pending = Vec::with_capacity(recs.len());
        for rec in recs {
            pending.push(self.enqueue(rec).await);
        }
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            out.push(match p {
                Ok(rx) => rx.await.unwrap_or(Err(ProduceError::Closed)),
                Err(e) => Err(e),
            });
        }
        out
    }

    fn worker(&self, topic: &str, partition: i32) -> mpsc::Sender<Pending> {
        let mut workers = match self.0.workers.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(tx) = workers.get(&(topic.to_owned(), partition)) {
            if !tx.is_closed() {
                return tx.clone();
            }
        }
        // Full queue ⇒ `enqueue` waits: backpressure to the caller instead of unbounded memory.
        let (tx, rx) = mpsc::channel(self.0.config.queue_per_partition.max(1));
        workers.insert((topic.to_owned(), partition), tx.clone());
        let handle = tokio::spawn(partition_worker(
            self.clone(),
            topic.to_owned(),
            partition,
            rx,
        ));
        if let Ok(mut h) = self.0.handles.lock() {
            h.retain(|h| !h.is_finished());
            h.push(handle);
        }
        tx
    }

    /// Writes everything queued so far and stops the partition tasks; later sends start new
    /// ones. Call on shutdown so nothing accepted is lost.
    pub async fn flush(&self) {
        let senders: Vec<_> = match self.0.workers.lock() {
            Ok(mut w) => w.drain().collect(),
            Err(_) => Vec::new(),
        };
        drop(senders);
        let handles: Vec<_> = match self.0.handles.lock() {
            Ok(mut h) => h.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for h in handles {
            let _ = h.await;
        }
    }
}

async fn partition_worker(
    producer: Producer,
    topic: String,
    partition: i32,
    mut rx: mpsc::Receiver<Pending>,
) {
    let cfg = producer.0.config.clone();
    let mut pc: Option<Arc<PartitionClient>> = None;
    let mut batch: Vec<Pending> = Vec::with_capacity(cfg.max_batch_records.min(4096));
    while let Some(first) = rx.recv().await {
        let mut bytes = first.size;
        batch.push(first);
        let deadline = tokio::time::Instant::now() + cfg.linger;
        while batch.len() < cfg.max_batch_records && bytes < cfg.max_batch_bytes {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(p)) => {
                    bytes += p.size;
                    batch.push(p);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let records: Vec<Record> = batch.iter().map(|p| p.record.clone()).collect();
        let n = records.len();
        let started = Instant::now();
        let result = produce_with_retries(&producer, &topic, partition, &mut pc, records).await;
        metrics::histogram!("kafka_produce_batch_seconds", "topic" => topic.clone())
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(offsets) => {
                producer.0.health.set_connected();
                metrics::counter!("kafka_produce_records_total", "topic" => topic.clone(), "result" => "ok")
                    .increment(n as u64);
                for (p, offset) in batch.drain(..).zip(offsets) {
                    let _ = p.ack.send(Ok(Delivery { partition, offset }));
                }
            }
            Err(reason) => {
                warn!(%topic, partition, records = n, %reason, "produce failed");
                producer.0.health.set_disconnected(reason.clone());
                metrics::counter!("kafka_produce_records_total", "topic" => topic.clone(), "result" => "error")
                    .increment(n as u64);
                for p in batch.drain(..) {
                    let _ = p.ack.send(Err(ProduceError::Failed {
                        topic: topic.clone(),
                        partition,
                        reason: reason.clone(),
                    }));
                }
            }
        }
    }
    debug!(%topic, partition, "partition producer stopped");
}

async fn produce_with_retries(
    producer: &Producer,
    topic: &str,
    partition: i32,
    pc: &mut Option<Arc<PartitionClient>>,
    records: Vec<Record>,
) -> Result<Vec<i64>, String> {
    let cfg = &producer.0.config;
    let timeout = producer.0.connector.request_timeout() + Duration::from_secs(1);
    let mut last_error = String::new();
    for attempt in 0..=cfg.max_retries {
        if attempt > 0 {
            tokio::time::sleep(cfg.retry_backoff * attempt).await;
        }
        let client = match pc {
            Some(c) => Arc::clone(c),
            None => {
                let made = match producer.client().await {
                    Ok(client) => tokio::time::timeout(
                        timeout,
                        client.partition_client(
                            topic.to_owned(),
                            partition,
                            UnknownTopicHandling::Error,
                        ),
                    )
                    .await
                    .map_err(|_| "timed out looking up the partition leader".to_owned())
                    .and_then(|r| r.map_err(|e| e.to_string())),
                    Err(e) => Err(e.to_string()),
                };
                match made {
                    Ok(c) => {
                        let c = Arc::new(c);
                        *pc = Some(Arc::clone(&c));
                        c
                    }
                    Err(e) => {
                        last_error = e;
                        continue;
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, client.produce(records.clone(), cfg.compression)).await
        {
            Ok(Ok(offsets)) if offsets.len() == records.len() => return Ok(offsets),
            Ok(Ok(offsets)) => {
                // Should not happen; never report offsets we cannot match to records.
                return Err(format!(
                    "broker acknowledged {} of {} records",
                    offsets.len(),
                    records.len()
                ));
            }
            Ok(Err(e)) => last_error = e.to_string(),
            Err(_) => last_error = format!("no acknowledgement within {timeout:?}"),
        }
        *pc = None;
    }
    Err(last_error)
}
