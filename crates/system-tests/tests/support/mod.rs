//! Shared helpers of the fault tests: the real service binaries as child processes (free
//! loopback ports, logs in files printed on failure, SIGTERM then SIGKILL on drop), a client
//! that POSTs batches and records every outcome, WebSocket clients that reconnect with their
//! last offsets, and a reader that fetches whole topics back from the broker. Every wait is a
//! condition polled against a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use odin_events::{EventType, TopicMode, TopicNames};
use odin_service::config::TopicArgs;
use rskafka::client::partition::UnknownTopicHandling;
use rskafka::client::Client;
use serde_json::{json, Value};
use testkit::Broker;
use tokio_tungstenite::tungstenite::Message;

/// Longest any single condition is awaited; the machine is small and often busy. Generous:
/// conditions are awaited, not slept, so a pass costs nothing extra, and a JVM broker with
/// three services on two cores once took longer than 60 s to publish a common tick.
pub const WAIT: Duration = Duration::from_secs(120);

/// The fault tests start several processes each: one at a time keeps them within the
/// machine (2 cores) and their timing meaningful.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Polls `cond` every 50 ms until it holds; panics with `what` after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A scratch directory for one test: broker data and process logs.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(testkit::unique_topic(&format!("odin-sys-{name}")));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Where cargo puts the service binaries (`CARGO_TARGET_DIR` or `<workspace>/target`, debug).
pub fn bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let p = target.join("debug").join(name);
    assert!(
        p.exists(),
        "{p:?} is missing: build the services first with \
         `cargo build -p publisher -p ws-gateway -p aggregator` \
         (`cargo test --workspace`, as scripts/test.sh runs it, builds them before the tests)"
    );
    p
}

/// Topic names under a fresh prefix, per-category mode.
pub fn fresh_names() -> (String, TopicNames) {
    let prefix = format!("{}.", testkit::unique_topic("sys"));
    let args = TopicArgs {
        topic_mode: TopicMode::PerCategory,
        single_topic: odin_events::topics::DEFAULT_SINGLE_TOPIC.into(),
        topic_prefix: prefix.clone(),
        topic_replication_factor: 1,
        topic_min_insync_replicas: None,
    };
    let mut names = args.names();
    names.trade_info = format!("{prefix}trade-info");
    names.aggregate_info = format!("{prefix}aggregate-info");
    (prefix, names)
}

/// A count from the environment (longer fault runs), else `default`.
pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Creates every topic the services of one test use, with few partitions (each partition is
/// a fetch loop in every consumer).
pub async fn create_topics(broker: &Broker, names: &TopicNames, partitions: i32) {
    broker
        .create_all_with_partitions(names, partitions)
        .await
        .unwrap();
}

/// A service binary running as a child process.
pub struct Proc {
    pub name: String,
    pub port: u16,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Starts `bin` with `env` (and nothing inherited that could point it elsewhere), its
    /// stdout and stderr in `<dir>/<name>.log`.
    pub fn spawn(
        name: &str,
        bin_name: &str,
        port: u16,
        dir: &Path,
        env: &[(&str, String)],
    ) -> Self {
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(bin(bin_name));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LOG_LEVEL", "info")
            .env("LOG_FORMAT", "pretty")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        Self {
            name: name.to_owned(),
            port,
            child,
            log,
            exited: None,
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    pub fn sigterm(&self) {
        self.signal("-TERM");
    }

    /// SIGKILL and reap.
    pub fn sigkill(&mut self) -> ExitStatus {
        self.signal("-KILL");
        let s = self.child.wait().unwrap();
        self.exited = Some(s);
        s
    }

    /// Waits for the process to exit, at most `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.exited {
                return Some(s);
            }
            if let Some(s) = self.child.try_wait().unwrap() {
                self.exited = Some(s);
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited.is_none() && self.child.try_wait().ok().flatten().is_none() {
            self.signal("-TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.child.try_wait().ok().flatten().is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(80).collect();
            eprintln!("----- last lines of {} ({:?}) -----", self.name, self.log);
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// GET `url`, the status and JSON body (`None` when unreachable).
pub async fn get_json(http: &reqwest::Client, url: &str) -> Option<(u16, Value)> {
    let r = http.get(url).send().await.ok()?;
    let status = r.status().as_u16();
    let v = r.json::<Value>().await.unwrap_or(Value::Null);
    Some((status, v))
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn kafka_env(broker: &str) -> Vec<(&'static str, String)> {
    vec![
        ("KAFKA_BROKERS", broker.to_owned()),
        ("KAFKA_REQUEST_TIMEOUT", "2s".into()),
    ]
}

/// The publisher on a free port over the topics of `names` (created beforehand).
pub async fn start_publisher(
    name: &str,
    broker: &str,
    prefix: &str,
    names: &TopicNames,
    dir: &Path,
    extra: &[(&str, String)],
) -> Proc {
    let port = testkit::free_port().unwrap();
    let mut env = kafka_env(broker);
    env.extend([
        ("API_HOST", "127.0.0.1".to_owned()),
        ("API_PORT", port.to_string()),
        ("TOPIC_PREFIX", prefix.to_owned()),
        ("TRADE_INFO_TOPIC", names.trade_info.clone()),
        ("PUBLISHER_LINGER_MS", "2".into()),
        ("SHUTDOWN_GRACE", "3s".into()),
    ]);
    env.extend_from_slice(extra);
    let p = Proc::spawn(name, "publisher", port, dir, &env);
    wait_health(&p, "/health").await;
    p
}

/// A gateway on a free port; clients reach it at [`gw_url`].
pub async fn start_gateway(name: &str, broker: &str, prefix: &str, dir: &Path) -> Proc {
    let port = testkit::free_port().unwrap();
    let mut env = kafka_env(broker);
    env.extend([
        ("WS_ADDR", format!("127.0.0.1:{port}")),
        ("TOPIC_PREFIX", prefix.to_owned()),
        ("KAFKA_FETCH_MAX_WAIT_MS", "25".into()),
        ("KAFKA_FETCH_POLL_MS", "20".into()),
        ("WS_METADATA_REFRESH", "2s".into()),
        ("WS_SHUTDOWN_GRACE", "5s".into()),
        ("WS_MAX_CLIENT_MSGS_PER_SEC", "0".into()),
    ]);
    let p = Proc::spawn(name, "ws-gateway", port, dir, &env);
    wait_health(&p, "/health").await;
    p
}

pub fn gw_url(p: &Proc) -> String {
    format!("ws://127.0.0.1:{}/ws", p.port)
}

/// An aggregator on a free port with a 1 s tick and 1min/5min windows.
pub async fn start_aggregator(
    name: &str,
    broker: &str,
    names: &TopicNames,
    output: &str,
    dir: &Path,
    extra: &[(&str, String)],
) -> Proc {
    let port = testkit::free_port().unwrap();
    let mut env = kafka_env(broker);
    env.extend([
        ("AGGREGATOR_ADDR", format!("127.0.0.1:{port}")),
        ("KAFKA_TOPIC", names.trade_info.clone()),
        ("AGGREGATE_TOPIC", output.to_owned()),
        ("AGGREGATE_PUBLISH_INTERVAL", "1s".into()),
        ("AGGREGATE_WINDOWS", WINDOWS.join(",")),
        ("KAFKA_FETCH_MAX_WAIT_MS", "50".into()),
        ("AGGREGATE_BATCH_LINGER", "10ms".into()),
        ("AGGREGATOR_SHUTDOWN_GRACE", "3s".into()),
    ]);
    env.extend_from_slice(extra);
    let p = Proc::spawn(name, "aggregator", port, dir, &env);
    let http = http();
    let url = format!("{}/health", p.base());
    eventually(WAIT, &format!("{name} replayed its input"), || {
        let (http, url) = (http.clone(), url.clone());
        async move { matches!(get_json(&http, &url).await, Some((200, v)) if v["status"] == "ok") }
    })
    .await;
    p
}

/// The aggregator's windows in these tests (names and milliseconds).
pub const WINDOWS: [&str; 2] = ["1min", "5min"];
pub const WINDOW_MS: [i64; 2] = [60_000, 300_000];

pub async fn wait_health(p: &Proc, path: &str) {
    let http = http();
    let url = format!("{}{path}", p.base());
    eventually(WAIT, &format!("{} healthy", p.name), || {
        let (http, url) = (http.clone(), url.clone());
        async move { matches!(get_json(&http, &url).await, Some((200, _))) }
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Posting events and recording every outcome

/// What the publisher said about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged: event id, partition, offset.
    Acked {
        event_id: String,
        partition: i32,
        offset: i64,
    },
    /// Reported as not published (503 `failed`).
    Failed(String),
    /// The request itself failed (connection reset, publisher killed): no answer.
    NoAnswer(String),
}

/// One event the test posted.
#[derive(Debug, Clone)]
pub struct Posted {
    /// Our own id, carried in `data.txHash` (trades) or `data.commentId` (comments).
    pub tag: String,
    pub event_type: EventType,
    pub token: String,
    pub outcome: Outcome,
}

/// The events of a batch: trades on BTC/ETH/SOL and comments on BTC, each tagged.
pub fn batch(poster: usize, seq: &AtomicU64, n: usize) -> Vec<(String, EventType, String, Value)> {
    let tokens = ["BTC", "ETH", "SOL"];
    (0..n)
        .map(|_| {
            let s = seq.fetch_add(1, Ordering::Relaxed);
            let tag = format!("p{poster}-{s}");
            let token = tokens[(s % 3) as usize].to_owned();
            if s % 5 == 4 {
                let body = json!({"eventType": "COMMENT_POSTED", "tokenId": "BTC",
                    "data": {"commentId": tag, "author": "tester", "text": format!("comment {s}")}});
                (tag, EventType::CommentPosted, "BTC".to_owned(), body)
            } else {
                let side = if s % 2 == 0 { "buy" } else { "sell" };
                let price = format!("{}.{:02}", 100 + s % 37, s % 100);
                let amount = format!("{}.{}", 1 + s % 7, s % 10);
                let body = json!({"eventType": "TRADE_EXECUTED", "tokenId": token,
                    "timestamp": now_ms(),
                    "data": {"price": price, "amount": amount, "side": side, "txHash": tag}});
                (tag, EventType::TradeExecuted, token, body)
            }
        })
        .collect()
}

/// POSTs one batch and records the outcome of each of its events.
pub async fn post_batch(
    http: &reqwest::Client,
    base: &str,
    events: Vec<(String, EventType, String, Value)>,
) -> Vec<Posted> {
    let bodies: Vec<Value> = events.iter().map(|e| e.3.clone()).collect();
    let res = http
        .post(format!("{base}/events"))
        .json(&json!({ "events": bodies }))
        .send()
        .await;
    let mut outcomes: Vec<Outcome> = Vec::new();
    match res {
        Err(e) => outcomes.resize(events.len(), Outcome::NoAnswer(e.to_string())),
        Ok(r) => {
            let status = r.status().as_u16();
            let v: Result<Value, _> = r.json().await;
            match (status, v) {
                (200, Ok(v)) => {
                    let ids = v["eventIds"].as_array().unwrap();
                    let offs = v["offsets"].as_array().unwrap();
                    let parts = v["partitions"].as_array().unwrap();
                    assert_eq!(ids.len(), events.len(), "{v}");
                    for i in 0..ids.len() {
                        outcomes.push(Outcome::Acked {
                            event_id: ids[i].as_str().unwrap().to_owned(),
                            partition: parts[i].as_i64().unwrap() as i32,
                            offset: offs[i].as_i64().unwrap(),
                        });
                    }
                }
                (503, Ok(v)) => {
                    outcomes.resize(events.len(), Outcome::Failed(v["error"].to_string()));
                    for a in v["acknowledged"].as_array().into_iter().flatten() {
                        let i = a["index"].as_u64().unwrap() as usize;
                        outcomes[i] = Outcome::Acked {
                            event_id: a["eventId"].as_str().unwrap().to_owned(),
                            partition: a["partition"].as_i64().unwrap() as i32,
                            offset: a["offset"].as_i64().unwrap(),
                        };
                    }
                }
                (_, Err(e)) => {
                    outcomes.resize(events.len(), Outcome::NoAnswer(format!("{status}: {e}")))
                }
                (s, Ok(v)) => panic!("POST /events answered {s}: {v}"),
            }
        }
    }
    events
        .into_iter()
        .zip(outcomes)
        .map(|((tag, event_type, token, _), outcome)| Posted {
            tag,
            event_type,
            token,
            outcome,
        })
        .collect()
}

/// Posters that keep POSTing batches until `stop` is set.
pub struct Posters {
    pub stop: Arc<AtomicBool>,
    pub log: Arc<Mutex<Vec<Posted>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Posters {
    /// `n` concurrent posters of batches of `size`, pausing `pause` between batches.
    pub fn start(base: &str, n: usize, size: usize, pause: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let seq = Arc::new(AtomicU64::new(0));
        let tasks = (0..n)
            .map(|i| {
                let (stop, log, seq, base) =
                    (stop.clone(), log.clone(), seq.clone(), base.to_owned());
                tokio::spawn(async move {
                    let http = http();
                    while !stop.load(Ordering::Relaxed) {
                        let out = post_batch(&http, &base, batch(i, &seq, size)).await;
                        let no_answer = out
                            .iter()
                            .any(|p| matches!(p.outcome, Outcome::NoAnswer(_)));
                        log.lock().unwrap().extend(out);
                        // A dead publisher refuses connections at once: do not spin.
                        if no_answer {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        tokio::time::sleep(pause).await;
                    }
                })
            })
            .collect();
        Self { stop, log, tasks }
    }

    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|p| f(&p.outcome))
            .count()
    }

    pub async fn finish(self) -> Vec<Posted> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            tokio::time::timeout(WAIT, t)
                .await
                .expect("poster stops")
                .unwrap();
        }
        Arc::try_unwrap(self.log).unwrap().into_inner().unwrap()
    }
}

pub fn is_acked(o: &Outcome) -> bool {
    matches!(o, Outcome::Acked { .. })
}

// ---------------------------------------------------------------------------------------
// Reading topics back

/// One record read back from the broker.
#[derive(Debug, Clone)]
pub struct Stored {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

/// Every record of every partition of `topic`, in offset order per partition.
pub async fn read_topic(client: &Client, topic: &str) -> Vec<Stored> {
    let counts = odin_service::kafka::partition_counts(client).await.unwrap();
    let parts = *counts
        .get(topic)
        .unwrap_or_else(|| panic!("topic {topic} missing"));
    let mut out = Vec::new();
    for p in 0..parts {
        let pc = client
            .partition_client(topic, p, UnknownTopicHandling::Error)
            .await
            .unwrap();
        let mut next = 0i64;
        for _ in 0..100_000 {
            let (recs, hwm) = pc.fetch_records(next, 1..4_000_000, 100).await.unwrap();
            for r in recs {
                if r.offset < next {
                    continue;
                }
                next = r.offset + 1;
                out.push(Stored {
                    topic: topic.to_owned(),
                    partition: p,
                    offset: r.offset,
                    key: r.record.key.clone(),
                    value: r.record.value.clone().unwrap_or_default(),
                });
            }
            if next >= hwm {
                break;
            }
        }
    }
    out
}

/// Every event record of the event topics of `names`, by (topic, partition, offset).
pub async fn read_events(
    client: &Client,
    names: &TopicNames,
) -> BTreeMap<(String, i32, i64), Stored> {
    let mut m = BTreeMap::new();
    for t in names.event_topics() {
        for s in read_topic(client, t).await {
            m.insert((s.topic.clone(), s.partition, s.offset), s);
        }
    }
    m
}

/// The event id and our tag of a stored event.
pub fn ids_of(s: &Stored) -> (String, String) {
    let p = odin_events::envelope::parse_record(&s.value, s.key.as_deref()).unwrap();
    let data = p.data_value();
    let tag = data
        .get("txHash")
        .or_else(|| data.get("commentId"))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    (p.event_id.unwrap_or_default().into_owned(), tag)
}

/// Checks that every acknowledged event is in the broker exactly where and as it was
/// acknowledged; returns how many were checked.
pub fn check_acked_stored(
    posted: &[Posted],
    names: &TopicNames,
    stored: &BTreeMap<(String, i32, i64), Stored>,
) -> usize {
    let mut n = 0;
    for p in posted {
        if let Outcome::Acked {
            event_id,
            partition,
            offset,
        } = &p.outcome
        {
            let topic = names.topic_for(p.event_type).to_owned();
            let s = stored
                .get(&(topic.clone(), *partition, *offset))
                .unwrap_or_else(|| {
                    panic!(
                        "acknowledged event {} ({event_id}) not at {topic}/{partition}/{offset}",
                        p.tag
                    )
                });
            let (id, tag) = ids_of(s);
            assert_eq!(
                &id, event_id,
                "{topic}/{partition}/{offset} holds another event"
            );
            assert_eq!(tag, p.tag, "{topic}/{partition}/{offset} holds other data");
            assert_eq!(s.key.as_deref(), Some(p.token.as_bytes()));
            n += 1;
        }
    }
    n
}

/// The stored events of one channel (`TOKEN.category`), in offset order: (offset, event id).
pub fn channel_log(
    stored: &BTreeMap<(String, i32, i64), Stored>,
    names: &TopicNames,
    channel: &str,
) -> Vec<(i64, String)> {
    let (token, cat) = channel.split_once('.').unwrap();
    let mut out: Vec<(i64, String)> = stored
        .values()
        .filter(|s| {
            s.key.as_deref() == Some(token.as_bytes())
                && names.category_of_topic(&s.topic).map(|c| c.as_str()) == Some(cat)
        })
        .map(|s| (s.offset, ids_of(s).0))
        .collect();
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------
// WebSocket clients that reconnect with their last offsets

/// What one client has seen.
#[derive(Debug, Default)]
pub struct Seen {
    pub subscribed: bool,
    /// Per channel, (offset, event id) in arrival order.
    pub events: BTreeMap<String, Vec<(i64, String)>>,
    pub close_codes: Vec<u16>,
    pub connections: usize,
    pub recoveries: Vec<Value>,
    pub errors: Vec<String>,
}

impl Seen {
    pub fn total(&self) -> usize {
        self.events.values().map(Vec::len).sum()
    }
}

/// A WebSocket client task: connects to the first URL that answers, subscribes to its
/// channels (with `recover` = its last offset per channel after the first connection), reads
/// event frames, and on any disconnect tries again, until stopped.
pub struct WsClient {
    pub channels: Vec<String>,
    pub seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl WsClient {
    pub fn start(urls: Vec<String>, channels: &[&str]) -> Self {
        let channels: Vec<String> = channels.iter().map(|c| (*c).to_owned()).collect();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(client_loop(
            urls,
            channels.clone(),
            seen.clone(),
            stop.clone(),
        ));
        Self {
            channels,
            seen,
            stop,
            task,
        }
    }

    pub fn subscribed(&self) -> bool {
        self.seen.lock().unwrap().subscribed
    }

    pub async fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("client stops")
            .unwrap();
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }
}

async fn client_loop(
    urls: Vec<String>,
    channels: Vec<String>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) {
    let mut at = 0usize;
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let url = &urls[at % urls.len()];
        let ws = match tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(url),
        )
        .await
        {
            Ok(Ok((ws, _))) => ws,
            _ => {
                at += 1;
                // Retry pacing of a disconnected client, not synchronisation.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (mut tx, mut rx) = ws.split();
        let mut sub = json!({"type": "subscribe", "id": "sub", "channels": channels});
        if !first {
            let last: BTreeMap<String, i64> = {
                let s = seen.lock().unwrap();
                channels
                    .iter()
                    .map(|c| {
                        (
                            c.clone(),
                            s.events.get(c).and_then(|v| v.last()).map_or(-1, |e| e.0),
                        )
                    })
                    .collect()
            };
            sub["recover"] = json!(last);
        }
        if tx
            .send(Message::Text(sub.to_string().into()))
            .await
            .is_err()
        {
            continue;
        }
        seen.lock().unwrap().connections += 1;
        loop {
            let msg = tokio::select! {
                m = rx.next() => m,
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    if stop.load(Ordering::Relaxed) { break; }
                    continue;
                }
            };
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    let mut s = seen.lock().unwrap();
                    match v["type"].as_str() {
                        Some("event") => {
                            let ch = v["channel"].as_str().unwrap().to_owned();
                            let off = v["offset"].as_i64().unwrap();
                            let id = v["eventId"].as_str().unwrap_or_default().to_owned();
                            s.events.entry(ch).or_default().push((off, id));
                        }
                        Some("subscribed") => {
                            s.subscribed = true;
                            if !v["recovery"].is_null() {
                                s.recoveries.push(v["recovery"].clone());
                            }
                        }
                        _ => s.errors.push(v.to_string()),
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    let code = f.map_or(1005, |f| u16::from(f.code));
                    seen.lock().unwrap().close_codes.push(code);
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    seen.lock().unwrap().errors.push(format!("read: {e}"));
                    break;
                }
                None => break,
            }
        }
        first = false;
    }
}

/// Checks a client's per-channel sequences against the broker: exactly the channel's stored
/// events, in offset order, none twice.
pub fn check_client(
    i: usize,
    c: &Seen,
    channels: &[String],
    stored: &BTreeMap<(String, i32, i64), Stored>,
    names: &TopicNames,
) -> usize {
    let mut n = 0;
    for ch in channels {
        let want = channel_log(stored, names, ch);
        let got = c.events.get(ch).cloned().unwrap_or_default();
        let mut dup: HashMap<&str, usize> = HashMap::new();
        for (_, id) in &got {
            *dup.entry(id.as_str()).or_default() += 1;
        }
        let dups: Vec<_> = dup.iter().filter(|(_, n)| **n > 1).collect();
        assert!(dups.is_empty(), "client {i} {ch}: duplicates {dups:?}");
        assert!(
            got.windows(2).all(|w| w[0].0 < w[1].0),
            "client {i} {ch}: out of order"
        );
        if got != want {
            let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).take(5).collect();
            panic!(
                "client {i} {ch}: got {} events, the broker has {}; first missing {missing:?}",
                got.len(),
                want.len()
            );
        }
        n += got.len();
    }
    n
}

/// Waits until every client has, on every channel, as many events as the broker holds.
pub async fn wait_clients_caught_up(clients: &[WsClient], client: &Client, names: &TopicNames) {
    let stored = read_events(client, names).await;
    let want: Vec<Vec<usize>> = clients
        .iter()
        .map(|c| {
            c.channels
                .iter()
                .map(|ch| channel_log(&stored, names, ch).len())
                .collect()
        })
        .collect();
    eventually(
        WAIT,
        "every client received every stored event of its channels",
        || {
            let ok = clients.iter().zip(&want).all(|(c, w)| {
                let s = c.seen.lock().unwrap();
                c.channels
                    .iter()
                    .zip(w)
                    .all(|(ch, n)| s.events.get(ch).map_or(0, Vec::len) >= *n)
            });
            async move { ok }
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Aggregates: what the aggregator published, and an independent reference

/// A trade read back from the trade-info topic, with its log position.
#[derive(Debug, Clone)]
pub struct LoggedTrade {
    pub trade: odin_events::TradeRecord,
    pub partition: i32,
    pub offset: i64,
}

pub async fn read_trades(client: &Client, topic: &str) -> Vec<LoggedTrade> {
    read_topic(client, topic)
        .await
        .into_iter()
        .map(|s| LoggedTrade {
            trade: odin_events::TradeRecord::parse(&s.value).unwrap(),
            partition: s.partition,
            offset: s.offset,
        })
        .collect()
}

/// Published aggregates by tick end (ms) and token: the `aggregate_data` items by window.
pub type Ticks = BTreeMap<i64, BTreeMap<String, BTreeMap<String, Value>>>;

pub async fn read_ticks(client: &Client, topic: &str) -> Ticks {
    let mut out = Ticks::new();
    for s in read_topic(client, topic).await {
        let v: Value = serde_json::from_slice(&s.value).unwrap();
        let token = v["token"].as_str().unwrap().to_owned();
        let items = v["aggregate_data"].as_array().unwrap();
        let mut by_window = BTreeMap::new();
        let mut end = None;
        for it in items {
            let ts =
                chrono::DateTime::parse_from_rfc3339(it["timestamp"].as_str().unwrap()).unwrap();
            end = Some(ts.timestamp_millis());
            by_window.insert(it["time_window"].as_str().unwrap().to_owned(), it.clone());
        }
        if let Some(end) = end {
            out.entry(end).or_default().insert(token, by_window);
        }
    }
    out
}

/// The reference: per token, per window, the aggregate of the trades with
/// end − W < t ≤ end; open/close by (t, log position). Computed here, not by the service.
pub fn expected_tick(
    trades: &[LoggedTrade],
    end: i64,
) -> BTreeMap<String, BTreeMap<String, Value>> {
    use rust_decimal::Decimal;
    let mut out: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for (name, w) in WINDOWS.iter().zip(WINDOW_MS) {
        let mut by_token: BTreeMap<&str, Vec<&LoggedTrade>> = BTreeMap::new();
        for t in trades {
            if end - w < t.trade.timestamp && t.trade.timestamp <= end {
                by_token.entry(t.trade.token.as_str()).or_default().push(t);
            }
        }
        for (token, mut ts) in by_token {
            ts.sort_by_key(|t| (t.trade.timestamp, t.partition, t.offset));
            let (mut bc, mut sc) = (0u64, 0u64);
            let (mut bv, mut sv, mut usd) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
            for t in &ts {
                match t.trade.side {
                    odin_events::trade::Side::Buy => {
                        bc += 1;
                        bv += t.trade.amount;
                    }
                    odin_events::trade::Side::Sell => {
                        sc += 1;
                        sv += t.trade.amount;
                    }
                }
                usd += t.trade.volume_usd();
            }
            let open = ts[0].trade.price;
            let close = ts[ts.len() - 1].trade.price;
            out.entry(token.to_owned()).or_default().insert(
                (*name).to_owned(),
                json!({"buy_count": bc, "sell_count": sc, "total_trades": bc + sc,
                       "buy_volume": bv.to_string(), "sell_volume": sv.to_string(),
                       "total_volume": (bv + sv).to_string(), "volume_usd": usd.to_string(),
                       "open_price": open.to_string(), "close_price": close.to_string()}),
            );
        }
    }
    out
}

/// Compares one published tick with the reference: same tokens, same windows, equal counts,
/// decimal sums and prices (decimals compared as numbers, so `1.50` equals `1.5`).
pub fn check_tick(
    what: &str,
    got: &BTreeMap<String, BTreeMap<String, Value>>,
    want: &BTreeMap<String, BTreeMap<String, Value>>,
) {
    use rust_decimal::Decimal;
    let dec = |v: &Value| -> Decimal {
        match v {
            Value::String(s) => s.parse().unwrap(),
            other => other.to_string().parse().unwrap(),
        }
    };
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: active tokens"
    );
    for (token, windows) in want {
        let g = &got[token];
        assert_eq!(
            g.keys().collect::<Vec<_>>(),
            windows.keys().collect::<Vec<_>>(),
            "{what} {token}: windows"
        );
        for (w, exp) in windows {
            let item = &g[w];
            for f in ["buy_count", "sell_count", "total_trades"] {
                assert_eq!(item[f], exp[f], "{what} {token} {w} {f}: got {item}");
            }
            for f in [
                "buy_volume",
                "sell_volume",
                "total_volume",
                "volume_usd",
                "open_price",
                "close_price",
            ] {
                assert_eq!(
                    dec(&item[f]),
                    dec(&exp[f]),
                    "{what} {token} {w} {f}: got {item}"
                );
            }
        }
    }
}
