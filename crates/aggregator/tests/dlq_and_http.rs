//! Bad records go to `<input>.dlq` with their provenance and never stop the service; the
//! HTTP API answers bad requests with JSON errors and publishes on demand.

mod common;

use common::*;
use odin_service::OutRecord;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_go_to_the_dead_letter_topic() {
    let broker = testkit::shared();
    let input = testkit::unique_topic("trades");
    let output = testkit::unique_topic("aggregates");
    topics(broker, &input, 2, &[&output]).await;
    let dlq = format!("{input}.dlq");
    let p = producer(broker);

    let good = T::new("GOOD", true, "2", "3", "6", E1 - SEC);
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("not valid", b"{not json".to_vec()),
        (
            "negative",
            br#"{"token":"AAA","side":"buy","price":"1","amount":"-5","timestamp":1800000000000}"#
                .to_vec(),
        ),
        (
            "unknown side",
            br#"{"token":"AAA","side":"hold","price":"1","amount":"5","timestamp":1800000000000}"#
                .to_vec(),
        ),
        (
            "token",
            br#"{"side":"buy","price":"1","amount":"5","timestamp":1800000000000}"#.to_vec(),
        ),
        (
            "negative",
            br#"{"metadata":{"eventId":"e1","eventType":"SELL_COMPLETED","timestamp":1800000000000,"tokenId":"AAA"},"data":{"price":"1","amount":"-2"}}"#
                .to_vec(),
        ),
        (
            "ahead of the clock",
            br#"{"token":"AAA","side":"buy","price":"1","amount":"5","timestamp":1900000000000}"#
                .to_vec(),
        ),
    ];
    let mut recs: Vec<OutRecord> = bad
        .iter()
        .map(|(_, v)| OutRecord::new(&input, Some(b"AAA".to_vec()), v.clone(), E1))
        .collect();
    recs.insert(
        2,
        OutRecord::new(&input, Some(b"GOOD".to_vec()), good.json(), E1),
    );
    let deliveries: Vec<_> = p
        .send_all(recs)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let mut bad_deliveries = deliveries.clone();
    bad_deliveries.remove(2);

    let svc = Svc::start(broker, &input, &output, E1 - 500, &[]).await;
    let mut dead = Reader::new(broker, &dlq, 1).await;
    dead.until("dead letters", |r| r.len() >= bad.len()).await;
    assert_eq!(dead.records.len(), bad.len());
    for (((why, value), d), r) in bad.iter().zip(&bad_deliveries).zip(&dead.records) {
        assert_eq!(&r.value, value, "value is kept byte for byte");
        let err = String::from_utf8(r.headers["x-error"].clone()).unwrap();
        assert!(err.contains(why), "{why:?} not in {err:?}");
        assert_eq!(r.headers["x-source-topic"], input.as_bytes());
        assert_eq!(
            r.headers["x-source-partition"],
            d.partition.to_string().as_bytes()
        );
        assert_eq!(
            r.headers["x-source-offset"],
            d.offset.to_string().as_bytes()
        );
    }
    let stats = svc
        .stats_until("invalid records counted", |s| s["records_invalid"] == 6)
        .await;
    assert_eq!(stats["trades_ingested"], 1, "{stats}");
    let (code, metrics) = http(svc.addr, "GET", "/metrics", "", "").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("aggregator_records_invalid_total"),
        "{metrics}"
    );

    // The service carries on: the good trade is published at the tick.
    let mut out = Reader::new(broker, &output, 3).await;
    svc.clock.set(E1);
    let got = out.tick(E1, 1).await;
    assert_matches(&got, &reference(&[good], E1), E1);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_limits_errors_and_publish_now() {
    let broker = testkit::shared();
    let input = testkit::unique_topic("trades");
    let output = testkit::unique_topic("aggregates");
    topics(broker, &input, 2, &[&output]).await;
    let p = producer(broker);
    let trades = vec![
        T::new("AAA", true, "1", "1", "1", E1 - 30 * SEC),
        T::new("AAA", false, "1.1", "2", "2.2", E1 + 500),
        T::new("BBB", true, "5", "1", "5", E1 - 10 * MIN),
    ];
    produce(&p, &input, &trades).await;
    // A 2 s interval, so that "now" (rounded to the 1 s bucket grid) is between ticks.
    let svc = Svc::start(
        broker,
        &input,
        &output,
        E1 - 500,
        &["--publish-interval", "2s"],
    )
    .await;
    svc.wait_replayed().await;

    let (code, body) = http(svc.addr, "GET", "/health", "", "").await;
    assert_eq!(code, 200, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "ok");

    let json_error = |code: u16, body: &str, want: u16| {
        assert_eq!(code, want, "{body}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["status"], want, "{body}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    };
    let (c, b) = http(svc.addr, "POST", "/publish", "{nope", "").await;
    json_error(c, &b, 400);
    let (c, b) = http(svc.addr, "POST", "/publish", r#"{"tokenz":[]}"#, "").await;
    json_error(c, &b, 400);
    let (c, b) = http(svc.addr, "POST", "/publish", r#"{"tokens":["A B"]}"#, "").await;
    json_error(c, &b, 400);
    let (c, b) = http(svc.addr, "POST", "/publish", r#"{"tokens":"AAA"}"#, "").await;
    json_error(c, &b, 400);
    let big = format!(r#"{{"tokens":["{}"]}}"#, "A".repeat(100 * 1024));
    let (c, b) = http(svc.addr, "POST", "/publish", &big, "").await;
    json_error(c, &b, 413);
    let huge_header = format!("X-Big: {}\r\n", "x".repeat(20 * 1024));
    let (c, b) = http(svc.addr, "GET", "/stats", "", &huge_header).await;
    json_error(c, &b, 431);
    let (c, b) = http(svc.addr, "GET", "/openapi.json", "", "").await;
    assert_eq!(c, 200, "{b}");
    let doc: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert!(doc["paths"]["/publish"]["post"].is_object(), "{b}");
    let (c, b) = http(svc.addr, "GET", "/nope", "", "").await;
    json_error(c, &b, 404);

    // Publish now: end = the clock (not aligned to the interval) rounded down to the second.
    let mut out = Reader::new(broker, &output, 3).await;
    svc.clock.set(E1);
    let at_e1 = out.tick(E1, 2).await;
    assert_matches(&at_e1, &reference(&trades, E1), E1);
    svc.clock.set(E1 + 1_234);
    let end = E1 + SEC;
    let (c, b) = http(
        svc.addr,
        "POST",
        "/publish",
        r#"{"tokens":["AAA","ZZZ"]}"#,
        "",
    )
    .await;
    assert_eq!(c, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["timestamp"], aggregator::window::rfc3339(end));
    assert_eq!(v["tokens"], serde_json::json!(["AAA"]), "ZZZ has no trades");
    let got = out.tick(end, 1).await;
    let want: std::collections::BTreeMap<_, _> = reference(&trades, end)
        .into_iter()
        .filter(|(k, _)| k == "AAA")
        .collect();
    assert_matches(&got, &want, end);
    // An empty body publishes every active token.
    let (c, b) = http(svc.addr, "POST", "/publish", "", "").await;
    assert_eq!(c, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["published"], 2, "{b}");

    let s = svc.stats().await;
    assert!(s["producer"]["messages_sent"].as_u64().unwrap() >= 5, "{s}");
    assert!(s["producer"]["last_sent_time"].is_string(), "{s}");
    svc.stop().await;
}
