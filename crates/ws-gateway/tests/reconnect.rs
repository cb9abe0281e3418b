//! Lossless reconnect (issue 7): a client that reconnects, to any gateway instance, with the
//! last offset it saw per channel gets exactly the records it missed, in order, then live
//! ones, with no gap and no duplicate at the seam, even while records keep flowing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use odin_events::{Classification, EventType, TopicMode};
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "reconnect-test-secret";

fn event(t: EventType, token: &str, seq: u64) -> odin_events::Envelope {
    let mut e = envelope(t, token, json!({ "seq": seq }));
    e.metadata.event_id = format!("{token}-{seq}");
    e
}

fn seq(f: &Value) -> u64 {
    f["data"]["seq"].as_u64().unwrap()
}

async fn two_gateways(partitions: i32, extra: &[&str]) -> (Gateway, Gateway) {
    let broker = testkit::shared();
    let (prefix, names) = fresh_names(TopicMode::PerCategory);
    create_topics(broker, &names, partitions).await;
    let a = Gateway::start_on(broker, &prefix, TopicMode::PerCategory, extra).await;
    let b = Gateway::start_on(broker, &prefix, TopicMode::PerCategory, extra).await;
    (a, b)
}

/// Reads until the reply with `id`, returning the reply and the events before it.
async fn until_reply(c: &mut Client, id: &str) -> (Value, Vec<Value>) {
    let mut events = Vec::new();
    loop {
        let f = c.recv().await;
        if f["id"] == json!(id) {
            return (f, events);
        }
        assert_eq!(f["type"], "event", "{f}");
        events.push(f);
    }
}

/// Sequence numbers per channel, in arrival order.
fn by_channel(events: &[Value]) -> BTreeMap<String, Vec<u64>> {
    let mut m: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in events {
        m.entry(e["channel"].as_str().unwrap().to_owned())
            .or_default()
            .push(seq(e));
    }
    m
}

#[tokio::test]
async fn reconnecting_to_another_instance_replays_exactly_what_was_missed() {
    let broker = testkit::shared();
    let (gw_a, gw_b) = two_gateways(3, &["--jwt-secret", SECRET]).await;
    let names = gw_a.names.clone();
    let p = producer(broker);
    let exp = now_ms() / 1000 + 600;
    let alice = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "alice", "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();

    let channels = ["BTC.trade", "ETH.trade", "BTC.balances"];
    let mut c = Client::connect(&format!("{}?token={alice}", gw_a.url())).await;
    c.subscribe(json!({ "channels": channels })).await;
    let balance = |user: &str, s: u64| {
        let mut e = event(EventType::BalanceUpdated, "BTC", s);
        e.metadata.data_classification = Classification::Restricted;
        e.metadata.user_id = Some(user.to_owned());
        e
    };
    // Phase 1, seen live on A: seq 0..5 on each channel.
    let mut recs = Vec::new();
    for s in 0..5 {
        recs.push(record(&names, &event(EventType::TradeExecuted, "BTC", s)));
        recs.push(record(&names, &event(EventType::TradeExecuted, "ETH", s)));
        recs.push(record(&names, &balance("alice", s)));
        recs.push(record(&names, &balance("bob", 100 + s)));
    }
    produce(&p, recs).await;
    let seen = c.events(15).await;
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for e in &seen {
        last.insert(
            e["channel"].as_str().unwrap().to_owned(),
            e["offset"].as_i64().unwrap(),
        );
    }
    assert_eq!(by_channel(&seen)["BTC.balances"], vec![0, 1, 2, 3, 4]);
    drop(c);

    // Phase 2, missed: seq 5..12 (and an internal record that must never be replayed).
    let mut internal = event(EventType::TradeExecuted, "BTC", 999);
    internal.metadata.data_classification = Classification::Internal;
    let mut recs = vec![record(&names, &internal)];
    for s in 5..12 {
        recs.push(record(&names, &event(EventType::TradeExecuted, "BTC", s)));
        recs.push(record(&names, &event(EventType::TradeExecuted, "ETH", s)));
        recs.push(record(&names, &balance("alice", s)));
        recs.push(record(&names, &balance("bob", 100 + s)));
    }
    produce(&p, recs).await;

    // Reconnect to B with the last offsets.
    let mut req = gw_b.url().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {alice}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut c = Client::connect_with(ws).await;
    c.send(json!({"type": "subscribe", "id": "re", "channels": channels, "recover": last}))
        .await;
    let (reply, replayed) = until_reply(&mut c, "re").await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    for ch in channels {
        assert_eq!(
            reply["recovery"][ch],
            json!({"recovered": true, "replayed": 7}),
            "{reply}"
        );
    }
    // Phase 3, live after the reconnect: seq 12..15.
    let mut recs = Vec::new();
    for s in 12..15 {
        recs.push(record(&names, &event(EventType::TradeExecuted, "BTC", s)));
        recs.push(record(&names, &event(EventType::TradeExecuted, "ETH", s)));
        recs.push(record(&names, &balance("alice", s)));
    }
    produce(&p, recs).await;
    let live = c.events(9).await;
    let mut all = replayed;
    all.extend(live);
    let got = by_channel(&all);
    for ch in channels {
        assert_eq!(
            got[ch],
            (5..15).collect::<Vec<u64>>(),
            "{ch}: no gap, no duplicate, in order"
        );
    }
    // Offsets keep increasing across the seam.
    for ch in channels {
        let offs: Vec<i64> = all
            .iter()
            .filter(|e| e["channel"] == ch)
            .map(|e| e["offset"].as_i64().unwrap())
            .collect();
        assert!(offs.windows(2).all(|w| w[0] < w[1]), "{ch}: {offs:?}");
        assert!(offs[0] > last[ch]);
    }
    assert!(c.drain().await.is_empty());
    gw_a.shutdown().await;
    gw_b.shutdown().await;
}

#[tokio::test]
async fn recovery_beyond_its_bounds_is_reported_and_live_delivery_goes_on() {
    let broker = testkit::shared();
    let gw = Gateway::start(broker, &["--recovery-max-records", "3"]).await;
    let p = producer(broker);
    // A watcher proves the gateway has consumed these before the recovering client comes.
    let mut watcher = gw.client().await;
    watcher.subscribe(json!({"channels": ["BTC.trade"]})).await;
    let mut offsets = Vec::new();
    for s in 0..6 {
        let d = p
            .send(record(
                &gw.names,
                &event(EventType::TradeExecuted, "BTC", s),
            ))
            .await
            .unwrap();
        offsets.push(d.offset);
    }
    assert_eq!(watcher.events(6).await.len(), 6);
    let mut c = gw.client().await;
    let (reply, events) = c
        .request(json!({
            "type": "subscribe",
            "channels": ["BTC.trade", "ETH.trade", "*.creation"],
            "recover": {
                "BTC.trade": offsets[0] - 1,      // 6 missed > 3 allowed
                "ETH.trade": offsets[5] + 1_000,  // not an offset of this log
                "SOL.trade": 0,                   // not subscribed
            }
        }))
        .await;
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(
        reply["recovery"],
        json!({
            "BTC.trade": {"recovered": false, "replayed": 0, "reason": "too_many_records"},
            "ETH.trade": {"recovered": false, "replayed": 0, "reason": "beyond_log_end"},
            "SOL.trade": {"recovered": false, "replayed": 0, "reason": "not_subscribed"},
        }),
        "{reply}"
    );
    // Within the bound on another connection: complete.
    let mut d = gw.client().await;
    let (reply, events) = d
        .request(json!({"type": "subscribe", "channels": ["BTC.trade"], "recover": {"BTC.trade": offsets[2]}}))
        .await;
    assert_eq!(
        reply["recovery"]["BTC.trade"],
        json!({"recovered": true, "replayed": 3})
    );
    assert_eq!(events.iter().map(seq).collect::<Vec<_>>(), vec![3, 4, 5]);

    // Live delivery after an incomplete recovery.
    produce(
        &p,
        vec![record(
            &gw.names,
            &event(EventType::TradeExecuted, "BTC", 6),
        )],
    )
    .await;
    assert_eq!(seq(&c.events(1).await[0]), 6);
    assert_eq!(seq(&d.events(1).await[0]), 6);

    // A channel already live on the connection (itself or through its wildcard) is not
    // replayed: the client has those records.
    let (reply, events) = c
        .request(
            json!({"type": "subscribe", "channels": ["BTC.trade", "NEW.creation"],
            "recover": {"BTC.trade": offsets[0], "NEW.creation": 0}}),
        )
        .await;
    assert!(events.is_empty(), "{events:?}");
    for ch in ["BTC.trade", "NEW.creation"] {
        assert_eq!(
            reply["recovery"][ch]["reason"], "already_subscribed",
            "{reply}"
        );
    }

    // Malformed recover maps are bad requests.
    for bad in [
        json!({"type": "subscribe", "channels": ["BTC.trade"], "recover": {"BTC": 1}}),
        json!({"type": "subscribe", "channels": ["BTC.trade"], "recover": {"BTC.trade": "x"}}),
        json!({"type": "subscribe", "channels": ["BTC.trade"], "recover": {"BTC.trade": -5}}),
        json!({"type": "unsubscribe", "channels": ["BTC.trade"], "recover": {"BTC.trade": 1}}),
    ] {
        let (reply, _) = c.request(bad.clone()).await;
        assert_eq!(reply["type"], "error", "{bad} → {reply}");
        assert!(
            reply["code"] == "bad_request" || reply["code"] == "invalid_channel",
            "{reply}"
        );
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn recovery_joins_concurrent_live_traffic_without_gap_or_duplicate() {
    let broker = testkit::shared();
    let (gw_a, gw_b) = two_gateways(2, &[]).await;
    let names = gw_a.names.clone();

    let mut c = gw_a.client().await;
    c.subscribe(json!({"channels": ["BTC.trade"]})).await;
    let p = producer(broker);
    produce(
        &p,
        (0..20)
            .map(|s| record(&names, &event(EventType::TradeExecuted, "BTC", s)))
            .collect(),
    )
    .await;
    let seen = c.events(20).await;
    let last = seen.last().unwrap()["offset"].as_i64().unwrap();
    drop(c);

    // A writer keeps producing, one acknowledged record at a time, through the reconnect.
    const TOTAL: u64 = 400;
    let writer = {
        let p = p.clone();
        let names = names.clone();
        tokio::spawn(async move {
            for s in 20..TOTAL {
                p.send(record(&names, &event(EventType::TradeExecuted, "BTC", s)))
                    .await
                    .unwrap();
            }
        })
    };
    // Reconnect while the writer runs (several rounds would only repeat the same race).
    let mut c = gw_b.client().await;
    c.send(json!({"type": "subscribe", "id": "re", "channels": ["BTC.trade"], "recover": {"BTC.trade": last}}))
        .await;
    let (reply, mut got) = until_reply(&mut c, "re").await;
    assert_eq!(reply["recovery"]["BTC.trade"]["recovered"], true, "{reply}");
    tokio::time::timeout(WAIT, writer).await.unwrap().unwrap();
    while got.last().map(seq) != Some(TOTAL - 1) {
        let f = c.recv().await;
        assert_eq!(f["type"], "event", "{f}");
        got.push(f);
        assert!(got.len() <= TOTAL as usize, "more frames than records");
    }
    let seqs: Vec<u64> = got.iter().map(seq).collect();
    assert_eq!(
        seqs,
        (20..TOTAL).collect::<Vec<_>>(),
        "no gap, no duplicate, in order"
    );
    assert!(c.drain().await.is_empty());
    gw_a.shutdown().await;
    gw_b.shutdown().await;
}

#[tokio::test]
async fn single_topic_mode_replays_only_the_channels_category() {
    let broker = testkit::shared();
    let gw = Gateway::start_with(broker, TopicMode::Single, 2, &[]).await;
    let p = producer(broker);
    let mut recs = Vec::new();
    for s in 0..4 {
        recs.push(record(
            &gw.names,
            &event(EventType::TradeExecuted, "BTC", s),
        ));
        recs.push(record(
            &gw.names,
            &event(EventType::CommentPosted, "BTC", 100 + s),
        ));
        recs.push(record(
            &gw.names,
            &event(EventType::TradeExecuted, "ETH", 200 + s),
        ));
    }
    produce(&p, recs).await;
    let mut c = gw.client().await;
    // -1: everything from the start of this fresh topic.
    let (reply, events) = c
        .request(
            json!({"type": "subscribe", "channels": ["BTC.trade"], "recover": {"BTC.trade": -1}}),
        )
        .await;
    assert_eq!(
        reply["recovery"]["BTC.trade"],
        json!({"recovered": true, "replayed": 4}),
        "{reply}"
    );
    assert_eq!(events.iter().map(seq).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    assert!(events.iter().all(|e| e["channel"] == "BTC.trade"));
    // The live consumer may read the same records after the replay: not sent twice.
    let mut watcher = gw.client().await;
    watcher.subscribe(json!({"channels": ["BTC.trade"]})).await;
    produce(
        &p,
        vec![record(
            &gw.names,
            &event(EventType::TradeExecuted, "BTC", 4),
        )],
    )
    .await;
    // The watcher may also get 0..3 live first (the consumer may lag): wait for 4.
    let mut watched = Vec::new();
    for _ in 0..5 {
        watched.push(seq(&watcher.events(1).await[0]));
        if watched.last() == Some(&4) {
            break;
        }
    }
    assert_eq!(watched.last(), Some(&4), "{watched:?}");
    assert_eq!(
        c.events(1).await.iter().map(seq).collect::<Vec<_>>(),
        vec![4]
    );
    assert!(c.drain().await.is_empty());
    gw.shutdown().await;
}
