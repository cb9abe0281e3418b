//! The mission's own words: aggregates are read "with kafka-console-consumer on
//! aggregate-info". The real `scripts/kafka/bin/kafka-console-consumer.sh` reads what a running
//! aggregator published, and what it prints is the aggregate the reference computes.

mod common;

use std::collections::BTreeMap;

use common::*;
use odin_events::TokenAggregateData;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_console_consumer_prints_the_aggregates() {
    let broker = testkit::shared();
    let input = testkit::unique_topic("trades");
    let output = testkit::unique_topic("aggregate-info");
    topics(broker, &input, 2, &[&output]).await;
    let trades = vec![
        T::new("AAA", true, "2", "3", "6", E1 - 10 * SEC),
        T::new("AAA", false, "4", "1", "4", E1 - 2 * MIN),
        T::new("BBB", true, "0.5", "10", "5", E1 - 20 * MIN),
    ];
    produce(&producer(broker), &input, &trades).await;
    let svc = Svc::start(broker, &input, &output, E1 - 500, &[]).await;
    svc.wait_replayed().await;
    svc.clock.set(E1);
    let want = reference(&trades, E1);

    let out = broker
        .tool(
            "kafka-console-consumer.sh",
            &[
                "--bootstrap-server",
                broker.addr(),
                "--topic",
                &output,
                "--from-beginning",
                "--max-messages",
                &want.len().to_string(),
                "--timeout-ms",
                "60000",
                "--formatter-property",
                "print.key=true",
                "--formatter-property",
                "key.separator=|",
            ],
        )
        .await
        .unwrap();
    let mut got = BTreeMap::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let (key, value) = line
            .split_once('|')
            .unwrap_or_else(|| panic!("key|value: {line:?}"));
        let d: TokenAggregateData = serde_json::from_str(value).expect("an aggregate per line");
        assert_eq!(key, d.token, "keyed by token");
        got.insert(d.token.clone(), d);
    }
    assert_matches(&got, &want, E1);
    svc.stop().await;
}
