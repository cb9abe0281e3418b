//! A private broker keeps its log across a restart: the fault tests rely on it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;

fn record(i: u8) -> Record {
    Record {
        key: Some(b"BTC".to_vec()),
        value: Some(vec![i]),
        headers: BTreeMap::new(),
        timestamp: chrono::Utc::now(),
    }
}

#[tokio::test]
async fn persistent_broker_keeps_its_log_across_restarts() -> anyhow::Result<()> {
    if std::env::var("ODIN_TEST_BROKERS").is_ok_and(|v| !v.is_empty()) {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(testkit::unique_topic("odin-persist"));
    let mut broker = testkit::Broker::start_persistent(&dir).await?;
    broker.create_topic("kept", 1).await?;
    let pc = broker
        .client()
        .await?
        .partition_client("kept", 0, UnknownTopicHandling::Error)
        .await?;
    let offsets = pc
        .produce(
            vec![record(1), record(2), record(3)],
            Compression::NoCompression,
        )
        .await?;
    assert_eq!(offsets, vec![0, 1, 2]);

    broker.restart().await?;
    let pc = broker
        .client()
        .await?
        .partition_client("kept", 0, UnknownTopicHandling::Error)
        .await?;
    let (records, hwm) = pc.fetch_records(0, 1..1_000_000, 100).await?;
    assert_eq!(hwm, 3);
    let values: Vec<u8> = records
        .iter()
        .map(|r| r.record.value.as_ref().unwrap()[0])
        .collect();
    assert_eq!(values, vec![1, 2, 3]);
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
