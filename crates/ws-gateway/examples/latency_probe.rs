//! Produce → client latency through the broker and the gateway, at a light fixed rate:
//! one client subscribes to a few channels, records are produced straight to Kafka with
//! their send time inside, and the client reports percentiles of receive − send (same
//! machine clock). `--create-topics` first creates every default topic (a fresh broker).
//!
//! `cargo run --release -p ws-gateway --example latency_probe -- --brokers 127.0.0.1:19092 --rate 1000 --seconds 10`

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use odin_events::{EventType, TopicNames};
use odin_service::{KafkaConnector, KafkaHealth, OutRecord, Producer, ProducerConfig};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value = "ws://127.0.0.1:3002/ws")]
    url: String,
    #[arg(long, default_value = "127.0.0.1:19092", value_delimiter = ',')]
    brokers: Vec<String>,
    /// Events per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Tokens the events rotate over (one subscribed channel each).
    #[arg(long, default_value_t = 100)]
    tokens: usize,
    /// Create every default topic first.
    #[arg(long)]
    create_topics: bool,
    /// Only create the topics, then exit.
    #[arg(long)]
    create_only: bool,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let names = TopicNames::default();
    let connector = KafkaConnector::from_brokers(args.brokers.clone());
    if args.create_topics || args.create_only {
        let created = odin_service::topics::ensure_topics(
            &connector,
            &names.all_specs(),
            odin_service::topics::Placement::default(),
        )
        .await?;
        eprintln!("created {} topics", created.len());
        if args.create_only {
            return Ok(());
        }
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(&args.url)
        .await
        .with_context(|| format!("connecting to {}", args.url))?;
    let channels: Vec<String> = (0..args.tokens).map(|i| format!("P{i}.trade")).collect();
    ws.send(Message::text(
        json!({"type": "subscribe", "channels": channels}).to_string(),
    ))
    .await?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.contains("\"subscribed\"") => {}
        other => bail!("no subscription reply: {other:?}"),
    }
    let producer = Producer::new(
        connector,
        ProducerConfig {
            linger: Duration::ZERO,
            ..ProducerConfig::default()
        },
        KafkaHealth::new("probe_kafka_connected"),
    );
    let total = args.rate * args.seconds;
    let topic = names.topic_for(EventType::TradeExecuted).to_owned();
    let rate = args.rate.max(1);
    let tokens = args.tokens.max(1);
    let produce = tokio::spawn(async move {
        let start = Instant::now();
        for i in 0..total {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
            let token = format!("P{}", i as usize % tokens);
            let value = json!({"type": "TRADE_EXECUTED", "timestamp": now_us() / 1000,
                "data": {"seq": i, "sentUs": now_us()}});
            let rec = OutRecord::new(
                topic.clone(),
                Some(token.into_bytes()),
                value.to_string().into_bytes(),
                now_us() / 1000,
            );
            // Pipelined: acknowledgements are not awaited one by one.
            if producer.enqueue(rec).await.is_err() {
                eprintln!("produce failed");
            }
        }
        producer.flush().await;
    });
    let mut lat_us: Vec<i64> = Vec::with_capacity(total as usize);
    let deadline = Instant::now() + Duration::from_secs(args.seconds + 10);
    while (lat_us.len() as u64) < total && Instant::now() < deadline {
        let msg = match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(m))) => m,
            _ => break,
        };
        if let Message::Text(t) = msg {
            let received = now_us();
            let v: Value = serde_json::from_str(&t)?;
            if let Some(sent) = v["data"]["sentUs"].as_i64() {
                lat_us.push(received - sent);
            }
        }
    }
    produce.await?;
    lat_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat_us.is_empty() {
            return f64::NAN;
        }
        let i = ((lat_us.len() as f64 - 1.0) * p).round() as usize;
        lat_us[i] as f64 / 1000.0
    };
    println!(
        "events sent={} received={} latency ms: p50={:.2} p90={:.2} p99={:.2} max={:.2}",
        total,
        lat_us.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}
