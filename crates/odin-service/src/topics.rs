//! Topic existence checks, and topic creation with partitions, replication and configs from
//! the specs of `odin-events`.
//!
//! Existence is checked with an unfiltered topic list: a filtered metadata request makes a
//! broker with `auto.create.topics.enable` (Redpanda's dev mode) create the topic it names.

use std::time::Duration;

use odin_events::TopicSpec;
use rskafka::client::error::{Error as RsError, ProtocolError};
use rskafka::client::Client;
use rskafka::messenger::Messenger;
use rskafka::protocol::messages::{CreateTopicConfig, CreateTopicRequest, CreateTopicsRequest};
use rskafka::protocol::primitives::{Int16, Int32, NullableString, String_};
use tokio::net::TcpStream;
use tracing::info;

use crate::kafka::{partition_counts, KafkaConnector, KafkaError};

/// How topics are laid out over the brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Copies of each partition (1 on one broker; 3 in a three-broker production cluster).
    pub replication_factor: i16,
    /// `min.insync.replicas` set on each topic; `None` keeps the broker's default.
    pub min_insync_replicas: Option<i16>,
}

impl Default for Placement {
    fn default() -> Self {
        Self {
            replication_factor: 1,
            min_insync_replicas: None,
        }
    }
}

/// Creates the topics of `specs` that do not exist yet, each with its configs
/// ([`TopicSpec::configs`]) and `placement`; returns the names it created.
pub async fn ensure_topics(
    connector: &KafkaConnector,
    specs: &[TopicSpec],
    placement: Placement,
) -> Result<Vec<String>, KafkaError> {
    let client = connector.client().await?;
    let existing = partition_counts(&client).await?;
    let missing: Vec<&TopicSpec> = specs
        .iter()
        .filter(|s| !existing.contains_key(&s.name))
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let timeout = connector.request_timeout();
    let request = CreateTopicsRequest {
        topics: missing
            .iter()
            .map(|spec| create_request(spec, placement))
            .collect(),
        timeout_ms: Int32(i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX)),
        validate_only: None,
        tagged_fields: None,
    };
    // rskafka's client sends CreateTopics without configs, so this one goes over a plain
    // protocol connection; any broker forwards it to the active controller.
    let messenger = admin_connection(connector).await?;
    let response = tokio::time::timeout(timeout * 2, messenger.request(&request))
        .await
        .map_err(|_| KafkaError::Request(RsError::Timeout))?
        .map_err(|e| {
            KafkaError::Request(RsError::InvalidResponse(format!("create topics: {e}")))
        })?;
    let mut created = Vec::new();
    for topic in response.topics {
        match topic.error {
            None => {
                info!(topic = %topic.name.0, "topic created");
                created.push(topic.name.0);
            }
            // Another service created it between our list and our create.
            Some(ProtocolError::TopicAlreadyExists) => {}
            Some(protocol_error) => {
                return Err(KafkaError::Request(RsError::ServerError {
                    protocol_error,
                    error_message: topic.error_message.and_then(|m| m.0),
                    request: rskafka::client::error::RequestContext::Topic(topic.name.0),
                    response: None,
                    is_virtual: false,
                }))
            }
        }
    }
    wait_visible(&client, &created, timeout * 4).await?;
    Ok(created)
}

/// Waits until every topic of `names` shows in the metadata of the broker we ask: the
/// controller answers CreateTopics before brokers have learnt of the topic, and a produce or
/// fetch right after it would see an unknown topic.
async fn wait_visible(
    client: &Client,
    names: &[String],
    within: Duration,
) -> Result<(), KafkaError> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let topics = client.list_topics().await?;
        let ready = names.iter().all(|n| {
            topics
                .iter()
                .find(|t| &t.name == n)
                .is_some_and(|t| !t.partitions.is_empty())
        });
        if ready {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(KafkaError::UnknownTopic {
                topic: names.join(","),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn create_request(spec: &TopicSpec, placement: Placement) -> CreateTopicRequest {
    let mut configs: Vec<(&str, String)> = spec.configs();
    if let Some(isr) = placement.min_insync_replicas {
        configs.push(("min.insync.replicas", isr.to_string()));
    }
    CreateTopicRequest {
        name: String_(spec.name.clone()),
        num_partitions: Int32(spec.partitions),
        replication_factor: Int16(placement.replication_factor),
        assignments: vec![],
        configs: configs
            .into_iter()
            .map(|(k, v)| CreateTopicConfig {
                name: String_(k.to_owned()),
                value: NullableString(Some(v)),
                tagged_fields: None,
            })
            .collect(),
        tagged_fields: None,
    }
}

/// A protocol connection to the first bootstrap broker that answers.
async fn admin_connection(connector: &KafkaConnector) -> Result<Messenger<TcpStream>, KafkaError> {
    let timeout = connector.request_timeout().max(Duration::from_secs(1));
    let mut last = None;
    for addr in connector.brokers() {
        match crate::fetch_mux::connect(addr, "odin-admin", timeout).await {
            Ok(m) => return Ok(m),
            Err(e) => last = Some(e),
        }
    }
    Err(KafkaError::Connect {
        brokers: connector.brokers().to_vec(),
        source: last.unwrap_or(RsError::Timeout),
    })
}

/// The names in `wanted` that do not exist.
pub async fn missing_topics(client: &Client, wanted: &[&str]) -> Result<Vec<String>, KafkaError> {
    let existing = partition_counts(client).await?;
    Ok(wanted
        .iter()
        .filter(|t| !existing.contains_key(**t))
        .map(|t| t.to_string())
        .collect())
}
