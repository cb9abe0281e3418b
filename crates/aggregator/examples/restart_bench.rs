//! How long an aggregator restart takes with two hours of retained trades: a private Kafka
//! (testkit), `trade-info` holding 2 h of trades at 1,000 trades/s (7.2 M records, 12
//! partitions), then an aggregator started against it, timed until its replay is complete
//! (`/stats` `replay_complete`). Run twice: seeking by time (the default) and with an allowed
//! lateness of 3 h, which reads everything retained (what a start from the earliest record
//! costs).
//!
//! `cargo run --release -p aggregator --example restart_bench [trades] [span_ms]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use clap::Parser;
use odin_events::TopicSpec;
use odin_service::{KafkaHealth, OutRecord, Producer, ProducerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn stats(addr: std::net::SocketAddr) -> serde_json::Value {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return serde_json::Value::Null;
    };
    let _ = s
        .write_all(b"GET /stats HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        .await;
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf).await;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("{}");
    serde_json::from_str(body).unwrap_or_default()
}

async fn restart(broker: &testkit::Broker, input: &str, lateness: &str) -> anyhow::Result<()> {
    let config = aggregator::Config::try_parse_from([
        "aggregator",
        "--kafka-brokers",
        broker.addr(),
        "--kafka-topic",
        input,
        "--aggregate-topic",
        "aggregate-bench",
        "--publish-interval",
        "30s",
        "--allowed-lateness",
        lateness,
        "--log-level",
        "warn",
    ])?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let svc = tokio::spawn(aggregator::run_with(
        config,
        listener,
        cancel.clone(),
        std::sync::Arc::new(aggregator::SystemClock),
    ));
    let s = loop {
        let s = stats(addr).await;
        if s["replay_complete"] == true {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "replay stalled: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = started.elapsed();
    println!(
        "allowed lateness {lateness}: replay complete in {:.2} s; trades read {} (ingested {}, skipped as older than the horizon {}), tokens {}",
        took.as_secs_f64(),
        s["trades_ingested"].as_u64().unwrap_or(0) + s["replay_skipped"].as_u64().unwrap_or(0),
        s["trades_ingested"],
        s["replay_skipped"],
        s["tokens_held"],
    );
    cancel.cancel();
    svc.await??;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(7_200_000);
    let span: i64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(7_200_000);
    let broker = testkit::Broker::start().await?;
    let input = "trade-info-bench";
    broker
        .create_topics(&[
            TopicSpec {
                name: input.into(),
                partitions: 12,
                retention_ms: odin_events::topics::TRADE_INFO_RETENTION_MS,
            },
            TopicSpec {
                name: format!("{input}.dlq"),
                partitions: 1,
                retention_ms: odin_events::topics::DLQ_RETENTION_MS,
            },
            TopicSpec {
                name: "aggregate-bench".into(),
                partitions: 12,
                retention_ms: odin_events::topics::AGGREGATE_INFO_RETENTION_MS,
            },
        ])
        .await?;
    let p = Producer::new(
        broker.connector(),
        ProducerConfig::default(),
        KafkaHealth::new("bench_kafka_connected"),
    );
    let now = chrono::Utc::now().timestamp_millis();
    let started = Instant::now();
    // In time order, as a live producer writes them: trade i at now − span + i·span/n.
    let mut i = 0usize;
    while i < n {
        let end = (i + 50_000).min(n);
        let recs: Vec<OutRecord> = (i..end)
            .map(|k| {
                let token = format!("0x{:040x}", (k * 7) % 1000);
                let t = now - span + (k as i64 * span) / n as i64;
                let v = format!(
                    r#"{{"token":"{token}","side":"{}","price":"0.000{}","amount":"{}.5","timestamp":{t},"tx_hash":"0x{k:x}"}}"#,
                    if k % 3 == 0 { "sell" } else { "buy" },
                    100 + k % 900,
                    k % 10_000
                );
                OutRecord::new(input, Some(token.into_bytes()), v.into_bytes(), t)
            })
            .collect();
        for r in p.send_all(recs).await {
            r.unwrap();
        }
        i = end;
    }
    println!(
        "produced {n} trades over {} min of event time in {:.1} s",
        span / 60_000,
        started.elapsed().as_secs_f64()
    );
    restart(&broker, input, "60s").await?;
    restart(&broker, input, "3h").await?;
    Ok(())
}
