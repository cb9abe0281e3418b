//! Recovery against a real broker: a channel's records after an offset come back in order,
//! filtered by key and category, bounded, and positions outside the log are reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use odin_events::envelope::{parse_record, SOURCE_PUBLISHER};
use odin_events::{
    partition_for_key, Category, Channel, Classification, Envelope, EventType, Metadata, TopicMode,
    TopicNames, EVENT_VERSION,
};
use odin_service::{KafkaHealth, OutRecord, Producer, ProducerConfig};
use tokio::time::Instant;
use ws_gateway::recovery::{Incomplete, Recoverer, RecoveryArgs};

fn envelope(t: EventType, token: &str, i: usize) -> Envelope {
    Envelope {
        metadata: Metadata {
            event_id: format!("{token}-{i}"),
            event_type: t,
            event_version: EVENT_VERSION.into(),
            correlation_id: format!("c{i}"),
            timestamp: 1_700_000_000_000 + i as i64,
            source: SOURCE_PUBLISHER.into(),
            data_classification: Classification::Public,
            token_id: token.into(),
            user_id: None,
        },
        data: serde_json::json!({"i": i}).as_object().cloned().unwrap(),
    }
}

fn record(topic: &str, env: &Envelope) -> OutRecord {
    OutRecord::new(
        topic,
        Some(env.key().to_vec()),
        env.to_json(),
        env.metadata.timestamp,
    )
}

/// A token other than `token` that lands in the same partition of 12.
fn neighbour(token: &str) -> String {
    let p = partition_for_key(token.as_bytes(), 12);
    (0..10_000)
        .map(|i| format!("N{i}"))
        .find(|t| t != token && partition_for_key(t.as_bytes(), 12) == p)
        .unwrap()
}

fn producer(broker: &testkit::Broker) -> Producer {
    Producer::new(
        broker.connector(),
        ProducerConfig::default(),
        KafkaHealth::new("test_producer_connected"),
    )
}

/// Decodes like the gateway: the record's event id, when its category matches.
fn decode(category: Category) -> impl FnMut(&rskafka::record::RecordAndOffset) -> Option<String> {
    move |r| {
        let p = parse_record(r.record.value.as_deref()?, r.record.key.as_deref()).ok()?;
        if p.event_type.category() != category {
            return None;
        }
        Some(p.event_id?.into_owned())
    }
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

#[tokio::test]
async fn replays_a_channel_after_an_offset_then_reports_bounds() {
    let broker = testkit::shared();
    let names = TopicNames::default();
    let topic = names.topic_for(EventType::TradeExecuted).to_owned();
    let token = format!("R{:06x}", rand_u32() & 0xff_ffff);
    let other = neighbour(&token);
    let p = producer(broker);

    // token and its neighbour interleaved in one partition.
    let mut offsets = Vec::new();
    for i in 0..10 {
        let d = p
            .send(record(
                &topic,
                &envelope(EventType::TradeExecuted, &token, i),
            ))
            .await
            .unwrap();
        offsets.push(d.offset);
        p.send(record(
            &topic,
            &envelope(EventType::TradeExecuted, &other, i),
        ))
        .await
        .unwrap();
    }
    let rec = Recoverer::new(broker.connector(), names.clone(), &RecoveryArgs::default());
    let channel = Channel::parse(&format!("{token}.trade")).unwrap();
    let loc = rec.locate(&channel).await.unwrap();
    assert_eq!(loc.partition, partition_for_key(token.as_bytes(), 12));

    // After the 4th record: exactly records 4..10 of this token, in order.
    let r = rec
        .replay(
            &channel,
            offsets[3],
            1000,
            deadline(),
            decode(Category::Trade),
        )
        .await;
    let want: Vec<String> = (4..10).map(|i| format!("{token}-{i}")).collect();
    assert_eq!(r.items, want);
    assert!(r.outcome.recovered);
    assert_eq!(r.outcome.replayed, 6);
    assert!(r.live_from > *offsets.last().unwrap());

    // From before the first record: all ten.
    let r = rec
        .replay(
            &channel,
            offsets[0] - 1,
            1000,
            deadline(),
            decode(Category::Trade),
        )
        .await;
    assert_eq!(r.items.len(), 10);

    // Up to date: complete, nothing to replay.
    let r = rec
        .replay(
            &channel,
            r.live_from - 1,
            1000,
            deadline(),
            decode(Category::Trade),
        )
        .await;
    assert_eq!((r.outcome.recovered, r.outcome.replayed), (true, 0));

    // Beyond the log end: not an offset of this log.
    let r = rec
        .replay(
            &channel,
            r.live_from + 100,
            1000,
            deadline(),
            decode(Category::Trade),
        )
        .await;
    assert!(!r.outcome.recovered);
    assert_eq!(r.outcome.reason, Some(Incomplete::BeyondLogEnd));
    assert!(r.items.is_empty());

    // More missed records than allowed.
    let r = rec
        .replay(
            &channel,
            offsets[0] - 1,
            5,
            deadline(),
            decode(Category::Trade),
        )
        .await;
    assert_eq!(r.outcome.reason, Some(Incomplete::TooManyRecords));
    assert!(r.items.is_empty());
    assert_eq!(
        r.live_from, offsets[0],
        "live resumes after the client's own offset"
    );

    // No time left.
    let r = rec
        .replay(
            &channel,
            offsets[0] - 1,
            1000,
            Instant::now(),
            decode(Category::Trade),
        )
        .await;
    assert_eq!(r.outcome.reason, Some(Incomplete::Timeout));

    // Wildcards have no single partition.
    let r = rec
        .replay(
            &Channel::wildcard(Category::Trade),
            0,
            1000,
            deadline(),
            decode(Category::Trade),
        )
        .await;
    assert_eq!(r.outcome.reason, Some(Incomplete::NotSubscribed));
}

#[tokio::test]
async fn single_topic_mode_filters_by_category() {
    let broker = testkit::shared();
    let mut names = TopicNames::new(TopicMode::Single);
    names.single = testkit::unique_topic("recovery-single");
    broker.create_topic(&names.single, 12).await.unwrap();
    let token = format!("S{:06x}", rand_u32() & 0xff_ffff);
    let p = producer(broker);
    let mut first = None;
    for i in 0..6 {
        // Trades and comments of one token share the single topic's partition.
        let t = if i % 2 == 0 {
            EventType::TradeExecuted
        } else {
            EventType::CommentPosted
        };
        let d = p
            .send(record(&names.single, &envelope(t, &token, i)))
            .await
            .unwrap();
        first.get_or_insert(d.offset);
    }
    let rec = Recoverer::new(broker.connector(), names, &RecoveryArgs::default());
    let channel = Channel::parse(&format!("{token}.trade")).unwrap();
    let r = rec
        .replay(
            &channel,
            first.unwrap() - 1,
            1000,
            deadline(),
            decode(Category::Trade),
        )
        .await;
    assert!(r.outcome.recovered);
    assert_eq!(
        r.items,
        vec![
            format!("{token}-0"),
            format!("{token}-2"),
            format!("{token}-4")
        ]
    );
}

#[tokio::test]
async fn a_missing_topic_is_unavailable_and_not_created() {
    let broker = testkit::shared();
    let mut names = TopicNames::default();
    let missing = testkit::unique_topic("recovery-missing");
    names.categories[Category::Social.index()] = missing.clone();
    let rec = Recoverer::new(broker.connector(), names, &RecoveryArgs::default());
    let r = rec
        .replay(
            &Channel::parse("BTC.social").unwrap(),
            0,
            1000,
            deadline(),
            decode(Category::Social),
        )
        .await;
    assert_eq!(r.outcome.reason, Some(Incomplete::Unavailable));
    let counts = odin_service::kafka::partition_counts(&broker.client().await.unwrap())
        .await
        .unwrap();
    assert!(
        !counts.contains_key(&missing),
        "recovery must never create topics"
    );
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish() as u32
}

/// Producers batch: a client's last offset usually lies inside a produced batch, and a
/// fetch that starts there is answered with the whole batch. The replay must still start
/// right after the client's offset.
#[tokio::test]
async fn replays_from_inside_a_produced_batch() {
    let broker = testkit::shared();
    let names = TopicNames::default();
    let topic = names.topic_for(EventType::TradeExecuted).to_owned();
    let token = format!("B{:06x}", rand_u32() & 0xff_ffff);
    let other = neighbour(&token);
    let p = producer(broker);

    // One batch: token and its neighbour interleaved, ten each.
    let recs = (0..10)
        .flat_map(|i| {
            [
                record(&topic, &envelope(EventType::TradeExecuted, &token, i)),
                record(&topic, &envelope(EventType::TradeExecuted, &other, i)),
            ]
        })
        .collect();
    let offsets: Vec<i64> = p
        .send_all(recs)
        .await
        .into_iter()
        .map(|d| d.unwrap().offset)
        .step_by(2)
        .collect();
    let rec = Recoverer::new(broker.connector(), names.clone(), &RecoveryArgs::default());
    let channel = Channel::parse(&format!("{token}.trade")).unwrap();
    for seen in [0usize, 3, 8, 9] {
        let r = rec
            .replay(
                &channel,
                offsets[seen],
                1000,
                deadline(),
                decode(Category::Trade),
            )
            .await;
        let want: Vec<String> = (seen + 1..10).map(|i| format!("{token}-{i}")).collect();
        assert_eq!(r.items, want, "after record {seen}");
        assert!(r.outcome.recovered);
    }
}

/// Per-category names under a fresh prefix, with one-partition topics of their own.
async fn own_topics(broker: &testkit::Broker, retention_ms: i64) -> TopicNames {
    let prefix = format!("{}.", testkit::unique_topic("rec"));
    let mut names = TopicNames::default();
    for t in names.categories.iter_mut() {
        *t = format!("{prefix}{t}");
    }
    broker
        .create_topics(&own_specs(&names, retention_ms))
        .await
        .unwrap();
    names
}

/// The event topics of `names`, one partition each.
fn own_specs(names: &TopicNames, retention_ms: i64) -> Vec<odin_events::TopicSpec> {
    names
        .event_topic_specs()
        .into_iter()
        .map(|s| odin_events::TopicSpec {
            partitions: 1,
            retention_ms,
            ..s
        })
        .collect()
}

fn now_envelope(token: &str, i: usize) -> Envelope {
    let mut e = envelope(EventType::TradeExecuted, token, i);
    e.metadata.timestamp = rskafka::chrono::Utc::now().timestamp_millis();
    e
}

#[tokio::test]
async fn records_deleted_by_retention_are_reported_as_retention() {
    let broker = testkit::shared();
    let names = own_topics(broker, 1_000).await;
    let topic = names.topic_for(EventType::TradeExecuted).to_owned();
    broker
        .alter_topic_configs(&topic, &[("segment.ms", "200")])
        .await
        .unwrap();
    let p = producer(broker);
    let mut offsets = Vec::new();
    for i in 0..5 {
        offsets.push(
            p.send(record(&topic, &now_envelope("RET", i)))
                .await
                .unwrap()
                .offset,
        );
    }
    // Appends roll segments; the broker's retention check then deletes the old ones.
    let client = broker.client().await.unwrap();
    let pc = client
        .partition_client(
            topic.clone(),
            0,
            rskafka::client::partition::UnknownTopicHandling::Retry,
        )
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    let mut i = 5;
    while pc
        .get_offset(rskafka::client::partition::OffsetAt::Earliest)
        .await
        .unwrap()
        <= offsets[4]
    {
        assert!(
            Instant::now() < until,
            "retention deleted nothing within 60 s"
        );
        p.send(record(&topic, &now_envelope("RET", i)))
            .await
            .unwrap();
        i += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let rec = Recoverer::new(broker.connector(), names.clone(), &RecoveryArgs::default());
    let channel = Channel::parse("RET.trade").unwrap();
    let r = rec
        .replay(
            &channel,
            offsets[1],
            1000,
            deadline(),
            decode(Category::Trade),
        )
        .await;
    assert!(!r.outcome.recovered);
    assert_eq!(r.outcome.reason, Some(Incomplete::Retention));
    assert!(r.items.is_empty());
}

#[tokio::test]
async fn a_position_in_a_deleted_and_recreated_topic_is_beyond_the_log_end() {
    let broker = testkit::shared();
    let names = own_topics(broker, 3_600_000).await;
    let topic = names.topic_for(EventType::TradeExecuted).to_owned();
    let p = producer(broker);
    let mut offsets = Vec::new();
    for i in 0..10 {
        offsets.push(
            p.send(record(&topic, &now_envelope("NEW", i)))
                .await
                .unwrap()
                .offset,
        );
    }
    broker.delete_topic(&topic).await.unwrap();
    own_topics_again(broker, &names).await;
    let p = producer(broker);
    for i in 0..2 {
        p.send(record(&topic, &now_envelope("NEW", 100 + i)))
            .await
            .unwrap();
    }

    let rec = Recoverer::new(broker.connector(), names.clone(), &RecoveryArgs::default());
    let channel = Channel::parse("NEW.trade").unwrap();
    let r = rec
        .replay(
            &channel,
            offsets[8],
            1000,
            deadline(),
            decode(Category::Trade),
        )
        .await;
    assert!(!r.outcome.recovered);
    assert_eq!(r.outcome.reason, Some(Incomplete::BeyondLogEnd));
    assert!(r.items.is_empty());
}

async fn own_topics_again(broker: &testkit::Broker, names: &TopicNames) {
    let specs = own_specs(names, 3_600_000);
    // Deletion finishes in the background: retry until the name can be taken again.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        match broker.create_topics(&specs).await {
            Ok(()) => return,
            Err(e) if Instant::now() < until => {
                eprintln!("recreating: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot recreate topics: {e}"),
        }
    }
}
