//! Shared helpers for the gateway's integration tests: a gateway in-process on 127.0.0.1:0
//! over its own prefixed topics on a real broker, real WebSocket clients, a producer, and
//! small HTTP and metrics readers. Every wait is bounded by a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{SinkExt, StreamExt};
use odin_events::envelope::SOURCE_PUBLISHER;
use odin_events::{
    Classification, Envelope, EventType, Metadata, TopicMode, TopicNames, EVENT_VERSION,
};
use odin_service::config::TopicArgs;
use odin_service::{KafkaHealth, OutRecord, Producer, ProducerConfig};
use serde_json::{json, Value};
use testkit::Broker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(20);

/// A gateway running in this process on its own topics.
pub struct Gateway {
    pub addr: SocketAddr,
    pub names: TopicNames,
    pub stop: CancellationToken,
    pub task: JoinHandle<Result<(), ws_gateway::GatewayError>>,
}

/// Topic names under a fresh prefix.
pub fn fresh_names(mode: TopicMode) -> (String, TopicNames) {
    let prefix = format!("{}.", testkit::unique_topic("gw"));
    let args = TopicArgs {
        topic_mode: mode,
        single_topic: odin_events::topics::DEFAULT_SINGLE_TOPIC.into(),
        topic_prefix: prefix.clone(),
        topic_replication_factor: 1,
        topic_min_insync_replicas: None,
    };
    (prefix, args.names())
}

/// Creates every topic of `names` (the gateway reads the event topics) with `partitions`.
pub async fn create_topics(broker: &Broker, names: &TopicNames, partitions: i32) {
    broker
        .create_all_with_partitions(names, partitions)
        .await
        .unwrap();
}

impl Gateway {
    /// Per-category topics with one partition each.
    pub async fn start(broker: &Broker, extra: &[&str]) -> Self {
        Self::start_with(broker, TopicMode::PerCategory, 1, extra).await
    }

    pub async fn start_with(
        broker: &Broker,
        mode: TopicMode,
        partitions: i32,
        extra: &[&str],
    ) -> Self {
        let (prefix, names) = fresh_names(mode);
        create_topics(broker, &names, partitions).await;
        Self::start_on(broker, &prefix, mode, extra).await
    }

    /// A gateway on existing topics under `prefix`.
    pub async fn start_on(broker: &Broker, prefix: &str, mode: TopicMode, extra: &[&str]) -> Self {
        let brokers = broker.addr().to_owned();
        let mut args = vec![
            "ws-gateway",
            "--kafka-brokers",
            &brokers,
            "--kafka-request-timeout",
            "2s",
            "--topic-prefix",
            prefix,
            "--topic-mode",
            mode.as_str(),
            "--ws-addr",
            "127.0.0.1:0",
            "--fetch-max-wait-ms",
            "25",
            "--metadata-refresh",
            "1s",
            "--shutdown-grace",
            "3s",
        ];
        args.extend_from_slice(extra);
        let config = ws_gateway::Config::try_parse_from(args).unwrap();
        let names = config.topics.names();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(ws_gateway::run(
            config,
            listener,
            stop.clone().cancelled_owned(),
        ));
        let gw = Self {
            addr,
            names,
            stop,
            task,
        };
        gw.wait_healthy().await;
        gw
    }

    pub async fn wait_healthy(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, body) = self.get("/health").await;
            if status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "gateway not healthy: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A plain HTTP GET; returns status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path).await
    }

    pub async fn health(&self) -> Value {
        serde_json::from_str(&self.get("/health").await.1).unwrap()
    }

    pub async fn connections(&self) -> u64 {
        self.health().await["connections"].as_u64().unwrap()
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.url()).await
    }

    pub async fn shutdown(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("gateway stops within the grace period")
            .unwrap()
            .unwrap();
    }
}

pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of one metric line (`name{labels}`) in `/metrics`, 0 when absent.
pub async fn metric(addr: SocketAddr, name_and_labels: &str) -> f64 {
    let (_, text) = http_get(addr, "/metrics").await;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == name_and_labels).then(|| v.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// How a client's stream ended.
#[derive(Debug)]
pub enum Ended {
    Closed(Option<(CloseCode, String)>),
    Error(String),
    Eof,
}

/// A WebSocket client.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Client {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Self { ws, next_id: 0 }
    }

    pub async fn connect_with(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        Self { ws, next_id: 0 }
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    pub async fn send_text(&mut self, t: &str) {
        self.ws.send(Message::text(t.to_owned())).await.unwrap();
    }

    /// The next text frame as JSON, or how the stream ended.
    pub async fn next(&mut self, within: Duration) -> Result<Value, Ended> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(m) => m,
                Err(_) => return Err(Ended::Error("timed out".into())),
            };
            match msg {
                Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Close(c))) => {
                    return Err(Ended::Closed(
                        c.map(|c| (c.code, c.reason.as_str().to_owned())),
                    ))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(Ended::Error(e.to_string())),
                None => return Err(Ended::Eof),
            }
        }
    }

    pub async fn recv(&mut self) -> Value {
        match self.next(WAIT).await {
            Ok(v) => v,
            Err(e) => panic!("expected a frame, got {e:?}"),
        }
    }

    /// Sends a request with a fresh id and returns the reply carrying that id; events that
    /// arrive first are returned too.
    pub async fn request(&mut self, mut v: Value) -> (Value, Vec<Value>) {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        v["id"] = json!(id);
        self.send(v).await;
        let mut events = Vec::new();
        loop {
            let f = self.recv().await;
            if f["id"] == json!(id) {
                return (f, events);
            }
            events.push(f);
        }
    }

    pub async fn subscribe(&mut self, v: Value) -> Value {
        let mut v = v;
        v["type"] = json!("subscribe");
        let (reply, events) = self.request(v).await;
        assert!(events.is_empty(), "unexpected frames: {events:?}");
        assert_eq!(reply["type"], "subscribed", "{reply}");
        reply
    }

    /// Waits for `n` event frames.
    pub async fn events(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let f = match self.next(WAIT).await {
                Ok(f) => f,
                Err(e) => panic!("after {} of {n} events: {e:?}", out.len()),
            };
            assert_eq!(f["type"], "event", "{f}");
            out.push(f);
        }
        out
    }

    /// Every event frame queued for this client before now (the gateway answers a ping
    /// only after writing what it queued before it).
    pub async fn drain(&mut self) -> Vec<Value> {
        let (pong, events) = self.request(json!({"type": "ping"})).await;
        assert_eq!(pong["type"], "pong");
        events
    }

    /// Reads until the stream ends.
    pub async fn until_end(&mut self) -> (Vec<Value>, Ended) {
        let mut frames = Vec::new();
        loop {
            match self.next(WAIT).await {
                Ok(v) => frames.push(v),
                Err(e) => return (frames, e),
            }
        }
    }
}

pub fn ws_error_status(e: &WsError) -> Option<u16> {
    match e {
        WsError::Http(resp) => Some(resp.status().as_u16()),
        _ => None,
    }
}

/// An envelope of type `t` for `token` with data `data`.
pub fn envelope(t: EventType, token: &str, data: Value) -> Envelope {
    Envelope {
        metadata: Metadata {
            event_id: format!("ev-{}", rand_id()),
            event_type: t,
            event_version: EVENT_VERSION.into(),
            correlation_id: "corr".into(),
            timestamp: now_ms(),
            source: SOURCE_PUBLISHER.into(),
            data_classification: Classification::Public,
            token_id: token.into(),
            user_id: None,
        },
        data: data.as_object().cloned().unwrap(),
    }
}

pub fn rand_id() -> String {
    testkit::unique_topic("e")
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A producer on its own connection with a short linger.
pub fn producer(broker: &Broker) -> Producer {
    Producer::new(
        broker.connector(),
        ProducerConfig {
            linger: Duration::from_millis(1),
            ..ProducerConfig::default()
        },
        KafkaHealth::new("test_producer_connected"),
    )
}

/// Produces records and asserts the broker acknowledged every one.
pub async fn produce(p: &Producer, records: Vec<OutRecord>) {
    for r in p.send_all(records).await {
        r.unwrap();
    }
}

/// The record of an envelope on the topic of its type.
pub fn record(names: &TopicNames, env: &Envelope) -> OutRecord {
    OutRecord::new(
        names.topic_for(env.metadata.event_type),
        Some(env.key().to_vec()),
        env.to_json(),
        env.metadata.timestamp,
    )
}

/// A raw record (any bytes) on `topic`.
pub fn raw(topic: &str, key: Option<&str>, value: &str) -> OutRecord {
    OutRecord::new(
        topic,
        key.map(|k| k.as_bytes().to_vec()),
        value.as_bytes().to_vec(),
        now_ms(),
    )
}
