//! Helpers for the aggregator's broker tests: run the service in-process on a manual
//! clock, produce trades, read topics, and an independent reference computation.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aggregator::{Config, ManualClock};
use clap::Parser;
use odin_events::TokenAggregateData;
use odin_service::{
    FetchSettings, KafkaHealth, OutRecord, PartitionConsumer, Producer, ProducerConfig, StartFrom,
};
use rust_decimal::Decimal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A tick time far from the real clock; a multiple of every window.
pub const E1: i64 = 1_800_000_000_000;
pub const SEC: i64 = 1_000;
pub const MIN: i64 = 60_000;
pub const HOUR: i64 = 3_600_000;
/// The default windows.
pub const WINDOWS: [(&str, i64); 5] = [
    ("1min", MIN),
    ("5min", 5 * MIN),
    ("15min", 15 * MIN),
    ("30min", 30 * MIN),
    ("1hour", HOUR),
];

/// One aggregator instance running in this process.
pub struct Svc {
    pub addr: SocketAddr,
    pub clock: Arc<ManualClock>,
    cancel: CancellationToken,
    handle: JoinHandle<Result<(), aggregator::AggregatorError>>,
}

impl Svc {
    /// Starts an instance reading `input` and writing `output`, its clock at `now`.
    pub async fn start(
        broker: &testkit::Broker,
        input: &str,
        output: &str,
        now: i64,
        extra: &[&str],
    ) -> Svc {
        let mut args = vec![
            "aggregator".to_owned(),
            "--kafka-brokers".into(),
            broker.addr().into(),
            "--kafka-request-timeout".into(),
            "3s".into(),
            "--kafka-topic".into(),
            input.into(),
            "--aggregate-topic".into(),
            output.into(),
            "--publish-interval".into(),
            "1s".into(),
            "--fetch-max-wait-ms".into(),
            "20".into(),
            "--batch-linger".into(),
            "5ms".into(),
            "--addr".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let config = Config::try_parse_from(args).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let clock = Arc::new(ManualClock::new(now));
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(aggregator::run_with(
            config,
            listener,
            cancel.clone(),
            clock.clone(),
        ));
        Svc {
            addr,
            clock,
            cancel,
            handle,
        }
    }

    /// Stops the instance and checks it ended cleanly.
    pub async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.handle)
            .await
            .expect("service stops within 20s")
            .unwrap()
            .unwrap();
    }

    pub async fn stats(&self) -> serde_json::Value {
        let (code, body) = http(self.addr, "GET", "/stats", "", "").await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Polls `/stats` until `ok` holds (bounded), and returns it.
    pub async fn stats_until(
        &self,
        what: &str,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.stats().await;
            if ok(&s) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {s}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the instance has replayed its input (bounded).
    pub async fn wait_replayed(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if self.stats().await["replay_complete"] == true {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "replay did not complete"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A minimal HTTP/1.1 client: (status, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    extra_headers: &str,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("response within 10s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// A trade as the test writes it.
#[derive(Debug, Clone)]
pub struct T {
    pub token: String,
    pub buy: bool,
    pub price: Decimal,
    pub amount: Decimal,
    pub usd: Decimal,
    pub t: i64,
}

impl T {
    pub fn new(token: &str, buy: bool, price: &str, amount: &str, usd: &str, t: i64) -> T {
        T {
            token: token.into(),
            buy,
            price: price.parse().unwrap(),
            amount: amount.parse().unwrap(),
            usd: usd.parse().unwrap(),
            t,
        }
    }

    pub fn json(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "token": self.token,
            "side": if self.buy { "buy" } else { "sell" },
            "price": self.price.to_string(),
            "amount": self.amount.to_string(),
            "volume_usd": self.usd.to_string(),
            "timestamp": self.t,
            "tx_hash": format!("0x{:x}", self.t),
        }))
        .unwrap()
    }
}

pub fn producer(broker: &testkit::Broker) -> Producer {
    Producer::new(
        broker.connector(),
        ProducerConfig::default(),
        KafkaHealth::new("test_kafka_connected"),
    )
}

/// Produces trades keyed by token, in order, and checks every acknowledgement.
pub async fn produce(p: &Producer, topic: &str, trades: &[T]) {
    let recs = trades
        .iter()
        .map(|t| OutRecord::new(topic, Some(t.token.as_bytes().to_vec()), t.json(), t.t))
        .collect();
    for r in p.send_all(recs).await {
        r.unwrap();
    }
}

/// A record read back.
#[derive(Debug, Clone)]
pub struct Rec {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: BTreeMap<String, Vec<u8>>,
}

/// Reads every partition of a topic from the start.
pub struct Reader {
    consumers: Vec<PartitionConsumer>,
    pub records: Vec<Rec>,
}

impl Reader {
    pub async fn new(broker: &testkit::Broker, topic: &str, partitions: i32) -> Reader {
        let client = Arc::new(broker.client().await.unwrap());
        let consumers = (0..partitions)
            .map(|p| {
                PartitionConsumer::new(
                    Arc::clone(&client),
                    topic,
                    p,
                    StartFrom::Earliest,
                    FetchSettings {
                        max_wait_ms: 10,
                        ..Default::default()
                    },
                )
            })
            .collect();
        Reader {
            consumers,
            records: Vec::new(),
        }
    }

    async fn poll(&mut self) {
        for c in &mut self.consumers {
            let p = c.partition();
            for r in c.next_batch().await.records {
                self.records.push(Rec {
                    partition: p,
                    offset: r.offset,
                    key: r.record.key,
                    value: r.record.value.unwrap_or_default(),
                    headers: r.record.headers,
                });
            }
        }
    }

    /// Reads until `done(records)` holds, or fails after 20 s.
    pub async fn until(&mut self, what: &str, done: impl Fn(&[Rec]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            self.poll().await;
            if done(&self.records) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; have {} records",
                self.records.len()
            );
        }
    }

    /// The aggregates published for tick `end`, by token (each record checked to carry
    /// one timestamp).
    pub fn at(&self, end: i64) -> BTreeMap<String, TokenAggregateData> {
        let ts = aggregator::window::rfc3339(end);
        let mut out = BTreeMap::new();
        for r in &self.records {
            let d: TokenAggregateData = serde_json::from_slice(&r.value).unwrap();
            if d.aggregate_data.first().map(|i| i.timestamp.as_str()) == Some(ts.as_str()) {
                assert!(d.aggregate_data.iter().all(|i| i.timestamp == ts));
                out.insert(d.token.clone(), d);
            }
        }
        out
    }

    /// Waits until tick `end` has records for exactly the tokens `want`, and returns them.
    pub async fn tick(&mut self, end: i64, want: usize) -> BTreeMap<String, TokenAggregateData> {
        let ts = aggregator::window::rfc3339(end);
        self.until(&format!("{want} aggregates at {ts}"), |recs| {
            recs.iter()
                .filter(|r| {
                    serde_json::from_slice::<TokenAggregateData>(&r.value)
                        .map(|d| {
                            d.aggregate_data.first().map(|i| i.timestamp.as_str())
                                == Some(ts.as_str())
                        })
                        .unwrap_or(false)
                })
                .count()
                >= want
        })
        .await;
        self.at(end)
    }
}

/// The expected item of one window, computed from the trade list alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Want {
    pub window: String,
    pub buys: u64,
    pub sells: u64,
    pub buy_volume: Decimal,
    pub sell_volume: Decimal,
    pub usd: Decimal,
    pub open: Decimal,
    pub close: Decimal,
    pub change: f64,
}

/// The reference: for each token and window, the trades with `end − W < t ≤ end`; open and
/// close are the first and last by event time, ties by their order in `trades`.
pub fn reference(trades: &[T], end: i64) -> BTreeMap<String, Vec<Want>> {
    let mut out: BTreeMap<String, Vec<Want>> = BTreeMap::new();
    let mut tokens: Vec<&str> = trades.iter().map(|t| t.token.as_str()).collect();
    tokens.sort();
    tokens.dedup();
    for token in tokens {
        for (name, w) in WINDOWS {
            let inside: Vec<(usize, &T)> = trades
                .iter()
                .enumerate()
                .filter(|(_, t)| t.token == token && end - w < t.t && t.t <= end)
                .collect();
            if inside.is_empty() {
                continue;
            }
            let mut buys = 0;
            let mut sells = 0;
            let mut bv = Decimal::ZERO;
            let mut sv = Decimal::ZERO;
            let mut usd = Decimal::ZERO;
            let (mut first, mut last) = (inside[0], inside[0]);
            for &(i, t) in &inside {
                if t.buy {
                    buys += 1;
                    bv += t.amount;
                } else {
                    sells += 1;
                    sv += t.amount;
                }
                usd += t.usd;
                if (t.t, i) < (first.1.t, first.0) {
                    first = (i, t);
                }
                if (t.t, i) > (last.1.t, last.0) {
                    last = (i, t);
                }
            }
            let (open, close) = (first.1.price, last.1.price);
            let change = if open.is_zero() {
                0.0
            } else {
                let pct = ((close - open) * Decimal::from(100) / open).round_dp_with_strategy(
                    4,
                    rust_decimal::RoundingStrategy::MidpointAwayFromZero,
                );
                pct.to_string().parse().unwrap()
            };
            out.entry(token.to_owned()).or_default().push(Want {
                window: name.into(),
                buys,
                sells,
                buy_volume: bv,
                sell_volume: sv,
                usd,
                open,
                close,
                change,
            });
        }
    }
    out
}

/// Asserts a published tick equals the reference in every window and field.
pub fn assert_matches(
    got: &BTreeMap<String, TokenAggregateData>,
    want: &BTreeMap<String, Vec<Want>>,
    end: i64,
) {
    let ts = aggregator::window::rfc3339(end);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "active tokens at {ts}"
    );
    for (token, items) in want {
        let d = &got[token];
        assert_eq!(d.version, "1.0");
        let g: Vec<Want> = d
            .aggregate_data
            .iter()
            .map(|i| {
                assert_eq!(i.total_trades, i.buy_count + i.sell_count);
                assert_eq!(i.total_volume, i.buy_volume + i.sell_volume);
                assert_eq!(i.timestamp, ts);
                Want {
                    window: i.time_window.clone(),
                    buys: i.buy_count,
                    sells: i.sell_count,
                    buy_volume: i.buy_volume,
                    sell_volume: i.sell_volume,
                    usd: i.volume_usd,
                    open: i.open_price,
                    close: i.close_price,
                    change: i.price_change,
                }
            })
            .collect();
        assert_eq!(&g, items, "{token} at {ts}");
    }
}

/// Aggregates without `generated_at` (wall clock), for comparing two instances.
pub fn strip(m: &BTreeMap<String, TokenAggregateData>) -> BTreeMap<String, TokenAggregateData> {
    m.iter()
        .map(|(k, v)| {
            let mut v = v.clone();
            v.generated_at.clear();
            (k.clone(), v)
        })
        .collect()
}

/// A small deterministic generator (no seeds from the environment: runs are repeatable).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `n` trades for `token` with event times in `(from, to]`, shuffled prices/sides.
pub fn random_trades(rng: &mut Lcg, token: &str, n: usize, from: i64, to: i64) -> Vec<T> {
    (0..n)
        .map(|_| {
            let t = from + 1 + rng.below((to - from) as u64) as i64;
            let price = Decimal::new(1 + rng.below(100_000) as i64, 6);
            let amount = Decimal::new(1 + rng.below(10_000_000) as i64, 3);
            T {
                token: token.into(),
                buy: rng.below(2) == 0,
                price,
                amount,
                usd: price * amount,
                t,
            }
        })
        .collect()
}

/// Creates the test's topics (input with `partitions`, its DLQ, output with 3).
pub async fn topics(broker: &testkit::Broker, input: &str, partitions: i32, outputs: &[&str]) {
    broker.create_topic(input, partitions).await.unwrap();
    broker
        .create_topic(&format!("{input}.dlq"), 1)
        .await
        .unwrap();
    for o in outputs {
        broker.create_topic(o, 3).await.unwrap();
    }
}
