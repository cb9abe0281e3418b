//! What a real Kafka does that a consumer must get right: topics created with their configs,
//! records deleted by retention, and a topic deleted and created again (a log whose offsets
//! start over below a consumer's position).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use odin_events::{TopicNames, TopicSpec};
use odin_service::{
    FetchSettings, KafkaHealth, OutRecord, PartitionConsumer, Producer, ProducerConfig, StartFrom,
};
use tokio::time::Instant;

fn producer(broker: &testkit::Broker) -> Producer {
    Producer::new(
        broker.connector(),
        ProducerConfig::default(),
        KafkaHealth::new("test_kafka_connected"),
    )
}

async fn produce(p: &Producer, topic: &str, n: usize, tag: &str) -> Vec<i64> {
    let now = chrono::Utc::now().timestamp_millis();
    let recs = (0..n)
        .map(|i| OutRecord::new(topic, None, format!("{tag}-{i}").into_bytes(), now))
        .collect();
    p.send_all(recs)
        .await
        .into_iter()
        .map(|d| d.unwrap().offset)
        .collect()
}

fn consumer(client: rskafka::client::Client, topic: &str, start: StartFrom) -> PartitionConsumer {
    PartitionConsumer::new(
        Arc::new(client),
        topic,
        0,
        start,
        FetchSettings {
            max_wait_ms: 50,
            ..Default::default()
        },
    )
}

/// Reads until `n` records arrived or the deadline passed.
async fn read(c: &mut PartitionConsumer, n: usize) -> (Vec<String>, i64) {
    let mut got = Vec::new();
    let mut skipped = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < n && Instant::now() < deadline {
        let b = c.next_batch().await;
        skipped += b.skipped;
        got.extend(
            b.records
                .iter()
                .map(|r| String::from_utf8_lossy(r.record.value.as_deref().unwrap()).into_owned()),
        );
    }
    (got, skipped)
}

#[tokio::test]
async fn odin_topics_creates_every_topic_with_its_configs() {
    let broker = testkit::shared();
    let prefix = format!("{}.", testkit::unique_topic("cfg"));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_odin-topics"))
        .env("KAFKA_BROKERS", broker.addr())
        .env("TOPIC_PREFIX", &prefix)
        .env("TOPICS_WAIT", "30s")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut names = TopicNames::default();
    for t in names.categories.iter_mut() {
        *t = format!("{prefix}{t}");
    }
    let trades = broker.topic_configs(&names.categories[0]).await.unwrap();
    assert_eq!(trades["retention.ms"], "30000");
    assert_eq!(trades["segment.ms"], "10000");
    assert_eq!(trades["cleanup.policy"], "delete");
    assert_eq!(trades["compression.type"], "snappy");
    assert_eq!(trades["max.message.bytes"], "1048576");
    // Every event topic carries README's retention; trade-info and aggregate-info theirs.
    for spec in names.event_topic_specs() {
        let got = broker.topic_configs(&spec.name).await.unwrap();
        assert_eq!(
            got["retention.ms"],
            spec.retention_ms.to_string(),
            "{}",
            spec.name
        );
    }
    let metadata = broker
        .topic_configs(&format!("{prefix}odin.metadata"))
        .await
        .unwrap();
    assert_eq!(metadata["retention.ms"], "3600000");
}

#[tokio::test]
async fn a_consumer_beyond_a_recreated_log_resumes_at_its_end_and_counts_the_skip() {
    let broker = testkit::shared();
    let topic = testkit::unique_topic("recreated");
    broker.create_topic(&topic, 1).await.unwrap();
    let p = producer(broker);
    produce(&p, &topic, 10, "old").await;
    let mut c = consumer(broker.client().await.unwrap(), &topic, StartFrom::Earliest);
    let (got, _) = read(&mut c, 10).await;
    assert_eq!(got.len(), 10);
    assert_eq!(c.position(), Some(10));

    // A new log with fewer records than our position: OffsetOutOfRange past its end.
    broker.delete_topic(&topic).await.unwrap();
    broker.create_topic(&topic, 1).await.unwrap();
    let p = producer(broker);
    produce(&p, &topic, 3, "new").await;
    let mut skipped = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.position() != Some(3) && Instant::now() < deadline {
        skipped += c.next_batch().await.skipped;
    }
    assert_eq!(
        c.position(),
        Some(3),
        "resumed at the new log's end, not its start"
    );
    assert_eq!(
        skipped, 3,
        "the new log's records it passed over are counted"
    );

    // And goes on from there.
    produce(&p, &topic, 2, "after").await;
    let (got, _) = read(&mut c, 2).await;
    assert_eq!(got, vec!["after-0", "after-1"]);
}

#[tokio::test]
async fn a_consumer_behind_retention_moves_to_the_earliest_record_and_counts_the_skip() {
    let broker = testkit::shared();
    let topic = testkit::unique_topic("retained");
    broker
        .create_topics(&[TopicSpec {
            name: topic.clone(),
            partitions: 1,
            retention_ms: 1_000,
        }])
        .await
        .unwrap();
    // Small segments so that retention has whole closed segments to delete.
    broker
        .alter_topic_configs(&topic, &[("segment.ms", "200")])
        .await
        .unwrap();
    let p = producer(broker);
    let first = produce(&p, &topic, 5, "gone").await;

    // Keep appending (segments roll only on an append) until the broker's retention check
    // has deleted the first records.
    let client = broker.client().await.unwrap();
    let pc = client
        .partition_client(
            topic.clone(),
            0,
            rskafka::client::partition::UnknownTopicHandling::Retry,
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let earliest = loop {
        let e = pc
            .get_offset(rskafka::client::partition::OffsetAt::Earliest)
            .await
            .unwrap();
        if e > first[4] {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "retention deleted nothing within 60 s"
        );
        produce(&p, &topic, 1, "filler").await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    let mut c = consumer(
        broker.client().await.unwrap(),
        &topic,
        StartFrom::Offset(first[0]),
    );
    let b = c.next_batch().await;
    assert!(b.records.is_empty());
    assert!(
        b.skipped >= earliest - first[0],
        "skipped {} of {}",
        b.skipped,
        earliest - first[0]
    );
    assert!(
        c.position().unwrap() >= earliest,
        "moved forward to the earliest retained record"
    );
    assert!(
        c.position().unwrap() > first[4],
        "never re-reads deleted offsets"
    );
}
