//! End-to-end ingest throughput through a real broker: a private Kafka (testkit), N trades
//! on a 12-partition input, the aggregator replaying them (one task and connection per
//! partition), then N more produced live. Reports trades/s as counted by `/stats`.
//!
//! `cargo run --release -p aggregator --example e2e_bench [trades]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use clap::Parser;
use odin_service::{KafkaHealth, OutRecord, Producer, ProducerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn stats(addr: std::net::SocketAddr) -> serde_json::Value {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /stats HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("{}");
    serde_json::from_str(body).unwrap_or_default()
}

async fn wait_ingested(addr: std::net::SocketAddr, n: u64) -> Duration {
    let started = Instant::now();
    while stats(addr).await["trades_ingested"].as_u64().unwrap_or(0) < n {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "bench stalled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

async fn produce(p: &Producer, topic: &str, n: usize, now: i64, salt: usize) {
    let recs: Vec<OutRecord> = (0..n)
        .map(|i| {
            let token = format!("0x{:040x}", (i * 7 + salt) % 1000);
            let t = now - 3_000_000 + (i as i64 % 2_900_000);
            let v = format!(
                r#"{{"token":"{token}","side":"{}","price":"0.000{}","amount":"{}.5","timestamp":{t},"tx_hash":"0x{i:x}"}}"#,
                if i % 3 == 0 { "sell" } else { "buy" },
                100 + i % 900,
                i % 10_000
            );
            OutRecord::new(topic, Some(token.into_bytes()), v.into_bytes(), t)
        })
        .collect();
    for chunk in recs.chunks(50_000) {
        for r in p.send_all(chunk.to_vec()).await {
            r.unwrap();
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let broker = testkit::Broker::start().await?;
    let input = "trade-info-bench";
    broker.create_topic(input, 12).await?;
    broker.create_topic("trade-info-bench.dlq", 1).await?;
    broker.create_topic("aggregate-bench", 12).await?;
    let p = Producer::new(
        broker.connector(),
        ProducerConfig::default(),
        KafkaHealth::new("bench_kafka_connected"),
    );
    let now = chrono::Utc::now().timestamp_millis();
    let started = Instant::now();
    produce(&p, input, n, now, 0).await;
    println!(
        "produced {n} trades in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let config = aggregator::Config::try_parse_from([
        "aggregator",
        "--kafka-brokers",
        broker.addr(),
        "--kafka-topic",
        input,
        "--aggregate-topic",
        "aggregate-bench",
        "--publish-interval",
        "1s",
        "--log-level",
        "warn",
    ])?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let svc = tokio::spawn(aggregator::run_with(
        config,
        listener,
        cancel.clone(),
        std::sync::Arc::new(aggregator::SystemClock),
    ));
    let replay = wait_ingested(addr, n as u64).await;
    println!(
        "replay: {n} trades ingested in {:.2} s = {:.0} trades/s",
        replay.as_secs_f64(),
        n as f64 / replay.as_secs_f64()
    );
    let started = Instant::now();
    let live = tokio::spawn({
        let p = p.clone();
        async move { produce(&p, input, n, now, 1).await }
    });
    wait_ingested(addr, 2 * n as u64).await;
    let took = started.elapsed();
    live.await?;
    println!(
        "live: {n} trades produced and ingested in {:.2} s = {:.0} trades/s (producer included)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    let s = stats(addr).await;
    println!(
        "ticks {} published {} errors {} avg latency {:.2} ms",
        s["ticks"],
        s["producer"]["messages_sent"],
        s["producer"]["messages_error"],
        s["producer"]["average_latency_ms"]
    );
    cancel.cancel();
    svc.await??;
    Ok(())
}
