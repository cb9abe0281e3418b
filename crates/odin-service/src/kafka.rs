//! rskafka client construction with retry/backoff, and the Kafka health every service reports.
//!
//! Broker facts this is built around (Kafka and Redpanda alike): a broker answers one
//! request at a time per connection, and rskafka's partition clients share one connection
//! per broker per [`Client`]. So every component that long-polls gets its own `Client`
//! (its own connection) from [`KafkaConnector::client`], and producers never share one with
//! consumers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rskafka::client::{Client, ClientBuilder};
use rskafka::BackoffConfig;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::KafkaArgs;

/// A failure talking to the brokers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    #[error("cannot connect to brokers {brokers:?}: {source}")]
    Connect {
        brokers: Vec<String>,
        #[source]
        source: rskafka::client::error::Error,
    },
    #[error("broker request failed: {0}")]
    Request(#[from] rskafka::client::error::Error),
    #[error("topic {topic:?} does not exist")]
    UnknownTopic { topic: String },
    #[error("shutting down")]
    Shutdown,
}

/// Builds rskafka clients for one broker list.
#[derive(Debug, Clone)]
pub struct KafkaConnector {
    brokers: Vec<String>,
    client_id: String,
    request_timeout: Duration,
}

impl KafkaConnector {
    pub fn new(args: &KafkaArgs) -> Self {
        Self {
            brokers: args.brokers(),
            client_id: args.kafka_client_id.clone(),
            request_timeout: args.kafka_request_timeout,
        }
    }

    /// For tests and tools: brokers with default settings.
    pub fn from_brokers(brokers: Vec<String>) -> Self {
        Self {
            brokers,
            client_id: "odin-stream".into(),
            request_timeout: Duration::from_secs(5),
        }
    }

    pub fn with_request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }

    pub fn brokers(&self) -> &[String] {
        &self.brokers
    }

    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// rskafka retries every request internally; the deadline bounds that so a lost broker
    /// surfaces as an error (and a 503, a health flag) instead of a call that never returns.
    fn backoff(&self) -> BackoffConfig {
        BackoffConfig {
            init_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
            base: 2.0,
            deadline: Some(self.request_timeout),
        }
    }

    /// One attempt at a new client with its own broker connections.
    pub async fn client(&self) -> Result<Client, KafkaError> {
        ClientBuilder::new(self.brokers.clone())
            .client_id(self.client_id.clone())
            .backoff_config(self.backoff())
            .build()
            .await
            .map_err(|source| KafkaError::Connect {
                brokers: self.brokers.clone(),
                source,
            })
    }

    /// A new client, retrying with backoff until it connects or `cancel` fires.
    pub async fn client_with_retry(
        &self,
        health: &KafkaHealth,
        cancel: &CancellationToken,
    ) -> Result<Client, KafkaError> {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.client().await {
                Ok(c) => {
                    health.set_connected();
                    return Ok(c);
                }
                Err(e) => {
                    health.set_disconnected(e.to_string());
                    warn!(error = %e, retry_in = ?delay, "kafka connect failed");
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(KafkaError::Shutdown),
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

/// Topic name → partition count, from an unfiltered metadata request (a filtered one makes a
/// broker with `auto.create.topics.enable`, such as Redpanda in dev mode, create the topic).
pub async fn partition_counts(client: &Client) -> Result<HashMap<String, i32>, KafkaError> {
    Ok(client
        .list_topics()
        .await?
        .into_iter()
        .map(|t| (t.name, t.partitions.len() as i32))
        .collect())
}

#[derive(Debug)]
struct HealthInner {
    connected: AtomicBool,
    reason: Mutex<Option<String>>,
    gauge: &'static str,
}

/// Whether the service can reach Kafka, and why not; mirrored in a gauge.
#[derive(Debug, Clone)]
pub struct KafkaHealth(Arc<HealthInner>);

impl KafkaHealth {
    /// Starts disconnected ("connecting"); `gauge` is the metric name (e.g. `ws_kafka_connected`).
    pub fn new(gauge: &'static str) -> Self {
        metrics::gauge!(gauge).set(0.0);
        Self(Arc::new(HealthInner {
            connected: AtomicBool::new(false),
            reason: Mutex::new(Some("connecting".into())),
            gauge,
        }))
    }

    pub fn set_connected(&self) {
        if !self.0.connected.swap(true, Ordering::AcqRel) {
            info!("kafka connected");
        }
        if let Ok(mut r) = self.0.reason.lock() {
            *r = None;
        }
        metrics::gauge!(self.0.gauge).set(1.0);
    }

    pub fn set_disconnected(&self, reason: impl Into<String>) {
        let reason = reason.into();
        if self.0.connected.swap(false, Ordering::AcqRel) {
            warn!(%reason, "kafka disconnected");
        }
        if let Ok(mut r) = self.0.reason.lock() {
            *r = Some(reason);
        }
        metrics::gauge!(self.0.gauge).set(0.0);
    }

    pub fn is_connected(&self) -> bool {
        self.0.connected.load(Ordering::Acquire)
    }

    /// Why the service is not connected, when it is not.
    pub fn reason(&self) -> Option<String> {
        if self.is_connected() {
            return None;
        }
        self.0.reason.lock().ok().and_then(|r| r.clone())
    }
}
