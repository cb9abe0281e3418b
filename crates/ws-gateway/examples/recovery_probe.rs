//! How long a lossless reconnect takes: a private Kafka (testkit), the gateway in-process,
//! `--missed` records of one channel produced among `--noise` records of other tokens in the
//! same partition, then `--rounds` clients each subscribe with `"recover"` from before the
//! first missed record. Prints percentiles of subscribe → `subscribed` reply (all replayed
//! events received first) and the replay rate.
//!
//! `cargo run --release -p ws-gateway --example recovery_probe -- --missed 1000 --noise 10000`

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use odin_events::envelope::SOURCE_PUBLISHER;
use odin_events::{
    partition_for_key, Classification, Envelope, EventType, Metadata, TopicMode, EVENT_VERSION,
};
use odin_service::config::TopicArgs;
use odin_service::{KafkaHealth, OutRecord, Producer, ProducerConfig};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
struct Args {
    /// Records of the recovered channel the client missed.
    #[arg(long, default_value_t = 1000)]
    missed: usize,
    /// Records of other tokens in the same partition (scanned and skipped).
    #[arg(long, default_value_t = 10_000)]
    noise: usize,
    /// Reconnects measured.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
}

fn envelope(token: &str, i: usize) -> Envelope {
    Envelope {
        metadata: Metadata {
            event_id: format!("{token}-{i}"),
            event_type: EventType::TradeExecuted,
            event_version: EVENT_VERSION.into(),
            correlation_id: "probe".into(),
            timestamp: 1_700_000_000_000 + i as i64,
            source: SOURCE_PUBLISHER.into(),
            data_classification: Classification::Public,
            token_id: token.into(),
            user_id: None,
        },
        data: json!({"seq": i, "price": "0.0042", "amount": "1500"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let broker = testkit::Broker::start().await?;
    let prefix = format!("{}.", testkit::unique_topic("probe"));
    let names = TopicArgs {
        topic_mode: TopicMode::PerCategory,
        single_topic: odin_events::topics::DEFAULT_SINGLE_TOPIC.into(),
        topic_prefix: prefix.clone(),
        topic_replication_factor: 1,
        topic_min_insync_replicas: None,
    }
    .names();
    broker.create_topics(&names.event_topic_specs()).await?;
    let topic = names.topic_for(EventType::TradeExecuted).to_owned();

    let config = <ws_gateway::Config as Parser>::try_parse_from([
        "ws-gateway",
        "--kafka-brokers",
        broker.addr(),
        "--topic-prefix",
        &prefix,
        "--fetch-max-wait-ms",
        "25",
        "--recovery-max-records",
        &args.missed.to_string(),
        "--recovery-timeout",
        "30s",
        "--log-level",
        "warn",
    ])?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/ws", listener.local_addr()?);
    let stop = tokio_util::sync::CancellationToken::new();
    let gateway = tokio::spawn(ws_gateway::run(
        config,
        listener,
        stop.clone().cancelled_owned(),
    ));

    // The channel's token and noise tokens that share its partition.
    let token = "BTC";
    let partition = partition_for_key(token.as_bytes(), 12);
    let noise_tokens: Vec<String> = (0..100_000)
        .map(|i| format!("N{i}"))
        .filter(|t| partition_for_key(t.as_bytes(), 12) == partition)
        .take(50)
        .collect();
    let producer = Producer::new(
        broker.connector(),
        ProducerConfig::default(),
        KafkaHealth::new("probe_producer_connected"),
    );
    let mut records = Vec::with_capacity(args.missed + args.noise);
    let per = args.noise / args.missed.max(1);
    let mut n = 0;
    for i in 0..args.missed {
        let e = envelope(token, i);
        records.push(OutRecord::new(
            &topic,
            Some(e.key().to_vec()),
            e.to_json(),
            0,
        ));
        for _ in 0..per {
            let t = &noise_tokens[n % noise_tokens.len()];
            let e = envelope(t, n);
            records.push(OutRecord::new(
                &topic,
                Some(e.key().to_vec()),
                e.to_json(),
                0,
            ));
            n += 1;
        }
    }
    let mut first = None;
    for r in producer.send_all(records).await {
        let d = r.context("produce")?;
        if first.is_none() {
            first = Some(d.offset);
        }
    }
    let after = first.unwrap_or(0) - 1;
    eprintln!(
        "produced {} records of {token} among {n} of other tokens in partition {partition}",
        args.missed
    );

    let mut times = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await?;
        let frame = json!({"type": "subscribe", "id": "re", "channels": [format!("{token}.trade")],
            "recover": {format!("{token}.trade"): after}});
        let t0 = Instant::now();
        ws.send(Message::text(frame.to_string())).await?;
        let mut events = 0usize;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
                .await
                .context("no reply within 60 s")?;
            let Some(Ok(Message::Text(t))) = msg else {
                bail!("connection ended: {msg:?}");
            };
            let v: Value = serde_json::from_str(&t)?;
            if v["type"] == "event" {
                events += 1;
                continue;
            }
            if v["recovery"][format!("{token}.trade")]["recovered"] != true {
                bail!("round {round}: not recovered: {v}");
            }
            break;
        }
        times.push(t0.elapsed());
        if events != args.missed {
            bail!(
                "round {round}: {events} events replayed, expected {}",
                args.missed
            );
        }
    }
    times.sort_unstable();
    let p50 = percentile(&times, 0.5);
    println!(
        "recover {} of {} records: p50 {:?}  p95 {:?}  max {:?}  ({:.0} replayed records/s at p50, {} rounds)",
        args.missed,
        args.missed + n,
        p50,
        percentile(&times, 0.95),
        times[times.len() - 1],
        args.missed as f64 / p50.as_secs_f64(),
        args.rounds
    );
    stop.cancel();
    let _ = gateway.await;
    Ok(())
}
