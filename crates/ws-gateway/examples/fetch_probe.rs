//! Broker CPU of fetching the 96 event partitions one request per partition vs in
//! multi-partition requests (the measurement behind `KAFKA_FETCH_MODE=multi`, see
//! docs/benchmarks.md). Runs 10 s against a broker with the event topics created.
//!
//! `fetch_probe <broker addr> <broker pid> per|one|topic <max-wait ms>` (`AT=<offset>` sets
//! the fetch offset); `fetch_probe <addr> <pid> fill <n>` first writes n one-record batches
//! to each `odin.trades` partition.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::sync::Arc;
use std::time::Instant;

use rskafka::messenger::Messenger;
use rskafka::protocol::messages::{
    FetchRequest, FetchRequestPartition, FetchRequestTopic, IsolationLevel,
};
use rskafka::protocol::primitives::{Int32, Int64, String_};

fn cpu(pid: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let mut a = std::env::args().skip(1);
    let addr = a.next().unwrap();
    let pid = a.next().unwrap();
    let mode = a.next().unwrap();
    let wait: i32 = a.next().unwrap().parse().unwrap();
    let topics: Vec<String> = [
        "odin.trades",
        "odin.liquidity",
        "odin.metadata",
        "odin.social",
        "odin.community",
        "odin.creation",
        "odin.analytics",
        "odin.balances",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let secs = 10.0;
    if mode == "fill" {
        let client = rskafka::client::ClientBuilder::new(vec![addr.clone()])
            .build()
            .await
            .unwrap();
        for p in 0..12 {
            let pc = client
                .partition_client(
                    "odin.trades",
                    p,
                    rskafka::client::partition::UnknownTopicHandling::Error,
                )
                .await
                .unwrap();
            for i in 0..wait {
                let r = rskafka::record::Record {
                    key: Some(b"BTC".to_vec()),
                    value: Some(format!("{{\"i\":{i}}}").into_bytes()),
                    headers: Default::default(),
                    timestamp: rskafka::chrono::Utc::now(),
                };
                pc.produce(vec![r], rskafka::client::partition::Compression::Lz4)
                    .await
                    .unwrap();
            }
        }
        println!("filled");
        return;
    }
    let at_end = std::env::var("AT")
        .ok()
        .map(|v| v.parse::<i64>().unwrap())
        .unwrap_or(0);
    let c0 = cpu(&pid);
    let t0 = Instant::now();
    let mut reqs = 0u64;
    if mode == "per" {
        let mut handles = vec![];
        for t in &topics {
            for p in 0..12 {
                let client = Arc::new(
                    rskafka::client::ClientBuilder::new(vec![addr.clone()])
                        .build()
                        .await
                        .unwrap(),
                );
                let pc = client
                    .partition_client(
                        t.clone(),
                        p,
                        rskafka::client::partition::UnknownTopicHandling::Error,
                    )
                    .await
                    .unwrap();
                handles.push(tokio::spawn(async move {
                    let _c = client;
                    let mut n = 0u64;
                    let start = Instant::now();
                    while start.elapsed().as_secs_f64() < secs {
                        pc.fetch_records(0, 1..1_000_000, wait).await.unwrap();
                        n += 1;
                    }
                    n
                }));
            }
        }
        for h in handles {
            reqs += h.await.unwrap();
        }
    } else {
        let groups: Vec<Vec<String>> = if mode == "one" {
            vec![topics.clone()]
        } else {
            topics.iter().map(|t| vec![t.clone()]).collect()
        };
        let mut handles = vec![];
        for g in groups {
            let addr = addr.clone();
            handles.push(tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let mut m = Messenger::new(stream, 100 * 1024 * 1024, Arc::from("probe"));
                m.sync_versions().await.unwrap();
                let mut n = 0u64;
                let start = Instant::now();
                while start.elapsed().as_secs_f64() < secs {
                    let req = FetchRequest {
                        replica_id: Int32(-1),
                        max_wait_ms: Int32(wait),
                        min_bytes: Int32(1),
                        max_bytes: Some(Int32(50_000_000)),
                        isolation_level: Some(IsolationLevel::ReadCommitted),
                        topics: g
                            .iter()
                            .map(|t| FetchRequestTopic {
                                topic: String_(t.clone()),
                                partitions: (0..12)
                                    .map(|p| FetchRequestPartition {
                                        partition: Int32(p),
                                        fetch_offset: Int64(at_end),
                                        partition_max_bytes: Int32(1_000_000),
                                    })
                                    .collect(),
                            })
                            .collect(),
                    };
                    let r = m.request(req).await.unwrap();
                    assert_eq!(
                        r.responses
                            .iter()
                            .map(|t| t.partitions.len())
                            .sum::<usize>(),
                        g.len() * 12
                    );
                    n += 1;
                }
                n
            }));
        }
        for h in handles {
            reqs += h.await.unwrap();
        }
    }
    let el = t0.elapsed().as_secs_f64();
    println!(
        "mode {mode} wait {wait}: {:.0} requests/s, broker {:.2} cores",
        reqs as f64 / el,
        (cpu(&pid) - c0) / el
    );
}
