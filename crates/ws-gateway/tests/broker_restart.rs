//! Broker loss: the gateway reports it (`/health` 503 with the reason, `ws_kafka_connected`
//! 0), retries, and when the broker returns delivers every record it then holds, from the
//! right place; a topic deleted and created again (a new log whose offsets start over) is
//! recognised as new and read from its start. Its own test binary: it owns a private broker and reads a process-wide gauge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use odin_events::{EventType, TopicMode};
use serde_json::json;
use support::*;

#[tokio::test]
async fn broker_restart_loses_no_record_it_holds() {
    let mut broker = testkit::Broker::start().await.unwrap();
    if !broker.is_private() {
        eprintln!("skipped: ODIN_TEST_BROKERS points at a broker this test cannot restart");
        return;
    }
    let (prefix, names) = fresh_names(TopicMode::PerCategory);
    create_topics(&broker, &names, 4).await;
    let gw = Gateway::start_on(&broker, &prefix, TopicMode::PerCategory, &[]).await;
    let mut c = gw.client().await;
    c.subscribe(json!({"channels": ["BTC.trade", "ETH.trade"]}))
        .await;

    let p = producer(&broker);
    let before: Vec<_> = (0..5)
        .map(|i| {
            record(
                &names,
                &envelope(EventType::TradeExecuted, "BTC", json!({"before": i})),
            )
        })
        .collect();
    produce(&p, before).await;
    assert_eq!(c.events(5).await.len(), 5);

    broker.stop().await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = gw.get("/health").await;
        if status == 503 {
            let h: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(h["kafka"]["connected"], false);
            assert!(!h["reason"].as_str().unwrap().is_empty());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broker loss not reported: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(gw.addr, "ws_kafka_connected").await, 0.0);

    // The broker comes back with its log: what is produced next follows on, nothing is read
    // twice and no position is reset.
    broker.restart().await.unwrap();
    let p = producer(&broker);
    let kept: Vec<_> = (0..6)
        .map(|i| {
            record(
                &names,
                &envelope(EventType::TradeExecuted, "BTC", json!({"kept": i})),
            )
        })
        .collect();
    produce(&p, kept).await;
    let got = c.events(6).await;
    let seen: Vec<i64> = got
        .iter()
        .map(|e| e["data"]["kept"].as_i64().unwrap())
        .collect();
    assert_eq!(seen, (0..6).collect::<Vec<_>>(), "{got:?}");
    assert!(c.drain().await.is_empty(), "no duplicates");
    let trades = names.topic_for(EventType::TradeExecuted).to_owned();
    let resets = format!("ws_kafka_log_resets_total{{topic=\"{trades}\"}}");
    assert_eq!(
        metric(gw.addr, &resets).await,
        0.0,
        "the same log: no reset"
    );

    // The topic is deleted and created again: a new log whose offsets start at 0, below
    // the gateway's position. Everything written to it must reach the client.
    broker.delete_topic(&trades).await.unwrap();
    create_topics(&broker, &names, 4).await;
    // More BTC records than the old log held, so the new log grows past the old position
    // and only recognising the log as new avoids skipping its first records.
    let after: Vec<_> = (0..12)
        .map(|i| {
            let token = if i % 3 == 2 { "ETH" } else { "BTC" };
            record(
                &names,
                &envelope(EventType::TradeExecuted, token, json!({"after": i})),
            )
        })
        .collect();
    produce(&p, after).await;
    let got = c.events(12).await;
    let mut seen: Vec<i64> = got
        .iter()
        .map(|e| e["data"]["after"].as_i64().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..12).collect::<Vec<_>>(), "{got:?}");
    assert!(c.drain().await.is_empty(), "no duplicates");
    assert!(metric(gw.addr, &resets).await >= 1.0);
    gw.wait_healthy().await;
    assert_eq!(metric(gw.addr, "ws_kafka_connected").await, 1.0);
    gw.shutdown().await;
    broker.stop().await.unwrap();
}
