//! Round trips through a real broker: envelopes produced to each of the eight topics come
//! back from the partition the partitioner names, intact; the producer reports broker loss
//! to its caller and recovers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use odin_events::envelope::{parse_record, SOURCE_PUBLISHER};
use odin_events::{
    partition_for_key, Classification, Envelope, EventType, Metadata, TopicNames, EVENT_VERSION,
};
use odin_service::{
    FetchSettings, KafkaHealth, OutRecord, PartitionConsumer, Producer, ProducerConfig, StartFrom,
};

fn envelope(t: EventType, token: &str, i: usize) -> Envelope {
    Envelope {
        metadata: Metadata {
            event_id: format!("ev-{}-{i}", t.as_str()),
            event_type: t,
            event_version: EVENT_VERSION.into(),
            correlation_id: format!("corr-{i}"),
            timestamp: 1_700_000_000_000 + i as i64,
            source: SOURCE_PUBLISHER.into(),
            data_classification: Classification::default_for(t),
            token_id: token.into(),
            user_id: None,
        },
        data: serde_json::json!({"i": i, "token": token})
            .as_object()
            .cloned()
            .unwrap(),
    }
}

#[tokio::test]
async fn envelopes_round_trip_through_every_topic() -> anyhow::Result<()> {
    let broker = testkit::shared();
    let names = TopicNames::default();
    let producer = Producer::new(
        broker.connector(),
        ProducerConfig::default(),
        KafkaHealth::new("test_kafka_connected"),
    );
    let tokens = ["BTC", "ETH", "0x0000000000000000000000000000000000000001"];

    // One event of every type for every token, remembering where each must land.
    let mut expected = Vec::new();
    let mut records = Vec::new();
    for (i, t) in EventType::ALL.into_iter().enumerate() {
        for token in tokens {
            let env = envelope(t, token, i);
            let mut rec = OutRecord::new(
                names.topic_for(t),
                Some(env.key().to_vec()),
                env.to_json(),
                env.metadata.timestamp,
            );
            for (k, v) in env.headers() {
                rec = rec.header(k, v);
            }
            records.push(rec);
            expected.push(env);
        }
    }
    // Read from the current log end of every partition involved so the test is independent.
    let consumer_client = Arc::new(broker.client().await?);
    let mut consumers = std::collections::BTreeMap::new();
    for env in &expected {
        let topic = names.topic_for(env.metadata.event_type).to_owned();
        let p = partition_for_key(env.key(), 12);
        if !consumers.contains_key(&(topic.clone(), p)) {
            let mut c = PartitionConsumer::new(
                Arc::clone(&consumer_client),
                topic.clone(),
                p,
                StartFrom::Latest,
                FetchSettings {
                    max_wait_ms: 10,
                    ..Default::default()
                },
            );
            c.next_batch().await; // resolves the start position before producing
            consumers.insert((topic, p), c);
        }
    }

    let results = producer.send_all(records).await;
    for (r, env) in results.iter().zip(&expected) {
        let d = r.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(
            d.partition,
            partition_for_key(env.key(), 12),
            "{}",
            env.metadata.event_id
        );
    }

    let mut seen = 0;
    for ((topic, p), c) in consumers.iter_mut() {
        let want: Vec<&Envelope> = expected
            .iter()
            .filter(|e| {
                names.topic_for(e.metadata.event_type) == topic
                    && partition_for_key(e.key(), 12) == *p
            })
            .collect();
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while got.len() < want.len() && tokio::time::Instant::now() < deadline {
            got.extend(c.next_batch().await.records);
        }
        assert_eq!(got.len(), want.len(), "{topic}/{p}");
        for (r, env) in got.iter().zip(&want) {
            let value = r.record.value.as_deref().unwrap();
            let parsed = parse_record(value, r.record.key.as_deref())?;
            assert_eq!(parsed.event_type, env.metadata.event_type);
            assert_eq!(parsed.token_id, env.metadata.token_id);
            assert_eq!(
                parsed.event_id.as_deref(),
                Some(env.metadata.event_id.as_str())
            );
            assert_eq!(serde_json::from_slice::<Envelope>(value)?, **env);
            assert_eq!(
                r.record.headers["event-type"],
                env.metadata.event_type.as_str().as_bytes()
            );
            assert_eq!(r.record.headers["content-type"], b"application/json");
            assert_eq!(
                r.record.timestamp.timestamp_millis(),
                env.metadata.timestamp
            );
            assert_eq!(
                names.category_of_topic(topic),
                Some(env.metadata.event_type.category())
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 23 * tokens.len());
    producer.flush().await;
    Ok(())
}

#[tokio::test]
async fn unknown_topic_is_refused_not_created() -> anyhow::Result<()> {
    let broker = testkit::shared();
    let producer = Producer::new(
        broker.connector(),
        ProducerConfig::default(),
        KafkaHealth::new("test_kafka_connected"),
    );
    let topic = testkit::unique_topic("missing");
    let err = producer
        .send(OutRecord::new(
            &topic,
            Some(b"BTC".to_vec()),
            b"{}".to_vec(),
            0,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        odin_service::ProduceError::UnknownTopic {
            topic: topic.clone()
        }
    );
    let c = broker.client().await?;
    let missing = odin_service::topics::missing_topics(&c, &[topic.as_str()]).await?;
    assert_eq!(missing, vec![topic]);
    Ok(())
}

#[tokio::test]
async fn producer_reports_broker_loss_and_recovers() -> anyhow::Result<()> {
    let mut broker = testkit::Broker::start().await?;
    if !broker.is_private() {
        return Ok(()); // cannot stop an external broker
    }
    broker.create_topic("loss", 3).await?;
    let health = KafkaHealth::new("test_kafka_connected");
    let producer = Producer::new(
        broker.connector(),
        ProducerConfig {
            max_retries: 1,
            ..Default::default()
        },
        health.clone(),
    );
    let rec = || OutRecord::new("loss", Some(b"BTC".to_vec()), b"{\"n\":1}".to_vec(), 1);
    let first = producer.send(rec()).await?;
    assert_eq!(first.offset, 0);
    assert!(health.is_connected());

    broker.stop().await?;
    let err = tokio::time::timeout(Duration::from_secs(30), producer.send(rec())).await?;
    assert!(
        err.is_err(),
        "a produce the broker never saw must fail, got {err:?}"
    );
    assert!(!health.is_connected());
    assert!(health.reason().is_some());

    broker.restart().await?;
    broker.create_topic("loss", 3).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let delivered = loop {
        match producer.send(rec()).await {
            Ok(d) => break d,
            Err(e) if tokio::time::Instant::now() > deadline => anyhow::bail!("no recovery: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert_eq!(delivered.partition, first.partition);
    assert!(health.is_connected());
    Ok(())
}

#[tokio::test]
async fn consumer_resumes_after_broker_restart() -> anyhow::Result<()> {
    let mut broker = testkit::Broker::start().await?;
    if !broker.is_private() {
        return Ok(());
    }
    broker.create_topic("resume", 1).await?;
    let producer = Producer::new(
        broker.connector(),
        ProducerConfig::default(),
        KafkaHealth::new("test_kafka_connected"),
    );
    for i in 0..5 {
        producer
            .send(OutRecord::new(
                "resume",
                None,
                format!("{i}").into_bytes(),
                i,
            ))
            .await?;
    }
    let health = KafkaHealth::new("test_consumer_connected");
    let mut c = PartitionConsumer::new(
        Arc::new(broker.client().await?),
        "resume",
        0,
        StartFrom::Earliest,
        FetchSettings {
            max_wait_ms: 10,
            ..Default::default()
        },
    )
    .with_health(health.clone());
    let mut got = Vec::new();
    while got.len() < 5 {
        got.extend(c.next_batch().await.records.into_iter().map(|r| r.offset));
    }
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    assert_eq!(c.position(), Some(5));
    assert_eq!(c.high_watermark(), 5);

    // While the broker is away the consumer keeps retrying and reports it.
    broker.stop().await?;
    let pending = tokio::time::timeout(Duration::from_secs(8), c.next_batch()).await;
    assert!(
        pending.is_err(),
        "no batch can arrive while the broker is down"
    );
    assert!(!health.is_connected());

    // The broker comes back with its log: the consumer continues at offset 5 with what is
    // produced next, re-reading nothing and skipping nothing.
    broker.restart().await?;
    for i in 5..8 {
        producer
            .send(OutRecord::new(
                "resume",
                None,
                format!("{i}").into_bytes(),
                i,
            ))
            .await?;
    }
    let mut after = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while after.len() < 3 && tokio::time::Instant::now() < deadline {
        after.extend(c.next_batch().await.records.into_iter().map(|r| r.offset));
    }
    assert_eq!(after, vec![5, 6, 7]);
    assert!(health.is_connected());
    Ok(())
}
