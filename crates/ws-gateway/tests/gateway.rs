//! The gateway end to end: a real broker (testkit), the gateway in-process on 127.0.0.1:0
//! over its own topics, real WebSocket clients. Records are produced only after the
//! subscription is confirmed, and every wait has a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use futures::SinkExt;
use odin_events::{Category, EventType, TopicMode};
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

fn first_type(c: Category) -> EventType {
    c.event_types().next().unwrap()
}

fn channels_of(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .map(|e| e["channel"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn each_bundle_delivers_exactly_its_categories() {
    let broker = testkit::shared();
    let gw = Gateway::start(broker, &[]).await;
    let bundles = [
        ("TRADING", vec!["trade", "liquidity", "analytics"]),
        (
            "FULL_MARKET",
            vec!["trade", "liquidity", "analytics", "metadata"],
        ),
        ("COMMUNITY", vec!["community", "social", "metadata"]),
        ("PORTFOLIO", vec!["trade", "analytics", "balances"]),
        ("PRICE_ONLY", vec!["trade", "analytics"]),
        ("ALL", Category::ALL.iter().map(|c| c.as_str()).collect()),
    ];
    let mut clients = Vec::new();
    for (bundle, cats) in &bundles {
        let mut c = gw.client().await;
        let reply = c
            .subscribe(json!({"bundle": bundle, "tokens": ["BTC"]}))
            .await;
        let expected: Vec<String> = cats.iter().map(|c| format!("BTC.{c}")).collect();
        assert_eq!(reply["channels"], json!(expected), "{bundle}");
        clients.push((c, cats.len()));
    }
    // One event of every category for BTC, and the same for ETH (nobody's token).
    let p = producer(broker);
    let mut records = Vec::new();
    for c in Category::ALL {
        for token in ["BTC", "ETH"] {
            records.push(record(
                &gw.names,
                &envelope(first_type(c), token, json!({"c": c.as_str()})),
            ));
        }
    }
    produce(&p, records).await;
    for ((bundle, cats), (client, n)) in bundles.iter().zip(clients.iter_mut()) {
        let mut got = client.events(*n).await;
        got.extend(client.drain().await);
        let expected: BTreeSet<String> = cats.iter().map(|c| format!("BTC.{c}")).collect();
        assert_eq!(channels_of(&got), expected, "{bundle}");
        assert_eq!(got.len(), cats.len(), "{bundle}: each record once");
        for e in &got {
            let cat = e["channel"].as_str().unwrap().split('.').nth(1).unwrap();
            assert_eq!(e["data"]["c"], cat);
        }
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn explicit_channels_wildcards_and_overlaps_deliver_each_record_once() {
    let broker = testkit::shared();
    let gw = Gateway::start(broker, &[]).await;
    let mut a = gw.client().await;
    let reply = a
        .subscribe(json!({"channels": ["BTC.trade", "*.creation"]}))
        .await;
    assert_eq!(reply["channels"], json!(["BTC.trade", "*.creation"]));
    let mut b = gw.client().await;
    let reply = b
        .subscribe(
            json!({"bundle": "TRADING", "tokens": ["BTC"], "channels": ["BTC.trade", "*.trade"]}),
        )
        .await;
    assert_eq!(
        reply["channels"],
        json!(["BTC.trade", "BTC.liquidity", "BTC.analytics", "*.trade"])
    );
    let p = producer(broker);
    let sends = [
        (EventType::TradeExecuted, "BTC"),
        (EventType::TradeExecuted, "ETH"),
        (EventType::TokenCreated, "NEW1"),
        (EventType::TokenListed, "NEW2"),
        (EventType::LiquidityAdded, "BTC"),
        (EventType::LiquidityAdded, "ETH"),
    ];
    let records = sends
        .iter()
        .map(|(t, tok)| record(&gw.names, &envelope(*t, tok, json!({}))))
        .collect();
    produce(&p, records).await;

    let mut got_a = a.events(3).await;
    got_a.extend(a.drain().await);
    assert_eq!(got_a.len(), 3, "{got_a:?}");
    assert_eq!(
        channels_of(&got_a),
        ["BTC.trade", "NEW1.creation", "NEW2.creation"]
            .map(String::from)
            .into()
    );

    let mut got_b = b.events(3).await;
    got_b.extend(b.drain().await);
    // BTC.trade through the bundle, the channel and the wildcard: still once.
    assert_eq!(got_b.len(), 3, "{got_b:?}");
    assert_eq!(
        channels_of(&got_b),
        ["BTC.trade", "ETH.trade", "BTC.liquidity"]
            .map(String::from)
            .into()
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_channel_arrives_in_partition_order_with_its_offsets() {
    let broker = testkit::shared();
    // Client-side polling (max-wait 0, pause after empty fetches) keeps the same order.
    let gw = Gateway::start_with(
        broker,
        TopicMode::PerCategory,
        3,
        &["--fetch-poll-ms", "10"],
    )
    .await;
    let mut c = gw.client().await;
    c.subscribe(json!({"channels": ["BTC.trade", "ETH.trade"]}))
        .await;
    let p = producer(broker);
    let n = 300;
    let records = (0..n)
        .map(|i| {
            let token = if i % 2 == 0 { "BTC" } else { "ETH" };
            record(
                &gw.names,
                &envelope(EventType::TradeExecuted, token, json!({"seq": i})),
            )
        })
        .collect();
    produce(&p, records).await;
    let events = c.events(n).await;
    let mut last: HashMap<String, (i64, i64)> = HashMap::new();
    for e in &events {
        let ch = e["channel"].as_str().unwrap().to_owned();
        let seq = e["data"]["seq"].as_i64().unwrap();
        let offset = e["offset"].as_i64().unwrap();
        if let Some((s, o)) = last.get(&ch) {
            assert!(
                seq > *s && offset > *o,
                "{ch}: seq {s}->{seq}, offset {o}->{offset}"
            );
        }
        last.insert(ch, (seq, offset));
    }
    assert_eq!(last.len(), 2);
    assert!(c.drain().await.is_empty());
    gw.shutdown().await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let broker = testkit::shared();
    let gw = Gateway::start(broker, &[]).await;
    let mut c = gw.client().await;
    c.subscribe(json!({"bundle": "PRICE_ONLY", "tokens": ["BTC", "ETH"]}))
        .await;
    let (reply, _) = c
        .request(json!({"type": "unsubscribe", "bundle": "PRICE_ONLY", "tokens": ["ETH"]}))
        .await;
    assert_eq!(reply["type"], "unsubscribed");
    assert_eq!(reply["channels"], json!(["ETH.trade", "ETH.analytics"]));
    let p = producer(broker);
    produce(
        &p,
        vec![
            record(
                &gw.names,
                &envelope(EventType::TradeExecuted, "ETH", json!({})),
            ),
            record(
                &gw.names,
                &envelope(EventType::TradeExecuted, "BTC", json!({})),
            ),
        ],
    )
    .await;
    let got = c.events(1).await;
    assert_eq!(got[0]["channel"], "BTC.trade");
    // ETH's record went out before or with BTC's; nothing more is queued.
    assert!(c.drain().await.is_empty());
    assert_eq!(gw.health().await["channels"], 2);
    gw.shutdown().await;
}

async fn expect_error(c: &mut Client, frame: Value, code: &str) {
    let (reply, events) = c.request(frame).await;
    assert!(events.is_empty());
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], code, "{reply}");
    assert!(!reply["message"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn every_error_code_and_the_policy_closes() {
    let broker = testkit::shared();
    let gw = Gateway::start(
        broker,
        &["--max-channels-per-conn", "5", "--max-frame-bytes", "1024"],
    )
    .await;
    let mut c = gw.client().await;
    // bad_request: not JSON, unknown type, missing fields, wrong field types, binary.
    c.send_text("hello").await;
    let e = c.recv().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("bad_request"))
    );
    expect_error(&mut c, json!({"type": "dance"}), "bad_request").await;
    expect_error(&mut c, json!({"tokens": ["BTC"]}), "bad_request").await;
    expect_error(&mut c, json!({"type": "subscribe"}), "bad_request").await;
    expect_error(
        &mut c,
        json!({"type": "subscribe", "bundle": "TRADING"}),
        "bad_request",
    )
    .await;
    expect_error(
        &mut c,
        json!({"type": "subscribe", "channels": "BTC.trade"}),
        "bad_request",
    )
    .await;
    c.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(c.recv().await["code"], "bad_request");
    // Strikes so far: 7. Another connection for the rest.
    let mut c = gw.client().await;
    expect_error(
        &mut c,
        json!({"type": "subscribe", "bundle": "NOPE", "tokens": ["BTC"]}),
        "unknown_bundle",
    )
    .await;
    expect_error(
        &mut c,
        json!({"type": "subscribe", "channels": ["BTC.nope"]}),
        "invalid_channel",
    )
    .await;
    expect_error(
        &mut c,
        json!({"type": "subscribe", "channels": ["B C.trade"]}),
        "invalid_channel",
    )
    .await;
    expect_error(
        &mut c,
        json!({"type": "subscribe", "bundle": "ALL", "tokens": ["BTC"]}),
        "too_many_subscriptions",
    )
    .await;
    c.subscribe(json!({"bundle": "TRADING", "tokens": ["BTC"]}))
        .await;
    // 3 held + 3 new > 5: refused as a whole, nothing added.
    expect_error(
        &mut c,
        json!({"type": "subscribe", "bundle": "TRADING", "tokens": ["ETH"]}),
        "too_many_subscriptions",
    )
    .await;
    assert_eq!(gw.health().await["channels"], 3);

    // rate_limited: 20 messages/s with a burst of 20.
    let mut c = gw.client().await;
    for _ in 0..26 {
        c.send(json!({"type": "ping"})).await;
    }
    let mut pongs = 0;
    let mut limited = 0;
    for _ in 0..26 {
        let f = c.recv().await;
        match f["type"].as_str().unwrap() {
            "pong" => pongs += 1,
            "error" => {
                assert_eq!(f["code"], "rate_limited");
                limited += 1;
            }
            other => panic!("{other}"),
        }
    }
    assert!(
        limited >= 3 && pongs >= 20,
        "pongs {pongs}, limited {limited}"
    );

    // Garbage without end: closed with 1008 and a reason.
    let mut c = gw.client().await;
    for _ in 0..12 {
        c.send_text("{not json").await;
    }
    let (frames, end) = c.until_end().await;
    assert!(frames.iter().all(|f| f["code"] == "bad_request"));
    match end {
        Ended::Closed(Some((code, reason))) => {
            assert_eq!(code, CloseCode::Policy);
            assert_eq!(reason, "too many invalid messages");
        }
        other => panic!("{other:?}"),
    }

    // A frame over WS_MAX_FRAME_BYTES is refused: closed with 1009.
    let mut c = gw.client().await;
    c.send_text(&format!(
        "{{\"type\":\"ping\",\"pad\":\"{}\"}}",
        "x".repeat(2000)
    ))
    .await;
    match c.until_end().await.1 {
        Ended::Closed(Some((code, _))) => assert_eq!(code, CloseCode::Size),
        other => panic!("{other:?}"),
    }
    gw.shutdown().await;
}

/// Produces `n` events of `size` bytes on BTC.trade in small acknowledged chunks.
async fn produce_large(broker: &testkit::Broker, gw: &Gateway, n: usize, size: usize) {
    let p = producer(broker);
    let pad = "x".repeat(size);
    for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
        let records = chunk
            .iter()
            .map(|i| {
                record(
                    &gw.names,
                    &envelope(
                        EventType::TradeExecuted,
                        "BTC",
                        json!({"seq": i, "pad": pad}),
                    ),
                )
            })
            .collect();
        produce(&p, records).await;
    }
}

/// A client whose socket takes almost nothing in, and that does not read.
async fn stalled_client(gw: &Gateway) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(gw.addr).await.unwrap();
    let (ws, _) =
        tokio_tungstenite::client_async(gw.url(), tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    let mut c = Client::connect_with(ws).await;
    c.subscribe(json!({"channels": ["BTC.trade"]})).await;
    c
}

fn assert_in_order(events: &[Value]) {
    for w in events.windows(2) {
        assert!(w[1]["offset"].as_i64() > w[0]["offset"].as_i64());
    }
}

#[tokio::test]
async fn slow_client_is_disconnected_while_a_fast_client_gets_everything() {
    let broker = testkit::shared();
    let gw = Gateway::start(
        broker,
        &[
            "--client-queue",
            "64",
            "--slow-client",
            "disconnect",
            "--slow-client-timeout",
            "300ms",
            "--fetch-max-bytes",
            "131072",
        ],
    )
    .await;
    let mut slow = stalled_client(&gw).await;
    let mut fast = gw.client().await;
    fast.subscribe(json!({"channels": ["BTC.trade"]})).await;
    let n = 600;
    let reader = tokio::spawn(async move {
        let events = fast.events(n).await;
        (fast, events)
    });
    produce_large(broker, &gw, n, 16 * 1024).await;
    let (mut fast, events) = reader.await.unwrap();
    assert_in_order(&events);
    assert_eq!(events.len(), n);
    // The slow one is closed (1008 "slow consumer") once its queue stayed full for 300 ms;
    // it may need one more record to notice.
    let deadline = Instant::now() + WAIT;
    let p = producer(broker);
    while gw.connections().await > 1 {
        assert!(Instant::now() < deadline, "slow client still connected");
        produce(
            &p,
            vec![record(
                &gw.names,
                &envelope(EventType::TradeExecuted, "BTC", json!({"late": true})),
            )],
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (got, end) = slow.until_end().await;
    let got_events = got.iter().filter(|f| f["type"] == "event").count();
    assert!(
        got_events < n,
        "the slow client cannot have received everything"
    );
    assert!(
        !matches!(end, Ended::Error(ref e) if e == "timed out"),
        "{end:?}"
    );
    if let Ended::Closed(Some((code, reason))) = &end {
        assert_eq!(
            (*code, reason.as_str()),
            (CloseCode::Policy, "slow consumer")
        );
    }
    assert!(
        metric(
            gw.addr,
            "ws_messages_dropped_total{reason=\"slow_consumer\"}"
        )
        .await
            > 0.0
    );
    assert!(metric(gw.addr, "ws_disconnections_total{reason=\"slow_consumer\"}").await >= 1.0);
    // The fast client is still served: whatever else it got is the late records.
    let late = fast.drain().await;
    assert!(late.iter().all(|e| e["data"]["late"] == true), "{late:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn slow_client_under_drop_policy_loses_frames_but_stays() {
    let broker = testkit::shared();
    let gw = Gateway::start(
        broker,
        &[
            "--client-queue",
            "64",
            "--slow-client",
            "drop",
            "--fetch-max-bytes",
            "131072",
        ],
    )
    .await;
    let mut slow = stalled_client(&gw).await;
    let mut fast = gw.client().await;
    fast.subscribe(json!({"channels": ["BTC.trade"]})).await;
    let n = 600;
    let reader = tokio::spawn(async move {
        let events = fast.events(n).await;
        (fast, events)
    });
    let before = metric(gw.addr, "ws_messages_dropped_total{reason=\"queue_full\"}").await;
    produce_large(broker, &gw, n, 16 * 1024).await;
    let (_fast, events) = reader.await.unwrap();
    assert_eq!(events.len(), n);
    assert_in_order(&events);
    // Still connected; it gets what fitted, in order, with gaps, then answers.
    assert_eq!(gw.connections().await, 2);
    let got: Vec<Value> = slow.drain().await;
    assert!(!got.is_empty() && got.len() < n, "{}", got.len());
    assert_in_order(&got);
    assert!(metric(gw.addr, "ws_messages_dropped_total{reason=\"queue_full\"}").await > before);
    gw.shutdown().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_get_503_before_the_handshake() {
    let broker = testkit::shared();
    let gw = Gateway::start(broker, &["--max-connections", "2"]).await;
    let a = gw.client().await;
    let _b = gw.client().await;
    let err = tokio_tungstenite::connect_async(gw.url())
        .await
        .unwrap_err();
    assert_eq!(ws_error_status(&err), Some(503), "{err}");
    assert!(
        metric(
            gw.addr,
            "ws_connections_rejected_total{reason=\"capacity\"}"
        )
        .await
            >= 1.0
    );
    drop(a);
    let deadline = Instant::now() + WAIT;
    loop {
        match tokio_tungstenite::connect_async(gw.url()).await {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(ws_error_status(&e), Some(503));
                assert!(Instant::now() < deadline, "slot never freed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn the_three_record_formats_reach_clients_with_their_data_intact() {
    let broker = testkit::shared();
    let gw = Gateway::start(broker, &[]).await;
    let mut c = gw.client().await;
    c.subscribe(json!({"channels": ["BTC.trade"]})).await;
    let topic = gw.names.topic_for(EventType::TradeExecuted).to_owned();
    let envelope_data = r#"{"price": "1.25",  "qty":[1, 2.50]}"#;
    let envelope_rec = format!(
        r#"{{"metadata":{{"eventId":"e-1","eventType":"TRADE_EXECUTED","eventVersion":"1.0","correlationId":"c","timestamp":1700000000001,"source":"s","dataClassification":"public","tokenId":"BTC"}},"data":{envelope_data}}}"#
    );
    let nested_data = r#"{"side":"buy","n":  7}"#;
    let nested_rec =
        format!(r#"{{"type":"BUY_COMPLETED","timestamp":1700000000002,"data":{nested_data}}}"#);
    let flat_rec = r#"{"type":"SELL_COMPLETED","tokenId":"BTC","timestamp":1700000000003,"amount":"9.5","eventId":"f-3"}"#;
    let p = producer(broker);
    produce(
        &p,
        vec![
            raw(&topic, Some("BTC"), &envelope_rec),
            raw(&topic, Some("BTC"), &nested_rec),
            raw(&topic, None, flat_rec),
        ],
    )
    .await;
    // The frames' raw text keeps the data bytes; read them as text.
    let mut texts = Vec::new();
    while texts.len() < 3 {
        let m = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut c.ws))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            texts.push(t.as_str().to_owned());
        }
    }
    assert!(
        texts[0].ends_with(&format!("\"data\":{envelope_data}}}")),
        "{}",
        texts[0]
    );
    assert!(
        texts[1].ends_with(&format!("\"data\":{nested_data}}}")),
        "{}",
        texts[1]
    );
    let v: Vec<Value> = texts
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect();
    assert_eq!(v[0]["event"], "TRADE_EXECUTED");
    assert_eq!(v[0]["eventId"], "e-1");
    assert_eq!(v[0]["timestamp"], 1_700_000_000_001i64);
    assert_eq!(v[1]["event"], "BUY_COMPLETED");
    assert!(v[1].get("eventId").is_none());
    assert_eq!(v[1]["timestamp"], 1_700_000_000_002i64);
    assert_eq!(v[2]["event"], "SELL_COMPLETED");
    assert_eq!(v[2]["channel"], "BTC.trade");
    assert_eq!(v[2]["eventId"], "f-3");
    // The flat format's data: the object without type, tokenId and timestamp.
    assert_eq!(v[2]["data"], json!({"amount": "9.5", "eventId": "f-3"}));
    for f in &v {
        assert_eq!(f["type"], "event");
        assert!(f["offset"].is_i64());
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn malformed_records_are_counted_dead_lettered_and_skipped() {
    let broker = testkit::shared();
    let gw = Gateway::start(broker, &["--dlq"]).await;
    let mut c = gw.client().await;
    c.subscribe(json!({"channels": ["*.social"]})).await;
    let topic = gw.names.topic_for(EventType::TwitterVerified).to_owned();
    let p = producer(broker);
    produce(
        &p,
        vec![
            raw(&topic, Some("BTC"), "not json at all"),
            raw(
                &topic,
                None,
                r#"{"type":"TWITTER_VERIFIED","timestamp":1,"data":{}}"#,
            ),
            raw(&topic, Some("BTC"), r#"{"type":"NO_SUCH_TYPE","data":{}}"#),
            record(
                &gw.names,
                &envelope(EventType::TwitterVerified, "GOOD", json!({"ok": true})),
            ),
        ],
    )
    .await;
    let e = c.events(1).await;
    assert_eq!(e[0]["channel"], "GOOD.social");
    assert!(c.drain().await.is_empty());
    let label = format!("ws_kafka_records_invalid_total{{topic=\"{topic}\"}}");
    assert_eq!(metric(gw.addr, &label).await, 3.0);
    // The dead letters are on <topic>.dlq with the reason and provenance.
    let client = std::sync::Arc::new(broker.client().await.unwrap());
    let mut dlq = odin_service::PartitionConsumer::new(
        client,
        odin_events::topics::dlq_topic(&topic),
        0,
        odin_service::StartFrom::Earliest,
        odin_service::FetchSettings {
            max_wait_ms: 20,
            ..Default::default()
        },
    );
    let deadline = Instant::now() + WAIT;
    let mut letters = Vec::new();
    while letters.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "dead letters missing: {}",
            letters.len()
        );
        letters.extend(dlq.next_batch().await.records);
    }
    assert_eq!(letters.len(), 3);
    assert_eq!(
        letters[0].record.value.as_deref(),
        Some(&b"not json at all"[..])
    );
    for l in &letters {
        assert!(l.record.headers.contains_key("x-error"));
        assert_eq!(l.record.headers["x-source-topic"], topic.as_bytes());
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn single_topic_mode_routes_by_event_type() {
    let broker = testkit::shared();
    let gw = Gateway::start_with(broker, TopicMode::Single, 2, &[]).await;
    let mut c = gw.client().await;
    c.subscribe(json!({"channels": ["BTC.balances", "*.creation"]}))
        .await;
    let p = producer(broker);
    produce(
        &p,
        vec![
            record(
                &gw.names,
                &envelope(EventType::TradeExecuted, "BTC", json!({})),
            ),
            record(
                &gw.names,
                &envelope(EventType::BalanceUpdated, "BTC", json!({})),
            ),
            record(
                &gw.names,
                &envelope(EventType::TokenCreated, "NEW", json!({})),
            ),
        ],
    )
    .await;
    let mut got = c.events(2).await;
    got.extend(c.drain().await);
    assert_eq!(
        channels_of(&got),
        ["BTC.balances", "NEW.creation"].map(String::from).into()
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn health_metrics_routes_and_graceful_shutdown() {
    let broker = testkit::shared();
    let gw = Gateway::start(broker, &[]).await;
    let h = gw.health().await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["kafka"]["connected"], true);
    assert_eq!(h["kafka"]["partitions"], 8);
    let (status, text) = gw.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(text.contains("ws_kafka_connected"), "{text}");
    let (status, body) = gw.get("/nope").await;
    assert_eq!(status, 404);
    assert!(body.contains("error"));
    let (status, _) = gw.get("/ws").await;
    assert_eq!(status, 426);
    // `/` upgrades too (older clients).
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", gw.addr))
        .await
        .unwrap();
    let mut old = Client::connect_with(ws).await;
    assert_eq!(old.request(json!({"type": "ping"})).await.0["type"], "pong");
    let mut c = gw.client().await;
    c.subscribe(json!({"channels": ["BTC.trade"]})).await;
    gw.stop.cancel();
    for client in [&mut c, &mut old] {
        match client.until_end().await.1 {
            Ended::Closed(Some((code, _))) => assert_eq!(code, CloseCode::Away),
            other => panic!("{other:?}"),
        }
    }
    tokio::time::timeout(WAIT, gw.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn idle_peers_are_reaped_and_live_ones_kept() {
    let broker = testkit::shared();
    let gw = Gateway::start(
        broker,
        &["--ping-interval", "200ms", "--idle-timeout", "700ms"],
    )
    .await;
    // This one reads, so its library answers the server's pings.
    let mut live = gw.client().await;
    live.subscribe(json!({"channels": ["BTC.trade"]})).await;
    let keep_reading = tokio::spawn(async move {
        let r = live.next(Duration::from_secs(3)).await;
        (live, r)
    });
    // This one never reads again: no pongs.
    let _idle = {
        let mut c = gw.client().await;
        c.subscribe(json!({"channels": ["ETH.trade"]})).await;
        c
    };
    let deadline = Instant::now() + WAIT;
    while gw.connections().await != 1 {
        assert!(Instant::now() < deadline, "idle client not reaped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metric(gw.addr, "ws_disconnections_total{reason=\"idle\"}").await >= 1.0);
    let (mut live, r) = keep_reading.await.unwrap();
    // Three seconds of pings answered and nothing else: still open.
    assert!(
        matches!(r, Err(Ended::Error(ref e)) if e == "timed out"),
        "{r:?}"
    );
    assert_eq!(
        live.request(json!({"type": "ping"})).await.0["type"],
        "pong"
    );
    gw.shutdown().await;
}
