//! Broker loss: while the broker is down every ingest is a 503 and `/health` says so; the
//! publisher recovers by itself when the broker returns, and every event it acknowledged
//! is on the broker at the offset it reported.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use odin_events::envelope::parse_record;
use odin_events::EventType;
use serde_json::{json, Value};

use common::{consumer_client, eventually, read_at, start};

fn event(i: usize) -> Value {
    json!({"eventType": "TRADE_EXECUTED", "tokenId": format!("OUT{}", i % 7),
           "data": {"price": "1.5", "amount": i + 1, "side": "buy", "txHash": format!("0x{i:064x}")}})
}

/// (eventId, partition, offset) of every acknowledged event of an answer, 200 or 503.
fn acknowledged(status: u16, v: &Value) -> Vec<(String, i32, i64)> {
    if status == 200 {
        let ids = v["eventIds"].as_array().unwrap();
        (0..ids.len())
            .map(|i| {
                (
                    ids[i].as_str().unwrap().to_owned(),
                    v["partitions"][i].as_i64().unwrap() as i32,
                    v["offsets"][i].as_i64().unwrap(),
                )
            })
            .collect()
    } else {
        v["acknowledged"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        (
                            x["eventId"].as_str().unwrap().to_owned(),
                            x["partition"].as_i64().unwrap() as i32,
                            x["offset"].as_i64().unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn broker_loss_is_a_503_and_the_publisher_recovers_without_losing_acknowledged_events() {
    let mut broker = testkit::Broker::start().await.unwrap();
    if !broker.is_private() {
        return; // an external broker cannot be stopped
    }
    let p = start(&broker, &[]).await;
    let topic = p.names.topic_for(EventType::TradeExecuted).to_owned();

    let r = p.post_json("/events", &event(0)).await;
    assert_eq!(r.status(), 200);
    // The simulator runs through the outage too.
    let r = p
        .post_json("/start", &json!({"rate": 100, "tokenIds": ["OUTSIM"]}))
        .await;
    assert_eq!(r.status(), 200);

    broker.stop().await.unwrap();
    for i in 1..3 {
        let r = p.post_json("/events", &event(i)).await;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 503, "acknowledged with the broker down: {v}");
        serde_json::from_value::<publisher::openapi::Unavailable>(v.clone()).unwrap();
        assert!(acknowledged(status, &v).is_empty(), "{v}");
        assert!(v["error"].as_str().is_some());
    }
    let r = p.get("/health").await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "unavailable");
    assert!(!v["error"].as_str().unwrap().is_empty());
    let v: Value = p.get("/status").await.json().await.unwrap();
    assert_eq!(v["publisherHealthy"], false);
    assert_eq!(v["isRunning"], true, "the simulator keeps running");

    // The broker returns with its log and topics.
    broker.restart().await.unwrap();
    let published_at_restart = {
        let v: Value = p.get("/stats").await.json().await.unwrap();
        v["messagesPublished"].as_u64().unwrap()
    };

    // Retry as a caller would until accepted, then keep ingesting; collect every ack.
    let mut acked = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for i in 100.. {
        let r = p.post_json("/events", &event(i)).await;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert!(status == 200 || status == 503, "{status}: {v}");
        acked.extend(acknowledged(status, &v));
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ingest did not recover: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let batch: Vec<Value> = (1000..1040).map(event).collect();
    let r = p.post_json("/events", &json!({ "events": batch })).await;
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    acked.extend(acknowledged(status, &v));
    assert!(acked.len() >= 41);

    let r = p.get("/health").await;
    assert_eq!(r.status(), 200);
    eventually(
        Duration::from_secs(30),
        "the simulator to publish again",
        || async {
            let v: Value = p.get("/stats").await.json().await.unwrap();
            v["messagesPublished"].as_u64().unwrap() > published_at_restart + 100
        },
    )
    .await;

    // Every acknowledged event is on the broker where the publisher said it is.
    let client = consumer_client(&broker).await;
    for (id, partition, offset) in &acked {
        let rec = read_at(&client, &topic, *partition, *offset).await;
        let parsed = parse_record(rec.record.value.as_deref().unwrap(), None).unwrap();
        assert_eq!(parsed.event_id.as_deref(), Some(id.as_str()));
    }
    p.stop().await.unwrap();
}
