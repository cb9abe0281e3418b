//! Helpers shared by the publisher's integration tests: a publisher running in-process on
//! 127.0.0.1:0 against a testkit broker, with topics of its own, and record readers.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::Arc;
use std::time::Duration;

use odin_events::{TopicNames, TopicSpec};
use odin_service::{FetchSettings, PartitionConsumer, StartFrom};
use publisher::Config;
use rskafka::client::Client;
use rskafka::record::RecordAndOffset;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A publisher under test.
pub struct Running {
    pub base: String,
    pub config: Config,
    pub names: TopicNames,
    pub http: reqwest::Client,
    cancel: CancellationToken,
    task: Option<JoinHandle<Result<(), publisher::RunError>>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Triggers shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), publisher::RunError> {
        self.cancel.cancel();
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("publisher did not stop within 30 s")
            .unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The topics a publisher with `config` writes to.
pub fn specs(config: &Config) -> Vec<TopicSpec> {
    let names = publisher::topic_names(config);
    let mut specs = names.event_topic_specs();
    if let Some(ti) = config.trade_info() {
        specs.push(TopicSpec {
            name: ti,
            partitions: 12,
            retention_ms: 60_000,
        });
    }
    specs
}

/// Args giving the publisher topics no other test uses.
pub fn private_topic_args() -> Vec<String> {
    let prefix = format!("{}.", testkit::unique_topic("pub"));
    vec![
        "--topic-prefix".into(),
        prefix.clone(),
        "--trade-info-topic".into(),
        format!("{prefix}trade-info"),
    ]
}

/// Starts a publisher on `brokers` with `extra` args, after creating its topics.
pub async fn start(broker: &testkit::Broker, extra: &[&str]) -> Running {
    start_with(broker, extra, true).await
}

pub async fn start_with(broker: &testkit::Broker, extra: &[&str], create: bool) -> Running {
    let mut args: Vec<String> = vec![
        "--api-host".into(),
        "127.0.0.1".into(),
        "--api-port".into(),
        "0".into(),
        "--kafka-brokers".into(),
        broker.addr().into(),
        "--kafka-request-timeout".into(),
        "2s".into(),
        "--shutdown-grace".into(),
        "10s".into(),
    ];
    if !extra.contains(&"--topic-prefix") {
        args.extend(private_topic_args());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let config = Config::from_args(args).unwrap();
    if create {
        broker.create_topics(&specs(&config)).await.unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let task = tokio::spawn(publisher::run(config.clone(), listener, async move {
        c.cancelled().await
    }));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let names = publisher::topic_names(&config);
    Running {
        base,
        config,
        names,
        http,
        cancel,
        task: Some(task),
    }
}

/// A consumer client no producer shares.
pub async fn consumer_client(broker: &testkit::Broker) -> Arc<Client> {
    Arc::new(broker.client().await.unwrap())
}

fn settings() -> FetchSettings {
    FetchSettings {
        max_wait_ms: 10,
        ..Default::default()
    }
}

/// The record at `offset`, waiting up to 10 s for it (read from the partition start).
pub async fn read_at(
    client: &Arc<Client>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> RecordAndOffset {
    let recs = read_until(client, topic, partition, |got| {
        got.iter().any(|r| r.offset >= offset)
    })
    .await;
    recs.into_iter()
        .find(|r| r.offset == offset)
        .unwrap_or_else(|| panic!("no record at {topic}/{partition}@{offset}"))
}

/// Every record of a partition from the start until `stop` says enough (or 10 s pass).
pub async fn read_until(
    client: &Arc<Client>,
    topic: &str,
    partition: i32,
    mut stop: impl FnMut(&[RecordAndOffset]) -> bool,
) -> Vec<RecordAndOffset> {
    let mut c = PartitionConsumer::new(
        Arc::clone(client),
        topic,
        partition,
        StartFrom::Earliest,
        settings(),
    );
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !stop(&got) && tokio::time::Instant::now() < deadline {
        let batch = tokio::time::timeout(Duration::from_secs(10), c.next_batch())
            .await
            .expect("fetch hung");
        got.extend(batch.records);
    }
    got
}

/// The log end of a partition (from a fetch response).
pub async fn log_end(client: &Arc<Client>, topic: &str, partition: i32) -> i64 {
    let mut c = PartitionConsumer::new(
        Arc::clone(client),
        topic,
        partition,
        StartFrom::Latest,
        settings(),
    );
    c.next_batch().await;
    c.position().unwrap()
}

/// Polls `f` every 50 ms until it is true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if f().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
