//! The publisher's HTTP API, in-process on 127.0.0.1:0 against a real broker (testkit):
//! ingestion lands where it must, bad input is refused whole, the simulator is controllable,
//! trades are mirrored to trade-info, and the API key guards what mutates.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use odin_events::envelope::parse_record;
use odin_events::{partition_for_key, Classification, EventType, TradeRecord};
use publisher::generator::Generator;
use serde_json::{json, Value};

use common::{consumer_client, eventually, read_at, read_until, start};

/// One event body of every type, data from the generator.
fn one_of_each(token: &str) -> Vec<Value> {
    let mut g = Generator::new(&[token.to_owned()], 99);
    let mut seen: HashMap<EventType, Value> = HashMap::new();
    for _ in 0..200_000 {
        let e = g.next_event();
        seen.entry(e.event_type).or_insert_with(
            || json!({"eventType": e.event_type.as_str(), "tokenId": token, "data": e.data}),
        );
        if seen.len() == 23 {
            break;
        }
    }
    assert_eq!(seen.len(), 23);
    EventType::ALL.iter().map(|t| seen[t].clone()).collect()
}

#[tokio::test]
async fn read_endpoints_answer_json_and_unknown_routes_404() {
    let p = start(testkit::shared(), &[]).await;
    let r = p.get("/health").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ok");

    let v: Value = p.get("/status").await.json().await.unwrap();
    assert_eq!(v["isRunning"], false);
    assert_eq!(v["publisherHealthy"], true);
    assert!(v["currentRate"].as_f64().unwrap() > 0.0);
    assert!(v["tokenIds"].as_array().is_some());

    let v: Value = p.get("/stats").await.json().await.unwrap();
    for f in [
        "messagesPublished",
        "messagesFailed",
        "byTopic",
        "byEventType",
        "messagesPerSecond",
        "uptime",
    ] {
        assert!(v.get(f).is_some(), "/stats lacks {f}: {v}");
    }
    assert_eq!(v["byEventType"].as_object().unwrap().len(), 23);

    // Answers match the documented schemas.
    let v: Value = p.get("/stats").await.json().await.unwrap();
    serde_json::from_value::<publisher::openapi::StatsBody>(v).unwrap();
    let v: Value = p.get("/status").await.json().await.unwrap();
    serde_json::from_value::<publisher::openapi::StatusBody>(v).unwrap();
    let v: Value = p.get("/health").await.json().await.unwrap();
    serde_json::from_value::<publisher::openapi::HealthBody>(v).unwrap();
    let r = p.get("/openapi.json").await;
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["paths"]["/events"]["post"].is_object(), "{doc}");

    let r = p.get("/metrics").await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("publisher_kafka_connected"), "{text}");

    let r = p.get("/nope").await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("/nope"));

    let r = p.http.delete(p.url("/events")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], 405);

    // CORS preflight.
    let r = p
        .http
        .request(reqwest::Method::OPTIONS, p.url("/events"))
        .header("origin", "http://example.test")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert!(r.headers().contains_key("access-control-allow-origin"));
    p.stop().await.unwrap();
}

#[tokio::test]
async fn a_batch_lands_on_its_topics_partitions_and_keys_with_envelopes() {
    let broker = testkit::shared();
    let p = start(broker, &[]).await;
    let client = consumer_client(broker).await;
    let mut events = one_of_each("BTC");
    events.extend(one_of_each("0x0000000000000000000000000000000000000abc"));
    events[0]["userId"] = json!("user-7");
    events[0]["correlationId"] = json!("corr-7");
    events[1]["dataClassification"] = json!("internal");

    let r = p.post_json("/events", &json!({ "events": events })).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    serde_json::from_value::<publisher::openapi::Published>(v.clone()).unwrap();
    let ids = v["eventIds"].as_array().unwrap();
    let offsets = v["offsets"].as_array().unwrap();
    let partitions = v["partitions"].as_array().unwrap();
    assert_eq!((ids.len(), offsets.len()), (46, 46));

    let mut trades = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        let t: EventType = ev["eventType"].as_str().unwrap().parse().unwrap();
        let token = ev["tokenId"].as_str().unwrap();
        let topic = p.names.topic_for(t).to_owned();
        let partition = partitions[i].as_i64().unwrap() as i32;
        assert_eq!(partition, partition_for_key(token.as_bytes(), 12), "{t}");
        let rec = read_at(&client, &topic, partition, offsets[i].as_i64().unwrap()).await;
        assert_eq!(rec.record.key.as_deref(), Some(token.as_bytes()));
        assert_eq!(
            rec.record.headers.get("event-type").map(Vec::as_slice),
            Some(t.as_str().as_bytes())
        );
        let value = rec.record.value.as_deref().unwrap();
        let parsed = parse_record(value, rec.record.key.as_deref()).unwrap();
        assert_eq!(parsed.event_type, t);
        assert_eq!(parsed.event_id.as_deref(), ids[i].as_str());
        assert_eq!(Value::Object(parsed.data_value()), ev["data"], "{t}");
        let want_class = match i {
            1 => Classification::Internal,
            _ => Classification::default_for(t),
        };
        assert_eq!(parsed.classification, want_class, "{t}");
        uuid::Uuid::parse_str(ids[i].as_str().unwrap()).unwrap();
        if i == 0 {
            assert_eq!(parsed.user_id.as_deref(), Some("user-7"));
            assert_eq!(parsed.correlation_id.as_deref(), Some("corr-7"));
        }
        if t.is_trade() {
            trades.push(TradeRecord::from_event(&parsed, 0).unwrap());
        }
    }

    // Every trade is mirrored to trade-info, keyed by token, in the trade-record format.
    let ti = p.config.trade_info().unwrap();
    assert_eq!(trades.len(), 6);
    for want in &trades {
        let part = partition_for_key(want.token.as_bytes(), 12);
        let recs = read_until(&client, &ti, part, |got| {
            got.iter().any(|r| {
                TradeRecord::parse(r.record.value.as_deref().unwrap())
                    .is_ok_and(|t| t.tx_hash == want.tx_hash)
            })
        })
        .await;
        let got = recs
            .iter()
            .filter_map(|r| TradeRecord::parse(r.record.value.as_deref().unwrap()).ok())
            .find(|t| t.tx_hash == want.tx_hash)
            .unwrap_or_else(|| panic!("trade {} not mirrored", want.tx_hash));
        assert_eq!(&got, want);
    }

    let v: Value = p.get("/stats").await.json().await.unwrap();
    assert_eq!(v["messagesPublished"], 46);
    assert_eq!(v["byEventType"]["TRADE_EXECUTED"], 2);
    assert_eq!(v["byTopic"][ti.as_str()], 6);
    p.stop().await.unwrap();
}

#[tokio::test]
async fn bad_input_is_refused_whole_with_index_and_reason() {
    let broker = testkit::shared();
    let p = start(broker, &["--max-batch", "5"]).await;
    let client = consumer_client(broker).await;
    let good = json!({"eventType": "TRENDING_UPDATED", "tokenId": "REJ", "data": {"rank": 3}});
    let topic = p.names.topic_for(EventType::TrendingUpdated).to_owned();

    // A first good event fixes the offset that the next good event must follow.
    let v: Value = p.post_json("/events", &good).await.json().await.unwrap();
    let first = v["offsets"][0].as_i64().unwrap();
    let partition = v["partitions"][0].as_i64().unwrap() as i32;

    let cases: Vec<(Value, Vec<(usize, &str)>)> = vec![
        (
            json!({"events": [good.clone(), {"eventType": "TRADE_EXECUTED", "tokenId": "REJ", "data": {"price": 1, "amount": 2}}]}),
            vec![(1, "data.side")],
        ),
        (
            json!({"events": [good.clone(), {"eventType": "NOPE", "tokenId": "REJ", "data": {}}, {"eventType": "TRENDING_UPDATED", "tokenId": "R J", "data": {"rank": 1}}]}),
            vec![(1, "unknown event type"), (2, "R J")],
        ),
        (
            json!({"events": [{"eventType": "TRENDING_UPDATED", "tokenId": "REJ", "data": "x"}, good.clone()]}),
            vec![(0, "data must be an object")],
        ),
        (
            json!({"eventType": "BUY_COMPLETED", "tokenId": "REJ", "data": {"price": "abc", "amount": 1}}),
            vec![(0, "data.price")],
        ),
        (
            json!({"eventType": "BUY_COMPLETED", "tokenId": "REJ", "data": {"price": "1", "amount": "-2"}}),
            vec![(0, "negative")],
        ),
        (
            json!({"tokenId": "REJ", "data": {}}),
            vec![(0, "eventType is required")],
        ),
        (json!({"events": [1]}), vec![(0, "must be an object")]),
    ];
    for (body, want) in &cases {
        let r = p.post_json("/events", body).await;
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        serde_json::from_value::<publisher::openapi::Refused>(v.clone()).unwrap();
        let errs = v["errors"].as_array().unwrap();
        assert_eq!(errs.len(), want.len(), "{v}");
        for (e, (index, reason)) in errs.iter().zip(want) {
            assert_eq!(e["index"], *index, "{v}");
            assert!(e["reason"].as_str().unwrap().contains(reason), "{v}");
        }
    }
    let whole: Vec<(&str, &str)> = vec![
        ("{not json", "not valid JSON"),
        ("[]", "event object"),
        (r#"{"events": []}"#, "empty"),
        (r#"{"events": {}}"#, "array"),
        ("", "not valid JSON"),
    ];
    for (body, reason) in whole {
        let r = p.post_raw("/events", body).await;
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains(reason), "{body}: {v}");
    }
    let too_many = json!({"events": vec![good.clone(); 6]});
    let r = p.post_json("/events", &too_many).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("over the limit of 5"),
        "{v}"
    );

    // Nothing of the refused batches reached the broker: the next good event directly
    // follows the first one on the partition.
    let v: Value = p.post_json("/events", &good).await.json().await.unwrap();
    assert_eq!(v["offsets"][0].as_i64().unwrap(), first + 1);
    let rec = read_at(&client, &topic, partition, first + 1).await;
    let parsed = parse_record(rec.record.value.as_deref().unwrap(), None).unwrap();
    assert_eq!(parsed.event_id.as_deref(), v["eventIds"][0].as_str());
    p.stop().await.unwrap();
}

#[tokio::test]
async fn size_limits_give_413_and_431() {
    let p = start(
        testkit::shared(),
        &["--max-body-bytes", "2048", "--max-header-bytes", "2048"],
    )
    .await;
    let big = format!(
        r#"{{"eventType":"TRENDING_UPDATED","tokenId":"BIG","data":{{"rank":1,"pad":"{}"}}}}"#,
        "x".repeat(4096)
    );
    let r = p.post_raw("/events", big).await;
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], 413);

    let r = p
        .http
        .get(p.url("/status"))
        .header("x-padding", "y".repeat(3000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("headers"));
    p.stop().await.unwrap();
}

#[tokio::test]
async fn the_simulator_is_controlled_over_http_and_mirrors_trades() {
    let broker = testkit::shared();
    let p = start(broker, &["--max-rate", "5000"]).await;
    let client = consumer_client(broker).await;
    let token = format!("SIM{:06x}", rand_suffix());

    // Invalid parameters say why.
    let bad: Vec<(&str, Value, &str)> = vec![
        ("/start", json!({"rate": 0}), "rate must be"),
        ("/start", json!({"rate": -5}), "rate must be"),
        ("/start", json!({"rate": 5001}), "5000"),
        (
            "/start",
            json!({"rate": 10, "tokenIds": []}),
            "tokenIds is empty",
        ),
        (
            "/start",
            json!({"rate": 10, "tokenIds": ["a b"]}),
            "tokenIds",
        ),
        ("/start", json!({"rate": "fast"}), "JSON"),
        ("/rate", json!({}), "rate is required"),
        ("/rate", json!({"rate": 0}), "rate must be"),
        ("/control", json!({"action": "pause"}), "action must be"),
        (
            "/control",
            json!({"action": "start", "messagesPerSecond": 0}),
            "messagesPerSecond",
        ),
    ];
    for (path, body, reason) in bad {
        let r = p.post_json(path, &body).await;
        assert_eq!(r.status(), 400, "{path} {body}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"].as_str().unwrap().contains(reason),
            "{path} {body}: {v}"
        );
    }
    let r = p.post_raw("/start", "{oops").await;
    assert_eq!(r.status(), 400);

    let r = p
        .post_json("/start", &json!({"rate": 400, "tokenIds": [token]}))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = p.get("/status").await.json().await.unwrap();
    assert_eq!(v["isRunning"], true);
    assert_eq!(v["currentRate"], 400.0);
    assert_eq!(v["tokenIds"], json!([token]));

    // Simulated trades reach trade-info in the trade-record format.
    let ti = p.config.trade_info().unwrap();
    let part = partition_for_key(token.as_bytes(), 12);
    let recs = read_until(&client, &ti, part, |got| !got.is_empty()).await;
    let t = TradeRecord::parse(recs[0].record.value.as_deref().unwrap()).unwrap();
    assert_eq!(t.token, token);
    assert_eq!(t.tx_hash.len(), 66);

    let r = p.post_json("/rate", &json!({"rate": 250})).await;
    assert_eq!(r.status(), 200);
    let v: Value = p.get("/status").await.json().await.unwrap();
    assert_eq!(v["currentRate"], 250.0);

    eventually(
        Duration::from_secs(20),
        "simulated events acknowledged",
        || async {
            let v: Value = p.get("/stats").await.json().await.unwrap();
            v["messagesPublished"].as_u64().unwrap() >= 200
        },
    )
    .await;

    let r = p.post_json("/stop", &json!({})).await;
    assert_eq!(r.status(), 200);
    let v: Value = p.get("/status").await.json().await.unwrap();
    assert_eq!(v["isRunning"], false);
    // After /stop everything queued is settled: published + failed = simulated.
    let s: Value = p.get("/stats").await.json().await.unwrap();
    assert_eq!(
        s["messagesPublished"].as_u64().unwrap() + s["messagesFailed"].as_u64().unwrap(),
        s["messagesSimulated"].as_u64().unwrap(),
        "{s}"
    );
    assert_eq!(s["messagesFailed"], 0);
    let trades: u64 = ["TRADE_EXECUTED", "BUY_COMPLETED", "SELL_COMPLETED"]
        .iter()
        .map(|t| s["byEventType"][*t].as_u64().unwrap())
        .sum();
    assert_eq!(s["byTopic"][ti.as_str()].as_u64().unwrap(), trades);

    // The older control endpoint.
    let r = p
        .post_json(
            "/control",
            &json!({"action": "start", "messagesPerSecond": 25}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = p.get("/status").await.json().await.unwrap();
    assert_eq!(
        (v["isRunning"].clone(), v["currentRate"].clone()),
        (json!(true), json!(25.0))
    );
    let r = p.post_json("/control", &json!({"action": "stop"})).await;
    assert_eq!(r.status(), 200);
    let v: Value = p.get("/status").await.json().await.unwrap();
    assert_eq!(v["isRunning"], false);
    p.stop().await.unwrap();
}

#[tokio::test]
async fn the_api_key_guards_mutating_endpoints_only() {
    let p = start(testkit::shared(), &["--api-key", "s3cret"]).await;
    let ev = json!({"eventType": "TRENDING_UPDATED", "tokenId": "KEY", "data": {"rank": 1}});
    for path in ["/events", "/start", "/stop", "/rate", "/control"] {
        let r = p.post_json(path, &ev).await;
        assert_eq!(r.status(), 401, "{path}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains("API key"));
        let r = p
            .http
            .post(p.url(path))
            .header("x-api-key", "s3cre")
            .json(&ev)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = p
        .http
        .post(p.url("/events"))
        .header("x-api-key", "s3cret")
        .json(&ev)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = p
        .http
        .post(p.url("/events"))
        .bearer_auth("s3cret")
        .json(&ev)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for path in ["/health", "/metrics", "/status", "/stats", "/openapi.json"] {
        assert_eq!(p.get(path).await.status(), 200, "{path}");
    }
    p.stop().await.unwrap();
}

#[tokio::test]
async fn single_topic_mode_and_disabled_mirror() {
    let broker = testkit::shared();
    let single = testkit::unique_topic("single");
    let p = start(
        broker,
        &[
            "--topic-mode",
            "single",
            "--single-topic",
            &single,
            "--topic-prefix",
            "",
            "--trade-info-topic",
            "",
        ],
    )
    .await;
    let client = consumer_client(broker).await;
    let ev = json!({"eventType": "SELL_COMPLETED", "tokenId": "ONE", "data": {"price": "2", "amount": "3"}});
    let r = p.post_json("/events", &ev).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let rec = read_at(
        &client,
        &single,
        v["partitions"][0].as_i64().unwrap() as i32,
        v["offsets"][0].as_i64().unwrap(),
    )
    .await;
    let parsed = parse_record(rec.record.value.as_deref().unwrap(), None).unwrap();
    assert_eq!(parsed.event_type, EventType::SellCompleted);
    let s: Value = p.get("/stats").await.json().await.unwrap();
    assert_eq!(s["byTopic"].as_object().unwrap().len(), 1, "{s}");
    p.stop().await.unwrap();
}

#[tokio::test]
async fn a_missing_topic_is_a_503_and_is_not_created() {
    let broker = testkit::shared();
    let p = common::start_with(broker, &[], false).await;
    let ev = json!({"eventType": "TRENDING_UPDATED", "tokenId": "MISS", "data": {"rank": 1}});
    let r = p.post_json("/events", &ev).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("does not exist"),
        "{v}"
    );
    let topic = p.names.topic_for(EventType::TrendingUpdated).to_owned();
    let c = broker.client().await.unwrap();
    let missing = odin_service::topics::missing_topics(&c, &[&topic])
        .await
        .unwrap();
    assert_eq!(missing, vec![topic]);
    p.stop().await.unwrap();
}

fn rand_suffix() -> u32 {
    rand::random::<u32>() & 0xff_ffff
}
