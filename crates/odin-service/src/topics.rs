//! Topic existence checks and creation from the specs of `odin-events`.
//!
//! Existence is checked with an unfiltered topic list: tansu auto-creates a topic (with 4
//! partitions) when a metadata request names it, which must never happen by accident.

use odin_events::TopicSpec;
use rskafka::client::Client;
use tracing::info;

use crate::kafka::{partition_counts, KafkaError};

/// Creates the topics of `specs` that do not exist yet; returns the names it created.
///
/// Retention is not set here (rskafka's CreateTopics sends no configs); the deployment's
/// `scripts/setup-redpanda-topics.sh` sets it with `rpk`, and the local broker keeps
/// everything in memory.
pub async fn ensure_topics(
    client: &Client,
    specs: &[TopicSpec],
) -> Result<Vec<String>, KafkaError> {
    let existing = partition_counts(client).await?;
    let controller = client.controller_client()?;
    let mut created = Vec::new();
    for spec in specs.iter().filter(|s| !existing.contains_key(&s.name)) {
        match controller
            .create_topic(spec.name.clone(), spec.partitions, 1, 5_000)
            .await
        {
            Ok(()) => {
                info!(topic = %spec.name, partitions = spec.partitions, "topic created");
                created.push(spec.name.clone());
            }
            // Another service created it between our list and our create.
            Err(rskafka::client::error::Error::ServerError {
                protocol_error: rskafka::client::error::ProtocolError::TopicAlreadyExists,
                ..
            }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(created)
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
