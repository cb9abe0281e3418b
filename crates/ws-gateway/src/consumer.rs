//! Kafka consumption: one task per partition of every event topic — in `multi` fetch mode
//! their fetches ride in one request per broker ([`odin_service::fetch_mux`]); in
//! `partition` mode each has its own rskafka `Client` (its own connection: a long-polling
//! fetch blocks everything behind it on a shared connection) — a metadata refresher that discovers new topics and partitions, and the
//! record → frame → fan-out step with dead-lettering of unreadable records.
//!
//! No consumer group: every gateway instance reads every partition, because each instance
//! serves its own clients and any client may want any token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{counter, gauge, Counter, Gauge, Histogram};
use odin_events::envelope::parse_record;
use odin_events::{Category, TopicNames};
use odin_service::kafka::partition_counts;
use odin_service::{
    FetchMux, FetchSettings, KafkaConnector, KafkaHealth, PartitionConsumer, Producer, StartFrom,
};
use rskafka::record::RecordAndOffset;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::fanout::Registry;
use crate::limit::Pacer;
use crate::metrics as m;
use crate::policy::Audience;
use crate::protocol::record_frame;

/// Dead letters waiting for their acknowledgement; when all are taken, the consumer waits
/// for one (backpressure) rather than holding unbounded records in memory.
const MAX_PENDING_DEAD_LETTERS: usize = 1024;

/// The state of one partition, for `/health` and the lag gauge.
#[derive(Debug)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    /// The start position is resolved (records produced from now on will be read).
    pub ready: AtomicBool,
    pub lag: AtomicI64,
}

/// What `/health` reports about consumption.
#[derive(Debug, Default)]
pub struct KafkaState {
    partitions: Mutex<Vec<Arc<PartitionStatus>>>,
    missing_topics: Mutex<Vec<String>>,
}

/// A summary of [`KafkaState`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaSummary {
    pub partitions: usize,
    pub ready: usize,
    pub lag: i64,
    pub missing_topics: Vec<String>,
}

impl KafkaState {
    pub fn summary(&self) -> KafkaSummary {
        let mut s = KafkaSummary::default();
        if let Ok(p) = self.partitions.lock() {
            s.partitions = p.len();
            for st in p.iter() {
                s.ready += usize::from(st.ready.load(Ordering::Acquire));
                s.lag += st.lag.load(Ordering::Relaxed);
            }
        }
        if let Ok(t) = self.missing_topics.lock() {
            s.missing_topics = t.clone();
        }
        s
    }

    fn add(&self, st: Arc<PartitionStatus>) {
        if let Ok(mut p) = self.partitions.lock() {
            p.push(st);
            gauge!(m::PARTITIONS).set(p.len() as f64);
        }
    }

    fn set_missing(&self, missing: Vec<String>) {
        if let Ok(mut t) = self.missing_topics.lock() {
            *t = missing;
        }
    }
}

/// Everything the consumer tasks share.
#[derive(Debug)]
pub struct Consumption {
    pub connector: KafkaConnector,
    pub names: TopicNames,
    pub start: StartFrom,
    pub fetch: FetchSettings,
    /// Set in `multi` fetch mode: fetches ride in one request per broker, and the partition
    /// consumers share `shared_client` for offset look-ups (no long poll ever waits on it).
    pub mux: Option<FetchMux>,
    pub shared_client: tokio::sync::OnceCell<Arc<rskafka::client::Client>>,
    /// Client-side polling (`KAFKA_FETCH_POLL_MS`): the pause after an empty fetch.
    pub poll_interval: Option<Duration>,
    pub metadata_refresh: Duration,
    pub registry: Arc<Registry>,
    pub health: KafkaHealth,
    pub state: Arc<KafkaState>,
    pub pacer: Option<Pacer>,
    /// Set only with `--dlq`.
    pub dead_letters: Option<Producer>,
    pub dead_letter_slots: Arc<Semaphore>,
    /// Whether any JWT key is configured; without one no private record is delivered.
    pub auth_enabled: bool,
}

impl Consumption {
    pub fn dead_letter_slots() -> Arc<Semaphore> {
        Arc::new(Semaphore::new(MAX_PENDING_DEAD_LETTERS))
    }
}

/// Lists topics every `metadata_refresh` and starts a consumer for each partition not yet
/// consumed; runs until `cancel`. Partitions present at the first listing start at the
/// configured position; those that appear later start at their earliest record, since
/// everything in them is new.
pub async fn supervise(ctx: Arc<Consumption>, tracker: TaskTracker, cancel: CancellationToken) {
    let mut known: HashMap<String, i32> = HashMap::new();
    let mut first_listing = true;
    let mut client = None;
    loop {
        if client.is_none() {
            match ctx.connector.client_with_retry(&ctx.health, &cancel).await {
                Ok(c) => client = Some(c),
                Err(_) => return, // cancelled
            }
        }
        if let Some(c) = &client {
            let listing = tokio::time::timeout(
                ctx.connector.request_timeout() + Duration::from_secs(1),
                partition_counts(c),
            )
            .await;
            match listing {
                Ok(Ok(counts)) => {
                    let mut missing = Vec::new();
                    for topic in ctx.names.event_topics() {
                        let Some(&n) = counts.get(topic) else {
                            missing.push(topic.to_owned());
                            continue;
                        };
                        let have = known.get(topic).copied().unwrap_or(0);
                        let start = if first_listing {
                            ctx.start
                        } else {
                            StartFrom::Earliest
                        };
                        for p in have..n {
                            spawn_partition(&ctx, &tracker, &cancel, topic, p, start);
                        }
                        if n > have {
                            info!(%topic, partitions = n, new = n - have, "consuming partitions");
                            known.insert(topic.to_owned(), n);
                        }
                    }
                    if !missing.is_empty() {
                        warn!(
                            ?missing,
                            "event topics missing; they are not created by the gateway"
                        );
                    }
                    ctx.state.set_missing(missing);
                    first_listing = false;
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "listing topics failed");
                    ctx.health.set_disconnected(format!("listing topics: {e}"));
                    client = None;
                }
                Err(_) => {
                    warn!("listing topics timed out");
                    ctx.health.set_disconnected("listing topics timed out");
                    client = None;
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(ctx.metadata_refresh) => {}
        }
    }
}

fn spawn_partition(
    ctx: &Arc<Consumption>,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
    topic: &str,
    partition: i32,
    start: StartFrom,
) {
    let status = Arc::new(PartitionStatus {
        topic: topic.to_owned(),
        partition,
        ready: AtomicBool::new(false),
        lag: AtomicI64::new(0),
    });
    ctx.state.add(Arc::clone(&status));
    tracker.spawn(run_partition(
        Arc::clone(ctx),
        status,
        start,
        cancel.clone(),
    ));
}

struct PartitionMetrics {
    consumed: Counter,
    invalid: Counter,
    lag: Gauge,
    latency: Histogram,
}

async fn run_partition(
    ctx: Arc<Consumption>,
    status: Arc<PartitionStatus>,
    start: StartFrom,
    cancel: CancellationToken,
) {
    let topic = status.topic.clone();
    let partition = status.partition;
    let client = match &ctx.mux {
        Some(_) => {
            let shared = ctx
                .shared_client
                .get_or_try_init(|| async {
                    ctx.connector
                        .client_with_retry(&ctx.health, &cancel)
                        .await
                        .map(Arc::new)
                })
                .await;
            match shared {
                Ok(c) => Arc::clone(c),
                Err(_) => return,
            }
        }
        // Its own connection: a long poll blocks every other request on a connection.
        None => match ctx.connector.client_with_retry(&ctx.health, &cancel).await {
            Ok(c) => Arc::new(c),
            Err(_) => return,
        },
    };
    let mut consumer = PartitionConsumer::new(client, topic.clone(), partition, start, ctx.fetch)
        .with_health(ctx.health.clone());
    if let Some(mux) = &ctx.mux {
        consumer = consumer.with_mux(mux.clone());
    }
    let category = ctx.names.category_of_topic(&topic);
    let pm = PartitionMetrics {
        consumed: counter!(m::RECORDS_CONSUMED, "topic" => topic.clone()),
        invalid: counter!(m::RECORDS_INVALID, "topic" => topic.clone()),
        lag: gauge!(m::CONSUMER_LAG, "topic" => topic.clone(), "partition" => partition.to_string()),
        latency: metrics::histogram!(m::FANOUT_LATENCY),
    };
    debug!(%topic, partition, ?start, "partition consumer started");
    let mut last: Option<LastRecord> = None;
    loop {
        let before = consumer.position();
        let failures = consumer.failures();
        let mut batch = tokio::select! {
            _ = cancel.cancelled() => break,
            b = consumer.next_batch() => b,
        };
        status.ready.store(true, Ordering::Release);
        if consumer.failures() > failures {
            // The broker was lost meanwhile; make sure it came back with the same log
            // before reading on from our position.
            if let Some(l) = &last {
                match verify_log(&mut consumer, l, &cancel).await {
                    LogCheck::Same(rest) => batch.records = rest,
                    LogCheck::Replaced => {
                        warn!(%topic, partition, last_offset = l.offset, "broker came back with a different log; reading it from its start");
                        counter!(m::LOG_RESETS, "topic" => topic.clone()).increment(1);
                        consumer.seek(0);
                        last = None;
                        continue;
                    }
                    LogCheck::Cancelled => break,
                }
            }
        }
        if batch.records.is_empty() {
            // The log end fell below our position: the broker lost this log. Everything
            // now in it was written after the loss, so read it from its start.
            if let (Some(b), Some(a)) = (before, consumer.position()) {
                if a < b {
                    warn!(%topic, partition, was = b, log_end = a, "log end fell below position; reading the log from its start");
                    counter!(m::LOG_RESETS, "topic" => topic.clone()).increment(1);
                    consumer.seek(0);
                    last = None;
                }
            }
            if let Some(pause) = ctx.poll_interval {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        } else {
            if let Some(p) = &ctx.pacer {
                if !p.acquire(batch.records.len(), &cancel).await {
                    break;
                }
            }
            pm.consumed.increment(batch.records.len() as u64);
            last = batch.records.last().map(LastRecord::of);
            for rec in batch.records {
                handle_record(&ctx, &topic, partition, category, rec, &pm, &cancel).await;
            }
        }
        let lag = consumer.lag();
        status.lag.store(lag, Ordering::Relaxed);
        pm.lag.set(lag as f64);
    }
    debug!(%topic, partition, "partition consumer stopped");
}

/// Enough of the last record read to recognise it again after a broker comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LastRecord {
    offset: i64,
    timestamp_ms: i64,
    key: Option<Vec<u8>>,
    value_len: usize,
}

impl LastRecord {
    fn of(r: &RecordAndOffset) -> Self {
        Self {
            offset: r.offset,
            timestamp_ms: r.record.timestamp.timestamp_millis(),
            key: r.record.key.clone(),
            value_len: r.record.value.as_ref().map_or(0, Vec::len),
        }
    }
}

enum LogCheck {
    /// The log still holds our last record; these are the records after it.
    Same(Vec<RecordAndOffset>),
    /// The log was replaced (a broker without persistent storage restarted, or an unclean
    /// leader change): our position means nothing in it.
    Replaced,
    Cancelled,
}

/// Re-reads the last record delivered and compares it with what we remember.
async fn verify_log(
    consumer: &mut PartitionConsumer,
    last: &LastRecord,
    cancel: &CancellationToken,
) -> LogCheck {
    consumer.seek(last.offset);
    let batch = tokio::select! {
        _ = cancel.cancelled() => return LogCheck::Cancelled,
        b = consumer.next_batch() => b,
    };
    let mut records = batch.records;
    match records.first() {
        Some(r) if r.offset == last.offset => {
            if LastRecord::of(r) == *last {
                records.remove(0);
                LogCheck::Same(records)
            } else {
                LogCheck::Replaced
            }
        }
        // Removed by retention or compaction since: nothing to compare, nothing lost.
        Some(r) if r.offset > last.offset => LogCheck::Same(records),
        _ => LogCheck::Replaced,
    }
}

async fn handle_record(
    ctx: &Consumption,
    topic: &str,
    partition: i32,
    category: Option<Category>,
    rec: RecordAndOffset,
    pm: &PartitionMetrics,
    cancel: &CancellationToken,
) {
    let value = rec.record.value.as_deref().unwrap_or_default();
    let key = rec.record.key.as_deref();
    let record_ms = rec.record.timestamp.timestamp_millis();
    let error = match parse_record(value, key) {
        Ok(p) => {
            // Channel = token + the category of the topic (or of the event type on the
            // single topic).
            let category = category.unwrap_or_else(|| p.event_type.category());
            let audience = Audience::of(p.classification, p.user_id.as_deref(), ctx.auth_enabled);
            if let Audience::Nobody(reason) = audience {
                reason.count();
                return;
            }
            let fanout =
                ctx.registry
                    .deliver_to(category, &p.token_id, rec.offset, audience, || {
                        record_frame(&p, category, rec.offset, record_ms)
                    });
            if fanout.delivered > 0 {
                let now_ms = now_ms();
                pm.latency
                    .record((now_ms - record_ms).max(0) as f64 / 1000.0);
            }
            return;
        }
        Err(e) => e,
    };
    pm.invalid.increment(1);
    warn!(%topic, partition, offset = rec.offset, error = %error, "unreadable record skipped");
    let Some(producer) = &ctx.dead_letters else {
        return;
    };
    let permit = tokio::select! {
        _ = cancel.cancelled() => return,
        p = Arc::clone(&ctx.dead_letter_slots).acquire_owned() => match p {
            Ok(p) => p,
            Err(_) => return,
        },
    };
    let dl = odin_service::dlq::dead_letter(
        topic,
        partition,
        rec.offset,
        rec.record.key,
        rec.record.value.unwrap_or_default(),
        record_ms,
        &error.to_string(),
    );
    match producer.enqueue(dl).await {
        Ok(ack) => {
            let topic = topic.to_owned();
            let offset = rec.offset;
            tokio::spawn(async move {
                let _permit = permit;
                match ack.await {
                    Ok(Ok(_)) => counter!(m::DLQ_RECORDS, "result" => "ok").increment(1),
                    Ok(Err(e)) => {
                        warn!(%topic, partition, offset, error = %e, "dead letter not written");
                        counter!(m::DLQ_RECORDS, "result" => "error").increment(1);
                    }
                    Err(_) => counter!(m::DLQ_RECORDS, "result" => "error").increment(1),
                }
            });
        }
        Err(e) => {
            warn!(%topic, partition, offset = rec.offset, error = %e, "dead letter not written");
            counter!(m::DLQ_RECORDS, "result" => "error").increment(1);
        }
    }
}

/// Wall-clock epoch milliseconds (record timestamps are wall-clock).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
