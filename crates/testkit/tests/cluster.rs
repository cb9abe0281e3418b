//! A three-node cluster: topics replicated on every node, and a node killed and started
//! again without losing what was acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use odin_events::TopicSpec;
use odin_service::topics::Placement;
use odin_service::{KafkaHealth, OutRecord, Producer, ProducerConfig};
use rskafka::client::partition::UnknownTopicHandling;

#[tokio::test]
async fn a_three_node_cluster_survives_a_killed_node() -> anyhow::Result<()> {
    if std::env::var("ODIN_TEST_BROKERS").is_ok_and(|v| !v.is_empty()) {
        eprintln!("skipped: ODIN_TEST_BROKERS points at a cluster this test cannot kill nodes of");
        return Ok(());
    }
    let mut cluster = testkit::Broker::cluster(3).await?;
    assert_eq!(cluster.node_count(), 3);
    assert_eq!(cluster.brokers().len(), 3);
    cluster
        .create_topics_placed(
            &[TopicSpec {
                name: "replicated".into(),
                partitions: 3,
                retention_ms: 3_600_000,
            }],
            Placement {
                replication_factor: 3,
                min_insync_replicas: Some(2),
            },
        )
        .await?;
    let configs = cluster.topic_configs("replicated").await?;
    assert_eq!(configs["min.insync.replicas"], "2");

    let producer = Producer::new(
        cluster
            .connector()
            .with_request_timeout(Duration::from_secs(15)),
        ProducerConfig::default(),
        KafkaHealth::new("cluster_test_connected"),
    );
    let send = |i: usize| {
        OutRecord::new(
            "replicated",
            Some(format!("k{}", i % 7).into_bytes()),
            format!("v{i}").into_bytes(),
            chrono::Utc::now().timestamp_millis(),
        )
    };
    for r in producer.send_all((0..30).map(send).collect()).await {
        r?;
    }
    cluster.kill_node(1).await?;
    // Leadership moves to the two survivors; min.insync.replicas=2 still holds.
    let mut acked = 30;
    for r in producer.send_all((30..60).map(send).collect()).await {
        r?;
        acked += 1;
    }
    cluster.start_node(1).await?;

    let client = cluster.client().await?;
    let mut total = 0;
    for partition in 0..3 {
        let pc = client
            .partition_client("replicated", partition, UnknownTopicHandling::Retry)
            .await?;
        let (records, _) = pc.fetch_records(0, 1..10_000_000, 1_000).await?;
        total += records.len();
    }
    assert_eq!(total, acked, "every acknowledged record is in the log");
    Ok(())
}
