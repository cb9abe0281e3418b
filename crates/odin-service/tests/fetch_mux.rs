//! Multiplexed fetching against a real broker: many partitions of several topics read
//! through one `FetchMux` get exactly their own records, in order, from any position (mid
//! batch included); an offset past the log end gets the answer rskafka's partition client
//! gets, and a partition that does not exist an UnknownTopicOrPartition error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use odin_service::{
    FetchMux, FetchSettings, KafkaHealth, OutRecord, PartitionConsumer, Producer, ProducerConfig,
    StartFrom,
};
use rskafka::client::error::{Error as RsError, ProtocolError};
use tokio_util::sync::CancellationToken;

fn settings() -> FetchSettings {
    FetchSettings {
        max_wait_ms: 5,
        max_bytes: 1024 * 1024,
        request_timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn every_partition_gets_its_own_records_in_order() -> anyhow::Result<()> {
    let broker = testkit::shared();
    let topics = [
        testkit::unique_topic("mux-a"),
        testkit::unique_topic("mux-b"),
    ];
    for t in &topics {
        broker.create_topic(t, 3).await?;
    }
    let producer = Producer::new(
        broker.connector(),
        ProducerConfig::default(),
        KafkaHealth::new("test_kafka_connected"),
    );
    // Records name their own topic, partition and index; several batches per partition.
    for round in 0..3 {
        let mut recs = Vec::new();
        for t in &topics {
            for p in 0..3 {
                for i in 0..5 {
                    let n = round * 5 + i;
                    let mut r = OutRecord::new(t, None, format!("{t}/{p}/{n}").into_bytes(), 1);
                    r.partition = Some(p);
                    recs.push(r);
                }
            }
        }
        for r in producer.send_all(recs).await {
            r?;
        }
    }

    let cancel = CancellationToken::new();
    let mux = FetchMux::spawn(broker.brokers(), settings(), 2, cancel.clone());
    let client = Arc::new(broker.client().await?);
    let mut readers = Vec::new();
    for t in &topics {
        for p in 0..3 {
            // Starting inside the first batch on some partitions.
            let start = i64::from(p) * 2;
            let mut c = PartitionConsumer::new(
                Arc::clone(&client),
                t.clone(),
                p,
                StartFrom::Offset(start),
                settings(),
            )
            .with_mux(mux.clone());
            let expect: Vec<String> = (start..15).map(|n| format!("{t}/{p}/{n}")).collect();
            readers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
                while got.len() < expect.len() && tokio::time::Instant::now() < deadline {
                    let b = c.next_batch().await;
                    got.extend(
                        b.records
                            .into_iter()
                            .map(|r| String::from_utf8(r.record.value.unwrap()).unwrap()),
                    );
                }
                (got, expect, c.high_watermark())
            }));
        }
    }
    for r in readers {
        let (got, expect, hwm) = r.await?;
        assert_eq!(got, expect);
        assert_eq!(hwm, 15);
    }

    // Past the log end: the same answer as rskafka's partition client (Kafka:
    // OffsetOutOfRange).
    let pc = client
        .partition_client(
            topics[0].clone(),
            0,
            rskafka::client::partition::UnknownTopicHandling::Error,
        )
        .await?;
    let direct = pc.fetch_records(1_000, 1..1024 * 1024, 5).await;
    let muxed = mux.fetch(&topics[0], 0, 1_000).await;
    match (&direct, &muxed) {
        (Ok((a, ha)), Ok((b, hb))) => {
            assert!(a.is_empty() && b.is_empty());
            assert_eq!((ha, hb), (&15, &15));
        }
        (
            Err(RsError::ServerError {
                protocol_error: ProtocolError::OffsetOutOfRange,
                ..
            }),
            Err(RsError::ServerError {
                protocol_error: ProtocolError::OffsetOutOfRange,
                ..
            }),
        ) => {}
        _ => panic!("partition client answered {direct:?}, the mux {muxed:?}"),
    }
    // A partition the broker does not have.
    match mux.fetch(&topics[0], 7, 0).await {
        Err(RsError::ServerError {
            protocol_error: ProtocolError::UnknownTopicOrPartition,
            ..
        }) => {}
        other => panic!("expected UnknownTopicOrPartition, got {other:?}"),
    }

    // Stopped: fetches fail instead of hanging.
    cancel.cancel();
    let late = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if mux.fetch(&topics[0], 0, 0).await.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(late.is_ok(), "a stopped mux must answer with an error");
    Ok(())
}
