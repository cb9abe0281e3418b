//! A consumer that starts (or resumes) in the middle of a produced batch gets every record
//! from its position on (Kafka answers such a fetch with the whole batch; tansu 0.6 answered
//! with the batches after it, which the consumer must also survive).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use odin_service::{
    FetchSettings, KafkaHealth, OutRecord, PartitionConsumer, Producer, ProducerConfig, StartFrom,
};

#[tokio::test]
async fn consumer_starting_mid_batch_misses_nothing() -> anyhow::Result<()> {
    let broker = testkit::shared();
    let topic = testkit::unique_topic("midbatch");
    broker.create_topic(&topic, 1).await?;
    let producer = Producer::new(
        broker.connector(),
        ProducerConfig::default(),
        KafkaHealth::new("test_kafka_connected"),
    );
    // Two batches of 10 records each (send_all batches records that share a partition).
    for b in 0..2 {
        let recs = (0..10)
            .map(|i| OutRecord::new(&topic, None, format!("{}", b * 10 + i).into_bytes(), 1))
            .collect();
        for r in producer.send_all(recs).await {
            r?;
        }
    }
    let client = Arc::new(broker.client().await?);
    for start in [0i64, 3, 9, 10, 15, 19] {
        let mut c = PartitionConsumer::new(
            Arc::clone(&client),
            topic.clone(),
            0,
            StartFrom::Offset(start),
            FetchSettings {
                max_wait_ms: 10,
                ..Default::default()
            },
        );
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while got.len() < (20 - start) as usize && tokio::time::Instant::now() < deadline {
            got.extend(c.next_batch().await.records.into_iter().map(|r| r.offset));
        }
        assert_eq!(got, (start..20).collect::<Vec<_>>(), "starting at {start}");
    }
    Ok(())
}
