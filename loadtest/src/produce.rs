//! The producing side: envelopes straight to Kafka at a fixed rate, round-robin over the
//! planned channels, each carrying its channel's sequence number, its send time in µs and
//! whether it belongs to the measured window. Every acknowledged measured event adds its
//! channel's live subscriber count to the expected deliveries.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use odin_events::{Classification, Envelope, Metadata, TopicNames, EVENT_VERSION};
use odin_service::{Delivery, OutRecord, ProduceError, Producer};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::now_us;
use crate::plan::{Plan, Subscribers};
use crate::stats::Stats;

/// What the producing loop needs.
#[derive(Debug)]
pub struct ProduceCtx {
    pub plan: Arc<Plan>,
    pub subs: Arc<Subscribers>,
    pub stats: Arc<Stats>,
    pub producer: Producer,
    pub topics: TopicNames,
    pub rate: f64,
    pub payload_bytes: usize,
    pub run_id: String,
}

/// Acknowledgements waiting to be counted; full ⇒ the producing loop waits, so the achieved
/// rate drops below the target and the report shows it.
const ACK_QUEUE: usize = 65_536;

type AckRx = oneshot::Receiver<Result<Delivery, ProduceError>>;

/// The record value of one event: an envelope whose data carries what clients check.
pub fn event_value(
    ctx: &ProduceCtx,
    channel: u32,
    seq: u64,
    measured: bool,
    pad: &str,
    sent_us: u64,
) -> Option<(String, Envelope)> {
    let info = ctx.plan.channels.get(channel as usize)?;
    let topic = ctx.topics.topic_for(info.event_type).to_owned();
    let mut data = serde_json::Map::new();
    data.insert("seq".into(), seq.into());
    data.insert("sentUs".into(), sent_us.into());
    data.insert("m".into(), u8::from(measured).into());
    data.insert("tokenId".into(), info.token.clone().into());
    data.insert("price".into(), "0.00012345".into());
    data.insert("amount".into(), "1000".into());
    if !pad.is_empty() {
        data.insert("pad".into(), pad.into());
    }
    let ms = (sent_us / 1_000) as i64;
    let env = Envelope {
        metadata: Metadata {
            event_id: format!("{}-{}-{seq}", ctx.run_id, info.name),
            event_type: info.event_type,
            event_version: EVENT_VERSION.into(),
            correlation_id: ctx.run_id.clone(),
            timestamp: ms,
            source: "odin-loadtest".into(),
            // Private classes go only to their user; the load is public market data.
            data_classification: Classification::Public,
            token_id: info.token.clone(),
            user_id: None,
        },
        data,
    };
    Some((topic, env))
}

/// Produces at `ctx.rate` until `end`; events from `measure_from` on are measured. Returns
/// the sequence numbers handed out per channel (= events attempted per channel).
pub async fn produce(
    ctx: Arc<ProduceCtx>,
    measure_from: Instant,
    end: Instant,
    cancel: CancellationToken,
) -> Vec<u64> {
    let mut seqs = vec![0u64; ctx.plan.channels.len()];
    let order = ctx.plan.produced_channels();
    if order.is_empty() || ctx.rate <= 0.0 {
        return seqs;
    }
    let pad = "x".repeat(ctx.payload_bytes);
    let (ack_tx, ack_rx) = mpsc::channel::<(AckRx, u32, bool)>(ACK_QUEUE);
    let acks = tokio::spawn(count_acks(ctx.stats.clone(), ack_rx));

    let start = Instant::now();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0u64;
    let mut rr = 0usize;
    'outer: loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        if now >= end {
            break;
        }
        let due = (now.duration_since(start).as_secs_f64() * ctx.rate) as u64;
        while sent < due {
            let channel = order[rr % order.len()];
            rr += 1;
            let seq = seqs[channel as usize];
            seqs[channel as usize] += 1;
            sent += 1;
            let measured = Instant::now() >= measure_from;
            let sent_us = now_us();
            let Some((topic, env)) = event_value(&ctx, channel, seq, measured, &pad, sent_us)
            else {
                continue;
            };
            let mut rec = OutRecord::new(
                topic,
                Some(env.key().to_vec()),
                env.to_json(),
                env.metadata.timestamp,
            );
            for (k, v) in env.headers() {
                rec = rec.header(k, v);
            }
            // Read at send time: the clients subscribed now are the ones that must get it.
            let subscribers = ctx.subs.get(channel);
            match ctx.producer.enqueue(rec).await {
                Ok(rx) => {
                    if ack_tx.send((rx, subscribers, measured)).await.is_err() {
                        break 'outer;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "produce failed");
                    Stats::add(&ctx.stats.produce_failed, 1);
                }
            }
            if cancel.is_cancelled() || Instant::now() >= end {
                break 'outer;
            }
        }
    }
    drop(ack_tx);
    let _ = acks.await;
    seqs
}

async fn count_acks(stats: Arc<Stats>, mut rx: mpsc::Receiver<(AckRx, u32, bool)>) {
    while let Some((ack, subscribers, measured)) = rx.recv().await {
        match ack.await {
            Ok(Ok(_)) => {
                Stats::add(&stats.produced, 1);
                if measured {
                    Stats::add(&stats.produced_measured, 1);
                    Stats::add(&stats.expected, u64::from(subscribers));
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "event not acknowledged");
                Stats::add(&stats.produce_failed, 1);
            }
            Err(_) => Stats::add(&stats.produce_failed, 1),
        }
    }
}

/// A short id distinguishing this run's events from any other's.
pub fn run_id() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("lt{t:x}")
}

/// What the producing thread needs to set itself up.
#[derive(Debug)]
pub struct ThreadSetup {
    pub kafka: odin_service::KafkaArgs,
    pub topics: TopicNames,
    pub linger: std::time::Duration,
    pub plan: Arc<Plan>,
    pub subs: Arc<Subscribers>,
    pub stats: Arc<Stats>,
    pub rate: f64,
    pub payload_bytes: usize,
}

/// The producing side on a thread of its own, with its own runtime: thousands of client
/// tasks busy with frames on the main runtime must not delay sends (which would bunch
/// events into bursts and add their wait to the measured latency).
#[derive(Debug)]
pub struct ProducerThread {
    start: Option<oneshot::Sender<(Instant, Instant)>>,
    done: oneshot::Receiver<Vec<u64>>,
    thread: std::thread::JoinHandle<()>,
}

impl ProducerThread {
    /// Starts the thread, connects, checks the topics exist; returns once it is ready.
    pub async fn spawn(setup: ThreadSetup, cancel: CancellationToken) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
        let (start_tx, start_rx) = oneshot::channel::<(Instant, Instant)>();
        let (done_tx, done_rx) = oneshot::channel::<Vec<u64>>();
        let thread = std::thread::Builder::new()
            .name("loadtest-producer".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start a runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let producer = match connect(&setup).await {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let window = tokio::select! {
                        _ = cancel.cancelled() => None,
                        w = start_rx => w.ok(),
                    };
                    let seqs = match window {
                        Some((measure_from, end)) => {
                            let ctx = Arc::new(ProduceCtx {
                                plan: setup.plan,
                                subs: setup.subs,
                                stats: setup.stats,
                                producer: producer.clone(),
                                topics: setup.topics,
                                rate: setup.rate,
                                payload_bytes: setup.payload_bytes,
                                run_id: run_id(),
                            });
                            produce(ctx, measure_from, end, cancel).await
                        }
                        None => Vec::new(),
                    };
                    producer.flush().await;
                    let _ = done_tx.send(seqs);
                });
            })?;
        match ready_rx.await {
            Ok(Ok(())) => Ok(Self {
                start: Some(start_tx),
                done: done_rx,
                thread,
            }),
            Ok(Err(e)) => Err(anyhow::anyhow!(e)),
            Err(_) => Err(anyhow::anyhow!("the producer thread ended during setup")),
        }
    }

    /// Produces from now until `end`, counting events from `measure_from` on.
    pub fn start(&mut self, measure_from: Instant, end: Instant) {
        if let Some(tx) = self.start.take() {
            let _ = tx.send((measure_from, end));
        }
    }

    /// Waits for the producing to end; returns the sequence numbers handed out per channel.
    pub async fn finish(self) -> Vec<u64> {
        drop(self.start);
        let seqs = self.done.await.unwrap_or_default();
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
        seqs
    }
}

async fn connect(setup: &ThreadSetup) -> Result<Producer, String> {
    let connector = odin_service::KafkaConnector::new(&setup.kafka);
    let client = connector
        .client()
        .await
        .map_err(|e| format!("cannot reach the brokers: {e}"))?;
    let wanted: Vec<&str> = setup.topics.event_topics();
    let missing = odin_service::topics::missing_topics(&client, &wanted)
        .await
        .map_err(|e| e.to_string())?;
    if !missing.is_empty() {
        return Err(format!(
            "topics missing: {} (run `loadtest --create-topics`)",
            missing.join(", ")
        ));
    }
    let producer = Producer::new(
        connector,
        odin_service::ProducerConfig {
            linger: setup.linger,
            ..odin_service::ProducerConfig::default()
        },
        odin_service::KafkaHealth::new("loadtest_kafka_connected"),
    );
    for t in &wanted {
        producer
            .partition_count(t)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(producer)
}
